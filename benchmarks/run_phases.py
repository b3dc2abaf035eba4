"""Where a finished run's time went: ``provenance.json``'s ``phase_seconds`` and the sweep's own
split from the records' timing columns (crafting per surrogate and attack, reconstruction per
target).

    python benchmarks/run_phases.py docs/demo

``attack_seconds`` is counted once per crafted perturbation (the rows of one sample, surrogate,
attack and eps share it); ``target_seconds`` once per record. Seconds are the run's own: a run
on shared cores gives shares, not timings.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kspace_attacks.io import read_json  # noqa: E402


def split(records: list[dict]) -> tuple[dict, dict]:
    """``({(surrogate, attack): seconds}, {target: seconds})`` of a run's records."""
    crafting: dict = defaultdict(float)
    targets: dict = defaultdict(float)
    seen = set()
    for r in records:
        key = (r.get("sample_id", r.get("sample")), r["surrogate"], r["attack"], r["eps"])
        if key not in seen:
            seen.add(key)
            crafting[(r["surrogate"], r["attack"])] += float(r.get("attack_seconds") or 0)
        targets[r["target"]] += float(r.get("target_seconds") or 0)
    return dict(crafting), dict(targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a finished run's folder (records.csv, provenance.json)")
    args = parser.parse_args(argv)
    provenance = read_json(args.run / "provenance.json")
    phases = provenance.get("phase_seconds", {})
    total = provenance.get("wall_seconds")
    print(f"wall {total:.0f} s" if total else "wall: not recorded")
    for name, seconds in phases.items():
        print(f"  {name:10s} {seconds:8.1f} s" + (f"  {100 * seconds / total:5.1f} %" if total else ""))
    with open(args.run / "records.csv", newline="") as f:
        crafting, targets = split(list(csv.DictReader(f)))
    print(f"crafting {sum(crafting.values()):.0f} s:")
    for (surrogate, attack), seconds in sorted(crafting.items(), key=lambda kv: -kv[1]):
        print(f"  {surrogate} / {attack}: {seconds:.0f} s")
    print(f"reconstructions {sum(targets.values()):.0f} s:")
    for target, seconds in sorted(targets.items(), key=lambda kv: -kv[1]):
        print(f"  {target}: {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
