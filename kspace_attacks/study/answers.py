"""The study's questions, answered first: one line per question and metric, from the verdicts.

A sweep decides many cells (claim x metric x surrogate x attack x target x eps,
:mod:`kspace_attacks.study.verdicts`). A reader wants the study's questions answered at a
glance, each with the evidence behind the answer:

1. does the transferred worst case degrade the diffusion model more than equal-norm noise?
2. does that degradation grow with eps?
3. is the change it causes structured (more than noise's, calibrated against the null)?
4. is it more noise-like than the surrogate's own white-box change?
5. does a targeted structure show on the diffusion model?
6. does the white-box worst case on the diffusion model beat noise?
7. does the final data consistency matter (the sampler with it vs its ablation without)?

:func:`answer` picks the cells of each question (the diffusion targets are the targets named
like a configured diffusion model, or given), and per metric writes one line: the outcome
counts over the cells after the multiplicity correction within each question (a claim about one target in one metric)
(:mod:`kspace_attacks.study.statistics`), the subjects and clusters behind them ("3 subjects,
13 blocks; unit: block"), and the *headline cell* (the first attack at the largest eps, the
first surrogate) with its n, mean paired difference, 95 % CI and adjusted p. The answer word is
"yes" when every cell holds, "no" when every cell does not hold, "negligible" when every cell
is negligible (or a tie), "no difference" when every cell is a tie, "yes or inconclusive" /
"no or inconclusive" / "negligible or inconclusive" when the decided cells agree, "no or
negligible" when none holds, and "mixed" when some hold and others are decided otherwise.
Question 7 is two-sided (either sampler may be the more fragile): its cells read "more without
it" (the difference above the floor), "more with it" (below minus the floor), "negligible",
"inconclusive" or "no difference".

Example:

    >>> row = dict(claim_id="beats_noise", metric="deviation", eps=0.08, surrogate="irim", attack="w",
    ...            target="diffusion", setting="transfer", n=16, mean_diff=0.03, ci_low=0.02,
    ...            ci_high=0.04, outcome="holds", small_sample=False)
    >>> [a.lines[0].split(":")[0] for a in answer([row], diffusion=["diffusion"]) if a.lines][:1]
    ['deviation']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .statistics import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NEGLIGIBLE, NO_DIFFERENCE, support

__all__ = ["Question", "Answer", "QUESTIONS", "answer", "diffusion_targets", "render_answers_markdown"]


@dataclass(frozen=True)
class Question:
    """One of the study's questions: which verdict rows answer it."""

    key: str
    text: str
    claim: str
    setting: str | None  # "transfer", "white-box", None (any)
    on_diffusion: bool  # the target is a diffusion model
    surrogate_is_diffusion: bool | None = None  # None: any surrogate
    #: two-sided: a cell answers "yes" in either direction; the words name the directions
    #: (the first condition worse, the second worse)
    sides: tuple[str, str] | None = None


QUESTIONS = (
    Question("transfer_beats_noise", "Does the worst case crafted on a supervised model and transferred to "
             "the diffusion model degrade it more than equal-norm noise?", "beats_noise", "transfer", True, False),
    Question("grows_with_eps", "Does the transferred degradation grow with eps (largest vs smallest eps)?",
             "grows_with_eps", "transfer", True, False),
    Question("structured", "Is the transferred change structured: more structure than equal-norm noise, "
             "calibrated against the target's own noise response?", "structured", "transfer", True, False),
    Question("noise_like", "Is the transferred change more noise-like on the diffusion model than the "
             "surrogate's own white-box change?", "noise_like", "transfer", True, False),
    Question("targeted", "Does a targeted structure (an inserted blob) show on the diffusion model, more than "
             "under the controls?", "targeted_shows", None, True),
    Question("whitebox_beats_noise", "Does the white-box worst case on the diffusion model (through its "
             "differentiable sampler) degrade it more than equal-norm noise?", "beats_noise", "white-box", True, True),
    Question("final_dc", "Does the final data consistency matter: does the same perturbation degrade the "
             "sampler without it differently from the sampler with it?", "ablation_worse", None, True,
             sides=("more without it", "more with it")),
)


@dataclass
class Answer:
    """A question's answer: one line per metric (``lines``) and the rows behind it."""

    question: Question
    lines: list[str] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)  # metric -> yes / no / mixed / ...
    rows: list[dict] = field(default_factory=list)
    small_sample: bool = False


