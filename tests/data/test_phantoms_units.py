"""Unit checks of the phantom building blocks: geometry, biometry, raters, acquisition, config."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

from medfleet.data.phantoms import PhantomConfig, RaterStyle, SiteProfile, SubgroupEffects
from medfleet.data.phantoms.acquisition import acquire, to_uint8
from medfleet.data.phantoms.config import default_site, site_name
from medfleet.data.phantoms.intrapartum import intrapartum_biometry
from medfleet.data.phantoms.raters import rater_masks
from medfleet.data.phantoms.shapes import (
    convex_polygon_mask,
    ellipse_mask,
    grid2d,
    radial_blob2d,
    radial_extent,
)
from medfleet.data.phantoms.splits import assign_splits, subject_layout
from medfleet.geometry import Ellipse

# ----------------------------------------------------------------------------- shapes


def test_rasterised_areas_match_the_continuous_shapes() -> None:
    X, Y = grid2d((400, 400), (0.25, 0.25))
    ellipse = ellipse_mask(X, Y, (50.0, 50.0), (30.0, 12.0), 0.7)
    assert ellipse.sum() * 0.25**2 == pytest.approx(math.pi * 30 * 12, rel=0.005)
    quad = np.array([[20.0, 20.0], [70.0, 25.0], [65.0, 80.0], [15.0, 60.0]])
    shoelace = 0.5 * abs(
        sum(quad[i, 0] * quad[(i + 1) % 4, 1] - quad[(i + 1) % 4, 0] * quad[i, 1] for i in range(4))
    )
    assert convex_polygon_mask(X, Y, quad[::-1]).sum() * 0.25**2 == pytest.approx(
        shoelace, rel=0.005
    )


def test_radial_extent_bounds_the_rasterised_blob() -> None:
    rng = np.random.default_rng(0)
    X, Y = grid2d((300, 300), (0.2, 0.2))
    for _ in range(5):
        harmonics = [(k, rng.uniform(0, 0.1), rng.uniform(-3, 3)) for k in (5, 7)]
        spikes = [
            (rng.uniform(-3, 3), rng.uniform(0.3, 0.8), rng.uniform(0.05, 0.09)) for _ in range(10)
        ]
        blob = radial_blob2d(X, Y, (30.0, 30.0), (8.0, 7.0), 0.3, harmonics, spikes)
        ys, xs = np.nonzero(blob)
        reach = np.max(np.hypot(xs * 0.2 - 30.0, ys * 0.2 - 30.0))
        bound = radial_extent(harmonics, spikes) * 8.0
        assert reach <= bound
        assert reach > 0.9 * bound / 1.01  # and the bound is not loose


# ----------------------------------------------------------------------------- biometry


def test_biometry_of_a_circle_below_the_inferior_end_by_hand() -> None:
    ps = Ellipse(0.0, 0.0, 10.0, 3.0, 0.0)  # axis along x: S = (-10, 0), I = (10, 0)
    head = Ellipse(10.0, 30.0, 20.0, 20.0, 0.0)
    bio = intrapartum_biometry(ps, head)
    # Tangent from I at distance 30 to a circle of radius 20: half-angle asin(2/3) around "down".
    assert bio.aop_deg == pytest.approx(90.0 + math.degrees(math.asin(2 / 3)), abs=1e-9)
    assert bio.hsd_mm == pytest.approx(10.0, abs=1e-12)
    assert bio.inferior == pytest.approx((10.0, 0.0)) and bio.superior == pytest.approx(
        (-10.0, 0.0)
    )
    assert bio.infrapubic_hit == pytest.approx((10.0, 10.0))


def _random_scene(rng: np.random.Generator) -> tuple[Ellipse, Ellipse]:
    while True:
        alpha = rng.uniform(-0.3, 0.3)
        ps = Ellipse(30.0, 30.0, rng.uniform(15, 20), rng.uniform(5, 7), alpha)
        ix, iy = ps.point(0.0)
        psi = rng.uniform(1.3, 2.2)
        d = rng.uniform(45, 65)
        u = (math.cos(alpha), math.sin(alpha))
        v = (-u[1], u[0])
        direction = (
            math.cos(psi) * u[0] + math.sin(psi) * v[0],
            math.cos(psi) * u[1] + math.sin(psi) * v[1],
        )
        head = Ellipse(
            ix + d * direction[0], iy + d * direction[1], 40.0, 34.0, rng.uniform(-1.5, 1.5)
        )
        try:
            intrapartum_biometry(ps, head)
        except ValueError:
            continue
        return ps, head


def test_biometry_matches_brute_force_sampling() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        ps, head = _random_scene(rng)
        bio = intrapartum_biometry(ps, head)
        ix, iy = bio.inferior
        sx, sy = bio.superior
        t = np.linspace(0, 2 * np.pi, 200_000, endpoint=False)
        c, s = math.cos(head.angle), math.sin(head.angle)
        hx = head.center_x + head.a * np.cos(t) * c - head.b * np.sin(t) * s
        hy = head.center_y + head.a * np.cos(t) * s + head.b * np.sin(t) * c
        ax, ay = sx - ix, sy - iy
        rx, ry = hx - ix, hy - iy
        angles = np.degrees(np.arctan2(np.abs(ax * ry - ay * rx), ax * rx + ay * ry))
        assert bio.aop_deg == pytest.approx(angles.max(), abs=1e-3)
        # HSD: march along the perpendicular until inside the head.
        n = np.array([-ay, ax]) / math.hypot(ax, ay)
        if n @ (head.center_x - ix, head.center_y - iy) < 0:
            n = -n
        steps = np.arange(0, 150, 0.001)
        levels = [head.level(ix + d * n[0], iy + d * n[1]) for d in steps[::100]]
        first = next(i for i, lv in enumerate(levels) if lv <= 1.0)
        fine = steps[(first - 1) * 100 : first * 100 + 1]
        inside = [head.level(ix + d * n[0], iy + d * n[1]) <= 1.0 for d in fine]
        assert bio.hsd_mm == pytest.approx(fine[inside.index(True)], abs=2e-3)
        # The tangent point is on the head and the line I -> T touches it there.
        tx, ty = bio.tangent
        assert head.level(tx, ty) == pytest.approx(1.0, abs=1e-9)


def test_biometry_is_invariant_to_rotation_and_translation_and_scales_with_size() -> None:
    ps, head = _random_scene(np.random.default_rng(2))
    base = intrapartum_biometry(ps, head)
    theta, shift, k = 0.7, (13.0, -5.0), 1.5

    def move(e: Ellipse) -> Ellipse:
        c, s = math.cos(theta), math.sin(theta)
        x, y = e.center_x * c - e.center_y * s, e.center_x * s + e.center_y * c
        return Ellipse(k * x + shift[0], k * y + shift[1], k * e.a, k * e.b, e.angle + theta)

    moved = intrapartum_biometry(move(ps), move(head))
    assert moved.aop_deg == pytest.approx(base.aop_deg, abs=1e-9)
    assert moved.hsd_mm == pytest.approx(k * base.hsd_mm, rel=1e-9)


def test_undefined_biometry_raises() -> None:
    ps = Ellipse(0.0, 0.0, 10.0, 3.0, 0.0)
    with pytest.raises(ValueError, match="inside the head"):
        intrapartum_biometry(ps, Ellipse(10.0, 5.0, 8.0, 8.0, 0.0))
    with pytest.raises(ValueError, match="runs into the head"):
        intrapartum_biometry(ps, Ellipse(40.0, 5.0, 20.0, 20.0, 0.0))
    with pytest.raises(ValueError, match="infrapubic line misses"):
        intrapartum_biometry(ps, Ellipse(-40.0, 40.0, 10.0, 10.0, 0.0))


# ----------------------------------------------------------------------------- raters


def test_rater_bias_moves_the_boundary_outwards_or_inwards() -> None:
    truth = np.zeros((80, 80), np.uint8)
    yy, xx = np.mgrid[:80, :80]
    truth[np.hypot(xx - 40, yy - 40) <= 20] = 1
    truth[np.hypot(xx - 45, yy - 40) <= 6] = 2
    styles = [
        RaterStyle(bias_px=0.0, jitter_px=0.0),
        RaterStyle(bias_px=2.0, jitter_px=0.0),
        RaterStyle(bias_px=-2.0, jitter_px=0.0),
    ]
    same, bigger, smaller = rater_masks(truth, styles, np.random.default_rng(0))
    assert np.array_equal(same, truth)
    area = int((truth > 0).sum())
    # A radius-20 disc grown/shrunk by 2 px: area ratio (22/20)**2 and (18/20)**2.
    assert (bigger > 0).sum() / area == pytest.approx(1.21, abs=0.03)
    assert (smaller > 0).sum() / area == pytest.approx(0.81, abs=0.03)
    assert (bigger == 2).sum() > (truth == 2).sum() > (smaller == 2).sum()
    # The nested lesion never gets a ring of background around it.
    for rater in (same, bigger, smaller):
        assert not (ndimage.binary_dilation(rater == 2) & (rater == 0)).any()


def test_rater_jitter_is_smooth_and_of_the_configured_size() -> None:
    truth = np.zeros((120, 120), np.uint8)
    yy, xx = np.mgrid[:120, :120]
    truth[np.hypot(xx - 60, yy - 60) <= 40] = 1
    (rater,) = rater_masks(
        truth, [RaterStyle(bias_px=0.0, jitter_px=1.5)], np.random.default_rng(3), 6.0
    )
    changed = rater != truth
    assert changed.any()
    # Only pixels within a few jitter widths of the true boundary change.
    distance = np.abs(np.hypot(xx - 60, yy - 60) - 40)
    assert distance[changed].max() < 4 * 1.5 + 1


def test_raters_work_on_anisotropic_volumes() -> None:
    truth = np.zeros((12, 40, 40), np.uint8)
    zz, yy, xx = np.mgrid[:12, :40, :40]
    truth[
        np.sqrt(((zz - 6) * 3.0) ** 2 + ((yy - 20) * 0.8) ** 2 + ((xx - 20) * 0.8) ** 2) <= 12
    ] = 1
    (bigger,) = rater_masks(
        truth,
        [RaterStyle(bias_px=1.5, jitter_px=0.0)],
        np.random.default_rng(0),
        spacing=(3.0, 0.8, 0.8),
    )
    assert bigger.sum() > truth.sum() and bigger[truth == 1].all()


# ----------------------------------------------------------------------------- acquisition


def test_acquisition_chain_gain_gamma_offset_exact_on_a_flat_image() -> None:
    flat = np.full((64, 64), 0.4)
    site = SiteProfile(name="s", gain=1.2, gamma=0.5, offset=0.05, speckle=0.0, noise=0.0, blur=1.0)
    out = acquire(flat, site, np.random.default_rng(0))
    assert np.allclose(out, 1.2 * 0.4**0.5 + 0.05)


def test_speckle_and_noise_have_the_configured_strength() -> None:
    flat = np.full((256, 256), 0.5)
    speckled = acquire(
        flat, SiteProfile(name="s", speckle=0.2, noise=0.0, blur=0.0), np.random.default_rng(0)
    )
    assert speckled.mean() == pytest.approx(0.5, abs=0.005)
    assert speckled.std() == pytest.approx(0.5 * 0.2, rel=0.05)
    noisy = acquire(
        flat, SiteProfile(name="s", speckle=0.0, noise=0.03, blur=0.0), np.random.default_rng(0)
    )
    assert noisy.std() == pytest.approx(0.03, rel=0.05)
    assert to_uint8(np.array([0.0, 1.0, 2.0, -1.0])).tolist() == [0, 255, 255, 0]


def test_switching_speckle_off_leaves_the_noise_draws_unchanged() -> None:
    flat = np.full((32, 32), 0.5)
    a = acquire(
        flat, SiteProfile(name="s", speckle=0.0, noise=0.05, blur=0.0), np.random.default_rng(7)
    )
    b = acquire(
        flat, SiteProfile(name="s", speckle=1e-12, noise=0.05, blur=0.0), np.random.default_rng(7)
    )
    assert np.allclose(a, b, atol=1e-9)


# ----------------------------------------------------------------------------- splits


def test_subject_layout_and_splits() -> None:
    rng = np.random.default_rng(0)
    layout = subject_layout(200, rng, [0.6, 0.3, 0.1])
    assert len(layout) == 200 and layout[0] == 0
    counts = np.bincount(layout)
    assert set(counts.tolist()) <= {1, 2, 3} and (counts > 1).any()
    splits = assign_splits(layout, np.random.default_rng(1), (0.6, 0.2, 0.2))
    assert set(splits) == set(layout)
    per_split = {
        s: sum(counts[k] for k, v in splits.items() if v == s) for s in ("train", "val", "test")
    }
    assert per_split["train"] == pytest.approx(120, abs=3)
    assert per_split["val"] == pytest.approx(40, abs=3) and per_split["test"] == pytest.approx(
        40, abs=3
    )


def test_a_zero_fraction_split_gets_no_subjects() -> None:
    splits = assign_splits(list(range(20)), np.random.default_rng(0), (0.8, 0.0, 0.2))
    assert "val" not in splits.values()


# ----------------------------------------------------------------------------- config


def test_site_names_and_default_sites() -> None:
    assert [site_name(i) for i in (0, 2, 25, 26, 51, 52)] == [
        "site_a", "site_c", "site_z", "site_aa", "site_az", "site_ba",
    ]  # fmt: skip
    assert default_site(8) == default_site(8)
    assert default_site(8).model_dump(exclude={"name"}) != default_site(2).model_dump(
        exclude={"name"}
    )
    assert 0.8 <= default_site(40).spacing_scale <= 1.25


def test_config_round_trips_through_json() -> None:
    config = PhantomConfig.default(sites=4).model_copy(update={"subgroups": SubgroupEffects.none()})
    again = PhantomConfig.model_validate_json(config.model_dump_json())
    assert again == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"density_weights": [1, 1]}, "'density_weights' has 2 values but there are 4 densities"),
        ({"class_weights": [0, 0, 0]}, "'class_weights' must not be all zero"),
        ({"sites": [SiteProfile(name="x"), SiteProfile(name="x")]}, "site names must be unique"),
        ({"sites": []}, "'sites' is empty"),
        ({"repeat_weights": [0.0]}, "repeat_weights must not all be zero"),
        (
            {"sites": [SiteProfile(name="x", class_weights=[1, 2])]},
            r"'sites\[x\].class_weights' has 2 values but there are 3 classes",
        ),
    ],
)
def test_inconsistent_configs_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PhantomConfig(**kwargs)


def test_site_profile_ranges() -> None:
    with pytest.raises(ValidationError, match="spacing_scale"):
        SiteProfile(name="x", spacing_scale=2.0)
    with pytest.raises(ValidationError, match="speckle is a relative standard deviation"):
        SiteProfile(name="x", speckle=1.5)
    with pytest.raises(ValidationError, match="gain"):
        SiteProfile(name="x", gain=0.0)
