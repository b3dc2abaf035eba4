"""Train, tune and ship the score network of the diffusion reconstructor.

Training is unsupervised and sees images only: DDPM epsilon-prediction (denoising score
matching) on the VP schedule of :class:`~kspace_attacks.adapters.diffusion.VPSchedule`, on the
``EmbeddedBrain`` training split (all contrasts, the data set's own augmentation), with the
images multiplied by ``data_scale`` (magnitude [0, 1] -> [0, 2]). It is seeded (one
``torch.Generator`` drives batches, times and noise), logs the loss to ``log.csv``, keeps an
EMA of the weights (the EMA is what gets shipped) and writes an atomic checkpoint
(``ckpt.pt``: ``torch.load(weights_only=True)``-safe) every ``ckpt_every`` steps; ``resume``
continues from it with model, EMA, optimizer, step and RNG restored.

After training, :func:`tune` picks the sampler defaults on the validation split,
:func:`evaluate_sampler` measures the test split and :func:`export` writes
``diffusion.safetensors`` + ``diffusion.json``.

Example (a tiny run)::

    >>> from kspace_attacks.adapters.training.diffusion import train
    >>> ckpt = train(steps=2, batch_size=2, out="/tmp/diff_demo", resume=False,
    ...              n_train=4, arch={"channels": (8, 16), "attn_levels": ()}, progress=False)
    >>> ckpt.name
    'ckpt.pt'

Command line: ``python -m kspace_attacks.adapters.training.diffusion --help``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from kspace_attacks._checks import check_positive_int
from kspace_attacks._runtime import denormals_flushed
from kspace_attacks._kernels import narrow_conv_guard
from kspace_attacks.io import atomic_torch_save, atomic_write_text

from .. import _weights
from ..diffusion import SAMPLER_DEFAULTS, DiffusionReconstructor, VPSchedule
from ..score_unet import ScoreUNet, ScoreUNetConfig, count_parameters
from .common import (add_optimisation_args, apply_gradients, check_run_args, due, machine,
                     read_checkpoint, run_dir, set_lr)
from .diffusion_eval import (FINAL_LAMS, _eval_data, _metrics, choose, default_grid,  # noqa: F401
                             evaluate_sampler, evaluate_final_weights, score_against, time_one_slice, tune)

__all__ = ["train", "load_checkpoint", "evaluate_sampler", "tune", "export", "main", "DEFAULT_OUT"]

DEFAULT_OUT = Path("runs") / "diffusion"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "diffusion.safetensors"
T_MIN = 1e-3  # smallest training time: sigma_t > 0 so eps stays identifiable


def _train_images(n: int | None, seed: int, progress: bool) -> Tensor:
    """All (augmented) training images of the embedded data set, (N, 2, 64, 64)."""
    from kspace_attacks.data import EmbeddedBrain

    ds = EmbeddedBrain("train", seed=seed)
    n = len(ds) if n is None else min(n, len(ds))
    # evenly spread, so a small n still covers slices and contrasts
    idx = torch.linspace(0, len(ds) - 1, n).round().long().tolist()
    it: Iterable[int] = idx
    if progress:
        from tqdm import tqdm

        it = tqdm(idx, desc="synthesising train images", mininterval=5)
    return torch.stack([ds.image(i) for i in it])


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - decay)


def diffusion_loss(
    net: ScoreUNet, x0: Tensor, schedule: VPSchedule, generator: torch.Generator
) -> Tensor:
    """Epsilon-prediction loss E_t,z ||net(alpha_t x0 + sigma_t z, t) - z||^2 (mean)."""
    b = x0.shape[0]
    t = T_MIN + (1 - T_MIN) * torch.rand(b, generator=generator, dtype=x0.dtype)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    t, z = t.to(x0.device), z.to(x0.device)
    ab = schedule.alpha_bar(t).view(-1, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * z
    return (net(xt, t) - z).pow(2).mean()


# ---------------------------------------------------------------------------- train steps
@dataclass(frozen=True)
class _Hyper:
    """The optimisation settings of a run."""

    steps: int
    batch_size: int
    lr: float
    warmup: int
    ema_decay: float
    ckpt_every: int
    lr_schedule: str = "constant"
    keep_every: int = 0


@dataclass
class _Run:
    """What a checkpoint restores: networks, optimizer, RNG, step, wall time and config."""

    net: ScoreUNet
    ema: ScoreUNet
    opt: torch.optim.Optimizer
    rng: torch.Generator
    config: dict
    step: int = 0
    elapsed: float = 0.0

    def save(self, path: Path) -> None:
        atomic_torch_save({"model": self.net.state_dict(), "ema": self.ema.state_dict(),
                           "opt": self.opt.state_dict(), "rng": self.rng.get_state(),
                           "step": self.step, "elapsed": self.elapsed,
                           "config": json.dumps(self.config)}, path)


def _run_config(hp: _Hyper, seed: int, arch: dict | None, schedule: dict | None,
                data_scale: float, user_images: bool) -> dict:
    """The run's ``config.json`` (``n_train`` is filled in once the images are known)."""
    return {
        "architecture": ScoreUNetConfig.from_dict(arch or {}).to_dict(),
        "schedule": VPSchedule(**(schedule or {})).to_dict(),
        "data_scale": data_scale,
        "training": {
            "objective": "DDPM epsilon-prediction (denoising score matching), VP schedule",
            "t_min": T_MIN, "steps": hp.steps, "batch_size": hp.batch_size, "lr": hp.lr,
            "warmup": hp.warmup, "lr_schedule": hp.lr_schedule,
            "optimizer": "Adam(betas=(0.9, 0.999)), grad-norm clip 1.0",
            "ema_decay": hp.ema_decay, "seed": seed, "threads": torch.get_num_threads(),
            "data": "user images" if user_images else (
                "EmbeddedBrain('train', preset='embedded', seed=0), all contrasts, "
                "dataset augmentation"),
            "n_train": None,
        },
    }


