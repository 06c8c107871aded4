"""HC18 adapter: filled head masks, HC targets, pixel spacing and the subject split."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from medfleet.data.catalog import prepare_dataset
from medfleet.data.catalog.ellipse import ellipse_mask
from medfleet.data.validate import validate_manifest
from medfleet.geometry import Ellipse
from medfleet.tables import read_table
from medfleet.tasks import Manifest

SAMPLE = 24


def _source_csv(src: Path) -> dict[str, tuple[float, float]]:
    with open(src / "training_set_pixel_size_and_HC.csv", newline="") as fh:
        return {
            r["filename"]: (float(r["pixel size(mm)"]), float(r["head circumference (mm)"]))
            for r in csv.DictReader(fh)
        }


def _moment_circumference(mask: np.ndarray) -> float:
    """Perimeter (px) of the ellipse with the mask's second moments (var = a²/4 when uniform)."""
    rows, cols = np.nonzero(mask)
    eig = np.linalg.eigvalsh(np.cov(np.stack([cols, rows]).astype(float)))
    b, a = 2 * np.sqrt(eig)
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def _touches_edge(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


@pytest.fixture(scope="module")
def hc18_src(shared_data: Path) -> Path:
    src = shared_data / "hc18"
    if not (src / "training_set_pixel_size_and_HC.csv").is_file():
        pytest.skip("hc18 not in the shared data")
    return src


@pytest.fixture(scope="module")
def hc18_sample(hc18_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_dataset("hc18", hc18_src, tmp_path_factory.mktemp("hc18"), limit=SAMPLE)


def _check_tables(
    manifest_path: Path, src: Path, expected_ids: list[str]
) -> tuple[Manifest, list[dict[str, str]]]:
    """Check both tables against the source CSVs; return the manifest and the seg rows."""
    manifest = Manifest.load(manifest_path)
    assert [t.name for t in manifest.tasks] == ["hc18_seg", "hc18_hc"]
    assert manifest.site_names == ["hc18"]
    seg_spec, hc_spec = manifest.tasks
    assert seg_spec.labels == {0: "background", 1: "head"}
    assert (hc_spec.unit, hc_spec.target) == ("mm", "head circumference")
    seg = read_table(manifest.table_path("hc18_seg"))
    reg = read_table(manifest.table_path("hc18_hc"))
    assert [r["case_id"] for r in seg] == expected_ids
    assert [r["case_id"] for r in reg] == expected_ids
    for s, r in zip(seg, reg, strict=True):
        assert (s["image"], s["split"], s["subject"], s["spacing"]) == (
            r["image"],
            r["split"],
            r["subject"],
            r["spacing"],
        )
    source = _source_csv(src)
    with open(src / "manifest.csv", newline="") as fh:
        curated = {row["image"]: row for row in csv.DictReader(fh)}
    splits_of = defaultdict(set)
    for row in reg:
        name = row["case_id"] + ".png"
        ps, hc = source[name]
        assert float(row["value"]) == hc
        assert tuple(float(v) for v in row["spacing"].split(",")) == (ps, ps)
        assert int(row["subject"]) == int(curated[name]["subject_id"])
        assert Path(row["image"]).is_absolute() and Path(row["image"]).name == name
        splits_of[row["subject"]].add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values()), "a subject is in two splits"
    return manifest, seg


def _check_mask(manifest: Manifest, row: dict[str, str], src: Path) -> np.ndarray:
    mask = np.asarray(Image.open(manifest.resolve(row["mask"])))
    image = Image.open(row["image"])
    assert mask.shape == (image.size[1], image.size[0])
    assert set(np.unique(mask).tolist()) <= {0, 1}
    outline = (
        np.asarray(Image.open(src / "annotations" / (row["case_id"] + "_Annotation.png"))) > 127
    )
    head = mask.astype(bool)
    assert head[outline].all(), "the outline belongs to the head"
    assert head.sum() > 10 * outline.sum(), "the mask is filled, not an outline"
    _, n = ndi.label(head, structure=np.ones((3, 3)))
    assert n == 1
    assert np.array_equal(ndi.binary_fill_holes(head), head), "no holes"
    return head


def test_hc18_sample_tables_masks_and_targets(hc18_src, hc18_sample):
    expected = sorted(p.stem for p in (hc18_src / "images").glob("*.png"))[:SAMPLE]
    manifest, seg = _check_tables(hc18_sample, hc18_src, expected)
    source = _source_csv(hc18_src)
    for row in seg:
        head = _check_mask(manifest, row, hc18_src)
        assert row["mask_method"] == "fill"
        ps, hc = source[row["case_id"] + ".png"]
        assert _moment_circumference(head) * ps == pytest.approx(hc, rel=0.03)


def test_hc18_sample_refs_decode_and_validate(hc18_sample):
    from medfleet.data.io import read_image

    manifest = Manifest.load(hc18_sample)
    row = read_table(manifest.table_path("hc18_seg"))[0]
    image = read_image(row["image"])
    mask = read_image(manifest.resolve(row["mask"]))
    assert image.array.shape == mask.array.shape == (540, 800)
    report = validate_manifest(hc18_sample)
    assert report.ok, [str(p) for p in report.errors]


def test_hc18_is_deterministic(hc18_src, tmp_path):
    a = prepare_dataset("hc18", hc18_src, tmp_path / "a", limit=5, seed=4)
    b = prepare_dataset("hc18", hc18_src, tmp_path / "b", limit=5, seed=4)
    files_a = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.parent) for p in b.parent.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes(), rel


