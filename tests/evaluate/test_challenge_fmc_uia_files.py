"""FMC_UIA preset on the challenge's own layout: a data root with csv_files/ and a prediction root.

Each test builds a small data root (tables in ``csv_files/``, masks under ``masks/``) and a
prediction root as the challenge's baseline ``model.py`` writes it (masks at ``mask_path``
without ``../``, one JSON file per task type), and checks the preset against values computed
here from the official definitions (sklearn, SimpleITK, IoU and MRE by hand).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from sklearn.metrics import f1_score, matthews_corrcoef, roc_auc_score
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.errors import MedfleetError
from medfleet.evaluate.runner import EvaluationConfig, EvaluationResult, run_evaluation
from medfleet.evaluate.runner.cases import CaseMismatchError


def _write_table(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_json(path: Path, entries: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(entries, fh)


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def _row(task_id: str, task_name: str, n: int, image: str, **cells: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "task_name": task_name,
        "num_classes": n,
        "image_path": f"../images/{task_id}/{image}.png",
        **cells,
    }


def _evaluate(
    data: Path, pred: Path, out: Path, task_id: str, task_type: str, **kw: Any
) -> EvaluationResult:
    options = {"task_id": task_id, **kw.pop("options", {})}
    config = EvaluationConfig(
        task_type,
        pred,
        data,
        out,
        preset="fmc-uia",
        report=False,
        preset_options=options,
        **kw,
    )
    return run_evaluation(config)


def _cases(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "cases.csv", newline="") as fh:
        return {r["case_id"]: r for r in csv.DictReader(fh)}


# ---------------------------------------------------------------------------- segmentation


def _seg_masks(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(gt, pred) pairs of 12 x 10 label maps with classes 1 and 2 and the edge cases."""
    pairs = []
    for i in range(4):
        gt = np.zeros((12, 10), np.uint8)
        gt[2 + i : 7 + i, 1:5] = 1
        gt[1:3, 6 : 8 + i % 2] = 2
        pred = gt.copy()
        pred[rng.random(gt.shape) < 0.15] = 0
        pred[rng.random(gt.shape) < 0.05] = 1
        pairs.append((gt, pred))
    pairs[1][1][pairs[1][1] == 2] = 0  # class 2 predicted nowhere: HD = diagonal
    pairs[2][0][pairs[2][0] == 2] = 0  # class 2 in neither ...
    pairs[2][1][pairs[2][1] == 2] = 0  # ... : Dice 1, HD 0
    return pairs


def _official_segmentation(pairs: list[tuple[np.ndarray, np.ndarray]], k: int) -> dict[str, Any]:
    """The challenge's per-class Dice and SimpleITK HD, averaged per class then over classes."""
    dice: dict[int, list[float]] = {c: [] for c in range(1, k)}
    hd: dict[int, list[float]] = {c: [] for c in range(1, k)}
    for gt, pred in pairs:
        h, w = pred.shape
        for c in range(1, k):
            p, g = (pred == c).astype(np.uint8), (gt == c).astype(np.uint8)
            union = int(p.sum() + g.sum())
            dice[c].append(1.0 if union == 0 else 2.0 * float((p * g).sum()) / union)
            if p.sum() == 0 and g.sum() == 0:
                hd[c].append(0.0)
            elif p.sum() == 0 or g.sum() == 0:
                hd[c].append(math.sqrt(h**2 + w**2))
            else:
                f = sitk.HausdorffDistanceImageFilter()
                f.Execute(sitk.GetImageFromArray(p * 255), sitk.GetImageFromArray(g * 255))
                hd[c].append(f.GetHausdorffDistance())
    out: dict[str, Any] = {}
    for c in range(1, k):
        out[f"dice_{c}"] = float(np.mean(dice[c]))
        out[f"hd_{c}"] = float(np.mean(hd[c]))
    out["dsc"] = float(np.mean([out[f"dice_{c}"] for c in range(1, k)]))
    out["hd"] = float(np.mean([out[f"hd_{c}"] for c in range(1, k)]))
    return out


