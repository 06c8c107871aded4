"""Calibration: hand-computed ECE, naive and scikit-learn oracles, streaming == in-memory."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from medfleet.evaluate.analysis.calibration import (
    StreamingCalibration,
    brier_score,
    calibration_summary,
    expected_calibration_error,
    maximum_calibration_error,
    reliability_diagram,
)
from medfleet.evaluate.metrics.conventions import MetricInputError

SIX_PROBS = [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]]
SIX_LABELS = [0, 1, 0, 1, 0, 1]


def test_six_sample_hand_example():
    # top-label confidences 0.9 0.8 0.6 0.7 0.55 0.8, correct 1 0 1 1 0 1; 4 bins of width 1/4:
    # [0.5, 0.75): 0.6 0.7 0.55 -> 2 right; [0.75, 1]: 0.9 0.8 0.8 -> 2 right
    ece = expected_calibration_error(SIX_PROBS, SIX_LABELS, n_bins=4)
    assert ece == pytest.approx((abs(2 - 1.85) + abs(2 - 2.5)) / 6)
    mce = maximum_calibration_error(SIX_PROBS, SIX_LABELS, n_bins=4)
    assert mce == pytest.approx(2.5 / 3 - 2 / 3)
    rel = reliability_diagram(SIX_PROBS, SIX_LABELS, n_bins=4)
    assert rel.counts.tolist() == [0, 0, 3, 3]
    assert rel.confidence[2:] == pytest.approx([1.85 / 3, 2.5 / 3])
    assert rel.accuracy[2:] == pytest.approx([2 / 3, 2 / 3])
    assert np.isnan(rel.accuracy[0])
    # class-wise, 2 bins: class 1 probs 0.1 0.2 0.4 | 0.7 0.55 0.8 with outcomes 0 1 0 | 1 0 1
    cw = calibration_summary(SIX_PROBS, SIX_LABELS, n_bins=2, mode="class-wise")
    class1 = (abs(1 - 0.7) + abs(2 - 2.05)) / 6
    class0 = (abs(1 - 1.05) + abs(2 - 2.3)) / 6  # 0.45 0.3 0.2 | 0.9 0.8 0.6, outcomes 1 0 0|1 0 1
    assert cw.per_class_ece == pytest.approx([class0, class1])
    assert cw.ece == pytest.approx((class0 + class1) / 2)


def test_edge_rules_on_bin_edges():
    probs = [0.5, 1.0, 0.0]  # binary: top-label confidences 0.5, 1.0, 1.0
    labels = [1, 1, 0]
    right = reliability_diagram(probs, labels, n_bins=2, edge_rule="right")
    left = reliability_diagram(probs, labels, n_bins=2, edge_rule="left")
    torch_rule = reliability_diagram(probs, labels, n_bins=2, edge_rule="torchmetrics")
    assert right.counts.tolist() == [1, 2]  # 0.5 in (0, 0.5]
    assert left.counts.tolist() == [0, 3]  # 0.5 in [0.5, 1]
    assert torch_rule.counts.tolist() == [0, 1, 2]  # 1.0 in its own bin
    assert torch_rule.bin_edges.tolist() == [0.0, 0.5, 1.0, 1.0]


def _naive_ece(conf, correct, n_bins, closed="right"):
    """Guo et al.'s loop: bins (lower, upper] (or [lower, upper) with 1.0 in the last)."""
    edges = np.linspace(0, 1, n_bins + 1)
    ece, n = 0.0, len(conf)
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        if closed == "right":
            inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        else:
            inside = (conf >= lo) & (conf < hi) if b < n_bins - 1 else (conf >= lo) & (conf <= hi)
        if inside.any():
            ece += inside.sum() / n * abs(correct[inside].mean() - conf[inside].mean())
    return ece


@pytest.mark.parametrize("edge_rule", ["right", "left"])
def test_equal_width_matches_naive_loop(edge_rule):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([0.7, 0.7, 0.7, 0.7], 3000)
    probs = np.round(probs, 2)  # many values on bin edges
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    for n_bins in (5, 10, 15):
        got = expected_calibration_error(probs, labels, n_bins=n_bins, edge_rule=edge_rule)
        assert got == pytest.approx(_naive_ece(conf, correct, n_bins, edge_rule), abs=1e-12)
    classwise = [
        _naive_ece(probs[:, k], (labels == k).astype(float), 10, edge_rule) for k in range(4)
    ]
    got = calibration_summary(probs, labels, n_bins=10, mode="class-wise", edge_rule=edge_rule)
    assert got.per_class_ece == pytest.approx(classwise, abs=1e-12)


