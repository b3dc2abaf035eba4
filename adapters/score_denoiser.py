"""The diffusion reconstructor's score network as a deepinv Gaussian denoiser.

deepinv's diffusion solvers (:class:`deepinv.sampling.DPS`, :class:`deepinv.sampling.DiffPIR`,
:class:`deepinv.sampling.PosteriorDiffusion`, ...) are written against a denoiser
``D(x, sigma)`` that removes white Gaussian noise of standard deviation ``sigma`` from an
image. An epsilon-prediction network on a variance-preserving schedule is such a denoiser
after a change of variables (Tweedie's formula):

    x = u + sigma n,  ds = data_scale,  alpha_bar = 1 / (1 + (ds sigma)^2),
    x_t = sqrt(alpha_bar) ds x,  D(x, sigma) = (x_t - sqrt(1 - alpha_bar) eps(x_t, t)) / (sqrt(alpha_bar) ds)

with ``t`` the schedule's time of ``alpha_bar``. Images are the project's complex images
``(B, 2, H, W)`` in image units (magnitude in [0, 1]); solvers that assume images in [0, 1]
are handled by :class:`~kspace_attacks.adapters.deepinv_solvers.SolverReconstructor`.

Example:

    >>> import torch
    >>> from kspace_attacks.adapters.score_denoiser import ScoreDenoiser
    >>> from kspace_attacks.adapters.score_unet import ScoreUNet
    >>> d = ScoreDenoiser(ScoreUNet(channels=(8, 16), attn_levels=()))
    >>> d(torch.rand(2, 2, 16, 16), 0.1).shape
    torch.Size([2, 2, 16, 16])
"""

from __future__ import annotations

from typing import Any

import torch
from deepinv.models import Denoiser
from torch import Tensor

from kspace_attacks._checks import check_nonneg_float, describe

from .score_unet import ScoreUNet
from .vp_schedule import VPSchedule

__all__ = ["ScoreDenoiser", "from_reconstructor"]


class ScoreDenoiser(Denoiser):
    r"""Gaussian denoiser ``D(x, sigma)`` from an epsilon-prediction score network.

    :param ScoreUNet net: epsilon-prediction network ``net(x_t, t)``.
    :param VPSchedule schedule: the schedule the network was trained with.
    :param float data_scale: images were multiplied by this in training.
    :param float, None clip: shrink the estimate so that its magnitude is at most ``clip``
        (image units, phase kept; ``None``: no clipping), like the sampler's ``clip_x0``.

    ``sigma`` may be a float or a tensor with one value per batch item; inputs of any float
    dtype are accepted (deepinv's solvers run in float64) and returned in that dtype.
    """

    def __init__(self, net: ScoreUNet, schedule: VPSchedule | None = None,
                 data_scale: float = 2.0, clip: float | None = 1.0):
        super().__init__()
        if not isinstance(net, torch.nn.Module):
            raise TypeError(f"net: expected a score network (nn.Module), got {describe(net)}")
        self.net = net
        self.schedule = schedule or VPSchedule()
        self.data_scale = check_nonneg_float("data_scale", data_scale, strictly_positive=True)
        self.clip = None if clip is None else check_nonneg_float("clip", clip, strictly_positive=True)

    def forward(self, x: Tensor, sigma: Any, *args: Any, **kwargs: Any) -> Tensor:
        """The denoised image of ``x = u + sigma * n`` (same shape and dtype as ``x``)."""
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 2:
            got = tuple(x.shape) if isinstance(x, Tensor) else describe(x)
            raise ValueError(f"x: expected a complex image (B, 2, H, W), got {got}")
        param = next(self.net.parameters())
        in_dtype = x.dtype
        xs = x.to(device=param.device, dtype=param.dtype) * self.data_scale
        sig = torch.as_tensor(sigma, device=param.device, dtype=torch.float64).flatten()
        if sig.numel() == 1:
            sig = sig.expand(x.shape[0])
        if sig.numel() != x.shape[0] or bool((sig < 0).any()):
            raise ValueError(f"sigma: expected a noise level >= 0, one or one per batch item "
                             f"({x.shape[0]}), got {sigma!r}")
        ab64 = 1.0 / (1.0 + (self.data_scale * sig) ** 2)
        t = self.schedule.time_of(ab64).to(param.dtype)
        ab = ab64.to(param.dtype).view(-1, 1, 1, 1)
        x_t = ab.sqrt() * xs
        eps = self.net(x_t, t)
        x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        if self.clip is not None:
            mag = x0.pow(2).sum(1, keepdim=True).add(1e-12).sqrt()
            x0 = x0 * (self.data_scale * self.clip / mag).clamp(max=1.0)
        return (x0 / self.data_scale).to(in_dtype)


def from_reconstructor(model: Any, clip: float | None = 1.0) -> ScoreDenoiser:
    """The denoiser of a :class:`~kspace_attacks.adapters.diffusion.DiffusionReconstructor`
    (its network, schedule and data scale)."""
    for attr in ("net", "schedule", "data_scale"):
        if not hasattr(model, attr):
            raise TypeError(f"model: expected a DiffusionReconstructor (with .{attr}), got "
                            f"{describe(model)}")
    return ScoreDenoiser(model.net, model.schedule, model.data_scale, clip)
