"""Supervised training of the i-RIM and ResUnet++ reconstructors on the embedded brain data.

Python API :func:`train`, command line :func:`main` (``kspace-attacks train <name>``).

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

>>> from kspace_attacks.adapters.training import train
>>> summary = train("resunetpp", steps=2000, out="runs/resunetpp")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from kspace_attacks._checks import check_choice, check_nonneg_float, check_positive_int
from kspace_attacks._runtime import denormals_flushed

from . import _weights

#: Per-model training defaults (the shipped weights used these unless their JSON says otherwise).
SPECS: dict[str, dict[str, Any]] = {
    "irim": {"loss": "ssim", "steps": 1500, "batch_size": 8, "lr": 1e-3},
    "resunetpp": {"loss": "l1", "steps": 2500, "batch_size": 8, "lr": 1e-3},
}
TRAINABLE = tuple(SPECS)
SSIM_L1_WEIGHT = 0.1  # the small L1 term added to i-RIM's SSIM loss (stabilises early steps)
WARMUP = 100


# --------------------------------------------------------------------------------- pieces
def build_model(name: str, **arch: Any) -> nn.Module:
    """A randomly initialised trainable model (train mode), architecture ``arch`` overrides."""
    check_choice("name", name, TRAINABLE)
    if name == "irim":
        from .irim import build
    else:
        from .resunetpp import build
    return build(**arch)


def magnitude(x: Tensor) -> Tensor:
    """``(B, 2, H, W)`` -> ``(B, 1, H, W)``; smooth at 0 so the SSIM loss has finite gradients."""
    return (x.pow(2).sum(dim=1, keepdim=True) + 1e-12).sqrt()


def loss_fn(kind: str, x_hat: Tensor, x: Tensor) -> Tensor:
    """Training loss: ``"l1"`` on the complex image or ``"ssim"`` (1 - SSIM on magnitudes).

    Ground-truth magnitudes lie in [0, 1], hence SSIM's data range 1.
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


