"""The outcome of :func:`~kspace_attacks.certify.certify`: a certified radius per sample and budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Certificate"]


@dataclass
class Certificate:
    r"""Certified output deviation of the center-smoothed reconstructor, per sample.

    Tensors indexed by budget are ``(B,)`` when :func:`~kspace_attacks.certify.certify` got
    one ``eps`` and ``(B, E)`` for a sequence of ``E`` budgets.

    :param reconstruction: the smoothed reconstruction :math:`\hat f(y)` (the center), ``(B, C, H, W)``.
    :param radius: certified bound on :math:`\|\hat f(y + \delta) - \hat f(y)\|_2` (image space,
        absolute); NaN where abstained.
    :param radius_rel: ``radius`` over :math:`\|\hat f(y)\|_2`.
    :param abstained: no certificate: the center failed its check or ``eps / sigma`` is too large
        for ``n_cert`` (the radius' quantile exceeds 1).
    :param center_ok: the center passed its check, ``(B,)``.
    :param eps: the budgets (relative to :math:`\|y\|_2`).
    :param sigma: noise std per measured real entry, relative to :math:`\|y\|_2`.
    :param alpha: failure probability of the certificate.
    :param n_pred: draws of the center (and of its check).
    :param n_cert: draws of the radius.
    :param forward_evals: base-model reconstructions per sample, ``(B,)`` (attack included).
    :param seconds: wall time of the call.
    :param beta: approximation factor of the center (radius = (1 + beta) R-hat).
    :param delta: the check's mass margin.
    :param quantile: the radius' quantile level per budget (> 1: abstain).
    :param check_fraction: fraction of the check's draws within the center's median radius, ``(B,)``.
    :param smoothing_error: :math:`\|\hat f(y) - f(y)\|_2` per sample, ``(B,)``.
    :param noise_rel: expected noise norm over :math:`\|y\|_2` (:math:`\sigma\sqrt{m}`), ``(B,)``.
    :param sample_seconds: wall time per sample (the attack's shared equally), ``(B,)``.
    :param lower: attack lower bound :math:`\|\hat f(y + \delta^*) - \hat f(y)\|_2`, or None.
    :param lower_rel: ``lower`` over :math:`\|\hat f(y)\|_2`, or None.
    :param attack: ``repr`` of the attack (empty without one).
    :param attack_budget: its gradient evaluations per row, or None.
    :param eot: model calls per attack gradient.
    :param seed: seed of every draw.
    :param distances: the ``n_cert`` distances of fresh outputs to the center, sorted, ``(B, n_cert)``
        (NaN rows where the center failed): :meth:`radius_at` certifies other budgets from them.
    """

    reconstruction: Tensor
    radius: Tensor
    radius_rel: Tensor
    abstained: Tensor
    center_ok: Tensor
    eps: tuple[float, ...]
    sigma: float
    alpha: float
    n_pred: int
    n_cert: int
    forward_evals: Tensor
    seconds: float
    beta: float = 2.0
    delta: float = 0.05
    quantile: tuple[float, ...] = ()
    check_fraction: Tensor | None = None
    smoothing_error: Tensor | None = None
    noise_rel: Tensor | None = None
    sample_seconds: Tensor | None = None
    lower: Tensor | None = None
    lower_rel: Tensor | None = None
    attack: str = ""
    attack_budget: int | None = None
    eot: int = 1
    seed: int = 0
    distances: Tensor | None = None

    def _grid(self, t: Tensor | None) -> Tensor:
        """A per-budget tensor as ``(B, E)`` (NaN when absent)."""
        b, e = self.reconstruction.shape[0], len(self.eps)
        if t is None:
            return torch.full((b, e), math.nan, dtype=torch.float64)
        return t.reshape(b, e)

    def radius_at(self, eps: float) -> Tensor:
        """The certified radius for another budget from the same draws, ``(B,)`` (NaN: abstain).

        Valid alongside the others: the radius' confidence bound holds for every budget at once
        (:mod:`~kspace_attacks.certify.bound`).
        """
        from .bound import certified_quantile, order_statistic

        if self.distances is None:
            raise ValueError("radius_at: this certificate keeps no distances (distances=None)")
        q = certified_quantile(float(eps) / self.sigma, self.delta, self.alpha / 2.0, self.n_cert)
        out = torch.full((self.distances.shape[0],), math.nan, dtype=torch.float64)
        for i, d in enumerate(self.distances):
            r = None if torch.isnan(d).any() else order_statistic(d, q)
            if r is not None:
                out[i] = (1.0 + self.beta) * r
        return out

    @property
    def statement(self) -> str:
        """What is certified, in plain words, with the numbers of this certificate."""
        b = self.reconstruction.shape[0]
        radius, rel, abst = self._grid(self.radius), self._grid(self.radius_rel), self._grid(self.abstained)
        lines = [
            f"With probability >= {1 - self.alpha:g} (over the smoothing noise), for every k-space "
            f"perturbation delta with ||delta||_2 <= eps * ||y||_2 on the measured entries, the "
            f"SMOOTHED reconstruction (the center of the model's outputs under Gaussian k-space "
            f"noise of std {self.sigma:g} * ||y||_2 per measured entry) moves by at most R in l2 "
            f"(at inputs where its center passes the check; it abstains elsewhere):"
        ]
        for j, e in enumerate(self.eps):
            ok = ~abst[:, j].bool()
            if ok.any():
                what = (f"R median {float(radius[ok, j].median()):.4g} "
                        f"({float(rel[ok, j].median()):.3g} x ||smoothed(y)||)")
            else:
                what = "no certificate"
            lines.append(f"  eps {e:g}: {what}; abstained on {int((~ok).sum())} of {b} samples")
        lines.append("Nothing is certified about the base model: its worst case is only bounded "
                     "below, by attacks.")
        return "\n".join(lines)

    def to_records(self) -> list[dict]:
        """One dict per sample and budget (plain Python values; NaN where undefined)."""
        radius, rel, abst = self._grid(self.radius), self._grid(self.radius_rel), self._grid(self.abstained)
        lower, lower_rel = self._grid(self.lower), self._grid(self.lower_rel)

        def at(t: Tensor | None, i: int) -> float:
            return math.nan if t is None else float(t[i])

        records = []
        for i in range(self.reconstruction.shape[0]):
            for j, e in enumerate(self.eps):
                lo, r = float(lower_rel[i, j]), float(rel[i, j])
                records.append({
                    "sample": i, "eps": e, "sigma": self.sigma, "alpha": self.alpha,
                    "n_pred": self.n_pred, "n_cert": self.n_cert,
                    "radius": float(radius[i, j]), "radius_rel": r,
                    "lower": float(lower[i, j]), "lower_rel": lo,
                    "width": r / lo if lo > 0 else math.nan,
                    "abstained": bool(abst[i, j]), "center_ok": bool(self.center_ok[i]),
                    "delta": self.delta, "beta": self.beta,
                    "quantile": self.quantile[j] if self.quantile else math.nan,
                    "noise_rel": at(self.noise_rel, i),
                    "smoothing_error_rel": at(self.smoothing_error, i) / max(
                        float(self.reconstruction[i].double().norm()), 1e-30),
                    "check_fraction": at(self.check_fraction, i),
                    "attack_budget": self.attack_budget, "eot": self.eot, "seed": self.seed,
                    "forward_evals": int(self.forward_evals[i]),
                    "seconds": at(self.sample_seconds, i),
                })
        return records

    def __repr__(self) -> str:
        abst = self._grid(self.abstained)
        return (f"Certificate(batch={self.reconstruction.shape[0]}, eps={list(self.eps)}, "
                f"sigma={self.sigma:g}, alpha={self.alpha:g}, n_pred={self.n_pred}, "
                f"n_cert={self.n_cert}, abstained={int(abst.sum())}/{abst.numel()}, "
                f"seconds={self.seconds:.2f})")
