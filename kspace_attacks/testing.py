"""Robustness assertions for test suites: ``assert_robust`` and ``measure_robustness``.

A user's test attacks their own reconstructor on a batch ``(x, y, physics)`` (what
:func:`kspace_attacks.data.demo_batch` returns) and fails with a readable message when a
worst-case k-space perturbation of relative size ``eps`` degrades the reconstruction by more
than allowed::

    from kspace_attacks.data import demo_batch
    from kspace_attacks.testing import assert_robust

    def test_my_model_is_robust():
        assert_robust(MyModel(), demo_batch(2), eps=0.02, max_delta_ssim=0.05)

Definitions (per sample, on magnitude images, ``normalization="minmax"`` by default):

- ``Delta SSIM = SSIM(f(y), x) - SSIM(f(y + delta), x)``: the SSIM lost to the attack against
  the ground truth ``x`` (positive = degradation); ``Delta PSNR`` likewise in dB. Without a
  ground truth (``x`` is ``None``) the clean reconstruction is the reference:
  ``Delta SSIM = 1 - SSIM(f(y + delta), f(y))`` and ``Delta PSNR`` is not defined (NaN).
- The reported value is the worst sample of the batch. The same numbers for equal-norm Gaussian
  noise (``noise_delta_ssim``) tell a real instability from plain noise sensitivity.

Under pytest with the plugin (:mod:`kspace_attacks.pytest_plugin`), the command-line options
``--kspace-eps``, ``--kspace-steps`` and ``--kspace-device`` override the attack settings of
every call (so one suite runs quickly in CI and strongly before a release), a
``@pytest.mark.kspace_robustness(...)`` marker sets a test's defaults, every call is recorded
in the session's robustness table, and failure artifacts go to ``--kspace-artifacts``.
Outside pytest, artifacts go to ``./.kspace-attacks/artifacts`` unless ``artifacts_dir`` says
otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import metrics as _metrics
from ._checks import check_image, check_kspace, check_nonneg_float, check_positive_int, describe
from .attacks import FGM, PGD, Attack, GaussianNoise, ProjectedAdam
from .result import AttackResult
from .threat import KSpaceL2, _check_eps

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_STEPS",
    "DEFAULT_MAX_DELTA_SSIM",
    "BoundAttack",
    "RobustnessError",
    "RobustnessMeasurement",
    "RobustnessRecorder",
    "Settings",
    "assert_robust",
    "build_attack",
    "current_settings",
    "measure_robustness",
    "use_settings",
]

#: Built-in defaults (overridden by explicit arguments, markers and command-line options).
DEFAULT_EPS = 0.02
DEFAULT_STEPS = 10
DEFAULT_MAX_DELTA_SSIM = 0.05
#: Where failure artifacts go outside pytest (relative to the working directory).
DEFAULT_ARTIFACTS_DIR = Path(".kspace-attacks") / "artifacts"

METHODS = ("pgd", "adam", "fgm", "noise")


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


@dataclass(frozen=True)
class RobustnessMeasurement:
    """Numbers measured by :func:`measure_robustness` (worst sample unless named ``_mean``).

    :param str model: name of the model.
    :param float eps: relative l2 budget, ``||delta|| <= eps ||y||`` per sample.
    :param int steps: gradient steps of the attack (0 for noise).
    :param str attack: ``repr`` of the attack that was run.
    :param int n_samples: batch size.
    :param str reference: ``"ground truth"`` or ``"clean reconstruction"``.
    :param float delta_ssim: SSIM lost to the attack, worst sample (positive = degradation).
    :param float delta_psnr: PSNR lost in dB, worst sample (NaN without ground truth).
    :param float delta_ssim_mean: mean over samples.
    :param float delta_psnr_mean: mean over samples.
    :param float noise_delta_ssim: the same for equal-norm Gaussian noise, worst sample.
    :param float noise_delta_psnr: likewise in dB.
    :param int worst_index: index of the sample with the largest ``delta_ssim``.
    :param float ssim_clean: SSIM of the clean reconstruction of the worst sample.
    :param float ssim_adv: SSIM of its attacked reconstruction.
    :param float psnr_clean: PSNR of the clean reconstruction of the worst sample.
    :param float psnr_adv: PSNR of its attacked reconstruction.
    :param float ratio: largest ``||delta|| / ||y||`` in the batch (``<= eps``).
    :param float seconds: wall-clock time of the measurement.
    :param str device: device the attack ran on.
    :param result: the :class:`~kspace_attacks.AttackResult` (not part of :meth:`as_dict`).
    """

    model: str
    eps: float
    steps: int
    attack: str
    n_samples: int
    reference: str
    delta_ssim: float
    delta_psnr: float
    delta_ssim_mean: float
    delta_psnr_mean: float
    noise_delta_ssim: float
    noise_delta_psnr: float
    worst_index: int
    ssim_clean: float
    ssim_adv: float
    psnr_clean: float
    psnr_adv: float
    ratio: float
    seconds: float
    device: str
    result: AttackResult | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The numbers (and names) as a JSON-friendly dict, without the attack result."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "result"}


# ------------------------------------------------------------------------------ session state


@dataclass
class Settings:
    """Overrides that apply to every :func:`assert_robust` / :func:`measure_robustness` call
    while active (the pytest plugin activates one per session).

    ``eps``, ``steps`` and ``device`` override explicit arguments (they scale a whole suite);
    ``marker`` holds the current test's ``@pytest.mark.kspace_robustness`` keywords, which
    only fill in arguments the call leaves out.
    """

    eps: float | None = None
    steps: int | None = None
    device: str | None = None
    artifacts_dir: Path | None = None
    artifacts_root: Callable[[], Path] | None = None
    recorder: "RobustnessRecorder | None" = None
    test_id: str | None = None
    marker: dict[str, Any] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    def resolve_artifacts_dir(self) -> Path:
        if self.artifacts_dir is not None:
            return Path(self.artifacts_dir)
        if self.artifacts_root is not None:
            return Path(self.artifacts_root()) / "kspace-artifacts"
        return DEFAULT_ARTIFACTS_DIR


_STACK: list[Settings] = []
_LOCK = threading.Lock()


def current_settings() -> Settings:
    """The active :class:`Settings` (empty defaults when none is active)."""
    return _STACK[-1] if _STACK else Settings()


@contextlib.contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Activate ``settings`` for the duration of the ``with`` block (nestable)."""
    if not isinstance(settings, Settings):
        raise TypeError(f"settings: expected a kspace_attacks.testing.Settings, got {describe(settings)}")
    with _LOCK:
        _STACK.append(settings)
    try:
        yield settings
    finally:
        with _LOCK:
            if settings in _STACK:
                # remove this exact object (identity), even if it is not on top
                for i in range(len(_STACK) - 1, -1, -1):
                    if _STACK[i] is settings:
                        del _STACK[i]
                        break