def _segmentation_roots(tmp_path: Path) -> tuple[Path, Path, list[tuple[np.ndarray, np.ndarray]]]:
    data, pred = tmp_path / "data", tmp_path / "pred"
    pairs = _seg_masks(np.random.default_rng(3))
    rows = []
    for i, (gt, p) in enumerate(pairs):
        mask_path = f"../masks/seg_a/img_{i}.png"
        rows.append(_row("seg_a", "segmentation", 3, f"img_{i}", mask_path=mask_path))
        _png(data / "masks" / "seg_a" / f"img_{i}.png", gt)
        _png(pred / "masks" / "seg_a" / f"img_{i}.png", p)
    _write_table(data / "csv_files" / "seg_a.csv", rows)
    # another task in another table: read together, left out of this task
    _write_table(
        data / "csv_files" / "cls_b.csv", [_row("cls_b", "classification", 2, "x", mask=1)]
    )
    return data, pred, pairs


def test_segmentation_matches_the_official_definition(tmp_path: Path) -> None:
    data, pred, pairs = _segmentation_roots(tmp_path)
    result = _evaluate(data, pred, tmp_path / "out", "seg_a", "segmentation")
    comp = result.summary["preset"]["components"]
    expected = _official_segmentation(pairs, 3)
    for key, value in expected.items():
        assert comp[key] == pytest.approx(value), key
    assert comp["n_classes"] == 3 and comp["n_images"] == 4
    assert comp["hd_2"] > 0 and expected["hd_2"] >= math.sqrt(12**2 + 10**2) / 4
    assert set(_cases(tmp_path / "out")) == {f"images/seg_a/img_{i}" for i in range(4)}
    conv = result.summary["conventions"]
    assert conv["task_id"] == "seg_a" and conv["num_classes"] == 3


def test_segmentation_through_the_cli_with_the_default_task_type(tmp_path: Path) -> None:
    data, pred, pairs = _segmentation_roots(tmp_path)
    out = tmp_path / "out"
    args = ["evaluate", "--preset", "fmc-uia", "--gt", str(data), "--pred", str(pred)]
    args += ["--preset-option", "task_id=seg_a", "--out", str(out), "--format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"]["components"]["dsc"] == pytest.approx(
        _official_segmentation(pairs, 3)["dsc"]
    )


def test_num_classes_option_overrides_the_table(tmp_path: Path) -> None:
    data, pred, pairs = _segmentation_roots(tmp_path)
    result = _evaluate(
        data, pred, tmp_path / "out", "seg_a", "segmentation", options={"num_classes": "2"}
    )
    comp = result.summary["preset"]["components"]
    assert comp["n_classes"] == 2 and "dice_2" not in comp
    assert comp["dsc"] == pytest.approx(_official_segmentation(pairs, 2)["dsc"])


def test_unreadable_mask_is_an_error_row_and_the_rest_is_scored(tmp_path: Path) -> None:
    data, pred, pairs = _segmentation_roots(tmp_path)
    (pred / "masks" / "seg_a" / "img_1.png").write_bytes(b"not a png at all")
    _png(pred / "masks" / "seg_a" / "img_3.png", np.zeros((5, 5)))  # another size
    result = _evaluate(data, pred, tmp_path / "out", "seg_a", "segmentation")
    rows = _cases(tmp_path / "out")
    assert rows["images/seg_a/img_1"]["status"] == "error"
    assert "img_1.png" in rows["images/seg_a/img_1"]["error"]
    assert rows["images/seg_a/img_3"]["status"] == "error"
    assert "--resample-pred nearest" in rows["images/seg_a/img_3"]["error"]
    summary = result.summary
    assert summary["cases"]["errors"] == 2
    assert summary["cases"]["error_cases"] == ["images/seg_a/img_1", "images/seg_a/img_3"]
    comp = summary["preset"]["components"]
    assert comp["n_images"] == 2
    assert comp["dsc"] == pytest.approx(_official_segmentation([pairs[0], pairs[2]], 3)["dsc"])
    assert comp["hd"] == pytest.approx(_official_segmentation([pairs[0], pairs[2]], 3)["hd"])


