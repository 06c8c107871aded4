"""MAMA-MIA presets: contours, HD95, Dice, NormHD, subgroup mapping, fairness and pCR scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

from medfleet.evaluate.challenges.mama_mia import (
    age_group,
    equalized_odds_disparity,
    label_contour,
    mama_mia_dice,
    mama_mia_hd95,
    mama_mia_pcr_score,
    mama_mia_seg_score,
    menopause_group,
    normalized_hd,
)


@pytest.mark.parametrize("shape", [(9, 11), (5, 7, 6)])
def test_label_contour_matches_simpleitk_label_contour(shape: tuple[int, ...]) -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(3)
    for _ in range(5):
        labels = rng.choice([0, 0, 1, 2], size=shape).astype(np.uint8)
        labels[(0,) * len(shape)] = 1  # a label on the image corner
        expected = sitk.GetArrayFromImage(sitk.LabelContour(sitk.GetImageFromArray(labels))) > 0
        np.testing.assert_array_equal(label_contour(labels), expected)


def test_label_contour_ignores_the_image_edge_unless_asked() -> None:
    full = np.ones((4, 5), np.uint8)
    assert not label_contour(full).any()
    assert label_contour(full, edge="border").sum() == 14  # the ring of a 4 x 5 image


def test_hd95_linear_percentile_in_voxels_and_mm() -> None:
    gt = np.zeros((4, 8), np.uint8)
    gt[1, 1] = 1
    pred = np.zeros_like(gt)
    pred[1, 1] = pred[1, 5] = 1
    # pred -> gt distances [0, 4]: linear P95 = 3.8; gt -> pred [0]: 0.
    assert mama_mia_hd95(pred, gt) == pytest.approx(3.8)
    assert mama_mia_hd95(gt, pred) == pytest.approx(3.8)
    # columns 3 mm apart: [0, 12] -> 11.4
    assert mama_mia_hd95(pred, gt, spacing=(2.0, 3.0)) == pytest.approx(11.4)


def test_hd95_against_brute_force_over_simpleitk_contours() -> None:
    import SimpleITK as sitk
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    for _ in range(4):
        gt = (rng.random((12, 14)) < 0.3).astype(np.uint8)
        pred = (rng.random((12, 14)) < 0.3).astype(np.uint8)
        a = np.argwhere(sitk.GetArrayFromImage(sitk.LabelContour(sitk.GetImageFromArray(gt))))
        b = np.argwhere(sitk.GetArrayFromImage(sitk.LabelContour(sitk.GetImageFromArray(pred))))
        d = cdist(a, b)
        expected = max(np.percentile(d.min(axis=0), 95), np.percentile(d.min(axis=1), 95))
        assert mama_mia_hd95(pred, gt) == pytest.approx(expected)


def test_hd95_empty_and_full_masks() -> None:
    empty = np.zeros((5, 5), np.uint8)
    blob = empty.copy()
    blob[1:3, 1:3] = 1
    assert mama_mia_hd95(empty, empty) == 0.0
    assert math.isinf(mama_mia_hd95(empty, blob))
    assert math.isinf(mama_mia_hd95(blob, empty))
    # a mask filling the image has no contour: treated as empty by the official rule
    assert math.isinf(mama_mia_hd95(np.ones((5, 5), np.uint8), blob))


def test_dice_norm_hd_edge_cases() -> None:
    empty = np.zeros((3, 3), np.uint8)
    assert mama_mia_dice(empty, empty) == 0.0
    assert mama_mia_dice(empty, empty, both_empty=1.0) == 1.0
    gt = np.array([[1, 1, 2, 0]])
    assert mama_mia_dice(np.array([[1, 0, 0, 0]]), gt) == pytest.approx(2 / 3)
    assert normalized_hd(math.inf) == 1.0
    assert normalized_hd(300.0) == 2.0  # not clipped
    assert normalized_hd(30.0, hd_max=100.0) == pytest.approx(0.3)


def test_age_bins_match_the_official_pandas_cut() -> None:
    ages = [0, 0.5, 18, 40, 40.01, 45, 50, 50.5, 60, 61, 70, 70.2, 85, 100, 100.5, float("nan")]
    cut = pd.cut(
        pd.Series(ages),
        bins=[0, 40, 50, 60, 70, 100],
        labels=["0-40", "41-50", "51-60", "61-70", "71+"],
    )
    expected = [None if pd.isna(v) else str(v) for v in cut]
    assert [age_group(a) for a in ages] == expected
    assert age_group("") is None


def test_menopause_mapping_per_scorer() -> None:
    assert menopause_group("perimenopausal") == "pre"
    assert menopause_group("premenopause") == "pre"
    assert menopause_group("postmenopause") == "post"
    assert menopause_group("") == "unknown"
    assert menopause_group(None, "pcr") == "unknown"
    assert menopause_group("Post") == "Post"  # task 1 keeps the case
    assert menopause_group("Post", lowercase=True) == "post"
    assert menopause_group("Post", "pcr") == "post"  # task 2 lower-cases
    assert menopause_group("pre/post", "seg") == "post"  # task 1 tests "post" before "pre"
    assert menopause_group("pre/post", "pcr") == "pre"  # task 2 tests "pre" first


def test_segmentation_score_by_hand() -> None:
    dice = [1.0, 0.5, 0.0, 0.75]
    norm_hd = [0.0, 0.2, 1.0, 0.1]
    groups = {
        "age": ["0-40", "0-40", "41-50", None],
        "menopausal_status": ["pre", "post", "pre", "unknown"],
        "breast_density": ["a", None, "a", "b"],
    }
    s = mama_mia_seg_score(dice, norm_hd, groups)
    assert s["performance"] == pytest.approx(0.5 * (0.5625 + (1 - 0.325)))
    assert s["fairness_by_variable"]["age"] == pytest.approx(1 - 0.5 * (0.75 + 0.9))
    assert s["fairness_by_variable"]["menopausal_status"] == pytest.approx(1 - 0.5 * 0.65)
    assert s["fairness_by_variable"]["breast_density"] == pytest.approx(1 - 0.5 * 0.65)
    assert s["fairness"] == pytest.approx((0.175 + 0.675 + 0.675) / 3)
    assert s["score"] == pytest.approx(0.5 * 0.61875 + 0.5 * 0.5083333333)
    age = s["subgroups"]["age"]
    assert age["groups"]["0-40"] == {"n": 2, "dice": 0.75, "norm_hd": pytest.approx(0.1)}
    assert age["n_dropped"] == 1


def test_segmentation_variable_without_groups_is_left_out() -> None:
    s = mama_mia_seg_score([1.0, 0.0], [0.0, 1.0], {"age": [None, None], "x": ["a", "a"]})
    assert math.isnan(s["fairness_by_variable"]["age"])
    assert s["fairness"] == 1.0  # one group only: no disparity


def _official_group_rates(yt: list[int], yp: list[int]) -> tuple[float, float]:
    """The official task 2 code path, with sklearn's confusion_matrix."""
    try:
        tn, fp, fn, tp = confusion_matrix(yt, yp).ravel()
        return (tp / (tp + fn) if (tp + fn) else 0), (fp / (fp + tn) if (fp + tn) else 0)
    except ValueError:
        return 0, 0


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
def test_pcr_one_class_group_gets_zero_rates_like_sklearn() -> None:
    y_true = [1, 1, 1, 0, 0, 0, 1]
    y_pred = [1, 1, 1, 0, 1, 0, 0]
    groups = ["a", "a", "b", "b", "c", "c", "c"]
    d, table = equalized_odds_disparity(y_true, y_pred, groups)
    for name in "abc":
        idx = [i for i, g in enumerate(groups) if g == name]
        tpr, fpr = _official_group_rates([y_true[i] for i in idx], [y_pred[i] for i in idx])
        assert table[name]["tpr"] == pytest.approx(tpr)
        assert table[name]["fpr"] == pytest.approx(fpr)
    # a: perfectly classified but one class -> 0, 0; b: TPR 1, FPR 0; c: TPR 0, FPR 1/2
    assert (table["a"]["tpr"], table["a"]["fpr"]) == (0.0, 0.0)
    assert d == pytest.approx((1 - 0) + (0.5 - 0))


