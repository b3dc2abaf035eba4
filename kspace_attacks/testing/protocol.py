"""Versioned robustness protocols: what a robustness card measures, fixed once and named.

A protocol fixes everything that decides a card's numbers: the budget grid, the threat model,
the attack and its hyperparameters, the objectives it maximises, the metrics, the noise
control, the data (unless the user brings their own) and the bootstrap. A card names its
protocol version and stores the full definition, so two cards of the same version compare.

Protocol ``v1`` (:data:`PROTOCOL_V1`):

- budgets eps = 0.01, 0.02, 0.05, 0.08, relative l2 per sample on the measured k-space
  (``||delta||_2 <= eps ||y||_2``, ``delta`` zero off the sampling mask);
- attack: APGD (the package's strongest measured attack per gradient evaluation,
  :func:`kspace_attacks.attacks.default_attack`), 20 steps, 1 restart, initial step 2 budgets,
  momentum 0.75, rho 0.75, seeded; the monotone envelope over the grid is on (a slice's worst
  case never decreases with eps);
- two objectives, each its own attack: ``deviation`` (``||f(y+delta) - f(y)||^2``) and
  ``ssim`` (``1 - SSIM(|f(y+delta)|, |f(y)|)``); per slice and eps the card's "attack" row
  takes the worse of the two in each metric;
- metrics against the ground truth, minmax normalisation, magnitude images: Delta SSIM and
  Delta PSNR (``adv - clean``, negative = degradation) and the relative deviation
  ``||f(y+delta) - f(y)|| / ||f(y)||``;
- noise control: one equal-norm Gaussian draw per slice and eps in the same threat model;
- data: 8 evenly spaced slices of the embedded test split (``demo_batch(8)``: T1, single
  coil, 64 x 64, the embedded preset's mask and noise);
- statistics: per eps the worst slice and the mean with a percentile bootstrap 95 % CI
  (10,000 resamples, seed 0); one torch thread (float sums depend on the thread count).

Protocol ``v2`` (:data:`PROTOCOL_V2`, the default of cards) is ``v1`` with the package's
worst-case search instead of one APGD run: :class:`~kspace_attacks.WorstCase`, 100 gradient
evaluations per row and objective (the top singular vector of the Jacobian with both signs and
2 random starts, 4 steps each, then one APGD run from the best), which
``benchmarks/bench_strength.py`` measured far closer to the best-known worst case than v1's
single 20-step run; cards of v2 also report the restart spread (how settled the worst case is).

Protocol ``v3`` (:data:`PROTOCOL_V3`, the default of cards, :data:`DEFAULT_PROTOCOL`) is ``v2``
with the adaptive search: after its 100 planned evaluations ``WorstCase(max_budget=400)`` keeps
running independent restarts until two runs agree within 5 % on each row's worst case, and
flags the rows that never settle ``unreliable`` (the card's notes and rows say how many). A
robust model judged by a search that stopped early is how robustness gets over-reported:
``benchmarks/bench_unreliable.py`` measured the 100-evaluation default at 0.17 of the
best-known worst case on ResUnet++'s worst slice (deviation, eps 0.08), the adaptive search at
0.85, with 5 of its 8 rows flagged.

Example:

    >>> from kspace_attacks.testing.protocol import get_protocol
    >>> p = get_protocol("v1")
    >>> p.eps, p.steps, p.objectives
    ((0.01, 0.02, 0.05, 0.08), 20, ('deviation', 'ssim'))
    >>> p.attack_for("ssim", 0.02, seed=0)
    APGD(threat=KSpaceL2(eps=0.02, ...), steps=20, ..., loss=SSIMDeviation(normalization='minmax'), ...)
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from .._checks import describe
from ..attacks import ATTACKS, Attack, attack_class
from ..losses import LOSSES
from ..schema import ConfigError, Table, setting
from ..threat import ThreatModel
from ..threat_spec import ThreatSpec

__all__ = ["Protocol", "PROTOCOL_V1", "PROTOCOL_V2", "PROTOCOL_V3", "PROTOCOLS", "DEFAULT_PROTOCOL",
           "get_protocol"]

def _threat(spec: Any) -> str | None:
    try:
        ThreatSpec.from_mapping(spec, "protocol.threat")
    except ConfigError as e:
        return f"a threat table ({e})"
    return None


def _budgets(eps: Any) -> str | None:
    return None if eps and all(e > 0 for e in eps) else "budgets > 0"


def _objectives(objectives: Any) -> str | None:
    ok = objectives and all(o in LOSSES and o not in ("ground_truth", "targeted") for o in objectives)
    return None if ok else "some of ['deviation', 'ssim']"


def _attack_name(name: Any) -> str | None:
    try:
        attack_class(name)
    except ValueError:
        return f"one of {sorted(ATTACKS)}"
    return None


@dataclass(frozen=True)
class Protocol(Table):
    """A fixed measurement procedure for robustness cards (see the module's docstring).

    Make a variant with :func:`dataclasses.replace` (or :meth:`from_mapping` of a table) and a
    new ``version`` (tests use a tiny one); a card records the whole definition
    (:meth:`as_dict`), whatever its name.
    """

    TABLE: ClassVar[str] = "protocol"

    version: str = setting(doc="the protocol's name, recorded on every card")
    eps: tuple[float, ...] = setting(doc="the budget grid (relative l2 per sample unless threat says otherwise)",
                                     check=_budgets)
    steps: int = setting(20, "the attack's steps (WorstCase: its budget of gradient evaluations per row)", minimum=1)
    attack: str = setting("apgd", "the attack (a registered name)", check=_attack_name)
    attack_options: dict[str, Any] = setting(
        doc="the attack's other arguments", factory=lambda: {"restarts": 1, "initial_step": 2.0, "momentum": 0.75,
                                                             "rho": 0.75, "monotone": True})
    objectives: tuple[str, ...] = setting(doc="the objectives, each its own attack (the card takes the worse)",
                                          check=_objectives, factory=lambda: ("deviation", "ssim"))
    threat: dict[str, Any] = setting(doc="the threat model table (type, relative, per, support)", check=_threat,
                                     factory=lambda: {"type": "KSpaceL2", "relative": True, "per": "sample",
                                                      "support": "measured"})
    normalization: str = setting("minmax", "metric normalisation", choices=("minmax", "fastmri"))
    data: dict[str, Any] = setting(doc="the protocol's own data (demo_batch arguments)",
                                   factory=lambda: {"source": "embedded", "n_slices": 8, "split": "test",
                                                    "preset": "embedded", "contrast": "t1", "seed": 0})
    bootstrap: dict[str, Any] = setting(doc="bootstrap of the mean's CI",
                                        factory=lambda: {"level": 0.95, "resamples": 10000, "seed": 0})
    threads: int = setting(1, "torch threads while measuring (float sums depend on them)", minimum=1)
    description: str = setting("", "one paragraph on what the protocol does")

    def threat_model(self, eps: float | Tensor) -> ThreatModel:
        """The protocol's threat model at budget(s) ``eps`` (a float or one per row)."""
        return ThreatSpec.from_mapping(self.threat, "protocol.threat").build(eps)

    def attack_for(self, objective: str, eps: float | Tensor, seed: int = 0) -> Attack:
        """The protocol's attack maximising ``objective`` at budget(s) ``eps``."""
        if objective not in self.objectives:
            raise ValueError(f"objective: expected one of {list(self.objectives)}, got {objective!r}")
        cls = attack_class(self.attack)
        # the step count goes in with the options, so that options checked against it (an
        # adaptive search's max_budget >= budget) see the protocol's, not the class default
        steps = {cls.steps_param: self.steps} if cls.steps_param else {}
        return cls(self.threat_model(eps), loss=objective, seed=seed, **{**steps, **self.attack_options})

    def data_batch(self) -> tuple[Tensor, Tensor, Any]:
        """The protocol's own data, ``(x, y, physics)``."""
        from ..data import demo_batch

        d = self.data
        if d.get("source") != "embedded":
            raise ValueError(f"data: protocol {self.version!r} has no built-in data ({d!r}); pass data=")
        return demo_batch(d["n_slices"], preset=d["preset"], split=d["split"], seed=d["seed"],
                          contrast=d["contrast"])

    def data_call(self) -> str:
        """The call that builds :meth:`data_batch`, as text (recorded on cards)."""
        d = self.data
        return (f"kspace_attacks.data.demo_batch({d['n_slices']}, preset={d['preset']!r}, "
                f"split={d['split']!r}, seed={d['seed']}, contrast={d['contrast']!r})")

    def as_dict(self) -> dict[str, Any]:
        """The full definition (JSON-friendly), with the attack as it is built."""
        out = dataclasses.asdict(self)
        out["eps"] = list(self.eps)
        out["objectives"] = list(self.objectives)
        out["attack_repr"] = {o: repr(self.attack_for(o, max(self.eps))) for o in self.objectives}
        out["grad_evals_per_objective"] = self.attack_for(self.objectives[0], 0.01).max_grad_evals
        out["data_call"] = self.data_call() if self.data.get("source") == "embedded" else None
        out["noise_control"] = ("one equal-norm Gaussian draw per slice and eps in the protocol's "
                                "threat model (kspace_attacks.GaussianNoise, same seed)")
        out["metrics"] = {
            "delta_ssim": "SSIM(f(y+delta), x) - SSIM(f(y), x); magnitude, minmax; negative = degradation",
            "delta_psnr": "PSNR(f(y+delta), x) - PSNR(f(y), x) in dB; negative = degradation",
            "relative_deviation": "||f(y+delta) - f(y)||_2 / ||f(y)||_2 (complex images)",
        }
        return out


PROTOCOL_V1 = Protocol(
    version="v1",
    eps=(0.01, 0.02, 0.05, 0.08),
    description=("APGD, 20 steps, on two objectives (deviation, SSIM) at eps 0.01/0.02/0.05/0.08 "
                 "relative l2 per sample on the measured k-space; 8 embedded test slices; "
                 "equal-norm noise control; bootstrap 95 % CIs"),
)

PROTOCOL_V2 = Protocol(
    version="v2",
    eps=(0.01, 0.02, 0.05, 0.08),
    steps=100,
    attack="worst_case",
    attack_options={"preset": "default", "monotone": True},
    description=("WorstCase (spectral and random starts, successive halving of APGD runs), 100 "
                 "gradient evaluations per row, on two objectives (deviation, SSIM) at eps "
                 "0.01/0.02/0.05/0.08 relative l2 per sample on the measured k-space; 8 embedded "
                 "test slices; equal-norm noise control; bootstrap 95 % CIs; restart spread reported"),
)

PROTOCOL_V3 = Protocol(
    version="v3",
    eps=(0.01, 0.02, 0.05, 0.08),
    steps=100,
    attack="worst_case",
    attack_options={"preset": "default", "monotone": True, "max_budget": 400, "tolerance": 0.05},
    description=("WorstCase, 100 planned gradient evaluations per row and then independent restarts "
                 "until two runs agree within 5 % (at most 400; rows that never settle are flagged "
                 "unreliable), on two objectives (deviation, SSIM) at eps 0.01/0.02/0.05/0.08 relative l2 "
                 "per sample on the measured k-space; 8 embedded test slices; equal-norm noise control; "
                 "bootstrap 95 % CIs; restart spread reported"),
)

#: Protocol versions by name; ``v1`` and ``v2`` stay reproducible.
PROTOCOLS: dict[str, Protocol] = {"v1": PROTOCOL_V1, "v2": PROTOCOL_V2, "v3": PROTOCOL_V3}
#: The protocol of cards unless one is named.
DEFAULT_PROTOCOL = "v3"


def get_protocol(protocol: str | Protocol) -> Protocol:
    """A protocol by version name (``"v1"``), or ``protocol`` itself if it is one."""
    if isinstance(protocol, Protocol):
        return protocol
    if isinstance(protocol, str) and protocol in PROTOCOLS:
        return PROTOCOLS[protocol]
    if isinstance(protocol, str):
        raise ValueError(f"protocol: unknown version {protocol!r}; known: {sorted(PROTOCOLS)}")
    raise TypeError(f"protocol: expected a version name such as 'v1' or a Protocol, got {describe(protocol)}")
