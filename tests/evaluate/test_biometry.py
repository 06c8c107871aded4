"""Biometry: ellipse fit and head circumference against analytic ellipses and HC18."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.special import ellipe

from medfleet.evaluate.metrics import biometry as bio


def _exact_perimeter(a: float, b: float) -> float:
    a, b = max(a, b), min(a, b)
    return 4 * a * float(ellipe(1 - (b / a) ** 2))


def _draw_ellipse(shape, spacing, cx, cy, a, b, theta) -> np.ndarray:
    """Filled ellipse by the pixel-centre test, in mm (x = column, y = row)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    x = cols * spacing[1] - cx
    y = rows * spacing[0] - cy
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def test_ellipse_helpers_are_reexported_from_geometry() -> None:
    from medfleet import geometry

    assert bio.Ellipse is geometry.Ellipse
    assert bio.fit_ellipse is geometry.fit_ellipse
    assert bio.ellipse_perimeter is geometry.ellipse_perimeter


@pytest.mark.parametrize("seed", range(12))
def test_head_circumference_of_drawn_ellipse_anisotropic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spacing = rng.uniform(0.08, 0.3, 2)  # (row, column) mm, anisotropic
    shape = (int(rng.integers(250, 420)), int(rng.integers(250, 420)))
    height, width = shape[0] * spacing[0], shape[1] * spacing[1]
    a = rng.uniform(0.2, 0.4) * min(height, width)
    b = a * rng.uniform(0.5, 1.0)
    cx, cy = width / 2 + rng.uniform(-3, 3), height / 2 + rng.uniform(-3, 3)
    theta = rng.uniform(0, math.pi)
    mask = _draw_ellipse(shape, spacing, cx, cy, a, b, theta)
    e = bio.fit_mask_ellipse(mask, spacing)
    true_hc = _exact_perimeter(a, b)
    assert abs(e.perimeter - true_hc) / true_hc < 2e-3  # well under 1 %
    assert bio.head_circumference(mask, spacing) == e.perimeter
    assert (e.center_x, e.center_y) == pytest.approx((cx, cy), abs=0.5 * max(spacing))
    if a / b > 1.2:
        assert min(abs(e.angle - theta), math.pi - abs(e.angle - theta)) < 0.02


def test_spacing_axis_order_matters() -> None:
    # a circle of radius 50 pixels with 0.1 mm rows and 0.2 mm columns is an ellipse with
    # semi-axes 10 mm along x (columns) and 5 mm along y (rows)
    rows, cols = np.mgrid[:160, :160]
    mask = (rows - 80) ** 2 + (cols - 80) ** 2 <= 50**2
    e = bio.fit_mask_ellipse(mask, (0.1, 0.2))
    assert e.semi_major == pytest.approx(10.0, rel=5e-3)
    assert e.semi_minor == pytest.approx(5.0, rel=5e-3)
    assert min(e.angle, math.pi - e.angle) < 1e-2  # major axis along x
    swapped = bio.fit_mask_ellipse(mask, (0.2, 0.1))
    assert swapped.angle == pytest.approx(math.pi / 2, abs=1e-2)


def test_outline_mask_with_centers() -> None:
    # a 1-pixel outline whose pixel centres are the rounded points of the curve
    a, b, cx, cy, theta = 120.0, 80.0, 200.0, 150.0, 0.4
    t = np.linspace(0, 2 * math.pi, 5000)
    x = cx + a * np.cos(t) * math.cos(theta) - b * np.sin(t) * math.sin(theta)
    y = cy + a * np.cos(t) * math.sin(theta) + b * np.sin(t) * math.cos(theta)
    outline = np.zeros((300, 400), bool)
    outline[np.round(y).astype(int), np.round(x).astype(int)] = True
    hc = bio.head_circumference(outline, (0.1, 0.1), boundary="centers")
    assert hc == pytest.approx(0.1 * _exact_perimeter(a, b), rel=1e-3)


def test_largest_component_ignores_stray_pixels() -> None:
    mask = _draw_ellipse((200, 200), (1.0, 1.0), 100, 100, 60, 40, 0.0)
    mask[2:4, 2:4] = True  # speckle far from the head
    kept = bio.head_circumference(mask)
    assert kept == pytest.approx(_exact_perimeter(60, 40), rel=2e-3)
    everything = bio.head_circumference(mask, largest_component=False)
    assert abs(everything - kept) > 1.0


def test_boundary_points_hand_computed() -> None:
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    pts = bio.mask_boundary_points(mask, (2.0, 3.0))
    # the four edges of pixel (row 1, col 1): x = (1 +/- 0.5) * 3, y = (1 +/- 0.5) * 2
    assert sorted(map(tuple, pts.tolist())) == [(1.5, 2.0), (3.0, 1.0), (3.0, 3.0), (4.5, 2.0)]
    # a mask touching the array border still gets its outer edges
    full = np.ones((2, 2), bool)
    assert len(bio.mask_boundary_points(full)) == 8


def test_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        bio.head_circumference(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="2-D mask"):
        bio.head_circumference(np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="spacing"):
        bio.head_circumference(np.ones((3, 3)), (0.0, 1.0))


@pytest.mark.data
def test_hc18_head_circumference_matches_reference(shared_data) -> None:
    from PIL import Image

    root = shared_data / "hc18"
    table = pd.read_csv(root / "manifest.csv").iloc[::15].head(20)
    outline_err = []
    for row in table.itertuples():
        outline = np.asarray(Image.open(root / "annotations" / row.annotation)) > 0
        spacing = (row.pixel_size_mm, row.pixel_size_mm)
        reference = row.head_circumference_mm
        hc = bio.head_circumference(outline, spacing, boundary="centers")
        outline_err.append(abs(hc - reference))
        # the drawn outline has a width: a mask filled up to its outer edge measures a bit
        # more than the reference, one filled up to its inner edge a bit less
        filled = ndimage.binary_fill_holes(outline)
        hc_outer = bio.head_circumference(filled, spacing)
        hc_inner = bio.head_circumference(filled & ~outline, spacing)
        assert hc_inner < reference < hc_outer, row.annotation
        assert hc_outer < 1.02 * reference and hc_inner > 0.98 * reference, row.annotation
    assert max(outline_err) < 0.1  # mm: the outline's pixel centres lie on the reference ellipse
