"""Object detection metrics: box IoU, COCO-style average precision, detection rate.

Box convention: ``(x0, y0, x1, y1)`` in **continuous pixel coordinates**, x along columns
and y along rows, with ``x1 >= x0`` and ``y1 >= y0``. The area is ``(x1 - x0) * (y1 - y0)``
(no "+1" as in the old Pascal VOC code): a box covering pixel columns 10..19 completely is
``x0=10, x1=20``. This is the convention of pycocotools (which stores ``x, y, w, h``).

Average precision follows pycocotools (``COCOeval`` with ``iouType="bbox"``, one category,
all areas, no crowd boxes) exactly:

* per image, predictions are sorted by score (stable) and at most ``max_detections`` kept;
* greedy matching in that order: each prediction takes the still unmatched ground-truth box
  with the highest IoU, if that IoU is ``>=`` the threshold (on equal IoU the later box);
* predictions of all images are merged by score (stable), precision is made monotone, and
  read at the 101 recall points 0, 0.01, ..., 1 (0 where the recall is never reached);
* AP is the mean of those 101 values; mAP@[.5:.95] is the mean AP over the IoU thresholds
  0.50, 0.55, ..., 0.95. With no ground-truth box at all, AP is ``nan``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_POINTS",
    "DetectionCounts",
    "as_boxes",
    "average_precision",
    "box_iou",
    "coco_map",
    "coco_map_by_class",
    "detection_counts",
    "detection_rate",
    "match_detections",
    "pairwise_iou",
]

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
"""IoU thresholds of mAP@[.5:.95]: 0.50, 0.55, ..., 0.95."""

COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
"""Recall points at which precision is read (101-point interpolation)."""


def as_boxes(boxes: Any, name: str = "boxes") -> np.ndarray:
    """Validate boxes and return them as a float64 ``(n, 4)`` array.

    Args:
        boxes: Anything convertible to an ``(n, 4)`` array (an empty list is allowed).
        name: Name used in error messages.

    Returns:
        The boxes as ``(n, 4)`` float64.

    Example:
        >>> as_boxes([[0, 0, 2, 3]]).tolist()
        [[0.0, 0.0, 2.0, 3.0]]
        >>> as_boxes([]).shape
        (0, 4)
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (n, 4) as x0, y0, x1, y1; got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {arr[i].tolist()} has x1 < x0 or y1 < y0; boxes are x0, y0, x1, y1"
        )
    return arr


def pairwise_iou(boxes_a: Any, boxes_b: Any) -> np.ndarray:
    """IoU of every box in ``boxes_a`` with every box in ``boxes_b``.

    Args:
        boxes_a: ``(n, 4)`` boxes.
        boxes_b: ``(m, 4)`` boxes.

    Returns:
        An ``(n, m)`` float64 array; a pair whose union has zero area has IoU 0.

    Example:
        >>> pairwise_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]]).round(4).tolist()
        [[0.3333, 0.0]]
    """
    a = as_boxes(boxes_a, "boxes_a")
    b = as_boxes(boxes_b, "boxes_b")
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def box_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU of two boxes ``(x0, y0, x1, y1)``.

    Example:
        >>> box_iou((0, 0, 10, 10), (5, 0, 15, 10))
        0.3333333333333333
    """
    return float(pairwise_iou([box_a], [box_b])[0, 0])


def _scores(scores: Any, n: int, name: str) -> np.ndarray:
    if scores is None:
        return np.ones(n, dtype=np.float64)
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} scores for {n} boxes")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite scores")
    return arr


def match_detections(
    pred_boxes: Any,
    gt_boxes: Any,
    pred_scores: Any = None,
    iou_threshold: float = 0.5,
    max_detections: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy COCO matching of one image's predictions to its ground truth.

    Args:
        pred_boxes: ``(n, 4)`` predicted boxes.
        gt_boxes: ``(m, 4)`` ground-truth boxes.
        pred_scores: ``(n,)`` scores (default: all equal, so the given order is kept).
        iou_threshold: A match needs IoU ``>=`` this value.
        max_detections: Keep only the best-scoring ones (None: keep all).

    Returns:
        ``(order, matched_gt, matched_iou)``: indices of the kept predictions in matching
        order (by decreasing score, stable), the ground-truth index each matched
        (-1 for none) and the IoU of that match (0 for none).

    Example:
        >>> boxes = [[0, 0, 2, 2], [0, 0, 2, 2]]
        >>> order, gt, iou = match_detections(boxes, [[0, 0, 2, 2]], [0.4, 0.9])
        >>> order.tolist(), gt.tolist()
        ([1, 0], [0, -1])
    """
    pred = as_boxes(pred_boxes, "pred_boxes")
    gt = as_boxes(gt_boxes, "gt_boxes")
    scores = _scores(pred_scores, len(pred), "pred_scores")
    order = np.argsort(-scores, kind="mergesort")
    if max_detections is not None:
        order = order[:max_detections]
    ious = pairwise_iou(pred[order], gt)
    matched_gt = np.full(len(order), -1, dtype=np.intp)
    matched_iou = np.zeros(len(order), dtype=np.float64)
    taken = np.zeros(len(gt), dtype=bool)
    threshold = min(float(iou_threshold), 1 - 1e-10)
    for d in range(len(order)):
        if not len(gt):
            break
        candidates = np.where(taken, -1.0, ious[d])
        best = candidates.max()
        if best < threshold:
            continue
        g = int(np.flatnonzero(candidates == best)[-1])  # equal IoU: the later box, as COCO
        taken[g] = True
        matched_gt[d] = g
        matched_iou[d] = ious[d, g]
    return order, matched_gt, matched_iou


