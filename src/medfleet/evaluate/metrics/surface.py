"""Surface distances of segmentations: HD, HD at a percentile, ASSD, MASD and NSD.

For each label the two directed distance sets (prediction surface -> reference
surface and back) are computed once by :func:`surface_distances`; every metric
is then derived from them by :func:`metrics_from_distances`.
:func:`surface_metrics` does both. No torch; numpy, scipy and ``edt`` only.

Conventions (all explicit parameters; defaults in brackets):

* ``surface`` [``"border"``]: ``"border"`` takes the voxels ``mask & ~erode(mask)``
  (structuring element of ``connectivity``, default 1 = faces; image-edge voxels
  are border voxels) at their centres, each with weight 1. ``"corner-area"``
  takes the corners of the voxel grid whose 2x2(x2) neighbourhood is neither
  empty nor full, each weighted by the area (3D, mm^2) or length (2D, mm) of
  the surface crossing it.
* ``percentile_method`` [``"max-directed"``]: ``"max-directed"`` is the larger of
  the two directed percentiles with linear interpolation; ``"pooled"`` is the
  linear-interpolation percentile of both directions together;
  ``"area-weighted"`` is the larger of the two directed nearest-rank
  percentiles with each element weighted by its area (weights are 1 on a
  ``"border"`` surface). The two linear methods ignore the weights.
* ASSD is the weighted mean of both directions pooled; MASD the mean of the
  two directed weighted means. NSD at ``tau`` is the weight of surface
  elements within ``tau`` mm (``<=``) of the other surface over the total weight.
* ``spacing`` is in mm, numpy axis order; ``empty`` is an
  :class:`~medfleet.evaluate.metrics.conventions.EmptyPolicy`.

Exact algorithm: label bounding boxes, one crop per label (union of prediction
and reference boxes plus a one-voxel frame), surface points in mm, nearest
neighbours with a k-d tree (float64, recomputed from integer offsets), or an
exact Euclidean distance transform when the surfaces are dense
(see :mod:`medfleet.evaluate.metrics._nearest`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from medfleet.evaluate.metrics._borders import (
    border_voxels,
    label_boxes,
    padded_crop,
    surface_elements,
    surfel_area_table,
    union_box,
)
from medfleet.evaluate.metrics._nearest import DISTANCE_METHODS, nearest_distances
from medfleet.evaluate.metrics.conventions import (
    PERCENTILE_METHODS,
    STATUS_BOTH_EMPTY,
    STATUS_OK,
    SURFACES,
    EmptyPolicy,
    MetricInputError,
    as_empty_policy,
    check_pair,
    normalize_spacing,
    resolve_labels,
    status_of,
    structure_rank,
)
from medfleet.evaluate.metrics.results import PerLabelResult

#: Metrics computed by default: HD, HD95, ASSD, MASD and NSD at each tolerance.
DEFAULT_SURFACE_METRICS: tuple[str, ...] = ("hd", "hd95", "assd", "masd", "nsd")
#: Default NSD tolerances in mm.
DEFAULT_NSD_TOLERANCES: tuple[float, ...] = (1.0, 2.0)

#: Label maps whose largest label exceeds this are scanned with ``np.unique``.
MAX_DENSE_LABEL = 1 << 16

_HD_PERCENTILE = re.compile(r"^hd(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class SurfaceDistances:
    """The two directed distance sets of one label.

    Attributes:
        label: The label.
        status: ``"ok"``, ``"both_empty"``, ``"pred_empty"`` or ``"gt_empty"``.
        pred_to_gt: Distance (mm, float64) from each prediction surface element
            to the nearest reference surface element; empty when the prediction
            is empty, ``inf`` everywhere when the reference is empty.
        gt_to_pred: The same from the reference to the prediction.
        pred_weights: Weight of each prediction surface element (1 for
            ``"border"``, area in mm^2 or length in mm for ``"corner-area"``).
        gt_weights: Weight of each reference surface element.
        surface: The surface definition used.
        spacing: Voxel spacing in mm (numpy axis order).
        shape: Shape of the full image (for the diagonal penalty).
        method: Nearest-neighbour algorithm used per direction
            (``"kdtree"``, ``"edt"``, or ``"none"``).
    """

    label: int
    status: str
    pred_to_gt: np.ndarray
    gt_to_pred: np.ndarray
    pred_weights: np.ndarray
    gt_weights: np.ndarray
    surface: str
    spacing: tuple[float, ...]
    shape: tuple[int, ...]
    method: tuple[str, str] = field(default=("none", "none"))


def _surface_points(
    padded: np.ndarray, surface: str, rank: int, spacing: tuple[float, ...]
) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """Surface mask (crop or corner grid), point indices and weights of one padded mask."""
    if surface == "border":
        mask = border_voxels(padded, rank)
        points = _nonzero(mask)
        weights = np.ones(points[0].size, dtype=np.float64)
        return mask, points, weights
    mask, codes = surface_elements(padded)
    points = _nonzero(mask)
    weights = surfel_area_table(spacing)[codes]
    return mask, points, weights


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """``np.nonzero`` in C order, several times faster on large sparse masks."""
    return np.unravel_index(np.flatnonzero(mask), mask.shape)


def _empty_distances(
    label: int, status: str, surface: str, spacing: tuple[float, ...], shape: tuple[int, ...]
) -> SurfaceDistances:
    empty = np.zeros(0, dtype=np.float64)
    return SurfaceDistances(label, status, empty, empty, empty, empty, surface, spacing, shape)


def _check_options(surface: str, method: str) -> None:
    if surface not in SURFACES:
        raise MetricInputError(f"surface {surface!r} is not one of {SURFACES}")
    if method not in DISTANCE_METHODS:
        raise MetricInputError(f"method {method!r} is not one of {DISTANCE_METHODS}")


def surface_distances(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: float | Sequence[float] | None = None,
    labels: int | Sequence[int] | None = None,
    *,
    surface: str = "border",
    connectivity: int = 1,
    method: str = "auto",
    workers: int = -1,
) -> dict[int, SurfaceDistances]:
    """Directed surface distances of every label, computed once.

    Args:
        pred: Predicted 2D/3D bool mask or integer label map.
        gt: Reference mask or label map on the same grid.
        spacing: Voxel spacing in mm, numpy axis order (``None``: 1 mm).
        labels: Labels to score; default every label present in either map except 0.
        surface: ``"border"`` or ``"corner-area"``.
        connectivity: Erosion connectivity of the ``"border"`` surface (rank
            1..ndim or neighbour count 4/8, 6/18/26); ignored for ``"corner-area"``.
        method: ``"auto"``, ``"kdtree"`` or ``"edt"`` (see module docs).
        workers: Threads for nearest-neighbour search (-1: all cores).

    Returns:
        Label -> :class:`SurfaceDistances`, in ascending label order.

    Example:
        >>> gt = np.zeros((6, 6), bool); gt[1:4, 1:4] = True
        >>> pred = np.zeros((6, 6), bool); pred[1:4, 2:5] = True
        >>> d = surface_distances(pred, gt, spacing=(1.0, 2.0))[1]
        >>> sorted(set(d.pred_to_gt.tolist())), d.status
        ([0.0, 1.0, 2.0], 'ok')
    """
    pred_arr, gt_arr = check_pair(pred, gt)
    ndim = pred_arr.ndim
    sp = normalize_spacing(spacing, ndim)
    _check_options(surface, method)
    rank = structure_rank(connectivity, ndim)
    shape = tuple(int(n) for n in pred_arr.shape)

    if labels is None:
        candidates = candidate_labels(pred_arr, gt_arr)
    else:
        candidates = resolve_labels(labels, [])
    pred_boxes = label_boxes(pred_arr, candidates)
    gt_boxes = label_boxes(gt_arr, candidates)
    if labels is None:  # score only the labels present in either map
        wanted = tuple(
            lab for lab in candidates if pred_boxes[lab] is not None or gt_boxes[lab] is not None
        )
    else:
        wanted = candidates

    out: dict[int, SurfaceDistances] = {}
    for label in wanted:
        pbox, gbox = pred_boxes[label], gt_boxes[label]
        status = status_of(int(pbox is not None), int(gbox is not None))
        if status == STATUS_BOTH_EMPTY:
            out[label] = _empty_distances(label, status, surface, sp, shape)
            continue
        box = union_box(pbox, gbox)
        assert box is not None
        empty = np.zeros(0, dtype=np.float64)
        p_mask = p_pts = g_mask = g_pts = None
        p_w = g_w = empty
        if pbox is not None:
            p_mask, p_pts, p_w = _surface_points(
                padded_crop(pred_arr, box, label), surface, rank, sp
            )
        if gbox is not None:
            g_mask, g_pts, g_w = _surface_points(padded_crop(gt_arr, box, label), surface, rank, sp)
        if status != STATUS_OK:
            inf_p = np.full(p_w.size, np.inf)
            inf_g = np.full(g_w.size, np.inf)
            out[label] = SurfaceDistances(label, status, inf_p, inf_g, p_w, g_w, surface, sp, shape)
            continue
        assert p_mask is not None and g_mask is not None and p_pts is not None and g_pts is not None
        d_pg, m_pg = nearest_distances(p_pts, g_pts, g_mask, sp, method, workers)
        d_gp, m_gp = nearest_distances(g_pts, p_pts, p_mask, sp, method, workers)
        out[label] = SurfaceDistances(
            label, status, d_pg, d_gp, p_w, g_w, surface, sp, shape, (m_pg, m_gp)
        )
    return out


def candidate_labels(pred: np.ndarray, gt: np.ndarray) -> tuple[int, ...]:
    """Labels that may be present in either map, excluding 0 (a superset; absent ones are dropped).

    Bool maps give label 1; integer maps give ``1..max`` (or their distinct values
    when the maximum is very large).

    Example:
        >>> candidate_labels(np.array([[0, 3]]), np.array([[1, 0]]))
        (1, 2, 3)
    """
    tops = [1 if a.dtype == bool else (int(a.max()) if a.size else 0) for a in (pred, gt)]
    top = max(tops)
    if top <= MAX_DENSE_LABEL:
        return tuple(range(1, top + 1))
    values = np.union1d(np.unique(pred), np.unique(gt))
    return tuple(int(v) for v in values if v != 0)


def _parse_metrics(
    metrics: Sequence[str], nsd_tolerances: Sequence[float]
) -> list[tuple[str, str, float]]:
    """(output name, kind, parameter) for each requested metric."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    parsed: list[tuple[str, str, float]] = []
    for name in metrics:
        key = name.lower()
        match = _HD_PERCENTILE.match(key)
        if key in ("hd", "assd", "masd"):
            parsed.append((key, key, math.nan))
        elif match:
            p = float(match.group(1))
            if not 0 <= p <= 100:
                raise MetricInputError(f"metric {name!r}: the percentile must be in [0, 100]")
            parsed.append((key, "hdp", p))
        elif key == "nsd":
            if not len(nsd_tolerances):
                raise MetricInputError("metric 'nsd' needs at least one tolerance (nsd_tolerances)")
            for tau in nsd_tolerances:
                t = float(tau)
                if not (math.isfinite(t) and t >= 0):
                    raise MetricInputError(f"NSD tolerance {tau!r} must be a finite number >= 0 mm")
                parsed.append((nsd_name(t), "nsd", t))
        else:
            raise MetricInputError(
                f"unknown surface metric {name!r} (fix: use hd, hd95 or another 'hd<percentile>', "
                "assd, masd, nsd)"
            )
    return parsed


