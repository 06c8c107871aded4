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

Both are computed analytically with :meth:`medfleet.geometry.Ellipse.tangent_points` and
:meth:`medfleet.geometry.Ellipse.ray_hit`: an affine map sends the head ellipse to the unit
circle, where tangents from a point and ray intersections have closed forms, and affine
maps preserve tangency and incidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medfleet.geometry import Ellipse, angle_between


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
    if px * (head.center_x - ix) + py * (head.center_y - iy) < 0:
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
    x, y = e.points(np.linspace(0.0, 2 * np.pi, n, endpoint=False))
    return float(np.min(np.hypot(x - p[0], y - p[1])))
