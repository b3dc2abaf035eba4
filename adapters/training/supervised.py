"""Supervised training of the i-RIM and ResUnet++ reconstructors on the embedded brain data.

Python API :func:`train`, command line :func:`main` (``kspace-attacks train <name>``, or
``python -m kspace_attacks.adapters.training.supervised <name>``).

A run directory holds::

    checkpoint.pt        model + optimizer + step + RNG states (torch.save of tensors and
                         plain containers only: loads with torch.load(weights_only=True))
    log.jsonl            one JSON record per logged step ("train") / validation ("val")
    <name>.safetensors   final weights (architecture config in the metadata)
    <name>.json          architecture, training config, parameter count, test metrics

Losses as in the study: i-RIM 1 - SSIM on magnitude images (+ a small L1 term), ResUnet++ L1.
The learning rate follows a warm-up + cosine schedule that is a pure function of the step,
so a resumed run is the same as an uninterrupted one.

:Example:

>>> from kspace_attacks.adapters.training.supervised import train
>>> summary = train("resunetpp", steps=2000, out="runs/resunetpp")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from kspace_attacks._checks import check_choice
from kspace_attacks._runtime import denormals_flushed
from kspace_attacks._kernels import narrow_conv_guard
from kspace_attacks.io import atomic_torch_save
from kspace_attacks.losses import magnitude

from .. import _weights
from .robust import Robust, metric_of
from .common import (
    add_optimisation_args,
    append_jsonl,
    apply_gradients,
    dataset_batch,
    check_run_args,
    due,
    load_average_15min,
    read_checkpoint,
    run_dir,
    set_lr,
    truncate_jsonl,
)

__all__ = ["SPECS", "TRAINABLE", "FINE_TUNE_LR", "SSIM_L1_WEIGHT", "WARMUP", "build_model", "loss_fn", "lr_at",
           "dataset_batch", "evaluate_network", "train", "parser", "main"]

#: Per-model training defaults (the shipped weights used these unless their JSON says otherwise).
SPECS: dict[str, dict[str, Any]] = {
    "irim": {"loss": "ssim", "steps": 1500, "batch_size": 8, "lr": 1e-3},
    "resunetpp": {"loss": "l1", "steps": 2500, "batch_size": 8, "lr": 1e-3},
}
TRAINABLE = tuple(SPECS)
FINE_TUNE_LR = 3e-4  # peak learning rate of robust runs that start from trained weights
SSIM_L1_WEIGHT = 0.1  # the small L1 term added to i-RIM's SSIM loss (stabilises early steps)
WARMUP = 100


# --------------------------------------------------------------------------------- pieces
def build_model(name: str, **arch: Any) -> nn.Module:
    """A randomly initialised trainable model (train mode), architecture ``arch`` overrides."""
    check_choice("name", name, TRAINABLE)
    if name == "irim":
        from ..irim import build
    else:
        from ..resunetpp import build
    return build(**arch)


def loss_fn(kind: str, x_hat: Tensor, x: Tensor) -> Tensor:
    """Training loss: ``"l1"`` on the complex image or ``"ssim"`` (1 - SSIM on magnitudes).

    Ground-truth magnitudes lie in [0, 1], hence SSIM's data range 1. The models return
    2-channel complex images, whose :func:`~kspace_attacks.losses.magnitude` is smooth at 0 (so
    the SSIM loss has finite gradients).
    """
    l1 = F.l1_loss(x_hat, x)
    if kind == "l1":
        return l1
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    return 1 - ssim(magnitude(x_hat), magnitude(x), data_range=1.0) + SSIM_L1_WEIGHT * l1


def lr_at(step: int, steps: int, lr: float, warmup: int = WARMUP) -> float:
    """Linear warm-up (``warmup`` steps, at most a tenth of the run), then cosine decay to
    5% of ``lr`` at ``steps``."""
    warmup = min(warmup, max(1, steps // 10))
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def evaluate_network(model: nn.Module, ds: Dataset, physics: Any, batch_size: int = 16,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean PSNR/SSIM (minmax-normalised magnitudes) of ``model`` and of zero-filled on ``ds``."""
    from kspace_attacks import metrics

    was_training = model.training
    model.eval()
    sums = {"psnr": 0.0, "ssim": 0.0, "zf_psnr": 0.0, "zf_ssim": 0.0}
    n = len(ds)
    for start in range(0, n, batch_size):
        x, y = dataset_batch(ds, torch.arange(start, min(n, start + batch_size)))
        x, y = x.to(device), y.to(device)
        x_hat, x_zf = model(y, physics), physics.A_adjoint(y)
        sums["psnr"] += metrics.psnr(x_hat, x).sum().item()
        sums["ssim"] += metrics.ssim(x_hat, x).sum().item()
        sums["zf_psnr"] += metrics.psnr(x_zf, x).sum().item()
        sums["zf_ssim"] += metrics.ssim(x_zf, x).sum().item()
    model.train(was_training)
    return {k: v / n for k, v in sums.items()}


