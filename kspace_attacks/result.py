"""The outcome of an attack."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from .metrics import relative_deviation, squared_deviation

__all__ = ["AttackResult"]


@dataclass
class AttackResult:
    """What an attack found, per sample.

    :param delta: the perturbation in the threat model's space: the shape of ``y`` for additive
        threats (on the full grid for ``support="full"``), the parameters of a physical threat
        (:mod:`kspace_attacks.physical`).
    :param y_adv: the perturbed measurement fed to the model, ``y + M delta`` (a physical
        threat: the corrupted k-space).
    :param x_clean: the reconstruction of the clean ``y``.
    :param x_adv: the reconstruction of ``y_adv`` (the worst iterate's; with ``eot > 1`` the mean
        over the draws).
    :param loss: attack objective at the returned perturbation, ``(B,)`` (with ``eot > 1`` the
        mean over the draws).
    :param eps: budget per sample, ``(B,)`` (relative or absolute, as the threat model says).
    :param ratio: ``||delta|| / ||y||`` per sample in the threat model's norm, ``(B,)``.
    :param grad_evals: gradient evaluations used (forward + backward passes through the model).
    :param forward_evals: forward-only passes (clean reconstruction and final evaluations).
    :param seconds: wall-clock time of the attack.
    :param history: best objective so far of the row's own search after each evaluation step,
        ``(grad_evals / eot, B)`` (restarts concatenated), or ``None`` for attacks without
        iterations.
    :param attack: ``repr`` of the attack that produced this result.
    :param source_eps: budget each returned perturbation was found for, ``(B,)``: ``eps``
        where the row's own search won, a smaller budget of the same sample where the monotone
        envelope took that row's perturbation instead (see :class:`~kspace_attacks.Attack`);
        ``None`` when the envelope was off.
    :param start_losses: best objective reached from each start (restart) of the search,
        ``(B, S)`` (before the monotone envelope), or ``None`` for attacks without starts;
        summarised by :attr:`start_best`, :attr:`start_median` and :attr:`restart_spread`.
    :param unreliable: ``(B,)`` bool, rows whose worst case the search could not confirm (no
        two independent runs agreed on it within the budget cap; an adaptive
        :class:`~kspace_attacks.WorstCase`), or ``None`` (not assessed).
    :param physics_adv: the physics the model was handed with ``y_adv`` when the threat changes
        it (:class:`~kspace_attacks.CoilMapMismatch`), else ``None`` (the clean physics).
    """

    delta: Tensor
    y_adv: Tensor
    x_clean: Tensor
    x_adv: Tensor
    loss: Tensor
    eps: Tensor
    ratio: Tensor
    grad_evals: int
    forward_evals: int
    seconds: float
    history: Tensor | None = None
    attack: str = ""
    source_eps: Tensor | None = None
    start_losses: Tensor | None = None
    physics_adv: Any = None
    unreliable: Tensor | None = None

    def model_inputs(self, physics: Any) -> tuple[Tensor, Any]:
        """``(y_adv, physics)`` as the model saw them: ``physics_adv`` if the threat changed
        the physics, else ``physics`` (the clean one)."""
        return self.y_adv, (physics if self.physics_adv is None else self.physics_adv)

    @property
    def n_starts(self) -> int:
        """Starts (restarts) the search made per row (0 without starts)."""
        return 0 if self.start_losses is None else int(self.start_losses.shape[1])

    @property
    def start_best(self) -> Tensor | None:
        """Best objective over the starts, ``(B,)`` (``None`` without starts)."""
        return None if self.start_losses is None else self.start_losses.amax(dim=1)

    @property
    def start_median(self) -> Tensor | None:
        """Median objective over the starts (lower median for an even count), ``(B,)``."""
        return None if self.start_losses is None else self.start_losses.median(dim=1).values

    @property
    def restart_spread(self) -> Tensor | None:
        r"""How settled the worst case is: ``(best - median) / |best|`` over the starts, ``(B,)``.

        0 when every start reaches the same objective (the search is not a matter of luck);
        0.5 when the median start reaches half of the best. ``None`` without starts; 0 for a
        single start.

        >>> import torch
        >>> from kspace_attacks import AttackResult
        >>> t = torch.zeros(2, 1)
        >>> r = AttackResult(t, t, t, t, t[:, 0], t[:, 0], t[:, 0], 0, 0, 0.0,
        ...                  start_losses=torch.tensor([[4.0, 2.0, 1.0], [3.0, 3.0, 3.0]]))
        >>> r.restart_spread.tolist()
        [0.5, 0.0]
        """
        if self.start_losses is None:
            return None
        best, med = self.start_best, self.start_median
        return ((best - med) / best.abs().clamp_min(1e-30)).clamp_min(0.0)

    @property
    def relative_deviation(self) -> Tensor:
        r"""The deviation: ``||x_adv - x_clean||_2 / ||x_clean||_2`` per sample, ``(B,)``
        (:func:`kspace_attacks.metrics.relative_deviation`; cards, records and verdicts use it)."""
        return relative_deviation(self.x_adv, self.x_clean)

    @property
    def squared_deviation(self) -> Tensor:
        r"""``||x_adv - x_clean||_2^2`` per sample (complex images), ``(B,)``: the deviation
        objective's value (:func:`kspace_attacks.metrics.squared_deviation`)."""
        return squared_deviation(self.x_adv, self.x_clean)

    def to(self, device: torch.device | str) -> "AttackResult":
        """A copy with every tensor moved to ``device``."""
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.to(device) if isinstance(v, Tensor) else v
        return AttackResult(**kw)

    def __repr__(self) -> str:
        return (
            f"AttackResult(batch={self.delta.shape[0]}, eps={self.eps.tolist()}, "
            f"ratio={[round(r, 5) for r in self.ratio.tolist()]}, "
            f"loss={[float(f'{v:.4g}') for v in self.loss.tolist()]}, "
            f"grad_evals={self.grad_evals}, seconds={self.seconds:.2f})"
        )
