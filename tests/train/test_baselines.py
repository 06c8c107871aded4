"""Trivial baselines on hand-made data: fitted on train, scored on test, values known by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medfleet.data.io import write_png
from medfleet.errors import MedfleetError
from medfleet.tables import write_table
from medfleet.tasks import Manifest, Site, TaskSpec
from medfleet.train.baselines import (
    baseline_summary,
    compare_with_baseline,
    fit_baseline,
    label_frequencies,
    majority_class,
    mean_box,
    predict_baselines,
)
from medfleet.train.paradigms import headline
from medfleet.train.predict import evaluate_predictions


def _manifest(
    root: Path, spec: TaskSpec, rows: list[dict], images: dict[str, np.ndarray]
) -> Manifest:
    """Write one task's images (``images``: relative path -> array) and table; load it."""
    for rel, array in images.items():
        write_png(root / rel, array, label=rel.startswith("masks/"))
    write_table(root / spec.table, [{"site": "s", "subject": r["case_id"], **r} for r in rows])
    return Manifest.load(
        Manifest(name="hand", sites=[Site(name="s")], tasks=[spec]).save(root / "m.yaml")
    )


def _score(manifest: Manifest, out: Path) -> dict:
    run, fitted = predict_baselines(manifest, out / "predictions")
    scored = evaluate_predictions(manifest, run, out / "evaluation", report=False)
    (task,) = scored
    return {"fitted": fitted[task], "run": run.tasks[task], **headline(scored[task]["summary"])}


def _rows(split_values: list[tuple[str, str]], column: str) -> tuple[list[dict], dict]:
    rows = [
        {"case_id": f"c{i}", "image": f"img/c{i}.png", "split": split, column: value}
        for i, (split, value) in enumerate(split_values)
    ]
    return rows, {r["image"]: np.full((8, 8), 100, np.uint8) for r in rows}


def test_majority_class_scores_balanced_accuracy_one_over_k_and_auc_half(tmp_path: Path) -> None:
    spec = TaskSpec(name="c", type="classification", table="c.csv", classes=["a", "b", "c"])
    labels = [("train", "a"), ("train", "a"), ("train", "b"), ("train", "c"), ("val", "b")]
    rows, images = _rows([*labels, ("test", "a"), ("test", "b"), ("test", "c")], "label")
    result = _score(_manifest(tmp_path, spec, rows, images), tmp_path)
    assert result["fitted"].label == "a"  # the val row does not count
    assert result["fitted"].probs.tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert result["balanced_accuracy"] == pytest.approx(1 / 3)
    auc = result.get("auc", result.get("auc_macro"))
    assert auc == pytest.approx(0.5)
    assert result["run"]["n_cases"] == 3 and result["run"]["n_reference"] == 3


def test_training_mean_scores_mae_by_hand(tmp_path: Path) -> None:
    spec = TaskSpec(name="r", type="regression", table="r.csv", unit="mm")
    values = [("train", "10"), ("train", "20"), ("train", "30"), ("val", "1000")]
    rows, images = _rows([*values, ("test", "15"), ("test", "35")], "value")
    result = _score(_manifest(tmp_path, spec, rows, images), tmp_path)
    assert result["fitted"].value == pytest.approx(20.0)
    assert result["mae"] == pytest.approx((5 + 15) / 2)


def test_mean_shape_scores_mre_by_hand(tmp_path: Path) -> None:
    spec = TaskSpec(name="l", type="landmarks", table="l.csv", landmarks=["p", "q"])
    points = [("train", "0,0;10,0"), ("train", "2,2;12,2"), ("test", "1,4;11,1")]
    rows, images = _rows(points, "landmarks")
    for row in rows:
        row["spacing"] = "1,1"
    result = _score(_manifest(tmp_path, spec, rows, images), tmp_path)
    assert result["fitted"].landmarks.tolist() == [[1.0, 1.0], [11.0, 1.0]]
    assert result["mre"] == pytest.approx((3.0 + 0.0) / 2)  # 3 mm off, then exact


