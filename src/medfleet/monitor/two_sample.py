"""Two-sample tests on batches of model outputs, vectorised over output columns.

Every test compares a *reference* sample (``m`` rows) with a *current* batch
(``n`` rows). One-dimensional tests treat each column independently and return
one statistic per column; ``ref`` may also be 1-D. Multivariate tests (MMD)
compare whole rows and return a single statistic.

Tests with an analytic null (Kolmogorov-Smirnov, chi-squared, linear-time MMD)
and the permutation MMD return p-values; distance-style tests (Wasserstein,
PSI, Jensen-Shannon, KL) return a statistic and are decided against a
threshold, either given or calibrated by bootstrap from the reference
(:func:`bootstrap_null`). Across columns, p-values are corrected for multiple
testing with Holm or Bonferroni (:func:`adjust_pvalues`, which applies
:func:`medfleet.evaluate.stats.hypothesis.holm` and
:func:`~medfleet.evaluate.stats.hypothesis.bonferroni`).

Every test returns a :class:`DriftTestResult`: arrays with one entry per column (a
statistic, a corrected p-value or a threshold, a drift decision). It is not
:class:`medfleet.evaluate.stats.results.TestResult`, which holds one scalar statistic
and p-value of a paired hypothesis test between two methods (Wilcoxon, McNemar, DeLong)
and has no threshold or decision.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(500, 2))
    >>> cur = ref[:200] + np.array([0.0, 1.0])
    >>> result = ks_test(ref, cur)
    >>> result.drift.tolist()
    [False, True]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _stats

from medfleet.evaluate.stats.hypothesis import bonferroni, holm

__all__ = [
    "CORRECTIONS",
    "DISTANCE_STATISTICS",
    "HISTOGRAM_TESTS",
    "PSI_EPS",
    "TEST_NAMES",
    "DriftTestResult",
    "adjust_pvalues",
    "bootstrap_null",
    "chi2_statistic",
    "chi2_test",
    "distance_test",
    "histogram_proportions",
    "js_from_proportions",
    "js_statistic",
    "js_test",
    "kl_from_proportions",
    "kl_statistic",
    "kl_test",
    "ks_pvalue",
    "ks_statistic",
    "ks_test",
    "median_bandwidth",
    "mmd_linear",
    "mmd_permutation",
    "mmd_test",
    "psi_from_proportions",
    "psi_statistic",
    "psi_test",
    "quantile_edges",
    "wasserstein_statistic",
    "wasserstein_test",
]

CORRECTIONS = ("holm", "bonferroni", "none")
"""Multiple-testing corrections accepted by :func:`adjust_pvalues`."""

PSI_EPS = 1e-4
"""Floor on bin proportions in PSI and KL, so that empty bins stay finite."""


@dataclass(frozen=True)
class DriftTestResult:
    """The outcome of one two-sample drift test over one or more output columns.

    Vectorised over columns and decided (by a corrected p-value or a threshold); see the
    module docs for how it differs from :class:`medfleet.evaluate.stats.results.TestResult`.

    Attributes:
        name: Test name (``ks``, ``wasserstein``, ``psi``, ``js``, ``kl``, ``chi2``,
            ``mmd_linear``, ``mmd_perm``).
        statistic: Statistic per column, shape ``(k,)``.
        p_value: p-value per column after multiple-testing correction, or None for
            threshold-decided tests.
        threshold: Decision threshold per column for threshold-decided tests, else None.
        drift: Decision per column, shape ``(k,)``.
        raw_p_value: p-values before correction (None when there are none).

    Example:
        >>> r = DriftTestResult("psi", np.array([0.3, 0.1]), None, np.array([0.2, 0.2]),
        ...                     np.array([True, False]))
        >>> r.any_drift
        True
    """

    name: str
    statistic: np.ndarray
    p_value: np.ndarray | None
    threshold: np.ndarray | None
    drift: np.ndarray
    raw_p_value: np.ndarray | None = field(default=None, repr=False)

    @property
    def any_drift(self) -> bool:
        """True when any column drifted."""
        return bool(np.any(self.drift))


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (rows x columns), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty; a two-sample test needs at least one row")
    return a


def _pair(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, c = _as_2d(ref, "ref"), _as_2d(cur, "cur")
    k = max(r.shape[1], c.shape[1])
    if r.shape[1] not in (1, k) or c.shape[1] not in (1, k):
        raise ValueError(f"column counts differ: ref has {r.shape[1]}, cur has {c.shape[1]}")
    return np.broadcast_to(r, (r.shape[0], k)), np.broadcast_to(c, (c.shape[0], k))


def _pooled_ecdfs(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted pooled values and the ECDF difference F_ref - F_cur at each of them."""
    m, n = ref.shape[0], cur.shape[0]
    pooled = np.concatenate([ref, cur], axis=0)
    order = np.argsort(pooled, axis=0)
    values = np.take_along_axis(pooled, order, axis=0)
    from_ref = order < m
    diff = np.cumsum(from_ref, axis=0) / m - np.cumsum(~from_ref, axis=0) / n
    return values, diff


