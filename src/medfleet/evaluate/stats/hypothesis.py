"""Paired hypothesis tests and multiple-comparison corrections (numpy/scipy only).

* :func:`wilcoxon_signed_rank`: Wilcoxon signed-rank test of the differences ``b - a``,
  giving the same statistic and p-value as ``scipy.stats.wilcoxon(b, a)`` (including its
  ``method="auto"`` choice), computed here from the exact permutation distribution of the
  signed ranks or its normal approximation. It stays hand-written rather than wrapping
  ``scipy.stats.wilcoxon``: for tied or zero differences with up to 13 pairs SciPy runs a
  permutation test (about 600 ms per test, against 0.2 ms for the subset-sum distribution
  here), it has no exact test for tied data beyond 13 pairs, and it returns NaN where every
  difference is zero (p = 1 here); where SciPy applies the results are equal (tests pin
  them).
* :func:`mcnemar`: McNemar's test on paired correct/incorrect outcomes.
* :func:`delong_test`, :func:`delong_auc_ci`, :func:`delong_covariance`: DeLong's
  nonparametric variance of correlated ROC AUCs (DeLong, DeLong and Clarke-Pearson 1988),
  computed with midranks (Sun and Xu 2014).
* :func:`holm`, :func:`bonferroni`, :func:`benjamini_hochberg`: adjusted p-values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import binom, chi2, rankdata

from medfleet.evaluate.metrics.conventions import MetricInputError
from medfleet.evaluate.stats.results import CI, DeLongResult, TestResult

__all__ = [
    "benjamini_hochberg",
    "bonferroni",
    "delong_auc_ci",
    "delong_covariance",
    "delong_test",
    "holm",
    "mcnemar",
    "mcnemar_from_counts",
    "wilcoxon_signed_rank",
]

Alternative = Literal["two-sided", "greater", "less"]

#: Below this number of discordant pairs, ``mcnemar(exact=None)`` uses the exact binomial test.
MCNEMAR_EXACT_BELOW = 25


# --------------------------------------------------------------------------------------
# Wilcoxon signed-rank
# --------------------------------------------------------------------------------------


def _paired(a: Any, b: Any, nan_policy: str) -> tuple[np.ndarray, np.ndarray, int]:
    xa = np.asarray(a, dtype=np.float64).reshape(-1)
    xb = np.asarray(b, dtype=np.float64).reshape(-1)
    if xa.shape != xb.shape:
        raise MetricInputError(
            f"a and b must hold one value per case for the same cases: {xa.size} and "
            f"{xb.size} values (fix: align both methods on the case ids first)"
        )
    if nan_policy not in ("omit", "raise"):
        raise MetricInputError(f"nan_policy must be 'omit' or 'raise', got {nan_policy!r}")
    nan = np.isnan(xa) | np.isnan(xb)
    if nan.any() and nan_policy == "raise":
        raise MetricInputError(
            f"{int(nan.sum())} pair(s) hold NaN, first at case index "
            f"{int(np.flatnonzero(nan)[0])} (fix: drop them, or use nan_policy='omit')"
        )
    return xa[~nan], xb[~nan], int(nan.sum())


def _subset_sum_distribution(weights: np.ndarray) -> np.ndarray:
    """Probability of each total of a uniformly random subset of integer ``weights``."""
    total = int(weights.sum())
    dist = np.zeros(total + 1, dtype=np.float64)
    dist[0] = 1.0
    for w in weights.astype(np.int64):
        if w == 0:
            continue
        shifted = np.zeros_like(dist)
        shifted[w:] = dist[:-w]
        dist = 0.5 * (dist + shifted)
    return dist


def _exact_signed_rank_p(
    ranks: np.ndarray, observed_r_plus: float, offset: float, alternative: str
) -> float:
    """Exact p-value of ``r_plus`` when each rank is positive with probability 1/2."""
    doubled = np.rint(2.0 * ranks).astype(np.int64)  # midranks are multiples of 1/2
    dist = _subset_sum_distribution(doubled)
    obs = min(max(round(2.0 * (observed_r_plus - offset)), 0), dist.size - 1)
    p_less = float(dist[: obs + 1].sum())
    p_greater = float(dist[obs:].sum())
    if alternative == "less":
        return min(1.0, p_less)
    if alternative == "greater":
        return min(1.0, p_greater)
    return min(1.0, 2.0 * min(p_less, p_greater))


def wilcoxon_signed_rank(
    a: Any,
    b: Any,
    *,
    zero_method: Literal["wilcox", "pratt", "zsplit"] = "wilcox",
    correction: bool = False,
    alternative: Alternative = "two-sided",
    method: Literal["auto", "exact", "asymptotic"] = "auto",
    nan_policy: Literal["omit", "raise"] = "omit",
) -> TestResult:
    """Wilcoxon signed-rank test of the paired differences ``d = b - a``.

    Matches ``scipy.stats.wilcoxon(b, a, ...)`` with the same options. ``alternative``
    ``"greater"`` means that ``b`` tends to exceed ``a``.

    * Zeros (``d == 0``): ``"wilcox"`` drops them, ``"pratt"`` ranks them and then drops
      them, ``"zsplit"`` splits their ranks between the two signs.
    * ``method="auto"``: more than 50 pairs -> normal approximation; otherwise the exact
      distribution when there are neither ties nor zeros; with ties or zeros the exact
      permutation distribution (all sign flips) for up to 13 pairs, else the normal
      approximation. This is SciPy's rule.
    * ``"exact"`` here is the exact permutation distribution of the midranks, which is the
      classical exact table without ties (SciPy's ``"exact"`` applies that table even to
      tied data).
    * The normal approximation uses the tie-corrected variance and, with
      ``correction=True``, a continuity correction of 1/2.
    * ``statistic`` is ``min(R+, R-)`` for a two-sided test, else ``R+`` (SciPy's
      convention). When the normal approximation has zero variance (no non-zero
      difference) the p-value is 1 (SciPy returns NaN).

    Args:
        a: Per-case values of the reference method.
        b: Per-case values of the compared method (same cases, same order).
        zero_method: Treatment of zero differences.
        correction: Continuity correction of the normal approximation.
        alternative: ``"two-sided"``, ``"greater"`` (b > a) or ``"less"``.
        method: ``"auto"``, ``"exact"`` or ``"asymptotic"``.
        nan_policy: ``"omit"`` drops a pair with a NaN; ``"raise"`` raises.

    Returns:
        :class:`~medfleet.evaluate.stats.results.TestResult`; ``n`` counts the pairs used
        (zeros included).

    Example:
        >>> a = [10, 12, 9, 15, 11, 14]
        >>> b = [12, 15, 10, 19, 16, 8]
        >>> r = wilcoxon_signed_rank(a, b)  # d = 2, 3, 1, 4, 5, -6: R+ = 15, R- = 6
        >>> r.statistic, r.p_value, r.method
        (6.0, 0.4375, 'wilcoxon signed-rank (exact)')
    """
    if zero_method not in ("wilcox", "pratt", "zsplit"):
        raise MetricInputError(f"zero_method must be wilcox, pratt or zsplit, got {zero_method!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise MetricInputError(f"alternative must be two-sided, greater or less: {alternative!r}")
    if method not in ("auto", "exact", "asymptotic"):
        raise MetricInputError(f"method must be auto, exact or asymptotic, got {method!r}")
    xa, xb, _ = _paired(a, b, nan_policy)
    d = xb - xa
    n = int(d.size)
    zeros = d == 0
    n_zero = int(zeros.sum())
    if zero_method == "wilcox":
        d_ranked = d[~zeros]
        ranks = rankdata(np.abs(d_ranked)) if d_ranked.size else np.empty(0)
        zero_ranks = np.empty(0)
        count = int(d_ranked.size)
    else:
        d_ranked = d
        ranks = rankdata(np.abs(d)) if n else np.empty(0)
        zero_ranks = ranks[zeros]
        count = n
    r_plus = float(ranks[d_ranked > 0].sum())
    r_minus = float(ranks[d_ranked < 0].sum())
    offset = 0.0
    if zero_method == "zsplit":
        offset = float(zero_ranks.sum()) / 2.0
        r_plus += offset
        r_minus += offset
    _, tie_sizes = np.unique(np.abs(d_ranked), return_counts=True)
    has_ties = bool((tie_sizes > 1).any())

    chosen = method
    if method == "auto":
        if n > 50:
            chosen = "asymptotic"
        elif not (has_ties or n_zero > 0) or n <= 13:
            chosen = "exact"
        else:
            chosen = "asymptotic"
    statistic = min(r_plus, r_minus) if alternative == "two-sided" else r_plus
    label = f"wilcoxon signed-rank ({chosen})"
    if chosen == "exact":
        p = _exact_signed_rank_p(ranks[d_ranked != 0], r_plus, offset, alternative)
        return TestResult(float(statistic), p, n, label)

    mean = count * (count + 1.0) / 4.0
    var = count * (count + 1.0) * (2.0 * count + 1.0)
    if zero_method == "pratt":
        mean -= n_zero * (n_zero + 1.0) / 4.0
        var -= n_zero * (n_zero + 1.0) * (2.0 * n_zero + 1.0)
        tie_sizes = np.unique(np.abs(d[~zeros]), return_counts=True)[1]
    tie_term = float(np.sum(tie_sizes.astype(np.float64) ** 3 - tie_sizes))
    se = math.sqrt(max((var - tie_term / 2.0) / 24.0, 0.0))
    if se == 0:
        return TestResult(float(statistic), 1.0, n, label)
    z = (r_plus - mean) / se
    if correction:
        sign = {"greater": 1.0, "less": -1.0}.get(alternative, float(np.sign(z)))
        z -= sign * 0.5 / se
    if alternative == "greater":
        p = float(ndtr(-z))
    elif alternative == "less":
        p = float(ndtr(z))
    else:
        p = float(min(1.0, 2.0 * ndtr(-abs(z))))
    return TestResult(float(statistic), p, n, label)


# --------------------------------------------------------------------------------------
# McNemar
# --------------------------------------------------------------------------------------


def mcnemar_from_counts(
    b: int, c: int, *, exact: bool | None = None, correction: bool = True
) -> TestResult:
    """McNemar's test from the two discordant counts.

    ``b``: cases only the first method gets right; ``c``: cases only the second gets right.

    * ``exact=None`` picks the exact test when ``b + c <`` :data:`MCNEMAR_EXACT_BELOW` (25).
    * Exact: two-sided binomial test of ``b`` out of ``b + c`` with p = 1/2:
      ``p = min(1, 2 * P(X <= min(b, c)))``; ``statistic = min(b, c)``.
    * Otherwise: ``statistic = (|b - c| - 1)^2 / (b + c)`` (Edwards' continuity correction;
      the ``- 1`` is dropped with ``correction=False`` and never makes ``|b - c| - 1``
      negative), compared with a chi-squared distribution with 1 degree of freedom.
    * No discordant pair: ``statistic = 0``, ``p = 1``.

    Args:
        b: Pairs where only the first method is correct.
        c: Pairs where only the second method is correct.
        exact: Exact binomial test (True), chi-squared (False) or automatic (None).
        correction: Continuity correction of the chi-squared version.

    Returns:
        :class:`~medfleet.evaluate.stats.results.TestResult` with ``n = b + c``.

    Example:
        >>> r = mcnemar_from_counts(1, 6)
        >>> r.statistic, r.p_value, r.method
        (1.0, 0.125, 'mcnemar exact binomial')
    """
    if b < 0 or c < 0 or int(b) != b or int(c) != c:
        raise MetricInputError(f"discordant counts must be non-negative integers, got {b}, {c}")
    b, c = int(b), int(c)
    n = b + c
    use_exact = n < MCNEMAR_EXACT_BELOW if exact is None else bool(exact)
    if use_exact:
        if n == 0:
            return TestResult(0.0, 1.0, 0, "mcnemar exact binomial")
        p = float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))
        return TestResult(float(min(b, c)), p, n, "mcnemar exact binomial")
    label = "mcnemar chi-squared" + (" with continuity correction" if correction else "")
    if n == 0:
        return TestResult(0.0, 1.0, 0, label)
    diff = abs(b - c) - (1.0 if correction else 0.0)
    stat = max(diff, 0.0) ** 2 / n
    return TestResult(float(stat), float(chi2.sf(stat, 1)), n, label)


def mcnemar(
    correct_a: Any, correct_b: Any, *, exact: bool | None = None, correction: bool = True
) -> TestResult:
    """McNemar's test on paired per-case outcomes (correct / incorrect) of two methods.

    A pair with a NaN (a missing outcome) is dropped. See :func:`mcnemar_from_counts` for
    the exact and chi-squared variants and when each is used.

    Args:
        correct_a: Per-case correctness of the first method (bool or 0/1).
        correct_b: Per-case correctness of the second method, same cases.
        exact: Exact binomial test (True), chi-squared (False) or automatic (None).
        correction: Continuity correction of the chi-squared version.

    Returns:
        :class:`~medfleet.evaluate.stats.results.TestResult`; ``n`` is the number of
        discordant pairs.

    Example:
        >>> a = [1, 1, 0, 1, 0, 1, 1, 1]
        >>> b = [1, 0, 0, 1, 0, 1, 1, 1]
        >>> r = mcnemar(a, b)
        >>> r.statistic, r.p_value, r.n
        (0.0, 1.0, 1)
    """
    xa, xb, _ = _paired(correct_a, correct_b, "omit")
    for name, arr in (("correct_a", xa), ("correct_b", xb)):
        if not np.isin(arr, (0.0, 1.0)).all():
            raise MetricInputError(
                f"{name} must hold 0/1 (or bool) outcomes, found {np.unique(arr)[:5].tolist()} "
                "(fix: compare predictions with the truth first)"
            )
    b = int(np.count_nonzero((xa == 1) & (xb == 0)))
    c = int(np.count_nonzero((xa == 0) & (xb == 1)))
    return mcnemar_from_counts(b, c, exact=exact, correction=correction)


# --------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------


def _binary_truth(y_true: Any, pos_label: Any) -> np.ndarray:
    y = np.asarray(y_true).reshape(-1)
    if pos_label is None:
        values = set(np.unique(y).tolist())
        if not values <= {0, 1}:
            raise MetricInputError(
                f"y_true must be binary 0/1 (found {sorted(values, key=str)[:5]}); "
                "(fix: give pos_label)"
            )
        return y.astype(bool)
    return y == pos_label


def delong_covariance(
    y_true: Any, scores: Any, *, pos_label: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of several scores on the same cases and their DeLong covariance matrix.

    AUC is the Mann-Whitney statistic with ties counted one half. The covariance is
    ``S10 / m + S01 / n`` with ``S10`` and ``S01`` the sample covariances (ddof 1) of the
    structural components of the ``m`` positive and ``n`` negative cases; it is NaN when
    either class has a single case.

    Args:
        y_true: Binary truth per case.
        scores: ``(k, n_cases)`` scores (or one 1-D score); higher means more positive.
        pos_label: The positive class when ``y_true`` is not 0/1.

    Returns:
        ``(aucs, covariance)`` with shapes ``(k,)`` and ``(k, k)``.

    Example:
        >>> aucs, cov = delong_covariance([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> float(aucs[0]), float(cov[0, 0])
        (0.75, 0.125)
    """
    pos = _binary_truth(y_true, pos_label)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != pos.size:
        raise MetricInputError(
            f"scores have {s.shape[1]} values per row but y_true has {pos.size} cases"
        )
    if not np.isfinite(s).all():
        raise MetricInputError("scores contain NaN or infinite values (fix: drop those cases)")
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        raise MetricInputError(
            f"AUC needs both classes: {m} positive and {n} negative cases "
            "(fix: evaluate on a set that contains both)"
        )
    x, y = s[:, pos], s[:, ~pos]
    tx = np.apply_along_axis(rankdata, 1, x)
    ty = np.apply_along_axis(rankdata, 1, y)
    tz = np.apply_along_axis(rankdata, 1, np.concatenate([x, y], axis=1))
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    k = s.shape[0]
    if m < 2 or n < 2:
        return aucs, np.full((k, k), np.nan)
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def delong_auc_ci(
    y_true: Any, score: Any, confidence: float = 0.95, *, pos_label: Any = None
) -> CI:
    """AUC with a normal confidence interval from DeLong's variance, clipped to [0, 1].

    Args:
        y_true: Binary truth per case.
        score: Score per case (higher means more positive).
        confidence: Coverage of the interval.
        pos_label: The positive class when ``y_true`` is not 0/1.

    Returns:
        :class:`~medfleet.evaluate.stats.results.CI` with ``method="delong"``.

    Example:
        >>> ci = delong_auc_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> ci.estimate, round(ci.low, 4), ci.high
        (0.75, 0.057, 1.0)
    """
    if not 0.0 < confidence < 1.0:
        raise MetricInputError(f"confidence must be strictly between 0 and 1, got {confidence}")
    score_row = np.asarray(score, dtype=np.float64).reshape(1, -1)
    aucs, cov = delong_covariance(y_true, score_row, pos_label=pos_label)
    auc, var = float(aucs[0]), float(cov[0, 0])
    half = float(ndtri(0.5 + confidence / 2.0)) * math.sqrt(var) if var >= 0 else math.nan
    low, high = max(0.0, auc - half), min(1.0, auc + half)
    return CI(auc, low, high, confidence, int(np.size(score)), "delong")


