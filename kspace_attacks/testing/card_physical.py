"""The card's "physical" section: what a scanner imperfection can do, worst case vs random.

For each physical threat (:mod:`kspace_attacks.physical`) at its three documented budgets
(:data:`~kspace_attacks.physical.catalog.PHYSICAL_BUDGETS`), the card's protocol is run with
that threat in place of its norm ball, on the card's own slices: the protocol's attack on both
objectives, and the random imperfection of the same physical size (every parameter at its full
size, random signs / positions) as the control. Per budget the section gives the worst case's
and the control's Δ SSIM, and their paired difference per slice with a bootstrap CI: the answer
to "is the worst case worse than what a random imperfection of that size does?".

Example:

    >>> import kspace_attacks as ka
    >>> from kspace_attacks.data import demo_batch
    >>> zero_filled = lambda y, physics: physics.A_adjoint(y)
    >>> card = ka.evaluate(zero_filled, data=demo_batch(2), physical=["motion"])
    >>> section = card["physical"]["motion"]
    >>> section["unit"], [r["eps"] for r in section["attack_vs_random"]]
    ('mm', [0.5, 1.0, 2.0])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch

from ..physical.catalog import PHYSICAL_BUDGETS, PHYSICAL_THREATS
from ..stats import bootstrap_ci
from .card_stats import ATTACK, NOISE, _rows
from .protocol import Protocol

__all__ = ["physical_protocols", "physical_entry", "physical_threats_for", "compare_with_random"]


def physical_threats_for(names: bool | Iterable[str], multi_coil: bool) -> list[str]:
    """The threats a card measures: ``True`` = every one that applies to the data (coil maps
    need multi-coil data); a list = those, checked."""
    if names is True:
        return [n for n in PHYSICAL_THREATS if multi_coil or n != "coil_maps"]
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"physical: expected True or a list of threat names, got {names!r}")
    out = list(names)
    unknown = sorted(set(out) - set(PHYSICAL_THREATS))
    if unknown:
        raise ValueError(f"physical: unknown threat(s) {unknown}; expected some of {list(PHYSICAL_THREATS)}")
    if "coil_maps" in out and not multi_coil:
        raise ValueError("physical: 'coil_maps' needs multi-coil data (the model is told wrong coil maps); "
                         "the card's data is single-coil")
    return out


def compare_with_random(attack: torch.Tensor, noise: torch.Tensor, eps: list[float],
                        boot: dict[str, Any]) -> list[dict[str, Any]]:
    """Per budget, the paired difference worst case - random in Δ SSIM over slices.

    ``attack`` and ``noise`` are ``(K, N)`` (budgets x slices). Negative = the worst case costs
    more SSIM. ``answer``: ``"worse than random"`` when the CI lies below 0, ``"not worse"``
    when it lies above or at 0, else ``"inconclusive"``.
    """
    rows = []
    for i, e in enumerate(eps):
        diff = (attack[i] - noise[i]).double()
        diff = diff[torch.isfinite(diff)]
        if diff.numel() == 0:
            rows.append({"eps": e, "mean": float("nan"), "ci95": [float("nan")] * 2, "n": 0,
                         "answer": "inconclusive"})
            continue
        lo, hi = bootstrap_ci(diff.tolist(), level=boot["level"], resamples=boot["resamples"], seed=boot["seed"])
        answer = "worse than random" if hi < 0 else ("not worse" if lo >= 0 else "inconclusive")
        rows.append({"eps": e, "mean": float(diff.mean()), "ci95": [lo, hi], "n": int(diff.numel()),
                     "answer": answer})
    return rows


def physical_protocols(p: Protocol, names: bool | Iterable[str], multi_coil: bool) -> dict[str, Protocol]:
    """The card's protocol with each physical threat in place of its norm ball, at the threat's
    documented budgets."""
    return {name: dataclasses.replace(p, threat={"type": name}, eps=PHYSICAL_BUDGETS[name])
            for name in physical_threats_for(names, multi_coil)}


def physical_entry(run: Any) -> dict[str, Any]:
    """One threat's entry of the section from its protocol run (:func:`physical_protocols`)."""
    p = run.protocol
    combined, noise = run.combined(), run.conditions[NOISE].values
    threat = p.threat_model(p.eps[len(p.eps) // 2])
    return {
        "threat": repr(threat),
        "unit": getattr(threat, "unit", ""),
        "eps": run.eps,
        "results": {ATTACK: _rows(combined, run.eps, p.bootstrap, None),
                    NOISE: _rows(noise, run.eps, p.bootstrap, noise["ratio"])},
        "attack_vs_random": compare_with_random(combined["delta_ssim"], noise["delta_ssim"], run.eps, p.bootstrap),
        "grad_evals": sum(c.grad_evals for c in run.conditions.values()),
        "seconds": round(run.seconds, 3),
    }
