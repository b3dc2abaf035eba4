"""Unsupervised score-based diffusion reconstructor (Song et al., ICLR 2022).

A score network trained on images only (DDPM epsilon-prediction on a VP-SDE, see
:mod:`kspace_attacks.adapters.training.diffusion`) is turned into an MRI reconstructor by a
reverse-time sampler that, after every predictor / corrector update, pulls the iterate
towards the measured k-space noised to the current time ("projection" data consistency of
Song, Shen, Xing & Ermon, *Solving inverse problems in medical imaging with score-based
generative models*, ICLR 2022).

With ``y_t = alpha_t * y + sigma_t * A z`` (z ~ N(0, I) in image space) the consistency step is

    x <- x - lam * A^H (A x - y_t)

For single-coil Cartesian MRI (A = M F, F orthonormal, M binary) this is exactly the paper's
``x <- F^H[(1 - lam) M F x + lam y_t + (1 - M) F x]``. For multi-coil physics it is the
natural generalisation (a gradient step on ||A x - y_t||^2 / 2, a contraction for lam <= 1
when the coil maps satisfy sum_n |S_n|^2 <= 1). The last step goes to t = 0, i.e. it is the
Tweedie denoising step, followed by hard consistency with the clean ``y``: the projection
onto {x : A x = y} (lam = 1 above for single coil; 30 conjugate-gradient iterations on
A A^H for multi-coil, where one gradient step is not a projection).

Predictor: DDIM(eta) from t to s on the network's x0 estimate (eta = 1: ancestral DDPM,
i.e. the reverse-diffusion predictor; eta = 0: deterministic DDIM, which does poorly with
freshly noised measurements); optional Langevin corrector (Song et al. 2021, Alg. 5). The x0
estimate is magnitude-clipped (``clip_x0``, like DDPM's clipping): near t = 1 it is
(x - sigma eps) / alpha with alpha ~ 3e-3, and unclipped the network's error blows up.

Internally images are multiplied by ``data_scale`` (2: magnitude in [0, 1] -> [0, 2]) so the
data have roughly unit scale like the N(0, I) prior; the scaling is linear so ``y`` is scaled
by the same factor and the output is scaled back (no shift, so A needs no affine correction).

``differentiable=True`` runs the sampler with autograd, one activation checkpoint per reverse
step (``torch.utils.checkpoint``, ``use_reentrant=False``), so the model can be attacked
white-box; all sampler noise is drawn from an explicit generator outside the checkpoints,
so the sampler is a deterministic function of ``y`` for a fixed seed and the gradient is that
of the seeded sampler (``n_samples > 1`` averages several seeded runs: an expectation over the
sampler's noise).

Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.adapters.diffusion import DiffusionReconstructor
    >>> from kspace_attacks.adapters.score_unet import ScoreUNet
    >>> model = DiffusionReconstructor(ScoreUNet(channels=(8, 16), attn_levels=()), steps=4)
    >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
    >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
    >>> y = physics(torch.rand(1, 2, 16, 16))
    >>> model(y, physics).shape
    torch.Size([1, 2, 16, 16])
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import torch
from deepinv.models import Reconstructor
from deepinv.physics import Physics
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from kspace_attacks._checks import check_nonneg_float, describe

from . import _weights
from ._base import check_inputs
from .sampler_settings import SAMPLER_DEFAULTS
from .sampler_settings import check_sampler_kwargs as _check_sampler_kwargs
from .score_unet import ScoreUNet, ScoreUNetConfig
from .vp_schedule import VPSchedule

__all__ = ["VPSchedule", "DiffusionReconstructor", "load", "load_3k", "SAMPLER_DEFAULTS"]


class DiffusionReconstructor(Reconstructor):
    r"""Score-based diffusion MRI reconstruction with projection data consistency.

    Intermediate steps use ``x <- x - lam A^H (A x - y_t)``; the final step (after the
    Tweedie denoising step) projects exactly onto ``{x : A x = y}`` (one step for single
    coil, conjugate gradients on ``A A^H`` for multi-coil).

    :param ScoreUNet net: epsilon-prediction network ``net(x_t, t)``; default: an untrained
        :class:`ScoreUNet` (use :func:`load` for the shipped weights).
    :param VPSchedule schedule: the schedule the network was trained with.
    :param float data_scale: images are multiplied by this inside the sampler.
    :param int steps: number of reverse (predictor) steps from t = 1 to t = 0.
    :param float lam: data-consistency weight in [0, 1] for intermediate steps (the final step
        always uses hard consistency, lam = 1, with the clean ``y``).
    :param float eta: predictor stochasticity: 1 = ancestral DDPM (reverse diffusion),
        0 = deterministic DDIM, in between: DDIM(eta).
    :param int corrector_steps: Langevin corrector steps after each predictor step (0 = none).
    :param float snr: corrector signal-to-noise ratio (step-size rule of Song et al. 2021).
    :param int n_samples: number of independent sampler runs averaged (batched together).
    :param float, None clip_x0: shrink the predicted clean image so that its magnitude is at
        most ``clip_x0`` (image units; like DDPM's x0 clipping, it stops the 1/alpha_t
        amplification of the network's error at large t). ``None``: no clipping.
    :param int, None seed: seed of the sampler noise for each call (same seed, same output);
        ``None`` draws from torch's global RNG.
    :param bool differentiable: keep the autograd graph (gradient w.r.t. ``y``).
    :param bool checkpointing: in differentiable mode, checkpoint every reverse step.
    :param bool final_dc: end with data consistency (default, the study's sampler); False
        returns the last Tweedie estimate (ablation of the final projection).
    :param float final_lam: weight in [0, 1] of the final consistency: the output is
        ``x0 + final_lam (P(x0) - x0)`` with ``P`` the projection onto ``{x : A x = y}``.
        1 (default) is hard consistency, right for noiseless data; with a noise floor, hard
        consistency copies the noise of every measured coefficient into the image and a small
        weight is better (tuned on the validation split: the shipped weights' JSON).
    :param bool channels_last: run the score network in NHWC memory layout (oneDNN's fast path
        on CPU: 0.81x the time of the default layout, outputs within 1e-6; measured by
        ``benchmarks/profile_sampler.py``); ``False``: the default layout.

    Any sampler parameter can also be overridden per call: ``model(y, physics, steps=10)``,
    as can the generator: ``model(y, physics, generator=g)``.

    Example:

        >>> import torch, deepinv as dinv
        >>> from kspace_attacks.adapters.score_unet import ScoreUNet
        >>> model = DiffusionReconstructor(ScoreUNet(channels=(8, 16), attn_levels=()), steps=3)
        >>> physics = dinv.physics.MRI(img_size=(1, 2, 8, 8))
        >>> y = physics(torch.rand(2, 2, 8, 8))
        >>> torch.equal(model(y, physics), model(y, physics))  # seeded
        True
    """

    HARD_DC_CG_ITERS = 30  # multi-coil final projection; A A^H is well conditioned on 64x64

    def __init__(
        self,
        net: ScoreUNet | None = None,
        schedule: VPSchedule | None = None,
        data_scale: float = 2.0,
        steps: int = SAMPLER_DEFAULTS["steps"],
        lam: float = SAMPLER_DEFAULTS["lam"],
        eta: float = SAMPLER_DEFAULTS["eta"],
        corrector_steps: int = SAMPLER_DEFAULTS["corrector_steps"],
        snr: float = SAMPLER_DEFAULTS["snr"],
        n_samples: int = SAMPLER_DEFAULTS["n_samples"],
        clip_x0: float | None = SAMPLER_DEFAULTS["clip_x0"],
        seed: int | None = 0,
        differentiable: bool = False,
        checkpointing: bool = True,
        device: str | torch.device = "cpu",
        final_dc: bool = SAMPLER_DEFAULTS["final_dc"],
        channels_last: bool = True,
        final_lam: float = SAMPLER_DEFAULTS["final_lam"],
    ):
        super().__init__()
        self.net = net if net is not None else ScoreUNet()
        if not isinstance(channels_last, bool):
            raise TypeError(f"channels_last: expected a bool, got {describe(channels_last)}")
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.schedule = schedule or VPSchedule()
        self.data_scale = check_nonneg_float("data_scale", data_scale, strictly_positive=True)
        kw = _check_sampler_kwargs(
            dict(
                steps=steps,
                lam=lam,
                eta=eta,
                corrector_steps=corrector_steps,
                snr=snr,
                n_samples=n_samples,
                clip_x0=clip_x0,
                seed=seed,
                differentiable=differentiable,
                checkpointing=checkpointing,
                final_dc=final_dc,
                final_lam=final_lam,
            )
        )
        self.sampler_kwargs: dict[str, Any] = kw
        self.to(device)

    def extra_repr(self) -> str:
        kw = ", ".join(f"{k}={v!r}" for k, v in self.sampler_kwargs.items())
        return f"schedule={self.schedule.kind!r}, data_scale={self.data_scale}, {kw}"

    # -- physics helpers: the n_samples copies are stacked along the batch dim, so the
    #    operator is applied chunk-wise (a per-sample mask of batch B would not broadcast).
    @staticmethod
    def _A(physics: Physics, x: Tensor, n: int) -> Tensor:
        if n == 1:
            return physics.A(x)
        return torch.cat([physics.A(c) for c in x.chunk(n)], dim=0)

    @staticmethod
    def _AH(physics: Physics, y: Tensor, n: int) -> Tensor:
        if n == 1:
            return physics.A_adjoint(y)
        return torch.cat([physics.A_adjoint(c) for c in y.chunk(n)], dim=0)

    def _dc(self, x: Tensor, y_t: Tensor, lam: float, physics: Physics, n: int) -> Tensor:
        """x <- x - lam A^H(A x - y_t) (projection onto the measurements for lam = 1)."""
        if lam == 0:
            return x
        return x - lam * self._AH(physics, self._A(physics, x, n) - y_t, n)

    def _project(self, x: Tensor, y: Tensor, physics: Physics, n: int) -> Tensor:
        """Hard consistency: the closest x' to x with A x' = y, x' = x + A^H (A A^H)^-1 (y - A x).

        Single coil: A A^H = M is the identity on the measured entries, so this is one step
        x + A^H(y - A x). Multi-coil: (A A^H)^-1 by ``HARD_DC_CG_ITERS`` fixed conjugate-gradient
        iterations (fixed count: deterministic and differentiable).
        """
        r = y - self._A(physics, x, n)
        if y.dim() == 4:
            return x + self._AH(physics, r, n)
        dims = tuple(range(1, y.dim()))
        tiny = torch.finfo(y.dtype).tiny ** 0.5

        def dot(a: Tensor, b: Tensor) -> Tensor:
            return (a * b).sum(dims, keepdim=True)

        u, p, rs = torch.zeros_like(r), r, dot(r, r)
        for _ in range(self.HARD_DC_CG_ITERS):
            ap = self._A(physics, self._AH(physics, p, n), n)
            alpha = rs / dot(p, ap).clamp_min(tiny)
            u = u + alpha * p
            r = r - alpha * ap
            rs_new = dot(r, r)
            p = r + (rs_new / rs.clamp_min(tiny)) * p
            rs = rs_new
        return x + self._AH(physics, u, n)

    def _final_dc(self, x: Tensor, y: Tensor, physics: Physics, n: int, weight: float) -> Tensor:
        """``x + weight (P(x) - x)``: the projection for weight 1, a shrunk step below."""
        p = self._project(x, y, physics, n)
        return p if weight == 1 else x + weight * (p - x)

    def _eps(self, x: Tensor, t: float) -> Tensor:
        t_ = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        if self.channels_last:  # NHWC convolutions: 0.81x the time on CPU (profile_sampler.py)
            return self.net(x.contiguous(memory_format=torch.channels_last), t_).contiguous()
        return self.net(x, t_)

    def _step(
        self,
        x: Tensor,
        y: Tensor,
        z_pred: Tensor,
        z_y: Tensor,
        z_corr: Tensor,
        *,
        t: float,
        s: float,
        physics: Physics,
        n: int,
        kw: dict[str, Any],
    ) -> Tensor:
        """One reverse step t -> s (< t): predictor, consistency, [corrector, consistency]*k."""
        ab_t = self.schedule.alpha_bar(t)
        ab_s = self.schedule.alpha_bar(s) if s > 0 else 1.0
        eps = self._eps(x, t)
        x0 = (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        if kw["clip_x0"] is not None:  # |x0| <= clip_x0 (in image units), phase kept
            mag = x0.pow(2).sum(1, keepdim=True).add(1e-12).sqrt()
            x0 = x0 * (self.data_scale * kw["clip_x0"] / mag).clamp(max=1.0)
        if s <= 0:  # final Tweedie denoising step; the caller adds hard consistency
            return x0
        # DDIM(eta) predictor; eta = 1 is the ancestral DDPM posterior q(x_s | x_t, x0)
        c = kw["eta"] * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
        eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)  # consistent with clipped x0
        x = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - c**2, 0.0)) * eps
        if c > 0:
            x = x + c * z_pred
        # measurements noised to time s: y_s = alpha_s y + sigma_s A z
        y_s = math.sqrt(ab_s) * y + math.sqrt(1 - ab_s) * self._A(physics, z_y, n)
        x = self._dc(x, y_s, kw["lam"], physics, n)
        for k in range(kw["corrector_steps"]):  # Langevin corrector (Song et al. 2021, Alg. 5)
            score = -self._eps(x, s) / math.sqrt(1 - ab_s)
            z = z_corr[k]
            dims = tuple(range(1, x.dim()))
            ratio = z.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1).clamp_min(1e-12)
            step = (2 * (kw["snr"] * ratio) ** 2).view(-1, *([1] * len(dims)))
            x = x + step * score + torch.sqrt(2 * step) * z
            x = self._dc(x, y_s, kw["lam"], physics, n)
        return x

    def forward(
        self,
        y: Tensor,
        physics: Physics,
        generator: torch.Generator | None = None,
        **sampler_kwargs: Any,
    ) -> Tensor:
        r"""Reconstruct complex images (B, 2, H, W) from k-space ``y`` (deepinv layout).

        :param torch.Tensor y: (B, 2, H, W) single-coil or (B, 2, N, H, W) multi-coil k-space.
        :param deepinv.physics.Physics physics: ``MRI`` / ``MultiCoilMRI`` (carries the mask).
        :param torch.Generator generator: sampler noise source (overrides ``seed``).
        :param sampler_kwargs: per-call overrides of the constructor's sampler parameters.
        """
        kw = {**self.sampler_kwargs, **_check_sampler_kwargs(sampler_kwargs)}
        return self._sample(y, physics, generator, kw, (kw["final_dc"],))[kw["final_dc"]]

    def sample_variants(
        self,
        y: Tensor,
        physics: Physics,
        generator: torch.Generator | None = None,
        **sampler_kwargs: Any,
    ) -> dict[bool, Tensor]:
        r"""The reconstructions with and without the final hard data consistency, from one
        sampler run: ``{True: with, False: without}``.

        Both come from the same trajectory (the final projection is the only difference), so
        each equals what ``forward`` returns with ``final_dc`` set accordingly, at the cost of
        one run instead of two.

            >>> import torch, deepinv as dinv
            >>> from kspace_attacks.adapters.score_unet import ScoreUNet
            >>> model = DiffusionReconstructor(ScoreUNet(channels=(8, 16), attn_levels=()), steps=3)
            >>> physics = dinv.physics.MRI(img_size=(1, 2, 8, 8))
            >>> y = physics(torch.rand(1, 2, 8, 8))
            >>> both = model.sample_variants(y, physics)
            >>> torch.equal(both[False], model(y, physics, final_dc=False))
            True
        """
        kw = {**self.sampler_kwargs, **_check_sampler_kwargs(sampler_kwargs)}
        return self._sample(y, physics, generator, kw, (True, False))

    def trajectory_key(self) -> tuple:
        """What the sampler's trajectory depends on, apart from ``final_dc``: two models with
        equal keys differ only in the final projection (see :meth:`sample_variants`)."""
        kw = {k: v for k, v in self.sampler_kwargs.items() if k != "final_dc"}
        return (type(self).__name__, _weights_fingerprint(self.net), repr(self.schedule.to_dict()),
                self.data_scale, self.channels_last, tuple(sorted(kw.items())))

    def _sample(
        self,
        y: Tensor,
        physics: Physics,
        generator: torch.Generator | None,
        kw: dict[str, Any],
        finals: tuple[bool, ...],
    ) -> dict[bool, Tensor]:
        """Run the sampler once; the outputs with final consistency (``True``) and/or without
        (``False``) as asked for by ``finals``."""
        y, physics = check_inputs(y, physics)
        h, w = y.shape[-2:]
        div = 2 ** (len(self.net.config.channels) - 1)
        if h % div or w % div:
            raise ValueError(
                f"y: expected spatial size divisible by {div} (score network depth), got {(h, w)}"
            )
        param = next(self.net.parameters())
        in_dtype = y.dtype
        y = y.to(device=param.device, dtype=param.dtype)
        b, n = y.shape[0], kw["n_samples"]
        if generator is None:
            generator = torch.Generator(device=y.device)
            if kw["seed"] is None:
                generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
            else:
                generator.manual_seed(kw["seed"])

        def randn(*shape: int) -> Tensor:
            return torch.randn(shape, generator=generator, device=y.device, dtype=y.dtype)

        ys = self.data_scale * y
        if n > 1:
            ys = ys.repeat(n, *([1] * (y.dim() - 1)))
        shape = (n * b, 2, h, w)
        ts = [1.0 - i / kw["steps"] for i in range(kw["steps"] + 1)]
        ts[-1] = 0.0
        differentiable = kw["differentiable"]
        use_ckpt = differentiable and kw["checkpointing"] and torch.is_grad_enabled()
        empty = y.new_zeros(0)
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            x = randn(*shape)
            for i in range(kw["steps"]):
                t, s = ts[i], ts[i + 1]
                last = s <= 0
                # noise drawn here, outside the checkpoint, so recomputation is identical
                z_pred = randn(*shape) if (kw["eta"] > 0 and not last) else empty
                z_y = randn(*shape) if not last else empty
                k = 0 if last else kw["corrector_steps"]
                z_corr = randn(k, *shape) if k else empty
                step_kw = dict(t=t, s=s, physics=physics, n=n, kw=kw)
                if use_ckpt:
                    x = checkpoint(
                        self._step, x, ys, z_pred, z_y, z_corr, use_reentrant=False, **step_kw
                    )
                else:
                    x = self._step(x, ys, z_pred, z_y, z_corr, **step_kw)
            # hard consistency with the clean data; final_dc=False keeps the denoised estimate:
            # the ablation that shows how much of the sampler's sensitivity the last step's copy
            # of the measurements explains
            outs = {final: self._final_dc(x, ys, physics, n, kw["final_lam"]) if final else x
                    for final in finals}
            for final, x in outs.items():
                x = x / self.data_scale
                if n > 1:
                    x = x.view(n, b, 2, h, w).mean(0)
                outs[final] = x.to(in_dtype)
        return outs


def _weights_fingerprint(net: torch.nn.Module) -> int:
    """A checksum of a network's parameters and buffers (equal weights, equal fingerprint)."""
    crc = 0
    for name, t in net.state_dict().items():
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes(), crc)
    return crc


def load(
    weights: str | Path | None = "embedded",
    device: str | torch.device = "cpu",
    **sampler_kwargs: Any,
) -> DiffusionReconstructor:
    r"""Build an eval-mode :class:`DiffusionReconstructor`.

    :param weights: ``"embedded"`` (the shipped weights trained on the embedded brain slices),
        a path to a ``.safetensors`` file written by
        :func:`kspace_attacks.adapters.training.diffusion.export` (architecture, schedule and
        tuned sampler defaults are read from its metadata), or ``None`` (untrained network,
        default architecture; for tests).
    :param device: torch device.
    :param sampler_kwargs: overrides of the sampler defaults (``steps``, ``lam``, ``eta``,
        ``corrector_steps``, ``snr``, ``n_samples``, ``clip_x0``, ``seed``, ``differentiable``,
        ``checkpointing``).

    The network's parameters are frozen (``requires_grad=False``): attacks only need
    gradients w.r.t. ``y``.

    Example:

        >>> from kspace_attacks.adapters.diffusion import load
        >>> model = load(None, steps=5)
        >>> model.sampler_kwargs["steps"]
        5
    """
    return _load_named("diffusion", weights, device, sampler_kwargs)


def load_3k(
    weights: str | Path | None = "embedded",
    device: str | torch.device = "cpu",
    **sampler_kwargs: Any,
) -> DiffusionReconstructor:
    """Registry entry point of ``diffusion_3k``: the diffusion reconstructor of kspace-attacks
    0.3 (the score network after 3,000 training steps, the sampler tuned on noiseless data with
    hard final consistency), kept so that findings can be compared across model quality
    (``weights/diffusion_3k.json``)."""
    return _load_named("diffusion_3k", weights, device, sampler_kwargs)


def _load_named(name: str, weights: Any, device: str | torch.device,
                sampler_kwargs: dict[str, Any]) -> DiffusionReconstructor:
    path = _weights.weights_path(name, weights)
    meta: dict[str, Any] = _weights.read_config(path) if path is not None else {}
    arch = ScoreUNetConfig.from_dict(meta.get("architecture", {}))
    schedule = VPSchedule(**meta.get("schedule", {}))
    kw = {**SAMPLER_DEFAULTS, **meta.get("sampler_defaults", {}), **sampler_kwargs}
    net = ScoreUNet(arch)
    if path is not None:
        _weights.load_state(net, path)
    net.requires_grad_(False)
    model = DiffusionReconstructor(
        net, schedule, data_scale=float(meta.get("data_scale", 2.0)), **kw
    )
    return _weights.finish(model, device)
