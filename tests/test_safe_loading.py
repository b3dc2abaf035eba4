"""Loading checkpoints and results never executes code stored in a file."""

from __future__ import annotations

import os
import pickle

import pytest

import kspace_attacks as ka


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_checkpoint(path, marker):
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"w": _Payload(str(marker))}}, f)


def test_fastmri_state_dict_with_code_is_refused(tmp_path):
    pytest.importorskip("fastmri")
    from kspace_attacks.adapters import load_reconstructor

    ckpt, marker = tmp_path / "unet.pt", tmp_path / "pwned"
    _malicious_checkpoint(ckpt, marker)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        load_reconstructor("fastmri_unet", weights=str(ckpt))
    assert not marker.exists()


def test_training_checkpoint_with_code_is_refused(tmp_path):
    from kspace_attacks.adapters.training import supervised

    run, marker = tmp_path / "run", tmp_path / "pwned"
    run.mkdir()
    _malicious_checkpoint(run / "checkpoint.pt", marker)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        supervised.train("resunetpp", steps=1, batch_size=1, out=run, resume=True, progress=False)
    assert not marker.exists()


def test_reconstructor_weights_are_safetensors():
    from kspace_attacks.adapters import _weights

    for name in ("irim", "resunetpp"):
        path = _weights.embedded_path(name)
        assert path.suffix == ".safetensors" and path.is_file()
        # safetensors files start with a little-endian header length and a JSON header: no code
        head = path.read_bytes()[:9]
        assert head[8:9] == b"{"


def test_results_are_plain_text(tmp_path):
    # records and summaries are CSV/JSON: loading parses text, it never unpickles
    from tests._physics import single_coil, zero_filled

    x, y, physics = single_coil()
    report = ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=[0.0, 0.05],
                         attack=ka.FGM(ka.KSpaceL2()), progress=False)
    report.save(tmp_path)
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.suffix in (".csv", ".json"):
            p.read_text(encoding="utf-8")  # valid text
    assert len(ka.TransferReport.load(tmp_path)) == len(report)
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".pkl", ".pickle")]
    assert os.listdir(tmp_path)