def test_missing_mask_prediction(tmp_path: Path) -> None:
    data, pred, pairs = _segmentation_roots(tmp_path)
    (pred / "masks" / "seg_a" / "img_2.png").unlink()
    with pytest.raises(CaseMismatchError, match="images/seg_a/img_2"):
        _evaluate(data, pred, tmp_path / "out", "seg_a", "segmentation")
    result = _evaluate(data, pred, tmp_path / "out", "seg_a", "segmentation", allow_missing=True)
    worst = (pairs[2][0], np.zeros_like(pairs[2][0]))  # scored as an empty prediction
    expected = _official_segmentation([pairs[0], pairs[1], worst, pairs[3]], 3)
    assert result.summary["preset"]["components"]["dsc"] == pytest.approx(expected["dsc"])
    assert _cases(tmp_path / "out")["images/seg_a/img_2"]["status"] == "pred_missing"


# -------------------------------------------------------------------------- classification


def _classification_roots(
    tmp_path: Path, n: int = 3, size: int = 24
) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    data, pred = tmp_path / "data", tmp_path / "pred"
    y = np.arange(size) % n
    probs = rng.dirichlet(np.ones(n), size=size)
    probs[np.arange(size), y] += 0.5
    probs /= probs.sum(axis=1, keepdims=True)
    rows = [_row("cls_a", "classification", n, f"im{i}", mask=int(y[i])) for i in range(size)]
    _write_table(data / "csv_files" / "cls.csv", rows)
    entries = [
        {
            "image_path": rows[i]["image_path"],
            "task_id": "cls_a",
            "predicted_class": int(np.argmax(probs[i])),
            "predicted_probs": probs[i].tolist(),
        }
        for i in range(size)
    ]
    # entries of other tasks share the file and are left out
    entries.append({"task_id": "seg_z", "image_path": "x.png", "predicted_class": "n/a"})
    _write_json(pred / "classification_predictions.json", entries)
    return data, pred, y, probs


def test_classification_matches_sklearn(tmp_path: Path) -> None:
    data, pred, y, probs = _classification_roots(tmp_path)
    result = _evaluate(data, pred, tmp_path / "out", "cls_a", "classification")
    comp = result.summary["preset"]["components"]
    y_pred = probs.argmax(axis=1)
    assert comp["accuracy"] == pytest.approx(np.mean(y_pred == y))
    assert comp["auc"] == pytest.approx(roc_auc_score(y, probs, average="macro", multi_class="ovr"))
    assert comp["f1_macro"] == pytest.approx(f1_score(y, y_pred, average="macro", zero_division=0))
    assert comp["f1_weighted"] == pytest.approx(
        f1_score(y, y_pred, average="weighted", zero_division=0)
    )
    assert comp["mcc"] == pytest.approx(matthews_corrcoef(y, y_pred))
    assert comp["n_classes"] == 3 and comp["n_images"] == 24
    assert "images/cls_a/im0" in _cases(tmp_path / "out")


def test_binary_classification_auc_and_probabilities_left_out(tmp_path: Path) -> None:
    data, pred, y, probs = _classification_roots(tmp_path, n=2, size=10)
    result = _evaluate(data, pred, tmp_path / "o1", "cls_a", "classification")
    assert result.summary["preset"]["components"]["auc"] == pytest.approx(
        roc_auc_score(y, probs[:, 1])
    )
    entries = json.loads((pred / "classification_predictions.json").read_text())
    del entries[0]["predicted_probs"]  # optional; AUC then cannot be computed: 0 officially
    _write_json(pred / "classification_predictions.json", entries)
    result = _evaluate(data, pred, tmp_path / "o2", "cls_a", "classification")
    assert result.summary["preset"]["components"]["auc"] == 0.0


