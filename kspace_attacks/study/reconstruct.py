"""Reconstructing a batch with every target, one sampler run for targets that share it.

:func:`reconstruct_one` runs one model in eval mode without gradients (in chunks if asked);
:func:`reconstruct_all` runs every target of a transfer, grouping targets that differ only in
the diffusion sampler's final data consistency (:func:`trajectory_groups`) so that one run
gives all of their outputs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_image
from ..attacks.base import Reconstructor, frozen_eval

__all__ = ["reconstruct_one", "reconstruct_all", "trajectory_groups"]



@torch.no_grad()
def reconstruct_one(model: Reconstructor, y: Tensor, physics: Any, chunk: int | None) -> Tensor:
    with frozen_eval(model):  # eval mode for the call; the caller's mode is restored
        if chunk is None or y.shape[0] <= chunk:
            return check_image("model(y, physics)", model(y, physics))
        return torch.cat([model(y[i : i + chunk], physics) for i in range(0, y.shape[0], chunk)])


def trajectory_groups(targets: Mapping[str, Reconstructor]) -> list[list[str]]:
    """Targets grouped by shared sampler runs, in ``targets`` order.

    A model may expose ``trajectory_key()`` and ``sample_variants(y, physics) -> {final_dc:
    x}`` (the diffusion sampler does): targets with equal keys and distinct ``final_dc`` differ
    only in the sampler's final data consistency, so one run gives all of their outputs, each
    equal to the model's own call. Every other target is a group of one.
    """
    groups: dict[Any, list[str]] = {}
    for name, model in targets.items():
        key = _shared_run_key(model)
        finals = {targets[n].sampler_kwargs.get("final_dc") for n in groups.get(key, [])} if key else set()
        if key is None or model.sampler_kwargs.get("final_dc") in finals:
            groups[("alone", name)] = [name]
        else:
            groups.setdefault(key, []).append(name)
    return list(groups.values())


def _shared_run_key(model: Any) -> Any:
    key = getattr(model, "trajectory_key", None)
    if not (callable(key) and callable(getattr(model, "sample_variants", None))
            and isinstance(getattr(model, "sampler_kwargs", None), Mapping)):
        return None
    return key()


@torch.no_grad()
def reconstruct_all(targets: Mapping[str, Reconstructor], y: Tensor, physics: Any, chunk: int | None = None,
                    groups: Sequence[Sequence[str]] | None = None) -> dict[str, tuple[Tensor, float]]:
    """Every target's reconstruction of ``y``: ``name -> (x, seconds)``, one sampler run per
    group of :func:`trajectory_groups` (its seconds split evenly over the group's targets)."""
    out: dict[str, tuple[Tensor, float]] = {}
    for group in groups if groups is not None else trajectory_groups(targets):
        start = time.perf_counter()
        if len(group) == 1:
            xs = {group[0]: reconstruct_one(targets[group[0]], y, physics, chunk)}
        else:
            model = targets[group[0]]
            with frozen_eval(model):
                parts = [model.sample_variants(y[i: i + (chunk or y.shape[0])], physics)
                         for i in range(0, y.shape[0], chunk or y.shape[0])]
            xs = {n: check_image("model(y, physics)",
                                 torch.cat([p[targets[n].sampler_kwargs["final_dc"]] for p in parts]))
                  for n in group}
        seconds = (time.perf_counter() - start) / len(group)
        out.update({n: (xs[n], seconds) for n in group})
    return {n: out[n] for n in targets}
