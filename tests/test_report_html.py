"""``report.html``: one self-contained page for a sweep folder, checked as text and in headless
Chromium (console, decoded images, slice switch, screenshot).

The folder is a real (tiny) sweep: zero-filled surrogate and target, 2 slices, eps 0 and 0.05,
a 2-step attack, plus a hand-written ``failed.csv`` row. The browser test drives Chromium
through the DevTools protocol over ``--remote-debugging-pipe`` (tests/_chromium.py: no
websocket library) and is skipped only when ``/usr/bin/chromium`` is missing (CI installs it).
"""

from __future__ import annotations

import re
import shutil
import struct

import pytest

from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.study.html import write_html_report
from kspace_attacks.study.sweep import run_sweep, validate_config
from kspace_attacks.study.verdicts import write_verdicts

from . import _chromium

TINY = dict(surrogates=["zero_filled"], targets=["zero_filled"], n_slices=2, batch_size=2,
            eps=[0.0, 0.05], attacks={"pgd": {"type": "pgd", "steps": 2}})
FAILED = "batch,status,sample_ids,error\n7,failed,test-99,RuntimeError: out of memory on slice test-99\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    report = run_sweep(validate_config(TINY), out, progress=False).report
    write_verdicts(report, out)
    (out / "failed.csv").write_text(FAILED)
    return out


@pytest.fixture(scope="module")
def page(folder):
    path = write_html_report(folder, {"zero_filled": load_reconstructor("zero_filled")})
    return path, path.read_text(encoding="utf-8")


def test_the_report_is_one_self_contained_file(folder, page):
    path, text = page
    assert path == folder / "report.html" and text.startswith("<!DOCTYPE html>")
    # nothing is fetched: every image is a data URI, no stylesheet / script / font links
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I)
    assert "<link" not in text and "<script src" not in text and "@import" not in text
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # a committed report names its folder, not where it ran on the machine that made it
    assert str(folder.resolve()) not in text and f"<td>{folder.name}</td>" in text


def test_the_report_shows_config_verdicts_curves_panels_and_failures(folder, page):
    _, text = page
    import json

    rows = json.loads((folder / "verdict.json").read_text())["rows"]
    assert rows
    for r in rows:  # every claim with its outcome and CI
        assert r["claim"] in text
        assert f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" in text
    for key in ("surrogates", "threat", "attacks", "normalization"):  # the configuration
        assert f"<code>{key}</code>" in text
    for label in ("||f(y+delta) - f(y)|| / ||f(y)||", "Delta SSIM", "Delta PSNR"):
        assert label in text
    # one panel per (eps > 0, slice), and a selector over the two slices
    assert text.count('class="slice-panel"') == 2
    assert re.findall(r'<option value="(\d+)">([^<]+)</option>', text) == [("0", "test-0"), ("1", "test-69")]
    assert "RuntimeError: out of memory on slice test-99" in text  # failed.csv


def test_the_report_answers_first(folder, page):
    _, text = page
    body = text.split("<main>")[1]
    # the questions come first, then the matrix, then the overview and the details
    order = [body.index(h) for h in ("id='answers'", "id='matrix'", "id='overview'", "id='verdicts'")]
    assert order == sorted(order)
    assert "<ol class='answers'>" in body and body.count("<li><b>") == 7  # the seven questions
    assert "Small sample:" in body  # two slices per cell: flagged where the answers are
    assert "<table class='matrix'>" in body
    # the run time in the configuration table is rounded, not printed with 16 digits
    seconds = re.search(r"<code>seconds</code></td><td>([^<]+)</td>", body)
    assert seconds and len(seconds.group(1).replace(".", "")) <= 5


def test_structure_maps_reproduce_the_records(page):
    """The panel's structure map uses the sweep's own noise null: its area is the record's."""
    _, text = page
    pairs = re.findall(r"structure ([\d.]+)% \(record ([\d.]+)%\)", text)
    assert len(pairs) == 2
    assert all(a == b for a, b in pairs)


def test_without_models_the_stored_panels_show(folder, tmp_path):
    d = tmp_path / "stored"
    shutil.copytree(folder, d)
    assert (d / "panels" / "index.json").is_file()  # the page built with models stored them
    text = write_html_report(d).read_text()
    assert text.count('class="slice-panel"') == 2
    assert re.findall(r"structure ([\d.]+)% \(record ([\d.]+)%\)", text)


def test_without_models_or_stored_panels_the_saved_panel_stands_in(folder, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(folder, d)
    shutil.rmtree(d / "panels", ignore_errors=True)  # results of a run that stored no panels
    shutil.copy(d / "delta_ssim_vs_eps.png", d / "panel.png")
    text = write_html_report(d).read_text()
    assert "slice-select" not in text.split("<script>")[0]
    assert "The panel saved with the results (panel.png)" in text
    assert "no panels were stored with the results" in text


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.skipif(not _chromium.available(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_the_page_in_headless_chromium(page, tmp_path):
    path, _ = page
    visible = ("Array.from(document.querySelectorAll('.slice-panel'))"
               ".filter(p => !p.hidden).map(p => p.getAttribute('data-slice'))")
    with _chromium.Browser(tmp_path / "profile", width=1200, height=2000) as browser:
        browser.open(path.as_uri() + "#slice=1")  # the address selects the slice on load
        assert browser.eval("document.body.getAttribute('data-ready')") == "1"  # the script ran
        ok, total = browser.eval("window.kspaceReport.checkImages()")
        assert total >= 6 and ok == total  # every image decodes
        assert browser.eval(visible) == ["1"]
        assert browser.eval("document.getElementById('slice-select').value") == "1"
        browser.eval("var s = document.getElementById('slice-select'); s.value = '0'; "
                     "s.dispatchEvent(new Event('change')); true")
        assert browser.eval(visible) == ["0"]
        browser.eval("document.getElementById('slice-next').click(); true")
        assert browser.eval(visible) == ["1"]
        shot = browser.screenshot(tmp_path / "report.png")
        assert browser.problems() == []  # no console error, uncaught exception or log error
        assert all(u.startswith(("file:", "data:")) for u in browser.requests())
    assert _png_size(shot) == (1200, 2000) and shot.stat().st_size > 20_000
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels[..., :3].std() > 0.05  # not a blank page


def test_the_steps_after_a_sweep_take_its_run_and_rebuild_nothing(tmp_path, monkeypatch):
    """finish_run works from the SweepRun alone: no data built again, no records read back."""
    from kspace_attacks.study import config, demo, sweep
    from kspace_attacks.study.report import TransferReport

    cfg = validate_config({**TINY, "targeted": {"slices": 1, "eps": 0.05}, "report": {"panel_slices": 1}})
    run = run_sweep(cfg, tmp_path, progress=False)
    assert isinstance(run, sweep.SweepRun) and run.out == tmp_path and len(run.batches) == 1
    assert len(run.ids) == 2 and run.models.keys() == {"zero_filled"}

    def forbidden(*args, **kwargs):
        raise AssertionError("rebuilt or re-read within one run")

    for module in (config, sweep):
        monkeypatch.setattr(module, "build_data", forbidden)
    monkeypatch.setattr(TransferReport, "load", classmethod(forbidden))
    result = demo.finish_run(run, title="t")
    assert (tmp_path / "targeted.csv").is_file() and (tmp_path / "report.html").is_file()
    assert result["verdicts"] and "targeted_roi_contrast" in result
