"""Exact intrapartum biometry of two ellipses: angle of progression and head-symphysis distance.

Definitions (following the ISUOG intrapartum ultrasound guideline, as used by the
PSFHS and IUGC challenges), with the pubic symphysis (PS) and fetal head (FH)
each an ellipse in the image plane, in millimetres:

- **PS long axis**: the major axis of the PS ellipse. Its two endpoints are the
  *superior* end ``S`` and the *inferior* end ``I``, where ``I`` is the endpoint
  nearer to the fetal head.
- **Angle of progression (AoP)**: the angle at ``I`` between the ray ``I -> S``
  (the long axis) and the line from ``I`` tangent to the fetal head contour that
  touches the leading part of the skull, i.e. the tangent ``I -> T`` making the
  larger angle with ``I -> S``. Equivalently, ``AoP = max over head points P of
  angle(S - I, P - I)``, attained at the tangent point ``T``. Degrees in (0, 180).
- **Head-symphysis distance (HSD)**: the distance from ``I`` to the fetal head
  contour along the infrapubic line, the line through ``I`` perpendicular to the
  PS long axis, directed towards the head (Youssef et al. 2013). Millimetres.

Both are computed analytically: an affine map sends the head ellipse to the unit
circle, where tangents from a point and ray intersections have closed forms, and
affine maps preserve tangency and incidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in the plane: centre ``(cx, cy)``, semi-axes ``a`` (along ``angle``) and ``b``.

    Example:
        >>> e = Ellipse(0.0, 0.0, 2.0, 1.0, 0.0)
        >>> e.point(0.0)
        (2.0, 0.0)
    """

    cx: float
    cy: float
    a: float
    b: float
    angle: float

    def _to_local(self, x: float, y: float) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        return (dx * c + dy * s) / self.a, (-dx * s + dy * c) / self.b

    def _from_unit(self, u: float, v: float) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        lx, ly = u * self.a, v * self.b
        return self.cx + lx * c - ly * s, self.cy + lx * s + ly * c

    def point(self, t: float) -> tuple[float, float]:
        """Boundary point at parameter ``t`` (radians)."""
        return self._from_unit(math.cos(t), math.sin(t))

    def level(self, x: float, y: float) -> float:
        """``u**2 + v**2`` in the normalised frame: < 1 inside, 1 on the boundary, > 1 outside."""
        u, v = self._to_local(x, y)
        return u * u + v * v

    def axis_endpoints(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Endpoints of the major axis (the ``a`` axis when ``a >= b``)."""
        if self.a >= self.b:
            return self.point(0.0), self.point(math.pi)
        return self.point(math.pi / 2), self.point(-math.pi / 2)

    def tangent_points(self, x: float, y: float) -> list[tuple[float, float]]:
        """The two points where lines through the outside point ``(x, y)`` touch the ellipse.

        Example:
            >>> pts = Ellipse(0.0, 0.0, 1.0, 1.0, 0.0).tangent_points(2.0, 0.0)
            >>> [tuple(round(c, 6) for c in p) for p in pts]
            [(0.5, 0.866025), (0.5, -0.866025)]
        """
        u, v = self._to_local(x, y)
        rho = math.hypot(u, v)
        if rho <= 1.0:
            raise ValueError("tangent points need a point outside the ellipse")
        base = math.atan2(v, u)
        half = math.acos(1.0 / rho)
        return [self._from_unit(math.cos(base + d), math.sin(base + d)) for d in (half, -half)]

    def ray_hit(self, x: float, y: float, dx: float, dy: float) -> float | None:
        """Smallest ``s >= 0`` with ``(x + s dx, y + s dy)`` on the boundary; None on a miss.

        ``(dx, dy)`` should be a unit vector for ``s`` to be a distance.

        Example:
            >>> Ellipse(0.0, 0.0, 1.0, 1.0, 0.0).ray_hit(-3.0, 0.0, 1.0, 0.0)
            2.0
        """
        u0, v0 = self._to_local(x, y)
        c, s = math.cos(self.angle), math.sin(self.angle)
        du, dv = (dx * c + dy * s) / self.a, (-dx * s + dy * c) / self.b
        qa = du * du + dv * dv
        qb = 2.0 * (u0 * du + v0 * dv)
        qc = u0 * u0 + v0 * v0 - 1.0
        disc = qb * qb - 4.0 * qa * qc
        if disc < 0:
            return None
        root = math.sqrt(disc)
        hits = sorted(((-qb - root) / (2 * qa), (-qb + root) / (2 * qa)))
        for hit in hits:
            if hit >= 0:
                return hit
        return None


def angle_between(v1: tuple[float, float], v2: tuple[float, float]) -> float:
    """Angle in degrees between two plane vectors, in [0, 180].

    Example:
        >>> angle_between((1.0, 0.0), (0.0, 2.0))
        90.0
    """
    cross = v1[0] * v2[1] - v1[1] * v2[0]
    dot = v1[0] * v2[0] + v1[1] * v2[1]
    return math.degrees(math.atan2(abs(cross), dot))


@dataclass(frozen=True)
class Biometry:
    """Intrapartum biometry and the points that define it (all in mm, x right, y down).

    Attributes:
        aop_deg: Angle of progression, degrees.
        hsd_mm: Head-symphysis distance along the infrapubic line, mm.
        superior: PS superior end ``S``.
        inferior: PS inferior end ``I``.
        tangent: Tangent point ``T`` on the head contour.
        infrapubic_hit: Where the infrapubic line meets the head contour.
        end_gap_mm: How much farther ``S`` is from the head contour than ``I`` (mm); a small
            value means the choice of the inferior end is ambiguous.
    """

    aop_deg: float
    hsd_mm: float
    superior: tuple[float, float]
    inferior: tuple[float, float]
    tangent: tuple[float, float]
    infrapubic_hit: tuple[float, float]
    end_gap_mm: float


def intrapartum_biometry(symphysis: Ellipse, head: Ellipse) -> Biometry:
    """Exact AoP and HSD of a symphysis ellipse and a head ellipse (see the module docstring).

    Raises:
        ValueError: When the geometry has no defined AoP/HSD (the inferior end inside the
            head, the long axis running into the head, or the infrapubic line missing it).

    Example:
        >>> ps = Ellipse(0.0, 0.0, 10.0, 3.0, 0.0)           # long axis along x, I = (10, 0)
        >>> head = Ellipse(10.0, 30.0, 20.0, 20.0, 0.0)      # circle right below I
        >>> b = intrapartum_biometry(ps, head)
        >>> round(b.hsd_mm, 6), round(b.aop_deg, 4)
        (10.0, 131.8103)
    """
    end1, end2 = symphysis.axis_endpoints()
    d1 = _distance_to_ellipse_along_samples(head, end1)
    d2 = _distance_to_ellipse_along_samples(head, end2)
    inferior, superior = (end1, end2) if d1 <= d2 else (end2, end1)
    ix, iy = inferior
    if head.level(ix, iy) <= 1.0:
        raise ValueError("the inferior end of the symphysis lies inside the head")
    axis = (superior[0] - ix, superior[1] - iy)
    norm = math.hypot(*axis)
    ux, uy = -axis[0] / norm, -axis[1] / norm  # caudal direction, continuing the axis beyond I
    if head.ray_hit(ix, iy, ux, uy) is not None:
        raise ValueError(
            "the symphysis long axis, continued beyond its inferior end, runs into the head"
        )
    tangents = head.tangent_points(ix, iy)
    angles = [angle_between(axis, (tx - ix, ty - iy)) for tx, ty in tangents]
    best = int(np.argmax(angles))
    # Infrapubic line: perpendicular to the axis at I, on the side of the head centre.
    px, py = -uy, ux
    if px * (head.cx - ix) + py * (head.cy - iy) < 0:
        px, py = -px, -py
    hit = head.ray_hit(ix, iy, px, py)
    if hit is None:
        raise ValueError("the infrapubic line misses the fetal head")
    return Biometry(
        aop_deg=angles[best],
        hsd_mm=hit,
        superior=superior,
        inferior=inferior,
        tangent=tangents[best],
        infrapubic_hit=(ix + hit * px, iy + hit * py),
        end_gap_mm=abs(d2 - d1),
    )


def _distance_to_ellipse_along_samples(e: Ellipse, p: tuple[float, float], n: int = 2048) -> float:
    """Minimum distance from ``p`` to ``n`` evenly spaced boundary samples of ``e``."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = math.cos(e.angle), math.sin(e.angle)
    lx, ly = e.a * np.cos(t), e.b * np.sin(t)
    x = e.cx + lx * c - ly * s
    y = e.cy + lx * s + ly * c
    return float(np.min(np.hypot(x - p[0], y - p[1])))
