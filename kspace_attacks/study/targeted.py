"""Targeted mode: try to make reconstructions show a structure that is not there.

The study's most worrying finding is false tissue. Here a small synthetic structure (a blob or
a line of given contrast) is added to the clean reconstruction to form a target image; a
targeted attack on a surrogate pulls the reconstruction towards it within a budget, and every
target model is checked for whether it shows the structure:

- ``roi_contrast``: mean magnitude change inside the structure's region divided by the
  inserted contrast (1 = fully shown, 0 = absent);
- ``roi_ssim``: SSIM between the perturbed reconstruction and the target inside a box around
  the structure (minmax normalisation of the box);
- ``shown``: ``roi_contrast >= 0.5``.

Each target is measured under three conditions (``condition``): the targeted perturbation,
equal-norm noise and the untargeted worst case of the same attack at the same eps, all in the
same region, so that "the structure shows" is decided against controls
(:func:`targeted_verdicts`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_image, check_nonneg_float
from ..attacks import PGD, Attack
from ..measurement import noise_control
from ..losses import ReconDeviation, TargetedLoss, magnitude
from ..metrics import ssim
from ..threat import KSpaceL2
from .statistics import paired_outcome

__all__ = ["insert_structure", "targeted_transfer", "targeted_verdicts"]


def insert_structure(
    x: Tensor,
    kind: str = "blob",
    center: tuple[float, float] = (0.35, 0.6),
    size: float = 0.06,
    contrast: float = 0.3,
) -> tuple[Tensor, Tensor]:
    """Add a structure to images ``x`` and return ``(target, roi)``.

    :param torch.Tensor x: ``(B, 2, H, W)`` complex or ``(B, 1, H, W)`` images.
    :param str kind: ``"blob"`` (Gaussian spot of radius ``size``) or ``"line"`` (thin
        horizontal bar of length ``4 size``).
    :param tuple center: centre as fractions of (height, width).
    :param float size: radius (blob) or half-thickness scale (line) as a fraction of the width.
    :param float contrast: magnitude added at the structure's peak (images are in [0, 1]).
    :return: the target image (same layout as ``x``) and the ``(H, W)`` 0/1 region of interest.

    :Examples:

        >>> import torch
        >>> target, roi = insert_structure(torch.zeros(1, 2, 32, 32), center=(0.5, 0.5), contrast=0.5)
        >>> round(float(target.max()), 2), int(roi.sum()) > 0
        (0.5, True)
    """
    x = check_image("x", x)
    check_choice("kind", kind, ("blob", "line"))
    if not (isinstance(center, (tuple, list)) and len(center) == 2 and all(0 <= c <= 1 for c in center)):
        raise ValueError(f"center: expected (row, col) fractions in [0, 1], got {center!r}")
    size = check_nonneg_float("size", size, strictly_positive=True)
    contrast = check_nonneg_float("contrast", contrast)
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=x.dtype, device=x.device),
                            torch.arange(w, dtype=x.dtype, device=x.device), indexing="ij")
    cy, cx, r = center[0] * h, center[1] * w, max(size * w, 1.0)
    if kind == "blob":
        shape = torch.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / (r / 1.5) ** 2)
    else:
        shape = torch.exp(-0.5 * ((yy - cy) / 0.6) ** 2) * ((xx - cx).abs() <= 2 * r).to(x.dtype)
    roi = (shape > 0.5).to(x.dtype)
    if x.shape[1] == 1:
        return x + contrast * shape, roi
    # Add the structure to the magnitude and keep each pixel's phase (real axis where |x| = 0).
    mag = x.pow(2).sum(dim=1, keepdim=True).sqrt()
    unit = torch.where(mag > 0, x / mag.clamp_min(torch.finfo(x.dtype).tiny),
                       torch.tensor([1.0, 0.0], dtype=x.dtype, device=x.device).view(1, 2, 1, 1))
    return unit * (mag + contrast * shape), roi


def _box(roi: Tensor, margin: int = 4) -> tuple[slice, slice]:
    rows, cols = torch.nonzero(roi, as_tuple=True)
    h, w = roi.shape
    r0, r1 = max(int(rows.min()) - margin, 0), min(int(rows.max()) + margin + 1, h)
    c0, c1 = max(int(cols.min()) - margin, 0), min(int(cols.max()) + margin + 1, w)
    # SSIM needs at least an 11x11 window
    if r1 - r0 < 11:
        r0, r1 = max(0, min(r0, h - 11)), max(0, min(r0, h - 11)) + 11
    if c1 - c0 < 11:
        c0, c1 = max(0, min(c0, w - 11)), max(0, min(c0, w - 11)) + 11
    return slice(r0, r1), slice(c0, c1)


def targeted_transfer(
    surrogate: Callable[[Tensor, Any], Tensor],
    targets: Mapping[str, Callable[[Tensor, Any], Tensor]],
    y: Tensor,
    physics: Any,
    eps: float = 0.05,
    kind: str = "blob",
    contrast: float = 0.3,
    center: tuple[float, float] = (0.35, 0.6),
    size: float = 0.06,
    attack: Attack | None = None,
) -> tuple[list[dict], dict[str, Tensor]]:
    """Craft a perturbation on ``surrogate`` that inserts a structure, then check each target.

    :param attack: template (its loss is replaced by a :class:`~kspace_attacks.losses.TargetedLoss`
        on the structure's region); default 50-step PGD.
    :return: per-sample records (``target``, ``roi_contrast``, ``roi_ssim``, ``shown``, ...)
        and the images ``{"target_image", "<model>_clean", "<model>_adv"}`` for plotting.
    """
    with torch.no_grad():
        x_clean_s = surrogate(y, physics)
    target_img, roi = insert_structure(x_clean_s, kind, center, size, contrast)
    template = attack if attack is not None else PGD(KSpaceL2(), steps=50)
    eps_t = torch.full((y.shape[0],), float(eps), dtype=torch.float64)
    # Focus the objective on a neighbourhood of the structure (keeps the rest unchanged).
    weight = torch.nn.functional.max_pool2d(roi[None, None], 9, stride=1, padding=4)[0, 0] + 0.05
    res = template.replace(eps=eps_t, loss=TargetedLoss(domain="magnitude", roi=weight))(
        surrogate, y, physics, target=target_img)
    # Controls at the same eps, measured in the same region: equal-norm noise (delivered on the
    # measured entries) and the untargeted worst case of the same attack.
    y_noise, _ = noise_control(template.threat.with_eps(eps_t), y, physics,
                               torch.Generator().manual_seed(template.seed))
    y_untargeted = template.replace(eps=eps_t, loss=ReconDeviation())(surrogate, y, physics).y_adv
    perturbed = {"targeted": res.y_adv, "noise": y_noise, "untargeted": y_untargeted}
    rows, cols = _box(roi)
    records, images = [], {"target_image": target_img.detach()}
    for name, model in targets.items():
        with torch.no_grad():
            clean = model(y, physics)
            advs = {c: model(yp, physics) for c, yp in perturbed.items()}
        images[f"{name}_clean"], images[f"{name}_adv"] = clean, advs["targeted"]
        for condition, adv in advs.items():
            change = (magnitude(adv) - magnitude(clean))[:, 0]
            shown = (change * roi).flatten(1).sum(1) / roi.sum() / max(contrast, 1e-8)
            box_ssim = ssim(adv[..., rows, cols], target_img[..., rows, cols])
            for i in range(y.shape[0]):
                records.append({
                    "sample": i, "surrogate_eps": float(eps), "target": name, "kind": kind,
                    "condition": condition, "contrast": contrast, "ratio": float(res.ratio[i]),
                    "roi_contrast": float(shown[i]), "roi_ssim": float(box_ssim[i]),
                    "shown": bool(shown[i] >= 0.5),
                })
    return records, images


def targeted_verdicts(records: list[dict], seed: int = 0) -> list[dict]:
    """Verdict rows "the inserted structure shows on T": per target, the targeted perturbation's
    ROI contrast against each control's on the same slices (paired bootstrap CI)."""
    out = []
    for target in dict.fromkeys(r["target"] for r in records):
        by = {c: {r["sample"]: r["roi_contrast"] for r in records
                  if r["target"] == target and r.get("condition", "targeted") == c}
              for c in ("targeted", "noise", "untargeted")}
        for control in ("noise", "untargeted"):
            common = [i for i in by["targeted"] if i in by[control]]
            if not common:
                continue
            o = paired_outcome([by["targeted"][i] for i in common], [by[control][i] for i in common],
                               seed=seed)
            out.append({"claim_id": "targeted_shows", "claim": f"the inserted structure shows on {target} "
                        f"(more than with {'equal-norm noise' if control == 'noise' else 'the untargeted worst case'})",
                        "metric": "roi_contrast", "eps": records[0]["surrogate_eps"], "surrogate": "",
                        "attack": "targeted", "target": target, "setting": f"vs {control}", **o.as_dict()})
    return out
