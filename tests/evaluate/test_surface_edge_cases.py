"""Hand-computed surface metrics: empty masks, single voxels, full images, image edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfleet.evaluate.metrics.conventions import EmptyPolicy, MetricInputError
from medfleet.evaluate.metrics.surface import (
    metrics_from_distances,
    surface_distances,
    surface_metrics,
    weighted_nearest_rank,
)

ALL = ("hd", "hd95", "assd", "masd", "nsd")


def single(shape: tuple[int, ...], *points: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for p in points:
        mask[p] = True
    return mask


def test_identical_single_voxels_give_zero_distances_and_full_nsd() -> None:
    m = single((5, 5, 5), (2, 2, 2))
    r = surface_metrics(m, m, (1.0, 2.0, 3.0), metrics=ALL)
    for name in ("hd", "hd95", "assd", "masd"):
        assert r.value(name, 1) == 0.0 and r.is_valid(name, 1)
    assert r.value("nsd_1mm", 1) == 1.0
    assert r.status == ("ok",)


@pytest.mark.parametrize(
    ("spacing", "expected"),
    [((1.0, 1.0, 1.0), 5.0), ((2.0, 1.0, 1.0), math.sqrt(36 + 16)), ((1.0, 1.0, 7.0), 5.0)],
)
def test_two_single_voxels_distance_uses_spacing_in_axis_order(spacing, expected) -> None:
    gt = single((6, 6, 3), (0, 0, 1))
    pred = single((6, 6, 3), (3, 4, 1))
    r = surface_metrics(pred, gt, spacing, metrics=ALL, nsd_tolerances=(1.0, expected))
    for name in ("hd", "hd95", "assd", "masd"):
        assert r.value(name, 1) == pytest.approx(expected, abs=1e-12)
    assert r.value("nsd_1mm", 1) == 0.0
    assert r.value(f"nsd_{expected:g}mm", 1) == 1.0  # tolerance is inclusive (<=)


def test_all_foreground_versus_centre_square_2d() -> None:
    pred = np.ones((5, 5), bool)  # touches every image edge: the outer ring is its border
    gt = np.zeros((5, 5), bool)
    gt[1:4, 1:4] = True  # border: the 8 voxels around (2, 2)
    r = surface_metrics(pred, gt, metrics=("hd", "assd", "masd", "nsd"), nsd_tolerances=(1.0,))
    # pred ring: 4 corners at sqrt(2), 12 edge voxels at 1; gt ring: 8 voxels at 1.
    assert r.value("hd", 1) == pytest.approx(math.sqrt(2))
    assert r.value("assd", 1) == pytest.approx((4 * math.sqrt(2) + 12 + 8) / 24)
    assert r.value("masd", 1) == pytest.approx(0.5 * ((4 * math.sqrt(2) + 12) / 16 + 1.0))
    assert r.value("nsd_1mm", 1) == pytest.approx(20 / 24)


def test_identical_full_images_are_perfect() -> None:
    full = np.ones((4, 6, 5), np.uint8)
    r = surface_metrics(full, full, (0.5, 0.7, 3.0), metrics=ALL)
    assert r.value("hd", 1) == 0.0 and r.value("nsd_2mm", 1) == 1.0


def test_line_on_image_edge_is_all_border() -> None:
    gt = np.zeros((4, 6), bool)
    gt[0, :] = True  # a full row on the image edge
    pred = np.zeros_like(gt)
    pred[1, :] = True
    d = surface_distances(pred, gt, (2.0, 1.0))[1]
    assert d.gt_to_pred.size == 6 and d.pred_to_gt.size == 6
    assert np.all(d.gt_to_pred == 2.0) and np.all(d.pred_to_gt == 2.0)


def test_thick_block_on_image_edge_has_edge_voxels_as_border() -> None:
    gt = np.zeros((6, 6), bool)
    gt[0:3, 0:3] = True
    d = surface_distances(gt, gt)[1]
    # A 3x3 block in the image corner: only its centre (1, 1) is interior, because
    # the image edge counts as background.
    assert d.gt_to_pred.size == 8


def test_border_connectivity_changes_the_border() -> None:
    gt = np.zeros((7, 7), bool)
    gt[1:6, 1:6] = True
    faces = surface_distances(gt, gt, connectivity=4)[1].gt_to_pred.size
    full = surface_distances(gt, gt, connectivity=8)[1].gt_to_pred.size
    assert faces == 16 and full == 16  # a square: both give the outer ring
    disk = np.zeros((9, 9), bool)
    yy, xx = np.mgrid[:9, :9]
    disk[(yy - 4) ** 2 + (xx - 4) ** 2 <= 9] = True
    n4 = surface_distances(disk, disk, connectivity=1)[1].gt_to_pred.size
    n8 = surface_distances(disk, disk, connectivity=2)[1].gt_to_pred.size
    assert n8 > n4  # 8-connected erosion removes more voxels, so the border is thicker


def test_corner_area_single_voxel_areas() -> None:
    m3 = single((3, 3, 3), (1, 1, 1))
    d3 = surface_distances(m3, m3, (1.0, 1.0, 1.0), surface="corner-area")[1]
    assert d3.gt_weights.size == 8
    assert d3.gt_weights.sum() == pytest.approx(math.sqrt(3))  # 8 triangles of area sqrt(3)/8
    m2 = single((3, 3), (1, 1))
    d2 = surface_distances(m2, m2, (2.0, 3.0), surface="corner-area")[1]
    assert d2.gt_weights.size == 4
    assert d2.gt_weights.sum() == pytest.approx(2 * math.sqrt(4 + 9))  # 4 half diagonals


def test_corner_area_two_pixels_hand_values() -> None:
    gt = single((1, 4), (0, 0))
    pred = single((1, 4), (0, 3))
    r = surface_metrics(
        pred,
        gt,
        (1.0, 1.0),
        metrics=("hd", "masd", "nsd"),
        nsd_tolerances=(2.0,),
        surface="corner-area",
        percentile_method="area-weighted",
    )
    # corners of a pixel: two at distance 2 from the other pixel's corners, two at distance 3
    assert r.value("hd", 1) == 3.0
    assert r.value("masd", 1) == pytest.approx(2.5)
    assert r.value("nsd_2mm", 1) == pytest.approx(0.5)


def test_corner_area_full_block_2d_perimeter() -> None:
    m = np.zeros((6, 7), bool)
    m[1:4, 2:6] = True  # 3 x 4 pixels
    d = surface_distances(m, m, (0.5, 2.0), surface="corner-area")[1]
    # straight edges: 2 * (4 * 2.0) + 2 * (3 * 0.5) minus the 4 corners, plus 4 half diagonals
    half_diag = 0.5 * math.hypot(0.5, 2.0)
    straight = 2 * (4 - 1) * 2.0 + 2 * (3 - 1) * 0.5
    assert d.gt_weights.sum() == pytest.approx(straight + 4 * half_diag)


@pytest.mark.parametrize("ndim", [2, 3])
def test_both_empty_default_is_nan_and_invalid(ndim: int) -> None:
    e = np.zeros((4,) * ndim, np.uint8)
    r = surface_metrics(e, e, labels=[1], metrics=ALL)
    assert r.status == ("both_empty",)
    for name in r.metrics:
        assert math.isnan(r.value(name, 1)) and not r.is_valid(name, 1)


def test_both_empty_best_policy() -> None:
    e = np.zeros((4, 4), bool)
    r = surface_metrics(e, e, labels=[1], metrics=ALL, empty=EmptyPolicy(both_empty="best"))
    assert r.value("hd", 1) == 0.0 and r.value("assd", 1) == 0.0
    assert r.value("nsd_1mm", 1) == 1.0
    assert not r.is_valid("hd", 1)


def test_labels_none_skips_absent_labels() -> None:
    e = np.zeros((4, 4), np.uint8)
    assert surface_metrics(e, e, metrics=("hd",)).labels == ()
    g = e.copy()
    g[1, 1] = 3
    assert surface_metrics(e, g, metrics=("hd",)).labels == (3,)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("inf", math.inf),
        ("nan", math.nan),
        ("diagonal", math.sqrt((10 * 2.0) ** 2 + (8 * 0.5) ** 2)),
        (373.13, 373.13),
    ],
)
@pytest.mark.parametrize("missing", ["pred", "gt"])
def test_one_empty_policies(policy, expected, missing: str) -> None:
    present = np.zeros((10, 8), bool)
    present[2:5, 3:6] = True
    empty = np.zeros_like(present)
    pred, gt = (empty, present) if missing == "pred" else (present, empty)
    r = surface_metrics(pred, gt, (2.0, 0.5), metrics=ALL, empty=EmptyPolicy(one_empty=policy))
    assert r.status == (("pred_empty",) if missing == "pred" else ("gt_empty",))
    for name in ("hd", "hd95", "assd", "masd"):
        value = r.value(name, 1)
        assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)
        assert not r.is_valid(name, 1)
    assert r.value("nsd_1mm", 1) == 0.0 and r.is_valid("nsd_1mm", 1)
    assert r.worst["hd"] == math.inf and r.worst["nsd_1mm"] == 0.0


def test_empty_policy_accepts_mapping_and_rejects_bad_values() -> None:
    p = np.zeros((4, 4), bool)
    g = p.copy()
    g[1, 1] = True
    r = surface_metrics(p, g, metrics=("hd",), empty={"one_empty": 50.0})
    assert r.value("hd", 1) == 50.0
    with pytest.raises(MetricInputError, match="one_empty"):
        EmptyPolicy(one_empty="penalty")
    with pytest.raises(MetricInputError, match="one_empty"):
        EmptyPolicy(one_empty=-1.0)
    with pytest.raises(MetricInputError, match="both_empty"):
        EmptyPolicy(both_empty="zero")  # type: ignore[arg-type]
    with pytest.raises(MetricInputError, match="unknown keys"):
        surface_metrics(p, g, empty={"missing": "nan"})


def test_weighted_nearest_rank_hand_values() -> None:
    d = np.array([1.0, 2.0, 3.0, 4.0])
    w = np.array([1.0, 1.0, 1.0, 1.0])
    assert weighted_nearest_rank(d, w, 50) == 2.0
    assert weighted_nearest_rank(d, w, 51) == 3.0
    assert weighted_nearest_rank(d, w, 100) == 4.0
    assert weighted_nearest_rank(d, np.array([10.0, 1.0, 1.0, 1.0]), 75) == 1.0


def test_percentile_methods_differ_as_documented() -> None:
    gt = np.zeros((1, 30), bool)
    gt[0, 5:25] = True
    pred = gt.copy()
    pred[0, 27] = True  # one stray pixel 3 px from the gt end
    d = surface_distances(pred, gt)[1]
    assert sorted(d.pred_to_gt.tolist()) == [0.0] * 20 + [3.0]
    # gt -> pred: all 0. max-directed: max(percentile(pred_to_gt), 0)
    r_max = metrics_from_distances({1: d}, metrics=("hd97",), percentile_method="max-directed")
    r_pool = metrics_from_distances({1: d}, metrics=("hd97",), percentile_method="pooled")
    r_rank = metrics_from_distances({1: d}, metrics=("hd97",), percentile_method="area-weighted")
    assert r_max.value("hd97", 1) == pytest.approx(np.percentile(d.pred_to_gt, 97))
    assert r_pool.value("hd97", 1) == pytest.approx(
        np.percentile(np.concatenate([d.pred_to_gt, d.gt_to_pred]), 97)
    )
    assert r_rank.value("hd97", 1) == 3.0  # 20/21 < 0.97: the nearest rank is the stray
    assert r_max.value("hd97", 1) != r_pool.value("hd97", 1)


def test_directed_sets_are_reported() -> None:
    gt = np.zeros((8, 8), bool)
    gt[2:6, 2:6] = True
    pred = np.zeros_like(gt)
    pred[2:6, 2:7] = True
    d = surface_distances(pred, gt, (1.0, 1.5))[1]
    assert d.pred_to_gt.size == 14 and d.gt_to_pred.size == 12
    # pred's new column (x = 6, rows 3-4 inside) is 1.5 mm from gt's column x = 5;
    # gt's column x = 5, rows 3-4, now lies inside pred: 1 mm to pred's top/bottom rows.
    assert sorted(d.pred_to_gt.tolist()) == [0.0] * 10 + [1.5] * 4
    assert sorted(d.gt_to_pred.tolist()) == [0.0] * 10 + [1.0] * 2
    assert d.method == ("kdtree", "kdtree")
    assert d.pred_to_gt.dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ("hd96x",)}, "unknown surface metric"),
        ({"metrics": ("hd101",)}, r"\[0, 100\]"),
        ({"percentile_method": "nearest"}, "percentile_method"),
        ({"surface": "mesh"}, "surface"),
        ({"connectivity": 5}, "connectivity 5"),
        ({"nsd_tolerances": (-1.0,)}, "tolerance"),
        ({"nsd_tolerances": ()}, "at least one tolerance"),
        ({"method": "brute"}, "method"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, match) -> None:
    m = single((4, 4), (1, 1))
    with pytest.raises(MetricInputError, match=match):
        surface_metrics(m, m, **kwargs)


@pytest.mark.parametrize(
    ("pred", "gt", "spacing", "match"),
    [
        (np.zeros((3, 3), bool), np.zeros((3, 4), bool), None, "same grid"),
        (np.zeros((3, 3)), np.zeros((3, 3), bool), None, "dtype float64"),
        (np.zeros((3,), bool), np.zeros((3,), bool), None, "2D or 3D"),
        (np.zeros((3, 3), np.int8) - 1, np.zeros((3, 3), np.int8), None, "negative"),
        (np.zeros((3, 3), bool), np.zeros((3, 3), bool), (1.0, 1.0, 1.0), "3 values"),
        (np.zeros((3, 3), bool), np.zeros((3, 3), bool), (1.0, 0.0), "positive"),
        (np.zeros((3, 3), bool), np.zeros((3, 3), bool), (1.0, float("nan")), "positive"),
    ],
)
def test_bad_inputs_raise_clear_errors(pred, gt, spacing, match) -> None:
    with pytest.raises(MetricInputError, match=match):
        surface_metrics(pred, gt, spacing)


def test_huge_label_values_are_scored_per_label() -> None:
    gt = np.zeros((6, 8), np.int64)
    labels = [7, 70_000, 2**40, 3, 9, 11]
    for i, label in enumerate(labels):
        gt[i, i : i + 2] = label
    pred = np.roll(gt, 1, axis=1)
    r = surface_metrics(pred, gt, (1.0, 0.5), metrics=("hd",))
    assert r.labels == tuple(sorted(labels))
    # every label moves one column (0.5 mm) without wrapping around
    assert r["hd"].tolist() == [0.5] * len(labels)
