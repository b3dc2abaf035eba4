"""deepinv interop: a physics whose measurements are attacked.

:class:`AttackedPhysics` wraps a deepinv physics (e.g. :class:`deepinv.physics.MRI` or
:class:`~deepinv.physics.MultiCoilMRI`). Calling it, ``physics(x)``, simulates the clean
measurement with the wrapped physics and returns the worst-case perturbed measurement
``y + M delta`` found by an attack on a model (the model under test for a white-box
evaluation, a surrogate for a transfer evaluation). Everything else -- ``A``, ``A_adjoint``,
``A_dagger``, ``prox_l2``, the mask, the coil maps, ``update`` -- is the wrapped physics'
own (the wrapper shares its state), and it is still an instance of the wrapped class, so
deepinv models and samplers that check ``isinstance(physics, MRI)`` / ``LinearPhysics`` /
``DecomposablePhysics`` work unchanged.

Hence any deepinv evaluation that simulates measurements online reports *attacked* metrics
without a new evaluation loop::

    import deepinv as dinv, kspace_attacks as ka
    from kspace_attacks.interop.deepinv import AttackedPhysics

    attacked = AttackedPhysics(physics, model, ka.PGD(ka.KSpaceL2(eps=0.02), steps=20))
    clean = dinv.test(model, loader, physics=physics, online_measurements=True)
    adv = dinv.test(model, loader, physics=attacked, online_measurements=True)

(``online_measurements=True`` makes deepinv call ``physics(x)`` on each ground-truth batch;
the data loader yields ``x``.) The same object generates attacked data sets with
``deepinv.datasets.generate_dataset(..., physics=attacked)``.
"""

from __future__ import annotations

from typing import Any, Callable

from deepinv.physics import Physics
from torch import Tensor

from .._checks import describe
from ..attacks import Attack, default_attack
from ..result import AttackResult

__all__ = ["AttackedPhysics", "attacked_class"]

_CLASSES: dict[type, type] = {}


def attacked_class(base: type) -> type:
    """The (cached) subclass of :class:`AttackedPhysics` and ``base`` used to wrap ``base``."""
    if not (isinstance(base, type) and issubclass(base, Physics)):
        raise TypeError(f"base: expected a deepinv Physics class, got {describe(base)}")
    if issubclass(base, AttackedPhysics):
        raise TypeError(f"base: {base.__name__} is already an attacked physics")
    if base not in _CLASSES:
        cls = type(f"Attacked{base.__name__}", (AttackedPhysics, base),
                   {"__module__": __name__, "_wrapped_class": base})
        cls.__qualname__ = cls.__name__
        _CLASSES[base] = cls
    return _CLASSES[base]


def _rebuild(physics: Any, model: Any, attack: Any, x_true: bool) -> "AttackedPhysics":
    return AttackedPhysics(physics, model, attack, use_ground_truth=x_true)