def test_reliability_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(2)
    p = np.round(rng.random(500), 2)
    y = (rng.random(500) < p).astype(int)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    rel = reliability_diagram(p, y, n_bins=10, class_index=1)  # class-wise diagram of class 1
    nonempty = rel.counts > 0
    assert rel.accuracy[nonempty] == pytest.approx(prob_true)
    assert rel.confidence[nonempty] == pytest.approx(prob_pred)


def test_equal_mass_bins_hand_and_naive():
    conf_probs = np.array([0.95, 0.6, 0.7, 0.9, 0.55, 0.8])
    labels = np.array([1, 1, 0, 1, 0, 1])
    # top-label confidences equal the probs (all >= 0.5); sorted: 0.55 0.6 0.7 | 0.8 0.9 0.95
    r = calibration_summary(conf_probs, labels, n_bins=2, binning="equal-mass")
    low = abs((0 + 1 + 0) - (0.55 + 0.6 + 0.7))
    high = abs(3 - (0.8 + 0.9 + 0.95))
    assert r.ece == pytest.approx((low + high) / 6)
    assert r.reliability.counts.tolist() == [3, 3]
    assert r.reliability.bin_edges.tolist() == [0.55, 0.8, 0.95]
    rng = np.random.default_rng(4)
    p = rng.random(1001)
    y = (rng.random(1001) < p**1.5).astype(int)
    conf = np.maximum(p, 1 - p)
    correct = ((p > 0.5).astype(int) == y).astype(float)  # argmax of [1-p, p]: ties -> class 0
    order = np.argsort(conf, kind="stable")
    naive = sum(
        len(ix) / 1001 * abs(correct[ix].mean() - conf[ix].mean())
        for ix in np.array_split(order, 7)
    )
    assert calibration_summary(p, y, n_bins=7, binning="equal-mass").ece == pytest.approx(naive)


def test_brier_matches_sklearn():
    rng = np.random.default_rng(5)
    p = rng.random(300)
    y = rng.integers(0, 2, 300)
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y, p))
    assert brier_score(np.column_stack([1 - p, p]), y) == pytest.approx(brier_score_loss(y, p))
    probs = rng.dirichlet([1, 1, 1], 300)
    labels = rng.integers(0, 3, 300)
    assert brier_score(probs, labels) == pytest.approx(
        brier_score_loss(labels, probs, labels=[0, 1, 2])
    )


@pytest.mark.parametrize("mode", ["top-label", "class-wise"])
@pytest.mark.parametrize("edge_rule", ["right", "left", "torchmetrics"])
def test_streaming_equals_in_memory_for_equal_width(mode, edge_rule):
    rng = np.random.default_rng(6)
    probs = rng.dirichlet([0.3, 0.3, 0.3], 20_000)
    probs[:50] = [1.0, 0.0, 0.0]  # confidence exactly 1
    labels = rng.integers(0, 3, 20_000)
    ref = calibration_summary(probs, labels, n_bins=15, mode=mode, edge_rule=edge_rule)
    stream = StreamingCalibration(n_bins=15, mode=mode, edge_rule=edge_rule)
    cuts = np.sort(rng.choice(np.arange(1, 20_000), 9, replace=False))
    for chunk in np.split(np.arange(20_000), cuts):  # uneven chunks
        stream.update(probs[chunk], labels[chunk])
    got = stream.compute()
    assert got.ece == pytest.approx(ref.ece, rel=1e-12, abs=1e-15)
    assert got.mce == pytest.approx(ref.mce, rel=1e-12)
    assert got.brier == pytest.approx(ref.brier, rel=1e-12)
    assert got.ece_error_bound == 0.0
    rels = got.reliability if isinstance(got.reliability, list) else [got.reliability]
    refs = ref.reliability if isinstance(ref.reliability, list) else [ref.reliability]
    for a, b in zip(rels, refs, strict=True):
        assert a.counts.tolist() == b.counts.tolist()
    # the naive loop agrees with the streamed top-label ECE for the plain rules
    if mode == "top-label" and edge_rule != "torchmetrics":
        conf = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == labels).astype(float)
        assert got.ece == pytest.approx(_naive_ece(conf, correct, 15, edge_rule), abs=1e-12)


