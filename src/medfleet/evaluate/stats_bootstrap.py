"""Bootstrap confidence intervals over cases, single and paired (numpy/scipy only).

Conventions:

* **Per-case resampling.** Each resample draws ``n`` case indices with replacement
  (``rng.integers(0, n, (batch, n))`` from ``numpy.random.default_rng(seed)``), the same
  draws as :func:`scipy.stats.bootstrap`, so a given ``seed`` reproduces SciPy's intervals.
  A paired bootstrap uses one index draw for both methods, so each resample keeps the
  pairing of the cases.
* **Intervals.** ``"percentile"``: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
  quantiles (linear interpolation) of the bootstrap distribution. ``"bca"``: the
  bias-corrected and accelerated interval (Efron and Tibshirani 1993, 14.3), with the bias
  from the fraction of resamples below the estimate (ties count one half) and the
  acceleration from the jackknife; degenerate data (every jackknife value equal) gives an
  acceleration of 0.
* **NaN policy.** ``"omit"`` (default) drops NaN values before resampling (for paired data,
  a pair is dropped when either value is NaN) and reports how many in ``n_dropped``;
  ``"propagate"`` returns NaN everywhere when a NaN is present; ``"raise"`` raises.
  Infinite values are kept: a statistic that sees one (e.g. the mean of an infinite HD95) is
  infinite, and so are the interval bounds that depend on it.
* **Small samples.** No case left: every field is NaN. One case (or identical values): the
  interval is the single value.
* **Memory.** Resamples are drawn in batches of at most about two million indices, so a
  large number of cases never materialises an ``n_resamples x n`` matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr, ndtri

from medfleet.evaluate.conventions import MetricInputError
from medfleet.evaluate.stats_results import CI, PairedResult

__all__ = ["NanPolicy", "bootstrap_ci", "bootstrap_distribution", "paired_bootstrap"]

NanPolicy = Literal["omit", "propagate", "raise"]
Statistic = Callable[..., Any]
Seed = int | np.random.Generator | None

_BATCH_ELEMENTS = 2_000_000


def _as_values(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise MetricInputError(
            f"{name} must be 1-D with one value per case, got shape {arr.shape} "
            "(fix: pass one metric column at a time)"
        )
    return arr


def _check_common(n_resamples: int, confidence: float, method: str) -> None:
    if int(n_resamples) < 1:
        raise MetricInputError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise MetricInputError(f"confidence must be strictly between 0 and 1, got {confidence}")
    if method not in ("percentile", "bca"):
        raise MetricInputError(f"method must be 'percentile' or 'bca', got {method!r}")


def _apply_nan_policy(arrays: list[np.ndarray], nan_policy: str) -> tuple[list[np.ndarray], int]:
    if nan_policy not in ("omit", "propagate", "raise"):
        raise MetricInputError(
            f"nan_policy must be 'omit', 'propagate' or 'raise', got {nan_policy!r}"
        )
    nan = np.zeros(arrays[0].shape, dtype=bool)
    for arr in arrays:
        nan |= np.isnan(arr)
    n_nan = int(nan.sum())
    if n_nan and nan_policy == "raise":
        where = np.flatnonzero(nan)[:5].tolist()
        raise MetricInputError(
            f"{n_nan} NaN value(s) at case index {where}... (fix: drop them, or use "
            "nan_policy='omit')"
        )
    if n_nan and nan_policy == "omit":
        return [arr[~nan] for arr in arrays], n_nan
    return arrays, n_nan


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _is_vectorized(
    statistic: Statistic, samples: list[np.ndarray], vectorized: bool | None
) -> bool:
    if vectorized is not None:
        return bool(vectorized)
    probe = [s[None, : min(len(s), 3)] for s in samples]
    probe = [np.vstack([p, p]) for p in probe]
    try:
        out = np.asarray(statistic(*probe, axis=-1))
    except TypeError:
        return False
    return out.shape == (2,)


def _evaluate(
    statistic: Statistic, samples: list[np.ndarray], idx: np.ndarray, vectorized: bool
) -> np.ndarray:
    """Statistic of ``samples[..., idx]`` for each row of ``idx`` (shape ``(k, m)``)."""
    if vectorized:
        return np.asarray(statistic(*[s[idx] for s in samples], axis=-1), dtype=np.float64)
    return np.array([float(statistic(*[s[row] for s in samples])) for row in idx], dtype=np.float64)


def bootstrap_distribution(
    samples: list[np.ndarray],
    statistic: Statistic,
    *,
    n_resamples: int = 2000,
    seed: Seed = 0,
    vectorized: bool | None = None,
) -> np.ndarray:
    """Bootstrap distribution of ``statistic(*samples)`` under per-case resampling.

    All ``samples`` share one index draw per resample (paired resampling).

    Args:
        samples: Arrays of equal length (one value per case).
        statistic: ``statistic(*arrays) -> float``; when it accepts ``axis=-1`` it is called
            on whole batches of resamples (detected, or forced with ``vectorized``).
        n_resamples: Number of resamples.
        seed: Seed or generator of :func:`numpy.random.default_rng`.
        vectorized: Whether ``statistic`` takes ``axis``; ``None`` detects it.

    Returns:
        float64 array of ``n_resamples`` statistic values.

    Example:
        >>> d = bootstrap_distribution([np.array([1.0, 2.0, 3.0])], np.mean, n_resamples=4)
        >>> d.shape, bool(((d >= 1) & (d <= 3)).all())
        ((4,), True)
    """
    n = len(samples[0])
    if n == 0:
        return np.full(int(n_resamples), np.nan)
    rng = _rng(seed)
    vec = _is_vectorized(statistic, samples, vectorized)
    batch = max(1, min(int(n_resamples), _BATCH_ELEMENTS // max(n, 1)))
    out = np.empty(int(n_resamples), dtype=np.float64)
    for start in range(0, int(n_resamples), batch):
        k = min(batch, int(n_resamples) - start)
        idx = rng.integers(0, n, (k, n))
        out[start : start + k] = _evaluate(statistic, samples, idx, vec)
    return out


def _jackknife(statistic: Statistic, samples: list[np.ndarray], vectorized: bool) -> np.ndarray:
    n = len(samples[0])
    out = np.empty(n, dtype=np.float64)
    batch = max(1, _BATCH_ELEMENTS // max(n - 1, 1))
    cols = np.arange(n - 1)
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch))
        idx = cols[None, :] + (cols[None, :] >= rows[:, None])
        out[rows] = _evaluate(statistic, samples, idx, vectorized)
    return out


def _interval(
    boot: np.ndarray,
    estimate: float,
    confidence: float,
    method: str,
    statistic: Statistic,
    samples: list[np.ndarray],
    vectorized: bool,
) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    if method == "bca" and len(samples[0]) >= 2:
        below = np.count_nonzero(boot < estimate) + np.count_nonzero(boot <= estimate)
        z0 = float(ndtri(below / (2.0 * boot.size)))
        theta = _jackknife(statistic, samples, vectorized)
        dev = theta.mean() - theta
        den = float(np.sum(dev**2))
        accel = float(np.sum(dev**3)) / (6.0 * den**1.5) if den > 0 else 0.0
        z_lo, z_hi = float(ndtri(alpha)), float(ndtri(1.0 - alpha))
        q_lo = float(ndtr(z0 + (z0 + z_lo) / (1.0 - accel * (z0 + z_lo))))
        q_hi = float(ndtr(z0 + (z0 + z_hi) / (1.0 - accel * (z0 + z_hi))))
        if not (math.isfinite(q_lo) and math.isfinite(q_hi)):
            # every resample on one side of the estimate: fall back to the percentile bounds
            q_lo, q_hi = alpha, 1.0 - alpha
    else:
        q_lo, q_hi = alpha, 1.0 - alpha
    low, high = _quantiles(boot, [q_lo, q_hi])
    return float(low), float(high)


def _quantiles(values: np.ndarray, qs: list[float]) -> list[float]:
    """Linear-interpolation quantiles (``numpy.quantile``) that keep equal infinities."""
    if np.all(np.isfinite(values)):
        return [float(v) for v in np.quantile(values, qs)]
    ordered = np.sort(values)
    out = []
    for q in qs:
        h = (ordered.size - 1) * q
        lo, hi = ordered[math.floor(h)], ordered[math.ceil(h)]
        out.append(float(lo) if lo == hi else float(lo + (h - math.floor(h)) * (hi - lo)))
    return out


def bootstrap_ci(
    values: Any,
    statistic: Statistic = np.mean,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    method: Literal["percentile", "bca"] = "percentile",
    seed: Seed = 0,
    nan_policy: NanPolicy = "omit",
    vectorized: bool | None = None,
) -> CI:
    """Confidence interval of a statistic of per-case values, by resampling cases.

    Args:
        values: One value per case.
        statistic: Function of a 1-D array (``np.mean``, ``np.median``...); functions that
            accept ``axis=-1`` run on whole batches of resamples.
        n_resamples: Number of bootstrap resamples.
        confidence: Coverage of the two-sided interval.
        method: ``"percentile"`` or ``"bca"`` (see the module notes).
        seed: Seed or generator of :func:`numpy.random.default_rng`.
        nan_policy: ``"omit"``, ``"propagate"`` or ``"raise"`` (see the module notes).
        vectorized: Whether ``statistic`` takes ``axis``; ``None`` detects it.

    Returns:
        :class:`~medfleet.evaluate.stats_results.CI` with ``estimate = statistic(values)``.

    Raises:
        MetricInputError: ``values`` is not 1-D, an option is out of range, or a NaN is
            present with ``nan_policy="raise"``.

    Example:
        >>> ci = bootstrap_ci([0.8, 0.9, 0.7, 0.85, float("nan")], n_resamples=500)
        >>> round(ci.estimate, 4), ci.n, ci.n_dropped, ci.low <= ci.estimate <= ci.high
        (0.8125, 4, 1, True)
    """
    _check_common(n_resamples, confidence, method)
    arr = _as_values(values, "values")
    (arr,), n_dropped = _apply_nan_policy([arr], nan_policy)
    nan_ci = CI(math.nan, math.nan, math.nan, confidence, int(arr.size), method, n_dropped)
    if arr.size == 0 or (nan_policy == "propagate" and n_dropped):
        return nan_ci
    estimate = float(statistic(arr))
    vec = _is_vectorized(statistic, [arr], vectorized)
    boot = bootstrap_distribution(
        [arr], statistic, n_resamples=n_resamples, seed=seed, vectorized=vec
    )
    low, high = _interval(boot, estimate, confidence, method, statistic, [arr], vec)
    return CI(estimate, low, high, confidence, int(arr.size), method, n_dropped)


def paired_bootstrap(
    a: Any,
    b: Any,
    statistic: Statistic = np.mean,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    method: Literal["percentile", "bca"] = "percentile",
    seed: Seed = 0,
    nan_policy: NanPolicy = "omit",
    vectorized: bool | None = None,
) -> PairedResult:
    """Paired bootstrap of the difference ``statistic(b) - statistic(a)`` on the same cases.

    Both methods are resampled with the same case indices. The two-sided p-value inverts the
    percentile interval: ``p = min(1, 2 * min(P*(d <= 0), P*(d >= 0)))`` over the bootstrap
    differences ``d``, each probability computed as ``(1 + count) / (1 + n_resamples)`` so
    that it is never 0. Hence ``p < 1 - confidence`` exactly when 0 lies outside the
    percentile interval (up to the interpolation of the quantiles).

    Args:
        a: Per-case values of the reference method.
        b: Per-case values of the compared method, same cases in the same order.
        statistic: Function of a 1-D array (applied to ``a`` and ``b`` separately).
        n_resamples: Number of bootstrap resamples.
        confidence: Coverage of the two-sided interval.
        method: ``"percentile"`` or ``"bca"`` (the p-value is always percentile-based).
        seed: Seed or generator of :func:`numpy.random.default_rng`.
        nan_policy: ``"omit"`` drops a pair where either value is NaN.
        vectorized: Whether ``statistic`` takes ``axis``; ``None`` detects it.

    Returns:
        :class:`~medfleet.evaluate.stats_results.PairedResult`.

    Example:
        >>> a = [0.70, 0.72, 0.68, 0.75, 0.71, 0.69, 0.73, 0.70]
        >>> b = [0.80, 0.81, 0.77, 0.86, 0.80, 0.78, 0.84, 0.79]
        >>> r = paired_bootstrap(a, b, n_resamples=1000)
        >>> round(r.estimate, 4), r.low > 0, r.p_value < 0.01
        (0.0963, True, True)
    """
    _check_common(n_resamples, confidence, method)
    xa, xb = _as_values(a, "a"), _as_values(b, "b")
    if xa.shape != xb.shape:
        raise MetricInputError(
            f"a and b must hold one value per case for the same cases: {xa.size} and {xb.size} "
            "values (fix: align both methods on the case ids first)"
        )
    (xa, xb), n_dropped = _apply_nan_policy([xa, xb], nan_policy)
    if xa.size == 0 or (nan_policy == "propagate" and n_dropped):
        nan = math.nan
        return PairedResult(
            nan, nan, nan, confidence, int(xa.size), nan, nan, nan, method, n_dropped
        )
    est_a, est_b = float(statistic(xa)), float(statistic(xb))
    vec = _is_vectorized(statistic, [xa], vectorized)

    if vec:

        def diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> Any:
            return np.asarray(statistic(y, axis=axis)) - np.asarray(statistic(x, axis=axis))
    else:

        def diff(x: np.ndarray, y: np.ndarray) -> Any:  # type: ignore[misc]
            return float(statistic(y)) - float(statistic(x))

    estimate = est_b - est_a
    boot = bootstrap_distribution(
        [xa, xb], diff, n_resamples=n_resamples, seed=seed, vectorized=vec
    )
    low, high = _interval(boot, estimate, confidence, method, diff, [xa, xb], vec)
    n_b = boot.size
    p_le = (1 + np.count_nonzero(boot <= 0)) / (1 + n_b)
    p_ge = (1 + np.count_nonzero(boot >= 0)) / (1 + n_b)
    p_value = float(min(1.0, 2.0 * min(p_le, p_ge)))
    return PairedResult(
        estimate, low, high, confidence, int(xa.size), p_value, est_a, est_b, method, n_dropped
    )
