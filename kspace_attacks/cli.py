"""The ``kspace-attacks`` command line.

    kspace-attacks demo [--out DIR] [--print-config]   the study on the embedded default
    kspace-attacks sweep --config FILE --out DIR       any models, data, attack and eps grid
    kspace-attacks study [--out DIR] [--config FILE] [--print-config] [--dry-run]
                                                       the study at scale (24 slices, white-box diffusion)
    kspace-attacks report DIR                          tables, plots, verdicts and report.html of results
    kspace-attacks evaluate --model SPEC --out DIR     a robustness card under a fixed protocol
    kspace-attacks train NAME [...]                    train a shipped reconstructor
    kspace-attacks models                              list the registered reconstructors
    kspace-attacks certify MODEL --eps E.. --out DIR   certified radius of the smoothed model (center smoothing)
    kspace-attacks config-reference                    every configuration key (docs/CONFIG.md)

Exit codes: 0 success; 2 an error in the arguments, the configuration or a data file (one
line is printed; set ``KSPACE_ATTACKS_DEBUG=1`` to see the traceback instead); 3 a sweep in
which some slices failed (see ``failed.csv``; ``--allow-failures`` accepts partial results and
exits 0 with a warning, but a sweep in which every slice failed still exits 3); 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["main", "EXIT_OK", "EXIT_ERROR", "EXIT_FAILED_SLICES", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_ERROR, EXIT_FAILED_SLICES, EXIT_INTERRUPTED = 0, 2, 3, 130
SWEEP_EXIT_CODES = """\
exit codes:
  0    every slice succeeded (or some failed and --allow-failures was given)
  2    error in the arguments, the configuration or a data file
  3    some slices failed (listed in OUT/failed.csv); with --allow-failures, only
       when every slice failed
  130  interrupted (run the same command again to resume)
