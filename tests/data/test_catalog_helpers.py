"""Split, subset and outline-filling helpers of the data set adapters."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage as ndi

from medfleet.data.catalog.common import PrepareOptions, assign_splits, slug, take_subset
from medfleet.data.catalog.ellipse import (
    ELLIPSE_FIT,
    FILL,
    FILL_AT_EDGE,
    FILL_CLOSED,
    OutlineError,
    ellipse_mask,
    fill_outline,
    fit_outline_ellipse,
)
from medfleet.errors import MedfleetError
from medfleet.geometry import Ellipse

# -- splits ------------------------------------------------------------------------------


def test_split_hits_image_fractions_for_single_image_subjects():
    subjects = {f"s{i:04d}": 1 for i in range(1000)}
    plan = assign_splits(subjects, seed=3, val_fraction=0.15, test_fraction=0.2)
    counts = Counter(plan.values())
    assert counts == {"train": 650, "val": 150, "test": 200}


def test_split_is_deterministic_and_seed_dependent():
    subjects = {f"s{i}": 1 + i % 3 for i in range(200)}
    a = assign_splits(subjects, seed=1, val_fraction=0.15, test_fraction=0.15)
    b = assign_splits(
        dict(reversed(list(subjects.items()))), seed=1, val_fraction=0.15, test_fraction=0.15
    )
    c = assign_splits(subjects, seed=2, val_fraction=0.15, test_fraction=0.15)
    assert a == b  # independent of the order the source lists subjects in
    assert a != c


def test_split_counts_images_of_multi_frame_subjects():
    # 60 subjects with 1..4 frames; targets are in images, overshoot at most one subject (< 4).
    sizes = {f"s{i}": 1 + (i * 7) % 4 for i in range(60)}
    total = sum(sizes.values())
    plan = assign_splits(sizes, seed=0, val_fraction=0.2, test_fraction=0.1)
    images = Counter()
    for subject, split in plan.items():
        images[split] += sizes[subject]
    assert 0 <= images["test"] - round(0.1 * total) < 4
    assert 0 <= images["val"] - round(0.2 * total) < 4
    assert sum(images.values()) == total


def test_stratified_split_per_class():
    subjects = {f"b{i}": 1 for i in range(437)} | {f"m{i}": 1 for i in range(210)}
    strata = {s: s[0] for s in subjects}
    plan = assign_splits(subjects, seed=0, val_fraction=0.15, test_fraction=0.15, strata=strata)
    for cls, n in (("b", 437), ("m", 210)):
        counts = Counter(split for s, split in plan.items() if strata[s] == cls)
        assert abs(counts["test"] - 0.15 * n) <= 1
        assert abs(counts["val"] - 0.15 * n) <= 1
        assert counts["train"] + counts["val"] + counts["test"] == n


def test_zero_fractions_put_everything_in_train():
    plan = assign_splits({"a": 2, "b": 1}, seed=0, val_fraction=0.0, test_fraction=0.0)
    assert set(plan.values()) == {"train"}


@pytest.mark.parametrize(
    ("val", "test", "message"),
    [
        (0.5, 0.5, "leaves no training data"),
        (-0.1, 0.1, "val_fraction = -0.1 must be in [0, 1)"),
        (0.1, 1.2, "test_fraction = 1.2 must be in [0, 1)"),
    ],
)
def test_bad_fractions_are_rejected(val, test, message):
    with pytest.raises(MedfleetError, match=re.escape(message)):
        PrepareOptions(val_fraction=val, test_fraction=test)


def test_bad_limit_is_rejected():
    with pytest.raises(MedfleetError, match="limit = 0 must be a positive number"):
        PrepareOptions(limit=0)


# -- subsets -----------------------------------------------------------------------------


def test_subset_keeps_class_proportions_by_largest_remainder():
    items = ["b"] * 437 + ["m"] * 210 + ["n"] * 133
    kept = take_subset(items, 60, key=lambda c: c)
    # exact shares 33.6 / 16.15 / 10.23 -> floors 33/16/10, the spare goes to b (0.6).
    assert Counter(kept) == {"b": 34, "m": 16, "n": 10}


def test_subset_keeps_source_order_and_first_items():
    items = [("x", 0), ("y", 0), ("x", 1), ("y", 1), ("x", 2), ("y", 2)]
    assert take_subset(items, 4, key=lambda t: t[0]) == items[:4]
    assert take_subset(items, 2) == items[:2]
    assert take_subset(items, None) == items
    assert take_subset(items, 100) == items


def test_slug_makes_case_ids():
    assert slug("malignant (145)") == "malignant_145"
    assert slug("a#b c") == "a_b_c"


# -- ellipse fit -------------------------------------------------------------------------


def test_fit_recovers_a_rotated_ellipse():
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    a, b, theta, cx, cy = 50.0, 20.0, 0.6, 120.0, 80.0
    x = cx + a * np.cos(t) * math.cos(theta) - b * np.sin(t) * math.sin(theta)
    y = cy + a * np.cos(t) * math.sin(theta) + b * np.sin(t) * math.cos(theta)
    e = fit_outline_ellipse(x, y)
    assert (e.center_x, e.center_y, e.semi_major, e.semi_minor) == pytest.approx(
        (cx, cy, a, b), abs=1e-6
    )
    assert math.tan(e.angle) == pytest.approx(math.tan(theta), abs=1e-6)


def test_fit_rejects_too_few_or_collinear_points():
    with pytest.raises(OutlineError, match="at least 6"):
        fit_outline_ellipse(np.arange(4.0), np.arange(4.0))
    with pytest.raises(OutlineError):
        fit_outline_ellipse(np.arange(20.0), 2 * np.arange(20.0))


# -- outline filling ---------------------------------------------------------------------


def _ring(disk: np.ndarray) -> np.ndarray:
    return disk & ~ndi.binary_erosion(disk)


def test_closed_outline_fills_to_the_disk():
    disk = ellipse_mask(Ellipse(60, 40, 35, 20, 0.4), (90, 130))
    result = fill_outline(_ring(disk))
    assert result.method == FILL
    assert np.array_equal(result.mask, disk)


@pytest.mark.parametrize("gap", [1, 5])
def test_outline_with_a_gap_is_closed_then_filled(gap):
    disk = ellipse_mask(Ellipse(60, 40, 35, 20, 0.0), (90, 130))
    ring = _ring(disk)
    ring[40 - gap // 2 : 40 - gap // 2 + gap, 85:100] = False  # open the right-hand tip
    assert not ndi.binary_fill_holes(ring)[40, 60]  # a plain hole fill leaks
    result = fill_outline(ring)
    assert result.method == FILL_CLOSED
    iou = (result.mask & disk).sum() / (result.mask | disk).sum()
    assert iou > 0.99
    _, n = ndi.label(result.mask, structure=np.ones((3, 3)))
    assert n == 1


def test_outline_cut_by_the_image_edge_fills_the_visible_part():
    big = ellipse_mask(Ellipse(60, 70, 40, 25, 0.2), (120, 130))
    ring = _ring(big)[:85]  # crop: the lower part of the ellipse leaves the image
    expected = big[:85]
    assert ring[-1].any()
    assert not ndi.binary_fill_holes(ring).sum() > ring.sum()  # a plain hole fill fails
    result = fill_outline(ring)
    assert result.method == FILL_AT_EDGE
    assert np.array_equal(result.mask, expected)


def test_broken_dashed_outline_falls_back_to_the_fitted_ellipse():
    disk = ellipse_mask(Ellipse(60, 45, 40, 30, 0.0), (90, 130))
    ring = _ring(disk)
    rows, cols = np.nonzero(ring)
    angle = np.arctan2(rows - 45, cols - 60)
    dashed = ring.copy()
    dashed[rows[np.sin(8 * angle) > 0.3], cols[np.sin(8 * angle) > 0.3]] = False  # 8 wide gaps
    result = fill_outline(dashed, max_gap=1)
    assert result.method == ELLIPSE_FIT
    assert (result.mask & disk).sum() / (result.mask | disk).sum() > 0.97


def test_empty_and_non_elliptic_outlines_are_rejected():
    with pytest.raises(OutlineError, match="empty"):
        fill_outline(np.zeros((20, 20), bool))
    line = np.zeros((40, 40), bool)
    line[5:35, 20] = True
    with pytest.raises(OutlineError):
        fill_outline(line)
    with pytest.raises(OutlineError, match="2D"):
        fill_outline(np.zeros((3, 20, 20), bool))