@dataclass(frozen=True)
class DetectionCounts:
    """True positives, false positives and false negatives at one IoU threshold.

    Attributes:
        tp: Predictions matched to a ground-truth box.
        fp: Predictions not matched.
        fn: Ground-truth boxes not matched.
    """

    tp: int
    fp: int
    fn: int

    @property
    def recall(self) -> float:
        """TP / (TP + FN), the detection rate; ``nan`` without ground-truth boxes."""
        n = self.tp + self.fn
        return self.tp / n if n else float("nan")

    @property
    def precision(self) -> float:
        """TP / (TP + FP); ``nan`` without predictions."""
        n = self.tp + self.fp
        return self.tp / n if n else float("nan")

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def detection_counts(
    pred_boxes: Any,
    gt_boxes: Any,
    pred_scores: Any = None,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
) -> DetectionCounts:
    """Count TP, FP and FN of one image by greedy matching in score order.

    Args:
        pred_boxes: ``(n, 4)`` predicted boxes.
        gt_boxes: ``(m, 4)`` ground-truth boxes.
        pred_scores: Scores (default: the given order).
        iou_threshold: A match needs IoU ``>=`` this value.
        score_threshold: Drop predictions scoring below this first (None: keep all).

    Returns:
        The counts.

    Example:
        >>> detection_counts([[0, 0, 10, 10], [20, 20, 30, 30]], [[1, 1, 10, 10]])
        DetectionCounts(tp=1, fp=1, fn=0)
    """
    pred = as_boxes(pred_boxes, "pred_boxes")
    scores = _scores(pred_scores, len(pred), "pred_scores")
    if score_threshold is not None:
        keep = scores >= score_threshold
        pred, scores = pred[keep], scores[keep]
    gt = as_boxes(gt_boxes, "gt_boxes")
    _, matched, _ = match_detections(pred, gt, scores, iou_threshold)
    tp = int((matched >= 0).sum())
    return DetectionCounts(tp=tp, fp=len(pred) - tp, fn=len(gt) - tp)


def detection_rate(
    pred_boxes: Sequence[Any],
    gt_boxes: Sequence[Any],
    pred_scores: Sequence[Any] | None = None,
    iou_threshold: float = 0.5,
    score_threshold: float | None = None,
) -> float:
    """Fraction of all ground-truth boxes (over all images) that a prediction found.

    Args:
        pred_boxes: Per image, ``(n_i, 4)`` predicted boxes.
        gt_boxes: Per image, ``(m_i, 4)`` ground-truth boxes.
        pred_scores: Per image, the scores (None: given order).
        iou_threshold: A match needs IoU ``>=`` this value.
        score_threshold: Drop predictions scoring below this first.

    Returns:
        Recall over all ground-truth boxes (``nan`` if there are none).

    Example:
        >>> detection_rate([[[0, 0, 4, 4]], []], [[[0, 0, 4, 5]], [[1, 1, 2, 2]]])
        0.5
    """
    _check_images(pred_boxes, gt_boxes, pred_scores)
    total = DetectionCounts(0, 0, 0)
    for i in range(len(gt_boxes)):
        scores = None if pred_scores is None else pred_scores[i]
        total = total + detection_counts(
            pred_boxes[i], gt_boxes[i], scores, iou_threshold, score_threshold
        )
    return total.recall


