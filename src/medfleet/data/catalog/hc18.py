"""HC18 fetal head circumference: outline -> filled head mask, HC (mm) -> regression target.

Reads ``training_set_pixel_size_and_HC.csv`` (``filename, pixel size(mm),
head circumference (mm)``), each listed image ``NNN_[k]HC.png`` and its
outline ``NNN_[k]HC_Annotation.png``. The images may sit in ``images/``,
``training_set/`` or the source folder itself; the outlines in
``annotations/`` or beside the images. Only CSV rows whose image is present
become cases, so a subset of HC18 works as well as the full training set.

Writes two tasks sharing the images and the split: ``hc18_seg``
(segmentation ``{0: background, 1: head}``, filled masks under ``masks/``) and
``hc18_hc`` (regression of the head circumference in mm). Every row carries
the pixel size as ``spacing``. Subjects come from the file names (``010_HC``
and ``010_2HC`` are frames of examination ``010``), and whole subjects are
split, never single frames.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.catalog.common import (
    PrepareOptions,
    assign_splits,
    check_output_folder,
    read_csv_rows,
    require_dir,
    require_file,
    split_counts,
    take_subset,
    write_manifest,
)
from medfleet.data.catalog.ellipse import OutlineError, fill_outline
from medfleet.errors import ImageReadError, ManifestError
from medfleet.tables import format_spacing, parse_float
from medfleet.tasks import Site, TaskSpec

NAME = "hc18"
CSV_NAME = "training_set_pixel_size_and_HC.csv"
CSV_COLUMNS = ("filename", "pixel size(mm)", "head circumference (mm)")
EXPECTED = (
    f"{CSV_NAME} and the training images NNN_HC.png with their outlines NNN_HC_Annotation.png "
    "(in images/ and annotations/, in training_set/, or in the folder itself)"
)
FILE_PATTERN = re.compile(r"^(?P<subject>\d+)_(?P<frame>\d*)HC\.png$")
IMAGE_DIRS = ("images", "training_set", ".")
ANNOTATION_DIRS = ("annotations", "training_set", "images", ".")


def parse_name(filename: str) -> tuple[str, int]:
    """Subject id and frame number of an HC18 file name.

    Example:
        >>> parse_name("010_2HC.png"), parse_name("010_HC.png")
        (('010', 2), ('010', 1))
    """
    match = FILE_PATTERN.match(filename)
    if not match:
        raise ManifestError(
            f"{filename!r} does not follow the HC18 naming NNN_HC.png or NNN_<k>HC.png; "
            "the subject id cannot be read from it"
        )
    return match["subject"], int(match["frame"] or 1)


def _find(src: Path, name: str, folders: tuple[str, ...]) -> Path | None:
    for folder in folders:
        candidate = src / folder / name
        if candidate.is_file():
            return candidate
    return None


def _filled_mask(annotation: Path) -> tuple[np.ndarray, str, float]:
    from medfleet.data.io import read_image

    array = np.asarray(read_image(annotation).array)
    if array.ndim == 3:  # colour-saved outline: any channel marks the line
        array = array.max(axis=-1)
    if array.ndim != 2:
        raise ImageReadError(annotation, f"expected a 2D outline image, got shape {array.shape}")
    peak = float(array.max()) if array.size else 0.0
    try:
        if peak <= 0:
            raise OutlineError("outline image is empty (no foreground pixels)")
        result = fill_outline(array > peak / 2)
    except OutlineError as exc:
        raise ImageReadError(
            annotation, str(exc), fix="check the annotation is the HC18 head outline of its image"
        ) from exc
    return result.mask, result.method, result.iou


def prepare(src: Path, out: Path, options: PrepareOptions) -> Path:
    """Convert an HC18 training folder into a manifest with ``hc18_seg`` and ``hc18_hc``.

    Args:
        src: HC18 folder (see the module docstring for the layouts accepted).
        out: Output folder; filled masks go to ``out/masks/``.
        options: Seed, split fractions, progress callback and case limit.

    Returns:
        Path of the written manifest.

    Raises:
        ManifestError: When the folder, the CSV, an image or an outline is missing.
        ImageReadError: When an outline cannot be filled into a head mask.
    """
    from medfleet.data.io import write_png

    src = require_dir(Path(src), NAME, EXPECTED)
    csv_path = require_file(src / CSV_NAME, NAME, EXPECTED)
    check_output_folder(src, out)
    cases: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line, row in enumerate(read_csv_rows(csv_path, CSV_COLUMNS, NAME), start=2):
        filename = row["filename"]
        if filename in seen:
            raise ManifestError(f"{csv_path}: line {line}: {filename!r} is listed twice")
        seen.add(filename)
        image = _find(src, filename, IMAGE_DIRS)
        if image is None:
            continue
        subject, frame = parse_name(filename)
        annotation_name = filename.removesuffix(".png") + "_Annotation.png"
        annotation = _find(src, annotation_name, ANNOTATION_DIRS)
        if annotation is None:
            raise ManifestError(
                f"{src}: outline {annotation_name} of {image.name} is missing; put it in "
                "annotations/ or beside the image"
            )
        try:
            pixel_size = parse_float(row["pixel size(mm)"], "pixel size(mm)")
            hc = parse_float(row["head circumference (mm)"], "head circumference (mm)")
        except ValueError as exc:
            raise ManifestError(f"{csv_path}: line {line} ({filename}): {exc}") from exc
        if pixel_size <= 0 or hc <= 0:
            raise ManifestError(
                f"{csv_path}: line {line} ({filename}): pixel size and head circumference must be "
                "positive"
            )
        cases.append(
            {
                "case_id": filename.removesuffix(".png"),
                "image": image,
                "annotation": annotation,
                "subject": subject,
                "frame": frame,
                "pixel_size": pixel_size,
                "hc": hc,
            }
        )
    if not cases:
        raise ManifestError(
            f"{src}: none of the {len(seen)} images listed in {CSV_NAME} was found; the folder "
            f"should contain {EXPECTED}"
        )
    cases.sort(key=lambda c: c["case_id"])
    listed = len(cases)
    cases = take_subset(cases, options.limit)
    images_per_subject: dict[str, int] = {}
    for case in cases:
        images_per_subject[case["subject"]] = images_per_subject.get(case["subject"], 0) + 1
    plan = assign_splits(
        images_per_subject,
        seed=options.seed,
        val_fraction=options.val_fraction,
        test_fraction=options.test_fraction,
    )
    seg_rows: list[dict[str, Any]] = []
    hc_rows: list[dict[str, Any]] = []
    methods: dict[str, list[str]] = {}
    for done, case in enumerate(cases, start=1):
        mask, method, iou = _filled_mask(case["annotation"])
        mask_rel = f"masks/{case['case_id']}_mask.png"
        write_png(out / mask_rel, mask.astype(np.uint8), label=True)
        methods.setdefault(method, []).append(case["case_id"])
        base = {
            "case_id": case["case_id"],
            "image": str(case["image"].resolve()),
            "site": NAME,
            "split": plan[case["subject"]],
            "subject": case["subject"],
            "spacing": format_spacing((case["pixel_size"], case["pixel_size"])),
            "frame": case["frame"],
        }
        seg_rows.append(
            {**base, "mask": mask_rel, "mask_method": method, "mask_fit_iou": round(iou, 4)}
        )
        hc_rows.append({**base, "value": case["hc"]})
        options.tick(done, len(cases))
    seg = TaskSpec(
        name="hc18_seg",
        type="segmentation",
        table="hc18_seg.csv",
        organ="fetal head",
        group="obstetrics",
        modality="US",
        labels={0: "background", 1: "head"},
        description="Fetal head (skull ellipse) on 2D ultrasound; mask filled from its outline.",
    )
    reg = TaskSpec(
        name="hc18_hc",
        type="regression",
        table="hc18_hc.csv",
        organ="fetal head",
        group="obstetrics",
        modality="US",
        unit="mm",
        target="head circumference",
        description="Head circumference in mm (ellipse perimeter times pixel size), from HC18.",
    )
    metadata = {
        "source": "HC18 grand challenge training set (van den Heuvel et al., PLoS ONE 2018)",
        "licence": "CC BY 4.0",
        "citation": "van den Heuvel TLA et al. Automated measurement of fetal head circumference "
        "using 2D ultrasound images. PLoS ONE 13(8):e0200412, 2018.",
        "source_folder": str(src.resolve()),
        "split_rule": "by subject (file prefix NNN); whole subjects per split, "
        "hash order keyed by seed; fractions count images",
        "seed": options.seed,
        "val_fraction": options.val_fraction,
        "test_fraction": options.test_fraction,
        "limit": options.limit,
        "cases": len(cases),
        "cases_in_source": listed,
        "subjects": len(images_per_subject),
        "split_counts": split_counts(seg_rows),
        "mask_methods": {k: len(v) for k, v in sorted(methods.items())},
        "masks_not_plain_fill": sorted(c for k, v in methods.items() if k != "fill" for c in v),
    }
    return write_manifest(
        out,
        name=NAME,
        description="HC18 fetal head ultrasound: head segmentation and head circumference (mm).",
        site=Site(name=NAME, description="HC18 grand challenge training set"),
        tables=[(seg, seg_rows), (reg, hc_rows)],
        metadata=metadata,
    )