def ks_statistic(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Two-sample Kolmogorov-Smirnov statistic per column (sup of |F_ref - F_cur|).

    Example:
        >>> float(ks_statistic([0.0, 1.0, 2.0], [10.0, 11.0])[0])
        1.0
    """
    r, c = _pair(ref, cur)
    values, diff = _pooled_ecdfs(r, c)
    at_group_end = np.ones_like(values, dtype=bool)
    at_group_end[:-1] = values[1:] != values[:-1]
    return np.max(np.abs(diff) * at_group_end, axis=0)


def ks_pvalue(statistic: np.ndarray, m: int, n: int) -> np.ndarray:
    """Asymptotic two-sided KS p-value (the formula of SciPy's ``ks_2samp(method='asymp')``).

    Example:
        >>> round(float(ks_pvalue(np.array([0.0]), 100, 100)[0]), 3)
        1.0
    """
    big, small = max(m, n), min(m, n)
    en = np.round(big * small / (big + small))
    return np.clip(_stats.kstwo.sf(np.asarray(statistic, dtype=np.float64), en), 0.0, 1.0)


def wasserstein_statistic(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """First Wasserstein distance per column (area between the two ECDFs).

    Example:
        >>> float(wasserstein_statistic([0.0, 1.0], [1.0, 2.0])[0])
        1.0
    """
    r, c = _pair(ref, cur)
    values, diff = _pooled_ecdfs(r, c)
    widths = np.diff(values, axis=0)
    return np.sum(np.abs(diff[:-1]) * widths, axis=0)


def quantile_edges(ref: np.ndarray, bins: int = 10) -> list[np.ndarray]:
    """Inner bin edges per column at the reference's quantiles (duplicates removed).

    The outer bins are open (-inf, first edge] and (last edge, inf), so every
    value of a later batch falls in some bin.

    Example:
        >>> quantile_edges(np.arange(10.0), bins=2)[0].tolist()
        [4.5]
    """
    r = _as_2d(ref, "ref")
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return [np.unique(np.quantile(r[:, j], qs)) for j in range(r.shape[1])]


def histogram_proportions(x: np.ndarray, edges: list[np.ndarray]) -> list[np.ndarray]:
    """Proportion of rows in each bin, per column; bin ``i`` is (edge[i-1], edge[i]].

    Example:
        >>> histogram_proportions(np.array([0.0, 1.0, 2.0, 3.0]), [np.array([1.5])])[0].tolist()
        [0.5, 0.5]
    """
    a = _as_2d(x, "x")
    if a.shape[1] == 1 and len(edges) > 1:
        a = np.broadcast_to(a, (a.shape[0], len(edges)))
    out = []
    for j, e in enumerate(edges):
        idx = np.searchsorted(e, a[:, j], side="left")
        out.append(np.bincount(idx, minlength=len(e) + 1) / a.shape[0])
    return out


def _proportions_matrix(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin proportions for many columns that share one set of inner edges: (bins, k)."""
    idx = np.searchsorted(edges, x, side="left")  # (n, k)
    nb = len(edges) + 1
    counts = np.zeros((nb, x.shape[1]))
    np.add.at(counts, (idx, np.broadcast_to(np.arange(x.shape[1]), idx.shape)), 1.0)
    return counts / x.shape[0]


def psi_from_proportions(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index sum((a - e) * ln(a / e)) with proportions floored at ``eps``.

    Example:
        >>> round(psi_from_proportions(np.array([0.5, 0.5]), np.array([0.25, 0.75])), 4)
        0.2747
    """
    e = np.clip(expected, eps, None)
    a = np.clip(actual, eps, None)
    return float(np.sum((a - e) * np.log(a / e), axis=0))


def js_from_proportions(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 for equal histograms, 1 for disjoint ones).

    Example:
        >>> js_from_proportions(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
        1.0
    """
    mid = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kp = np.where(p > 0, p * np.log2(p / mid), 0.0)
        kq = np.where(q > 0, q * np.log2(q / mid), 0.0)
    return float(0.5 * kp.sum(axis=0) + 0.5 * kq.sum(axis=0))


def kl_from_proportions(actual: np.ndarray, expected: np.ndarray, eps: float = PSI_EPS) -> float:
    """KL divergence KL(actual || expected) in nats, proportions floored at ``eps``.

    Example:
        >>> round(kl_from_proportions(np.array([0.25, 0.75]), np.array([0.5, 0.5])), 4)
        0.1308
    """
    a = np.clip(actual, eps, None)
    e = np.clip(expected, eps, None)
    a, e = a / a.sum(axis=0), e / e.sum(axis=0)
    return float(np.sum(a * np.log(a / e), axis=0))


def _histogram_statistic(
    ref: np.ndarray,
    cur: np.ndarray,
    edges: list[np.ndarray] | None,
    bins: int,
    fn: Callable[[np.ndarray, np.ndarray], float],
) -> np.ndarray:
    r, c = _pair(ref, cur)
    if edges is None:
        edges = quantile_edges(r, bins)
    if len(edges) == 1 and r.shape[1] > 1:
        e = edges[0]
        return np.array(
            [
                fn(p, q)
                for p, q in zip(
                    _proportions_matrix(r, e).T, _proportions_matrix(c, e).T, strict=True
                )
            ]
        )
    pr = histogram_proportions(r, edges)
    pc = histogram_proportions(c, edges)
    return np.array([fn(p, q) for p, q in zip(pr, pc, strict=True)])


def psi_statistic(
    ref: np.ndarray, cur: np.ndarray, bins: int = 10, edges: list[np.ndarray] | None = None
) -> np.ndarray:
    """Population stability index per column on reference-quantile bins.

    Example:
        >>> ref = np.linspace(0, 1, 100)
        >>> float(psi_statistic(ref, ref)[0])
        0.0
    """
    return _histogram_statistic(ref, cur, edges, bins, psi_from_proportions)


def js_statistic(
    ref: np.ndarray, cur: np.ndarray, bins: int = 10, edges: list[np.ndarray] | None = None
) -> np.ndarray:
    """Jensen-Shannon divergence (bits) per column on reference-quantile bins.

    Example:
        >>> round(float(js_statistic([0.0, 0.1, 0.2, 0.3], [5.0, 6.0], bins=2)[0]), 3)
        0.311
    """
    return _histogram_statistic(ref, cur, edges, bins, js_from_proportions)


def kl_statistic(
    ref: np.ndarray, cur: np.ndarray, bins: int = 10, edges: list[np.ndarray] | None = None
) -> np.ndarray:
    """KL(current || reference) in nats per column on reference-quantile bins.

    Example:
        >>> ref = np.linspace(0, 1, 100)
        >>> float(kl_statistic(ref, ref)[0])
        0.0
    """
    return _histogram_statistic(ref, cur, edges, bins, lambda p, q: kl_from_proportions(q, p))


def chi2_statistic(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chi-squared test of homogeneity of class frequencies per column (no continuity correction).

    Returns:
        Statistic and p-value per column; classes absent from both samples are dropped.

    Example:
        >>> stat, p = chi2_statistic(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))
        >>> float(stat[0]), float(p[0])
        (0.0, 1.0)
    """
    r, c = _pair(ref, cur)
    stats_out, p_out = [], []
    for j in range(r.shape[1]):
        classes, inverse = np.unique(np.concatenate([r[:, j], c[:, j]]), return_inverse=True)
        m = r.shape[0]
        table = np.stack(
            [
                np.bincount(inverse[:m], minlength=len(classes)),
                np.bincount(inverse[m:], minlength=len(classes)),
            ]
        ).astype(np.float64)
        if len(classes) < 2:
            stats_out.append(0.0)
            p_out.append(1.0)
            continue
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        stat = float(np.sum((table - expected) ** 2 / expected))
        stats_out.append(stat)
        p_out.append(float(_stats.chi2.sf(stat, len(classes) - 1)))
    return np.array(stats_out), np.array(p_out)


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name} must have at least two rows for MMD, got shape {a.shape}")
    return a


def median_bandwidth(x: np.ndarray, max_points: int = 200, seed: int = 0) -> float:
    """RBF bandwidth by the median heuristic on pairwise distances (positive, finite).

    Example:
        >>> round(median_bandwidth(np.array([[0.0], [1.0], [2.0]])), 3)
        1.0
    """
    a = _rows(x, "x")
    if a.shape[0] > max_points:
        a = a[np.random.default_rng(seed).choice(a.shape[0], max_points, replace=False)]
    sq = np.sum(a**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * a @ a.T, 0.0)
    iu = np.triu_indices(a.shape[0], k=1)
    med = float(np.sqrt(np.median(d2[iu])))
    return med if med > 0 else 1.0


def _rbf_rows(a: np.ndarray, b: np.ndarray, bandwidth: float) -> np.ndarray:
    """Kernel between row i of a and row i of b."""
    return np.exp(-np.sum((a - b) ** 2, axis=1) / (2 * bandwidth**2))


def mmd_linear(
    ref: np.ndarray, cur: np.ndarray, bandwidth: float | None = None, seed: int = 0
) -> tuple[float, float]:
    """Linear-time MMD² estimate with an RBF kernel and its one-sided normal p-value.

    Uses Gretton et al. (2012)'s estimator over ``L = min(m, n) // 2`` disjoint
    pairs of shuffled rows: O(L) kernel evaluations.

    Returns:
        ``(statistic, p_value)``.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> _, p = mmd_linear(rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + 2)
        >>> p < 1e-6
        True
    """
    x, y = _rows(ref, "ref"), _rows(cur, "cur")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"column counts differ: ref has {x.shape[1]}, cur has {y.shape[1]}")
    rng = np.random.default_rng(seed)
    half = min(x.shape[0], y.shape[0]) // 2
    xs = x[rng.permutation(x.shape[0])[: 2 * half]]
    ys = y[rng.permutation(y.shape[0])[: 2 * half]]
    bw = bandwidth or median_bandwidth(np.concatenate([xs, ys]), seed=seed)
    x1, x2, y1, y2 = xs[0::2], xs[1::2], ys[0::2], ys[1::2]
    h = (
        _rbf_rows(x1, x2, bw)
        + _rbf_rows(y1, y2, bw)
        - _rbf_rows(x1, y2, bw)
        - _rbf_rows(x2, y1, bw)
    )
    stat = float(np.mean(h))
    sd = float(np.std(h, ddof=1)) if half > 1 else 0.0
    if sd == 0.0:
        return stat, 1.0 if stat <= 0 else 0.0
    return stat, float(_stats.norm.sf(stat / (sd / np.sqrt(half))))


def mmd_permutation(
    ref: np.ndarray,
    cur: np.ndarray,
    n_permutations: int = 200,
    max_samples: int = 500,
    bandwidth: float | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Unbiased quadratic MMD² with a permutation p-value, on at most ``max_samples`` rows per side.

    The cap keeps the cost bounded (one kernel matrix of at most
    ``2 * max_samples`` rows, then one matrix product for all permutations).

    Returns:
        ``(statistic, p_value)`` with p = (1 + #{perm >= observed}) / (1 + n_permutations).

    Example:
        >>> rng = np.random.default_rng(2)
        >>> _, p = mmd_permutation(rng.normal(size=(100, 1)), rng.normal(size=(100, 1)) + 3)
        >>> p < 0.01
        True
    """
    x, y = _rows(ref, "ref"), _rows(cur, "cur")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"column counts differ: ref has {x.shape[1]}, cur has {y.shape[1]}")
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_samples:
        x = x[rng.choice(x.shape[0], max_samples, replace=False)]
    if y.shape[0] > max_samples:
        y = y[rng.choice(y.shape[0], max_samples, replace=False)]
    m, n = x.shape[0], y.shape[0]
    pooled = np.concatenate([x, y])
    bw = bandwidth or median_bandwidth(pooled, seed=seed)
    sq = np.sum(pooled**2, axis=1)
    kernel = np.exp(-np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0) / (2 * bw**2))
    np.fill_diagonal(kernel, 0.0)
    total = pooled.shape[0]
    labels = np.zeros((total, n_permutations + 1), dtype=bool)
    labels[:m, 0] = True
    for p in range(1, n_permutations + 1):
        labels[rng.permutation(total)[:m], p] = True
    a = labels.astype(np.float64)
    b = 1.0 - a
    ka = kernel @ a
    kb = kernel @ b
    sxx = np.sum(a * ka, axis=0)
    syy = np.sum(b * kb, axis=0)
    sxy = np.sum(a * kb, axis=0)
    mmd2 = sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)
    observed = float(mmd2[0])
    p_value = (1 + int(np.sum(mmd2[1:] >= observed))) / (1 + n_permutations)
    return observed, float(p_value)