# ------------------------------------------------------------------------------ recorder


class RobustnessRecorder:
    """Collects robustness numbers of a test session; prints a table and writes JSON.

    Every :func:`assert_robust` call records a row (test id, model, settings, numbers, limit,
    ``passed``, artifact paths). Use :meth:`measure` to record without asserting.
    """

    COLUMNS = (
        ("test", "test", "<"),
        ("model", "model", "<"),
        ("eps", "eps", ">"),
        ("steps", "steps", ">"),
        ("delta_ssim", "dSSIM", ">"),
        ("delta_psnr", "dPSNR", ">"),
        ("noise_delta_ssim", "noise dSSIM", ">"),
        ("max_delta_ssim", "limit", ">"),
        ("status", "status", "<"),
    )

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def record(self, measurement: RobustnessMeasurement, test: str | None = None,
               **extra: Any) -> dict[str, Any]:
        """Append a row for ``measurement`` (plus ``extra`` columns) and return it."""
        if not isinstance(measurement, RobustnessMeasurement):
            raise TypeError(
                f"measurement: expected a RobustnessMeasurement, got {describe(measurement)}"
            )
        row = {"test": test if test is not None else current_settings().test_id}
        row.update(measurement.as_dict())
        row.update(extra)
        if "passed" in row and "status" not in row:
            row["status"] = "ok" if row["passed"] else "FAILED"
        self.rows.append(row)
        return row

    def measure(self, model: Any, batch: Any, **kwargs: Any) -> RobustnessMeasurement:
        """:func:`measure_robustness` and record the result (no assertion)."""
        m = measure_robustness(model, batch, **kwargs)
        self.record(m, status="measured")
        return m

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> str:
        """The rows as a fixed-width text table."""
        def fmt(key: str, v: Any) -> str:
            if v is None:
                return "-"
            if isinstance(v, float):
                if math.isnan(v):
                    return "nan"
                return f"{v:.3g}" if key == "eps" else f"{v:.4f}" if "ssim" in key else f"{v:.2f}"
            text = str(v)
            return text if len(text) <= 60 else "..." + text[-57:]

        cells = [[fmt(k, r.get(k)) for k, _, _ in self.COLUMNS] for r in self.rows]
        heads = [h for _, h, _ in self.COLUMNS]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]

        def line(values: list[str]) -> str:
            out = []
            for (_, _, align), v, w in zip(self.COLUMNS, values, widths, strict=True):
                out.append(v.ljust(w) if align == "<" else v.rjust(w))
            return "  ".join(out).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(heads), rule] + [line(c) for c in cells])

    def to_json(self, path: str | os.PathLike, **meta: Any) -> Path:
        """Write ``{"kspace_attacks_version", **meta, "results": rows}`` to ``path`` atomically."""
        import json

        from .report import atomic_write_text

        try:
            from . import __version__ as version
        except ImportError:  # pragma: no cover
            version = "unknown"

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None  # JSON has no NaN / Infinity
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        doc = {"kspace_attacks_version": version, **meta, "results": [clean(r) for r in self.rows]}
        return atomic_write_text(path, json.dumps(clean(doc), indent=2) + "\n")


