"""pytest plugin: robustness tests of MRI reconstructors in a few lines.

Registered through the ``pytest11`` entry point ``kspace_attacks`` (disable it with
``-p no:kspace_attacks``). Without the entry point, load it with
``-p kspace_attacks.testing.plugin``; with it, that would register the module twice (an error).

Fixtures
    ``kspace_batch``
        ``(x, y, physics)`` from the embedded data set (:func:`kspace_attacks.data.demo_batch`),
        on ``--kspace-device``. Choose it with the marker (``preset=``, ``n=``, ``coils=``,
        ``contrast=``) or indirect parametrisation (``"embedded"`` or a dict of those keys).
    ``kspace_attack``
        factory ``kspace_attack(model, physics, eps=None, steps=None, method="apgd", **kw)``
        returning a :class:`~kspace_attacks.testing.BoundAttack`, ``attack(y) -> AttackResult``;
        honours the command-line options and the marker.
    ``kspace_recorder``
        the session's :class:`~kspace_attacks.testing.RobustnessRecorder`; every
        :func:`~kspace_attacks.testing.assert_robust` call is recorded in it, and
        ``kspace_recorder.measure(model, batch)`` records without asserting.

Marker
    ``@pytest.mark.kspace_robustness(eps=..., steps=..., max_delta_ssim=..., max_delta_psnr=...,
    attack=..., seed=..., threat=..., protocol=..., preset=..., n=..., coils=..., contrast=...)``: the test's defaults
    (explicit arguments win; command-line options win over both). Select such tests with
    ``-m kspace_robustness``.

    ``@pytest.mark.isolated``: run the test in a fresh Python process, so that a native crash
    (e.g. inside a compiled kernel) fails that test instead of ending the session
    (:mod:`kspace_attacks.testing.isolation`).

Options
    ``--kspace-eps``, ``--kspace-steps``, ``--kspace-device`` (override every attack),
    ``--kspace-report=PATH`` (JSON of all measurements, with the robustness card of every
    model asserted with ``protocol="v1"`` under ``"cards"``), ``--kspace-artifacts=DIR`` (failure
    PNG / ``.h5``; default: ``<pytest basetemp>/kspace-artifacts``).

The summary table of all measurements is printed at the end of the session.

Option parsing needs no torch; the session's settings (and ``kspace_attacks.testing``) are
set up when the first test runs. Note that importing this module imports the
``kspace_attacks`` package, hence torch and deepinv.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

MARKER = "kspace_robustness"
_BATCH_KEYS = ("preset", "n", "coils", "contrast", "split", "seed")
_MARKER_KEYS = ("eps", "steps", "max_delta_ssim", "max_delta_psnr", "attack", "seed", "threat",
                "protocol") + _BATCH_KEYS
_STATE = pytest.StashKey[dict]()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kspace-attacks", "k-space robustness tests (kspace-attacks)")
    group.addoption("--kspace-eps", type=_nonneg_float, default=None, metavar="EPS",
                    help="relative l2 budget of every attack, overriding the tests' eps "
                         "(||delta|| <= EPS ||y||; default: as in each test, else 0.02)")
    group.addoption("--kspace-steps", type=_positive_int, default=None, metavar="N",
                    help="iterations of every attack, overriding the tests' steps "
                         "(few in CI, many before a release; default: as in each test, else 10)")
    group.addoption("--kspace-device", default=None, metavar="DEVICE",
                    help="torch device for attacks and kspace_batch (e.g. cpu, cuda:0)")
    group.addoption("--kspace-report", default=None, metavar="PATH",
                    help="write all robustness measurements of the session to this JSON file "
                         "(with the robustness card of each model asserted with a protocol)")
    group.addoption("--kspace-artifacts", default=None, metavar="DIR",
                    help="directory for failure artifacts (worst-case PNG and perturbed "
                         "k-space .h5); default: <pytest basetemp>/kspace-artifacts")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(eps=None, steps=None, max_delta_ssim=None, max_delta_psnr=None, attack=None, "
        "seed=None, protocol=None, preset=None, n=None, coils=None, contrast=None): defaults of the "
        "kspace-attacks robustness assertions and fixtures of this test",
    )
    from . import isolation  # @pytest.mark.isolated: a test in a process of its own

    if not config.pluginmanager.is_registered(isolation):
        config.pluginmanager.register(isolation, "kspace_attacks.isolation")
    device = config.getoption("kspace_device")
    if device is not None:
        try:
            import torch

            torch.device(device)
        except (RuntimeError, ValueError) as err:
            raise pytest.UsageError(f"--kspace-device: expected a torch device such as 'cpu' or "
                                    f"'cuda:0', got {device!r} ({err})") from None
    config.stash[_STATE] = {"settings": None, "context": None, "batches": {}}


def _settings(config: pytest.Config):
    """The session's :class:`~kspace_attacks.testing.Settings`, activated on first use."""
    state = config.stash[_STATE]
    if state["settings"] is None:
        from .. import testing

        artifacts = config.getoption("kspace_artifacts")
        settings = testing.Settings(
            eps=config.getoption("kspace_eps"),
            steps=config.getoption("kspace_steps"),
            device=config.getoption("kspace_device"),
            artifacts_dir=None if artifacts is None else Path(artifacts).resolve(),
            artifacts_root=_basetemp_getter(config),
            recorder=testing.RobustnessRecorder(),
            source={"eps": "--kspace-eps", "steps": "--kspace-steps",
                    "device": "--kspace-device"},
        )
        context = testing.use_settings(settings)
        context.__enter__()
        state["settings"], state["context"] = settings, context
    return state["settings"]


