"""Subgroup analysis of per-case metrics (a MetricFrame in the style of fairlearn).

:class:`GroupMetricFrame` takes per-case metric values (Dice, HD95, error...) and one or
more grouping variables (site, sex, age, density...) and reports each metric overall and
per group, the spread between groups, bootstrap confidence intervals, and warnings for
groups too small to trust. :func:`equalized_odds_gap` measures how unequal the true and
false positive rates of a binary classifier are across groups.

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
* **Missing metric values** (NaN) are left out of a group's aggregate; ``n`` counts the
  group's cases and ``n_valid`` the values that entered each aggregate. Substitute worst
  values (e.g. ``inf`` for a missed structure's HD95) before building the frame if the
  scheme requires it. Infinite values are kept (a mean with one is infinite).
* **aggregate**: ``"mean"`` (default), ``"median"``, or a function of a 1-D array.
* **difference** ``"between_groups"``: largest minus smallest group value;
  ``"to_overall"``: the largest absolute difference between a group and the overall value.
  **ratio** ``"between_groups"``: smallest over largest group value; ``"to_overall"``: the
  smallest of ``min(group / overall, overall / group)``; ``0 / 0`` is NaN. A variable with
  one group has difference 0 and ratio 1. Groups whose value is NaN are ignored.
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

from medfleet.evaluate.conventions import MetricInputError
from medfleet.evaluate.stats_bootstrap import bootstrap_ci as _bootstrap_ci

__all__ = [
    "EqualizedOdds",
    "GroupMetricFrame",
    "SmallGroupWarning",
    "bin_continuous",
    "equalized_odds_gap",
    "group_rates",
]

AggregateArg = Literal["mean", "median"] | Callable[[np.ndarray], float]
RatePolicy = Literal["skip", "zero", "mama-mia"]

MISSING_GROUP = "missing"


class SmallGroupWarning(UserWarning):
    """A subgroup has fewer cases than the minimum size; its estimates are unreliable."""


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, float | np.floating) and math.isnan(value))
    except TypeError:
        return False


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


def _group_order(labels: list[Any], categories: list[Any] | None) -> list[Any]:
    if categories is not None:
        return [c for c in categories if c in set(labels)] + [
            g for g in dict.fromkeys(labels) if g not in set(categories)
        ]
    unique = list(dict.fromkeys(labels))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def _group_codes(labels: np.ndarray, present: np.ndarray, order: list[Any]) -> np.ndarray:
    """Index of each case's group in ``order`` (-1 for a case without a group)."""
    lookup = {group: i for i, group in enumerate(order)}
    return np.array(
        [lookup.get(lab, -1) if ok else -1 for lab, ok in zip(labels, present, strict=True)],
        dtype=np.int64,
    )


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
        min_group_size: Groups with fewer cases raise a :class:`SmallGroupWarning`.
        aggregate: ``"mean"``, ``"median"`` or a function of a 1-D array.
        missing_group: ``"drop"`` or ``"group"`` (see the module notes).
        intersect: Also analyse the combination of all variables.

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
    ) -> None:
        self._agg = _aggregate_fn(aggregate)
        self._aggregate = aggregate
        self.min_group_size = int(min_group_size)
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
        self._values: dict[str, np.ndarray] = {}
        for metric, col in metric_cols.items():
            try:
                as_object = pd.Series(np.asarray(col, dtype=object), dtype=object)
                self._values[metric] = np.asarray(
                    pd.to_numeric(as_object, errors="raise"), dtype=np.float64
                )
            except (TypeError, ValueError) as exc:
                raise MetricInputError(
                    f"metric column {metric!r} holds non-numeric values ({exc}); pass only "
                    "metric columns as values and grouping columns as groups"
                ) from exc

        bins = dict(bins or {})
        bin_labels = dict(bin_labels or {})
        unknown = [v for v in list(bins) + list(bin_labels) if v not in group_cols]
        if unknown:
            raise MetricInputError(
                f"bins given for {unknown}, which are not grouping variables ({list(group_cols)})"
            )
        self._labels: dict[str, np.ndarray] = {}
        self._categories: dict[str, list[Any] | None] = {}
        for var, col in group_cols.items():
            if var in bins:
                labels = bin_labels.get(var)
                binned = bin_continuous(col, bins[var], labels=labels, right=right)
                self._labels[var] = binned
                edges = np.asarray(bins[var], dtype=np.float64)
                fmt = "({:g}, {:g}]" if right else "[{:g}, {:g})"
                self._categories[var] = (
                    list(labels)
                    if labels is not None
                    else [fmt.format(edges[i], edges[i + 1]) for i in range(edges.size - 1)]
                )
            else:
                self._labels[var] = np.asarray(col, dtype=object)
                categorical = isinstance(getattr(col, "dtype", None), pd.CategoricalDtype)
                self._categories[var] = list(col.dtype.categories) if categorical else None
            labels_arr = self._labels[var]
            missing = np.array([_is_missing(v) for v in labels_arr], dtype=bool)
            if missing_group == "group":
                labels_arr = labels_arr.copy()
                labels_arr[missing] = MISSING_GROUP
                self._labels[var] = labels_arr
        if intersect and len(self._labels) > 1:
            names = list(self._labels)
            combo = np.full(self.n_cases, None, dtype=object)
            for i in range(self.n_cases):
                parts = [self._labels[v][i] for v in names]
                if not any(_is_missing(p) for p in parts):
                    combo[i] = " & ".join(str(p) for p in parts)
            key = " & ".join(names)
            self._labels[key] = combo
            self._categories[key] = None
        self.variables: list[str] = list(self._labels)
        self.warnings: list[str] = []
        self._members: dict[tuple[str, Any], np.ndarray] = {}
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        rows: list[dict[str, Any]] = []
        valid_rows: list[dict[str, Any]] = []
        index: list[tuple[str, Any]] = []
        for var in self.variables:
            labels = self._labels[var]
            present = np.array([not _is_missing(v) for v in labels], dtype=bool)
            n_missing = int((~present).sum())
            if n_missing:
                self.warnings.append(
                    f"{var}: {n_missing} case(s) without a group were left out of this variable"
                )
            order = _group_order(
                [labels[i] for i in np.flatnonzero(present)], self._categories[var]
            )
            codes = _group_codes(labels, present, order)
            for code, group in enumerate(order):
                members = codes == code
                self._members[(var, group)] = np.flatnonzero(members)
                count = int(members.sum())
                row: dict[str, Any] = {}
                valid: dict[str, Any] = {}
                for metric in self.metrics:
                    v = self._values[metric][members]
                    v = v[~np.isnan(v)]
                    row[metric] = self._agg(v) if v.size else math.nan
                    valid[metric] = int(v.size)
                row["n"] = count
                rows.append(row)
                valid_rows.append(valid)
                index.append((var, group))
                if count < self.min_group_size:
                    msg = (
                        f"{var}={group!s}: {count} case(s), fewer than min_group_size "
                        f"{self.min_group_size}; its estimates are unreliable"
                    )
                    self.warnings.append(msg)
                    warnings.warn(msg, SmallGroupWarning, stacklevel=3)
        mi = pd.MultiIndex.from_tuples(index, names=["variable", "group"])
        self.by_group: pd.DataFrame = pd.DataFrame(rows, index=mi, columns=[*self.metrics, "n"])
        self.by_group["n"] = self.by_group["n"].astype(int)
        self.n_valid: pd.DataFrame = pd.DataFrame(valid_rows, index=mi, columns=self.metrics)
        overall = {}
        for metric in self.metrics:
            v = self._values[metric]
            v = v[~np.isnan(v)]
            overall[metric] = self._agg(v) if v.size else math.nan
        self.overall: pd.Series = pd.Series(overall, name="overall", dtype=np.float64)

    # ------------------------------------------------------------------ spreads
    def _group_table(self, exclude_small: bool) -> pd.DataFrame:
        table = self.by_group
        if exclude_small:
            table = table[table["n"] >= self.min_group_size]
        return table

    def _per_variable(
        self, fn: Callable[[np.ndarray, float], float], exclude_small: bool
    ) -> pd.DataFrame:
        table = self._group_table(exclude_small)
        out = pd.DataFrame(
            index=pd.Index(self.variables, name="variable"), columns=self.metrics, dtype=np.float64
        )
        for var in self.variables:
            sub = table[table.index.get_level_values("variable") == var]
            for metric in self.metrics:
                vals = sub[metric].to_numpy(dtype=np.float64)
                vals = vals[~np.isnan(vals)]
                out.loc[var, metric] = (
                    fn(vals, float(self.overall[metric])) if vals.size else math.nan
                )
        return out

    def difference(
        self,
        method: Literal["between_groups", "to_overall"] = "between_groups",
        *,
        exclude_small: bool = False,
    ) -> pd.DataFrame:
        """Spread of each metric across the groups of each variable.

        Args:
            method: ``"between_groups"`` (max - min) or ``"to_overall"`` (max |g - overall|).
            exclude_small: Leave groups under ``min_group_size`` out.

        Returns:
            DataFrame indexed by variable, one column per metric.
        """
        if method == "between_groups":
            return self._per_variable(lambda v, _o: float(v.max() - v.min()), exclude_small)
        if method == "to_overall":
            return self._per_variable(lambda v, o: float(np.max(np.abs(v - o))), exclude_small)
        raise MetricInputError(f"method must be between_groups or to_overall, got {method!r}")

    def ratio(
        self,
        method: Literal["between_groups", "to_overall"] = "between_groups",
        *,
        exclude_small: bool = False,
    ) -> pd.DataFrame:
        """Ratio of each metric across the groups of each variable (1 = equal).

        Args:
            method: ``"between_groups"`` (min / max) or ``"to_overall"``
                (min over groups of ``min(g / overall, overall / g)``).
            exclude_small: Leave groups under ``min_group_size`` out.

        Returns:
            DataFrame indexed by variable, one column per metric.
        """

        def between(v: np.ndarray, _o: float) -> float:
            with np.errstate(invalid="ignore", divide="ignore"):
                return float(np.float64(v.min()) / np.float64(v.max()))

        def to_overall(v: np.ndarray, o: float) -> float:
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.minimum(v / np.float64(o), np.float64(o) / v)
            return float(np.min(r))

        if method == "between_groups":
            return self._per_variable(between, exclude_small)
        if method == "to_overall":
            return self._per_variable(to_overall, exclude_small)
        raise MetricInputError(f"method must be between_groups or to_overall, got {method!r}")

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
        NaN values are left out as in the aggregate).

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

    # ------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary for ``summary.json``: overall, per group, spreads, warnings."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for (var, group), row in self.by_group.to_dict("index").items():
            entry = {"group": str(group), "n": int(row["n"])}
            entry.update({m: float(row[m]) for m in self.metrics})
            entry["n_valid"] = {m: int(self.n_valid.loc[(var, group), m]) for m in self.metrics}
            groups.setdefault(str(var), []).append(entry)
        diff = self.difference()
        ratio = self.ratio()
        return {
            "overall": {m: float(self.overall[m]) for m in self.metrics},
            "n_cases": int(self.n_cases),
            "min_group_size": self.min_group_size,
            "by_group": groups,
            "difference": {
                v: {m: float(diff.loc[v, m]) for m in self.metrics} for v in self.variables
            },
            "ratio": {v: {m: float(ratio.loc[v, m]) for m in self.metrics} for v in self.variables},
            "warnings": list(self.warnings),
        }

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
    y_true: Any,
    y_pred: Any,
    groups: Any,
    *,
    pos_label: Any = 1,
    policy: RatePolicy = "skip",
) -> pd.DataFrame:
    """Confusion counts, TPR and FPR of binary predictions in each group.

    Policies for a group where a rate is undefined (no positive case: TPR; no negative
    case: FPR):

    * ``"skip"`` (default): the rate is NaN and is left out of the gaps;
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
    present = np.array([not _is_missing(v) for v in g], dtype=bool)
    t_pos, p_pos = t == pos_label, p == pos_label
    rows = []
    order = _group_order([g[i] for i in np.flatnonzero(present)], None)
    codes = _group_codes(g, present, order)
    for code, group in enumerate(order):
        m = codes == code
        tp = int(np.sum(t_pos[m] & p_pos[m]))
        fn = int(np.sum(t_pos[m] & ~p_pos[m]))
        fp = int(np.sum(~t_pos[m] & p_pos[m]))
        tn = int(np.sum(~t_pos[m] & ~p_pos[m]))
        undefined = 0.0 if policy in ("zero", "mama-mia") else math.nan
        tpr = tp / (tp + fn) if tp + fn else undefined
        fpr = fp / (fp + tn) if fp + tn else undefined
        if policy == "mama-mia":
            classes = set(t[m].tolist()) | set(p[m].tolist())
            if len(classes) < 2:
                tpr, fpr = 0.0, 0.0
        rows.append(
            {
                "group": group,
                "n": int(m.sum()),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": tn,
                "tpr": tpr,
                "fpr": fpr,
            }
        )
    columns = ["group", "n", "tp", "fp", "fn", "tn", "tpr", "fpr"]
    return pd.DataFrame(rows, columns=columns).set_index("group")


def equalized_odds_gap(
    y_true: Any,
    y_pred: Any,
    groups: Any,
    *,
    pos_label: Any = 1,
    policy: RatePolicy = "skip",
) -> EqualizedOdds:
    """Equalized-odds gaps: (max - min) TPR and (max - min) FPR across groups.

    Undefined rates follow ``policy`` (see :func:`group_rates`); with ``"skip"`` a gap over
    fewer than one defined rate is NaN, over one rate 0.

    Args:
        y_true: Binary truth per case.
        y_pred: Binary prediction per case.
        groups: Group per case.
        pos_label: The positive class.
        policy: ``"skip"``, ``"zero"`` or ``"mama-mia"``.

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

    def gap(col: str) -> float:
        v = rates[col].to_numpy(dtype=np.float64)
        v = v[~np.isnan(v)]
        return float(v.max() - v.min()) if v.size else math.nan

    tpr_gap, fpr_gap = gap("tpr"), gap("fpr")
    return EqualizedOdds(tpr_gap, fpr_gap, tpr_gap + fpr_gap)
