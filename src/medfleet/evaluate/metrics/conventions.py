"""Conventions shared by the segmentation metrics: inputs, spacing, connectivity, empty masks.

Every convention that changes a number is an explicit, documented parameter:

* **spacing** is in millimetres, one value per array axis, in numpy axis order
  (for a volume read as ``(z, y, x)`` pass ``(sz, sy, sx)``; SimpleITK's
  ``GetSpacing()`` is ``(sx, sy, sz)`` and must be reversed);
* **connectivity** of the structuring element that erodes a mask to find its
  border voxels: the scipy rank (1 = faces, 2 = faces and edges, 3 = all
  neighbours) or the neighbour count (4/8 in 2D, 6/18/26 in 3D);
* **empty masks**: what a metric reports when the prediction and/or the
  reference of a label is empty (:class:`EmptyPolicy`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medfleet.errors import MedfleetError

#: Per-label status: both masks present.
STATUS_OK = "ok"
#: Per-label status: neither the prediction nor the reference contains the label.
STATUS_BOTH_EMPTY = "both_empty"
#: Per-label status: only the reference contains the label (a missed structure).
STATUS_PRED_EMPTY = "pred_empty"
#: Per-label status: only the prediction contains the label (a spurious structure).
STATUS_GT_EMPTY = "gt_empty"
#: The statuses in which exactly one of the two masks is empty.
ONE_EMPTY_STATUSES = (STATUS_PRED_EMPTY, STATUS_GT_EMPTY)

Surface = Literal["border", "corner-area"]
PercentileMethod = Literal["max-directed", "pooled", "area-weighted"]
SURFACES: tuple[str, ...] = ("border", "corner-area")
PERCENTILE_METHODS: tuple[str, ...] = ("max-directed", "pooled", "area-weighted")

_NEIGHBOUR_COUNTS = {2: {4: 1, 8: 2}, 3: {6: 1, 18: 2, 26: 3}}


class MetricInputError(MedfleetError, ValueError):
    """A metric was given arrays or options it cannot score; the message says how to fix them."""


def float_or_nan(value: object) -> float:
    """``float(value)``, or NaN when the value is ``None`` or not a number.

    Example:
        >>> float_or_nan("0.5"), float_or_nan(None), float_or_nan("n/a")
        (0.5, nan, nan)
    """
    if value is None:
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def status_of(n_pred: int, n_gt: int) -> str:
    """Status of one label from its voxel counts in the prediction and the reference.

    Example:
        >>> status_of(0, 5), status_of(3, 0), status_of(0, 0), status_of(2, 2)
        ('pred_empty', 'gt_empty', 'both_empty', 'ok')
    """
    if n_pred and n_gt:
        return STATUS_OK
    if n_gt:
        return STATUS_PRED_EMPTY
    if n_pred:
        return STATUS_GT_EMPTY
    return STATUS_BOTH_EMPTY


def as_label_volume(array: object, name: str) -> np.ndarray:
    """Check that ``array`` is a 2D or 3D bool or integer label map and return it as an ndarray.

    Args:
        array: The mask or label map.
        name: Argument name used in error messages (``"pred"``, ``"gt"``).

    Returns:
        The array (no copy when it already is a suitable ndarray).

    Raises:
        MetricInputError: Wrong dimensionality, a float or other non-integer dtype,
            or negative labels.

    Example:
        >>> as_label_volume(np.zeros((4, 4), dtype=np.uint8), "gt").shape
        (4, 4)
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise MetricInputError(
            f"{name} has {arr.ndim} dimensions (shape {arr.shape}); segmentation metrics take a "
            "2D or 3D mask or label map (fix: drop batch/channel axes, e.g. arr[0, 0])"
        )
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.integer):
        raise MetricInputError(
            f"{name} has dtype {arr.dtype}; pass a bool mask or an integer label map "
            "(fix: threshold probabilities, or convert with np.rint(x).astype(np.int16))"
        )
    signed = arr.dtype != bool and np.issubdtype(arr.dtype, np.signedinteger)
    if signed and arr.size and int(arr.min()) < 0:
        raise MetricInputError(
            f"{name} contains negative labels (minimum {int(arr.min())}); labels must be >= 0 "
            "(fix: map ignore/negative values to 0 or to a dedicated label first)"
        )
    return arr