def batch_of(ds: Dataset, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Stack items ``idx`` of a ``(x, y)`` data set."""
    xs, ys = zip(*(ds[int(i)] for i in idx), strict=True)
    return torch.stack(xs), torch.stack(ys)


@torch.no_grad()
def evaluate(model: nn.Module, ds: Dataset, physics: Any, batch_size: int = 16,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean PSNR/SSIM (minmax-normalised magnitudes) of ``model`` and of zero-filled on ``ds``."""
    from kspace_attacks import metrics

    was_training = model.training
    model.eval()
    sums = {"psnr": 0.0, "ssim": 0.0, "zf_psnr": 0.0, "zf_ssim": 0.0}
    n = len(ds)
    for start in range(0, n, batch_size):
        x, y = batch_of(ds, torch.arange(start, min(n, start + batch_size)))
        x, y = x.to(device), y.to(device)
        x_hat, x_zf = model(y, physics), physics.A_adjoint(y)
        sums["psnr"] += metrics.psnr(x_hat, x).sum().item()
        sums["ssim"] += metrics.ssim(x_hat, x).sum().item()
        sums["zf_psnr"] += metrics.psnr(x_zf, x).sum().item()
        sums["zf_ssim"] += metrics.ssim(x_zf, x).sum().item()
    model.train(was_training)
    return {k: v / n for k, v in sums.items()}


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


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
) -> dict:
    """Train ``name`` (``"irim"`` or ``"resunetpp"``) and write weights + JSON to ``out``.

    :param name: model to train.
    :param steps: optimizer steps (default from :data:`SPECS`).
    :param batch_size: images per step (default from :data:`SPECS`).
    :param lr: peak Adam learning rate (default from :data:`SPECS`).
    :param seed: seeds the initialisation and the batch sampling.
    :param out: run directory (created).
    :param resume: continue from ``out/checkpoint.pt`` if it exists.
    :param log_every: steps between loss records in ``log.jsonl``.
    :param threads: ``torch.set_num_threads`` (``None``: leave as is).
    :param ckpt_every: steps between checkpoints.
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
    :return: summary dict (the content of ``<name>.json``).
    """
    check_choice("name", name, TRAINABLE)
    spec = SPECS[name]
    steps = check_positive_int("steps", spec["steps"] if steps is None else steps)
    batch_size = check_positive_int("batch_size", spec["batch_size"] if batch_size is None
                                    else batch_size)
    lr = check_nonneg_float("lr", spec["lr"] if lr is None else lr, strictly_positive=True)
    check_positive_int("seed", seed, minimum=0)
    check_positive_int("log_every", log_every)
    check_positive_int("ckpt_every", ckpt_every)
    if threads is not None:
        torch.set_num_threads(check_positive_int("threads", threads))

    if train_data is None:
        from kspace_attacks.data import EmbeddedBrain, get_preset

        train_data = EmbeddedBrain("train", preset=preset, seed=seed)
        val_data = EmbeddedBrain("val", preset=preset)
        test_data = EmbeddedBrain("test", preset=preset)
        physics = get_preset(preset).physics(device=device)
    if physics is None:
        raise ValueError("physics: expected the forward operator matching train_data, got None")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"

    torch.manual_seed(seed)
    model = build_model(name, **(arch or {})).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sampler = torch.Generator().manual_seed(seed)
    step, elapsed = 0, 0.0
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ck["config"] != model.config:
            raise ValueError(
                f"resume: checkpoint {ckpt_path} has architecture {ck['config']}, "
                f"expected {model.config}; use another --out or --no-resume"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sampler.set_state(ck["sampler_rng"])
        torch.set_rng_state(ck["torch_rng"])
        step, elapsed = int(ck["step"]), float(ck["elapsed"])
        _truncate_log(log_path, step)
    elif log_path.exists():
        log_path.unlink()

    def checkpoint() -> None:
        _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                      "sampler_rng": sampler.get_state(), "torch_rng": torch.get_rng_state(),
                      "step": step, "elapsed": elapsed, "config": model.config}, ckpt_path)

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=step, desc=f"train {name}", disable=not progress,
               mininterval=10)
    t0, running = time.perf_counter() - elapsed, []
    while step < steps:
        idx = torch.randint(len(train_data), (batch_size,), generator=sampler)
        x, y = (t.to(device) for t in batch_of(train_data, idx))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        loss = loss_fn(spec["loss"], model(y, physics), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        elapsed = time.perf_counter() - t0
        running.append(loss.item())
        bar.update(1)
        if step % log_every == 0 or step == steps:
            rec = {"kind": "train", "step": step, "loss": sum(running) / len(running),
                   "lr": lr_at(step - 1, steps, lr), "time_s": round(elapsed, 2)}
            _append_log(log_path, rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            running = []
        if val_data is not None and val_every and (step % val_every == 0 or step == steps):
            rec = {"kind": "val", "step": step, **evaluate(model, val_data, physics,
                                                           device=device)}
            _append_log(log_path, rec)
            bar.write(json.dumps(rec))
        if step % ckpt_every == 0 or step == steps:
            checkpoint()
    bar.close()

    model.eval()
    summary = {
        "name": name,
        "architecture": model.config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
            "schedule": f"linear warm-up {WARMUP} steps, cosine to 5%", "optimizer": "Adam",
            "loss": spec["loss"] + (f" (+{SSIM_L1_WEIGHT} L1)" if spec["loss"] == "ssim" else ""),
            "data": f"EmbeddedBrain(preset={preset!r}, split='train', seed={seed})"
            if train_data.__class__.__name__ == "EmbeddedBrain" else repr(train_data),
            "time_s": round(elapsed, 1), "threads": torch.get_num_threads(),
            # wall time depends on what else runs: record the machine's load next to it
            "load_average_15min": round(os.getloadavg()[2], 2) if hasattr(os, "getloadavg")
            else None,
            "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
        },
    }
    if test_data is not None:
        m = evaluate(model, test_data, physics, device=device)
        summary["metrics"] = {
            "split": "test", "n": len(test_data),
            "normalization": "minmax magnitude, data range 1",
            "model": {"psnr": m["psnr"], "ssim": m["ssim"]},
            "zero_filled": {"psnr": m["zf_psnr"], "ssim": m["zf_ssim"]},
        }
    _weights.save_state(model, out / f"{name}.safetensors", model.config)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ------------------------------------------------------------------------------------ CLI
def parser() -> argparse.ArgumentParser:
    """Argument parser of ``kspace-attacks train``."""
    p = argparse.ArgumentParser(prog="kspace-attacks train",
                                description="Train a supervised reconstructor on the "
                                            "embedded brain data (CPU-friendly).")
    p.add_argument("name", choices=TRAINABLE)
    p.add_argument("--steps", type=int, default=None, help="default: per model, see SPECS")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory (default: runs/<name>)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="embedded", help="data preset: embedded (64x64) or paper (256x256)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``kspace-attacks train <name> [--steps N] [--batch-size B] [--lr LR] ...``."""
    a = parser().parse_args(argv)
    summary = train(a.name, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                    out=a.out or Path("runs") / a.name, resume=a.resume,
                    log_every=a.log_every, threads=a.threads, ckpt_every=a.ckpt_every,
                    val_every=a.val_every, device=a.device, progress=not a.no_progress,
                    preset=a.preset)
    print(json.dumps(summary.get("metrics", {}), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
