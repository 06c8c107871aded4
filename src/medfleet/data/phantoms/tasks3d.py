"""The 3D phantom tasks: anisotropic volumes, slice axis first, written as NIfTI.

Arrays are ``(slices, rows, cols)``; points and boxes are written as
``x, y, z`` = (column, row, slice) in voxel units, voxel centres at integers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medfleet.data.phantoms.cases import (
    CaseContext,
    CaseOutput,
    PhantomTask,
    paint,
    place_center,
    rounded,
    uniform,
)
from medfleet.data.phantoms.shapes import (
    convex_polytope_mask,
    ellipsoid_mask,
    grid3d,
    radial_blob3d,
    radial_extent3d,
    random_rotation3d,
    random_unit_vectors,
)
from medfleet.data.phantoms.tasks2d import (
    CLASSES,
    DETECTION_CLASSES,
    add_detection_blob,
    detection_case,
    draw_class,
    lesion_class_case,
    organ_lesion_case,
)
from medfleet.tables import format_landmarks
from medfleet.tasks import TaskSpec

TETRA_LANDMARKS: tuple[str, ...] = ("apex", "base_top", "base_left", "base_right")
"""Vertices of the 3D landmark phantom: apex towards higher slices; base by image direction."""

VERTEX_BALL_MM = 3.5
"""Radius of the bright ball marking each vertex of the 3D landmark phantom."""


def _grid(ctx: CaseContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return grid3d(ctx.shape, ctx.spacing)  # type: ignore[arg-type]


def _half_extent(
    axes: tuple[float, ...], rotation: np.ndarray, bulge: float = 1.0
) -> tuple[float, ...]:
    """Exact half-extent per array axis of a rotated ellipsoid, times ``bulge``."""
    r = np.asarray(rotation) * np.asarray(axes)[None, :]
    return tuple(float(v) * bulge for v in np.sqrt((r * r).sum(axis=1)))


def _to_voxels_xyz(ctx: CaseContext, points_zyx_mm: np.ndarray) -> np.ndarray:
    """(n, 3) points z, y, x in mm -> x, y, z in voxel units."""
    pts = np.asarray(points_zyx_mm, dtype=np.float64) / np.asarray(ctx.spacing)
    return pts[:, ::-1]


def organ_lesion3d(ctx: CaseContext) -> CaseOutput:
    """A lobulated ellipsoid organ (label 1) with a darker ellipsoid lesion inside (label 2).

    ``organ_volume_ml`` (organ including its lesion) and ``lesion_volume_ml`` are voxel counts.
    """
    s, rng = ctx.subject_rng, ctx.rng
    a = uniform(s, 10.0, 14.0)
    axes = (uniform(s, 12.0, 18.0), a * uniform(s, 0.75, 0.9), a)  # z, y, x
    lobes = [(tuple(d), uniform(s, 0.0, 0.05), 2) for d in random_unit_vectors(s, 2)]
    lesion_r = uniform(s, 3.5, 6.0)
    rotation = random_rotation3d(rng, math.radians(20))
    center = place_center(ctx, _half_extent(axes, rotation, radial_extent3d(lobes)), spread=0.5)
    grid = _grid(ctx)
    organ = radial_blob3d(grid, center, axes, rotation, lobes)
    # Keep the lesion one voxel inside the organ in-plane (slices are too thick for a margin in z).
    inplane = np.zeros((3, 3, 3), dtype=bool)
    inplane[1] = ndimage.generate_binary_structure(2, 1)
    inner = ndimage.binary_erosion(organ, structure=inplane)
    for _attempt in range(200):
        offset = rotation @ (
            np.asarray(axes) * random_unit_vectors(rng, 1)[0] * uniform(rng, 0.0, 0.5)
        )
        lesion = ellipsoid_mask(grid, np.asarray(center) + offset, (lesion_r,) * 3)
        if lesion.any() and not (lesion & ~inner).any():
            break
    else:  # pragma: no cover - the sampling ranges make this practically impossible
        raise ctx.fail("could not place the lesion inside the organ")
    voxel_ml = float(np.prod(ctx.spacing)) / 1000.0
    return organ_lesion_case(
        ctx,
        organ,
        lesion,
        {
            "organ_volume_ml": rounded(organ.sum() * voxel_ml),
            "lesion_volume_ml": rounded(lesion.sum() * voxel_ml),
        },
    )


def lesion_classification3d(ctx: CaseContext) -> CaseOutput:
    """Benign = smooth ellipsoid; malignant = lobulated with thin spicules; normal = no lesion."""
    label = draw_class(ctx)
    s, rng = ctx.subject_rng, ctx.rng
    image = ctx.background()
    if label == "normal":
        return lesion_class_case(image, label, np.zeros(ctx.shape, bool), 0.0)
    if label == "benign":
        r0 = uniform(s, 5.0, 8.0)
        axes = (r0 * uniform(s, 0.6, 0.85), r0 * uniform(s, 0.6, 0.85), r0)
        lobes: list[tuple[tuple[float, ...], float, int]] = []
        spikes: list[tuple[tuple[float, ...], float, float]] = []
    else:
        r0 = uniform(s, 4.5, 7.0)
        axes = (r0 * uniform(s, 0.85, 1.0), r0 * uniform(s, 0.85, 1.0), r0)
        lobes = [
            (tuple(d), uniform(s, 0.05, 0.1), int(s.integers(3, 6)))
            for d in random_unit_vectors(s, 2)
        ]
        n_spikes = int(s.integers(10, 19))
        spikes = [
            (tuple(d), uniform(s, 0.4, 0.8), uniform(s, 0.01, 0.025))
            for d in random_unit_vectors(s, n_spikes)
        ]
    rotation = random_rotation3d(rng)
    center = place_center(ctx, (max(axes) * radial_extent3d(lobes, spikes),) * 3, spread=0.6)
    lesion = radial_blob3d(_grid(ctx), center, axes, rotation, lobes, spikes)
    paint(image, lesion, -0.22 * ctx.contrast)
    return lesion_class_case(image, label, lesion, rounded(2 * r0, 2))


def nodule_detection3d(ctx: CaseContext) -> CaseOutput:
    """1-3 non-touching ellipsoids (bright nodule, dark cyst) with tight 6-number boxes."""
    rng = ctx.rng
    grid = _grid(ctx)
    n = int(rng.integers(1, 4))
    instances = np.zeros(ctx.shape, dtype=np.uint8)
    placed: list[tuple[np.ndarray, float]] = []
    labels: list[str] = []
    image = ctx.background()
    gap = 2.0 + 1.5 * max(ctx.spacing)  # blobs never touch, not even diagonally
    for _ in range(n):
        for _attempt in range(200):
            a = uniform(rng, 3.0, 6.0)
            center = np.asarray(place_center(ctx, a, margin_mm=1.5))
            axes = (a * uniform(rng, 0.7, 1.0), a * uniform(rng, 0.7, 1.0), a)
            blob = ellipsoid_mask(grid, center, axes, random_rotation3d(rng))
            far = all(np.linalg.norm(center - c) > a + r + gap for c, r in placed)
            if far and blob.any():
                break
        else:  # pragma: no cover - three small blobs always fit
            raise ctx.fail("could not place non-overlapping blobs that cover a voxel")
        placed.append((center, a))
        add_detection_blob(ctx, image, instances, labels, blob)
    return detection_case(image, instances, labels)


def lesion_volume(ctx: CaseContext) -> CaseOutput:
    """A bright ellipsoid lesion; ``value`` is its exact volume ``4/3 pi a b c`` in ml."""
    s, rng = ctx.subject_rng, ctx.rng
    base = np.array([uniform(s, 6.0, 12.0) for _ in range(3)])
    axes = tuple(float(v) for v in base * uniform(rng, 0.97, 1.03))
    rotation = random_rotation3d(rng)
    center = place_center(ctx, _half_extent(axes, rotation), spread=0.7)
    lesion = ellipsoid_mask(_grid(ctx), center, axes, rotation)
    image = ctx.background()
    paint(image, lesion, 0.30 * ctx.contrast)
    volume_ml = 4.0 / 3.0 * math.pi * axes[0] * axes[1] * axes[2] / 1000.0
    return CaseOutput(
        clean=image,
        masks={"lesion_mask": lesion.astype(np.uint8)},
        fields={
            "value": rounded(volume_ml, 5),
            "semi_axes_mm": ",".join(f"{v:.4f}" for v in sorted(axes)),
        },
    )


def tetra_landmarks(ctx: CaseContext) -> CaseOutput:
    """A tetrahedron with a bright ball at each vertex; the ball centres are the landmarks.

    The base triangle lies roughly in a slice plane with ``base_top`` towards the image
    top (smaller row), ``base_left`` and ``base_right`` towards the image left and right;
    the ``apex`` points towards higher slice indices. Rotation stays within 20 degrees.
    Truth: ``landmarks`` (x, y, z in voxel units) and ``structure_mask`` (1 = body,
    2 = vertex balls of radius :data:`VERTEX_BALL_MM`).
    """
    s, rng = ctx.subject_rng, ctx.rng
    rb, h = uniform(s, 11.0, 14.0), uniform(s, 20.0, 26.0)
    jitter = s.uniform(-1.0, 1.0, size=(4, 3))
    cos30 = math.cos(math.radians(30))
    # Local points (z, y, x) in mm: apex, base_top, base_left, base_right.
    local = (
        np.array(
            [
                [2 * h / 3, 0.0, 0.0],
                [-h / 3, -rb, 0.0],
                [-h / 3, rb / 2, -rb * cos30],
                [-h / 3, rb / 2, rb * cos30],
            ]
        )
        + jitter
    )
    rotation = random_rotation3d(rng, math.radians(20))
    rotated = local @ rotation.T
    radius = tuple(float(v) + VERTEX_BALL_MM for v in np.abs(rotated).max(axis=0))
    center = np.asarray(place_center(ctx, radius, margin_mm=2.0, spread=0.7))
    vertices = rotated + center
    grid = _grid(ctx)
    body = convex_polytope_mask(grid, vertices)
    balls = np.zeros(ctx.shape, dtype=bool)
    for vertex in vertices:
        balls |= ellipsoid_mask(grid, vertex, (VERTEX_BALL_MM,) * 3)
    image = ctx.background()
    paint(image, body, 0.25 * ctx.contrast)
    paint(image, balls & ~body, 0.40 * ctx.contrast)
    paint(image, balls & body, 0.15 * ctx.contrast)
    structure = body.astype(np.uint8)
    structure[balls] = 2
    return CaseOutput(
        clean=image,
        masks={"structure_mask": structure},
        fields={"landmarks": format_landmarks(np.round(_to_voxels_xyz(ctx, vertices), 4))},
    )


def tasks_3d() -> list[PhantomTask]:
    """The 3D tasks, in manifest order."""
    fov = (72.0, 51.2, 51.2)
    return [
        PhantomTask(
            spec=TaskSpec(
                name="organ_lesion_seg3d",
                type="segmentation",
                table="organ_lesion_seg3d.csv",
                organ="kidney",
                group="abdomen",
                modality="MR",
                dim=3,
                labels={0: "background", 1: "organ", 2: "lesion"},
                description="Lobulated ellipsoid organ with a darker lesion inside; mask is the "
                "truth, mask_raterK are simulated annotators.",
            ),
            short="seg3d",
            fov_mm=fov,
            generate=organ_lesion3d,
            raters=True,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="lesion_cls3d",
                type="classification",
                table="lesion_cls3d.csv",
                organ="lung",
                group="chest",
                modality="MR",
                dim=3,
                classes=list(CLASSES),
                description="benign: smooth ellipsoid; malignant: lobulated with spicules; "
                "normal: no lesion.",
            ),
            short="cls3d",
            fov_mm=fov,
            generate=lesion_classification3d,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="nodule_det3d",
                type="detection",
                table="nodule_det3d.csv",
                organ="thyroid",
                group="thyroid",
                modality="MR",
                dim=3,
                classes=list(DETECTION_CLASSES),
                description="1-3 ellipsoids (bright nodule, dark cyst); boxes x0,y0,z0,x1,y1,z1 "
                "are tight voxel-edge boxes; instance_mask value k is the k-th box's blob.",
            ),
            short="det3d",
            fov_mm=fov,
            generate=nodule_detection3d,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="lesion_volume",
                type="regression",
                table="lesion_volume.csv",
                organ="liver",
                group="abdomen",
                modality="MR",
                dim=3,
                unit="ml",
                target="lesion volume",
                description="Exact ellipsoid volume 4/3*pi*a*b*c in ml; lesion_mask is the "
                "voxelised lesion.",
            ),
            short="vol",
            fov_mm=fov,
            generate=lesion_volume,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="tetra_landmarks",
                type="landmarks",
                table="tetra_landmarks.csv",
                organ="phantom",
                group="landmarks",
                modality="MR",
                dim=3,
                landmarks=list(TETRA_LANDMARKS),
                description="Vertices of a tetrahedron, each marked by a bright ball, x,y,z in "
                "voxel units (apex towards higher slices); structure_mask: 1 body, 2 balls.",
            ),
            short="lmk3d",
            fov_mm=fov,
            generate=tetra_landmarks,
        ),
    ]