def test_classification_through_the_cli(tmp_path: Path) -> None:
    data, pred, y, probs = _classification_roots(tmp_path)
    out = tmp_path / "out"
    args = ["evaluate", "--preset", "fmc-uia", "--task-type", "classification"]
    args += ["--gt", str(data), "--pred", str(pred), "--preset-option", "task_id=cls_a"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"]["components"]["accuracy"] == pytest.approx(
        np.mean(probs.argmax(axis=1) == y)
    )


# ------------------------------------------------------------------------------- detection


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 0.0 if union == 0 else inter / union


_BOX = ("x_min", "y_min", "x_max", "y_max")
_GT_BOXES = [[10, 20, 50, 60], [0, 0, 8, 8], [5, 5, 25, 15], [30, 30, 40, 45]]
_PRED_BOXES = [[12.5, 18, 52, 58], [20, 20, 30, 30], [5, 5, 25, 15], [28.0, 33.5, 41, 44]]


def _detection_roots(tmp_path: Path) -> tuple[Path, Path]:
    data, pred = tmp_path / "data", tmp_path / "pred"
    rows = [
        _row("det_a", "detection", 1, f"d{i}", **dict(zip(_BOX, b, strict=True)))
        for i, b in enumerate(_GT_BOXES)
    ]
    _write_table(data / "csv_files" / "det.csv", rows)
    entries = [
        {"image_path": r["image_path"], "task_id": "det_a", "bbox_pixels": b}
        for r, b in zip(rows, _PRED_BOXES, strict=True)
    ]
    _write_json(pred / "detection_predictions.json", entries)
    return data, pred


def test_detection_iou_by_hand(tmp_path: Path) -> None:
    data, pred = _detection_roots(tmp_path)
    result = _evaluate(data, pred, tmp_path / "out", "det_a", "detection")
    expected = [_iou(p, g) for p, g in zip(_PRED_BOXES, _GT_BOXES, strict=True)]
    assert expected[1] == 0.0 and expected[2] == 1.0
    assert result.summary["preset"]["components"]["iou"] == pytest.approx(np.mean(expected))
    rows = _cases(tmp_path / "out")
    assert float(rows["images/det_a/d0"]["iou"]) == pytest.approx(expected[0])


def test_inverted_predicted_box_scores_zero_as_officially(tmp_path: Path) -> None:
    data, pred = _detection_roots(tmp_path)
    path = pred / "detection_predictions.json"
    entries = json.loads(path.read_text())
    entries[0]["bbox_pixels"] = [52, 18, 12.5, 58]  # x_max < x_min
    _write_json(path, entries)
    result = _evaluate(data, pred, tmp_path / "out", "det_a", "detection")
    assert float(_cases(tmp_path / "out")["images/det_a/d0"]["iou"]) == 0.0
    expected = [0.0, *(_iou(p, g) for p, g in zip(_PRED_BOXES[1:], _GT_BOXES[1:], strict=True))]
    assert result.summary["preset"]["components"]["iou"] == pytest.approx(np.mean(expected))


def test_missing_prediction_is_an_error_unless_allowed(tmp_path: Path) -> None:
    data, pred = _detection_roots(tmp_path)
    entries = json.loads((pred / "detection_predictions.json").read_text())
    _write_json(pred / "detection_predictions.json", entries[1:])
    with pytest.raises(CaseMismatchError) as err:
        _evaluate(data, pred, tmp_path / "out", "det_a", "detection")
    text = str(err.value)
    assert "images/det_a/d0" in text and "--allow-missing" in text
    result = _evaluate(data, pred, tmp_path / "out", "det_a", "detection", allow_missing=True)
    expected = [0.0, *(_iou(p, g) for p, g in zip(_PRED_BOXES[1:], _GT_BOXES[1:], strict=True))]
    assert result.summary["preset"]["components"]["iou"] == pytest.approx(np.mean(expected))


