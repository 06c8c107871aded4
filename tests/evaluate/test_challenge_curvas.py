"""CURVAS preset: consensus Dice (3-D and the official row-wise call), confidence, ECE, CRPS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfleet.evaluate.analysis.multirater import (
    consensus_confidence,
    consensus_dice,
    consensus_regions,
)
from medfleet.evaluate.challenges.curvas import (
    body_crop_box,
    consensus_dice_rowwise,
    curvas_crps,
    curvas_ece,
    pooled_reliability,
    rater_volumes,
)


def test_consensus_regions_and_dice_by_hand() -> None:
    raters = np.array([[1, 1, 1, 0, 0, 2], [1, 1, 0, 0, 0, 2], [1, 1, 0, 0, 1, 2]])
    fg, bg, dis = consensus_regions(raters, 1)
    assert fg.tolist() == [True, True, False, False, False, False]
    assert bg.tolist() == [False, False, False, True, False, True]
    assert dis.tolist() == [False, False, True, False, True, False]
    # prediction: voxels 0, 2 (dissensus: ignored) and 3 (a false positive)
    pred = np.array([1, 0, 1, 1, 0, 0])
    assert consensus_dice(pred, raters, 1) == pytest.approx(2 * 1 / (2 + 2))
    assert math.isnan(consensus_dice(pred, raters, 3))  # no consensus foreground


def test_rowwise_dice_by_hand() -> None:
    raters = np.zeros((2, 2, 3, 4), int)  # 2 raters, 2 slices, 3 rows, 4 columns
    raters[:, 0, 0, :] = 1  # row 0: dropped as "background"
    raters[:, 0, 1, :2] = 1
    raters[:, 0, 2, :] = 1
    raters[:, 1, 2, 1:3] = 1
    pred = np.zeros((2, 3, 4), int)
    pred[0, 1, :2] = 1  # slice 0 row 1: Dice 1
    pred[0, 2, :2] = 1  # slice 0 row 2: 2*2 / (2 + 4) = 2/3
    pred[1, 2, 2:] = 1  # slice 1 row 2: 2*1 / (2 + 2) = 1/2 (row 1 empty: skipped)
    expected = ((1.0 + 2 / 3) / 2 + 0.5) / 2  # mean per slice, then over slices
    assert consensus_dice_rowwise(pred, raters, 1) == pytest.approx(expected)
    # the 3-D consensus Dice of the same data (row 0 counts): 2 * 5 / (6 + 12)
    assert consensus_dice(pred, raters, 1) == pytest.approx(10 / 18)
    assert consensus_dice_rowwise(pred, np.zeros_like(raters), 1) == 0.0


@pytest.mark.slow
def test_rowwise_dice_matches_monai_on_the_official_call() -> None:
    import monai.metrics as monai_metrics
    import torch

    rng = np.random.default_rng(7)
    for trial in range(4):
        raters = rng.choice([0, 1, 1, 2], size=(3, 3, 6, 7))
        raters[1] = np.where(rng.random(raters[1].shape) < 0.8, raters[0], raters[1])
        raters[2] = np.where(rng.random(raters[2].shape) < 0.8, raters[0], raters[2])
        pred = rng.choice([0, 1, 2], size=(3, 6, 7))
        if trial == 3:
            raters[:, :, :, :] = 0  # nothing left: MONAI's mean of nothing is 0
        fg, _, dis = consensus_regions(raters, 1)
        metric = monai_metrics.DiceMetric(
            include_background=False, reduction="mean", get_not_nans=False, ignore_empty=True
        )
        p = torch.from_numpy(((pred == 1) & ~dis).astype(np.uint8))
        g = torch.from_numpy((fg & ~dis).astype(np.uint8))
        metric(p, g)
        expected = metric.aggregate().item()
        assert consensus_dice_rowwise(pred, raters, 1) == pytest.approx(expected, abs=1e-6)


def test_confidence_by_hand_and_nan_for_an_empty_region() -> None:
    raters = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    prob = np.array([0.9, 0.5, 0.2, 0.0])
    assert consensus_confidence(prob, raters, 1) == pytest.approx(0.5 * (0.9 + (1 - 0.1)))
    everything = np.ones((2, 4), int)
    assert math.isnan(consensus_confidence(prob, everything, 1))  # no consensus background


def test_ece_by_hand_with_the_extra_bin_for_confidence_one() -> None:
    probs = np.array([[0.9, 0.2, 0.6, 1.0]])  # one organ; background = 1 - p
    target = np.array([[1, 1, 0, 1]])
    (result,) = curvas_ece(probs, target, 50)
    # confidences 0.9 (right), 0.8 (wrong), 0.6 (wrong), 1.0 (right, its own bin)
    assert result.ece == pytest.approx((0.1 + 0.8 + 0.6 + 0.0) / 4, abs=1e-9)
    assert result.reliability.counts[-1] == 1  # confidence exactly 1: the extra bin


def test_ece_applies_a_softmax_to_every_voxel_when_probabilities_sum_above_one() -> None:
    probs = np.array([[0.7, 0.2], [0.6, 0.1]])  # voxel 0 sums to 1.3, voxel 1 to 0.3
    target = np.array([[1, 0]])
    (result,) = curvas_ece(probs, target, 10)
    rows = np.array([[-0.3, 0.7, 0.6], [0.7, 0.2, 0.1]])
    soft = np.exp(rows) / np.exp(rows).sum(axis=1, keepdims=True)
    rel = pooled_reliability([result])
    conf_sum = np.nansum(np.array(rel["confidence"]) * np.array(rel["count"]))
    # the confidences are cast to float32, as torchmetrics does
    assert conf_sum == pytest.approx(soft.max(axis=1).sum(), rel=1e-7)
    (plain,) = curvas_ece(np.array([[0.2, 0.1]]), np.array([[0, 0]]), 10)
    rel = pooled_reliability([plain])
    # no softmax: the confidences are the background probabilities 0.8 and 0.9
    assert np.nansum(np.array(rel["confidence"]) * np.array(rel["count"])) == pytest.approx(1.7)


def test_ece_per_rater_and_pooled_bins() -> None:
    rng = np.random.default_rng(2)
    probs = rng.dirichlet([1, 1, 1], size=(6, 7)).transpose(2, 0, 1)[1:]  # 2 organs
    raters = rng.integers(0, 3, size=(3, 6, 7))
    results = curvas_ece(probs, raters, 15)
    assert len(results) == 3
    for result, rater in zip(results, raters, strict=True):
        full = np.concatenate([1 - probs.sum(axis=0, keepdims=True), probs]).reshape(3, -1)
        conf, pred = full.max(axis=0), full.argmax(axis=0)
        correct = pred == rater.reshape(-1)
        idx = np.minimum((conf * 15).astype(int), 15)
        gaps = [
            abs(correct[idx == b].mean() - conf[idx == b].mean()) * (idx == b).mean()
            for b in range(16)
            if (idx == b).any()
        ]
        assert result.ece == pytest.approx(sum(gaps))
    pooled = pooled_reliability(results)
    assert sum(pooled["count"]) == 3 * 42


def test_crps_forms() -> None:
    import properscoring

    volumes = [100.0, 120.0, 95.0]
    mean, sd = np.mean(volumes), np.std(volumes)
    for x in (80.0, 104.0, 131.0):
        assert curvas_crps(x, volumes, "gaussian") == pytest.approx(
            properscoring.crps_gaussian(x, mean, sd)
        )
        assert curvas_crps(x, volumes, "ensemble") == pytest.approx(
            properscoring.crps_ensemble(x, volumes)
        )
    assert curvas_crps(50.0, [70.0, 70.0, 70.0]) == 0.0  # official: all raters agree -> 0
    assert curvas_crps(50.0, [70.0, 70.0], "gaussian") == 20.0
    # the official quad call and the exact integral of the same integrand agree closely
    assert curvas_crps(104.0, volumes, integration="quad") == pytest.approx(
        curvas_crps(104.0, volumes, integration="exact"), rel=0.02
    )


def test_official_crps_integrates_only_over_three_sd() -> None:
    volumes = [100.0, 120.0, 95.0]
    mean, sd = np.mean(volumes), np.std(volumes)
    # beyond mean + 3 SD the indicator is 0 on the whole range: the value no longer changes
    assert curvas_crps(mean + 5 * sd, volumes) == pytest.approx(curvas_crps(mean + 9 * sd, volumes))
    # close to the truncated exact integral of the Gaussian CRPS
    from scipy import integrate, stats

    x = 104.0
    exact, _ = integrate.quad(
        lambda y: (stats.norm.cdf(y, mean, sd) - (y >= x)) ** 2,
        mean - 3 * sd,
        mean + 3 * sd,
        points=[x],
    )
    assert curvas_crps(x, volumes) == pytest.approx(exact, rel=0.02)


def test_rater_volumes_official_indexing_versus_label_count() -> None:
    raters = np.array([[0, 2, 2, 3], [0, 1, 2, 3]])
    assert rater_volumes(raters, 2, voxel_volume=0.5) == [1.0, 0.5]
    # np.unique counts of rater 0 are [1 (0), 2 (2), 1 (3)]: index 2 is label 3's count
    assert rater_volumes(raters, 2, count="unique-index") == [1.0, 1.0]
    with pytest.raises(IndexError):
        rater_volumes(raters, 3, count="unique-index")


def test_body_crop_box() -> None:
    ct = np.zeros((3, 6, 8))
    ct[0, 2, 3] = 5
    ct[2, 4, 6] = 1
    assert body_crop_box(ct) == (slice(2, 5), slice(3, 7))
    with pytest.raises(ValueError, match="no voxel > 0"):
        body_crop_box(np.zeros((2, 3)))
