"""Resize-and-pad geometry between an image's own grid and the model's square input.

An image of ``H x W`` pixels is scaled by one factor so its longer side becomes the model
size ``S``, placed at the top-left corner and padded at the bottom and right. Coordinates
follow :mod:`medfleet.tables`: landmarks are pixel-centre indices (a pixel's centre lies at
integer ``x, y``), box edges lie on pixel borders. With per-axis scales ``sx = W'/W`` and
``sy = H'/H`` (``W', H'`` the resized size):

* landmarks: ``x' = (x + 0.5) * sx - 0.5`` (centres stay centres);
* boxes: ``x' = x * sx`` (borders stay borders);
* masks: nearest neighbour with aligned pixel centres.

Every mapping has an exact inverse used to bring predictions back to the image's grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """How one image maps onto the model's input grid.

    Attributes:
        original: Spatial shape ``(H, W)`` of the image as read.
        resized: Shape ``(H', W')`` after scaling, before padding.
        size: Padded model input shape ``(S, S)``.

    Example:
        >>> g = Geometry.fit((50, 100), 32)
        >>> g.resized, g.size
        ((16, 32), (32, 32))
        >>> g.points_to_model(np.array([[99.0, 49.0]])).tolist()
        [[31.34, 15.34]]
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    size: tuple[int, int]

    @classmethod
    def fit(cls, shape: tuple[int, ...], size: int) -> Geometry:
        """Scale ``shape`` (``H, W``) so its longer side is ``size``; pad the rest.

        Example:
            >>> Geometry.fit((64, 48), 32).resized
            (32, 24)
        """
        h, w = int(shape[-2]), int(shape[-1])
        if h < 1 or w < 1:
            raise ValueError(f"image shape {shape} has an empty axis")
        factor = size / max(h, w)
        resized = (max(1, min(size, round(h * factor))), max(1, min(size, round(w * factor))))
        return cls((h, w), resized, (size, size))

    @property
    def scale(self) -> tuple[float, float]:
        """Per-axis scale ``(sy, sx)`` from the image grid to the model grid."""
        return (self.resized[0] / self.original[0], self.resized[1] / self.original[1])

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        """Map ``(n, 2)`` pixel-centre points ``x, y`` onto the model grid (NaN stays NaN)."""
        sy, sx = self.scale
        pts = np.asarray(points, dtype=np.float64)
        return (pts + 0.5) * np.array([sx, sy]) - 0.5

    def points_from_model(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`points_to_model`.

        Example:
            >>> g = Geometry.fit((50, 100), 32)
            >>> g.points_from_model(g.points_to_model(np.array([[3.0, 7.0]]))).round(9).tolist()
            [[3.0, 7.0]]
        """
        sy, sx = self.scale
        pts = np.asarray(points, dtype=np.float64)
        return (pts + 0.5) / np.array([sx, sy]) - 0.5

    def boxes_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(n, 4)`` boxes ``x0, y0, x1, y1`` (pixel borders) onto the model grid."""
        sy, sx = self.scale
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])

    def boxes_from_model(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """Inverse of :meth:`boxes_to_model`, clipped to the image by default.

        Example:
            >>> g = Geometry.fit((50, 100), 32)
            >>> g.boxes_from_model(np.array([[0.0, 0.0, 32.0, 32.0]])).tolist()
            [[0.0, 0.0, 100.0, 50.0]]
        """
        sy, sx = self.scale
        out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / np.array([sx, sy, sx, sy])
        if clip:
            h, w = self.original
            out = np.clip(out, 0.0, np.array([w, h, w, h], dtype=np.float64))
        return out

    def crop(self, array: np.ndarray) -> np.ndarray:
        """Drop the padding from a model-grid array whose last two axes are ``(S, S)``."""
        return array[..., : self.resized[0], : self.resized[1]]


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each target pixel for nearest-neighbour resizing with aligned centres.

    Example:
        >>> nearest_indices(4, 2).tolist(), nearest_indices(2, 4).tolist()
        ([1, 3], [0, 0, 1, 1])
    """
    centres = (np.arange(target) + 0.5) * (source / target)
    return np.clip(np.floor(centres).astype(np.int64), 0, source - 1)


def resize_nearest(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``array`` to ``shape`` by nearest neighbour (labels stay labels).

    Example:
        >>> resize_nearest(np.array([[1, 2], [3, 4]]), (4, 4))[1].tolist()
        [1, 1, 2, 2]
    """
    rows = nearest_indices(array.shape[-2], shape[0])
    cols = nearest_indices(array.shape[-1], shape[1])
    return array[..., rows[:, None], cols[None, :]]


@dataclass(frozen=True)
class VolumeGeometry:
    """How one volume ``(S, H, W)`` maps onto the model's ``(D, size, size)`` input.

    Each slice maps in-plane exactly as a 2D image (:class:`Geometry`: aspect-preserving
    resize, padding at the bottom and right). The slice axis is resampled to a fixed
    ``D = depth`` slices with aligned slice centres: linearly for images and
    probabilities, by nearest neighbour for masks. Resampling (rather than padding or
    cropping) keeps every slice in view whatever the volume's length, and mapping the
    model's output back with the same rule in reverse gives a prediction on the
    volume's own ``(S, H, W)`` grid, so its spacing and affine apply unchanged.

    Attributes:
        plane: In-plane geometry of every slice.
        slices: Slice count ``S`` of the volume as read.
        depth: Slice count ``D`` of the model input.

    Example:
        >>> g = VolumeGeometry.fit((12, 50, 100), 32, 16)
        >>> g.original, g.size, g.slice_indices()[:4].tolist()
        ((12, 50, 100), (16, 32, 32), [0, 1, 1, 2])
    """

    plane: Geometry
    slices: int
    depth: int

    @classmethod
    def fit(cls, shape: tuple[int, ...], size: int, depth: int) -> VolumeGeometry:
        """Geometry of a volume of ``shape`` (``S, H, W``) for ``depth`` slices of ``size``."""
        if len(shape) < 3 or int(shape[-3]) < 1:
            raise ValueError(f"volume shape {shape} has no slice axis")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        return cls(Geometry.fit(shape[-2:], size), int(shape[-3]), int(depth))

    @property
    def original(self) -> tuple[int, int, int]:
        """Shape ``(S, H, W)`` of the volume as read."""
        return (self.slices, *self.plane.original)

    @property
    def size(self) -> tuple[int, int, int]:
        """Model input shape ``(D, size, size)``."""
        return (self.depth, *self.plane.size)

    def slice_indices(self) -> np.ndarray:
        """Source slice of each model slice for nearest-neighbour resampling (masks)."""
        return nearest_indices(self.slices, self.depth)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """Drop the in-plane padding from an array whose last two axes are ``(size, size)``."""
        return self.plane.crop(array)
