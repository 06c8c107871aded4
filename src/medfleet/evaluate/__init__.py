"""Exact, convention-explicit evaluation: a numpy/scipy core with no torch import.

Its parts, one subpackage each (see docs/architecture.md and docs/metrics.md):

* :mod:`~medfleet.evaluate.metrics`: segmentation (:func:`overlap_metrics`: Dice, IoU,
  volumes, ... for all labels in one pass; :func:`surface_distances` /
  :func:`surface_metrics`: HD, HD at a percentile, ASSD, MASD, NSD;
  :class:`SegmentationMetric`: accumulate, merge), classification, detection,
  regression, biometry and landmark metrics;
* :mod:`~medfleet.evaluate.analysis`: subgroups and fairness, calibration, multi-rater
  agreement;
* :mod:`~medfleet.evaluate.stats`: bootstrap CIs, paired tests, rankings;
* :mod:`~medfleet.evaluate.challenges`: the challenge presets;
* :mod:`~medfleet.evaluate.runner`: :func:`run_evaluation`, behind ``medfleet evaluate``
  (and :mod:`~medfleet.evaluate.compare` behind ``medfleet report compare``).

The most used entry points are re-exported here.

Example:
    >>> import numpy as np
    >>> from medfleet.evaluate import overlap_metrics
    >>> gt = np.zeros((4, 4), int); gt[1:3, 1:3] = 1
    >>> pred = gt.copy(); pred[1, 1] = 0
    >>> round(overlap_metrics(pred, gt).value("dice", 1), 4)
    0.8571
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medfleet.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from medfleet.evaluate.metrics.classification import (
        balanced_accuracy,
        classification_metrics,
        roc_auc,
    )
    from medfleet.evaluate.metrics.conventions import EmptyPolicy, MetricInputError
    from medfleet.evaluate.metrics.detection import (
        average_precision,
        box_iou,
        coco_map,
        detection_rate,
    )
    from medfleet.evaluate.metrics.landmarks import (
        landmark_errors,
        mean_radial_error,
        successful_detection_rate,
    )
    from medfleet.evaluate.metrics.overlap import overlap_metrics
    from medfleet.evaluate.metrics.regression import bland_altman, regression_metrics
    from medfleet.evaluate.metrics.segmentation_metric import SegmentationMetric
    from medfleet.evaluate.metrics.surface import surface_distances, surface_metrics
    from medfleet.evaluate.runner import run_evaluation
    from medfleet.evaluate.runner.config import EvaluationConfig

# Re-exports load on first use (PEP 562), so that importing one submodule (the CLI's
# ``medfleet.evaluate.runner.aggregate``, a classification scorer) does not import them all.
_EXPORTS = {
    "EmptyPolicy": "metrics.conventions",
    "EvaluationConfig": "runner.config",
    "MetricInputError": "metrics.conventions",
    "SegmentationMetric": "metrics.segmentation_metric",
    "average_precision": "metrics.detection",
    "balanced_accuracy": "metrics.classification",
    "bland_altman": "metrics.regression",
    "box_iou": "metrics.detection",
    "classification_metrics": "metrics.classification",
    "coco_map": "metrics.detection",
    "detection_rate": "metrics.detection",
    "landmark_errors": "metrics.landmarks",
    "mean_radial_error": "metrics.landmarks",
    "overlap_metrics": "metrics.overlap",
    "regression_metrics": "metrics.regression",
    "roc_auc": "metrics.classification",
    "run_evaluation": "runner",
    "successful_detection_rate": "metrics.landmarks",
    "surface_distances": "metrics.surface",
    "surface_metrics": "metrics.surface",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


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
