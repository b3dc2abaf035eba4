"""What the supervised and the diffusion trainers share: run arguments, steps, logs, run facts.

Kept free of model code so that both trainers (and their command lines) build on the same
argument checks, checkpoint reading, optimiser step and machine facts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from kspace_attacks._checks import check_nonneg_float, check_positive_int

__all__ = [
    "dataset_batch",
    "check_run_args",
    "run_dir",
    "read_checkpoint",
    "set_lr",
    "apply_gradients",
    "due",
    "append_jsonl",
    "truncate_jsonl",
    "load_average_15min",
    "machine",
    "add_optimisation_args",
]


# ------------------------------------------------------------------------------ data, args
def dataset_batch(ds: Any, idx: Iterable[Any]) -> tuple[Tensor, Tensor]:
    """Stack items ``idx`` of a ``(x, y)`` data set."""
    xs, ys = zip(*(ds[int(i)] for i in idx), strict=True)
    return torch.stack(xs), torch.stack(ys)


def check_run_args(
    steps: Any,
    batch_size: Any,
    lr: Any,
    seed: Any,
    ckpt_every: Any,
    threads: Any,
    log_every: Any = None,
) -> tuple[int, int, float]:
    """Validate a run's settings (in this order) and apply ``threads``.

    ``log_every`` is checked (after ``seed``) only when given. Returns ``(steps, batch_size,
    lr)`` as validated.
    """
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_nonneg_float("lr", lr, strictly_positive=True)
    check_positive_int("seed", seed, minimum=0)
    if log_every is not None:
        check_positive_int("log_every", log_every)
    check_positive_int("ckpt_every", ckpt_every)
    if threads is not None:
        torch.set_num_threads(check_positive_int("threads", threads))
    return steps, batch_size, lr


def run_dir(out: str | os.PathLike) -> Path:
    """The run directory ``out``, created if missing."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A training checkpoint; ``weights_only`` so that a file carrying code is refused."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


# ------------------------------------------------------------------------------ optimiser
def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group (schedules are pure functions of step)."""
    for group in opt.param_groups:
        group["lr"] = lr


def apply_gradients(
    opt: torch.optim.Optimizer,
    loss: Tensor,
    clip: tuple[Iterable[Tensor], float] | None = None,
) -> None:
    """One optimiser step on ``loss``; ``clip=(params, max_norm)`` clips the gradient norm."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip[0], clip[1])
    opt.step()


def due(step: int, every: int, steps: int) -> bool:
    """Whether a periodic action (log, validation, checkpoint) runs after ``step``."""
    return step % every == 0 or step == steps


# ----------------------------------------------------------------------------------- logs
def append_jsonl(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


# ------------------------------------------------------------------------------ run facts
def load_average_15min() -> float | None:
    """The machine's 15-minute load average (wall times depend on what else runs)."""
    return round(os.getloadavg()[2], 2) if hasattr(os, "getloadavg") else None


def machine() -> str:
    """The processor name, or the architecture where the platform does not tell it."""
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------------ CLI
def add_optimisation_args(
    p: argparse.ArgumentParser,
    steps: int | None,
    batch_size: int | None,
    lr: float | None,
    steps_help: str | None = None,
) -> None:
    """Add ``--steps``, ``--batch-size``, ``--lr`` and ``--seed`` (default 0) to ``p``."""
    p.add_argument("--steps", type=int, default=steps, help=steps_help)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
