"""Robustness cards of the shipped reconstructors under a protocol, and a table comparing them.

Writes ``<out>/<name>/card.json`` and ``card.md`` for every model (``kspace_attacks.evaluate``
on the protocol's 8 embedded test slices, seed 0), then ``<out>/README.md`` from every card
found there (so ``--only`` re-runs one model and keeps the others). Protocol v1 cards live in
``docs/cards``, v2 cards (the worst-case search) in ``docs/cards/v2``, v3 cards (the adaptive
search with its unreliable flags) in ``docs/cards/v3``::

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/make_cards.py --protocol v1 --out docs/cards
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/make_cards.py --only zero_filled irim resunetpp
    python benchmarks/make_cards.py --only irim_adv irim_jit resunetpp_adv   # the robust models
    python benchmarks/make_cards.py --only resunetpp --candidate NAME=resunetpp:WEIGHTS --out DIR  # a trained variant

The diffusion model (100-step seeded sampler, about 1.5 s per slice without gradients) is too
slow to differentiate under the protocol: a white-box attack through its 100-step sampler
costs about 8.5 s per slice and gradient step, some 90 minutes per objective for the 32 rows
of the protocol. Its card therefore uses the protocol's documented ``attack_model`` override:
perturbations are crafted on the same weights with a 10-step differentiable sampler and
evaluated on the shipped 100-step sampler; the card records this and says the numbers are a
lower bound on the white-box worst case.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kspace_attacks import evaluate  # noqa: E402
from kspace_attacks.adapters import load_reconstructor  # noqa: E402
from kspace_attacks.io import atomic_write_text, read_json  # noqa: E402
from kspace_attacks.testing.card_render import comparison_table, fmt_ci  # noqa: E402

DIFFUSION_NOTE = ("the same weights with a 10-step differentiable sampler (load_reconstructor('diffusion', "
                  "differentiable=True, steps=10)); the card's model is the shipped 100-step sampler")

MODELS = {
    "zero_filled": {},
    "irim": {},
    "irim_adv": {},
    "irim_jit": {},
    "resunetpp": {},
    "resunetpp_adv": {},
    # the parents of the robust models: the shipped 0.2 weights, trained on noiseless k-space
    # (irim / resunetpp are these fine-tuned on the noisy preset); robustness gains compare with them
    "irim_noiseless": {},
    "resunetpp_noiseless": {},
    "diffusion": {"attack_model": {"differentiable": True, "steps": 10}, "note": DIFFUSION_NOTE},
}


def make_card(name: str, out: Path, protocol: str = "v3", weights: tuple[str, Path] | None = None) -> dict:
    """The card of ``name`` (a shipped model), or with ``weights = (model, path)`` of a trained
    variant of ``model`` that is not shipped (a candidate), written to ``out / name``."""
    spec = MODELS.get(name, {})
    model = load_reconstructor(name) if weights is None else load_reconstructor(weights[0], weights=str(weights[1]))
    attack_model = load_reconstructor(name, **spec["attack_model"]) if "attack_model" in spec else None
    start = time.perf_counter()
    card = evaluate(model, protocol=protocol, out=out / name, name=name, attack_model=attack_model,
                    attack_model_note=spec.get("note"))
    print(f"{name}: {time.perf_counter() - start:.0f} s, Delta SSIM {card['summary']['worst_delta_ssim']:+.3f} at eps "
          f"{card['summary']['worst_eps']:g}", flush=True)
    return card


def _eps_table(cards: list[dict]) -> str:
    eps = cards[0]["eps"]
    head = ["model", *[f"eps {e:g}" for e in eps]]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for card in cards:
        cells = [f"{fmt_ci(r['delta_ssim'], 3)}; worst {r['delta_ssim']['worst']:+.3f}"
                 for r in card["results"]["attack"]]
        lines.append(f"| [{card['name']}]({card['name']}/card.md) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _adaptive(card: dict) -> bool:
    return "max_budget" in card["protocol"].get("attack_options", {})


def _flagged(card: dict, objective: str) -> int:
    """Rows of ``objective``'s search flagged unreliable (the card stores them per label)."""
    return sum(int(r.get("unreliable", 0)) for r in card["results"].get(objective, []))


