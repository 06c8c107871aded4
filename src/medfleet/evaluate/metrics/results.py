"""Per-label metric results with validity flags, and their accumulation over cases.

A :class:`PerLabelResult` holds, for one case, one float64 value per label and
metric, a ``valid`` flag per value (``False`` when the value is a policy
substitute rather than the metric itself, e.g. the HD of a missed structure),
a status per label and the conventions used. :class:`ResultAccumulator`
collects results case by case, merges states from several workers or sites,
and summarises each metric and label (mean, std, median, n_valid, n_scored,
n_cases) without ever letting a missed structure improve a mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfleet.evaluate.metrics.conventions import ONE_EMPTY_STATUSES, MetricInputError


@dataclass(frozen=True)
class PerLabelResult:
    """Metric values of one case, one entry per label.

    Attributes:
        labels: The labels (or other keys), in the order of the value arrays.
        values: Metric name -> float64 array with one value per label.
        valid: Metric name -> bool array; ``False`` where the value is not the
            metric itself (an empty-mask policy value, or undefined).
        status: One status per label (``"ok"``, ``"both_empty"``,
            ``"pred_empty"``, ``"gt_empty"``, or another short word).
        worst: Metric name -> the value that stands in for a NaN of a missed or
            spurious structure at aggregation (``inf`` for distances, ``0`` for
            overlap scores); metrics without an entry are never substituted.
        conventions: The conventions the values were computed with.

    Example:
        >>> r = PerLabelResult.from_columns(
        ...     labels=[1, 2], values={"dice": [0.5, 1.0]}, valid={"dice": [True, True]},
        ...     status=["ok", "ok"])
        >>> r.value("dice", 2)
        1.0
        >>> r.to_rows()[0]
        {'label': 1, 'status': 'ok', 'dice': 0.5, 'dice_valid': True}
    """

    labels: tuple[Any, ...]
    values: Mapping[str, np.ndarray]
    valid: Mapping[str, np.ndarray]
    status: tuple[str, ...]
    worst: Mapping[str, float] = field(default_factory=dict)
    conventions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if len(self.status) != n:
            raise MetricInputError(f"{len(self.status)} statuses for {n} labels")
        for name, arr in self.values.items():
            if arr.shape != (n,):
                raise MetricInputError(f"metric {name!r} has {arr.shape} values for {n} labels")
            if name not in self.valid or self.valid[name].shape != (n,):
                raise MetricInputError(f"metric {name!r} needs one valid flag per label")

    @classmethod
    def from_columns(
        cls,
        labels: Sequence[Any],
        values: Mapping[str, Sequence[float]],
        valid: Mapping[str, Sequence[bool]],
        status: Sequence[str],
        worst: Mapping[str, float] | None = None,
        conventions: Mapping[str, Any] | None = None,
    ) -> PerLabelResult:
        """Build a result from plain sequences (converted to float64 / bool arrays)."""
        return cls(
            labels=tuple(labels),
            values={k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in values.items()},
            valid={k: np.asarray(v, dtype=bool).reshape(-1) for k, v in valid.items()},
            status=tuple(status),
            worst=dict(worst or {}),
            conventions=dict(conventions or {}),
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names, in insertion order."""
        return tuple(self.values)

    def __getitem__(self, metric: str) -> np.ndarray:
        """Values of ``metric`` for every label."""
        try:
            return self.values[metric]
        except KeyError:
            raise KeyError(f"no metric {metric!r}; this result has {list(self.values)}") from None

    def _index(self, label: Any) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"no label {label!r}; this result has {list(self.labels)}") from None

    def value(self, metric: str, label: Any) -> float:
        """Value of ``metric`` for ``label``."""
        return float(self[metric][self._index(label)])

    def is_valid(self, metric: str, label: Any) -> bool:
        """Whether the value of ``metric`` for ``label`` is the metric itself."""
        return bool(self.valid[metric][self._index(label)])

    def to_rows(self, case_id: str | None = None) -> list[dict[str, Any]]:
        """One dict per label: case (if given), label, status, each metric and its valid flag."""
        rows = []
        for i, label in enumerate(self.labels):
            row: dict[str, Any] = {} if case_id is None else {"case": case_id}
            row["label"] = label
            row["status"] = self.status[i]
            for name in self.values:
                row[name] = float(self.values[name][i])
                row[f"{name}_valid"] = bool(self.valid[name][i])
            rows.append(row)
        return rows

    def merged_with(self, other: PerLabelResult) -> PerLabelResult:
        """Combine the metrics of two results over the same labels (e.g. overlap and surface).

        The statuses must agree; metrics of ``other`` with the same name win.
        """
        if tuple(other.labels) != tuple(self.labels):
            raise MetricInputError(
                f"cannot merge results over labels {list(self.labels)} and {list(other.labels)}"
            )
        if tuple(other.status) != tuple(self.status):
            raise MetricInputError(
                f"cannot merge results with statuses {self.status} and {other.status}"
            )
        return PerLabelResult(
            labels=self.labels,
            values={**self.values, **other.values},
            valid={**self.valid, **other.valid},
            status=self.status,
            worst={**self.worst, **other.worst},
            conventions={**self.conventions, **other.conventions},
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists, floats; NaN and inf kept as floats)."""
        return {
            "labels": list(self.labels),
            "status": list(self.status),
            "values": {k: [float(x) for x in v] for k, v in self.values.items()},
            "valid": {k: [bool(x) for x in v] for k, v in self.valid.items()},
            "worst": {k: float(v) for k, v in self.worst.items()},
            "conventions": dict(self.conventions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerLabelResult:
        """Inverse of :meth:`to_dict`."""
        return cls.from_columns(
            labels=data["labels"],
            values=data["values"],
            valid=data["valid"],
            status=data["status"],
            worst=data.get("worst"),
            conventions=data.get("conventions"),
        )


@dataclass(frozen=True)
class MetricSummary:
    """Summary of one metric for one label over cases.

    Attributes:
        mean: Mean of the scored values (``inf`` if any scored value is ``inf``).
        std: Sample standard deviation (ddof=1) of the scored values; NaN for
            fewer than two values or when a value is infinite.
        median: Median of the scored values.
        n_valid: Cases whose value is the metric itself (``valid`` flag set).
        n_scored: Cases that enter the mean: every non-NaN value, plus one-empty
            cases whose NaN is replaced by the metric's worst value.
        n_cases: Cases in which the label was scored at all.
    """

    mean: float
    std: float
    median: float
    n_valid: int
    n_scored: int
    n_cases: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain-Python form."""
        return {
            "mean": self.mean,
            "std": self.std,
            "median": self.median,
            "n_valid": self.n_valid,
            "n_scored": self.n_scored,
            "n_cases": self.n_cases,
        }


