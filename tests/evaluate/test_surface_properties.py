"""Property tests: symmetry, padding and translation invariance, spacing scaling, agreement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medfleet.evaluate.metrics.overlap import overlap_metrics
from medfleet.evaluate.metrics.surface import surface_metrics

METRICS = ("hd", "hd95", "hd80", "assd", "masd", "nsd")
CONVENTIONS = [
    {"surface": "border", "percentile_method": "max-directed"},
    {"surface": "border", "percentile_method": "pooled"},
    {"surface": "border", "percentile_method": "area-weighted", "connectivity": 2},
    {"surface": "corner-area", "percentile_method": "area-weighted"},
]

PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def mask_pairs(draw):
    """Two non-empty random masks (2D or 3D) and an anisotropic spacing."""
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(2, 9), min_size=ndim, max_size=ndim)))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.floats(0.05, 0.9))
    rng = np.random.default_rng(seed)
    pred = rng.random(shape) < density
    gt = rng.random(shape) < density
    pred.flat[draw(st.integers(0, pred.size - 1))] = True
    gt.flat[draw(st.integers(0, gt.size - 1))] = True
    spacing = tuple(draw(st.lists(st.floats(0.3, 4.0), min_size=ndim, max_size=ndim)))
    return pred, gt, spacing


def values(result, label=1):
    return {name: result.value(name, label) for name in result.metrics}


@PROPERTY_SETTINGS
@given(pair=mask_pairs(), convention=st.sampled_from(CONVENTIONS))
def test_metrics_are_symmetric(pair, convention) -> None:
    pred, gt, spacing = pair
    forward = values(surface_metrics(pred, gt, spacing, metrics=METRICS, **convention))
    backward = values(surface_metrics(gt, pred, spacing, metrics=METRICS, **convention))
    assert forward == pytest.approx(backward, rel=1e-12, abs=1e-12)


@PROPERTY_SETTINGS
@given(
    pair=mask_pairs(),
    convention=st.sampled_from(CONVENTIONS),
    pad=st.integers(1, 3),
    shift=st.integers(0, 3),
)
def test_zero_padding_and_translation_change_nothing(pair, convention, pad, shift) -> None:
    pred, gt, spacing = pair
    base = values(surface_metrics(pred, gt, spacing, metrics=METRICS, **convention))
    widths = [(pad + shift, pad)] + [(pad, pad + shift)] * (pred.ndim - 1)
    padded = values(
        surface_metrics(
            np.pad(pred, widths), np.pad(gt, widths), spacing, metrics=METRICS, **convention
        )
    )
    assert padded == pytest.approx(base, rel=1e-12, abs=1e-12)


@PROPERTY_SETTINGS
@given(
    pair=mask_pairs(),
    convention=st.sampled_from(CONVENTIONS),
    factor=st.sampled_from([0.25, 0.5, 2.0, 4.0]),
)
def test_distances_scale_with_spacing(pair, convention, factor) -> None:
    """Scaling every spacing by a power of two scales distances exactly; NSD follows tau."""
    pred, gt, spacing = pair
    kw = {"metrics": METRICS, "nsd_tolerances": (1.0,), **convention}
    base = surface_metrics(pred, gt, spacing, **kw)
    scaled_spacing = tuple(s * factor for s in spacing)
    scaled = surface_metrics(pred, gt, scaled_spacing, **{**kw, "nsd_tolerances": (factor,)})
    for name in ("hd", "hd95", "hd80", "assd", "masd"):
        assert scaled.value(name, 1) == pytest.approx(base.value(name, 1) * factor, rel=1e-12)
    assert scaled.value(f"nsd_{factor:g}mm", 1) == pytest.approx(base.value("nsd_1mm", 1))


@PROPERTY_SETTINGS
@given(pair=mask_pairs(), factor=st.floats(0.1, 10.0))
def test_distances_scale_with_any_factor(pair, factor) -> None:
    pred, gt, spacing = pair
    base = surface_metrics(pred, gt, spacing, metrics=("hd", "hd95", "assd", "masd"))
    scaled = surface_metrics(
        pred, gt, tuple(s * factor for s in spacing), metrics=("hd", "hd95", "assd", "masd")
    )
    for name in base.metrics:
        assert scaled.value(name, 1) == pytest.approx(base.value(name, 1) * factor, rel=1e-9)


@PROPERTY_SETTINGS
@given(pair=mask_pairs())
def test_axis_permutation_with_spacing_changes_nothing(pair) -> None:
    pred, gt, spacing = pair
    order = tuple(reversed(range(pred.ndim)))
    base = values(surface_metrics(pred, gt, spacing, metrics=METRICS))
    permuted = values(
        surface_metrics(
            pred.transpose(order),
            gt.transpose(order),
            tuple(spacing[i] for i in order),
            metrics=METRICS,
        )
    )
    assert permuted == pytest.approx(base, rel=1e-12, abs=1e-12)


@PROPERTY_SETTINGS
@given(pair=mask_pairs(), surface=st.sampled_from(["border", "corner-area"]))
def test_tree_and_transform_agree(pair, surface) -> None:
    pred, gt, spacing = pair
    kw = {"metrics": ("hd", "hd95", "assd", "masd"), "surface": surface}
    tree = surface_metrics(pred, gt, spacing, method="kdtree", **kw)
    transform = surface_metrics(pred, gt, spacing, method="edt", **kw)
    for name in tree.metrics:
        # The transform runs in float32: relative error ~1e-7.
        assert transform.value(name, 1) == pytest.approx(tree.value(name, 1), rel=2e-6, abs=1e-9)


@PROPERTY_SETTINGS
@given(pair=mask_pairs())
def test_hd_bounds_the_other_distances(pair) -> None:
    pred, gt, spacing = pair
    r = surface_metrics(pred, gt, spacing, metrics=METRICS)
    v = values(r)
    assert 0 <= v["assd"] <= v["hd"] + 1e-12
    assert 0 <= v["masd"] <= v["hd"] + 1e-12
    assert v["hd80"] <= v["hd95"] + 1e-12 <= v["hd"] + 2e-12
    assert 0 <= v["nsd_1mm"] <= v["nsd_2mm"] <= 1


@PROPERTY_SETTINGS
@given(pair=mask_pairs())
def test_overlap_is_symmetric_and_bounded(pair) -> None:
    pred, gt, spacing = pair
    a = overlap_metrics(pred, gt, spacing=spacing)
    b = overlap_metrics(gt, pred, spacing=spacing)
    for name in ("dice", "iou", "volume_similarity"):
        assert a.value(name, 1) == pytest.approx(b.value(name, 1))
        assert 0 <= a.value(name, 1) <= 1
    tp = np.count_nonzero(pred & gt)
    assert a.value("sensitivity", 1) * gt.sum() == pytest.approx(tp)
    assert b.value("sensitivity", 1) * pred.sum() == pytest.approx(tp)
    dice, iou = a.value("dice", 1), a.value("iou", 1)
    assert dice == pytest.approx(2 * iou / (1 + iou))
    assert a.value("volume_pred_mm3", 1) == pytest.approx(pred.sum() * np.prod(spacing))
