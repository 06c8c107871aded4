"""Datasets over manifest tables: geometry, targets, normalisation, channels and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medfleet.data.io import read_image, write_png
from medfleet.tables import parse_boxes, read_table, write_table
from medfleet.tasks import Manifest, Site, TaskSpec
from medfleet.train.datasets import (
    DataError,
    TaskDataset,
    collate,
    load_task_rows,
    normalise,
)
from medfleet.train.geometry import Geometry, resize_nearest


def _manifest(root: Path, spec: TaskSpec, rows: list[dict]) -> Manifest:
    write_table(root / spec.table, rows)
    manifest = Manifest(name="t", sites=[Site(name="a")], tasks=[spec])
    return Manifest.load(manifest.save(root / "manifest.yaml"))


def _row(case: str, image: str, split: str = "train", **extra: str) -> dict:
    return {"case_id": case, "image": image, "site": "a", "split": split, "subject": case, **extra}


# ---------------------------------------------------------------------------- geometry


def test_geometry_keeps_aspect_and_pads_bottom_right():
    g = Geometry.fit((20, 40), 16)
    assert g.resized == (8, 16) and g.size == (16, 16)
    assert g.scale == (0.4, 0.4)
    # hand-computed: x' = (x + 0.5) * 0.4 - 0.5
    assert g.points_to_model(np.array([[9.5, 4.5]])).tolist() == [[3.5, 1.5]]
    assert g.boxes_to_model(np.array([[0, 0, 40, 20]])).tolist() == [[0, 0, 16, 8]]


def test_mask_resize_agrees_with_point_and_box_mapping():
    mask = np.zeros((30, 50), np.uint8)
    mask[6:18, 11:31] = 1  # rows 6..17, cols 11..30
    g = Geometry.fit(mask.shape, 20)
    small = resize_nearest(mask, g.resized)
    rows, cols = np.nonzero(small)
    centroid_model = np.array([cols.mean(), rows.mean()])
    centroid = g.points_to_model(np.array([[np.mean([11, 30]), np.mean([6, 17])]]))[0]
    assert np.abs(centroid_model - centroid).max() <= 0.5
    tight = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], float)
    mapped = g.boxes_to_model(np.array([[11, 6, 31, 18]]))[0]
    assert np.abs(tight - mapped).max() <= 1.0


def test_geometry_inverse_is_exact():
    g = Geometry.fit((37, 23), 32)
    pts = np.array([[0.0, 0.0], [22.0, 36.0], [7.25, 3.5]])
    np.testing.assert_allclose(g.points_from_model(g.points_to_model(pts)), pts, atol=1e-9)
    boxes = np.array([[1.0, 2.0, 20.0, 30.0]])
    np.testing.assert_allclose(g.boxes_from_model(g.boxes_to_model(boxes)), boxes, atol=1e-9)


def test_zscore_normalisation():
    pixels = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    out = normalise(pixels, "zscore")
    assert abs(out.mean()) < 1e-6 and abs(out.std() - 1) < 1e-6
    assert normalise(np.full((1, 2, 2), 5.0), "zscore").tolist() == [[[0.0, 0.0], [0.0, 0.0]]]
    assert normalise(pixels, "minmax").max() == 1.0


# ---------------------------------------------------------------------------- targets


def test_landmark_and_class_targets_by_hand(tmp_path):
    image = np.zeros((20, 40), np.uint8)
    image[:, 20:] = 200
    write_png(tmp_path / "a.png", image)
    spec = TaskSpec(name="lm", type="landmarks", table="lm.csv", landmarks=["p", "q"])
    manifest = _manifest(tmp_path, spec, [_row("a", "a.png", landmarks="9.5,4.5;")])
    sample = TaskDataset(manifest, "lm", ("train",), 16)[0]
    assert tuple(sample.image.shape) == (1, 16, 16)
    assert sample.image[:, 8:].abs().sum() == 0  # padding rows stay zero
    target = sample.target.numpy()
    assert target[0].tolist() == [3.5, 1.5]
    assert np.isnan(target[1]).all()  # missing landmark stays missing


def test_segmentation_target_encodes_labels_and_ignores_padding(tmp_path):
    image = np.zeros((8, 16), np.uint8)
    mask = np.zeros((8, 16), np.uint8)
    mask[:, 8:] = 5
    write_png(tmp_path / "i.png", image)
    write_png(tmp_path / "m.png", mask, label=True)
    spec = TaskSpec(name="s", type="segmentation", table="s.csv", labels={0: "bg", 5: "organ"})
    manifest = _manifest(tmp_path, spec, [_row("c", "i.png", mask="m.png")])
    target = TaskDataset(manifest, "s", ("train",), 8)[0].target
    expected = np.full((8, 8), -1)
    expected[:4, :4] = 0
    expected[:4, 4:] = 1
    assert torch.equal(target, torch.as_tensor(expected))


def test_detection_targets_match_instance_masks(tiny_phantoms):
    manifest = Manifest.load(tiny_phantoms)
    ds = TaskDataset(manifest, "nodule_det", ("train",), 24)
    classes = manifest.task("nodule_det").classes
    for i, row in enumerate(ds.rows):
        sample = ds[i]
        instances = read_image(manifest.resolve(row["instance_mask"])).array
        small = resize_nearest(instances, sample.geometry.resized)
        boxes = sample.target["boxes"].numpy()
        truth = parse_boxes(row["boxes"])
        assert [classes[k] for k in sample.target["labels"].tolist()] == [b.label for b in truth]
        for k in range(1, len(truth) + 1):
            rows, cols = np.nonzero(small == k)
            if rows.size == 0:  # a blob thinner than a model pixel may vanish
                continue
            tight = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert np.abs(boxes[k - 1] - tight).max() <= 1.5


def test_rgb_images_become_grey_and_grey_images_repeat(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 100
    write_png(tmp_path / "rgb.png", rgb)
    write_png(tmp_path / "grey.png", np.full((4, 4), 7, np.uint8))
    one = TaskSpec(name="c", type="classification", table="c.csv", classes=["x", "y"])
    manifest = _manifest(tmp_path, one, [_row("a", "rgb.png", label="x")])
    ds = TaskDataset(manifest, "c", ("train",), 4, normalisation="none")
    assert ds[0].image.shape == (1, 4, 4) and ds[0].channels_in_file == 3
    assert float(ds[0].image[0, 0, 0]) == pytest.approx(29.9, abs=1e-4)  # 0.299 * 100
    three = TaskSpec(name="c", type="classification", table="c.csv", classes=["x", "y"],
                     channels=3)  # fmt: skip
    manifest = _manifest(tmp_path, three, [_row("a", "grey.png", label="y")])
    image = TaskDataset(manifest, "c", ("train",), 4, normalisation="none")[0].image
    assert image.shape == (3, 4, 4) and float(image.min()) == float(image.max()) == 7.0


def test_unlabelled_rows_are_left_out_of_training(tiny_phantoms, tmp_path):
    manifest = Manifest.load(tiny_phantoms)
    spec = manifest.task("head_circumference")
    rows = read_table(manifest.table_path(spec))
    rows[0]["value"] = ""
    for row in rows:
        row["image"] = str(manifest.resolve(row["image"]))
    copy = _manifest(tmp_path, spec.model_copy(update={"table": Path("hc.csv")}), rows)
    n_train = sum(r["split"] == "train" for r in rows)
    labelled = TaskDataset(copy, spec.name, ("train",), 16)
    everything = TaskDataset(copy, spec.name, ("train",), 16, labelled_only=False)
    assert len(everything) == n_train
    assert len(labelled) == n_train - (rows[0]["split"] == "train")
    batch = collate(spec, [everything[i] for i in range(len(everything))])
    assert batch.images.shape == (n_train, 1, 16, 16)


# ---------------------------------------------------------------------------- bad input


def test_missing_target_column_is_named(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    spec = TaskSpec(name="hc", type="regression", table="hc.csv", unit="mm")
    manifest = _manifest(tmp_path, spec, [_row("a", "a.png", circumference="3")])
    with pytest.raises(DataError) as err:
        load_task_rows(manifest, "hc", ("train",))
    message = str(err.value)
    assert "'value'" in message and "hc.csv" in message and "fix:" in message


def test_mixed_channel_counts_are_an_error(tmp_path):
    write_png(tmp_path / "grey.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    spec = TaskSpec(name="c", type="classification", table="c.csv", classes=["x", "y"])
    rows = [_row("a", "grey.png", label="x"), _row("b", "rgb.png", label="y")]
    ds = TaskDataset(_manifest(tmp_path, spec, rows), "c", ("train",), 4)
    with pytest.raises(DataError) as err:
        ds.check()
    message = str(err.value)
    assert "mixed channel counts" in message and "rgb.png" in message and "grey.png" in message


def test_label_outside_classes_names_the_case(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    spec = TaskSpec(name="c", type="classification", table="c.csv", classes=["x", "y"])
    ds = TaskDataset(_manifest(tmp_path, spec, [_row("case7", "a.png", label="z")]), "c",
                     ("train",), 4)  # fmt: skip
    with pytest.raises(DataError, match=r"case 'case7'.*'z' is not one of"):
        ds.check()


def test_mask_label_outside_labels(tmp_path):
    write_png(tmp_path / "i.png", np.zeros((4, 4), np.uint8))
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 3
    write_png(tmp_path / "m.png", mask, label=True)
    spec = TaskSpec(name="s", type="segmentation", table="s.csv", labels={0: "bg", 1: "a"})
    ds = TaskDataset(_manifest(tmp_path, spec, [_row("c", "i.png", mask="m.png")]), "s",
                     ("train",), 4)  # fmt: skip
    with pytest.raises(DataError, match=r"label value\(s\) \[3\] outside"):
        ds.check()


def test_no_training_rows_is_an_error(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    spec = TaskSpec(name="c", type="classification", table="c.csv", classes=["x", "y"])
    manifest = _manifest(tmp_path, spec, [_row("a", "a.png", split="test", label="x")])
    with pytest.raises(DataError, match="no labelled rows in split"):
        TaskDataset(manifest, "c", ("train",), 4)
