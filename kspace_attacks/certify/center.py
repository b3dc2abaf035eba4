"""The sample center: the output with the smallest median distance to all outputs.

Kumar & Goldstein (NeurIPS 2021, Sec. 3) approximate the center of the minimum enclosing ball
of half the samples by the sample whose median distance to the samples is smallest (the
authors' ``Smooth.meb`` in ``center_smoothing.py``). If the optimal ball (radius ``r``) holds
half of the samples, any sample inside it has half of the samples within ``2 r``, so the
chosen sample's median distance is at most ``2 r``: a ``beta = 2`` approximation.

The median is the lower one over all ``n`` samples, the sample itself (distance 0) included:
the ``ceil(n / 2)``-th smallest distance, i.e. a ball around the sample holding at least half
of the samples, which is what the approximation argument needs.

>>> import torch
>>> pts = torch.tensor([[0.0], [1.0], [1.1], [1.2], [5.0]])
>>> median_center(pts)
(2, 0.1...)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["median_center", "distances_to"]

# rows of the distance matrix computed at once (memory: rows x n float64)
_BLOCK = 1024


def median_center(outputs: Tensor) -> tuple[int, float]:
    """Index of the output with the smallest lower-median l2 distance to all outputs (itself
    included) and that median distance (first index on ties).

    :param torch.Tensor outputs: ``(n, ...)`` samples; distances over all other dimensions.
    """
    z = outputs.detach().flatten(1).double()
    n = z.shape[0]
    # Centering keeps the Gram-matrix route accurate: distances between noisy outputs are
    # small next to the outputs' norms, and |a|^2 + |b|^2 - 2ab would cancel otherwise.
    z = z - z.mean(dim=0, keepdim=True)
    sq = z.pow(2).sum(dim=1)
    k = math.ceil(n / 2)
    medians = torch.empty(n, dtype=torch.float64, device=z.device)
    for lo in range(0, n, _BLOCK):
        hi = min(n, lo + _BLOCK)
        d2 = (sq[lo:hi, None] + sq[None, :] - 2.0 * (z[lo:hi] @ z.T)).clamp_min(0.0)
        d2[torch.arange(hi - lo), torch.arange(lo, hi)] = 0.0  # exact self-distance
        medians[lo:hi] = d2.kthvalue(k, dim=1).values
    index = int(torch.argmin(medians))
    return index, float(medians[index].sqrt())


def distances_to(outputs: Tensor, center: Tensor) -> Tensor:
    """l2 distances of ``outputs`` ``(k, ...)`` to ``center`` ``(1, ...)`` in float64, ``(k,)``."""
    return (outputs.detach().double() - center.detach().double()).flatten(1).norm(dim=1)
