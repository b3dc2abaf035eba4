"""Shared machinery of all attacks: validation, model handling, evaluation, best-iterate tracking."""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from .._checks import check_image, describe
from ..losses import Loss, resolve_loss
from ..result import AttackResult
from ..threat import ThreatModel

__all__ = ["Attack", "Problem"]

Reconstructor = Callable[[Tensor, Any], Tensor]


@contextlib.contextmanager
def frozen_eval(model: Any) -> Iterator[None]:
    """Put ``model`` in eval mode with parameters not requiring grad; restore both afterwards.

    Gradients are taken w.r.t. the perturbation only, so weight gradients are neither computed
    (saves time) nor accumulated in ``.grad`` (the model is left exactly as it was).
    """
    if not isinstance(model, torch.nn.Module):
        yield
        return
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class Problem:
    """One attack problem: model, data and objective, with evaluation counters and best iterates.

    Attacks drive it through :meth:`evaluate` (objective, gradient and reconstruction at a
    perturbation) and read the worst iterates from :attr:`best_delta` / :attr:`best_x`.
    """

    def __init__(
        self,
        model: Reconstructor,
        y: Tensor,
        physics: Any,
        threat: ThreatModel,
        loss: Loss,
        x_clean: Tensor,
        x_true: Tensor | None,
        target: Tensor | None,
    ) -> None:
        self.model, self.y, self.physics, self.threat, self.loss = model, y, physics, threat, loss
        self.x_clean, self.x_true, self.target = x_clean, x_true, target
        self.grad_evals = 0
        self.forward_evals = 0
        b = y.shape[0]
        self.best_loss = torch.full((b,), -float("inf"), device=y.device, dtype=y.dtype)
        self.best_delta = torch.zeros_like(y)
        self.best_x = x_clean.clone()
        self.history: list[Tensor] = []
        self._support = threat.support_mask(y, physics)

    def objective(self, x: Tensor) -> Tensor:
        value = self.loss(x, self.x_clean, x_true=self.x_true, target=self.target)
        if not isinstance(value, Tensor) or value.shape != (self.y.shape[0],):
            raise ValueError(
                f"loss: expected a tensor of shape ({self.y.shape[0]},) (one value per sample), "
                f"got {describe(value)}"
            )
        return value

    def evaluate(self, delta: Tensor, grad: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
        """Objective ``(B,)``, its gradient w.r.t. ``delta`` (or None) and the reconstruction."""
        if not grad:
            with torch.no_grad():
                x = self.model(self.threat.apply(self.y, delta, self.physics), self.physics)
                value = self.objective(x)
            self.forward_evals += 1
            self.track(value, delta, x)
            return value, None, x
        d = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            x = self.model(self.threat.apply(self.y, d, self.physics), self.physics)
            value = self.objective(x)
            # Samples are independent, so the gradient of the sum is each sample's gradient.
            (g,) = torch.autograd.grad(value.sum(), d)
        self.grad_evals += 1
        value, x = value.detach(), x.detach()
        self.track(value, delta, x)
        return value, g * self._support, x

    def track(self, value: Tensor, delta: Tensor, x: Tensor) -> None:
        """Keep, per sample, the perturbation with the largest objective seen so far."""
        better = value > self.best_loss
        if better.any():
            self.best_loss = torch.where(better, value, self.best_loss)
            shape = (-1,) + (1,) * (delta.dim() - 1)
            self.best_delta = torch.where(better.view(shape), delta.detach(), self.best_delta)
            self.best_x = torch.where(better.view((-1, 1, 1, 1)), x, self.best_x)

    def record(self) -> None:
        """Append the current best objective to the history (once per gradient evaluation)."""
        self.history.append(self.best_loss.clone())


class Attack(ABC):
    """Base class of k-space attacks.

    An attack is called as ``attack(model, y, physics)`` for any reconstructor
    ``model(y, physics) -> x``. It puts an ``nn.Module`` model in eval mode and restores its
    mode afterwards, never changes ``y`` or the model's parameters, and returns an
    :class:`~kspace_attacks.AttackResult`.

    :param kspace_attacks.ThreatModel threat: the allowed perturbations.
    :param loss: objective to maximise, ``loss(x_adv, x_clean, x_true, target) -> (B,)``;
        default :class:`~kspace_attacks.losses.ReconDeviation`.
    :param int seed: seed of the attack's random draws (random starts, noise).
    """

    def __init__(self, threat: ThreatModel, loss: Loss | None = None, seed: int = 0) -> None:
        if not isinstance(threat, ThreatModel):
            raise TypeError(
                f"threat: expected a ThreatModel such as KSpaceL2(eps=0.05), got {describe(threat)}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {describe(seed)}")
        self.threat = threat
        self.loss = resolve_loss(loss)
        self.seed = seed

    def __call__(
        self,
        model: Reconstructor,
        y: Tensor,
        physics: Any,
        x_true: Tensor | None = None,
        target: Tensor | None = None,
        x_clean: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AttackResult:
        """Attack ``model`` at measurements ``y``.

        :param model: reconstructor, ``model(y, physics) -> x``.
        :param torch.Tensor y: clean k-space in deepinv layout (not modified).
        :param physics: the deepinv physics of ``y`` (carries the sampling mask).
        :param torch.Tensor | None x_true: ground truth, for losses that need it.
        :param torch.Tensor | None target: target image, for targeted losses.
        :param torch.Tensor | None x_clean: the clean reconstruction if already computed.
        :param torch.Generator | None generator: overrides the attack's ``seed``.
        """
        if not callable(model):
            raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
        y = self.threat.check(y, physics).detach()
        for name, value in (("x_true", x_true), ("target", target), ("x_clean", x_clean)):
            if value is not None:
                check_image(name, value)
        needs = getattr(self.loss, "needs", ())
        if "x_true" in needs and x_true is None:
            raise ValueError(f"x_true: the loss {self.loss!r} needs the ground truth, got None")
        if "target" in needs and target is None:
            raise ValueError(f"target: the loss {self.loss!r} needs a target image, got None")
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        start = time.perf_counter()
        with frozen_eval(model):
            forward_evals = 0
            if x_clean is None:
                with torch.no_grad():
                    x_clean = model(y, physics)
                forward_evals = 1
            x_clean = check_image("model(y, physics)", x_clean).detach()
            problem = Problem(model, y, physics, self.threat, self.loss, x_clean, x_true, target)
            problem.forward_evals += forward_evals
            self._run(problem, generator)
        delta = problem.best_delta
        history = torch.stack(problem.history) if problem.history else None
        return AttackResult(
            delta=delta,
            y_adv=self.threat.apply(y, delta, physics),
            x_clean=x_clean,
            x_adv=problem.best_x,
            loss=problem.best_loss,
            eps=self.threat.eps_per_sample(y),
            ratio=self.threat.ratio(delta, y),
            grad_evals=problem.grad_evals,
            forward_evals=problem.forward_evals,
            seconds=time.perf_counter() - start,
            history=history,
            attack=repr(self),
        )

    @abstractmethod
    def _run(self, problem: Problem, generator: torch.Generator) -> None:
        """Search for the worst perturbation; report iterates through ``problem``."""

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        params = {"threat": self.threat, **self._params(), "loss": self.loss, "seed": self.seed}
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({inner})"

