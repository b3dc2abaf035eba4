"""How much of each robust model's gain survives the stronger search: its worst-case SSIM loss
against its parent's, under protocol v2 (the fixed 100-evaluation search) and v3 (the adaptive
search, up to 400 evaluations, unreliable rows flagged).

    python benchmarks/make_cards.py --protocol v3 --only irim_noiseless irim_adv resunetpp_noiseless resunetpp_adv
    python benchmarks/make_cards.py --protocol v2 --out benchmarks/results/cards_v2_now --only ...
    python benchmarks/robust_gain.py      # -> benchmarks/results/robust_gain.{csv,md}

The parents are the weights each robust model was fine-tuned from (``irim_noiseless``,
``resunetpp_noiseless``; the candidate ``resunetpp_adv_ssim08``, not shipped, from ``resunetpp``:
its cards are made with ``make_cards.py --candidate`` into ``benchmarks/results/robust_candidates/<v2|v3>``); both cards of a pair are measured on the same 8 embedded test
slices with the same seed, so the two protocols differ only in the search. Per eps: the mean
Delta SSIM of the card's attack row (per slice the worse of the deviation and SSIM
objectives), ``ratio = robust / parent`` (< 1: the robust model loses less), ``gain = 1 -
ratio``, and ``kept = gain(v3) / gain(v2)``: the share of the gain the weaker search reported
that the stronger one confirms.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kspace_attacks.io import atomic_write_text, read_json  # noqa: E402

PAIRS = (("irim_noiseless", "irim_adv"), ("resunetpp_noiseless", "resunetpp_adv"),
         # trained on today's noisy data from the shipped resunetpp: SSIM objective, eps 0.08, mix 0.75
         ("resunetpp", "resunetpp_adv_ssim08"))
#: cards of trained variants that are not shipped: <folder>/<v2|v3>/<name>/card.json
CANDIDATES = ROOT / "benchmarks" / "results" / "robust_candidates"
FIELDS = ["parent", "robust", "eps", "parent_v2", "robust_v2", "ratio_v2", "parent_v3", "robust_v3", "ratio_v3",
          "kept", "unreliable_parent_v3", "unreliable_robust_v3"]


def mean_delta_ssim(card: dict) -> dict[float, float]:
    """eps -> mean Delta SSIM of the card's attack row."""
    return {float(r["eps"]): float(r["delta_ssim"]["mean"]) for r in card["results"]["attack"]}


def unreliable(card: dict) -> dict[float, int]:
    """eps -> rows (slices x objectives) the adaptive search flagged."""
    out: dict[float, int] = {}
    for objective in card["protocol"]["objectives"]:
        for r in card["results"].get(objective, []):
            out[float(r["eps"])] = out.get(float(r["eps"]), 0) + int(r.get("unreliable", 0))
    return out


def card_path(name: str, version: str, folder: Path, candidates: Path) -> Path:
    """A model's card of ``version``: in the shipped cards' ``folder``, else among the candidates'."""
    shipped = folder / name / "card.json"
    return shipped if shipped.is_file() else candidates / version / name / "card.json"


def rows(v2: Path, v3: Path, candidates: Path = CANDIDATES) -> list[dict]:
    out = []
    for parent, robust in PAIRS:
        paths = {(name, version): card_path(name, version, folder, candidates)
                 for name in (parent, robust) for version, folder in (("v2", v2), ("v3", v3))}
        missing = [str(p.parent) for p in paths.values() if not p.is_file()]
        if missing:
            print(f"{robust} ({parent}): not measured, no card in {', '.join(missing)}")
            continue
        cards = {key: read_json(path) for key, path in paths.items()}
        for key, card in cards.items():
            if card["protocol"]["version"] != key[1]:
                raise ValueError(f"{key[0]}: expected a {key[1]} card, got {card['protocol']['version']}")
        d = {key: mean_delta_ssim(card) for key, card in cards.items()}
        flags = {name: unreliable(cards[(name, "v3")]) for name in (parent, robust)}
        for eps in sorted(d[(parent, "v2")]):
            r2 = d[(robust, "v2")][eps] / d[(parent, "v2")][eps]
            r3 = d[(robust, "v3")][eps] / d[(parent, "v3")][eps]
            out.append({"parent": parent, "robust": robust, "eps": eps,
                        "parent_v2": round(d[(parent, "v2")][eps], 4), "robust_v2": round(d[(robust, "v2")][eps], 4),
                        "ratio_v2": round(r2, 3),
                        "parent_v3": round(d[(parent, "v3")][eps], 4), "robust_v3": round(d[(robust, "v3")][eps], 4),
                        "ratio_v3": round(r3, 3),
                        "kept": round((1 - r3) / (1 - r2), 2) if r2 < 1 else "",
                        "unreliable_parent_v3": flags[parent].get(eps, 0),
                        "unreliable_robust_v3": flags[robust].get(eps, 0)})
    return out


def markdown(table: list[dict]) -> str:
    lines = ["# Robustness gain under the fixed and the adaptive search", "",
             "Written by `benchmarks/robust_gain.py` from the v2 cards (`benchmarks/results/cards_v2_now/`) and the "
             "v3 cards (`docs/cards/v3/`; variants not shipped: `benchmarks/results/robust_candidates/<v2|v3>/`) of each "
             "robust model and its parent, 8 embedded test slices. Mean Delta "
             "SSIM of the attack row (worse of both objectives per slice); ratio = robust / parent (< 1: more "
             "robust); kept = (1 - ratio v3) / (1 - ratio v2); unreliable = rows (8 slices x 2 objectives) the "
             "v3 search flagged, parent / robust.", "",
             "| robust (parent) | eps | v2: parent / robust, ratio | v3: parent / robust, ratio | kept | unreliable |",
             "|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['robust']} ({r['parent']}) | {r['eps']:g} | {r['parent_v2']:+.3f} / {r['robust_v2']:+.3f}, "
                     f"{r['ratio_v2']:.2f}x | {r['parent_v3']:+.3f} / {r['robust_v3']:+.3f}, {r['ratio_v3']:.2f}x | "
                     f"{r['kept']} | {r['unreliable_parent_v3']} / {r['unreliable_robust_v3']} |")
    measured = {r["robust"] for r in table}
    for parent, robust in PAIRS:
        if robust not in measured:
            lines.append(f"| {robust} ({parent}) | not measured: its cards are not made yet | | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--v2", type=Path, default=ROOT / "benchmarks" / "results" / "cards_v2_now")
    parser.add_argument("--v3", type=Path, default=ROOT / "docs" / "cards" / "v3")
    parser.add_argument("--candidates", type=Path, default=CANDIDATES,
                        help="cards of variants not shipped: <folder>/<v2|v3>/<name>/card.json")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    table = rows(args.v2, args.v3, args.candidates)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(args.out / "robust_gain.csv", buf.getvalue())
    atomic_write_text(args.out / "robust_gain.md", markdown(table))
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