def delong_test(
    y_true: Any,
    score_a: Any,
    score_b: Any,
    *,
    confidence: float = 0.95,
    pos_label: Any = None,
) -> DeLongResult:
    """DeLong's two-sided test that two scores on the same cases have equal ROC AUC.

    ``z = (auc_b - auc_a) / se`` with ``se^2 = var_a + var_b - 2 cov`` from
    :func:`delong_covariance`; ``p = 2 * (1 - Phi(|z|))``. When ``se`` is 0 (e.g. the same
    ranking twice) and the AUCs are equal, ``z = 0`` and ``p = 1``.

    Args:
        y_true: Binary truth per case.
        score_a: Scores of the first method.
        score_b: Scores of the second method.
        confidence: Coverage of the interval of the difference.
        pos_label: The positive class when ``y_true`` is not 0/1.

    Returns:
        :class:`~medfleet.evaluate.stats.results.DeLongResult`.

    Example:
        >>> y = [0, 0, 0, 0, 1, 1, 1, 1]
        >>> a = [0.1, 0.3, 0.5, 0.7, 0.2, 0.6, 0.8, 0.9]
        >>> b = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9]
        >>> r = delong_test(y, a, b)
        >>> r.auc_a, r.auc_b, round(r.p_value, 4)
        (0.75, 1.0, 0.2207)
    """
    if not 0.0 < confidence < 1.0:
        raise MetricInputError(f"confidence must be strictly between 0 and 1, got {confidence}")
    sa = np.asarray(score_a, dtype=np.float64).reshape(-1)
    sb = np.asarray(score_b, dtype=np.float64).reshape(-1)
    if sa.shape != sb.shape:
        raise MetricInputError(f"score_a and score_b differ in length: {sa.size} and {sb.size}")
    pos = _binary_truth(y_true, pos_label)
    aucs, cov = delong_covariance(pos.astype(np.int8), np.vstack([sa, sb]))
    diff = float(aucs[1] - aucs[0])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(var) if var > 0 else (0.0 if var > -1e-15 else math.nan)
    if se == 0.0:
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    elif math.isnan(se):
        z, p = math.nan, math.nan
    else:
        z = diff / se
        p = float(min(1.0, 2.0 * ndtr(-abs(z))))
    half = float(ndtri(0.5 + confidence / 2.0)) * se
    return DeLongResult(
        statistic=float(z),
        p_value=p,
        n=int(pos.size),
        method="delong",
        auc_a=float(aucs[0]),
        auc_b=float(aucs[1]),
        se_difference=se,
        var_a=float(cov[0, 0]),
        var_b=float(cov[1, 1]),
        covariance=float(cov[0, 1]),
        ci_low=diff - half,
        ci_high=diff + half,
        confidence=confidence,
        n_positive=int(pos.sum()),
        n_negative=int((~pos).sum()),
    )


