"""Supervised reconstructors (i-RIM, ResUnet++), zero-filled, deepinv/fastMRI wrappers, training.

Everything runs on tiny seeded inputs built here; the shipped-weights checks use 8 slices of
the embedded test split.
"""

from __future__ import annotations

import json
import sys
import types

import deepinv as dinv
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.adapters.training import supervised
from kspace_attacks.adapters.deepinv_wrapper import DeepinvReconstructor, denoiser_postprocessor
from kspace_attacks.adapters.irim import IRIM
from kspace_attacks.adapters.resunetpp import ResUnetPP
from kspace_attacks.adapters.zero_filled import ZeroFilled

TINY_IRIM = {"n_state": 6, "n_hidden": 4, "n_steps": 2, "n_layers": 1}
TINY_RESUNET = {"widths": [4, 4, 8, 8], "se_reduction": 2}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def column_mask(h: int, w: int) -> torch.Tensor:
    mask = torch.zeros(h, w)
    mask[:, ::4] = 1
    mask[:, w // 2 - 2 : w // 2 + 2] = 1
    return mask


def smooth_coil_maps(n_coils: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random smooth complex maps (N, H, W) with root-sum-of-squares 1 everywhere."""
    low = torch.randn(1, 2 * n_coils, 4, 4, generator=gen(seed))
    up = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=True)[0]
    maps = torch.complex(up[:n_coils], up[n_coils:])
    return maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()


def make_physics(kind: str, h: int = 16, w: int = 16, dtype=torch.float32):
    mask = column_mask(h, w)
    if kind == "single":
        physics = dinv.physics.MRI(mask=mask, img_size=(h, w))
    else:
        physics = dinv.physics.MultiCoilMRI(mask=mask, coil_maps=smooth_coil_maps(4, h, w),
                                            img_size=(h, w))
    if dtype == torch.float64:
        physics.mask = physics.mask.double()
        if kind == "multi":
            physics.coil_maps = physics.coil_maps.to(torch.complex128)
    return physics


def tiny(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name == "irim":
        model = IRIM(**TINY_IRIM)
        for m in model.modules():  # leave the zero (identity) init: exercise every branch
            if isinstance(m, nn.Conv2d) and m.out_channels == TINY_IRIM["n_state"] // 2:
                nn.init.normal_(m.weight, std=0.1)
    elif name == "resunetpp":
        model = ResUnetPP(**TINY_RESUNET)
    else:
        model = ZeroFilled()
    return model.eval()


MODELS = ["zero_filled", "irim", "resunetpp"]


# ---------------------------------------------------------------------- shapes and dtypes
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", ["single", "multi"])
def test_shapes_single_and_multicoil(name, kind):
    physics = make_physics(kind)
    x = torch.rand(3, 2, 16, 16, generator=gen())
    y = physics.A(x)
    assert y.shape == ((3, 2, 16, 16) if kind == "single" else (3, 2, 4, 16, 16))
    with torch.no_grad():
        out = tiny(name)(y, physics)
    assert out.shape == (3, 2, 16, 16) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,size", [("resunetpp", (20, 28)), ("irim", (15, 17))])
def test_sizes_not_multiple_of_8(name, size):
    physics = make_physics("single", *size)
    y = physics.A(torch.rand(2, 2, *size, generator=gen()))
    with torch.no_grad():
        assert tiny(name)(y, physics).shape == (2, 2, *size)


@pytest.mark.parametrize("name", ["irim", "resunetpp"])
def test_batch_consistency_and_determinism(name):
    physics = make_physics("single")
    y = physics.A(torch.rand(4, 2, 16, 16, generator=gen()))
    model = tiny(name)
    with torch.no_grad():
        full, again = model(y, physics), model(y, physics)
        single = torch.cat([model(y[i : i + 1], physics) for i in range(4)])
    assert torch.equal(full, again)
    assert torch.allclose(full, single, atol=1e-5)


@pytest.mark.parametrize("name", ["irim", "resunetpp"])
def test_scale_equivariance(name):
    physics = make_physics("multi")
    y = physics.A(torch.rand(2, 2, 16, 16, generator=gen()))
    model = tiny(name)
    with torch.no_grad():
        assert torch.allclose(model(7.0 * y, physics), 7.0 * model(y, physics), atol=1e-4)


def test_zero_filled_is_adjoint():
    physics = make_physics("multi")
    y = physics.A(torch.rand(2, 2, 16, 16, generator=gen()))
    assert torch.equal(ZeroFilled()(y, physics), physics.A_adjoint(y))
    assert list(ZeroFilled().parameters()) == []


@pytest.mark.parametrize("name", MODELS)
def test_input_validation(name):
    model, physics = tiny(name), make_physics("single")
    y = physics.A(torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError, match="y: expected k-space"):
        model(y[:, :1], physics)
    with pytest.raises(TypeError, match="y: "):
        model(torch.view_as_complex(y.permute(0, 2, 3, 1).contiguous()), physics)
    with pytest.raises(TypeError, match="physics"):
        model(y, "not a physics")
    with pytest.raises(ValueError, match="finite"):
        model(y * float("nan"), physics)


# ----------------------------------------------------------------- gradients w.r.t. y
@pytest.mark.parametrize("name", ["irim", "resunetpp"])
@pytest.mark.parametrize("kind", ["single", "multi"])
def test_gradient_wrt_y_matches_finite_differences(name, kind):
    """Directional derivative <w, J v> by autograd vs central differences, float64."""
    model = tiny(name).double()
    physics = make_physics(kind, dtype=torch.float64)
    y = physics.A(torch.rand(2, 2, 16, 16, generator=gen(1), dtype=torch.float64))
    y.requires_grad_(True)
    g = gen(2)
    for _ in range(3):
        v = torch.randn(y.shape, generator=g, dtype=torch.float64)
        w = torch.randn(2, 2, 16, 16, generator=g, dtype=torch.float64)
        (grad,) = torch.autograd.grad((model(y, physics) * w).sum(), y)
        auto = (grad * v).sum()
        h = 1e-6 * y.detach().norm() / v.norm()
        with torch.no_grad():
            fd = ((model(y + h * v, physics) - model(y - h * v, physics)) * w).sum() / (2 * h)
        assert torch.allclose(auto, fd, rtol=1e-5, atol=1e-8), (auto.item(), fd.item())


def test_gradcheck_irim_tiny():
    model = IRIM(n_state=4, n_hidden=2, n_steps=1, n_layers=1).double().eval()
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.out_channels == 2:
            nn.init.normal_(m.weight, std=0.1)
    physics = make_physics("single", 8, 8, dtype=torch.float64)
    y = physics.A(torch.rand(1, 2, 8, 8, generator=gen(), dtype=torch.float64))
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: model(t, physics), (y,), eps=1e-6, atol=1e-5)


def test_irim_state_is_invertible():
    model = tiny("irim").double()
    physics = make_physics("multi", dtype=torch.float64)
    y = physics.A(torch.rand(2, 2, 16, 16, generator=gen(), dtype=torch.float64))
    h = torch.randn(2, TINY_IRIM["n_state"], 16, 16, generator=gen(3), dtype=torch.float64)
    with torch.no_grad():
        back = model.reverse_state(model.forward_state(h, y, physics), y, physics)
    assert torch.allclose(back, h, atol=1e-10)


def test_irim_uses_the_data_gradient():
    """A different mask (same y) must change the output: the physics enters every step."""
    model = tiny("irim")
    p1, p2 = make_physics("single"), make_physics("single")
    p2.update(mask=torch.ones(16, 16))
    y = p1.A(torch.rand(1, 2, 16, 16, generator=gen()))
    with torch.no_grad():
        assert not torch.allclose(model(y, p1), model(y, p2))


# ------------------------------------------------------------------------ deepinv wrapper
def test_deepinv_wrapper_callable_and_magnitude():
    physics = make_physics("single")
    y = physics.A(torch.rand(2, 2, 16, 16, generator=gen()))
    f = DeepinvReconstructor(lambda y, physics: physics.A_adjoint(y, mag=True))
    out = f(y, physics)
    assert out.shape == (2, 2, 16, 16) and torch.all(out[:, 1] == 0)
    assert torch.allclose(out[:, :1], physics.A_adjoint(y).pow(2).sum(1, keepdim=True).sqrt())


def test_deepinv_wrapper_registers_module_and_denoiser():
    physics = make_physics("multi")
    y = physics.A(torch.rand(2, 2, 16, 16, generator=gen()))
    den = dinv.models.DnCNN(2, 2, depth=2, nf=4, pretrained=None)
    f = denoiser_postprocessor(den).eval()
    assert sum(p.numel() for p in f.parameters()) == sum(p.numel() for p in den.parameters())
    with torch.no_grad():
        assert f(y, physics).shape == (2, 2, 16, 16)


def test_deepinv_wrapper_errors():
    physics = make_physics("single")
    y = physics.A(torch.rand(1, 2, 16, 16))
    with pytest.raises(TypeError, match="model"):
        DeepinvReconstructor(3)
    with pytest.raises(ValueError, match="model output"):
        DeepinvReconstructor(lambda y, physics: y[:, :, None])(y, physics)


# ------------------------------------------------------------------------ fastMRI wrappers
def _fastmri_fft2c(k: torch.Tensor) -> torch.Tensor:
    """fastMRI's fft2c / ifft2c convention written out: trailing-2 layout, dims (-3, -2)."""
    c = torch.view_as_complex(k.contiguous())
    c = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(c, dim=(-2, -1)),
                                           dim=(-2, -1), norm="ortho"), dim=(-2, -1))
    return torch.view_as_real(c)


