"""FUGC preset: smoothed Dice, Hausdorff over the two lips and their union, normalised ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest

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


def test_hausdorff_matches_medpy() -> None:
    import medpy.metric.binary as medpy

    rng = np.random.default_rng(11)
    for _ in range(5):
        a = rng.random((20, 24)) < 0.2
        b = rng.random((20, 24)) < 0.2
        assert fugc_hausdorff(a, b) == pytest.approx(medpy.hd(a, b))


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
