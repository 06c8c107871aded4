"""Two-sample tests against SciPy and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from medfleet.monitor import two_sample as T


@pytest.fixture
def samples():
    rng = np.random.default_rng(7)
    ref = np.column_stack([rng.normal(size=400), rng.beta(2, 5, 400), rng.integers(0, 5, 400)])
    cur = np.column_stack(
        [rng.normal(0.3, 1.2, 250), rng.beta(2.5, 5, 250), rng.integers(0, 5, 250)]
    )
    return ref, cur


def test_ks_statistic_and_pvalue_match_scipy(samples):
    ref, cur = samples
    stat = T.ks_statistic(ref, cur)
    p = T.ks_pvalue(stat, ref.shape[0], cur.shape[0])
    for j in range(ref.shape[1]):  # column 2 has many ties
        expected = stats.ks_2samp(ref[:, j], cur[:, j], method="asymp")
        assert stat[j] == pytest.approx(expected.statistic, abs=1e-12)
        assert p[j] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


def test_ks_handles_unequal_sizes_and_1d_broadcast():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=37)
    cur = rng.normal(size=(11, 3))
    stat = T.ks_statistic(ref, cur)
    for j in range(3):
        assert stat[j] == pytest.approx(stats.ks_2samp(ref, cur[:, j]).statistic)


def test_wasserstein_matches_scipy(samples):
    ref, cur = samples
    w = T.wasserstein_statistic(ref, cur)
    for j in range(ref.shape[1]):
        assert w[j] == pytest.approx(stats.wasserstein_distance(ref[:, j], cur[:, j]), rel=1e-10)


def test_chi2_matches_scipy_contingency(samples):
    ref, cur = samples
    stat, p = T.chi2_statistic(ref[:, 2], cur[:, 2])
    classes = np.union1d(ref[:, 2], cur[:, 2])
    table = np.array(
        [[np.sum(ref[:, 2] == c) for c in classes], [np.sum(cur[:, 2] == c) for c in classes]]
    )
    expected = stats.chi2_contingency(table, correction=False)
    assert stat[0] == pytest.approx(expected.statistic)
    assert p[0] == pytest.approx(expected.pvalue)


def test_chi2_binary_matches_scipy_without_yates():
    ref = np.array([0] * 30 + [1] * 70)
    cur = np.array([0] * 20 + [1] * 20)
    stat, p = T.chi2_statistic(ref, cur)
    expected = stats.chi2_contingency(np.array([[30, 70], [20, 20]]), correction=False)
    assert stat[0] == pytest.approx(expected.statistic)
    assert p[0] == pytest.approx(expected.pvalue)


def test_chi2_single_class_is_no_evidence():
    stat, p = T.chi2_statistic(np.zeros(10), np.zeros(5))
    assert stat[0] == 0.0 and p[0] == 1.0


def test_psi_hand_computed():
    # Reference quantile bins with 2 bins: edge at the median 4.5 of 0..9.
    ref = np.arange(10.0)
    cur = np.array([0.0, 1.0, 2.0, 8.0])  # 3/4 in bin 0, 1/4 in bin 1
    expected = (0.75 - 0.5) * np.log(0.75 / 0.5) + (0.25 - 0.5) * np.log(0.25 / 0.5)
    assert T.psi_statistic(ref, cur, bins=2)[0] == pytest.approx(expected)


def test_psi_empty_bin_uses_floor():
    ref = np.arange(10.0)
    cur = np.array([0.0, 1.0])  # all in bin 0, bin 1 empty
    eps = T.PSI_EPS
    expected = (1 - 0.5) * np.log(1 / 0.5) + (eps - 0.5) * np.log(eps / 0.5)
    assert T.psi_statistic(ref, cur, bins=2)[0] == pytest.approx(expected)


def test_js_matches_scipy_jensenshannon():
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=500), rng.normal(0.5, 1, 300)
    edges = T.quantile_edges(ref, 10)
    p = T.histogram_proportions(ref, edges)[0]
    q = T.histogram_proportions(cur, edges)[0]
    assert T.js_statistic(ref, cur, bins=10)[0] == pytest.approx(jensenshannon(p, q, base=2) ** 2)


def test_js_hand_computed_bounds():
    assert T.js_from_proportions(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    assert T.js_from_proportions(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_kl_hand_computed():
    ref = np.arange(10.0)
    cur = np.array([0.0, 1.0, 2.0, 8.0])
    expected = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.5)
    assert T.kl_statistic(ref, cur, bins=2)[0] == pytest.approx(expected)
    assert T.kl_statistic(ref, cur, bins=2)[0] == pytest.approx(
        stats.entropy([0.75, 0.25], [0.5, 0.5])
    )


def test_holm_and_bonferroni_hand_computed():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert T.adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert T.adjust_pvalues(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert T.adjust_pvalues(p, "none") == pytest.approx(p)
    with pytest.raises(ValueError, match="unknown correction"):
        T.adjust_pvalues(p, "fdr")


def test_holm_is_the_evaluation_holm():
    from medfleet.evaluate.stats.hypothesis import bonferroni, holm

    # ties: sorted 0.02*3 = 0.06, 0.02*2 = 0.04 -> running max 0.06, then 0.5*1
    assert T.adjust_pvalues(np.array([0.02, 0.5, 0.02]), "holm") == pytest.approx([0.06, 0.5, 0.06])
    # clipping at 1: 0.4*2 = 0.8, 0.9*1 = 0.9; 0.6*2 = 1.2 -> 1
    assert T.adjust_pvalues(np.array([0.9, 0.4]), "holm") == pytest.approx([0.9, 0.8])
    assert T.adjust_pvalues(np.array([0.6, 0.7]), "holm").tolist() == [1.0, 1.0]
    assert T.adjust_pvalues(np.array([0.3]), "holm").tolist() == [0.3]
    rng = np.random.default_rng(11)
    for _ in range(50):
        p = rng.uniform(0, 1, rng.integers(1, 9)) ** 3
        np.testing.assert_array_equal(T.adjust_pvalues(p, "holm"), holm(p))
        np.testing.assert_array_equal(T.adjust_pvalues(p, "bonferroni"), bonferroni(p))


def test_old_module_name_warns_and_forwards():
    import importlib

    old = importlib.import_module("medfleet.monitor.tests")
    with pytest.warns(DeprecationWarning, match="medfleet.monitor.two_sample"):
        assert old.ks_test is T.ks_test
    with pytest.warns(DeprecationWarning, match="DriftTestResult"):
        assert old.TestResult is T.DriftTestResult
    with pytest.raises(AttributeError):
        old.not_a_name  # noqa: B018


def test_ks_test_correction_changes_decision():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(2000, 20))
    cur = rng.normal(size=(2000, 20))
    cur[:, 0] += 0.09  # weak effect in one column
    raw = T.ks_test(ref, cur, correction="none")
    holm = T.ks_test(ref, cur, correction="holm")
    assert np.all(holm.p_value >= raw.p_value)
    assert holm.drift.sum() <= raw.drift.sum()
    assert np.allclose(holm.raw_p_value, raw.p_value)


def test_type_one_error_near_alpha_with_correction():
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(200):
        ref = rng.normal(size=(300, 4))
        cur = rng.normal(size=(100, 4))
        hits += T.ks_test(ref, cur, alpha=0.05, correction="holm").any_drift
    assert hits / 200 < 0.10  # family-wise rate controlled (asymptotic KS is conservative)


def test_mmd_linear_detects_shift_and_not_null():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1000, 3))
    assert not T.mmd_test(x, rng.normal(size=(1000, 3))).any_drift
    assert T.mmd_test(x, rng.normal(size=(1000, 3)) + 0.5).any_drift


def test_mmd_permutation_matches_bruteforce_statistic():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(25, 2)) + 0.3
    bw = 1.3
    stat, p = T.mmd_permutation(x, y, n_permutations=50, bandwidth=bw)

    def k(a, b):
        return np.exp(-np.sum((a[:, None] - b[None]) ** 2, axis=-1) / (2 * bw**2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )
    assert stat == pytest.approx(expected)
    assert 1 / 51 <= p <= 1


def test_mmd_permutation_caps_samples_and_detects():
    rng = np.random.default_rng(6)
    res = T.mmd_test(
        rng.normal(size=(3000, 2)),
        rng.normal(size=(3000, 2)) + 1,
        method="permutation",
        max_samples=200,
        n_permutations=100,
    )
    assert res.p_value[0] == pytest.approx(1 / 101)


def test_distance_tests_calibrated_threshold_controls_false_alarms():
    rng = np.random.default_rng(8)
    ref = rng.beta(2, 5, 2000)
    alarms = {name: 0 for name in ("wasserstein", "psi", "js", "kl")}
    for i in range(20):
        cur = rng.beta(2, 5, 300)
        for name in alarms:
            alarms[name] += T.distance_test(name, ref, cur, n_boot=100, seed=i).any_drift
    assert all(v <= 4 for v in alarms.values()), alarms
    shifted = rng.beta(3, 5, 300)
    for name in alarms:
        assert T.distance_test(name, ref, shifted, n_boot=100).any_drift, name


def test_bootstrap_null_matches_independent_samples_scale():
    # The bootstrap null quantile should be close to the quantile of the statistic
    # between genuinely independent samples of the same distribution.
    rng = np.random.default_rng(9)
    ref = rng.normal(size=1000)
    boot = T.bootstrap_null(ref, 200, "wasserstein", n_boot=400, seed=1)
    indep = np.array(
        [
            T.wasserstein_statistic(rng.normal(size=1000), rng.normal(size=200))[0]
            for _ in range(400)
        ]
    )
    assert np.quantile(boot, 0.95) == pytest.approx(np.quantile(indep, 0.95), rel=0.2)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        T.ks_statistic(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="column counts differ"):
        T.ks_statistic(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="unknown distance"):
        T.distance_test("hellinger", np.zeros(3), np.zeros(3))