def nsd_name(tau: float) -> str:
    """Result key of the NSD at tolerance ``tau`` mm.

    Example:
        >>> nsd_name(1.0), nsd_name(0.5)
        ('nsd_1mm', 'nsd_0.5mm')
    """
    return f"nsd_{float(tau):g}mm"


def _linear_percentile(d: np.ndarray, p: float) -> float:
    return float(np.percentile(d, p))


def weighted_nearest_rank(d: np.ndarray, w: np.ndarray, p: float) -> float:
    """Nearest-rank percentile of ``d`` with weights ``w``.

    Elements are sorted by (distance, weight); the result is the first distance
    whose cumulative weight fraction reaches ``p / 100``.

    Example:
        >>> weighted_nearest_rank(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 2.0]), 50)
        2.0
    """
    order = np.lexsort((w, d))
    ds, ws = d[order], w[order]
    cum = np.cumsum(ws) / np.sum(ws)
    idx = int(np.searchsorted(cum, p / 100.0))
    return float(ds[min(idx, ds.size - 1)])


def _directed_percentile(d: np.ndarray, w: np.ndarray, p: float, method: str) -> float:
    if method == "area-weighted":
        return weighted_nearest_rank(d, w, p)
    return _linear_percentile(d, p)


def _ok_metric(dist: SurfaceDistances, kind: str, param: float, percentile_method: str) -> float:
    d1, d2 = dist.pred_to_gt, dist.gt_to_pred
    w1, w2 = dist.pred_weights, dist.gt_weights
    if kind == "hd":
        return float(max(d1.max(), d2.max()))
    if kind == "hdp":
        if percentile_method == "pooled":
            return _linear_percentile(np.concatenate([d1, d2]), param)
        return max(
            _directed_percentile(d1, w1, param, percentile_method),
            _directed_percentile(d2, w2, param, percentile_method),
        )
    if dist.surface == "border":
        # Unit weights: plain sums avoid multiplying by ones.
        s1, s2, n1, n2 = float(d1.sum()), float(d2.sum()), float(d1.size), float(d2.size)
    else:
        s1, s2 = float(np.dot(d1, w1)), float(np.dot(d2, w2))
        n1, n2 = float(w1.sum()), float(w2.sum())
    if kind == "assd":
        return (s1 + s2) / (n1 + n2)
    if kind == "masd":
        return 0.5 * (s1 / n1 + s2 / n2)
    if kind == "nsd":
        if dist.surface == "border":
            hit = float(np.count_nonzero(d1 <= param) + np.count_nonzero(d2 <= param))
        else:
            hit = float(w1[d1 <= param].sum() + w2[d2 <= param].sum())
        return hit / (n1 + n2)
    raise AssertionError(kind)


