"""Overlap metrics of every label from one pass over the two label maps.

:func:`overlap_counts` builds the joint histogram of (reference label,
predicted label) pairs with a chunked ``bincount`` of ``gt * L + pred``; the
per-label true positives and volumes follow from its diagonal and margins.
:func:`overlap_metrics` derives, per label:

* ``dice`` = 2 TP / (|P| + |G|); ``iou`` = TP / (|P| + |G| - TP);
* ``volume_pred_mm3`` and ``volume_gt_mm3`` (voxel count x product of spacing);
* ``volume_similarity`` = 1 - | |P| - |G| | / (|P| + |G|);
* ``sensitivity`` = TP / |G|; ``specificity`` = TN / (N - |G|).

Empty masks follow an :class:`~medfleet.evaluate.metrics.conventions.EmptyPolicy`: when
both masks are empty, Dice, IoU, volume similarity and sensitivity are NaN
(default) or 1 (``both_empty="best"``); when exactly one is empty they are
well defined (0; sensitivity is undefined, NaN, when the reference is empty).
Every value carries a ``valid`` flag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medfleet.evaluate.metrics.conventions import (
    EmptyPolicy,
    as_empty_policy,
    check_pair,
    normalize_spacing,
    resolve_labels,
    status_of,
)
from medfleet.evaluate.metrics.results import PerLabelResult

#: Joint histograms are used up to this many distinct label values (L*L bins).
MAX_JOINT_LABELS = 1024
_CHUNK = 1 << 18

OVERLAP_METRICS: tuple[str, ...] = (
    "dice",
    "iou",
    "volume_pred_mm3",
    "volume_gt_mm3",
    "volume_similarity",
    "sensitivity",
    "specificity",
)


@dataclass(frozen=True)
class OverlapCounts:
    """Voxel counts of every label.

    Attributes:
        labels: The labels, ascending.
        tp: Voxels with the label in both maps.
        n_pred: Voxels with the label in the prediction.
        n_gt: Voxels with the label in the reference.
        n_total: Voxels in the image.

    Counts of several cases can be added (:meth:`__add__`) for dataset-level
    ("global") metrics.
    """

    labels: tuple[int, ...]
    tp: np.ndarray
    n_pred: np.ndarray
    n_gt: np.ndarray
    n_total: int

    @property
    def fp(self) -> np.ndarray:
        """False positive voxels per label."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> np.ndarray:
        """False negative voxels per label."""
        return self.n_gt - self.tp

    @property
    def tn(self) -> np.ndarray:
        """True negative voxels per label."""
        return self.n_total - self.n_pred - self.n_gt + self.tp

    def __add__(self, other: OverlapCounts) -> OverlapCounts:
        """Sum the counts of two cases scored over the same labels."""
        if tuple(other.labels) != tuple(self.labels):
            raise ValueError(
                f"cannot add counts over labels {self.labels} and {other.labels} "
                "(fix: pass the same labels= to every case)"
            )
        return OverlapCounts(
            self.labels,
            self.tp + other.tp,
            self.n_pred + other.n_pred,
            self.n_gt + other.n_gt,
            self.n_total + other.n_total,
        )