# ---------------------------------------------------------------------------- train steps
@dataclass(frozen=True)
class _Settings:
    """What stays fixed during a run (validated)."""

    name: str
    loss: str
    steps: int
    batch_size: int
    lr: float
    log_every: int
    ckpt_every: int
    val_every: int
    device: str | torch.device
    robust: Robust | None = None
    robust_loss: Any = None  # the deepinv loss built from ``robust`` (None: standard training)

    @property
    def weights_name(self) -> str:
        return self.name if self.robust is None else self.robust.weights_name(self.name)


@dataclass
class _State:
    """What a checkpoint restores: model, optimizer, batch sampler, step and wall time."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sampler: torch.Generator
    step: int = 0
    elapsed: float = 0.0


def _settings(name: str, steps: int | None, batch_size: int | None, lr: float | None,
              seed: int, log_every: int, ckpt_every: int, val_every: int,
              threads: int | None, device: str | torch.device,
              robust: Robust | None = None, init: Any = None) -> _Settings:
    """Validate the arguments (missing ones from :data:`SPECS`) and apply ``threads``."""
    check_choice("name", name, TRAINABLE)
    spec = SPECS[name]
    fine_tune = (robust is not None and robust.init is not None) or init is not None
    steps, batch_size, lr = check_run_args(
        spec["steps"] if steps is None else steps,
        spec["batch_size"] if batch_size is None else batch_size,
        (FINE_TUNE_LR if fine_tune else spec["lr"]) if lr is None else lr,
        seed, ckpt_every, threads, log_every=log_every)
    if robust is not None and not isinstance(robust, Robust):
        raise TypeError(f"robust: expected a Robust(kind=...) or None, got {type(robust).__name__}")
    loss = None if robust is None else robust.loss(metric_of(loss_fn, spec["loss"]), seed)
    return _Settings(name, spec["loss"], steps, batch_size, lr, log_every, ckpt_every, val_every,
                     device, robust, loss)


def _data(train_data: Dataset | None, val_data: Dataset | None, test_data: Dataset | None,
          physics: Any, preset: str, seed: int,
          device: str | torch.device) -> tuple[Dataset, Dataset | None, Dataset | None, Any]:
    """The given data sets and physics, or the preset's ``EmbeddedBrain`` splits and physics."""
    if train_data is None:
        from kspace_attacks.data import EmbeddedBrain, get_preset

        train_data = EmbeddedBrain("train", preset=preset, seed=seed)
        val_data = EmbeddedBrain("val", preset=preset)
        test_data = EmbeddedBrain("test", preset=preset)
        physics = get_preset(preset).physics(device=device)
    if physics is None:
        raise ValueError("physics: expected the forward operator matching train_data, got None")
    return train_data, val_data, test_data, physics


