"""Multi-rater evaluation: consensus regions and scores, per-rater ECE, volume CRPS, references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import properscoring
import pytest
from scipy.integrate import quad
from scipy.interpolate import interp1d
from scipy.stats import norm

from medfleet.evaluate.analysis.calibration import expected_calibration_error
from medfleet.evaluate.analysis.multirater import (
    consensus_confidence,
    consensus_dice,
    consensus_regions,
    crps_curvas,
    crps_ensemble,
    crps_gaussian,
    majority_vote,
    mean_soft,
    per_rater_calibration,
    per_rater_ece,
    rater_volumes,
    volume_crps,
)
from medfleet.evaluate.metrics.conventions import MetricInputError


@pytest.fixture(scope="module")
def case():
    """Three raters of three organs on a small 3-D grid, with a probabilistic prediction."""
    rng = np.random.default_rng(0)
    shape = (6, 12, 12)
    zz, yy, xx = np.indices(shape)
    base = np.zeros(shape, np.uint8)
    base[(yy - 4) ** 2 + (xx - 4) ** 2 < 9] = 1
    base[(yy - 8) ** 2 + (xx - 8) ** 2 < 6] = 2
    base[(zz > 3) & (xx < 3)] = 3
    raters = []
    for _ in range(3):
        r = base.copy()
        flip = rng.random(shape) < 0.08
        r[flip] = rng.integers(0, 4, int(flip.sum()))
        raters.append(r)
    logits = rng.normal(0, 1, (4, *shape)) + 3.0 * (base[None] == np.arange(4)[:, None, None, None])
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    return raters, probs


def _official_consensus(groundtruth, bin_pred, prob_pred, organ):
    """The CURVAS consensus_dice_score computations for one organ, in numpy."""
    gt = np.stack(groundtruth)
    organ_gt = (gt == organ).astype(np.uint8)
    organ_bck = (gt != organ).astype(np.uint8)
    cons = np.logical_and.reduce(organ_gt, axis=0).astype(np.uint8)
    cons_bck = np.logical_and.reduce(organ_bck, axis=0).astype(np.uint8)
    dis = np.logical_and(cons == 0, cons_bck == 0).astype(np.uint8)
    pred = (bin_pred == organ).astype(np.uint8) * (1 - dis)
    ref = cons * (1 - dis)
    dice = 2 * (pred & ref).sum() / (pred.sum() + ref.sum()) if ref.sum() else math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an empty region
        mean_org = np.nanmean(prob_pred * np.where(cons == 1, 1, np.nan))
        mean_bck = np.nanmean(prob_pred * np.where(cons_bck == 1, 1, np.nan))
    return dice, ((1 - mean_bck) + mean_org) / 2


def test_consensus_regions_hand_computed():
    r1 = np.array([1, 1, 1, 0, 2, 0])
    r2 = np.array([1, 1, 0, 0, 1, 0])
    r3 = np.array([1, 0, 0, 0, 1, 1])
    fg, bg, dis = consensus_regions([r1, r2, r3], 1)
    assert fg.tolist() == [True, False, False, False, False, False]
    assert bg.tolist() == [False, False, False, True, False, False]
    assert dis.tolist() == [False, True, True, False, True, True]
    stacked = consensus_regions(np.stack([r1, r2, r3]), 1)
    assert np.array_equal(stacked.dissensus, dis)


def test_consensus_dice_and_confidence_match_the_official_computation(case):
    raters, probs = case
    bin_pred = probs.argmax(axis=0)
    for organ in (1, 2, 3):
        dice_ref, conf_ref = _official_consensus(raters, bin_pred, probs[organ], organ)
        assert consensus_dice(bin_pred, raters, organ) == pytest.approx(dice_ref)
        assert consensus_confidence(probs[organ], raters, organ) == pytest.approx(conf_ref)


def test_consensus_dice_hand_and_empty():
    r1 = np.array([1, 1, 1, 0, 0])
    r2 = np.array([1, 1, 0, 0, 0])
    pred = np.array([1, 0, 1, 1, 0])  # voxel 2 (dissensus) ignored: P = {0, 3}, G = {0, 1}
    assert consensus_dice(pred, [r1, r2], 1) == pytest.approx(0.5)
    assert consensus_dice(pred.astype(bool), [r1, r2], 1) == pytest.approx(0.5)
    disagree = [np.array([1, 0]), np.array([0, 1])]  # no voxel where both raters agree on 1
    assert math.isnan(consensus_dice(np.array([1, 1]), disagree, 1))
    assert consensus_dice(np.array([1, 1]), disagree, 1, empty=0.0) == 0.0


def test_consensus_confidence_hand_and_nan():
    r1 = np.array([1, 1, 0, 0])
    r2 = np.array([1, 0, 0, 0])
    p = np.array([0.9, 0.5, 0.2, 0.0])
    assert consensus_confidence(p, [r1, r2], 1) == pytest.approx((0.9 + 1 - 0.1) / 2)
    everywhere = [np.ones(4, int), np.ones(4, int)]  # empty consensus background
    assert math.isnan(consensus_confidence(p, everywhere, 1))
    with pytest.raises(MetricInputError, match="shape"):
        consensus_confidence(p[:3], [r1, r2], 1)


# ----------------------------------------------------------------------------- per-rater ECE


def _torchmetrics_like_ece(probs_with_bg, target, n_bins):
    """torchmetrics' MulticlassCalibrationError (l1) in float64, via torch.bucketize."""
    import torch

    preds = torch.from_numpy(probs_with_bg)
    if not torch.all((preds >= 0) * (preds <= 1)):
        preds = preds.softmax(1)
    confidences, predictions = preds.max(dim=1)
    accuracies = predictions.eq(torch.from_numpy(target)).to(confidences.dtype)
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=confidences.dtype)
    count = torch.zeros(len(boundaries), dtype=confidences.dtype)
    conf_bin = torch.zeros(len(boundaries), dtype=confidences.dtype)
    acc_bin = torch.zeros(len(boundaries), dtype=confidences.dtype)
    idx = torch.bucketize(confidences, boundaries, right=True) - 1
    count.scatter_add_(0, idx, torch.ones_like(confidences))
    conf_bin.scatter_add_(0, idx, confidences)
    acc_bin.scatter_add_(0, idx, accuracies)
    conf_bin = torch.nan_to_num(conf_bin / count)
    acc_bin = torch.nan_to_num(acc_bin / count)
    prop = count / count.sum()
    return float(torch.sum(torch.abs(acc_bin - conf_bin) * prop))


