"""``report.html``: one self-contained page that people open, for a sweep or demo result folder.

:func:`write_html_report` reads what a sweep wrote (``records.csv``, ``summary.json`` with the
configuration, ``verdict.json``, ``*.png``, ``perturbations/``, and optionally
``targeted.csv``, ``targeted_panel.png``, ``panel.png``, ``failed.csv``) and writes one HTML
file with everything inside it: figures are base64 PNG data URIs, style and script are
inline, nothing is fetched from a network, and it works from ``file://``. It shows:

- first, the study's questions answered per metric in one line each (n, effect, CI;
  :mod:`.answers`), a small-sample banner when cells rest on fewer than 10 independent units
  (subjects, blocks or slices), and a claim x target matrix coloured by outcome;
- the configuration (numbers rounded) and what the run covered;
- the verdicts, every claim per metric and eps with its mean difference, 95 % CI, practical
  floor, adjusted p-value and the units behind it (subjects, blocks or slices);
- relative deviation, Delta SSIM and Delta PSNR against eps, one panel per target and a line
  per surrogate and attack (with the means and CIs as tables);
- image panels per eps and slice (clean, perturbed, difference and the structure map beyond
  the target's noise null, :mod:`.html_panels`) with a slice selector (also ``#slice=K`` in
  the address); they need the models (``models=``), otherwise the saved ``panel.png`` stands in;
- the targeted-insertion panel and table, other saved figures, and the failed slices.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..io import atomic_write_text, read_json
from . import records as R
from .html_panels import PanelSet, build_panels, load_panels, save_panels
from .report import TransferReport
from .statistics import support
from .steps import best_effort, read_notes

__all__ = ["write_html_report", "render_html_report"]

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#fafbfc}
header,main{max-width:1180px;margin:0 auto;padding:0 20px}
header{padding-top:18px}h1{font-size:1.6em;margin:.2em 0}h2{margin-top:1.6em;border-bottom:2px solid #dde3ea}
nav a{margin-right:1em}.muted{color:#5b6570;font-size:.92em}.warn{color:#8a4b00}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em;background:#fff}
th,td{border:1px solid #d5dbe1;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.holds{background:#d9f2de}.does-not-hold{background:#eceff2}.inconclusive{background:#fff1c9}
.no-difference{background:#f4f4f4;color:#555}.mixed{background:#ffe0c2}.negligible{background:#e3edf7}
.banner{padding:8px 12px;border:1px solid #e0b400;background:#fff6d6}
ol.answers>li{margin:.6em 0}li.answer{list-style:square}li.yes{color:#17602a}li.no{color:#444}
table.matrix td.num{text-align:center}
img{max-width:100%;height:auto;background:#fff;border:1px solid #d5dbe1}
figure{margin:.8em 0}figcaption{font-size:.9em;color:#3b4550}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
.controls{position:sticky;top:0;background:#fafbfc;padding:6px 0;border-bottom:1px solid #dde3ea;z-index:1}
code{background:#eef2f6;padding:0 3px;border-radius:3px}
"""

