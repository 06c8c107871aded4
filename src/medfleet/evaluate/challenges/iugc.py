"""IUGC (intrapartum ultrasound grand challenge): standard plane, PS/FH segmentation, biometry.

Three parts, each optional except the segmentation masks:

* **Classification** of the standard plane (``classification_pred`` /
  ``classification_gt`` tables): accuracy, AUC, F1 and MCC.
* **Segmentation** of the pubic symphysis (PS, label 1), the fetal head (FH, label 2) and
  both (their union), per image: Dice with +1 smoothing
  ``(2 |P & G| + 1) / (|P| + |G| + 1)``; HD, the Hausdorff distance between the *sets of
  foreground pixels* (SimpleITK ``HausdorffDistanceImageFilter``); ASD, the mean over
  the contour pixels of both masks of their distance to the other mask's contour, where
  a contour pixel is a foreground pixel with a background 8-neighbour inside the image
  (SimpleITK's signed Maurer distance map is 0 exactly there). An empty prediction scores
  DSC 0, HD 100, ASD 100. An empty reference with a non-empty prediction makes the official
  code fail: such a part is reported (status ``gt_empty``, listed in ``warnings``) and
  scored like an empty prediction.
* **Biometry** from the masks, |delta AoP| (degrees) and |delta HSD| (pixels, or mm with
  ``--units mm``), by :func:`intrapartum_geometry`: the largest outer contour of each
  structure (by number of contour points, not area); the PS endpoints are the farthest
  pair of its contour points and the one with the larger x is the distal point ``p1``;
  HSD is the distance from ``p1`` to the nearest head contour point; the tangent point
  ``t`` is a head contour point with every other head point on one side of the line
  ``p1-t`` (of the two tangents, the one with the larger angle); AoP is the angle at
  ``p1`` between ``p1 -> p2`` and ``p1 -> t``. A missing structure makes the official
  biometry fail: the values are reported as missing, not as numbers. Option
  ``biometry=ellipse`` fits ellipses to both contours instead (PS endpoints = major-axis
  ends; HSD and the tangent on the head ellipse).

Source: the IUGC challenge (MICCAI 2024/2025) and the PSFHS / FH-PS-AOP grand-challenge
evaluation it derives from (Dice +1 smoothing, HD and ASD with SimpleITK, DSC 0 / HD 100 /
ASD 100 for an empty prediction). See docs/challenges.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree

from medfleet.errors import ManifestError
from medfleet.evaluate.challenges._contours import contour_mask, largest_contour
from medfleet.evaluate.challenges._inputs import binary_cell, iter_mask_pairs, plan_mask_pairs
from medfleet.evaluate.challenges.base import Preset, PresetOption, PresetOutcome, PresetRun

__all__ = [
    "PRESET",
    "IntrapartumGeometry",
    "intrapartum_geometry",
    "intrapartum_geometry_ellipse",
    "iugc_asd",
    "iugc_dice",
    "iugc_hd",
    "iugc_segmentation_metrics",
]

PARTS = {"ps": (1,), "head": (2,), "all": (1, 2)}
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


def iugc_segmentation_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None
) -> dict[str, Any]:
    """DSC, HD and ASD of PS, head and both, with the official empty-mask rules.

    Returns:
        ``{"dsc_ps", "hd_ps", "asd_ps", ..., "status_ps", ...}`` plus the means over the
        three parts ``dsc``, ``hd``, ``asd``.

    Example:
        >>> gt = np.zeros((12, 12), np.uint8); gt[2:5, 2:9] = 1; gt[6:11, 3:10] = 2
        >>> m = iugc_segmentation_metrics(np.where(gt == 1, 1, 0), gt)
        >>> m["dsc_ps"], m["dsc_head"], m["hd_head"], m["status_head"]
        (1.0, 0.0, 100.0, 'pred_empty')
    """
    p, g = np.asarray(pred), np.asarray(gt)
    out: dict[str, Any] = {}
    for part, labels in PARTS.items():
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
        out[metric] = float(np.mean([out[f"{metric}_{part}"] for part in PARTS]))
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
            ``"degenerate_ps"`` (a one-pixel symphysis: no axis).
    """

    aop: float
    hsd: float
    p1: tuple[float, float] | None
    p2: tuple[float, float] | None
    tangent: tuple[float, float] | None
    status: str


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
    hsd = float(cKDTree(head_xy).query(p1, k=1)[0])
    point = (float(p1[0]), float(p1[1])), (float(p2[0]), float(p2[1]))
    if i == j:
        return IntrapartumGeometry(math.nan, hsd, *point, None, "degenerate_ps")
    t = _tangent(p1, p2, head_xy)
    if t is None:
        return IntrapartumGeometry(math.nan, hsd, *point, None, "no_tangent")
    aop = _angle(p2 - p1, t - p1)
    return IntrapartumGeometry(aop, hsd, *point, (float(t[0]), float(t[1])), "ok")


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
    from medfleet.data.phantoms.intrapartum import Ellipse as AnalyticEllipse
    from medfleet.evaluate.biometry import fit_ellipse

    lab = np.asarray(labels)
    ps = largest_contour(lab == ps_label)
    head = largest_contour(lab == head_label)
    if ps is None or head is None:
        return _missing(ps, head)
    try:
        e_ps = fit_ellipse(_xy(ps, spacing))
        e_head = fit_ellipse(_xy(head, spacing))
    except ValueError:
        return IntrapartumGeometry(math.nan, math.nan, None, None, None, "no_ellipse")
    ps_e = AnalyticEllipse(
        e_ps.center_x, e_ps.center_y, e_ps.semi_major, e_ps.semi_minor, e_ps.angle
    )
    head_e = AnalyticEllipse(
        e_head.center_x, e_head.center_y, e_head.semi_major, e_head.semi_minor, e_head.angle
    )
    a, b = (np.asarray(p, dtype=np.float64) for p in ps_e.axis_endpoints())
    p1, p2 = _endpoints(a, b)
    theta = np.linspace(0.0, 2.0 * np.pi, 8192, endpoint=False)
    boundary = np.array([head_e.point(float(s)) for s in theta])
    hsd = float(np.sqrt(((boundary - p1) ** 2).sum(axis=1)).min())
    point = (float(p1[0]), float(p1[1])), (float(p2[0]), float(p2[1]))
    if head_e.level(float(p1[0]), float(p1[1])) <= 1.0:
        return IntrapartumGeometry(math.nan, hsd, *point, None, "no_tangent")
    tangents = [np.asarray(t) for t in head_e.tangent_points(float(p1[0]), float(p1[1]))]
    angles = [_angle(p2 - p1, t - p1) for t in tangents]
    k = int(np.argmax(angles))
    t = tangents[k]
    return IntrapartumGeometry(angles[k], hsd, *point, (float(t[0]), float(t[1])), "ok")