"""


def _print_tables(report) -> None:
    from .study import records as R

    for metric in (R.SSIM_VS_CLEAN, R.DELTA_SSIM, R.DELTA_PSNR):
        if report.records and metric in report.records[0]:
            print(report.table(metric))
            print()


def _cmd_demo(args: argparse.Namespace) -> int:
    from .study.config import DEMO_CONFIG, DEMO_OVERRIDES, STUDY_CONFIG, dump_toml, load_config, validate_config

    base = STUDY_CONFIG if args.command == "study" else {**DEMO_CONFIG, **DEMO_OVERRIDES}
    cfg = load_config(args.config, base) if args.config else validate_config(base)
    if args.device:
        cfg["device"] = args.device
    if args.print_config:
        sys.stdout.write(dump_toml(cfg))
        return 0
    if args.dry_run:  # the plan and a timed estimate; nothing is written to --out
        from .study.plan import plan_sweep

        print(f"Plan of the {args.command}{f' ({args.config})' if args.config else ''} (dry run: nothing "
              f"is written to {args.out}; the targeted test and verdicts add a minute or two)")
        print(plan_sweep(cfg).text())
        return EXIT_OK
    from .study.demo import run_demo

    n = cfg["n_slices"]
    title = (f"Verdicts of the study ({n} test slices)" if args.command == "study"
             else f"Verdicts of the demo (small sample: {n} slices)")
    result = run_demo(args.out, cfg, progress=not args.quiet, title=title)
    from .study.report import TransferReport

    _print_tables(TransferReport.load(args.out))
    from .study.verdicts import summary_lines

    print("Verdicts (verdict.md has every claim with its CI):")
    print("\n".join(f"  {line}" for line in summary_lines(result["verdicts"])))
    if "targeted_roi_contrast" in result:
        shown = ", ".join(f"{t}: {c:.2f}" for t, c in result["targeted_roi_contrast"].items())
        print(f"Targeted blob insertion (ROI contrast, 1 = fully shown): {shown}")
    print(f"Results in {Path(args.out).resolve()} (records.csv, summary.json, *.png, verdict.md)")
    return 0


def _failures(out: Path, report) -> tuple[str, bool] | None:
    """A one-line summary of ``failed.csv`` and whether every slice failed; None if none did."""
    from .study import records as R

    path = out / "failed.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    bad_slices = sum(len(r.get("sample_ids", "").split()) or 1 for r in rows)
    ok_batches = {r.get(R.BATCH) for r in report.records}
    ok_slices = len({(r.get(R.BATCH), r.get(R.SAMPLE_ID)) for r in report.records})
    first = rows[0]
    text = (f"{bad_slices} of {bad_slices + ok_slices} slice(s) in {len(rows)} of "
            f"{len(rows) + len(ok_batches)} batch(es) failed; first error (batch {first.get('batch')}, "
            f"slices {first.get('sample_ids')}): {first.get('error')}; see {path}")
    return text, ok_slices == 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .study.config import load_config
    from .study.sweep import run_sweep

    cfg = load_config(args.config)
    if args.device:
        cfg["device"] = args.device
    if args.dry_run:  # the plan and a timed estimate; nothing is written to --out
        from .study.plan import plan_sweep

        print(f"Plan of {args.config} (dry run: nothing is written to {args.out})")
        print(plan_sweep(cfg).text())
        return EXIT_OK
    from .study.config import build_models

    models = build_models(cfg)  # once: for the sweep and for the stored report panels
    report = run_sweep(cfg, args.out, progress=not args.quiet, models=models)
    failures = _failures(Path(args.out), report)
    code = EXIT_OK
    if failures is not None:
        code = EXIT_OK if args.allow_failures and not failures[1] else EXIT_FAILED_SLICES
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports the merged run
        from .study.demo import finish_run
        from .study.verdicts import summary_lines

        _print_tables(report)
        result = finish_run(Path(args.out), cfg, report, models, title=_title(Path(args.out)))
        if result["verdicts"]:
            print("Verdicts (verdict.md has every claim with its CI):")
            print("\n".join(f"  {line}" for line in summary_lines(result["verdicts"])))
        print(f"Report: {Path(result['report']).resolve()} (self-contained: open it in a browser)")
        if failures is not None:
            what = ("warning: partial results accepted (--allow-failures): " if code == EXIT_OK
                    else "every slice failed: " if failures[1] else "")
            print(f"kspace-attacks sweep: {what}{failures[0]}", file=sys.stderr)
        print(f"Results in {Path(args.out).resolve()}")
    return code


def _cmd_report(args: argparse.Namespace) -> int:
    from .study.report import TransferReport

    report = TransferReport.load(args.dir)
    paths = report.plot(args.dir)
    _print_tables(report)
    print("Figures: " + ", ".join(str(p) for p in paths))
    models = _report_models(args, report.config) if args.rebuild_panels else None
    _write_verdicts_and_page(Path(args.dir), report, models, max_slices=args.max_slices)
    return 0


def _title(directory: Path) -> str:
    """The title a run gave its verdicts (``verdict.md``'s first line), else "Verdicts"."""
    previous = directory / "verdict.md"
    first = previous.read_text(encoding="utf-8").split("\n", 1)[0] if previous.is_file() else ""
    return first[2:].strip() if first.startswith("# ") else "Verdicts"


def _write_verdicts_and_page(directory: Path, report: Any, models: dict | None, **panels: Any) -> None:
    """verdict.json / verdict.md (with the targeted rows when targeted.csv exists) and
    report.html of a finished run; image panels only for the given ``models``."""
    from .study.html import write_html_report
    from .study.report import records_from_csv
    from .study.targeted import targeted_verdicts
    from .study.verdicts import summary_lines, write_verdicts

    targeted = directory / "targeted.csv"
    extra = targeted_verdicts(records_from_csv(targeted)) if targeted.is_file() else []
    items = write_verdicts(report, directory, title=_title(directory), extra_rows=extra)
    if items:
        print("Verdicts (verdict.md has every claim with its CI):")
        print("\n".join(f"  {line}" for line in summary_lines(items)))
    page = write_html_report(directory, models, **panels)
    print(f"Report: {page.resolve()} (self-contained: open it in a browser)")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .adapters import resolve_model
    from .testing.card import CardError, evaluate

    device = args.device or "cpu"
    model = resolve_model(args.model, device=device)
    attack_model = resolve_model(args.attack_model, device=device) if args.attack_model else None
    data = _evaluate_data(args.data, device) if args.data else None
    try:
        card = evaluate(model, data=data, protocol=args.protocol, out=args.out, name=args.name or args.model,
                        seed=args.seed, attack_model=attack_model,
                        attack_model_note=f"--attack-model {args.attack_model}" if args.attack_model else None,
                        certify={"sigma": args.certify} if args.certify is not None else False)
    except CardError as e:
        print(f"kspace-attacks evaluate: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    s = card["summary"]
    print(f"{card['name']} under protocol {card['protocol']['version']}: worst slice loses "
          f"{s['ssim_lost']:.3f} SSIM ({s['psnr_lost']:.2f} dB PSNR) at eps {s['worst_eps']:g}; at eps "
          f"{s['max_eps']:g} the attack changes the image {s['attack_over_noise_deviation_at_max_eps']:.1f}x "
          f"as much as equal-norm noise ({card['cost']['total_seconds']:.0f} s)")
    print(f"Card in {Path(args.out).resolve()} (card.json, card.md)")
    return EXIT_OK


def _evaluate_data(spec: str, device: str) -> list:
    """``--data``: a NIfTI volume (8 evenly spaced slices) or fastMRI file / folder (first 8 slices),
    simulated / cropped with the embedded preset, as for a sweep's data table."""
    from .study.config import build_data, validate_config

    kind = "nifti" if spec.endswith((".nii", ".nii.gz")) else "fastmri"
    cfg = validate_config({"data": {kind: spec}, "n_slices": 8, "batch_size": 8, "device": device})
    batches, _ = build_data(cfg)
    return batches


def _report_models(args: argparse.Namespace, cfg: dict) -> dict | None:
    """The configuration's models for the HTML image panels, when they are registered names or
    variants of them (``models.<name>.model``)."""
    from .adapters import list_reconstructors
    from .study.config import build_models

    tables = cfg.get("models", {}) or {}
    names = {str((tables.get(n) or {}).get("model", n)) for n in (*cfg.get("surrogates", []), *cfg.get("targets", []))}
    if args.no_panels or not names or not names <= set(list_reconstructors()):
        return None
    try:
        return build_models(cfg)
    except Exception as e:  # noqa: BLE001 - the page is still written, without panels
        print(f"kspace-attacks report: image panels skipped, the models could not be built "
              f"({type(e).__name__}: {e})", file=sys.stderr)
        return None


def config_reference() -> str:
    """The Markdown reference of every configuration table (``docs/CONFIG.md``), derived from
    the typed schemas: sweep / demo / study files, card protocols and the pytest marker."""
    from .study.config import SweepConfig
    from .testing.protocol import Protocol
    from .testing.settings import MarkerOptions

    return "\n".join([
        "# Configuration reference", "",
        "Generated from the typed schemas (`kspace-attacks config-reference`); every key below is",
        "checked when a file is read: an unknown key names its table and the known keys, a wrong",
        "value names the key, what was expected and what was given.", "",
        "## Sweep, demo and study files (`kspace_attacks.study.config.SweepConfig`)", "",
        "`kspace-attacks demo --print-config` prints the demo's values, `study --print-config` the",
        "study's. Tables of tables: `[attacks.<name>]` takes `type` plus the attack's own arguments;",
        "`[models.<name>]` the loader's arguments (`model = \"diffusion\"` for a variant,",
        "`model = \"file.py:make\"` for your own model); `[surrogate_models.<name>]` a surrogate's",
        "loader arguments for the attack plus `eot`, `attack_steps` and `n_slices`.", "",
        "`[threat]` names an additive norm ball (`KSpaceL2`, `KSpaceLinf`; `eps` relative to ||y||) or a",
        "physical threat (`motion`, `phase`, `spikes`, `lost_lines`; `eps` in its unit: mm per shot,",
        "radians, max |y|, lines; `coil_maps` is for cards and the Python API). Keys that do not apply",
        "to the chosen type must keep their defaults. A motion sweep:", "",
        "```toml", "eps = [0.5, 1.0, 2.0]   # mm per shot", "", "[threat]", "type = \"motion\"",
        "shots = 8", "ordering = \"interleaved\"", "```", "",
        SweepConfig.docs(), "",
        "## Robustness-card protocols (`kspace_attacks.testing.protocol.Protocol`)", "",
        Protocol.docs(), "",
        "## The pytest marker (`@pytest.mark.kspace_robustness`)", "",
        MarkerOptions.docs(), "",
    ])


def _cmd_config_reference(args: argparse.Namespace) -> int:
    sys.stdout.write(config_reference())
    return 0


def _cmd_certify(args: argparse.Namespace) -> int:
    from .adapters import resolve_model
    from .certify.command import run
    from .data import demo_batch

    return run(args, resolve_model=resolve_model, demo_batch=demo_batch)


def _cmd_models(args: argparse.Namespace) -> int:
    from .adapters import list_reconstructors
    from .adapters.registry import model_quality

    print(f"{'model':<22}{'test SSIM':>10}{'PSNR':>8}{'unseen SSIM':>13}{'PSNR':>8}")
    for name in list_reconstructors():
        q = model_quality(name)
        cells = []
        for data in ("test", "unseen"):
            r = q.get(data)
            cells += ([f"{r['ssim']:.3f}", f"{r['psnr']:.2f}"] if r else ["-", "-"])
        print(f"{name:<22}{cells[0]:>10}{cells[1]:>8}{cells[2]:>13}{cells[3]:>8}")
    print("clean quality on the reference's scale (the records' default) on the embedded test split "
          "and on the shipped\nunseen brain, both with the embedded preset's 30 dB noise floor "
          "(benchmarks/evaluate_reconstructors.py; '-': not measured)")
    return 0


def _cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    if args.name == "diffusion":
        from .adapters.training.diffusion import main as train_main

        return int(train_main(rest) or 0)
    from .adapters.training.supervised import main as train_main

    return int(train_main([args.name, *rest]) or 0)


def _add_evaluate_parser(sub: Any) -> None:
    """``kspace-attacks evaluate``: a robustness card."""
    evaluate = sub.add_parser(
        "evaluate", help="robustness card of a model under a fixed protocol (card.json, card.md)",
        description="Attack a model under a fixed, versioned protocol (v2, the default: the "
                    "WorstCase search, 100 gradient evaluations per row, on two objectives, eps "
                    "0.01/0.02/0.05/0.08, 8 embedded test slices, noise control, restart spread; "
                    "v1: one 20-step APGD run) and write its robustness card.")
    evaluate.add_argument("--model", required=True, metavar="SPEC",
                          help="a registered name (see `kspace-attacks models`) or module:callable / "
                               "file.py:callable returning a model(y, physics)")
    evaluate.add_argument("--out", required=True, help="folder for card.json and card.md")
    evaluate.add_argument("--data", default=None, metavar="PATH",
                          help="a NIfTI volume or fastMRI file/folder instead of the protocol's data "
                               "(recorded as non-standard)")
    evaluate.add_argument("--protocol", default="v2", help="protocol version (default: %(default)s)")
    evaluate.add_argument("--name", default=None, help="model name on the card (default: SPEC)")
    evaluate.add_argument("--seed", type=int, default=0, help="attack and noise seed (default: %(default)s)")
    evaluate.add_argument("--attack-model", default=None, metavar="SPEC",
                          help="craft the perturbations on this model instead (slow or stochastic models; "
                               "recorded on the card as non-standard)")
    evaluate.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    evaluate.add_argument("--certify", type=float, default=None, metavar="SIGMA",
                          help="add a 'certified' section: center smoothing at this noise level (e.g. 0.04), "
                               "the smoothed model's certified radius next to the attack's lower bound")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kspace-attacks",
        description="Worst-case k-space perturbations for MRI reconstruction models.",
        epilog="exit codes: 0 success, 2 error in arguments, configuration or data, 3 a sweep with "
               "failed slices (see sweep --help), 130 interrupted",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the study on the embedded default (4 items; 6.5 min on 2 CPU cores)")
    demo.add_argument("--out", default="kspace-attacks-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--print-config", action="store_true", help="print the demo's settings as a sweep config and exit")
    demo.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    study = sub.add_parser("study", help="the study at scale: 24 slices, both runners, SSIM objective, "
                                         "white-box diffusion, sampler ablation (under an hour on 2 idle "
                                         "CPU cores; resumable)")
    study.add_argument("--out", default="kspace-attacks-study", help="output folder (default: %(default)s)")
    study.add_argument("--print-config", action="store_true", help="print the study's settings and exit")
    study.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    study.add_argument("--quiet", action="store_true", help="no progress bars")
    for p in (demo, study):
        p.add_argument("--config", default=None, metavar="FILE",
                       help=f"settings (.toml, .yaml) merged over the {p.prog.split()[-1]}'s own, e.g. an edited "
                            f"copy of --print-config's output")
        p.add_argument("--dry-run", action="store_true",
                       help="print the plan and a wall time estimated from a short timing here, then exit; "
                            "writes nothing")
    sweep = sub.add_parser("sweep", help="run a sweep from a TOML/YAML config", epilog=SWEEP_EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("--config", required=True, help="sweep configuration (.toml, .yaml)")
    sweep.add_argument("--out", required=True, help="output folder")
    sweep.add_argument("--device", default=None, help="override the config's device")
    sweep.add_argument("--quiet", action="store_true",
                       help="no progress (bars on a terminal, one log line per finished step otherwise)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the plan (batches, rows, units, gradient evaluations, reconstructions) and "
                            "a wall time estimated from a short timing here, then exit; writes nothing")
    sweep.add_argument("--allow-failures", action="store_true",
                       help="exit 0 (with a warning) when some but not all slices failed")
    report = sub.add_parser("report", help="re-render tables, plots, verdicts and report.html of saved results")
    report.add_argument("dir", help="folder written by demo or sweep")
    report.add_argument("--rebuild-panels", action="store_true",
                        help="rebuild the per-slice image panels from the configuration's models (minutes "
                             "with the diffusion model) and store them; by default report.html shows the "
                             "panels the sweep stored and no model is built")
    report.add_argument("--no-panels", action="store_true", help=argparse.SUPPRESS)  # the default now
    report.add_argument("--max-slices", type=int, default=8,
                        help="slices with image panels when rebuilding (default: %(default)s)")
    _add_evaluate_parser(sub)
    sub.add_parser("models", help="list the registered reconstructors and their clean quality")
    from .certify.command import add_parser as add_certify_parser  # light: no torch

    add_certify_parser(sub)
    sub.add_parser("config-reference", help="print the reference of every configuration key (sweep / demo / "
                                            "study files, card protocols, the pytest marker) as Markdown")
    train = sub.add_parser("train", help="train a reconstructor on the embedded data (see train NAME --help)",
                           add_help=False)
    train.add_argument("name", help="diffusion, irim or resunetpp")
    return parser


def _interruptible() -> None:
    """Let SIGINT interrupt the command even when the process started with it ignored.

    A process launched in the background by a non-interactive shell (``cmd &`` in a script, some
    CI runners) inherits SIGINT as ignored, and Python then installs no KeyboardInterrupt: a
    ``kill -INT`` would be dropped and the sweep run to the end. Every command here is resumable
    and documents exit code 130 for an interruption, so SIGINT always means "stop now".
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kspace-attacks``; returns the exit code."""
    _interruptible()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from .study.config import ConfigError

    try:
        if args.command == "train":
            return _cmd_train(args, rest)
        return {"demo": _cmd_demo, "study": _cmd_demo, "sweep": _cmd_sweep, "report": _cmd_report, "evaluate": _cmd_evaluate, "models": _cmd_models,
                "config-reference": _cmd_config_reference, "certify": _cmd_certify}[args.command](args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, TypeError) as e:
        if os.environ.get("KSPACE_ATTACKS_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"kspace-attacks {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"kspace-attacks {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