def test_empty_reference_box_is_an_error_row(tmp_path: Path) -> None:
    data, pred = _detection_roots(tmp_path)
    table = data / "csv_files" / "det.csv"
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[3]["x_max"] = ""
    _write_table(table, rows)
    result = _evaluate(data, pred, tmp_path / "out", "det_a", "detection")
    assert result.summary["cases"]["error_cases"] == ["images/det_a/d3"]
    expected = [_iou(p, g) for p, g in zip(_PRED_BOXES[:3], _GT_BOXES[:3], strict=True)]
    assert result.summary["preset"]["components"]["iou"] == pytest.approx(np.mean(expected))


# ------------------------------------------------------------------------------- keypoints


def test_keypoint_mre_by_hand_with_a_missing_reference_point(tmp_path: Path) -> None:
    data, pred = tmp_path / "data", tmp_path / "pred"
    gt = [[[10, 10], [20, 30], [5, 5]], [[0, 4], [8, 8], None]]  # None: empty cell
    pr = [[[13, 14], [20, 30], [5, 0]], [[0, 0], [14, 16], [3, 4]]]
    rows = []
    for i, points in enumerate(gt):
        cells = {
            f"point_{j + 1}_xy": ("" if p is None else json.dumps(p)) for j, p in enumerate(points)
        }
        rows.append(_row("kp_a", "Regression", 3, f"k{i}", **cells))
    _write_table(data / "csv_files" / "kp.csv", rows)
    entries = [
        {
            "image_path": r["image_path"],
            "task_id": "kp_a",
            "predicted_points_pixels": [v for p in points for v in p],
        }
        for r, points in zip(rows, pr, strict=True)
    ]
    _write_json(pred / "regression_predictions.json", entries)
    result = _evaluate(data, pred, tmp_path / "out", "kp_a", "landmarks")
    # image 0: distances 5, 0, 5; image 1: 4, 10 and 5 (missing reference point = (0, 0))
    assert result.summary["preset"]["components"]["mre"] == pytest.approx((10 / 3 + 19 / 3) / 2)
    other = _evaluate(data, pred, tmp_path / "o2", "kp_a", "regression")
    assert other.summary["preset"]["components"]["mre"] == pytest.approx(19 / 6 + 10 / 6)


# ---------------------------------------------------------------------------------- errors


def test_unknown_task_id_lists_the_known_ones(tmp_path: Path) -> None:
    data, pred, _ = _segmentation_roots(tmp_path)
    with pytest.raises(MedfleetError) as err:
        _evaluate(data, pred, tmp_path / "out", "seg_zz", "segmentation")
    text = str(err.value)
    assert "task_id 'seg_zz'" in text and "cls_b, seg_a" in text and "task_id=" in text


def test_several_tasks_need_a_task_id(tmp_path: Path) -> None:
    data, pred, _ = _segmentation_roots(tmp_path)
    with pytest.raises(MedfleetError, match="task_id=TASK"):
        _evaluate(data, pred, tmp_path / "out", "", "segmentation")


