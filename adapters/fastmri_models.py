"""Wrappers for fastMRI's ``Unet`` and ``VarNet`` (optional extra ``kspace-attacks[fastmri]``).

fastMRI stores complex data with a trailing axis of size 2 (``(..., H, W, 2)``) and a coil
axis in dim 1; deepinv puts real/imag in dim 1 (``(B, 2, [N,] H, W)``). The conversion happens
here, at the boundary, and nowhere else. Both libraries use the same FFT: centred
(``ifftshift -> fftn(norm="ortho") -> fftshift`` over H, W), so k-space needs no rescaling
or reordering (checked in ``tests/test_adapters_supervised.py``).

Pretrained fastMRI state dicts (``*.pt``) are read with ``torch.load(weights_only=True)``
(no code execution); ``.safetensors`` files work too. No weights are shipped: pass a path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from deepinv.models import Reconstructor
from torch import Tensor, nn

from . import _weights
from ._base import check_inputs
from kspace_attacks._checks import check_choice, describe

_INSTALL_HINT = 'fastMRI models need the optional extra: pip install "kspace-attacks[fastmri]"'


def _fastmri() -> Any:
    """Import ``fastmri`` lazily with an actionable error message."""
    try:
        import fastmri  # noqa: F401
        import fastmri.models  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return fastmri


def to_fastmri(y: Tensor) -> Tensor:
    """deepinv k-space ``(B, 2, H, W)`` / ``(B, 2, N, H, W)`` -> fastMRI ``(B, N, H, W, 2)``."""
    if y.dim() == 4:
        y = y[:, :, None]
    return y.permute(0, 2, 3, 4, 1).contiguous()


def from_fastmri(k: Tensor) -> Tensor:
    """fastMRI ``(B, N, H, W, 2)`` -> deepinv multi-coil layout ``(B, 2, N, H, W)``."""
    return k.permute(0, 4, 1, 2, 3).contiguous()


def fastmri_mask(physics: Any, batch: int) -> Tensor:
    """The physics' sampling mask as a fastMRI boolean mask ``(B, 1, H, W, 1)``."""
    mask = physics.mask
    mask = mask[:, 0] if mask.dim() == 4 else mask.reshape(-1, *mask.shape[-2:])[:1]
    return mask.expand(batch, -1, -1)[:, None, :, :, None] > 0.5


