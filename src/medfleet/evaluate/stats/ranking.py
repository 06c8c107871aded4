"""Challenge rankings (rank-then-aggregate, aggregate-then-rank) and their bootstrap stability.

Input: per-case metric values of several methods, either

* a nested mapping ``{method: {case: {metric: value}}}``,
* a long DataFrame with columns ``method``, ``case``, ``metric``, ``value``, or
* a wide DataFrame with columns ``method``, ``case`` and one column per metric.

``higher_is_better`` maps each metric to rank to ``True`` (Dice, AUC) or ``False`` (HD95,
error); a single bool applies to every metric. Only the metrics it names are ranked.

Conventions (those of challengeR, Wiesenfarth et al. 2021, unless noted):

* **Rank 1 is best.** ``ties``: ``"min"`` (1, 2, 2, 4; the challengeR default),
  ``"average"`` (1, 2.5, 2.5, 4), ``"max"`` or ``"dense"``.
* **rank-then-aggregate**: for every case and metric the methods are ranked; a method's
  score is the mean (or median) of its ranks over all cases and metrics; the final ranking
  ranks the scores (lower is better).
* **aggregate-then-rank**: for every metric each method's values are aggregated over the
  cases (mean or median); methods are ranked per metric; the score is that aggregate when
  there is one metric, else the mean of the per-metric ranks (lower is better).
* **Missing values** (a case or metric absent for a method, or NaN): ``missing="worst"``
  (default) ranks them last, tied with each other and with infinite worst values
  (rank-then-aggregate), or replaces them with the metric's worst value (aggregate-then-
  rank: ``worst[metric]`` when given, else the worst value observed for that metric among
  all methods and cases); ``"drop"`` leaves them out (rank-then-aggregate: the case is
  dropped for that metric for every method); ``"raise"`` raises.
* **Stability**: cases are resampled with replacement (the same resampled cases for every
  method); each resample is ranked with the same scheme; the result gives each method's
  rank distribution and Kendall's tau-b between each resampled ranking and the full one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, rankdata

from medfleet.evaluate.metrics.conventions import MetricInputError, float_or_nan

__all__ = [
    "RankStability",
    "Ranking",
    "aggregate_then_rank",
    "bootstrap_rank_stability",
    "rank",
    "rank_then_aggregate",
]

Ties = Literal["min", "average", "max", "dense"]
Missing = Literal["worst", "drop", "raise"]
Scheme = Literal["rank-then-aggregate", "aggregate-then-rank"]
Aggregate = Literal["mean", "median"]


@dataclass(frozen=True)
class _Cube:
    """Metric values as an array ``(methods, cases, metrics)``; NaN where missing."""

    methods: list[str]
    cases: list[str]
    metrics: list[str]
    values: np.ndarray
    higher: np.ndarray  # bool per metric


def _as_cube(scores: Any, higher_is_better: Mapping[str, bool] | bool) -> _Cube:
    records: list[tuple[Any, Any, Any, float]] = []
    if isinstance(scores, pd.DataFrame):
        cols = set(scores.columns)
        if not {"method", "case"} <= cols:
            raise MetricInputError(
                f"a scores DataFrame needs 'method' and 'case' columns, has {sorted(cols)}"
            )
        if {"metric", "value"} <= cols:
            records = list(
                zip(
                    scores["method"],
                    scores["case"],
                    scores["metric"],
                    pd.to_numeric(scores["value"], errors="coerce"),
                    strict=True,
                )
            )
        else:
            metric_cols = (
                list(higher_is_better)
                if isinstance(higher_is_better, Mapping)
                else [c for c in scores.columns if c not in ("method", "case")]
            )
            for metric in metric_cols:
                if metric not in cols:
                    raise MetricInputError(
                        f"metric {metric!r} of higher_is_better is not a column of the scores "
                        f"table (columns: {sorted(cols)})"
                    )
                vals = pd.to_numeric(scores[metric], errors="coerce")
                records.extend(
                    zip(scores["method"], scores["case"], [metric] * len(scores), vals, strict=True)
                )
    elif isinstance(scores, Mapping):
        for method, per_case in scores.items():
            if not isinstance(per_case, Mapping):
                raise MetricInputError(
                    f"scores[{method!r}] must map case -> {{metric: value}}, got "
                    f"{type(per_case).__name__}"
                )
            for case, per_metric in per_case.items():
                if isinstance(per_metric, Mapping):
                    for metric, value in per_metric.items():
                        records.append((method, case, metric, float_or_nan(value)))
                else:
                    records.append((method, case, "value", float_or_nan(per_metric)))
    else:
        raise MetricInputError(
            "scores must be {method: {case: {metric: value}}} or a DataFrame, got "
            f"{type(scores).__name__}"
        )
    if not records:
        raise MetricInputError("scores hold no value to rank")

    methods = list(dict.fromkeys(str(r[0]) for r in records))
    cases = list(dict.fromkeys(str(r[1]) for r in records))
    seen_metrics = list(dict.fromkeys(str(r[2]) for r in records))
    if isinstance(higher_is_better, Mapping):
        metrics = [str(m) for m in higher_is_better]
        absent = [m for m in metrics if m not in seen_metrics]
        if absent:
            raise MetricInputError(
                f"metric(s) {absent} of higher_is_better have no value in the scores "
                f"(metrics present: {seen_metrics})"
            )
        higher = np.array([bool(higher_is_better[m]) for m in metrics])
    else:
        metrics = seen_metrics
        higher = np.full(len(metrics), bool(higher_is_better))
    if len(methods) < 1:
        raise MetricInputError("scores name no method")
    mi = {m: i for i, m in enumerate(methods)}
    ci = {c: i for i, c in enumerate(cases)}
    ki = {k: i for i, k in enumerate(metrics)}
    values = np.full((len(methods), len(cases), len(metrics)), np.nan)
    for method, case, metric, value in records:
        k = ki.get(str(metric))
        if k is not None:
            values[mi[str(method)], ci[str(case)], k] = value
    return _Cube(methods, cases, metrics, values, higher)


def rank(values: Any, *, higher_is_better: bool = True, ties: Ties = "min") -> np.ndarray:
    """Rank values (1 = best); NaN values rank last, tied with each other.

    Example:
        >>> rank([0.9, 0.7, 0.9, float("nan")]).tolist()
        [1.0, 3.0, 1.0, 4.0]
        >>> rank([3.0, 1.0, 2.0], higher_is_better=False, ties="average").tolist()
        [3.0, 1.0, 2.0]
    """
    _check_ties(ties)
    v = np.asarray(values, dtype=np.float64)
    bad = -v if higher_is_better else v.copy()
    bad[np.isnan(bad)] = np.inf
    return rankdata(bad, method=ties).astype(np.float64)


def _check_ties(ties: str) -> None:
    if ties not in ("min", "average", "max", "dense"):
        raise MetricInputError(f"ties must be min, average, max or dense, got {ties!r}")


def _check_missing(cube: _Cube, missing: str) -> None:
    if missing not in ("worst", "drop", "raise"):
        raise MetricInputError(f"missing must be worst, drop or raise, got {missing!r}")
    if missing == "raise" and np.isnan(cube.values).any():
        m, c, k = np.argwhere(np.isnan(cube.values))[0]
        raise MetricInputError(
            f"method {cube.methods[m]!r} has no {cube.metrics[k]!r} for case "
            f"{cube.cases[c]!r} (fix: score every case, or use missing='worst' or 'drop')"
        )


@dataclass(frozen=True)
class Ranking:
    """A ranking of methods.

    Attributes:
        table: One row per method (index ``method``), sorted by ``rank``, with columns
            ``rank``, ``score`` and, per metric, ``<metric>`` (aggregate-then-rank: the
            aggregate value; rank-then-aggregate: the method's mean rank on that metric)
            and, for aggregate-then-rank, ``<metric>_rank``.
        scheme: ``"rank-then-aggregate"`` or ``"aggregate-then-rank"``.
        ties: Tie rule of the ranks.
        score_description: What ``score`` holds.
        score_higher_is_better: Whether a higher ``score`` ranks better.
        n_cases: Number of cases.
    """

    table: pd.DataFrame
    scheme: str
    ties: str
    score_description: str
    score_higher_is_better: bool = False
    n_cases: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def order(self) -> list[str]:
        """Methods from best to worst."""
        return [str(m) for m in self.table.index]

    @property
    def ranks(self) -> pd.Series:
        """Final rank per method."""
        return self.table["rank"]

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary: scheme, ties, score description and one row per method."""
        rows = [{"method": str(m), **row} for m, row in self.table.to_dict("index").items()]
        return {
            "scheme": self.scheme,
            "ties": self.ties,
            "score": self.score_description,
            "n_cases": self.n_cases,
            "methods": rows,
        }


def _rank_then_aggregate_arrays(
    cube: _Cube, ties: str, missing: str, aggregate: str, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-method score and per-metric mean rank; ``weights`` = case multiplicities."""
    ranks = _case_ranks(cube, ties, missing)  # (methods, cases, metrics), NaN = dropped
    return _aggregate_case_ranks(ranks, aggregate, weights)


def _case_ranks(cube: _Cube, ties: str, missing: str) -> np.ndarray:
    n_k = cube.values.shape[2]
    ranks = np.full(cube.values.shape, np.nan)
    for k in range(n_k):
        bad = -cube.values[:, :, k] if cube.higher[k] else cube.values[:, :, k].copy()
        nan = np.isnan(bad)
        if missing == "drop":
            keep = ~nan.any(axis=0)
            if keep.any():
                ranks[:, keep, k] = rankdata(bad[:, keep], method=ties, axis=0)
        else:
            bad[nan] = np.inf
            ranks[:, :, k] = rankdata(bad, method=ties, axis=0)
    return ranks


def _aggregate_case_ranks(
    ranks: np.ndarray, aggregate: str, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    n_m, n_c, _ = ranks.shape
    w = np.ones(n_c) if weights is None else weights
    valid = ~np.isnan(ranks)
    if aggregate == "mean":
        filled = np.where(valid, ranks, 0.0)
        num_k = np.einsum("mck,c->mk", filled, w)
        den_k = np.einsum("mck,c->mk", valid.astype(np.float64), w)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_metric = num_k / den_k
            score = num_k.sum(axis=1) / den_k.sum(axis=1)
        return score, per_metric
    reps = np.rint(w).astype(np.int64)
    expanded = np.repeat(ranks, reps, axis=1)
    per_metric = _nanmedian(expanded, axis=1)
    score = _nanmedian(expanded.reshape(n_m, -1), axis=1)
    return score, per_metric


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    if a.size == 0 or np.isnan(a).all():
        shape = list(a.shape)
        del shape[axis]
        return np.full(shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        return np.nanmedian(a, axis=axis)


def _final_rank(score: np.ndarray, ties: str, higher_is_better: bool) -> np.ndarray:
    bad = -score if higher_is_better else score.copy()
    bad = np.where(np.isnan(bad), np.inf, bad)
    return rankdata(bad, method=ties).astype(np.float64)


def rank_then_aggregate(
    scores: Any,
    higher_is_better: Mapping[str, bool] | bool,
    *,
    ties: Ties = "min",
    missing: Missing = "worst",
    aggregate: Aggregate = "mean",
) -> Ranking:
    """Rank the methods on every case and metric, then aggregate each method's ranks.

    Args:
        scores: Per-case values (see the module notes for the accepted forms).
        higher_is_better: Metric -> whether higher is better (or one bool for all).
        ties: Tie rule for the per-case ranks and for the final ranking.
        missing: ``"worst"``, ``"drop"`` or ``"raise"`` (see the module notes).
        aggregate: ``"mean"`` or ``"median"`` of the ranks.

    Returns:
        :class:`Ranking` whose ``score`` is the mean (or median) rank (lower is better).

    Example:
        >>> scores = {
        ...     "A": {"c1": {"dice": 0.9}, "c2": {"dice": 0.6}, "c3": {"dice": 0.7}},
        ...     "B": {"c1": {"dice": 0.8}, "c2": {"dice": 0.7}, "c3": {"dice": 0.8}},
        ... }
        >>> r = rank_then_aggregate(scores, {"dice": True})
        >>> r.order, r.table["score"].round(4).tolist()
        (['B', 'A'], [1.3333, 1.6667])
    """
    _check_ties(ties)
    if aggregate not in ("mean", "median"):
        raise MetricInputError(f"aggregate must be mean or median, got {aggregate!r}")
    cube = _as_cube(scores, higher_is_better)
    _check_missing(cube, missing)
    score, per_metric = _rank_then_aggregate_arrays(cube, ties, missing, aggregate)
    final = _final_rank(score, ties, higher_is_better=False)
    table = pd.DataFrame(
        {"rank": final, "score": score}, index=pd.Index(cube.methods, name="method")
    )
    for k, metric in enumerate(cube.metrics):
        table[metric] = per_metric[:, k]
    table = table.sort_values(["rank", "score"], kind="stable")
    return Ranking(
        table=table,
        scheme="rank-then-aggregate",
        ties=ties,
        score_description=f"{aggregate} rank over cases and metrics",
        score_higher_is_better=False,
        n_cases=len(cube.cases),
    )


def _aggregate_values(
    cube: _Cube,
    missing: str,
    aggregate: str,
    worst: Mapping[str, float] | None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Per-method, per-metric aggregate ``(methods, metrics)``."""
    vals = cube.values.copy()
    if missing == "worst":
        for k, metric in enumerate(cube.metrics):
            col = vals[:, :, k]
            nan = np.isnan(col)
            if not nan.any():
                continue
            if worst is not None and metric in worst:
                fill = float(worst[metric])
            else:
                present = col[~nan]
                if present.size == 0:
                    continue
                fill = float(present.min() if cube.higher[k] else present.max())
            col[nan] = fill
    w = np.ones(vals.shape[1]) if weights is None else weights
    if aggregate == "mean":
        valid = ~np.isnan(vals)
        filled = np.where(valid, vals, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            num = np.einsum("mck,c->mk", filled, w)
            den = np.einsum("mck,c->mk", valid.astype(np.float64), w)
            return num / den
    reps = np.rint(w).astype(np.int64)
    return _nanmedian(np.repeat(vals, reps, axis=1), axis=1)


def _aggregate_then_rank_arrays(
    cube: _Cube,
    ties: str,
    missing: str,
    aggregate: str,
    worst: Mapping[str, float] | None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    agg = _aggregate_values(cube, missing, aggregate, worst, weights)
    metric_ranks = np.column_stack(
        [_final_rank(agg[:, k], ties, bool(cube.higher[k])) for k in range(len(cube.metrics))]
    )
    score = agg[:, 0] if len(cube.metrics) == 1 else metric_ranks.mean(axis=1)
    return score, agg, metric_ranks


def aggregate_then_rank(
    scores: Any,
    higher_is_better: Mapping[str, bool] | bool,
    *,
    ties: Ties = "min",
    missing: Missing = "worst",
    aggregate: Aggregate = "mean",
    worst: Mapping[str, float] | None = None,
) -> Ranking:
    """Aggregate each method's values over the cases, then rank the methods.

    Args:
        scores: Per-case values (see the module notes for the accepted forms).
        higher_is_better: Metric -> whether higher is better (or one bool for all).
        ties: Tie rule of the ranks.
        missing: ``"worst"``, ``"drop"`` or ``"raise"`` (see the module notes).
        aggregate: ``"mean"`` or ``"median"`` over the cases.
        worst: Metric -> value that replaces a missing value with ``missing="worst"``
            (default: the worst value observed for that metric).

    Returns:
        :class:`Ranking`; with one metric ``score`` is the aggregate (its direction is the
        metric's), else the mean per-metric rank (lower is better).

    Example:
        >>> scores = {
        ...     "A": {"c1": {"dice": 0.9}, "c2": {"dice": 0.6}, "c3": {"dice": 0.7}},
        ...     "B": {"c1": {"dice": 0.8}, "c2": {"dice": 0.7}, "c3": {"dice": 0.8}},
        ... }
        >>> r = aggregate_then_rank(scores, {"dice": True})
        >>> r.order, r.table["score"].round(4).tolist()
        (['B', 'A'], [0.7667, 0.7333])
    """
    _check_ties(ties)
    if aggregate not in ("mean", "median"):
        raise MetricInputError(f"aggregate must be mean or median, got {aggregate!r}")
    cube = _as_cube(scores, higher_is_better)
    _check_missing(cube, missing)
    score, agg, metric_ranks = _aggregate_then_rank_arrays(cube, ties, missing, aggregate, worst)
    single = len(cube.metrics) == 1
    higher = bool(cube.higher[0]) if single else False
    final = _final_rank(score, ties, higher)
    table = pd.DataFrame(
        {"rank": final, "score": score}, index=pd.Index(cube.methods, name="method")
    )
    for k, metric in enumerate(cube.metrics):
        table[metric] = agg[:, k]
        table[f"{metric}_rank"] = metric_ranks[:, k]
    table = table.sort_values("rank", kind="stable")
    desc = (
        f"{aggregate} {cube.metrics[0]}" if single else f"mean rank of the per-metric {aggregate}s"
    )
    return Ranking(
        table=table,
        scheme="aggregate-then-rank",
        ties=ties,
        score_description=desc,
        score_higher_is_better=higher,
        n_cases=len(cube.cases),
    )


@dataclass(frozen=True)
class RankStability:
    """Bootstrap distribution of a ranking.

    Attributes:
        ranking: The ranking on all cases.
        rank_samples: ``(n_resamples, n_methods)`` ranks, columns in ``methods`` order.
        methods: Method names of the columns of ``rank_samples``.
        rank_frequencies: Methods x rank: fraction of resamples giving that rank.
        summary: Per method: ``rank`` (on all cases), ``mean_rank``, ``median_rank``,
            ``rank_low`` and ``rank_high`` (2.5 and 97.5 percentiles), ``p_same_rank``
            (fraction of resamples with the full-data rank).
        kendall_tau: Kendall's tau-b between each resampled ranking and the full one (NaN
            when a ranking is constant, e.g. every method tied).
    """

    ranking: Ranking
    rank_samples: np.ndarray
    methods: list[str]
    rank_frequencies: pd.DataFrame
    summary: pd.DataFrame
    kendall_tau: np.ndarray

    @property
    def kendall_tau_mean(self) -> float:
        """Mean of the finite Kendall's tau values."""
        finite = self.kendall_tau[np.isfinite(self.kendall_tau)]
        return float(finite.mean()) if finite.size else math.nan

    @property
    def kendall_tau_median(self) -> float:
        """Median of the finite Kendall's tau values."""
        finite = self.kendall_tau[np.isfinite(self.kendall_tau)]
        return float(np.median(finite)) if finite.size else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary: ranking, per-method summary and Kendall's tau summary."""
        return {
            "ranking": self.ranking.to_dict(),
            "n_resamples": int(self.rank_samples.shape[0]),
            "summary": [
                {"method": str(m), **row} for m, row in self.summary.to_dict("index").items()
            ],
            "kendall_tau_mean": self.kendall_tau_mean,
            "kendall_tau_median": self.kendall_tau_median,
        }


def bootstrap_rank_stability(
    scores: Any,
    higher_is_better: Mapping[str, bool] | bool,
    *,
    scheme: Scheme = "rank-then-aggregate",
    n_resamples: int = 1000,
    seed: int | np.random.Generator | None = 0,
    ties: Ties = "min",
    missing: Missing = "worst",
    aggregate: Aggregate = "mean",
    worst: Mapping[str, float] | None = None,
) -> RankStability:
    """Rank stability under resampling of the cases (challengeR's bootstrap ranking).

    Args:
        scores: Per-case values (see the module notes for the accepted forms).
        higher_is_better: Metric -> whether higher is better (or one bool for all).
        scheme: ``"rank-then-aggregate"`` or ``"aggregate-then-rank"``.
        n_resamples: Number of bootstrap resamples of the cases.
        seed: Seed or generator of :func:`numpy.random.default_rng`.
        ties: Tie rule.
        missing: Missing-value policy.
        aggregate: ``"mean"`` or ``"median"``.
        worst: Replacement values for aggregate-then-rank with ``missing="worst"``.

    Returns:
        :class:`RankStability`.

    Example:
        >>> scores = {m: {f"c{i}": {"dice": d + 0.01 * i} for i in range(8)}
        ...           for m, d in (("A", 0.9), ("B", 0.5), ("C", 0.2))}
        >>> s = bootstrap_rank_stability(scores, {"dice": True}, n_resamples=50)
        >>> s.summary["p_same_rank"].tolist(), s.kendall_tau_mean
        ([1.0, 1.0, 1.0], 1.0)
    """
    _check_ties(ties)
    if scheme not in ("rank-then-aggregate", "aggregate-then-rank"):
        raise MetricInputError(
            f"scheme must be rank-then-aggregate or aggregate-then-rank, got {scheme!r}"
        )
    if int(n_resamples) < 1:
        raise MetricInputError(f"n_resamples must be at least 1, got {n_resamples}")
    if aggregate not in ("mean", "median"):
        raise MetricInputError(f"aggregate must be mean or median, got {aggregate!r}")
    cube = _as_cube(scores, higher_is_better)
    _check_missing(cube, missing)
    if scheme == "rank-then-aggregate":
        ranking = rank_then_aggregate(
            scores, higher_is_better, ties=ties, missing=missing, aggregate=aggregate
        )
        case_ranks = _case_ranks(cube, ties, missing)
    else:
        ranking = aggregate_then_rank(
            scores, higher_is_better, ties=ties, missing=missing, aggregate=aggregate, worst=worst
        )
    full = ranking.table["rank"].reindex(cube.methods).to_numpy(dtype=np.float64)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n_c, n_m = len(cube.cases), len(cube.methods)
    samples = np.empty((int(n_resamples), n_m))
    taus = np.full(int(n_resamples), np.nan)
    single = len(cube.metrics) == 1
    for b in range(int(n_resamples)):
        weights = np.bincount(rng.integers(0, n_c, n_c), minlength=n_c).astype(np.float64)
        if scheme == "rank-then-aggregate":
            score, _ = _aggregate_case_ranks(case_ranks, aggregate, weights)
            samples[b] = _final_rank(score, ties, False)
        else:
            score, _, _ = _aggregate_then_rank_arrays(
                cube, ties, missing, aggregate, worst, weights
            )
            samples[b] = _final_rank(score, ties, bool(cube.higher[0]) if single else False)
        if n_m > 1 and np.ptp(samples[b]) > 0 and np.ptp(full) > 0:
            taus[b] = kendalltau(samples[b], full).statistic

    max_rank = int(np.nanmax(samples)) if samples.size else 0
    freq = pd.DataFrame(
        {r: (samples == r).mean(axis=0) for r in range(1, max(max_rank, n_m) + 1)},
        index=pd.Index(cube.methods, name="method"),
    )
    summary = pd.DataFrame(
        {
            "rank": full,
            "mean_rank": samples.mean(axis=0),
            "median_rank": np.median(samples, axis=0),
            "rank_low": np.quantile(samples, 0.025, axis=0),
            "rank_high": np.quantile(samples, 0.975, axis=0),
            "p_same_rank": (samples == full[None, :]).mean(axis=0),
        },
        index=pd.Index(cube.methods, name="method"),
    ).sort_values(["rank", "mean_rank"], kind="stable")
    freq = freq.reindex(summary.index)
    return RankStability(
        ranking=ranking,
        rank_samples=samples,
        methods=list(cube.methods),
        rank_frequencies=freq,
        summary=summary,
        kendall_tau=taus,
    )
