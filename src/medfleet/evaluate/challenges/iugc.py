"""IUGC (intrapartum ultrasound grand challenge): standard plane, PS/FH segmentation, biometry.

Two modes (``--preset-option mode=...``):

* ``compare`` (default): predicted masks (``--pred``) against reference masks (``--gt``),
  with three parts, each optional except the segmentation masks:

  * **Classification** of the standard plane (``classification_pred`` /
    ``classification_gt`` tables): accuracy, AUC, F1 and MCC.
  * **Segmentation** of the pubic symphysis (PS, ``ps_label``, default 1), the fetal head
    (FH, ``head_label``, default 2) and both (their union), per image: Dice with +1
    smoothing ``(2 |P & G| + 1) / (|P| + |G| + 1)``; HD, the Hausdorff distance between
    the *sets of foreground pixels* (SimpleITK ``HausdorffDistanceImageFilter``); ASD, the
    mean over the contour pixels of both masks of their distance to the other mask's
    contour, where a contour pixel is a foreground pixel with a background 8-neighbour
    inside the image (SimpleITK's signed Maurer distance map is 0 exactly there). An empty
    prediction scores DSC 0, HD 100, ASD 100. An empty reference with a non-empty
    prediction makes the official code fail: such a part is reported (status
    ``gt_empty``, listed in ``warnings``) and scored like an empty prediction.
  * **Biometry** from the masks: |delta AoP| (degrees) and |delta HSD| (pixels, or mm
    with ``--units mm``).

* ``biometry``: single masks (``--pred`` only, no ``--gt``): AoP, HSD and the landmarks
  (PS endpoints, HSD point, tangency point) of each mask.

The dataset's own files store the PS as 7 and the FH as 8 (the organisers' loader maps
them to 1 and 2): score them with ``ps_label=7`` and ``head_label=8``.

Biometry variants (``biometry=...``):

* ``contour`` (default; the starting kit's ``evaluator.Biometry``), by
  :func:`intrapartum_geometry`: the largest outer contour of each structure (by number
  of contour points, not area); the PS endpoints are the farthest pair of its contour
  points and the one with the larger x is the distal point ``p1``; HSD is the distance
  from ``p1`` to the nearest head contour point; the tangent point ``t`` is a head
  contour point with every other head point on one side of the line ``p1-t`` (of the
  two tangents, the one with the larger angle); AoP is the angle at ``p1`` between
  ``p1 -> p2`` and ``p1 -> t``.
* ``ellipse-official`` (the organisers' ``eval/cal_aop.py`` + ``eval/ellipse.py``, needs
  OpenCV), by :func:`intrapartum_geometry_official`: ``cv2.fitEllipse`` on the
  ``cv2.approxPolyDP(contour, 1)`` vertices of each structure's contour with the most
  points (more than 5 vertices needed); the PS endpoint is
  ``centre + (h / 2) (cos(theta - 90), sin(theta - 90))`` on OpenCV's h axis with the
  degree-to-radian factor 0.01745; ONE fixed root of the tangent from that endpoint to
  the FH ellipse, solved in the FH ellipse's frame (slope 0 when there is no real
  root); AoP is the angle between the PS axis and that tangent. See
  :mod:`medfleet.evaluate.challenges._iugc_official`. The official code has no HSD:
  medfleet adds the distance from the PS endpoint to the fitted FH ellipse.
* ``ellipse`` (medfleet's own, not the official algorithm), by
  :func:`intrapartum_geometry_ellipse`: ellipses fitted by direct least squares
  (Halir-Flusser) to *all* points of both largest contours; the PS endpoints are the
  exact (``pi / 180``) major-axis ends and ``p1`` is the one with the larger x; of the
  two tangents from ``p1`` to the head ellipse, the one with the larger angle; ``p1``
  inside the head ellipse gives no AoP. It differs from ``ellipse-official`` in the fit
  (all contour points vs approxPolyDP vertices; Halir-Flusser vs OpenCV), the angle
  factor (exact vs 0.01745) and the root (the larger angle vs one fixed root, which is
  the smaller-angle tangent for some head orientations). Measured AoP differences: median
  0.19 degrees, maximum 2.0 degrees on 80 phantom masks of 512 x 512 (7 above 1 degree);
  up to 48 degrees on random PS/FH layouts where the fixed root is the other tangent
  (docs/challenges.md).

A missing structure makes the official biometry fail: the values are reported as missing,
not as numbers.

Source: the IUGC challenge (MICCAI 2024/2025) and the PSFHS / FH-PS-AOP grand-challenge
evaluation it derives from (Dice +1 smoothing, HD and ASD with SimpleITK, DSC 0 / HD 100 /
ASD 100 for an empty prediction). See docs/challenges.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, optimize
from scipy.spatial import ConvexHull, QhullError, cKDTree

from medfleet.errors import InputFileError, MedfleetError, OptionError
from medfleet.evaluate.challenges._contours import contour_mask, largest_contour
from medfleet.evaluate.challenges._inputs import (
    MaskPair,
    MaskPlan,
    binary_cell,
    plan_mask_pairs,
    read_label_map,
)
from medfleet.evaluate.challenges._iugc_official import OFFICIAL_SHAPE, official_aop, require_cv2
from medfleet.evaluate.challenges.base import (
    Preset,
    PresetOption,
    PresetOutcome,
    PresetRun,
    case_error_row,
    score_cases,
)
from medfleet.evaluate.runner.cases import CaseMismatchError, list_case_files
from medfleet.evaluate.runner.config import meta_spacing
from medfleet.evaluate.runner.segmentation import resample_nearest
from medfleet.geometry import Ellipse, fit_ellipse

__all__ = [
    "BIOMETRY_VARIANTS",
    "PRESET",
    "IntrapartumGeometry",
    "intrapartum_geometry",
    "intrapartum_geometry_ellipse",
    "intrapartum_geometry_official",
    "iugc_asd",
    "iugc_dice",
    "iugc_hd",
    "iugc_parts",
    "iugc_segmentation_metrics",
]

EMPTY_PRED = {"dsc": 0.0, "hd": 100.0, "asd": 100.0}


# ---------------------------------------------------------------- segmentation metrics


def iugc_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice with +1 smoothing, ``(2 |P & G| + 1) / (|P| + |G| + 1)``.

    Example:
        >>> a = np.zeros((4, 4), bool); a[:2, :2] = True
        >>> iugc_dice(a, a), iugc_dice(a & False, a & False)
        (1.0, 1.0)
    """
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    return float((2.0 * np.count_nonzero(p & g) + 1.0) / (p.sum() + g.sum() + 1.0))