@pytest.fixture
def fake_fastmri(monkeypatch):
    """A stand-in ``fastmri`` package: Unet = identity, VarNet = RSS of ifft2c(k-space)."""

    class Unet(nn.Module):
        def __init__(self, in_chans, out_chans, **kwargs):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x * self.scale

    class VarNet(nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, masked_kspace, mask, num_low_frequencies=None):
            assert masked_kspace.shape[-1] == 2 and mask.dtype == torch.bool
            k = torch.where(mask, masked_kspace, torch.zeros_like(masked_kspace))
            return _fastmri_fft2c(k).pow(2).sum(-1).sum(1).sqrt() * self.w

    fake = types.ModuleType("fastmri")
    fake.models = types.ModuleType("fastmri.models")
    fake.models.Unet, fake.models.VarNet = Unet, VarNet
    monkeypatch.setitem(sys.modules, "fastmri", fake)
    monkeypatch.setitem(sys.modules, "fastmri.models", fake.models)
    return fake


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_fastmri_varnet_layout_and_fft_convention(fake_fastmri, kind):
    from kspace_attacks.adapters.fastmri_models import FastMRIVarNet

    physics = make_physics(kind)
    y = physics.A(torch.rand(2, 2, 16, 16, generator=gen()))
    out = FastMRIVarNet()(y, physics)
    if kind == "single":
        expected = physics.A_adjoint(y, mag=True)
    else:
        expected = physics.A_adjoint(y, rss=True)
    assert out.shape == (2, 2, 16, 16)
    assert torch.allclose(out[:, :1], expected, atol=1e-5) and torch.all(out[:, 1] == 0)


