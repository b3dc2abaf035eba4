"""Session settings of the testing layer: built-in defaults, overrides from the pytest plugin
(command-line options, markers) and how one value is resolved from them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path
from typing import Any

from .._checks import describe
from ..schema import Table, setting

__all__ = ["DEFAULT_EPS", "DEFAULT_STEPS", "DEFAULT_MAX_DELTA_SSIM", "DEFAULT_ARTIFACTS_DIR",
           "MarkerOptions", "Settings", "current_settings", "use_settings", "resolve"]

#: Built-in defaults (overridden by explicit arguments, markers and command-line options).
#: A robustness assertion's budget: 0.02 relative l2 (the study's grid is
#: :data:`kspace_attacks.study.records.STUDY_EPS`).
DEFAULT_EPS = 0.02
DEFAULT_STEPS = 10
DEFAULT_MAX_DELTA_SSIM = 0.05

DEFAULT_ARTIFACTS_DIR = Path(".kspace-attacks") / "artifacts"

LOCK = threading.Lock()



@dataclass(frozen=True)
class MarkerOptions(Table):
    """The keywords of ``@pytest.mark.kspace_robustness``: a test's defaults (unset: ``None``)."""

    TABLE: ClassVar[str] = "@pytest.mark.kspace_robustness"

    eps: float | None = setting(None, f"budget: relative l2 (default {DEFAULT_EPS}) or, with threat, in the "
                                      "threat's unit (default: its middle documented budget)", minimum=0.0)
    threat: Any = setting(None, "the threat: a physical threat's name ('motion', 'phase', 'spikes', "
                                "'coil_maps', 'lost_lines'), 'KSpaceL2' / 'KSpaceLinf', or a ThreatModel")
    steps: int | None = setting(None, f"attack steps (default {DEFAULT_STEPS})", minimum=1)
    max_delta_ssim: float | None = setting(None, f"SSIM the worst case may cost (default {DEFAULT_MAX_DELTA_SSIM})",
                                           minimum=0.0)
    max_delta_psnr: float | None = setting(None, "PSNR in dB the worst case may cost (default: not checked)",
                                           minimum=0.0)
    attack: Any = setting(None, "an attack name ('apgd', 'worst_case', ...) or an Attack template")
    seed: int | None = setting(None, "seed of the attack and of kspace_batch's data")
    protocol: Any = setting(None, "a card protocol ('v1', 'v2' or a Protocol): assert on its card instead")
    preset: str | None = setting(None, "kspace_batch: the data preset")
    n: int | None = setting(None, "kspace_batch: slices", minimum=1)
    coils: int | None = setting(None, "kspace_batch: coils (multi-coil presets)", minimum=1)
    contrast: str | None = setting(None, "kspace_batch: contrast")
    split: str | None = setting(None, "kspace_batch: split of the embedded data")


@dataclass
class Settings:
    """Overrides that apply to every :func:`assert_robust` / :func:`measure_robustness` call
    while active (the pytest plugin activates one per session).

    ``eps``, ``steps`` and ``device`` override explicit arguments (they scale a whole suite);
    ``marker`` holds the current test's ``@pytest.mark.kspace_robustness`` keywords, which
    only fill in arguments the call leaves out.
    """

    eps: float | None = None
    steps: int | None = None
    device: str | None = None
    artifacts_dir: Path | None = None
    artifacts_root: Callable[[], Path] | None = None
    recorder: Any = None  # a RobustnessRecorder (testing.recorder builds on this module)
    test_id: str | None = None
    marker: dict[str, Any] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)

    def resolve_artifacts_dir(self) -> Path:
        if self.artifacts_dir is not None:
            return Path(self.artifacts_dir)
        if self.artifacts_root is not None:
            return Path(self.artifacts_root()) / "kspace-artifacts"
        return DEFAULT_ARTIFACTS_DIR


_STACK: list[Settings] = []


def current_settings() -> Settings:
    """The active :class:`Settings` (empty defaults when none is active)."""
    return _STACK[-1] if _STACK else Settings()


@contextlib.contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Activate ``settings`` for the duration of the ``with`` block (nestable)."""
    if not isinstance(settings, Settings):
        raise TypeError(f"settings: expected a kspace_attacks.testing.Settings, got {describe(settings)}")
    with LOCK:
        _STACK.append(settings)
    try:
        yield settings
    finally:
        with LOCK:
            if settings in _STACK:
                # remove this exact object (identity), even if it is not on top
                for i in range(len(_STACK) - 1, -1, -1):
                    if _STACK[i] is settings:
                        del _STACK[i]
                        break




def resolve(name: str, value: Any, default: Any, settings: Settings) -> tuple[Any, str]:
    """Value of a setting and where it came from: option > argument > marker > default."""
    override = getattr(settings, name, None)
    if override is not None:
        return override, settings.source.get(name, "command line")
    if value is not None:
        return value, "argument"
    if name in settings.marker:
        return settings.marker[name], "marker"
    return default, "default"