# --------------------------------------------------------------------------------------
# Multiple comparisons
# --------------------------------------------------------------------------------------


def _p_array(p_values: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_values, dtype=np.float64)
    shape = p.shape
    p = p.reshape(-1)
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        bad = p[ok][(p[ok] < 0) | (p[ok] > 1)][:3].tolist()
        raise MetricInputError(f"p-values must lie in [0, 1], found {bad}")
    return p.reshape(shape), ok.reshape(shape)


def _adjusted(p_values: Any, adjust_sorted: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``adjust_sorted`` to the non-NaN p-values sorted ascending; NaN stays NaN."""
    p, ok = _p_array(p_values)
    out = np.full(p.shape, np.nan)
    vals = p[ok]
    if vals.size:
        order = np.argsort(vals, kind="stable")
        adjusted = np.empty(vals.size)
        adjusted[order] = adjust_sorted(vals[order])
        out[ok] = adjusted
    return out


def _holm_sorted(s: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(np.minimum(1.0, (s.size - np.arange(s.size)) * s))


def _bh_sorted(s: np.ndarray) -> np.ndarray:
    scaled = s * s.size / np.arange(1, s.size + 1)
    return np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate).

    With the ``m`` p-values sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1)
    p(j))``, returned in the input order; adjusted values are monotone in the raw values.
    NaN entries stay NaN and do not count in ``m``. Same values as statsmodels'
    ``multipletests(method="holm")``. The drift monitor's correction across output columns
    (:func:`medfleet.monitor.two_sample.adjust_pvalues`) is this function.

    Args:
        p_values: Raw p-values (any shape).

    Returns:
        Adjusted p-values, same shape.

    Example:
        >>> holm([0.01, 0.04, 0.03, 0.005]).tolist()
        [0.03, 0.06, 0.06, 0.02]
    """
    return _adjusted(p_values, _holm_sorted)


def bonferroni(p_values: Any) -> np.ndarray:
    """Bonferroni adjusted p-values ``min(1, m p)``; NaN entries stay NaN, not counted in m.

    Example:
        >>> bonferroni([0.01, 0.2, float("nan")]).tolist()
        [0.02, 0.4, nan]
    """
    return _adjusted(p_values, lambda s: np.minimum(1.0, s * s.size))


def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate).

    With the ``m`` p-values sorted ascending, ``q(i) = min_{j >= i} min(1, m p(j) / j)``;
    NaN entries stay NaN and do not count in ``m``.

    Example:
        >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.005]).tolist()
        [0.02, 0.04, 0.04, 0.02]
    """
    return _adjusted(p_values, _bh_sorted)
