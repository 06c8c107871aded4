"""IUGC preset: contours, AoP/HSD geometry, the ellipse variant and the PSFHS-style metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfleet.evaluate.challenges._contours import largest_contour, outer_contours
from medfleet.evaluate.challenges.iugc import (
    intrapartum_geometry,
    intrapartum_geometry_ellipse,
    iugc_asd,
    iugc_dice,
    iugc_hd,
    iugc_segmentation_metrics,
)


def _constructed() -> np.ndarray:
    """PS: a 1-pixel line from (x=10, y=30) to (x=40, y=30); head: the square [50,70]x[40,60]."""
    lab = np.zeros((80, 90), np.uint8)
    lab[30, 10:41] = 1
    lab[40:61, 50:71] = 2
    return lab


def test_aop_and_hsd_on_a_constructed_configuration() -> None:
    g = intrapartum_geometry(_constructed())
    assert g.status == "ok"
    assert g.p1 == (40.0, 30.0) and g.p2 == (10.0, 30.0)
    # nearest head contour point: the corner (50, 40)
    assert g.hsd == pytest.approx(math.sqrt(10**2 + 10**2))
    assert g.hsd_point == (50.0, 40.0)
    # tangents from p1 touch (70, 40) and (50, 60); the larger angle with p1 -> p2 wins
    assert g.tangent == (70.0, 40.0)
    assert g.aop == pytest.approx(180.0 - math.degrees(math.atan2(10, 30)))


def test_geometry_in_mm_uses_the_pixel_size() -> None:
    g = intrapartum_geometry(_constructed(), spacing=(0.5, 0.5))
    assert g.hsd == pytest.approx(0.5 * math.sqrt(200))
    assert g.aop == pytest.approx(180.0 - math.degrees(math.atan2(10, 30)))


def test_missing_structure_is_reported_not_scored() -> None:
    lab = _constructed()
    lab[lab == 2] = 0
    g = intrapartum_geometry(lab)
    assert g.status == "missing_head"
    assert math.isnan(g.aop) and math.isnan(g.hsd)
    assert intrapartum_geometry(np.zeros((5, 5), np.uint8)).status == "missing_both"


def test_p1_inside_the_head_hull_has_no_tangent() -> None:
    lab = np.zeros((40, 40), np.uint8)
    rows, cols = np.mgrid[:40, :40]
    lab[(rows - 20) ** 2 + (cols - 20) ** 2 <= 15**2] = 2
    lab[20, 15:26] = 1  # the symphysis drawn inside the head
    g = intrapartum_geometry(lab)
    assert g.status == "no_tangent" and math.isnan(g.aop)


def test_ellipse_variant_matches_the_analytic_geometry() -> None:
    from medfleet.geometry import Ellipse, angle_between

    rows, cols = np.mgrid[:300, :400].astype(float)
    lab = np.zeros((300, 400), np.uint8)
    lab[((cols - 100) / 50.0) ** 2 + ((rows - 80) / 12.0) ** 2 <= 1] = 1
    lab[(cols - 260) ** 2 + (rows - 170) ** 2 <= 80**2] = 2
    g = intrapartum_geometry_ellipse(lab)
    p1 = np.array([150.0, 80.0])
    head = Ellipse(260.0, 170.0, 80.0, 80.0, 0.0)
    tangents = head.tangent_points(*p1)
    expected = max(angle_between((-100.0, 0.0), (t[0] - p1[0], t[1] - p1[1])) for t in tangents)
    assert g.status == "ok"
    assert g.aop == pytest.approx(expected, abs=1.0)
    assert g.hsd == pytest.approx(math.hypot(110, 90) - 80, abs=1.5)


def test_contour_tracing_counts_points_like_border_following() -> None:
    square = np.zeros((6, 6), bool)
    square[1:4, 1:4] = True
    assert [len(c) for c in outer_contours(square)] == [8]
    line = np.zeros((3, 8), bool)
    line[1, 1:6] = True
    assert len(outer_contours(line)[0]) == 8  # 5 pixels, the inner 3 visited twice
    ring = np.zeros((9, 9), bool)
    ring[1:8, 1:8] = True
    ring[3:6, 3:6] = False
    ring[4, 4] = True  # an island inside the hole: not an external contour
    assert [len(c) for c in outer_contours(ring)] == [24]


def test_largest_contour_by_number_of_points_not_area() -> None:
    mask = np.zeros((20, 40), bool)
    mask[2:8, 2:8] = True  # area 36, 20 contour points
    mask[15, 5:35] = True  # area 30, 58 contour points
    best = largest_contour(mask)
    assert best is not None and len(best) == 58
    assert set(best[:, 0].tolist()) == {15}


def test_dice_and_empty_rules() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[1:4, 1:6] = 1
    gt[5:9, 2:8] = 2
    pred = gt.copy()
    pred[pred == 2] = 0
    m = iugc_segmentation_metrics(pred, gt)
    assert m["dsc_ps"] == 1.0 and m["hd_ps"] == 0.0 and m["asd_ps"] == 0.0
    assert (m["dsc_head"], m["hd_head"], m["asd_head"], m["status_head"]) == (
        0.0,
        100.0,
        100.0,
        "pred_empty",
    )
    assert m["dsc"] == pytest.approx((1.0 + 0.0 + m["dsc_all"]) / 3)
    extra = gt.copy()
    gt_no_head = gt.copy()
    gt_no_head[gt_no_head == 2] = 0
    assert iugc_segmentation_metrics(extra, gt_no_head)["status_head"] == "gt_empty"
    a = np.zeros((3, 3), bool)
    a[0, 0] = True
    b = np.zeros((3, 3), bool)
    b[0, :2] = True
    assert iugc_dice(a, b) == pytest.approx((2 * 1 + 1) / (1 + 2 + 1))


def test_segmentation_metrics_with_the_dataset_labels() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[1:4, 1:6] = 1
    gt[5:9, 2:8] = 2
    pred = np.roll(gt, 1, axis=1)
    default = iugc_segmentation_metrics(pred, gt)
    encoded = {0: 0, 1: 7, 2: 8}
    gt78, pred78 = np.vectorize(encoded.get)(gt), np.vectorize(encoded.get)(pred)
    assert iugc_segmentation_metrics(pred78, gt78, ps_label=7, head_label=8) == default
    assert iugc_segmentation_metrics(pred78, gt78)["status_ps"] == "pred_empty"


def test_hd_and_asd_match_simpleitk() -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(4)
    for _ in range(4):
        a = np.zeros((24, 24), np.uint8)
        b = np.zeros((24, 24), np.uint8)
        a[3 + rng.integers(0, 4) : 15, 4 : 16 + rng.integers(0, 4)] = 1
        b[5 : 18 + rng.integers(0, 4), 2 + rng.integers(0, 4) : 14] = 1
        a[rng.integers(0, 24), rng.integers(0, 24)] = 1  # a stray pixel
        ia, ib = sitk.GetImageFromArray(a), sitk.GetImageFromArray(b)
        hd_filter = sitk.HausdorffDistanceImageFilter()
        hd_filter.Execute(ia, ib)
        assert iugc_hd(a, b) == pytest.approx(hd_filter.GetHausdorffDistance())
        maurer = sitk.SignedMaurerDistanceMapImageFilter()
        maurer.SetUseImageSpacing(True)
        maurer.SetSquaredDistance(False)
        da = np.abs(sitk.GetArrayFromImage(maurer.Execute(ia)))
        db = np.abs(sitk.GetArrayFromImage(maurer.Execute(ib)))
        ea, eb = da == 0, db == 0
        expected = (da[eb].sum() + db[ea].sum()) / (ea.sum() + eb.sum())
        assert iugc_asd(a, b) == pytest.approx(expected, rel=1e-5)