def test_pcr_fixed_labels_option_leaves_undefined_rates_out() -> None:
    d, table = equalized_odds_disparity(
        [1, 1, 1, 0], [1, 1, 1, 0], ["a", "a", "b", "b"], fixed_labels=True
    )
    assert table["a"]["tpr"] == 1.0 and math.isnan(table["a"]["fpr"])
    assert d == 0.0
    d_official, _ = equalized_odds_disparity([1, 1, 1, 0], [1, 1, 1, 0], ["a", "a", "b", "b"])
    assert d_official == 1.0


def test_pcr_score_against_sklearn() -> None:
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 2, 40)
    scores = np.clip(y_true * 0.3 + rng.random(40) * 0.7, 0, 1)
    y_pred = (scores > 0.5).astype(int)
    groups = {"v": list(rng.choice(["x", "y", "z"], 40)), "w": ["k"] * 40}
    s = mama_mia_pcr_score(y_true, y_pred, groups, y_score=scores)
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert s["auc"] == pytest.approx(roc_auc_score(y_true, scores))
    raw = (s["disparity_by_variable"]["v"] + s["disparity_by_variable"]["w"]) / 2
    assert s["disparity"] == pytest.approx(min(max(raw, 0), 1))
    assert s["score"] == pytest.approx(0.5 * s["balanced_accuracy"] + 0.5 * (1 - s["disparity"]))