def test_pixelwise_majority_mask_scores_dice_by_hand(tmp_path: Path) -> None:
    spec = TaskSpec(name="s", type="segmentation", table="s.csv", labels={0: "bg", 1: "fg"})
    left = np.zeros((4, 4), np.uint8)
    left[:, :2] = 1
    quarter = np.zeros((8, 8), np.uint8)
    quarter[:4, :4] = 1  # 16 pixels, all inside the predicted left half (32 pixels)
    masks = {"masks/t0.png": left, "masks/t1.png": left, "masks/t2.png": np.zeros((4, 4))}
    masks["masks/x0.png"] = quarter
    rows = [
        {"case_id": Path(m).stem, "image": f"img/{Path(m).stem}.png", "mask": m, "split": split}
        for m, split in zip(masks, ["train", "train", "train", "test"], strict=True)
    ]
    images = {r["image"]: np.full(masks[r["mask"]].shape, 9, np.uint8) for r in rows}
    result = _score(_manifest(tmp_path, spec, rows, {**images, **masks}), tmp_path)
    predicted = result["fitted"].predict("x0", (8, 8), (1.0, 1.0)).mask
    assert predicted[:, :4].all() and not predicted[:, 4:].any()  # resized to the test grid
    assert result["dice"] == pytest.approx(2 * 16 / (16 + 32))


def test_mean_box_mapped_back_scores_ap50_by_hand(tmp_path: Path) -> None:
    spec = TaskSpec(name="d", type="detection", table="d.csv", classes=["n"])
    rows = [
        {"case_id": "t0", "image": "img/t0.png", "split": "train", "boxes": "n:0,0,4,4"},
        {"case_id": "t1", "image": "img/t1.png", "split": "train", "boxes": "n:10,10,18,18"},
        {"case_id": "x0", "image": "img/x0.png", "split": "test", "boxes": "n:5,5,13,13"},
        {"case_id": "x1", "image": "img/x1.png", "split": "test", "boxes": "n:0,0,3,3"},
    ]
    sizes = {"t0": 10, "t1": 20, "x0": 20, "x1": 20}
    images = {r["image"]: np.zeros((sizes[r["case_id"]],) * 2, np.uint8) for r in rows}
    result = _score(_manifest(tmp_path, spec, rows, images), tmp_path)
    assert result["fitted"].box.tolist() == pytest.approx([0.25, 0.25, 0.65, 0.65])
    assert result["fitted"].box_label == "n"
    boxes = result["fitted"].predict("x0", (20, 20), (1.0, 1.0)).boxes
    assert boxes[0].tolist() == pytest.approx([5.0, 5.0, 13.0, 13.0])
    # one hit (x0) and one miss (x1) among two references at equal scores
    assert result["ap50"] == pytest.approx(0.5, abs=0.01)


def test_pure_helpers() -> None:
    assert majority_class(["b", "a"], ["a", "b"])[0] == "a"  # a tie goes to the first class
    with pytest.raises(MedfleetError, match="not among the classes"):
        majority_class(["z"], ["a"])
    assert mean_box(np.array([[2, 4, 6, 8]]), np.array([[8, 4]])).tolist() == [0.5, 0.5, 1.5, 1.0]
    freq = label_frequencies([np.array([[0, 2], [7, 2]])], [0, 2], (2, 2))
    assert freq[1].tolist() == [[0, 1], [0, 1]] and freq[0, 1, 0] == 1  # 7: unknown -> bg


def test_compare_signs_the_difference_so_positive_is_better() -> None:
    lower = compare_with_baseline("regression", {"mae": 41.2}, {"mae": 45.0})["mae"]
    assert lower["direction"] == "lower" and lower["difference"] == pytest.approx(3.8)
    higher = compare_with_baseline("segmentation", {"dice": 0.5}, {"dice": 0.7})["dice"]
    assert higher["direction"] == "higher" and higher["difference"] == pytest.approx(-0.2)
    undefined = compare_with_baseline("detection", {"ap50": math.nan}, {"ap50": 0.1})["ap50"]
    assert undefined["model"] is None and undefined["difference"] is None
    entry = baseline_summary("landmarks", "mean shape", {"mre": 2.0}, {"mre": 5.0}, unit="mm")
    assert (entry["metric"], entry["difference"], entry["unit"]) == ("mre", 3.0, "mm")


def test_fit_needs_labelled_training_rows(tmp_path: Path) -> None:
    spec = TaskSpec(name="r", type="regression", table="r.csv", unit="mm")
    rows, images = _rows([("test", "1")], "value")
    with pytest.raises(MedfleetError, match="no labelled train rows"):
        fit_baseline(_manifest(tmp_path, spec, rows, images), "r")
