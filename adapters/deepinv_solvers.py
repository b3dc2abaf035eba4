"""deepinv's own diffusion solvers, driven by a score network, as attackable reconstructors.

:class:`SolverReconstructor` turns any deepinv diffusion solver called as
``solver(y, physics, seed=...)`` (:class:`deepinv.sampling.DPS`,
:class:`deepinv.sampling.DiffPIR`, :class:`deepinv.sampling.PosteriorDiffusion`, ... with any
denoiser) into a project reconstructor ``f(y, physics) -> (B, 2, H, W)``: seeded (the same
seed gives the same output; torch's global RNG is left as it was), batched, and with the
image range handled. Many deepinv solvers assume images in [0, 1] (they map them to
[-1, 1] and clip there), while an MRI image is complex with real and imaginary parts in
[-1, 1]. With ``unit_range=True`` the solver works on ``u' = (u + 1) / 2`` instead, an exact
change of variables for a linear operator: ``A u = y`` iff ``A u' = (y + A 1) / 2``, and
:class:`UnitRangeDenoiser` gives it the matching denoiser.

:func:`load_dps` and :func:`load_diffpir` build the two registered targets
(``diffusion_dps``, ``diffusion_diffpir``) from the shipped score network, with settings
tuned on the validation split (``weights/diffusion_dps.json``, ``weights/diffusion_diffpir.json``).

Your own solver and denoiser plug in the same way:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.adapters.deepinv_solvers import SolverReconstructor
    >>> from kspace_attacks.adapters.score_denoiser import ScoreDenoiser
    >>> from kspace_attacks.adapters.score_unet import ScoreUNet
    >>> denoiser = ScoreDenoiser(ScoreUNet(channels=(8, 16), attn_levels=()))
    >>> solver = dinv.sampling.DPS(denoiser, num_steps=3, minus_one_one=False)
    >>> model = SolverReconstructor(solver, seed=0)
    >>> physics = dinv.physics.MRI(img_size=(1, 2, 16, 16))
    >>> y = physics(torch.rand(2, 2, 16, 16))
    >>> torch.equal(model(y, physics), model(y, physics))
    True
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from deepinv.models import Denoiser, Reconstructor
from torch import Tensor

from kspace_attacks._checks import check_positive_int, describe

from ._base import as_complex_image, check_inputs

__all__ = ["SolverReconstructor", "UnitRangeDenoiser", "load_dps", "load_diffpir",
           "SOLVER_DEFAULTS"]

_WEIGHTS = Path(__file__).resolve().parent / "weights"


class UnitRangeDenoiser(Denoiser):
    r"""A denoiser of images ``u`` re-expressed for ``u' = (u + 1) / 2``:
    ``D'(v', sigma') = (D(2 v' - 1, 2 sigma') + 1) / 2``.

    :param denoiser: a denoiser ``D(x, sigma)`` of the project's complex images.
    """

    def __init__(self, denoiser: torch.nn.Module):
        super().__init__()
        if not callable(denoiser):
            raise TypeError(f"denoiser: expected a denoiser D(x, sigma), got {describe(denoiser)}")
        self.denoiser = denoiser

    def forward(self, x: Tensor, sigma: Any, *args: Any, **kwargs: Any) -> Tensor:
        return (self.denoiser(2 * x - 1, 2 * torch.as_tensor(sigma)) + 1) / 2


class SolverReconstructor(Reconstructor):
    r"""A deepinv diffusion solver as a seeded, batched reconstructor ``f(y, physics)``.

    :param solver: a callable ``solver(y, physics, seed=...)`` returning images, e.g.
        :class:`deepinv.sampling.DPS` or :class:`deepinv.sampling.DiffPIR`.
    :param bool unit_range: the solver assumes images in [0, 1]; it is then run on
        ``(u + 1) / 2`` with measurements ``(y + A 1) / 2`` and its output mapped back (build
        it with a :class:`UnitRangeDenoiser`).
    :param int seed: seed of every call (``model(y, physics, seed=s)`` overrides it).

    The solver runs as deepinv wrote it: DPS differentiates its denoiser internally but the
    result is not differentiable in ``y``, so these targets are attacked through a surrogate
    (transfer) or a differentiable sampler (``evaluate(..., attack_model=...)``).
    """

    def __init__(self, solver: Any, unit_range: bool = False, seed: int = 0):
        super().__init__()
        if not callable(solver):
            raise TypeError(f"solver: expected a deepinv solver solver(y, physics), got "
                            f"{describe(solver)}")
        if not isinstance(unit_range, bool):
            raise TypeError(f"unit_range: expected a bool, got {describe(unit_range)}")
        self.solver = solver
        self.unit_range = unit_range
        self.seed = check_positive_int("seed", seed, minimum=0)
        try:
            self._takes_seed = "seed" in inspect.signature(solver.forward if isinstance(
                solver, torch.nn.Module) else solver).parameters
        except (TypeError, ValueError):
            self._takes_seed = False
        # a PosteriorDiffusion whose SDE solver has no generator draws from the global RNG
        # (seeded below) and warns when handed a seed it cannot use
        if getattr(getattr(solver, "solver", None), "rng", False) is None:
            self._takes_seed = False

    def forward(self, y: Tensor, physics: Any, seed: int | None = None) -> Tensor:
        """Reconstruct ``(B, 2, H, W)`` complex images from k-space ``y``."""
        y, physics = check_inputs(y, physics)
        seed = self.seed if seed is None else check_positive_int("seed", seed, minimum=0)
        y_in = y
        if self.unit_range:
            ones = torch.ones_like(physics.A_adjoint(y))
            y_in = (y + physics.A(ones)) / 2
        devices = [y.device] if y.device.type == "cuda" else []
        # solvers draw from the global RNG (DiffPIR) or their own generator (PosteriorDiffusion):
        # seed both, and leave the caller's global RNG as it was
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            kwargs = {"seed": seed} if self._takes_seed else {}
            x = self.solver(y_in, physics, **kwargs)
        if self.unit_range:
            x = 2 * x - 1
        return as_complex_image("solver output", x.to(y.dtype))


#: Settings of the registered solver targets when no tuning JSON overrides them.
SOLVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "diffusion_dps": {"num_steps": 100, "weight": 1.0, "guidance": "norm"},
    "diffusion_diffpir": {"max_iter": 50, "lambda_": 7.0, "zeta": 0.3, "sigma": 0.02},
}


def _settings(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    path = _WEIGHTS / f"{name}.json"
    tuned = json.loads(path.read_text())["solver"] if path.is_file() else {}
    unknown = set(overrides) - set(SOLVER_DEFAULTS[name]) - {"seed"}
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {sorted(unknown)}; expected a subset of "
                        f"{sorted(set(SOLVER_DEFAULTS[name]) | {'seed'})}")
    return {**SOLVER_DEFAULTS[name], **tuned, **overrides}


def _score_denoiser(weights: Any, device: str | torch.device) -> Any:
    from .diffusion import load as load_diffusion
    from .score_denoiser import from_reconstructor

    return from_reconstructor(load_diffusion(weights, device=device)).to(device).eval()


def load_dps(weights: Any = "embedded", device: str | torch.device = "cpu",
             **kwargs: Any) -> SolverReconstructor:
    """deepinv's :class:`~deepinv.sampling.DPS` (Chung et al. 2023) driven by the shipped
    score network (``weights`` as in :func:`kspace_attacks.adapters.diffusion.load`).

    :param kwargs: ``num_steps``, ``weight`` (guidance strength), ``guidance`` (``"norm"``:
        the paper's, or ``"annealed"``), ``seed``; defaults tuned on the validation split.

        >>> from kspace_attacks.adapters.deepinv_solvers import load_dps
        >>> load_dps(None, num_steps=4).solver.solver.timesteps.numel()
        4
    """
    import deepinv as dinv

    kw = _settings("diffusion_dps", kwargs)
    seed = kw.pop("seed", 0)
    solver = dinv.sampling.DPS(_score_denoiser(weights, device), num_steps=kw["num_steps"],
                               weight=kw["weight"], guidance=kw["guidance"], device=device,
                               dtype=torch.float32, minus_one_one=False,
                               rng=torch.Generator(device=device))
    return SolverReconstructor(solver, unit_range=False, seed=seed).to(device).eval()


def load_diffpir(weights: Any = "embedded", device: str | torch.device = "cpu",
                 **kwargs: Any) -> SolverReconstructor:
    """deepinv's :class:`~deepinv.sampling.DiffPIR` (Zhu et al. 2023) driven by the shipped
    score network, run on ``(u + 1) / 2`` (DiffPIR assumes images in [0, 1]).

    :param kwargs: ``max_iter``, ``lambda_`` (data-fidelity weight), ``zeta`` (noise mixing),
        ``sigma`` (the data's noise level in DiffPIR's units), ``seed``; defaults tuned on the
        validation split.

        >>> from kspace_attacks.adapters.deepinv_solvers import load_diffpir
        >>> load_diffpir(None, max_iter=4).solver.max_iter
        4
    """
    import deepinv as dinv

    kw = _settings("diffusion_diffpir", kwargs)
    seed = kw.pop("seed", 0)
    denoiser = UnitRangeDenoiser(_score_denoiser(weights, device))
    solver = dinv.sampling.DiffPIR(denoiser, dinv.optim.data_fidelity.L2(), sigma=kw["sigma"],
                                   max_iter=kw["max_iter"], zeta=kw["zeta"],
                                   lambda_=kw["lambda_"], device=device)
    return SolverReconstructor(solver, unit_range=True, seed=seed).to(device).eval()
