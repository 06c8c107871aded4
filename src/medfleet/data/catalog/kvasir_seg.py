"""Kvasir-SEG polyps: segmentation (JPEG masks thresholded) and detection boxes.

Reads ``images/<id>.jpg`` and ``masks/<id>.jpg`` (same names, same sizes) and,
when present, ``bboxes_from_masks.csv`` (``image, width, height, xmin, ymin,
xmax, ymax, ...``; one row per polyp).

Masks are JPEG, so compression leaves grey values: a pixel is polyp when its
grey value is >= 128. Connected components (4-connected) holding less than 1%
of an image's foreground are compression specks and are dropped from both the
mask and the boxes. Each remaining component gives one box.

Box convention: the CSV's ``xmax``/``ymax`` are the *inclusive* indices of the
last polyp column/row. medfleet boxes are written as whole-pixel extents
``x0 = xmin, y0 = ymin, x1 = xmax + 1, y1 = ymax + 1``, so a box's area equals
the pixel count of its bounding rectangle and lies within ``[0, W] x [0, H]``.
Boxes computed from the masks are checked against the CSV when it exists.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from medfleet.data.catalog.common import (
    PrepareOptions,
    assign_splits,
    check_output_folder,
    read_csv_rows,
    require_dir,
    split_counts,
    take_subset,
    write_manifest,
)
from medfleet.errors import ImageReadError, ManifestError
from medfleet.tables import Box, format_boxes
from medfleet.tasks import Site, TaskSpec

NAME = "kvasir_seg"
CSV_NAME = "bboxes_from_masks.csv"
CSV_COLUMNS = ("image", "width", "height", "xmin", "ymin", "xmax", "ymax")
EXPECTED = (
    "images/<id>.jpg and masks/<id>.jpg with the same names (Kvasir-SEG layout), "
    f"optionally {CSV_NAME}"
)
THRESHOLD = 128
MIN_COMPONENT_SHARE = 0.01
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def threshold_mask(array: np.ndarray) -> np.ndarray:
    """Binary polyp mask of a (possibly colour) JPEG mask: grey value >= 128.

    Example:
        >>> threshold_mask(np.array([[0, 127, 128, 255]], dtype=np.uint8)).tolist()
        [[False, False, True, True]]
    """
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1)
    return array >= THRESHOLD


def polyp_components(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]], int]:
    """Drop specks and return (clean mask, inclusive boxes, pixels removed).

    Components are 4-connected; those holding under 1% of the foreground are
    removed. Boxes are ``(xmin, ymin, xmax, ymax)`` with inclusive maxima,
    sorted by ``(xmin, ymin)``.

    Example:
        >>> m = np.zeros((6, 8), bool); m[1:4, 2:7] = True
        >>> polyp_components(m)[1]
        [(2, 1, 6, 3)]
    """
    labels, n = ndi.label(mask)
    total = int(mask.sum())
    keep = np.zeros(n + 1, dtype=bool)
    boxes = []
    for index, region in enumerate(ndi.find_objects(labels), start=1):
        if region is None:
            continue
        size = int((labels[region] == index).sum())
        if size >= MIN_COMPONENT_SHARE * total:
            keep[index] = True
            rows, cols = region
            boxes.append((cols.start, rows.start, cols.stop - 1, rows.stop - 1))
    clean = keep[labels]
    return clean, sorted(boxes), total - int(clean.sum())


def _csv_boxes(src: Path) -> dict[str, list[tuple[int, int, int, int]]] | None:
    path = src / CSV_NAME
    if not path.is_file():
        return None
    boxes: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
    for line, row in enumerate(read_csv_rows(path, CSV_COLUMNS, NAME), start=2):
        try:
            values = tuple(int(row[c]) for c in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as exc:
            raise ManifestError(
                f"{path}: line {line}: box corners must be integers ({exc})"
            ) from exc
        boxes[row["image"]].append(values)  # type: ignore[arg-type]
    return {k: sorted(v) for k, v in boxes.items()}


def prepare(src: Path, out: Path, options: PrepareOptions) -> Path:
    """Convert a Kvasir-SEG folder into ``kvasir_polyp_seg`` and ``kvasir_polyp_det`` tasks.

    Args:
        src: Folder with ``images/`` and ``masks/`` (and optionally the boxes CSV).
        out: Output folder; thresholded masks go to ``out/masks/``.
        options: Seed, split fractions, progress callback and case limit.

    Returns:
        Path of the written manifest.

    Raises:
        ManifestError: When a folder or a mask is missing, or the CSV boxes disagree with
            the masks.
        ImageReadError: When a mask's size differs from its image's.
    """
    from medfleet.data.io import read_image, write_png

    src = require_dir(Path(src), NAME, EXPECTED)
    image_dir = require_dir(src / "images", NAME, EXPECTED, "images folder")
    mask_dir = require_dir(src / "masks", NAME, EXPECTED, "masks folder")
    check_output_folder(src, out)
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ManifestError(
            f"{image_dir}: holds no images; the source folder should contain {EXPECTED}"
        )
    for image in images:
        if not (mask_dir / image.name).is_file():
            raise ManifestError(f"{mask_dir / image.name}: mask of {image.name} is missing")
    csv_boxes = _csv_boxes(src)
    if csv_boxes is not None:
        unknown = sorted(set(csv_boxes) - {p.name for p in images})
        if unknown:
            raise ManifestError(f"{src / CSV_NAME}: lists images not in images/: {unknown}")
    source_total = len(images)
    images = take_subset(images, options.limit)
    plan = assign_splits(
        dict.fromkeys((p.stem for p in images), 1),
        seed=options.seed,
        val_fraction=options.val_fraction,
        test_fraction=options.test_fraction,
    )
    seg_rows: list[dict[str, Any]] = []
    det_rows: list[dict[str, Any]] = []
    for done, image in enumerate(images, start=1):
        case_id = image.stem
        picture = read_image(image).array
        raw_mask = read_image(mask_dir / image.name).array
        if raw_mask.shape[:2] != picture.shape[:2]:
            raise ImageReadError(
                mask_dir / image.name,
                f"mask size {raw_mask.shape[:2]} differs from image size {picture.shape[:2]}",
                fix="use the mask that belongs to this image",
            )
        mask, boxes, removed = polyp_components(threshold_mask(raw_mask))
        if csv_boxes is not None and csv_boxes.get(image.name, []) != boxes:
            raise ManifestError(
                f"{src / CSV_NAME}: boxes of {image.name} {csv_boxes.get(image.name, [])} differ "
                f"from the thresholded mask's components {boxes} (xmin, ymin, xmax, ymax inclusive)"
            )
        mask_rel = f"masks/{case_id}_mask.png"
        write_png(out / mask_rel, mask.astype(np.uint8), label=True)
        base = {
            "case_id": case_id,
            "image": str(image.resolve()),
            "site": NAME,
            "split": plan[case_id],
            "subject": case_id,
        }
        meta = {"polyps": len(boxes), "mask_pixels_removed": removed}
        seg_rows.append({**base, "mask": mask_rel, **meta})
        det_boxes = [Box((x0, y0, x1 + 1, y1 + 1), "polyp") for x0, y0, x1, y1 in boxes]
        det_rows.append({**base, "boxes": format_boxes(det_boxes), **meta})
        options.tick(done, len(images))
    common = {"organ": "colon", "group": "gastroenterology", "modality": "endoscopy", "channels": 3}
    seg = TaskSpec(
        name="kvasir_polyp_seg",
        type="segmentation",
        table="kvasir_polyp_seg.csv",
        labels={0: "background", 1: "polyp"},
        description="Polyp mask on colonoscopy frames (Kvasir-SEG; JPEG masks thresholded at 128).",
        **common,
    )
    det = TaskSpec(
        name="kvasir_polyp_det",
        type="detection",
        table="kvasir_polyp_det.csv",
        classes=["polyp"],
        description="Polyp boxes, one per mask component (x1 = last column + 1).",
        **common,
    )
    metadata = {
        "source": "Kvasir-SEG (Jha et al., MMM 2020)",
        "licence": "research and educational use with citation; commercial use needs permission",
        "citation": "Jha D et al. Kvasir-SEG: A Segmented Polyp Dataset. MultiMedia Modeling 2020.",
        "source_folder": str(src.resolve()),
        "split_rule": "one image per subject; hash order keyed by seed",
        "box_convention": "x0=xmin, y0=ymin, x1=xmax+1, y1=ymax+1 (source maxima are inclusive)",
        "boxes_checked_against_csv": csv_boxes is not None,
        "seed": options.seed,
        "val_fraction": options.val_fraction,
        "test_fraction": options.test_fraction,
        "limit": options.limit,
        "cases": len(seg_rows),
        "cases_in_source": source_total,
        "split_counts": split_counts(seg_rows),
    }
    return write_manifest(
        out,
        name=NAME,
        description="Kvasir-SEG colonoscopy: polyp segmentation and detection.",
        site=Site(name=NAME, description="Kvasir-SEG colonoscopy images"),
        tables=[(seg, seg_rows), (det, det_rows)],
        metadata=metadata,
    )