def _init_state(cfg: _Settings, arch: dict | None, seed: int) -> _State:
    """Seeded initialisation: the model first, then the batch sampler (the RNG order matters)."""
    torch.manual_seed(seed)
    model = build_model(cfg.name, **(arch or {})).to(cfg.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return _State(model, opt, torch.Generator().manual_seed(seed))


def _resume(state: _State, ckpt_path: Path, log_path: Path, resume: bool,
            device: str | torch.device) -> None:
    """Restore ``state`` from ``ckpt_path`` (and cut the log back to it), or start a new log."""
    if resume and ckpt_path.exists():
        ck = read_checkpoint(ckpt_path, device)
        if ck["config"] != state.model.config:
            raise ValueError(
                f"resume: checkpoint {ckpt_path} has architecture {ck['config']}, "
                f"expected {state.model.config}; use another --out or --no-resume"
            )
        state.model.load_state_dict(ck["model"])
        state.opt.load_state_dict(ck["optimizer"])
        state.sampler.set_state(ck["sampler_rng"])
        torch.set_rng_state(ck["torch_rng"])
        state.step, state.elapsed = int(ck["step"]), float(ck["elapsed"])
        truncate_jsonl(log_path, state.step)
    elif log_path.exists():
        log_path.unlink()


def _save_checkpoint(state: _State, path: Path) -> None:
    atomic_torch_save({"model": state.model.state_dict(), "optimizer": state.opt.state_dict(),
                       "sampler_rng": state.sampler.get_state(),
                       "torch_rng": torch.get_rng_state(), "step": state.step,
                       "elapsed": state.elapsed, "config": state.model.config}, path)


def _train_step(cfg: _Settings, state: _State, train_data: Dataset, physics: Any) -> Tensor:
    """Sample a batch, take one optimizer step at the scheduled rate; returns the loss."""
    idx = torch.randint(len(train_data), (cfg.batch_size,), generator=state.sampler)
    x, y = (t.to(cfg.device) for t in dataset_batch(train_data, idx))
    set_lr(state.opt, lr_at(state.step, cfg.steps, cfg.lr))
    x_hat = state.model(y, physics)
    if cfg.robust_loss is None:
        loss = loss_fn(cfg.loss, x_hat, x)
    else:
        cfg.robust_loss.calls = state.step  # draws are a function of the step: resumable
        loss = cfg.robust_loss(x_hat, x, y, physics, state.model)
    apply_gradients(state.opt, loss)
    state.step += 1
    return loss


def _train_loop(cfg: _Settings, state: _State, train_data: Dataset, val_data: Dataset | None,
                physics: Any, out: Path, progress: bool) -> None:
    """Train up to ``cfg.steps``, logging, validating and checkpointing on schedule."""
    from tqdm.auto import tqdm

    log_path = out / "log.jsonl"
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {cfg.weights_name}",
               disable=not progress, mininterval=10)
    t0, running = time.perf_counter() - state.elapsed, []
    while state.step < cfg.steps:
        with narrow_conv_guard(state.model):  # forward and backward (see kspace_attacks._kernels)
            loss = _train_step(cfg, state, train_data, physics)
        step, state.elapsed = state.step, time.perf_counter() - t0
        running.append(loss.item())
        bar.update(1)
        if due(step, cfg.log_every, cfg.steps):
            rec = {"kind": "train", "step": step, "loss": sum(running) / len(running),
                   "lr": lr_at(step - 1, cfg.steps, cfg.lr), "time_s": round(state.elapsed, 2)}
            append_jsonl(log_path, rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            running = []
        if val_data is not None and cfg.val_every and due(step, cfg.val_every, cfg.steps):
            rec = {"kind": "val", "step": step, **evaluate_network(state.model, val_data, physics,
                                                           device=cfg.device)}
            append_jsonl(log_path, rec)
            bar.write(json.dumps(rec))
        if due(step, cfg.ckpt_every, cfg.steps):
            _save_checkpoint(state, out / "checkpoint.pt")
    bar.close()


def _summary(cfg: _Settings, state: _State, seed: int, preset: str,
             train_data: Dataset) -> dict:
    """The run's record (without test metrics): architecture, size and training facts."""
    model = state.model
    record = {
        "name": cfg.weights_name,
        "architecture": model.config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "seed": seed, "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "schedule": f"linear warm-up {WARMUP} steps, cosine to 5%", "optimizer": "Adam",
            "loss": cfg.loss + (f" (+{SSIM_L1_WEIGHT} L1)" if cfg.loss == "ssim" else ""),
            "data": f"EmbeddedBrain(preset={preset!r}, split='train', seed={seed})"
            if train_data.__class__.__name__ == "EmbeddedBrain" else repr(train_data),
            "time_s": round(state.elapsed, 1), "threads": torch.get_num_threads(),
            # wall time depends on what else runs: record the machine's load next to it
            "load_average_15min": load_average_15min(),
            "device": str(cfg.device), "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    if cfg.robust is not None:
        record["training"]["robust"] = cfg.robust.record()
    return record


def _test_metrics(model: nn.Module, test_data: Dataset, physics: Any,
                  device: str | torch.device) -> dict:
    m = evaluate_network(model, test_data, physics, device=device)
    return {
        "split": "test", "n": len(test_data),
        "normalization": "minmax magnitude, data range 1",
        "model": {"psnr": m["psnr"], "ssim": m["ssim"]},
        "zero_filled": {"psnr": m["zf_psnr"], "ssim": m["zf_ssim"]},
    }


# ---------------------------------------------------------------------------------- train
@denormals_flushed  # denormals make CPU steps 10-30x slower
def train(
    name: str,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    out: str | os.PathLike = "runs",
    resume: bool = True,
    log_every: int = 50,
    threads: int | None = None,
    ckpt_every: int = 100,
    val_every: int = 500,
    arch: dict | None = None,
    preset: str = "embedded",
    train_data: Dataset | None = None,
    val_data: Dataset | None = None,
    test_data: Dataset | None = None,
    physics: Any = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    robust: Robust | None = None,
    init: str | os.PathLike | None = None,
) -> dict:
    """Train ``name`` (``"irim"`` or ``"resunetpp"``) and write weights + JSON to ``out``.

    :param name: model to train.
    :param steps, batch_size, lr: optimizer steps, images per step and peak Adam learning
        rate (defaults from :data:`SPECS`; robust runs from trained weights: :data:`FINE_TUNE_LR`).
    :param seed: seeds the initialisation and the batch sampling.
    :param out: run directory (created).
    :param resume: continue from ``out/checkpoint.pt`` if it exists.
    :param log_every, ckpt_every: steps between loss records in ``log.jsonl`` / checkpoints.
    :param threads: ``torch.set_num_threads`` (``None``: leave as is).
    :param val_every: steps between validations (0: never; the test split is always evaluated
        at the end when ``test_data`` is available).
    :param arch: architecture overrides (see the model's ``DEFAULT_CONFIG``).
    :param preset: data preset for the default data sets.
    :param train_data, val_data, test_data: ``(x, y)`` data sets replacing
        ``EmbeddedBrain("train"/"val"/"test")`` (pass ``val_data=test_data=None`` together
        with ``train_data`` to skip evaluation, e.g. in tests).
    :param physics: forward operator matching the data (default: the preset's).
    :param device: torch device.
    :param progress: show a tqdm progress bar.
    :param robust: robust training (:class:`~.robust.Robust`: adversarial or jitter, its eps
        and starting weights); the weights are then written as ``<name>_adv`` / ``<name>_jit``.
    :param init: starting weights of a standard run (fine-tuning, peak rate
        :data:`FINE_TUNE_LR` unless ``lr`` is given): ``"embedded"`` (the shipped model) or a
        ``.safetensors`` path; ``None`` (default): random initialisation. Robust runs take
        theirs from ``robust.init``.
    :return: summary dict (the content of ``<name>.json``).
    """
    if init is not None and robust is not None:
        raise ValueError("init: robust runs take their starting weights from robust.init; got both")
    cfg = _settings(name, steps, batch_size, lr, seed, log_every, ckpt_every, val_every,
                    threads, device, robust, init)
    train_data, val_data, test_data, physics = _data(train_data, val_data, test_data, physics,
                                                     preset, seed, device)
    out = run_dir(out)
    state = _init_state(cfg, arch, seed)
    start = robust.init if robust is not None else init
    if start is not None:
        _weights.load_state(state.model, _weights.weights_path(name, start))
    _resume(state, out / "checkpoint.pt", out / "log.jsonl", resume, device)
    _train_loop(cfg, state, train_data, val_data, physics, out, progress)

    state.model.eval()
    summary = _summary(cfg, state, seed, preset, train_data)
    if init is not None:
        summary["training"]["init"] = str(init)
    if test_data is not None:
        summary["metrics"] = _test_metrics(state.model, test_data, physics, device)
    _weights.save_state(state.model, out / f"{cfg.weights_name}.safetensors", state.model.config)
    (out / f"{cfg.weights_name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ------------------------------------------------------------------------------------ CLI
def parser() -> argparse.ArgumentParser:
    """Argument parser of ``kspace-attacks train``."""
    p = argparse.ArgumentParser(prog="kspace-attacks train",
                                description="Train a supervised reconstructor on the "
                                            "embedded brain data (CPU-friendly).")
    p.add_argument("name", choices=TRAINABLE)
    add_optimisation_args(p, None, None, None, steps_help="default: per model, see SPECS")
    p.add_argument("--out", default=None, help="run directory (default: runs/<name>)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="embedded",
                   help="data preset: embedded (64x64) or paper (256x256)")
    p.add_argument("--no-progress", action="store_true")
    r = p.add_argument_group("robust training (weights written as <name>_adv / <name>_jit)")
    r.add_argument("--robust", choices=("adversarial", "jitter"), default=None)
    r.add_argument("--eps", type=float, default=0.05,
                   help="relative level of the perturbations trained against (default 0.05)")
    r.add_argument("--mix", type=float, default=0.5, help="weight of the perturbed loss term")
    r.add_argument("--budget", type=int, default=4,
                   help="gradient evaluations of the inner attack per step (adversarial)")
    r.add_argument("--attack", default="apgd", help="inner attack (adversarial)")
    r.add_argument("--objective", default="deviation", help="inner objective (adversarial)")
    r.add_argument("--noise", choices=("equal_norm", "gaussian"), default="equal_norm",
                   help="jitter noise")
    p.add_argument("--init", default=None,
                   help="starting weights: embedded (fine-tune the shipped model), a .safetensors "
                        "path, or none (default: none for a standard run, embedded for a robust one)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``kspace-attacks train <name> [--steps N] [--batch-size B] [--lr LR] ...``."""
    a = parser().parse_args(argv)
    robust = None
    init = None if a.init is None or a.init.lower() == "none" else a.init
    if a.robust is not None:
        robust = Robust(a.robust, eps=a.eps, mix=a.mix, budget=a.budget, attack=a.attack,
                        objective=a.objective, noise=a.noise,
                        init="embedded" if a.init is None else init)
        init = None
    default_out = Path("runs") / (a.name if robust is None else robust.weights_name(a.name))
    summary = train(a.name, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                    out=a.out or default_out, resume=a.resume, robust=robust,
                    log_every=a.log_every, threads=a.threads, ckpt_every=a.ckpt_every,
                    val_every=a.val_every, device=a.device, progress=not a.no_progress,
                    preset=a.preset, init=init)
    print(json.dumps(summary.get("metrics", {}), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
