"""The 2D phantom tasks: one generator per task, each with its truth definition.

Coordinates follow :mod:`medfleet.tables`: ``x`` is the column and ``y`` the
row, pixel centres at integers. Shapes are drawn in millimetres on the site's
pixel grid, so the same anatomy covers fewer pixels at a coarser site.
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
from medfleet.data.phantoms.config import normalised
from medfleet.data.phantoms.intrapartum import intrapartum_biometry
from medfleet.data.phantoms.shapes import (
    bounding_box,
    convex_polygon_mask,
    ellipse_mask,
    grid2d,
    radial_blob2d,
    radial_extent,
    segment_distance,
)
from medfleet.geometry import Ellipse, ellipse_perimeter
from medfleet.tables import Box, format_boxes, format_landmarks
from medfleet.tasks import TaskSpec

CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")
"""Classes of the lesion classification tasks (2D and 3D)."""

DETECTION_CLASSES: tuple[str, ...] = ("cyst", "nodule")
"""Box classes of the detection tasks: dark cysts and bright nodules."""

SPINE_LANDMARKS: tuple[str, ...] = (
    "superior_anterior",
    "superior_posterior",
    "inferior_posterior",
    "inferior_anterior",
)
"""Corners of the vertebral-body phantom; anterior is image left, superior is image top."""

BIOMETRY_POINTS: tuple[str, ...] = ("ps_superior", "ps_inferior", "head_tangent", "infrapubic_hit")
"""Points of the ``biometry_points`` column of the intrapartum task, in order."""


def _grid(ctx: CaseContext) -> tuple[np.ndarray, np.ndarray]:
    return grid2d(ctx.shape, ctx.spacing)  # type: ignore[arg-type]


def _center_xy(
    ctx: CaseContext, radius: float, margin: float = 2.0, spread: float = 1.0
) -> tuple[float, float]:
    cy, cx = place_center(ctx, radius, margin, spread)
    return cx, cy


def _to_pixels(ctx: CaseContext, points_xy_mm: np.ndarray) -> np.ndarray:
    """(n, 2) points x, y in mm -> x, y in pixels."""
    sy, sx = ctx.spacing
    return np.asarray(points_xy_mm, dtype=np.float64) / np.array([sx, sy])


# ---------------------------------------------------------------------------- organ + lesion


def organ_lesion(ctx: CaseContext) -> CaseOutput:
    """An organ (lobulated ellipse, label 1) with a darker lesion inside it (label 2).

    Truth: the label map ``mask``; raters are simulated from it. ``organ_area_mm2``
    (organ including its lesion) and ``lesion_area_mm2`` are pixel-count areas.
    """
    s, rng = ctx.subject_rng, ctx.rng
    a = uniform(s, 26.0, 34.0)
    b = a * uniform(s, 0.65, 0.85)
    harmonics = [(k, uniform(s, 0.0, 0.04), uniform(s, -math.pi, math.pi)) for k in (2, 3, 4)]
    lesion_r = uniform(s, 5.0, 9.0)
    lesion_aspect = uniform(s, 0.7, 1.0)
    base_angle = uniform(s, -0.6, 0.6)

    X, Y = _grid(ctx)
    scale = uniform(rng, 0.97, 1.03)
    angle = base_angle + uniform(rng, -0.15, 0.15)
    axes = (a * scale, b * scale)
    cx, cy = _center_xy(ctx, radial_extent(harmonics) * axes[0], spread=0.6)
    organ = radial_blob2d(X, Y, (cx, cy), axes, angle, harmonics)
    inner = ndimage.binary_erosion(organ, iterations=2)
    c, sn = math.cos(angle), math.sin(angle)
    for _attempt in range(200):
        rho, phi = uniform(rng, 0.0, 0.55), uniform(rng, -math.pi, math.pi)
        lu, lv = rho * axes[0] * math.cos(phi), rho * axes[1] * math.sin(phi)
        lesion = ellipse_mask(
            X,
            Y,
            (cx + lu * c - lv * sn, cy + lu * sn + lv * c),
            (lesion_r, lesion_r * lesion_aspect),
            uniform(rng, -math.pi, math.pi),
        )
        if lesion.any() and not (lesion & ~inner).any():
            break
    else:  # pragma: no cover - the sampling ranges make this practically impossible
        raise ctx.fail("could not place the lesion inside the organ")

    sy, sx = ctx.spacing
    return organ_lesion_case(
        ctx,
        organ,
        lesion,
        {
            "organ_area_mm2": rounded(organ.sum() * sx * sy, 2),
            "lesion_area_mm2": rounded(lesion.sum() * sx * sy, 2),
        },
    )


def organ_lesion_case(
    ctx: CaseContext, organ: np.ndarray, lesion: np.ndarray, fields: dict[str, object]
) -> CaseOutput:
    """Paint an organ and its darker lesion on a fresh background (2D and 3D).

    The label map (1 = organ, 2 = lesion) is both the rater truth and the ``mask``.
    """
    image = ctx.background()
    paint(image, organ, 0.22 * ctx.contrast)
    paint(image, lesion, -0.28 * ctx.contrast)
    truth = np.zeros(ctx.shape, dtype=np.uint8)
    truth[organ] = 1
    truth[lesion] = 2
    return CaseOutput(clean=image, truth=truth, masks={"mask": truth}, fields=fields)


# ---------------------------------------------------------------------------- classification


def draw_class(ctx: CaseContext) -> str:
    """The subject's lesion class (site class weights override the config's)."""
    weights = (
        ctx.site.class_weights if ctx.site.class_weights is not None else ctx.config.class_weights
    )
    return CLASSES[int(ctx.subject_rng.choice(len(CLASSES), p=normalised(weights)))]


def lesion_classification(ctx: CaseContext) -> CaseOutput:
    """Benign = smooth oval, wider than tall; malignant = irregular, spiculated; normal = no lesion.

    Truth: ``label``; the class is visible in the lesion's outline. ``lesion_mask`` is the
    lesion (empty for normal cases), for checks and for segmentation-guided models.
    """
    label = draw_class(ctx)
    s, rng = ctx.subject_rng, ctx.rng
    image = ctx.background()
    if label == "normal":
        return lesion_class_case(image, label, np.zeros(ctx.shape, bool), 0.0)
    X, Y = _grid(ctx)
    if label == "benign":
        r0 = uniform(s, 4.5, 9.0)
        axes = (r0, r0 * uniform(s, 0.55, 0.8))
        angle = uniform(rng, -0.3, 0.3)
        harmonics = [(k, uniform(s, 0.0, 0.02), uniform(s, -math.pi, math.pi)) for k in (2, 3)]
        spikes: list[tuple[float, float, float]] = []
    else:
        r0 = uniform(s, 4.0, 7.5)
        axes = (r0, r0 * uniform(s, 0.8, 1.0))
        angle = uniform(rng, -math.pi, math.pi)
        harmonics = [(k, uniform(s, 0.05, 0.1), uniform(s, -math.pi, math.pi)) for k in (5, 7)]
        n_spikes = int(s.integers(7, 13))
        spikes = [
            (uniform(s, -math.pi, math.pi), uniform(s, 0.35, 0.8), uniform(s, 0.05, 0.09))
            for _ in range(n_spikes)
        ]
    extent = radial_extent(harmonics, spikes) * axes[0]
    cx, cy = _center_xy(ctx, extent, spread=0.7)
    lesion = radial_blob2d(X, Y, (cx, cy), axes, angle, harmonics, spikes)
    paint(image, lesion, -0.26 * ctx.contrast)
    return lesion_class_case(image, label, lesion, rounded(2 * r0, 2))


def lesion_class_case(
    image: np.ndarray, label: str, lesion: np.ndarray, size_mm: float
) -> CaseOutput:
    """The output of a lesion classification case (2D and 3D); ``lesion`` is empty if normal."""
    return CaseOutput(
        clean=image,
        masks={"lesion_mask": lesion.astype(np.uint8)},
        fields={"label": label, "lesion_size_mm": size_mm},
    )


# ---------------------------------------------------------------------------- detection


def detection_boxes(instances: np.ndarray, labels: list[str]) -> list[Box]:
    """Tight boxes of instances ``1..n`` of an instance map: pixel edges around each blob.

    Box edges lie on pixel borders (the :mod:`medfleet.tables` convention):
    ``x0 = min column``, ``x1 = max column + 1`` (and the same for rows and slices),
    so the box area equals the pixel count of the blob's bounding rectangle.

    Example:
        >>> inst = np.zeros((5, 6), np.uint8); inst[1:3, 2:5] = 1
        >>> detection_boxes(inst, ["nodule"])
        [Box(coords=(2.0, 1.0, 5.0, 3.0), label='nodule', score=None)]
    """
    boxes = []
    for k, label in enumerate(labels, start=1):
        lower, upper = bounding_box(instances == k)
        xyz_lower = [float(v) for v in reversed(lower)]
        xyz_upper = [float(v) + 1.0 for v in reversed(upper)]
        boxes.append(Box(coords=tuple(float(v) for v in (*xyz_lower, *xyz_upper)), label=label))
    return boxes


def nodule_detection(ctx: CaseContext) -> CaseOutput:
    """1-3 non-touching blobs: bright ``nodule`` or dark ``cyst``, with exact tight boxes.

    Truth: ``boxes`` (``class:x0,y0,x1,y1``, pixel edges) and the ``instance_mask``
    whose value ``k`` is the blob of the ``k``-th box.
    """
    rng = ctx.rng
    X, Y = _grid(ctx)
    n = int(rng.integers(1, 4))
    instances = np.zeros(ctx.shape, dtype=np.uint8)
    placed: list[tuple[float, float, float]] = []
    labels: list[str] = []
    image = ctx.background()
    gap = 2.0 + 1.5 * max(ctx.spacing)  # blobs never touch, not even diagonally
    for _ in range(n):
        for _attempt in range(200):
            a = uniform(rng, 3.0, 7.0)
            axes = (a, a * uniform(rng, 0.7, 1.0))
            cx, cy = _center_xy(ctx, a, margin=1.5)
            blob = ellipse_mask(X, Y, (cx, cy), axes, uniform(rng, -math.pi, math.pi))
            far = all(math.hypot(cx - px, cy - py) > a + pr + gap for px, py, pr in placed)
            if far and blob.any():
                break
        else:  # pragma: no cover - three small blobs always fit
            raise ctx.fail("could not place non-overlapping blobs that cover a pixel")
        placed.append((cx, cy, a))
        add_detection_blob(ctx, image, instances, labels, blob)
    return detection_case(image, instances, labels)


def add_detection_blob(
    ctx: CaseContext, image: np.ndarray, instances: np.ndarray, labels: list[str], blob: np.ndarray
) -> None:
    """Number ``blob`` as the next instance, draw its class into ``labels`` and paint it."""
    instances[blob] = len(labels) + 1
    label = DETECTION_CLASSES[int(ctx.rng.integers(2))]
    labels.append(label)
    paint(image, blob, (0.30 if label == "nodule" else -0.22) * ctx.contrast)


def detection_case(image: np.ndarray, instances: np.ndarray, labels: list[str]) -> CaseOutput:
    """The output of a detection case (2D and 3D): instance map, tight boxes and their count."""
    return CaseOutput(
        clean=image,
        masks={"instance_mask": instances},
        fields={
            "boxes": format_boxes(detection_boxes(instances, labels)),
            "n_objects": len(labels),
        },
    )


# ---------------------------------------------------------------------------- head circumference


def head_circumference(ctx: CaseContext) -> CaseOutput:
    """A fetal-head-like ellipse with a bright skull ring and midline echo.

    Truth: ``value`` = circumference in mm of the head ellipse (the outer skull
    contour) by Ramanujan's second formula on the true semi-axes in mm;
    ``head_mask`` = the filled ellipse.
    """
    s, rng = ctx.subject_rng, ctx.rng
    a0 = uniform(s, 30.0, 48.0)
    ratio = uniform(s, 0.78, 0.9)
    thickness = uniform(s, 2.5, 4.0)
    a = a0 * uniform(rng, 0.98, 1.02)
    b = a * ratio
    angle = uniform(rng, -math.pi / 2, math.pi / 2)
    cx, cy = _center_xy(ctx, a, margin=3.0, spread=0.8)
    X, Y = _grid(ctx)
    head = ellipse_mask(X, Y, (cx, cy), (a, b), angle)
    brain = ellipse_mask(X, Y, (cx, cy), (a - thickness, b - thickness), angle)
    image = ctx.background()
    paint(image, head & ~brain, 0.45 * ctx.contrast)
    paint(image, brain, -0.08 * ctx.contrast)
    half = 0.8 * (a - thickness)
    c, sn = math.cos(angle), math.sin(angle)
    falx = segment_distance(X, Y, (cx - half * c, cy - half * sn), (cx + half * c, cy + half * sn))
    image += 0.25 * ctx.contrast * np.exp(-0.5 * (falx / 0.6) ** 2) * brain
    sy, sx = ctx.spacing
    return CaseOutput(
        clean=image,
        masks={"head_mask": head.astype(np.uint8)},
        fields={
            "value": rounded(ellipse_perimeter(a, b), 4),
            "semi_major_mm": rounded(a),
            "semi_minor_mm": rounded(b),
            "center_x": rounded(cx / sx),
            "center_y": rounded(cy / sy),
            "angle_deg": rounded(math.degrees(angle)),
        },
    )


# ---------------------------------------------------------------------------- landmarks


def spine_landmarks(ctx: CaseContext) -> CaseOutput:
    """A vertebral-body-like bright quadrilateral; its 4 corners are the landmarks.

    Truth: ``landmarks`` = the exact corners (x, y in pixels) in the order of
    :data:`SPINE_LANDMARKS`; ``structure_mask`` = the filled quadrilateral.
    Rotation stays within +-25 degrees, so anterior is always left and superior up.
    """
    s, rng = ctx.subject_rng, ctx.rng
    w, h = uniform(s, 18.0, 26.0), uniform(s, 13.0, 19.0)
    jitter = s.uniform(-1.5, 1.5, size=(4, 2))
    base_angle = uniform(s, -0.25, 0.25)
    scale = uniform(rng, 0.97, 1.03)
    angle = float(
        np.clip(base_angle + uniform(rng, -0.15, 0.15), -math.radians(25), math.radians(25))
    )
    local = (
        np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]) + jitter
    ) * scale
    radius = float(np.max(np.hypot(local[:, 0], local[:, 1])))
    cx, cy = _center_xy(ctx, radius, margin=3.0, spread=0.8)
    c, sn = math.cos(angle), math.sin(angle)
    corners = np.stack(
        [cx + local[:, 0] * c - local[:, 1] * sn, cy + local[:, 0] * sn + local[:, 1] * c], axis=1
    )
    X, Y = _grid(ctx)
    body = convex_polygon_mask(X, Y, corners)
    rim = body & ~ndimage.binary_erosion(body, iterations=2)
    image = ctx.background()
    paint(image, body, 0.25 * ctx.contrast)
    paint(image, rim, 0.2 * ctx.contrast)
    return CaseOutput(
        clean=image,
        masks={"structure_mask": body.astype(np.uint8)},
        fields={"landmarks": format_landmarks(np.round(_to_pixels(ctx, corners), 4))},
    )


# ---------------------------------------------------------------------------- intrapartum


def intrapartum(ctx: CaseContext) -> CaseOutput:
    """Pubic symphysis (label 1, small elongated ellipse) and fetal head (label 2, large ellipse).

    Truth: ``mask``; ``aop_deg`` and ``hsd_mm`` computed analytically from the two
    ellipses (see :mod:`medfleet.data.phantoms.intrapartum` for the definitions);
    ``biometry_points`` = S, I, T and the infrapubic hit point (x, y in pixels).
    The head may extend beyond the image; the points never do.
    """
    s, rng = ctx.subject_rng, ctx.rng
    head_a = uniform(s, 34.0, 44.0)
    head_b = head_a * uniform(s, 0.82, 0.95)
    ps_a, ps_b = uniform(s, 15.0, 20.0), uniform(s, 5.5, 7.5)
    height, width = ctx.extent_mm
    margin = 2.0
    for _attempt in range(500):
        alpha = math.radians(uniform(rng, -15.0, 20.0))
        ux, uy = math.cos(alpha), math.sin(alpha)
        ps = Ellipse(
            uniform(rng, 0.1 * width + ps_a, 0.42 * width),
            uniform(rng, 0.12 * height + ps_a, 0.32 * height),
            ps_a,
            ps_b,
            alpha,
        )
        ix, iy = ps.center_x + ps_a * ux, ps.center_y + ps_a * uy
        psi = math.radians(uniform(rng, 70.0, 140.0))
        vx, vy = -uy, ux  # perpendicular pointing down (y grows downwards)
        dx, dy = math.cos(psi) * ux + math.sin(psi) * vx, math.cos(psi) * uy + math.sin(psi) * vy
        dist = uniform(rng, 4.0, 26.0) + 0.5 * (head_a + head_b)
        head = Ellipse(
            ix + dist * dx, iy + dist * dy, head_a, head_b, uniform(rng, -math.pi / 2, math.pi / 2)
        )
        try:
            bio = intrapartum_biometry(ps, head)
        except ValueError:
            continue
        if not (85.0 <= bio.aop_deg <= 165.0 and bio.hsd_mm >= 3.0 and bio.end_gap_mm >= 5.0):
            continue
        if math.hypot(bio.inferior[0] - ix, bio.inferior[1] - iy) > 1e-6:
            continue  # the end nearer the head must be the caudal (right-hand) end
        if not _separated(ps, head, gap=2.0):
            continue
        points = [bio.superior, bio.inferior, bio.tangent, bio.infrapubic_hit]
        if all(
            margin <= x <= width - margin and margin <= y <= height - margin for x, y in points
        ) and (_ellipse_inside(ps, width, height, margin)):
            break
    else:  # pragma: no cover - the sampling ranges make this practically impossible
        raise ctx.fail("could not place symphysis and head with a defined angle of progression")

    X, Y = _grid(ctx)
    ps_mask = ps.level(X, Y) <= 1.0
    head_mask = head.level(X, Y) <= 1.0
    skull_inner = ellipse_mask(
        X, Y, (head.center_x, head.center_y), (head.a - 3.0, head.b - 3.0), head.angle
    )
    image = ctx.background()
    paint(image, ps_mask, 0.35 * ctx.contrast)
    paint(image, head_mask & ~skull_inner, 0.40 * ctx.contrast)
    paint(image, skull_inner, -0.05 * ctx.contrast)
    truth = np.zeros(ctx.shape, dtype=np.uint8)
    truth[head_mask] = 2
    truth[ps_mask] = 1
    pixels = _to_pixels(
        ctx, np.array([bio.superior, bio.inferior, bio.tangent, bio.infrapubic_hit])
    )
    return CaseOutput(
        clean=image,
        truth=truth,
        masks={"mask": truth},
        fields={
            "aop_deg": rounded(bio.aop_deg),
            "hsd_mm": rounded(bio.hsd_mm),
            "biometry_points": format_landmarks(np.round(pixels, 4)),
        },
    )


def _boundary(e: Ellipse, n: int = 256) -> np.ndarray:
    return np.array([e.point(t) for t in np.linspace(0.0, 2 * math.pi, n, endpoint=False)])


def _separated(ps: Ellipse, head: Ellipse, gap: float) -> bool:
    grown = Ellipse(head.center_x, head.center_y, head.a + gap, head.b + gap, head.angle)
    return all(grown.level(x, y) > 1.0 for x, y in _boundary(ps))


def _ellipse_inside(e: Ellipse, width: float, height: float, margin: float) -> bool:
    pts = _boundary(e)
    return bool(
        (pts[:, 0] >= margin).all()
        and (pts[:, 0] <= width - margin).all()
        and (pts[:, 1] >= margin).all()
        and (pts[:, 1] <= height - margin).all()
    )


# ---------------------------------------------------------------------------- registry


def tasks_2d() -> list[PhantomTask]:
    """The 2D tasks, in manifest order."""
    return [
        PhantomTask(
            spec=TaskSpec(
                name="organ_lesion_seg",
                type="segmentation",
                table="organ_lesion_seg.csv",
                organ="liver",
                group="abdomen",
                modality="US",
                dim=2,
                labels={0: "background", 1: "organ", 2: "lesion"},
                description="Lobulated organ with a darker lesion inside; mask is the truth, "
                "mask_raterK are simulated annotators (smooth boundary jitter plus rater bias).",
            ),
            short="seg",
            fov_mm=(120.0, 120.0),
            generate=organ_lesion,
            raters=True,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="lesion_cls",
                type="classification",
                table="lesion_cls.csv",
                organ="breast",
                group="breast",
                modality="US",
                dim=2,
                classes=list(CLASSES),
                description="benign: smooth oval wider than tall; malignant: irregular spiculated "
                "outline; normal: no lesion.",
            ),
            short="cls",
            fov_mm=(60.0, 60.0),
            generate=lesion_classification,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="nodule_det",
                type="detection",
                table="nodule_det.csv",
                organ="thyroid",
                group="thyroid",
                modality="US",
                dim=2,
                classes=list(DETECTION_CLASSES),
                description="1-3 blobs (bright nodule, dark cyst); boxes are tight pixel-edge "
                "boxes x0,y0,x1,y1 of each blob; instance_mask value k is the k-th box's blob.",
            ),
            short="det",
            fov_mm=(80.0, 80.0),
            generate=nodule_detection,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="head_circumference",
                type="regression",
                table="head_circumference.csv",
                organ="fetal head",
                group="obstetrics",
                modality="US",
                dim=2,
                unit="mm",
                target="head circumference",
                description="Ellipse circumference (Ramanujan II) in mm of the outer skull "
                "contour; head_mask is the filled ellipse.",
            ),
            short="hc",
            fov_mm=(170.0, 170.0),
            generate=head_circumference,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="spine_landmarks",
                type="landmarks",
                table="spine_landmarks.csv",
                organ="vertebra",
                group="spine",
                modality="XR",
                dim=2,
                landmarks=list(SPINE_LANDMARKS),
                description="Corners of a vertebral-body-like quadrilateral (anterior = image "
                "left, superior = image top), x,y in pixels.",
            ),
            short="lmk",
            fov_mm=(60.0, 60.0),
            generate=spine_landmarks,
        ),
        PhantomTask(
            spec=TaskSpec(
                name="intrapartum_seg",
                type="segmentation",
                table="intrapartum_seg.csv",
                organ="pubic symphysis and fetal head",
                group="obstetrics",
                modality="US",
                dim=2,
                labels={0: "background", 1: "pubic symphysis", 2: "fetal head"},
                description="Transperineal-like view; aop_deg and hsd_mm are the exact ISUOG-style "
                "angle of progression and head-symphysis distance of the two ellipses; "
                "biometry_points: PS superior end, PS inferior end, head tangent point, "
                "infrapubic hit point (x,y px).",
            ),
            short="ip",
            fov_mm=(130.0, 130.0),
            generate=intrapartum,
            raters=True,
        ),
    ]