def diffusion_targets(config: Mapping[str, Any] | None, targets: Sequence[str]) -> list[str]:
    """The diffusion model the study's questions are about: the shipped ``diffusion`` and its
    variants (``models.<name>.model = "diffusion"``) when it is a target; otherwise every target
    named ``diffusion*`` or a variant of one. Other diffusion targets of the same study (an
    earlier model, deepinv's solvers) are answered one at a time with ``answer(...,
    diffusion=[name])`` (``benchmarks/study_by_target.py``).

    >>> diffusion_targets({"models": {"nodc": {"model": "diffusion"}}}, ["irim", "diffusion", "nodc", "diffusion_dps"])
    ['diffusion', 'nodc']
    >>> diffusion_targets(None, ["irim", "diffusion_dps"])
    ['diffusion_dps']
    """
    models = (config or {}).get("models", {}) or {}

    def base(t: str) -> str:
        spec = models.get(t, {})
        return str(spec.get("model", t)) if isinstance(spec, Mapping) else t

    shipped = [t for t in targets if t == "diffusion" or base(t) == "diffusion"]
    if shipped:
        return shipped
    return [t for t in targets if t.startswith("diffusion") or base(t).startswith("diffusion")]


def _word(outcomes: list[str]) -> str:
    """yes / no / negligible / no difference when every cell agrees (ties count as negligible
    among negligible cells); "yes or inconclusive" (some hold, the others inconclusive) and
    "no or inconclusive", "negligible or inconclusive" likewise; "no or negligible" when none
    holds; "mixed" when some hold and others are decided otherwise."""
    holds, not_hold = outcomes.count(HOLDS), outcomes.count(DOES_NOT_HOLD)
    small = outcomes.count(NEGLIGIBLE) + outcomes.count(NO_DIFFERENCE)
    if holds == len(outcomes):
        return "yes"
    if not_hold == len(outcomes):
        return "no"
    if outcomes.count(NO_DIFFERENCE) == len(outcomes):
        return "no difference"
    if small == len(outcomes):
        return "negligible"
    if holds:
        return "mixed" if not_hold or small else "yes or inconclusive"
    if not_hold and small:
        return "no or negligible"
    if not_hold:
        return "no or inconclusive"
    if small:
        return "negligible or inconclusive"
    return "inconclusive"


#: two-sided classes of a cell: the CI above the resolution, below it, within it, or across it
ABOVE, BELOW = "above", "below"


def _side(r: dict) -> str:
    if "outcome_uncorrected" in r:  # decided with a floor: "does not hold" is "b clearly worse"
        return {HOLDS: ABOVE, DOES_NOT_HOLD: BELOW}.get(r["outcome"], r["outcome"])
    tol = float(r.get("tolerance") or 0.0)  # rows of earlier versions: the CI against 0
    if r["outcome"] == NO_DIFFERENCE:
        return NO_DIFFERENCE
    if r["n"] >= 2 and r["ci_low"] > tol:
        return ABOVE
    if r["n"] >= 2 and r["ci_high"] < -tol:
        return BELOW
    return INCONCLUSIVE


def _two_sided(rs: list[dict], sides: tuple[str, str]) -> tuple[str, dict[str, int], str]:
    """A two-sided question's answer word, its tally and the headline cell's reading."""
    classes = [_side(r) for r in rs]
    names = {ABOVE: sides[0], BELOW: sides[1], NEGLIGIBLE: NEGLIGIBLE, INCONCLUSIVE: "inconclusive",
             NO_DIFFERENCE: "no difference"}
    tally = {names[c]: classes.count(c) for c in (ABOVE, BELOW, NEGLIGIBLE, INCONCLUSIVE, NO_DIFFERENCE)}
    if classes.count(ABOVE) == len(classes):
        word = f"yes, {sides[0]}"
    elif classes.count(BELOW) == len(classes):
        word = f"yes, {sides[1]}"
    elif classes.count(NO_DIFFERENCE) == len(classes):
        word = "no difference"
    elif classes.count(NEGLIGIBLE) + classes.count(NO_DIFFERENCE) == len(classes):
        word = "no, negligible"
    elif ABOVE in classes and BELOW in classes:
        word = "mixed"
    elif ABOVE in classes or BELOW in classes:
        word = f"yes or inconclusive, {sides[0] if ABOVE in classes else sides[1]}"
    else:
        word = "inconclusive"
    return word, tally, ""


def _headline(rows: list[dict], surrogates: Sequence[str], attacks: Sequence[str]) -> dict:
    """The first attack at the largest eps on the first surrogate (config order), else any."""
    def rank(r: dict) -> tuple:
        s = surrogates.index(r["surrogate"]) if r.get("surrogate") in surrogates else len(surrogates)
        a = attacks.index(r["attack"]) if r.get("attack") in attacks else len(attacks)
        return (-float(r.get("eps") or 0), a, s)
    return sorted(rows, key=rank)[0]


