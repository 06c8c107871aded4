"""prepare_dataset: the registry, and what each adapter says about an unusable source folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfleet.data.catalog import ADAPTERS, prepare_dataset
from medfleet.errors import ImageReadError, ManifestError, MedfleetError


def test_registry_names():
    assert sorted(ADAPTERS) == ["busi", "hc18", "kvasir_seg", "pneumoniamnist"]
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name and adapter.summary and adapter.expects


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(MedfleetError) as info:
        prepare_dataset("hc19", tmp_path, tmp_path / "out")
    assert (
        str(info.value) == "unknown data set 'hc19'; known: busi, hc18, kvasir_seg, pneumoniamnist"
    )


@pytest.mark.parametrize(
    ("name", "expects"),
    [
        ("hc18", "training_set_pixel_size_and_HC.csv and the training images"),
        ("busi", "labels.csv (columns image,label"),
        ("pneumoniamnist", "pneumoniamnist.npz with keys train_images"),
        ("kvasir_seg", "images/<id>.jpg and masks/<id>.jpg"),
    ],
)
def test_missing_source_folder_says_what_it_should_hold(tmp_path, name, expects):
    missing = tmp_path / "nowhere"
    with pytest.raises(ManifestError) as info:
        prepare_dataset(name, missing, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{missing}: source folder of {name} not found")
    assert expects in message


def test_hc18_missing_csv_is_named(tmp_path):
    (tmp_path / "src" / "images").mkdir(parents=True)
    with pytest.raises(ManifestError) as info:
        prepare_dataset("hc18", tmp_path / "src", tmp_path / "out")
    csv_path = tmp_path / "src" / "training_set_pixel_size_and_HC.csv"
    assert str(info.value).startswith(f"{csv_path}: required file of hc18 is missing")


def test_hc18_csv_with_wrong_header_is_named(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "training_set_pixel_size_and_HC.csv").write_text("filename,pixel size\n000_HC.png,0.1\n")
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['pixel size\(mm\)', 'head circ"):
        prepare_dataset("hc18", src, tmp_path / "out")


def test_hc18_without_any_listed_image(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "training_set_pixel_size_and_HC.csv").write_text(
        "filename,pixel size(mm),head circumference (mm)\n000_HC.png,0.1,50\n001_HC.png,0.1,60\n"
    )
    with pytest.raises(ManifestError, match=r"none of the 2 images listed in training_set_pixel"):
        prepare_dataset("hc18", src, tmp_path / "out")


def _hc18_with_one_image(src: Path, annotation: np.ndarray | None, hc: str = "50") -> None:
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(src / "images" / "007_HC.png")
    if annotation is not None:
        Image.fromarray(annotation).save(src / "annotations" / "007_HC_Annotation.png")
    (src / "training_set_pixel_size_and_HC.csv").write_text(
        f"filename,pixel size(mm),head circumference (mm)\n007_HC.png,0.1,{hc}\n"
    )


def test_hc18_missing_annotation_is_named(tmp_path):
    _hc18_with_one_image(tmp_path / "src", None)
    with pytest.raises(
        ManifestError, match=r"outline 007_HC_Annotation\.png of 007_HC\.png is missing"
    ):
        prepare_dataset("hc18", tmp_path / "src", tmp_path / "out")


def test_hc18_empty_annotation_is_named(tmp_path):
    _hc18_with_one_image(tmp_path / "src", np.zeros((30, 40), np.uint8))
    with pytest.raises(ImageReadError) as info:
        prepare_dataset("hc18", tmp_path / "src", tmp_path / "out")
    assert "007_HC_Annotation.png" in str(info.value)
    assert "outline image is empty" in str(info.value)


def test_hc18_bad_number_is_named(tmp_path):
    _hc18_with_one_image(tmp_path / "src", np.zeros((30, 40), np.uint8), hc="n/a")
    with pytest.raises(
        ManifestError, match=r"line 2 \(007_HC\.png\): head circumference \(mm\) 'n/a'"
    ):
        prepare_dataset("hc18", tmp_path / "src", tmp_path / "out")


def test_busi_without_labels_or_class_folders(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ManifestError) as info:
        prepare_dataset("busi", tmp_path / "src", tmp_path / "out")
    labels = tmp_path / "src" / "labels.csv"
    assert str(info.value).startswith(
        f"{labels}: required file of busi is missing and there are no class folders"
    )


def test_output_inside_the_source_is_refused(tmp_path):
    _hc18_with_one_image(tmp_path / "src", None)
    with pytest.raises(MedfleetError, match="output folder is inside the source folder"):
        prepare_dataset("hc18", tmp_path / "src", tmp_path / "src" / "prepared")


def test_bad_fraction_through_prepare_dataset(tmp_path):
    with pytest.raises(MedfleetError, match=re.escape("test_fraction = 1.5 must be in [0, 1)")):
        prepare_dataset("busi", tmp_path, tmp_path / "out", test_fraction=1.5)


def test_progress_reaches_the_total(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    for k in range(3):
        mask = np.zeros((10, 10), np.uint8)
        mask[k : k + 4, 2:6] = 255
        Image.fromarray(np.full((10, 10, 3), k, np.uint8)).save(src / "images" / f"c{k}.png")
        Image.fromarray(mask).save(src / "masks" / f"c{k}.png")
    calls: list[tuple[int, int]] = []
    prepare_dataset("kvasir_seg", src, tmp_path / "out", progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