def test_per_rater_ece_curvas_setting_matches_torchmetrics_recipe(case):
    raters, probs = case
    organs = probs[1:].copy()  # (3, *grid): the CURVAS submission format
    organs[:, 0, 0, 0] = [1.0, 0.0, 0.0]  # a voxel with confidence exactly 1
    got = per_rater_ece(
        organs,
        raters,
        background="complement",
        invalid="softmax",
        edge_rule="torchmetrics",
        chunk_size=100,
    )
    with_bg = np.concatenate([1 - organs.sum(axis=0, keepdims=True), organs])
    flat = np.moveaxis(with_bg, 0, -1).reshape(-1, 4)
    for ece, rater in zip(got, raters, strict=True):
        assert ece == pytest.approx(_torchmetrics_like_ece(flat, rater.reshape(-1), 50), abs=1e-12)
        assert ece == pytest.approx(
            expected_calibration_error(flat, rater.reshape(-1), n_bins=50, edge_rule="torchmetrics")
        )


def test_per_rater_ece_softmax_when_organs_sum_above_one(case):
    raters, probs = case
    organs = probs[1:].copy()
    organs[:, 2, 5, 5] = [0.7, 0.5, 0.1]  # sums to 1.3: background -0.3
    got = per_rater_ece(
        organs, raters, background="complement", invalid="softmax", edge_rule="torchmetrics"
    )
    with_bg = np.concatenate([1 - organs.sum(axis=0, keepdims=True), organs])
    flat = np.moveaxis(with_bg, 0, -1).reshape(-1, 4)
    soft = np.exp(flat) / np.exp(flat).sum(axis=1, keepdims=True)  # applied to every voxel
    ref = [
        expected_calibration_error(soft, r.reshape(-1), n_bins=50, edge_rule="torchmetrics")
        for r in raters
    ]
    assert got == pytest.approx(ref)
    assert got[0] == pytest.approx(_torchmetrics_like_ece(flat, raters[0].reshape(-1), 50))
    with pytest.raises(MetricInputError, match="outside"):
        per_rater_ece(organs, raters, background="complement")