def adjust_pvalues(p_values: np.ndarray, method: str = "holm") -> np.ndarray:
    """Family-wise adjusted p-values across columns (Holm step-down or Bonferroni).

    ``holm`` and ``bonferroni`` are :func:`medfleet.evaluate.stats.hypothesis.holm` and
    :func:`~medfleet.evaluate.stats.hypothesis.bonferroni` (a NaN stays NaN and does not
    count in the number of tests); ``none`` returns a copy.

    Args:
        p_values: Raw p-values in [0, 1], one per column.
        method: One of :data:`CORRECTIONS`.

    Returns:
        Adjusted p-values, same shape.

    Raises:
        ValueError: An unknown ``method``.

    Example:
        >>> adjust_pvalues(np.array([0.01, 0.04, 0.03]), "holm").round(2).tolist()
        [0.03, 0.06, 0.06]
        >>> adjust_pvalues(np.array([0.01, 0.04]), "bonferroni").tolist()
        [0.02, 0.08]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    if method == "none":
        return p.copy()
    return holm(p) if method == "holm" else bonferroni(p)


def _decide_p(name: str, stat: np.ndarray, raw: np.ndarray, alpha: float, correction: str):
    adjusted = adjust_pvalues(raw, correction)
    return DriftTestResult(name, stat, adjusted, None, adjusted < alpha, raw_p_value=raw)


def ks_test(
    ref: np.ndarray, cur: np.ndarray, alpha: float = 0.05, correction: str = "holm"
) -> DriftTestResult:
    """Kolmogorov-Smirnov test per column with asymptotic p-values and a correction across columns.

    Example:
        >>> ks_test(np.arange(100.0), np.arange(100.0)).drift.tolist()
        [False]
    """
    r, c = _pair(ref, cur)
    stat = ks_statistic(r, c)
    return _decide_p("ks", stat, ks_pvalue(stat, r.shape[0], c.shape[0]), alpha, correction)


def chi2_test(
    ref: np.ndarray, cur: np.ndarray, alpha: float = 0.05, correction: str = "holm"
) -> DriftTestResult:
    """Chi-squared homogeneity test of predicted-class frequencies per column.

    Example:
        >>> chi2_test(np.array([0] * 50 + [1] * 50), np.array([1] * 40)).drift.tolist()
        [True]
    """
    stat, p = chi2_statistic(ref, cur)
    return _decide_p("chi2", stat, p, alpha, correction)


def mmd_test(
    ref: np.ndarray,
    cur: np.ndarray,
    alpha: float = 0.05,
    method: str = "linear",
    n_permutations: int = 200,
    max_samples: int = 500,
    seed: int = 0,
) -> DriftTestResult:
    """MMD two-sample test over whole rows (e.g. probability vectors or embeddings).

    Args:
        ref: Reference rows ``(m, d)``.
        cur: Current rows ``(n, d)``.
        alpha: Significance level.
        method: ``linear`` (linear-time estimator, normal p-value) or ``permutation``
            (quadratic estimator on at most ``max_samples`` rows, permutation p-value).
        n_permutations: Permutations for ``permutation``.
        max_samples: Row cap per side for ``permutation``.
        seed: Seed for shuffling and permutations.

    Example:
        >>> rng = np.random.default_rng(3)
        >>> mmd_test(rng.normal(size=(300, 3)), rng.normal(size=(300, 3))).drift.tolist()
        [False]
    """
    if method == "linear":
        stat, p = mmd_linear(ref, cur, seed=seed)
        name = "mmd_linear"
    elif method == "permutation":
        stat, p = mmd_permutation(ref, cur, n_permutations, max_samples, seed=seed)
        name = "mmd_perm"
    else:
        raise ValueError(f"unknown MMD method {method!r}; use 'linear' or 'permutation'")
    return DriftTestResult(
        name, np.array([stat]), np.array([p]), None, np.array([p < alpha]), np.array([p])
    )


DISTANCE_STATISTICS: dict[str, Callable[..., np.ndarray]] = {
    "wasserstein": wasserstein_statistic,
    "psi": psi_statistic,
    "js": js_statistic,
    "kl": kl_statistic,
}
"""Distance-style statistics decided against a threshold."""

HISTOGRAM_TESTS = ("psi", "js", "kl")
"""Statistics computed on reference-quantile histograms."""


def bootstrap_null(
    ref: np.ndarray,
    n: int,
    statistic: str,
    n_boot: int = 200,
    seed: int = 0,
    bins: int = 10,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Bootstrap distribution of a statistic between a resampled reference and a batch of ``n``.

    Both the pseudo-reference (size ``m``) and the pseudo-batch (size ``n``) are
    drawn with replacement from the reference, so the draws mimic two
    independent samples of the same distribution. ``transform`` (applied to
    the pseudo-batch) turns this into the distribution under a known shift.
    Histogram statistics keep the real reference's bin edges.

    Args:
        ref: One reference column, shape ``(m,)``.
        n: Batch size.
        statistic: ``ks``, ``wasserstein``, ``psi``, ``js`` or ``kl``.
        n_boot: Number of bootstrap draws.
        seed: Random seed.
        bins: Histogram bins for PSI/JS/KL.
        transform: Optional shift applied to each pseudo-batch.

    Returns:
        ``(n_boot,)`` statistics.

    Example:
        >>> null = bootstrap_null(np.random.default_rng(0).normal(size=300), 100, "ks", n_boot=50)
        >>> null.shape, bool(np.all(null > 0))
        ((50,), True)
    """
    r = np.asarray(ref, dtype=np.float64).ravel()
    m = r.size
    rng = np.random.default_rng(seed)
    pseudo_ref = r[rng.integers(0, m, size=(m, n_boot))]
    pseudo_cur = r[rng.integers(0, m, size=(n, n_boot))]
    if transform is not None:
        pseudo_cur = transform(pseudo_cur)
    if statistic == "ks":
        return ks_statistic(pseudo_ref, pseudo_cur)
    if statistic == "wasserstein":
        return wasserstein_statistic(pseudo_ref, pseudo_cur)
    if statistic in HISTOGRAM_TESTS:
        edges = quantile_edges(r, bins)[0]
        pr = _proportions_matrix(pseudo_ref, edges)
        pc = _proportions_matrix(pseudo_cur, edges)
        if statistic == "psi":
            a, e = np.clip(pc, PSI_EPS, None), np.clip(pr, PSI_EPS, None)
            return np.sum((a - e) * np.log(a / e), axis=0)
        if statistic == "js":
            return np.array([js_from_proportions(p, q) for p, q in zip(pr.T, pc.T, strict=True)])
        return np.array([kl_from_proportions(q, p) for p, q in zip(pr.T, pc.T, strict=True)])
    raise ValueError(f"no bootstrap for statistic {statistic!r}")


