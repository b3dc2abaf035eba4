"""``kspace-attacks certify MODEL``: certified radii (and attack lower bounds) on the demo slices.

The core may not import the model registry or the data layer (``tests/test_architecture.py``
counts function-level imports too), so the command line passes them in:
``run(args, resolve_model=kspace_attacks.adapters.resolve_model,
demo_batch=kspace_attacks.data.demo_batch)``.
The options it shares with other commands (``--out``, ``--seed``, ``--device``, ``--quiet``)
are parent parsers of :mod:`kspace_attacks._cli_options`; :mod:`kspace_attacks.cli.certify`
registers the command.

>>> import argparse
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> args = add_parser(sub).parse_args(["zero_filled", "--eps", "0.01", "0.02", "--out", "o"])
>>> args.eps, args.sigma, args.slices
([0.01, 0.02], 0.01, 8)
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
from pathlib import Path
from typing import Any, Callable

from .._cli_options import Parents
from ..io import atomic_write_json, atomic_write_text

__all__ = ["add_parser", "run", "write_results"]


def add_parser(subparsers: Any, parents: Parents | None = None) -> argparse.ArgumentParser:
    """Declare the ``certify`` subcommand on ``subparsers`` (an ``add_subparsers()`` result).

    :param parents: the shared options' parent parsers (``--out``, ``--seed``, ``--device``,
        ``--quiet``); the command line passes its own, the default makes new ones.
    """
    parents = Parents() if parents is None else parents
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("model", metavar="MODEL",
                     help="a registered name (see `kspace-attacks models`) or module:callable / file.py:callable")
    own.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.02, 0.05],
                     help="budgets relative to ||y|| (default: %(default)s)")
    own.add_argument("--sigma", type=float, default=0.01,
                     help="noise std per measured real entry relative to ||y|| (default: %(default)s); "
                          "eps/sigma above ~2 abstains")
    own.add_argument("--n-pred", type=int, default=10_000,
                     help="draws of the center and of its check (default: %(default)s, the paper's)")
    own.add_argument("--n-cert", type=int, default=10_000, help="draws of the radius (default: %(default)s)")
    own.add_argument("--alpha", type=float, default=0.01, help="failure probability (default: %(default)s)")
    own.add_argument("--delta", type=float, default=0.05,
                     help="the center check's mass margin (default: %(default)s, the paper's)")
    own.add_argument("--slices", type=int, default=8, help="embedded demo slices (default: %(default)s)")
    own.add_argument("--attack-budget", type=int, default=None,
                     help="also attack the smoothed model (WorstCase, this many gradient evaluations per "
                          "eps) for the lower bound of the bracket")
    own.add_argument("--attack-n", type=int, default=32,
                     help="draws per call of the attack's surrogate smoothed model (default: %(default)s)")
    own.add_argument("--eot", type=int, default=1, help="model calls per attack gradient (default: %(default)s)")
    own.add_argument("--batch-size", type=int, default=64,
                     help="noisy inputs per model call (default: %(default)s)")
    return subparsers.add_parser(
        "certify", help="certified upper bound on the smoothed model's output deviation (center smoothing)",
        description="Center smoothing (Kumar & Goldstein, NeurIPS 2021): with probability 1 - alpha, for "
                    "every k-space perturbation ||delta|| <= eps ||y|| on the measured entries, the SMOOTHED "
                    "reconstruction moves by at most the certified radius. Nothing is certified about the "
                    "base model. Writes certificate.csv and certificate.json to --out.",
        parents=[own, parents.out("folder for certificate.csv and certificate.json"),
                 parents.seed("seed of every draw (default: %(default)s)"), parents.device(),
                 parents.quiet("no progress bar")])


def run(args: argparse.Namespace, resolve_model: Callable[..., Any] | None = None,
        demo_batch: Callable[..., Any] | None = None) -> int:
    """Run the subcommand; returns the exit code (0).

    :param resolve_model: ``kspace_attacks.adapters.resolve_model`` (passed in by the CLI).
    :param demo_batch: ``kspace_attacks.data.demo_batch`` (passed in by the CLI).
    """
    if resolve_model is None or demo_batch is None:
        raise TypeError("run: expected resolve_model=kspace_attacks.adapters.resolve_model and "
                        "demo_batch=kspace_attacks.data.demo_batch (the core does not import them), "
                        f"got resolve_model={resolve_model!r}, demo_batch={demo_batch!r}")
    from .api import certify

    device = args.device or "cpu"
    model = resolve_model(args.model, device=device)
    _, y, physics = demo_batch(args.slices)
    y = y.to(device)
    if device != "cpu" and hasattr(physics, "to"):
        physics = physics.to(device)
    cert = certify(model, y, physics, eps=list(args.eps), sigma=args.sigma, n_pred=args.n_pred,
                   n_cert=args.n_cert, alpha=args.alpha, delta=args.delta, batch_size=args.batch_size,
                   seed=args.seed, progress=not args.quiet, attack_budget=args.attack_budget,
                   attack_n=args.attack_n, eot=args.eot)
    settings = {k: v for k, v in vars(args).items() if not callable(v)}
    csv_path, _ = write_results(cert, args.out, model=args.model, settings=settings)
    print(summary_table(cert.to_records(), args.model))
    print(cert.statement)
    print(f"Results in {csv_path.parent.resolve()} (certificate.csv, certificate.json)")
    return 0


def write_results(cert: Any, out: str | Path, model: str = "", settings: dict | None = None) -> tuple[Path, Path]:
    """Write ``certificate.csv`` (one row per sample and eps) and ``certificate.json`` (settings,
    statement, machine, records) atomically; returns both paths."""
    import torch

    out = Path(out)
    records = [{"model": model, **r} for r in cert.to_records()]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    csv_path = atomic_write_text(out / "certificate.csv", buf.getvalue())
    meta = {"model": model, "settings": settings or {}, "statement": cert.statement,
            "attack": cert.attack, "seconds": cert.seconds,
            "machine": {"platform": platform.platform(), "torch": torch.__version__,
                        "threads": torch.get_num_threads()},
            "records": records}
    json_path = atomic_write_json(out / "certificate.json", meta)
    return csv_path, json_path


def summary_table(records: list[dict], model: str = "") -> str:
    """Medians per eps: attack lower bound, certified radius (over certified samples), the
    ratio of the two medians, abstentions.

    >>> rows = [{"eps": 0.01, "radius_rel": 0.5, "lower_rel": 0.01, "abstained": False}]
    >>> print(summary_table(rows, "m"))
    model  eps      lower_rel  radius_rel  width  abstained
    m      0.01        0.0100      0.5000   50.0  0/1
    """
    import math
    import statistics

    w = max(5, len(model))
    lines = [f"{'model':<{w}}  {'eps':<8} {'lower_rel':>9}  {'radius_rel':>10}  {'width':>5}  abstained"]
    for e in sorted({r["eps"] for r in records}):
        rows = [r for r in records if r["eps"] == e]
        ok = [r for r in rows if not r["abstained"]]
        low = [r["lower_rel"] for r in rows if not math.isnan(r["lower_rel"])]
        lo = statistics.median(low) if low else math.nan
        rad = statistics.median([r["radius_rel"] for r in ok]) if ok else math.nan
        width = rad / lo if lo > 0 else math.nan
        lines.append(f"{model:<{w}}  {e:<8g} {lo:>9.4f}  {rad:>10.4f}  {width:>5.1f}  "
                     f"{len(rows) - len(ok)}/{len(rows)}")
    return "\n".join(lines)