def _check_images(pred_boxes: Sequence[Any], gt_boxes: Sequence[Any], scores: Any) -> None:
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(
            f"pred_boxes covers {len(pred_boxes)} images but gt_boxes {len(gt_boxes)}; "
            "give one (possibly empty) entry per image to both"
        )
    if scores is not None and len(scores) != len(pred_boxes):
        raise ValueError(
            f"pred_scores covers {len(scores)} images but pred_boxes {len(pred_boxes)}"
        )


def average_precision(
    pred_boxes: Sequence[Any],
    pred_scores: Sequence[Any],
    gt_boxes: Sequence[Any],
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> float:
    """COCO-style average precision at one IoU threshold, over several images.

    Args:
        pred_boxes: Per image, ``(n_i, 4)`` predicted boxes.
        pred_scores: Per image, ``(n_i,)`` confidence scores.
        gt_boxes: Per image, ``(m_i, 4)`` ground-truth boxes.
        iou_threshold: A match needs IoU ``>=`` this value.
        max_detections: Predictions kept per image (best scores first), 100 as COCO.

    Returns:
        AP from 101-point interpolated precision; ``nan`` without ground-truth boxes.

    Example:
        >>> gt = [[[0, 0, 10, 10]], [[0, 0, 10, 10]]]
        >>> pred = [[[0, 0, 10, 10]], [[50, 50, 60, 60]]]
        >>> round(average_precision(pred, [[0.9], [0.8]], gt), 4)
        0.505
    """
    return float(
        _average_precisions(pred_boxes, pred_scores, gt_boxes, [iou_threshold], max_detections)[0]
    )


def _average_precisions(
    pred_boxes: Sequence[Any],
    pred_scores: Sequence[Any],
    gt_boxes: Sequence[Any],
    iou_thresholds: Sequence[float],
    max_detections: int,
) -> np.ndarray:
    _check_images(pred_boxes, gt_boxes, pred_scores)
    n_gt = sum(len(as_boxes(g, f"gt_boxes[{i}]")) for i, g in enumerate(gt_boxes))
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    if n_gt == 0:
        return np.full(len(thresholds), np.nan)
    all_scores = []
    all_matched = [[] for _ in thresholds]
    for i in range(len(gt_boxes)):
        scores = _scores(pred_scores[i], len(as_boxes(pred_boxes[i])), f"pred_scores[{i}]")
        for t, thr in enumerate(thresholds):
            order, matched, _ = match_detections(
                pred_boxes[i], gt_boxes[i], scores, thr, max_detections
            )
            all_matched[t].append(matched >= 0)
        all_scores.append(scores[order])
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    ranking = np.argsort(-scores, kind="mergesort")
    out = np.zeros(len(thresholds), dtype=np.float64)
    for t in range(len(thresholds)):
        if not len(ranking):
            continue  # no predictions at all: precision 0 at every recall point
        is_tp = np.concatenate(all_matched[t])[ranking]
        tp = np.cumsum(is_tp, dtype=np.float64)
        fp = np.cumsum(~is_tp, dtype=np.float64)
        recall = tp / n_gt
        precision = tp / np.maximum(tp + fp, 1.0)
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
        idx = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
        reached = idx < len(precision)
        out[t] = np.where(reached, precision[np.minimum(idx, len(precision) - 1)], 0.0).mean()
    return out


def coco_map(
    pred_boxes: Sequence[Any],
    pred_scores: Sequence[Any],
    gt_boxes: Sequence[Any],
    iou_thresholds: Sequence[float] = tuple(COCO_IOU_THRESHOLDS),
    max_detections: int = 100,
) -> dict[str, Any]:
    """COCO mAP@[.5:.95] together with AP at 0.5 and 0.75 and AP per threshold.

    Args:
        pred_boxes: Per image, ``(n_i, 4)`` predicted boxes.
        pred_scores: Per image, ``(n_i,)`` confidence scores.
        gt_boxes: Per image, ``(m_i, 4)`` ground-truth boxes.
        iou_thresholds: IoU thresholds averaged into ``map``.
        max_detections: Predictions kept per image.

    Returns:
        ``{"map": ..., "ap50": ..., "ap75": ..., "ap_per_threshold": {"0.50": ...}}``.

    Example:
        >>> r = coco_map([[[0, 0, 10, 10]]], [[1.0]], [[[0, 0, 10, 10]]])
        >>> r["map"], r["ap50"]
        (1.0, 1.0)
    """
    thresholds = [float(t) for t in iou_thresholds]
    wanted = sorted({*thresholds, 0.5, 0.75})
    aps = _average_precisions(pred_boxes, pred_scores, gt_boxes, wanted, max_detections)
    by_thr = dict(zip(wanted, aps, strict=True))
    mean = np.mean([by_thr[t] for t in thresholds]) if thresholds else np.nan
    return {
        "map": float(mean),
        "ap50": float(by_thr[0.5]),
        "ap75": float(by_thr[0.75]),
        "ap_per_threshold": {f"{t:.2f}": float(by_thr[t]) for t in thresholds},
    }


def coco_map_by_class(
    pred_boxes: Sequence[Any],
    pred_scores: Sequence[Any],
    pred_classes: Sequence[Sequence[Any]],
    gt_boxes: Sequence[Any],
    gt_classes: Sequence[Sequence[Any]],
    iou_thresholds: Sequence[float] = tuple(COCO_IOU_THRESHOLDS),
    max_detections: int = 100,
) -> dict[str, Any]:
    """COCO mAP over several classes: boxes match only boxes of their own class.

    As pycocotools, AP is computed per class (``max_detections`` per image and class) and
    averaged over the classes that have ground-truth boxes; a class seen only in the
    predictions has AP ``nan`` and is left out of the mean.

    Args:
        pred_boxes: Per image, ``(n_i, 4)`` predicted boxes.
        pred_scores: Per image, ``(n_i,)`` scores.
        pred_classes: Per image, one class per predicted box.
        gt_boxes: Per image, ``(m_i, 4)`` ground-truth boxes.
        gt_classes: Per image, one class per ground-truth box.
        iou_thresholds: IoU thresholds averaged into ``map``.
        max_detections: Predictions kept per image and class.

    Returns:
        ``map``, ``ap50`` and ``ap75`` averaged over classes, and ``per_class``.

    Example:
        >>> gt = [[[0, 0, 10, 10], [20, 20, 30, 30]]]
        >>> pred = [[[0, 0, 10, 10], [20, 20, 30, 30]]]
        >>> r = coco_map_by_class(pred, [[0.9, 0.8]], [["a", "a"]], gt, [["a", "b"]])
        >>> r["per_class"]["a"]["ap50"], r["per_class"]["b"]["ap50"], r["ap50"]
        (1.0, 0.0, 0.5)
    """
    _check_images(pred_boxes, gt_boxes, pred_scores)
    classes = sorted({c for per in (*pred_classes, *gt_classes) for c in per}, key=str)
    per_class: dict[str, dict[str, Any]] = {}
    for cls in classes:
        sel_pred, sel_scores, sel_gt = [], [], []
        for i in range(len(gt_boxes)):
            p = as_boxes(pred_boxes[i], f"pred_boxes[{i}]")
            s = _scores(pred_scores[i], len(p), f"pred_scores[{i}]")
            g = as_boxes(gt_boxes[i], f"gt_boxes[{i}]")
            pk = np.array([c == cls for c in pred_classes[i]], dtype=bool).reshape(-1)
            gk = np.array([c == cls for c in gt_classes[i]], dtype=bool).reshape(-1)
            if len(pk) != len(p) or len(gk) != len(g):
                raise ValueError(f"image {i}: give one class per box")
            sel_pred.append(p[pk])
            sel_scores.append(s[pk])
            sel_gt.append(g[gk])
        per_class[str(cls)] = coco_map(sel_pred, sel_scores, sel_gt, iou_thresholds, max_detections)
    out: dict[str, Any] = {}
    for key in ("map", "ap50", "ap75"):
        values = [r[key] for r in per_class.values() if not np.isnan(r[key])]
        out[key] = float(np.mean(values)) if values else float("nan")
    out["per_class"] = per_class
    return out
