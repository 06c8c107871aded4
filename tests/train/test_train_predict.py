"""Prediction files round-trip through ``medfleet evaluate``; predictions map back to images."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from medfleet.data.io import read_image
from medfleet.tables import parse_boxes, parse_float, parse_landmarks, parse_spacing
from medfleet.tasks import Manifest
from medfleet.train.datasets import TaskDataset
from medfleet.train.predict import (
    CasePrediction,
    PredictionRun,
    evaluate_predictions,
    label_values,
    predict_manifest,
    to_original,
    write_task_predictions,
    write_task_reference,
)


def _perfect(manifest: Manifest, spec, row: dict) -> CasePrediction:
    """The truth of a row written as a prediction (an independent oracle for the formats)."""
    spacing = parse_spacing(row["spacing"])
    p = CasePrediction(case_id=row["case_id"], runtime_s=0.01, spacing=spacing)
    kind = spec.type.value
    if kind == "segmentation":
        p.mask = read_image(manifest.resolve(row["mask"])).array.astype(np.int64)
        values = label_values(spec)
        p.probs = np.stack([(p.mask == v).astype(np.float32) for v in values])
    elif kind == "classification":
        p.label = row["label"]
        p.probs = np.array([float(c == row["label"]) for c in spec.classes])
    elif kind == "detection":
        boxes = parse_boxes(row["boxes"])
        p.boxes = np.array([b.coords for b in boxes])
        p.scores = np.linspace(0.9, 0.5, len(boxes))
        p.box_labels = [b.label for b in boxes]
    elif kind == "regression":
        p.value = parse_float(row["value"])
    else:
        p.landmarks = parse_landmarks(row["landmarks"])
    return p


def test_perfect_predictions_score_perfectly_with_medfleet_evaluate(tiny_phantoms, tmp_path):
    manifest = Manifest.load(tiny_phantoms)
    infos = {}
    for spec in manifest.tasks:
        rows = TaskDataset(manifest, spec, ("test",), 16).rows
        preds = [_perfect(manifest, spec, r) for r in rows]
        info = write_task_predictions(spec, preds, tmp_path / spec.name)
        info.update(write_task_reference(manifest, spec, rows, tmp_path / spec.name))
        infos[spec.name] = info
    results = evaluate_predictions(
        manifest, PredictionRun(tmp_path, "test", infos), tmp_path / "eval", report=False
    )
    assert set(results) == {t.name for t in manifest.tasks}
    for name, result in results.items():
        summary = result["summary"]
        kind = summary["task_type"]
        dataset = summary["dataset"]
        if kind == "segmentation":
            for label in manifest.task(name).foreground_labels:
                assert summary["metrics"][str(label)]["dice"]["mean"] == 1.0
        elif kind == "classification":
            assert dataset["accuracy"] == 1.0
        elif kind == "detection":
            assert dataset["detection_rate"] == 1.0
        elif kind == "regression":
            assert dataset["mae"] == 0.0
        else:
            assert dataset["mre"] == 0.0 and dataset["unit"] == "mm"


def test_model_grid_predictions_map_back_to_the_image(tiny_phantoms):
    manifest = Manifest.load(tiny_phantoms)
    for name in ("spine_landmarks", "nodule_det", "organ_lesion_seg"):
        spec = manifest.task(name)
        ds = TaskDataset(manifest, spec, ("train",), 24)
        row, sample = ds.rows[0], ds[0]
        if name == "spine_landmarks":
            pred = to_original(spec, sample.target.numpy(), sample.geometry, "c", (1.0, 1.0))
            np.testing.assert_allclose(pred.landmarks, parse_landmarks(row["landmarks"]), atol=1e-6)
        elif name == "nodule_det":
            t = sample.target
            decoded = [
                (box, 0.9, spec.classes[int(k)])
                for box, k in zip(t["boxes"].numpy(), t["labels"], strict=True)
            ]
            pred = to_original(spec, decoded, sample.geometry, "c", (1.0, 1.0))
            truth = np.array([b.coords for b in parse_boxes(row["boxes"])])
            np.testing.assert_allclose(pred.boxes, truth, atol=1e-4)
            assert pred.box_labels == [b.label for b in parse_boxes(row["boxes"])]
        else:
            index = sample.target.numpy()
            k = len(spec.labels)
            probs = np.stack([(index == i).astype(np.float32) for i in range(k)])
            probs[0][index < 0] = 1.0  # padding: background
            pred = to_original(spec, {"probs": probs}, sample.geometry, "c", (1.0, 1.0))
            truth = read_image(manifest.resolve(row["mask"])).array
            assert pred.mask.shape == truth.shape
            for label in spec.foreground_labels:
                a, b = pred.mask == label, truth == label
                assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85


def test_predict_manifest_writes_what_evaluate_reads(tiny_phantoms, tmp_path):
    from medfleet.models import ModelConfig, build_model

    manifest = Manifest.load(tiny_phantoms)
    tasks = ["organ_lesion_seg", "lesion_cls", "nodule_det", "head_circumference",
             "spine_landmarks"]  # fmt: skip
    model = build_model(manifest, ModelConfig(image_size=32), tasks=tasks)
    model.set_target_stats("head_circumference", 200.0, 30.0)
    run = predict_manifest(model, manifest, tmp_path, image_size=32, batch_size=2)
    assert (tmp_path / "predictions.json").is_file()
    for name in tasks:
        info = run.tasks[name]
        n_test = len(TaskDataset(manifest, name, ("test",), 32).rows)
        assert info["n_cases"] == info["n_reference"] == n_test
        assert info["runtime_s_mean"] > 0
        with open(info["predictions"], newline="") as fh:
            header = next(csv.reader(fh))
        assert header[0] == "case_id" and header[-1] == "runtime_s"
        assert "medfleet evaluate --task-type" in info["evaluate"]
    seg = tmp_path / "organ_lesion_seg"
    assert len(list((seg / "masks").glob("*.png"))) == len(list((seg / "probs").glob("*.npz")))
    probs = np.load(next((seg / "probs").glob("*.npz")))
    assert probs["probs"].shape[0] == 3 and probs["labels"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(probs["probs"].astype(np.float32).sum(axis=0), 1.0, atol=5e-3)
    with open(tmp_path / "lesion_cls" / "predictions.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    probs_cls = [float(row[f"prob_{c}"]) for c in manifest.task("lesion_cls").classes]
    assert sum(probs_cls) == pytest.approx(1.0, abs=1e-5)
    results = evaluate_predictions(manifest, run, report=False)
    assert set(results) == set(tasks)
    assert all((tmp_path / "evaluation" / t / "summary.json").is_file() for t in tasks)


@pytest.mark.parametrize(
    ("shape", "size"),
    [((30, 20), 30), ((20, 30), 30), ((15, 10), 30), ((12, 7), 36), ((24, 24), 48)],
)
def test_a_known_mask_round_trips_exactly_through_the_model_grid(shape, size):
    """Aspect kept, padding at the bottom/right, integer scale: the way back is exact."""
    from medfleet.tasks import TaskSpec
    from medfleet.train.geometry import Geometry, resize_nearest

    rng = np.random.default_rng(sum(shape))
    mask = rng.choice([0, 1, 3], size=shape, p=[0.5, 0.3, 0.2]).astype(np.int64)
    spec = TaskSpec(name="s", type="segmentation", table="s.csv", labels={0: "bg", 1: "a", 3: "b"})
    geometry = Geometry.fit(shape, size)
    assert geometry.size == (size, size)
    assert geometry.resized[0] / shape[0] == geometry.resized[1] / shape[1]  # no squashing
    grid = np.zeros((size, size), dtype=np.int64)
    grid[: geometry.resized[0], : geometry.resized[1]] = resize_nearest(mask, geometry.resized)
    values = label_values(spec)
    probs = np.stack([(grid == v).astype(np.float32) for v in values])
    pred = to_original(spec, {"probs": probs}, geometry, "case", (1.0, 1.0))
    assert pred.mask.shape == shape
    np.testing.assert_array_equal(pred.mask, mask)
