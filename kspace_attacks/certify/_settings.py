"""Validation of :func:`~kspace_attacks.certify.certify`'s arguments (messages name the argument,
what was expected and what was got)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .._checks import check_nonneg_float, check_positive_int, describe
from ..threat import KSpaceL2
from .bound import center_margin, certified_quantile, min_n_pred

__all__ = ["CertifySettings"]


@dataclass
class CertifySettings:
    """The validated arguments of one :func:`certify` call."""

    model: Any
    y: Tensor
    physics: Any
    eps: list[float]
    single: bool
    sigma: float
    n_pred: int
    n_cert: int
    alpha: float
    beta: float
    delta: float
    batch_size: int
    seed: int
    attack_budget: int | None
    attack_n: int
    eot: int
    progress: bool

    @property
    def alpha1(self) -> float:  # the center check's share of alpha
        return self.alpha / 2.0

    @property
    def alpha2(self) -> float:  # the radius' share
        return self.alpha / 2.0

    @property
    def quantiles(self) -> list[float]:
        return [certified_quantile(e / self.sigma, self.delta, self.alpha2, self.n_cert) for e in self.eps]

    @classmethod
    def check(cls, model: Any, y: Any, physics: Any, eps: Any, sigma: Any, n_pred: Any, n_cert: Any,
              alpha: Any, beta: Any, delta: Any, batch_size: Any, seed: Any, progress: Any,
              attack_budget: Any, attack_n: Any, eot: Any) -> "CertifySettings":
        if not callable(model):
            raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
        y = KSpaceL2(eps=0.0).check(y, physics).detach()
        eps_list, single = _check_eps(eps)
        alpha = _check_open_unit("alpha", alpha)
        delta = _check_open_unit("delta", delta, top=0.5)
        beta = check_nonneg_float("beta", beta)
        if beta < 2.0:
            raise ValueError(f"beta: expected >= 2.0 (the sample median center is a 2-approximation "
                             f"of the minimum enclosing ball), got {beta}")
        check_positive_int("n_pred", n_pred)
        need = min_n_pred(alpha / 2.0, delta)
        if n_pred < need:
            raise ValueError(
                f"n_pred: expected at least {need} (the Hoeffding margin sqrt(log(2/alpha_1)/(2 n_pred)) "
                f"= {center_margin(alpha / 2.0, n_pred):.3f} must not exceed delta = {delta} with "
                f"alpha_1 = alpha/2 = {alpha / 2.0:g}; raise n_pred or delta), got {n_pred}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {describe(seed)}")
        if not isinstance(progress, bool):
            raise TypeError(f"progress: expected a bool, got {describe(progress)}")
        eot = check_positive_int("eot", eot)
        if attack_budget is not None:
            check_positive_int("attack_budget", attack_budget, minimum=2 * eot)
        return cls(model=model, y=y, physics=physics, eps=eps_list, single=single,
                   sigma=check_nonneg_float("sigma", sigma, strictly_positive=True), n_pred=n_pred,
                   n_cert=check_positive_int("n_cert", n_cert), alpha=alpha, beta=beta, delta=delta,
                   batch_size=check_positive_int("batch_size", batch_size), seed=seed,
                   attack_budget=attack_budget, attack_n=check_positive_int("attack_n", attack_n),
                   eot=eot, progress=progress)


def _check_eps(eps: Any) -> tuple[list[float], bool]:
    """Budgets as a list of floats >= 0 and whether a single float was given."""
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        return [check_nonneg_float("eps", eps)], True
    if isinstance(eps, (str, bytes)) or not isinstance(eps, Sequence) or len(eps) == 0:
        raise TypeError(f"eps: expected a float >= 0 or a non-empty sequence of them, got {describe(eps)}")
    return [check_nonneg_float("eps", e) for e in eps], False


def _check_open_unit(name: str, value: Any, top: float = 1.0) -> float:
    """A float in the open interval ``(0, top)``."""
    value = check_nonneg_float(name, value, strictly_positive=True)
    if value >= top:
        raise ValueError(f"{name}: expected a number in (0, {top:g}), got {value}")
    return value
