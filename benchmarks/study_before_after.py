"""The study's answers before and after the valid-verdicts changes, with what each change did.

    python benchmarks/study_before_after.py --old OLD_DIR --new docs/study [--out docs/study/before_after.md]

Three columns per question and metric (the answer word and the cell counts):

1. **before**: the committed verdicts of the earlier study (``OLD_DIR/verdict.json``: noiseless
   template slices, per-image min-max scores, item bootstrap, no floor, no correction);
2. **old records, new rules**: the same records decided with today's verdict rules (cluster
   bootstrap by anatomical block, practical floors, Holm within each question). The earlier
   study's 24 items are slices of the template's two old test blocks (z 65-72, 113-120), so
   their block is read from their id; this column isolates what the statistics change;
3. **after**: the new study (``--new``: realistic acquisitions, reference-scaled scores, the
   hallucination split, 32 items from 3 subjects, the new rules).

Writes a markdown table (``--out``) and prints it. ``OLD_DIR`` holds ``records.csv``,
``verdict.json`` and ``config.toml`` of the earlier run, e.g. from
``git show 4d23b4c:docs/study/records.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kspace_attacks.data.build import BLOCK
from kspace_attacks.io import read_json
from kspace_attacks.study.answers import answer
from kspace_attacks.study.config import load_config
from kspace_attacks.study.report import records_from_csv
from kspace_attacks.study.verdicts import ablations_of, decide

#: The earlier test split: two contiguous 8-slice blocks of the template, 5 contrasts per slice,
#: items slice-major (``test-<i>`` is z = OLD_TEST_Z[i // 5]).
OLD_TEST_Z = (*range(65, 73), *range(113, 121))
CONTRASTS_PER_SLICE = 5


def old_coordinates(record: dict) -> dict:
    """``subject`` and ``block`` of an earlier study's record (from its ``test-<i>`` id)."""
    index = int(str(record["sample_id"]).rsplit("-", 1)[1])
    z = OLD_TEST_Z[index // CONTRASTS_PER_SLICE]
    return {"subject": "icbm152", "block": (z - 25) // BLOCK}


def _words(rows: list[dict], config: dict) -> dict[tuple[str, str], str]:
    out = {}
    for a in answer(rows, config):
        for metric, word in a.words.items():
            rs = [r for r in a.rows if r["metric"] == metric]
            counts = {}
            for r in rs:
                counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
            tally = ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            out[(a.question.key, metric)] = f"**{word}** ({tally})"
    return out


def table(old_dir: Path, new_dir: Path) -> str:
    old_cfg = load_config(old_dir / "config.toml").as_dict()
    new_cfg = load_config(new_dir / "config.toml").as_dict()
    before_rows = read_json(old_dir / "verdict.json")
    before_rows = before_rows["rows"] if isinstance(before_rows, dict) else before_rows
    records = [dict(r, **old_coordinates(r)) for r in records_from_csv(old_dir / "records.csv")]
    redecided = decide(records, ablations=ablations_of(old_cfg))
    after = read_json(new_dir / "verdict.json")
    after_rows = after["rows"] if isinstance(after, dict) else after
    cols = [_words(before_rows, old_cfg), _words(redecided, old_cfg), _words(after_rows, new_cfg)]
    keys = list(dict.fromkeys(k for c in cols for k in c))
    lines = ["| question | metric | before (0.2) | old records, new rules | after |", "|---|---|---|---|---|"]
    for q, m in keys:
        lines.append(f"| {q} | {m} | " + " | ".join(c.get((q, m), "-") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, required=True, help="folder of the earlier study's results")
    p.add_argument("--new", type=Path, default=Path("docs/study"))
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    text = table(a.old, a.new)
    if a.out is not None:
        a.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
