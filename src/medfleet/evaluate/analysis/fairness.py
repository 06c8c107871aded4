"""Subgroup analysis of per-case metrics (a MetricFrame in the style of fairlearn).

:class:`GroupMetricFrame` takes per-case metric values (Dice, HD95, error...) and one or
more grouping variables (site, sex, age, density...) and reports each metric overall and
per group, the spread between groups, bootstrap confidence intervals, and warnings for
groups too small to trust. :func:`equalized_odds_gap` measures how unequal the true and
false positive rates of a binary classifier are across groups (:func:`group_rates` gives
each group's rates), and :func:`max_min` is the spread all of them use. The challenge
presets (MAMA-MIA) and ``report.html`` compute their subgroup tables here.

Conventions:

* **Variables are analysed one at a time.** With several grouping variables, ``by_group``
  is indexed by ``(variable, group)`` and every spread is reported per variable.
  ``intersect=True`` adds the combination of all variables as one more variable (its group
  labels join the values with ``" & "``).
* **Continuous variables** are binned with ``bins={variable: edges}`` using
  :func:`bin_continuous` (intervals closed on the right, as ``pandas.cut``: with edges
  ``[0, 40, 50]`` an age of 40 falls in the first bin); values outside the edges have no
  group.
* **Missing group values** (None, NaN, or outside the bin edges) drop the case from that
  variable only (``missing_group="drop"``), or form a group named ``"missing"``
  (``missing_group="group"``).
* **Missing metric values** (NaN) are left out of a group's aggregate (``skipna=True``);
  ``n`` counts the group's cases and ``n_valid`` its non-NaN values. Substitute worst
  values (e.g. ``inf`` for a missed structure's HD95) before building the frame if the
  scheme requires it. Infinite values are kept (a mean with one is infinite).
  ``skipna=False`` lets a NaN through, as a plain ``numpy.mean`` does: the group's
  aggregate is NaN, and so are the spreads of its variable.
* **aggregate**: ``"mean"`` (default), ``"median"``, or a function of a 1-D array.
* **difference** ``"between_groups"``: largest minus smallest group value;
  ``"to_overall"``: the largest absolute difference between a group and the overall value.
  **ratio** ``"between_groups"``: smallest over largest group value; ``"to_overall"``: the
  smallest of ``min(group / overall, overall / group)``; ``0 / 0`` is NaN. A variable with
  one group has difference 0 and ratio 1, one without any group NaN. Groups whose value is
  NaN are ignored (with ``skipna=False`` they make the spread NaN).
* **Small groups**: a group with fewer than ``min_group_size`` cases is reported with a
  :class:`SmallGroupWarning` (and listed in ``.warnings``); ``exclude_small=True`` leaves
  such groups out of the spreads.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from medfleet.evaluate.metrics.conventions import MetricInputError
from medfleet.evaluate.stats.bootstrap import bootstrap_ci as _bootstrap_ci

__all__ = [
    "EqualizedOdds",
    "GroupMetricFrame",
    "SmallGroupWarning",
    "bin_continuous",
    "equalized_odds_gap",
    "group_rates",
    "max_min",
]

AggregateArg = Literal["mean", "median"] | Callable[[np.ndarray], float]
RatePolicy = Literal["skip", "zero", "mama-mia"]
SpreadMethod = Literal["between_groups", "to_overall"]

MISSING_GROUP = "missing"


class SmallGroupWarning(UserWarning):
    """A subgroup has fewer cases than the minimum size; its estimates are unreliable."""


def _missing_mask(labels: np.ndarray) -> np.ndarray:
    """Which group labels are missing: None, NaN, ``pd.NA`` or ``NaT``."""
    return np.asarray(pd.isna(labels), dtype=bool)


def max_min(values: Any, *, skipna: bool = True, empty: float = math.nan) -> float:
    """Spread of some values: the largest minus the smallest.

    Args:
        values: Numbers (any 1-D sequence).
        skipna: Leave NaN out (default); ``False``: a NaN makes the spread NaN.
        empty: The spread of no value (none given, or all NaN and left out).

    Returns:
        ``max - min`` (NaN for ``[inf]``, as ``inf - inf``).

    Example:
        >>> max_min([0.25, 1.0, 0.5]), max_min([1.0, float("nan")]), max_min([], empty=0.0)
        (0.75, 0.0, 0.0)
        >>> max_min([1.0, float("nan")], skipna=False), max_min([])
        (nan, nan)
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    nan = np.isnan(v)
    if nan.any():
        if not skipna:
            return math.nan
        v = v[~nan]
    return float(v.max() - v.min()) if v.size else float(empty)


