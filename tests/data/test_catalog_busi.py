"""BUSI adapter: labels, stratified split, duplicate handling, optional masks."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfleet.data.catalog import prepare_dataset
from medfleet.data.validate import validate_manifest
from medfleet.errors import ImageReadError, ManifestError
from medfleet.tables import read_table
from medfleet.tasks import Manifest

CLASSES = ["benign", "malignant", "normal"]


@pytest.fixture(scope="module")
def busi_src(shared_data: Path) -> Path:
    src = shared_data / "busi"
    if not (src / "labels.csv").is_file():
        pytest.skip("busi not in the shared data")
    return src


@pytest.fixture(scope="module")
def busi_full(busi_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_dataset("busi", busi_src, tmp_path_factory.mktemp("busi"))


def _labels(src: Path) -> dict[str, str]:
    with open(src / "labels.csv", newline="") as fh:
        return {row["image"]: row["label"] for row in csv.DictReader(fh)}


def _check_stratified(rows: list[dict[str, str]], val: float = 0.15, test: float = 0.15) -> None:
    per_class = defaultdict(Counter)
    for row in rows:
        per_class[row["label"]][row["split"]] += 1
    for label, counts in per_class.items():
        n = sum(counts.values())
        assert abs(counts["test"] - test * n) <= 1, (label, counts)
        assert abs(counts["val"] - val * n) <= 1, (label, counts)


def test_busi_full_run(busi_src, busi_full):
    manifest = Manifest.load(busi_full)
    assert [t.name for t in manifest.tasks] == ["busi_cls"]  # no masks in this copy
    assert manifest.task("busi_cls").classes == CLASSES
    assert manifest.site_names == ["busi"]
    rows = read_table(manifest.table_path("busi_cls"))
    labels = _labels(busi_src)
    # The one pixel-identical pair of BUSI has conflicting labels: both are left out.
    excluded = {e["image"] for e in manifest.metadata["excluded"]}
    assert excluded == {"benign/benign (433).png", "malignant/malignant (145).png"}
    assert len(rows) == len(labels) - 2
    assert {r["source_file"] for r in rows} == set(labels) - excluded
    for row in rows:
        assert row["label"] == labels[row["source_file"]]
        assert row["image"] == str((busi_src / row["source_file"]).resolve())
        assert row["subject"] == row["case_id"] and row["duplicates"] == ""
    expected = Counter(v for k, v in labels.items() if k not in excluded)
    assert Counter(r["label"] for r in rows) == expected
    _check_stratified(rows)
    assert len({r["case_id"] for r in rows}) == len(rows)


def test_busi_colour_marks_flag_matches_the_pixels(busi_src, busi_full):
    rows = read_table(Manifest.load(busi_full).table_path("busi_cls"))
    marked = [r for r in rows if r["colour_marks"] == "1"]
    assert 0 < len(marked) < 40
    plain = [r for r in rows if r["colour_marks"] == "0"][::50]
    for row in marked + plain:
        rgb = np.asarray(Image.open(row["image"]).convert("RGB")).astype(int)
        differs = bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())
        assert differs == (row["colour_marks"] == "1"), row["case_id"]


def test_busi_limited_run_is_stratified_and_valid(busi_src, tmp_path):
    from medfleet.data.io import read_image

    path = prepare_dataset("busi", busi_src, tmp_path / "busi", limit=60, seed=7)
    rows = read_table(Manifest.load(path).table_path("busi_cls"))
    assert len(rows) == 60
    source = Counter(_labels(busi_src).values())
    total = sum(source.values())
    for label, count in Counter(r["label"] for r in rows).items():
        assert abs(count - 60 * source[label] / total) < 1
    _check_stratified(rows)
    assert read_image(rows[0]["image"]).array.shape[:2] == (256, 256)
    report = validate_manifest(path)
    assert report.ok, [str(p) for p in report.errors]


def test_busi_is_deterministic_and_seeded(busi_src, tmp_path):
    a = prepare_dataset("busi", busi_src, tmp_path / "a", limit=40, seed=1)
    b = prepare_dataset("busi", busi_src, tmp_path / "b", limit=40, seed=1)
    c = prepare_dataset("busi", busi_src, tmp_path / "c", limit=40, seed=2)
    table = "busi_cls.csv"
    assert (a.parent / table).read_bytes() == (b.parent / table).read_bytes()
    assert a.read_bytes() == b.read_bytes()
    splits_a = [r["split"] for r in read_table(a.parent / table)]
    splits_c = [r["split"] for r in read_table(c.parent / table)]
    assert splits_a != splits_c


# -- a fake BUSI download with masks, written by the test ----------------------------------


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _write_fake_busi(root: Path) -> dict[str, np.ndarray]:
    """Class folders with masks beside the images (original BUSI layout); returns masks."""
    rng = np.random.default_rng(0)
    images = {name: rng.integers(0, 255, (16, 20), dtype=np.uint8) for name in "abcdegh"}
    images["f"] = images["b"]  # same label as b: one subject
    images["h"] = images["g"]  # g malignant, h normal: conflicting labels
    layout = {
        "benign": {"a": "benign (1)", "b": "benign (2)", "f": "benign (3)"},
        "malignant": {"c": "malignant (1)", "g": "malignant (2)"},
        "normal": {"d": "normal (1)", "e": "normal (2)", "h": "normal (3)"},
    }
    m1 = np.zeros((16, 20), np.uint8)
    m1[2:6, 3:9] = 255
    m2 = np.zeros((16, 20), np.uint8)
    m2[8:12, 10:15] = 255
    masks = {"a": [m1, m2], "b": [m2], "c": [m1], "d": [np.zeros((16, 20), np.uint8)]}
    for label, names in layout.items():
        for key, stem in names.items():
            _png(root / label / f"{stem}.png", np.stack([images[key]] * 3, axis=-1))
            for k, mask in enumerate(masks.get(key, [])):
                suffix = "_mask" if k == 0 else f"_mask_{k}"
                _png(root / label / f"{stem}{suffix}.png", mask)
    return {
        "benign_1": (m1 > 0) | (m2 > 0),
        "benign_2": m2 > 0,
        "malignant_1": m1 > 0,
        "normal_1": np.zeros((16, 20), bool),
    }


def test_busi_fake_download_with_masks_and_duplicates(tmp_path):
    expected_masks = _write_fake_busi(tmp_path / "src")
    path = prepare_dataset("busi", tmp_path / "src", tmp_path / "out")
    manifest = Manifest.load(path)
    assert [t.name for t in manifest.tasks] == ["busi_cls", "busi_seg"]
    assert manifest.task("busi_seg").labels == {0: "background", 1: "lesion"}
    cls = {r["case_id"]: r for r in read_table(manifest.table_path("busi_cls"))}
    seg = {r["case_id"]: r for r in read_table(manifest.table_path("busi_seg"))}
    assert sorted(cls) == [
        "benign_1",
        "benign_2",
        "benign_3",
        "malignant_1",
        "normal_1",
        "normal_2",
    ]
    assert {e["case_id"] for e in manifest.metadata["excluded"]} == {"malignant_2", "normal_3"}
    assert cls["benign_2"]["subject"] == cls["benign_3"]["subject"] == "benign_2"
    assert cls["benign_2"]["split"] == cls["benign_3"]["split"]
    assert cls["benign_3"]["duplicates"] == "benign_2"
    assert sorted(seg) == sorted(expected_masks)
    assert seg["benign_1"]["mask_files"] == "2"
    for case_id, expected in expected_masks.items():
        mask = np.asarray(Image.open(manifest.resolve(seg[case_id]["mask"])))
        assert np.array_equal(mask, expected.astype(np.uint8)), case_id
        assert seg[case_id]["split"] == cls[case_id]["split"]
    report = validate_manifest(path)
    assert report.ok, [str(p) for p in report.errors]


def test_busi_mask_of_the_wrong_size_is_named(tmp_path):
    src = tmp_path / "src"
    _png(src / "benign" / "benign (1).png", np.zeros((8, 8), np.uint8))
    _png(src / "benign" / "benign (1)_mask.png", np.zeros((9, 8), np.uint8))
    _png(src / "normal" / "normal (1).png", np.full((8, 8), 9, np.uint8))
    with pytest.raises(
        ImageReadError, match=r"benign \(1\)_mask\.png.*mask shape \(9, 8\) differs"
    ):
        prepare_dataset("busi", src, tmp_path / "out")


def test_busi_unknown_label_and_missing_image_are_named(tmp_path):
    src = tmp_path / "src"
    _png(src / "benign" / "x.png", np.zeros((8, 8), np.uint8))
    (src / "labels.csv").write_text("image,label\nbenign/x.png,benign\nbenign/y.png,cyst\n")
    with pytest.raises(ManifestError, match=r"labels\.csv: line 3 \(benign/y\.png\): label 'cyst'"):
        prepare_dataset("busi", src, tmp_path / "out")
    (src / "labels.csv").write_text("image,label\nbenign/x.png,benign\nbenign/y.png,benign\n")
    with pytest.raises(ManifestError, match=r"line 3: image .*benign/y\.png is missing"):
        prepare_dataset("busi", src, tmp_path / "out")
    (src / "labels.csv").write_text("image,class\nbenign/x.png,benign\n")
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['label'\]"):
        prepare_dataset("busi", src, tmp_path / "out")