@pytest.mark.parametrize("inp", ["magnitude", "complex"])
def test_fastmri_unet_wrapper(fake_fastmri, inp, tmp_path):
    from kspace_attacks.adapters.fastmri_models import FastMRIUnet, load_unet

    physics = make_physics("single")
    y = physics.A(torch.rand(2, 2, 16, 16, generator=gen()))
    out = FastMRIUnet(input=inp)(y, physics)
    x0 = physics.A_adjoint(y)
    expected = x0.pow(2).sum(1, keepdim=True).sqrt() if inp == "magnitude" else x0
    assert out.shape == (2, 2, 16, 16)
    assert torch.allclose(out[:, : expected.shape[1]], expected, atol=1e-5)
    # state dicts load with weights_only=True, Lightning prefixes stripped
    path = tmp_path / "unet.ckpt"
    torch.save({"state_dict": {"unet.scale": torch.tensor(2.0)}}, path)
    model = load_unet(weights=path, input=inp)
    assert not model.training and model.net.scale.item() == 2.0


def test_fastmri_real_package():
    fastmri = pytest.importorskip("fastmri")
    from kspace_attacks.adapters.fastmri_models import FastMRIUnet, FastMRIVarNet, to_fastmri

    physics = make_physics("multi", 32, 32)
    y = physics.A(torch.rand(1, 2, 32, 32, generator=gen()))
    theirs = fastmri.ifft2c(to_fastmri(y))  # (B, N, H, W, 2)
    ours = torch.view_as_real(physics.ifft(physics.to_torch_complex(y)))
    assert torch.allclose(theirs, ours, atol=1e-5)
    model = FastMRIVarNet(num_cascades=1, chans=4, pools=2, sens_chans=2, sens_pools=2).eval()
    unet = FastMRIUnet(input="complex", chans=4, num_pool_layers=2).eval()
    with torch.no_grad():
        assert model(y, physics).shape == (1, 2, 32, 32)
        assert unet(y, physics).shape == (1, 2, 32, 32)


