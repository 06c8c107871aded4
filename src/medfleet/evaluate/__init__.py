"""Exact, convention-explicit evaluation: a numpy/scipy core with no torch import.

The most used entry points are re-exported here; each submodule documents its
conventions (see docs/metrics.md):

* segmentation: :func:`overlap_metrics` (Dice, IoU, volumes, ... for all labels in
  one pass), :func:`surface_distances` / :func:`surface_metrics` (HD, HD at a
  percentile, ASSD, MASD, NSD), :class:`SegmentationMetric` (accumulate, merge);
* classification, detection, regression, biometry and landmark metrics in the
  submodules of the same names;
* analysis: :mod:`~medfleet.evaluate.fairness`, :mod:`~medfleet.evaluate.calibration`,
  :mod:`~medfleet.evaluate.multirater`, :mod:`~medfleet.evaluate.stats`;
* challenge presets in :mod:`medfleet.evaluate.challenges`;
* the runner behind ``medfleet evaluate``: :func:`run_evaluation`.

Example:
    >>> import numpy as np
    >>> from medfleet.evaluate import overlap_metrics
    >>> gt = np.zeros((4, 4), int); gt[1:3, 1:3] = 1
    >>> pred = gt.copy(); pred[1, 1] = 0
    >>> round(overlap_metrics(pred, gt).value("dice", 1), 4)
    0.8571
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medfleet.evaluate.classification import (
        balanced_accuracy,
        classification_metrics,
        roc_auc,
    )
    from medfleet.evaluate.conventions import EmptyPolicy, MetricInputError
    from medfleet.evaluate.detection import average_precision, box_iou, coco_map, detection_rate
    from medfleet.evaluate.landmarks import (
        landmark_errors,
        mean_radial_error,
        successful_detection_rate,
    )
    from medfleet.evaluate.overlap import overlap_metrics
    from medfleet.evaluate.regression import bland_altman, regression_metrics
    from medfleet.evaluate.run_common import EvaluationConfig
    from medfleet.evaluate.runner import run_evaluation
    from medfleet.evaluate.segmentation_metric import SegmentationMetric
    from medfleet.evaluate.surface import surface_distances, surface_metrics

# Re-exports load on first use (PEP 562), so that importing one submodule (the CLI's
# ``medfleet.evaluate.aggregate``, a classification scorer) does not import them all.
_EXPORTS = {
    "EmptyPolicy": "conventions",
    "EvaluationConfig": "run_common",
    "MetricInputError": "conventions",
    "SegmentationMetric": "segmentation_metric",
    "average_precision": "detection",
    "balanced_accuracy": "classification",
    "bland_altman": "regression",
    "box_iou": "detection",
    "classification_metrics": "classification",
    "coco_map": "detection",
    "detection_rate": "detection",
    "landmark_errors": "landmarks",
    "mean_radial_error": "landmarks",
    "overlap_metrics": "overlap",
    "regression_metrics": "regression",
    "roc_auc": "classification",
    "run_evaluation": "runner",
    "successful_detection_rate": "landmarks",
    "surface_distances": "surface",
    "surface_metrics": "surface",
}


def __getattr__(name: str) -> Any:
    """Import a re-exported name from its submodule on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily loaded re-exports included."""
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "EmptyPolicy",
    "EvaluationConfig",
    "MetricInputError",
    "SegmentationMetric",
    "average_precision",
    "balanced_accuracy",
    "bland_altman",
    "box_iou",
    "classification_metrics",
    "coco_map",
    "detection_rate",
    "landmark_errors",
    "mean_radial_error",
    "overlap_metrics",
    "regression_metrics",
    "roc_auc",
    "run_evaluation",
    "successful_detection_rate",
    "surface_distances",
    "surface_metrics",
]
