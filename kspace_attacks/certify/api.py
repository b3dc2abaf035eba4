"""``certify``: a certified upper bound on how far a perturbation moves the smoothed reconstruction.

See :mod:`kspace_attacks.certify.bound` for the procedure and its sources, and
:mod:`kspace_attacks.certify.smoothing` for the noise convention.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import Tensor

from ..attacks.base import frozen_eval
from ..threat import KSpaceL2
from ._settings import CertifySettings
from .bound import center_is_good, order_statistic
from .center import distances_to, median_center
from .certificate import Certificate
from .smoothing import NoiseSource, SmoothedModel, noise_norm_ratio, noise_std, noisy_outputs

__all__ = ["certify", "Certificate"]

#: draws per call of the attack's surrogate smoothed model (see ``attack_n``)
ATTACK_N = 32


def certify(
    model: Callable[[Tensor, Any], Tensor],
    y: Tensor,
    physics: Any,
    eps: float | Sequence[float] = 0.01,
    sigma: float = 0.01,
    n_pred: int = 10_000,
    n_cert: int = 10_000,
    alpha: float = 0.01,
    beta: float = 2.0,
    delta: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    attack_budget: int | None = None,
    attack_n: int = ATTACK_N,
    eot: int = 1,
) -> Certificate:
    r"""Certify the center-smoothed ``model`` at ``y`` against every l2 k-space perturbation
    :math:`\|\delta\|_2 \le \epsilon \|y\|_2` on the measured entries.

    Per sample, ``n_pred`` noisy reconstructions give the smoothed reconstruction (their center:
    :class:`~kspace_attacks.certify.SmoothedModel` with the same ``seed``), ``n_pred`` fresh ones
    check it (else abstain) and ``n_cert`` fresh ones give the radius of every ``eps``
    (:mod:`~kspace_attacks.certify.bound`). With probability :math:`\ge 1 - \alpha` the smoothed
    reconstruction moves by at most ``radius`` under any such perturbation (where its center
    passes the check). Nothing is certified about ``model`` itself. Cost per sample:
    ``2 n_pred + n_cert + 1`` reconstructions, plus the attack's.

    :param model: the base reconstructor ``model(y, physics) -> x``.
    :param torch.Tensor y: k-space ``(B, 2, H, W)`` or ``(B, 2, N, H, W)``; ``physics`` its physics.
    :param eps: budget(s) relative to :math:`\|y\|_2`: a float, or a sequence (radii ``(B, E)``).
    :param float sigma: noise std per measured real entry relative to :math:`\|y\|_2` (the bound
        depends on ``eps / sigma``; the noise norm is :attr:`Certificate.noise_rel` ``||y||``).
    :param int n_pred: draws of the center and, again, of its check (paper: :math:`10^4`).
    :param int n_cert: draws of the radius (paper: :math:`10^6`).
    :param float alpha: failure probability, split equally between the check and the radius.
    :param float beta: the center's approximation factor (2 for the median center; not less).
    :param float delta: the check's mass margin (paper 0.05; larger allows smaller ``n_pred``).
    :param int batch_size: noisy inputs per model call (does not change the draws).
    :param int seed: seed of every draw (same seed, same certificate).
    :param bool progress: a tqdm bar over the reconstructions.
    :param int|None attack_budget: if given, :class:`~kspace_attacks.WorstCase` (this budget,
        ``eot``) searches each ``eps`` on a surrogate smoothed model of ``attack_n`` draws per
        call (fresh draws per call when ``eot > 1``); :attr:`Certificate.lower` is then
        :math:`\|\hat f(y + \delta) - \hat f(y)\|` at the perturbation found, on the certified
        smoothed model with its own draws (common random numbers: the perturbation's effect,
        not the smoother's own randomness). Budgets at which every sample abstains are not
        attacked (``lower`` NaN).
    :param int attack_n: draws per call of the attack's surrogate.
    :param int eot: model calls averaged per attack gradient.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> from kspace_attacks.certify import certify
        >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
        >>> y = physics(torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0)))
        >>> zero_filled = lambda y, p: p.A_adjoint(y)
        >>> cert = certify(zero_filled, y, physics, eps=[0.005, 0.05], sigma=0.005, n_pred=400,
        ...                n_cert=400, delta=0.15, attack_budget=6)
        >>> cert.radius.shape, cert.abstained.tolist()
        (torch.Size([2, 2]), [[False, True], [False, True]])
        >>> bool((cert.lower[:, 0] <= cert.radius[:, 0]).all())
        True
    """
    return _run(CertifySettings.check(model, y, physics, eps, sigma, n_pred, n_cert, alpha, beta, delta,
                               batch_size, seed, progress, attack_budget, attack_n, eot))


def _run(s: CertifySettings) -> Certificate:
    """Every row's certificate, then the attack's lower bounds (if asked)."""
    start = time.perf_counter()
    y, physics, model = s.y, s.physics, s.model
    b = y.shape[0]
    from tqdm.auto import tqdm

    bar = tqdm(total=b * (2 * s.n_pred + s.n_cert), disable=not s.progress, unit="img", desc="certify")
    rows = []
    with frozen_eval(model), torch.no_grad():
        x_base = model(y, physics)
        cache: dict = {}
        for i in range(b):
            rows.append(_certify_row(s, i, cache, bar))
    bar.close()
    z = torch.cat([r["center"] for r in rows])
    z_norm = z.detach().double().flatten(1).norm(dim=1).cpu()
    radius = torch.stack([r["radius"] for r in rows])
    evals = torch.tensor([r["evals"] for r in rows], dtype=torch.int64) + 1  # + f(y)
    row_seconds = torch.tensor([r["seconds"] for r in rows], dtype=torch.float64)
    lower = lower_rel = None
    attack_repr = ""
    if s.attack_budget is not None:
        t0 = time.perf_counter()
        lower, attack_evals, attack_repr = _lower_bound(s, z, torch.isnan(radius).all(dim=0))
        evals += attack_evals
        row_seconds += (time.perf_counter() - t0) / b
        lower_rel = lower / z_norm[:, None].clamp_min(1e-30)

    def shape(t: Tensor | None) -> Tensor | None:
        return None if t is None else (t[:, 0] if s.single else t)

    return Certificate(
        reconstruction=z.detach(), radius=shape(radius),
        radius_rel=shape(radius / z_norm[:, None].clamp_min(1e-30)),
        abstained=shape(torch.isnan(radius)),
        center_ok=torch.tensor([r["ok"] for r in rows]), eps=tuple(s.eps), sigma=s.sigma,
        alpha=s.alpha, n_pred=s.n_pred, n_cert=s.n_cert, forward_evals=evals,
        seconds=time.perf_counter() - start, beta=s.beta, delta=s.delta, quantile=tuple(s.quantiles),
        check_fraction=torch.tensor([r["fraction"] for r in rows], dtype=torch.float64),
        smoothing_error=(z.double() - x_base.double()).flatten(1).norm(dim=1).cpu(),
        noise_rel=noise_norm_ratio(y, physics, s.sigma).cpu(), sample_seconds=row_seconds,
        lower=shape(lower), lower_rel=shape(lower_rel), attack=attack_repr,
        distances=torch.stack([r["distances"] for r in rows]),
        attack_budget=s.attack_budget, eot=s.eot, seed=s.seed,
    )


def _certify_row(s: CertifySettings, i: int, cache: dict, bar: Any) -> dict:
    """Center, check and radii of batch row ``i`` (no gradient)."""
    t0 = time.perf_counter()
    run = dict(model=s.model, y=s.y, physics=s.physics, row=i,
               std=float(noise_std(s.y[i : i + 1], s.sigma)[0]), batch_size=s.batch_size, cache=cache)
    outs = []
    for out in noisy_outputs(source=NoiseSource(s.seed, "predict"), n=s.n_pred, **run):
        outs.append(out)
        bar.update(out.shape[0])
    outs = torch.cat(outs)
    index, r = median_center(outs)
    z = outs[index : index + 1].clone()
    del outs
    inside = 0
    for out in noisy_outputs(source=NoiseSource(s.seed, "check"), n=s.n_pred, **run):
        inside += int((distances_to(out, z) <= r).sum())
        bar.update(out.shape[0])
    ok = center_is_good(inside / s.n_pred, s.delta, s.alpha1, s.n_pred)
    radius = torch.full((len(s.eps),), math.nan, dtype=torch.float64)
    d = torch.full((s.n_cert,), math.nan, dtype=torch.float64)
    evals = 2 * s.n_pred
    if ok:  # the radius' draws only for a center that passed (the authors return early too)
        chunks = []
        for out in noisy_outputs(source=NoiseSource(s.seed, "cert"), n=s.n_cert, **run):
            chunks.append(distances_to(out, z).cpu())
            bar.update(out.shape[0])
        d = torch.cat(chunks).sort().values
        evals += s.n_cert
        for j, q in enumerate(s.quantiles):
            r_hat = order_statistic(d, q)
            if r_hat is not None:
                radius[j] = (1.0 + s.beta) * r_hat
    else:
        bar.update(s.n_cert)
    return {"center": z, "radius": radius, "ok": ok, "fraction": inside / s.n_pred, "evals": evals,
            "seconds": time.perf_counter() - t0, "distances": d}


def _lower_bound(s: CertifySettings, z: Tensor, skip: Tensor) -> tuple[Tensor, Tensor, str]:
    """Per eps: WorstCase on a surrogate smoothed model, then the deviation of the certified
    smoothed model (its own draws) at the perturbation found. Budgets in ``skip`` (every
    sample abstained: no bracket to close) are not attacked (NaN). Returns ``(lower (B, E),
    reconstructions per sample (B,), attack repr)``."""
    from ..attacks import WorstCase

    y, physics, b = s.y, s.physics, s.y.shape[0]
    lower = torch.full((b, len(s.eps)), math.nan, dtype=torch.float64)
    # The surrogate is cheaper than the certified model (attack_n draws, not n_pred): it only
    # steers the search. With eot > 1 it draws anew per call, so EOT averages over the noise.
    surrogate = SmoothedModel(s.model, s.sigma, n=s.attack_n, batch_size=s.batch_size, seed=s.seed,
                              resample=s.eot > 1, stage="attack", reference=y)
    certified = SmoothedModel(s.model, s.sigma, n=s.n_pred, batch_size=s.batch_size, seed=s.seed,
                              stage="predict", reference=y)
    attack = None
    for j, e in enumerate(s.eps):
        if skip[j]:
            continue
        attack = WorstCase(KSpaceL2(eps=e), budget=s.attack_budget, eot=s.eot, seed=s.seed)
        res = attack(surrogate, y, physics)
        with frozen_eval(s.model), torch.no_grad():
            x_adv = certified(res.y_adv, physics)
        lower[:, j] = (x_adv.double() - z.double()).flatten(1).norm(dim=1).cpu()
        if s.progress:
            print(f"certify: attack at eps {e:g}: lower bound median "
                  f"{float(lower[:, j].median()):.4g} ({res.grad_evals} gradient evaluations)")
    evals = (surrogate.forward_evals + certified.forward_evals) // b
    return lower, torch.full((b,), evals, dtype=torch.int64), "" if attack is None else repr(attack)
