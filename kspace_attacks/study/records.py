"""The record schema: every column of a sweep's ``records.csv``, named once.

A record is one (sample, surrogate, attack, eps, target) evaluation. Sign convention, the same
everywhere in the package: ``delta_<metric> = <metric>(adversarial) - <metric>(clean)``, so a
degradation is a *negative* Delta SSIM / Delta PSNR and a positive Delta NMSE.

Modules that read or write records use the constants below, never bare strings, so a column
is renamed in one place. :data:`COLUMNS` documents each (unit and meaning); ``kspace-attacks
report`` and ``docs/ARCHITECTURE.md`` quote it.

Example:

    >>> from kspace_attacks.study import records
    >>> records.COLUMNS[records.DELTA_SSIM].meaning
    'SSIM(x_adv, x_true) - SSIM(x_clean, x_true); negative = degradation'
    >>> records.BASELINE_SURROGATE, records.BASELINE_ATTACK
    ('random', 'noise')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .._deprecation import renamed, renamed_keys

__all__ = [
    "Column", "COLUMNS", "BASELINE_SURROGATE", "BASELINE_ATTACK", "SETTINGS", "STUDY_EPS",
    "GROUP_KEYS", "SUMMARY_METRICS", "setting_of", "restart_columns", "RENAMED_COLUMNS", "upgrade",
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

_GT = "against the ground truth x_true"
COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column(SAMPLE_ID, "", "id of the slice (data order, or the data set's own id)"),
    Column(SLICE, "index", "the item's slice: z of the embedded template, or the slice of its NIfTI / fastMRI file"),
    Column(CONTRAST, "", "the item's contrast (embedded: t1, t1w, t2w, pd, flair; empty for files)"),
    Column(SURROGATE, "", "model the perturbation was crafted on; 'random' for the noise baseline"),
    Column(TARGET, "", "model that reconstructed the perturbed k-space"),
    Column(ATTACK, "", "attack label (the attack's name, e.g. 'pgd', or the config's key)"),
    Column(SETTING, "", "'white-box' (target = surrogate), 'transfer' or 'baseline'"),
    Column(EPS, "relative budget", "budget: ||delta|| <= eps ||y|| (threat model's norm)"),
    Column(BATCH, "", "index of the batch the record came from (sweeps)"),
    Column(RATIO, "relative", "||delta|| / ||y|| actually used (<= eps)"),
    Column(ATTACK_LOSS, "loss units", "the attack objective at the returned perturbation (NaN for noise)"),
    Column(GRAD_EVALS, "count", "gradient evaluations the attack used for the whole batch"),
    Column(N_STARTS, "count", "starts (restarts) of the worst-case search for this row (0: none)"),
    Column(START_BEST, "loss units", "best attack objective over the search's starts"),
    Column(START_MEDIAN, "loss units", "median attack objective over the search's starts"),
    Column(RESTART_SPREAD, "relative",
           "(start_best - start_median) / |start_best|: 0 = every start found the same worst case"),
    Column(ATTACK_SECONDS, "s", "attack wall time per sample (batch time / batch size)"),
    Column(TARGET_SECONDS, "s", "target reconstruction wall time per sample"),
    Column(SSIM_VS_CLEAN, "", "SSIM(x_adv, x_clean): 1 = unchanged"),
    Column(PSNR_VS_CLEAN, "dB", "PSNR(x_adv, x_clean); 80 dB cap when identical"),
    Column(NMSE_VS_CLEAN, "", "NMSE(x_adv, x_clean)"),
    Column(SQUARED_DEVIATION, "image units^2",
           "||x_adv - x_clean||_2^2 (complex images): the deviation objective's value"),
    Column(RELATIVE_DEVIATION, "relative",
           "||x_adv - x_clean||_2 / ||x_clean||_2: 'the deviation' of cards, verdicts and docs"),
    Column(DELTA_SSIM, "", "SSIM(x_adv, x_true) - SSIM(x_clean, x_true); negative = degradation"),
    Column(DELTA_PSNR, "dB", "PSNR(x_adv, x_true) - PSNR(x_clean, x_true); negative = degradation"),
    Column(DELTA_NMSE, "", "NMSE(x_adv, x_true) - NMSE(x_clean, x_true); positive = degradation"),
    Column(CLEAN_SSIM, "", f"SSIM of the clean reconstruction {_GT}"),
    Column(CLEAN_PSNR, "dB", f"PSNR of the clean reconstruction {_GT}"),
    Column(CLEAN_NMSE, "", f"NMSE of the clean reconstruction {_GT}"),
    Column(ADV_SSIM, "", f"SSIM of the perturbed reconstruction {_GT}"),
    Column(ADV_PSNR, "dB", f"PSNR of the perturbed reconstruction {_GT}"),
    Column(ADV_NMSE, "", f"NMSE of the perturbed reconstruction {_GT}"),
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
)

#: Axis labels of plotted columns.
LABELS = {
    DELTA_SSIM: "Delta SSIM (perturbed - clean, vs ground truth)",
    DELTA_PSNR: "Delta PSNR [dB] (perturbed - clean, vs ground truth)",
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


#: Columns of earlier versions: old name -> new name. ``deviation`` was the squared absolute
#: change; "deviation" now means the relative change everywhere (``relative_deviation``).
RENAMED_COLUMNS = {"deviation": SQUARED_DEVIATION}


def upgrade(records: Iterable[dict]) -> list[dict]:
    """Records of an earlier version with today's column names (one warning when something was
    renamed)."""
    return renamed_keys(records, RENAMED_COLUMNS, "record column(s)")


def __getattr__(name: str):
    if name == "DEVIATION":  # the constant of the renamed column, kept for one release
        renamed("kspace_attacks.study.records.DEVIATION", "SQUARED_DEVIATION")
        return SQUARED_DEVIATION
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
