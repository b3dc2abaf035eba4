"""The diffusion sampler's settings: their defaults and their validation.

Kept apart from the sampler (:mod:`kspace_attacks.adapters.diffusion`, which re-exports
:data:`SAMPLER_DEFAULTS`) so that tuning code and configs can check settings without the model.

    >>> from kspace_attacks.adapters.sampler_settings import check_sampler_kwargs
    >>> check_sampler_kwargs({"lam": 0.5, "final_lam": 0.1})
    {'lam': 0.5, 'final_lam': 0.1}
"""

from __future__ import annotations

from typing import Any

from kspace_attacks._checks import check_nonneg_float, check_positive_int, describe

__all__ = ["SAMPLER_DEFAULTS", "check_sampler_kwargs"]

#: Sampler defaults used when no weights JSON overrides them (tuned values live in the JSON).
SAMPLER_DEFAULTS: dict[str, Any] = {
    "steps": 50,
    "lam": 1.0,
    "eta": 1.0,
    "corrector_steps": 0,
    "snr": 0.16,
    "n_samples": 1,
    "clip_x0": 1.0,
    "final_dc": True,
    "final_lam": 1.0,
}


def check_sampler_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """Validate sampler hyper-parameters; unknown names are rejected."""
    unknown = set(kw) - set(SAMPLER_DEFAULTS) - {"seed", "differentiable", "checkpointing"}
    if unknown:
        raise TypeError(
            f"sampler kwargs: unknown argument(s) {sorted(unknown)}; expected a subset of "
            f"{sorted(set(SAMPLER_DEFAULTS) | {'seed', 'differentiable', 'checkpointing'})}"
        )
    out = dict(kw)
    if "steps" in out:
        check_positive_int("steps", out["steps"])
    for name in ("lam", "final_lam", "eta"):  # weights in [0, 1]
        if name in out:
            value = check_nonneg_float(name, out[name])
            if value > 1:
                raise ValueError(f"{name}: expected a number in [0, 1], got {value}")
            out[name] = value
    if "corrector_steps" in out:
        check_positive_int("corrector_steps", out["corrector_steps"], minimum=0)
    if "snr" in out:
        out["snr"] = check_nonneg_float("snr", out["snr"])
    if "n_samples" in out:
        check_positive_int("n_samples", out["n_samples"])
    if out.get("clip_x0") is not None:
        out["clip_x0"] = check_nonneg_float("clip_x0", out["clip_x0"], strictly_positive=True)
    if out.get("seed") is not None:
        check_positive_int("seed", out["seed"], minimum=0)
    for name in ("differentiable", "checkpointing", "final_dc"):
        if name in out and not isinstance(out[name], bool):
            raise TypeError(f"{name}: expected a bool, got {describe(out[name])}")
    return out


