"""Validation metrics of one task, from predictions on the images' own grids.

Each task type reports its preset's headline metrics with the functions of
:mod:`medfleet.evaluate`:

==============  ====================================  =========
type            metrics                               primary
==============  ====================================  =========
segmentation    ``dice`` (mean over foreground        ``dice``
                labels, then cases)
classification  ``balanced_accuracy``, ``auc``        ``balanced_accuracy``
detection       ``detection_rate`` and ``precision``  ``detection_rate``
                at IoU 0.5 (class-aware)
regression      ``mae`` (task unit)                   ``mae``
landmarks       ``mre`` (mm with spacing, else px)    ``mre``
==============  ====================================  =========
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medfleet.tables import parse_boxes, parse_float, parse_landmarks, parse_spacing
from medfleet.tasks import Manifest, TaskSpec, TaskType

PRIMARY: dict[TaskType, tuple[str, bool]] = {
    TaskType.segmentation: ("dice", True),
    TaskType.classification: ("balanced_accuracy", True),
    TaskType.detection: ("detection_rate", True),
    TaskType.regression: ("mae", False),
    TaskType.landmarks: ("mre", False),
}
"""Per task type: the primary metric and whether higher is better."""


def primary_metric(spec: TaskSpec) -> tuple[str, bool]:
    """The primary metric of a task and whether higher is better.

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> primary_metric(TaskSpec(name="r", type="regression", table="r.csv", unit="mm"))
        ('mae', False)
    """
    return PRIMARY[spec.type]


def task_metrics(
    manifest: Manifest,
    spec: TaskSpec,
    rows: Sequence[dict[str, str]],
    predictions: Sequence[Any],
) -> dict[str, float]:
    """Score predictions (:class:`medfleet.train.predict.CasePrediction`) against table rows.

    Args:
        manifest: The manifest (resolves mask paths).
        spec: The task.
        rows: The labelled table rows, in the order of ``predictions``.
        predictions: One prediction per row.

    Returns:
        Metric name -> value (see the module notes).
    """
    if len(rows) != len(predictions):
        raise ValueError(f"{len(rows)} rows but {len(predictions)} predictions")
    kind = spec.type
    if kind is TaskType.segmentation:
        return _segmentation(manifest, spec, rows, predictions)
    if kind is TaskType.classification:
        return _classification(spec, rows, predictions)
    if kind is TaskType.detection:
        return _detection(spec, rows, predictions)
    if kind is TaskType.regression:
        errors = [
            abs(float(p.value) - parse_float(r["value"], "value"))
            for r, p in zip(rows, predictions, strict=True)
        ]
        return {"mae": float(np.mean(errors)) if errors else math.nan}
    return _landmarks(spec, rows, predictions)


def _segmentation(
    manifest: Manifest, spec: TaskSpec, rows: Sequence[dict[str, str]], predictions: Sequence[Any]
) -> dict[str, float]:
    from medfleet.data.io import read_image
    from medfleet.evaluate.metrics.overlap import overlap_metrics

    labels = spec.foreground_labels
    per_case = []
    for row, pred in zip(rows, predictions, strict=True):
        gt = read_image(manifest.resolve(row["mask"])).array
        if spec.dim == 2 and gt.ndim == 3:
            gt = gt[..., 0]
        result = overlap_metrics(np.asarray(pred.mask), np.asarray(gt).astype(np.int64), labels)
        dice = np.asarray(result["dice"], dtype=np.float64)
        if np.isfinite(dice).any():
            per_case.append(float(np.nanmean(dice)))
    return {"dice": float(np.mean(per_case)) if per_case else math.nan}


def _classification(
    spec: TaskSpec, rows: Sequence[dict[str, str]], predictions: Sequence[Any]
) -> dict[str, float]:
    from medfleet.evaluate.metrics.classification import balanced_accuracy, roc_auc

    classes = list(spec.classes or [])
    index = {c: i for i, c in enumerate(classes)}
    y_true = np.array([index[r["label"].strip()] for r in rows])
    y_pred = np.array([index[p.label] for p in predictions])
    probs = np.array([p.probs for p in predictions], dtype=np.float64)
    labels = list(range(len(classes)))
    out = {"balanced_accuracy": float(balanced_accuracy(y_true, y_pred, labels))}
    present = sorted(set(y_true.tolist()))
    try:
        if len(classes) == 2 and len(present) == 2:
            out["auc"] = float(roc_auc(y_true, probs[:, 1], labels=labels, pos_label=1))
        elif len(present) >= 2:
            out["auc"] = float(roc_auc(y_true, probs, average="macro", labels=labels))
        else:
            out["auc"] = math.nan
    except ValueError:
        out["auc"] = math.nan
    return out


def _detection(
    spec: TaskSpec, rows: Sequence[dict[str, str]], predictions: Sequence[Any]
) -> dict[str, float]:
    from medfleet.evaluate.metrics.detection import DetectionCounts, detection_counts

    total = DetectionCounts(0, 0, 0)
    for row, pred in zip(rows, predictions, strict=True):
        gt = parse_boxes(row["boxes"], ndim=2)
        gt_boxes = np.array([b.coords for b in gt], dtype=np.float64).reshape(-1, 4)
        gt_cls = [b.label for b in gt]
        pred_cls = list(pred.box_labels)
        for cls in {*gt_cls, *pred_cls}:
            gk = np.array([k == cls for k in gt_cls], bool).reshape(-1)
            pk = np.array([k == cls for k in pred_cls], bool).reshape(-1)
            total = total + detection_counts(
                pred.boxes[pk], gt_boxes[gk], pred.scores[pk], iou_threshold=0.5
            )
    return {"detection_rate": total.recall, "precision": total.precision}


def _landmarks(
    spec: TaskSpec, rows: Sequence[dict[str, str]], predictions: Sequence[Any]
) -> dict[str, float]:
    from medfleet.evaluate.metrics.landmarks import landmark_errors

    errors = []
    for row, pred in zip(rows, predictions, strict=True):
        gt = parse_landmarks(row["landmarks"], n_points=len(spec.landmarks or []))
        spacing = pred.spacing
        if (row.get("spacing") or "").strip():
            spacing = parse_spacing(row["spacing"])
        known = np.isfinite(gt).all(axis=1)
        err = landmark_errors(pred.landmarks[known], gt[known], spacing)
        errors.extend(float(e) for e in err)
    finite = [e for e in errors if math.isfinite(e)]
    return {"mre": float(np.mean(finite)) if finite else math.nan}
