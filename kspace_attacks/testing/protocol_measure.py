"""A protocol run as a :class:`~kspace_attacks.testing.RobustnessMeasurement`: what
``assert_robust(..., protocol="v1")`` checks, prints and saves.

The measurement is the worst budget of the card (largest worst-slice SSIM lost); per slice the
objective with the larger SSIM lost supplies the perturbation, and its numbers are those of the
card's ``attack`` rows (the worse objective per slice and metric).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..result import AttackResult
from .card import NOISE, ProtocolRun
from .measure import RobustnessMeasurement

__all__ = ["protocol_measurement"]


def _nanmax(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.max()) if t.numel() else float("nan")


def _nanmean(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.mean()) if t.numel() else float("nan")


def _locate(run: ProtocolRun, j: int) -> tuple[int, int]:
    """(batch, row within the batch) of global slice ``j``."""
    for b, (_, y, _) in enumerate(run.batches):
        if j < y.shape[0]:
            return b, j
        j -= y.shape[0]
    raise IndexError(j)


def _worst_result(run: ProtocolRun, i: int, b: int, seconds: float) -> AttackResult:
    """The perturbations of batch ``b`` at budget index ``i``, per slice the worse objective's."""
    objectives = run.protocol.objectives
    _, y, _ = run.batches[b]
    n = y.shape[0]
    first = sum(run.batches[c][1].shape[0] for c in range(b))
    pick = run.worst_objective()[i, first : first + n]
    rows = slice(i * n, (i + 1) * n)
    y_adv = torch.stack([run.conditions[objectives[int(o)]].y_adv[b][rows][j] for j, o in enumerate(pick)])
    x_adv = torch.stack([run.conditions[objectives[int(o)]].x_adv[b][rows][j] for j, o in enumerate(pick)])
    ratio = torch.stack([run.conditions[objectives[int(o)]].values["ratio"][i, first + j]
                         for j, o in enumerate(pick)])
    eps = torch.full((n,), float(run.eps[i]), dtype=torch.float64)
    return AttackResult(delta=(y_adv - y.to(y_adv.device)).detach(), y_adv=y_adv, x_clean=run.x_clean[b][rows],
                        x_adv=x_adv, loss=torch.full((n,), float("nan")), eps=eps, ratio=ratio,
                        grad_evals=sum(run.conditions[o].grad_evals for o in objectives),
                        forward_evals=sum(run.conditions[o].forward_evals for o in objectives),
                        seconds=seconds, attack=" | ".join(run.conditions[o].attack for o in objectives))


def protocol_measurement(run: ProtocolRun, card: dict[str, Any]) -> tuple[RobustnessMeasurement, Any, int]:
    """The measurement at the card's worst budget, the batch holding its worst slice and that
    slice's index within the batch (for failure artifacts)."""
    i = run.eps.index(card["summary"]["worst_eps"])
    comb = run.combined()
    lost = -comb["delta_ssim"][i]
    worst = int(torch.nan_to_num(lost, nan=-float("inf")).argmax())
    o = run.protocol.objectives[int(run.worst_objective()[i, worst])]
    vals, noise = run.conditions[o].values, run.conditions[NOISE].values
    b, local = _locate(run, worst)
    res = _worst_result(run, i, b, run.seconds)
    m = RobustnessMeasurement(
        model=card["name"], eps=float(run.eps[i]), steps=run.protocol.steps,
        attack=(f"protocol {run.protocol.version}: {run.protocol.attack} ({run.protocol.steps} steps) on "
                f"objectives {', '.join(run.protocol.objectives)}, the worse per slice"),
        n_samples=int(lost.numel()),
        reference=run.reference, ssim_lost=float(lost[worst]), psnr_lost=_nanmax(-comb["delta_psnr"][i]),
        ssim_lost_mean=_nanmean(lost), psnr_lost_mean=_nanmean(-comb["delta_psnr"][i]),
        noise_ssim_lost=_nanmax(-noise["delta_ssim"][i]), noise_psnr_lost=_nanmax(-noise["delta_psnr"][i]),
        worst_index=worst, ssim_clean=float(vals["ssim_clean"][i, worst]),
        ssim_adv=float(vals["ssim_adv"][i, worst]), psnr_clean=float(vals["psnr_clean"][i, worst]),
        psnr_adv=float(vals["psnr_adv"][i, worst]),
        ratio=max(float(run.conditions[c].values["ratio"][i].max()) for c in run.protocol.objectives),
        seconds=run.seconds, device=str(run.x_clean[0].device), result=res,
    )
    return m, run.batches[b], local