# --------------------------------------------------------------------------- shipped weights
@pytest.fixture(scope="module")
def test_slices():
    from kspace_attacks.data import EmbeddedBrain, get_preset

    ds = EmbeddedBrain("test")
    idx = torch.linspace(0, len(ds) - 1, 8).round().long()
    x, y = supervised.dataset_batch(ds, idx)
    return x, y, get_preset("embedded").physics()


@pytest.mark.parametrize("name", ["irim", "resunetpp"])
def test_shipped_weights_quality(name, test_slices):
    """Quick check on 8 test slices (looser margin than the full-split target of 4 dB/0.10)."""
    from kspace_attacks import metrics

    x, y, physics = test_slices
    model = load_reconstructor(name)
    with torch.no_grad():
        x_hat = model(y, physics)
    zf = physics.A_adjoint(y)
    gain_psnr = (metrics.psnr(x_hat, x) - metrics.psnr(zf, x)).mean().item()
    gain_ssim = (metrics.ssim(x_hat, x) - metrics.ssim(zf, x)).mean().item()
    assert gain_psnr >= 3.0 and gain_ssim >= 0.07, (gain_psnr, gain_ssim)


@pytest.mark.parametrize("name", ["irim", "resunetpp"])
def test_shipped_json_documents_the_weights(name):
    from importlib import resources

    from kspace_attacks.adapters import _weights

    path = _weights.embedded_path(name)
    meta = json.loads((resources.files("kspace_attacks.adapters") / "weights"
                       / f"{name}.json").read_text())
    assert meta["architecture"] == _weights.read_config(path)
    model = load_reconstructor(name)
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    for key in ("seed", "steps", "batch_size", "lr", "time_s", "threads"):
        assert key in meta["training"]
    m = meta["metrics"]
    assert m["split"] == "test"
    assert m["model"]["psnr"] - m["zero_filled"]["psnr"] >= 4.0
    assert m["model"]["ssim"] - m["zero_filled"]["ssim"] >= 0.10
    assert path.stat().st_size < 5e6


# -------------------------------------------------------------------------------- training
class ToyData(Dataset):
    """A few fixed smooth images with their k-space (32x32, single-coil)."""

    def __init__(self, physics, n: int = 4, seed: int = 0):
        low = torch.rand(n, 1, 6, 6, generator=gen(seed))
        img = F.interpolate(low, size=(32, 32), mode="bicubic", align_corners=True).clamp(0, 1)
        self.x = torch.cat([img, torch.zeros_like(img)], dim=1)
        self.y = physics.A(self.x)
        self.fail_after: int | None = None  # simulate a crash after this many item reads
        self.reads = 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise KeyboardInterrupt("simulated crash")
        return self.x[i], self.y[i]


def _train_tiny(name, out, steps, data, physics, **kw):
    arch = TINY_RESUNET if name == "resunetpp" else TINY_IRIM
    return supervised.train(name, steps=steps, batch_size=4, lr=3e-3, out=out, arch=arch,
                            train_data=data, physics=physics, log_every=1, ckpt_every=3,
                            progress=False, **kw)