def metrics_from_distances(
    distances: Mapping[int, SurfaceDistances],
    *,
    metrics: Sequence[str] = DEFAULT_SURFACE_METRICS,
    nsd_tolerances: Sequence[float] = DEFAULT_NSD_TOLERANCES,
    percentile_method: str = "max-directed",
    empty: EmptyPolicy | Mapping[str, object] | None = None,
) -> PerLabelResult:
    """Derive surface metrics from precomputed directed distances.

    Args:
        distances: Output of :func:`surface_distances`.
        metrics: Any of ``"hd"``, ``"hd<p>"`` (HD at percentile ``p``, e.g.
            ``"hd95"``), ``"assd"``, ``"masd"``, ``"nsd"`` (one value per tolerance,
            named ``"nsd_<tau>mm"``).
        nsd_tolerances: NSD tolerances in mm.
        percentile_method: ``"max-directed"``, ``"pooled"`` or ``"area-weighted"``.
        empty: Empty-mask policy (default :class:`EmptyPolicy`).

    Returns:
        A :class:`PerLabelResult` with one float64 value per label and metric.

    Example:
        >>> gt = np.zeros((8, 8), bool); gt[2:6, 2:6] = True
        >>> d = surface_distances(np.roll(gt, 1, axis=0), gt)
        >>> r = metrics_from_distances(d, metrics=("hd", "nsd"), nsd_tolerances=(0.5,))
        >>> r.value("hd", 1), r.value("nsd_0.5mm", 1)
        (1.0, 0.5)
    """
    if percentile_method not in PERCENTILE_METHODS:
        raise MetricInputError(
            f"percentile_method {percentile_method!r} is not one of {PERCENTILE_METHODS}"
        )
    policy = as_empty_policy(empty)
    parsed = _parse_metrics(metrics, nsd_tolerances)
    labels = sorted(distances)
    n = len(labels)
    values = {name: np.full(n, np.nan) for name, _, _ in parsed}
    valid = {name: np.zeros(n, dtype=bool) for name, _, _ in parsed}
    status: list[str] = []
    conventions: dict[str, object] = {"percentile_method": percentile_method, **policy.describe()}
    for i, label in enumerate(labels):
        dist = distances[label]
        status.append(dist.status)
        conventions.setdefault("surface", dist.surface)
        conventions.setdefault("spacing", dist.spacing)
        for name, kind, param in parsed:
            if dist.status == STATUS_OK:
                values[name][i] = _ok_metric(dist, kind, param, percentile_method)
                valid[name][i] = True
            elif dist.status == STATUS_BOTH_EMPTY:
                values[name][i] = policy.both_empty_value(1.0 if kind == "nsd" else 0.0)
            elif kind == "nsd":
                values[name][i] = 0.0  # no surface element can lie near an empty surface
                valid[name][i] = True
            else:
                values[name][i] = policy.one_empty_distance(dist.shape, dist.spacing)
    worst = {name: (0.0 if kind == "nsd" else math.inf) for name, kind, _ in parsed}
    return PerLabelResult(
        labels=tuple(labels),
        values=values,
        valid=valid,
        status=tuple(status),
        worst=worst,
        conventions=conventions,
    )