def joint_histogram(pred: np.ndarray, gt: np.ndarray, n_labels: int) -> np.ndarray:
    """``H[g, p]`` = number of voxels with reference label ``g`` and predicted label ``p``.

    Computed in chunks so memory stays small whatever the image size.

    Example:
        >>> joint_histogram(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3).tolist()
        [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    p = pred.reshape(-1)
    g = gt.reshape(-1)
    if p.dtype == bool:
        p = p.view(np.uint8)
    if g.dtype == bool:
        g = g.view(np.uint8)
    n_bins = n_labels * n_labels
    counts = np.zeros(n_bins, dtype=np.int64)
    key_dtype = np.uint16 if n_bins <= 1 << 16 else np.int64
    for start in range(0, p.size, _CHUNK):
        key = g[start : start + _CHUNK].astype(key_dtype)
        key *= key_dtype(n_labels)
        np.add(key, p[start : start + _CHUNK], out=key, casting="unsafe")
        counts += np.bincount(key, minlength=n_bins)
    return counts.reshape(n_labels, n_labels)


def overlap_counts(
    pred: np.ndarray, gt: np.ndarray, labels: int | Sequence[int] | None = None
) -> OverlapCounts:
    """Per-label voxel counts from one pass over both maps.

    Args:
        pred: Predicted 2D/3D bool mask or integer label map.
        gt: Reference mask or label map on the same grid.
        labels: Labels to count; default every label present in either map except 0.

    Example:
        >>> c = overlap_counts(np.array([[0, 1], [1, 2]]), np.array([[0, 1], [2, 2]]))
        >>> c.labels, c.tp.tolist(), c.n_pred.tolist(), c.n_gt.tolist()
        ((1, 2), [1, 1], [2, 1], [1, 2])
    """
    p, g = check_pair(pred, gt)
    tops = [1 if a.dtype == bool else (int(a.max()) if a.size else 0) for a in (p, g)]
    top = max(tops)
    if top < MAX_JOINT_LABELS:
        hist = joint_histogram(p, g, top + 1)
        n_gt_all = hist.sum(axis=1)
        n_pred_all = hist.sum(axis=0)
        present = np.flatnonzero(n_gt_all + n_pred_all)
        wanted = resolve_labels(labels, present.tolist())

        def pick(arr: np.ndarray) -> np.ndarray:
            return np.array([arr[lab] if lab <= top else 0 for lab in wanted], dtype=np.int64)

        tp = pick(np.diagonal(hist))
        n_pred, n_gt = pick(n_pred_all), pick(n_gt_all)
    else:
        present = np.union1d(np.unique(p), np.unique(g))
        wanted = resolve_labels(labels, present.tolist())
        tp = np.zeros(len(wanted), dtype=np.int64)
        n_pred = np.zeros(len(wanted), dtype=np.int64)
        n_gt = np.zeros(len(wanted), dtype=np.int64)
        for i, lab in enumerate(wanted):
            pm, gm = p == lab, g == lab
            tp[i] = np.count_nonzero(pm & gm)
            n_pred[i] = np.count_nonzero(pm)
            n_gt[i] = np.count_nonzero(gm)
    return OverlapCounts(tuple(wanted), tp, n_pred, n_gt, int(p.size))


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def overlap_from_counts(
    counts: OverlapCounts,
    spacing: float | Sequence[float] | None = None,
    *,
    ndim: int = 3,
    empty: EmptyPolicy | Mapping[str, object] | None = None,
) -> PerLabelResult:
    """Overlap metrics from (possibly summed) counts.

    Args:
        counts: Output of :func:`overlap_counts`, or a sum of several.
        spacing: Voxel spacing in mm for the volumes (``None``: 1 mm).
        ndim: Number of image axes (to expand a scalar spacing).
        empty: Empty-mask policy.

    Example:
        >>> c = overlap_counts(np.array([[1, 1], [0, 0]]), np.array([[1, 0], [0, 0]]))
        >>> r = overlap_from_counts(c, (0.5, 2.0), ndim=2)
        >>> round(r.value("dice", 1), 4), r.value("volume_pred_mm3", 1)
        (0.6667, 2.0)
    """
    policy = as_empty_policy(empty)
    voxel_mm3 = float(np.prod(normalize_spacing(spacing, ndim)))
    n = len(counts.labels)
    values = {name: np.full(n, np.nan) for name in OVERLAP_METRICS}
    valid = {name: np.zeros(n, dtype=bool) for name in OVERLAP_METRICS}
    status: list[str] = []
    for i in range(n):
        tp = int(counts.tp[i])
        n_p, n_g = int(counts.n_pred[i]), int(counts.n_gt[i])
        n_neg = counts.n_total - n_g
        tn = n_neg - (n_p - tp)
        st = status_of(n_p, n_g)
        status.append(st)
        row = {
            "dice": _ratio(2.0 * tp, n_p + n_g),
            "iou": _ratio(float(tp), n_p + n_g - tp),
            "volume_pred_mm3": n_p * voxel_mm3,
            "volume_gt_mm3": n_g * voxel_mm3,
            "volume_similarity": 1.0 - _ratio(abs(n_p - n_g), n_p + n_g),
            "sensitivity": _ratio(float(tp), n_g),
            "specificity": _ratio(float(tn), n_neg),
        }
        for name, v in row.items():
            if math.isnan(v):
                both = n_p == 0 and n_g == 0 and name != "specificity"
                values[name][i] = policy.both_empty_value(1.0) if both else math.nan
            else:
                values[name][i] = v
                valid[name][i] = True
    worst = {
        "dice": 0.0,
        "iou": 0.0,
        "volume_similarity": 0.0,
        "sensitivity": 0.0,
        "specificity": 0.0,
    }
    return PerLabelResult(
        labels=counts.labels,
        values=values,
        valid=valid,
        status=tuple(status),
        worst=worst,
        conventions={"spacing": normalize_spacing(spacing, ndim), **policy.describe()},
    )


def overlap_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    labels: int | Sequence[int] | None = None,
    spacing: float | Sequence[float] | None = None,
    *,
    empty: EmptyPolicy | Mapping[str, object] | None = None,
) -> PerLabelResult:
    """Dice, IoU, volumes, volume similarity, sensitivity and specificity of every label.

    Args:
        pred: Predicted 2D/3D bool mask or integer label map.
        gt: Reference mask or label map on the same grid.
        labels: Labels to score; default every label present in either map except 0.
        spacing: Voxel spacing in mm (numpy axis order) for the volumes.
        empty: Empty-mask policy (default: NaN when both masks are empty).

    Example:
        >>> gt = np.zeros((4, 4), np.uint8); gt[:2, :2] = 1; gt[2:, 2:] = 2
        >>> pred = gt.copy(); pred[0, 0] = 0
        >>> r = overlap_metrics(pred, gt)
        >>> round(r.value("dice", 1), 4), r.value("dice", 2), r.value("sensitivity", 1)
        (0.8571, 1.0, 0.75)
    """
    counts = overlap_counts(pred, gt, labels)
    return overlap_from_counts(counts, spacing, ndim=np.ndim(pred), empty=empty)