def bin_continuous(
    values: Any,
    edges: Sequence[float],
    *,
    labels: Sequence[str] | None = None,
    right: bool = True,
) -> np.ndarray:
    """Bin a continuous variable into labelled intervals (``pandas.cut`` semantics).

    Args:
        values: One value per case (NaN allowed).
        edges: Increasing bin edges; ``len(edges) - 1`` bins.
        labels: One label per bin; default ``"(a, b]"`` (or ``"[a, b)"`` with
            ``right=False``).
        right: Whether bins include their right edge.

    Returns:
        Object array of bin labels; ``None`` for NaN or out-of-range values.

    Raises:
        MetricInputError: Edges not increasing, or the wrong number of labels.

    Example:
        >>> bin_continuous([35, 40, 41, 75, None], [0, 40, 50, 200],
        ...                labels=["0-40", "41-50", "51+"]).tolist()
        ['0-40', '0-40', '41-50', '51+', None]
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
        raise MetricInputError(f"bin edges must be at least two increasing numbers, got {edges}")
    n_bins = e.size - 1
    if labels is None:
        fmt = "({:g}, {:g}]" if right else "[{:g}, {:g})"
        labels = [fmt.format(e[i], e[i + 1]) for i in range(n_bins)]
    if len(labels) != n_bins:
        raise MetricInputError(f"{len(labels)} labels for {n_bins} bins (edges {list(e)})")
    x = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy(
        dtype=np.float64
    )
    side: Literal["left", "right"] = "left" if right else "right"
    idx = np.searchsorted(e, x, side=side) - 1
    ok = np.isfinite(x) & (idx >= 0) & (idx < n_bins)
    if right:
        ok &= x > e[0]
    else:
        ok &= x < e[-1]
    out = np.full(x.shape, None, dtype=object)
    out[ok] = np.asarray(list(labels), dtype=object)[idx[ok]]
    return out


def _columns(data: Any, name: str, default: str) -> dict[str, Any]:
    """Named per-case columns; pandas Series are kept (their categories give group order)."""
    if isinstance(data, pd.DataFrame):
        return {str(c): data[c] for c in data.columns}
    if isinstance(data, pd.Series):
        return {str(data.name) if data.name is not None else default: data}
    if isinstance(data, Mapping):
        return {str(k): v if isinstance(v, pd.Series) else np.asarray(v) for k, v in data.items()}
    arr = np.asarray(data)
    if arr.ndim != 1:
        raise MetricInputError(
            f"{name} must be a DataFrame, a mapping of columns or a 1-D array, got shape "
            f"{arr.shape}"
        )
    return {default: arr}


def _aggregate_fn(aggregate: AggregateArg) -> Callable[[np.ndarray], float]:
    if aggregate == "mean":
        return lambda v: float(np.mean(v))
    if aggregate == "median":
        return lambda v: float(np.median(v))
    if callable(aggregate):
        return lambda v: float(aggregate(v))  # type: ignore[operator]
    raise MetricInputError(f"aggregate must be 'mean', 'median' or a function, got {aggregate!r}")


def _bootstrap_statistic(aggregate: AggregateArg) -> Callable[..., Any]:
    if aggregate == "mean":
        return np.mean
    if aggregate == "median":
        return np.median
    return aggregate  # type: ignore[return-value]


def _group_order(unique: list[Any], categories: list[Any] | None) -> list[Any]:
    if categories is not None:
        seen, known = set(unique), set(categories)
        return [c for c in categories if c in seen] + [g for g in unique if g not in known]
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def _grouping(
    labels: np.ndarray, present: np.ndarray, categories: list[Any] | None = None
) -> tuple[list[Any], np.ndarray]:
    """The groups that occur, in order, and each case's index in them (-1: no group)."""
    found, unique = pd.factorize(labels[present])
    order = _group_order(list(unique), categories)
    position = {group: i for i, group in enumerate(order)}
    remap = np.array([position[g] for g in unique], dtype=np.int64)
    codes = np.full(labels.size, -1, dtype=np.int64)
    codes[present] = remap[found]
    return order, codes