def summarize(
    values: Sequence[float],
    valid: Sequence[bool],
    status: Sequence[str],
    worst: float | None = None,
) -> MetricSummary:
    """Summarise one metric of one label over cases.

    A NaN from a case where exactly one mask is empty (a missed or spurious
    structure) is replaced by ``worst`` (when given) so it cannot improve the
    mean; other NaNs (both masks empty, undefined) are left out.

    Example:
        >>> s = summarize([0.8, float("nan"), float("nan")], [True, False, False],
        ...               ["ok", "pred_empty", "both_empty"], worst=0.0)
        >>> s.mean, s.n_scored, s.n_valid, s.n_cases
        (0.4, 2, 1, 3)
    """
    v = np.asarray(values, dtype=np.float64).copy()
    ok = np.asarray(valid, dtype=bool)
    st = np.asarray(status, dtype=object)
    if worst is not None and not math.isnan(worst) and v.size:
        substitute = np.isnan(v) & np.isin(st, ONE_EMPTY_STATUSES)
        v[substitute] = worst
    scored = v[~np.isnan(v)]
    n = int(scored.size)
    if n == 0:
        mean = std = median = math.nan
    else:
        mean = float(np.mean(scored)) if np.all(np.isfinite(scored)) else _mean_with_inf(scored)
        median = float(np.median(scored))
        std = float(np.std(scored, ddof=1)) if n > 1 and np.all(np.isfinite(scored)) else math.nan
    return MetricSummary(
        mean=mean,
        std=std,
        median=median,
        n_valid=int(ok.sum()),
        n_scored=n,
        n_cases=int(v.size),
    )


