"""Case-by-case accumulation of segmentation metrics (numpy; no torch).

:class:`SegmentationMetric` scores each case with :func:`overlap_metrics` and
:func:`surface_metrics` under one fixed set of conventions, keeps the per-case
results, and summarises them per metric and label with ``n_valid`` counts.
States of several workers or sites combine with :meth:`~SegmentationMetric.merge_state`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medfleet.evaluate.metrics.conventions import (
    EmptyPolicy,
    MetricInputError,
    as_empty_policy,
    resolve_labels,
)
from medfleet.evaluate.metrics.overlap import overlap_metrics
from medfleet.evaluate.metrics.results import MetricSummary, PerLabelResult, ResultAccumulator
from medfleet.evaluate.metrics.surface import (
    DEFAULT_NSD_TOLERANCES,
    DEFAULT_SURFACE_METRICS,
    surface_metrics,
)


class SegmentationMetric:
    """Score segmentation cases one at a time and aggregate them.

    Args:
        labels: Labels to score in every case. Give them explicitly so that a
            label missing from both maps of a case is still recorded
            (``both_empty``); ``None`` scores whatever each case contains.
        overlap: Compute Dice, IoU, volumes, volume similarity, sensitivity, specificity.
        surface_metrics: Surface metrics (see :func:`surface_metrics`); empty for none.
        nsd_tolerances: NSD tolerances in mm.
        percentile_method: ``"max-directed"``, ``"pooled"`` or ``"area-weighted"``.
        surface: ``"border"`` or ``"corner-area"``.
        connectivity: Border erosion connectivity.
        empty: Empty-mask policy shared by every metric.
        method: Nearest-neighbour algorithm (``"auto"``, ``"kdtree"``, ``"edt"``).
        workers: Threads for nearest-neighbour search (-1: all cores).

    Example:
        >>> metric = SegmentationMetric(labels=[1], surface_metrics=("hd",))
        >>> gt = np.zeros((8, 8), bool); gt[2:6, 2:6] = True
        >>> _ = metric.update(gt, gt, spacing=(1.0, 1.0), case_id="a")
        >>> _ = metric.update(np.zeros_like(gt), gt, spacing=(1.0, 1.0), case_id="b")
        >>> s = metric.aggregate()
        >>> s["dice"][1].mean, s["dice"][1].n_valid, s["hd"][1].mean, s["hd"][1].n_valid
        (0.5, 2, inf, 1)
    """

    def __init__(
        self,
        labels: int | Sequence[int] | None = None,
        *,
        overlap: bool = True,
        surface_metrics: Sequence[str] = DEFAULT_SURFACE_METRICS,
        nsd_tolerances: Sequence[float] = DEFAULT_NSD_TOLERANCES,
        percentile_method: str = "max-directed",
        surface: str = "border",
        connectivity: int = 1,
        empty: EmptyPolicy | Mapping[str, object] | None = None,
        method: str = "auto",
        workers: int = -1,
    ) -> None:
        self.labels = None if labels is None else resolve_labels(labels, [])
        self.overlap = bool(overlap)
        self.surface_metrics = tuple(surface_metrics)
        if not self.overlap and not self.surface_metrics:
            raise MetricInputError(
                "SegmentationMetric needs overlap=True or at least one surface metric"
            )
        self.surface_options: dict[str, Any] = {
            "metrics": self.surface_metrics,
            "nsd_tolerances": tuple(float(t) for t in nsd_tolerances),
            "percentile_method": percentile_method,
            "surface": surface,
            "connectivity": connectivity,
            "method": method,
            "workers": workers,
        }
        self.empty = as_empty_policy(empty)
        self._acc = ResultAccumulator()

    def compute(
        self, pred: np.ndarray, gt: np.ndarray, spacing: float | Sequence[float] | None = None
    ) -> PerLabelResult:
        """Score one case without recording it."""
        result: PerLabelResult | None = None
        if self.overlap:
            result = overlap_metrics(pred, gt, self.labels, spacing, empty=self.empty)
        if self.surface_metrics:
            surf = surface_metrics(
                pred, gt, spacing, self.labels, empty=self.empty, **self.surface_options
            )
            result = surf if result is None else result.merged_with(surf)
        assert result is not None
        return result

    def update(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        spacing: float | Sequence[float] | None = None,
        case_id: str | None = None,
    ) -> PerLabelResult:
        """Score one case, record it, and return its result."""
        try:
            result = self.compute(pred, gt, spacing)
        except MetricInputError as err:
            if case_id is None:
                raise
            raise MetricInputError(f"case {case_id!r}: {err}") from err
        self._acc.add(result, case_id)
        return result

    __call__ = update

    def add_result(self, result: PerLabelResult, case_id: str | None = None) -> None:
        """Record a result computed elsewhere (e.g. in a worker process)."""
        self._acc.add(result, case_id)

    def merge_state(self, other: SegmentationMetric) -> None:
        """Append the cases of another instance (another worker or site)."""
        self._acc.merge_state(other._acc)

    def reset(self) -> None:
        """Forget every recorded case."""
        self._acc.reset()

    def __len__(self) -> int:
        return len(self._acc)

    @property
    def results(self) -> tuple[PerLabelResult, ...]:
        """Recorded per-case results, in order."""
        return self._acc.results

    @property
    def case_ids(self) -> tuple[str | None, ...]:
        """Recorded case ids, in order."""
        return self._acc.case_ids

    def rows(self) -> list[dict[str, Any]]:
        """One row per case and label with every metric and its valid flag."""
        return self._acc.rows()

    def aggregate(self) -> dict[str, dict[Any, MetricSummary]]:
        """Metric -> label -> summary (mean, std, median, n_valid, n_scored, n_cases)."""
        return self._acc.summary()
