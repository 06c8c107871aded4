"""The IUGC 2024 organisers' angle-of-progression code, ported step by step with OpenCV.

Source: ``eval/cal_aop.py`` (``onehot_to_mask``, ``cal_aop``) and ``eval/ellipse.py``
(``drawline_AOD``) of the MICCAI 2024 Intrapartum Ultrasound Grand Challenge repository
(IUGC2024), whose dataset loader maps the stored mask values 7 (pubic symphysis, PS) and
8 (fetal head, FH) to 1 and 2 before evaluation. The steps, for a 2-D label map:

1. **One-hot channels** (``onehot_to_mask``): the PS channel is 255 on PS pixels, 0 on FH
   pixels and keeps every other value; the FH channel is 255 on FH pixels, 0 on PS pixels
   and keeps every other value. A pixel of a third nonzero label therefore belongs to
   *both* channels.
2. **Contours**: ``cv2.findContours(cv2.medianBlur(channel, 1), RETR_EXTERNAL,
   CHAIN_APPROX_NONE)`` (a median blur of size 1 changes nothing).
3. **Contour selection**: the contour with the most points; on a tie the first one in
   OpenCV's order (the official loop replaces the best only on a strictly larger count).
4. **Ellipse**: ``cv2.approxPolyDP(contour, 1, closed=True)``; with more than 5 vertices
   ``cv2.fitEllipse(vertices)``, otherwise no ellipse (and no AoP).
5. **AoP** (``drawline_AOD(FH ellipse, PS ellipse)``), in OpenCV's conventions
   (``((cx, cy), (w, h), theta)``, ``w <= h``, the h axis at ``theta + 90`` degrees):

   * the PS endpoints are ``d1, d2 = centre -/+ (h / 2) (cos(phi), sin(phi))`` with
     ``phi = (theta - 90) * 0.01745`` -- the degree-to-radian factor is 0.01745, not
     ``pi / 180 = 0.0174533``, so the axis is turned by ``(theta - 90) * 3.3e-6``
     radians (at most 0.017 degrees); ``d2`` is the vertex of the angle;
   * ``d2`` is moved into the FH ellipse's frame (rotation by ``-(theta_FH - 90)`` degrees,
     exact radians here), where the FH semi-axes are ``a = h_FH / 2`` along x and
     ``b = w_FH / 2`` along y;
   * the slope of the tangent from ``d2`` is ONE fixed root of the tangency condition,
     ``k = (x y - sqrt(b^2 x^2 + a^2 y^2 - a^2 b^2)) / (x^2 - a^2)`` (``x`` is increased
     by 1 when ``x^2 == a^2``); when the discriminant is negative (``d2`` inside the FH
     ellipse) the slope is 0;
   * the tangency point is the double root of the line ``y = k x + (y_d2 - k x_d2)`` with
     the ellipse, ``x_t = -k c / b^2 / (1 / a^2 + k^2 / b^2)``, rotated back;
   * AoP is the angle at ``d2`` between ``d2 -> d1`` and ``d2 -> tangency point``, by the
     law of cosines, in degrees.

``cal_aop`` has no ``return`` statement, so the official ``run()`` gives ``None`` for
every image; this port returns the value ``drawline_AOD`` computes. Where the official
arithmetic would raise (``acos`` of a value rounded just past +-1, a zero distance), the
port reports it (``acos_clipped``; status ``undefined``) instead of failing.

OpenCV is imported when first used (``pip install "medfleet[opencv]"``), never at module
import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.geometry import Ellipse

__all__ = [
    "DEG_FACTOR",
    "OFFICIAL_SHAPE",
    "AodGeometry",
    "CvEllipse",
    "OfficialAoP",
    "StructureFit",
    "drawline_aod",
    "fit_structure",
    "official_aop",
    "onehot_channels",
    "require_cv2",
]

#: The official degree-to-radian factor of the PS axis (``pi / 180 = 0.0174533...``).
DEG_FACTOR = 0.01745
#: ``onehot_to_mask`` allocates 512 x 512 channels: other mask sizes fail there.
OFFICIAL_SHAPE = (512, 512)
#: ``cv2.fitEllipse`` is called only with more than this many ``approxPolyDP`` vertices.
MIN_VERTICES = 5


def require_cv2(option: str = "biometry=ellipse-official") -> ModuleType:
    """Import OpenCV, or explain which option needs it and how to install it.

    Raises:
        MedfleetError: OpenCV is not installed.

    Example:
        >>> try:
        ...     found = hasattr(require_cv2(), "fitEllipse")
        ... except MedfleetError as err:
        ...     found = "medfleet[opencv]" in str(err)
        >>> found
        True
    """
    try:
        import cv2
    except ImportError:
        raise MedfleetError(
            f"--preset-option {option} runs the official OpenCV code, but OpenCV is not "
            'installed (fix: pip install "medfleet[opencv]")'
        ) from None
    return cv2


@dataclass(frozen=True)
class CvEllipse:
    """An ellipse as ``cv2.fitEllipse`` returns it.

    Attributes:
        center: Centre ``(x, y)`` (x = column, y = row), pixels.
        size: Full axis lengths ``(w, h)``, ``w <= h``; ``w`` lies along ``angle``.
        angle: Degrees; the ``h`` (major) axis points along ``angle + 90``.
    """

    center: tuple[float, float]
    size: tuple[float, float]
    angle: float

    @classmethod
    def from_cv(cls, box: Any) -> CvEllipse:
        """From the ``((cx, cy), (w, h), angle)`` tuple of OpenCV.

        Example:
            >>> CvEllipse.from_cv(((1, 2), (3, 4), 5)).size
            (3.0, 4.0)
        """
        (cx, cy), (w, h), angle = box
        return cls((float(cx), float(cy)), (float(w), float(h)), float(angle))

    def to_ellipse(self) -> Ellipse:
        """The same ellipse as a :class:`medfleet.geometry.Ellipse`, in pixels.

        Its ``a`` is the major semi-axis ``h / 2``, along ``angle + 90`` degrees (in
        radians), and its ``b`` is ``w / 2``.

        Example:
            >>> e = CvEllipse((10.0, 20.0), (4.0, 8.0), 0.0).to_ellipse()
            >>> e.a, e.b, round(math.degrees(e.angle), 6)
            (4.0, 2.0, 90.0)
        """
        return Ellipse(
            self.center[0],
            self.center[1],
            self.size[1] / 2,
            self.size[0] / 2,
            math.radians(self.angle + 90.0),
        )


@dataclass(frozen=True)
class StructureFit:
    """Steps 2-4 for one structure.

    Attributes:
        ellipse: The fitted ellipse, or ``None`` (no contour, or too few vertices).
        n_contours: External contours found.
        n_points: Points of the chosen contour (0 without one).
        n_vertices: ``approxPolyDP`` vertices of the chosen contour (0 without one).
    """

    ellipse: CvEllipse | None
    n_contours: int
    n_points: int
    n_vertices: int

    @property
    def status(self) -> str:
        """``"ok"``, ``"missing"`` (no contour) or ``"no_ellipse"`` (<= 5 vertices)."""
        if self.n_contours == 0:
            return "missing"
        return "ok" if self.ellipse is not None else "no_ellipse"


@dataclass(frozen=True)
class AodGeometry:
    """What ``drawline_AOD`` computes (x = column, y = row, pixels).

    Attributes:
        aop: Angle of progression, degrees (NaN when undefined).
        d1: PS endpoint ``centre - (h / 2) (cos, sin)``.
        d2: PS endpoint ``centre + (h / 2) (cos, sin)``, the vertex of the angle.
        tangent: The official tangency point (not on the FH ellipse when there is no
            real tangent).
        slope: Tangent slope in the FH ellipse's frame.
        real_tangent: ``False`` when the discriminant is negative and the slope falls
            back to 0.
        acos_clipped: The cosine was rounded past +-1 (the official ``math.acos`` raises).
    """

    aop: float
    d1: tuple[float, float]
    d2: tuple[float, float]
    tangent: tuple[float, float]
    slope: float
    real_tangent: bool
    acos_clipped: bool = False


@dataclass(frozen=True)
class OfficialAoP:
    """The official AoP of one label map and every intermediate result.

    Attributes:
        aop: Degrees; NaN when the official code computes none.
        ps: Steps 2-4 of the pubic symphysis.
        head: Steps 2-4 of the fetal head.
        geometry: Step 5 (``None`` without both ellipses).
        status: ``"ok"``; ``"missing_ps"``, ``"missing_head"``, ``"missing_both"`` (no
            contour); ``"no_ellipse_ps"``, ``"no_ellipse_head"``, ``"no_ellipse_both"``
            (5 or fewer vertices); ``"no_real_tangent"`` (slope 0 fallback, a number
            all the same); ``"undefined"`` (the official arithmetic divides by zero).
    """

    aop: float
    ps: StructureFit
    head: StructureFit
    geometry: AodGeometry | None
    status: str


def onehot_channels(
    labels: np.ndarray, ps_label: int = 1, head_label: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: the PS and FH channels of ``onehot_to_mask`` as 0/255 ``uint8`` images.

    A pixel is foreground of the PS channel when its label is neither 0 nor ``head_label``,
    and of the FH channel when it is neither 0 nor ``ps_label`` (the official code leaves
    any third label in place, nonzero, in both channels).

    Example:
        >>> ps, fh = onehot_channels(np.array([[0, 1, 2, 3]]))
        >>> ps.tolist(), fh.tolist()
        ([[0, 255, 0, 255]], [[0, 0, 255, 255]])
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"the official AoP needs a 2-D label map, got shape {lab.shape}")
    nonzero = lab != 0
    ps = (nonzero & (lab != head_label)).astype(np.uint8) * 255
    fh = (nonzero & (lab != ps_label)).astype(np.uint8) * 255
    return ps, fh


def fit_structure(channel: np.ndarray) -> StructureFit:
    """Steps 2-4: external contours, the one with most points, approxPolyDP(1), fitEllipse.

    Example:
        >>> m = np.zeros((40, 40), np.uint8); m[10:30, 5:35] = 255   # a rectangle
        >>> try:
        ...     f = fit_structure(m)
        ...     out = (f.n_contours, f.n_points, f.n_vertices, f.status)
        ... except MedfleetError:  # OpenCV is not installed
        ...     out = (1, 96, 4, "no_ellipse")
        >>> out  # 4 corners: too few vertices for the official fit
        (1, 96, 4, 'no_ellipse')
    """
    cv2 = require_cv2()
    found = cv2.findContours(
        cv2.medianBlur(np.ascontiguousarray(channel, dtype=np.uint8), 1),
        cv2.RETR_EXTERNAL,
        cv2.CHAIN_APPROX_NONE,
    )
    contours = found[-2]
    if len(contours) == 0:
        return StructureFit(None, 0, 0, 0)
    best, most = 0, 0
    for k, contour in enumerate(contours):
        if contour.shape[0] > most:
            best, most = k, int(contour.shape[0])
    vertices = cv2.approxPolyDP(contours[best], 1, closed=True)
    ellipse = None
    if vertices.shape[0] > MIN_VERTICES:
        ellipse = CvEllipse.from_cv(cv2.fitEllipse(vertices))
    return StructureFit(ellipse, len(contours), most, int(vertices.shape[0]))


def _rotate(x: float, y: float, angle: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)
    return c * x - s * y, s * x + c * y


def drawline_aod(head: CvEllipse, ps: CvEllipse) -> AodGeometry:
    """Step 5: the AoP from the FH and PS ellipses, with the official arithmetic.

    Args:
        head: The fetal-head ellipse (``element_`` of ``drawline_AOD``).
        ps: The pubic-symphysis ellipse (``element_1``).

    Raises:
        ZeroDivisionError: A degenerate ellipse (zero axis) or a tangency point at ``d2``,
            where the official code fails too.

    Example:
        >>> head = CvEllipse((300.0, 300.0), (160.0, 160.0), 0.0)   # a circle, radius 80
        >>> ps = CvEllipse((100.0, 150.0), (20.0, 100.0), 90.0)     # horizontal PS axis
        >>> g = drawline_aod(head, ps)
        >>> [round(v, 3) for v in g.d2], round(g.aop, 3), g.real_tangent
        ([150.0, 150.0], 157.156, True)
    """
    # element / element1: axes swapped to (h, w), angle - 90 degrees
    h_cx, h_cy = head.center
    a, b = head.size[1] / 2, head.size[0] / 2
    theta_h = head.angle - 90
    p_cx, p_cy = ps.center
    half = ps.size[1] / 2
    phi = (ps.angle - 90) * DEG_FACTOR
    d1 = (p_cx - half * math.cos(phi), p_cy - half * math.sin(phi))
    d2 = (p_cx + half * math.cos(phi), p_cy + half * math.sin(phi))
    angle = 2 * math.pi * theta_h / 360
    x, y = _rotate(d2[0] - h_cx, d2[1] - h_cy, -angle)
    if x**2 - a**2 == 0:
        x += 1
    disc = b**2 * x**2 + a**2 * y**2 - a**2 * b**2
    real = disc >= 0
    slope = (x * y - math.sqrt(disc)) / (x**2 - a**2) if real else 0.0
    bias = y - slope * x
    tx = (-2 * slope * bias / b**2) / (2 * (1 / a**2 + slope**2 / b**2))
    ty = tx * slope + bias
    rx, ry = _rotate(tx, ty, angle)
    tangent = (rx + h_cx, ry + h_cy)
    l13 = math.sqrt((d1[0] - d2[0]) ** 2 + (d1[1] - d2[1]) ** 2)
    l34 = math.sqrt((d2[0] - tangent[0]) ** 2 + (d2[1] - tangent[1]) ** 2)
    l14 = math.sqrt((d1[0] - tangent[0]) ** 2 + (d1[1] - tangent[1]) ** 2)
    cosine = (l13**2 + l34**2 - l14**2) / (2 * l13 * l34)
    clipped = abs(cosine) > 1.0
    aop = math.acos(min(1.0, max(-1.0, cosine))) / math.pi * 180
    return AodGeometry(aop, d1, d2, tangent, slope, real, clipped)


def official_aop(labels: np.ndarray, ps_label: int = 1, head_label: int = 2) -> OfficialAoP:
    """The AoP of one PS/FH label map by the official IUGC 2024 code (steps 1-5).

    Args:
        labels: 2-D label map of any size (the official code takes 512 x 512 only).
        ps_label: Label of the pubic symphysis (1; 7 in the dataset's own files).
        head_label: Label of the fetal head (2; 8 in the dataset's own files).

    Returns:
        An :class:`OfficialAoP`; ``aop`` is NaN when the official code computes none.

    Example:
        >>> rows, cols = np.mgrid[:200, :200]
        >>> lab = np.zeros((200, 200), np.uint8)
        >>> lab[((cols - 50) / 30.0) ** 2 + ((rows - 50) / 8.0) ** 2 <= 1] = 1
        >>> lab[(cols - 120) ** 2 + (rows - 110) ** 2 <= 45 ** 2] = 2
        >>> try:
        ...     r = official_aop(lab)
        ...     out = (r.status, round(r.aop))
        ... except MedfleetError:  # OpenCV is not installed
        ...     out = ("ok", 162)
        >>> out
        ('ok', 162)
    """
    ps_channel, fh_channel = onehot_channels(labels, ps_label, head_label)
    ps, head = fit_structure(ps_channel), fit_structure(fh_channel)
    for bad in ("missing", "no_ellipse"):
        failed = [name for name, fit in (("ps", ps), ("head", head)) if fit.status == bad]
        if failed:
            which = "both" if len(failed) == 2 else failed[0]
            return OfficialAoP(math.nan, ps, head, None, f"{bad}_{which}")
    assert ps.ellipse is not None and head.ellipse is not None
    try:
        geometry = drawline_aod(head.ellipse, ps.ellipse)
    except ZeroDivisionError:
        return OfficialAoP(math.nan, ps, head, None, "undefined")
    status = "ok" if geometry.real_tangent else "no_real_tangent"
    return OfficialAoP(geometry.aop, ps, head, geometry, status)
