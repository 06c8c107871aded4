"""PneumoniaMNIST: chest X-ray classification (normal / pneumonia) from a MedMNIST npz.

Reads ``pneumoniamnist.npz`` (``--src`` may be its folder or the file) with
the MedMNIST keys ``{train,val,test}_images`` (N x H x W uint8) and
``{train,val,test}_labels`` (N x 1 or N; 0 = normal, 1 = pneumonia). Nothing
is copied: each row's image is a reference into the npz,
``/abs/path/pneumoniamnist.npz#key=train_images&index=5``.

Patients are not identified in MedMNIST, so the npz's own train/val/test split
is kept (seed and fractions are not used) and each image is its own subject.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.catalog.common import (
    PrepareOptions,
    check_output_folder,
    require_dir,
    require_file,
    split_counts,
    take_subset,
    write_manifest,
)
from medfleet.errors import ImageReadError, ManifestError
from medfleet.tables import SPLITS
from medfleet.tasks import Site, TaskSpec

NAME = "pneumoniamnist"
FILE_NAME = "pneumoniamnist.npz"
CLASSES = ("normal", "pneumonia")
EXPECTED = f"{FILE_NAME} with keys " + ", ".join(f"{s}_images, {s}_labels" for s in SPLITS)


def _npz_path(src: Path) -> Path:
    if src.is_file():
        return src
    require_dir(src, NAME, EXPECTED)
    return require_file(src / FILE_NAME, NAME, EXPECTED)


def _read_labels(npz_path: Path) -> dict[str, tuple[np.ndarray, tuple[int, ...]]]:
    """``{split: (labels, image array shape)}``; checks keys, lengths and label values."""
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            keys = set(npz.files)
            wanted = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels")]
            missing = [k for k in wanted if k not in keys]
            if missing:
                raise ManifestError(
                    f"{npz_path}: lacks key(s) {missing}; it holds {sorted(keys)} and should hold "
                    f"{wanted}"
                )
            result = {}
            for split in SPLITS:
                labels = np.asarray(npz[f"{split}_labels"])
                shape = _array_shape(npz, f"{split}_images")
                if labels.ndim == 2 and labels.shape[1] == 1:
                    labels = labels[:, 0]
                if labels.ndim != 1:
                    raise ManifestError(
                        f"{npz_path}: {split}_labels has shape {labels.shape}; expected (N,) or "
                        "(N, 1) (one binary label per image)"
                    )
                if len(shape) < 3 or shape[0] != labels.shape[0]:
                    raise ManifestError(
                        f"{npz_path}: {split}_images has shape {shape} but {split}_labels holds "
                        f"{labels.shape[0]} labels; expected (N, H, W) images with N labels"
                    )
                bad = sorted(set(np.unique(labels).tolist()) - {0, 1})
                if bad:
                    raise ManifestError(
                        f"{npz_path}: {split}_labels holds {bad}; "
                        "expected 0 (normal) or 1 (pneumonia)"
                    )
                result[split] = (labels.astype(np.int64), shape)
            return result
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ImageReadError(
            npz_path, f"not a readable npz archive ({exc})", fix="download the file again"
        ) from exc


def _array_shape(npz: Any, key: str) -> tuple[int, ...]:
    """Shape of an npz member from its header, without loading the pixels."""
    with npz.zip.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape)


def prepare(src: Path, out: Path, options: PrepareOptions) -> Path:
    """Convert a PneumoniaMNIST npz into a manifest with task ``pneumoniamnist_cls``.

    Args:
        src: Folder holding ``pneumoniamnist.npz``, or the npz itself.
        out: Output folder (only the manifest and the table are written).
        options: Progress callback and case limit (kept proportional per split and class);
            the npz split is kept, so seed and fractions are not used.

    Returns:
        Path of the written manifest.

    Raises:
        ManifestError: When the file or a key is missing, or labels are not 0/1.
        ImageReadError: When the file is not a readable npz.
    """
    src = Path(src)
    npz_path = _npz_path(src)
    check_output_folder(npz_path.parent, out)
    per_split = _read_labels(npz_path)
    cases = [
        (split, index, int(label))
        for split in SPLITS
        for index, label in enumerate(per_split[split][0])
    ]
    source_total = len(cases)
    # The npz is sorted by class within a split: stratify by split and class, or a limited
    # set would hold one class only.
    cases = take_subset(cases, options.limit, key=lambda c: (c[0], c[2]))
    ref_base = str(npz_path.resolve())
    rows: list[dict[str, Any]] = []
    for done, (split, index, label) in enumerate(cases, start=1):
        case_id = f"{split}_{index:05d}"
        rows.append(
            {
                "case_id": case_id,
                "image": f"{ref_base}#key={split}_images&index={index}",
                "site": NAME,
                "split": split,
                "subject": case_id,
                "label": CLASSES[label],
                "source_index": index,
            }
        )
        if done % 256 == 0 or done == len(cases):
            options.tick(done, len(cases))
    spec = TaskSpec(
        name="pneumoniamnist_cls",
        type="classification",
        table="pneumoniamnist_cls.csv",
        organ="chest",
        group="chest",
        modality="XR",
        classes=list(CLASSES),
        description="Chest X-ray: normal or pneumonia (PneumoniaMNIST-format npz).",
    )
    metadata = {
        "source": "PneumoniaMNIST-format npz (MedMNIST v2; images of Kermany et al., Cell 2018)",
        "licence": "CC BY 4.0",
        "citation": "Yang J et al. MedMNIST v2. Scientific Data 10:41, 2023; Kermany DS et al. "
        "Cell 172(5):1122-1131, 2018.",
        "source_file": ref_base,
        "image_shape": list(per_split["train"][1][1:]),
        "split_rule": "the npz's own train/val/test split is kept (no patient ids); "
        "seed and fractions are not used",
        "limit": options.limit,
        "cases": len(rows),
        "cases_in_source": source_total,
        "split_counts": split_counts(rows),
        "class_counts": {k: sum(r["label"] == k for r in rows) for k in CLASSES},
    }
    return write_manifest(
        out,
        name=NAME,
        description="PneumoniaMNIST chest X-ray: normal vs pneumonia.",
        site=Site(name=NAME, description="PneumoniaMNIST chest X-rays"),
        tables=[(spec, rows)],
        metadata=metadata,
    )
