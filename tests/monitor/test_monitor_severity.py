"""Severity grading: calibration, monotonicity in shift size, documented thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfleet.monitor.severity import (
    ColumnCalibration,
    Severity,
    calibrate_column,
    logit,
    n_bucket,
    shift_outputs,
    sigmoid,
    total_variation,
)
from medfleet.monitor.two_sample import ks_statistic, psi_statistic, wasserstein_statistic

STATS = {"ks": ks_statistic, "wasserstein": wasserstein_statistic, "psi": psi_statistic}


@pytest.fixture(scope="module")
def reference():
    return sigmoid(np.random.default_rng(0).normal(-0.5, 1.2, size=1500))


@pytest.mark.parametrize("test", ["ks", "wasserstein", "psi"])
def test_severity_monotone_in_shift_size(reference, test):
    n = 300
    cal = calibrate_column(reference, n, test, "probability", n_boot=100, seed=1)
    rng = np.random.default_rng(2)
    sd = float(np.std(logit(reference)))
    sizes = [0.0, 0.15, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5]
    medians = []
    for size in sizes:
        ranks = []
        for _ in range(9):
            batch = shift_outputs(sigmoid(rng.normal(-0.5, 1.2, n)), "probability", size, sd)
            stat = float(STATS[test](reference, batch)[0])
            p = cal.p_value(stat) if cal.null.size else None
            drift = stat > cal.drift if p is None else p < 0.05
            ranks.append(cal.grade(stat, drift).rank)
        medians.append(float(np.median(ranks)))
    assert medians == sorted(medians), medians
    assert medians[0] == 0 and medians[-1] == 3
    assert medians[sizes.index(0.3)] == 1  # mild below 0.5 SD
    assert medians[sizes.index(0.75)] == 2  # moderate between 0.5 and 1 SD


def test_thresholds_ordered_and_match_the_defined_shifts(reference):
    cal = calibrate_column(reference, 400, "ks", "probability", n_boot=100, n_shift_boot=60)
    assert 0 < cal.drift < cal.moderate < cal.severe
    # For a pure logit location shift of d SD the population KS distance is 2*Phi(d/2)-1 when
    # the logits are normal; the calibrated thresholds sit near it (plus small-sample bias).
    from scipy.stats import norm

    assert cal.moderate == pytest.approx(2 * norm.cdf(0.25) - 1, abs=0.04)
    assert cal.severe == pytest.approx(2 * norm.cdf(0.5) - 1, abs=0.04)


def test_null_and_fixed_methods(reference):
    null = calibrate_column(reference, 200, "psi", "probability", method="null", n_boot=100)
    assert null.moderate == pytest.approx(2 * null.drift)
    assert null.severe == pytest.approx(4 * null.drift)
    fixed = calibrate_column(
        reference,
        200,
        "wasserstein",
        "probability",
        method="fixed",
        moderate=0.05,
        severe=0.1,
        n_boot=50,
    )
    assert (fixed.moderate, fixed.severe) == (max(0.05, fixed.drift + 1e-12), 0.1)
    with pytest.raises(ValueError, match="unknown threshold method"):
        calibrate_column(reference, 200, "ks", "probability", method="magic")


def test_calibration_is_deterministic_per_seed(reference):
    a = calibrate_column(reference, 200, "wasserstein", "probability", n_boot=50, seed=3)
    b = calibrate_column(reference, 200, "wasserstein", "probability", n_boot=50, seed=3)
    assert a.to_state() == b.to_state()
    again = ColumnCalibration.from_state(a.to_state())
    assert again.p_value(a.drift) == a.p_value(a.drift)


def test_empirical_p_value_hand_computed():
    cal = ColumnCalibration("psi", 10, np.array([0.1, 0.2, 0.3, 0.4]), 0.35, 1.0, 2.0)
    assert cal.p_value(0.25) == pytest.approx(3 / 5)
    assert cal.p_value(0.5) == pytest.approx(1 / 5)
    assert cal.p_value(0.0) == pytest.approx(1.0)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.booleans())
@settings(max_examples=200, deadline=None)
def test_grade_monotone_in_statistic(a, b, t1, t2, drift):
    lo, hi = sorted((t1, t2))
    cal = ColumnCalibration("ks", 10, np.array([]), 0.0, lo, hi + 1e-9)
    s1, s2 = sorted((a, b))
    assert cal.grade(s1, drift).rank <= cal.grade(s2, drift).rank
    assert (cal.grade(s2, drift) is Severity.none) == (not drift)


def test_shift_outputs_moves_logits_exactly():
    p = np.array([0.1, 0.5, 0.9])
    shifted = shift_outputs(p, "probability", 1.0, 2.0)
    assert np.allclose(logit(shifted) - logit(p), 2.0)
    assert np.all((shifted > 0) & (shifted < 1))
    assert np.allclose(shift_outputs(np.array([1.0]), "score", 0.5, 4.0), [3.0])


def test_total_variation_and_buckets():
    assert total_variation(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2])) == 0.0
    assert total_variation(np.array([0, 0]), np.array([1, 1])) == 1.0
    assert n_bucket(5) == 5
    assert n_bucket(1000) == n_bucket(1050) == 1024
    assert Severity.worst([]) is Severity.none