# ------------------------------------------------------------------------------ attacks


def _with_steps(attack: Attack, steps: int) -> Attack:
    """A copy of ``attack`` with ``steps`` iterations (PGD: steps and default step size;
    ProjectedAdam: max_steps; one-shot attacks unchanged)."""
    new = copy.copy(attack)
    if isinstance(attack, PGD):
        if math.isclose(attack.step_size, PGD.default_step_size(attack.steps)):
            new.step_size = PGD.default_step_size(steps)
        new.steps = steps
    elif isinstance(attack, ProjectedAdam):
        new.max_steps = steps
    return new


def _with_eps(attack: Attack, eps: float) -> Attack:
    new = copy.copy(attack)
    new.threat = copy.copy(attack.threat)
    new.threat.eps = _check_eps(eps)
    return new


def build_attack(eps: float | None = DEFAULT_EPS, steps: int | None = DEFAULT_STEPS,
                 method: str | Attack = "pgd", seed: int = 0, **kwargs: Any) -> Attack:
    """An attack with budget ``eps`` (relative l2, measured k-space) and ``steps`` iterations.

    :param float eps: relative budget, ``||delta|| <= eps ||y||`` per sample; ``None`` keeps a
        template's own budget (else 0.02).
    :param int steps: gradient evaluations (PGD ``steps``, ProjectedAdam ``max_steps``);
        ``None`` keeps a template's own (else 10).
    :param method: ``"pgd"`` (default), ``"adam"`` (the study's runner), ``"fgm"``, ``"noise"``
        (equal-norm baseline), or an :class:`~kspace_attacks.Attack` template (a copy gets
        the budget and step count; its seed is kept).
    :param int seed: seed of the random start / noise.
    :param kwargs: more options of the attack class (e.g. ``restarts=2``) or, for the threat
        model, ``per``/``support``/``relative``.

    :Example:

        >>> from kspace_attacks.testing import build_attack
        >>> atk = build_attack(0.02, 5)
        >>> atk.threat.eps, atk.steps
        (0.02, 5)
    """
    eps = None if eps is None else check_nonneg_float("eps", eps)
    steps = None if steps is None else check_positive_int("steps", steps)
    if isinstance(method, Attack):
        if kwargs:
            raise TypeError(f"kwargs: not accepted with an Attack template, got {sorted(kwargs)}")
        atk = method if eps is None else _with_eps(method, eps)
        return atk if steps is None else _with_steps(atk, steps)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)} or an Attack, got {method!r}")
    eps = DEFAULT_EPS if eps is None else eps
    steps = DEFAULT_STEPS if steps is None else steps
    threat_kw = {k: kwargs.pop(k) for k in ("per", "support", "relative") if k in kwargs}
    threat = KSpaceL2(eps=eps, **threat_kw)
    if method == "pgd":
        return PGD(threat, steps=steps, seed=seed, **kwargs)
    if method == "adam":
        return ProjectedAdam(threat, max_steps=steps, seed=seed, **kwargs)
    if method == "fgm":
        return FGM(threat, seed=seed, **kwargs)
    return GaussianNoise(threat, seed=seed, **kwargs)


