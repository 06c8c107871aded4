"""Rasterising shapes on pixel grids: ellipses, blobs, spiculated lesions, polygons, polytopes.

Geometry is done in millimetres. A 2D grid is described by ``(X, Y)``: the x
(column) and y (row) coordinates in mm of every pixel centre, where the centre
of pixel ``(row=i, col=j)`` lies at ``(x, y) = (j * sx, i * sy)``. A 3D grid is
``(Z, Y, X)`` in array axis order. A pixel belongs to a shape when its centre
lies inside the shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medfleet.geometry import Ellipse


def grid2d(shape: tuple[int, int], spacing: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Broadcastable ``(X, Y)`` pixel-centre coordinates in mm of a ``(rows, cols)`` image.

    Args:
        shape: ``(rows, cols)``.
        spacing: ``(row spacing, column spacing)`` in mm.

    Example:
        >>> X, Y = grid2d((2, 3), (0.5, 0.5))
        >>> X.tolist(), Y.tolist()
        ([[0.0, 0.5, 1.0]], [[0.0], [0.5]])
    """
    rows, cols = shape
    sy, sx = spacing
    X = (np.arange(cols, dtype=np.float64) * sx)[None, :]
    Y = (np.arange(rows, dtype=np.float64) * sy)[:, None]
    return X, Y


