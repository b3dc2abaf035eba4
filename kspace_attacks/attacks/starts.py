"""Where an iterative attack starts: random, on the sphere, spectral, warm or given.

The worst case an iterative attack finds depends on its start: on the shipped ResUnet++ at eps
0.08 the deviation objective has (at least) two basins per slice, and a uniform random start
lands in the weaker one about half of the time. Diverse starts make the search less dependent
on luck:

- ``"uniform"``: uniform in the ball (in high dimension: nearly on the sphere, random direction);
- ``"sphere"``: a random direction scaled to the whole budget;
- ``"spectral"``: the top right singular vectors of the model's Jacobian at ``y`` (power
  iteration, :func:`spectral_directions`), scaled to the budget: the worst case of the
  linearised model, deterministic given the seed of the iteration's first vector; restart
  ``r`` takes vector ``r // 2`` with sign ``(-1)^r`` (both signs: the model is not linear);
- ``"zero"``: ``delta = 0`` (only useful for objectives whose gradient does not vanish there);
- a tensor: a given perturbation (e.g. another objective's solution), projected onto the ball;
- :func:`warm_start`: a batch's eps grid, each budget starting from the solution of the next
  smaller budget of the same sample, scaled onto its larger ball.

>>> from kspace_attacks.attacks.starts import START_KINDS
>>> START_KINDS
('uniform', 'sphere', 'spectral', 'zero')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._checks import check_positive_int, describe

if TYPE_CHECKING:
    from .base import Problem

__all__ = ["START_KINDS", "check_start", "spectral_directions", "curvature_directions", "start_points",
           "warm_start", "spectral_cost"]

#: Names of the start kinds an iterative attack accepts as ``start=`` (or a tensor).
START_KINDS = ("uniform", "sphere", "spectral", "zero")

# Finite-difference radius of the Jacobian-vector product, in budgets: small enough that the
# model is linear at this scale, large enough for float32 differences to carry ~4 digits.
_FD_RADIUS = 1e-3
# For stochastic models (eot > 1) the difference divides the model's own output noise by the
# radius: a larger radius keeps that noise small against the signal (a secant, not a tangent).
_FD_RADIUS_STOCHASTIC = 0.1
# Radius of the Hessian's central differences, in budgets: SSIM's gradient near the clean point
# is small, so a tangent at 1e-3 budgets would be float32 noise; a secant over a twentieth of
# the budget measures the curvature at the scale the search moves on.
_CURVATURE_RADIUS = 0.05


def check_start(start: Any) -> str | Tensor:
    """Validate ``start=``: a name of :data:`START_KINDS` or a perturbation tensor."""
    if isinstance(start, Tensor):
        if start.is_complex() or not start.is_floating_point():
            raise TypeError(f"start: expected a real floating-point perturbation tensor, got {describe(start)}")
        return start.detach()
    if isinstance(start, str) and start in START_KINDS:
        return start
    raise ValueError(f"start: expected one of {list(START_KINDS)} or a perturbation tensor, got {describe(start)}")


def spectral_cost(start: str | Tensor, restarts: int, iterations: int, eot: int = 1) -> int:
    """Gradient evaluations the ``"spectral"`` start adds to an attack of ``restarts`` restarts."""
    if not (isinstance(start, str) and start == "spectral"):
        return 0
    return iterations * ((restarts + 1) // 2) * eot


def _jtj(problem: "Problem", v: Tensor) -> tuple[Tensor, Tensor]:
    """``J^T J v`` (on the support) and ``||J v||`` per sample for unit directions ``v``.

    ``J v`` is a forward difference at ``_FD_RADIUS`` budgets from the clean reconstruction,
    ``J^T u`` an exact vector-Jacobian product; together one gradient evaluation per model
    call (``eot`` calls averaged), counted in ``problem.grad_evals``. With ``eot > 1`` (a
    stochastic model) the radius is ``_FD_RADIUS_STOCHASTIC``: the difference then also holds
    the model's noise, divided by the radius, so a tangent would drown in it; the secant at a
    tenth of the budget is an approximate linearisation (its gain is biased up by the noise).
    """
    y, physics, threat = problem.y, problem.physics, problem.threat
    radius = _FD_RADIUS if problem.eot == 1 else _FD_RADIUS_STOCHASTIC
    h = radius * threat.step_scale(y)
    total, norm = threat.zeros(y), torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
    for _ in range(problem.eot):
        d = (h * v).detach().requires_grad_(True)
        with torch.enable_grad():
            x = problem.model(*threat.corrupt(y, d, physics))
            u = (x - problem.x_clean).detach()
            (g,) = torch.autograd.grad((x * u).sum(), d)
        problem.grad_evals += 1
        # d = h v and u = J h v, so g = J^T J (h v): divide by h (per sample or coil)
        total = total + g / h.clamp_min(1e-30)
        norm = norm + u.flatten(1).norm(dim=1)
    support = problem.threat.support_mask(y, physics)
    # ||J v|| at the whole budget: ||u|| / (h / budget) = ||u|| / radius
    return total * support / problem.eot, norm / problem.eot / radius


def spectral_directions(
    problem: "Problem", count: int = 1, iterations: int = 4, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    r"""Top ``count`` right singular vectors of the model's Jacobian at ``y``, per sample.

    Subspace (block power) iteration on :math:`J^\top J` restricted to the threat model's
    support, orthonormalised per sample after every iteration and sorted by
    :math:`\|J v\|`. For the deviation objective :math:`\|f(y+\delta) - f(y)\|^2
    \approx \|J \delta\|^2` the first vector times the budget is the worst case of the
    linearised model (exactly the optimum on a linear model, l2 ball, per-sample budget).

    Cost: ``count * iterations`` gradient evaluations (``eot`` model calls each).

    :param Problem problem: the attack problem (model, ``y``, physics, threat, clean reference).
    :param int count: singular vectors per sample.
    :param int iterations: power iterations.
    :param torch.Generator|None generator: draws the first block of vectors.
    :return: ``(directions, gains)``: directions ``(count, *y.shape)`` scaled to unit norm in
        the threat model's norm per budget unit (so ``threat.step_scale(y) * d`` uses the whole
        budget), and ``(count, B)`` linearised deviations :math:`\|J\, b\, v\|` at the budget.
    """
    count = check_positive_int("count", count)
    iterations = check_positive_int("iterations", iterations)
    y, physics, threat = problem.y, problem.physics, problem.threat
    support = threat.support_mask(y, physics)
    from ..threat import draw  # the package's device-independent draws

    shape = threat.zeros(y).shape  # the perturbation's own space
    vs = draw("randn", (count, *shape), generator).to(device=y.device, dtype=y.dtype) * support
    gains = torch.zeros(count, y.shape[0], dtype=y.dtype, device=y.device)
    for _ in range(iterations):
        vs = _orthonormal(vs)
        out = [_jtj(problem, v) for v in vs]
        vs = torch.stack([w for w, _ in out])
        gains = torch.stack([n for _, n in out])
    # Rayleigh-quotient order of the last block (the block of vectors that produced ``vs``).
    vs = _orthonormal(vs)
    order = gains.argsort(dim=0, descending=True)  # (count, B)
    idx = order.reshape(count, y.shape[0], *([1] * (len(shape) - 1))).expand_as(vs)
    vs = torch.gather(vs, 0, idx)
    gains = torch.gather(gains, 0, order)
    # A deterministic sign: the entry of largest magnitude is positive.
    flat = vs.flatten(2)
    pick = flat.abs().argmax(dim=2, keepdim=True)
    sign = torch.sign(torch.gather(flat, 2, pick)).clamp_min(0) * 2 - 1
    vs = vs * sign.reshape(count, y.shape[0], *([1] * (len(shape) - 1)))
    return torch.stack([threat.steepest_direction(v) for v in vs]), gains


def _hvp(problem: "Problem", v: Tensor, h: Tensor) -> Tensor:
    """Hessian of the objective times ``v`` at ``delta = 0`` (on the support): the central
    difference of gradients at ``+- h v`` (exact for a quadratic objective; two gradient
    evaluations, which also join the search's candidates)."""
    _, g_plus, _ = problem.evaluate(h * v)
    _, g_minus, _ = problem.evaluate(-h * v)
    return (g_plus - g_minus) / (2 * h.clamp_min(1e-30))


def curvature_directions(
    problem: "Problem", count: int = 1, iterations: int = 4, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    r"""Top ``count`` eigenvectors of the objective's Hessian at ``delta = 0``, per sample.

    For objectives that are flat at the clean point (1 - SSIM, and any loss whose gradient
    vanishes there) the first-order search has nothing to follow and the Jacobian's singular
    vectors (:func:`spectral_directions`) describe the deviation, not this objective's
    curvature: the worst case of the objective's quadratic model
    :math:`\tfrac12 \delta^\top H \delta` is the top eigenvector of :math:`H`. Block power
    iteration on Hessian-vector products (central differences of gradients at
    ``_CURVATURE_RADIUS`` budgets), restricted to the threat model's support, orthonormalised
    per sample; sorted by the Rayleigh quotient.

    Cost: ``2 * count * iterations`` gradient evaluations (``eot`` model calls each).

    :return: ``(directions, gains)``: directions ``(count, *shape)`` of unit norm in the threat
        model's norm, and ``(count, B)`` Rayleigh quotients :math:`v^\top H v` (unit ``v``).
    """
    count = check_positive_int("count", count)
    iterations = check_positive_int("iterations", iterations)
    y, physics, threat = problem.y, problem.physics, problem.threat
    support = threat.support_mask(y, physics)
    from ..threat import draw

    shape = threat.zeros(y).shape
    h = _CURVATURE_RADIUS * threat.step_scale(y)
    vs = draw("randn", (count, *shape), generator).to(device=y.device, dtype=y.dtype) * support
    gains = torch.zeros(count, y.shape[0], dtype=y.dtype, device=y.device)
    for _ in range(iterations):
        vs = _orthonormal(vs)
        hvs = torch.stack([_hvp(problem, v, h) * support for v in vs])
        gains = (hvs * vs).flatten(2).sum(2)  # Rayleigh quotients of the unit vectors
        vs = hvs
    vs = _orthonormal(vs)
    order = gains.argsort(dim=0, descending=True)
    idx = order.reshape(count, y.shape[0], *([1] * (len(shape) - 1))).expand_as(vs)
    vs, gains = torch.gather(vs, 0, idx), torch.gather(gains, 0, order)
    # unit size in the threat's own norm (per budget unit), so that ``step_scale * d`` is the budget
    unit = [v / threat.broadcast(threat.unit_norm(v).clamp_min(1e-30), v) for v in vs]
    return torch.stack(unit), gains


def _orthonormal(vs: Tensor) -> Tensor:
    """Orthonormalise ``count`` vectors per sample (QR on the flattened entries)."""
    count, b = vs.shape[:2]
    flat = vs.flatten(2).permute(1, 2, 0)  # (B, n, count)
    q, r = torch.linalg.qr(flat.double())
    # QR's sign convention is arbitrary: keep each vector's orientation (diag(R) > 0).
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).clamp_min(0).mul(2).sub(1)[:, None, :]
    return q.to(vs.dtype).permute(2, 0, 1).reshape(vs.shape)


def start_points(
    start: str | Tensor,
    problem: "Problem",
    restarts: int,
    generator: torch.Generator,
    iterations: int = 4,
) -> list[Tensor | None]:
    """The start of every restart (``None``: draw it when the restart begins).

    Random kinds return ``None`` so that each restart draws from ``generator`` when it begins
    (the draws of restart ``r`` do not depend on how many steps earlier restarts took);
    ``"spectral"`` computes ``ceil(restarts / 2)`` singular vectors up front; a tensor is the
    start of every restart.
    """
    y, physics, threat = problem.y, problem.physics, problem.threat
    if isinstance(start, Tensor):
        shape = threat.zeros(y).shape
        if start.shape != shape:
            raise ValueError(f"start: expected a perturbation of shape {tuple(shape)} (the threat model's), "
                             f"got {tuple(start.shape)}")
        return [threat.project(start.to(device=y.device, dtype=y.dtype), y, physics)] * restarts
    if start == "zero":
        return [threat.zeros(y)] * restarts
    if start == "spectral":
        dirs, _ = spectral_directions(problem, (restarts + 1) // 2, iterations, generator)
        scale = threat.step_scale(y)
        return [threat.project((-1) ** r * dirs[r // 2] * scale, y, physics) for r in range(restarts)]
    return [None] * restarts


def random_start(kind: str | Tensor, problem: "Problem", generator: torch.Generator) -> Tensor:
    """Draw a ``"uniform"`` or ``"sphere"`` start (used for restarts whose start is ``None``)."""
    y, physics, threat = problem.y, problem.physics, problem.threat
    if kind == "sphere":
        return threat.sphere(y, physics, generator=generator)
    return threat.random(y, physics, generator=generator)


def warm_start(deltas: Tensor, y: Tensor, physics: Any, threat: Any, groups: Tensor | None = None) -> Tensor:
    """Each row starts from the perturbation of the next smaller budget of its sample.

    For a batch holding samples at several budgets (rows of one sample share ``groups``; by
    default rows with bit-equal ``y`` are one sample, :func:`~kspace_attacks.attacks.base.groups_from_rows`), row ``i`` takes ``deltas[j]`` of the
    row ``j`` of its sample with the largest budget below its own, scaled by the ratio of the
    budgets (onto the larger ball, same direction); rows without a smaller budget keep their
    own. The result is projected onto every row's ball.

    :param torch.Tensor deltas: one perturbation per row (e.g. the best found so far).
    :param torch.Tensor y: the batch's clean k-space.
    :param physics: its physics.
    :param threat: the batch's threat model (per-row budgets).
    :param torch.Tensor|None groups: ``(B,)`` sample id per row.

    >>> import torch, deepinv as dinv
    >>> import kspace_attacks as ka
    >>> physics = dinv.physics.MRI(img_size=(4, 4))
    >>> y = physics(torch.ones(1, 2, 4, 4)).repeat(2, 1, 1, 1)
    >>> threat = ka.KSpaceL2(eps=torch.tensor([0.01, 0.02]))
    >>> d = threat.sphere(y, physics, generator=torch.Generator().manual_seed(0))
    >>> w = warm_start(d, y, physics, threat)
    >>> torch.allclose(w[1], 2 * d[0])
    True
    """
    if deltas.shape != threat.zeros(y).shape:
        raise ValueError(f"deltas: expected the threat model's shape {tuple(threat.zeros(y).shape)}, "
                         f"got {tuple(deltas.shape)}")
    b = y.shape[0]
    if groups is None:  # the package's one fallback rule: bit-equal rows are one sample
        from .base import groups_from_rows

        groups = groups_from_rows(y.shape[0], [y], y.device)
    budget = threat.budget_unchecked(y)  # (B, U)
    out = deltas.clone()
    for i in range(b):
        smaller = [j for j in range(b) if groups[j] == groups[i]
                   and bool((budget[j] <= budget[i]).all()) and bool((budget[j] < budget[i]).any())]
        if not smaller:
            continue
        j = max(smaller, key=lambda k: float(budget[k].sum()))
        scale = budget[i] / budget[j].clamp_min(1e-30)  # (U,)
        out[i] = deltas[j] * threat.broadcast(scale[None], deltas[j:j + 1])[0]
    return threat.project(out, y, physics)
