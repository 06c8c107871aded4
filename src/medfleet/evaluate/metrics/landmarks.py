"""Anatomical landmark metrics: point error, mean radial error (MRE) and SDR.

Coordinates are **pixel (voxel) coordinates** ``(x, y)`` or ``(x, y, z)`` with
``x = column``, ``y = row`` and ``z = slice`` (the order used by landmark annotation tools),
continuous, with the centre of pixel ``[row, col]`` at ``(x=col, y=row)``.

``spacing`` follows medfleet's array-axis order everywhere, ``(row, column)`` in 2-D and
``(slice, row, column)`` in 3-D, so the millimetre size of the x coordinate is
``spacing[-1]``: the error of one point is
``sqrt(sum(((pred - gt) * spacing[::-1]) ** 2))``.

Errors can be normalised by a reference distance (``reference``): a number in mm, or a
pair ``(i, j)`` of landmark indices whose ground-truth distance (mm) is the unit (e.g. the
inter-ocular distance of face landmarks). Normalised errors have no unit.

Missing predictions (any coordinate NaN) follow an explicit ``missing`` policy, and the
number of missing points is always reported:

* ``"penalty"`` (default): the error of a missing point is ``penalty`` (default ``inf``);
  it enters the MRE, the SD and the SDR (where an infinite error is never a success).
* ``"failure"``: left out of the MRE and SD, counted as a failure at every SDR radius.
* ``"exclude"``: left out of everything (MRE, SD and the SDR denominator).

SDR (successful detection rate) at radius r is the fraction of points with error ``<= r``
(``comparison="<="``, the default) or ``< r`` (``comparison="<"``). The SD of the MRE is
the sample SD (ddof=1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "LandmarkSummary",
    "landmark_errors",
    "mean_radial_error",
    "successful_detection_rate",
    "summarize_landmark_errors",
]

MissingPolicy = Literal["penalty", "failure", "exclude"]
Comparison = Literal["<", "<="]
MISSING_POLICIES: tuple[str, ...] = ("penalty", "failure", "exclude")


def _points(points: Any, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size in (2, 3):
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(f"{name} must have shape (n_points, 2 or 3) as x, y[, z]; got {arr.shape}")
    return arr


def _scale(spacing: Sequence[float] | float | None, dim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(dim)
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.size == 1:
        sp = np.repeat(sp, dim)
    if sp.size != dim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(
            f"spacing must be {dim} positive numbers in array-axis order "
            f"({'slice, row, column' if dim == 3 else 'row, column'}), got {spacing}"
        )
    return sp[::-1]  # array-axis order -> (x, y[, z]) order


def landmark_errors(
    pred: Any,
    gt: Any,
    spacing: Sequence[float] | float | None = None,
    *,
    reference: float | tuple[int, int] | None = None,
) -> np.ndarray:
    """Euclidean error of each landmark, in mm (or normalised by a reference distance).

    Args:
        pred: ``(n_points, d)`` predicted pixel coordinates ``x, y[, z]``; a row with a NaN is
            a missing prediction.
        gt: ``(n_points, d)`` ground-truth pixel coordinates (must be finite).
        spacing: Pixel size in mm in array-axis order (rows first); one number means
            isotropic; ``None`` gives errors in pixels.
        reference: ``None`` (errors in mm), a distance in mm, or a pair of landmark indices
            whose ground-truth distance is the unit.

    Returns:
        ``(n_points,)`` float64 errors, NaN for missing predictions.

    Example:
        >>> landmark_errors([[3, 4], [0, 0]], [[0, 0], [0, 0]])
        array([5., 0.])
        >>> landmark_errors([[1, 1]], [[0, 0]], spacing=(2.0, 1.0))  # rows 2 mm, columns 1 mm
        array([2.23606798])
        >>> landmark_errors([[1, 0], [10, 0]], [[0, 0], [10, 0]], reference=(0, 1))
        array([0.1, 0. ])
    """
    p = _points(pred, "pred")
    g = _points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred has shape {p.shape} but gt has shape {g.shape}")
    bad = ~np.isfinite(g).all(axis=1)
    if bad.any():
        raise ValueError(
            f"gt landmark {int(np.flatnonzero(bad)[0])} is not finite; "
            "ground truth must give every landmark"
        )
    if np.isinf(p).any():
        raise ValueError("pred contains infinite coordinates; mark a missing landmark with NaN")
    scale = _scale(spacing, p.shape[1])
    errors = np.sqrt((((p - g) * scale) ** 2).sum(axis=1))
    if reference is None:
        return errors
    if isinstance(reference, tuple):
        i, j = reference
        if not (0 <= i < len(g) and 0 <= j < len(g)):
            raise ValueError(f"reference landmarks {reference} out of range for {len(g)} points")
        unit = float(np.sqrt((((g[i] - g[j]) * scale) ** 2).sum()))
    else:
        unit = float(reference)
    if not (np.isfinite(unit) and unit > 0):
        raise ValueError(f"the reference distance must be positive, got {unit}")
    return errors / unit


def _check_policy(missing: str) -> None:
    if missing not in MISSING_POLICIES:
        raise ValueError(f"unknown missing policy {missing!r}; use one of {MISSING_POLICIES}")


def _errors(errors: Any) -> np.ndarray:
    arr = np.asarray(errors, dtype=np.float64).reshape(-1)
    if (arr < 0).any():
        raise ValueError("errors must be >= 0")
    return arr


def mean_radial_error(
    errors: Any, *, missing: MissingPolicy = "penalty", penalty: float = np.inf
) -> tuple[float, float]:
    """Mean radial error and its sample SD, with an explicit policy for missing points.

    Args:
        errors: Point errors; NaN marks a missing prediction.
        missing: ``"penalty"``, ``"failure"`` or ``"exclude"`` (see the module notes).
        penalty: Error given to a missing point under ``"penalty"``.

    Returns:
        ``(mre, sd)``; NaN when no point remains, SD NaN for fewer than two points or an
        infinite error.

    Example:
        >>> mean_radial_error([1.0, 3.0, float("nan")], missing="exclude")
        (2.0, 1.4142135623730951)
        >>> mean_radial_error([1.0, 3.0, float("nan")], penalty=5.0)
        (3.0, 2.0)
    """
    _check_policy(missing)
    e = _errors(errors)
    if missing == "penalty":
        e = np.where(np.isnan(e), penalty, e)
    e = e[~np.isnan(e)]
    if e.size == 0:
        return float("nan"), float("nan")
    mre = float(np.mean(e))
    sd = float(np.std(e, ddof=1)) if e.size > 1 and np.isfinite(e).all() else float("nan")
    return mre, sd


def successful_detection_rate(
    errors: Any,
    radii: Sequence[float],
    *,
    comparison: Comparison = "<=",
    missing: MissingPolicy = "penalty",
    penalty: float = np.inf,
) -> dict[float, float]:
    """Fraction of points whose error is within each radius.

    Args:
        errors: Point errors; NaN marks a missing prediction.
        radii: Radii, in the unit of the errors.
        comparison: ``"<="`` (error at most r) or ``"<"`` (error below r).
        missing: ``"penalty"``, ``"failure"`` or ``"exclude"``.
        penalty: Error given to a missing point under ``"penalty"``.

    Returns:
        Radius -> rate (NaN when no point remains).

    Example:
        >>> successful_detection_rate([1.0, 2.0, 3.0, float("nan")], [2.0])
        {2.0: 0.5}
        >>> successful_detection_rate([1.0, 2.0, 3.0, float("nan")], [2.0], comparison="<")
        {2.0: 0.25}
        >>> successful_detection_rate([1.0, 2.0, 3.0, float("nan")], [2.0], missing="exclude")
        {2.0: 0.6666666666666666}
    """
    _check_policy(missing)
    if comparison not in ("<", "<="):
        raise ValueError(f"comparison must be '<' or '<=', got {comparison!r}")
    e = _errors(errors)
    nan = np.isnan(e)
    if missing == "penalty":
        e = np.where(nan, penalty, e)
    elif missing == "failure":
        e = np.where(nan, np.inf, e)
    else:
        e = e[~nan]
    out: dict[float, float] = {}
    for r in radii:
        r = float(r)
        if e.size == 0:
            out[r] = float("nan")
            continue
        hit = e <= r if comparison == "<=" else e < r
        out[r] = float(np.mean(hit))
    return out


@dataclass(frozen=True)
class LandmarkSummary:
    """MRE, SD and SDR over a set of point errors.

    Attributes:
        mre: Mean radial error.
        sd: Sample SD of the errors entering the MRE.
        sdr: Radius -> successful detection rate.
        n_points: All points, missing ones included.
        n_missing: Points without a prediction.
        missing: The missing-point policy used.
        penalty: The penalty error (used under ``"penalty"``).
        comparison: ``"<="`` or ``"<"``.
    """

    mre: float
    sd: float
    sdr: dict[float, float] = field(default_factory=dict)
    n_points: int = 0
    n_missing: int = 0
    missing: str = "penalty"
    penalty: float = float("inf")
    comparison: str = "<="

    def as_dict(self) -> dict[str, Any]:
        """Plain dictionary with SDR keys such as ``sdr_2`` or ``sdr_2.5``."""
        out: dict[str, Any] = {"mre": self.mre, "sd": self.sd}
        for r, v in self.sdr.items():
            out[f"sdr_{r:g}"] = v
        out.update(n_points=self.n_points, n_missing=self.n_missing)
        return out


def summarize_landmark_errors(
    errors: Any,
    radii: Sequence[float] = (2.0, 2.5, 3.0, 4.0),
    *,
    comparison: Comparison = "<=",
    missing: MissingPolicy = "penalty",
    penalty: float = np.inf,
) -> LandmarkSummary:
    """MRE +/- SD and SDR at several radii in one call.

    Args:
        errors: Point errors (any shape, e.g. cases x landmarks); NaN marks a missing one.
        radii: SDR radii (default 2, 2.5, 3 and 4 mm, as the ISBI cephalometric challenges).
        comparison: ``"<="`` or ``"<"``.
        missing: ``"penalty"``, ``"failure"`` or ``"exclude"``.
        penalty: Error given to a missing point under ``"penalty"``.

    Returns:
        A :class:`LandmarkSummary`.

    Example:
        >>> s = summarize_landmark_errors([[1.0, 2.0], [3.0, float("nan")]], [2.0],
        ...                               missing="failure")
        >>> s.mre, s.sdr, s.n_missing
        (2.0, {2.0: 0.5}, 1)
    """
    e = _errors(errors)
    mre, sd = mean_radial_error(e, missing=missing, penalty=penalty)
    sdr = successful_detection_rate(
        e, radii, comparison=comparison, missing=missing, penalty=penalty
    )
    return LandmarkSummary(
        mre=mre,
        sd=sd,
        sdr=sdr,
        n_points=int(e.size),
        n_missing=int(np.isnan(e).sum()),
        missing=missing,
        penalty=float(penalty),
        comparison=comparison,
    )
