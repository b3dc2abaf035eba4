"""Measure a model's worst-case quality loss on a batch: the attack, the noise control and the
numbers (:class:`RobustnessMeasurement`)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from .. import metrics as _metrics
from .._checks import check_image, check_kspace, check_nonneg_float, check_physics, check_positive_int, describe
from ..attacks import ATTACKS, Attack, attack_class
from ..measurement import CONTROL, Grid, against_reference, measure
from ..result import AttackResult
from ..threat import KSpaceL2, ThreatModel
from ..threat_spec import resolve_threat
from .settings import DEFAULT_EPS, DEFAULT_STEPS, current_settings, resolve

__all__ = ["RobustnessMeasurement", "BoundAttack", "build_attack", "measure_robustness", "worst_sample", "METHODS"]

#: Attack names accepted by ``attack=`` / ``method=`` (the attacks' own names).
METHODS = tuple(ATTACKS)

#: The attack of robustness assertions and the pytest plugin unless one is named: APGD with
#: ``DEFAULT_STEPS`` (10) gradient evaluations, a check sized for a test suite. The package's
#: worst-case search (``"worst_case"``, :class:`~kspace_attacks.WorstCase`; ``steps`` is then
#: its budget) needs about 100 evaluations to be reliable (``benchmarks/bench_strength.py``);
#: robustness cards use it, adaptively (protocol ``"v3"``: up to 400 evaluations, unsettled rows flagged).
TEST_ATTACK = "apgd"


@dataclass(frozen=True)
class RobustnessMeasurement:
    """Numbers measured by :func:`measure_robustness` (worst sample unless named ``_mean``).

    :param str model: name of the model.
    :param float eps: the budget: relative l2, ``||delta|| <= eps ||y||`` per sample, or a
        physical threat's in its unit (``attack`` names the threat).
    :param int steps: gradient steps of the attack (0 for noise).
    :param str attack: ``repr`` of the attack that was run.
    :param int n_samples: batch size.
    :param str reference: ``"ground truth"`` or ``"clean reconstruction"``.
    :param float delta_ssim: ``SSIM(adv) - SSIM(clean)`` of the worst sample (the smallest; negative =
        degradation, the package's one sign for harm, as in records and cards).
    :param float delta_psnr: ``PSNR(adv) - PSNR(clean)`` in dB, worst sample (NaN without ground truth).
    :param float delta_ssim_mean: mean over samples.
    :param float delta_psnr_mean: mean over samples.
    :param float noise_delta_ssim: the same for equal-norm Gaussian noise, worst sample.
    :param float noise_delta_psnr: likewise in dB.
    :param int worst_index: index of the sample with the smallest ``delta_ssim``.
    :param float ssim_clean: SSIM of the clean reconstruction of the worst sample.
    :param float ssim_adv: SSIM of its attacked reconstruction.
    :param float psnr_clean: PSNR of the clean reconstruction of the worst sample.
    :param float psnr_adv: PSNR of its attacked reconstruction.
    :param float ratio: largest ``||delta|| / ||y||`` in the batch (``<= eps``); a physical
        threat: the largest size used, in its unit.
    :param float seconds: wall-clock time of the measurement.
    :param str device: device the attack ran on.
    :param int n_starts: starts (restarts) of the search per sample (0 for noise / FGM).
    :param float restart_spread: largest ``(best - median) / best`` over the starts of a sample
        (0: every start found the same worst case; NaN with fewer than 2 starts).
    :param int|None unreliable: samples whose worst case the (adaptive) search could not
        confirm (:attr:`AttackResult.unreliable`); ``None``: not assessed.
    :param result: the attack's :class:`~kspace_attacks.AttackResult` (``None`` when the
        measurement combines several attacks, as a protocol does; not part of :meth:`as_dict`).
    :param y_adv: the perturbed k-space of every sample (not part of :meth:`as_dict`).
    :param x_adv: their reconstructions.
    :param x_clean: the clean reconstructions.
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
    n_starts: int = 0
    restart_spread: float = float("nan")
    unreliable: int | None = None
    result: AttackResult | None = field(default=None, repr=False, compare=False)
    y_adv: Tensor | None = field(default=None, repr=False, compare=False)
    x_adv: Tensor | None = field(default=None, repr=False, compare=False)
    x_clean: Tensor | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The numbers (and names) as a JSON-friendly dict, without the tensors."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _TENSORS}