def _stored_state(ckpt_path: Path, resume: bool, config: dict) -> dict | None:
    """The checkpoint to resume from (or ``None``); its architecture, schedule and data scale
    replace those in ``config``: they are fixed for a run, only the step budget may grow."""
    if not (resume and ckpt_path.is_file()):
        return None
    state = read_checkpoint(ckpt_path)
    stored = json.loads(state["config"])
    for key in ("architecture", "schedule", "data_scale"):
        config[key] = stored[key]
    return state


def _init_run(config: dict, lr: float, seed: int, device: str | torch.device,
              state: dict | None) -> _Run:
    """Seeded initialisation (the RNG order matters), then the checkpoint's state if any."""
    torch.manual_seed(seed)  # parameter initialisation
    net = ScoreUNet(ScoreUNetConfig.from_dict(config["architecture"])).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    run = _Run(net, ema, torch.optim.Adam(net.parameters(), lr=lr),
               torch.Generator().manual_seed(seed), config)
    if state is not None:
        run.net.load_state_dict(state["model"])
        run.ema.load_state_dict(state["ema"])
        run.opt.load_state_dict(state["opt"])
        run.rng.set_state(state["rng"])
        run.step, run.elapsed = int(state["step"]), float(state["elapsed"])
    return run


@contextmanager
def _csv_log(path: Path, new: bool) -> Iterator[Any]:
    """A CSV writer on ``path``: a new file with a header, or appended to when resuming."""
    with open(path, "w" if new else "a", newline="", encoding="utf-8") as log:
        writer = csv.writer(log)
        if new:
            writer.writerow(["step", "loss", "lr", "elapsed_s"])
        yield log, writer


LR_SCHEDULES = ("constant", "cosine")
LR_FLOOR = 0.05  # the cosine schedule ends at this fraction of the peak rate


def learning_rate(step: int, hp: _Hyper) -> float:
    """The rate of optimizer step ``step`` (0-based): linear warm-up, then constant or a
    cosine decay to ``LR_FLOOR`` of the peak at ``hp.steps``."""
    warm = min(1.0, (step + 1) / max(hp.warmup, 1))
    if hp.lr_schedule == "constant" or step < hp.warmup:
        return hp.lr * warm
    frac = min(1.0, (step - hp.warmup) / max(hp.steps - hp.warmup, 1))
    return hp.lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * frac)))