_JS = """
(function () {
  var select = document.getElementById('slice-select');
  function show(k) {
    var panels = document.querySelectorAll('.slice-panel');
    for (var i = 0; i < panels.length; i++) {
      panels[i].hidden = panels[i].getAttribute('data-slice') !== String(k);
    }
    if (select) { select.value = String(k); }
    document.body.setAttribute('data-slice', String(k));
  }
  function fromHash() {
    var m = /(?:^|[#&])slice=([^&]+)/.exec(window.location.hash);
    if (!select || !select.options.length) { return 0; }
    if (m) {
      var v = decodeURIComponent(m[1]);
      for (var i = 0; i < select.options.length; i++) {
        if (select.options[i].value === v || select.options[i].text === v) { return select.options[i].value; }
      }
    }
    return select.options[0].value;
  }
  function step(d) {
    var n = select.options.length;
    show(select.options[(select.selectedIndex + d + n) % n].value);
  }
  function checkImages() {
    var imgs = document.images, ok = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
    }
    var el = document.getElementById('image-check');
    el.setAttribute('data-ok', String(ok));
    el.setAttribute('data-total', String(imgs.length));
    el.textContent = ok + ' of ' + imgs.length + ' images decoded';
    return [ok, imgs.length];
  }
  if (select) {
    select.addEventListener('change', function () { show(select.value); });
    document.getElementById('slice-prev').addEventListener('click', function () { step(-1); });
    document.getElementById('slice-next').addEventListener('click', function () { step(1); });
    window.addEventListener('hashchange', function () { show(fromHash()); });
    show(fromHash());
  }
  window.addEventListener('load', checkImages);
  window.kspaceReport = {show: show, checkImages: checkImages};
  document.body.setAttribute('data-ready', '1');
})();
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _num(v: Any, digits: int = 3, signed: bool = False) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _e("" if v is None else v)
    if math.isnan(f):
        return "n/a"
    return f"{f:+.{digits}f}" if signed else f"{f:.{digits}g}" if abs(f) >= 1e4 else f"{f:.{digits}f}"


def _table(head: Sequence[str] | None, rows: Sequence[Sequence[Any]], numeric: Sequence[int] = (),
           row_class: Sequence[str] | None = None) -> str:
    """A table of already escaped cells (``head=None``: a key / value table without header)."""
    out = ["<table>" + ("" if head is None else "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head)
                        + "</tr></thead>") + "<tbody>"]
    for k, row in enumerate(rows):
        cls = f' class="{row_class[k]}"' if row_class else ""
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        out.append(f"<tr{cls}>{cells}</tr>")
    return "\n".join(out) + "</tbody></table>"


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------- sections
def _overview(report: TransferReport, failed: list[dict], directory: Path) -> str:
    recs = report.records
    cfg = report.config
    ids = sorted({str(r.get(R.SAMPLE_ID)) for r in recs})
    facts = [("records", len(recs)), ("slices", len(ids)),
             ("surrogates", ", ".join(map(str, cfg.get("surrogates", [])))),
             ("targets", ", ".join(map(str, cfg.get("targets", [])))),
             ("attacks", ", ".join(cfg.get("attacks", {}))),
             ("eps", ", ".join(f"{float(e):g}" for e in cfg.get("eps", []))),
             ("failed batches", len(failed)), ("folder", directory.resolve().name)]
    if cfg.get("seconds") is not None:
        facts.append(("run time", f"{float(cfg['seconds']):.0f} s"))
    notes = "".join(f"<p class='warn'>Not made: {_e(n['step'])} ({_e(n['error'])}). The records and "
                    "verdicts are complete.</p>" for n in read_notes(directory))
    return _table(None, [(f"<b>{_e(k)}</b>", _e(v)) for k, v in facts]) + notes


def _rounded(v: Any) -> Any:
    """Floats to 4 significant digits (a run's seconds, eps grids), recursively."""
    if isinstance(v, float):
        return float(f"{v:.4g}")
    if isinstance(v, Mapping):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def _config_section(cfg: Mapping[str, Any]) -> str:
    rows = []
    for k, v in cfg.items():
        v = _rounded(v)
        text = json.dumps(v, indent=1) if isinstance(v, (dict, list)) else str(v)
        rows.append((f"<code>{_e(k)}</code>", f"<pre>{_e(text)}</pre>" if "\n" in text else _e(text)))
    return _table(["key", "value"], rows)


def _small_sample_banner(rows: list[dict]) -> str:
    small = [r for r in rows if r.get("small_sample")]
    if not small:
        return ""
    n = min(int(r.get("n_clusters", r.get("n", 0)) or 0) for r in small)
    return (f"<p class='banner small-sample'><b>Small sample:</b> {len(small)} of {len(rows)} verdict cells "
            f"rest on fewer than 10 independent units (subjects, blocks or slices; as few as {n}); read their "
            "outcomes as indications.</p>")


def _answers_section(rows: list[dict], cfg: Mapping[str, Any]) -> str:
    from .answers import answer

    if not rows:
        return "<p>No verdicts in this folder (<code>kspace-attacks report DIR</code> decides them).</p>"
    items = []
    for a in answer(rows, cfg):
        if not a.lines:
            body = "<li class='muted'>not measured in this run</li>"
        else:
            body = "".join(f"<li class='answer {_e(a.words[m]).replace(' ', '-')}'>{_e(line)}</li>"
                           for m, line in zip(a.words, a.lines, strict=True))
        items.append(f"<li><b>{_e(a.question.text)}</b><ul>{body}</ul></li>")
    return ("<p>Per metric: the answer (<i>yes</i> = every cell holds, <i>no</i> = none holds), the outcome "
            "counts over the cells (surrogate x attack x eps) after the multiplicity correction within each "
            "claim, the subjects and clusters behind them, and one cell with its mean paired difference "
            "[95 % bootstrap CI], n slices and adjusted p (positive = the first condition is worse; "
            "<i>negligible</i> = within the practical floor).</p><ol class='answers'>"
            + "".join(items) + "</ol>")


_OUTCOME_CLASS = {"holds": "holds", "does not hold": "does-not-hold", "negligible": "negligible",
                  "inconclusive": "inconclusive", "no difference": "no-difference"}


def _matrix_section(rows: list[dict]) -> str:
    """Claim x metric rows, a column per target: outcome counts, coloured by the outcome when all
    cells agree (mixed otherwise)."""
    if not rows:
        return ""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    keys = list(dict.fromkeys((r["claim_id"], r["metric"]) for r in rows))
    body = []
    for claim, metric in keys:
        cells = []
        for t in targets:
            outs = [r["outcome"] for r in rows if r["claim_id"] == claim and r["metric"] == metric and r["target"] == t]
            if not outs:
                cells.append("<td class='empty'></td>")
                continue
            kinds = set(outs)
            cls = _OUTCOME_CLASS.get(outs[0], "") if len(kinds) == 1 else "mixed"
            tally = " ".join(f"{outs.count(o)}{o[0].upper() if o != 'no difference' else '='}"
                             for o in _OUTCOME_CLASS if o in kinds)
            cells.append(f"<td class='num {cls}' title='{_e(', '.join(f'{outs.count(o)} {o}' for o in kinds))}'>"
                         f"{_e(tally)}</td>")
        body.append(f"<tr><td>{_e(claim)}</td><td>{_e(metric)}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{_e(t)}</th>" for t in targets)
    return ("<p class='muted'>Cells: outcome counts over surrogates, attacks and eps after the correction (H "
            "holds, D does not hold, N negligible, I inconclusive, = no difference); green: all hold, grey: all "
            "do not hold, blue: all negligible, yellow: all inconclusive, orange: mixed.</p>"
            f"<table class='matrix'><thead><tr><th>claim</th><th>metric</th>{head}</tr></thead><tbody>"
            + "\n".join(body) + "</tbody></table>")


def _verdict_section(rows: list[dict], settings: Mapping[str, Any] | None = None) -> str:
    if not rows:
        return "<p>No verdicts in this folder (<code>kspace-attacks report DIR</code> decides them).</p>"
    s = settings or {}
    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        counts[(r["claim_id"], r["metric"])][r["outcome"]] += 1
    out = ["<p>Each row compares two conditions on the same slices: the mean paired difference "
           "(positive = the first is worse), its 95 % cluster-bootstrap confidence interval (slices resampled by "
           "subject, by (subject, block) with fewer subjects, by slice without subject ids: <i>unit</i>), and the "
           f"practical floor ({100 * float(s.get('floor_fraction', 0.1)):g} % of what the second condition does, "
           "at least the metric's absolute floor). A claim <b>holds</b> when the difference is above the floor, "
           "<b>does not hold</b> when it is below minus the floor, is <b>negligible</b> within it, <b>no "
           "difference</b> within float rounding, and <b>inconclusive</b> otherwise; outcomes are decided by "
           f"bootstrap p-values adjusted within each question, a claim about one target in one metric ({_e(s.get('correction', 'holm'))}, alpha "
           f"{float(s.get('alpha', 0.05)):g}).</p>",
           _table(["claim", "metric", *_OUTCOME_CLASS],
                  [(_e(c), _e(m), *(v[o] for o in _OUTCOME_CLASS)) for (c, m), v in counts.items()],
                  numeric=(2, 3, 4, 5, 6))]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["claim"]].append(r)
    opened = " open" if len(rows) <= 60 else ""
    for claim, rs in groups.items():
        body = _table(
            ["metric", "eps", "mean difference", "95 % CI", "floor", "p (adjusted)", "outcome", "n", "unit"],
            [(_e(r["metric"]), _num(r["eps"], 3), _num(r["mean_diff"], 4, True),
              f"[{_num(r['ci_low'], 4, True)}, {_num(r['ci_high'], 4, True)}]", _num(r.get("floor"), 4),
              "" if r.get("p_adjusted") is None else f"{float(r['p_adjusted']):.2g}", _e(r["outcome"]),
              r.get("n", ""), _e(support([r])))
             for r in rs], numeric=(1, 2, 3, 4, 5, 7),
            row_class=[r["outcome"].replace(" ", "-") for r in rs])
        setting = rs[0].get("setting", "")
        out.append(f"<details{opened}><summary>{_e(claim)} <span class='muted'>({_e(setting)})</span>"
                   f"</summary>{body}</details>")
    return "\n".join(out)