def surface_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: float | Sequence[float] | None = None,
    labels: int | Sequence[int] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_SURFACE_METRICS,
    nsd_tolerances: Sequence[float] = DEFAULT_NSD_TOLERANCES,
    percentile_method: str = "max-directed",
    surface: str = "border",
    connectivity: int = 1,
    empty: EmptyPolicy | Mapping[str, object] | None = None,
    method: str = "auto",
    workers: int = -1,
) -> PerLabelResult:
    """HD, HD at percentiles, ASSD, MASD and NSD of every label in one call.

    Equivalent to :func:`metrics_from_distances` applied to
    :func:`surface_distances`; see the module documentation for every convention.

    Example:
        >>> gt = np.zeros((10, 10, 10), bool); gt[2:7, 2:7, 2:7] = True
        >>> pred = np.zeros_like(gt); pred[3:8, 2:7, 2:7] = True
        >>> r = surface_metrics(pred, gt, spacing=(2.0, 1.0, 1.0))
        >>> r.value("hd", 1), r.value("hd95", 1), r.value("nsd_2mm", 1)
        (2.0, 2.0, 1.0)
    """
    if percentile_method not in PERCENTILE_METHODS:
        raise MetricInputError(
            f"percentile_method {percentile_method!r} is not one of {PERCENTILE_METHODS}"
        )
    _parse_metrics(metrics, nsd_tolerances)  # fail on bad names before the heavy work
    distances = surface_distances(
        pred,
        gt,
        spacing,
        labels,
        surface=surface,
        connectivity=connectivity,
        method=method,
        workers=workers,
    )
    result = metrics_from_distances(
        distances,
        metrics=metrics,
        nsd_tolerances=nsd_tolerances,
        percentile_method=percentile_method,
        empty=empty,
    )
    conventions = dict(result.conventions)
    conventions["surface"] = surface
    conventions["spacing"] = normalize_spacing(spacing, np.ndim(pred))
    if surface == "border":
        conventions["connectivity"] = structure_rank(connectivity, np.ndim(pred))
    return PerLabelResult(
        labels=result.labels,
        values=result.values,
        valid=result.valid,
        status=result.status,
        worst=result.worst,
        conventions=conventions,
    )
