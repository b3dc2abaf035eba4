"""A worst-case search under a fixed budget: diverse starts, short APGD runs, successive halving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_nonneg_float, check_positive_int
from ..losses import GroundTruthDeviation, Loss, ReconDeviation, TargetedLoss, resolve_loss
from ..threat import ThreatModel
from .apgd import APGD
from .base import Attack, Problem, sample_groups
from .starts import curvature_directions, spectral_directions, warm_start

__all__ = ["WorstCase", "PortfolioPlan", "SEARCH_PRESETS"]


@dataclass(frozen=True)
class PortfolioPlan:
    """How :class:`WorstCase` spends its budget (all counts per row, in model calls).

    :param int spectral: singular vectors (each gives two starts, ``+v`` and ``-v``).
    :param int spectral_iterations: power iterations computing them.
    :param int random_starts: starts on the sphere in random directions.
    :param tuple rounds: steps of the APGD run each candidate gets in each round.
    :param tuple keep: candidates per row in each round: all starts in the first, then the best
        ones of the previous round (successive halving).
    :param bool warm: after the first round, candidates warm-started from the next smaller
        budget of the same sample (one forward evaluation each) join the halving.
    :param int curvature: eigenvectors of the objective's Hessian (each gives two starts), for
        objectives that are flat at the clean point
        (:func:`~kspace_attacks.attacks.starts.curvature_directions`).
    :param int curvature_iterations: power iterations computing them (two evaluations each).
    """

    spectral: int
    spectral_iterations: int
    random_starts: int
    rounds: tuple[int, ...]
    keep: tuple[int, ...]
    warm: bool = True
    curvature: int = 0
    curvature_iterations: int = 0

    @property
    def starts(self) -> int:
        return 2 * self.spectral + 2 * self.curvature + self.random_starts

    @property
    def start_cost(self) -> int:
        """Gradient evaluations the spectral and curvature starts cost per row (``eot`` 1)."""
        return self.spectral * self.spectral_iterations + 2 * self.curvature * self.curvature_iterations

    def cost(self, eot: int = 1) -> int:
        """Gradient evaluations per row (model calls: times ``eot``)."""
        return eot * (self.start_cost + sum(n * s for n, s in zip(self.keep, self.rounds, strict=True)))


#: Power iterations of the curvature start (two gradient evaluations each) when the objective is
#: flat at the clean point, and the smallest budget (per row, model calls) that affords it.
CURVATURE_ITERATIONS, CURVATURE_MIN_BUDGET = 5, 40


def plan_for(budget: int, preset: str, eot: int = 1, flat: bool = False) -> PortfolioPlan:
    """The portfolio that fits ``budget`` gradient evaluations per row for a preset.

    The budget is split as: the spectral start (``spectral * spectral_iterations``), then the
    preset's rounds, each a share of what is left (``shares``: the first round's candidates are
    all the starts, later rounds keep the preset's number of best candidates per row); the last
    round takes the remainder, so that the whole budget is used. Small budgets drop random
    starts first, then singular vectors, until every candidate of every round gets 2 steps.

    With ``flat`` (an objective whose gradient vanishes at the clean point, such as 1 - SSIM)
    the top eigenvector of its Hessian joins the starts with both signs
    (:data:`CURVATURE_ITERATIONS` power iterations) when the budget is at least
    :data:`CURVATURE_MIN_BUDGET`.

    >>> plan_for(100, "default")
    PortfolioPlan(spectral=1, spectral_iterations=10, random_starts=2, rounds=(4, 74), keep=(4, 1), warm=True, curvature=0, curvature_iterations=0)
    >>> plan_for(100, "default", flat=True).starts, plan_for(100, "default", flat=True).cost()
    (6, 100)
    """
    spec = SEARCH_PRESETS[check_choice("preset", preset, tuple(SEARCH_PRESETS))]
    calls = check_positive_int("budget", budget) // check_positive_int("eot", eot)
    spectral, iters, randoms = spec["spectral"], spec["spectral_iterations"], spec["random_starts"]
    shares, keeps = spec["shares"], spec["keep"]
    curv = 1 if flat and calls >= CURVATURE_MIN_BUDGET else 0
    curv_iters = CURVATURE_ITERATIONS if curv else 0
    while True:
        starts = 2 * spectral + 2 * curv + randoms
        left = calls - spectral * iters - 2 * curv * curv_iters
        keep = [starts] + [min(k, starts) for k in keeps]
        pairs = [(n, f) for n, f in zip(keep, shares, strict=True)]
        # merge rounds that keep as many candidates as the one before (tiny portfolios)
        merged: list[list[float]] = []
        for n, f in pairs:
            if merged and merged[-1][0] == n:
                merged[-1][1] += f
            else:
                merged.append([n, f])
        rounds = [int(max(left, 0) * f) // n for n, f in merged]
        if starts == 1 or (left > 0 and min(rounds) >= 2):
            break
        if randoms > 0:
            randoms -= 1
        else:
            spectral -= 1
            randoms = 1 if spectral == 0 else 0
    counts = [int(n) for n, _ in merged]
    used = spectral * iters + 2 * curv * curv_iters + sum(n * r for n, r in zip(counts[:-1], rounds[:-1], strict=True))
    rounds[-1] = (calls - used) // counts[-1]  # the last round takes the remainder
    return PortfolioPlan(spectral, iters, randoms, tuple(rounds), tuple(counts), warm=spec["warm"],
                         curvature=curv, curvature_iterations=curv_iters)


#: Portfolio presets. ``default``: the top singular vector with both signs and 2 random starts,
#: 4 steps each, then one APGD run from the best candidate with the remaining ~75 % of the
#: budget (APGD's step-halving schedule needs one long run to refine; many short runs do not
#: refine). ``strong``: two singular vectors and 4 random starts, the best 2 continued, a
#: second objective's solution as a candidate (AutoAttack's "plus" idea), for final
#: evaluations. The shares were chosen on ResUnet++ at eps 0.08 (the hardest measured case;
#: ``benchmarks/bench_strength.py`` measures every surrogate).
SEARCH_PRESETS: dict[str, dict[str, Any]] = {
    "default": {"spectral": 1, "spectral_iterations": 10, "random_starts": 2, "warm": True,
                "shares": (0.2, 0.8), "keep": (1,), "initial_step": 2.0,
                "budget": 100, "cross_objective": None},
    "strong": {"spectral": 2, "spectral_iterations": 10, "random_starts": 4, "warm": True,
               "shares": (0.2, 0.2, 0.6), "keep": (2, 1), "initial_step": 2.0,
               "budget": 500, "cross_objective": "auto"},
}


class WorstCase(Attack):
    r"""The package's worst-case search: a portfolio of diverse starts under a fixed budget.

    The objective has several local maxima (on the shipped ResUnet++ at eps 0.08 two basins
    per slice whose values differ by 2x), so where one APGD run ends depends on its random
    start. This attack spends ``budget`` gradient evaluations per row on

    1. diverse starts: the top singular vectors of the model's Jacobian at ``y`` with both
       signs (the linearised worst case, :func:`~kspace_attacks.attacks.starts.spectral_directions`)
       and random directions on the sphere;
    2. successive halving: every start gets a short :class:`APGD` run, then each row keeps its
       better half of the candidates (after the first round joined by the solution of the
       next smaller budget of the same sample, scaled onto the larger ball) and continues them
       from their best point, until one candidate takes the rest of the budget;
    3. (preset ``"strong"``) solutions of a second objective (SSIM for the deviation objective
       and vice versa) join the first round as candidates.

    The best perturbation per row over everything is returned; :attr:`AttackResult.start_losses`
    holds the first round's best per start, so ``restart_spread`` (``(best - median) / best``
    over starts) shows how settled the worst case is.

    :param kspace_attacks.ThreatModel threat: the allowed perturbations.
    :param int budget: gradient evaluations per row (model calls, ``eot`` per step with EOT);
        :attr:`AttackResult.grad_evals` never exceeds it. Default: the preset's (100 for
        ``"default"``, 500 for ``"strong"``).
    :param str preset: ``"default"`` or ``"strong"``.
    :param loss: objective to maximise (default: deviation from the clean reconstruction).
    :param int seed: seed of the random starts and of the power iteration's first vectors.
    :param int eot: model calls averaged per gradient (stochastic models).
    :param bool monotone: reuse smaller budgets' perturbations of the same sample when worse.
    :param int|None max_budget: make the search adaptive: after the planned ``budget`` it
        keeps running independent restarts (each of the plan's last-round length) while a row's
        best has not been reached by two runs within ``tolerance``, up to ``max_budget``
        gradient evaluations per row; the rows still unsettled are flagged
        :attr:`AttackResult.unreliable` (their worst case rests on one run). ``None``: the fixed
        budget, not assessed.
    :param float tolerance: relative agreement of two runs that settles a row.
    :param bool|None curvature: add the top eigenvector of the objective's Hessian (both
        signs) to the starts, for objectives that are flat at the clean point (1 - SSIM, user
        losses). Off by default (``None``): ``benchmarks/results/curvature_start.md`` measures
        it on the SSIM objective at budget 100: at eps 0.02 it cuts the spread over seeds from
        18-20 % to 1.5 % on i-RIM and ResUnet++, at eps 0.05 it helps ResUnet++ (worst slice
        0.88 -> 0.96) and hurts i-RIM (0.94 -> 0.86), and at eps 0.08 it hurts both (the
        starts take budget from the refinement).

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
        >>> y = physics(torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0)))
        >>> model = lambda y, physics: physics.A_adjoint(y)  # zero-filled reconstruction
        >>> res = ka.WorstCase(ka.KSpaceL2(eps=0.05), budget=40)(model, y, physics)
        >>> res.grad_evals <= 40, res.n_starts
        (True, 3)
        >>> bool((res.ratio <= 0.05 + 1e-6).all())
        True
    """

    name = "worst_case"
    steps_param = "budget"

    def __init__(
        self,
        threat: ThreatModel,
        budget: int | None = None,
        preset: str = "default",
        loss: Loss | str | None = None,
        seed: int = 0,
        eot: int = 1,
        monotone: bool = True,
        max_budget: int | None = None,
        tolerance: float = 0.05,
        curvature: bool | None = None,
    ) -> None:
        super().__init__(threat, loss, seed, eot, monotone)
        self.preset = check_choice("preset", preset, tuple(SEARCH_PRESETS))
        self.budget = check_positive_int(
            "budget", SEARCH_PRESETS[self.preset]["budget"] if budget is None else budget)
        minimum = 2 * self.eot
        if self.budget < minimum:
            raise ValueError(f"budget: expected at least {minimum} gradient evaluations "
                             f"(2 steps x eot {self.eot}), got {self.budget}")
        self._cross = self._cross_loss(SEARCH_PRESETS[self.preset]["cross_objective"])
        # the second objective's run gets a tenth of the budget (none below 20 evaluations)
        self._cross_steps = self.budget // 10 // self.eot if self._cross is not None else 0
        if self._cross_steps < 2:
            self._cross, self._cross_steps = None, 0
        if curvature is not None and not isinstance(curvature, bool):
            raise TypeError(f"curvature: expected None (off) or a bool, got {curvature!r}")
        self.curvature = curvature
        if curvature and isinstance(self.loss, (ReconDeviation, GroundTruthDeviation, TargetedLoss)):
            raise ValueError(f"curvature: the {type(self.loss).__name__} objective is not flat at the clean point "
                             "(the deviation's curvature is its Jacobian start); use it for SSIM or your own loss")
        self.plan = plan_for(self.budget - self._cross_steps * self.eot, self.preset, self.eot,
                             flat=bool(curvature))
        if max_budget is not None:
            max_budget = check_positive_int("max_budget", max_budget)
            if max_budget < self.budget:
                raise ValueError(f"max_budget: expected at least budget ({self.budget}), got {max_budget}")
        self.max_budget = max_budget
        self.tolerance = check_nonneg_float("tolerance", tolerance)

    def _cross_loss(self, spec: str | None) -> Loss | None:
        """The second objective of the strong preset (SSIM <-> deviation), if any."""
        if spec is None:
            return None
        own = type(self.loss).__name__
        other = {"ReconDeviation": "ssim", "SSIMDeviation": "deviation"}.get(own)
        return None if other is None else resolve_loss(other)

    # ------------------------------------------------------------------------------ search
    def _run(self, problem: Problem, generator: torch.Generator) -> None:
        plan, y, physics, threat = self.plan, problem.y, problem.physics, self.threat
        starts: list[Tensor | None] = []
        scale = threat.step_scale(y)
        if plan.spectral:
            dirs, _ = spectral_directions(problem, plan.spectral, plan.spectral_iterations, generator)
            for d in dirs:
                starts += [threat.project(d * scale, y, physics), threat.project(-d * scale, y, physics)]
        if plan.curvature:  # the flat objective's own worst direction (its Hessian's top eigenvector)
            dirs, _ = curvature_directions(problem, plan.curvature, plan.curvature_iterations, generator)
            for d in dirs:
                starts += [threat.project(d * scale, y, physics), threat.project(-d * scale, y, physics)]
        starts += [None] * plan.random_starts
        # round 1: every start
        cand_loss, cand_delta = [], []
        runner = self._runner(plan.rounds[0])
        for start in starts:
            problem.begin_start()
            runner.run_restart(problem, generator, start if start is not None else
                               threat.sphere(y, physics, generator=generator))
            loss, delta = problem.end_start()
            cand_loss.append(loss)
            cand_delta.append(delta)
        losses, deltas = torch.stack(cand_loss), torch.stack(cand_delta)  # (S, B), (S, B, ...)
        if plan.warm and len(plan.rounds) > 1:
            losses, deltas = self._add_warm(problem, losses, deltas)
        if self._cross is not None:
            losses, deltas = self._add_cross(problem, generator, losses, deltas)
        # later rounds: each row continues its best candidates, halving their number
        first = SEARCH_PRESETS[self.preset]["initial_step"]
        for k, steps in enumerate(plan.rounds[1:], start=1):
            keep = min(plan.keep[k], losses.shape[0])
            order = losses.argsort(dim=0, descending=True)[:keep]  # (keep, B)
            runner = self._runner(steps)
            new_loss, new_delta = [], []
            for rank in range(keep):
                start = _gather_rows(deltas, order[rank])
                problem.begin_start()
                runner.run_restart(problem, generator, start, initial_step=first)
                loss, delta = problem.end_start(keep=False)
                new_loss.append(loss)
                new_delta.append(delta)
            losses, deltas = torch.stack(new_loss), torch.stack(new_delta)
        if self.max_budget is not None:
            problem.unreliable = self._settle(problem, generator)

    def _settle(self, problem: Problem, generator: torch.Generator) -> Tensor:
        """Independent runs until two reach the row's best (within ``tolerance``) or the cap.

        The planned search is one run; each extra run starts on the sphere in a fresh random
        direction and takes the plan's last-round length. A row is *settled* when at least two
        runs end within ``tolerance`` (relative) of its best; the rows that are not when
        ``max_budget`` is spent are returned as unreliable, ``(B,)`` bool.
        """
        steps = self.plan.rounds[-1]
        runs = [problem.best_loss.clone()]
        runner = self._runner(steps)

        def settled() -> Tensor:
            best = torch.stack(runs).amax(0)
            near = torch.stack(runs) >= best - self.tolerance * best.abs()
            return near.sum(0) >= 2

        while problem.grad_evals + steps * self.eot <= self.max_budget and not bool(settled().all()):
            problem.begin_start()
            runner.run_restart(problem, generator, self.threat.sphere(problem.y, problem.physics, generator))
            loss, _ = problem.end_start(keep=False)
            runs.append(loss)
        return ~settled()

    def _runner(self, steps: int) -> APGD:
        return APGD(self.threat, steps=steps, loss=self.loss, seed=self.seed, eot=self.eot,
                    monotone=False)

    def _add_warm(self, problem: Problem, losses: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
        """Append, per row, the best candidate of its next smaller budget scaled onto its ball."""
        best = _gather_rows(deltas, losses.argmax(dim=0))
        warm = warm_start(best, problem.y, problem.physics, self.threat, sample_groups(problem))
        if torch.equal(warm, best):
            return losses, deltas  # one budget per sample: nothing to warm-start from
        value, _, _ = problem.evaluate(warm, grad=False)
        return torch.cat([losses, value[None]]), torch.cat([deltas, warm[None]])

    def _add_cross(self, problem: Problem, generator: torch.Generator, losses: Tensor,
                   deltas: Tensor) -> tuple[Tensor, Tensor]:
        """Append the second objective's worst case, started from each row's best so far."""
        other = APGD(self.threat, steps=self._cross_steps, loss=self._cross, seed=self.seed,
                     eot=self.eot, monotone=False)
        sub = Problem(problem.model, problem.y, problem.physics, self.threat, self._cross,
                      problem.x_clean, problem.x_true, problem.target, eot=self.eot, groups=problem.groups)
        other.run_restart(sub, generator, _gather_rows(deltas, losses.argmax(dim=0)))
        problem.grad_evals += sub.grad_evals
        problem.forward_evals += sub.forward_evals
        value, _, _ = problem.evaluate(sub.best_delta, grad=False)  # in this attack's objective
        return torch.cat([losses, value[None]]), torch.cat([deltas, sub.best_delta[None]])

    # ------------------------------------------------------------------------------ bookkeeping
    @property
    def max_grad_evals(self) -> int:
        planned = self.plan.cost(self.eot) + self._cross_steps * self.eot
        return planned if self.max_budget is None else max(planned, self.max_budget)

    def _params(self) -> dict[str, Any]:
        adaptive = {} if self.max_budget is None else {"max_budget": self.max_budget, "tolerance": self.tolerance}
        chosen = {} if self.curvature is None else {"curvature": self.curvature}
        return {"budget": self.budget, "preset": self.preset, **adaptive, **chosen}


def _gather_rows(stack: Tensor, index: Tensor) -> Tensor:
    """``stack[index[b], b]`` for every row ``b`` of a ``(S, B, ...)`` stack."""
    idx = index.reshape(1, -1, *([1] * (stack.dim() - 2))).expand(1, *stack.shape[1:])
    return torch.gather(stack, 0, idx)[0]
