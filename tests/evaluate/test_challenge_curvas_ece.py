"""CURVAS ECE: torchmetrics' float32 binning and accumulation, against torch itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfleet.evaluate.analysis.multirater import per_rater_calibration
from medfleet.evaluate.challenges.curvas import (
    F32_COUNT_LIMIT,
    _bucketize,
    curvas_ece,
    torchmetrics_bin_edges,
)

#: Float32 precision of an ECE near 0.5 (a few units in the last place).
TOL = 1e-7


def _torchmetrics_ece(probs: np.ndarray, rater: np.ndarray, n_bins: int = 50) -> float:
    """The official CURVAS ``expected_calibration_error`` with torchmetrics' steps inlined.

    ``MulticlassCalibrationError``: softmax when any value is outside [0, 1], top-1
    confidence cast to float32, ``bucketize(right=True)`` on float32 ``linspace`` edges and
    float32 ``scatter_add_`` of counts, confidences and accuracies (torchmetrics'
    ``_binning_bucketize`` and ``_ce_compute`` with the l1 norm).
    """
    samples = torch.tensor(probs)
    background = 1 - samples.sum(dim=0, keepdim=True)
    with_bg = torch.cat((background, samples), dim=0)
    flat = with_bg.permute(*range(1, with_bg.ndim), 0).reshape(-1, with_bg.shape[0])
    target = torch.tensor(rater).reshape(-1)
    if not torch.all((flat >= 0) * (flat <= 1)):
        flat = flat.softmax(1)
    confidences, predictions = flat.max(dim=1)
    accuracies = predictions.eq(target)
    confidences, accuracies = confidences.float(), accuracies.float()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float)
    acc_bin = torch.zeros(len(edges), dtype=confidences.dtype)
    conf_bin = torch.zeros(len(edges), dtype=confidences.dtype)
    count_bin = torch.zeros(len(edges), dtype=confidences.dtype)
    indices = torch.bucketize(confidences, edges, right=True) - 1
    count_bin.scatter_add_(dim=0, index=indices, src=torch.ones_like(confidences))
    conf_bin.scatter_add_(dim=0, index=indices, src=confidences)
    conf_bin = torch.nan_to_num(conf_bin / count_bin)
    acc_bin.scatter_add_(dim=0, index=indices, src=accuracies)
    acc_bin = torch.nan_to_num(acc_bin / count_bin)
    prop_bin = count_bin / count_bin.sum()
    return float(torch.sum(torch.abs(acc_bin - conf_bin) * prop_bin))


def _old_float64_ece(probs: np.ndarray, raters: np.ndarray) -> list[float]:
    """The ECE the preset computed before: the same recipe accumulated in float64."""
    results = per_rater_calibration(
        probs,
        raters,
        n_bins=50,
        background="complement",
        invalid="softmax",
        edge_rule="torchmetrics",
    )
    return [r.ece for r in results]


def _ct_like_case(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Mostly background with small noisy organ probabilities, one voxel summing above 1."""
    raters = np.zeros((3, *shape), np.int64)
    raters[:, :, 40:60, 40:60] = 1
    raters[1:, :, 41:61, 40:60] = 2
    raters[2, :, 10:20, 70:80] = 3
    probs = rng.random((3, *shape), dtype=np.float32) * np.float32(0.02)
    probs[0, :, 40:60, 40:60] = 0.9
    probs[:, 0, 0, 0] = [0.7, 0.5, 0.1]  # background -0.3: torchmetrics softmaxes every voxel
    return probs, raters


