"""PneumoniaMNIST adapter: npz references, labels and the npz's own split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medfleet.data.catalog import prepare_dataset
from medfleet.data.validate import validate_manifest
from medfleet.errors import ImageReadError, ManifestError
from medfleet.tables import read_table
from medfleet.tasks import Manifest


@pytest.fixture(scope="module")
def npz_path(shared_data: Path) -> Path:
    path = shared_data / "pneumoniamnist" / "pneumoniamnist.npz"
    if not path.is_file():
        pytest.skip("pneumoniamnist not in the shared data")
    return path


def test_pneumoniamnist_full_run_keeps_the_npz_split(npz_path, tmp_path):
    path = prepare_dataset("pneumoniamnist", npz_path.parent, tmp_path / "out", seed=5)
    manifest = Manifest.load(path)
    spec = manifest.task("pneumoniamnist_cls")
    assert spec.classes == ["normal", "pneumonia"]
    rows = read_table(manifest.table_path(spec))
    with np.load(npz_path) as npz:
        sizes = {s: len(npz[f"{s}_labels"]) for s in ("train", "val", "test")}
        labels = {s: npz[f"{s}_labels"].ravel() for s in ("train", "val", "test")}
    assert Counter(r["split"] for r in rows) == sizes
    for row in rows:
        split, index = row["case_id"].split("_")
        assert row["split"] == split
        assert row["image"] == f"{npz_path.resolve()}#key={split}_images&index={int(index)}"
        assert row["label"] == ["normal", "pneumonia"][labels[split][int(index)]]
        assert row["subject"] == row["case_id"]
    # This copy is class-balanced in every split (SOURCE.md).
    for split in sizes:
        counts = Counter(r["label"] for r in rows if r["split"] == split)
        assert counts["normal"] == counts["pneumonia"]


def test_pneumoniamnist_refs_decode_to_the_npz_pixels(npz_path, tmp_path):
    from medfleet.data.io import read_image

    path = prepare_dataset("pneumoniamnist", npz_path, tmp_path / "out", limit=100)
    manifest = Manifest.load(path)
    rows = read_table(manifest.table_path("pneumoniamnist_cls"))
    # Six (split, class) groups of 1214/135/234 scaled to 100 by largest remainder:
    # 38.35/4.26/7.39 each -> 38/4/7, the two spare cases go to the test groups.
    assert Counter(r["split"] for r in rows) == {"train": 76, "val": 8, "test": 16}
    for split in ("train", "val", "test"):
        counts = Counter(r["label"] for r in rows if r["split"] == split)
        assert counts["normal"] == counts["pneumonia"], (split, counts)
    with np.load(npz_path) as npz:
        for row in [*rows[::10], rows[-1]]:
            split, index = row["case_id"].split("_")
            expected = npz[f"{split}_images"][int(index)]
            assert np.array_equal(read_image(row["image"]).array, expected)
    report = validate_manifest(path)
    assert report.ok, [str(p) for p in report.errors]


def _fake_npz(path: Path, **overrides: np.ndarray) -> Path:
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        arrays[f"{split}_images"] = np.arange(n * 16, dtype=np.uint8).reshape(n, 4, 4)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    arrays.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_pneumoniamnist_fake_npz(tmp_path):
    npz = _fake_npz(tmp_path / "src" / "pneumoniamnist.npz")
    path = prepare_dataset("pneumoniamnist", tmp_path / "src", tmp_path / "out")
    rows = read_table(Manifest.load(path).table_path("pneumoniamnist_cls"))
    assert [r["case_id"] for r in rows][:3] == ["train_00000", "train_00001", "train_00002"]
    assert [r["label"] for r in rows][:3] == ["normal", "pneumonia", "normal"]
    assert rows[-1]["image"] == f"{npz.resolve()}#key=test_images&index=1"


def test_pneumoniamnist_bad_npz_is_explained(tmp_path):
    src = tmp_path / "src"
    npz = src / "pneumoniamnist.npz"
    _fake_npz(npz, val_labels=None)
    with pytest.raises(ManifestError, match=r"lacks key\(s\) \['val_labels'\]"):
        prepare_dataset("pneumoniamnist", src, tmp_path / "out")
    _fake_npz(npz, test_labels=np.array([[0], [2]], np.uint8))
    with pytest.raises(ManifestError, match=r"test_labels holds \[2\]"):
        prepare_dataset("pneumoniamnist", src, tmp_path / "out")
    _fake_npz(npz, val_labels=np.zeros((3, 1), np.uint8))
    with pytest.raises(
        ManifestError, match=r"val_images has shape \(2, 4, 4\) but val_labels holds 3"
    ):
        prepare_dataset("pneumoniamnist", src, tmp_path / "out")
    npz.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ImageReadError, match=r"pneumoniamnist\.npz: not a readable npz archive"):
        prepare_dataset("pneumoniamnist", src, tmp_path / "out")
    npz.unlink()
    with pytest.raises(
        ManifestError, match=r"pneumoniamnist\.npz: required file of pneumoniamnist"
    ):
        prepare_dataset("pneumoniamnist", src, tmp_path / "out")


def test_prepare_test_only_puts_every_row_in_test(tmp_path):
    from typer.testing import CliRunner

    from medfleet.cli import app

    _fake_npz(tmp_path / "src" / "pneumoniamnist.npz")
    out = tmp_path / "external"
    result = CliRunner().invoke(
        app,
        ["data", "prepare", "pneumoniamnist", "--src", str(tmp_path / "src"), "--out", str(out),
         "--test-only"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = Manifest.load(out / "manifest.yaml")
    rows = read_table(manifest.table_path("pneumoniamnist_cls"))
    assert rows and {r["split"] for r in rows} == {"test"}
    assert "test-only" in manifest.metadata["split"]
    assert validate_manifest(out / "manifest.yaml").ok
