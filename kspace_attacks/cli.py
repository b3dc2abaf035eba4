"""The ``kspace-attacks`` command line.

    kspace-attacks demo [--out DIR] [--print-config]   the study on the embedded default
    kspace-attacks sweep --config FILE --out DIR       any models, data, attack and eps grid
    kspace-attacks report DIR                          re-render tables and plots of saved results
    kspace-attacks train NAME [...]                    train a shipped reconstructor
    kspace-attacks models                              list the registered reconstructors

Errors in arguments, configs or files print one line and exit with code 2; set
``KSPACE_ATTACKS_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _print_tables(report) -> None:
    for metric in ("ssim_vs_clean", "delta_ssim", "delta_psnr"):
        if report.records and metric in report.records[0]:
            print(report.table(metric))
            print()


def _cmd_demo(args: argparse.Namespace) -> int:
    from .sweep import DEMO_CONFIG, dump_toml, validate_config

    cfg = validate_config(dict(DEMO_CONFIG, device=args.device) if args.device else DEMO_CONFIG)
    if args.print_config:
        sys.stdout.write(dump_toml(cfg))
        return 0
    from .demo import run_demo

    result = run_demo(args.out, cfg, progress=not args.quiet)
    from .report import TransferReport

    _print_tables(TransferReport.load(args.out))
    print("Verdicts:")
    for v in result["verdicts"]:
        print(f"  [{'holds' if v['holds'] else 'fails'}] {v['claim']}")
    if "targeted_roi_contrast" in result:
        shown = ", ".join(f"{t}: {c:.2f}" for t, c in result["targeted_roi_contrast"].items())
        print(f"Targeted blob insertion (ROI contrast, 1 = fully shown): {shown}")
    print(f"Results in {Path(args.out).resolve()} (records.csv, summary.json, *.png, verdict.md)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import load_config, run_sweep

    cfg = load_config(args.config)
    if args.device:
        cfg["device"] = args.device
    report = run_sweep(cfg, args.out, progress=not args.quiet)
    failed = Path(args.out) / "failed.csv"
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports the merged run
        _print_tables(report)
        if failed.is_file():
            n = max(0, len(failed.read_text().splitlines()) - 1)
            print(f"kspace-attacks sweep: {n} batch(es) failed, see {failed}", file=sys.stderr)
        print(f"Results in {Path(args.out).resolve()}")
    return 1 if not report.records and failed.is_file() else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import TransferReport

    from .demo import write_verdicts

    report = TransferReport.load(args.dir)
    paths = report.plot(args.dir)
    _print_tables(report)
    print("Figures: " + ", ".join(str(p) for p in paths))
    items = write_verdicts(report, args.dir)
    if items:
        print("Verdicts:")
        for v in items:
            print(f"  [{'holds' if v['holds'] else 'fails'}] {v['claim']}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .adapters import list_reconstructors

    print("\n".join(list_reconstructors()))
    return 0


def _cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    if args.name == "diffusion":
        from .adapters.training_diffusion import main as train_main

        return int(train_main(rest) or 0)
    from .adapters.training import main as train_main

    return int(train_main([args.name, *rest]) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kspace-attacks",
        description="Worst-case k-space perturbations for MRI reconstruction models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the study on the embedded default (about 6 min on 2 CPU cores)")
    demo.add_argument("--out", default="kspace-attacks-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--print-config", action="store_true", help="print the demo's settings as a sweep config and exit")
    demo.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep = sub.add_parser("sweep", help="run a sweep from a TOML/YAML config")
    sweep.add_argument("--config", required=True, help="sweep configuration (.toml, .yaml)")
    sweep.add_argument("--out", required=True, help="output folder")
    sweep.add_argument("--device", default=None, help="override the config's device")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    report = sub.add_parser("report", help="re-render tables and plots of saved results")
    report.add_argument("dir", help="folder written by demo or sweep")
    sub.add_parser("models", help="list the registered reconstructors")
    train = sub.add_parser("train", help="train a reconstructor on the embedded data (see train NAME --help)",
                           add_help=False)
    train.add_argument("name", help="diffusion, irim or resunetpp")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kspace-attacks``; returns the exit code."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from .sweep import ConfigError

    try:
        if args.command == "train":
            return _cmd_train(args, rest)
        return {"demo": _cmd_demo, "sweep": _cmd_sweep, "report": _cmd_report, "models": _cmd_models}[args.command](args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, TypeError) as e:
        if os.environ.get("KSPACE_ATTACKS_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"kspace-attacks {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kspace-attacks {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
