"""A compact time-conditioned U-Net for epsilon-prediction on 2-channel (complex) MR images.

Kept deliberately small so that it trains in under an hour on one CPU thread and
samples a 64x64 slice in a few seconds: a DDPM-style U-Net (Ho et al. 2020) with
sinusoidal time embedding, GroupNorm residual blocks, a few resolutions and
self-attention only at the coarsest ones.

Example:

    >>> import torch
    >>> from kspace_attacks.adapters.score_unet import ScoreUNet
    >>> net = ScoreUNet(channels=(16, 32), attn_levels=(1,))
    >>> eps = net(torch.randn(2, 2, 16, 16), torch.rand(2))
    >>> tuple(eps.shape)
    (2, 2, 16, 16)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ScoreUNetConfig:
    """Architecture hyper-parameters (stored in the weights' JSON)."""

    in_channels: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 64)
    num_res_blocks: int = 1
    attn_levels: tuple[int, ...] = (2, 3)  # indices into ``channels``; level i has H / 2**i
    dropout: float = 0.0
    time_scale: float = 1000.0  # t in [0, 1] is embedded as time_scale * t (DDPM convention)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ScoreUNetConfig":
        d = dict(d)
        for k in ("channels", "attn_levels"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _groups(c: int) -> int:
    # GroupNorm needs groups dividing c; 8 groups is a good default for small widths.
    for g in (8, 4, 2, 1):
        if c % g == 0:
            return g
    return 1


def timestep_embedding(t: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Sinusoidal embedding of continuous times ``t`` (shape (B,)) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half
    )
    args = (scale * t)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block with an additive time embedding."""

    def __init__(self, cin: int, cout: int, tdim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # residual branch starts at identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention (used only at coarse resolutions)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(c), c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None], v.transpose(1, 2)[:, None]
        )[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class ScoreUNet(nn.Module):
    """Time-conditioned U-Net predicting the noise ``eps`` of a VP diffusion.

    :param ScoreUNetConfig config: architecture; keyword arguments override its fields.

    Input ``x`` (B, in_channels, H, W) with H, W divisible by ``2**(len(channels)-1)``;
    ``t`` (B,) or scalar continuous diffusion time in [0, 1]. Output has the shape of ``x``.

    Example:

        >>> import torch
        >>> net = ScoreUNet(channels=(8, 16), attn_levels=())
        >>> net(torch.zeros(1, 2, 8, 8), torch.tensor([0.5])).abs().max().item()  # zero-init head
        0.0
    """

    def __init__(self, config: ScoreUNetConfig | None = None, **overrides):
        super().__init__()
        cfg = config or ScoreUNetConfig()
        if overrides:
            cfg = ScoreUNetConfig.from_dict({**cfg.to_dict(), **overrides})
        self.config = cfg
        ch = cfg.channels
        c0 = ch[0]
        tdim = 4 * c0
        self.temb = nn.Sequential(nn.Linear(c0, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inc = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)

        self.down = nn.ModuleList()
        skips = [c0]
        cur = c0
        for i, c in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                blk = nn.ModuleList([ResBlock(cur, c, tdim, cfg.dropout)])
                if i in cfg.attn_levels:
                    blk.append(AttnBlock(c))
                self.down.append(blk)
                cur = c
                skips.append(cur)
            if i < len(ch) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)

        self.mid1 = ResBlock(cur, cur, tdim, cfg.dropout)
        self.mid_attn = AttnBlock(cur)
        self.mid2 = ResBlock(cur, cur, tdim, cfg.dropout)

        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            c = ch[i]
            for _ in range(cfg.num_res_blocks + 1):
                blk = nn.ModuleList([ResBlock(cur + skips.pop(), c, tdim, cfg.dropout)])
                if i in cfg.attn_levels:
                    blk.append(AttnBlock(c))
                self.up.append(blk)
                cur = c
            if i > 0:
                self.up.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, padding=1)]))

        self.out_norm = nn.GroupNorm(_groups(cur), cur)
        self.out = nn.Conv2d(cur, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # predict eps = 0 at init: stable early training
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        temb = self.temb(timestep_embedding(t, self.config.channels[0], self.config.time_scale))
        h = self.inc(x)
        hs = [h]
        for blk in self.down:
            if isinstance(blk[0], ResBlock):
                h = blk[0](h, temb)
                for m in blk[1:]:
                    h = m(h)
            else:  # strided-conv downsample
                h = blk[0](h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for blk in self.up:
            if isinstance(blk[0], ResBlock):
                h = blk[0](torch.cat([h, hs.pop()], dim=1), temb)
                for m in blk[1:]:
                    h = m(h)
            else:  # nearest upsample + conv
                h = blk[0](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