def test_hc18_outline_cut_by_the_image_edge(hc18_src):
    from medfleet.data.catalog.hc18 import _filled_mask

    annotation = hc18_src / "annotations" / "186_HC_Annotation.png"
    if not annotation.is_file():
        pytest.skip("186_HC not in this copy of hc18")
    outline = np.asarray(Image.open(annotation)) > 127
    mask, method, _ = _filled_mask(annotation)
    assert method == "fill_at_edge"
    # The outline crosses the bottom row at x 271-275 and 438-442; between them is head.
    bottom = np.nonzero(mask[-1])[0]
    assert bottom.min() == 271 and bottom.max() == 442 and len(bottom) == 442 - 271 + 1
    assert mask[outline].all() and mask.sum() > 10 * outline.sum()
    _, n = ndi.label(mask, structure=np.ones((3, 3)))
    assert n == 1


@pytest.mark.slow
def test_hc18_full_run(hc18_src, tmp_path):
    path = prepare_dataset("hc18", hc18_src, tmp_path / "hc18")
    expected = sorted(p.stem for p in (hc18_src / "images").glob("*.png"))
    manifest, seg = _check_tables(path, hc18_src, expected)
    source = _source_csv(hc18_src)
    counts = defaultdict(int)
    for row in seg:
        counts[row["split"]] += 1
        head = _check_mask(manifest, row, hc18_src)
        if not _touches_edge(head):
            ps, hc = source[row["case_id"] + ".png"]
            assert _moment_circumference(head) * ps == pytest.approx(hc, rel=0.03), row["case_id"]
    n = len(expected)
    assert abs(counts["test"] - 0.15 * n) < 4 and abs(counts["val"] - 0.15 * n) < 4
    assert manifest.metadata["subjects"] == len({r["subject"] for r in seg})
    assert validate_manifest(path).ok


# -- a fake HC18 folder written by the test -----------------------------------------------


def _write_fake_hc18(root: Path, layout: str) -> dict[str, np.ndarray]:
    """Three images of two subjects with drawn ellipse outlines; returns the expected masks."""
    image_dir = root / ("images" if layout == "split" else "training_set")
    annotation_dir = root / ("annotations" if layout == "split" else "training_set")
    image_dir.mkdir(parents=True)
    annotation_dir.mkdir(parents=True, exist_ok=True)
    ellipses = {
        "000_HC": Ellipse(40, 30, 25, 15, 0.3),
        "000_2HC": Ellipse(42, 31, 24, 16, 0.1),
        "001_HC": Ellipse(38, 28, 20, 18, 1.0),
    }
    expected = {}
    lines = ["filename,pixel size(mm),head circumference (mm)"]
    for name, ellipse in ellipses.items():
        disk = ellipse_mask(ellipse, (60, 80))
        ring = disk & ~ndi.binary_erosion(disk)
        Image.fromarray((np.arange(60 * 80).reshape(60, 80) % 251).astype(np.uint8)).save(
            image_dir / f"{name}.png"
        )
        Image.fromarray(ring.astype(np.uint8) * 255).save(annotation_dir / f"{name}_Annotation.png")
        lines.append(f"{name}.png,0.25,{ellipse.perimeter * 0.25:.2f}")
        expected[name] = disk
    lines.append("999_HC.png,0.1,100.0")  # listed but absent: skipped
    (root / "training_set_pixel_size_and_HC.csv").write_text("\n".join(lines) + "\n")
    return expected


@pytest.mark.parametrize("layout", ["split", "zenodo"])
def test_hc18_fake_folder(tmp_path, layout):
    expected = _write_fake_hc18(tmp_path / "src", layout)
    path = prepare_dataset(
        "hc18", tmp_path / "src", tmp_path / "out", val_fraction=0.3, test_fraction=0.3
    )
    manifest = Manifest.load(path)
    seg = read_table(manifest.table_path("hc18_seg"))
    reg = read_table(manifest.table_path("hc18_hc"))
    assert [r["case_id"] for r in seg] == ["000_2HC", "000_HC", "001_HC"]
    assert [r["subject"] for r in seg] == ["000", "000", "001"]
    assert [r["frame"] for r in seg] == ["2", "1", "1"]
    assert seg[0]["split"] == seg[1]["split"]
    for row in seg:
        mask = np.asarray(Image.open(manifest.resolve(row["mask"]))).astype(bool)
        assert np.array_equal(mask, expected[row["case_id"]])
    assert [r["spacing"] for r in reg] == ["0.25,0.25"] * 3
    assert manifest.metadata["cases_in_source"] == 3
    assert validate_manifest(path).ok