@pytest.mark.parametrize("mode", ["top-label", "class-wise"])
def test_streaming_equal_mass_within_reported_bound(mode):
    rng = np.random.default_rng(7)
    probs = rng.dirichlet([2, 1, 1], 30_000)
    labels = np.array([rng.choice(3, p=p) for p in probs[:3000]] * 10)
    exact = calibration_summary(probs, labels, n_bins=12, binning="equal-mass", mode=mode)
    stream = StreamingCalibration(n_bins=12, binning="equal-mass", mode=mode)
    for start in range(0, 30_000, 4096):
        stream.update(probs[start : start + 4096], labels[start : start + 4096])
    got = stream.compute()
    assert got.ece_error_bound < 0.01
    assert abs(got.ece - exact.ece) <= got.ece_error_bound + 1e-12
    assert got.brier == pytest.approx(exact.brier)


def test_streaming_merge_and_class_axis_first():
    rng = np.random.default_rng(8)
    vol = rng.dirichlet([1, 1, 1, 1], (6, 5, 7))  # (z, y, x, C)
    lab = rng.integers(0, 4, (6, 5, 7))
    channels_first = np.moveaxis(vol, -1, 0)
    a = StreamingCalibration(n_bins=10, class_axis=0)
    a.update(channels_first[:, :3], lab[:3])
    b = StreamingCalibration(n_bins=10, class_axis=0)
    b.update(channels_first[:, 3:], lab[3:])
    a.merge(b)
    ref = calibration_summary(vol.reshape(-1, 4), lab.reshape(-1), n_bins=10)
    assert a.compute().ece == pytest.approx(ref.ece, rel=1e-12)
    assert a.n == lab.size


def test_streaming_memory_does_not_grow_with_voxels(tmp_path):
    n_vox, n_classes = 2_000_000, 4
    path = tmp_path / "probs.npy"
    probs = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_classes, n_vox))
    rng = np.random.default_rng(9)
    for s in range(0, n_vox, 500_000):
        block = rng.random((n_classes, 500_000), dtype=np.float32)
        probs[:, s : s + 500_000] = block / block.sum(axis=0)
    probs.flush()
    labels = np.zeros(n_vox, dtype=np.uint8)
    mapped = np.load(path, mmap_mode="r")
    stream = StreamingCalibration(n_bins=50, class_axis=0)
    tracemalloc.start()
    for s in range(0, n_vox, 100_000):
        stream.update(mapped[:, s : s + 100_000], labels[s : s + 100_000])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_float64 = n_vox * n_classes * 8  # 64 MB if the input were materialised
    assert peak < full_float64 / 4
    assert stream.n == n_vox and 0.0 <= stream.compute().ece <= 1.0


def test_invalid_inputs_raise_clear_errors():
    with pytest.raises(MetricInputError, match=r"\[0, 1\]"):
        expected_calibration_error([[1.2, -0.2]], [0])
    with pytest.raises(MetricInputError, match=r"0\.\.1"):
        expected_calibration_error([[0.5, 0.5]], [2])
    with pytest.raises(MetricInputError, match="class_axis"):
        expected_calibration_error(np.ones((2, 3, 4)) / 4, np.zeros((2, 4), int))
    with pytest.raises(MetricInputError, match="NaN"):
        brier_score([0.5, math.nan], [0, 1])
    with pytest.raises(MetricInputError, match="n_bins"):
        expected_calibration_error([0.5], [1], n_bins=0)
    # within tolerance: clipped, not rejected
    assert expected_calibration_error([1.0 + 1e-9], [1]) == pytest.approx(0.0)


def test_empty_stream_is_nan():
    r = StreamingCalibration(n_bins=5).compute()
    assert r.n == 0 and math.isnan(r.ece) and math.isnan(r.brier)


def test_fast_bin_search_equals_numpy_searchsorted():
    from medfleet.evaluate.analysis.calibration import _uniform_searchsorted

    rng = np.random.default_rng(10)
    for n_bins in (1, 3, 7, 10, 15, 50, 1 << 16):
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        values = np.concatenate(
            [rng.random(5000), edges, np.nextafter(edges, 2.0), np.nextafter(edges, -1.0)]
        ).clip(0.0, 1.0)
        for side in ("left", "right"):
            expected = np.searchsorted(edges, values, side=side)
            assert np.array_equal(_uniform_searchsorted(edges, values, side), expected)
