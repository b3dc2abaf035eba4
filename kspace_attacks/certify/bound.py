r"""The numbers of the center-smoothing certificate (Kumar & Goldstein, NeurIPS 2021).

Sources: the paper's certificate (Sec. 3; proof in its appendix) and the authors' code,
``center_smoothing.py`` of github.com/aounon/center-smoothing (``Smooth.compute_center`` and
``Smooth.certify``), with the paper's defaults ``alpha_1 = alpha_2 = 0.005``, ``delta = 0.05``,
``n_pred = 10^4``, ``n_cert = 10^6``.

**Center check** (the smoothed model abstains unless it passes). With the center ``z`` and its
median radius ``r`` from ``n_pred`` draws, a fresh batch of ``n_pred`` draws gives the fraction
``frac`` of outputs within ``r`` of ``z``. With the Hoeffding margin

.. math:: \Delta_1 = \sqrt{\log(2/\alpha_1) / (2 n_{pred})}

the center is good when :math:`\max(\Delta_1, 1/2 - (\text{frac} - \Delta_1)) \le \Delta`:
then, with probability :math:`\ge 1 - \alpha_1`, the ball :math:`B(z, r)` holds at least
:math:`1/2 - \Delta` of the output distribution and :math:`r \le \beta\, r^*(1/2 + \Delta)`.

**Radius.** For a budget :math:`\epsilon` (the paper's :math:`\epsilon_1`) and noise
:math:`\sigma` (both absolute; here both relative to :math:`\|y\|`, the same ratio),

.. math:: p_\epsilon = \Phi\big(\Phi^{-1}(1/2 + \Delta) + \epsilon/\sigma\big), \qquad
          q = p_\epsilon + \Delta_2, \quad \Delta_2 = \sqrt{\log(1/\alpha_2) / (2 n_{cert})}

and :math:`\hat R` is the :math:`\lceil q\, n_{cert} \rceil`-th smallest distance of
``n_cert`` fresh outputs to ``z``; the certified radius is :math:`(1 + \beta) \hat R`. The
theorem: every ball around ``z`` of mass :math:`\ge p_\epsilon` at ``y`` keeps mass
:math:`\ge 1/2 + \Delta` at any ``y'`` within :math:`\epsilon` (Gaussian isoperimetry, as in
Cohen et al. 2019), so it meets the good center's ball at ``y'`` (mass
:math:`\ge 1/2 - \Delta`, radius :math:`\le \beta \hat R`), hence
:math:`d(\hat f(y), \hat f(y')) \le (1 + \beta) \hat R`. The order statistic is an upper
confidence bound of the :math:`p_\epsilon`-quantile with probability :math:`\ge 1 - \alpha_2`,
simultaneously for every :math:`\epsilon` (one-sided DKW inequality, Massart 1990, valid for
:math:`\alpha_2 \le 1/2`), so one set of ``n_cert`` draws serves a whole eps grid. The authors'
``np.quantile`` interpolates between order statistics; the ceiling index here is conservative.
Abstain when :math:`\lceil q\, n_{cert} \rceil > n_{cert}` (``q > 1``: eps too large for sigma).

>>> round(certified_quantile(1.0, delta=0.05, alpha2=0.005, n_cert=10**6), 4)
0.8715
>>> min_n_pred(alpha1=0.005, delta=0.05)
1199
>>> order_statistic(torch.arange(10.0), 0.95) is None, order_statistic(torch.arange(10.0), 0.9)
(False, 8.0)
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torch import Tensor

__all__ = ["hoeffding_margin", "center_margin", "cert_margin", "certified_quantile",
           "order_statistic", "center_is_good", "min_n_pred", "max_eps_over_sigma"]

_NORMAL = NormalDist()


def hoeffding_margin(alpha: float, n: int) -> float:
    """One-sided Hoeffding margin: a mean of ``n`` Bernoulli draws exceeds (or falls short of)
    its expectation by more than this with probability at most ``alpha``."""
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * n))


def center_margin(alpha1: float, n_pred: int) -> float:
    r""":math:`\Delta_1 = \sqrt{\log(2/\alpha_1)/(2 n_{pred})}`: two one-sided events at
    :math:`\alpha_1 / 2` each (the optimal ball holds half of the prediction draws; the check's
    fraction lower-bounds the center ball's mass)."""
    return hoeffding_margin(alpha1 / 2.0, n_pred)


def cert_margin(alpha2: float, n_cert: int) -> float:
    r""":math:`\Delta_2 = \sqrt{\log(1/\alpha_2)/(2 n_{cert})}` (the authors' ``Smooth.certify``)."""
    return hoeffding_margin(alpha2, n_cert)


def center_is_good(fraction: float, delta: float, alpha1: float, n_pred: int) -> bool:
    """The authors' check: ``max(Delta_1, 1/2 - (fraction - Delta_1)) <= delta``."""
    d1 = center_margin(alpha1, n_pred)
    return max(d1, 0.5 - (fraction - d1)) <= delta


def certified_quantile(eps_over_sigma: float, delta: float, alpha2: float, n_cert: int) -> float:
    r""":math:`q = \Phi(\Phi^{-1}(1/2 + \Delta) + \epsilon/\sigma) + \Delta_2` (may exceed 1)."""
    p = _NORMAL.cdf(_NORMAL.inv_cdf(0.5 + delta) + eps_over_sigma)
    return p + cert_margin(alpha2, n_cert)


def order_statistic(distances: Tensor, q: float) -> float | None:
    r"""The :math:`\lceil q n \rceil`-th smallest of ``n`` distances, ``None`` if that index
    exceeds ``n`` (abstain)."""
    n = distances.numel()
    k = max(1, math.ceil(q * n))
    if k > n:
        return None
    return float(torch.kthvalue(distances.flatten().double().cpu(), k).values)


def min_n_pred(alpha1: float, delta: float) -> int:
    r"""Smallest ``n_pred`` with :math:`\Delta_1 \le \Delta` (else every center check fails)."""
    n = math.ceil(math.log(2.0 / alpha1) / (2.0 * delta**2))
    while center_margin(alpha1, n) > delta:  # guard the float rounding of the ceiling
        n += 1
    return n


def max_eps_over_sigma(delta: float, alpha2: float, n_cert: int) -> float:
    r"""Largest :math:`\epsilon/\sigma` with :math:`q \le 1` (larger ratios always abstain)."""
    top = 1.0 - cert_margin(alpha2, n_cert)
    if top <= 0.5 + delta:
        return 0.0
    return _NORMAL.inv_cdf(top) - _NORMAL.inv_cdf(0.5 + delta)