_TENSORS = ("result", "y_adv", "x_adv", "x_clean")


def worst_sample(name: str, attack: str, steps: int, eps: float, reference: str, d: dict[str, Tensor],
                 dn: dict[str, Tensor], ratio: float, seconds: float, **more: Any) -> RobustnessMeasurement:
    """A :class:`RobustnessMeasurement` from per-sample numbers: ``d`` (the attack's) and ``dn``
    (the noise control's) as :func:`~kspace_attacks.measurement.against_reference` returns them;
    the worst sample is the one with the smallest ``delta_ssim``. ``more``: the other fields."""
    worst = int(torch.nan_to_num(d["delta_ssim"], nan=float("inf")).argmin())
    return RobustnessMeasurement(
        model=name, eps=eps, steps=steps, attack=attack, n_samples=int(d["delta_ssim"].numel()),
        reference=reference, delta_ssim=_nanmin(d["delta_ssim"]), delta_psnr=_nanmin(d["delta_psnr"]),
        delta_ssim_mean=_nanmean(d["delta_ssim"]), delta_psnr_mean=_nanmean(d["delta_psnr"]),
        noise_delta_ssim=_nanmin(dn["delta_ssim"]), noise_delta_psnr=_nanmin(dn["delta_psnr"]),
        worst_index=worst, ssim_clean=float(d["ssim_clean"][worst]), ssim_adv=float(d["ssim_adv"][worst]),
        psnr_clean=float(d["psnr_clean"][worst]), psnr_adv=float(d["psnr_adv"][worst]), ratio=ratio,
        seconds=seconds, **more)


def build_attack(eps: float | None = DEFAULT_EPS, steps: int | None = DEFAULT_STEPS,
                 method: str | Attack = TEST_ATTACK, seed: int = 0,
                 threat: str | ThreatModel | None = None, **kwargs: Any) -> Attack:
    """An attack with budget ``eps`` (relative l2, measured k-space) and ``steps`` iterations.

    :param float eps: relative budget, ``||delta|| <= eps ||y||`` per sample; ``None`` keeps a
        template's own budget (else 0.02, or a physical threat's middle documented budget).
    :param threat: ``None`` (relative l2), a threat type's name (``"motion"``, ``"phase"``,
        ``"spikes"``, ``"coil_maps"``, ``"lost_lines"``, ``"KSpaceL2"``, ``"KSpaceLinf"``) or a
        :class:`~kspace_attacks.ThreatModel` (``eps``, if given, replaces its budget).
    :param int steps: gradient evaluations (PGD ``steps``, ProjectedAdam ``max_steps``);
        ``None`` keeps a template's own (else 10).
    :param method: ``"apgd"`` (default, the strongest per evaluation), ``"pgd"``, ``"adam"`` (the study's runner), ``"fgm"``, ``"noise"``
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
        >>> build_attack(None, 5, threat="motion").threat.eps  # mm per shot
        1.0
    """
    eps = None if eps is None else check_nonneg_float("eps", eps)
    steps = None if steps is None else check_positive_int("steps", steps)
    if isinstance(method, Attack):
        if kwargs:
            raise TypeError(f"kwargs: not accepted with an Attack template, got {sorted(kwargs)}")
        atk = method if threat is None else method.replace(threat=resolve_threat(threat, eps))
        atk = atk if eps is None else atk.replace(eps=eps)
        return atk if steps is None else atk.replace(steps=steps)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)} or an Attack, got {method!r}")
    steps = DEFAULT_STEPS if steps is None else steps
    threat_kw = {k: kwargs.pop(k) for k in ("per", "support", "relative") if k in kwargs}
    if threat is None:
        model = KSpaceL2(eps=DEFAULT_EPS if eps is None else eps, **threat_kw)
    else:
        if threat_kw:
            raise TypeError(f"kwargs: {sorted(threat_kw)} apply to the default threat only; set them on the "
                            f"ThreatModel given as threat=")
        model = resolve_threat(threat, eps)
    cls = attack_class(method)
    atk = cls(model, seed=seed, **kwargs)
    return atk.replace(steps=steps)


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


def _model_name(model: Any) -> str:
    if isinstance(model, torch.nn.Module):
        return type(model).__name__
    return getattr(model, "__name__", None) or type(model).__name__