def _scaled_edt(background: np.ndarray, spacing: Sequence[float] | None) -> np.ndarray:
    return ndimage.distance_transform_edt(background, sampling=spacing)


def iugc_hd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Hausdorff distance between the sets of foreground pixels (both must be non-empty).

    Example:
        >>> g = np.zeros((9, 9), bool); g[2:7, 2:7] = True
        >>> p = np.zeros_like(g); p[4, 4] = True
        >>> iugc_hd(p, g)  # every pixel of g is within 2*sqrt(2) of p; p lies inside g
        2.8284271247461903
    """
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    if not p.any() or not g.any():
        raise ValueError("the Hausdorff distance needs two non-empty masks")
    d_to_g = _scaled_edt(~g, spacing)[p].max()
    d_to_p = _scaled_edt(~p, spacing)[g].max()
    return float(max(d_to_g, d_to_p))


def iugc_asd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Symmetric mean distance between the 8-connected contours of two non-empty masks.

    Example:
        >>> g = np.zeros((10, 10), bool); g[2:6, 2:6] = True
        >>> iugc_asd(np.roll(g, 1, axis=1), g)
        0.5
    """
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    cp, cg = contour_mask(p, 2, "inside"), contour_mask(g, 2, "inside")
    if not cp.any() or not cg.any():
        raise ValueError("the ASD needs two masks with a contour inside the image")
    total = _scaled_edt(~cg, spacing)[cp].sum() + _scaled_edt(~cp, spacing)[cg].sum()
    return float(total / (cp.sum() + cg.sum()))


def iugc_parts(ps_label: int = 1, head_label: int = 2) -> dict[str, tuple[int, ...]]:
    """The scored parts and their labels: PS, head and both.

    Example:
        >>> iugc_parts(7, 8)
        {'ps': (7,), 'head': (8,), 'all': (7, 8)}
    """
    return {"ps": (ps_label,), "head": (head_label,), "all": (ps_label, head_label)}


def iugc_segmentation_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    ps_label: int = 1,
    head_label: int = 2,
) -> dict[str, Any]:
    """DSC, HD and ASD of PS, head and both, with the official empty-mask rules.

    Args:
        pred: Predicted label map.
        gt: Reference label map.
        spacing: ``None`` for pixels, or mm per array axis.
        ps_label: Label of the pubic symphysis (7 in the dataset's own files).
        head_label: Label of the fetal head (8 in the dataset's own files).

    Returns:
        ``{"dsc_ps", "hd_ps", "asd_ps", ..., "status_ps", ...}`` plus the means over the
        three parts ``dsc``, ``hd``, ``asd``.

    Example:
        >>> gt = np.zeros((12, 12), np.uint8); gt[2:5, 2:9] = 1; gt[6:11, 3:10] = 2
        >>> m = iugc_segmentation_metrics(np.where(gt == 1, 1, 0), gt)
        >>> m["dsc_ps"], m["dsc_head"], m["hd_head"], m["status_head"]
        (1.0, 0.0, 100.0, 'pred_empty')
        >>> ps7 = np.where(gt == 1, 7, 0)
        >>> iugc_segmentation_metrics(ps7, ps7, ps_label=7, head_label=8)["dsc_ps"]
        1.0
    """
    p, g = np.asarray(pred), np.asarray(gt)
    parts = iugc_parts(ps_label, head_label)
    out: dict[str, Any] = {}
    for part, labels in parts.items():
        pm, gm = np.isin(p, labels), np.isin(g, labels)
        if not pm.any():
            status, values = "pred_empty", dict(EMPTY_PRED)
        elif not gm.any():
            status, values = "gt_empty", dict(EMPTY_PRED)
        else:
            status = "ok"
            values = {
                "dsc": iugc_dice(pm, gm),
                "hd": iugc_hd(pm, gm, spacing),
                "asd": iugc_asd(pm, gm, spacing),
            }
        for metric, value in values.items():
            out[f"{metric}_{part}"] = float(value)
        out[f"status_{part}"] = status
    for metric in ("dsc", "hd", "asd"):
        out[metric] = float(np.mean([out[f"{metric}_{part}"] for part in parts]))
    return out