def _attack_steps(attack: Attack) -> int:
    if isinstance(attack, PGD):
        return attack.steps * attack.restarts
    if isinstance(attack, ProjectedAdam):
        return attack.max_steps
    if isinstance(attack, FGM):
        return 1
    return 0


class BoundAttack:
    """An attack bound to a model and a physics: ``bound(y, x_true=None, target=None)``.

    Built by the ``kspace_attack`` pytest fixture; ``.attack``, ``.model``, ``.physics`` are
    the parts.
    """

    def __init__(self, attack: Attack, model: Any, physics: Any, device: str | None = None):
        if not isinstance(attack, Attack):
            raise TypeError(f"attack: expected a kspace_attacks.Attack, got {describe(attack)}")
        if not callable(model):
            raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
        self.attack, self.model, self.physics, self.device = attack, model, physics, device
        if device is not None:
            _to_device(model, device)
            _to_device(physics, device)

    def __call__(self, y: Tensor, x_true: Tensor | None = None,
                 target: Tensor | None = None) -> AttackResult:
        y = check_kspace("y", y)
        if self.device is not None:
            y = y.to(self.device)
            x_true = None if x_true is None else x_true.to(self.device)
            target = None if target is None else target.to(self.device)
        return self.attack(self.model, y, self.physics, x_true=x_true, target=target)

    def __repr__(self) -> str:
        return f"BoundAttack({self.attack!r}, model={_model_name(self.model)}, device={self.device})"


# ------------------------------------------------------------------------------ measuring


def _model_name(model: Any) -> str:
    if isinstance(model, torch.nn.Module):
        return type(model).__name__
    return getattr(model, "__name__", None) or type(model).__name__


def _to_device(obj: Any, device: str | torch.device) -> Any:
    if isinstance(obj, torch.nn.Module):
        obj.to(device)
    return obj


def _check_batch(batch: Any) -> tuple[Tensor | None, Tensor, Any]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 3):
        raise TypeError(
            f"batch: expected an (x, y, physics) tuple as kspace_attacks.data.demo_batch returns, "
            f"got {describe(batch)}"
        )
    x, y, physics = batch
    y = check_kspace("batch[1] (y)", y)
    if x is not None:
        x = check_image("batch[0] (x)", x)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"batch[0] (x): expected {y.shape[0]} images to match y, got shape {tuple(x.shape)}"
            )
    if not (callable(getattr(physics, "A", None)) and callable(getattr(physics, "A_adjoint", None))):
        raise TypeError(
            f"batch[2] (physics): expected a deepinv physics with A and A_adjoint (e.g. "
            f"deepinv.physics.MRI), got {describe(physics)}"
        )
    return x, y, physics


def _resolve(name: str, value: Any, default: Any, settings: Settings) -> tuple[Any, str]:
    """Value of a setting and where it came from: option > argument > marker > default."""
    override = getattr(settings, name, None)
    if override is not None:
        return override, settings.source.get(name, "command line")
    if value is not None:
        return value, "argument"
    if name in settings.marker:
        return settings.marker[name], "marker"
    return default, "default"


def _drops(x_adv: Tensor, x_clean: Tensor, x_true: Tensor | None,
           normalization: str) -> dict[str, Tensor]:
    if x_true is not None:
        s_clean = _metrics.ssim(x_clean, x_true, normalization)
        s_adv = _metrics.ssim(x_adv, x_true, normalization)
        p_clean = _metrics.psnr(x_clean, x_true, normalization)
        p_adv = _metrics.psnr(x_adv, x_true, normalization)
    else:
        s_clean = torch.ones(x_adv.shape[0], device=x_adv.device)
        s_adv = _metrics.ssim(x_adv, x_clean, normalization)
        p_clean = torch.full_like(s_clean, float("nan"))
        p_adv = _metrics.psnr(x_adv, x_clean, normalization)
    return {
        "ssim_clean": s_clean, "ssim_adv": s_adv, "psnr_clean": p_clean, "psnr_adv": p_adv,
        "delta_ssim": s_clean - s_adv, "delta_psnr": p_clean - p_adv,
    }


