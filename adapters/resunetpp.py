"""ResUnet++ (Jha et al. 2019, arXiv 1911.07067) applied to the zero-filled image."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from deepinv.models import Reconstructor
from torch import Tensor, nn

from . import _weights
from ._base import check_inputs, sample_scale

#: Architecture of the shipped weights (also the default for a random init).
DEFAULT_CONFIG: dict[str, Any] = {
    "widths": [16, 32, 48, 64],
    "aspp_rates": [1, 2, 3],
    "se_reduction": 8,
    "residual": True,
    "normalize": True,
}


class _SqueezeExcite(nn.Module):
    """Channel attention: global average pool -> bottleneck MLP -> sigmoid gate."""

    def __init__(self, ch: int, reduction: int):
        super().__init__()
        hidden = max(ch // reduction, 4)
        self.fc = nn.Sequential(
            nn.Linear(ch, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, ch), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc(x.mean(dim=(-2, -1)))
        return x * w[..., None, None]


class _ResidualUnit(nn.Module):
    """Pre-activation residual unit (BN-ReLU-conv x2) with a projected shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, stem: bool = False):
        super().__init__()
        first = [nn.Conv2d(c_in, c_out, 3, stride, 1)]
        if not stem:  # the stem starts with the conv (the input is an image, not features)
            first = [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), *first]
        self.body = nn.Sequential(
            *first, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, 1, 1)
        )
        self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel dilated 3x3 convs, summed, then a 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, rates: Sequence[int]):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=r, dilation=r),
                nn.ReLU(inplace=True),
                nn.BatchNorm2d(c_out),
            )
            for r in rates
        )
        self.out = nn.Conv2d(c_out, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(sum(b(x) for b in self.branches))


class _AttentionGate(nn.Module):
    """ResUnet++ attention: the encoder feature (pooled) gates the decoder feature."""

    def __init__(self, c_enc: int, c_dec: int):
        super().__init__()
        self.enc = nn.Sequential(
            nn.BatchNorm2d(c_enc), nn.ReLU(inplace=True), nn.Conv2d(c_enc, c_dec, 3, padding=1),
            nn.MaxPool2d(2),
        )
        self.dec = nn.Sequential(
            nn.BatchNorm2d(c_dec), nn.ReLU(inplace=True), nn.Conv2d(c_dec, c_dec, 3, padding=1)
        )
        self.gate = nn.Sequential(
            nn.BatchNorm2d(c_dec), nn.ReLU(inplace=True), nn.Conv2d(c_dec, c_dec, 3, padding=1)
        )

    def forward(self, enc: Tensor, dec: Tensor) -> Tensor:
        return self.gate(self.enc(enc) + self.dec(dec)) * dec


class ResUnetPPNet(nn.Module):
    """The ResUnet++ image-to-image network (``(B, c, H, W) -> (B, c, H, W)``, H, W % 8 == 0).

    Stem + 3 strided residual units, each followed by squeeze-excitation; ASPP bridge;
    3 decoder stages of attention gate -> 2x upsampling -> concatenation with the skip ->
    residual unit; output ASPP and a final 1x1 convolution.
    """

    def __init__(self, channels: int = 2, widths: Sequence[int] = (16, 32, 48, 64),
                 aspp_rates: Sequence[int] = (1, 2, 3), se_reduction: int = 8):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths: expected 4 channel widths, got {list(widths)}")
        w0, w1, w2, w3 = widths
        self.stem = _ResidualUnit(channels, w0, stem=True)
        self.encoders = nn.ModuleList(
            [_ResidualUnit(a, b, stride=2) for a, b in ((w0, w1), (w1, w2), (w2, w3))]
        )
        self.se = nn.ModuleList(_SqueezeExcite(c, se_reduction) for c in (w0, w1, w2))
        self.bridge = _ASPP(w3, w3, aspp_rates)
        # decoder stage k goes from width a (coarse) to width b with skip of width s
        stages = ((w3, w2, w2), (w2, w1, w1), (w1, w0, w0))  # (dec in, skip, out)
        self.gates = nn.ModuleList(_AttentionGate(s, a) for a, s, _ in stages)
        self.decoders = nn.ModuleList(_ResidualUnit(a + s, b) for a, s, b in stages)
        self.head = nn.Sequential(_ASPP(w0, w0, aspp_rates), nn.Conv2d(w0, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        h = self.stem(x)
        for enc, se in zip(self.encoders, self.se, strict=True):
            h = se(h)
            skips.append(h)
            h = enc(h)
        h = self.bridge(h)
        for gate, dec, skip in zip(self.gates, self.decoders, reversed(skips), strict=True):
            h = gate(skip, h)
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = dec(torch.cat([h, skip], dim=1))
        return self.head(h)


class ResUnetPP(Reconstructor):
    r"""ResUnet++ reconstructor: :math:`\hat x = A^H y + \mathrm{ResUnet{+}{+}}(A^H y)`.

    The network (Jha et al. 2019: residual units with BN/ReLU, squeeze-and-excitation, ASPP
    bridge, attention gates in the decoder, final 1x1 conv) maps the zero-filled complex image
    (2 channels) to a correction of it. With ``normalize=True`` the input is divided by its
    per-sample RMS magnitude and the output multiplied back, so ``f(c y) = c f(y)``.
    Images whose size is not a multiple of 8 are zero-padded and cropped back.

    Works with any linear physics with ``A_adjoint`` returning ``(B, 2, H, W)``, e.g.
    :class:`deepinv.physics.MRI` (y ``(B, 2, H, W)``) and :class:`deepinv.physics.MultiCoilMRI`
    (y ``(B, 2, N, H, W)``).

    Output convention (shared by all reconstructors of ``kspace_attacks.adapters``): a complex
    image ``(B, 2, H, W)`` with real/imaginary parts in dim 1, in the physics' image domain and
    scaled like the ground truth (magnitude in about [0, 1] for the embedded data).

    :param widths: channel widths of the 4 resolution levels.
    :param aspp_rates: dilation rates of the ASPP branches.
    :param se_reduction: squeeze-excitation bottleneck reduction.
    :param residual: predict a correction of the zero-filled image (else the image itself).
    :param normalize: per-sample RMS scale normalisation (see above).

    :Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.adapters.resunetpp import ResUnetPP
    >>> physics = dinv.physics.MRI(mask=torch.ones(32, 32))
    >>> y = physics.A(torch.rand(2, 2, 32, 32))
    >>> ResUnetPP().eval()(y, physics).shape
    torch.Size([2, 2, 32, 32])
    """

    def __init__(self, widths: Sequence[int] = DEFAULT_CONFIG["widths"],
                 aspp_rates: Sequence[int] = DEFAULT_CONFIG["aspp_rates"],
                 se_reduction: int = DEFAULT_CONFIG["se_reduction"],
                 residual: bool = True, normalize: bool = True):
        super().__init__()
        self.config = {"widths": list(widths), "aspp_rates": list(aspp_rates),
                       "se_reduction": se_reduction, "residual": residual,
                       "normalize": normalize}
        self.net = ResUnetPPNet(2, widths, aspp_rates, se_reduction)
        self.residual = residual
        self.normalize = normalize

    def forward(self, y: Tensor, physics: Any, **kwargs: Any) -> Tensor:
        """Reconstruct ``(B, 2, H, W)`` complex images from k-space ``y``."""
        y, physics = check_inputs(y, physics)
        x0 = physics.A_adjoint(y)
        scale = sample_scale(x0) if self.normalize else torch.ones_like(x0[:, :1, :1, :1])
        h, w = x0.shape[-2:]
        inp = x0 / scale
        inp_p = F.pad(inp, (0, (-w) % 8, 0, (-h) % 8))  # U-Net needs H, W divisible by 8
        out = self.net(inp_p)[..., :h, :w]
        if self.residual:
            out = out + inp
        return out * scale

    def __repr__(self) -> str:
        return f"ResUnetPP({', '.join(f'{k}={v}' for k, v in self.config.items())})"


def build(**config: Any) -> ResUnetPP:
    """A ResUnet++ with ``DEFAULT_CONFIG`` updated by ``config`` (random init)."""
    return ResUnetPP(**{**DEFAULT_CONFIG, **config})


def load(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
         **kwargs: Any) -> ResUnetPP:
    """Registry entry point: ``"embedded"`` (shipped), a safetensors path, or ``None`` (random).

    ``kwargs`` override architecture options (they must agree with the weights' config).
    """
    return _weights.load_model(ResUnetPP, "resunetpp", DEFAULT_CONFIG, weights, device, kwargs)


def load_adv(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
             **kwargs: Any) -> ResUnetPP:
    """Registry entry point of ``resunetpp_adv``: the shipped resunetpp fine-tuned adversarially
    (``kspace-attacks train resunetpp --robust adversarial``; settings in ``weights/resunetpp_adv.json``)."""
    return _weights.load_model(ResUnetPP, "resunetpp_adv", DEFAULT_CONFIG, weights, device, kwargs)


def load_noiseless(weights: Any = _weights.EMBEDDED, device: str | torch.device = "cpu",
                   **kwargs: Any) -> ResUnetPP:
    """Registry entry point of ``resunetpp_noiseless``: the weights of kspace-attacks 0.2, trained
    on noiseless k-space (the shipped ``resunetpp`` continues them on the noisy preset; settings
    in ``weights/resunetpp_noiseless.json``). ``resunetpp_adv`` was fine-tuned from these."""
    return _weights.load_model(ResUnetPP, "resunetpp_noiseless", DEFAULT_CONFIG, weights, device, kwargs)
