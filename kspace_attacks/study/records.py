"""The record schema: every column of a sweep's ``records.csv``, named once.

A record is one (sample, surrogate, attack, eps, target) evaluation. Sign convention, the same
everywhere in the package: ``delta_<metric> = <metric>(adversarial) - <metric>(clean)``, so a
degradation is a *negative* Delta SSIM / Delta PSNR and a positive Delta NMSE.

Scale: SSIM / PSNR / NMSE columns without a suffix are in the run's ``normalization``
(``summary.json``; default ``"reference"``: images as they are, data range = the reference's
maximum, the reference being the ground truth, or the clean reconstruction for ``*_vs_clean``),
so a perturbed reconstruction is scored on the reference's scale, never its own. The ``*_minmax``
columns are the same numbers with per-image min-max normalisation, the original study's (which
an attack can game by moving the pixel it divides by); ``*_ssim_fg`` average SSIM over the
reference's foreground. The ``delta_*_norm`` / ``*_null_fraction`` columns split the change
(and the error) into what the measurements carry and the null space of the acquisition
(:mod:`kspace_attacks.hallucination`). Records of earlier versions lack these columns.

Modules that read or write records use the constants below, never bare strings, so a column
is renamed in one place. :data:`COLUMNS` documents each (unit and meaning); ``kspace-attacks
report`` and ``docs/ARCHITECTURE.md`` quote it.

Example:

    >>> from kspace_attacks.study import records
    >>> records.COLUMNS[records.DELTA_SSIM].meaning
    "SSIM(x_adv, x_true) - SSIM(x_clean, x_true), on the run's normalization (default: x_true's scale); negative = degradation"
    >>> records.COLUMNS[records.DELTA_SSIM_MINMAX].unit, records.COLUMNS[records.DELTA_NULL_FRACTION].unit
    ('', 'energy fraction')
    >>> records.BASELINE_SURROGATE, records.BASELINE_ATTACK
    ('random', 'noise')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


__all__ = [
    "Column", "COLUMNS", "BASELINE_SURROGATE", "BASELINE_ATTACK", "SETTINGS", "STUDY_EPS",
    "GROUP_KEYS", "SUMMARY_METRICS", "setting_of", "restart_columns", "with_coordinates",
]


@dataclass(frozen=True)
class Column:
    """One record column: its name, unit and meaning (with the sign convention)."""

    name: str
    unit: str
    meaning: str


#: Surrogate and attack names of the equal-norm random baseline rows.
BASELINE_SURROGATE = "random"
BASELINE_ATTACK = "noise"

#: Values of the ``setting`` column.
WHITE_BOX, TRANSFER, BASELINE = "white-box", "transfer", "baseline"
SETTINGS = (WHITE_BOX, TRANSFER, BASELINE)

#: The study's budget grid, eps = 0, 0.01, ..., 0.08 (relative to ||y||).
STUDY_EPS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(9))

# Identification -------------------------------------------------------------------------
SAMPLE_ID, SURROGATE, TARGET, ATTACK, SETTING, EPS = (
    "sample_id", "surrogate", "target", "attack", "setting", "eps")
SLICE, CONTRAST = "slice", "contrast"  # the item's coordinates (sweeps)
BATCH = "batch"
# The attack ------------------------------------------------------------------------------
RATIO, ATTACK_LOSS, GRAD_EVALS, ATTACK_SECONDS, TARGET_SECONDS = (
    "ratio", "attack_loss", "grad_evals", "attack_seconds", "target_seconds")
N_STARTS, START_BEST, START_MEDIAN, RESTART_SPREAD = (
    "n_starts", "start_best", "start_median", "restart_spread")
UNRELIABLE = "unreliable"
# Perturbed vs clean reconstruction (no ground truth needed) ----------------------------------
SSIM_VS_CLEAN, PSNR_VS_CLEAN, NMSE_VS_CLEAN, SQUARED_DEVIATION = (
    "ssim_vs_clean", "psnr_vs_clean", "nmse_vs_clean", "squared_deviation")
# Against the ground truth --------------------------------------------------------------------
DELTA_SSIM, DELTA_PSNR, DELTA_NMSE = "delta_ssim", "delta_psnr", "delta_nmse"
CLEAN_SSIM, CLEAN_PSNR, CLEAN_NMSE = "clean_ssim", "clean_psnr", "clean_nmse"
ADV_SSIM, ADV_PSNR, ADV_NMSE = "adv_ssim", "adv_psnr", "adv_nmse"
# Artifact statistics of the residual x_adv - x_clean ---------------------------------------
RESIDUAL_RMS, SPECTRAL_FLATNESS, EXCESS_KURTOSIS, HALLUCINATION_FRACTION = (
    "residual_rms", "spectral_flatness", "excess_kurtosis", "hallucination_fraction")
# ... calibrated against the target's own response to equal-norm noise (study/null.py)
STRUCTURE_FRACTION, SPECTRUM_DISTANCE, VALUE_DISTANCE = (
    "structure_fraction", "spectrum_distance", "value_distance")
RELATIVE_DEVIATION = "relative_deviation"
# The same with per-image min-max normalisation (the original study's; gameable) -------------
SSIM_VS_CLEAN_MINMAX, PSNR_VS_CLEAN_MINMAX, NMSE_VS_CLEAN_MINMAX = (
    "ssim_vs_clean_minmax", "psnr_vs_clean_minmax", "nmse_vs_clean_minmax")
DELTA_SSIM_MINMAX, DELTA_PSNR_MINMAX, DELTA_NMSE_MINMAX = (
    "delta_ssim_minmax", "delta_psnr_minmax", "delta_nmse_minmax")
CLEAN_SSIM_MINMAX, CLEAN_PSNR_MINMAX, CLEAN_NMSE_MINMAX = (
    "clean_ssim_minmax", "clean_psnr_minmax", "clean_nmse_minmax")
ADV_SSIM_MINMAX, ADV_PSNR_MINMAX, ADV_NMSE_MINMAX = "adv_ssim_minmax", "adv_psnr_minmax", "adv_nmse_minmax"
# SSIM over the reference's foreground (metrics.foreground_mask) ----------------------------
SSIM_VS_CLEAN_FG, CLEAN_SSIM_FG, ADV_SSIM_FG, DELTA_SSIM_FG = (
    "ssim_vs_clean_fg", "clean_ssim_fg", "adv_ssim_fg", "delta_ssim_fg")
# Measured / null-space split (kspace_attacks.hallucination) ---------------------------------
DELTA_MEASURED_NORM, DELTA_NULL_NORM, DELTA_NULL_FRACTION = (
    "delta_measured_norm", "delta_null_norm", "delta_null_fraction")
ERROR_MEASURED_NORM, ERROR_NULL_NORM, ERROR_NULL_FRACTION = (
    "error_measured_norm", "error_null_norm", "error_null_fraction")
# The targeted test's records (targeted.csv, study/targeted.py) -----------------------------
ROI_CONTRAST, ROI_CONTRAST_DATA, ROI_CONTRAST_BEYOND_DATA, ROI_CONTRAST_NULL = (
    "roi_contrast", "roi_contrast_data", "roi_contrast_beyond_data", "roi_contrast_null")

_GT = "against the ground truth x_true"
_NORM = "on the run's normalization (default: x_true's scale)"
_MM = "per-image min-max normalisation (the original study's; an attack can game it)"
_FG = "SSIM over x_true's foreground (magnitude > 10 % of its max, dilated 3 px)"
_SPLIT = ("; NaN where a multi-coil least-squares projection did not converge "
          "(kspace_attacks.hallucination)")
COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column(SAMPLE_ID, "", "id of the slice (data order, or the data set's own id)"),
    Column(SLICE, "index", "the item's slice: z of the embedded template, or the slice of its NIfTI / fastMRI file"),
    Column(CONTRAST, "", "the item's contrast (embedded: t1, t1w, t2w, pd, flair; empty for files)"),
    Column(SURROGATE, "", "model the perturbation was crafted on; 'random' for the noise baseline"),
    Column(TARGET, "", "model that reconstructed the perturbed k-space"),
    Column(ATTACK, "", "attack label (the attack's name, e.g. 'pgd', or the config's key)"),
    Column(SETTING, "", "'white-box' (target = surrogate), 'transfer' or 'baseline'"),
    Column(EPS, "budget", "budget: ||delta|| <= eps ||y|| (threat model's norm); a physical threat's in its "
           "unit (mm, rad, max|y|, lines)"),
    Column(BATCH, "", "index of the batch the record came from (sweeps)"),
    Column(RATIO, "relative", "||delta|| / ||y|| actually used (<= eps); a physical threat: the size used"),
    Column(ATTACK_LOSS, "loss units", "the attack objective at the returned perturbation (NaN for noise)"),
    Column(GRAD_EVALS, "count", "gradient evaluations the attack used for the whole batch"),
    Column(N_STARTS, "count", "starts (restarts) of the worst-case search for this row (0: none)"),
    Column(START_BEST, "loss units", "best attack objective over the search's starts"),
    Column(START_MEDIAN, "loss units", "median attack objective over the search's starts"),
    Column(RESTART_SPREAD, "relative",
           "(start_best - start_median) / |start_best|: 0 = every start found the same worst case"),
    Column(UNRELIABLE, "flag", "1: the adaptive search could not confirm this row's worst case (no two independent "
           "runs agreed within its cap, WorstCase(max_budget=...)); 0: confirmed; NaN: not assessed"),
    Column(ATTACK_SECONDS, "s", "attack wall time per sample (batch time / batch size)"),
    Column(TARGET_SECONDS, "s", "target reconstruction wall time per sample"),
    Column(SSIM_VS_CLEAN, "", "SSIM(x_adv, x_clean): 1 = unchanged; on the run's normalization "
           "(default: x_clean's scale)"),
    Column(PSNR_VS_CLEAN, "dB", "PSNR(x_adv, x_clean); 80 dB cap when identical; on the run's normalization "
           "(default: data range = max |x_clean|)"),
    Column(NMSE_VS_CLEAN, "", "NMSE(x_adv, x_clean)"),
    Column(SQUARED_DEVIATION, "image units^2",
           "||x_adv - x_clean||_2^2 (complex images): the deviation objective's value"),
    Column(RELATIVE_DEVIATION, "relative",
           "||x_adv - x_clean||_2 / ||x_clean||_2: 'the deviation' of cards, verdicts and docs"),
    Column(DELTA_SSIM, "", f"SSIM(x_adv, x_true) - SSIM(x_clean, x_true), {_NORM}; negative = degradation"),
    Column(DELTA_PSNR, "dB", f"PSNR(x_adv, x_true) - PSNR(x_clean, x_true), {_NORM}; negative = degradation"),
    Column(DELTA_NMSE, "", "NMSE(x_adv, x_true) - NMSE(x_clean, x_true); positive = degradation"),
    Column(CLEAN_SSIM, "", f"SSIM of the clean reconstruction {_GT}"),
    Column(CLEAN_PSNR, "dB", f"PSNR of the clean reconstruction {_GT}"),
    Column(CLEAN_NMSE, "", f"NMSE of the clean reconstruction {_GT}"),
    Column(ADV_SSIM, "", f"SSIM of the perturbed reconstruction {_GT}"),
    Column(ADV_PSNR, "dB", f"PSNR of the perturbed reconstruction {_GT}"),
    Column(ADV_NMSE, "", f"NMSE of the perturbed reconstruction {_GT}"),
    Column(SSIM_VS_CLEAN_MINMAX, "", f"SSIM(x_adv, x_clean) with {_MM}"),
    Column(PSNR_VS_CLEAN_MINMAX, "dB", f"PSNR(x_adv, x_clean) with {_MM}; 80 dB cap when identical"),
    Column(NMSE_VS_CLEAN_MINMAX, "", f"NMSE(x_adv, x_clean) with {_MM}"),
    Column(DELTA_SSIM_MINMAX, "", f"delta_ssim with {_MM}; negative = degradation"),
    Column(DELTA_PSNR_MINMAX, "dB", f"delta_psnr with {_MM}; negative = degradation"),
    Column(DELTA_NMSE_MINMAX, "", f"delta_nmse with {_MM}; positive = degradation"),
    Column(CLEAN_SSIM_MINMAX, "", f"clean_ssim with {_MM}"),
    Column(CLEAN_PSNR_MINMAX, "dB", f"clean_psnr with {_MM}"),
    Column(CLEAN_NMSE_MINMAX, "", f"clean_nmse with {_MM}"),
    Column(ADV_SSIM_MINMAX, "", f"adv_ssim with {_MM}"),
    Column(ADV_PSNR_MINMAX, "dB", f"adv_psnr with {_MM}"),
    Column(ADV_NMSE_MINMAX, "", f"adv_nmse with {_MM}"),
    Column(SSIM_VS_CLEAN_FG, "", "SSIM(x_adv, x_clean) over x_clean's foreground (magnitude > 10 % of its max, "
           "dilated 3 px), on the run's normalization"),
    Column(CLEAN_SSIM_FG, "", f"{_FG} of the clean reconstruction, on the run's normalization"),
    Column(ADV_SSIM_FG, "", f"{_FG} of the perturbed reconstruction, on the run's normalization"),
    Column(DELTA_SSIM_FG, "", "adv_ssim_fg - clean_ssim_fg; negative = degradation"),
    Column(DELTA_MEASURED_NORM, "image units",
           f"||P_meas r||_2 of the change r = x_adv - x_clean: the part the measurements determine{_SPLIT}"),
    Column(DELTA_NULL_NORM, "image units",
           f"||P_null r||_2 of the change: the part in the null space of the acquisition, invented by the model{_SPLIT}"),
    Column(DELTA_NULL_FRACTION, "energy fraction",
           f"||P_null r||^2 / ||r||^2 of the change (0: all carried by the data, 1: all invented; NaN when r = 0){_SPLIT}"),
    Column(ERROR_MEASURED_NORM, "image units", f"||P_meas e||_2 of the error e = x_adv - x_true{_SPLIT}"),
    Column(ERROR_NULL_NORM, "image units", f"||P_null e||_2 of the error e = x_adv - x_true{_SPLIT}"),
    Column(ERROR_NULL_FRACTION, "energy fraction",
           f"||P_null e||^2 / ||e||^2 of the error e = x_adv - x_true (NaN when e = 0){_SPLIT}"),
    Column(ROI_CONTRAST, "fraction of the inserted contrast",
           "targeted.csv: mean |x_adv| - |x_clean| inside the structure's region / its contrast (1 = fully shown), "
           "data and model together"),
    Column(ROI_CONTRAST_DATA, "fraction of the inserted contrast",
           "targeted.csv: roi_contrast of the zero-filled reconstructions A^H y_adv vs A^H y: what the perturbed "
           "data themselves carry into the region"),
    Column(ROI_CONTRAST_BEYOND_DATA, "fraction of the inserted contrast",
           "targeted.csv: roi_contrast - roi_contrast_data: the structure the target shows beyond what the data "
           "carry (the verdict's metric)"),
    Column(ROI_CONTRAST_NULL, "fraction of the inserted contrast",
           "targeted.csv: mean |x_clean + P_null r| - |x_clean| inside the region / contrast, r = x_adv - x_clean: "
           f"the part of the shown structure in the acquisition's null space (invented by the model){_SPLIT}"),
    Column(RESIDUAL_RMS, "image units", "RMS of the magnitude residual |x_adv| - |x_clean|"),
    Column(SPECTRAL_FLATNESS, "", "geometric / arithmetic mean of the residual's power spectrum (1 = white)"),
    Column(EXCESS_KURTOSIS, "", "excess kurtosis of the residual's values (0 = Gaussian)"),
    Column(HALLUCINATION_FRACTION, "area fraction",
           "area where the smoothed residual exceeds 3 sigmas of smoothed white noise; UNCALIBRATED "
           "(assumes white image noise; no verdict uses it)"),
    Column(STRUCTURE_FRACTION, "area fraction",
           "area where the smoothed residual exceeds the target's own equal-norm-noise null at "
           "level 0.01 (noise scores about 0.01)"),
    Column(SPECTRUM_DISTANCE, "0..1",
           "total-variation distance of the residual's radial power spectrum from the noise null's"),
    Column(VALUE_DISTANCE, "0..1",
           "Kolmogorov-Smirnov distance of the residual's standardised values from the noise null's"),
)}

#: Keys that identify a group of records in summaries.
GROUP_KEYS = (SURROGATE, TARGET, ATTACK, SETTING, EPS)
#: Numeric columns summarised per group (mean, std, 95 % CI).
SUMMARY_METRICS = (
    RATIO, SSIM_VS_CLEAN, PSNR_VS_CLEAN, NMSE_VS_CLEAN, DELTA_SSIM, DELTA_PSNR, DELTA_NMSE,
    CLEAN_SSIM, ADV_SSIM, CLEAN_PSNR, ADV_PSNR, SQUARED_DEVIATION, RELATIVE_DEVIATION, RESIDUAL_RMS,
    SPECTRAL_FLATNESS, EXCESS_KURTOSIS, HALLUCINATION_FRACTION, STRUCTURE_FRACTION,
    SPECTRUM_DISTANCE, VALUE_DISTANCE, RESTART_SPREAD, ATTACK_SECONDS, TARGET_SECONDS,
    SSIM_VS_CLEAN_MINMAX, PSNR_VS_CLEAN_MINMAX, DELTA_SSIM_MINMAX, DELTA_PSNR_MINMAX, DELTA_SSIM_FG,
    DELTA_NULL_FRACTION, ERROR_NULL_FRACTION,
)

#: Axis labels of plotted columns.
LABELS = {
    DELTA_SSIM: "Delta SSIM (perturbed - clean, vs ground truth)",
    DELTA_PSNR: "Delta PSNR [dB] (perturbed - clean, vs ground truth)",
    DELTA_SSIM_MINMAX: "Delta SSIM, min-max normalised (perturbed - clean, vs ground truth)",
    DELTA_PSNR_MINMAX: "Delta PSNR [dB], min-max normalised (perturbed - clean, vs ground truth)",
    DELTA_NULL_FRACTION: "null-space share of the change ||P_null r||^2 / ||r||^2",
    SSIM_VS_CLEAN: "SSIM of perturbed vs clean reconstruction",
    PSNR_VS_CLEAN: "PSNR [dB] of perturbed vs clean reconstruction",
    HALLUCINATION_FRACTION: "hallucination area fraction (uncalibrated)",
    STRUCTURE_FRACTION: "structure area beyond the noise null",
    RELATIVE_DEVIATION: "||f(y+delta) - f(y)|| / ||f(y)||",
    SPECTRAL_FLATNESS: "spectral flatness of the residual",
}


def setting_of(surrogate: str, attack: str, target: str) -> str:
    """The ``setting`` of a record: baseline, white-box (target = surrogate) or transfer."""
    if surrogate == BASELINE_SURROGATE and attack == BASELINE_ATTACK:
        return BASELINE
    return WHITE_BOX if surrogate == target else TRANSFER


def restart_columns(n_starts: float = 0.0, best: float = float("nan"),
                    median: float = float("nan")) -> dict[str, float]:
    """The restart columns of one record: starts, best and median objective over them, and the
    spread ``(best - median) / |best|`` (NaN without starts; 0 when best is 0).

    >>> restart_columns(4, 2.0, 1.5)[RESTART_SPREAD]
    0.25
    """
    if n_starts == 0:
        spread = float("nan")
    else:
        spread = max(0.0, (best - median) / abs(best)) if best != 0 else 0.0
    return {N_STARTS: float(n_starts), START_BEST: best, START_MEDIAN: median, RESTART_SPREAD: spread}


def is_baseline(record: dict) -> bool:
    """Whether ``record`` is an equal-norm noise baseline row."""
    return record.get(SETTING) == BASELINE or record.get(SURROGATE) == BASELINE_SURROGATE


def with_coordinates(records: Sequence[dict], coordinates: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """``records`` with their item's ``slice``, ``contrast``, ``subject`` and ``block`` (its
    coordinates, :func:`~kspace_attacks.study.sources.build_items`) right after ``sample_id``.

    >>> with_coordinates([{"sample_id": "a", "eps": 0.05}], {"a": {"subject": "s1", "block": 0}})
    [{'sample_id': 'a', 'subject': 's1', 'block': 0, 'eps': 0.05}]
    """
    out = []
    for r in records:
        where = coordinates.get(str(r.get(SAMPLE_ID)))
        if where is None or SAMPLE_ID not in r:
            out.append(r)
            continue
        row = {}
        for k, v in r.items():
            row[k] = v
            if k == SAMPLE_ID:
                row.update(where)
        out.append(row)
    return out