def _nanmax(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.max()) if t.numel() else float("nan")


def _nanmean(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.mean()) if t.numel() else float("nan")


def measure_robustness(
    model: Any,
    batch: Any,
    eps: float | None = None,
    steps: int | None = None,
    attack: str | Attack | None = None,
    device: str | torch.device | None = None,
    normalization: str = "minmax",
    seed: int | None = None,
    name: str | None = None,
) -> RobustnessMeasurement:
    """Attack ``model`` on ``batch`` and measure the worst-case quality loss.

    :param model: reconstructor ``model(y, physics) -> x`` (``(B, 1|2, H, W)``).
    :param batch: ``(x, y, physics)`` as :func:`kspace_attacks.data.demo_batch` returns;
        ``x`` may be ``None`` (then the clean reconstruction is the reference).
    :param float eps: relative l2 budget (default 0.02; ``--kspace-eps`` overrides).
    :param int steps: attack iterations (default 10; ``--kspace-steps`` overrides).
    :param attack: ``"pgd"`` (default), ``"adam"``, ``"fgm"``, ``"noise"`` or an
        :class:`~kspace_attacks.Attack` template (a copy gets ``eps`` / ``steps`` when they
        are given; otherwise its own are kept).
    :param device: run on this device (moves ``model`` and the physics there in place);
        ``--kspace-device`` overrides.
    :param str normalization: metric normalisation (:mod:`kspace_attacks.metrics`).
    :param int seed: seed of the attack's random start and of the noise baseline (default 0).
    :param str name: model name used in messages (default: its class name).
    :return: a :class:`RobustnessMeasurement`.

    :Example:

        >>> from kspace_attacks.data import demo_batch
        >>> from kspace_attacks.testing import measure_robustness
        >>> zero_filled = lambda y, physics: physics.A_adjoint(y)
        >>> m = measure_robustness(zero_filled, demo_batch(1), eps=0.02, steps=2)
        >>> m.ratio <= 0.02 + 1e-6, m.steps
        (True, 2)
    """
    start = time.perf_counter()
    if not callable(model):
        raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
    x, y, physics = _check_batch(batch)
    settings = current_settings()
    attack, _ = _resolve("attack", attack, "pgd", settings)
    template = isinstance(attack, Attack)
    # An Attack template keeps its own budget / steps unless they are set explicitly.
    eps, _ = _resolve("eps", eps, None if template else DEFAULT_EPS, settings)
    steps, _ = _resolve("steps", steps, None if template else DEFAULT_STEPS, settings)
    device, _ = _resolve("device", device, None, settings)
    seed, _ = _resolve("seed", seed, 0, settings)
    if normalization not in _metrics.NORMALIZATIONS:
        raise ValueError(
            f"normalization: expected one of {list(_metrics.NORMALIZATIONS)}, got {normalization!r}"
        )
    atk = build_attack(eps, steps, attack, seed=seed)
    if device is not None:
        _to_device(model, device)
        _to_device(physics, device)
        y = y.to(device)
        x = None if x is None else x.to(device)
    res = atk(model, y, physics)
    noise_atk = GaussianNoise(atk.threat, seed=seed)
    noise = noise_atk(model, y, physics, x_clean=res.x_clean)
    d = _drops(res.x_adv, res.x_clean, x, normalization)
    dn = _drops(noise.x_adv, res.x_clean, x, normalization)
    worst = int(torch.nan_to_num(d["delta_ssim"], nan=-float("inf")).argmax())
    return RobustnessMeasurement(
        model=name or _model_name(model),
        eps=atk.threat.eps if isinstance(atk.threat.eps, float) else float(res.eps.max()),
        steps=_attack_steps(atk),
        attack=repr(atk),
        n_samples=int(y.shape[0]),
        reference="ground truth" if x is not None else "clean reconstruction",
        delta_ssim=_nanmax(d["delta_ssim"]),
        delta_psnr=_nanmax(d["delta_psnr"]),
        delta_ssim_mean=_nanmean(d["delta_ssim"]),
        delta_psnr_mean=_nanmean(d["delta_psnr"]),
        noise_delta_ssim=_nanmax(dn["delta_ssim"]),
        noise_delta_psnr=_nanmax(dn["delta_psnr"]),
        worst_index=worst,
        ssim_clean=float(d["ssim_clean"][worst]),
        ssim_adv=float(d["ssim_adv"][worst]),
        psnr_clean=float(d["psnr_clean"][worst]),
        psnr_adv=float(d["psnr_adv"][worst]),
        ratio=float(res.ratio.max()),
        seconds=time.perf_counter() - start,
        device=str(y.device),
        result=res,
    )


