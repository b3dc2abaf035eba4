"""Registry contract: names, loading, errors and third-party entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util

import deepinv as dinv
import pytest
import torch
from deepinv.models import Reconstructor

from kspace_attacks.adapters import (
    ENTRY_POINT_GROUP,
    UnknownReconstructorError,
    list_reconstructors,
    load_reconstructor,
)
from kspace_attacks.adapters import registry

REQUIRED = {"diffusion", "irim", "resunetpp", "zero_filled", "fastmri_unet", "fastmri_varnet"}
SHIPPED = ["irim", "irim_adv", "irim_jit", "resunetpp", "resunetpp_adv", "zero_filled"]


def _skip_unavailable(name: str) -> None:
    """Skip names whose optional module or dependency is missing in this environment."""
    if name == "diffusion" and importlib.util.find_spec("kspace_attacks.adapters.diffusion") is None:
        pytest.skip("kspace_attacks.adapters.diffusion is not available")
    if name.startswith("fastmri_"):
        pytest.importorskip("fastmri")


def _physics(n: int = 32) -> dinv.physics.MRI:
    mask = torch.zeros(n, n)
    mask[:, ::3] = 1
    mask[:, n // 2 - 2 : n // 2 + 2] = 1
    return dinv.physics.MRI(mask=mask, img_size=(n, n))


def test_list_contains_contract_names():
    names = list_reconstructors()
    assert REQUIRED <= set(names)
    assert names == sorted(names)


def test_diffusion_target_is_the_contract():
    assert registry.BUILTIN["diffusion"] == "kspace_attacks.adapters.diffusion:load"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_load_random_init(name):
    _skip_unavailable(name)
    model = load_reconstructor(name, weights=None)
    assert isinstance(model, Reconstructor)
    assert not model.training


@pytest.mark.parametrize("name", SHIPPED)
def test_load_embedded_and_run(name):
    model = load_reconstructor(name, weights="embedded")
    assert isinstance(model, Reconstructor) and not model.training
    physics = _physics(32)
    y = physics.A(torch.rand(2, 2, 32, 32, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        x = model(y, physics)
    assert x.shape == (2, 2, 32, 32) and x.dtype == torch.float32


def test_load_embedded_diffusion():
    _skip_unavailable("diffusion")
    model = load_reconstructor("diffusion", weights="embedded")
    assert isinstance(model, Reconstructor) and not model.training


def test_fastmri_has_no_embedded_weights():
    pytest.importorskip("fastmri")
    with pytest.raises(FileNotFoundError, match="weights"):
        load_reconstructor("fastmri_unet", weights="embedded")


def test_unknown_name_lists_available():
    with pytest.raises(UnknownReconstructorError) as err:
        load_reconstructor("no_such_model")
    msg = str(err.value)
    assert "no_such_model" in msg and "irim" in msg and "zero_filled" in msg
    assert isinstance(err.value, KeyError)


def test_name_type_error():
    with pytest.raises(TypeError, match="name"):
        load_reconstructor(3)


def test_weights_path_roundtrip(tmp_path):
    from kspace_attacks.adapters import _weights

    model = load_reconstructor("resunetpp", weights=None, widths=[4, 8, 8, 8])
    path = tmp_path / "tiny.safetensors"
    _weights.save_state(model, path, model.config)
    loaded = load_reconstructor("resunetpp", weights=path)  # config read from the metadata
    assert loaded.config == model.config
    physics = _physics(16)
    y = physics.A(torch.rand(1, 2, 16, 16))
    with torch.no_grad():
        assert torch.equal(loaded(y, physics), model(y, physics))


def test_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights"):
        load_reconstructor("irim", weights=tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="weights"):
        load_reconstructor("irim", weights=123)
    with pytest.raises(ValueError, match="n_steps"):  # contradicts the shipped config
        load_reconstructor("irim", weights="embedded", n_steps=99)
    with pytest.raises(TypeError, match="unknown architecture"):
        load_reconstructor("irim", weights=None, bogus=1)
    with pytest.raises(ValueError, match="weights"):
        load_reconstructor("zero_filled", weights=tmp_path / "x.safetensors")


def test_device_argument():
    model = load_reconstructor("irim", weights=None, device=torch.device("cpu"))
    assert next(model.parameters()).device.type == "cpu"


# ------------------------------------------------------------------------- entry points
def _fake_entry_points(monkeypatch, *eps):
    def entry_points(**params):
        assert params == {"group": ENTRY_POINT_GROUP}
        return list(eps)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_entry_point_plugin(monkeypatch):
    ep = importlib.metadata.EntryPoint(
        name="my_plugin", value="kspace_attacks.adapters.zero_filled:load", group=ENTRY_POINT_GROUP
    )
    _fake_entry_points(monkeypatch, ep)
    assert "my_plugin" in list_reconstructors()
    model = load_reconstructor("my_plugin", weights=None)
    physics = _physics(16)
    y = physics.A(torch.rand(1, 2, 16, 16))
    assert torch.allclose(model(y, physics), physics.A_adjoint(y))


def test_entry_point_gets_the_load_signature(monkeypatch, tmp_path):
    module = tmp_path / "ka_fake_plugin.py"
    module.write_text(
        "import torch\n"
        "from kspace_attacks.adapters.zero_filled import ZeroFilled\n"
        "CALLS = []\n"
        "def load(weights='embedded', device='cpu', **kwargs):\n"
        "    CALLS.append((weights, str(device), kwargs))\n"
        "    m = ZeroFilled().to(device)\n"
        "    m.train()\n"  # the registry must still hand back an eval-mode model
        "    return m\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(
        name="fake", value="ka_fake_plugin:load", group=ENTRY_POINT_GROUP
    )
    _fake_entry_points(monkeypatch, ep)
    model = load_reconstructor("fake", weights="w.safetensors", device="cpu", alpha=2)
    plugin = importlib.import_module("ka_fake_plugin")
    assert plugin.CALLS == [("w.safetensors", "cpu", {"alpha": 2})]
    assert not model.training


def test_entry_point_cannot_shadow_builtin(monkeypatch):
    ep = importlib.metadata.EntryPoint(
        name="irim", value="kspace_attacks.adapters.zero_filled:load", group=ENTRY_POINT_GROUP
    )
    _fake_entry_points(monkeypatch, ep)
    with pytest.warns(UserWarning, match="built in"):
        names = list_reconstructors()
    assert names.count("irim") == 1
    model = load_reconstructor("irim", weights=None)
    assert type(model).__name__ == "IRIM"