def test_pcr_disparity_is_clipped_to_one() -> None:
    # group a: TPR 1, FPR 0; group b: TPR 0, FPR 1 -> D_v = 2, clipped to 1
    s = mama_mia_pcr_score([1, 0, 1, 0], [1, 0, 0, 1], {"v": ["a", "a", "b", "b"]})
    assert s["disparity_unclipped"] == 2.0
    assert s["disparity"] == 1.0
    assert s["score"] == pytest.approx(0.5 * 0.5)


def test_segmentation_nan_value_makes_its_group_and_variable_nan() -> None:
    # the official scorer averages with a plain mean: a NaN Dice makes its group mean NaN
    s = mama_mia_seg_score(
        [1.0, float("nan"), 0.5, 0.5],
        [0.0, 0.1, 0.2, 0.2],
        {
            "site": ["a", "a", "b", "b"],
            "density": ["c", "d", "c", "d"],
            "age": ["x", None, "x", "x"],
        },
    )
    assert math.isnan(s["subgroups"]["site"]["groups"]["a"]["dice"])
    assert math.isnan(s["fairness_by_variable"]["site"])
    assert math.isnan(s["fairness_by_variable"]["density"])
    assert s["fairness_by_variable"]["age"] == 1.0
    assert s["fairness"] == 1.0  # NaN terms are left out of F
    assert math.isnan(s["mean_dice"])


def test_group_tables_are_json_types() -> None:
    s = mama_mia_seg_score([1.0, 0.5], [0.0, 0.2], {"site": ["a", None]})
    row = s["subgroups"]["site"]["groups"]["a"]
    assert list(row) == ["n", "dice", "norm_hd"]
    assert type(row["n"]) is int and type(row["dice"]) is float
    assert s["subgroups"]["site"]["n_dropped"] == 1
    _, table = equalized_odds_disparity([1, 0], [1, 1], ["a", "a"])
    assert list(table["a"]) == ["n", "tp", "fp", "fn", "tn", "tpr", "fpr"]
    assert all(type(table["a"][k]) is int for k in ("n", "tp", "fp", "fn", "tn"))
    assert type(table["a"]["fpr"]) is float