class AttackedPhysics(Physics):
    r"""A deepinv physics whose forward pass returns worst-case perturbed measurements.

    ``AttackedPhysics(physics, model, attack)`` returns an object that is an instance of both
    ``AttackedPhysics`` and ``type(physics)`` and shares ``physics``' parameters, buffers and
    sub-modules (a later ``physics.update(mask=...)`` is seen by both). Only
    ``forward(x)`` (that is, ``attacked(x)``) differs:

    .. math::

        y = \texttt{physics}(x), \qquad
        \delta^\star = \texttt{attack}(\texttt{model}, y, \texttt{physics}), \qquad
        \texttt{attacked}(x) = y + M\delta^\star.

    :param deepinv.physics.Physics physics: the clean physics (``MRI``, ``MultiCoilMRI``, ...).
    :param model: reconstructor ``model(y, physics) -> x`` to craft the perturbation on: the
        model under test (white-box) or a surrogate (transfer; the evaluated model need not be
        differentiable, e.g. DPS / DiffPIR).
    :param kspace_attacks.Attack attack: default :func:`~kspace_attacks.attacks.default_attack` (``WorstCase(KSpaceL2(eps=0.05), budget=100)``).
    :param float eps: if given, replaces the attack's budget (on a copy).
    :param bool use_ground_truth: pass ``x`` as ``x_true`` to the attack when its loss needs it
        (e.g. :class:`~kspace_attacks.losses.GroundTruthDeviation`). Default True.

    :ivar physics: the wrapped clean physics.
    :ivar model: the attacked model.
    :ivar attack: the attack.
    :ivar last_result: the :class:`~kspace_attacks.AttackResult` of the last call.
    :ivar calls: number of attacked forward passes.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> from kspace_attacks.interop.deepinv import AttackedPhysics
        >>> physics = dinv.physics.MRI(img_size=(16, 16))
        >>> model = lambda y, physics: physics.A_adjoint(y)
        >>> attacked = AttackedPhysics(physics, model, ka.PGD(ka.KSpaceL2(eps=0.05), steps=2))
        >>> isinstance(attacked, dinv.physics.MRI), type(attacked).__name__
        (True, 'AttackedMRI')
        >>> x = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> y_adv = attacked(x)
        >>> y = physics(x)
        >>> round(float((y_adv - y).norm() / y.norm()), 3)
        0.05
        >>> torch.equal(attacked.A_adjoint(y), physics.A_adjoint(y))
        True
    """

    _wrapped_class: type | None = None

    def __new__(cls, physics: Any = None, *args: Any, **kwargs: Any):
        if cls._wrapped_class is not None or physics is None:
            return super().__new__(cls)  # a concrete attacked class (copy / unpickle)
        if not isinstance(physics, Physics):
            raise TypeError(
                f"physics: expected a deepinv Physics such as deepinv.physics.MRI, got "
                f"{describe(physics)}"
            )
        if isinstance(physics, AttackedPhysics):
            raise TypeError(
                "physics: already an AttackedPhysics; wrap the clean physics "
                "(attacked.physics) with the new attack instead"
            )
        return super().__new__(attacked_class(type(physics)))

    def __init__(self, physics: Any, model: Callable[..., Tensor], attack: Attack | None = None,
                 eps: float | None = None, use_ground_truth: bool = True) -> None:
        # No Physics.__init__: the state is the wrapped physics' own, shared.
        if not callable(model):
            raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
        if attack is None:
            attack = default_attack()
        if not isinstance(attack, Attack):
            raise TypeError(
                f"attack: expected a kspace_attacks.Attack such as "
                f"PGD(KSpaceL2(eps=0.05), steps=20), got {describe(attack)}"
            )
        if eps is not None:
            attack = attack.with_eps(eps)
        if not isinstance(use_ground_truth, bool):
            raise TypeError(f"use_ground_truth: expected a bool, got {describe(use_ground_truth)}")
        vars(self).update(vars(physics))  # shares _parameters, _buffers, _modules, ...
        # object.__setattr__: keep these out of the shared module dicts.
        for name, value in (("physics", physics), ("model", model), ("attack", attack),
                            ("use_ground_truth", use_ground_truth), ("last_result", None),
                            ("calls", 0)):
            object.__setattr__(self, name, value)

    def forward(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Attacked measurement of ``x``: the wrapped physics' ``physics(x)`` plus the attack's
        perturbation (masked by the physics)."""
        y = self.physics(x, **kwargs)
        needs = getattr(self.attack.loss, "needs", ())
        x_true = x if (self.use_ground_truth and "x_true" in needs) else None
        res: AttackResult = self.attack(self.model, y.detach(), self.physics, x_true=x_true)
        object.__setattr__(self, "last_result", res)
        object.__setattr__(self, "calls", self.calls + 1)
        return res.y_adv

    @property
    def clean(self) -> Any:
        """The wrapped clean physics (same as ``.physics``)."""
        return self.physics

    def __reduce__(self):
        # deepcopy / physics.clone(): an attacked copy of a copy of the wrapped physics.
        return (_rebuild, (self.physics, self.model, self.attack, self.use_ground_truth))

    def __repr__(self) -> str:
        name = getattr(self.model, "__name__", type(self.model).__name__)
        return f"{type(self).__name__}(physics={type(self.physics).__name__}, model={name}, attack={self.attack!r})"