# ------------------------------------------------------------------------------ artifacts


_WRITTEN: set[Path] = set()


def _unique_stem(directory: Path, stem: str) -> Path:
    stem = re.sub(r"[^\w-]+", "_", stem).strip("_")[-100:] or "kspace"
    base = directory / stem
    candidate, k = base, 1
    with _LOCK:
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
    from .data import write_perturbed_kspace
    from .plots import plot_panel as _plot_panel

    res = m.result
    x, y, physics = batch
    base = _unique_stem(Path(directory), stem)
    out: dict[str, Any] = {"image": None, "perturbation": None, "errors": {}}
    i = m.worst_index
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        title = (f"{m.model}: eps={m.eps:g}, {m.steps} steps, sample {i}: "
                 f"Delta SSIM {m.ssim_clean - m.ssim_adv:.3f}")
        with warnings.catch_warnings():
            # matplotlib converts the tensors with np.array(copy=False): a DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            out["image"] = _plot_panel(
                None if x is None else x[i : i + 1].detach().cpu(),
                {m.model: res.x_clean[i : i + 1].detach().cpu()},
                {m.model: res.x_adv[i : i + 1].detach().cpu()},
                base.parent / f"{base.name}.png",
                title=title,
            ).resolve()
    except Exception as err:  # noqa: BLE001 - an artifact must not hide the real failure
        out["errors"]["image"] = f"{type(err).__name__}: {err}"
    try:
        y_clean = y.detach().to(res.y_adv.device)
        settings = {"attack": m.attack, "eps": m.eps, "steps": m.steps, "model": m.model,
                    "worst_index": i, "delta_ssim": m.delta_ssim, "delta_psnr": m.delta_psnr}
        out["perturbation"] = write_perturbed_kspace(
            base.parent / f"{base.name}.h5", y_clean.cpu(), res.y_adv.detach().cpu(),
            physics, eps=m.eps, attack_settings=settings, x_clean=res.x_clean.detach().cpu(),
        ).resolve()
    except Exception as err:  # noqa: BLE001
        out["errors"]["perturbation"] = f"{type(err).__name__}: {err}"
    return out


# ------------------------------------------------------------------------------ assertion


