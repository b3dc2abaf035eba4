"""Robustness cards: a model measured under a fixed, versioned protocol (``ka.evaluate``).

:func:`evaluate` attacks a model with the protocol's attack on both objectives at every
budget (one batched attack per objective over the whole grid), reconstructs the perturbed
k-space and the equal-norm noise control with the model, and summarises per eps: the worst
slice and the mean with a bootstrap 95 % CI of Delta SSIM, Delta PSNR and the relative
deviation. With ``out`` it writes ``card.json`` (numbers, protocol definition, provenance,
cost) and ``card.md`` (tables), both committed together or not at all.

Example:

    >>> import kspace_attacks as ka
    >>> from kspace_attacks.data import demo_batch
    >>> zero_filled = lambda y, physics: physics.A_adjoint(y)
    >>> card = ka.evaluate(zero_filled, data=demo_batch(2), name="zero_filled")
    >>> card["protocol"]["version"], [r["eps"] for r in card["results"]["attack"]]
    ('v3', [0.01, 0.02, 0.05, 0.08])
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import describe
from .._runtime import flush_denormals, reproducible_numerics
from ..io import atomic_path, dumps_strict
from ..measurement import Grid, against_reference, measure
from .measure import _model_name, check_batch
from .card_stats import ATTACK, CARD_METRICS, NOISE, _rows, sanity_checks
from .protocol import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol

__all__ = ["evaluate", "measure_card", "write_card", "model_provenance", "CardError", "ProtocolRun",
           "FORMAT", "NOISE", "ATTACK", "CARD_METRICS"]

#: 2: the summary's worst slice as ``worst_delta_ssim`` / ``worst_delta_psnr`` (adv - clean, the
#: package's one sign for harm; format 1 had ``ssim_lost`` / ``psnr_lost`` = minus those) and the
#: noise control seeded per row (:func:`~kspace_attacks.measurement.control_grid`)
FORMAT = "kspace-attacks/robustness-card/2"


class CardError(RuntimeError):
    """A model could not be measured under the protocol; no card file was written."""


@dataclass
class Condition:
    """One objective's attack (or the noise control) over all slices: metric -> ``(K, N)``
    (eps x slice), and per batch the perturbed k-space and reconstructions (stacked rows)."""

    values: dict[str, Tensor]
    y_adv: list[Tensor] = field(default_factory=list)
    x_adv: list[Tensor] = field(default_factory=list)
    grad_evals: int = 0
    forward_evals: int = 0
    seconds: float = 0.0
    attack: str = ""


@dataclass
class ProtocolRun:
    """Everything a protocol measured on one model (the card is a summary of it)."""

    protocol: Protocol
    conditions: dict[str, Condition]
    x_clean: list[Tensor]
    batches: list[tuple[Tensor | None, Tensor, Any]]
    reference: str
    seconds: float

    @property
    def eps(self) -> list[float]:
        return [float(e) for e in self.protocol.eps]

    def combined(self) -> dict[str, Tensor]:
        """Per metric, the worse of the objectives per slice and eps, ``(K, N)``."""
        out = {}
        for metric, worse in CARD_METRICS.items():
            stack = torch.stack([self.conditions[o].values[metric] for o in self.protocol.objectives])
            stack = torch.nan_to_num(stack, nan=float("inf") if worse == "min" else -float("inf"))
            out[metric] = stack.amin(0) if worse == "min" else stack.amax(0)
            out[metric] = torch.where(out[metric].isinf(), float("nan"), out[metric])
        return out

    def worst_objective(self) -> Tensor:
        """``(K, N)`` index (into the objectives) of the objective with the smaller Delta SSIM."""
        stack = torch.stack([self.conditions[o].values["delta_ssim"] for o in self.protocol.objectives])
        return torch.nan_to_num(stack, nan=float("inf")).argmin(0)


def _measure_batch(model: Any, attack_model: Any, batch: tuple, p: Protocol, seed: int,
                   conditions: dict[str, Condition]) -> Tensor:
    """Attack one batch on every objective plus the noise control (:func:`~kspace_attacks.measurement.measure`)
    and append its numbers, metric -> ``(K, n)``, to ``conditions``; returns the stacked clean
    reconstruction. Row ``i * n + j`` is slice ``j`` at ``p.eps[i]``."""
    x, y, physics = batch
    g = Grid.of(x, y, physics, p.eps)
    attacks = {label: p.attack_for(label, g.eps, seed) for label in p.objectives}
    run = measure(model, g, attacks, control=p.threat_model(g.eps), seed=seed, surrogate=attack_model,
                  normalization=p.normalization)
    for label, values in run.values.items():
        got = run.perturbed[label]
        vals = {**against_reference(values), "relative_deviation": values["relative_deviation"]}
        vals.update({k: values[k] for k in ("ratio", "restart_spread", "unreliable") if k in values})
        c = conditions.setdefault(label, Condition(values={}, attack=got.description))
        for m, v in vals.items():
            v = g.per_eps(v.detach().double().cpu())
            c.values[m] = v if m not in c.values else torch.cat([c.values[m], v], dim=1)
        c.y_adv.append(got.y)
        c.x_adv.append(run.x_adv[label])
        res = got.result
        c.grad_evals += 0 if res is None else res.grad_evals
        c.forward_evals += (0 if res is None else res.forward_evals) + 1
        c.seconds += run.seconds[label]
    return run.x_clean


def _batches(data: Any, p: Protocol) -> list[tuple[Tensor | None, Tensor, Any]]:
    if data is None:
        return [p.data_batch()]
    if isinstance(data, (tuple, list)) and len(data) == 3 and isinstance(data[1], Tensor):
        return [check_batch(tuple(data))]
    if not isinstance(data, Iterable):
        raise TypeError(f"data: expected an (x, y, physics) batch, a list of them or None (the "
                        f"protocol's data), got {describe(data)}")
    out = [check_batch(b) for b in data]
    if not out:
        raise ValueError("data: expected at least one (x, y, physics) batch, got none")
    if len({b[0] is None for b in out}) > 1:
        raise ValueError("data: expected ground truth in every batch or in none")
    return out


def _to_device(batches: list, model: Any, device: Any) -> list:
    if device is None and isinstance(model, torch.nn.Module):
        param = next(iter(model.parameters()), None)
        device = None if param is None else param.device
    if device is None:
        return batches
    if isinstance(model, torch.nn.Module):
        model.to(device)
    return [(None if x is None else x.to(device), y.to(device),
             physics.to(device) if hasattr(physics, "to") else physics) for x, y, physics in batches]


def run_protocol(model: Any, data: Any = None, protocol: str | Protocol = DEFAULT_PROTOCOL, seed: int = 0,
                 attack_model: Any = None, device: Any = None) -> ProtocolRun:
    """Measure ``model`` under ``protocol`` (no files); model errors propagate unchanged."""
    p = get_protocol(protocol)
    batches = _to_device(_batches(data, p), model, device)
    if attack_model is not None:
        _to_device([], attack_model, device)
    conditions: dict[str, Condition] = {}
    start = time.perf_counter()
    with flush_denormals(), reproducible_numerics(p.threads):
        x_clean = [_measure_batch(model, attack_model, b, p, seed, conditions) for b in batches]
    reference = "ground truth" if batches[0][0] is not None else "clean reconstruction"
    return ProtocolRun(p, conditions, x_clean, batches, reference, time.perf_counter() - start)


# ----------------------------------------------------------------------------------- the card
def _hash_tensors(items: Iterable[tuple[str, Tensor]]) -> str:
    h = hashlib.sha256()
    for key, t in items:
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_provenance(model: Any, name: str | None = None) -> dict[str, Any]:
    """Name, class, parameter count and a SHA-256 of the ``state_dict`` (``nn.Module`` only)."""
    cls = model if not isinstance(model, torch.nn.Module) and hasattr(model, "__qualname__") else type(model)
    info: dict[str, Any] = {"name": name or _model_name(model),
                            "class": f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)}",
                            "parameters": 0, "state_dict_sha256": None}
    if isinstance(model, torch.nn.Module):
        info["parameters"] = sum(p.numel() for p in model.parameters())
        state = model.state_dict()
        info["state_dict_sha256"] = _hash_tensors((k, state[k]) for k in sorted(state))
    return info


def _data_info(run: ProtocolRun, user_data: bool) -> dict[str, Any]:
    ys = [b[1] for b in run.batches]
    info: dict[str, Any] = {
        "source": "user" if user_data else "protocol",
        "n_slices": sum(y.shape[0] for y in ys),
        "kspace_shape": list(ys[0].shape[1:]),
        "ground_truth": run.reference == "ground truth",
        "kspace_sha256": _hash_tensors((str(i), y) for i, y in enumerate(ys)),
    }
    if not user_data:
        info["call"] = run.protocol.data_call()
    return info


def _environment() -> dict[str, Any]:
    import deepinv

    from .. import __version__

    return {"kspace_attacks": __version__, "torch": torch.__version__, "deepinv": deepinv.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def _cost(run: ProtocolRun) -> dict[str, Any]:
    cost: dict[str, Any] = {c: {"grad_evals": v.grad_evals, "forward_evals": v.forward_evals,
                                "seconds": round(v.seconds, 3), **_spread(v)} for c, v in run.conditions.items()}
    cost["rows_per_attack"] = len(run.eps) * sum(b[1].shape[0] for b in run.batches)
    cost["total_seconds"] = round(run.seconds, 3)
    cost["note"] = ("grad_evals: forward + backward passes of the attacked model over the stacked batch "
                    "(every slice at every eps at once); forward_evals include the attack's own and "
                    "one re-reconstruction by the model; seconds depend on the machine")
    return cost


def _spread(c: Condition) -> dict[str, Any]:
    """How settled the search's worst case is: mean and largest restart spread over the rows
    (``(best - median) / best`` over the starts; 0 = every start agreed)."""
    v = c.values.get("restart_spread")
    if v is None:
        return {}
    return {"restart_spread_mean": round(float(v.mean()), 4), "restart_spread_max": round(float(v.max()), 4)}


def _summary(run: ProtocolRun, attack_rows: list[dict], noise_rows: list[dict]) -> dict[str, Any]:
    worst_i = max(range(len(attack_rows)), key=lambda i: -_nan_to(attack_rows[i]["delta_ssim"]["worst"], 0.0))
    last = attack_rows[-1]
    noise_dev = noise_rows[-1]["relative_deviation"]["mean"]
    return {
        "worst_eps": attack_rows[worst_i]["eps"],
        "worst_delta_ssim": attack_rows[worst_i]["delta_ssim"]["worst"],
        "worst_delta_psnr": attack_rows[worst_i]["delta_psnr"]["worst"],
        "max_eps": last["eps"],
        "mean_delta_ssim_at_max_eps": last["delta_ssim"]["mean"],
        "mean_delta_psnr_at_max_eps": last["delta_psnr"]["mean"],
        "mean_relative_deviation_at_max_eps": last["relative_deviation"]["mean"],
        "noise_mean_relative_deviation_at_max_eps": noise_dev,
        "attack_over_noise_deviation_at_max_eps": (last["relative_deviation"]["mean"] / noise_dev
                                                   if noise_dev else float("nan")),
    }


def _nan_to(v: float, default: float) -> float:
    return default if v != v else v


def _notes(run: ProtocolRun, user_data: bool, seed: int, attack_model_info: dict | None) -> list[str]:
    notes = []
    if attack_model_info is not None:
        notes.append("NON-STANDARD: the perturbations were crafted on an attack model, not on the model "
                     f"itself ({attack_model_info.get('note') or attack_model_info['class']}); the numbers "
                     "are the model's on those perturbations, a lower bound on its white-box worst case.")
    if user_data:
        notes.append("NON-STANDARD: user data instead of the protocol's data; compare with cards of the "
                     "same data only (kspace_sha256).")
    if run.reference != "ground truth":
        notes.append("No ground truth: Delta SSIM is SSIM(f(y+delta), f(y)) - 1 and Delta PSNR is "
                     "undefined (null).")
    if seed != 0:
        notes.append(f"seed {seed}: the protocol's reference numbers use seed 0.")
    if run.protocol.version not in PROTOCOLS:
        notes.append(f"NON-STANDARD protocol {run.protocol.version!r}: see its definition below.")
    notes.append("Worst = the worst slice (an order statistic: no CI); CIs are percentile bootstrap "
                 "intervals of the mean over slices. The 'attack' rows take, per slice and eps, the "
                 "worse of the objectives in each metric separately.")
    return notes


def card_dict(run: ProtocolRun, model_info: dict[str, Any], user_data: bool, seed: int,
              attack_model_info: dict | None = None) -> dict[str, Any]:
    """The card of a :class:`ProtocolRun` as a JSON-friendly dict."""
    p, boot = run.protocol, run.protocol.bootstrap
    results = {ATTACK: _rows(run.combined(), run.eps, boot, None)}
    for label, c in run.conditions.items():
        results[label] = _rows(c.values, run.eps, boot, c.values["ratio"])
    model = dict(model_info, attack_model=attack_model_info)
    return {
        "format": FORMAT, "name": model_info["name"], "protocol": p.as_dict(), "model": model,
        "data": _data_info(run, user_data), "reference": run.reference, "seed": seed,
        "environment": dict(_environment(), threads=p.threads), "eps": run.eps, "results": results,
        "summary": _summary(run, results[ATTACK], results[NOISE]), "cost": _cost(run),
        "sanity": sanity_checks(run.conditions, run.eps),
        "notes": _notes(run, user_data, seed, attack_model_info),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


#: the certified section's settings unless ``certify=`` says otherwise: the smallest round sigma that
#: certifies every budget of the protocols with these draws (benchmarks/results/certify.md)
CERTIFY_DEFAULTS: dict[str, Any] = {"sigma": 0.04, "n_pred": 500, "n_cert": 1200, "delta": 0.15,
                                    "alpha": 0.01, "attack_budget": 10, "attack_n": 8}


def certified_section(model: Any, batches: list, p: Protocol, seed: int,
                      options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The card's "certified" section: center smoothing on the card's slices at the protocol's
    budgets (:func:`kspace_attacks.certify.certify`): per eps, how many slices were certified,
    the attack's lower bound on the smoothed model next to the certified radius (relative to
    the smoothed reconstruction) and their ratio; every slice's row under ``slices``."""
    from ..certify import certify

    opts = {**CERTIFY_DEFAULTS, **(options or {})}
    certs = [certify(model, y, physics, eps=list(p.eps), seed=seed, **opts) for _, y, physics in batches]
    rows = [dict(r, sample=k) for k, r in enumerate(r for c in certs for r in c.to_records())]

    def median(values: list[float]) -> float:
        v = torch.tensor([x for x in values if x == x], dtype=torch.float64)
        return float(v.median()) if v.numel() else float("nan")

    results = []
    for e in p.eps:
        at = [r for r in rows if r["eps"] == e]
        ok = [r for r in at if not r["abstained"]]
        results.append({"eps": e, "slices": len(at), "certified": len(ok),
                        "lower_rel_median": median([r["lower_rel"] for r in ok]),
                        "radius_rel_median": median([r["radius_rel"] for r in ok]),
                        "width_median": median([r["width"] for r in ok])})
    return {"method": "center smoothing (Kumar & Goldstein, NeurIPS 2021)", "settings": opts,
            "statement": certs[0].statement.splitlines()[0] + " Nothing is certified about the base model.",
            "smoothing_error_rel_median": median([r["smoothing_error_rel"] for r in rows]),
            "noise_rel_median": median([r["noise_rel"] for r in rows]),
            "forward_evals_per_slice": median([float(r["forward_evals"]) for r in rows]),
            "seconds": sum(c.seconds for c in certs), "results": results, "slices": rows}


