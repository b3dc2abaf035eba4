"""Readable robustness cards: ``card.md`` and a comparison table of several cards.

Example:

    >>> from kspace_attacks.testing.card_render import fmt_ci
    >>> fmt_ci({"mean": -0.01234, "ci95": [-0.02, -0.005]}, 3)
    '-0.012 [-0.020, -0.005]'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_card_markdown", "comparison_table", "fmt_ci"]

_LABELS = {"deviation": "deviation objective", "ssim": "SSIM objective", "noise": "equal-norm noise",
           "attack": "worst of both objectives"}


def _num(v: Any, digits: int, signed: bool = False) -> str:
    if v is None or v != v:
        return "n/a"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_ci(stat: Mapping[str, Any], digits: int, signed: bool = True) -> str:
    """``mean [low, high]`` of a card statistic."""
    lo, hi = stat.get("ci95") or (None, None)
    return (f"{_num(stat.get('mean'), digits, signed)} [{_num(lo, digits, signed)}, "
            f"{_num(hi, digits, signed)}]")


def _worst(stat: Mapping[str, Any], digits: int, signed: bool = True) -> str:
    slice_ = stat.get("worst_slice")
    return _num(stat.get("worst"), digits, signed) + ("" if slice_ is None else f" (slice {slice_})")


def _table(rows: Sequence[Mapping[str, Any]], ratio: bool) -> list[str]:
    head = ("| eps | worst Δ SSIM | mean Δ SSIM [95 % CI] | worst Δ PSNR (dB) | mean Δ PSNR [95 % CI] "
            "| worst rel. deviation | mean rel. deviation [95 % CI] |")
    lines = [head + (" max ‖δ‖/‖y‖ |" if ratio else ""), "|---" * (7 + ratio) + "|"]
    for r in rows:
        cells = [f"{r['eps']:g}", _worst(r["delta_ssim"], 3), fmt_ci(r["delta_ssim"], 3),
                 _worst(r["delta_psnr"], 2), fmt_ci(r["delta_psnr"], 2),
                 _worst(r["relative_deviation"], 4, False), fmt_ci(r["relative_deviation"], 4, False)]
        if ratio:
            cells.append(f"{r.get('ratio_max', float('nan')):.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _header(card: Mapping[str, Any]) -> list[str]:
    p, m, d, env = card["protocol"], card["model"], card["data"], card["environment"]
    sha = m.get("state_dict_sha256")
    lines = [f"# Robustness card: {card['name']}", "",
             f"Protocol **{p['version']}** — {p.get('description', '')}", "",
             "| | |", "|---|---|",
             f"| model class | `{m['class']}` |",
             f"| parameters | {m['parameters']:,} |",
             f"| state_dict SHA-256 | {'`' + sha[:16] + '…`' if sha else 'n/a (no nn.Module)'} |"]
    am = m.get("attack_model")
    if am:
        lines.append(f"| attack model (non-standard) | `{am['class']}`: {am.get('note') or ''} |")
    lines += [f"| data | {d.get('call') or 'user data'}: {d['n_slices']} slices, k-space "
              f"{tuple(d['kspace_shape'])}, sha256 `{d['kspace_sha256'][:12]}…` |",
              f"| reference | {card['reference']} |",
              f"| attack | {p['attack']} ({p['steps']} steps), objectives {', '.join(p['objectives'])} |",
              f"| budgets | eps {', '.join(f'{e:g}' for e in p['eps'])} ({p['threat']['type']}, relative "
              f"{p['threat']['relative']}, per {p['threat']['per']}, support {p['threat']['support']}) |",
              f"| seed / threads | {card['seed']} / {env.get('threads')} |",
              f"| versions | kspace-attacks {env['kspace_attacks']}, torch {env['torch']}, deepinv "
              f"{env['deepinv']}, Python {env['python']} |",
              f"| created | {card.get('created', '')} |", ""]
    return lines


def render_card_markdown(card: Mapping[str, Any]) -> str:
    """``card.md``: headline, provenance, one table per condition, noise control, cost, notes."""
    s = card["summary"]
    lines = _header(card)
    lines += ["## Headline", "",
              f"Worst slice at eps {s['worst_eps']:g}: **Delta SSIM {_num(s['worst_delta_ssim'], 3)}**, Delta PSNR "
              f"{_num(s['worst_delta_psnr'], 2)} dB. At eps {s['max_eps']:g} the attack moves the reconstruction "
              f"by {_num(s['mean_relative_deviation_at_max_eps'], 4)} of its norm on average, "
              f"{_num(s['attack_over_noise_deviation_at_max_eps'], 1)} times as much as equal-norm noise.", ""]
    results = card["results"]
    for label in ("attack", *[k for k in results if k not in ("attack", "noise")], "noise"):
        if label in results:
            lines += [f"## {_LABELS.get(label, label)}", ""] + _table(results[label], label != "attack") + [""]
    if "certified" in card:
        lines += _certified(card["certified"])
    if card.get("physical"):
        lines += _physical(card["physical"])
    lines += _sanity(card)
    lines += ["## Cost", "", "| condition | gradient evaluations | forward evaluations | seconds |",
              "|---|---|---|---|"]
    cost = card["cost"]
    for label, c in cost.items():
        if isinstance(c, Mapping):
            lines.append(f"| {label} | {c['grad_evals']} | {c['forward_evals']} | {c['seconds']:.1f} |")
    lines += ["", f"{cost['rows_per_attack']} rows (slices x budgets) per attack; total "
              f"{cost['total_seconds']:.1f} s. {cost['note']}.", "", "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in card["protocol"]["metrics"].items()]
    lines += [f"- **noise control**: {card['protocol']['noise_control']}", "", "## Notes", ""]
    lines += [f"- {n}" for n in card["notes"]]
    return "\n".join(lines) + "\n"


def _certified(c: Mapping[str, Any]) -> list[str]:
    """The "certified" section: the bracket of the smoothed model per eps."""
    s = c["settings"]
    lines = ["## Certified (the smoothed model only)", "", c["statement"], "",
             f"{c['method']}; sigma {s['sigma']:g}, n_pred {s['n_pred']}, n_cert {s['n_cert']}, alpha "
             f"{s['alpha']:g}, delta {s['delta']:g}; the smoothing noise has {_num(c['noise_rel_median'], 2)} "
             f"x ||y|| and moves the reconstruction by {_num(c['smoothing_error_rel_median'], 3)} of its norm "
             f"(median); {c['forward_evals_per_slice']:.0f} reconstructions per slice, {c['seconds']:.0f} s.", "",
             "| eps | certified slices | lower bound (attack) | certified radius | radius / lower |",
             "|---|---|---|---|---|"]
    for r in c["results"]:
        lines.append(f"| {r['eps']:g} | {r['certified']} of {r['slices']} | {_num(r['lower_rel_median'], 4)} | "
                     f"{_num(r['radius_rel_median'], 4)} | {_num(r['width_median'], 1)} |")
    return lines + ["", "Lower bound and radius: medians over the certified slices, relative to the smoothed "
                        "reconstruction's norm.", ""]


def _sanity(card: Mapping[str, Any]) -> list[str]:
    """The search's sanity checks and unreliable rows (cards written before them: nothing)."""
    if "sanity" not in card:
        return []
    lines = ["## Sanity checks of the search", ""]
    unreliable = {label: sum(r.get("unreliable", 0) for r in rows) for label, rows in card["results"].items()}
    for f in card["sanity"]:
        shown = ", ".join(f"(eps {e:g}, slice {j})" for e, j in f["rows"][:8]) + (" ..." if len(f["rows"]) > 8 else "")
        lines.append(f"- **WARNING {f['check']}** ({f['where']}): {f['detail']}; rows {shown}")
    for label, n in unreliable.items():
        if n:
            lines.append(f"- **UNRELIABLE** ({label}): {n} row(s) whose worst case no two independent runs confirmed")
    if len(lines) == 2:
        lines.append("Monotone in eps and at least as bad as equal-norm noise in each objective's own metric, on "
                     "every slice: passed.")
    return lines + [""]