def _read_state(path: Path) -> dict[str, Tensor]:
    """State dict from a fastMRI ``.pt``/Lightning ``.ckpt`` or a ``.safetensors`` file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:  # Lightning checkpoint
        state = state["state_dict"]
    prefixes = ("unet.", "varnet.", "model.")
    return {next((k[len(p):] for p in prefixes if k.startswith(p)), k): v
            for k, v in state.items()}


def _load_into(net: nn.Module, name: str, weights: Any) -> None:
    if weights is None:
        return
    if isinstance(weights, str) and weights == _weights.EMBEDDED:
        raise FileNotFoundError(
            f"weights: no embedded weights for {name!r}; download a fastMRI state dict "
            f"(e.g. from the fastMRI model zoo) and pass its path, or weights=None"
        )
    if not isinstance(weights, (str, os.PathLike)) or not Path(weights).is_file():
        raise FileNotFoundError(
            f"weights: expected a path to an existing .pt/.safetensors file, got "
            f"{describe(weights)}"
        )
    net.load_state_dict(_read_state(Path(weights)), strict=True)


class FastMRIUnet(Reconstructor):
    r"""fastMRI ``Unet`` applied to the zero-filled image :math:`A^H y`.

    ``input="magnitude"``: the network sees :math:`|A^H y|` (1 channel), as in fastMRI's
    single-coil U-Net baseline (``in_chans=out_chans=1``); ``input="complex"``: real and
    imaginary parts (``in_chans=out_chans=2``). With ``normalize=True`` the input is
    standardised per sample (fastMRI's ``normalize_instance``) and the output un-standardised.

    Output convention (shared by all reconstructors of ``kspace_attacks.adapters``): a complex
    image ``(B, 2, H, W)``, real/imag in dim 1 (a magnitude output gets a zero imaginary part).

    :param net: a ``fastmri.models.Unet`` (built with ``unet_kwargs`` if ``None``).
    :param input: ``"magnitude"`` or ``"complex"``.
    :param normalize: per-sample standardisation as in fastMRI's data transform.

    :Example:

    >>> import torch, deepinv as dinv  # doctest: +SKIP
    >>> from kspace_attacks.adapters.fastmri_models import FastMRIUnet  # doctest: +SKIP
    >>> physics = dinv.physics.MRI(mask=torch.ones(32, 32))  # doctest: +SKIP
    >>> y = physics.A(torch.rand(1, 2, 32, 32))  # doctest: +SKIP
    >>> FastMRIUnet(chans=8, num_pool_layers=2).eval()(y, physics).shape  # doctest: +SKIP
    torch.Size([1, 2, 32, 32])
    """

    def __init__(self, net: nn.Module | None = None, input: str = "magnitude",
                 normalize: bool = True, **unet_kwargs: Any):
        super().__init__()
        self.input = check_choice("input", input, ("magnitude", "complex"))
        if net is None:
            ch = 1 if input == "magnitude" else 2
            net = _fastmri().models.Unet(**{"in_chans": ch, "out_chans": ch, **unet_kwargs})
        self.net = net
        self.normalize = normalize

    def forward(self, y: Tensor, physics: Any, **kwargs: Any) -> Tensor:
        """Reconstruct ``(B, 2, H, W)`` complex images from k-space ``y``."""
        y, physics = check_inputs(y, physics)
        x0 = physics.A_adjoint(y)
        if self.input == "magnitude":
            x0 = x0.pow(2).sum(dim=1, keepdim=True).sqrt()
        if self.normalize:
            mean = x0.mean(dim=(-3, -2, -1), keepdim=True)
            std = x0.std(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-11)
            out = self.net((x0 - mean) / std) * std + mean
        else:
            out = self.net(x0)
        if out.shape[1] == 1:
            out = torch.cat([out, torch.zeros_like(out)], dim=1)
        return out


class FastMRIVarNet(Reconstructor):
    r"""fastMRI end-to-end ``VarNet`` on (multi-coil or single-coil) k-space.

    ``y`` is converted from deepinv's ``(B, 2, [N,] H, W)`` to fastMRI's ``(B, N, H, W, 2)``
    and the physics' mask to a boolean ``(B, 1, H, W, 1)`` mask (VarNet reads the number of
    low frequencies from its first row, i.e. it expects Cartesian column masks). VarNet
    estimates its own coil sensitivities and returns the RSS magnitude image; it is returned
    as a complex image with zero imaginary part (fastMRI also centre-crops to the target
    size afterwards; this wrapper does not crop).

    Output convention (shared by all reconstructors of ``kspace_attacks.adapters``): a complex
    image ``(B, 2, H, W)``, real/imag in dim 1.

    :param net: a ``fastmri.models.VarNet`` (built with ``varnet_kwargs`` if ``None``).
    """

    def __init__(self, net: nn.Module | None = None, **varnet_kwargs: Any):
        super().__init__()
        self.net = net if net is not None else _fastmri().models.VarNet(**varnet_kwargs)

    def forward(self, y: Tensor, physics: Any, **kwargs: Any) -> Tensor:
        """Reconstruct ``(B, 2, H, W)`` images (zero imaginary part) from k-space ``y``."""
        y, physics = check_inputs(y, physics)
        k = to_fastmri(y)
        mask = fastmri_mask(physics, k.shape[0]).to(k.device)
        mag = self.net(k, mask, **kwargs)  # (B, H, W)
        mag = mag[:, None] if mag.dim() == 3 else mag
        return torch.cat([mag, torch.zeros_like(mag)], dim=1)


def load_unet(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
              **kwargs: Any) -> FastMRIUnet:
    """Registry entry point ``fastmri_unet``: a state-dict path or ``None`` (nothing is shipped).

    ``kwargs``: ``input``, ``normalize`` and ``fastmri.models.Unet`` options (``chans``,
    ``num_pool_layers``, ...; fastMRI's defaults: 32 channels, 4 pooling layers).
    """
    model = FastMRIUnet(**kwargs)
    _load_into(model.net, "fastmri_unet", weights)
    return _weights.finish(model, device)


def load_varnet(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
                **kwargs: Any) -> FastMRIVarNet:
    """Registry entry point ``fastmri_varnet``: a state-dict path or ``None`` (nothing shipped).

    ``kwargs`` go to ``fastmri.models.VarNet`` (``num_cascades``, ``chans``, ``pools``,
    ``sens_chans``, ``sens_pools``; the fastMRI leaderboard model uses 12 cascades,
    18 chans, 8 sens_chans).
    """
    model = FastMRIVarNet(**kwargs)
    _load_into(model.net, "fastmri_varnet", weights)
    return _weights.finish(model, device)
