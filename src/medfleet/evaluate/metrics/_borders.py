"""Bounding boxes of labels, border voxels and corner-grid surface elements.

Internal helpers of :mod:`medfleet.evaluate.metrics.surface`. Every function works on
cropped, zero-padded boolean masks so that the cost follows the size of the
structure, not the size of the image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import ndimage

from medfleet.evaluate.metrics._surfel_normals import NORMALS_X8

Box = tuple[slice, ...]

#: Up to this many labels, boxes come from one equality test and axis projections
#: per label; above it, from a single ``scipy.ndimage.find_objects`` pass.
PROJECTION_MAX_LABELS = 4
#: ``find_objects`` keeps one entry per label value up to the largest; above this, per label.
FIND_OBJECTS_MAX_LABEL = 1 << 16


def mask_box(mask: np.ndarray) -> Box | None:
    """Tight bounding box of the ``True`` voxels of ``mask`` (``None`` when it is empty).

    Example:
        >>> m = np.zeros((4, 5), bool); m[1, 2] = m[2, 3] = True
        >>> mask_box(m)
        (slice(1, 3, None), slice(2, 4, None))
    """
    if mask.ndim == 2:
        rows = mask.any(axis=1)
        if not rows.any():
            return None
        i0, i1 = _span(rows)
        j0, j1 = _span(mask[i0:i1].any(axis=0))
        return (slice(i0, i1), slice(j0, j1))
    if mask.ndim != 3:
        raise ValueError(f"bounding boxes are computed for 2D or 3D masks, got {mask.ndim}D")
    # Reduce the last axis once, derive the first two axes from that projection,
    # then reduce the last axis only inside their span.
    proj = mask.any(axis=2)
    first = proj.any(axis=1)
    if not first.any():
        return None
    i0, i1 = _span(first)
    j0, j1 = _span(proj[i0:i1].any(axis=0))
    k0, k1 = _span(mask[i0:i1, j0:j1].any(axis=(0, 1)))
    return (slice(i0, i1), slice(j0, j1), slice(k0, k1))


def _span(flags: np.ndarray) -> tuple[int, int]:
    idx = np.flatnonzero(flags)
    return int(idx[0]), int(idx[-1]) + 1


def label_boxes(volume: np.ndarray, labels: Sequence[int]) -> dict[int, Box | None]:
    """Bounding box of each label of ``volume`` (``None`` for labels that are absent).

    Few labels: one equality test and axis projections per label. Many labels:
    one ``scipy.ndimage.find_objects`` pass over the whole label map.

    Example:
        >>> v = np.zeros((3, 3), np.uint8); v[0, 1] = 2
        >>> label_boxes(v, [1, 2])
        {1: None, 2: (slice(0, 1, None), slice(1, 2, None))}
    """
    boxes: dict[int, Box | None] = {}
    if volume.dtype == bool:
        for label in labels:
            if label == 1:
                boxes[label] = mask_box(volume)
            elif label == 0:
                boxes[label] = mask_box(~volume)
            else:
                boxes[label] = None
        return boxes
    positive = [lab for lab in labels if lab > 0]
    if len(positive) > PROJECTION_MAX_LABELS and max(positive) <= FIND_OBJECTS_MAX_LABEL:
        max_label = max(positive)
        found = ndimage.find_objects(volume, max_label=max_label)
        for label in positive:
            box = found[label - 1]
            boxes[label] = None if box is None else tuple(box)
    else:
        for label in positive:
            boxes[label] = mask_box(volume == label)
    for label in labels:
        if label == 0:
            boxes[label] = mask_box(volume == 0)
    return boxes


def union_box(a: Box | None, b: Box | None) -> Box | None:
    """Smallest box containing both boxes (either may be ``None``).

    Example:
        >>> union_box((slice(0, 2), slice(3, 4)), (slice(1, 5), slice(0, 1)))
        (slice(0, 5, None), slice(0, 4, None))
    """
    if a is None:
        return b
    if b is None:
        return a
    return tuple(
        slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True)
    )


def padded_crop(volume: np.ndarray, box: Box, label: int) -> np.ndarray:
    """``volume[box] == label`` with a one-voxel ``False`` frame on every side.

    Example:
        >>> padded_crop(np.ones((2, 2), np.uint8), (slice(0, 2), slice(0, 1)), 1).astype(int)
        array([[0, 0, 0],
               [0, 1, 0],
               [0, 1, 0],
               [0, 0, 0]])
    """
    sub = volume[box]
    out = np.zeros(tuple(n + 2 for n in sub.shape), dtype=bool)
    inner = tuple(slice(1, n + 1) for n in sub.shape)
    if volume.dtype == bool and label == 1:
        out[inner] = sub
    else:
        np.equal(sub, label, out=out[inner])
    return out


def _offsets(ndim: int, rank: int) -> list[tuple[int, ...]]:
    return [
        off
        for off in itertools.product((-1, 0, 1), repeat=ndim)
        if 0 < sum(abs(o) for o in off) <= rank
    ]


def border_voxels(padded: np.ndarray, rank: int) -> np.ndarray:
    """Border voxels ``mask & ~erode(mask)`` of a zero-padded mask, cropped back to the mask.

    The structuring element is ``scipy.ndimage.generate_binary_structure(ndim, rank)``
    and everything outside the mask counts as background (scipy's
    ``border_value=0``), so voxels on the image edge are border voxels.

    Args:
        padded: Boolean mask with a one-voxel ``False`` frame.
        rank: 1 (faces), 2 (faces and edges) or 3 (all neighbours).

    Returns:
        Boolean array of the unpadded shape.

    Example:
        >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
        >>> border_voxels(m, 1).astype(int)
        array([[1, 1, 1],
               [1, 0, 1],
               [1, 1, 1]])
    """
    ndim = padded.ndim
    inner = tuple(slice(1, n - 1) for n in padded.shape)
    core = padded[inner]
    if rank == ndim:
        # The full structuring element is separable: erode along one axis at a time.
        eroded = padded
        for axis in range(ndim):
            n = eroded.shape[axis]
            lo = [slice(None)] * ndim
            mid = [slice(None)] * ndim
            hi = [slice(None)] * ndim
            lo[axis], mid[axis], hi[axis] = slice(0, n - 2), slice(1, n - 1), slice(2, n)
            eroded = eroded[tuple(lo)] & eroded[tuple(mid)] & eroded[tuple(hi)]
        interior = eroded
    else:
        interior = core.copy()
        for off in _offsets(ndim, rank):
            sl = tuple(slice(1 + o, n - 1 + o) for o, n in zip(off, padded.shape, strict=True))
            interior &= padded[sl]
    return core & ~interior


def corner_codes(padded: np.ndarray) -> np.ndarray:
    """Neighbourhood code of every corner of the voxel grid of a zero-padded mask.

    Corner ``c`` (in crop coordinates, ``0..n``) sits between voxels ``c - 1`` and
    ``c`` on every axis; its code has one bit per voxel of the 2x2(x2) cell,
    weights ``128, 64, ..., 1`` (3D) or ``8, 4, 2, 1`` (2D) in C order.

    Example:
        >>> m = np.zeros((3, 3), bool); m[1, 1] = True
        >>> corner_codes(m).tolist()
        [[1, 2], [4, 8]]
    """
    # The code is separable: pair neighbours along the last axis (2 bits), then pair
    # those along the previous axis (4 bits), and so on. The first voxel of each pair
    # takes the higher bits, which gives weights 2**(2**ndim - 1 - C-order index).
    code = padded.view(np.uint8)
    for axis in reversed(range(padded.ndim)):
        n = code.shape[axis]
        lo = [slice(None)] * code.ndim
        hi = [slice(None)] * code.ndim
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        width = 2 ** (padded.ndim - 1 - axis)
        code = np.left_shift(code[tuple(lo)], width) | code[tuple(hi)]
    return code


def surface_elements(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners that carry surface (code neither empty nor full) and their codes.

    Returns:
        ``(mask, codes)``: boolean mask on the corner grid and the codes of the
        surface corners in C order.
    """
    code = corner_codes(padded)
    full = (1 << (2**padded.ndim)) - 1
    mask = (code != 0) & (code != full)
    return mask, code[mask]