def test_task_type_mismatch_names_the_fix(tmp_path: Path) -> None:
    data, pred, _, _ = _classification_roots(tmp_path)
    with pytest.raises(MedfleetError) as err:
        _evaluate(data, pred, tmp_path / "o1", "cls_a", "detection")
    text = str(err.value)
    assert "cls_a" in text and "classification task" in text
    assert "--task-type classification" in text
    # without --task-type the preset's default (segmentation) applies: same clear stop
    args = ["evaluate", "--preset", "fmc-uia", "--gt", str(data), "--pred", str(pred)]
    args += ["--preset-option", "task_id=cls_a", "--out", str(tmp_path / "o2")]
    result = CliRunner().invoke(app, args)
    flat = " ".join(result.output.split())
    assert result.exit_code == 1
    assert "cls_a" in flat and "--task-type classification" in flat and "default" in flat
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"bbox_pixels": ["a", 0, 4, 4]}, "bbox_pixels ['a', 0, 4, 4] is not 4 numbers"),
        ({"bbox_pixels": [0, 0, 4]}, "is not 4 numbers"),
        ({"bbox_pixels": None}, "is not 4 numbers"),
        ({"bbox_pixels": [10**400, 0, 4, 4]}, "is not 4 numbers"),
        ({"bbox_pixels": [math.nan, 0, 4, 4]}, "is not 4 numbers"),
        ({"bbox_pixels": [True, 0, 4, 4]}, "is not 4 numbers"),
    ],
)
def test_malformed_detection_entry(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    data, pred = _detection_roots(tmp_path)
    path = pred / "detection_predictions.json"
    entries = json.loads(path.read_text())
    entries[2].update(change)
    _write_json(path, entries)
    with pytest.raises(MedfleetError) as err:
        _evaluate(data, pred, tmp_path / "out", "det_a", "detection")
    text = str(err.value)
    assert str(path) in text and "entry 2" in text and expected in text and "fix:" in text


def test_malformed_entries_name_file_index_and_fix(tmp_path: Path) -> None:
    data, pred = _detection_roots(tmp_path)
    path = pred / "detection_predictions.json"
    entries = json.loads(path.read_text())
    del entries[1]["bbox_pixels"]
    _write_json(path, entries)
    with pytest.raises(MedfleetError, match=r"entry 1 .*has no 'bbox_pixels' \(fix: "):
        _evaluate(data, pred, tmp_path / "o1", "det_a", "detection")
    path.write_text("{not json")
    with pytest.raises(MedfleetError, match="not a readable JSON file"):
        _evaluate(data, pred, tmp_path / "o2", "det_a", "detection")
    _write_json(path, {"task_id": "det_a"})
    with pytest.raises(MedfleetError, match="not a list of entries"):
        _evaluate(data, pred, tmp_path / "o3", "det_a", "detection")
    _write_json(path, [entries[0], entries[0]])
    with pytest.raises(MedfleetError, match=r"entry 1 .*repeats entry 0"):
        _evaluate(data, pred, tmp_path / "o4", "det_a", "detection")
    path.unlink()
    with pytest.raises(MedfleetError, match=r"detection_predictions\.json"):
        _evaluate(data, pred, tmp_path / "o5", "det_a", "detection")


def test_wrong_number_of_points_and_bad_class(tmp_path: Path) -> None:
    data, pred = tmp_path / "data", tmp_path / "pred"
    row = _row("kp_a", "Regression", 2, "k0", point_1_xy="[1, 2]", point_2_xy="[3, 4]")
    _write_table(data / "csv_files" / "kp.csv", [row])
    entry = {"task_id": "kp_a", "image_path": row["image_path"]}
    _write_json(
        pred / "regression_predictions.json", [{**entry, "predicted_points_pixels": [1, 2]}]
    )
    with pytest.raises(MedfleetError) as err:
        _evaluate(data, pred, tmp_path / "o1", "kp_a", "landmarks")
    assert "entry 0" in str(err.value) and "is not 2 points" in str(err.value)
    cdata, cpred, _, _ = _classification_roots(tmp_path / "c")
    path = cpred / "classification_predictions.json"
    entries = json.loads(path.read_text())
    entries[4]["predicted_class"] = 7
    _write_json(path, entries)
    with pytest.raises(MedfleetError, match=r"entry 4 .*predicted_class 7 is not a class index"):
        _evaluate(cdata, cpred, tmp_path / "o2", "cls_a", "classification")
    entries[4]["predicted_class"] = 1
    entries[5]["predicted_probs"] = [0.5, 0.5]
    _write_json(path, entries)
    with pytest.raises(MedfleetError, match=r"entry 5 .*predicted_probs .*3 numbers"):
        _evaluate(cdata, cpred, tmp_path / "o3", "cls_a", "classification")


def test_task_id_needs_the_data_root(tmp_path: Path) -> None:
    gt = tmp_path / "gt.csv"
    _write_table(gt, [{"case_id": "a", "label": 1}])
    with pytest.raises(MedfleetError, match="has no csv_files/ folder"):
        _evaluate(gt, gt, tmp_path / "out", "cls_a", "classification")