def test_per_rater_calibration_class_last_and_equal_mass(case):
    raters, probs = case
    last = np.moveaxis(probs, 0, -1)
    a = per_rater_calibration(probs, raters, n_bins=10, class_axis=0)
    b = per_rater_calibration(last, raters, n_bins=10, class_axis=-1)
    assert [r.ece for r in a] == pytest.approx([r.ece for r in b])
    mass = per_rater_calibration(probs, raters, n_bins=10, binning="equal-mass", chunk_size=97)
    for res, rater in zip(mass, raters, strict=True):
        exact = expected_calibration_error(
            last.reshape(-1, 4), rater.reshape(-1), n_bins=10, binning="equal-mass"
        )
        assert abs(res.ece - exact) <= res.ece_error_bound + 1e-12


# ----------------------------------------------------------------------------- volume CRPS


def _official_crps(predicted_volume, volumes):
    """CURVAS calculate_volumes_distributions + crps_computation, kept literal."""
    mean, std = np.mean(volumes), np.std(volumes)
    dist = norm(loc=mean, scale=std)
    x = np.linspace(dist.ppf(0.01), dist.ppf(0.99), 100)
    cdf = interp1d(x, dist.cdf(x), bounds_error=False, fill_value=(0, 1))

    def heaviside(v):
        return 0.5 * (np.sign(v) + 1)

    value, _ = quad(
        lambda y: (cdf(y) - heaviside(y - predicted_volume)) ** 2, mean - 3 * std, mean + 3 * std
    )
    return value


def _careful_quad(x, vols):
    """The official integrand, integrated with its jumps given to quad and tight tolerances."""
    mean, std = np.mean(vols), np.std(vols)
    grid = np.linspace(mean + std * norm.ppf(0.01), mean + std * norm.ppf(0.99), 100)
    cdf_grid = norm.cdf(grid, mean, std)

    def integrand(y):
        cdf = 0.0 if y < grid[0] else (1.0 if y > grid[-1] else np.interp(y, grid, cdf_grid))
        return (cdf - (y > x)) ** 2

    pts = sorted({p for p in [*grid, x] if mean - 3 * std < p < mean + 3 * std})
    value, _ = quad(
        integrand, mean - 3 * std, mean + 3 * std, points=pts, limit=500, epsabs=0, epsrel=1e-12
    )
    return value


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_curvas_crps_reproduces_the_official_code():
    rng = np.random.default_rng(1)
    cases = [(10.0, [8, 10, 12]), (9.3, [8, 10, 12]), (1.0e5, [9.0e4, 1.1e5, 1.05e5])]
    cases += [(float(rng.uniform(50, 150)), rng.uniform(60, 140, 3).tolist()) for _ in range(8)]
    for x, vols in cases:
        official = _official_crps(x, vols)
        assert crps_curvas(x, vols, integration="quad") == pytest.approx(official, rel=1e-10)
        # the exact integral of the same integrand; the official quad call is off by up to ~1%
        exact = crps_curvas(x, vols)
        assert exact == pytest.approx(official, rel=2e-2)
        careful = _careful_quad(x, vols)
        assert exact == pytest.approx(careful, rel=1e-9)


