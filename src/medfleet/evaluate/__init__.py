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

from medfleet.evaluate.classification import balanced_accuracy, classification_metrics, roc_auc
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
