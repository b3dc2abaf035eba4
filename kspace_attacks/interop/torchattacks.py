"""torchattacks interop: k-space attacks as ``torchattacks.Attack`` subclasses.

Installed as ``kspace_attacks.interop.torchattacks``; needs the optional extra
``pip install "kspace-attacks[torchattacks]"`` (importing this module without torchattacks
raises an ``ImportError`` that says so; ``kspace_attacks`` itself never imports it).

The classes work where torchattacks attacks work -- ``atk(inputs, labels)``, ``repr(atk)``,
``set_mode_targeted_by_label``, ``set_model_training_mode``, ``set_device`` -- but attack MRI
reconstructors ``model(y, physics) -> x`` in k-space. What differs from torchattacks' image
attacks:

- **inputs are k-space** ``y`` in deepinv layout, ``(B, 2, H, W)`` single-coil or
  ``(B, 2, N, H, W)`` multi-coil; the output is the perturbed k-space ``y + M delta`` (zero
  off the sampling mask). Nothing is clamped to [0, 1] and no normalisation is applied
  (``set_normalization_used`` raises).
- **the model is called as** ``model(y, physics)``; the physics is given at construction or
  with :meth:`set_physics`. A plain function ``f(y, physics)`` is accepted too.
- **the budget is relative** by default: ``||delta||_2 <= eps ||y||_2`` per sample (or per
  coil with ``per="coil"``), so ``eps=0.05`` means 5 % of the measurement's norm, whatever its
  scale; ``relative=False`` makes it absolute. ``alpha`` is a step as a fraction of the budget.
- **regression losses** replace cross-entropy. ``labels``:

  - default mode, ``loss="deviation"`` (default): labels are ignored (may be ``None``); the
    attack maximises ``||f(y + delta) - f(y)||^2``, which needs no ground truth (the study's
    objective);
  - default mode, ``loss="reference"``: labels are the ground-truth images ``x``; the attack
    maximises ``||f(y + delta) - x||^2`` (torchattacks' "move away from the label");
  - targeted mode (``set_mode_targeted_by_label``): labels are target *images*; the attack
    minimises ``||f(y + delta) - target||^2``. ``set_mode_targeted_by_function(fn)`` calls
    ``fn(inputs, labels)`` to get the target images. Random / least-likely targets are
    classification concepts and raise.
- **the worst iterate** over all steps is returned (per sample), not the last one, and the
  random start is seeded (``seed``): the same call gives the same result. ``atk.last_result``
  holds the full :class:`~kspace_attacks.AttackResult` of the last call (reconstructions,
  ``ratio``, loss history).
- ``threat="motion"`` (or ``"phase"``, ``"spikes"``, ``"lost_lines"``, or a
  :class:`~kspace_attacks.ThreatModel`) attacks within a scanner imperfection instead, ``eps``
  in its unit (mm per shot, radians, max |y|, lines); the output is the corrupted k-space.
- ``atk.save(loader)`` (robust accuracy of a classifier) does not apply; save perturbed
  k-space with :func:`kspace_attacks.data.write_perturbed_kspace`.

The attacks run on :mod:`kspace_attacks`' core (:class:`~kspace_attacks.PGD`,
:class:`~kspace_attacks.GaussianNoise`, :class:`~kspace_attacks.KSpaceL2`), so they give
exactly the results of ``kspace_attacks.PGD`` with the same settings.

:Example:

    >>> import torch, deepinv as dinv  # doctest: +SKIP
    >>> from kspace_attacks.interop.torchattacks import KSpacePGDL2  # doctest: +SKIP
    >>> physics = dinv.physics.MRI(img_size=(32, 32))  # doctest: +SKIP
    >>> model = dinv.models.MoDL(num_iter=2)  # doctest: +SKIP
    >>> atk = KSpacePGDL2(model, physics, eps=0.02, steps=10)  # doctest: +SKIP
    >>> y_adv = atk(physics(torch.rand(2, 2, 32, 32)))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

import torch
from torch import Tensor, nn

from kspace_attacks._kernels import narrow_conv_guard
from kspace_attacks._checks import (
    check_choice,
    check_image,
    check_kspace,
    check_nonneg_float,
    check_physics,
    check_positive_int,
    describe,
)
from kspace_attacks.attacks import APGD, PGD, GaussianNoise
from kspace_attacks.attacks import Attack as CoreAttack
from kspace_attacks.losses import GroundTruthDeviation, Loss, ReconDeviation, SSIMDeviation, TargetedLoss
from kspace_attacks.result import AttackResult
from kspace_attacks.threat import KSpaceL2, ThreatModel
from kspace_attacks.threat_spec import resolve_threat

INSTALL_HINT = (
    'kspace_attacks.interop.torchattacks needs the optional extra: '
    'pip install "kspace-attacks[torchattacks]" (or pip install torchattacks)'
)

try:
    # the top-level import first: it is what fails when the extra is missing (a stale
    # torchattacks.attack entry in sys.modules would otherwise hide that)
    import torchattacks  # noqa: F401
    from torchattacks.attack import Attack as _TorchAttack
except ImportError as _err:  # the extra is not installed
    raise ImportError(f"{INSTALL_HINT} ({_err})") from _err

__all__ = ["KSpaceAPGD", "KSpacePGDL2", "KSpaceGaussianNoise", "INSTALL_HINT"]

LOSS_NAMES = ("deviation", "reference", "ssim")


class _FunctionModel(nn.Module):
    """A plain function ``f(y, physics)`` as an ``nn.Module`` (torchattacks needs ``.training``)."""

    def __init__(self, fn: Callable[..., Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, y: Tensor, physics: Any) -> Tensor:
        return self.fn(y, physics)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def _check_physics(physics: Any) -> Any:
    """``None`` (physics given later with ``set_physics``) or a valid physics."""
    return None if physics is None else check_physics("physics", physics)


class _KSpaceAttack(_TorchAttack):
    """Shared k-space behaviour of the torchattacks-compatible attacks."""

    def __init__(self, name: str, model: Any, physics: Any, eps: float, relative: bool,
                 per: str, support: str, loss: str | Loss, domain: str, seed: int, threat: Any = None):
        if not callable(model):
            raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
        module = model if isinstance(model, nn.Module) else _FunctionModel(model)
        with contextlib.redirect_stdout(io.StringIO()):  # "Failed to set device..." for no params
            super().__init__(name, module)
        if module is not model:
            self.model_name = getattr(model, "__name__", type(model).__name__)
        # Set large/tensor-holding attributes with object.__setattr__: torchattacks'
        # Attack.__setattr__ appends every assigned value to a list that is never cleared
        # (a mutable default argument), which would keep each result alive.
        object.__setattr__(self, "_physics", _check_physics(physics))
        object.__setattr__(self, "_last_result", None)
        self.eps = check_nonneg_float("eps", eps)
        if not isinstance(relative, bool):
            raise TypeError(f"relative: expected a bool, got {describe(relative)}")
        self.relative = relative
        self.per = check_choice("per", per, ("sample", "coil"))
        self.support = check_choice("support", support, ("measured", "full"))
        if not isinstance(loss, Loss):
            check_choice("loss", loss, LOSS_NAMES)
        self.loss = loss
        self.domain = check_choice("domain", domain, ("complex", "magnitude"))
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {describe(seed)}")
        self.seed = seed
        if threat is not None:
            built = resolve_threat(threat, self.eps)  # validates the name now, not at the first call
            if type(built).corrupt is not ThreatModel.corrupt:
                raise ValueError(f"threat: {type(built).__name__} changes the physics the model is told; the "
                                 "wrapper returns k-space only (use kspace_attacks' attacks directly)")
        object.__setattr__(self, "_threat_spec", threat)

    # ------------------------------------------------------------------ physics and model
    @property
    def physics(self) -> Any:
        """The physics passed to ``model(y, physics)`` (carries the sampling mask)."""
        return self._physics

    def set_physics(self, physics: Any) -> "_KSpaceAttack":
        """Use ``physics`` for the next calls (e.g. a new mask); returns the attack."""
        object.__setattr__(self, "_physics", _check_physics(physics))
        return self

    def _require_physics(self) -> Any:
        if self._physics is None:
            raise ValueError(
                "physics: the attack has no physics; pass it at construction, e.g. "
                f"{type(self).__name__}(model, physics), or call set_physics(physics)"
            )
        return self._physics

    def get_logits(self, inputs: Tensor, labels: Any = None, *args: Any, **kwargs: Any) -> Tensor:
        """The reconstruction ``model(y, physics)`` (torchattacks calls the output logits)."""
        return self.model(inputs, self._require_physics())

    @property
    def last_result(self) -> AttackResult | None:
        """The :class:`~kspace_attacks.AttackResult` of the last call (or ``None``)."""
        return self._last_result

    # ------------------------------------------------------------------ torchattacks hooks
    def _check_inputs(self, inputs: Any) -> Tensor:
        """Validate k-space (deepinv layout, finite); no [0, 1] range check, no clamping."""
        return check_kspace("inputs", inputs)

    def _check_outputs(self, outputs: Tensor) -> Tensor:
        return outputs  # no clamping or type conversion: k-space is unbounded and real/imag

    def _recover_model_mode(self, given_training: bool) -> None:
        self.model.train(given_training)  # torchattacks leaves train mode on if it set it

    def set_normalization_used(self, mean: Any, std: Any) -> None:
        raise NotImplementedError(
            "set_normalization_used: k-space attacks take raw measurements y; image "
            "normalisation does not apply (normalise inside your model if it needs it)"
        )

    def set_mode_targeted_random(self, quiet: bool = False) -> None:
        raise ValueError(
            "set_mode_targeted_random: random target labels are a classification concept; "
            "use set_mode_targeted_by_label() and pass target images as labels"
        )

    def set_mode_targeted_least_likely(self, kth_min: int = 1, quiet: bool = False) -> None:
        raise ValueError(
            "set_mode_targeted_least_likely: least-likely labels are a classification "
            "concept; use set_mode_targeted_by_label() and pass target images as labels"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "save: torchattacks' save() measures a classifier's robust accuracy; save "
            "perturbed k-space with kspace_attacks.data.write_perturbed_kspace"
        )

    # ------------------------------------------------------------------ attack
    def _threat(self) -> ThreatModel:
        if self._threat_spec is not None:  # a physical threat: eps in its unit
            return resolve_threat(self._threat_spec, self.eps)
        return KSpaceL2(eps=self.eps, relative=self.relative, per=self.per, support=self.support)

    def _core(self, loss: Loss) -> CoreAttack:
        raise NotImplementedError

    def _device(self, inputs: Tensor) -> torch.device:
        return torch.device(self.device) if self.device is not None else inputs.device

    def forward(self, inputs: Tensor, labels: Tensor | None = None) -> Tensor:
        """Perturbed k-space ``y + M delta`` (same shape and device as the attack's inputs)."""
        y = self._check_inputs(inputs)
        physics = self._require_physics()
        device = self._device(y)
        y = y.clone().detach().to(device)
        if isinstance(physics, nn.Module):
            physics.to(device)
        x_true = target = None
        if self.targeted:
            target = self.get_target_label(y, labels)
            if target is None:
                raise ValueError(
                    "labels: targeted mode needs target images as labels, (B, 1|2, H, W), got None"
                )
            target = check_image("labels (target images)", target).detach().to(device)
            loss = self.loss if isinstance(self.loss, Loss) else TargetedLoss(domain=self.domain)
        elif isinstance(self.loss, Loss):
            loss = self.loss
            if labels is not None:
                x_true = check_image("labels (ground-truth images)", labels).detach().to(device)
        elif self.loss == "ssim":
            loss = SSIMDeviation()  # 1 - SSIM(|f(y + delta)|, |f(y)|): labels are not needed
        elif self.loss == "reference":
            if labels is None:
                raise ValueError(
                    "labels: loss='reference' needs the ground-truth images as labels, "
                    "(B, 1|2, H, W), got None"
                )
            x_true = check_image("labels (ground-truth images)", labels).detach().to(device)
            loss = GroundTruthDeviation(domain=self.domain)
        else:
            loss = ReconDeviation(domain=self.domain)  # labels are not needed

        model = self.model

        def reconstruct(y_: Tensor, physics_: Any) -> Tensor:
            # A plain function for the core: torchattacks already set the model's mode
            # (eval, or train with set_model_training_mode) and restores it afterwards.
            return model(y_, physics_)

        reconstruct.__name__ = self.model_name
        with narrow_conv_guard(model):  # the core sees a function: guard for the module it calls
            res = self._core(loss)(reconstruct, y, physics, x_true=x_true, target=target)
        object.__setattr__(self, "_last_result", res)
        return res.y_adv.detach()


class KSpacePGDL2(_KSpaceAttack):
    r"""PGD in the k-space l2 ball: :math:`\|\delta\|_2 \le \epsilon \|y\|_2` (torchattacks API).

    Normalised steepest-ascent steps of ``alpha`` budgets from a random start in the ball;
    the worst iterate per sample is returned. Runs :class:`kspace_attacks.PGD`.

    :param model: reconstructor ``model(y, physics) -> x`` (``nn.Module`` or function).
    :param physics: deepinv MRI physics of the measurements (or later :meth:`set_physics`).
    :param float eps: budget, relative to ``||y||`` (default) or absolute. (Default: 0.05)
    :param float|None alpha: step as a fraction of the budget.
        (Default: ``max(2.5 / steps, 0.25)``, as :class:`kspace_attacks.PGD`)
    :param int steps: number of steps. (Default: 10)
    :param bool random_start: start uniformly in the ball. (Default: True)
    :param int restarts: random restarts, the worst result is kept. (Default: 1)
    :param bool relative: budget relative to the norm of ``y``. (Default: True)
    :param str per: ``"sample"`` or ``"coil"`` (multi-coil: one budget per coil).
    :param str support: ``"measured"`` (perturb sampled entries only) or ``"full"``.
    :param loss: ``"deviation"`` (labels ignored), ``"reference"`` (labels = ground truth) or
        a :class:`kspace_attacks.losses.Loss`. Targeted mode always pulls towards the labels.
    :param str domain: compare ``"complex"`` images or their ``"magnitude"``.
    :param int seed: seed of the random start. (Default: 0)
    :param threat: a physical threat's name or a ThreatModel (``eps`` in its unit); default:
        the l2 ball above.

    Shape:
        - inputs: ``(B, 2, H, W)`` or ``(B, 2, N, H, W)`` k-space (deepinv layout), any range.
        - labels: ``None`` or images ``(B, 1|2, H, W)`` (see ``loss`` and targeted mode).
        - output: same shape as inputs.

    Examples::

        >>> atk = KSpacePGDL2(model, physics, eps=0.02, steps=10)  # doctest: +SKIP
        >>> y_adv = atk(y)                                          # doctest: +SKIP
        >>> atk.set_mode_targeted_by_label(quiet=True)              # doctest: +SKIP
        >>> y_adv = atk(y, target_images)                           # doctest: +SKIP
    """

    def __init__(self, model: Any, physics: Any = None, eps: float = 0.05,
                 alpha: float | None = None, steps: int = 10, random_start: bool = True,
                 restarts: int = 1, relative: bool = True, per: str = "sample",
                 support: str = "measured", loss: str | Loss = "deviation",
                 domain: str = "complex", seed: int = 0, threat: Any = None):
        super().__init__("KSpacePGDL2", model, physics, eps, relative, per, support, loss,
                         domain, seed, threat)
        self.steps = check_positive_int("steps", steps)
        self.alpha = (PGD.default_step_size(steps) if alpha is None
                      else check_nonneg_float("alpha", alpha, strictly_positive=True))
        if not isinstance(random_start, bool):
            raise TypeError(f"random_start: expected a bool, got {describe(random_start)}")
        self.random_start = random_start
        self.restarts = check_positive_int("restarts", restarts)
        self.supported_mode = ["default", "targeted"]

    def _core(self, loss: Loss) -> CoreAttack:
        return PGD(self._threat(), steps=self.steps, restarts=self.restarts,
                      step_size=self.alpha, random_start=self.random_start, loss=loss,
                      seed=self.seed)


class KSpaceAPGD(_KSpaceAttack):
    r"""Auto-PGD in a k-space threat model: the package's default (strongest per gradient
    evaluation in ``benchmarks/bench_strength.py``). Runs :class:`kspace_attacks.APGD`: momentum
    0.75, an initial step of 2 budgets halved at checkpoints when progress stalls, restarts from
    the best point; same inputs, labels, modes and losses as :class:`KSpacePGDL2`.

    :param model: reconstructor ``model(y, physics) -> x``.
    :param physics: deepinv MRI physics of the measurements.
    :param float eps: budget, relative to ``||y||`` (default) or absolute. (Default: 0.05)
    :param int steps: gradient evaluations per restart. (Default: 20)
    :param int restarts: random restarts, the worst result is kept. (Default: 1)
    :param bool relative: budget relative to the norm of ``y``. (Default: True)
    :param str per: ``"sample"`` or ``"coil"``.
    :param str support: ``"measured"`` or ``"full"``.
    :param loss: ``"deviation"``, ``"reference"``, ``"ssim"`` or a :class:`kspace_attacks.losses.Loss`.
    :param str domain: ``"complex"`` or ``"magnitude"``.
    :param int seed: seed of the random start. (Default: 0)
    :param threat: a physical threat's name or a ThreatModel (``eps`` in its unit); default:
        the l2 ball above.

    Examples::

        >>> atk = KSpaceAPGD(model, physics, eps=0.02, steps=20)  # doctest: +SKIP
        >>> y_adv = atk(y)                                          # doctest: +SKIP
    """

    def __init__(self, model: Any, physics: Any = None, eps: float = 0.05, steps: int = 20,
                 restarts: int = 1, relative: bool = True, per: str = "sample",
                 support: str = "measured", loss: str | Loss = "deviation",
                 domain: str = "complex", seed: int = 0, threat: Any = None):
        super().__init__("KSpaceAPGD", model, physics, eps, relative, per, support, loss,
                         domain, seed, threat)
        self.steps = check_positive_int("steps", steps)
        self.restarts = check_positive_int("restarts", restarts)
        self.supported_mode = ["default", "targeted"]

    def _core(self, loss: Loss) -> CoreAttack:
        return APGD(self._threat(), steps=self.steps, restarts=self.restarts, loss=loss, seed=self.seed)


class KSpaceGaussianNoise(_KSpaceAttack):
    r"""Equal-norm Gaussian noise in k-space: the random baseline of :class:`KSpacePGDL2`.

    A Gaussian direction on the support scaled to exactly the budget
    (``||delta||_2 = eps ||y||_2``), unlike torchattacks' ``GN`` (fixed std, clamped). With
    ``draws > 1`` the worst of several draws (by ``loss``) is kept. Runs
    :class:`kspace_attacks.GaussianNoise`.

    :param model: reconstructor ``model(y, physics) -> x``.
    :param physics: deepinv MRI physics of the measurements.
    :param float eps: budget, relative to ``||y||`` (default) or absolute. (Default: 0.05)
    :param int draws: random draws, the worst is kept. (Default: 1)
    :param bool relative: budget relative to the norm of ``y``. (Default: True)
    :param str per: ``"sample"`` or ``"coil"``.
    :param str support: ``"measured"`` or ``"full"``.
    :param loss: ranks draws: ``"deviation"`` or ``"reference"`` (labels = ground truth).
    :param str domain: ``"complex"`` or ``"magnitude"``.
    :param int seed: seed of the draws. (Default: 0)
    :param threat: a physical threat's name or a ThreatModel (``eps`` in its unit).
    """

    def __init__(self, model: Any, physics: Any = None, eps: float = 0.05, draws: int = 1,
                 relative: bool = True, per: str = "sample", support: str = "measured",
                 loss: str | Loss = "deviation", domain: str = "complex", seed: int = 0,
                 threat: Any = None):
        super().__init__("KSpaceGaussianNoise", model, physics, eps, relative, per, support,
                         loss, domain, seed, threat)
        self.draws = check_positive_int("draws", draws)
        self.supported_mode = ["default"]

    def _core(self, loss: Loss) -> CoreAttack:
        return GaussianNoise(self._threat(), draws=self.draws, loss=loss, seed=self.seed)
