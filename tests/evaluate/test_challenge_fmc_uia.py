"""FMC_UIA preset: per-class Dice/HD with the diagonal penalty, classification, IoU, MRE."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef, roc_auc_score

from medfleet.evaluate.challenges.fmc_uia import fmc_segmentation_metrics
from medfleet.evaluate.metrics.detection import box_iou
from medfleet.evaluate.metrics.landmarks import landmark_errors
from medfleet.evaluate.runner import EvaluationConfig, run_evaluation


def test_segmentation_rules_by_hand() -> None:
    gt = np.zeros((6, 8), np.uint8)
    gt[1:3, 1:4] = 1
    pred = np.zeros_like(gt)
    pred[1:3, 1:4] = 1
    pred[5, 7] = 2  # class 2 only in the prediction
    m = fmc_segmentation_metrics(pred, gt, 4)
    assert (m["dice_1"], m["hd_1"]) == (1.0, 0.0)
    assert (m["dice_2"], m["hd_2"]) == (0.0, 10.0)  # diagonal of a 6 x 8 image
    assert (m["dice_3"], m["hd_3"]) == (1.0, 0.0)  # absent from both
    assert m["dice"] == pytest.approx(2 / 3)
    assert m["hd"] == pytest.approx(10 / 3)


def test_segmentation_hd_matches_simpleitk() -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(9)
    gt = rng.choice([0, 1, 2], size=(16, 18), p=[0.7, 0.2, 0.1]).astype(np.uint8)
    pred = rng.choice([0, 1, 2], size=(16, 18), p=[0.7, 0.2, 0.1]).astype(np.uint8)
    m = fmc_segmentation_metrics(pred, gt, 3)
    for c in (1, 2):
        f = sitk.HausdorffDistanceImageFilter()
        f.Execute(
            sitk.GetImageFromArray((pred == c).astype(np.uint8) * 255),
            sitk.GetImageFromArray((gt == c).astype(np.uint8) * 255),
        )
        assert m[f"hd_{c}"] == pytest.approx(f.GetHausdorffDistance())


def test_box_iou_and_mre() -> None:
    # the preset scores boxes with detection.box_iou and MRE with landmarks.landmark_errors
    assert box_iou([0, 0, 4, 4], [2, 0, 6, 4]) == pytest.approx(8 / 24)
    assert box_iou([1, 1, 1, 1], [2, 2, 2, 2]) == 0.0  # zero union
    errors = landmark_errors(np.array([[0, 0], [6, 8]]), np.array([[3, 4], [6, 8]]))
    assert float(np.mean(errors)) == 2.5


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_classification_against_sklearn(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 30)
    probs = rng.dirichlet([1, 1, 1], size=30)
    probs[np.arange(30), y] += 0.6
    probs /= probs.sum(axis=1, keepdims=True)
    gt = _write(tmp_path / "gt.csv", ["case_id", "label"], [[f"c{i}", y[i]] for i in range(30)])
    pred = _write(
        tmp_path / "pred.csv",
        ["case_id", "prob_0", "prob_1", "prob_2"],
        [[f"c{i}", *probs[i]] for i in range(30)],
    )
    result = run_evaluation(
        EvaluationConfig(
            "classification", pred, gt, tmp_path / "out", preset="fmc-uia", report=False
        )
    )
    comp = result.summary["preset"]["components"]
    y_pred = probs.argmax(axis=1)
    assert comp["accuracy"] == pytest.approx(np.mean(y_pred == y))
    assert comp["f1_macro"] == pytest.approx(f1_score(y, y_pred, average="macro", zero_division=0))
    assert comp["f1_weighted"] == pytest.approx(
        f1_score(y, y_pred, average="weighted", zero_division=0)
    )
    assert comp["mcc"] == pytest.approx(matthews_corrcoef(y, y_pred))
    assert comp["auc"] == pytest.approx(roc_auc_score(y, probs, average="macro", multi_class="ovr"))


def test_undefined_auc_is_zero_officially(tmp_path: Path) -> None:
    gt = _write(tmp_path / "gt.csv", ["case_id", "label"], [["a", 1], ["b", 1]])
    pred = _write(
        tmp_path / "pred.csv", ["case_id", "prob_0", "prob_1"], [["a", 0.2, 0.8], ["b", 0.6, 0.4]]
    )
    official = run_evaluation(
        EvaluationConfig("classification", pred, gt, tmp_path / "o", preset="fmc-uia", report=False)
    )
    assert official.summary["preset"]["components"]["auc"] == 0.0
    nan = run_evaluation(
        EvaluationConfig(
            "classification",
            pred,
            gt,
            tmp_path / "n",
            preset="fmc-uia",
            report=False,
            preset_options={"auc_undefined": "nan"},
        )
    )
    assert math.isnan(nan.summary["preset"]["components"]["auc"])
    on_disk = json.loads((tmp_path / "n" / "summary.json").read_text())
    assert on_disk["preset"]["components"]["auc"] is None  # NaN is null in strict JSON
