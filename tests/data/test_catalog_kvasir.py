"""Kvasir-SEG adapter: thresholded JPEG masks and boxes in medfleet's convention."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from medfleet.data.catalog import prepare_dataset
from medfleet.data.validate import validate_manifest
from medfleet.errors import ManifestError
from medfleet.tables import parse_boxes, read_table
from medfleet.tasks import Manifest


@pytest.fixture(scope="module")
def kvasir_src(shared_data: Path) -> Path:
    src = shared_data / "kvasir_seg_5"
    if not (src / "images").is_dir():
        pytest.skip("kvasir_seg_5 not in the shared data")
    return src


@pytest.fixture(scope="module")
def kvasir_out(kvasir_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_dataset("kvasir_seg", kvasir_src, tmp_path_factory.mktemp("kvasir"))


def _csv_boxes(src: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    boxes = defaultdict(list)
    with open(src / "bboxes_from_masks.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            boxes[row["image"]].append(tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")))
    return boxes


def test_kvasir_masks_are_the_thresholded_jpegs(kvasir_src, kvasir_out):
    manifest = Manifest.load(kvasir_out)
    spec = manifest.task("kvasir_polyp_seg")
    assert spec.labels == {0: "background", 1: "polyp"} and spec.channels == 3
    rows = read_table(manifest.table_path(spec))
    assert len(rows) == 5
    assert Counter(r["split"] for r in rows) == {"train": 3, "val": 1, "test": 1}
    for row in rows:
        source = np.asarray(
            Image.open(kvasir_src / "masks" / (row["case_id"] + ".jpg")).convert("L")
        )
        expected = source >= 128
        mask = np.asarray(Image.open(manifest.resolve(row["mask"])))
        assert set(np.unique(mask).tolist()) <= {0, 1}
        differ = np.argwhere(mask.astype(bool) != expected)
        if row["case_id"] == "cju0roawvklrq0799vmjorwfv":
            # the stray JPEG pixel at (0, 0) is dropped, as in the source's box CSV
            assert differ.tolist() == [[0, 0]] and row["mask_pixels_removed"] == "1"
        else:
            assert differ.size == 0 and row["mask_pixels_removed"] == "0"


def test_kvasir_boxes_follow_the_csv_plus_one_convention(kvasir_src, kvasir_out):
    manifest = Manifest.load(kvasir_out)
    assert manifest.task("kvasir_polyp_det").classes == ["polyp"]
    source = _csv_boxes(kvasir_src)
    rows = read_table(manifest.table_path("kvasir_polyp_det"))
    masks = {r["case_id"]: r["mask"] for r in read_table(manifest.table_path("kvasir_polyp_seg"))}
    for row in rows:
        boxes = parse_boxes(row["boxes"])
        assert all(b.label == "polyp" for b in boxes)
        got = sorted(
            (int(b.coords[0]), int(b.coords[1]), int(b.coords[2]) - 1, int(b.coords[3]) - 1)
            for b in boxes
        )
        assert got == sorted(source[row["case_id"] + ".jpg"])
        # Each box is the whole-pixel extent of one component of the written mask.
        mask = np.asarray(Image.open(manifest.resolve(masks[row["case_id"]]))).astype(bool)
        labels, n = ndi.label(mask)
        extents = []
        for k in range(1, n + 1):
            rr, cc = np.nonzero(labels == k)
            extents.append((cc.min(), rr.min(), cc.max() + 1, rr.max() + 1))
        assert sorted(extents) == sorted(tuple(int(c) for c in b.coords) for b in boxes)
    assert sum(len(parse_boxes(r["boxes"])) for r in rows) == 6


def test_kvasir_manifest_validates_and_refs_decode(kvasir_out):
    from medfleet.data.io import read_image

    manifest = Manifest.load(kvasir_out)
    row = read_table(manifest.table_path("kvasir_polyp_det"))[0]
    assert read_image(row["image"]).array.ndim == 3
    report = validate_manifest(kvasir_out)
    assert report.ok, [str(p) for p in report.errors]


# -- fake folders written by the test ------------------------------------------------------


def _write_fake_kvasir(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.zeros((20, 30, 3), np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[4:9, 5:12] = 250
    mask[12:18, 20:29] = 200
    Image.fromarray(image).save(root / "images" / "p1.png")
    Image.fromarray(mask).save(root / "masks" / "p1.png")


def test_kvasir_fake_folder_without_csv(tmp_path):
    _write_fake_kvasir(tmp_path / "src")
    path = prepare_dataset("kvasir_seg", tmp_path / "src", tmp_path / "out")
    row = read_table(Manifest.load(path).table_path("kvasir_polyp_det"))[0]
    assert row["boxes"] == "polyp:5,4,12,9;polyp:20,12,29,18"


def test_kvasir_csv_that_disagrees_with_the_mask_is_named(tmp_path):
    _write_fake_kvasir(tmp_path / "src")
    (tmp_path / "src" / "bboxes_from_masks.csv").write_text(
        "image,width,height,xmin,ymin,xmax,ymax\np1.png,30,20,5,4,12,9\np1.png,30,20,20,12,28,17\n"
    )
    with pytest.raises(ManifestError, match=r"boxes of p1\.png \[\(5, 4, 12, 9\).*differ"):
        prepare_dataset("kvasir_seg", tmp_path / "src", tmp_path / "out")
    (tmp_path / "src" / "bboxes_from_masks.csv").write_text(
        "image,width,height,xmin,ymin,xmax,ymax\np1.png,30,20,5,4,11,8\np1.png,30,20,20,12,28,17\n"
    )
    prepare_dataset("kvasir_seg", tmp_path / "src", tmp_path / "out")  # inclusive maxima agree


def test_kvasir_missing_mask_is_named(tmp_path):
    _write_fake_kvasir(tmp_path / "src")
    (tmp_path / "src" / "masks" / "p1.png").unlink()
    with pytest.raises(ManifestError, match=r"masks/p1\.png: mask of p1\.png is missing"):
        prepare_dataset("kvasir_seg", tmp_path / "src", tmp_path / "out")
    (tmp_path / "src" / "masks").rmdir()
    with pytest.raises(ManifestError, match=r"masks: masks folder of kvasir_seg not found"):
        prepare_dataset("kvasir_seg", tmp_path / "src", tmp_path / "out")