def measure_card(model: Any, data: Any = None, protocol: str | Protocol = DEFAULT_PROTOCOL, name: str | None = None,
                 seed: int = 0, attack_model: Any = None, attack_model_note: str | None = None,
                 device: Any = None, certify: bool | Mapping[str, Any] = False,
                 physical: bool | Iterable[str] = False) -> tuple[dict[str, Any], ProtocolRun]:
    """The card and the run behind it, without writing files (see :func:`evaluate`)."""
    if not callable(model):
        raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
    if attack_model is not None and not callable(attack_model):
        raise TypeError(f"attack_model: expected a callable model(y, physics), got {describe(attack_model)}")
    p = get_protocol(protocol)
    info = model_provenance(model, name)
    if data is not None:
        _batches(data, p)  # a bad batch is the caller's error, not the model's
    try:
        run = run_protocol(model, data, p, seed, attack_model, device)
    except Exception as e:  # noqa: BLE001 - any failure of the model is reported with its name
        where = "the protocol's data" if data is None else "the given data"
        what = e if isinstance(e, CardError) else f"{type(e).__name__}: {e}"
        raise CardError(f"evaluate: model {info['name']!r} ({info['class']}) failed under protocol "
                        f"{p.version!r} on {where}: {what}; no card was written") from e
    am = None
    if attack_model is not None:
        am = dict(model_provenance(attack_model), note=attack_model_note)
    card = card_dict(run, info, data is not None, seed, am)
    if certify:
        card["certified"] = certified_section(model, run.batches, p, seed,
                                              certify if isinstance(certify, Mapping) else None)
    if physical:
        from .card_physical import physical_entry, physical_protocols

        multi = all(b[1].dim() == 5 for b in run.batches)
        card["physical"] = {name: physical_entry(run_protocol(model, run.batches, variant, seed, attack_model))
                            for name, variant in physical_protocols(p, physical, multi).items()}
    return card, run