def _basetemp_getter(config: pytest.Config):
    def getter() -> Path:
        factory = getattr(config, "_tmp_path_factory", None)
        if factory is not None:
            return factory.getbasetemp()
        return Path(".kspace-attacks")  # pragma: no cover - tmpdir plugin disabled
    return getter


def _marker_kwargs(node: Any) -> dict[str, Any]:
    """Keywords of all ``kspace_robustness`` markers, the closest (function) winning."""
    merged: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers(MARKER))):
        if mark.args:
            pytest.fail(
                f"{node.nodeid}: @pytest.mark.{MARKER} takes keyword arguments only "
                f"({', '.join(_MARKER_KEYS)}), got positional {mark.args!r}", pytrace=False
            )
        from ..schema import ConfigError
        from .settings import MarkerOptions

        try:  # keys, types and ranges, as every configuration table checks them
            MarkerOptions.from_mapping(mark.kwargs, where=f"{node.nodeid}: @pytest.mark.{MARKER}")
        except ConfigError as e:
            pytest.fail(str(e), pytrace=False)
        merged.update(mark.kwargs)
    return merged


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Expose the running test's id and marker to :mod:`kspace_attacks.testing`."""
    settings = _settings(item.config)
    settings.test_id, settings.marker = item.nodeid, _marker_kwargs(item)
    try:
        yield
    finally:
        settings.test_id, settings.marker = None, {}


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture
def kspace_recorder(request: pytest.FixtureRequest):
    """The session's robustness recorder (see :class:`kspace_attacks.testing.RobustnessRecorder`)."""
    return _settings(request.config).recorder


def _batch_spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    spec: dict[str, Any] = {"preset": "embedded", "n": 2}
    marker = _marker_kwargs(request.node)
    spec.update({k: v for k, v in marker.items() if k in _BATCH_KEYS})
    param = getattr(request, "param", None)
    if isinstance(param, str):
        spec["preset"] = param
    elif isinstance(param, dict):
        unknown = sorted(set(param) - set(_BATCH_KEYS))
        if unknown:
            raise ValueError(f"kspace_batch param: unknown key(s) {unknown}; expected some of "
                             f"{list(_BATCH_KEYS)}")
        spec.update(param)
    elif param is not None:
        raise TypeError(f"kspace_batch param: expected a preset name or a dict of "
                        f"{list(_BATCH_KEYS)}, got {param!r}")
    return spec


