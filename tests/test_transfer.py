"""Transfer sweeps: record bookkeeping, budgets, batched eps grids, batches, callbacks, errors.

Every model here is linear, ``f(y) = A^H(w * y)`` with a per-column k-space weight ``w``, so
several quantities have closed forms: the zero-filled reconstructor (``w = 1``) is an isometry
on the measured entries, hence ``deviation = ||M delta||^2 = (ratio * ||y||)^2`` for every
perturbation on the support, and a linear attack objective has the optimum ``b * ||grad||``.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

import kspace_attacks as ka
from kspace_attacks.study.records import STUDY_EPS
from kspace_attacks.study.transfer import iter_batches

from ._physics import multi_coil, single_coil, zero_filled

SIZE = 16
GRID = [0.0, 0.05]  # the shared sweep's budgets
GRID3 = [0.0, 0.03, 0.06]  # batched-vs-separate comparisons
IDS = ["a", "b", "c"]
FIELDS = {
    "sample_id", "surrogate", "target", "attack", "setting", "eps", "ratio", "attack_loss",
    "grad_evals", "attack_seconds", "target_seconds", "ssim_vs_clean", "psnr_vs_clean",
    "nmse_vs_clean", "delta_ssim", "delta_psnr", "delta_nmse", "clean_ssim", "clean_psnr",
    "clean_nmse", "adv_ssim", "adv_psnr", "adv_nmse", "residual_rms", "spectral_flatness",
    "excess_kurtosis", "hallucination_fraction", "squared_deviation",
}
TIMING = {"attack_seconds", "target_seconds"}


def column_weighted(columns: slice, off: float = 0.0):
    """``f(y) = A^H(w * y)`` with ``w = 1`` on ``columns`` and ``off`` elsewhere."""
    w = torch.full((SIZE,), off)
    w[columns] = 1.0

    def model(y, physics):
        return physics.A_adjoint(y * w)

    return model


# The surrogate only looks at the left half of k-space, the target mostly at the right half:
# an attack crafted on S puts its budget where T barely looks, so it transfers worse than noise.
S = column_weighted(slice(0, SIZE // 2))
T = column_weighted(slice(SIZE // 2, SIZE), off=1e-3)


class LinearLoss:
    """``<c, x_adv - x_clean>``: its gradient w.r.t. delta is the constant ``A c`` (masked), so
    attacks on a linear model need no random start and the optimum is ``b * ||A c||``."""

    def __init__(self, seed: int = 5):
        self.c = torch.randn(1, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))

    def __call__(self, x_adv, x_clean, x_true=None, target=None):
        return (self.c * (x_adv - x_clean)).flatten(1).sum(1)


def _close(a, b, rel=1e-5, abs_=1e-6) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
    return a == b


def _key(r):
    return (r["surrogate"], r["attack"], r["target"], r["eps"], r["sample_id"])


@pytest.fixture(scope="module")
def data():
    return single_coil(SIZE, batch=3, seed=0)


@pytest.fixture(scope="module")
def sweep(data):
    """3 samples in two batches (2 + 1), 2 surrogates x 2 attacks + baseline, 3 targets."""
    x, y, physics = data
    calls: list[list[dict]] = []
    report = ka.transfer(
        {"zf": zero_filled, "S": S},
        {"zf": zero_filled, "S": S, "T": T},
        [(x[:2], y[:2], physics), (x[2:], y[2:], physics)],
        eps=GRID,
        attack={"pgd": ka.PGD(ka.KSpaceL2(), steps=3), "fgm": ka.FGM(ka.KSpaceL2())},
        sample_ids=IDS,
        progress=False,
        on_records=calls.append,
    )
    return report, calls


def test_record_count_and_fields(sweep):
    report, _ = sweep
    # samples x eps x (surrogates x attacks + baseline) x targets
    assert len(report) == len(report.records) == 3 * 2 * (2 * 2 + 1) * 3
    for r in report.records:
        assert FIELDS <= set(r), FIELDS - set(r)
    # every (surrogate, attack, target, eps, sample) combination exactly once
    combos = Counter(_key(r) for r in report.records)
    assert set(combos.values()) == {1}
    pairs = {(r["surrogate"], r["attack"]) for r in report.records}
    assert pairs == {("zf", "pgd"), ("zf", "fgm"), ("S", "pgd"), ("S", "fgm"), ("random", "noise")}


def test_setting_labels(sweep):
    report, _ = sweep
    for r in report.records:
        if r["surrogate"] == "random":
            expected = "baseline"
        elif r["surrogate"] == r["target"]:
            expected = "white-box"
        else:
            expected = "transfer"
        assert r["setting"] == expected, r
    assert {r["setting"] for r in report.records} == {"baseline", "white-box", "transfer"}


def test_zero_budget_rows_change_nothing(sweep):
    report, _ = sweep
    rows = report.filter(eps=0.0)
    assert len(rows) == 3 * 5 * 3
    for r in rows:
        assert r["ratio"] == 0.0
        assert r["ssim_vs_clean"] == pytest.approx(1.0, abs=1e-6)
        assert r["squared_deviation"] == 0.0 and r["residual_rms"] == 0.0
        assert r["delta_ssim"] == pytest.approx(0.0, abs=1e-6)
        assert r["hallucination_fraction"] == 0.0
        # the shape of an all-zero residual is undefined, not "white"
        assert math.isnan(r["spectral_flatness"]) and math.isnan(r["excess_kurtosis"])


def test_ratio_equals_budget(sweep):
    report, _ = sweep
    for r in report.records:
        if r["attack"] == "noise":  # equal-norm baseline: exactly on the sphere
            assert r["ratio"] == pytest.approx(r["eps"], abs=1e-4)
        else:  # linear models: the worst iterate of PGD / FGM uses the whole budget
            assert r["ratio"] <= r["eps"] * (1 + 1e-5) + 1e-7
            assert r["ratio"] == pytest.approx(r["eps"], abs=1e-4)
    assert {r["grad_evals"] for r in report.filter(attack="pgd")} == {3}
    assert {r["grad_evals"] for r in report.filter(attack="fgm")} == {1}
    assert {r["grad_evals"] for r in report.filter(attack="noise")} == {0}


def test_zero_filled_deviation_closed_form(sweep, data):
    # A^H is an isometry on the measured entries: ||f(y + M d) - f(y)||^2 = ||M d||^2.
    _, y, _ = data
    report, _ = sweep
    norms = dict(zip(IDS, y.flatten(1).norm(dim=1).tolist(), strict=True))
    rows = report.filter(target="zf")
    assert len(rows) == 3 * 2 * 5
    for r in rows:
        expected = (r["ratio"] * norms[r["sample_id"]]) ** 2
        assert r["squared_deviation"] == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_white_box_loss_is_the_target_deviation(sweep):
    # The default objective is ReconDeviation, so on the white-box target the deviation of the
    # perturbed reconstruction is the attack's own best objective.
    report, _ = sweep
    rows = report.filter(setting="white-box")
    assert len(rows) == 3 * 2 * 2 * 2  # zf->zf and S->S, two attacks each
    for r in rows:
        assert r["squared_deviation"] == pytest.approx(r["attack_loss"], rel=1e-4, abs=1e-7)
    assert all(math.isnan(r["attack_loss"]) for r in report.filter(attack="noise"))


def test_metrics_are_consistent(sweep):
    report, _ = sweep
    clean = {}
    for r in report.records:
        assert r["delta_ssim"] == pytest.approx(r["adv_ssim"] - r["clean_ssim"], abs=1e-6)
        assert r["delta_psnr"] == pytest.approx(r["adv_psnr"] - r["clean_psnr"], abs=1e-4)
        assert r["delta_nmse"] == pytest.approx(r["adv_nmse"] - r["clean_nmse"], abs=1e-6)
        assert r["ssim_vs_clean"] <= 1 + 1e-6 and r["squared_deviation"] >= 0
        assert 0 <= r["hallucination_fraction"] <= 1
        # the clean reconstruction of a sample by a target does not depend on the attack
        k = (r["sample_id"], r["target"])
        clean.setdefault(k, (r["clean_ssim"], r["clean_psnr"]))
        assert clean[k] == (r["clean_ssim"], r["clean_psnr"])


def test_surrogate_worse_than_noise_on_target(sweep, data):
    report, _ = sweep
    y_norm = dict(zip(IDS, data[1].flatten(1).norm(dim=1).tolist(), strict=True))
    by_key = {_key(r): r for r in report.records}
    for eps in GRID[1:]:
        for sid in IDS:
            for atk in ("pgd", "fgm"):
                white = by_key[("S", atk, "T", eps, sid)]
                noise = by_key[("random", "noise", "T", eps, sid)]
                assert white["setting"] == "transfer"
                # S spends its budget on columns T down-weights by 1e-3: weaker than noise.
                assert white["squared_deviation"] < 0.2 * noise["squared_deviation"]
                assert white["ssim_vs_clean"] >= noise["ssim_vs_clean"]
                assert white["psnr_vs_clean"] > noise["psnr_vs_clean"]
                # ... and equal budgets anyway
                assert white["ratio"] == pytest.approx(noise["ratio"], abs=1e-4)
                # white-box on S the same attack beats noise, and stays below the closed-form
                # maximum b^2 (max weight 1): consistent numbers, not a broken attack
                own = by_key[("S", atk, "S", eps, sid)]
                noise_s = by_key[("random", "noise", "S", eps, sid)]
                assert own["setting"] == "white-box"
                assert own["squared_deviation"] > noise_s["squared_deviation"]
                assert own["ssim_vs_clean"] <= noise_s["ssim_vs_clean"]
                bound = (eps * y_norm[sid]) ** 2
                for r in (white, noise, own, noise_s):
                    assert r["squared_deviation"] <= bound * (1 + 1e-4)


def test_sample_ids_and_on_records(sweep):
    report, calls = sweep
    assert len(calls) == 2  # once per batch
    assert {r["sample_id"] for r in calls[0]} == {"a", "b"}
    assert {r["sample_id"] for r in calls[1]} == {"c"}
    assert len(calls[0]) == 2 * 2 * 5 * 3 and len(calls[1]) == 1 * 2 * 5 * 3
    assert calls[0] + calls[1] == report.records
    assert Counter(r["sample_id"] for r in report.records) == {s: 30 for s in IDS}


def test_default_sample_ids_continue_across_batches(data):
    x, y, physics = data
    batches = [(None, y[i : i + 1], physics) for i in range(3)]
    report = ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, batches, eps=[0.02],
                         attack=ka.FGM(ka.KSpaceL2()), baseline=False, progress=False)
    assert [r["sample_id"] for r in report.records] == [0, 1, 2]
    # without ground truth the metrics against it are left out
    assert "clean_ssim" not in report.records[0] and "delta_ssim" not in report.records[0]
    assert "ssim_vs_clean" in report.records[0]


@pytest.mark.parametrize(
    "make_attack",
    [
        lambda: ka.PGD(ka.KSpaceL2(), steps=3, random_start=False, loss=LinearLoss()),
        lambda: ka.FGM(ka.KSpaceL2(), loss=LinearLoss()),
    ],
    ids=["pgd-no-random-start", "fgm"],
)
def test_batched_grid_equals_separate_runs_for_deterministic_attacks(data, make_attack):
    x, y, physics = data
    x, y = x[:2], y[:2]

    def run(grid):
        return ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=grid,
                           attack=make_attack(), progress=False).records

    batched = sorted(run(GRID3), key=_key)
    separate = sorted((r for e in GRID3 for r in run([e])), key=_key)
    assert len(batched) == len(separate) == 2 * 3 * 2
    for a, b in zip(batched, separate, strict=True):
        assert _key(a) == _key(b)
        if a["attack"] == "noise":
            # The noise baseline draws one Gaussian direction for the whole stacked (eps x B)
            # batch, so a sample's direction depends on its row, i.e. on the grid: only the
            # direction-free quantities agree (budget; deviation, since zero-filled is an
            # isometry on the measured entries) -- and everything at eps = 0.
            fields = {"ratio", "squared_deviation"} if a["eps"] else set(a) - TIMING
        else:
            # A constant gradient makes the attack deterministic: every field agrees.
            fields = set(a) - TIMING
        for k in fields:
            assert _close(a[k], b[k], rel=1e-4, abs_=1e-6), (k, a[k], b[k])
    # closed form: the optimum of <c, A^H M d> over ||d|| <= eps ||y|| is eps ||y|| ||A c||
    grad_norm = physics.A(LinearLoss().c).norm().item()
    for r in batched:
        if r["attack"] != "noise":
            expected = r["eps"] * y[r["sample_id"]].norm().item() * grad_norm
            assert r["attack_loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_batched_grid_with_random_start(data):
    # PGD's random start (and the noise baseline) is drawn for the whole stacked (eps x B)
    # batch from the attack's seed, so a sample's start depends on its row, i.e. on the grid:
    # running eps values one at a time gives other (equally valid) perturbations and other
    # image metrics. What does not depend on the direction agrees: the budget used, the
    # closed-form deviation on the zero-filled isometry, and everything at eps = 0. A second
    # run with the same grid and seed reproduces every field.
    x, y, physics = data
    x, y = x[:1], y[:1]

    def run(grid):
        return ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=grid,
                           attack=ka.PGD(ka.KSpaceL2(), steps=2, seed=3), progress=False).records

    batched = sorted(run(GRID3), key=_key)
    separate = sorted((r for e in GRID3 for r in run([e])), key=_key)
    for a, b in zip(batched, separate, strict=True):
        fields = {"ratio", "squared_deviation"} if a["eps"] else set(a) - TIMING
        for k in fields:
            assert _close(a[k], b[k], rel=1e-4, abs_=1e-6), (k, a[k], b[k])
    again = sorted(run(GRID3), key=_key)
    for a, b in zip(batched, again, strict=True):
        assert all(_close(a[k], b[k], rel=0, abs_=0) for k in set(a) - TIMING)


def test_target_batch_size_does_not_change_records(data):
    x, y, physics = data
    kw = dict(eps=[0.0, 0.05], attack=ka.FGM(ka.KSpaceL2()), baseline=False, progress=False)
    # 3 samples x 2 budgets = 6 reconstructions per target, in chunks of 4 (4 + 2)
    whole = ka.transfer({"zf": zero_filled}, {"T": T}, (x, y, physics), **kw).records
    chunked = ka.transfer({"zf": zero_filled}, {"T": T}, (x, y, physics), target_batch_size=4, **kw).records
    assert len(whole) == len(chunked) == 3 * 2
    for a, b in zip(whole, chunked, strict=True):
        assert all(_close(a[k], b[k], rel=1e-5) for k in set(a) - TIMING), a


def test_multi_coil_and_kept_perturbations():
    x, y, physics = multi_coil(SIZE, batch=2, coils=2)
    report = ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=[0.0, 0.04],
                         attack=ka.PGD(ka.KSpaceL2(), steps=2), progress=False)
    assert len(report) == 2 * 2 * 2
    for r in report.records:
        assert r["ratio"] == pytest.approx(r["eps"], abs=1e-4)
    y_adv = report.perturbed_kspace("zf", "pgd", 0.04, 1)
    assert y_adv.shape == (1, *y.shape[1:])
    delta = y_adv - y[1:2]
    assert delta.norm() / y[1].norm() == pytest.approx(0.04, abs=1e-4)
    assert torch.equal(report.perturbed_kspace("random", "noise", 0.0, 0), y[:1])


def test_keep_perturbations_false(data):
    x, y, physics = data
    report = ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x[:1], y[:1], physics), eps=[0.05],
                         attack=ka.FGM(ka.KSpaceL2()), keep_perturbations=False, progress=False)
    with pytest.raises(KeyError, match="no kept perturbation"):
        report.perturbed_kspace("zf", "fgm", 0.05, 0)


def test_helpers():
    assert STUDY_EPS == (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08)
    template = ka.PGD(ka.KSpaceL2(eps=0.05), steps=2)
    copy = template.with_eps(torch.tensor([0.0, 0.1], dtype=torch.float64))
    assert template.threat.eps == 0.05  # the template is left alone
    assert copy.threat.eps.tolist() == [0.0, 0.1] and copy.steps == 2
    x, y, physics = single_coil(SIZE, batch=1)
    assert list(iter_batches((x, y, physics)))[0][1] is y
    assert len(list(iter_batches([(x, y, physics), [None, y, physics]]))) == 2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(surrogates={}), TypeError, r"surrogates: expected a non-empty dict"),
        (dict(surrogates=zero_filled), TypeError, r"surrogates: expected a non-empty dict"),
        (dict(targets={}), TypeError, r"targets: expected a non-empty dict"),
        (dict(targets={"t": "zero_filled"}), TypeError, r"targets\['t'\]: expected a callable"),
        (dict(surrogates={"s": 3}), TypeError, r"surrogates\['s'\]: expected a callable"),
        (dict(eps=[-0.01]), ValueError, r"eps: expected finite numbers >= 0"),
        (dict(eps=[0.0, float("nan")]), ValueError, r"eps: expected finite numbers >= 0"),
        (dict(eps=[]), ValueError, r"eps: expected at least one budget"),
        (dict(eps=-1), ValueError, r"eps: expected finite numbers >= 0"),
        (dict(attack="pgd"), TypeError, r"attack: expected an Attack"),
        (dict(attack={}), TypeError, r"attack: expected an Attack"),
        (dict(data=3), TypeError, r"data: expected an \(x, y, physics\) batch"),
        (dict(data="batch"), TypeError, r"data\[0\]: expected an \(x, y, physics\) tuple"),
        (dict(data=[(None, None)]), TypeError, r"data\[0\]: expected an \(x, y, physics\) tuple"),
        (dict(data="y_only"), TypeError, r"data\[0\]: expected an \(x, y, physics\) tuple"),
        (dict(data="x_bad"), ValueError, r"data\[0\]\.x: expected an image batch"),
        (dict(data="y_bad"), ValueError, r"data\[0\]\.y: expected k-space in deepinv layout"),
    ],
)
def test_bad_inputs_name_the_argument(data, kwargs, error, match):
    x, y, physics = data
    special = {"y_only": y, "x_bad": (x[:, :, 0], y, physics), "y_bad": (x, y[:, :1], physics)}
    if isinstance(kwargs.get("data"), str) and kwargs["data"] in special:
        kwargs = dict(kwargs, data=special[kwargs["data"]])
    args = dict(surrogates={"zf": zero_filled}, targets={"zf": zero_filled}, data=(x, y, physics),
                eps=[0.0], attack=ka.FGM(ka.KSpaceL2()), progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ka.transfer(**args)


def test_short_sample_ids_are_rejected(data):
    x, y, physics = data
    with pytest.raises(ValueError, match="sample_ids"):
        ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=[0.0],
                    attack=ka.FGM(ka.KSpaceL2()), sample_ids=["only-one"], progress=False)


def test_surrogate_named_random_is_rejected(data):
    # "random" labels the equal-norm baseline in the records; a surrogate of that name would be
    # indistinguishable from it
    x, y, physics = data
    with pytest.raises(ValueError, match="surrogates: the name 'random' is reserved"):
        ka.transfer({"random": zero_filled}, {"random": zero_filled}, (x[:1], y[:1], physics),
                    eps=[0.05], attack=ka.FGM(ka.KSpaceL2()), baseline=False, progress=False)