def distance_test(
    name: str,
    ref: np.ndarray,
    cur: np.ndarray,
    threshold: float | np.ndarray | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    n_boot: int = 200,
    seed: int = 0,
    bins: int = 10,
) -> DriftTestResult:
    """Wasserstein, PSI, JS or KL per column, decided against a threshold.

    Without a ``threshold`` the threshold is calibrated per column as the
    ``1 - alpha`` quantile of the bootstrap null (:func:`bootstrap_null`), with
    ``alpha`` divided by the number of columns under Holm or Bonferroni.

    Example:
        >>> rng = np.random.default_rng(4)
        >>> ref = rng.normal(size=1000)
        >>> distance_test("wasserstein", ref, ref[:300] + 1.0).drift.tolist()
        [True]
        >>> distance_test("psi", ref, ref[:300], threshold=0.25).drift.tolist()
        [False]
    """
    if name not in DISTANCE_STATISTICS:
        raise ValueError(f"unknown distance {name!r}; use one of {', '.join(DISTANCE_STATISTICS)}")
    r, c = _pair(ref, cur)
    kwargs = {"bins": bins} if name in HISTOGRAM_TESTS else {}
    stat = DISTANCE_STATISTICS[name](r, c, **kwargs)
    k = stat.size
    if threshold is None:
        level = alpha / k if correction in ("holm", "bonferroni") else alpha
        threshold = np.array(
            [
                np.quantile(
                    bootstrap_null(r[:, j], c.shape[0], name, n_boot, seed + j, bins), 1 - level
                )
                for j in range(k)
            ]
        )
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), stat.shape).copy()
    return DriftTestResult(name, stat, None, thr, stat > thr)