def grid3d(
    shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable ``(Z, Y, X)`` voxel-centre coordinates (mm) of a ``(slices, rows, cols)`` grid.

    Example:
        >>> Z, Y, X = grid3d((2, 1, 1), (3.0, 1.0, 1.0))
        >>> Z.ravel().tolist()
        [0.0, 3.0]
    """
    return tuple(  # type: ignore[return-value]
        (np.arange(n, dtype=np.float64) * s).reshape([-1 if a == axis else 1 for a in range(3)])
        for axis, (n, s) in enumerate(zip(shape, spacing, strict=True))
    )


def ellipse_mask(
    X: np.ndarray,
    Y: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    angle: float = 0.0,
) -> np.ndarray:
    """Pixels whose centres lie inside a rotated ellipse (:class:`medfleet.geometry.Ellipse`).

    Args:
        X: Pixel x coordinates (mm).
        Y: Pixel y coordinates (mm).
        center: ``(cx, cy)`` in mm.
        axes: Semi-axes ``(a, b)`` in mm; ``a`` lies along ``angle``.
        angle: Direction of the ``a`` axis in radians, measured from +x towards +y.

    Example:
        >>> X, Y = grid2d((5, 5), (1.0, 1.0))
        >>> int(ellipse_mask(X, Y, (2, 2), (1.5, 1.5)).sum())
        9
    """
    return Ellipse(*center, *axes, angle).level(X, Y) <= 1.0


def radial_blob2d(
    X: np.ndarray,
    Y: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    angle: float,
    harmonics: Sequence[tuple[int, float, float]] = (),
    spikes: Sequence[tuple[float, float, float]] = (),
) -> np.ndarray:
    """An ellipse whose boundary radius is modulated: lobulated or spiculated lesions.

    In the ellipse's normalised frame a pixel at radius ``r`` and polar angle ``t``
    is inside when ``r <= 1 + sum(amp * cos(k * t + phase)) + sum(spike bumps)``,
    where a spike ``(t0, height, width)`` adds ``height * exp(-d**2 / (2 * width**2))``
    with ``d`` the wrapped angular distance to ``t0``.

    Args:
        X: Pixel x coordinates (mm).
        Y: Pixel y coordinates (mm).
        center: ``(cx, cy)`` in mm.
        axes: Semi-axes in mm.
        angle: Rotation of the first axis, radians.
        harmonics: ``(k, amplitude, phase)`` terms (relative to the radius).
        spikes: ``(angle, height, width)`` terms, angles in radians, height relative.

    Example:
        >>> X, Y = grid2d((21, 21), (1.0, 1.0))
        >>> smooth = radial_blob2d(X, Y, (10, 10), (5, 5), 0.0)
        >>> spiky = radial_blob2d(X, Y, (10, 10), (5, 5), 0.0, spikes=[(0.0, 0.8, 0.1)])
        >>> bool(spiky[10, 18]), bool(smooth[10, 18])
        (True, False)
    """
    u, v = Ellipse(*center, *axes, angle).to_local(X, Y)
    r = np.hypot(u, v)
    t = np.arctan2(v, u)
    limit = np.ones_like(r)
    for k, amp, phase in harmonics:
        limit = limit + amp * np.cos(k * t + phase)
    for t0, height, width in spikes:
        d = (t - t0 + math.pi) % (2 * math.pi) - math.pi
        limit = limit + height * np.exp(-0.5 * (d / width) ** 2)
    return r <= limit


def radial_extent(
    harmonics: Sequence[tuple[int, float, float]] = (),
    spikes: Sequence[tuple[float, float, float]] = (),
) -> float:
    """The largest relative radius of a :func:`radial_blob2d` (for fitting it inside an image).

    Evaluated on 3600 angles and raised by 1% to cover the sampling.

    Example:
        >>> round(radial_extent([(3, 0.1, 0.0)], [(0.0, 0.5, 0.1)]), 3)
        1.616
    """
    t = np.linspace(-math.pi, math.pi, 3600, endpoint=False)
    limit = np.ones_like(t)
    for k, amp, phase in harmonics:
        limit = limit + amp * np.cos(k * t + phase)
    for t0, height, width in spikes:
        d = (t - t0 + math.pi) % (2 * math.pi) - math.pi
        limit = limit + height * np.exp(-0.5 * (d / width) ** 2)
    return float(limit.max()) * 1.01


def convex_polygon_mask(X: np.ndarray, Y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie inside a convex polygon (``(n, 2)`` vertices x, y in mm, any order).

    Example:
        >>> X, Y = grid2d((4, 4), (1.0, 1.0))
        >>> square = np.array([[0.5, 0.5], [2.5, 0.5], [2.5, 2.5], [0.5, 2.5]])
        >>> int(convex_polygon_mask(X, Y, square).sum())
        4
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    centre = vertices.mean(axis=0)
    order = np.argsort(np.arctan2(vertices[:, 1] - centre[1], vertices[:, 0] - centre[0]))
    ordered = vertices[order]
    inside = np.ones(np.broadcast_shapes(X.shape, Y.shape), dtype=bool)
    for i in range(len(ordered)):
        p, q = ordered[i], ordered[(i + 1) % len(ordered)]
        # With vertices sorted by increasing angle the interior is on the left of p -> q.
        cross = (q[0] - p[0]) * (Y - p[1]) - (q[1] - p[1]) * (X - p[0])
        inside &= cross >= 0
    return inside


def segment_distance(
    X: np.ndarray, Y: np.ndarray, p: Sequence[float], q: Sequence[float]
) -> np.ndarray:
    """Distance (mm) of every pixel centre to the segment ``p``-``q`` (points as x, y in mm).

    Example:
        >>> X, Y = grid2d((1, 3), (1.0, 1.0))
        >>> segment_distance(X, Y, (0.0, 1.0), (2.0, 1.0)).tolist()
        [[1.0, 1.0, 1.0]]
    """
    px, py = p
    dx, dy = q[0] - px, q[1] - py
    length2 = dx * dx + dy * dy
    t = np.clip(((X - px) * dx + (Y - py) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    return np.hypot(X - (px + t * dx), Y - (py + t * dy))


def rotation_matrix3d(axis: Sequence[float], angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about ``axis`` (Rodrigues' formula).

    Example:
        >>> np.round(rotation_matrix3d([0, 0, 1], math.pi / 2) @ [1, 0, 0], 6).tolist()
        [0.0, 1.0, 0.0]
    """
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * (K @ K)


def random_rotation3d(rng: np.random.Generator, max_angle: float = math.pi) -> np.ndarray:
    """A rotation about a uniformly random axis by an angle uniform in ``[-max_angle, max_angle]``.

    Example:
        >>> R = random_rotation3d(np.random.default_rng(0))
        >>> bool(np.allclose(R @ R.T, np.eye(3)))
        True
    """
    axis = rng.standard_normal(3)
    while np.linalg.norm(axis) < 1e-6:  # pragma: no cover - probability zero
        axis = rng.standard_normal(3)
    return rotation_matrix3d(axis, float(rng.uniform(-max_angle, max_angle)))


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` directions uniform on the sphere, shape ``(n, 3)``."""
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ellipsoid_frame(
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: Sequence[float],
    axes: Sequence[float],
    rotation: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised ellipsoid coordinates: the ellipsoid is ``u0**2 + u1**2 + u2**2 <= 1``.

    Args:
        grid: ``(Z, Y, X)`` coordinates in mm.
        center: Centre in mm, array axis order ``(z, y, x)``.
        axes: Semi-axes in mm along the rotated frame's axes.
        rotation: ``3x3`` matrix whose columns are the ellipsoid's axes (in z, y, x).
    """
    d = [g - c for g, c in zip(grid, center, strict=True)]
    return tuple(  # type: ignore[return-value]
        (d[0] * rotation[0, k] + d[1] * rotation[1, k] + d[2] * rotation[2, k]) / axes[k]
        for k in range(3)
    )


def ellipsoid_mask(
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: Sequence[float],
    axes: Sequence[float],
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Voxels whose centres lie inside a rotated ellipsoid.

    Example:
        >>> g = grid3d((5, 5, 5), (1.0, 1.0, 1.0))
        >>> int(ellipsoid_mask(g, (2, 2, 2), (1.2, 1.2, 1.2)).sum())
        7
    """
    rotation = np.eye(3) if rotation is None else rotation
    u = ellipsoid_frame(grid, center, axes, rotation)
    return u[0] ** 2 + u[1] ** 2 + u[2] ** 2 <= 1.0


def radial_blob3d(
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: Sequence[float],
    axes: Sequence[float],
    rotation: np.ndarray,
    lobes: Sequence[tuple[Sequence[float], float, int]] = (),
    spikes: Sequence[tuple[Sequence[float], float, float]] = (),
) -> np.ndarray:
    """An ellipsoid with a modulated boundary radius: lobulated or spiculated 3D lesions.

    In the normalised frame a voxel at radius ``r`` and direction ``d`` is inside when
    ``r <= 1 + sum(amp * cos(k * acos(d . n))) + sum(h * exp(-(1 - d . n) / w))``.

    Args:
        grid: ``(Z, Y, X)`` coordinates in mm.
        center: Centre in mm (z, y, x).
        axes: Semi-axes in mm.
        rotation: ``3x3`` rotation (columns are the axes).
        lobes: ``(direction, amplitude, k)`` terms.
        spikes: ``(direction, height, width)`` terms; a width of 0.01 is a thin spicule.

    Example:
        >>> g = grid3d((21, 21, 21), (1.0, 1.0, 1.0))
        >>> spike = ((1, 0, 0), 0.8, 0.02)
        >>> m = radial_blob3d(g, (10, 10, 10), (5, 5, 5), np.eye(3), spikes=[spike])
        >>> bool(m[18, 10, 10]), bool(m[10, 18, 10])
        (True, False)
    """
    u = ellipsoid_frame(grid, center, axes, rotation)
    r = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
    safe = np.maximum(r, 1e-12)
    limit = np.ones_like(r)
    for direction, amp, k in lobes:
        n = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
        cos_angle = np.clip((u[0] * n[0] + u[1] * n[1] + u[2] * n[2]) / safe, -1.0, 1.0)
        limit = limit + amp * np.cos(k * np.arccos(cos_angle))
    for direction, height, width in spikes:
        n = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
        cos_angle = (u[0] * n[0] + u[1] * n[1] + u[2] * n[2]) / safe
        limit = limit + height * np.exp(-(1.0 - cos_angle) / width)
    return r <= limit


def radial_extent3d(
    lobes: Sequence[tuple[Sequence[float], float, int]] = (),
    spikes: Sequence[tuple[Sequence[float], float, float]] = (),
) -> float:
    """The largest relative radius of a :func:`radial_blob3d`.

    Evaluated on 20000 near-uniform directions (a Fibonacci sphere) and at every
    spike's own direction, then raised by 2% to cover the sampling.

    Example:
        >>> round(radial_extent3d(spikes=[((0, 0, 1), 0.5, 0.02)]), 3)
        1.53
    """
    n = 20000
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5**0.5) * i
    dirs = np.stack(
        [np.cos(polar), np.sin(polar) * np.sin(azimuth), np.sin(polar) * np.cos(azimuth)], axis=1
    )
    extra = [np.asarray(d, dtype=np.float64) / np.linalg.norm(d) for d, _, _ in spikes]
    if extra:
        dirs = np.concatenate([dirs, np.stack(extra)])
    limit = np.ones(len(dirs))
    for direction, amp, k in lobes:
        nrm = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
        limit = limit + amp * np.cos(k * np.arccos(np.clip(dirs @ nrm, -1.0, 1.0)))
    for direction, height, width in spikes:
        nrm = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
        limit = limit + height * np.exp(-(1.0 - dirs @ nrm) / width)
    return float(limit.max()) * 1.02


def convex_polytope_mask(grid: Sequence[np.ndarray], vertices: np.ndarray) -> np.ndarray:
    """Voxels inside the convex hull of a simplex (3D: 4 vertices, points in the grid's axis order).

    Example:
        >>> g = grid3d((3, 3, 3), (1.0, 1.0, 1.0))
        >>> tet = np.array([[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]], dtype=float)
        >>> int(convex_polytope_mask(g, tet).sum())
        10
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    ndim = vertices.shape[1]
    if vertices.shape[0] != ndim + 1:
        raise ValueError(f"a simplex in {ndim}D has {ndim + 1} vertices, got {vertices.shape[0]}")
    inside = np.ones(np.broadcast_shapes(*(g.shape for g in grid)), dtype=bool)
    for drop in range(ndim + 1):
        face = np.delete(vertices, drop, axis=0)
        opposite = vertices[drop]
        edges = face[1:] - face[0]
        # Normal of the hyperplane through the face: null space of its edge vectors.
        normal = np.linalg.svd(edges)[2][-1]
        if np.dot(normal, opposite - face[0]) < 0:
            normal = -normal
        value = sum(normal[k] * (grid[k] - face[0][k]) for k in range(ndim))
        inside &= value >= -1e-9
    return inside


def smooth_field(
    shape: tuple[int, ...], rng: np.random.Generator, sigma: float | Sequence[float]
) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to zero mean and unit standard deviation.

    Example:
        >>> f = smooth_field((64, 64), np.random.default_rng(0), 3.0)
        >>> round(float(f.std()), 6), abs(float(f.mean())) < 1e-9
        (1.0, True)
    """
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap", truncate=3.0)
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def bounding_box(mask: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Lowest and highest index of a non-empty mask along every axis (array axis order).

    Example:
        >>> m = np.zeros((4, 5), bool); m[1:3, 2:5] = True
        >>> bounding_box(m)
        ((1, 2), (2, 4))
    """
    if not mask.any():
        raise ValueError("bounding_box of an empty mask")
    lower, upper = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        lower.append(int(hit[0]))
        upper.append(int(hit[-1]))
    return tuple(lower), tuple(upper)
