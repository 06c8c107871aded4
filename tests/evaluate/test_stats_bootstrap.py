"""Bootstrap confidence intervals: SciPy as the oracle, NaN policies, degenerate inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from medfleet.evaluate.metrics.conventions import MetricInputError
from medfleet.evaluate.stats import bootstrap_ci, bootstrap_distribution, paired_bootstrap


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return np.random.default_rng(11).gamma(2.0, size=35)


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_bootstrap_ci_matches_scipy(sample, method, statistic):
    ref = stats.bootstrap(
        (sample,),
        statistic,
        n_resamples=999,
        method="BCa" if method == "bca" else method,
        rng=np.random.default_rng(3),
    )
    ci = bootstrap_ci(sample, statistic, n_resamples=999, method=method, seed=3)
    assert ci.low == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert ci.high == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    assert ci.estimate == pytest.approx(float(statistic(sample)))
    assert ci.n == sample.size and ci.method == method


def test_non_vectorized_statistic_gives_the_same_interval(sample):
    a = bootstrap_ci(sample, np.mean, n_resamples=300, method="bca", seed=1)
    b = bootstrap_ci(sample, lambda v: float(np.mean(v)), n_resamples=300, method="bca", seed=1)
    assert (a.low, a.high) == pytest.approx((b.low, b.high), rel=1e-12)


def test_batched_resampling_matches_scipy_single_draw():
    # 30000 cases -> resamples drawn in batches of 66; SciPy draws them all at once
    x = np.random.default_rng(5).normal(size=30_000)
    ref = stats.bootstrap(
        (x,), np.mean, n_resamples=150, method="percentile", rng=np.random.default_rng(9)
    )
    ci = bootstrap_ci(x, n_resamples=150, seed=9)
    assert (ci.low, ci.high) == pytest.approx(
        (ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12
    )


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_paired_bootstrap_matches_scipy_paired(sample, method):
    other = sample + np.random.default_rng(2).normal(0.2, 0.5, sample.size)

    def diff(a, b, axis=-1):
        return np.mean(b, axis=axis) - np.mean(a, axis=axis)

    ref = stats.bootstrap(
        (sample, other),
        diff,
        paired=True,
        n_resamples=999,
        method="BCa" if method == "bca" else method,
        rng=np.random.default_rng(4),
    )
    r = paired_bootstrap(sample, other, n_resamples=999, method=method, seed=4)
    assert r.low == pytest.approx(ref.confidence_interval.low, rel=1e-10)
    assert r.high == pytest.approx(ref.confidence_interval.high, rel=1e-10)
    assert r.estimate == pytest.approx(other.mean() - sample.mean())
    assert r.estimate_b - r.estimate_a == pytest.approx(r.estimate)


def test_paired_bootstrap_p_value_bounds_and_consistency():
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    same = paired_bootstrap(a, a.copy(), n_resamples=500)
    assert same.estimate == 0 and same.p_value == 1.0
    shifted = paired_bootstrap(a, a + 1.0 + rng.normal(0, 0.1, 40), n_resamples=500)
    # every bootstrap difference is positive: p = 2 (1 + 0) / (1 + 500)
    assert shifted.p_value == pytest.approx(2 / 501)
    assert shifted.low > 0
    for seed in range(6):
        b = a + rng.normal(0.15 * seed, 1.0, 40)
        r = paired_bootstrap(a, b, n_resamples=999, seed=seed)
        outside = r.low > 0 or r.high < 0
        if abs(r.p_value - 0.05) > 0.01:  # away from the interpolation boundary
            assert outside == (r.p_value < 0.05)


def test_bootstrap_distribution_is_scipys_paired_distribution():
    tp = np.random.default_rng(1).integers(0, 4, 30).astype(float)
    gt = tp + np.random.default_rng(2).integers(0, 2, 30)

    def ratio(t, g, axis=-1):
        return np.sum(t, axis=axis) / np.sum(g, axis=axis)

    ref = stats.bootstrap(
        (tp, gt), ratio, paired=True, n_resamples=300, rng=np.random.default_rng([7, 1])
    )
    ours = bootstrap_distribution([tp, gt], ratio, n_resamples=300, seed=[7, 1])
    np.testing.assert_array_equal(ours, ref.bootstrap_distribution)


def test_undefined_scipy_interval_falls_back_without_acceleration():
    # the jackknife of a mean over an infinite value is undefined: SciPy's BCa is NaN
    x = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, math.inf])
    with pytest.warns(stats.DegenerateDataWarning), np.errstate(invalid="ignore"):
        ref = stats.bootstrap((x,), np.mean, n_resamples=400, rng=np.random.default_rng(0))
    assert math.isnan(ref.confidence_interval.low)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SciPy's warnings are handled, not passed on
        ci = bootstrap_ci(x, n_resamples=400, method="bca")
        pct = bootstrap_ci(x, n_resamples=400, method="percentile")
    assert 0.5 <= ci.low < 3.0 and ci.high == math.inf
    assert pct.high == math.inf and math.isfinite(pct.low)


def test_nan_policies():
    x = [1.0, 2.0, float("nan"), 4.0]
    omit = bootstrap_ci(x, n_resamples=100)
    assert omit.n == 3 and omit.n_dropped == 1
    assert omit.estimate == pytest.approx(7 / 3)
    prop = bootstrap_ci(x, n_resamples=100, nan_policy="propagate")
    assert math.isnan(prop.estimate) and math.isnan(prop.low)
    with pytest.raises(MetricInputError, match="NaN"):
        bootstrap_ci(x, nan_policy="raise")
    pair = paired_bootstrap([1.0, np.nan, 3.0, 4.0], [2.0, 2.0, np.nan, 5.0], n_resamples=50)
    assert pair.n == 2 and pair.n_dropped == 2


def test_infinite_values_are_kept():
    ci = bootstrap_ci([1.0, 2.0, math.inf], n_resamples=200)
    assert ci.estimate == math.inf and ci.high == math.inf


def test_degenerate_inputs():
    empty = bootstrap_ci([], n_resamples=10)
    assert empty.n == 0 and math.isnan(empty.estimate)
    one = bootstrap_ci([0.7], n_resamples=10, method="bca")
    assert (one.estimate, one.low, one.high) == (0.7, 0.7, 0.7)
    flat = bootstrap_ci([0.5] * 8, n_resamples=50, method="bca")
    assert (flat.low, flat.high) == (0.5, 0.5)


def test_bad_input_is_rejected():
    with pytest.raises(MetricInputError, match="1-D"):
        bootstrap_ci(np.ones((3, 2)))
    with pytest.raises(MetricInputError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(MetricInputError, match="method"):
        bootstrap_ci([1.0, 2.0], method="basic")
    with pytest.raises(MetricInputError, match="same cases"):
        paired_bootstrap([1.0, 2.0], [1.0])
