"""Overlap metrics against MedPy, MONAI and scikit-learn, plus hand-computed edge cases."""

from __future__ import annotations

import math

import medpy.metric.binary as medpy_binary
import numpy as np
import pytest
import sklearn.metrics as sk_metrics

from medfleet.evaluate.metrics.conventions import EmptyPolicy, MetricInputError
from medfleet.evaluate.metrics.overlap import (
    OVERLAP_METRICS,
    joint_histogram,
    overlap_counts,
    overlap_from_counts,
    overlap_metrics,
)


def label_maps(seed: int, shape: tuple[int, ...], n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, n_labels + 1, shape).astype(np.uint8)
    noise = rng.random(shape) < 0.3
    pred = np.where(noise, rng.integers(0, n_labels + 1, shape), gt).astype(np.uint8)
    return pred, gt


@pytest.mark.parametrize("shape", [(13, 17), (7, 9, 11)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_label_metrics_match_medpy_and_sklearn(seed: int, shape) -> None:
    pred, gt = label_maps(seed, shape, 3)
    spacing = (0.7, 1.3, 2.1)[: len(shape)]
    r = overlap_metrics(pred, gt, spacing=spacing)
    assert r.labels == (1, 2, 3)
    for label in r.labels:
        p, g = pred == label, gt == label
        assert r.value("dice", label) == pytest.approx(medpy_binary.dc(p, g), abs=1e-12)
        assert r.value("iou", label) == pytest.approx(medpy_binary.jc(p, g), abs=1e-12)
        assert r.value("sensitivity", label) == pytest.approx(
            medpy_binary.sensitivity(p, g), abs=1e-12
        )
        assert r.value("specificity", label) == pytest.approx(
            medpy_binary.specificity(p, g), abs=1e-12
        )
        assert r.value("dice", label) == pytest.approx(
            sk_metrics.f1_score(g.ravel(), p.ravel()), abs=1e-12
        )
        assert r.value("iou", label) == pytest.approx(
            sk_metrics.jaccard_score(g.ravel(), p.ravel()), abs=1e-12
        )
        voxel = float(np.prod(spacing))
        assert r.value("volume_pred_mm3", label) == pytest.approx(p.sum() * voxel)
        assert r.value("volume_gt_mm3", label) == pytest.approx(g.sum() * voxel)
        ravd = medpy_binary.ravd(p, g)  # (|P| - |G|) / |G|
        vs = 1 - abs(p.sum() - g.sum()) / (p.sum() + g.sum())
        assert r.value("volume_similarity", label) == pytest.approx(vs)
        assert (r.value("volume_pred_mm3", label) / r.value("volume_gt_mm3", label) - 1) == (
            pytest.approx(ravd)
        )


def test_matches_monai_dice_and_iou() -> None:
    import monai.metrics as monai_metrics
    import torch

    pred, gt = label_maps(7, (9, 10, 11), 2)
    r = overlap_metrics(pred, gt, labels=[1, 2])
    onehot_p = torch.from_numpy(np.stack([pred == k for k in (0, 1, 2)])[None].astype(np.float32))
    onehot_g = torch.from_numpy(np.stack([gt == k for k in (0, 1, 2)])[None].astype(np.float32))
    dice = monai_metrics.compute_dice(onehot_p, onehot_g, include_background=False)[0]
    iou = monai_metrics.compute_iou(onehot_p, onehot_g, include_background=False)[0]
    assert r["dice"] == pytest.approx(dice.numpy(), abs=1e-6)
    assert r["iou"] == pytest.approx(iou.numpy(), abs=1e-6)


def test_joint_histogram_is_the_confusion_matrix() -> None:
    pred, gt = label_maps(3, (20, 21), 4)
    hist = joint_histogram(pred, gt, 5)
    expected = sk_metrics.confusion_matrix(gt.ravel(), pred.ravel(), labels=[0, 1, 2, 3, 4])
    np.testing.assert_array_equal(hist, expected)


def test_hand_computed_counts_and_values() -> None:
    gt = np.array([[1, 1, 0, 0], [1, 1, 0, 2], [0, 0, 0, 2]], np.uint8)
    pred = np.array([[1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 2]], np.uint8)
    c = overlap_counts(pred, gt)
    assert c.labels == (1, 2)
    assert c.tp.tolist() == [3, 1] and c.fp.tolist() == [1, 0] and c.fn.tolist() == [1, 1]
    assert c.tn.tolist() == [7, 10]
    r = overlap_from_counts(c, (2.0, 0.5), ndim=2)
    assert r.value("dice", 1) == pytest.approx(6 / 8)
    assert r.value("iou", 2) == pytest.approx(1 / 2)
    assert r.value("specificity", 1) == pytest.approx(7 / 8)
    assert r.value("volume_gt_mm3", 1) == pytest.approx(4.0)


def test_bool_masks_are_label_one() -> None:
    gt = np.zeros((5, 5), bool)
    gt[1:4, 1:4] = True
    pred = np.zeros_like(gt)
    pred[1:4, 1:3] = True
    r = overlap_metrics(pred, gt)
    assert r.labels == (1,)
    assert r.value("dice", 1) == pytest.approx(2 * 6 / 15)
    assert overlap_metrics(pred, gt, labels=[0]).value("sensitivity", 0) == 1.0


def test_requested_absent_label_and_both_empty_policy() -> None:
    pred, gt = label_maps(1, (6, 6), 2)
    r = overlap_metrics(pred, gt, labels=[1, 9])
    assert r.status[1] == "both_empty"
    for name in ("dice", "iou", "volume_similarity", "sensitivity"):
        assert math.isnan(r.value(name, 9)) and not r.is_valid(name, 9)
    assert r.value("specificity", 9) == 1.0 and r.is_valid("specificity", 9)
    assert r.value("volume_gt_mm3", 9) == 0.0
    best = overlap_metrics(pred, gt, labels=[9], empty=EmptyPolicy(both_empty="best"))
    assert best.value("dice", 9) == 1.0 and not best.is_valid("dice", 9)


def test_one_empty_values_are_defined() -> None:
    gt = np.zeros((4, 4), np.uint8)
    gt[0, 0] = 1
    pred = np.zeros_like(gt)
    pred[3, 3] = 2
    r = overlap_metrics(pred, gt)
    assert r.status == ("pred_empty", "gt_empty")
    assert r["dice"].tolist() == [0.0, 0.0]
    assert r.valid["dice"].tolist() == [True, True]
    assert r.value("sensitivity", 1) == 0.0
    assert math.isnan(r.value("sensitivity", 2)) and not r.is_valid("sensitivity", 2)
    assert r.value("volume_similarity", 2) == 0.0


def test_all_foreground_reference_has_undefined_specificity() -> None:
    gt = np.ones((3, 3), bool)
    r = overlap_metrics(gt, gt)
    assert r.value("dice", 1) == 1.0
    assert math.isnan(r.value("specificity", 1)) and not r.is_valid("specificity", 1)


def test_counts_add_up_for_global_dice() -> None:
    a = label_maps(10, (8, 8), 2)
    b = label_maps(11, (5, 7), 2)
    total = overlap_counts(*a, labels=[1, 2]) + overlap_counts(*b, labels=[1, 2])
    stacked_p = np.concatenate([a[0].ravel(), b[0].ravel()])[None]
    stacked_g = np.concatenate([a[1].ravel(), b[1].ravel()])[None]
    direct = overlap_counts(stacked_p, stacked_g, labels=[1, 2])
    assert total.tp.tolist() == direct.tp.tolist() and total.n_total == direct.n_total
    with pytest.raises(ValueError, match="same labels"):
        overlap_counts(*a, labels=[1]) + overlap_counts(*b, labels=[2])


def test_large_label_values_use_the_fallback_path() -> None:
    gt = np.zeros((6, 6), np.int32)
    gt[:3] = 5000
    gt[3:, :2] = 7
    pred = gt.copy()
    pred[0, 0] = 0
    r = overlap_metrics(pred, gt)
    assert r.labels == (7, 5000)
    assert r.value("dice", 5000) == pytest.approx(2 * 17 / 35)
    assert r.value("dice", 7) == 1.0


def test_metric_names_and_types() -> None:
    pred, gt = label_maps(2, (5, 5), 1)
    r = overlap_metrics(pred, gt)
    assert r.metrics == OVERLAP_METRICS
    assert all(v.dtype == np.float64 for v in r.values.values())


def test_bad_inputs_raise() -> None:
    with pytest.raises(MetricInputError, match="same grid"):
        overlap_metrics(np.zeros((2, 2), bool), np.zeros((2, 3), bool))
    with pytest.raises(MetricInputError, match="labels must be integers"):
        overlap_metrics(np.zeros((2, 2), bool), np.zeros((2, 2), bool), labels=[-1])