# ---------------------------------------------------------------- preset run


def _classification_part(run: PresetRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Standard-plane classification metrics from the two optional tables."""
    from medfleet.evaluate.challenges._inputs import read_table
    from medfleet.evaluate.classification import (
        accuracy,
        binary_auc,
        f1_score,
        matthews_corrcoef,
    )

    pred_path, gt_path = run.options["classification_pred"], run.options["classification_gt"]
    if pred_path is None and gt_path is None:
        return {}, []
    if pred_path is None or gt_path is None:
        raise ManifestError(
            "give both classification_pred and classification_gt (CSV tables) or neither"
        )
    pred = read_table(pred_path, (), "classification_pred")
    gt = read_table(gt_path, ("label",), "classification_gt")
    missing = sorted(set(gt.rows) - set(pred.rows))
    if missing and not run.config.allow_missing:
        raise ManifestError(
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
            raise ManifestError(f"classification_pred case {c}: no score, prob_1 or label")
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
        raise ManifestError(f"case {case_id}: score {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ManifestError(f"case {case_id}: score {value:g} is outside [0, 1]")
    return value


def _run(run: PresetRun) -> PresetOutcome:
    opts = run.options
    mm = run.units == "mm"
    geometry = (
        intrapartum_geometry_ellipse if opts["biometry"] == "ellipse" else intrapartum_geometry
    )
    plan = plan_mask_pairs(run)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for pair in iter_mask_pairs(run, plan):
        if pair.gt.ndim != 2:
            raise ManifestError(f"case {pair.case_id}: IUGC masks are 2-D, got {pair.gt.shape}")
        spacing = pair.spacing if mm else None
        seg = iugc_segmentation_metrics(pair.pred, pair.gt, spacing)
        for part in PARTS:
            if seg[f"status_{part}"] == "gt_empty":
                warnings.append(
                    f"case {pair.case_id}: the reference has no {part} but the prediction has "
                    "(the official code fails here); scored as an empty prediction"
                )
        g_ref = geometry(pair.gt, spacing)
        g_pred = geometry(pair.pred, spacing)
        row: dict[str, Any] = {"case_id": pair.case_id, "status": pair.status, **seg}
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
        if g_ref.status != "ok" or g_pred.status != "ok":
            warnings.append(
                f"case {pair.case_id}: biometry missing (reference: {g_ref.status}, "
                f"prediction: {g_pred.status})"
            )
        rows.append(row)
    components: dict[str, Any] = {}
    for metric in ("dsc", "hd", "asd"):
        components[metric] = float(np.mean([r[metric] for r in rows]))
        for part in PARTS:
            components[f"{metric}_{part}"] = float(np.mean([r[f"{metric}_{part}"] for r in rows]))
    for metric in ("aop_error", "hsd_error"):
        values = [r[metric] for r in rows if not math.isnan(r[metric])]
        components[metric] = float(np.mean(values)) if values else math.nan
        components[f"n_{metric}_missing"] = len(rows) - len(values)
    cls_metrics, cls_rows = _classification_part(run)
    if cls_metrics:
        components["classification"] = cls_metrics
        by_id = {r["case_id"]: r for r in rows}
        for cr in cls_rows:
            if cr["case_id"] in by_id:
                by_id[cr["case_id"]].update({k: v for k, v in cr.items() if k != "case_id"})
            else:
                rows.append({**cr, "status": "ok"})
    gt_empty = sum(1 for r in rows for p in PARTS if r.get(f"status_{p}") == "gt_empty")
    components["n_gt_empty_parts"] = gt_empty
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
        conventions={
            "units": "mm" if mm else "pixels",
            "biometry": opts["biometry"],
            "empty_prediction": EMPTY_PRED,
            "dice_smoothing": 1.0,
        },
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


PRESET = Preset(
    name="iugc",
    title="IUGC: intrapartum ultrasound standard plane, PS/FH segmentation and biometry",
    source="IUGC (MICCAI 2024/2025) and the PSFHS / FH-PS-AOP grand-challenge evaluation",
    task_types=("segmentation",),
    units=("pixel", "mm"),
    summary="classification accuracy/AUC/F1/MCC; Dice, HD, ASD of PS, FH and both; "
    "|delta AoP| and |delta HSD| from the masks",
    options=(
        PresetOption(
            "biometry",
            "contour",
            "contour (default) or ellipse (fitted ellipses).",
            choices=("contour", "ellipse"),
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