def _dirichlet_case(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    raters = rng.integers(0, 4, size=(3, *shape))
    probs = rng.dirichlet([1, 1, 1, 1], size=shape)
    organs = np.moveaxis(probs, -1, 0)[1:].astype(np.float32)
    organs[:, 1, 2, 3] = [0.6, 0.3, 0.3]  # sums to 1.2
    return organs, raters


def test_bin_edges_are_torch_linspace() -> None:
    for n_bins in [*range(1, 130), 200, 1000]:
        expected = torch.linspace(0, 1, n_bins + 1, dtype=torch.float).numpy()
        assert np.array_equal(torchmetrics_bin_edges(n_bins), expected), n_bins
    # the float32 rounding of i / 50 is not torch's edge everywhere
    assert not np.array_equal(torchmetrics_bin_edges(50), np.linspace(0, 1, 51).astype(np.float32))


def test_bucketize_is_torch_bucketize_right() -> None:
    rng = np.random.default_rng(0)
    for n_bins in (10, 15, 50, 97):
        edges = torchmetrics_bin_edges(n_bins)
        near = np.concatenate(
            [edges, np.nextafter(edges, np.float32(0)), np.nextafter(edges, np.float32(2))]
        )
        conf = np.clip(np.concatenate([rng.random(5000, dtype=np.float32), near]), 0, 1).astype(
            np.float32
        )
        expected = torch.bucketize(torch.from_numpy(conf), torch.from_numpy(edges), right=True) - 1
        assert np.array_equal(_bucketize(conf, edges), expected.numpy())


def test_float32_counts_stop_at_two_to_the_24() -> None:
    ones = torch.ones(F32_COUNT_LIMIT + 5)
    count = torch.zeros(1).scatter_add_(0, torch.zeros_like(ones, dtype=torch.long), ones)
    assert float(count[0]) == F32_COUNT_LIMIT  # the rule the preset applies to the counts


@pytest.mark.parametrize("make", [_ct_like_case, _dirichlet_case])
def test_ece_equals_the_float32_torchmetrics_recipe_and_not_the_old_float64(make) -> None:
    rng = np.random.default_rng(5)
    shapes = [(20, 100, 100), (8, 64, 96)] if make is _ct_like_case else [(20, 60, 70)]
    largest_old_gap = 0.0
    for shape in shapes:
        probs, raters = make(rng, shape)
        got = [r.ece for r in curvas_ece(probs, raters)]
        expected = [_torchmetrics_ece(probs, rater) for rater in raters]
        assert got == pytest.approx(expected, abs=TOL)
        old = _old_float64_ece(probs, raters)
        largest_old_gap = max(largest_old_gap, *np.abs(np.subtract(old, expected)))
    if make is _ct_like_case:
        # float64 sums of 10^5 voxels in one bin miss the float32 rounding by far more
        assert largest_old_gap > 100 * TOL


def test_ece_of_float64_and_valid_probabilities() -> None:
    rng = np.random.default_rng(8)
    shape = (6, 30, 40)
    raters = rng.integers(0, 4, size=(3, *shape))
    organs = np.moveaxis(rng.dirichlet([2, 1, 1, 1], size=shape), -1, 0)[1:]
    for probs in (organs, organs.astype(np.float32)):  # no softmax: valid probabilities
        got = [r.ece for r in curvas_ece(probs, raters)]
        assert got == pytest.approx([_torchmetrics_ece(probs, r) for r in raters], abs=TOL)
    soft = organs.copy()
    soft[:, 0, 0, 0] = [0.9, 0.9, 0.9]  # float64 input, softmax in float64, float32 bins
    got = [r.ece for r in curvas_ece(soft, raters)]
    assert got == pytest.approx([_torchmetrics_ece(soft, r) for r in raters], abs=TOL)


def test_chunking_keeps_the_order_of_the_float32_sums() -> None:
    probs, raters = _ct_like_case(np.random.default_rng(1), (4, 100, 100))
    whole = [r.ece for r in curvas_ece(probs, raters)]
    assert [r.ece for r in curvas_ece(probs, raters, chunk_size=997)] == whole
    counts = curvas_ece(probs, raters, chunk_size=4096)[0].reliability.counts
    assert int(np.sum(counts)) == probs[0].size


def test_rater_labels_outside_the_classes_are_refused() -> None:
    probs = np.full((2, 3, 4), 0.25)
    raters = np.zeros((1, 3, 4), int)
    raters[0, 1, 1] = 3  # classes 0..2
    with pytest.raises(ValueError, match=r"label 3, outside 0\.\.2"):
        curvas_ece(probs, raters)
