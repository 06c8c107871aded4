"""FUGC preset: smoothed Dice, Hausdorff over the two lips and their union, normalised ranking."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.evaluate.challenges.fugc import (
    fugc_case_metrics,
    fugc_dice,
    fugc_hausdorff,
    fugc_ranking,
    normalize_metric,
)


def test_smoothed_dice() -> None:
    empty = np.zeros((4, 4), bool)
    a = empty.copy()
    a[:2, :2] = True
    b = empty.copy()
    b[:2, :1] = True
    assert fugc_dice(empty, empty) == 1.0
    assert fugc_dice(a, b) == pytest.approx((2 * 2 + 1e-6) / (4 + 2 + 1e-6))
    assert fugc_dice(a, empty) == pytest.approx(1e-6 / (4 + 1e-6))


def _sitk_hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """SimpleITK's HausdorffDistanceImageFilter on two whole masks (the official metric)."""
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(
        sitk.GetImageFromArray(a.astype(np.uint8)), sitk.GetImageFromArray(b.astype(np.uint8))
    )
    return float(f.GetHausdorffDistance())


def _two_lips(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A label map with an upper lip (1) resting on a lower lip (2): their union is one blob."""
    yy, xx = np.indices(shape)
    cy, cx = shape[0] / 2 + rng.uniform(-3, 3), shape[1] / 2 + rng.uniform(-3, 3)
    blob = ((yy - cy) / rng.uniform(6, 10)) ** 2 + ((xx - cx) / rng.uniform(8, 14)) ** 2 < 1
    out = np.zeros(shape, np.uint8)
    out[blob & (yy < cy + rng.uniform(-2, 2) + 0.3 * (xx - cx))] = 1
    out[blob & (out == 0)] = 2
    return out


def test_set_hausdorff_matches_simpleitk_on_lips_and_their_union() -> None:
    rng = np.random.default_rng(3)
    differ = 0
    for trial in range(30):
        shape = (int(rng.integers(30, 45)), int(rng.integers(35, 50)))
        gt = _two_lips(rng, shape)
        pred = _two_lips(rng, shape) if trial % 3 else gt.copy()
        if trial % 3 == 0:  # the lips meet elsewhere: the union's inner edge moves
            pred[(pred > 0) & (rng.random(shape) < 0.3)] = rng.integers(1, 3)
            pred = np.where(ndimage.binary_erosion(pred > 0), pred, gt)
        if trial % 5 == 0:  # a few holes: borders inside the other mask
            pred[(pred > 0) & (rng.random(shape) < 0.03)] = 0
        m = fugc_case_metrics(pred, gt)
        border = fugc_case_metrics(pred, gt, hd="border")
        for part, labels in (("upper_lip", (1,)), ("lower_lip", (2,)), ("cervix", (1, 2))):
            p, g = np.isin(pred, labels), np.isin(gt, labels)
            if p.any() and g.any():
                assert m[f"hd_{part}"] == pytest.approx(_sitk_hausdorff(p, g), abs=1e-9)
                differ += m[f"hd_{part}"] != pytest.approx(border[f"hd_{part}"])
    assert differ > 0  # the border convention would not have matched the official filter
    for _ in range(10):  # scattered random masks
        a = rng.random((20, 24)) < 0.2
        b = rng.random((20, 24)) < 0.3
        assert fugc_hausdorff(a, b) == pytest.approx(_sitk_hausdorff(a, b), abs=1e-9)
        sp = (0.5, 1.25)
        expected = _sitk_hausdorff_spaced(a, b, sp)
        assert fugc_hausdorff(a, b, spacing=sp) == pytest.approx(expected, abs=1e-9)


def _sitk_hausdorff_spaced(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float]) -> float:
    images = []
    for mask in (a, b):
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing(spacing[::-1])  # SimpleITK spacing is (x, y)
        images.append(image)
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(*images)
    return float(f.GetHausdorffDistance())


def test_set_and_border_differ_by_a_known_amount_on_the_union() -> None:
    """Lips touching in the reference, one row apart in the prediction.

    Reference: upper lip rows 5-14, lower lip rows 15-24 (columns 5-24), so the union is one
    20 x 20 square. Prediction: the same, lower lip row 15 removed. Union: the prediction
    misses row 15, 1 pixel from its rows 14 and 16 (set HD 1); but rows 14 and 16 are
    border pixels of the predicted union, the innermost 9 pixels from the reference union's
    border (border HD 9). The lower lip alone: 1 either way.
    """
    gt = np.zeros((30, 30), np.uint8)
    gt[5:15, 5:25] = 1
    gt[15:25, 5:25] = 2
    pred = gt.copy()
    pred[15, 5:25] = 0
    m = fugc_case_metrics(pred, gt)
    assert (m["hd_upper_lip"], m["hd_lower_lip"], m["hd_cervix"]) == (0.0, 1.0, 1.0)
    assert m["hd"] == pytest.approx(2 / 3)
    b = fugc_case_metrics(pred, gt, hd="border")
    assert (b["hd_upper_lip"], b["hd_lower_lip"], b["hd_cervix"]) == (0.0, 1.0, 9.0)
    assert b["hd"] == pytest.approx(10 / 3)
    assert m["hd_cervix"] == _sitk_hausdorff(pred > 0, gt > 0)


def test_border_option_keeps_the_medpy_values() -> None:
    import medpy.metric.binary as medpy

    rng = np.random.default_rng(11)
    for _ in range(5):
        a = rng.random((20, 24)) < 0.2
        b = rng.random((20, 24)) < 0.2
        assert fugc_hausdorff(a, b, mode="border") == pytest.approx(medpy.hd(a, b))
    gt = _two_lips(rng, (40, 44))
    pred = np.roll(gt, 2, axis=1)
    pred[20:22, 18:24] = 0  # a hole inside the prediction
    m = fugc_case_metrics(pred, gt, hd="border")
    assert m["hd_cervix"] == pytest.approx(medpy.hd(pred > 0, gt > 0))
    assert m["hd_cervix"] > fugc_case_metrics(pred, gt)["hd_cervix"]
    with pytest.raises(ValueError, match="mode must be one of set, border"):
        fugc_hausdorff(a, b, mode="surface")


def test_case_metrics_and_an_empty_part() -> None:
    gt = np.zeros((12, 12), np.uint8)
    gt[2:4, 2:8] = 1
    gt[6:8, 2:8] = 2
    pred = gt.copy()
    pred[pred == 2] = 0
    pred[7, 2:8] = 2  # lower lip: one row of the two
    m = fugc_case_metrics(pred, gt)
    assert m["dsc_upper_lip"] == pytest.approx(1.0)
    assert m["dsc_lower_lip"] == pytest.approx((2 * 6 + 1e-6) / (6 + 12 + 1e-6))
    assert m["dsc"] == pytest.approx((m["dsc_upper_lip"] + m["dsc_lower_lip"]) / 2)
    assert m["hd_upper_lip"] == 0.0
    assert m["hd_lower_lip"] == 1.0  # reference row 6 is 1 pixel from predicted row 7
    assert m["hd"] == pytest.approx((0 + 1 + m["hd_cervix"]) / 3)
    missing = gt.copy()
    missing[missing == 2] = 0
    m2 = fugc_case_metrics(missing, gt)
    assert math.isinf(m2["hd_lower_lip"]) and math.isinf(m2["hd"])
    assert m2["dsc_lower_lip"] == pytest.approx(1e-6 / (12 + 1e-6))
    both_empty = fugc_case_metrics(np.zeros_like(gt), np.zeros_like(gt))
    assert both_empty["dsc"] == 1.0 and math.isinf(both_empty["hd"])


def test_normalization_rank_and_minmax() -> None:
    # ties share the average rank: ranks 1, 2.5, 2.5, 4 -> (4 - r) / 3
    assert normalize_metric([0.9, 0.8, 0.8, 0.1], True, "rank").tolist() == pytest.approx(
        [1.0, 0.5, 0.5, 0.0]
    )
    assert normalize_metric([3.0, 1.0, 2.0], False, "rank").tolist() == [0.0, 1.0, 0.5]
    assert normalize_metric([0.5, 0.7, 0.9], True, "minmax").tolist() == pytest.approx(
        [0.0, 0.5, 1.0]
    )
    assert normalize_metric([4.0, math.inf, 2.0], False, "minmax").tolist() == [0.0, 0.0, 1.0]
    assert normalize_metric([5.0], False, "rank").tolist() == [1.0]


def test_ranking_score_by_hand() -> None:
    subs = {
        "a": {"dsc": 0.90, "hd": 12.0, "runtime": 0.5},
        "b": {"dsc": 0.85, "hd": 10.0, "runtime": 0.2},
        "c": {"dsc": 0.80, "hd": math.inf, "runtime": 0.1},
    }
    rank = fugc_ranking(subs, "rank")
    # a: dsc 1, hd 0.5, rt 0 -> 0.6; b: 0.5, 1, 0.5 -> 0.7; c: 0, 0, 1 -> 0.2
    assert rank["a"]["score"] == pytest.approx(0.6)
    assert rank["b"]["score"] == pytest.approx(0.7)
    assert rank["c"]["score"] == pytest.approx(0.2)
    assert (rank["b"]["rank"], rank["a"]["rank"], rank["c"]["rank"]) == (1.0, 2.0, 3.0)
    minmax = fugc_ranking(subs, "minmax")
    # a: dsc 1, hd 0 (12 worst finite), rt 0 -> 0.4; b: 0.5, 1, 0.75 -> 0.75
    assert minmax["a"]["score"] == pytest.approx(0.4)
    assert minmax["b"]["score"] == pytest.approx(0.4 * 0.5 + 0.4 * 1 + 0.2 * 0.75)


def _masks(folder: Path, maps: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for case_id, label_map in maps.items():
        Image.fromarray(label_map).save(folder / f"{case_id}.png")
    return folder


def test_run_scores_the_readable_cases_and_reports_the_failing_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    gt_maps = {f"img_{i}": _two_lips(rng, (40, 48)) for i in range(3)}
    pred_maps = {c: np.roll(m, i, axis=0) for i, (c, m) in enumerate(gt_maps.items())}
    gt = _masks(tmp_path / "gt", gt_maps)
    pred = _masks(tmp_path / "pred", pred_maps)
    (pred / "img_1.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["evaluate", "--preset", "fugc", "--pred", str(pred), "--gt", str(gt), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"]["errors"] == 1 and summary["cases"]["error_cases"] == ["img_1"]
    assert any("img_1" in w for w in summary["warnings"])
    assert "SimpleITK" in summary["conventions"]["hd"]
    c = summary["preset"]["components"]
    ok = [fugc_case_metrics(pred_maps[i], gt_maps[i]) for i in ("img_0", "img_2")]
    assert c["hd"] == pytest.approx(np.mean([m["hd"] for m in ok]))
    assert c["dsc"] == pytest.approx(np.mean([m["dsc"] for m in ok]))
    border = tmp_path / "border"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--preset",
            "fugc",
            "--pred",
            str(pred),
            "--gt",
            str(gt),
            "--out",
            str(border),
            "--preset-option",
            "hd=border",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((border / "summary.json").read_text())
    assert summary["conventions"]["hd"].startswith("full Hausdorff between the border")
    ok = [fugc_case_metrics(pred_maps[i], gt_maps[i], hd="border") for i in ("img_0", "img_2")]
    assert summary["preset"]["components"]["hd"] == pytest.approx(np.mean([m["hd"] for m in ok]))