def _fmt_db(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.2f} dB"


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
        f"  Delta SSIM = {m.delta_ssim:.4f} (limit max_delta_ssim={lim_ssim:g}; SSIM "
        f"{m.ssim_clean:.4f} -> {m.ssim_adv:.4f} vs {ref}){mark['ssim']}"
        if lim_ssim is not None
        else f"  Delta SSIM = {m.delta_ssim:.4f} (SSIM {m.ssim_clean:.4f} -> {m.ssim_adv:.4f} vs {ref})"
    )
    psnr_detail = (f"PSNR {m.psnr_clean:.2f} -> {m.psnr_adv:.2f} dB" if not math.isnan(m.psnr_clean)
                   else f"PSNR vs clean reconstruction {m.psnr_adv:.2f} dB")
    lines.append(
        f"  Delta PSNR = {_fmt_db(m.delta_psnr)} "
        + (f"(limit max_delta_psnr={lim_psnr:g} dB; " if lim_psnr is not None else "(")
        + f"{psnr_detail}){mark['psnr']}"
    )
    lines.append(
        f"  equal-norm Gaussian noise: Delta SSIM = {m.noise_delta_ssim:.4f}, "
        f"Delta PSNR = {_fmt_db(m.noise_delta_psnr)}"
    )
    src = ", ".join(f"{k} from {v}" for k, v in sources.items() if v not in ("default", "argument"))
    lines.append(
        f"  attack settings: eps={m.eps:g}, steps={m.steps}, device={m.device}"
        + (f" ({src})" if src else "")
        + f"; max ||delta||/||y|| = {m.ratio:.4g}; {m.seconds:.1f} s"
    )
    lines.append(f"  attack: {m.attack}")
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
    batch: Any,
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
) -> RobustnessMeasurement:
    """Fail with :class:`RobustnessError` if a worst-case k-space perturbation of relative
    size ``eps`` costs ``model`` more than ``max_delta_ssim`` SSIM (or ``max_delta_psnr`` dB).

    The message shows the measured Delta SSIM / PSNR (and those of equal-norm noise), the
    attack settings and where the worst-case image panel (PNG) and the perturbed k-space
    (fastMRI ``.h5``) were saved. Returns the :class:`RobustnessMeasurement` when robust.

    :param model: reconstructor ``model(y, physics) -> x``.
    :param batch: ``(x, y, physics)``, e.g. ``kspace_attacks.data.demo_batch(2)``.
    :param float eps: relative l2 budget (default 0.02).
    :param float max_delta_ssim: largest allowed SSIM loss, worst sample (default 0.05).
    :param float max_delta_psnr: largest allowed PSNR loss in dB (default: not checked).
    :param int steps: attack iterations (default 10).
    :param attack: ``"pgd"``, ``"adam"``, ``"fgm"``, ``"noise"`` or an Attack template.
    :param device: device to run on (moves model and physics there).
    :param str normalization: metric normalisation.
    :param int seed: attack seed.
    :param str name: model name in messages.
    :param artifacts_dir: where failure artifacts go (default: ``--kspace-artifacts``, pytest's
        temporary directory, or ``./.kspace-attacks/artifacts`` outside pytest).

    Precedence of settings: command-line option > argument > ``kspace_robustness`` marker >
    default.

    :Example:

        >>> from kspace_attacks.data import demo_batch
        >>> from kspace_attacks.testing import assert_robust
        >>> zero_filled = lambda y, physics: physics.A_adjoint(y)
        >>> m = assert_robust(zero_filled, demo_batch(1), eps=0.01, max_delta_ssim=0.5, steps=2)
        >>> m.delta_ssim < 0.5
        True
    """
    __tracebackhide__ = True  # pytest shows the user's call, not this function's body
    settings = current_settings()
    limit, _ = _resolve("max_delta_ssim", max_delta_ssim, DEFAULT_MAX_DELTA_SSIM, settings)
    limit = check_nonneg_float("max_delta_ssim", limit)
    psnr_limit, _ = _resolve("max_delta_psnr", max_delta_psnr, None, settings)
    if psnr_limit is not None:
        psnr_limit = check_nonneg_float("max_delta_psnr", psnr_limit)
    sources = {k: _resolve(k, v, None, settings)[1]
               for k, v in (("eps", eps), ("steps", steps), ("device", device))}
    x, y, physics = _check_batch(batch)
    m = measure_robustness(model, (x, y, physics), eps=eps, steps=steps, attack=attack,
                           device=device, normalization=normalization, seed=seed, name=name)
    failed = []
    if not m.delta_ssim <= limit:  # NaN fails too
        failed.append("ssim")
    if psnr_limit is not None and not (m.delta_psnr <= psnr_limit):
        failed.append("psnr")
    artifacts: dict[str, Any] = {}
    if failed:
        directory = Path(artifacts_dir) if artifacts_dir is not None else settings.resolve_artifacts_dir()
        stem = f"{settings.test_id or 'assert_robust'}-{m.model}"
        artifacts = save_artifacts(m, (x, y, physics), directory, stem)
    if settings.recorder is not None:
        settings.recorder.record(
            m, max_delta_ssim=limit, max_delta_psnr=psnr_limit, passed=not failed,
            image=artifacts.get("image"), perturbation=artifacts.get("perturbation"),
        )
    if failed:
        limits = {"max_delta_ssim": limit, "max_delta_psnr": psnr_limit}
        raise RobustnessError(_message(m, limits, failed, sources, artifacts), m, artifacts)
    return m