def _physical(section: Mapping[str, Any]) -> list[str]:
    """The "physical" section: per scanner imperfection, worst case vs a random one of its size."""
    lines = ["## Physical threats: worst case vs a random imperfection of the same size", "",
             "Δ SSIM of the worst case (worse of both objectives) and of the random imperfection (every "
             "parameter at its full size, random signs or positions); their paired difference per slice "
             "(negative: the worst case costs more) with a bootstrap 95 % CI.", "",
             "| threat | eps | worst case: worst Δ SSIM | mean [95 % CI] | random: mean [95 % CI] "
             "| worst - random [95 % CI] | answer |", "|---" * 7 + "|"]
    for name, s in section.items():
        attack, noise = s["results"]["attack"], s["results"]["noise"]
        for a, n, c in zip(attack, noise, s["attack_vs_random"], strict=True):
            unit = s["unit"].replace("|", "\\|")  # a pipe would end the table cell
            lines.append(f"| {name} (`{s['threat'].split('(')[0]}`) | {a['eps']:g} {unit} | "
                         f"{_worst(a['delta_ssim'], 3)} | {fmt_ci(a['delta_ssim'], 3)} | "
                         f"{fmt_ci(n['delta_ssim'], 3)} | {fmt_ci(c, 3)} | {c['answer']} |")
    return lines + [""]


def _at(card: Mapping[str, Any], label: str, eps: float) -> Mapping[str, Any] | None:
    return next((r for r in card["results"][label] if abs(r["eps"] - eps) < 1e-12), None)


def comparison_table(cards: Sequence[Mapping[str, Any]], eps: Sequence[float] = (0.02, 0.08)) -> str:
    """A markdown table comparing cards (one row per card) at the given budgets."""
    head = ["model", "protocol", "parameters"]
    for e in eps:
        head += [f"worst Δ SSIM @{e:g}", f"mean Δ SSIM @{e:g} [95 % CI]", f"mean Δ PSNR @{e:g} (dB)",
                 f"rel. deviation @{e:g} attack / noise"]
    head += ["cost (s)", "non-standard"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for card in cards:
        row = [card["name"], card["protocol"]["version"], f"{card['model']['parameters']:,}"]
        for e in eps:
            a, n = _at(card, "attack", e), _at(card, "noise", e)
            if a is None or n is None:
                row += ["n/a"] * 4
                continue
            row += [_num(a["delta_ssim"]["worst"], 3, True), fmt_ci(a["delta_ssim"], 3),
                    fmt_ci(a["delta_psnr"], 2),
                    f"{_num(a['relative_deviation']['mean'], 4)} / {_num(n['relative_deviation']['mean'], 4)}"]
        am = card["model"].get("attack_model")
        row += [f"{card['cost']['total_seconds']:.0f}", "attack model" if am else ""]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