def check_pair(pred: object, gt: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction/reference pair: same shape, bool or integer, 2D or 3D.

    Example:
        >>> p, g = check_pair(np.zeros((3, 3), bool), np.ones((3, 3), np.uint8))
        >>> p.shape == g.shape
        True
    """
    p = as_label_volume(pred, "pred")
    g = as_label_volume(gt, "gt")
    if p.shape != g.shape:
        raise MetricInputError(
            f"pred has shape {p.shape} but gt has shape {g.shape}; both must be on the same grid "
            "(fix: resample the prediction onto the reference grid with nearest-neighbour)"
        )
    return p, g


def normalize_spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Return the voxel spacing as ``ndim`` positive floats (mm, numpy axis order).

    Args:
        spacing: ``None`` (1 mm), one number (isotropic), or one number per axis.
        ndim: Number of array axes.

    Raises:
        MetricInputError: Wrong length, or a value that is not finite and positive.

    Example:
        >>> normalize_spacing(None, 3)
        (1.0, 1.0, 1.0)
        >>> normalize_spacing((2.5, 0.8, 0.8), 3)
        (2.5, 0.8, 0.8)
    """
    if spacing is None:
        values = [1.0] * ndim
    elif np.isscalar(spacing):
        values = [float(spacing)] * ndim  # type: ignore[arg-type]
    else:
        values = [float(v) for v in np.asarray(spacing, dtype=np.float64).ravel()]
        if len(values) != ndim:
            raise MetricInputError(
                f"spacing has {len(values)} values {tuple(values)} but the arrays have {ndim} axes "
                "(fix: give one spacing per array axis, in numpy axis order; reverse SimpleITK's "
                "GetSpacing())"
            )
    for v in values:
        if not (math.isfinite(v) and v > 0):
            raise MetricInputError(
                f"spacing {tuple(values)} contains {v}; every spacing must be a finite positive "
                "number of millimetres (fix: read it from the image header)"
            )
    return tuple(values)


def structure_rank(connectivity: int, ndim: int) -> int:
    """Translate a border connectivity into the scipy structuring-element rank.

    Args:
        connectivity: Rank 1..ndim, or a neighbour count (4/8 in 2D; 6/18/26 in 3D).
        ndim: Number of array axes.

    Example:
        >>> structure_rank(6, 3), structure_rank(26, 3), structure_rank(8, 2), structure_rank(1, 2)
        (1, 3, 2, 1)
    """
    c = int(connectivity)
    if 1 <= c <= ndim:
        return c
    rank = _NEIGHBOUR_COUNTS.get(ndim, {}).get(c)
    if rank is None:
        counts = "/".join(str(k) for k in _NEIGHBOUR_COUNTS.get(ndim, {}))
        raise MetricInputError(
            f"connectivity {connectivity} is not valid in {ndim}D (fix: use a rank 1..{ndim} "
            f"or a neighbour count {counts})"
        )
    return rank


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image diagonal in mm (``sqrt(sum((n_i * s_i)^2))``).

    No surface distance inside the image can exceed it, so it is a penalty that
    never rewards a missed structure.

    Example:
        >>> round(image_diagonal_mm((3, 4), (1.0, 1.0)), 6)
        5.0
    """
    return float(
        math.sqrt(sum((float(n) * float(s)) ** 2 for n, s in zip(shape, spacing, strict=True)))
    )


@dataclass(frozen=True)
class EmptyPolicy:
    """What a metric reports when a label is absent from the prediction and/or the reference.

    Attributes:
        both_empty: Neither mask contains the label. ``"nan"`` (default): every
            metric is NaN and the case is left out of means. ``"best"``: the
            perfect value (Dice, IoU, NSD, sensitivity, volume similarity = 1;
            distances = 0).
        one_empty: Exactly one mask contains the label. Only distance metrics
            (HD, HD at a percentile, ASSD, MASD) need a policy; overlap metrics and
            NSD are then well defined (0). ``"inf"`` (default, the directed distance
            to an empty set), ``"nan"``, ``"diagonal"`` (the image diagonal in mm),
            or a number of millimetres such as ``373.13``.

    Either way the result marks such values as not valid, and aggregation
    scores a NaN from a one-empty case as the metric's worst value, so a missed
    structure never improves a mean.

    Example:
        >>> EmptyPolicy(one_empty=373.13).one_empty_distance((10, 10), (1.0, 1.0))
        373.13
        >>> EmptyPolicy(one_empty="diagonal").one_empty_distance((3, 4), (1.0, 1.0))
        5.0
    """

    both_empty: Literal["nan", "best"] = "nan"
    one_empty: Literal["nan", "inf", "diagonal"] | float = "inf"

    def __post_init__(self) -> None:
        if self.both_empty not in ("nan", "best"):
            raise MetricInputError(
                f"EmptyPolicy.both_empty is {self.both_empty!r} (fix: use 'nan' or 'best')"
            )
        if isinstance(self.one_empty, str):
            if self.one_empty not in ("nan", "inf", "diagonal"):
                raise MetricInputError(
                    f"EmptyPolicy.one_empty is {self.one_empty!r} (fix: use 'nan', 'inf', "
                    "'diagonal' or a penalty in mm such as 373.13)"
                )
        else:
            value = float(self.one_empty)
            if not (math.isfinite(value) and value >= 0):
                raise MetricInputError(
                    f"EmptyPolicy.one_empty penalty is {self.one_empty!r} (fix: a finite number "
                    "of mm >= 0, or 'inf')"
                )

    def one_empty_distance(self, shape: Sequence[int], spacing: Sequence[float]) -> float:
        """Distance reported when exactly one mask is empty."""
        if self.one_empty == "nan":
            return math.nan
        if self.one_empty == "inf":
            return math.inf
        if self.one_empty == "diagonal":
            return image_diagonal_mm(shape, spacing)
        return float(self.one_empty)

    def both_empty_value(self, best: float) -> float:
        """Value reported when both masks are empty, for a metric whose best value is ``best``."""
        return best if self.both_empty == "best" else math.nan

    def describe(self) -> dict[str, object]:
        """The policy as plain values, for result metadata."""
        return {"both_empty": self.both_empty, "one_empty": self.one_empty}


def as_empty_policy(empty: EmptyPolicy | Mapping[str, object] | None) -> EmptyPolicy:
    """Accept an :class:`EmptyPolicy`, a mapping of its fields, or ``None`` (defaults).

    Example:
        >>> as_empty_policy({"both_empty": "best"}).both_empty
        'best'
    """
    if empty is None:
        return EmptyPolicy()
    if isinstance(empty, EmptyPolicy):
        return empty
    if isinstance(empty, Mapping):
        unknown = set(empty) - {"both_empty", "one_empty"}
        if unknown:
            raise MetricInputError(
                f"empty policy has unknown keys {sorted(unknown)} (fix: use both_empty, one_empty)"
            )
        return EmptyPolicy(**empty)  # type: ignore[arg-type]
    raise MetricInputError(
        f"empty policy {empty!r} is not an EmptyPolicy or a mapping (fix: "
        "EmptyPolicy(both_empty='nan', one_empty='inf'))"
    )


def resolve_labels(
    labels: int | Sequence[int] | None, present: Sequence[int], *, name: str = "labels"
) -> tuple[int, ...]:
    """Labels to score: the given ones, or every label present except background 0.

    Example:
        >>> resolve_labels(None, [0, 2, 1]), resolve_labels(3, [0, 1])
        ((1, 2), (3,))
    """
    if labels is None:
        return tuple(sorted(int(v) for v in present if int(v) != 0))
    if isinstance(labels, (int, np.integer)):
        labels = [int(labels)]
    out: list[int] = []
    for v in labels:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise MetricInputError(f"{name} contains {v!r}; labels must be integers >= 0")
        if int(v) < 0:
            raise MetricInputError(f"{name} contains {v}; labels must be integers >= 0")
        if int(v) not in out:
            out.append(int(v))
    return tuple(sorted(out))