def _numeric(col: Any, metric: str) -> np.ndarray:
    """A metric column as float64 (numbers as they are; text that is a number converted)."""
    arr = np.asarray(col)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64).reshape(-1)
    try:
        as_object = pd.Series(np.asarray(col, dtype=object), dtype=object)
        return np.asarray(pd.to_numeric(as_object, errors="raise"), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(
            f"metric column {metric!r} holds non-numeric values ({exc}); pass only "
            "metric columns as values and grouping columns as groups"
        ) from exc


def _ratio_between(v: np.ndarray, _overall: float) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(v.min()) / np.float64(v.max()))


def _ratio_to_overall(v: np.ndarray, overall: float) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.minimum(v / np.float64(overall), np.float64(overall) / v)
    return float(np.min(r))


#: ``(spread, method)`` -> function of the group values (NaN removed) and the overall value.
_SPREADS: dict[tuple[str, str], Callable[[np.ndarray, float], float]] = {
    ("difference", "between_groups"): lambda v, _o: max_min(v),
    ("difference", "to_overall"): lambda v, o: float(np.max(np.abs(v - o))),
    ("ratio", "between_groups"): _ratio_between,
    ("ratio", "to_overall"): _ratio_to_overall,
}


class GroupMetricFrame:
    """Per-case metrics analysed overall and per subgroup.

    Args:
        values: Metric columns: a DataFrame, a mapping ``{metric: per-case values}``, or one
            1-D array (metric ``"value"``).
        groups: Grouping variables, one value per case: a DataFrame, a mapping
            ``{variable: per-case values}``, or one 1-D array (variable ``"group"``).
        bins: ``{variable: edges}`` for continuous variables (see :func:`bin_continuous`).
        bin_labels: ``{variable: labels}`` for the binned variables.
        right: Whether bins include their right edge.
        min_group_size: Groups with fewer cases raise a :class:`SmallGroupWarning` (0: none
            does).
        aggregate: ``"mean"``, ``"median"`` or a function of a 1-D array.
        missing_group: ``"drop"`` or ``"group"`` (see the module notes).
        intersect: Also analyse the combination of all variables.
        skipna: Leave NaN metric values out of the aggregates (default); ``False`` lets a
            NaN make its group's aggregate, and the spreads of its variable, NaN.

    Raises:
        MetricInputError: Columns of different lengths, a non-numeric metric, or a binned
            variable that is not a grouping variable.

    Example:
        >>> frame = GroupMetricFrame(
        ...     {"dice": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]},
        ...     {"site": ["a", "a", "a", "b", "b", "b"]},
        ...     min_group_size=2,
        ... )
        >>> frame.by_group.round(4).reset_index().values.tolist()
        [['site', 'a', 0.8, 3], ['site', 'b', 0.5, 3]]
        >>> round(float(frame.difference().loc["site", "dice"]), 4), float(frame.overall["dice"])
        (0.3, 0.65)
        >>> frame.group_values("site", "b", "dice").tolist()
        [0.6, 0.5, 0.4]
    """

    def __init__(
        self,
        values: Any,
        groups: Any,
        *,
        bins: Mapping[str, Sequence[float]] | None = None,
        bin_labels: Mapping[str, Sequence[str]] | None = None,
        right: bool = True,
        min_group_size: int = 10,
        aggregate: AggregateArg = "mean",
        missing_group: Literal["drop", "group"] = "drop",
        intersect: bool = False,
        skipna: bool = True,
    ) -> None:
        self._agg = _aggregate_fn(aggregate)
        self._aggregate = aggregate
        self.min_group_size = int(min_group_size)
        self.skipna = bool(skipna)
        if missing_group not in ("drop", "group"):
            raise MetricInputError(f"missing_group must be 'drop' or 'group': {missing_group!r}")
        metric_cols = _columns(values, "values", "value")
        group_cols = _columns(groups, "groups", "group")
        n = {len(v) for v in metric_cols.values()} | {len(v) for v in group_cols.values()}
        if len(n) != 1:
            sizes = {k: len(v) for k, v in {**metric_cols, **group_cols}.items()}
            raise MetricInputError(
                f"every metric and grouping column needs one value per case; lengths: {sizes}"
            )
        self.n_cases = n.pop()
        self.metrics: list[str] = list(metric_cols)
        self._values: dict[str, np.ndarray] = {
            metric: _numeric(col, metric) for metric, col in metric_cols.items()
        }

        bins = dict(bins or {})
        bin_labels = dict(bin_labels or {})
        unknown = [v for v in list(bins) + list(bin_labels) if v not in group_cols]
        if unknown:
            raise MetricInputError(
                f"bins given for {unknown}, which are not grouping variables ({list(group_cols)})"
            )
        self._labels: dict[str, np.ndarray] = {}
        self._missing: dict[str, np.ndarray] = {}
        self._categories: dict[str, list[Any] | None] = {}
        for var, col in group_cols.items():
            if var in bins:
                labels = bin_labels.get(var)
                labels_arr = bin_continuous(col, bins[var], labels=labels, right=right)
                edges = np.asarray(bins[var], dtype=np.float64)
                fmt = "({:g}, {:g}]" if right else "[{:g}, {:g})"
                self._categories[var] = (
                    list(labels)
                    if labels is not None
                    else [fmt.format(edges[i], edges[i + 1]) for i in range(edges.size - 1)]
                )
            else:
                labels_arr = np.asarray(col, dtype=object)
                categorical = isinstance(getattr(col, "dtype", None), pd.CategoricalDtype)
                self._categories[var] = list(col.dtype.categories) if categorical else None
            missing = _missing_mask(labels_arr)
            if missing_group == "group" and missing.any():
                labels_arr = labels_arr.copy()
                labels_arr[missing] = MISSING_GROUP
                missing = np.zeros_like(missing)
            self._labels[var] = labels_arr
            self._missing[var] = missing
        if intersect and len(self._labels) > 1:
            names = list(self._labels)
            combo = np.full(self.n_cases, None, dtype=object)
            absent = np.logical_or.reduce([self._missing[v] for v in names])
            for i in np.flatnonzero(~absent):
                combo[i] = " & ".join(str(self._labels[v][i]) for v in names)
            key = " & ".join(names)
            self._labels[key] = combo
            self._missing[key] = absent
            self._categories[key] = None
        self.variables: list[str] = list(self._labels)
        self.warnings: list[str] = []
        self._members: dict[tuple[str, Any], np.ndarray] = {}
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        keys: list[tuple[str, Any]] = []
        sizes: list[int] = []
        var_codes: list[int] = []
        aggregates: dict[str, list[float]] = {m: [] for m in self.metrics}
        n_valid: dict[str, list[int]] = {m: [] for m in self.metrics}
        for var_code, var in enumerate(self.variables):
            labels = self._labels[var]
            present = ~self._missing[var]
            n_missing = int(labels.size - present.sum())
            if n_missing:
                self.warnings.append(
                    f"{var}: {n_missing} case(s) without a group were left out of this variable"
                )
            order, codes = _grouping(labels, present, self._categories[var])
            for code, group in enumerate(order):
                idx = np.flatnonzero(codes == code)
                self._members[(var, group)] = idx
                for metric in self.metrics:
                    v = self._values[metric][idx]
                    valid = ~np.isnan(v)
                    n_valid[metric].append(int(valid.sum()))
                    if self.skipna:
                        v = v[valid]
                    aggregates[metric].append(self._agg(v) if v.size else math.nan)
                keys.append((var, group))
                sizes.append(int(idx.size))
                var_codes.append(var_code)
                if idx.size < self.min_group_size:
                    msg = (
                        f"{var}={group!s}: {idx.size} case(s), fewer than min_group_size "
                        f"{self.min_group_size}; its estimates are unreliable"
                    )
                    self.warnings.append(msg)
                    warnings.warn(msg, SmallGroupWarning, stacklevel=3)
        self._sizes = np.asarray(sizes, dtype=np.int64)
        self._var_codes = np.asarray(var_codes, dtype=np.int64)
        self._aggregates = {m: np.asarray(a, dtype=np.float64) for m, a in aggregates.items()}
        mi = pd.MultiIndex.from_tuples(keys, names=["variable", "group"])
        self.by_group: pd.DataFrame = pd.DataFrame(
            {**self._aggregates, "n": self._sizes}, index=mi, columns=[*self.metrics, "n"]
        )
        self.n_valid: pd.DataFrame = pd.DataFrame(n_valid, index=mi, columns=self.metrics)
        overall = {}
        for metric in self.metrics:
            v = self._values[metric]
            if self.skipna:
                v = v[~np.isnan(v)]
            overall[metric] = self._agg(v) if v.size else math.nan
        self.overall: pd.Series = pd.Series(overall, name="overall", dtype=np.float64)

    def group_values(self, variable: str, group: Any, metric: str) -> np.ndarray:
        """Per-case values of one metric in one group, in case order.

        NaN values are left out unless the frame was built with ``skipna=False``.

        Raises:
            MetricInputError: Unknown variable, group or metric.

        Example:
            >>> frame = GroupMetricFrame({"hd95": [1.0, float("nan"), 3.0]}, {"sex": list("FFM")},
            ...                          min_group_size=0)
            >>> frame.group_values("sex", "F", "hd95").tolist()
            [1.0]
        """
        idx = self._members.get((variable, group))
        if idx is None or metric not in self._values:
            raise MetricInputError(
                f"no metric {metric!r} for group {group!r} of variable {variable!r} (metrics: "
                f"{self.metrics}; groups: {list(self._members)})"
            )
        v = self._values[metric][idx]
        return v[~np.isnan(v)] if self.skipna else v

    # ------------------------------------------------------------------ spreads
    def _per_variable(
        self, fn: Callable[[np.ndarray, float], float], exclude_small: bool
    ) -> pd.DataFrame:
        keep = self._sizes >= (self.min_group_size if exclude_small else 0)
        data: dict[str, list[float]] = {}
        for metric in self.metrics:
            group_values = self._aggregates[metric]
            overall = float(self.overall[metric])
            column: list[float] = []
            for code in range(len(self.variables)):
                vals = group_values[keep & (self._var_codes == code)]
                nan = np.isnan(vals)
                if nan.any() and not self.skipna:
                    column.append(math.nan)
                    continue
                vals = vals[~nan]
                column.append(fn(vals, overall) if vals.size else math.nan)
            data[metric] = column
        return pd.DataFrame(
            data,
            index=pd.Index(self.variables, name="variable"),
            columns=self.metrics,
            dtype=np.float64,
        )

    def _spread(self, kind: str, method: str, exclude_small: bool) -> pd.DataFrame:
        fn = _SPREADS.get((kind, method))
        if fn is None:
            raise MetricInputError(f"method must be between_groups or to_overall, got {method!r}")
        return self._per_variable(fn, exclude_small)

    def difference(
        self, method: SpreadMethod = "between_groups", *, exclude_small: bool = False
    ) -> pd.DataFrame:
        """Spread of each metric across the groups of each variable.

        Args:
            method: ``"between_groups"`` (:func:`max_min` of the group values) or
                ``"to_overall"`` (max |g - overall|).
            exclude_small: Leave groups under ``min_group_size`` out.

        Returns:
            DataFrame indexed by variable, one column per metric.
        """
        return self._spread("difference", method, exclude_small)

    def ratio(
        self, method: SpreadMethod = "between_groups", *, exclude_small: bool = False
    ) -> pd.DataFrame:
        """Ratio of each metric across the groups of each variable (1 = equal).

        Args:
            method: ``"between_groups"`` (min / max) or ``"to_overall"``
                (min over groups of ``min(g / overall, overall / g)``).
            exclude_small: Leave groups under ``min_group_size`` out.

        Returns:
            DataFrame indexed by variable, one column per metric.
        """
        return self._spread("ratio", method, exclude_small)

    def group_min(self, *, exclude_small: bool = False) -> pd.DataFrame:
        """Smallest group value of each metric, per variable."""
        return self._per_variable(lambda v, _o: float(v.min()), exclude_small)

    def group_max(self, *, exclude_small: bool = False) -> pd.DataFrame:
        """Largest group value of each metric, per variable."""
        return self._per_variable(lambda v, _o: float(v.max()), exclude_small)

    # ------------------------------------------------------------------ uncertainty
    def bootstrap_ci(
        self,
        *,
        n_resamples: int = 2000,
        confidence: float = 0.95,
        method: Literal["percentile", "bca"] = "percentile",
        seed: int = 0,
    ) -> pd.DataFrame:
        """Bootstrap confidence interval of every group's (and the overall) aggregate.

        Cases are resampled within the group (see :func:`medfleet.evaluate.stats.bootstrap_ci`;
        NaN values are left out as in the aggregate, or make the interval NaN with
        ``skipna=False``).

        Returns:
            DataFrame indexed by ``(variable, group, metric)`` with columns ``estimate``,
            ``low``, ``high``, ``n`` and ``confidence``; the overall values have variable
            and group ``"overall"``.
        """
        stat = _bootstrap_statistic(self._aggregate)
        rows: list[dict[str, Any]] = []
        keys: list[tuple[Any, ...]] = []
        targets: list[tuple[str, Any, np.ndarray]] = [
            ("overall", "overall", np.arange(self.n_cases))
        ]
        targets += [(var, group, idx) for (var, group), idx in self._members.items()]
        for var, group, idx in targets:
            for metric in self.metrics:
                ci = _bootstrap_ci(
                    self._values[metric][idx],
                    stat,
                    n_resamples=n_resamples,
                    confidence=confidence,
                    method=method,
                    seed=seed,
                    nan_policy="omit" if self.skipna else "propagate",
                )
                rows.append(
                    {
                        "estimate": ci.estimate,
                        "low": ci.low,
                        "high": ci.high,
                        "n": ci.n,
                        "confidence": confidence,
                    }
                )
                keys.append((var, group, metric))
        index = pd.MultiIndex.from_tuples(keys, names=["variable", "group", "metric"])
        return pd.DataFrame(rows, index=index)

    def difference_ci(
        self,
        *,
        n_resamples: int = 2000,
        confidence: float = 0.95,
        seed: int = 0,
        exclude_small: bool = False,
    ) -> pd.DataFrame:
        """Percentile bootstrap interval of the between-group difference (max - min).

        Cases are resampled within each group (stratified), so group sizes stay fixed.

        Returns:
            DataFrame indexed by ``(variable, metric)`` with ``estimate``, ``low``, ``high``.
        """
        rng = np.random.default_rng(seed)
        diff = self.difference(exclude_small=exclude_small)
        rows: list[dict[str, float]] = []
        keys: list[tuple[str, str]] = []
        alpha = (1.0 - confidence) / 2.0
        for var in self.variables:
            members = [
                idx
                for (v, _g), idx in self._members.items()
                if v == var and (not exclude_small or idx.size >= self.min_group_size)
            ]
            for metric in self.metrics:
                vals = [self._values[metric][idx] for idx in members]
                if self.skipna:
                    vals = [v[~np.isnan(v)] for v in vals]
                vals = [v for v in vals if v.size]
                boot = np.full(n_resamples, np.nan)
                if vals:
                    group_stats = np.vstack(
                        [self._resampled_aggregate(v, n_resamples, rng) for v in vals]
                    )
                    boot = group_stats.max(axis=0) - group_stats.min(axis=0)
                low, high = np.quantile(boot, [alpha, 1 - alpha]) if vals else (math.nan, math.nan)
                rows.append(
                    {
                        "estimate": float(diff.loc[var, metric]),
                        "low": float(low),
                        "high": float(high),
                    }
                )
                keys.append((var, metric))
        index = pd.MultiIndex.from_tuples(keys, names=["variable", "metric"])
        return pd.DataFrame(rows, index=index)

    def _resampled_aggregate(
        self, v: np.ndarray, n_resamples: int, rng: np.random.Generator
    ) -> np.ndarray:
        out = np.empty(n_resamples)
        batch = max(1, 2_000_000 // max(v.size, 1))
        for start in range(0, n_resamples, batch):
            k = min(batch, n_resamples - start)
            sample = v[rng.integers(0, v.size, (k, v.size))]
            if self._aggregate == "mean":
                out[start : start + k] = sample.mean(axis=1)
            elif self._aggregate == "median":
                out[start : start + k] = np.median(sample, axis=1)
            else:
                out[start : start + k] = [self._agg(row) for row in sample]
        return out

    def __repr__(self) -> str:
        return (
            f"GroupMetricFrame(metrics={self.metrics}, variables={self.variables}, "
            f"n_cases={self.n_cases}, groups={len(self.by_group)})"
        )


# ----------------------------------------------------------------------------------
# Equalized odds
# ----------------------------------------------------------------------------------


class EqualizedOdds(NamedTuple):
    """Equalized-odds gaps across groups.

    Attributes:
        tpr_gap: Largest minus smallest true positive rate.
        fpr_gap: Largest minus smallest false positive rate.
        total: ``tpr_gap + fpr_gap``.
    """

    tpr_gap: float
    fpr_gap: float
    total: float


def group_rates(
    y_true: Any, y_pred: Any, groups: Any, *, pos_label: Any = 1, policy: RatePolicy = "skip"
) -> pd.DataFrame:
    """Confusion counts, TPR and FPR of binary predictions in each group.

    Policies for a group where a rate is undefined (no positive case: TPR; no negative
    case: FPR):

    * ``"skip"`` (default): the rate is NaN and is left out of the gaps (the MAMA-MIA
      preset's ``fixed_labels`` option);
    * ``"zero"``: the rate is 0;
    * ``"mama-mia"``: the MAMA-MIA challenge scorer: an undefined rate is 0, and a group
      whose truth and predictions together hold a single class gets TPR = FPR = 0 even
      where a rate is defined (scikit-learn's ``confusion_matrix`` without ``labels`` is
      1 x 1 there and the scorer falls back to zeros), so a perfectly classified one-class
      group counts as TPR 0.

    Cases whose group is missing (None/NaN) are left out.

    Args:
        y_true: Binary truth per case.
        y_pred: Binary prediction per case.
        groups: Group per case.
        pos_label: The positive class.
        policy: ``"skip"``, ``"zero"`` or ``"mama-mia"``.

    Returns:
        DataFrame indexed by group with ``n``, ``tp``, ``fp``, ``fn``, ``tn``, ``tpr``, ``fpr``.

    Example:
        >>> t = group_rates([1, 0, 1, 1, 1], [1, 1, 0, 1, 1], ["a", "a", "a", "b", "b"])
        >>> t[["tpr", "fpr"]].values.tolist()
        [[0.5, 1.0], [1.0, nan]]
    """
    if policy not in ("skip", "zero", "mama-mia"):
        raise MetricInputError(f"policy must be skip, zero or mama-mia, got {policy!r}")
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    g = np.asarray(groups, dtype=object).reshape(-1)
    if not (t.size == p.size == g.size):
        raise MetricInputError(
            f"y_true, y_pred and groups need one value per case: {t.size}, {p.size}, {g.size}"
        )
    present = ~_missing_mask(g)
    order, codes = _grouping(g, present)
    in_group = codes[present]
    t_pos, p_pos = (t == pos_label)[present], (p == pos_label)[present]

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(in_group[mask], minlength=len(order))

    n = count(np.ones(in_group.size, dtype=bool))
    tp, fp = count(t_pos & p_pos), count(~t_pos & p_pos)
    fn, tn = count(t_pos & ~p_pos), count(~t_pos & ~p_pos)
    undefined = 0.0 if policy in ("zero", "mama-mia") else math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(tp + fn > 0, tp / (tp + fn), undefined)
        fpr = np.where(fp + tn > 0, fp / (fp + tn), undefined)
    if policy == "mama-mia":
        t_in, p_in = t[present], p[present]
        for code in range(len(order)):
            m = in_group == code
            if len(set(t_in[m].tolist()) | set(p_in[m].tolist())) < 2:
                tpr[code] = fpr[code] = 0.0
    columns = {"n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "tpr": tpr, "fpr": fpr}
    return pd.DataFrame(columns, index=pd.Index(order, name="group"))


def equalized_odds_gap(
    y_true: Any, y_pred: Any, groups: Any, *, pos_label: Any = 1, policy: RatePolicy = "skip"
) -> EqualizedOdds:
    """Equalized-odds gaps: (max - min) TPR and (max - min) FPR across groups.

    The arguments are those of :func:`group_rates`, whose ``policy`` decides the undefined
    rates. Each gap is :func:`max_min` of the groups' rates: NaN rates are left out, a gap
    over no rate is NaN, over one rate 0.

    Returns:
        :class:`EqualizedOdds` ``(tpr_gap, fpr_gap, total)``.

    Example:
        >>> y = [1, 0, 1, 0, 1, 1]
        >>> p = [1, 0, 1, 1, 1, 1]
        >>> g = ["a", "a", "b", "b", "c", "c"]
        >>> equalized_odds_gap(y, p, g)  # group c has no negative case: its FPR is skipped
        EqualizedOdds(tpr_gap=0.0, fpr_gap=1.0, total=1.0)
        >>> equalized_odds_gap(y, p, g, policy="mama-mia")  # c: one class -> TPR = FPR = 0
        EqualizedOdds(tpr_gap=1.0, fpr_gap=1.0, total=2.0)
    """
    rates = group_rates(y_true, y_pred, groups, pos_label=pos_label, policy=policy)
    tpr_gap, fpr_gap = max_min(rates["tpr"]), max_min(rates["fpr"])
    return EqualizedOdds(tpr_gap, fpr_gap, tpr_gap + fpr_gap)