def _formats(cards: list[dict]) -> list[str]:
    """A note when the folder mixes card formats (format 1: the noise control drawn from one
    generator per batch; 2: seeded per row): the attack numbers compare, the noise columns are
    different draws."""
    by = {}
    for c in cards:
        by.setdefault(c["format"].rsplit("/", 1)[-1], []).append(c["name"])
    if len(by) < 2:
        return []
    return ["Card formats differ: " + "; ".join(f"format {k}: {', '.join(v)}" for k, v in sorted(by.items()))
            + ". Format 1 drew the noise control from one generator per batch, format 2 seeds it per row "
            "(CHANGELOG 0.3.0); attack rows compare across formats, noise columns are different draws.", ""]


def write_readme(out: Path) -> Path:
    cards = [read_json(p) for p in sorted(out.glob("*/card.json"))]
    order = list(MODELS)
    cards.sort(key=lambda c: order.index(c["name"]) if c["name"] in order else len(order))
    v1 = cards[0]["protocol"]
    text = "\n".join([
        "# Robustness cards of the shipped models", "",
        "Generated by `benchmarks/make_cards.py` (do not edit by hand). Each card measures one model "
        f"under protocol **{v1['version']}**: {v1['description']}. Make one for any model with "
        "`kspace_attacks.evaluate(model, out=DIR)` or `kspace-attacks evaluate --model SPEC --out DIR`.", "",
        "Δ = perturbed − clean against the ground truth (negative = degradation); *worst* is the worst of the "
        "8 slices, the bracket a 95 % bootstrap CI of the mean; the attack row of each eps takes, per slice, "
        "the worse of the two objectives (deviation, SSIM); rel. deviation = ‖f(y+δ) − f(y)‖ / ‖f(y)‖ for the "
        "attack and for equal-norm noise.", "",
        "## At eps 0.02 and 0.08", "", comparison_table(cards),
        "## Mean Δ SSIM [95 % CI] and worst slice, every budget", "", _eps_table(cards),
        "## Non-standard", "",
        *[f"- **{c['name']}**: {c['notes'][0]}" for c in cards if c["model"].get("attack_model")], "",
        *(["Rows the adaptive search flagged unreliable (no two runs within 5 % of the worst case after "
           "400 evaluations), per objective, of the card's 32: " + "; ".join(
               f"{c['name']} " + ", ".join(f"{o} {_flagged(c, o)}" for o in c["protocol"]["objectives"])
               for c in cards) + ".", ""] if any(_adaptive(c) for c in cards) else []),
        "Restart spread (v2 and later; mean over rows, (best - median) / best over the search's starts, "
        "per objective): " + "; ".join(
            f"{c['name']} " + ", ".join(f"{o} {c['cost'][o]['restart_spread_mean']:.2f}"
                                         for o in c["protocol"]["objectives"] if "restart_spread_mean" in c["cost"][o])
            for c in cards) + ".", "",
        "Timings (seconds, 2 shared CPU cores, one torch thread): "
        + ", ".join(f"{c['name']} {c['cost']['total_seconds']:.0f}" for c in cards) + ".", "",
        *_formats(cards)])
    return atomic_write_text(out / "README.md", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", default="v3", choices=["v1", "v2", "v3"])
    parser.add_argument("--out", type=Path, default=None, help="default: docs/cards (v1), docs/cards/<version> (v2, v3)")
    parser.add_argument("--only", nargs="*", choices=list(MODELS), help="models to (re)make (default: all)")
    parser.add_argument("--readme-only", action="store_true", help="only rewrite README.md from the cards")
    parser.add_argument("--candidate", nargs="*", default=[], metavar="NAME=MODEL:WEIGHTS",
                        help="also card trained variants not shipped, e.g. "
                             "resunetpp_adv_ssim08=resunetpp:runs/x/resunetpp_adv.safetensors")
    args = parser.parse_args(argv)
    candidates = {}
    for spec in args.candidate:
        name, _, rest = spec.partition("=")
        model, _, path = rest.partition(":")
        if not (name and model and path) or not Path(path).is_file():
            parser.error(f"--candidate: expected NAME=MODEL:WEIGHTS with an existing weights file, got {spec!r}")
        candidates[name] = (model, Path(path))
    if args.out is None:
        args.out = ROOT / "docs" / "cards" / ("" if args.protocol == "v1" else args.protocol)
    if not args.readme_only:
        for name in args.only if args.only is not None else [] if candidates else list(MODELS):
            make_card(name, args.out, args.protocol)
        for name, weights in candidates.items():
            make_card(name, args.out, args.protocol, weights)
    print(write_readme(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