def _fmt(v: float, metric: str) -> str:
    if v != v:
        return "nan"
    return f"{v:+.2f}" if metric == "psnr" else f"{v:+.4f}" if abs(v) < 0.01 else f"{v:+.3f}"


def _selected(q: Question, rows: Sequence[dict], diffusion: Sequence[str]) -> list[dict]:
    out = []
    for r in rows:
        if r.get("claim_id") != q.claim:
            continue
        if q.on_diffusion and r.get("target") not in diffusion:
            continue
        if q.setting is not None and r.get("setting") != q.setting:
            continue
        if q.surrogate_is_diffusion is not None and (r.get("surrogate") in diffusion) != q.surrogate_is_diffusion:
            continue
        out.append(r)
    return out


def answer(rows: Sequence[dict], config: Mapping[str, Any] | None = None,
           diffusion: Sequence[str] | None = None) -> list[Answer]:
    """Answer :data:`QUESTIONS` from verdict rows (``verdict.json``'s ``rows``).

    :param rows: verdict rows (:func:`~kspace_attacks.study.verdicts.decide` and the targeted ones).
    :param config: the sweep's configuration (orders surrogates and attacks; finds diffusion variants).
    :param diffusion: the diffusion targets; default :func:`diffusion_targets` of the rows' targets.
    """
    targets = list(dict.fromkeys(r.get("target") for r in rows if r.get("target")))
    diffusion = list(diffusion) if diffusion is not None else diffusion_targets(config, targets)
    surrogates = list((config or {}).get("surrogates", []))
    attacks = list((config or {}).get("attacks", {}))
    out = []
    for q in QUESTIONS:
        sel = _selected(q, rows, diffusion)
        a = Answer(q, rows=sel, small_sample=any(r.get("small_sample") for r in sel))
        for metric in dict.fromkeys(r["metric"] for r in sel):
            rs = [r for r in sel if r["metric"] == metric]
            if q.sides is not None:
                word, counts, _ = _two_sided(rs, q.sides)
            else:
                counts = {o: sum(r["outcome"] == o for r in rs)
                          for o in (HOLDS, DOES_NOT_HOLD, NEGLIGIBLE, INCONCLUSIVE, NO_DIFFERENCE)}
                word = _word([r["outcome"] for r in rs])
            a.words[metric] = word
            a.lines.append(_line(metric, word, counts, rs, _headline(rs, surrogates, attacks), q))
        out.append(a)
    return out


def _line(metric: str, word: str, counts: Mapping[str, int], rs: list[dict], h: dict, q: Question) -> str:
    """One metric's answer: the word, the tally (what stands behind it) and the headline cell."""
    where = ", ".join(f"{k} {h[k]}" for k in ("surrogate", "attack", "target") if h.get(k))
    eps = f", eps {float(h['eps']):g}" if h.get("eps") not in (None, "") else ""
    small = " (small sample)" if h.get("small_sample") else ""
    tally = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    corrections = {"holm": "Holm", "bh": "BH"}
    after = [corrections[c] for c in dict.fromkeys(r.get("correction") for r in rs) if c in corrections]
    behind = "; ".join(x for x in ((f"after {'/'.join(after)}" if after else ""), support(rs)) if x)
    reading = dict(zip((ABOVE, BELOW), q.sides)).get(_side(h), _side(h)) if q.sides else h["outcome"]
    p = f", p_adj = {h['p_adjusted']:.2g}" if h.get("p_adjusted") is not None else ""
    return (f"{metric}: {word} ({tally} of {len(rs)} cells{'; ' + behind if behind else ''}); e.g. {where}{eps}: "
            f"{_fmt(h['mean_diff'], metric)} [{_fmt(h['ci_low'], metric)}, {_fmt(h['ci_high'], metric)}], "
            f"n = {h['n']}{small}{p}, {reading}")


def render_answers_markdown(answers: Sequence[Answer]) -> str:
    """The answers as the top of ``verdict.md``."""
    lines = ["## The study's questions, answered", "",
             "Per metric: the answer (yes = every cell holds), the outcome counts over the cells "
             "(surrogate x attack x eps) after the multiplicity correction within each question (a claim about one target in one metric), the subjects "
             "and clusters behind them, and one cell with its mean paired difference [95 % CI], n slices and "
             "adjusted p (positive = the first condition is worse; negligible = within the practical floor).",
             ""]
    for i, a in enumerate(answers, 1):
        lines.append(f"{i}. **{a.question.text}**")
        if not a.lines:
            lines.append("   - not measured in this run")
        lines += [f"   - {line}" for line in a.lines]
    return "\n".join(lines) + "\n"
