"""Robustness assertions for test suites: ``assert_robust`` and ``measure_robustness``.

A user's test attacks their own reconstructor on a batch ``(x, y, physics)`` (what
:func:`kspace_attacks.data.demo_batch` returns) and fails with a readable message when a
worst-case k-space perturbation of relative size ``eps`` degrades the reconstruction by more
than allowed::

    from kspace_attacks.data import demo_batch
    from kspace_attacks.testing import assert_robust

    def test_my_model_is_robust():
        assert_robust(MyModel(), demo_batch(2), eps=0.02, max_delta_ssim=0.05)

Definitions (per sample, on magnitude images, ``normalization="minmax"`` by default):

- ``delta_ssim = SSIM(f(y + delta), x) - SSIM(f(y), x)``: the change of SSIM under the attack
  against the ground truth ``x`` (negative = degradation, the sign of every ``delta_*`` of the
  package: records, cards and measurements); ``delta_psnr`` likewise in dB. Without a ground
  truth (``x`` is ``None``) the clean reconstruction is the reference:
  ``delta_ssim = SSIM(f(y + delta), f(y)) - 1`` and ``delta_psnr`` is not defined (NaN).
  ``max_delta_ssim`` / ``max_delta_psnr`` bound the loss: a test passes when
  ``delta_ssim >= -max_delta_ssim``.
- The reported value is the worst sample of the batch (the smallest Delta). The same numbers for
  equal-norm Gaussian noise (``noise_delta_ssim``) tell a real instability from plain noise
  sensitivity.

Robustness cards: ``evaluate(model)`` (also ``kspace_attacks.evaluate``) measures a model
under the fixed, versioned protocol ``"v1"`` (:mod:`.protocol`: APGD 20 steps on two objectives
at eps 0.01-0.08, 8 embedded test slices, noise control, bootstrap CIs) and writes
``card.json`` / ``card.md`` (:mod:`.card`); ``assert_robust(model, protocol="v1",
max_delta_ssim=...)`` asserts on the same measurement.

Under pytest with the plugin (:mod:`kspace_attacks.testing.plugin`), the command-line options
``--kspace-eps``, ``--kspace-steps`` and ``--kspace-device`` override the attack settings of
every call (so one suite runs quickly in CI and strongly before a release), a
``@pytest.mark.kspace_robustness(...)`` marker sets a test's defaults, every call is recorded
in the session's robustness table, and failure artifacts go to ``--kspace-artifacts``.
Outside pytest, artifacts go to ``./.kspace-attacks/artifacts`` unless ``artifacts_dir`` says
otherwise.
"""

from __future__ import annotations

from .._lazy import lazy_exports

# public name -> module of this package that defines it. Imported on first use: the pytest
# plugin (testing.plugin) loads this package in every pytest run, which must stay cheap.
_EXPORTS = {
    "RobustnessError": "assertions", "assert_robust": "assertions", "save_artifacts": "assertions",
    "METHODS": "measure", "BoundAttack": "measure", "RobustnessMeasurement": "measure",
    "build_attack": "measure", "measure_robustness": "measure",
    "RobustnessRecorder": "recorder",
    "DEFAULT_EPS": "settings", "DEFAULT_STEPS": "settings", "DEFAULT_MAX_DELTA_SSIM": "settings",
    "Settings": "settings", "current_settings": "settings", "use_settings": "settings",
    "evaluate": "card", "write_card": "card", "CardError": "card",
    "Protocol": "protocol", "PROTOCOL_V1": "protocol", "PROTOCOLS": "protocol", "get_protocol": "protocol",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), __name__, _EXPORTS)
