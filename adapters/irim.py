"""i-RIM: invertible recurrent inference machine (Putzky & Welling 2019; arXiv 1910.08952)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from deepinv.models import Reconstructor
from torch import Tensor, nn

from . import _weights
from ._base import check_inputs, sample_scale

#: Architecture of the shipped weights (also the default for a random init).
DEFAULT_CONFIG: dict[str, Any] = {
    "n_state": 16,
    "n_hidden": 16,
    "n_steps": 4,
    "n_layers": 2,
    "normalize": True,
}


class _OrthogonalMix(nn.Module):
    """Invertible 1x1 convolution with an orthogonal matrix ``exp(S - S^T)``.

    The matrix exponential of a skew-symmetric matrix is orthogonal for any ``S``, so the
    layer stays exactly invertible (inverse = transpose) while ``S`` is trained freely.
    """

    def __init__(self, ch: int, generator: torch.Generator | None = None):
        super().__init__()
        # random start so that every layer mixes image and memory channels from step one
        self.skew = nn.Parameter(0.5 * torch.randn(ch, ch, generator=generator))

    def weight(self) -> Tensor:
        return torch.linalg.matrix_exp(self.skew - self.skew.T)

    def forward(self, h: Tensor) -> Tensor:
        return torch.einsum("oc,bchw->bohw", self.weight(), h)

    def reverse(self, h: Tensor) -> Tensor:
        return torch.einsum("co,bchw->bohw", self.weight(), h)


class _CouplingNet(nn.Module):
    """Small two-scale U-Net used inside an additive coupling (not itself invertible)."""

    def __init__(self, c_in: int, c_out: int, hidden: int):
        super().__init__()
        self.inc = nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.LeakyReLU(0.1))
        self.down = nn.Sequential(
            nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=2, dilation=2), nn.LeakyReLU(0.1),
        )
        self.up = nn.ConvTranspose2d(2 * hidden, hidden, 2, stride=2)
        self.out = nn.Conv2d(2 * hidden, c_out, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # each coupling starts as the identity map
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2))  # the stride-2 level needs even sizes
        a = self.inc(x)
        b = self.up(self.down(a))
        return self.out(torch.cat([a, b], dim=1))[..., :h, :w]


class _AdditiveCoupling(nn.Module):
    """``[h1, h2] -> [h1 + g(h2), h2]``: invertible whatever ``g`` is.

    The updated half ``h1`` holds the image channels 0-1, so every coupling refines the
    estimate directly (the orthogonal mixing in between lets all channels take turns).
    """

    def __init__(self, ch: int, hidden: int):
        super().__init__()
        self.split = ch // 2
        self.g = _CouplingNet(ch - self.split, self.split, hidden)

    def forward(self, h: Tensor) -> Tensor:
        h1, h2 = h[:, : self.split], h[:, self.split :]
        return torch.cat([h1 + self.g(h2), h2], dim=1)

    def reverse(self, h: Tensor) -> Tensor:
        h1, h2 = h[:, : self.split], h[:, self.split :]
        return torch.cat([h1 - self.g(h2), h2], dim=1)


class _InvertibleBlock(nn.Module):
    """One recurrent step's network: ``n_layers`` x (orthogonal mixing, additive coupling)."""

    def __init__(self, ch: int, hidden: int, n_layers: int, generator: torch.Generator | None):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(n_layers):
            self.layers.append(_OrthogonalMix(ch, generator))
            self.layers.append(_AdditiveCoupling(ch, hidden))

    def forward(self, h: Tensor) -> Tensor:
        for layer in self.layers:
            h = layer(h)
        return h

    def reverse(self, h: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            h = layer.reverse(h)
        return h


class IRIM(Reconstructor):
    r"""Invertible recurrent inference machine for (multi-coil) MRI.

    State :math:`\eta` with ``n_state`` channels: channels 0-1 hold the complex image estimate,
    the rest are memory. Start: :math:`\eta_0 = [A^H y, 0]`. Each of ``n_steps`` iterations

    1. adds the data-term gradient :math:`A^H(A x - y)` of the current estimate
       :math:`x = \eta[0:2]` into channels 2-3 (an invertible update given ``y``), computed
       with the physics, so single-coil and multi-coil operators both work;
    2. applies a per-step invertible block of ``n_layers`` x (orthogonal 1x1 channel mixing,
       additive coupling ``[h1, h2] -> [h1 + g(h2), h2]`` whose sub-network ``g`` is a small
       two-scale U-Net).

    A last gradient update is followed by reading out :math:`\hat x = \eta[0:2]`. Every step
    is invertible in :math:`\eta` (see :meth:`reverse_state`), as in Putzky & Welling (2019);
    training uses plain autograd (no memory-saving invertible back-propagation).
    With ``normalize=True`` ``y`` is divided by the per-sample RMS magnitude of
    :math:`A^H y` and the output multiplied back, so ``f(c y) = c f(y)``.

    Output convention (shared by all reconstructors of ``kspace_attacks.adapters``): a complex
    image ``(B, 2, H, W)`` with real/imaginary parts in dim 1, in the physics' image domain and
    scaled like the ground truth (magnitude in about [0, 1] for the embedded data).

    :param n_state: channels of the state (image + memory), even, >= 4.
    :param n_hidden: width of the coupling U-Nets.
    :param n_steps: recurrent iterations (per-step weights).
    :param n_layers: coupling layers per iteration.
    :param normalize: per-sample RMS scale normalisation (see above).

    :Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.adapters.irim import IRIM
    >>> physics = dinv.physics.MRI(mask=torch.ones(32, 32))
    >>> y = physics.A(torch.rand(2, 2, 32, 32))
    >>> IRIM().eval()(y, physics).shape
    torch.Size([2, 2, 32, 32])
    """

    def __init__(self, n_state: int = DEFAULT_CONFIG["n_state"],
                 n_hidden: int = DEFAULT_CONFIG["n_hidden"],
                 n_steps: int = DEFAULT_CONFIG["n_steps"],
                 n_layers: int = DEFAULT_CONFIG["n_layers"], normalize: bool = True):
        super().__init__()
        if n_state < 4 or n_state % 2:
            raise ValueError(f"n_state: expected an even number >= 4, got {n_state}")
        self.config = {"n_state": n_state, "n_hidden": n_hidden, "n_steps": n_steps,
                       "n_layers": n_layers, "normalize": normalize}
        # fixed generator: the random orthogonal start must not depend on global RNG state
        gen = torch.Generator().manual_seed(0)
        self.blocks = nn.ModuleList(
            _InvertibleBlock(n_state, n_hidden, n_layers, gen) for _ in range(n_steps)
        )
        self.n_state = n_state
        self.normalize = normalize

    @staticmethod
    def _grad_update(h: Tensor, y: Tensor, physics: Any, sign: float = 1.0) -> Tensor:
        # channels 2-3 += grad of 0.5||A x - y||^2 at x = channels 0-1 (invertible given y)
        grad = physics.A_adjoint(physics.A(h[:, :2]) - y)
        return torch.cat([h[:, :2], h[:, 2:4] + sign * grad, h[:, 4:]], dim=1)

    def initial_state(self, y: Tensor, physics: Any) -> Tensor:
        """``[A^H y, 0, ..., 0]`` with ``n_state`` channels."""
        x0 = physics.A_adjoint(y)
        pad = x0.new_zeros(x0.shape[0], self.n_state - 2, *x0.shape[2:])
        return torch.cat([x0, pad], dim=1)

    def forward_state(self, h: Tensor, y: Tensor, physics: Any) -> Tensor:
        """Run the invertible recurrence on a state ``h`` (no scaling, no checks)."""
        h = self._grad_update(h, y, physics)
        for block in self.blocks:
            h = self._grad_update(block(h), y, physics)
        return h

    def reverse_state(self, h: Tensor, y: Tensor, physics: Any) -> Tensor:
        """Exact inverse of :meth:`forward_state` (up to floating point)."""
        for block in reversed(self.blocks):
            h = block.reverse(self._grad_update(h, y, physics, sign=-1.0))
        return self._grad_update(h, y, physics, sign=-1.0)

    def forward(self, y: Tensor, physics: Any, **kwargs: Any) -> Tensor:
        """Reconstruct ``(B, 2, H, W)`` complex images from k-space ``y``."""
        y, physics = check_inputs(y, physics)
        if self.normalize:
            scale = sample_scale(physics.A_adjoint(y))
            y = y / scale.view(-1, *([1] * (y.dim() - 1)))
        else:
            scale = 1.0
        h = self.forward_state(self.initial_state(y, physics), y, physics)
        return h[:, :2] * scale

    def __repr__(self) -> str:
        return f"IRIM({', '.join(f'{k}={v}' for k, v in self.config.items())})"


def build(**config: Any) -> IRIM:
    """An i-RIM with ``DEFAULT_CONFIG`` updated by ``config`` (random init)."""
    return IRIM(**{**DEFAULT_CONFIG, **config})


def load(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
         **kwargs: Any) -> IRIM:
    """Registry entry point: ``"embedded"`` (shipped), a safetensors path, or ``None`` (random).

    ``kwargs`` override architecture options (they must agree with the weights' config).
    """
    return _weights.load_model(IRIM, "irim", DEFAULT_CONFIG, weights, device, kwargs)


def load_adv(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
             **kwargs: Any) -> IRIM:
    """Registry entry point of ``irim_adv``: the shipped irim fine-tuned adversarially
    (``kspace-attacks train irim --robust adversarial``; settings in ``weights/irim_adv.json``)."""
    return _weights.load_model(IRIM, "irim_adv", DEFAULT_CONFIG, weights, device, kwargs)


def load_jit(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
             **kwargs: Any) -> IRIM:
    """Registry entry point of ``irim_jit``: the shipped irim fine-tuned on equal-norm noise
    (``kspace-attacks train irim --robust jitter``; settings in ``weights/irim_jit.json``)."""
    return _weights.load_model(IRIM, "irim_jit", DEFAULT_CONFIG, weights, device, kwargs)


def load_noiseless(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
                   **kwargs: Any) -> IRIM:
    """Registry entry point of ``irim_noiseless``: the weights of kspace-attacks 0.2, trained on
    noiseless k-space (the shipped ``irim`` continues them on the noisy preset; settings in
    ``weights/irim_noiseless.json``). The robust variants were fine-tuned from these."""
    return _weights.load_model(IRIM, "irim_noiseless", DEFAULT_CONFIG, weights, device, kwargs)
