"""The plane ellipse of ``medfleet.geometry``: perimeter, fit, tangents, rays and frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import ellipe

from medfleet.geometry import Ellipse, angle_between, ellipse_perimeter, fit_ellipse


def _exact_perimeter(a: float, b: float) -> float:
    a, b = max(a, b), min(a, b)
    return 4 * a * float(ellipe(1 - (b / a) ** 2))


def _on_ellipse(cx, cy, a, b, theta, t) -> np.ndarray:
    x = cx + a * np.cos(t) * math.cos(theta) - b * np.sin(t) * math.sin(theta)
    y = cy + a * np.cos(t) * math.sin(theta) + b * np.sin(t) * math.cos(theta)
    return np.c_[x, y]


# ----------------------------------------------------------------------------- perimeter


def test_ramanujan_perimeter_against_elliptic_integral() -> None:
    for a, b in [(1, 1), (2, 1), (5, 3), (10, 9.5), (100, 60)]:
        assert ellipse_perimeter(a, b) == pytest.approx(_exact_perimeter(a, b), rel=1e-9)
    assert ellipse_perimeter(0, 0) == 0.0
    assert ellipse_perimeter(1, 0) == pytest.approx(4.0, rel=1e-3)  # degenerate: 4a


@pytest.mark.parametrize("ratio", [1.0, 0.8, 0.6])
def test_ramanujan_matches_the_elliptic_integral(ratio: float) -> None:
    a, b = 40.0, 40.0 * ratio
    exact = 4 * a * ellipe(1 - (b / a) ** 2)
    assert ellipse_perimeter(a, b) == pytest.approx(exact, rel=1e-9)


def test_ramanujan_perimeter_matches_arc_length_integral() -> None:
    a, b = 3.0, 1.0
    exact, _ = integrate.quad(
        lambda t: math.hypot(a * math.sin(t), b * math.cos(t)), 0, 2 * math.pi
    )
    assert Ellipse(0, 0, a, b, 0).perimeter == pytest.approx(exact, rel=1e-6)


def test_perimeter_does_not_depend_on_the_axis_order() -> None:
    assert ellipse_perimeter(7.0, 3.0) == ellipse_perimeter(3.0, 7.0)
    assert Ellipse(0, 0, 3.0, 7.0, 0.2).perimeter == Ellipse(0, 0, 7.0, 3.0, 0.2).perimeter
    with pytest.raises(ValueError, match="non-negative"):
        ellipse_perimeter(-1.0, 2.0)


# ----------------------------------------------------------------------------- fit


@pytest.mark.parametrize("seed", range(8))
def test_fit_ellipse_recovers_exact_points(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(5, 50), rng.uniform(2, 5)
    cx, cy, theta = rng.uniform(-100, 100), rng.uniform(-100, 100), rng.uniform(0, math.pi)
    e = fit_ellipse(_on_ellipse(cx, cy, a, b, theta, rng.uniform(0, 2 * math.pi, 40)))
    assert (e.center_x, e.center_y) == pytest.approx((cx, cy), abs=1e-7)
    assert (e.semi_major, e.semi_minor) == pytest.approx((a, b), rel=1e-9)
    assert e.angle == pytest.approx(theta, abs=1e-7)
    assert e.area == pytest.approx(math.pi * a * b)


def test_fit_returns_the_normalised_form() -> None:
    # drawn with the short axis along ``theta``: the fit reports the long one
    t = np.linspace(0, 2 * math.pi, 60, endpoint=False)
    e = fit_ellipse(_on_ellipse(4.0, -2.0, 3.0, 9.0, 0.3, t))
    assert (e.a, e.b) == (e.semi_major, e.semi_minor)
    assert (e.a, e.b) == pytest.approx((9.0, 3.0), rel=1e-9)
    assert e.angle == pytest.approx(0.3 + math.pi / 2, abs=1e-9)
    assert 0.0 <= e.angle < math.pi and e.major_angle == e.angle
    assert e.as_dict() == {
        "center_x": e.center_x,
        "center_y": e.center_y,
        "semi_major": e.a,
        "semi_minor": e.b,
        "angle": e.angle,
        "perimeter": e.perimeter,
        "area": e.area,
    }


def test_fit_errors() -> None:
    with pytest.raises(ValueError, match="at least 5 points"):
        fit_ellipse([[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="ellipse"):
        fit_ellipse(np.c_[np.arange(10.0), 2 * np.arange(10.0)])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        fit_ellipse(np.zeros((6, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fit_ellipse([[0, 0], [1, 0], [0, 1], [1, 1], [2, 2], [np.nan, 0]])
    with pytest.raises(ValueError, match="coincide"):
        fit_ellipse(np.ones((6, 2)))


# ----------------------------------------------------------------------------- the ellipse


def test_a_may_be_shorter_than_b() -> None:
    e = Ellipse(1.0, 2.0, 2.0, 5.0, 0.4)
    assert (e.semi_major, e.semi_minor) == (5.0, 2.0)
    assert e.major_angle == pytest.approx(0.4 + math.pi / 2)
    assert e.area == pytest.approx(math.pi * 10.0)
    # the same ellipse, stated with the long axis first
    same = Ellipse(1.0, 2.0, 5.0, 2.0, e.major_angle)
    assert e.as_dict() == pytest.approx(same.as_dict())
    # the major axis ends at the ``b`` axis, 5 from the centre along major_angle
    (x1, y1), (x2, y2) = e.axis_endpoints()
    assert math.hypot(x1 - x2, y1 - y2) == pytest.approx(10.0)
    assert math.atan2(y1 - y2, x1 - x2) % math.pi == pytest.approx(e.major_angle)


def test_major_angle_is_reduced_to_half_a_turn() -> None:
    assert Ellipse(0, 0, 3, 1, -0.5).major_angle == pytest.approx(math.pi - 0.5)
    assert Ellipse(0, 0, 3, 1, 7.0).major_angle == pytest.approx(7.0 - 2 * math.pi)


def test_level_and_points_agree_on_arrays_and_scalars() -> None:
    e = Ellipse(3.0, -1.0, 4.0, 2.5, 0.7)
    t = np.linspace(0, 2 * math.pi, 97)
    x, y = e.points(t)
    assert np.allclose(e.level(x, y), 1.0, atol=1e-12)
    for k in (0, 13, 50):
        assert (x[k], y[k]) == pytest.approx(e.point(float(t[k])), abs=1e-12)
        assert e.level(float(x[k]), float(y[k])) == pytest.approx(1.0, abs=1e-12)
    assert e.level(3.0, -1.0) == 0.0
    X, Y = np.meshgrid(np.linspace(-3, 9, 40), np.linspace(-6, 4, 30))
    scalar = [
        [e.level(float(px), float(py)) for px, py in zip(rx, ry, strict=True)]
        for rx, ry in zip(X, Y, strict=True)
    ]
    assert np.array_equal(e.level(X, Y), np.array(scalar))


def _random_ellipse(rng: np.random.Generator) -> Ellipse:
    return Ellipse(
        rng.uniform(-20, 20),
        rng.uniform(-20, 20),
        rng.uniform(2, 15),
        rng.uniform(2, 15),
        rng.uniform(-math.pi, math.pi),
    )


@pytest.mark.parametrize("seed", range(6))
def test_tangent_points_touch_the_ellipse(seed: int) -> None:
    rng = np.random.default_rng(seed)
    e = _random_ellipse(rng)
    direction = rng.uniform(0, 2 * math.pi)
    reach = rng.uniform(1.2, 4.0) * e.semi_major
    px, py = e.center_x + reach * math.cos(direction), e.center_y + reach * math.sin(direction)
    tangents = e.tangent_points(px, py)
    assert len(tangents) == 2
    t = np.linspace(0, 2 * math.pi, 200_000, endpoint=False)
    bx, by = e.points(t)
    for tx, ty in tangents:
        assert e.level(tx, ty) == pytest.approx(1.0, abs=1e-9)
        # the whole ellipse lies on one side of the line from P through T
        cross = (tx - px) * (by - py) - (ty - py) * (bx - px)
        scale = math.hypot(tx - px, ty - py) * e.semi_major
        assert cross.min() >= -1e-6 * scale or cross.max() <= 1e-6 * scale
    # the two tangents bound the angle the ellipse covers as seen from P
    seen = np.degrees(np.arctan2(by - py, bx - px) - math.atan2(e.center_y - py, e.center_x - px))
    seen = (seen + 180) % 360 - 180
    spread = angle_between(
        (tangents[0][0] - px, tangents[0][1] - py), (tangents[1][0] - px, tangents[1][1] - py)
    )
    assert spread == pytest.approx(seen.max() - seen.min(), abs=1e-3)


def test_tangent_points_need_an_outside_point() -> None:
    e = Ellipse(0.0, 0.0, 4.0, 2.0, 0.3)
    with pytest.raises(ValueError, match="outside"):
        e.tangent_points(0.5, 0.5)


@pytest.mark.parametrize("seed", range(6))
def test_ray_hit_matches_marching(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    e = _random_ellipse(rng)
    for start_inside in (False, True):
        if start_inside:
            x0, y0 = e.point(rng.uniform(0, 2 * math.pi))
            x0, y0 = (e.center_x + 0.5 * (x0 - e.center_x), e.center_y + 0.5 * (y0 - e.center_y))
            aim = rng.uniform(0, 2 * math.pi)
        else:
            x0, y0 = e.center_x + 3 * e.semi_major, e.center_y - 2 * e.semi_major
            aim = math.atan2(e.center_y - y0, e.center_x - x0)  # towards the centre
        dx, dy = math.cos(aim), math.sin(aim)
        hit = e.ray_hit(x0, y0, dx, dy)
        assert hit is not None and hit >= 0
        assert e.level(x0 + hit * dx, y0 + hit * dy) == pytest.approx(1.0, abs=1e-9)
        steps = np.arange(0.0, 100.0, 1e-3)
        levels = e.level(x0 + steps * dx, y0 + steps * dy)
        crossed = np.flatnonzero(np.diff(levels <= 1.0))[0]
        assert hit == pytest.approx(steps[crossed], abs=2e-3)
        # turned around, a ray from outside misses
        if not start_inside:
            assert e.ray_hit(x0, y0, -dx, -dy) is None


def test_ray_hit_by_hand() -> None:
    e = Ellipse(0.0, 0.0, 2.0, 1.0, 0.0)
    assert e.ray_hit(-5.0, 0.0, 1.0, 0.0) == pytest.approx(3.0)
    assert e.ray_hit(0.0, 0.0, 0.0, 1.0) == pytest.approx(1.0)  # from the centre
    assert e.ray_hit(-5.0, 3.0, 1.0, 0.0) is None  # passes above
    tall = Ellipse(0.0, 0.0, 1.0, 2.0, 0.0)
    assert tall.ray_hit(0.0, -5.0, 0.0, 1.0) == pytest.approx(3.0)


def test_geometry_moves_with_the_ellipse() -> None:
    e = Ellipse(2.0, 1.0, 6.0, 3.0, 0.2)
    p = (15.0, 4.0)
    theta, shift = 0.9, np.array([-3.0, 7.0])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = rot @ (e.center_x, e.center_y) + shift
    moved = Ellipse(float(centre[0]), float(centre[1]), e.a, e.b, e.angle + theta)
    q = rot @ p + shift
    expected = [rot @ t + shift for t in e.tangent_points(*p)]
    assert np.allclose(moved.tangent_points(float(q[0]), float(q[1])), expected, atol=1e-9)
    d = rot @ (-1.0, 0.0)
    assert moved.ray_hit(float(q[0]), float(q[1]), float(d[0]), float(d[1])) == pytest.approx(
        e.ray_hit(*p, -1.0, 0.0)
    )


def test_angle_between() -> None:
    assert angle_between((1.0, 0.0), (1.0, 1.0)) == pytest.approx(45.0)
    assert angle_between((1.0, 0.0), (1.0, -1.0)) == pytest.approx(45.0)  # unsigned
    assert angle_between((0.0, 3.0), (0.0, 5.0)) == 0.0
    assert angle_between((2.0, 1.0), (-4.0, -2.0)) == pytest.approx(180.0)
