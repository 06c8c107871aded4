"""The in-memory image returned by every medfleet reader: pixels, spacing and metadata."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class ImageData:
    """An image, volume or clip with its physical spacing.

    Attributes:
        array: Pixels in numpy axis order. Spatial axes come first; a trailing channel axis
            exists only for colour images (RGB gives ``(H, W, 3)``, grey gives ``(H, W)``).
        spacing: Millimetres per spatial array axis, in array-axis order (one value per
            spatial axis). Formats without a physical size use 1.0; for clips and stacks the
            first axis counts frames and its spacing is 1.0 unless the file says otherwise.
        meta: Format-specific details. Always holds ``"format"``, ``"path"``,
            ``"channel_axis"`` (``None`` or ``-1``), ``"spacing_source"`` and
            ``"warnings"`` (a list of strings); see each reader for the rest.

    Instances compare by identity (arrays make value equality ambiguous).

    Example:
        >>> import numpy as np
        >>> img = ImageData(np.zeros((4, 5, 3), np.uint8), (0.5, 0.5), {"channel_axis": -1})
        >>> img.ndim_spatial, img.spatial_shape, img.spacing
        (2, (4, 5), (0.5, 0.5))
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.array, np.ndarray):
            raise TypeError(f"ImageData.array must be a numpy array, not {type(self.array)}")
        channel_axis = self.meta.get("channel_axis")
        if channel_axis not in (None, -1):
            raise ValueError(f"meta['channel_axis'] must be None or -1, not {channel_axis!r}")
        spacing = tuple(float(s) for s in self.spacing)
        object.__setattr__(self, "spacing", spacing)
        if len(spacing) != self.ndim_spatial:
            raise ValueError(
                f"spacing {spacing} has {len(spacing)} values but the array of shape "
                f"{self.array.shape} has {self.ndim_spatial} spatial axes"
            )

    @property
    def ndim_spatial(self) -> int:
        """Number of spatial axes (all axes but a trailing colour channel axis)."""
        return self.array.ndim - (0 if self.meta.get("channel_axis") is None else 1)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes only."""
        return tuple(int(s) for s in self.array.shape[: self.ndim_spatial])


def check_spacing(values: Sequence[float] | np.ndarray, ndim: int) -> tuple[float, ...] | str:
    """Return ``values`` as a tuple of floats, or a sentence saying why they are unusable.

    Args:
        values: Candidate spacing, one value per spatial axis.
        ndim: Number of spatial axes it must cover.

    Returns:
        The spacing as floats when it has ``ndim`` finite positive values, else the reason.

    Example:
        >>> check_spacing([1, 2.5], 2)
        (1.0, 2.5)
        >>> check_spacing([1, 0], 2)
        'spacing values must be finite and > 0, got [1.0, 0.0]'
    """
    try:
        floats = [float(v) for v in np.asarray(values, dtype=float).reshape(-1)]
    except (TypeError, ValueError):
        return f"spacing must be a sequence of numbers, got {values!r}"
    if len(floats) != ndim:
        return f"spacing has {len(floats)} values but the image has {ndim} spatial axes"
    if not all(math.isfinite(v) and v > 0 for v in floats):
        return f"spacing values must be finite and > 0, got {floats}"
    return tuple(floats)