def write_card(card: Mapping[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write ``card.json`` and ``card.md`` into ``out``: both texts are rendered first, then
    both files are renamed into place together (a failure leaves neither new file)."""
    from .card_render import render_card_markdown

    out = Path(out)
    texts = {"card.json": dumps_strict(card, indent=1, default=str) + "\n", "card.md": render_card_markdown(card)}
    paths = {k: out / k for k in texts}
    with atomic_path(paths["card.json"]) as tj, atomic_path(paths["card.md"]) as tm:
        tj.write_text(texts["card.json"], encoding="utf-8")
        tm.write_text(texts["card.md"], encoding="utf-8")
    return paths


def evaluate(model: Any, data: Any = None, protocol: str | Protocol = DEFAULT_PROTOCOL,
             out: str | os.PathLike | None = None, name: str | None = None, seed: int = 0, *,
             attack_model: Any = None, attack_model_note: str | None = None,
             device: Any = None, certify: bool | Mapping[str, Any] = False,
             physical: bool | Iterable[str] = False) -> dict[str, Any]:
    """Measure ``model`` under a versioned protocol and return its robustness card (a dict).

    :param model: reconstructor ``model(y, physics) -> x`` (a function or an ``nn.Module``).
    :param data: ``None`` (the protocol's data: 8 embedded test slices for ``"v1"`` to ``"v3"``), an
        ``(x, y, physics)`` batch or a list of them (``x`` may be ``None``: no ground truth).
    :param protocol: ``"v3"`` (default: the adaptive search, unreliable rows flagged), ``"v2"``,
        ``"v1"`` or a :class:`~kspace_attacks.testing.protocol.Protocol`.
    :param out: folder for ``card.json`` and ``card.md`` (nothing is written if ``None``).
    :param str name: the model's name on the card (default: its class or function name).
    :param int seed: seed of the attacks and the noise control (the protocol's reference: 0).
    :param attack_model: craft the perturbations on this model instead (for models too slow
        or too stochastic to differentiate, e.g. a diffusion sampler with fewer steps); the
        card records it and says the numbers are a lower bound on the white-box worst case.
    :param str attack_model_note: what ``attack_model`` is, in words (recorded on the card).
    :param device: run on this device (moves an ``nn.Module`` model and the data).
    :param certify: ``True`` (or a dict of :func:`kspace_attacks.certify.certify` arguments over
        :data:`CERTIFY_DEFAULTS`) adds a "certified" section: the certified radius of the
        *smoothed* model next to the attack's lower bound on it, per eps (an upper bound for
        the smoothed model only; nothing is certified about ``model`` itself).
    :param physical: ``True`` (every physical threat that applies to the data) or a list of
        names (``"motion"``, ``"phase"``, ``"spikes"``, ``"coil_maps"``, ``"lost_lines"``) adds a
        "physical" section: the protocol's attack within each scanner imperfection at its three
        documented budgets, against a random imperfection of the same size
        (:mod:`kspace_attacks.testing.card_physical`).
    :raises CardError: when the model fails on the data (its name and the error in the
        message); no card file is written then.
    """
    card, _ = measure_card(model, data, protocol, name, seed, attack_model, attack_model_note, device, certify,
                           physical)
    if out is not None:
        write_card(card, out)
    return card
