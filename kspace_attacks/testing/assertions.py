"""``assert_robust``: fail a test with a readable message and saved failure artifacts when a
worst-case perturbation costs a model more quality than allowed."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .._checks import check_nonneg_float
from ..attacks import Attack
from .measure import RobustnessMeasurement, check_batch, measure_robustness, worst_sample
from .settings import DEFAULT_MAX_DELTA_SSIM, LOCK, current_settings, resolve

__all__ = ["RobustnessError", "assert_robust", "save_artifacts"]


class RobustnessError(AssertionError):
    """Raised by :func:`assert_robust` when a model is not robust; carries the measurement.

    :ivar measurement: the :class:`RobustnessMeasurement` that failed.
    :ivar artifacts: ``{"image": Path | None, "perturbation": Path | None}``.
    """

    def __init__(self, message: str, measurement: "RobustnessMeasurement",
                 artifacts: Mapping[str, Path | None]):
        super().__init__(message)
        self.measurement = measurement
        self.artifacts = dict(artifacts)


_WRITTEN: set[Path] = set()


def _unique_stem(directory: Path, stem: str) -> Path:
    stem = re.sub(r"[^\w-]+", "_", stem).strip("_")[-100:] or "kspace"
    base = directory / stem
    candidate, k = base, 1
    with LOCK:
        while candidate in _WRITTEN:
            k += 1
            candidate = directory / f"{stem}-{k}"
        _WRITTEN.add(candidate)
    return candidate


def save_artifacts(m: RobustnessMeasurement, batch: Any, directory: str | os.PathLike,
                   stem: str) -> dict[str, Path | None]:
    """Save the worst sample's image panel (PNG) and the perturbed batch (fastMRI ``.h5``).

    Never raises for an artifact that cannot be written: its path is ``None`` and the reason
    is in ``"errors"``.
    """
    from ..data import write_perturbed_kspace
    from ..figures import plot_panel as _plot_panel

    x, y, physics = batch
    base = _unique_stem(Path(directory), stem)
    out: dict[str, Any] = {"image": None, "perturbation": None, "errors": {}}
    i = m.worst_index
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        title = (f"{m.model}: eps={m.eps:g}, {m.steps} steps, sample {i}: "
                 f"Delta SSIM {m.delta_ssim:.3f}")
        with warnings.catch_warnings():
            # matplotlib converts the tensors with np.array(copy=False): a DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            out["image"] = _plot_panel(
                None if x is None else x[i : i + 1].detach().cpu(),
                {m.model: m.x_clean[i : i + 1].detach().cpu()},
                {m.model: m.x_adv[i : i + 1].detach().cpu()},
                base.parent / f"{base.name}.png",
                title=title,
            ).resolve()
    except Exception as err:  # noqa: BLE001 - an artifact must not hide the real failure
        out["errors"]["image"] = f"{type(err).__name__}: {err}"
    try:
        y_clean = y.detach().to(m.y_adv.device)
        settings = {"attack": m.attack, "eps": m.eps, "steps": m.steps, "model": m.model,
                    "worst_index": i, "delta_ssim": m.delta_ssim, "delta_psnr": m.delta_psnr}
        out["perturbation"] = write_perturbed_kspace(
            base.parent / f"{base.name}.h5", y_clean.cpu(), m.y_adv.detach().cpu(),
            physics, eps=m.eps, attack_settings=settings, x_clean=m.x_clean.detach().cpu(),
        ).resolve()
    except Exception as err:  # noqa: BLE001
        out["errors"]["perturbation"] = f"{type(err).__name__}: {err}"
    return out


def _fmt_db(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.2f} dB"


def _message(m: RobustnessMeasurement, limits: Mapping[str, float | None], failed: list[str],
             sources: Mapping[str, str], artifacts: Mapping[str, Any]) -> str:
    ref = m.reference
    lines = [
        f"{m.model} is not robust to k-space perturbations of relative size eps={m.eps:g} "
        f"(||delta||_2 <= {m.eps:g} ||y||_2, worst of {m.n_samples} sample(s): sample "
        f"{m.worst_index})",
    ]
    mark = {k: "  <-- exceeds the limit" if k in failed else "" for k in ("ssim", "psnr")}
    lim_ssim = limits.get("max_delta_ssim")
    lim_psnr = limits.get("max_delta_psnr")
    lines.append(
        f"  Delta SSIM = {m.delta_ssim:+.4f} (limit >= -{lim_ssim:g}, max_delta_ssim={lim_ssim:g}; SSIM "
        f"{m.ssim_clean:.4f} -> {m.ssim_adv:.4f} vs {ref}){mark['ssim']}"
        if lim_ssim is not None
        else f"  Delta SSIM = {m.delta_ssim:+.4f} (SSIM {m.ssim_clean:.4f} -> {m.ssim_adv:.4f} vs {ref})"
    )
    psnr_detail = (f"PSNR {m.psnr_clean:.2f} -> {m.psnr_adv:.2f} dB" if not math.isnan(m.psnr_clean)
                   else f"PSNR vs clean reconstruction {m.psnr_adv:.2f} dB")
    lines.append(
        f"  Delta PSNR = {_fmt_db(m.delta_psnr)} "
        + (f"(limit >= -{lim_psnr:g} dB, max_delta_psnr={lim_psnr:g}; " if lim_psnr is not None else "(")
        + f"{psnr_detail}){mark['psnr']}"
    )
    lines.append(
        f"  equal-norm Gaussian noise: Delta SSIM = {m.noise_delta_ssim:+.4f}, "
        f"Delta PSNR = {_fmt_db(m.noise_delta_psnr)}"
    )
    src = ", ".join(f"{k} from {v}" for k, v in sources.items() if v not in ("default", "argument"))
    lines.append(
        f"  attack settings: eps={m.eps:g}, steps={m.steps}, device={m.device}"
        + (f" ({src})" if src else "")
        + f"; max ||delta||/||y|| = {m.ratio:.4g}; {m.seconds:.1f} s"
    )
    lines.append(f"  attack: {m.attack}")
    if m.n_starts > 1:
        lines.append(f"  restart spread: {m.restart_spread:.3f} over {m.n_starts} starts "
                     "((best - median) / best, worst sample; 0 = every start found the same worst case)")
    if m.unreliable:
        lines.append(f"  UNRELIABLE: the search did not settle on {m.unreliable} of {m.n_samples} sample(s): no two "
                     "independent runs agreed on its worst case within the budget cap (raise max_budget)")
    for key, label in (("image", "worst-case image (PNG)"), ("perturbation", "perturbation (.h5)")):
        path = artifacts.get(key)
        if path is not None:
            lines.append(f"  {label}: {path}")
        elif key in artifacts.get("errors", {}):
            lines.append(f"  {label}: not saved ({artifacts['errors'][key]})")
    if artifacts.get("perturbation") is not None:
        lines.append("    (re-load with kspace_attacks.data.read_perturbed_kspace(path): "
                     ".y_adv, .y_clean, .physics())")
    return "\n".join(lines)


def assert_robust(
    model: Any,
    batch: Any = None,
    eps: float | None = None,
    max_delta_ssim: float | None = None,
    *,
    max_delta_psnr: float | None = None,
    steps: int | None = None,
    attack: str | Attack | None = None,
    device: str | torch.device | None = None,
    normalization: str = "minmax",
    seed: int | None = None,
    name: str | None = None,
    artifacts_dir: str | os.PathLike | None = None,
    protocol: Any = None,
    threat: Any = None,
) -> RobustnessMeasurement:
    """Fail with :class:`RobustnessError` if a worst-case k-space perturbation of relative
    size ``eps`` costs ``model`` more than ``max_delta_ssim`` SSIM (or ``max_delta_psnr`` dB).

    The message shows the worst Delta SSIM / PSNR (and those of equal-norm noise), the
    attack settings and where the worst-case image panel (PNG) and the perturbed k-space
    (fastMRI ``.h5``) were saved. Returns the :class:`RobustnessMeasurement` when robust.

    :param model: reconstructor ``model(y, physics) -> x``.
    :param batch: ``(x, y, physics)``, e.g. ``kspace_attacks.data.demo_batch(2)``.
    :param float eps: relative l2 budget (default 0.02).
    :param float max_delta_ssim: largest allowed SSIM loss, worst sample (default 0.05).
    :param float max_delta_psnr: largest allowed PSNR loss in dB (default: not checked).
    :param int steps: attack iterations (default 10).
    :param attack: ``"apgd"`` (default), ``"pgd"``, ``"adam"``, ``"fgm"``, ``"noise"`` or an Attack template.
    :param device: device to run on (moves model and physics there).
    :param str normalization: metric normalisation.
    :param int seed: attack seed.
    :param str name: model name in messages.
    :param artifacts_dir: where failure artifacts go (default: ``--kspace-artifacts``, pytest's
        temporary directory, or ``./.kspace-attacks/artifacts`` outside pytest).
    :param protocol: ``"v1"`` (or a :class:`~kspace_attacks.testing.protocol.Protocol`):
        measure with the protocol's attack, objectives and budgets instead (``eps``, ``steps``
        and ``attack`` must then be left out, and ``--kspace-eps`` / ``--kspace-steps`` do not
        apply); ``batch=None`` uses the protocol's data. The limits apply to the worst budget's
        worst slice (the worse objective per slice), the session's robustness table gets the
        robustness card (``--kspace-report`` writes it).
    :param threat: the threat model (:func:`~kspace_attacks.testing.build_attack`): e.g.
        ``"motion"`` with ``eps`` in mm per shot; the noise control is then a random
        imperfection of the same size.

    Precedence of settings: command-line option > argument > ``kspace_robustness`` marker >
    default.

    :Example:

        >>> from kspace_attacks.data import demo_batch
        >>> from kspace_attacks.testing import assert_robust
        >>> zero_filled = lambda y, physics: physics.A_adjoint(y)
        >>> m = assert_robust(zero_filled, demo_batch(1), eps=0.01, max_delta_ssim=0.5, steps=2)
        >>> m.delta_ssim > -0.5
        True
    """
    __tracebackhide__ = True  # pytest shows the user's call, not this function's body
    settings = current_settings()
    limits = _limits(max_delta_ssim, max_delta_psnr, settings)
    protocol, _ = resolve("protocol", protocol, None, settings)
    if protocol is not None:
        return _assert_protocol(model, batch, protocol, limits,
                                dict(eps=eps, steps=steps, attack=attack, device=device, seed=seed,
                                     name=name, artifacts_dir=artifacts_dir, threat=threat))
    if batch is None:
        raise TypeError("batch: expected an (x, y, physics) batch (e.g. kspace_attacks.data.demo_batch(2)); "
                        "only a protocol (protocol='v1') brings its own data")
    sources = {k: resolve(k, v, None, settings)[1]
               for k, v in (("eps", eps), ("steps", steps), ("device", device))}
    x, y, physics = check_batch(batch)
    m = measure_robustness(model, (x, y, physics), eps=eps, steps=steps, attack=attack,
                           device=device, normalization=normalization, seed=seed, name=name, threat=threat)
    return _decide(m, limits, settings, artifacts_dir, sources, (m, (x, y, physics)))


def _limits(max_delta_ssim: float | None, max_delta_psnr: float | None, settings: Any) -> dict[str, float | None]:
    limit, _ = resolve("max_delta_ssim", max_delta_ssim, DEFAULT_MAX_DELTA_SSIM, settings)
    psnr_limit, _ = resolve("max_delta_psnr", max_delta_psnr, None, settings)
    return {"max_delta_ssim": check_nonneg_float("max_delta_ssim", limit),
            "max_delta_psnr": None if psnr_limit is None else check_nonneg_float("max_delta_psnr", psnr_limit)}


def _decide(m: RobustnessMeasurement, limits: Mapping[str, float | None], settings: Any,
            artifacts_dir: Any, sources: Mapping[str, str], artifact_source: tuple[RobustnessMeasurement, Any],
            record: Mapping[str, Any] | None = None, note: str = "") -> RobustnessMeasurement:
    """Check ``m`` against the limits: save failure artifacts (of ``artifact_source``: a
    measurement and its batch), record the row, raise :class:`RobustnessError` if it failed."""
    __tracebackhide__ = True
    failed = []
    if not m.delta_ssim >= -limits["max_delta_ssim"]:  # NaN fails too
        failed.append("ssim")
    if limits["max_delta_psnr"] is not None and not (m.delta_psnr >= -limits["max_delta_psnr"]):
        failed.append("psnr")
    artifacts: dict[str, Any] = {}
    if failed:
        directory = Path(artifacts_dir) if artifacts_dir is not None else settings.resolve_artifacts_dir()
        stem = f"{settings.test_id or 'assert_robust'}-{m.model}"
        artifacts = save_artifacts(*artifact_source, directory, stem)
    if settings.recorder is not None:
        settings.recorder.record(
            m, max_delta_ssim=limits["max_delta_ssim"], max_delta_psnr=limits["max_delta_psnr"],
            passed=not failed, image=artifacts.get("image"), perturbation=artifacts.get("perturbation"),
            **(record or {}),
        )
    if failed:
        raise RobustnessError(_message(m, limits, failed, sources, artifacts) + note, m, artifacts)
    return m


def _assert_protocol(model: Any, batch: Any, protocol: Any, limits: Mapping[str, float | None],
                     kw: Mapping[str, Any]) -> RobustnessMeasurement:
    """``assert_robust(..., protocol=...)``: the card's worst budget against the limits."""
    __tracebackhide__ = True
    from .card import measure_card

    given = sorted(k for k in ("eps", "steps", "attack", "threat") if kw.get(k) is not None)
    if given:
        raise TypeError(f"{', '.join(given)}: not accepted with protocol={getattr(protocol, 'version', protocol)!r} (the protocol "
                        f"fixes budgets, threat, attack and steps)")
    settings = current_settings()
    device, _ = resolve("device", kw["device"], None, settings)
    seed, _ = resolve("seed", kw["seed"], 0, settings)
    card, run = measure_card(model, batch, protocol, name=kw["name"], seed=seed, device=device)
    m, of_batch, worst_batch = _protocol_measurement(run, card)
    note = (f"\n  protocol {card['protocol']['version']}: worst of objectives "
            f"{', '.join(card['protocol']['objectives'])} at eps {card['summary']['worst_eps']:g} "
            f"(grid {', '.join(f'{e:g}' for e in card['eps'])})")
    return _decide(m, limits, settings, kw["artifacts_dir"], {},
                   (of_batch, worst_batch),
                   record={"protocol": card["protocol"]["version"], "card": card}, note=note)


