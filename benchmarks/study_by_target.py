"""The study's answers for each diffusion target side by side: the earlier model (from the
previous run), the shipped one and deepinv's solvers driven by the shipped score network::

    python benchmarks/study_by_target.py docs/study --previous OLD [--out docs/study/by_target.md]

Each column answers the study's questions (:mod:`kspace_attacks.study.answers`) about one
target: the answer word and the outcome counts over its cells (each target is its own family
for the multiplicity correction, so adding a target changes no other column), then the headline
cell (i-RIM's first attack at the largest eps: paired mean difference attack - noise [95 % CI]),
and each target's clean quality from the records. ``--previous`` is the folder of an earlier
run whose ``diffusion`` target was the earlier model (``records.csv``, ``config.toml``,
``verdict.json``, e.g. from ``git show 2024ad3:docs/study/records.csv``): its records are
decided again with today's rules. The supervised surrogates, data and seeds being the same, its
transferred perturbations are the ones the other columns saw (the white-box diffusion rows are
not: they were crafted on the earlier model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kspace_attacks.io import read_json
from kspace_attacks.study.answers import answer
from kspace_attacks.study.config import load_config
from kspace_attacks.study.report import records_from_csv
from kspace_attacks.study.statistics import correct
from kspace_attacks.study.verdicts import ablations_of, decide

#: targets in the order of the table, when present (the ablation rides with the shipped model)
ORDER = ("diffusion_3k", "diffusion", "diffusion_dps", "diffusion_diffpir", "dps_50", "diffpir_50")
PREVIOUS = "diffusion (0.3 model, previous run)"


def _cell(a) -> dict[str, str]:
    out = {}
    for metric, word in a.words.items():
        rs = [r for r in a.rows if r["metric"] == metric]
        counts: dict[str, int] = {}
        for r in rs:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        tally = ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        out[metric] = f"**{word}** ({tally})"
    return out


def _headline(rows: list[dict], target: str, surrogate: str, attack: str, eps: float) -> dict[str, str]:
    out = {}
    for r in rows:
        if (r.get("claim_id"), r.get("target"), r.get("surrogate"), r.get("attack"), r.get("eps")) == (
                "beats_noise", target, surrogate, attack, eps):
            fmt = "{:+.2f}" if r["metric"] == "psnr" else "{:+.3f}"
            out[r["metric"]] = (f"{fmt.format(r['mean_diff'])} [{fmt.format(r['ci_low'])}, "
                                f"{fmt.format(r['ci_high'])}]")
    return out


def _column(rows: list[dict], cfg: dict, target: str) -> dict:
    ablation = [t for t in cfg["targets"] if (cfg.get("models", {}).get(t) or {}).get("model") == target]
    return {a.question.key: _cell(a) for a in answer(rows, cfg, diffusion=[target, *ablation])}


def _quality(records: list[dict], target: str) -> str:
    clean = {r["sample_id"]: (r["clean_ssim"], r["clean_psnr"]) for r in records if r["target"] == target}
    n = max(len(clean), 1)
    return (f"SSIM {sum(v[0] for v in clean.values()) / n:.3f}, "
            f"PSNR {sum(v[1] for v in clean.values()) / n:.2f} dB ({len(clean)} items)")


def _previous(folder: Path) -> tuple[list[dict], dict, list[dict]]:
    """An earlier run's verdict rows decided with today's rules, its config and its records."""
    cfg = load_config(folder / "config.toml").as_dict()
    records = records_from_csv(folder / "records.csv")
    old = read_json(folder / "verdict.json")
    targeted = [r for r in (old["rows"] if isinstance(old, dict) else old) if r.get("claim_id") == "targeted_shows"]
    return decide(records, ablations=ablations_of(cfg)) + correct(targeted), cfg, records


def table(study: Path, previous: Path | None = None) -> str:
    cfg = load_config(study / "config.toml").as_dict()
    verdict = read_json(study / "verdict.json")
    rows = verdict["rows"] if isinstance(verdict, dict) else verdict
    records = records_from_csv(study / "records.csv")
    present = [t for t in ORDER if t in cfg["targets"]]
    columns = {t: _column(rows, cfg, t) for t in present}
    quality = {t: _quality(records, t) for t in present}
    surrogate, attack = cfg["surrogates"][0], next(iter(cfg["attacks"]))
    eps = max(cfg["eps"])
    heads = {t: _headline(rows, t, surrogate, attack, eps) for t in present}
    if previous is not None:
        old_rows, old_cfg, old_records = _previous(previous)
        columns = {PREVIOUS: _column(old_rows, old_cfg, "diffusion"), **columns}
        quality = {PREVIOUS: _quality(old_records, "diffusion"), **quality}
        heads = {PREVIOUS: _headline(old_rows, "diffusion", surrogate, attack, eps), **heads}
        present = [PREVIOUS, *present]
    lines = ["| question | metric | " + " | ".join(present) + " |", "|---|---|" + "---|" * len(present),
             "| clean quality (reference scale, the study's items) | | " + " | ".join(quality[t] for t in present) + " |"]
    keys = list(dict.fromkeys((q, m) for t in present for q, cells in columns[t].items() for m in cells))
    for q, m in keys:
        lines.append(f"| {q} | {m} | " + " | ".join(columns[t].get(q, {}).get(m, "-") for t in present) + " |")
    for m in ("deviation", "psnr", "ssim"):
        lines.append(f"| {surrogate} / {attack} at eps {eps:g}: attack - noise | {m} | "
                     + " | ".join(heads[t].get(m, "-") for t in present) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", type=Path, nargs="?", default=Path("docs/study"))
    p.add_argument("--previous", type=Path, default=None, help="folder of an earlier run (its diffusion model)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    text = table(a.study, a.previous)
    if a.out is not None:
        a.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