def test_curvas_crps_zero_when_raters_agree_and_truncated_tails():
    assert crps_curvas(1234.0, [500.0, 500.0, 500.0]) == 0.0
    far = crps_curvas(1e6, [8.0, 10.0, 12.0])  # only the window mean +/- 3 std is integrated
    mean, std = 10.0, np.std([8.0, 10.0, 12.0])
    assert far < 6 * std
    assert crps_gaussian(1e6, mean, std) == pytest.approx(1e6 - mean, rel=1e-3)


def test_exact_forms_match_properscoring():
    rng = np.random.default_rng(2)
    for _ in range(20):
        members = rng.normal(100, 15, int(rng.integers(2, 6)))
        x = float(rng.normal(100, 25))
        mu, sigma = members.mean(), members.std()
        assert crps_gaussian(x, mu, sigma) == pytest.approx(
            properscoring.crps_gaussian(x, mu, sigma)
        )
        assert crps_ensemble(x, members) == pytest.approx(properscoring.crps_ensemble(x, members))
    assert crps_gaussian(3.0, 1.0, 0.0) == 2.0


def test_volume_crps_from_maps(case):
    raters, probs = case
    spacing = (2.5, 0.8, 0.8)
    voxel = 2.5 * 0.8 * 0.8
    vols = rater_volumes(raters, 1, spacing)
    assert vols.tolist() == pytest.approx([np.count_nonzero(r == 1) * voxel for r in raters])
    predicted = probs[1].sum() * voxel
    assert volume_crps(probs[1], raters, 1, spacing, form="ensemble") == pytest.approx(
        properscoring.crps_ensemble(predicted, vols)
    )
    assert volume_crps(probs[1], raters, 1, spacing, form="gaussian") == pytest.approx(
        properscoring.crps_gaussian(predicted, vols.mean(), vols.std())
    )
    assert volume_crps(probs[1], raters, 1, spacing, form="gaussian", ddof=1) == pytest.approx(
        properscoring.crps_gaussian(predicted, vols.mean(), vols.std(ddof=1))
    )
    # volumes in voxels vs mm^3: every form scales with the voxel volume
    for form in ("curvas", "gaussian", "ensemble"):
        in_voxels = volume_crps(probs[1], raters, 1, form=form)
        assert volume_crps(probs[1], raters, 1, spacing, form=form) == pytest.approx(
            in_voxels * voxel
        )
    with pytest.raises(MetricInputError, match="form"):
        volume_crps(probs[1], raters, 1, form="beta")


# ----------------------------------------------------------------------------- references


def test_majority_vote_and_ties():
    r = [np.array([1, 1, 0, 2, 3]), np.array([1, 0, 0, 1, 2]), np.array([0, 2, 0, 2, 1])]
    assert majority_vote(r).tolist() == [1, 0, 0, 2, 0]
    assert majority_vote(r, tie="lowest").tolist() == [1, 0, 0, 2, 1]
    two = [np.array([1, 0, 1]), np.array([1, 1, 0])]
    assert majority_vote(two).tolist() == [1, 0, 0]  # 1 vs 0: tie -> background


def test_majority_vote_binary_odd_raters_equals_strict_majority():
    rng = np.random.default_rng(3)
    masks = rng.integers(0, 2, (5, 8, 9))
    expected = (masks.sum(axis=0) >= 3).astype(masks.dtype)
    assert np.array_equal(majority_vote(masks), expected)
    assert np.array_equal(mean_soft(masks, 1), (masks.sum(axis=0) / 5).astype(np.float32))


def test_mean_soft():
    r = [np.array([1, 2, 0]), np.array([1, 0, 0]), np.array([2, 2, 0])]
    assert mean_soft(r, 2).tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert mean_soft(r).tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    with pytest.raises(MetricInputError, match="rater 1"):
        mean_soft([np.zeros(3), np.zeros(4)])