def _train_step(run: _Run, hp: _Hyper, x_all: Tensor, sched: VPSchedule) -> tuple[Tensor, float]:
    """One warmed-up, clipped Adam step and the EMA update; returns ``(loss, lr)``."""
    idx = torch.randint(0, x_all.shape[0], (hp.batch_size,), generator=run.rng)
    cur_lr = learning_rate(run.step, hp)
    set_lr(run.opt, cur_lr)
    loss = diffusion_loss(run.net, x_all[idx.to(x_all.device)], sched, run.rng)
    apply_gradients(run.opt, loss, clip=(run.net.parameters(), 1.0))
    run.step += 1
    _ema_update(run.ema, run.net, min(hp.ema_decay, (1 + run.step) / (10 + run.step)))
    return loss, cur_lr


def _train_loop(run: _Run, hp: _Hyper, x_all: Tensor, out: Path, new_log: bool,
                progress: bool) -> None:
    """Train up to ``hp.steps``, one CSV row per step, checkpointing on schedule."""
    sched = VPSchedule(**run.config["schedule"])
    with _csv_log(out / "log.csv", new_log) as (log, writer):
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=hp.steps, initial=run.step, desc="diffusion", mininterval=10)
        run.net.train()
        t0, running = time.perf_counter() - run.elapsed, None
        try:
            while run.step < hp.steps:
                with narrow_conv_guard(run.net):  # forward and backward (see kspace_attacks._kernels)
                    loss, cur_lr = _train_step(run, hp, x_all, sched)
                run.elapsed = time.perf_counter() - t0
                lv = loss.item()
                running = lv if running is None else 0.98 * running + 0.02 * lv
                writer.writerow([run.step, f"{lv:.6f}", f"{cur_lr:.3g}", f"{run.elapsed:.1f}"])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{running:.4f}", refresh=False)
                if due(run.step, hp.ckpt_every, hp.steps):
                    log.flush()
                    run.save(out / "ckpt.pt")
                if hp.keep_every and run.step % hp.keep_every == 0:
                    _save_snapshot(run, out / "snapshots" / f"ema_{run.step:06d}.pt")
        finally:
            if bar is not None:
                bar.close()