def _mean_with_inf(values: np.ndarray) -> float:
    if np.any(values == np.inf) and np.any(values == -np.inf):
        return math.nan
    return math.inf if np.any(values == np.inf) else -math.inf


class ResultAccumulator:
    """Collect :class:`PerLabelResult` objects case by case and summarise them.

    Designed for streaming evaluation and for combining partial states from
    several processes or sites (:meth:`merge_state`); plain numpy, no torch.

    Example:
        >>> acc = ResultAccumulator()
        >>> def one(v):
        ...     return PerLabelResult.from_columns([1], {"dice": [v]}, {"dice": [True]}, ["ok"])
        >>> acc.add(one(0.5), "a")
        >>> acc.add(one(1.0), "b")
        >>> acc.summary()["dice"][1].mean
        0.75
    """

    def __init__(self) -> None:
        self._case_ids: list[str | None] = []
        self._results: list[PerLabelResult] = []

    def __len__(self) -> int:
        return len(self._results)

    @property
    def case_ids(self) -> tuple[str | None, ...]:
        """Case ids in insertion order (``None`` where none was given)."""
        return tuple(self._case_ids)

    @property
    def results(self) -> tuple[PerLabelResult, ...]:
        """The accumulated per-case results."""
        return tuple(self._results)

    def add(self, result: PerLabelResult, case_id: str | None = None) -> None:
        """Add the result of one case; a repeated case id is an error."""
        if case_id is not None and case_id in self._case_ids:
            raise MetricInputError(
                f"case {case_id!r} was already added (fix: give each case a unique id, or "
                "reset() before re-scoring)"
            )
        self._case_ids.append(case_id)
        self._results.append(result)

    def merge_state(self, other: ResultAccumulator) -> None:
        """Append every case of ``other`` (e.g. another worker's or site's state)."""
        for case_id, result in zip(other._case_ids, other._results, strict=True):
            self.add(result, case_id)

    def reset(self) -> None:
        """Forget every case."""
        self._case_ids.clear()
        self._results.clear()

    def rows(self) -> list[dict[str, Any]]:
        """One row per case and label (see :meth:`PerLabelResult.to_rows`)."""
        out: list[dict[str, Any]] = []
        for case_id, result in zip(self._case_ids, self._results, strict=True):
            out.extend(result.to_rows("" if case_id is None else case_id))
        return out

    def summary(self) -> dict[str, dict[Any, MetricSummary]]:
        """Metric -> label -> :class:`MetricSummary`, over every case that scored the label."""
        collected: dict[str, dict[Any, tuple[list[float], list[bool], list[str]]]] = {}
        worst: dict[str, float] = {}
        for result in self._results:
            worst.update(result.worst)
            for name in result.values:
                per_label = collected.setdefault(name, {})
                for i, label in enumerate(result.labels):
                    vals, oks, sts = per_label.setdefault(label, ([], [], []))
                    vals.append(float(result.values[name][i]))
                    oks.append(bool(result.valid[name][i]))
                    sts.append(result.status[i])
        return {
            name: {
                label: summarize(vals, oks, sts, worst.get(name))
                for label, (vals, oks, sts) in sorted(per_label.items(), key=_label_key)
            }
            for name, per_label in collected.items()
        }


def _label_key(item: tuple[Any, Any]) -> tuple[int, str]:
    label = item[0]
    return (0, f"{label:020d}") if isinstance(label, (int, np.integer)) else (1, str(label))