@pytest.mark.isolated  # trains: a native crash must fail this test only
@pytest.mark.parametrize("name", ["resunetpp", "irim"])
def test_training_decreases_loss(name, tmp_path):
    physics = make_physics("single", 32, 32)
    data = ToyData(physics)
    summary = _train_tiny(name, tmp_path, 15, data, physics)
    losses = [json.loads(ln)["loss"] for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 15
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert (tmp_path / f"{name}.safetensors").exists() and summary["training"]["steps"] == 15
    loaded = load_reconstructor(name, weights=tmp_path / f"{name}.safetensors")
    assert loaded.config["n_state" if name == "irim" else "widths"] == (
        TINY_IRIM["n_state"] if name == "irim" else TINY_RESUNET["widths"])


@pytest.mark.isolated  # the reported abort: a 4-channel ResUnet++ at one thread
def test_the_four_channel_resunetpp_trains_at_one_thread_around_onednn(tmp_path, monkeypatch):
    """Widths [4, 4, 8, 8] at one thread aborted inside oneDNN on some CPUs: its forward and
    backward now run with oneDNN off (scoped), the shipped widths keep it, and the process's
    setting is the same afterwards."""
    from kspace_attacks._kernels import narrow_conv_layers

    assert torch.get_num_threads() == 1
    assert narrow_conv_layers(ResUnetPP(**TINY_RESUNET)) and not narrow_conv_layers(ResUnetPP())
    seen = []
    real = supervised._train_step
    monkeypatch.setattr(supervised, "_train_step",
                        lambda *a, **k: seen.append(torch.backends.mkldnn.enabled) or real(*a, **k))
    before = torch.backends.mkldnn.enabled
    physics = make_physics("single", 32, 32)
    summary = _train_tiny("resunetpp", tmp_path, 15, ToyData(physics), physics)
    assert summary["training"]["steps"] == 15 and (tmp_path / "resunetpp.safetensors").exists()
    assert seen == [False] * 15 and torch.backends.mkldnn.enabled == before


def test_attacks_on_a_narrow_model_run_it_without_onednn_and_restore_the_setting():
    import kspace_attacks as ka

    physics = make_physics("single", 32, 32)
    x = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    y = physics.A(x)
    seen = []
    for widths, expected in ((TINY_RESUNET["widths"], False), ([8, 8, 8, 8], torch.backends.mkldnn.enabled)):
        model = ResUnetPP(widths=widths, se_reduction=2).eval()
        hook = model.net.register_forward_hook(lambda *a: seen.append(torch.backends.mkldnn.enabled))
        seen.clear()
        ka.PGD(ka.KSpaceL2(eps=0.05), steps=2)(model, y, physics)
        hook.remove()
        grad_calls = seen[1:3]  # the clean reconstruction, then one call per step with a gradient
        assert grad_calls == [expected, expected], (widths, seen)
    assert torch.backends.mkldnn.enabled == torch.backends.mkldnn.is_available()


@pytest.mark.isolated  # trains: a native crash must fail this test only
def test_resume_continues_at_the_right_step(tmp_path):
    physics = make_physics("single", 32, 32)
    ref = _train_tiny("resunetpp", tmp_path / "ref", 8, ToyData(physics), physics)
    del ref
    crashed = ToyData(physics)
    crashed.fail_after = 4 * 5  # dies during step 6; last checkpoint is step 3
    with pytest.raises(KeyboardInterrupt):
        _train_tiny("resunetpp", tmp_path / "run", 8, crashed, physics)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 3
    _train_tiny("resunetpp", tmp_path / "run", 8, ToyData(physics), physics)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "run" / "log.jsonl").read_text()
             .splitlines()]
    assert steps == list(range(1, 9))
    a = load_reconstructor("resunetpp", weights=tmp_path / "ref" / "resunetpp.safetensors")
    b = load_reconstructor("resunetpp", weights=tmp_path / "run" / "resunetpp.safetensors")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.allclose(va.float(), vb.float(), atol=1e-6), ka


@pytest.mark.isolated  # trains: a native crash must fail this test only
def test_no_resume_starts_over(tmp_path):
    physics = make_physics("single", 32, 32)
    _train_tiny("resunetpp", tmp_path, 3, ToyData(physics), physics)
    _train_tiny("resunetpp", tmp_path, 2, ToyData(physics), physics, resume=False)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_cli_parser_and_main(monkeypatch):
    a = supervised.parser().parse_args(
        ["irim", "--steps", "5", "--batch-size", "2", "--lr", "0.01", "--seed", "3",
         "--out", "x", "--no-resume", "--threads", "1"])
    assert (a.name, a.steps, a.batch_size, a.lr, a.seed, a.out, a.resume, a.threads) == (
        "irim", 5, 2, 0.01, 3, "x", False, 1)
    assert supervised.parser().parse_args(["resunetpp"]).resume is True
    calls = []
    monkeypatch.setattr(supervised, "train", lambda *args, **kw: calls.append((args, kw)) or {})
    assert supervised.main(["resunetpp", "--steps", "7"]) == 0
    assert calls[0][0] == ("resunetpp",) and calls[0][1]["steps"] == 7
    with pytest.raises(SystemExit):
        supervised.parser().parse_args(["unknown_model"])


def test_train_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="name"):
        supervised.train("zero_filled", out=tmp_path)
    with pytest.raises(ValueError, match="steps"):
        supervised.train("irim", steps=0, out=tmp_path)


# ------------------------------------------------------------------------------- docstrings
@pytest.mark.parametrize("module", [
    "kspace_attacks.adapters",
    "kspace_attacks.adapters.registry",
    "kspace_attacks.adapters.zero_filled",
    "kspace_attacks.adapters.irim",
    "kspace_attacks.adapters.resunetpp",
    "kspace_attacks.adapters.deepinv_wrapper",
])
def test_docstring_examples(module):
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(module),
                                      optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