def _save_snapshot(run: _Run, path: Path) -> None:
    """The EMA weights at this step, with the run config (a point of the learning curve)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"ema": run.ema.state_dict(), "step": run.step, "elapsed": run.elapsed,
                       "config": json.dumps(run.config)}, path)


def _load_init(run: _Run, init: str | os.PathLike) -> None:
    """Start both the network and its EMA from shipped (or exported) weights."""
    path = _weights.weights_path("diffusion", init)
    meta = _weights.read_config(path)
    if ScoreUNetConfig.from_dict(meta.get("architecture", {})).to_dict() != run.config["architecture"]:
        raise ValueError(f"init: the weights at {path} have architecture "
                         f"{meta.get('architecture')}, the run {run.config['architecture']}")
    _weights.load_state(run.net, path)
    _weights.load_state(run.ema, path)


@denormals_flushed  # denormals make CPU steps 10-30x slower
def train(
    steps: int = 6000, batch_size: int = 16, lr: float = 4e-4, seed: int = 0,
    out: str | os.PathLike = DEFAULT_OUT, resume: bool = True, threads: int | None = None,
    ckpt_every: int = 250, ema_decay: float = 0.999, warmup: int = 200,
    arch: dict | None = None, schedule: dict | None = None, data_scale: float = 2.0,
    n_train: int | None = None, images: Tensor | None = None,
    device: str | torch.device = "cpu", progress: bool = True,
    init: str | os.PathLike | None = None, lr_schedule: str = "constant", keep_every: int = 0,
) -> Path:
    """Train the score network to ``steps`` optimizer steps; returns the checkpoint path.

    :param int steps: total optimizer steps (a resumed run continues up to this number).
    :param int batch_size: images per step.
    :param float lr: Adam learning rate (linear warm-up over ``warmup`` steps).
    :param int seed: seeds initialisation, batches, diffusion times and noise.
    :param out: run directory (``ckpt.pt``, ``log.csv``, ``config.json``).
    :param bool resume: continue from ``out/ckpt.pt`` if it exists.
    :param int threads: ``torch.set_num_threads`` (None: leave as is).
    :param int ckpt_every: checkpoint period in steps (and at the end).
    :param float ema_decay: EMA decay (with the usual (1 + n) / (10 + n) warm-up).
    :param dict arch, schedule: :class:`ScoreUNetConfig` overrides, :class:`VPSchedule` args.
    :param float data_scale: images are multiplied by this before diffusion.
    :param int n_train: use only this many training images (default all 3200).
    :param Tensor images: train on these (N, 2, H, W) images instead of the embedded data.
    :param init: starting weights of a new run (``"embedded"``: the shipped score network, or
        an exported ``.safetensors`` path; its architecture must match ``arch``); ignored
        when resuming from a checkpoint. ``None``: random initialisation.
    :param str lr_schedule: ``"constant"`` after warm-up, or ``"cosine"`` decay to
        ``LR_FLOOR`` of ``lr`` at ``steps``.
    :param int keep_every: also keep the EMA weights every this many steps in
        ``out/snapshots`` (learning curves; 0: none).
    """
    check_run_args(steps, batch_size, lr, seed, ckpt_every, threads)
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule: expected one of {LR_SCHEDULES}, got {lr_schedule!r}")
    check_positive_int("keep_every", keep_every, minimum=0)
    hp = _Hyper(steps, batch_size, lr, warmup, ema_decay, ckpt_every, lr_schedule, keep_every)
    out = run_dir(out)
    ckpt_path = out / "ckpt.pt"
    config = _run_config(hp, seed, arch, schedule, data_scale, images is not None)
    state = _stored_state(ckpt_path, resume, config)
    if init is not None and state is None and arch is None:
        # the architecture of a fine-tuning run is that of its starting weights
        init_arch = _weights.read_config(_weights.weights_path("diffusion", init)).get("architecture", {})
        config["architecture"] = ScoreUNetConfig.from_dict(init_arch).to_dict()
    run = _init_run(config, lr, seed, device, state)
    if init is not None and state is None:
        _load_init(run, init)
        config["training"]["init"] = str(init)

    if images is None:
        images = _train_images(n_train, 0, progress)
    x_all = (config["data_scale"] * images.float()).to(device)
    config["training"]["n_train"] = int(x_all.shape[0])
    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)

    new_log = not (out / "log.csv").is_file() or state is None
    _train_loop(run, hp, x_all, out, new_log, progress)
    if state is not None and run.step == int(state["step"]):
        run.save(ckpt_path)  # nothing to do, but make sure the checkpoint exists
    return ckpt_path


# ------------------------------------------------------------------ load, evaluate, tune
def _score_net(config: dict, state_dict: dict) -> ScoreUNet:
    """The score network described by a checkpoint's ``config``, with ``state_dict`` loaded."""
    net = ScoreUNet(ScoreUNetConfig.from_dict(config["architecture"]))
    net.load_state_dict(state_dict)
    return net


def load_checkpoint(
    ckpt: str | os.PathLike, ema: bool = True, device: str | torch.device = "cpu", **sampler_kwargs
) -> DiffusionReconstructor:
    """A :class:`DiffusionReconstructor` from a training checkpoint (EMA weights by default)."""
    state = read_checkpoint(ckpt)
    config = json.loads(state["config"])
    net = _score_net(config, state["ema" if ema else "model"])
    net.requires_grad_(False)
    kw = {**SAMPLER_DEFAULTS, **sampler_kwargs}
    model = DiffusionReconstructor(
        net, VPSchedule(**config["schedule"]), data_scale=config["data_scale"], **kw
    )
    return model.to(device).eval()