def _protocol_measurement(run: Any, card: Mapping[str, Any]) -> tuple[RobustnessMeasurement, RobustnessMeasurement, Any]:
    """The protocol's measurement at the card's worst budget: per slice the objective with the
    smaller Delta SSIM supplies the perturbation, per metric the worse objective the numbers (the
    card's ``attack`` rows). Returns it, the same restricted to the batch holding its worst slice
    (for the failure artifacts), and that batch."""
    from .card import NOISE

    i = run.eps.index(card["summary"]["worst_eps"])
    objectives = run.protocol.objectives
    pick = run.worst_objective()[i]  # (N,) index into the objectives, per slice
    per_slice = {k: torch.stack([run.conditions[objectives[int(o)]].values[k][i, j] for j, o in enumerate(pick)])
                 for k in ("ssim_clean", "ssim_adv", "psnr_clean", "psnr_adv")}
    per_slice.update({k: v[i] for k, v in run.combined().items() if k in ("delta_ssim", "delta_psnr")})
    noise = {k: v[i] for k, v in run.conditions[NOISE].values.items()}
    tensors = {}
    for what in ("y_adv", "x_adv"):
        rows = []
        for b, (_, y, _) in enumerate(run.batches):
            first, n = sum(run.batches[c][1].shape[0] for c in range(b)), y.shape[0]
            rows += [getattr(run.conditions[objectives[int(pick[first + j])]], what)[b][i * n + j] for j in range(n)]
        tensors[what] = torch.stack(rows)
    x_clean = torch.cat([xc[i * y.shape[0]:(i + 1) * y.shape[0]] for xc, (_, y, _) in zip(run.x_clean, run.batches)])
    m = worst_sample(
        card["name"], (f"protocol {run.protocol.version}: {run.protocol.attack} ({run.protocol.steps} steps) on "
                       f"objectives {', '.join(objectives)}, the worse per slice"),
        run.protocol.steps, float(run.eps[i]), run.reference, per_slice, noise,
        max(float(run.conditions[c].values["ratio"][i].max()) for c in objectives), run.seconds,
        device=str(run.x_clean[0].device), x_clean=x_clean, **tensors)
    local, b, first = m.worst_index, 0, 0
    while local >= run.batches[b][1].shape[0]:
        first += run.batches[b][1].shape[0]
        local, b = local - run.batches[b][1].shape[0], b + 1
    rows = slice(first, first + run.batches[b][1].shape[0])
    of_batch = dataclasses.replace(m, worst_index=local, **{k: getattr(m, k)[rows] for k in ("y_adv", "x_adv", "x_clean")})
    return m, of_batch, run.batches[b]