def _curve_metrics(report: TransferReport) -> list[str]:
    first = report.records[0] if report.records else {}
    metrics = [R.RELATIVE_DEVIATION] if R.RELATIVE_DEVIATION in first else []
    metrics += [R.DELTA_SSIM, R.DELTA_PSNR] if R.DELTA_SSIM in first else [R.SSIM_VS_CLEAN, R.PSNR_VS_CLEAN]
    return metrics


def _curve_table(report: TransferReport, metric: str) -> str:
    rows = report.summary(keys=(R.SURROGATE, R.TARGET, R.ATTACK, R.EPS), metrics=(metric,))
    grid = sorted({float(r[R.EPS]) for r in rows})
    lines: dict[tuple, dict[float, dict]] = defaultdict(dict)
    for r in rows:
        lines[(r[R.SURROGATE], r[R.TARGET], r[R.ATTACK])][float(r[R.EPS])] = r
    digits = 2 if "psnr" in metric else 4
    body = []
    for (s, t, a), cells in sorted(lines.items()):
        vals = []
        for e in grid:
            c = cells.get(e, {})
            mean, lo, hi = c.get(f"{metric}_mean"), c.get(f"{metric}_ci_low"), c.get(f"{metric}_ci_high")
            vals.append("" if mean is None else f"{_num(mean, digits)} [{_num(lo, digits)}, {_num(hi, digits)}]")
        body.append((_e(f"{s} → {t}"), _e(a), *vals))
    return _table(["surrogate → target", "attack", *[f"eps {e:g}" for e in grid]], body,
                  numeric=tuple(range(2, 2 + len(grid))))