# ---------------------------------------------------------------- biometry


@dataclass(frozen=True)
class IntrapartumGeometry:
    """AoP and HSD of one label map and the points that define them (x = column, y = row).

    Attributes:
        aop: Angle of progression in degrees (NaN when undefined).
        hsd: Head-symphysis distance (pixels, or mm with a spacing; NaN when undefined).
        p1: Distal PS endpoint (the one with the larger x).
        p2: The other PS endpoint.
        tangent: Tangent point on the head contour.
        status: ``"ok"``, ``"missing_ps"``, ``"missing_head"``, ``"missing_both"`` or
            ``"no_tangent"`` (``p1`` inside the head's convex hull: AoP undefined) or
            ``"degenerate_ps"`` (a one-pixel symphysis: no axis); the ellipse variants add
            ``"no_ellipse"`` (``"no_ellipse_ps"``, ``"no_ellipse_head"``,
            ``"no_ellipse_both"`` for ``ellipse-official``: 5 or fewer approxPolyDP
            vertices), and ``ellipse-official`` adds ``"no_real_tangent"`` (the official
            slope-0 fallback: a number, but not a tangent angle) and ``"undefined"``.
        hsd_point: The head point nearest to ``p1`` (the other end of the HSD).
        official_note: Why the official code could not compute the value medfleet
            returns, or returns a value that is not a tangent angle (``None``: it can).
    """

    aop: float
    hsd: float
    p1: tuple[float, float] | None
    p2: tuple[float, float] | None
    tangent: tuple[float, float] | None
    status: str
    hsd_point: tuple[float, float] | None = None
    official_note: str | None = None


def _angle(v1: np.ndarray, v2: np.ndarray) -> float:
    cross = v1[0] * v2[1] - v1[1] * v2[0]
    return math.degrees(math.atan2(abs(cross), float(np.dot(v1, v2))))


def _xy(contour_rc: np.ndarray, spacing: Sequence[float] | None) -> np.ndarray:
    sp = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    return np.c_[contour_rc[:, 1] * sp[1], contour_rc[:, 0] * sp[0]].astype(np.float64)


