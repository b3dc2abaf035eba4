r"""Center smoothing of a reconstructor: the center of its outputs under Gaussian k-space noise.

The smoothed model :math:`\hat f(y)` draws ``n`` noisy measurements
:math:`y + \sigma_{abs} M g_j` (:math:`g_j` standard Gaussian, :math:`M` the sampling mask),
reconstructs each with the base model and returns the output with the smallest median l2
distance to all outputs: the sample approximation of the center of the smallest ball holding
half of the output distribution (Kumar & Goldstein, NeurIPS 2021, Sec. 3; the authors'
``Smooth.meb``). The approximation factor of this choice is ``beta = 2``: a sample inside the
optimal ball sees half of the samples within twice its radius.

Noise convention (the one that makes ``eps / sigma`` an honest comparison): the noise has
per-entry standard deviation :math:`\sigma \|y\|_2` on every measured real entry (real and
imaginary parts, every coil) and is zero elsewhere, so that a budget ``eps`` (perturbation
norm :math:`\epsilon \|y\|_2`, :class:`~kspace_attacks.KSpaceL2`) and the noise enter the
certificate only through :math:`\epsilon_{abs} / \sigma_{abs} = \epsilon / \sigma`, as in
randomized smoothing of classifiers. The price is dimension: the noise's expected norm is
:math:`\sigma \sqrt{m} \|y\|_2` for ``m`` measured real entries (``m = 2048`` on the embedded
64 x 64 data, so ``sigma = 0.01`` is noise of about 45 % of ``||y||``);
:func:`noise_norm_ratio` reports it.

Draws are keyed: draw ``j`` of batch row ``i`` in stage ``s`` comes from its own generator
seeded by ``(seed, s, i, call, j)``, so a sample's noise does not depend on ``batch_size``
(how draws are chunked into model calls) nor on the other rows.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from .._checks import check_image, check_kspace, check_nonneg_float, check_positive_int, describe
from ..threat import KSpaceL2, draw, sampling_mask
from ..attacks.base import Reconstructor
from .center import median_center

__all__ = ["SmoothedModel", "NoiseSource", "noise_std", "noise_norm_ratio", "noisy_outputs",
           "smoothed_center"]



class NoiseSource:
    """Keyed standard Gaussian draws: draw ``j`` of row ``i`` has its own seeded generator.

    :param int seed: the user's seed.
    :param str stage: which procedure draws (``"predict"``, ``"check"``, ``"cert"``, ``"attack"``):
        stages never share draws.
    :param int call: model call number (a resampling smoothed model draws anew per call).
    """

    def __init__(self, seed: int = 0, stage: str = "predict", call: int = 0) -> None:
        self.seed, self.stage, self.call = seed, stage, call

    def key(self, row: int, index: int) -> int:
        text = f"{self.seed}/{self.stage}/{row}/{self.call}/{index}".encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1

    def draws(self, row: int, start: int, count: int, shape: tuple[int, ...]) -> Tensor:
        """Draws ``start .. start + count - 1`` of ``row``: float64 CPU, ``(count, *shape)``."""
        gens = [torch.Generator().manual_seed(self.key(row, j)) for j in range(start, start + count)]
        return draw("randn", (count, *shape), gens)


def noise_std(y: Tensor, sigma: float) -> Tensor:
    """Per-entry noise standard deviation :math:`\\sigma \\|y\\|_2` per sample, shape ``(B,)``."""
    return KSpaceL2(eps=sigma).budget_unchecked(y)[:, 0]


def noise_norm_ratio(y: Tensor, physics: Any, sigma: float) -> Tensor:
    """Expected noise norm over :math:`\\|y\\|_2`: :math:`\\sigma \\sqrt{m}` with ``m`` the
    measured real entries of each sample, shape ``(B,)`` (for large ``m``)."""
    m = sampling_mask(y, physics).expand_as(y).flatten(1).sum(dim=1)
    return sigma * m.double().sqrt()


def row_physics(physics: Any, row: int, k: int, batch: int, cache: dict | None = None) -> Any:
    """The physics of ``k`` copies of batch row ``row``: per-sample masks and coil maps (leading
    dimension ``batch`` > 1) are cut to that row and repeated; shared ones are kept."""
    if cache is not None and (row, k) in cache:
        return cache[(row, k)]
    updates = {}
    for name in ("mask", "coil_maps"):
        t = getattr(physics, name, None)
        if batch > 1 and isinstance(t, Tensor) and t.dim() >= 4 and t.shape[0] == batch:
            updates[name] = t[row : row + 1].repeat(k, *([1] * (t.dim() - 1)))
    out = physics
    if updates:
        out = copy.deepcopy(physics)
        out.update_parameters(**updates)
    if cache is not None:
        cache[(row, k)] = out
    return out


def noisy_outputs(
    model: Reconstructor,
    y: Tensor,
    physics: Any,
    row: int,
    std: float,
    source: NoiseSource,
    n: int,
    batch_size: int,
    cache: dict | None = None,
    start: int = 0,
) -> Iterator[Tensor]:
    """Base outputs :math:`f(y_i + \\text{std}\\, M g_j)` for draws ``start .. start + n - 1``
    of row ``i``, in chunks of at most ``batch_size`` draws per model call (no gradient)."""
    mask = sampling_mask(y, physics)
    mask = mask[row if mask.shape[0] > 1 else 0][None]
    y_row = y[row : row + 1]
    for lo in range(start, start + n, batch_size):
        k = min(batch_size, start + n - lo)
        g = source.draws(row, lo, k, tuple(y.shape[1:])).to(device=y.device, dtype=y.dtype)
        with torch.no_grad():
            out = model(y_row + std * mask * g, row_physics(physics, row, k, y.shape[0], cache))
        out = check_image("model(y + noise, physics)", out)
        if out.shape[0] != k:
            raise ValueError(f"model(y + noise, physics): expected a batch of {k} images, got "
                             f"{describe(out)}")
        yield out


def smoothed_center(
    model: Reconstructor,
    y: Tensor,
    physics: Any,
    row: int,
    std: float,
    source: NoiseSource,
    n: int,
    batch_size: int,
    cache: dict | None = None,
) -> tuple[Tensor, int, float]:
    """Center of ``n`` noisy outputs of row ``row``: ``(output (1, C, H, W), draw index,
    median radius)`` (the minimum-median-distance sample, :func:`median_center`)."""
    outs = torch.cat(list(noisy_outputs(model, y, physics, row, std, source, n, batch_size, cache)))
    index, radius = median_center(outs)
    return outs[index : index + 1], index, radius


class SmoothedModel(torch.nn.Module):
    r"""Center smoothing of a reconstructor, itself a reconstructor ``f(y, physics)``.

    Returns, per sample, the output of ``model`` on ``y + noise`` (over ``n`` Gaussian draws on
    the measured entries, per-entry std :math:`\sigma \|y\|_2`; see the module docstring) with
    the smallest median distance to the others. With gradients enabled and ``y`` requiring
    grad, the selected draw is recomputed with autograd (one more model call per row), so
    attacks run on the smoothed model: the gradient is the base model's at the selected noisy
    input (the selection itself is piecewise constant).

    :param model: the base reconstructor ``model(y, physics) -> x``.
    :param float sigma: noise level relative to :math:`\|y\|_2` per measured real entry.
    :param int n: draws per sample and call (model calls: ``ceil(n / batch_size)`` per row).
    :param int batch_size: noisy inputs per model call.
    :param int seed: seed of the keyed draws.
    :param bool resample: ``False`` (default): every call uses the same draws (a deterministic
        function of ``y``: common random numbers); ``True``: fresh draws per call (a stochastic
        model; attack it with ``eot > 1``).
    :param str stage: key of the draws (the certificate's center is ``stage="predict"``).
    :param torch.Tensor|None reference: clean k-space ``(B, ...)`` whose per-sample norms fix
        the noise (std :math:`\sigma \|\text{reference}_i\|_2`), so that the smoothing
        distribution does not move with a perturbation of the input, as the certificate
        requires; ``None``: :math:`\sigma` times the norm of each input row (then ``y`` and
        ``y + delta`` are smoothed with slightly different noise levels).

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> from kspace_attacks.certify import SmoothedModel
        >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
        >>> y = physics(torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0)))
        >>> smoothed = SmoothedModel(lambda y, p: p.A_adjoint(y), sigma=0.01, n=32, reference=y)
        >>> x = smoothed(y, physics)
        >>> x.shape, smoothed.forward_evals
        (torch.Size([2, 2, 16, 16]), 64)
        >>> torch.equal(x, smoothed(y, physics))  # same draws every call
        True
    """

    def __init__(
        self,
        model: Reconstructor,
        sigma: float = 0.01,
        n: int = 64,
        batch_size: int = 64,
        seed: int = 0,
        resample: bool = False,
        stage: str = "predict",
        reference: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
        self.model = model
        self.sigma = check_nonneg_float("sigma", sigma, strictly_positive=True)
        self.n = check_positive_int("n", n)
        self.batch_size = check_positive_int("batch_size", batch_size)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {describe(seed)}")
        if not isinstance(resample, bool):
            raise TypeError(f"resample: expected a bool, got {describe(resample)}")
        self.seed, self.resample, self.stage = seed, resample, stage
        self.reference = None if reference is None else check_kspace("reference", reference).detach()
        self.calls = 0
        #: base-model images reconstructed so far (every row's draws, plus recomputations)
        self.forward_evals = 0
        #: per row of the last call: selected draw and median radius
        self.last_index: list[int] = []
        self.last_radius: list[float] = []

    def forward(self, y: Tensor, physics: Any) -> Tensor:
        y = check_kspace("y", y)
        source = NoiseSource(self.seed, self.stage, self.calls if self.resample else 0)
        self.calls += 1
        std = noise_std(self._reference(y), self.sigma)
        cache: dict = {}
        centers, self.last_index, self.last_radius = [], [], []
        for i in range(y.shape[0]):
            z, index, radius = smoothed_center(self.model, y.detach(), physics, i, float(std[i]),
                                               source, self.n, self.batch_size, cache)
            centers.append(z)
            self.last_index.append(index)
            self.last_radius.append(radius)
        self.forward_evals += y.shape[0] * self.n
        if not (torch.is_grad_enabled() and y.requires_grad):
            return torch.cat(centers)
        # the selected draws again, now through autograd (one batched call)
        shape = tuple(y.shape[1:])
        g = torch.cat([source.draws(i, j, 1, shape) for i, j in enumerate(self.last_index)])
        g = g.to(device=y.device, dtype=y.dtype) * sampling_mask(y, physics)
        self.forward_evals += y.shape[0]
        return self.model(y + std.to(y.dtype).view(-1, *([1] * (y.dim() - 1))) * g, physics)

    def _reference(self, y: Tensor) -> Tensor:
        if self.reference is None:
            return y.detach()
        if self.reference.shape[0] != y.shape[0]:
            raise ValueError(f"y: expected the batch size of reference ({self.reference.shape[0]}), "
                             f"got shape {tuple(y.shape)}")
        return self.reference.to(device=y.device, dtype=y.dtype)

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma}, n={self.n}, batch_size={self.batch_size}, seed={self.seed}, "
                f"resample={self.resample}")