# ------------------------------------------------------------------------- export and CLI
def export(
    ckpt: str | os.PathLike, path: str | os.PathLike = DEFAULT_WEIGHTS,
    sampler_defaults: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the EMA weights of ``ckpt`` as safetensors plus a JSON next to it."""
    state = read_checkpoint(ckpt)
    config = json.loads(state["config"])
    net = _score_net(config, state["ema"])
    sampler = {**SAMPLER_DEFAULTS, **(sampler_defaults or {})}
    meta = {"architecture": config["architecture"], "schedule": config["schedule"],
            "data_scale": config["data_scale"], "sampler_defaults": sampler}
    path = Path(path)
    _weights.save_state(net, path, meta)
    info = {
        "model": "diffusion",
        "description": "Score-based diffusion MRI reconstructor (Song et al. 2022): "
        "epsilon-prediction U-Net on a VP (cosine) schedule trained on images only; reverse "
        "sampler with projection data consistency x <- x - lam A^H(A x - y_t).",
        **meta,
        "parameters": count_parameters(net),
        "training": {**config["training"], "steps_done": int(state["step"]),
                     "time_s": round(float(state["elapsed"]), 1), "weights": "EMA",
                     "torch": torch.__version__, "machine": machine()},
        "metrics": metrics or {},
        **(extra or {}),
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=2))
    return path


def parser() -> argparse.ArgumentParser:
    """Argument parser of ``python -m kspace_attacks.adapters.training.diffusion``."""
    p = argparse.ArgumentParser(
        prog="python -m kspace_attacks.adapters.training.diffusion",
        description="Train the diffusion reconstructor's score network on the embedded "
        "brain data, tune the sampler on val, evaluate on test, export the EMA weights.",
    )
    add_optimisation_args(p, 6000, 16, 4e-4)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="run directory")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--init", default=None,
                   help="starting weights of a new run: 'embedded' or a .safetensors path")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant")
    p.add_argument("--keep-every", type=int, default=0,
                   help="keep the EMA weights every N steps in OUT/snapshots (learning curve)")
    p.add_argument("--skip-train", action="store_true", help="only tune / evaluate / export")
    p.add_argument("--ship", action="store_true", help="tune on val, evaluate on test, export")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="export path")
    p.add_argument("--tune-n", type=int, default=40, help="validation items used for tuning")
    p.add_argument("--reuse-tune", action="store_true",
                   help="with --ship: choose from OUT/tune.json of an earlier run instead of tuning again")
    p.add_argument("--eval-threads", type=int, default=2)
    return p


def _ship(a: argparse.Namespace, ckpt: Path) -> dict[str, Any]:
    """Tune on val, evaluate on test, time one slice and export; returns the test metrics."""
    torch.set_num_threads(a.eval_threads)
    tuned = a.out / "tune.json"
    if a.reuse_tune and tuned.is_file():  # the rows of an earlier --ship: choose again, no re-run
        rows = json.loads(tuned.read_text(encoding="utf-8"))
        best = choose(rows)
    else:
        best, rows = tune(load_checkpoint(ckpt), n=a.tune_n)
        atomic_write_text(tuned, json.dumps(rows, indent=2))
    model = load_checkpoint(ckpt, **best)
    test = evaluate_sampler(model, "test")
    t_slice = time_one_slice(model, threads=2)
    metrics = {"split": "test", "normalization": "minmax (per image), data range 1, magnitude",
               **test, "s_per_slice_2_threads": round(t_slice, 3)}
    chosen = next(r for r in rows if all(r.get(k) == v for k, v in best.items()))
    export(ckpt, a.weights, best, metrics,
           {"tuning": {"split": "val", "n": a.tune_n, "best": best, "val_psnr": chosen["psnr"],
                       "val_ssim": chosen["ssim"], "reference": chosen["reference"],
                       "criterion": "max min((psnr - reference) / 1.5 dB, (ssim - reference) / 0.05) "
                                    "over default_grid() x FINAL_LAMS with final_lam > 0 "
                                    "(training.diffusion_eval.choose; tune.json: every row)"}})
    return metrics


@denormals_flushed  # denormals make CPU steps 10-30x slower
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train (resumable), then tune on val, evaluate on test and export."""
    a = parser().parse_args(argv)
    ckpt = a.out / "ckpt.pt"
    if not a.skip_train:
        ckpt = train(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed, out=a.out,
                     resume=not a.no_resume, threads=a.threads, ckpt_every=a.ckpt_every,
                     init=a.init, lr_schedule=a.lr_schedule, keep_every=a.keep_every)
    if a.ship:
        print(json.dumps(_ship(a, ckpt), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
