"""HC18 (head circumference) and ISBI 2015 (cephalometric landmarks) presets."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medfleet.evaluate.challenges.hc18 import hc18_case_metrics
from medfleet.evaluate.metrics.biometry import ellipse_perimeter
from medfleet.evaluate.runner import EvaluationConfig, run_evaluation


def _ellipse(a: float, b: float, shape: tuple[int, int] = (160, 200)) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((cols - 100) / a) ** 2 + ((rows - 80) / b) ** 2 <= 1


def test_hc_difference_follows_the_ellipse_perimeters() -> None:
    gt, pred = _ellipse(60, 45), _ellipse(66, 45)
    m = hc18_case_metrics(pred, gt, (0.25, 0.25))
    expected = 0.25 * (ellipse_perimeter(66, 45) - ellipse_perimeter(60, 45))
    assert m["df_mm"] == pytest.approx(expected, rel=0.02)
    assert m["adf_mm"] == pytest.approx(abs(m["df_mm"]))
    assert m["hc_gt_mm"] == pytest.approx(0.25 * ellipse_perimeter(60, 45), rel=0.01)


def test_dice_hd_and_outline_filling() -> None:
    gt = np.zeros((40, 40), bool)
    gt[10:30, 10:30] = True
    pred = np.zeros_like(gt)
    pred[8:32, 8:32] = True
    m = hc18_case_metrics(pred, gt, (0.5, 0.5))
    assert m["dice"] == pytest.approx(2 * 400 / (400 + 576))
    assert m["hd_mm"] == pytest.approx(0.5 * math.sqrt(8))  # corner to corner
    outline = gt & ~np.pad(
        gt[1:-1, 1:-1] & gt[:-2, 1:-1] & gt[2:, 1:-1] & gt[1:-1, :-2] & gt[1:-1, 2:], 1
    )
    filled = hc18_case_metrics(outline, gt, (0.5, 0.5))
    assert filled["dice"] == 1.0 and filled["adf_mm"] == 0.0
    assert hc18_case_metrics(outline, gt, (0.5, 0.5), fill=False)["dice"] < 0.5


def test_reference_hc_from_a_column() -> None:
    gt = _ellipse(60, 45)
    m = hc18_case_metrics(gt, gt, (0.25, 0.25), reference_hc=100.0)
    assert m["hc_gt_mm"] == 100.0
    assert m["df_mm"] == pytest.approx(m["hc_pred_mm"] - 100.0)


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "landmarks"])
        w.writerows(rows)
    return path


def test_isbi2015_mre_and_sdr_with_a_tenth_of_a_millimetre_pixel(tmp_path: Path) -> None:
    gt = _write(tmp_path / "gt.csv", [("a", "100,100;200,200"), ("b", "300,300;50,60")])
    # errors in pixels: 15, 25, 30, 45 -> 1.5, 2.5, 3.0, 4.5 mm
    pred = _write(tmp_path / "pred.csv", [("a", "115,100;200,225"), ("b", "330,300;50,105")])
    result = run_evaluation(
        EvaluationConfig(
            "landmarks", pred, gt, tmp_path / "out", preset="landmarks-isbi2015", report=False
        )
    )
    p = result.summary["preset"]
    assert p["score"] == pytest.approx((1.5 + 2.5 + 3.0 + 4.5) / 4)
    c = p["components"]
    assert (c["sdr_2"], c["sdr_2.5"], c["sdr_3"], c["sdr_4"]) == (0.25, 0.5, 0.75, 0.75)
    assert c["sd"] == pytest.approx(np.std([1.5, 2.5, 3.0, 4.5], ddof=1))
    assert p["subgroups"]["landmark"]["groups"]["1"]["mre"] == pytest.approx((2.5 + 4.5) / 2)
    strict = run_evaluation(
        EvaluationConfig(
            "landmarks",
            pred,
            gt,
            tmp_path / "strict",
            preset="landmarks-isbi2015",
            report=False,
            preset_options={"comparison": "<"},
        )
    )
    assert strict.summary["preset"]["components"]["sdr_2.5"] == 0.25
