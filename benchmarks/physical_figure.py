"""The physical threats as a radiologist sees them: clean, worst case, random imperfection.

One template test slice; per threat at its largest documented budget: the diffusion model's
reconstruction of the clean k-space, of the worst case crafted on i-RIM (transferred) and of a
random imperfection of the same size; i-RIM's own (white-box) reconstruction of the worst case;
and the imperfection itself (per-shot motion, per-line phase, spike positions, lost lines).
Writes ``docs/physical/physical_threats.png``.

    python benchmarks/physical_figure.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kspace_attacks as ka  # noqa: E402
from kspace_attacks.adapters import load_reconstructor  # noqa: E402
from kspace_attacks.data import demo_batch  # noqa: E402
from kspace_attacks.figures import pyplot, save_figure  # noqa: E402
from kspace_attacks.physical.catalog import PHYSICAL_BUDGETS  # noqa: E402
from kspace_attacks.threat_spec import ThreatSpec  # noqa: E402

THREATS = ("motion", "phase", "spikes", "lost_lines")
OUT = ROOT / "docs" / "physical" / "physical_threats.png"


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    return x[0].pow(2).sum(0).sqrt().cpu()


def _parameters(ax, kind: str, threat, worst: torch.Tensor, random: torch.Tensor, y: torch.Tensor,
                physics) -> None:
    """The imperfection itself, worst case next to the random one."""
    if kind == "motion":
        shots = range(worst.shape[1])
        for theta, style, who in ((worst, "-o", "worst"), (random, "--s", "random")):
            ax.plot(shots, theta[0, :, 0].cpu(), style, ms=3, label=f"{who} dx")
            ax.plot(shots, theta[0, :, 1].cpu(), style, ms=3, alpha=0.6, label=f"{who} dy")
        ax.set_xlabel("shot")
        ax.set_ylabel("mm")
    elif kind == "phase":
        lines = range(worst.shape[2])
        ax.plot(lines, worst[0, 0].cpu(), "-", lw=1, label="worst offset")
        ax.plot(lines, worst[0, 1].cpu(), "-", lw=1, label="worst drift")
        ax.plot(lines, random[0, 0].cpu(), ":", lw=1, label="random offset")
        ax.set_xlabel("phase-encoding line")
        ax.set_ylabel("rad")
    elif kind == "spikes":
        ax.imshow(torch.log1p(y[0].pow(2).sum(0).sqrt().cpu() * 50), cmap="gray")
        for theta, marker, who in ((worst, "o", "worst"), (random, "x", "random")):
            pos = (theta[0].pow(2).sum(0) > 0).nonzero().cpu()
            ax.scatter(pos[:, 1], pos[:, 0], marker=marker, s=30, facecolors="none" if marker == "o" else None,
                       edgecolors="red" if marker == "o" else None, c=None if marker == "o" else "cyan",
                       label=f"{who} spikes")
        ax.set_title("k-space (log)", fontsize=8)
        ax.axis("off")
    else:  # lost lines
        lines = range(worst.shape[1])
        ax.bar(lines, threat.support_mask(y, physics).expand(1, -1)[0].cpu() * 0.3,
               color="lightgray", width=1.0, label="measured")
        ax.bar(lines, worst[0].cpu(), color="red", width=1.0, label="lost (worst)")
        ax.bar(lines, -random[0].cpu(), color="tab:blue", width=1.0, label="lost (random)")
        ax.set_xlabel("phase-encoding line")
    ax.legend(fontsize=5, loc="best")


def main() -> None:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    x, y, physics = demo_batch(4)
    x, y = x[1:2], y[1:2]
    physics = type(physics)(mask=physics.mask[1:2], img_size=tuple(y.shape[-2:]))
    irim, diffusion = load_reconstructor("irim"), load_reconstructor("diffusion")
    plt = pyplot()
    fig, axes = plt.subplots(len(THREATS), 5, figsize=(13, 2.9 * len(THREATS)))
    with torch.no_grad():
        clean = diffusion(y, physics)
    for row, kind in zip(axes, THREATS, strict=True):
        eps = PHYSICAL_BUDGETS[kind][-1]
        threat = ThreatSpec.from_mapping({"type": kind}).build(eps)
        res = ka.WorstCase(threat, budget=100)(irim, y, physics, x_true=x)
        theta_random = threat.sphere(y, physics, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            worst_diff = diffusion(res.y_adv, physics)
            random_diff = diffusion(threat.apply(y, theta_random, physics), physics)
        images = [(clean, "diffusion, clean"), (worst_diff, "worst case (on i-RIM) -> diffusion"),
                  (random_diff, "random, same size -> diffusion"), (res.x_adv, "worst case, i-RIM itself")]
        vmax = float(_magnitude(x).max())
        for ax, (img, title) in zip(row[:4], images, strict=True):
            ax.imshow(_magnitude(img), cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        row[0].set_ylabel(f"{kind}, eps {eps:g} {threat.unit}")
        row[0].axis("on")
        row[0].set_xticks([])
        row[0].set_yticks([])
        _parameters(row[4], kind, threat, res.delta, theta_random, y, physics)
        row[4].set_title(f"{kind}: {eps:g} {threat.unit}", fontsize=8)
    fig.tight_layout()
    print(save_figure(fig, OUT, dpi=110))


if __name__ == "__main__":
    main()