def _curves_section(report: TransferReport) -> tuple[str, set[str]]:
    from .plots import plot_metric_vs_eps

    out, names = [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for metric in _curve_metrics(report):
            try:
                path = plot_metric_vs_eps(report, metric, Path(tmp) / f"{metric}.png")
            except ValueError as err:
                out.append(f"<p class='muted'>{_e(metric)}: {_e(err)}</p>")
                continue
            names.add(f"{metric}_vs_eps.png")
            label = R.LABELS.get(metric, metric)
            out.append(f"<h3>{_e(label)}</h3><figure>{_img(path.read_bytes(), label)}<figcaption>One panel per "
                       "target, a line per surrogate / attack (dashed: equal-norm noise); error bars: 95 % "
                       "bootstrap CI of the mean over slices (the verdicts' interval).</figcaption></figure>"
                       f"<details><summary>numbers (mean [95 % bootstrap CI])</summary>{_curve_table(report, metric)}"
                       "</details>")
    return "\n".join(out), names


def _panels_section(panels: PanelSet | None, directory: Path, reason: str) -> str:
    if panels is None or not panels.panels:
        saved = directory / "panel.png"
        note = f"<p class='muted'>Per-slice panels were not computed: {_e(reason)}.</p>"
        if saved.is_file():
            return note + f"<figure>{_img(saved.read_bytes(), 'saved image panel')}<figcaption>The panel saved " \
                          "with the results (panel.png).</figcaption></figure>"
        return note
    options = "".join(f'<option value="{k}">{_e(s)}</option>' for k, s in enumerate(panels.slice_ids))
    out = [f"<p>Perturbations crafted on <b>{_e(panels.surrogate)}</b> with <b>{_e(panels.attack)}</b>, "
           f"reconstructed by {_e(', '.join(panels.targets))}. Columns: clean reconstruction, perturbed "
           "reconstruction (same grey scale), their difference, and in red where the smoothed difference "
           "exceeds the target's own response to equal-norm noise (null fitted from the sweep's noise "
           "draws at level 0.01: noise marks about 1 % of the image).</p>",
           *[f"<p class='muted'>{_e(n)}</p>" for n in panels.notes],
           '<div class="controls"><label for="slice-select">slice </label><select id="slice-select">'
           f'{options}</select> <button type="button" id="slice-prev">previous</button> '
           '<button type="button" id="slice-next">next</button> <span class="muted">(or open the page '
           'with <code>#slice=K</code>)</span></div>']
    index = {s: k for k, s in enumerate(panels.slice_ids)}
    for e in panels.eps:
        out.append(f"<h3>eps = {e:g}</h3>")
        for p in (q for q in panels.panels if q.eps == e):
            details = _table(["target", "record numbers"], [(_e(t), _e(text)) for t, text in p.details])
            out.append(f'<figure class="slice-panel" data-slice="{index[p.slice_id]}">{_img(p.png, p.caption)}'
                       f"<figcaption>{_e(p.caption)}{details}</figcaption></figure>")
    return "\n".join(out)


def _targeted_section(directory: Path) -> str:
    rows = _read_csv(directory / "targeted.csv")
    png = directory / "targeted_panel.png"
    if not rows and not png.is_file():
        return ""
    out = ["<h2 id='targeted'>Targeted structure insertion</h2>"]
    if png.is_file():
        out.append(f"<figure>{_img(png.read_bytes(), 'targeted panel')}<figcaption>A blob pulled into the "
                   "reconstruction by a targeted attack (first column: the target image).</figcaption></figure>")
    if rows:
        head = list(rows[0])
        out.append(_table(head, [[_num(r[h], 4) if _is_number(r[h]) else _e(r[h]) for h in head] for r in rows]))
    return "\n".join(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _saved_figures(directory: Path, skip: set[str]) -> str:
    skip = skip | {"panel.png", "targeted_panel.png"}
    pngs = [p for p in sorted(directory.glob("*.png")) if p.name not in skip]
    if not pngs:
        return ""
    return "<h2 id='figures'>Other figures saved with the results</h2>" + "".join(
        f"<figure>{_img(p.read_bytes(), p.name)}<figcaption>{_e(p.name)}</figcaption></figure>" for p in pngs)


def _failed_section(failed: list[dict]) -> str:
    if not failed:
        return "<p>No slice failed.</p>"
    head = [h for h in ("batch", "sample_ids", "error") if h in failed[0]] or list(failed[0])
    return _table(head, [[_e(r.get(h, "")) for h in head] for r in failed])


def _columns_section(report: TransferReport) -> str:
    first = report.records[0] if report.records else {}
    rows = [(f"<code>{_e(c.name)}</code>", _e(c.unit), _e(c.meaning)) for c in R.COLUMNS.values() if c.name in first]
    return _table(["column", "unit", "meaning"], rows)


# ---------------------------------------------------------------------------------- the page
def render_html_report(directory: str | os.PathLike, models: Mapping[str, Any] | None = None,
                       report: TransferReport | None = None, **panel_options: Any) -> str:
    """The HTML text of :func:`write_html_report` (nothing is written)."""
    from .. import __version__

    d = Path(directory)
    report = TransferReport.load(d) if report is None else report
    decided = read_json(d / "verdict.json") if (d / "verdict.json").is_file() else {}
    verdicts = decided.get("rows", [])
    failed = _read_csv(d / "failed.csv")
    if models:  # built from the run's models, and stored so later pages need no model
        panels = best_effort(d, "image panels", build_panels, d, report.config, report.records, models,
                             **panel_options)
        reason = "no saved perturbations or no configured target among the given models"
        if panels is not None:
            save_panels(panels, d)
        else:
            reason = next((f"building them failed ({n['error']})" for n in read_notes(d)
                           if n["step"] == "image panels"), reason)
    else:
        panels = load_panels(d)
        reason = ("no panels were stored with the results (the sweep stores them; "
                  "`kspace-attacks report --rebuild-panels` builds them from the configuration's models)")
    curves, plotted = _curves_section(report) if report.records else ("<p>No records.</p>", set())
    title = f"kspace-attacks report: {d.resolve().name}"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("answers", "The study's questions, answered", _small_sample_banner(verdicts)
         + _answers_section(verdicts, report.config)),
        ("matrix", "Claims x targets", _matrix_section(verdicts)),
        ("overview", "Overview", _overview(report, failed, d)),
        ("verdicts", "Verdicts", _verdict_section(verdicts, decided.get("settings"))),
        ("curves", "Change against the budget", curves),
        ("panels", "Image panels", _panels_section(panels, d, reason)),
    ]
    body = [f"<h2 id='{k}'>{_e(t)}</h2>\n{html_}" for k, t, html_ in sections]
    body += [_targeted_section(d), _saved_figures(d, plotted),
             f"<h2 id='failed'>Failed slices</h2>\n{_failed_section(failed)}",
             f"<h2 id='config'>Configuration</h2>\n{_config_section(report.config)}",
             f"<h2 id='columns'>Record columns</h2>\n{_columns_section(report)}"]
    nav = " ".join(f"<a href='#{k}'>{_e(t)}</a>" for k, t in
                   [*((k, t) for k, t, _ in sections), ("failed", "Failed slices"), ("config", "Configuration")])
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1><p class='muted'>kspace-attacks {_e(__version__)}, written {stamp}. "
        "Sign convention: Delta = perturbed - clean (a degradation is a negative Delta SSIM / PSNR). "
        "<span id='image-check'></span></p><nav>" + nav + "</nav></header>",
        "<main>", *body, "</main>", f"<script>{_JS}</script>", "</body></html>", ""])


def write_html_report(directory: str | os.PathLike, models: Mapping[str, Any] | None = None,
                      out: str | os.PathLike | None = None, report: TransferReport | None = None,
                      **panel_options: Any) -> Path:
    """Write ``report.html`` (self-contained, see the module's docstring) into ``directory``.

    :param directory: a folder written by ``kspace-attacks sweep`` or ``demo``.
    :param models: name -> reconstructor for the image panels (the configuration's targets
        found here get rows; the panels are stored in ``directory/panels`` for later pages);
        ``None``: the stored panels are shown, and no model is built or run.
    :param out: where to write (default ``directory / "report.html"``).
    :param report: the run's records if in memory (a sweep's :class:`~.sweep.SweepRun`);
        ``None``: read from ``directory``.
    :param panel_options: ``surrogate``, ``attack``, ``eps``, ``null_draws``, ``max_slices`` of
        :func:`kspace_attacks.study.html_panels.build_panels`.
    :return: the path written (atomically).
    """
    text = render_html_report(directory, models, report, **panel_options)
    return atomic_write_text(Path(out) if out is not None else Path(directory) / "report.html", text)
