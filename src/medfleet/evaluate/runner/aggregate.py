"""Summary statistics over cases for ``summary.json``.

Every metric is summarised per group (a segmentation label, a landmark, or ``"all"``) as
``mean``, ``std`` (sample SD, ddof=1), ``median``, ``n_valid``, ``n_scored`` and
``n_cases``:

* ``n_cases``: rows (cases) of the group;
* ``n_valid``: rows whose value is the metric itself (not a policy substitute);
* ``n_scored``: rows that enter the mean.

Missed structures never improve a mean. A row whose status says that the prediction (or
the reference) of the structure is empty or missing (:data:`PENALIZED_STATUSES`) and whose
value is NaN takes the metric's worst value (``worst``, e.g. ``inf`` for a distance, 0 for
Dice); with no worst value given, such a row makes the mean NaN rather than being dropped.
Other NaNs (e.g. both masks empty, an undefined recall without ground truth) are left out
of the statistics and only counted in ``n_cases``. An infinite value makes the mean
infinite and the SD NaN.

``json_safe`` is importable from here too: it is
:func:`medfleet.utils.jsonsafe.json_safe`, the one JSON encoding of every artefact
(NaN -> ``null``, ``±inf`` -> ``"inf"`` / ``"-inf"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medfleet.evaluate.metrics.conventions import float_or_nan
from medfleet.evaluate.metrics.results import summarize
from medfleet.utils.jsonsafe import json_safe  # re-exported: the one JSON policy

__all__ = [
    "PENALIZED_STATUSES",
    "json_safe",
    "summarize_metric",
    "summarize_table",
]

#: Row statuses whose NaN values are penalised (replaced by the worst value) in summaries.
PENALIZED_STATUSES: tuple[str, ...] = ("pred_empty", "gt_empty", "pred_missing")

_STATUS_FOR_RESULTS = "pred_empty"  # the status medfleet.evaluate.metrics.results substitutes


def summarize_metric(
    values: Sequence[float],
    *,
    valid: Sequence[bool] | None = None,
    status: Sequence[str] | None = None,
    worst: float | None = None,
) -> dict[str, float | int]:
    """Summarise one metric over cases with explicit handling of missed structures.

    Args:
        values: One value per case (NaN allowed).
        valid: Whether each value is the metric itself (default: the value is finite).
        status: Row status per case (default ``"ok"``); see :data:`PENALIZED_STATUSES`.
        worst: Value that replaces the NaN of a penalised row; ``None`` makes such a NaN
            turn the mean into NaN.

    Returns:
        ``{"mean", "std", "median", "n_valid", "n_scored", "n_cases"}``.

    Example:
        >>> s = summarize_metric([0.9, float("nan"), float("nan")],
        ...                      status=["ok", "pred_empty", "both_empty"], worst=0.0)
        >>> s["mean"], s["n_scored"], s["n_valid"], s["n_cases"]
        (0.45, 2, 1, 3)
        >>> summarize_metric([1.0, float("nan")], status=["ok", "pred_missing"])["mean"]
        nan
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = np.isfinite(v) if valid is None else np.asarray(valid, dtype=bool).reshape(-1)
    st = np.full(v.shape, "ok", dtype=object) if status is None else np.asarray(status, object)
    if ok.shape != v.shape or st.shape != v.shape:
        raise ValueError(
            f"values, valid and status must have one entry per case: "
            f"{v.shape[0]}, {ok.shape[0]} and {st.shape[0]}"
        )
    penalized = np.isin(st, PENALIZED_STATUSES)
    unscored_miss = penalized & np.isnan(v)
    if unscored_miss.any() and (worst is None or math.isnan(worst)):
        summary = summarize(v, ok, ["ok"] * v.size).to_dict()
        summary.update(mean=math.nan, std=math.nan, median=math.nan)
        summary["n_scored"] = int(summary["n_scored"]) + int(unscored_miss.sum())
        return summary
    mapped = np.where(penalized, _STATUS_FOR_RESULTS, "ok")
    return summarize(v, ok, list(mapped), worst).to_dict()


def summarize_table(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    group_by: str | None = "label",
    worst: Mapping[str, float] | None = None,
) -> dict[str, dict[str, dict[str, float | int]]]:
    """Summarise metric columns of per-case rows, per group.

    Args:
        rows: One mapping per case (and label); a metric's validity is read from a
            ``<metric>_valid`` key when present, the status from ``status``.
        metrics: Metric keys to summarise (missing keys are skipped).
        group_by: Key whose value forms the groups; ``None`` puts every row in ``"all"``.
        worst: Metric -> worst value for penalised rows.

    Returns:
        Group (as a string) -> metric -> summary (see :func:`summarize_metric`).

    Example:
        >>> rows = [{"label": 1, "dice": 0.8}, {"label": 1, "dice": 0.6}, {"label": 2, "dice": 1.0}]
        >>> out = summarize_table(rows, ["dice"])
        >>> round(out["1"]["dice"]["mean"], 6), out["2"]["dice"]["n_cases"]
        (0.7, 1)
    """
    worst = dict(worst or {})
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = "all" if group_by is None else str(row.get(group_by, "all"))
        groups.setdefault(key, []).append(row)
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for key in sorted(groups, key=_group_order):
        members = groups[key]
        per_metric: dict[str, dict[str, float | int]] = {}
        for metric in metrics:
            if not any(metric in r for r in members):
                continue
            values = [float_or_nan(r.get(metric)) for r in members]
            valid = None
            if any(f"{metric}_valid" in r for r in members):
                valid = [bool(r.get(f"{metric}_valid", False)) for r in members]
            status = [str(r.get("status", "ok")) for r in members]
            per_metric[metric] = summarize_metric(
                values, valid=valid, status=status, worst=worst.get(metric)
            )
        out[key] = per_metric
    return out


def _group_order(key: str) -> tuple[int, float, str]:
    if key == "all":
        return (2, 0.0, key)
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)