def wasserstein_test(ref: np.ndarray, cur: np.ndarray, **kwargs) -> DriftTestResult:
    """Wasserstein-1 distance per column (see :func:`distance_test`).

    Example:
        >>> wasserstein_test([0.0, 1.0], [0.0, 1.0], threshold=0.1).drift.tolist()
        [False]
    """
    return distance_test("wasserstein", ref, cur, **kwargs)


def psi_test(ref: np.ndarray, cur: np.ndarray, **kwargs) -> DriftTestResult:
    """Population stability index per column (see :func:`distance_test`).

    Example:
        >>> psi_test(np.linspace(0, 1, 50), np.linspace(0, 1, 50), threshold=0.1).drift.tolist()
        [False]
    """
    return distance_test("psi", ref, cur, **kwargs)


def js_test(ref: np.ndarray, cur: np.ndarray, **kwargs) -> DriftTestResult:
    """Jensen-Shannon divergence per column (see :func:`distance_test`).

    Example:
        >>> js_test(np.linspace(0, 1, 50), np.linspace(5, 6, 50), threshold=0.1).drift.tolist()
        [True]
    """
    return distance_test("js", ref, cur, **kwargs)


def kl_test(ref: np.ndarray, cur: np.ndarray, **kwargs) -> DriftTestResult:
    """KL(current || reference) per column (see :func:`distance_test`).

    Example:
        >>> kl_test(np.linspace(0, 1, 50), np.linspace(0, 1, 50), threshold=0.1).drift.tolist()
        [False]
    """
    return distance_test("kl", ref, cur, **kwargs)


TEST_NAMES = ("ks", "wasserstein", "psi", "js", "kl", "chi2", "mmd_linear", "mmd_perm")
"""Every test name a configuration may list."""
