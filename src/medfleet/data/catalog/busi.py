"""BUSI breast ultrasound: 3-class classification (and lesion segmentation when masks exist).

Reads ``labels.csv`` (``image, label``; image paths relative to the source
folder). Without ``labels.csv`` the labels come from the class folders
``benign/``, ``malignant/`` and ``normal/`` of the original download. When a
mask ``<image stem>_mask.png`` (and further ``_mask_1.png``, ... of the same
image) lies beside an image, a segmentation task is added; several masks of
one image are merged.

BUSI gives no patient ids, so each image is its own subject, except that
byte-identical pixel data is detected: copies with the same label are one
subject (kept in one split), copies whose labels disagree are left out and
listed in the manifest metadata. The split is stratified by class.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.catalog.common import (
    PrepareOptions,
    assign_splits,
    check_output_folder,
    check_unique,
    read_csv_rows,
    require_dir,
    slug,
    split_counts,
    take_subset,
    write_manifest,
)
from medfleet.errors import ImageReadError, ManifestError
from medfleet.tasks import Site, TaskSpec

NAME = "busi"
CLASSES = ("benign", "malignant", "normal")
CSV_NAME = "labels.csv"
EXPECTED = (
    f"{CSV_NAME} (columns image,label; label one of {', '.join(CLASSES)}) with the images it "
    "lists, or the class folders benign/, malignant/ and normal/ of the original BUSI download"
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _is_mask_name(path: Path) -> bool:
    return "_mask" in path.stem


def _listed_images(src: Path) -> list[tuple[str, str, int | None]]:
    """``(relative image path, label, CSV line or None)`` from labels.csv or the class folders."""
    csv_path = src / CSV_NAME
    if csv_path.is_file():
        entries = []
        for line, row in enumerate(read_csv_rows(csv_path, ("image", "label"), NAME), start=2):
            if row["label"] not in CLASSES:
                raise ManifestError(
                    f"{csv_path}: line {line} ({row['image']}): label {row['label']!r} is not "
                    f"one of {list(CLASSES)}"
                )
            if not row["image"]:
                raise ManifestError(f"{csv_path}: line {line}: empty 'image' cell")
            entries.append((row["image"], row["label"], line))
        if not entries:
            raise ManifestError(
                f"{csv_path}: lists no images; the source folder should contain {EXPECTED}"
            )
        return entries
    folders = [src / c for c in CLASSES if (src / c).is_dir()]
    if not folders:
        raise ManifestError(
            f"{csv_path}: required file of {NAME} is missing and there are no class folders; "
            f"the source folder should contain {EXPECTED}"
        )
    entries = []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and not _is_mask_name(path):
                entries.append((f"{folder.name}/{path.name}", folder.name, None))
    if not entries:
        raise ManifestError(f"{src}: the class folders hold no images; expected {EXPECTED}")
    return entries


def _mask_files(image: Path) -> list[Path]:
    """Masks of ``image`` beside it: ``<stem>_mask.png`` and ``<stem>_mask_<k>.png``."""
    prefix = image.stem + "_mask"
    found = []
    for path in image.parent.iterdir():
        rest = path.stem[len(prefix) :] if path.stem.startswith(prefix) else None
        if rest is None or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if rest == "" or (rest.startswith("_") and rest[1:].isdigit()):
            found.append(path)
    return sorted(found, key=lambda p: (len(p.stem), p.name))


def _grey(array: np.ndarray) -> tuple[np.ndarray, bool]:
    """Grey image and whether the colour channels differ anywhere."""
    array = np.asarray(array)
    if array.ndim == 3:
        colour = bool(np.any(array[..., :3] != array[..., :1]))
        return array[..., 0], colour
    return array, False


def _merged_mask(paths: list[Path], shape: tuple[int, ...]) -> np.ndarray:
    from medfleet.data.io import read_image

    merged = np.zeros(shape, dtype=bool)
    for path in paths:
        array, _ = _grey(read_image(path).array)
        if array.shape != shape:
            raise ImageReadError(
                path,
                f"mask shape {array.shape} differs from its image's shape {shape}",
                fix="use the mask that belongs to this image, at the same size",
            )
        peak = float(array.max()) if array.size else 0.0
        if peak > 0:
            merged |= array > peak / 2
    return merged


def prepare(src: Path, out: Path, options: PrepareOptions) -> Path:
    """Convert a BUSI folder into a manifest with ``busi_cls`` (and ``busi_seg`` when masked).

    Args:
        src: BUSI folder with ``labels.csv`` or the class folders.
        out: Output folder; merged masks (if any) go to ``out/masks/``.
        options: Seed, split fractions, progress callback and case limit.

    Returns:
        Path of the written manifest.

    Raises:
        ManifestError: When the folder, the labels or a listed image is missing, or a label is
            unknown.
        ImageReadError: When an image or mask cannot be decoded or has the wrong shape.
    """
    from medfleet.data.io import read_image, write_png

    src = require_dir(Path(src), NAME, EXPECTED)
    check_output_folder(src, out)
    entries = _listed_images(src)
    cases: list[dict[str, Any]] = []
    for rel, label, line in entries:
        path = src / rel
        if not path.is_file():
            where = f"{src / CSV_NAME}: line {line}: " if line else ""
            raise ManifestError(f"{where}image {path} is missing (fix: restore it or drop its row)")
        cases.append({"case_id": slug(Path(rel).stem), "rel": rel, "path": path, "label": label})
    check_unique((c["case_id"] for c in cases), "case id", src)
    source_total = len(cases)
    cases = take_subset(cases, options.limit, key=lambda c: c["label"])
    total = len(cases)
    by_hash: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for done, case in enumerate(cases, start=1):
        data = read_image(case["path"])
        grey, colour = _grey(data.array)
        digest = hashlib.sha256(str(grey.shape).encode() + np.ascontiguousarray(grey).tobytes())
        case["colour"] = int(colour)
        case["shape"] = grey.shape
        case["masks"] = _mask_files(case["path"])
        by_hash[digest.hexdigest()].append(case)
        options.tick(done, 2 * total)
    excluded: list[dict[str, Any]] = []
    subject_of: dict[str, str] = {}
    for group in by_hash.values():
        ids = sorted(c["case_id"] for c in group)
        labels = {c["label"] for c in group}
        if len(labels) > 1:
            excluded.extend(
                {
                    "case_id": c["case_id"],
                    "image": c["rel"],
                    "label": c["label"],
                    "reason": "identical pixels to "
                    + ", ".join(f"{o['rel']} ({o['label']})" for o in group if o is not c)
                    + " with a different label",
                }
                for c in sorted(group, key=lambda c: c["case_id"])
            )
            continue
        for c in group:
            subject_of[c["case_id"]] = ids[0]
            c["duplicates"] = ";".join(i for i in ids if i != c["case_id"])
    kept = [c for c in cases if c["case_id"] in subject_of]
    subjects: dict[str, int] = defaultdict(int)
    strata: dict[str, str] = {}
    for c in kept:
        subjects[subject_of[c["case_id"]]] += 1
        strata[subject_of[c["case_id"]]] = c["label"]
    plan = assign_splits(
        subjects,
        seed=options.seed,
        val_fraction=options.val_fraction,
        test_fraction=options.test_fraction,
        strata=strata,
    )
    cls_rows: list[dict[str, Any]] = []
    seg_rows: list[dict[str, Any]] = []
    for done, c in enumerate(kept, start=total + 1):
        subject = subject_of[c["case_id"]]
        base = {
            "case_id": c["case_id"],
            "image": str(c["path"].resolve()),
            "site": NAME,
            "split": plan[subject],
            "subject": subject,
        }
        meta = {"source_file": c["rel"], "colour_marks": c["colour"], "duplicates": c["duplicates"]}
        cls_rows.append({**base, "label": c["label"], **meta})
        if c["masks"]:
            mask = _merged_mask(c["masks"], c["shape"])
            mask_rel = f"masks/{c['case_id']}_mask.png"
            write_png(out / mask_rel, mask.astype(np.uint8), label=True)
            seg_rows.append(
                {
                    **base,
                    "mask": mask_rel,
                    "label": c["label"],
                    "mask_files": len(c["masks"]),
                    **meta,
                }
            )
        options.tick(done, 2 * total)
    options.tick(2 * total, 2 * total)
    common = {"organ": "breast", "group": "breast", "modality": "US"}
    tables: list[tuple[TaskSpec, list[dict[str, Any]]]] = [
        (
            TaskSpec(
                name="busi_cls",
                type="classification",
                table="busi_cls.csv",
                classes=list(CLASSES),
                description="Breast ultrasound image: benign, malignant or normal (BUSI).",
                **common,
            ),
            cls_rows,
        )
    ]
    if seg_rows:
        tables.append(
            (
                TaskSpec(
                    name="busi_seg",
                    type="segmentation",
                    table="busi_seg.csv",
                    labels={0: "background", 1: "lesion"},
                    description="Breast lesion mask (BUSI; several masks of an image merged).",
                    **common,
                ),
                seg_rows,
            )
        )
    metadata = {
        "source": "BUSI, Dataset of breast ultrasound images "
        "(Al-Dhabyani et al., Data in Brief 2020)",
        "licence": "open access (cite the paper)",
        "citation": "Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. Dataset of breast ultrasound "
        "images. Data in Brief 28:104863, 2020.",
        "source_folder": str(src.resolve()),
        "split_rule": "stratified by class; no patient ids, so one image per subject except "
        "pixel-identical copies, which share a subject; hash order keyed by seed",
        "seed": options.seed,
        "val_fraction": options.val_fraction,
        "test_fraction": options.test_fraction,
        "limit": options.limit,
        "cases": len(cls_rows),
        "cases_in_source": source_total,
        "split_counts": split_counts(cls_rows),
        "class_counts": {k: sum(r["label"] == k for r in cls_rows) for k in CLASSES},
        "excluded": excluded,
        "segmentation_cases": len(seg_rows),
    }
    return write_manifest(
        out,
        name=NAME,
        description="BUSI breast ultrasound: benign / malignant / normal"
        + (" and lesion segmentation." if seg_rows else "."),
        site=Site(name=NAME, description="BUSI breast ultrasound images"),
        tables=tables,
        metadata=metadata,
    )