def _to_device(obj: Any, device: str | torch.device) -> Any:
    if isinstance(obj, torch.nn.Module):
        obj.to(device)
    return obj


def check_batch(batch: Any) -> tuple[Tensor | None, Tensor, Any]:
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
    physics = check_physics("batch[2] (physics)", physics)
    return x, y, physics


def _grid(atk: Attack, x: Tensor | None, y: Tensor, physics: Any) -> Grid:
    """The batch as a one-budget grid (a template may carry one budget per sample: kept)."""
    eps = atk.threat.eps
    g = Grid.of(x, y, physics, [float(eps) if isinstance(eps, float) else float(eps.max())])
    if isinstance(eps, float):
        return g
    return dataclasses.replace(g, eps=eps.detach().to(torch.float64).reshape(-1).expand(g.rows).clone())


def _nanmin(t: Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.min()) if t.numel() else float("nan")


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
    threat: str | ThreatModel | None = None,
) -> RobustnessMeasurement:
    """Attack ``model`` on ``batch`` and measure the worst-case quality loss.

    :param model: reconstructor ``model(y, physics) -> x`` (``(B, 1|2, H, W)``).
    :param batch: ``(x, y, physics)`` as :func:`kspace_attacks.data.demo_batch` returns;
        ``x`` may be ``None`` (then the clean reconstruction is the reference).
    :param float eps: relative l2 budget (default 0.02; ``--kspace-eps`` overrides).
    :param int steps: attack iterations (default 10; ``--kspace-steps`` overrides).
    :param attack: ``"apgd"`` (default), ``"pgd"``, ``"adam"``, ``"fgm"``, ``"noise"`` or an
        :class:`~kspace_attacks.Attack` template (a copy gets ``eps`` / ``steps`` when they
        are given; otherwise its own are kept).
    :param device: run on this device (moves ``model`` and the physics there in place);
        ``--kspace-device`` overrides.
    :param str normalization: metric normalisation (:mod:`kspace_attacks.metrics`).
    :param int seed: seed of the attack's random start and of the noise baseline (default 0).
    :param str name: model name used in messages (default: its class name).
    :param threat: the threat model (see :func:`build_attack`): a physical threat's name
        (``"motion"``, ...) measures what a scanner imperfection of size ``eps`` (in its unit)
        can do, against a random imperfection of the same size.
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
    x, y, physics = check_batch(batch)
    settings = current_settings()
    attack, _ = resolve("attack", attack, TEST_ATTACK, settings)
    template = isinstance(attack, Attack)
    threat, _ = resolve("threat", threat, None, settings)
    # An Attack template (or a named threat) keeps its own budget / steps unless they are set.
    eps, _ = resolve("eps", eps, None if template or threat is not None else DEFAULT_EPS, settings)
    steps, _ = resolve("steps", steps, None if template else DEFAULT_STEPS, settings)
    device, _ = resolve("device", device, None, settings)
    seed, _ = resolve("seed", seed, 0, settings)
    if normalization not in _metrics.NORMALIZATIONS:
        raise ValueError(
            f"normalization: expected one of {list(_metrics.NORMALIZATIONS)}, got {normalization!r}"
        )
    atk = build_attack(eps, steps, attack, seed=seed, threat=threat)
    if device is not None:
        _to_device(model, device)
        _to_device(physics, device)
        y = y.to(device)
        x = None if x is None else x.to(device)
    eps_now = atk.threat.eps
    label = "attack"
    run = measure(model, _grid(atk, x, y, physics), {label: atk}, seed=seed, normalization=normalization)
    got = run.perturbed[label]
    res = got.result
    d, dn = against_reference(run.values[label]), against_reference(run.values[CONTROL])
    return worst_sample(
        name or _model_name(model), repr(atk), atk.max_grad_evals,
        eps_now if isinstance(eps_now, float) else float(res.eps.max()), run.reference, d, dn,
        float(res.ratio.max()), time.perf_counter() - start, device=str(run.x_clean.device),
        n_starts=res.n_starts,
        # one start says nothing about how settled the worst case is: NaN, not 0
        restart_spread=float(res.restart_spread.max()) if res.n_starts > 1 else float("nan"),
        unreliable=None if res.unreliable is None else int(res.unreliable.sum()),
        result=res, y_adv=got.y, x_adv=run.x_adv[label], x_clean=run.x_clean)