def _farthest_pair(points: np.ndarray) -> tuple[int, int]:
    """Indices ``i < j`` of the farthest pair (the first in ``(i, j)`` order on ties)."""
    n = len(points)
    index = np.arange(n)
    best, pair = -1.0, (0, 0)
    for start in range(0, n, 512):
        rows = index[start : start + 512]
        d2 = ((points[rows, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
        d2[index[None, :] <= rows[:, None]] = -1.0
        k = int(np.argmax(d2))
        if d2.flat[k] > best:
            best = float(d2.flat[k])
            pair = (int(rows[k // n]), int(k % n))
    return pair


def _endpoints(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p1, p2)``: p1 has the larger x (then the larger y on a tie)."""
    return (a, b) if (a[0], a[1]) > (b[0], b[1]) else (b, a)


def _tangent(p1: np.ndarray, p2: np.ndarray, head: np.ndarray) -> np.ndarray | None:
    """Head point with every head point on one side of line p1-t; the larger angle wins."""
    try:
        candidates = head[ConvexHull(head).vertices]
    except (QhullError, ValueError):
        candidates = np.unique(head, axis=0)
    rel = candidates - p1
    ref = p2 - p1
    best, best_angle = None, -1.0
    for t in rel:
        cross = t[0] * rel[:, 1] - t[1] * rel[:, 0]
        scale = max(1.0, float(np.abs(rel).max()))
        tol = 1e-9 * scale * scale
        if (cross >= -tol).all() or (cross <= tol).all():
            if not np.any(t):
                continue
            angle = _angle(ref, t)
            if angle > best_angle:
                best, best_angle = t, angle
    return None if best is None else best + p1


def _missing(ps: np.ndarray | None, head: np.ndarray | None) -> IntrapartumGeometry:
    """The result when the PS or head contour (or both) is absent."""
    status = (
        "missing_both"
        if ps is None and head is None
        else ("missing_ps" if ps is None else "missing_head")
    )
    return IntrapartumGeometry(math.nan, math.nan, None, None, None, status)


def intrapartum_geometry(
    labels: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    ps_label: int = 1,
    head_label: int = 2,
) -> IntrapartumGeometry:
    """AoP and HSD from a PS/FH label map by the contour rules of the IUGC biometry.

    Args:
        labels: 2-D label map.
        spacing: ``None`` for pixels, or mm per array axis ``(row, column)``.
        ps_label: Label of the pubic symphysis.
        head_label: Label of the fetal head.

    Returns:
        An :class:`IntrapartumGeometry`; a missing structure gives NaN values and a status.

    Example:
        >>> lab = np.zeros((40, 60), np.uint8)
        >>> lab[10, 5:26] = 1                       # PS: a horizontal segment, p1 = (25, 10)
        >>> rows, cols = np.mgrid[:40, :60]
        >>> lab[(cols - 40) ** 2 + (rows - 10) ** 2 <= 25] = 2   # head: disc at (40, 10)
        >>> g = intrapartum_geometry(lab)
        >>> g.p1, g.hsd
        ((25.0, 10.0), 10.0)
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"intrapartum biometry needs a 2-D label map, got shape {lab.shape}")
    ps = largest_contour(lab == ps_label)
    head = largest_contour(lab == head_label)
    if ps is None or head is None:
        return _missing(ps, head)
    ps_xy, head_xy = _xy(ps, spacing), _xy(head, spacing)
    i, j = _farthest_pair(ps_xy)
    p1, p2 = _endpoints(ps_xy[i], ps_xy[j])
    distance, nearest = cKDTree(head_xy).query(p1, k=1)
    hsd = float(distance)
    near = _pt(head_xy[int(nearest)])
    point = _pt(p1), _pt(p2)
    if i == j:
        return IntrapartumGeometry(math.nan, hsd, *point, None, "degenerate_ps", near)
    t = _tangent(p1, p2, head_xy)
    if t is None:
        return IntrapartumGeometry(math.nan, hsd, *point, None, "no_tangent", near)
    aop = _angle(p2 - p1, t - p1)
    return IntrapartumGeometry(aop, hsd, *point, _pt(t), "ok", near)


def _pt(xy: Any) -> tuple[float, float]:
    return float(xy[0]), float(xy[1])


def intrapartum_geometry_ellipse(
    labels: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    ps_label: int = 1,
    head_label: int = 2,
) -> IntrapartumGeometry:
    """The ellipse-fit variant: ellipses fitted to both largest contours.

    The PS endpoints are the ends of the fitted major axis (``p1`` the one with the larger
    x); HSD is the distance from ``p1`` to the head ellipse; the tangent from ``p1`` to
    the head ellipse with the larger angle gives AoP.

    Example:
        >>> rows, cols = np.mgrid[:80, :120]
        >>> lab = np.zeros((80, 120), np.uint8)
        >>> lab[((cols - 30) / 15.0) ** 2 + ((rows - 20) / 4.0) ** 2 <= 1] = 1
        >>> lab[(cols - 75) ** 2 + (rows - 45) ** 2 <= 20 ** 2] = 2
        >>> g = intrapartum_geometry_ellipse(lab)
        >>> g.status, 19.0 < g.hsd < 21.0, 160 < g.aop < 180
        ('ok', True, True)
    """
    lab = np.asarray(labels)
    ps = largest_contour(lab == ps_label)
    head = largest_contour(lab == head_label)
    if ps is None or head is None:
        return _missing(ps, head)
    try:
        ps_e = fit_ellipse(_xy(ps, spacing))
        head_e = fit_ellipse(_xy(head, spacing))
    except ValueError:
        return IntrapartumGeometry(math.nan, math.nan, None, None, None, "no_ellipse")
    a, b = (np.asarray(p, dtype=np.float64) for p in ps_e.axis_endpoints())
    p1, p2 = _endpoints(a, b)
    theta = np.linspace(0.0, 2.0 * np.pi, 8192, endpoint=False)
    boundary = np.array([head_e.point(float(s)) for s in theta])
    dist = np.sqrt(((boundary - p1) ** 2).sum(axis=1))
    hsd = float(dist.min())
    near = _pt(boundary[int(np.argmin(dist))])
    point = _pt(p1), _pt(p2)
    if head_e.level(float(p1[0]), float(p1[1])) <= 1.0:
        return IntrapartumGeometry(math.nan, hsd, *point, None, "no_tangent", near)
    tangents = [np.asarray(t) for t in head_e.tangent_points(float(p1[0]), float(p1[1]))]
    angles = [_angle(p2 - p1, t - p1) for t in tangents]
    k = int(np.argmax(angles))
    return IntrapartumGeometry(angles[k], hsd, *point, _pt(tangents[k]), "ok", near)


def _nearest_on_ellipse(
    ellipse: Ellipse,
    point: tuple[float, float],
    scale: tuple[float, float],
) -> tuple[float, tuple[float, float]]:
    """Distance from ``point`` to an ellipse and the nearest ellipse point.

    The ellipse and the point are in pixels; distances are measured after scaling x by
    ``scale[0]`` and y by ``scale[1]`` (mm per pixel), so an anisotropic pixel is handled
    exactly.
    """
    (px, py), (sx, sy) = point, scale

    def dist2(t: Any) -> Any:
        x, y = ellipse.points(t)
        return ((x - px) * sx) ** 2 + ((y - py) * sy) ** 2

    grid = np.linspace(0.0, 2.0 * np.pi, 4096, endpoint=False)
    k = int(np.argmin(dist2(grid)))
    step = grid[1] - grid[0]
    best = optimize.minimize_scalar(
        lambda t: float(dist2(t)),
        bounds=(grid[k] - step, grid[k] + step),
        method="bounded",
        options={"xatol": 1e-12},
    )
    t = float(best.x) if best.fun <= dist2(grid[k]) else float(grid[k])
    x, y = ellipse.points(t)
    return math.sqrt(float(dist2(t))), (float(x), float(y))


def intrapartum_geometry_official(
    labels: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    ps_label: int = 1,
    head_label: int = 2,
) -> IntrapartumGeometry:
    """The official IUGC 2024 AoP (``eval/cal_aop.py`` + ``eval/ellipse.py``, with OpenCV).

    AoP, the PS endpoints and the tangency point are those of
    :func:`~medfleet.evaluate.challenges._iugc_official.official_aop`, computed in pixels
    as the official code does (``p1`` is its vertex ``d2``, ``p2`` its ``d1``). The
    official code has no HSD: here HSD is the distance from ``p1`` to the fitted FH
    ellipse (in mm with a spacing, anisotropic pixels included) and ``hsd_point`` the
    nearest ellipse point. Points are in the units of HSD (``x * spacing[1]``,
    ``y * spacing[0]`` with a spacing).

    Args:
        labels: 2-D label map.
        spacing: ``None`` for pixels, or mm per array axis ``(row, column)``.
        ps_label: Label of the pubic symphysis.
        head_label: Label of the fetal head.

    Raises:
        MedfleetError: OpenCV is not installed (``pip install "medfleet[opencv]"``).

    Example:
        >>> rows, cols = np.mgrid[:200, :200]
        >>> lab = np.zeros((200, 200), np.uint8)
        >>> lab[((cols - 50) / 30.0) ** 2 + ((rows - 50) / 8.0) ** 2 <= 1] = 1
        >>> lab[(cols - 120) ** 2 + (rows - 110) ** 2 <= 45 ** 2] = 2
        >>> try:
        ...     g = intrapartum_geometry_official(lab)
        ...     out = (g.status, round(g.aop), round(g.hsd))
        ... except MedfleetError:  # OpenCV is not installed
        ...     out = ("ok", 162, 27)
        >>> out  # HSD: |(79.9, 50) - (120, 110)| - 45 = 27.2
        ('ok', 162, 27)
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"intrapartum biometry needs a 2-D label map, got shape {lab.shape}")
    res = official_aop(lab, ps_label, head_label)
    if res.geometry is None:
        return IntrapartumGeometry(math.nan, math.nan, None, None, None, res.status)
    geo = res.geometry
    sy, sx = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    head = res.head.ellipse
    assert head is not None
    hsd, near = _nearest_on_ellipse(head.to_ellipse(), geo.d2, (sx, sy))

    def mm(p: tuple[float, float]) -> tuple[float, float]:
        return p[0] * sx, p[1] * sy

    notes = []
    if not geo.real_tangent:
        notes.append(
            "the PS endpoint lies inside the FH ellipse: no real tangent, the official code "
            "falls back to slope 0 and its AoP is not a tangent angle"
        )
    if geo.acos_clipped:
        notes.append("the cosine of the AoP rounds past +-1, where the official math.acos fails")
    return IntrapartumGeometry(
        geo.aop,
        hsd,
        mm(geo.d2),
        mm(geo.d1),
        mm(geo.tangent),
        res.status,
        mm(near),
        "; ".join(notes) or None,
    )


#: ``biometry=...`` option value -> the function computing AoP and HSD of one label map.
BIOMETRY_VARIANTS: dict[str, Callable[..., IntrapartumGeometry]] = {
    "contour": intrapartum_geometry,
    "ellipse-official": intrapartum_geometry_official,
    "ellipse": intrapartum_geometry_ellipse,
}


# ---------------------------------------------------------------- preset run


def _classification_part(run: PresetRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Standard-plane classification metrics from the two optional tables."""
    from medfleet.evaluate.challenges._inputs import read_table
    from medfleet.evaluate.metrics.classification import (
        accuracy,
        binary_auc,
        f1_score,
        matthews_corrcoef,
    )

    pred_path, gt_path = run.options["classification_pred"], run.options["classification_gt"]
    if pred_path is None and gt_path is None:
        return {}, []
    if pred_path is None or gt_path is None:
        raise OptionError(
            "give both classification_pred and classification_gt (CSV tables) or neither"
        )
    pred = read_table(pred_path, (), "classification_pred")
    gt = read_table(gt_path, ("label",), "classification_gt")
    missing = sorted(set(gt.rows) - set(pred.rows))
    if missing and not run.config.allow_missing:
        raise InputFileError(
            f"classification_pred lacks {len(missing)} case(s) of classification_gt: "
            f"{', '.join(missing[:10])} (fix: add them or pass --allow-missing)"
        )
    y_true, y_pred, scores, rows = [], [], [], []
    for c in sorted(gt.rows):
        t = binary_cell(gt.rows[c]["label"], c, "label")
        row = pred.rows.get(c)
        score = math.nan
        if row is None:
            p, score = 1 - t, float(1 - t)
        elif "score" in row and row["score"] != "":
            score = _probability(row["score"], c)
            p = int(score >= run.options["threshold"])
        elif "prob_1" in row and row["prob_1"] != "":
            score = _probability(row["prob_1"], c)
            p = int(score >= run.options["threshold"])
        elif "label" in row:
            p = binary_cell(row["label"], c, "label")
        else:
            raise InputFileError(f"classification_pred case {c}: no score, prob_1 or label")
        if row is not None and "label" in row and row["label"] != "":
            p = binary_cell(row["label"], c, "label")
        y_true.append(t)
        y_pred.append(p)
        scores.append(score)
        rows.append(
            {
                "case_id": c,
                "plane_gt": t,
                "plane_pred": p,
                "plane_score": score,
                "plane_correct": float(t == p),
            }
        )
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    metrics = {
        "accuracy": accuracy(yt, yp),
        "f1": float(f1_score(yt, yp, labels=[0, 1], pos_label=1)),
        "mcc": matthews_corrcoef(yt, yp, labels=[0, 1]),
        "auc": binary_auc(yt, scores) if not any(math.isnan(s) for s in scores) else math.nan,
        "n_images": len(rows),
    }
    return metrics, rows


def _probability(text: str, case_id: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(f"case {case_id}: score {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise InputFileError(f"case {case_id}: score {value:g} is outside [0, 1]")
    return value


#: ``cases.csv`` landmark columns of ``mode=biometry`` (x = column, y = row).
LANDMARK_COLUMNS = ("ps1", "ps2", "hsd", "tangent")
_OFFICIAL_SIZE_VARIANTS = ("contour", "ellipse-official")
_READ_ERRORS = (MedfleetError, ValueError, OSError)


def _check_labels(opts: dict[str, Any]) -> tuple[int, int]:
    ps, head = int(opts["ps_label"]), int(opts["head_label"])
    if ps == head or 0 in (ps, head):
        raise OptionError(
            f"--preset-option ps_label={ps} and head_label={head} must be two different "
            "nonzero labels (fix: e.g. ps_label=7 head_label=8 for the dataset's own masks)"
        )
    return ps, head


def _read_2d(path: Path, case_id: str, role: str, override: Any) -> tuple[np.ndarray, Any]:
    arr, spacing = read_label_map(path, case_id, role, override)
    if arr.ndim != 2:
        raise InputFileError(
            f"case {case_id}: IUGC masks are 2-D, but {path} has shape {arr.shape} "
            "(fix: save one 2-D label image per case)"
        )
    return arr, spacing


def _iter_pairs(run: PresetRun, plan: MaskPlan) -> Iterator[tuple[str, MaskPair | Exception]]:
    """Each planned case as a :class:`MaskPair`, or the error that kept it from being read."""
    config = run.config
    total = len(plan.case_ids)
    run.tick(0, total)
    for done, case_id in enumerate(plan.case_ids, start=1):
        override = meta_spacing(run.meta_rows, case_id)
        try:
            gt, spacing = _read_2d(plan.gt_files[case_id], case_id, "gt", override)
            status = "ok"
            if case_id in plan.pred_files:
                pred, _ = _read_2d(plan.pred_files[case_id], case_id, "pred", override)
            else:
                pred, status = np.zeros(gt.shape, dtype=np.uint8), "pred_missing"
        except CaseMismatchError:
            raise
        except _READ_ERRORS as exc:
            yield case_id, exc
            run.tick(done, total)
            continue
        if pred.shape != gt.shape:
            if config.resample_pred != "nearest":
                raise CaseMismatchError(
                    mismatched=[(case_id, f"shape {pred.shape} in pred but {gt.shape} in gt")],
                    pred=config.pred,
                    gt=config.gt,
                )
            pred = resample_nearest(pred, gt.shape)
        yield case_id, MaskPair(case_id, pred, gt, spacing, status)
        run.tick(done, total)


class _LabelsSeen:
    """The labels found in the masks, for the warning about the declared PS/FH labels."""

    def __init__(self) -> None:
        self.labels: set[int] = set()

    def add(self, labels: np.ndarray) -> None:
        self.labels.update(int(v) for v in np.unique(labels))

    def warning(self, ps: int, head: int) -> str | None:
        absent = [lab for lab in (ps, head) if lab not in self.labels]
        if not absent or not self.labels:
            return None
        present = sorted(v for v in self.labels if v != 0)
        shown = ", ".join(str(v) for v in present) if present else "none besides 0"
        which = "/".join(str(v) for v in absent)
        fix = "set ps_label and head_label to the labels of your masks"
        if len(present) == 2:
            fix = f"--preset-option ps_label={present[0]} --preset-option head_label={present[1]}"
        plural = "s" if len(absent) > 1 else ""
        return (
            f"no pixel of label{plural} {which} in any mask; labels present: {shown} "
            f"(fix: {fix}; the dataset's own files use 7 = pubic symphysis, 8 = fetal head)"
        )


def _size_warning(cases: list[str], variant: str) -> str | None:
    if not cases or variant not in _OFFICIAL_SIZE_VARIANTS:
        return None
    shown = ", ".join(cases[:10]) + (f" and {len(cases) - 10} more" if len(cases) > 10 else "")
    return (
        f"{len(cases)} mask(s) are not {OFFICIAL_SHAPE[0]}x{OFFICIAL_SHAPE[1]}, the only size "
        f"the official code takes (onehot_to_mask fails on others); medfleet scores them "
        f"anyway: {shown}"
    )


def _geometry_columns(g: IntrapartumGeometry) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, point in zip(LANDMARK_COLUMNS, (g.p1, g.p2, g.hsd_point, g.tangent), strict=True):
        out[f"{name}_x"] = math.nan if point is None else point[0]
        out[f"{name}_y"] = math.nan if point is None else point[1]
    return out


def _missing_reason(g: IntrapartumGeometry) -> str | None:
    """Why no ellipse could be fitted (the case is an error in ``mode=biometry``)."""
    if g.status == "no_ellipse":
        return "the least-squares ellipse fit failed (too few or collinear contour points)"
    if not g.status.startswith("no_ellipse_"):
        return None
    which = {"ps": "the pubic symphysis", "head": "the fetal head", "both": "PS and head"}
    return (
        f"no ellipse can be fitted to {which[g.status.removeprefix('no_ellipse_')]}: the "
        "official fit needs more than 5 approxPolyDP vertices of its largest contour (the "
        "structure is too small or too thin)"
    )


def _run_compare(run: PresetRun, ps: int, head: int) -> PresetOutcome:
    """``mode=compare``: predicted masks against reference masks."""
    opts = run.options
    mm = run.units == "mm"
    variant = opts["biometry"]
    geometry = BIOMETRY_VARIANTS[variant]
    parts = iugc_parts(ps, head)
    plan = plan_mask_pairs(run)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen = _LabelsSeen()
    off_size: list[str] = []
    for case_id, pair in _iter_pairs(run, plan):
        if isinstance(pair, Exception):
            rows.append(case_error_row(case_id, pair))
            continue
        seen.add(pair.gt)
        if pair.status == "ok":
            seen.add(pair.pred)
        if pair.gt.shape != OFFICIAL_SHAPE:
            off_size.append(case_id)
        spacing = pair.spacing if mm else None
        try:
            seg = iugc_segmentation_metrics(
                pair.pred, pair.gt, spacing, ps_label=ps, head_label=head
            )
            g_ref = geometry(pair.gt, spacing, ps_label=ps, head_label=head)
            g_pred = geometry(pair.pred, spacing, ps_label=ps, head_label=head)
        except (ValueError, ArithmeticError) as exc:
            rows.append(case_error_row(case_id, exc))
            continue
        for part in parts:
            if seg[f"status_{part}"] == "gt_empty":
                warnings.append(
                    f"case {case_id}: the reference has no {part} but the prediction has "
                    "(the official code fails here); scored as an empty prediction"
                )
        row: dict[str, Any] = {"case_id": case_id, "status": pair.status, **seg}
        row.update(
            aop_gt=g_ref.aop,
            aop_pred=g_pred.aop,
            hsd_gt=g_ref.hsd,
            hsd_pred=g_pred.hsd,
            biometry_status_gt=g_ref.status,
            biometry_status_pred=g_pred.status,
        )
        row["aop_error"] = abs(g_pred.aop - g_ref.aop)
        row["hsd_error"] = abs(g_pred.hsd - g_ref.hsd)
        if math.isnan(g_ref.aop) or math.isnan(g_pred.aop):
            warnings.append(
                f"case {case_id}: biometry missing (reference: {g_ref.status}, "
                f"prediction: {g_pred.status})"
            )
        for role, g in (("reference", g_ref), ("prediction", g_pred)):
            if g.official_note:
                warnings.append(f"case {case_id} ({role}): {g.official_note}")
        rows.append(row)
    scored = [r for r in rows if r.get("status") != "error"]
    components: dict[str, Any] = {}
    for metric in ("dsc", "hd", "asd"):
        components[metric] = _mean([r[metric] for r in scored])
        for part in parts:
            components[f"{metric}_{part}"] = _mean([r[f"{metric}_{part}"] for r in scored])
    for metric in ("aop_error", "hsd_error"):
        values = [r[metric] for r in scored if not math.isnan(r[metric])]
        components[metric] = float(np.mean(values)) if values else math.nan
        components[f"n_{metric}_missing"] = len(scored) - len(values)
    cls_metrics, cls_rows = _classification_part(run)
    if cls_metrics:
        components["classification"] = cls_metrics
        by_id = {r["case_id"]: r for r in rows}
        for cr in cls_rows:
            if cr["case_id"] in by_id:
                by_id[cr["case_id"]].update({k: v for k, v in cr.items() if k != "case_id"})
            else:
                rows.append({**cr, "status": "ok"})
    gt_empty = sum(1 for r in rows for p in parts if r.get(f"status_{p}") == "gt_empty")
    components["n_gt_empty_parts"] = gt_empty
    warnings.extend(w for w in (seen.warning(ps, head), _size_warning(off_size, variant)) if w)
    report = {
        "bland_altman": [
            {"reference": "aop_gt", "measured": "aop_pred", "label": "AoP (degrees)"},
            {
                "reference": "hsd_gt",
                "measured": "hsd_pred",
                "label": f"HSD ({'mm' if mm else 'pixels'})",
            },
        ]
    }
    return PresetOutcome(
        rows=rows,
        metrics=[
            "dsc",
            "hd",
            "asd",
            "dsc_ps",
            "dsc_head",
            "dsc_all",
            "hd_ps",
            "hd_head",
            "hd_all",
            "asd_ps",
            "asd_head",
            "asd_all",
            "aop_error",
            "hsd_error",
        ],
        score=None,
        score_name="no single official score: components only",
        components=components,
        cases=plan.cases,
        conventions=_conventions(run, ps, head),
        warnings=warnings,
        higher_is_better={
            "dsc": True,
            "hd": False,
            "asd": False,
            "aop_error": False,
            "hsd_error": False,
        },
        report=report,
    )


def _run_biometry(run: PresetRun, ps: int, head: int) -> PresetOutcome:
    """``mode=biometry``: AoP, HSD and landmarks of each ``--pred`` mask, no reference."""
    config, opts = run.config, run.options
    if config.gt is not None:
        raise OptionError(
            f"--preset-option mode=biometry measures the --pred masks alone, but --gt "
            f"{config.gt} was given (fix: drop --gt, or use mode=compare to score --pred "
            "against --gt)"
        )
    if opts["classification_pred"] is not None or opts["classification_gt"] is not None:
        raise OptionError(
            "classification_pred/classification_gt need mode=compare (fix: drop them or "
            "use mode=compare with --gt)"
        )
    mm = run.units == "mm"
    variant = opts["biometry"]
    geometry = BIOMETRY_VARIANTS[variant]
    files = list_case_files(config.pred, "--pred")
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen = _LabelsSeen()
    off_size: list[str] = []

    def measure(case_id: str) -> tuple[np.ndarray, IntrapartumGeometry]:
        path = files[case_id]
        lab, spacing = _read_2d(path, case_id, "mask", meta_spacing(run.meta_rows, case_id))
        seen.add(lab)
        g = geometry(lab, spacing if mm else None, ps_label=ps, head_label=head)
        reason = _missing_reason(g)
        if reason is not None:
            raise ValueError(f"case {case_id} ({path.name}): {reason}")
        return lab, g

    for case_id, (lab, g) in score_cases(run, list(files), measure, rows, require_one=False):
        if lab.shape != OFFICIAL_SHAPE:
            off_size.append(case_id)
        if math.isnan(g.aop) or math.isnan(g.hsd):
            warnings.append(f"case {case_id}: biometry missing ({g.status})")
        if g.official_note:
            warnings.append(f"case {case_id}: {g.official_note}")
        rows.append(
            {
                "case_id": case_id,
                "status": "ok",
                "aop": g.aop,
                "hsd": g.hsd,
                "biometry_status": g.status,
                **_geometry_columns(g),
            }
        )
    warnings.extend(w for w in (seen.warning(ps, head), _size_warning(off_size, variant)) if w)
    scored = [r for r in rows if r.get("status") != "error"]
    components: dict[str, Any] = {"n_images": len(scored)}
    for metric in ("aop", "hsd"):
        values = [r[metric] for r in scored if not math.isnan(r[metric])]
        components[metric] = float(np.mean(values)) if values else math.nan
        components[f"n_{metric}_missing"] = len(scored) - len(values)
    return PresetOutcome(
        rows=rows,
        metrics=["aop", "hsd"],
        score=None,
        score_name="no score: single-mask biometry (mode=biometry)",
        components=components,
        cases={
            "n_cases": len(files),
            "n_matched": len(files),
            "missing_scored_as_worst": [],
            "extra_ignored": [],
        },
        conventions={
            **_conventions(run, ps, head),
            "landmarks": "ps1 = AoP vertex and HSD origin, ps2 = other PS end, hsd = nearest "
            "head point, tangent = tangency point; x = column, y = row, in the units of HSD",
        },
        warnings=warnings,
    )


def _conventions(run: PresetRun, ps: int, head: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "units": "mm" if run.units == "mm" else "pixels",
        "mode": run.options["mode"],
        "biometry": run.options["biometry"],
        "labels": {"ps": ps, "head": head},
        "empty_prediction": EMPTY_PRED,
        "dice_smoothing": 1.0,
    }
    if run.options["biometry"] == "ellipse-official":
        out["hsd"] = (
            "not computed by the official code: distance from the PS endpoint to the fitted "
            "FH ellipse"
        )
    return out


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _run(run: PresetRun) -> PresetOutcome:
    ps, head = _check_labels(run.options)
    if run.options["biometry"] == "ellipse-official":
        require_cv2()  # before any case: a missing OpenCV is not a per-case failure
    if run.options["mode"] == "biometry":
        return _run_biometry(run, ps, head)
    return _run_compare(run, ps, head)


PRESET = Preset(
    name="iugc",
    title="IUGC: intrapartum ultrasound standard plane, PS/FH segmentation and biometry",
    source="IUGC (MICCAI 2024/2025) and the PSFHS / FH-PS-AOP grand-challenge evaluation",
    task_types=("segmentation",),
    units=("pixel", "mm"),
    summary="classification accuracy/AUC/F1/MCC; Dice, HD, ASD of PS, FH and both; "
    "|delta AoP| and |delta HSD| from the masks (mode=biometry: AoP, HSD, landmarks of "
    "single masks)",
    options=(
        PresetOption(
            "mode",
            "compare",
            "compare (default: --pred against --gt) or biometry (single --pred masks, no --gt: "
            "AoP, HSD and landmarks per mask).",
            choices=("compare", "biometry"),
        ),
        PresetOption(
            "biometry",
            "contour",
            "contour (default, the starting kit's contour rules), ellipse-official (the "
            "organisers' OpenCV ellipse code; needs medfleet[opencv]) or ellipse (medfleet's "
            "least-squares ellipses).",
            choices=("contour", "ellipse-official", "ellipse"),
        ),
        PresetOption(
            "ps_label", 1, "Label of the pubic symphysis (7 in the dataset's own masks).", "int"
        ),
        PresetOption(
            "head_label", 2, "Label of the fetal head (8 in the dataset's own masks).", "int"
        ),
        PresetOption(
            "classification_pred",
            None,
            "CSV: case_id and score/prob_1/label of the standard plane.",
            "path",
        ),
        PresetOption("classification_gt", None, "CSV: case_id,label (1 = standard plane).", "path"),
        PresetOption(
            "threshold", 0.5, "A score >= threshold predicts the standard plane.", "float"
        ),
    ),
    run=_run,
)