@lru_cache(maxsize=64)
def surfel_area_table(spacing: tuple[float, ...]) -> np.ndarray:
    """Area (3D, mm^2) or length (2D, mm) of the surface in each neighbourhood code.

    3D: the sum of the triangle normals' lengths after scaling the normal
    components by ``(s1*s2, s0*s2, s0*s1)``. 2D: a single corner (or three)
    gives a half diagonal, two corners on one row the column spacing ``s1``,
    on one column the row spacing ``s0``, on a diagonal two half diagonals.

    Example:
        >>> surfel_area_table((1.0, 1.0))[[0b0011, 0b0101, 0b0110, 0b1111]].round(4).tolist()
        [1.0, 1.0, 1.4142, 0.0]
    """
    if len(spacing) == 3:
        s0, s1, s2 = spacing
        scale = np.array([s1 * s2, s0 * s2, s0 * s1], dtype=np.float64)
        table = np.zeros(256, dtype=np.float64)
        for code, normals in enumerate(NORMALS_X8):
            area = 0.0
            for normal in normals:
                area += float(np.linalg.norm(np.asarray(normal, dtype=np.float64) / 8.0 * scale))
            table[code] = area
        return table
    if len(spacing) == 2:
        s0, s1 = spacing
        half_diag = 0.5 * math.sqrt(s0**2 + s1**2)
        table = np.zeros(16, dtype=np.float64)
        for code in range(1, 15):
            corners = [(code >> (3 - i)) & 1 for i in range(4)]  # TL, TR, BL, BR
            n_in = sum(corners)
            if n_in in (1, 3):
                table[code] = half_diag
            elif corners[0] == corners[1]:  # both of one row inside: a segment along axis 1
                table[code] = s1
            elif corners[0] == corners[2]:  # both of one column inside: a segment along axis 0
                table[code] = s0
            else:  # diagonal pair: two half diagonals
                table[code] = 2 * half_diag
        return table
    raise ValueError(f"corner-area surfaces need 2D or 3D spacing, got {spacing}")
