"""Wilcoxon, McNemar, DeLong and p-value corrections: SciPy/scikit-learn oracles and hand cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from medfleet.evaluate.metrics.conventions import MetricInputError
from medfleet.evaluate.stats import (
    benjamini_hochberg,
    bonferroni,
    delong_auc_ci,
    delong_covariance,
    delong_test,
    holm,
    mcnemar,
    mcnemar_from_counts,
    wilcoxon_signed_rank,
)

# ----------------------------------------------------------------------------- Wilcoxon


def _datasets():
    rng = np.random.default_rng(2024)
    out = []
    for n in (5, 9, 13, 14, 30, 50, 51, 80):
        a = rng.normal(size=n)
        out.append(("continuous", a, a + rng.normal(0.3, 1.0, n)))
    # with ties or zeros SciPy enumerates all 2^n sign flips up to n = 13 (slow): keep n small
    for n in (6, 8, 14, 30, 51):
        ta = np.round(rng.normal(size=n), 1)
        tb = np.round(ta + rng.normal(0.2, 0.6, n), 1)
        tb[:2] = ta[:2]  # zero differences
        out.append(("ties+zeros", ta, tb))
    return out


@pytest.mark.parametrize(
    ("kind", "a", "b"), _datasets(), ids=lambda v: v if isinstance(v, str) else None
)
def test_wilcoxon_matches_scipy(kind, a, b):
    for zero_method, alternative, correction, method in itertools.product(
        ("wilcox", "pratt", "zsplit"),
        ("two-sided", "greater", "less"),
        (False, True),
        ("auto", "asymptotic"),
    ):
        ref = stats.wilcoxon(
            b,
            a,
            zero_method=zero_method,
            alternative=alternative,
            correction=correction,
            method=method,
        )
        got = wilcoxon_signed_rank(
            a,
            b,
            zero_method=zero_method,
            alternative=alternative,
            correction=correction,
            method=method,
        )
        ctx = (kind, a.size, zero_method, alternative, correction, method)
        assert got.statistic == pytest.approx(float(ref.statistic)), ctx
        assert got.p_value == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-14), ctx


def test_wilcoxon_exact_hand_computed():
    # d = 2, 3, 1, 4, 5, -6 -> R+ = 15, R- = 6; P(T <= 6) = 14 / 64 over the 2^6 sign flips
    r = wilcoxon_signed_rank([10, 12, 9, 15, 11, 14], [12, 15, 10, 19, 16, 8])
    assert r.statistic == 6.0
    assert r.p_value == pytest.approx(2 * 14 / 64)
    assert r.method == "wilcoxon signed-rank (exact)"
    greater = wilcoxon_signed_rank(
        [10, 12, 9, 15, 11, 14], [12, 15, 10, 19, 16, 8], alternative="greater"
    )
    assert greater.statistic == 15.0
    assert greater.p_value == pytest.approx(14 / 64)  # P(T >= 15) = P(T <= 6) by symmetry


def test_wilcoxon_nan_pairs_are_dropped():
    a = [1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 7.0]
    b = [2.0, 3.5, 1.0, 4.5, np.nan, 9.0, 7.6]
    r = wilcoxon_signed_rank(a, b)
    keep = [0, 1, 3, 5, 6]
    ref = stats.wilcoxon(np.array(b)[keep], np.array(a)[keep])
    assert r.n == 5 and r.p_value == pytest.approx(ref.pvalue)
    with pytest.raises(MetricInputError, match="NaN"):
        wilcoxon_signed_rank(a, b, nan_policy="raise")


# ----------------------------------------------------------------------------- McNemar


def test_mcnemar_textbook_table():
    # Agresti (2002), Table 10.1: approval of the President's performance in two surveys,
    # 794 / 150 / 86 / 570. McNemar's z^2 = (150 - 86)^2 / (150 + 86) = 17.36.
    plain = mcnemar_from_counts(150, 86, correction=False)
    assert plain.statistic == pytest.approx(64**2 / 236)
    assert plain.statistic == pytest.approx(17.36, abs=0.005)
    assert plain.p_value == pytest.approx(stats.chi2.sf(64**2 / 236, 1))
    corrected = mcnemar_from_counts(150, 86)
    assert corrected.statistic == pytest.approx(63**2 / 236)
    assert "continuity" in corrected.method


def test_mcnemar_exact_small_counts():
    r = mcnemar_from_counts(1, 6)  # 2 * (C(7,0) + C(7,1)) / 2^7
    assert r.p_value == pytest.approx(2 * 8 / 128) and r.statistic == 1.0
    for b, c in [(0, 5), (3, 9), (10, 14), (7, 7)]:
        ref = stats.binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_from_counts(b, c).p_value == pytest.approx(ref)
    assert mcnemar_from_counts(0, 0).p_value == 1.0
    # 25 discordant pairs or more switch to chi-squared unless exact is forced
    assert "chi-squared" in mcnemar_from_counts(10, 15).method
    assert "exact" in mcnemar_from_counts(10, 15, exact=True).method
    equal = mcnemar_from_counts(20, 20)
    assert equal.statistic == 0.0 and equal.p_value == 1.0


def test_mcnemar_from_outcomes_counts_discordant_pairs():
    a = np.array([1, 1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    b = np.array([1, 0, 0, 1, 0, 1, 1, 1, 1, 0], bool)
    r = mcnemar(a, b)  # only a right: 3 cases; only b right: 2 cases
    assert r.n == 5
    assert r.p_value == pytest.approx(stats.binomtest(2, 5, 0.5).pvalue)
    with pytest.raises(MetricInputError, match="0/1"):
        mcnemar([0.5, 1.0], [1.0, 1.0])


# ----------------------------------------------------------------------------- DeLong


def _delong_bruteforce(y, scores):
    """Direct O(m n) structural components of DeLong et al. (1988)."""
    y = np.asarray(y, bool)
    comps10, comps01, aucs = [], [], []
    for s in scores:
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        comps10.append(psi.mean(axis=1))
        comps01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = int(y.sum()), int((~y).sum())
    cov = np.cov(np.array(comps10)) / m + np.cov(np.array(comps01)) / n
    return np.array(aucs), np.atleast_2d(cov)


def test_delong_hand_example():
    aucs, cov = delong_covariance([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    # V10 = (0.5, 1), V01 = (1, 0.5): var = 0.125 / 2 + 0.125 / 2
    assert aucs[0] == 0.75 and cov[0, 0] == pytest.approx(0.125)


def test_delong_matches_sklearn_auc_and_bruteforce_variance():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 60)
    a = np.round(y * 0.8 + rng.normal(size=60), 1)  # rounded: ties
    b = np.round(y * 1.2 + rng.normal(size=60), 1)
    r = delong_test(y, a, b)
    assert r.auc_a == pytest.approx(roc_auc_score(y, a))
    assert r.auc_b == pytest.approx(roc_auc_score(y, b))
    aucs, cov = _delong_bruteforce(y, [a, b])
    assert [r.var_a, r.var_b, r.covariance] == pytest.approx([cov[0, 0], cov[1, 1], cov[0, 1]])
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z = (aucs[1] - aucs[0]) / se
    assert r.statistic == pytest.approx(z)
    assert r.p_value == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert r.ci_low < r.difference < r.ci_high
    assert (r.n_positive, r.n_negative) == (int(y.sum()), int((1 - y).sum()))


def test_delong_identical_scores_and_ci():
    y = [0, 1, 0, 1, 1, 0, 1, 0]
    s = [0.2, 0.9, 0.4, 0.3, 0.8, 0.1, 0.7, 0.6]
    r = delong_test(y, s, s)
    assert r.statistic == 0.0 and r.p_value == 1.0
    ci = delong_auc_ci(y, s)
    assert ci.estimate == pytest.approx(roc_auc_score(y, s))
    var = _delong_bruteforce(y, [np.array(s)])[1][0, 0]
    assert ci.estimate - ci.low == pytest.approx(stats.norm.ppf(0.975) * math.sqrt(var))
    assert ci.high == 1.0  # clipped
    assert 0.0 <= ci.low <= ci.high <= 1.0


def test_delong_needs_both_classes():
    with pytest.raises(MetricInputError, match="both classes"):
        delong_test([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(MetricInputError, match="pos_label"):
        delong_covariance(["a", "b"], [0.1, 0.2])
    aucs, _ = delong_covariance(["a", "b", "b"], [0.1, 0.2, 0.3], pos_label="b")
    assert aucs[0] == 1.0


# ----------------------------------------------------------------------------- corrections


def test_holm_hand_computed():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # clipping at 1 and NaN left out of m
    assert holm([0.5, 0.2, 0.01]) == pytest.approx([0.5, 0.4, 0.03])
    out = holm([0.6, np.nan, 0.02])
    assert out[0] == pytest.approx(0.6) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([0.3, 0.8]).tolist() == [0.6, 0.8]


def test_holm_properties():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.uniform(0, 0.2, rng.integers(2, 12))
        adj = holm(p)
        assert np.all(adj >= p - 1e-15)
        assert np.all(adj <= bonferroni(p) + 1e-15)
        order = np.argsort(p)
        assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in the raw p-values


def test_benjamini_hochberg_and_bonferroni():
    # sorted 0.005, 0.01, 0.03, 0.04: m p / i = 0.02, 0.02, 0.04, 0.04 -> running min from top
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert bonferroni([0.01, 0.3]).tolist() == [0.02, 0.6]
    with pytest.raises(MetricInputError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])