@pytest.fixture
def kspace_batch(request: pytest.FixtureRequest):
    """``(x, y, physics)`` from the embedded data set (cached per session, copied per test)."""
    import torch

    from ..data import demo_batch, get_preset

    settings = _settings(request.config)
    spec = _batch_spec(request)
    key = tuple(sorted((k, repr(v)) for k, v in spec.items()))
    cache = request.config.stash[_STATE]["batches"]
    if key not in cache:
        kw = {k: spec[k] for k in ("split", "seed", "contrast") if k in spec}
        preset = spec["preset"]
        if "coils" in spec:
            preset = get_preset(preset, coils=spec["coils"])
        cache[key] = demo_batch(spec["n"], preset=preset, **kw)
    x, y, physics = cache[key]
    x, y = x.clone(), y.clone()
    physics = physics.clone() if hasattr(physics, "clone") else physics
    if settings.device is not None:
        device = torch.device(settings.device)
        x, y = x.to(device), y.to(device)
        physics = physics.to(device)
    return x, y, physics


@pytest.fixture
def kspace_attack(request: pytest.FixtureRequest):
    """Factory: ``kspace_attack(model, physics, eps=None, steps=None, method="apgd", threat=None, **kw)``.

    Returns a :class:`~kspace_attacks.testing.BoundAttack` (``attack(y, x_true=None,
    target=None) -> AttackResult``). Precedence: command-line option > argument > marker >
    default (eps 0.02, 10 steps).
    """
    from .. import testing
    from ..attacks import Attack
    from .measure import TEST_ATTACK
    from .settings import resolve

    settings = _settings(request.config)
    marker = _marker_kwargs(request.node)
    scoped = testing.Settings(eps=settings.eps, steps=settings.steps, device=settings.device,
                              marker=marker)

    def make(model: Any, physics: Any, eps: float | None = None, steps: int | None = None,
             method: Any = None, seed: int | None = None, threat: Any = None, **kwargs: Any):
        method, _ = resolve("attack", method, TEST_ATTACK, scoped)
        template = isinstance(method, Attack)
        threat, _ = resolve("threat", threat, None, scoped)
        eps_v, _ = resolve("eps", eps, None if template or threat is not None else testing.DEFAULT_EPS, scoped)
        steps_v, _ = resolve("steps", steps, None if template else testing.DEFAULT_STEPS,
                                      scoped)
        seed_v, _ = resolve("seed", seed, 0, scoped)
        attack = testing.build_attack(eps_v, steps_v, method, seed=seed_v, threat=threat, **kwargs)
        return testing.BoundAttack(attack, model, physics, device=scoped.device)

    return make


# ----------------------------------------------------------------------------------- reporting


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    settings = None if state is None else state["settings"]
    if settings is None or not len(settings.recorder):
        return
    tr = terminalreporter
    tr.write_sep("=", "kspace-attacks robustness")
    for line in settings.recorder.table().splitlines():
        tr.write_line(line)
    tr.write_line("Delta SSIM / PSNR: perturbed - clean quality under the worst-case k-space perturbation "
                  "(worst sample; negative = degradation); limit: Delta SSIM >= -max_delta_ssim; noise Delta SSIM: "
                  "equal-norm Gaussian noise; "
                  "restart spread: (best - median) / best over the search's starts (nan: fewer than 2 starts); "
                  "unreliable: samples whose worst case no two independent runs confirmed (WorstCase(max_budget=...); -: not assessed)")
    if state.get("report_path") is not None:
        tr.write_line(f"kspace-attacks report written to {state['report_path']}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(_STATE, None)
    path = config.getoption("kspace_report", None)
    if state is None or path is None:
        return
    settings = _settings(config)  # an empty report is still written
    state["report_path"] = settings.recorder.to_json(
        Path(path),
        settings={"eps": settings.eps, "steps": settings.steps, "device": settings.device},
        exitstatus=int(exitstatus),
    ).resolve()


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state and state["context"] is not None:
        state["context"].__exit__(None, None, None)
        state["settings"] = state["context"] = None
