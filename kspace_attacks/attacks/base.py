"""Shared machinery of all attacks: validation, model handling, evaluation, best-iterate tracking."""

from __future__ import annotations

import contextlib
import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from .._kernels import narrow_conv_guard
from .._checks import check_image, check_positive_int, describe
from ..losses import Loss, resolve_loss
from ..result import AttackResult
from ..threat import ThreatModel, sampling_mask

__all__ = ["Attack", "Problem", "monotone_winners", "sample_groups", "groups_from_rows", "check_groups"]

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

    With ``eot = n > 1`` (expectation over transformation, for stochastic models such as a
    diffusion sampler with ``seed=None``) every evaluation calls the model ``n`` times and
    averages objective, gradient and reconstruction over the draws: ``n`` gradient (or forward)
    evaluations per call, counted in :attr:`grad_evals` / :attr:`forward_evals`.
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
        eot: int = 1,
        groups: Tensor | None = None,
    ) -> None:
        self.model, self.y, self.physics, self.threat, self.loss = model, y, physics, threat, loss
        #: sample id per row (rows of one sample at several budgets share it), or None: see
        #: :func:`sample_groups`
        self.groups = groups
        self.x_clean, self.x_true, self.target = x_clean, x_true, target
        self.eot = check_positive_int("eot", eot)
        self.grad_evals = 0
        self.forward_evals = 0
        b = y.shape[0]
        self.best_loss = torch.full((b,), -float("inf"), device=y.device, dtype=y.dtype)
        self.best_delta = threat.zeros(y)
        self.best_x = x_clean.clone()
        self.history: list[Tensor] = []
        #: best objective of each finished start (restart), one ``(B,)`` tensor per start
        self.start_losses: list[Tensor] = []
        self._start_best: Tensor | None = None
        self._start_delta: Tensor | None = None
        self._support = threat.support_mask(y, physics)
        #: rows whose search did not settle (set by adaptive searches), ``(B,)`` bool, or None
        self.unreliable: Tensor | None = None

    def begin_start(self) -> None:
        """Open the bookkeeping of one start (restart): its own best objective per sample."""
        self._start_best = torch.full_like(self.best_loss, -float("inf"))
        self._start_delta = self.threat.zeros(self.y)

    def end_start(self, keep: bool = True) -> tuple[Tensor, Tensor]:
        """Close the current start: its best objective ``(B,)`` and perturbation per sample.

        With ``keep`` the objective joins :attr:`start_losses` (the spread over starts)."""
        if self._start_best is None or self._start_delta is None:
            raise RuntimeError("end_start: no start is open (call begin_start first)")
        best, delta = self._start_best, self._start_delta
        self._start_best = self._start_delta = None
        if keep:
            self.start_losses.append(best)
        return best, delta

    def objective(self, x: Tensor) -> Tensor:
        value = self.loss(x, self.x_clean, x_true=self.x_true, target=self.target)
        if not isinstance(value, Tensor) or value.shape != (self.y.shape[0],):
            raise ValueError(
                f"loss: expected a tensor of shape ({self.y.shape[0]},) (one value per sample), "
                f"got {describe(value)}"
            )
        return value

    def evaluate(self, delta: Tensor, grad: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
        """Objective ``(B,)``, its gradient w.r.t. ``delta`` (or None) and the reconstruction.

        With ``eot > 1`` all three are means over ``eot`` model calls; the mean reconstruction
        is the one kept for the best iterate.
        """
        value, g, x = self._draw(delta, grad)
        if self.eot > 1:
            for _ in range(self.eot - 1):
                v, gk, xk = self._draw(delta, grad)
                value, x = value + v, x + xk
                g = None if g is None else g + gk
            value, x = value / self.eot, x / self.eot
            g = None if g is None else g / self.eot
        self.track(value, delta, x)
        return value, (None if g is None else g * self._support), x

    def _draw(self, delta: Tensor, grad: bool) -> tuple[Tensor, Tensor | None, Tensor]:
        """One model call at ``delta``: objective, raw gradient (or None), reconstruction."""
        if not grad:
            with torch.no_grad():
                x = self.model(*self.threat.corrupt(self.y, delta, self.physics))
                value = self.objective(x)
            self.forward_evals += 1
            return value, None, x
        d = delta.detach().requires_grad_(True)
        with torch.enable_grad():
            x = self.model(*self.threat.corrupt(self.y, d, self.physics))
            value = self.objective(x)
            # Samples are independent, so the gradient of the sum is each sample's gradient.
            (g,) = torch.autograd.grad(value.sum(), d)
        self.grad_evals += 1
        return value.detach(), g, x.detach()

    def track(self, value: Tensor, delta: Tensor, x: Tensor) -> None:
        """Keep, per sample, the perturbation with the largest objective seen so far."""
        shape = (-1,) + (1,) * (delta.dim() - 1)
        if self._start_best is not None and self._start_delta is not None:
            own = value > self._start_best
            self._start_best = torch.where(own, value.detach(), self._start_best)
            self._start_delta = torch.where(own.view(shape), delta.detach(), self._start_delta)
        better = value > self.best_loss
        if better.any():
            self.best_loss = torch.where(better, value, self.best_loss)
            self.best_delta = torch.where(better.view(shape), delta.detach(), self.best_delta)
            self.best_x = torch.where(better.view((-1, 1, 1, 1)), x, self.best_x)

    def record(self) -> None:
        """Append the current best objective to the history (once per step: per :meth:`evaluate`
        with gradient, i.e. per ``eot`` gradient evaluations)."""
        self.history.append(self.best_loss.clone())


def _row_digests(b: int, tensors: list[Any]) -> list[bytes]:
    """Per row of a batch of ``b``, a digest of the row's bytes in each tensor of ``b`` rows.

    Tensors of one row (or None) are shared by every row and do not tell rows apart; equal
    digests mean bit-equal rows (the check is exact, not approximate).
    """
    digests = [hashlib.blake2b(digest_size=16) for _ in range(b)]
    for t in tensors:
        if not isinstance(t, Tensor) or t.dim() == 0 or t.shape[0] != b or b == 1:
            continue
        t = t.detach()
        t = torch.view_as_real(t) if t.is_complex() else t
        t = (t.float() if t.dtype == torch.bfloat16 else t).cpu().contiguous()
        for i in range(b):
            digests[i].update(t[i].numpy().tobytes())
    return [d.digest() for d in digests]


def groups_from_rows(b: int, tensors: list[Any], device: Any = None) -> Tensor:
    """Sample id per row, ``(B,)``: rows bit-equal in every per-row tensor of ``tensors`` are
    one sample (the one fallback rule when no ids are given; ids count from 0 in order)."""
    keys = _row_digests(b, tensors)
    ids = {k: n for n, k in enumerate(dict.fromkeys(keys))}
    return torch.tensor([ids[k] for k in keys], device=device)


def sample_groups(problem: Problem) -> Tensor:
    """Sample id per row of ``problem``: the ids given to the attack (``groups=``), else rows
    bit-equal in ``y``, sampling mask, coil maps, clean reconstruction, ``x_true`` and
    ``target`` are one sample (:func:`groups_from_rows`)."""
    return problem.groups if problem.groups is not None else _data_groups(problem)


def _data_groups(problem: Problem) -> Tensor:
    """Rows bit-equal in every input of ``problem`` (and in the clean reconstruction)."""
    y, physics = problem.y, problem.physics
    rows = [y, sampling_mask(y, physics), getattr(physics, "coil_maps", None), problem.x_clean,
            problem.x_true, problem.target]
    return groups_from_rows(y.shape[0], rows, y.device)


def check_groups(groups: Any, b: int, device: Any = None) -> Tensor | None:
    """Validate ``groups=``: ``None`` or one id per row (ints, or any hashable ids such as a
    grid's sample ids); returns ``(B,)`` int ids counting from 0 in order of appearance."""
    if groups is None:
        return None
    values = groups.tolist() if isinstance(groups, Tensor) else list(groups) if not isinstance(groups, (str, bytes)) else None
    if values is None or len(values) != b:
        raise ValueError(f"groups: expected one sample id per row ({b}), got {describe(groups)}")
    try:
        ids = {k: n for n, k in enumerate(dict.fromkeys(values))}
    except TypeError as e:
        raise TypeError(f"groups: expected hashable sample ids (ints, strings), got {describe(groups)}") from e
    return torch.tensor([ids[v] for v in values], device=device)


def monotone_winners(problem: Problem) -> Tensor:
    """Row whose best perturbation each row returns under the monotone envelope, ``(B,)``.

    Row ``j``'s perturbation is admissible for row ``i`` when both rows hold the same sample
    (bit-equal ``y``, sampling mask, coil maps, clean reconstruction, ``x_true`` and
    ``target``) and ``j``'s ball lies inside ``i``'s: every budget unit of ``j`` is at most
    ``i``'s and one is smaller (rows of equal budget stay independent); which rows hold one
    sample is :func:`sample_groups` (the ids given to the attack, else bit-equal rows). Since
    ``y``, model and loss are then the same, ``j``'s objective is ``i``'s objective at that perturbation, so no
    model is called. A model that reconstructs equal rows differently (a sampler with per-row
    noise) gives unequal clean reconstructions, and its rows are not pooled.
    """
    y, loss = problem.y, problem.best_loss
    b = y.shape[0]
    own = torch.arange(b, device=y.device)
    budget = problem.threat.budget_unchecked(y)  # (B, U)
    if b == 1 or bool((budget == budget[:1]).all()):
        return own  # a single budget: nothing to pool
    group = _data_groups(problem)
    if problem.groups is not None:  # given ids split samples; equal inputs are still required,
        group = problem.groups * (int(group.max()) + 1) + group  # since only then j's objective is i's
    # inside[i, j]: j's ball is a strict subset of i's (per unit: per sample or per coil)
    inside = (budget[None] <= budget[:, None]).all(-1) & (budget[None] < budget[:, None]).any(-1)
    pool = inside & (group[None] == group[:, None])
    scores = loss[None].expand(b, b).masked_fill(~pool, -float("inf"))
    best, j = scores.max(dim=1)
    return torch.where(best > loss, j, own)


class Attack(ABC):
    """Base class of k-space attacks.

    An attack is called as ``attack(model, y, physics)`` for any reconstructor
    ``model(y, physics) -> x``. It puts an ``nn.Module`` model in eval mode and restores its
    mode afterwards, never changes ``y`` or the model's parameters, and returns an
    :class:`~kspace_attacks.AttackResult`.

    :param kspace_attacks.ThreatModel threat: the allowed perturbations.
    :param loss: objective to maximise, ``loss(x_adv, x_clean, x_true, target) -> (B,)``, or
        a name (``"deviation"``, ``"ssim"``, ``"ground_truth"``, ``"targeted"``); default
        :class:`~kspace_attacks.losses.ReconDeviation`.
    :param int seed: seed of the attack's random draws (random starts, noise).
    :param int eot: model calls averaged per evaluation (expectation over transformation, for
        stochastic models); the clean reference is the mean of ``eot`` clean reconstructions.
        Multiplies the cost: ``eot`` gradient evaluations per step.
    :param bool monotone: when the batch holds one sample at several budgets (rows with equal
        ``y``, mask and clean reconstruction), each row also takes the best perturbation found
        for a smaller budget of the same sample if it is worse for the model (the worst case
        is then non-decreasing in the budget); no extra model calls. The budget each returned
        perturbation was found for is :attr:`AttackResult.source_eps`.
    """

    #: The attack's one name, shared by sweep configs, records, the pytest plugin and the CLI.
    name: str = ""
    #: Constructor argument that sets the number of gradient evaluations (None: fixed cost).
    steps_param: str | None = None

    def __init__(
        self,
        threat: ThreatModel,
        loss: Loss | str | None = None,
        seed: int = 0,
        eot: int = 1,
        monotone: bool = True,
    ) -> None:
        if not isinstance(threat, ThreatModel):
            raise TypeError(
                f"threat: expected a ThreatModel such as KSpaceL2(eps=0.05), got {describe(threat)}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {describe(seed)}")
        if not isinstance(monotone, bool):
            raise TypeError(f"monotone: expected a bool, got {describe(monotone)}")
        self.threat = threat
        self.loss = resolve_loss(loss)
        self.seed = seed
        self.eot = check_positive_int("eot", eot)
        self.monotone = monotone

    def __call__(
        self,
        model: Reconstructor,
        y: Tensor,
        physics: Any,
        x_true: Tensor | None = None,
        target: Tensor | None = None,
        x_clean: Tensor | None = None,
        generator: torch.Generator | None = None,
        groups: Tensor | Sequence[Any] | None = None,
    ) -> AttackResult:
        """Attack ``model`` at measurements ``y``.

        :param model: reconstructor, ``model(y, physics) -> x``.
        :param torch.Tensor y: clean k-space in deepinv layout (not modified).
        :param physics: the deepinv physics of ``y`` (carries the sampling mask).
        :param torch.Tensor|None x_true: ground truth, for losses that need it.
        :param torch.Tensor|None target: target image, for targeted losses.
        :param torch.Tensor|None x_clean: the clean reconstruction if already computed.
        :param torch.Generator|None generator: overrides the attack's ``seed``.
        :param groups: the sample id of every row (e.g. a measurement grid's ids, one per
            budget x sample): rows with one id are one sample at several budgets (monotone
            envelope, warm starts). ``None``: rows bit-equal in every input are one sample.
        """
        y = self._check_call(model, y, physics, x_true, target, x_clean)
        groups = check_groups(groups, y.shape[0], y.device)
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        start = time.perf_counter()
        # every model call of the attack alike (see kspace_attacks._kernels)
        with frozen_eval(model), narrow_conv_guard(model):
            forward_evals = 0
            if x_clean is None:
                x_clean = self._clean(model, y, physics)
                forward_evals = self.eot
            x_clean = check_image("model(y, physics)", x_clean).detach()
            problem = Problem(
                model, y, physics, self.threat, self.loss, x_clean, x_true, target, eot=self.eot,
                groups=groups,
            )
            problem.forward_evals += forward_evals
            self._run(problem, generator)
        return self._result(problem, start)

    def _check_call(
        self, model: Any, y: Any, physics: Any, x_true: Any, target: Any, x_clean: Any
    ) -> Tensor:
        """Validate the call's inputs; returns ``y`` detached."""
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
        return y

    def _clean(self, model: Reconstructor, y: Tensor, physics: Any) -> Tensor:
        """The clean reference: the mean of ``eot`` clean reconstructions (one if eot = 1)."""
        with torch.no_grad():
            x = model(y, physics)
            for _ in range(self.eot - 1):
                x = x + model(y, physics)
        return x if self.eot == 1 else x / self.eot

    def _result(self, problem: Problem, start: float) -> AttackResult:
        """Package the best iterates (after the monotone envelope, if on) as a result."""
        y, physics, threat = problem.y, problem.physics, self.threat
        eps = threat.eps_per_sample(y)
        delta, x_adv, loss, source_eps = problem.best_delta, problem.best_x, problem.best_loss, None
        if self.monotone:
            winner = monotone_winners(problem)
            delta, x_adv, loss, source_eps = delta[winner], x_adv[winner], loss[winner], eps[winner]
        history = torch.stack(problem.history) if problem.history else None
        y_adv, physics_adv = threat.corrupt(y, delta, physics)
        return AttackResult(
            delta=delta,
            y_adv=y_adv.detach(),
            x_clean=problem.x_clean,
            x_adv=x_adv,
            loss=loss,
            eps=eps,
            ratio=threat.ratio(delta, y),
            grad_evals=problem.grad_evals,
            forward_evals=problem.forward_evals,
            seconds=time.perf_counter() - start,
            history=history,
            attack=repr(self),
            source_eps=source_eps,
            start_losses=torch.stack(problem.start_losses, dim=1) if problem.start_losses else None,
            physics_adv=None if physics_adv is physics else physics_adv,
            unreliable=None if problem.unreliable is None else
            (problem.unreliable[winner] if self.monotone else problem.unreliable),
        )

    @abstractmethod
    def _run(self, problem: Problem, generator: torch.Generator) -> None:
        """Search for the worst perturbation; report iterates through ``problem``."""

    def _params(self) -> dict[str, Any]:
        """Hyperparameters shown by ``repr`` (beyond threat, loss and seed)."""
        return {}

    def _common(self) -> dict[str, Any]:
        """Arguments every attack takes (after its own in ``repr`` and :meth:`replace`)."""
        return {"loss": self.loss, "seed": self.seed, "eot": self.eot, "monotone": self.monotone}

    def _init_args(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this attack (defaults that depend on other
        arguments, like PGD's step size, are given as ``None`` so that they follow them)."""
        return self._params()

    def replace(self, **changes: Any) -> "Attack":
        """A new attack of the same class with some arguments changed (validated anew).

        ``eps=`` is a shortcut for ``threat=self.threat.with_eps(eps)``; ``steps=`` sets the
        argument named by :attr:`steps_param` (ignored by attacks of fixed cost).

        >>> import kspace_attacks as ka
        >>> ka.PGD(ka.KSpaceL2(eps=0.05), steps=10).replace(eps=0.02, steps=5).threat.eps
        0.02
        """
        args = {"threat": self.threat, **self._init_args(), **self._common()}
        if "eps" in changes:
            threat = changes.pop("threat", args["threat"])
            args["threat"] = threat.with_eps(changes.pop("eps"))
        if "steps" in changes and self.steps_param != "steps":
            steps = changes.pop("steps")
            if self.steps_param is not None:
                changes[self.steps_param] = steps
        unknown = sorted(set(changes) - set(args))
        if unknown:
            raise TypeError(
                f"replace: {type(self).__name__} has no argument(s) {unknown}; "
                f"expected some of {sorted(args) + ['eps', 'steps']}"
            )
        return type(self)(**{**args, **changes})

    def with_eps(self, eps: float | Tensor) -> "Attack":
        """A copy with budget ``eps`` (float or per-sample ``(B,)``): ``replace(eps=eps)``."""
        return self.replace(eps=eps)

    @property
    def max_grad_evals(self) -> int:
        """Gradient evaluations one call may use at most (0 for gradient-free attacks)."""
        return 0

    def __repr__(self) -> str:
        params = {"threat": self.threat, **self._params(), **self._common()}
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({inner})"

