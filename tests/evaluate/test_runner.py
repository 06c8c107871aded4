"""The evaluation runner in-process: small generated folders and tables, hand-computed values."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medfleet.errors import InputFileError, OptionError
from medfleet.evaluate.runner import EvaluationConfig, resample_nearest, run_evaluation
from medfleet.evaluate.runner.cases import CaseMismatchError, case_id_from_path, parse_points


def _nifti(path: Path, array: np.ndarray, spacing) -> None:
    image = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))
    image.header.set_zooms(spacing)
    nib.save(image, str(path))


def _cube_pair(shift: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((16, 20, 12), np.uint8)
    gt[4:10, 5:13, 3:9] = 1  # 6 x 8 x 6 cube
    gt[11:14, 14:18, 2:5] = 2  # 3 x 4 x 3 box
    pred = gt.copy()
    pred[pred == 1] = 0
    pred[4 + shift : 10 + shift, 5:13, 3:9] = 1  # label 1 shifted along axis 0
    return pred, gt


def _segmentation_folders(root: Path, spacing=(2.0, 0.5, 0.5), n: int = 3) -> tuple[Path, Path]:
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    for i in range(n):
        pred, gt = _cube_pair(shift=i)
        _nifti(gt_dir / f"case{i}.nii.gz", gt, spacing)
        _nifti(pred_dir / f"case{i}.nii.gz", pred, spacing)
    return pred_dir, gt_dir


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _strict_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_segmentation_end_to_end_hand_computed(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path)
    result = run_evaluation(EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "out"))
    rows = _read_rows(tmp_path / "out" / "cases.csv")
    assert [(r["case_id"], r["label"]) for r in rows] == [
        (f"case{i}", lab) for i in range(3) for lab in ("1", "2")
    ]
    by_key = {(r["case_id"], r["label"]): r for r in rows}
    for shift in range(3):
        r = by_key[(f"case{shift}", "1")]
        # a 6-voxel-long cube shifted by `shift` voxels along axis 0 (2 mm spacing)
        assert float(r["dice"]) == pytest.approx((6 - shift) / 6)
        assert float(r["hd"]) == pytest.approx(2.0 * shift)
        assert float(r["volume_gt_mm3"]) == pytest.approx(6 * 8 * 6 * 2.0 * 0.5 * 0.5)
        assert float(by_key[(f"case{shift}", "2")]["dice"]) == 1.0
    summary = _strict_json(tmp_path / "out" / "summary.json")
    assert summary["metrics"]["1"]["dice"]["mean"] == result.summary["metrics"]["1"]["dice"]["mean"]
    dice1 = summary["metrics"]["1"]["dice"]
    assert dice1["mean"] == pytest.approx((1 + 5 / 6 + 4 / 6) / 3)
    assert dice1["median"] == pytest.approx(5 / 6)
    assert dice1["std"] == pytest.approx(np.std([1, 5 / 6, 4 / 6], ddof=1))
    assert (dice1["n_valid"], dice1["n_scored"], dice1["n_cases"]) == (3, 3, 3)
    assert summary["metrics"]["1"]["hd95"]["mean"] == pytest.approx(2.0)
    assert summary["task_type"] == "segmentation"
    assert summary["medfleet_version"]
    assert summary["conventions"]["percentile_method"] == "max-directed"
    assert summary["conventions"]["one_empty"] == "inf"
    assert summary["n_cases"] == 3


def test_segmentation_workers_give_the_same_rows(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path)
    one = run_evaluation(EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "a"))
    two = run_evaluation(
        EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "b", workers=2)
    )
    assert (tmp_path / "a" / "cases.csv").read_text() == (tmp_path / "b" / "cases.csv").read_text()
    assert one.summary["metrics"] == two.summary["metrics"]


def test_segmentation_conventions_reach_the_metrics(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path)
    cfg = EvaluationConfig(
        "segmentation",
        pred_dir,
        gt_dir,
        tmp_path / "out",
        labels=("1",),
        percentile=90.0,
        nsd_tolerances=(0.5, 4.0),
        percentile_method="pooled",
    )
    result = run_evaluation(cfg)
    row = next(r for r in result.rows if r["case_id"] == "case2")
    assert {r["label"] for r in result.rows} == {1}
    assert "hd90" in row and "nsd_0.5mm" in row and "nsd_4mm" in row
    assert row["nsd_4mm"] == 1.0  # every surface point within 4 mm after a 4 mm shift
    assert result.summary["conventions"]["percentile_method"] == "pooled"


def test_label_absent_in_one_case_is_both_empty_and_left_out(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path, n=2)
    pred, gt = _cube_pair(shift=0)
    gt[gt == 2] = 0
    pred[pred == 2] = 0
    _nifti(gt_dir / "case9.nii.gz", gt, (2.0, 0.5, 0.5))
    _nifti(pred_dir / "case9.nii.gz", pred, (2.0, 0.5, 0.5))
    result = run_evaluation(EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "out"))
    row = next(r for r in result.rows if r["case_id"] == "case9" and r["label"] == 2)
    assert row["status"] == "both_empty" and math.isnan(row["dice"])
    stats = result.summary["metrics"]["2"]["dice"]
    assert (stats["n_cases"], stats["n_scored"], stats["mean"]) == (3, 2, 1.0)


def test_missing_prediction_is_an_error_naming_the_case(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path)
    (pred_dir / "case1.nii.gz").unlink()
    (pred_dir / "stray.nii.gz").write_bytes((gt_dir / "case0.nii.gz").read_bytes())
    with pytest.raises(CaseMismatchError) as info:
        run_evaluation(EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "out"))
    message = str(info.value)
    assert "missing predictions (1): case1" in message
    assert "predictions without reference (1): stray" in message
    assert "--allow-missing" in message
    assert not (tmp_path / "out" / "summary.json").exists()


def test_allow_missing_scores_an_empty_mask(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path)
    (pred_dir / "case0.nii.gz").unlink()
    result = run_evaluation(
        EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "out", allow_missing=True)
    )
    rows = [r for r in result.rows if r["case_id"] == "case0"]
    assert all(r["dice"] == 0.0 and r["hd"] == math.inf for r in rows)
    assert all(r["status"] == "pred_empty" for r in rows)
    assert result.summary["cases"]["missing_scored_as_worst"] == ["case0"]
    # the missed case pulls the mean down; HD becomes infinite instead of being skipped
    assert result.summary["metrics"]["1"]["dice"]["mean"] == pytest.approx((0 + 5 / 6 + 4 / 6) / 3)
    assert result.summary["metrics"]["1"]["hd"]["mean"] == math.inf
    summary = _strict_json(tmp_path / "out" / "summary.json")
    assert summary["metrics"]["1"]["hd"]["mean"] == "inf"


def test_diagonal_penalty_for_a_missed_structure(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path, n=1)
    pred, _ = _cube_pair(0)
    pred[pred == 2] = 0  # label 2 missed
    _nifti(pred_dir / "case0.nii.gz", pred, (2.0, 0.5, 0.5))
    result = run_evaluation(
        EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "out", one_empty="diagonal")
    )
    row = next(r for r in result.rows if r["label"] == 2)
    diagonal = math.sqrt((16 * 2.0) ** 2 + (20 * 0.5) ** 2 + (12 * 0.5) ** 2)
    assert row["hd"] == pytest.approx(diagonal) and row["hd_valid"] is False


def test_shape_and_spacing_mismatches_listed_in_one_error(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path)
    pred, _ = _cube_pair(0)
    _nifti(pred_dir / "case1.nii.gz", pred[:, :, :10], (2.0, 0.5, 0.5))
    _nifti(pred_dir / "case2.nii.gz", pred, (2.0, 0.5, 0.7))
    with pytest.raises(CaseMismatchError) as info:
        run_evaluation(EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "out"))
    message = str(info.value)
    assert "case case1: shape (16, 20, 10) in pred but (16, 20, 12) in gt" in message
    assert "case case2: spacing (2, 0.5, 0.7) mm in pred but (2, 0.5, 0.5) mm in gt" in message
    assert "--resample-pred nearest" in message
    assert [c for c, _ in info.value.mismatched] == ["case1", "case2"]


def test_resample_pred_nearest_fixes_a_size_mismatch(tmp_path: Path) -> None:
    pred_dir, gt_dir = _segmentation_folders(tmp_path, n=1)
    _, gt = _cube_pair(0)
    upsampled = np.repeat(gt, 2, axis=1)  # the prediction on a grid twice as fine along y
    _nifti(pred_dir / "case0.nii.gz", upsampled, (2.0, 0.25, 0.5))
    result = run_evaluation(
        EvaluationConfig(
            "segmentation", pred_dir, gt_dir, tmp_path / "out", resample_pred="nearest"
        )
    )
    assert all(r["dice"] == 1.0 for r in result.rows)
    assert any("resampled" in w for w in result.summary["warnings"])


def test_resample_nearest_hand_computed() -> None:
    a = np.arange(4).reshape(2, 2)
    np.testing.assert_array_equal(resample_nearest(a, (2, 2)), a)
    np.testing.assert_array_equal(resample_nearest(np.repeat(a, 3, axis=0), (2, 2)), a)
    assert resample_nearest(np.arange(5)[None], (1, 2)).tolist() == [[1, 3]]


def test_png_masks_with_meta_spacing_and_columns(tmp_path: Path) -> None:
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    gt = np.zeros((32, 32), np.uint8)
    gt[8:24, 8:24] = 1
    pred = np.roll(gt, 2, axis=1)
    for name in ("a", "b"):
        Image.fromarray(gt).save(gt_dir / f"{name}.png")
        Image.fromarray(pred).save(pred_dir / f"{name}.png")
    meta = tmp_path / "meta.csv"
    pd.DataFrame(
        {"case_id": ["a", "b"], "spacing": ["0.5,0.25", "1,1"], "site": ["s1", "s2"]}
    ).to_csv(meta, index=False)
    result = run_evaluation(
        EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "out", meta=meta)
    )
    by_case = {r["case_id"]: r for r in result.rows}
    assert by_case["a"]["hd"] == pytest.approx(0.5)  # 2 columns of 0.25 mm
    assert by_case["b"]["hd"] == pytest.approx(2.0)
    assert by_case["a"]["dice"] == pytest.approx(14 / 16)
    assert by_case["a"]["site"] == "s1" and by_case["b"]["spacing"] == "1,1"
    header = (tmp_path / "out" / "cases.csv").read_text().splitlines()[0]
    assert header.endswith("site")


def test_npy_masks_take_the_reference_spacing(tmp_path: Path) -> None:
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    pred, gt = _cube_pair(1)
    _nifti(gt_dir / "c.nii.gz", gt, (2.0, 0.5, 0.5))
    np.save(pred_dir / "c.npy", pred)
    result = run_evaluation(EvaluationConfig("segmentation", pred_dir, gt_dir, tmp_path / "out"))
    assert next(r for r in result.rows if r["label"] == 1)["hd"] == pytest.approx(2.0)


def test_case_ids_and_points() -> None:
    assert case_id_from_path("x/BraTS_001.nii.gz") == "BraTS_001"
    assert case_id_from_path("img.v2.png") == "img.v2"
    pts = parse_points("1,2;3,4", case_id="c", column="landmarks")
    assert pts.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(InputFileError, match="case c: column 'landmarks': point 2"):
        parse_points("1,2;x,4", case_id="c", column="landmarks")


# --------------------------------------------------------------------------- tables


def _csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_classification_matches_sklearn(tmp_path: Path) -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    n = 40
    truth = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 2 * np.eye(3)[truth]
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = np.array(["benign", "malignant", "normal"])
    gt = _csv(
        tmp_path / "gt.csv", [{"case_id": f"c{i}", "label": names[t]} for i, t in enumerate(truth)]
    )
    pred = _csv(
        tmp_path / "pred.csv",
        [
            {
                "case_id": f"c{i}",
                **{f"prob_{k}": float(p) for k, p in zip(names, prob[i], strict=True)},
            }
            for i in range(n)
        ],
    )
    result = run_evaluation(EvaluationConfig("classification", pred, gt, tmp_path / "out"))
    ds = result.summary["dataset"]
    y_pred = names[prob.argmax(axis=1)]
    y_true = names[truth]
    assert ds["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert ds["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert ds["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert ds["mcc"] == pytest.approx(skm.matthews_corrcoef(y_true, y_pred))
    assert ds["auc_macro"] == pytest.approx(skm.roc_auc_score(truth, prob, multi_class="ovr"))
    assert ds["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred).tolist()
    assert result.summary["metrics"]["all"]["correct"]["mean"] == pytest.approx(ds["accuracy"])
    assert result.rows[0]["pred"] == y_pred[0]


def test_classification_binary_score_column(tmp_path: Path) -> None:
    gt = _csv(
        tmp_path / "gt.csv",
        [{"case_id": c, "label": v} for c, v in zip("abcd", [0, 0, 1, 1], strict=True)],
    )
    pred = _csv(
        tmp_path / "pred.csv",
        [{"case_id": c, "score": s} for c, s in zip("abcd", [0.1, 0.6, 0.4, 0.9], strict=True)],
    )
    result = run_evaluation(EvaluationConfig("classification", pred, gt, tmp_path / "out"))
    ds = result.summary["dataset"]
    assert ds["auc"] == pytest.approx(0.75)
    assert ds["sensitivity"] == 0.5 and ds["specificity"] == 0.5  # threshold 0.5
    assert result.summary["conventions"]["positive_label"] == "1"


def test_nan_probability_is_an_error_naming_the_case(tmp_path: Path) -> None:
    gt = _csv(tmp_path / "gt.csv", [{"case_id": "a", "label": "x"}, {"case_id": "b", "label": "y"}])
    pred = _csv(
        tmp_path / "pred.csv",
        [
            {"case_id": "a", "prob_x": 0.9, "prob_y": 0.1},
            {"case_id": "b", "prob_x": float("nan"), "prob_y": 0.7},
        ],
    )
    with pytest.raises(InputFileError, match="case b: prob_x is NaN"):
        run_evaluation(EvaluationConfig("classification", pred, gt, tmp_path / "out"))
    _csv(
        tmp_path / "pred.csv",
        [
            {"case_id": "a", "prob_x": 1.2, "prob_y": 0.1},
            {"case_id": "b", "prob_x": 0.2, "prob_y": 0.7},
        ],
    )
    with pytest.raises(InputFileError, match=r"case a: prob_x is 1.2, outside the range \[0, 1\]"):
        run_evaluation(EvaluationConfig("classification", pred, gt, tmp_path / "out"))


def test_classification_missing_scored_as_wrong(tmp_path: Path) -> None:
    gt = _csv(
        tmp_path / "gt.csv",
        [{"case_id": c, "label": v} for c, v in zip("abcd", [0, 1, 1, 0], strict=True)],
    )
    pred = _csv(
        tmp_path / "pred.csv",
        [
            {"case_id": c, "label": v, "score": s}
            for c, v, s in zip("abc", [0, 1, 1], [0.2, 0.8, 0.9], strict=True)
        ],
    )
    with pytest.raises(CaseMismatchError, match=r"missing predictions \(1\): d"):
        run_evaluation(EvaluationConfig("classification", pred, gt, tmp_path / "out"))
    result = run_evaluation(
        EvaluationConfig("classification", pred, gt, tmp_path / "out", allow_missing=True)
    )
    row = next(r for r in result.rows if r["case_id"] == "d")
    assert row["status"] == "pred_missing" and row["pred"] == "1" and row["correct"] == 0.0
    assert row["score"] == 1.0  # a negative case scored with certainty as positive
    assert result.summary["dataset"]["accuracy"] == 0.75
    assert result.summary["dataset"]["auc"] == pytest.approx(0.5)


def test_multilabel_classification(tmp_path: Path) -> None:
    gt = _csv(
        tmp_path / "gt.csv",
        [
            {"case_id": "a", "label": "x;y"},
            {"case_id": "b", "label": "y"},
            {"case_id": "c", "label": ""},
        ],
    )
    pred = _csv(
        tmp_path / "pred.csv",
        [
            {"case_id": "a", "label": "x;y"},
            {"case_id": "b", "label": "x"},
            {"case_id": "c", "label": ""},
        ],
    )
    result = run_evaluation(
        EvaluationConfig("classification", pred, gt, tmp_path / "out", multilabel=True)
    )
    ds = result.summary["dataset"]
    assert ds["accuracy"] == pytest.approx(2 / 3)  # exact set match
    assert ds["per_class"]["y"]["sensitivity"] == 0.5 and ds["per_class"]["x"]["ppv"] == 0.5


def test_detection_end_to_end(tmp_path: Path) -> None:
    from medfleet.evaluate.metrics.detection import coco_map

    gt_boxes = {"a": "0,0,10,10;20,20,30,30", "b": "5,5,15,15", "c": ""}
    pred_boxes = {
        "a": ("0,0,10,10;50,50,60,60", "0.9;0.8"),
        "b": ("5,5,15,14", "0.7"),
        "c": ("1,1,2,2", "0.3"),
    }
    gt = _csv(tmp_path / "gt.csv", [{"case_id": k, "boxes": v} for k, v in gt_boxes.items()])
    pred = _csv(
        tmp_path / "pred.csv",
        [{"case_id": k, "boxes": b, "scores": s} for k, (b, s) in pred_boxes.items()],
    )
    result = run_evaluation(EvaluationConfig("detection", pred, gt, tmp_path / "out"))
    rows = {r["case_id"]: r for r in result.rows}
    assert (rows["a"]["tp"], rows["a"]["fp"], rows["a"]["fn"]) == (1, 1, 1)
    assert rows["a"]["recall"] == 0.5 and rows["b"]["mean_iou"] == pytest.approx(0.9)
    assert math.isnan(rows["c"]["recall"]) and rows["c"]["precision"] == 0.0
    ds = result.summary["dataset"]
    assert ds["detection_rate"] == pytest.approx(2 / 3)
    expected = coco_map(
        [
            np.array([[0, 0, 10, 10], [50, 50, 60, 60]]),
            np.array([[5, 5, 15, 14]]),
            np.array([[1, 1, 2, 2]]),
        ],
        [np.array([0.9, 0.8]), np.array([0.7]), np.array([0.3])],
        [
            np.array([[0, 0, 10, 10], [20, 20, 30, 30]]),
            np.array([[5, 5, 15, 15]]),
            np.zeros((0, 4)),
        ],
    )
    assert ds["map"] == pytest.approx(expected["map"]) and ds["ap50"] == pytest.approx(
        expected["ap50"]
    )
    assert result.summary["metrics"]["all"]["recall"]["n_scored"] == 2  # no recall without gt


def test_detection_with_classes(tmp_path: Path) -> None:
    gt = _csv(tmp_path / "gt.csv", [{"case_id": "a", "boxes": "polyp:0,0,10,10;cyst:20,20,30,30"}])
    pred = _csv(
        tmp_path / "pred.csv",
        [{"case_id": "a", "boxes": "cyst:0,0,10,10;cyst:20,20,30,30", "scores": "0.8;0.9"}],
    )
    result = run_evaluation(EvaluationConfig("detection", pred, gt, tmp_path / "out"))
    row = result.rows[0]
    # the box on the polyp has the wrong class: it is a false positive, the polyp is missed
    assert (row["tp"], row["fp"], row["fn"]) == (1, 1, 1)
    assert row["mean_iou"] == pytest.approx(0.5)
    ds = result.summary["dataset"]
    assert ds["per_class"]["cyst"]["ap50"] == 1.0 and ds["per_class"]["polyp"]["ap50"] == 0.0
    assert ds["ap50"] == 0.5
    _csv(tmp_path / "pred.csv", [{"case_id": "a", "boxes": "0,0,10,10", "scores": "0.9"}])
    with pytest.raises(InputFileError, match="some boxes carry a class"):
        run_evaluation(EvaluationConfig("detection", pred, gt, tmp_path / "out"))


def test_summaries_never_let_a_miss_improve_the_mean() -> None:
    from medfleet.evaluate.runner.aggregate import json_safe, summarize_metric

    # a missed structure's NaN takes the worst value; a both-empty NaN is left out
    s = summarize_metric(
        [2.0, float("nan"), float("nan")],
        status=["ok", "pred_empty", "both_empty"],
        worst=math.inf,
    )
    assert s["mean"] == math.inf and s["n_scored"] == 2 and s["n_cases"] == 3
    # without a worst value the mean is NaN, never the mean of the rest
    s = summarize_metric([0.9, float("nan")], status=["ok", "pred_missing"])
    assert math.isnan(s["mean"]) and s["n_valid"] == 1
    s = summarize_metric([0.9, 0.5, float("nan")], status=["ok", "ok", "gt_empty"], worst=0.0)
    assert s["mean"] == pytest.approx(1.4 / 3) and s["median"] == 0.5
    assert json_safe({"x": [float("nan"), -math.inf]}) == {"x": [None, "-inf"]}


def test_detection_bad_cells_name_the_case(tmp_path: Path) -> None:
    gt = _csv(tmp_path / "gt.csv", [{"case_id": "a", "boxes": "0,0,10,10"}])
    pred = _csv(
        tmp_path / "pred.csv", [{"case_id": "a", "boxes": "0,0,10,10;1,1,3,3", "scores": "0.5"}]
    )
    with pytest.raises(InputFileError, match="case a: 2 boxes but 1 scores"):
        run_evaluation(EvaluationConfig("detection", pred, gt, tmp_path / "out"))
    _csv(tmp_path / "pred.csv", [{"case_id": "a", "boxes": "0,0,10", "scores": "0.5"}])
    with pytest.raises(InputFileError, match="case a: column 'boxes \\(--pred\\)': box 1"):
        run_evaluation(EvaluationConfig("detection", pred, gt, tmp_path / "out"))


def test_regression_end_to_end_and_missing(tmp_path: Path) -> None:
    gt = _csv(
        tmp_path / "gt.csv",
        [
            {"case_id": c, "value": v}
            for c, v in zip("abcd", [100.0, 110.0, 120.0, 130.0], strict=True)
        ],
    )
    pred = _csv(
        tmp_path / "pred.csv",
        [
            {"case_id": c, "value": v}
            for c, v in zip("abcd", [102.0, 108.0, 125.0, 131.0], strict=True)
        ],
    )
    result = run_evaluation(EvaluationConfig("regression", pred, gt, tmp_path / "out"))
    ds = result.summary["dataset"]
    sd = np.std([2, -2, 5, 1], ddof=1)
    assert ds["mae"] == pytest.approx(2.5) and ds["bias"] == pytest.approx(1.5)
    assert ds["loa_upper"] == pytest.approx(1.5 + 1.96 * sd)
    assert result.summary["metrics"]["all"]["abs_error"]["mean"] == pytest.approx(2.5)
    _csv(
        tmp_path / "pred.csv",
        [{"case_id": c, "value": v} for c, v in zip("abc", [102.0, 108.0, 125.0], strict=True)],
    )
    result = run_evaluation(
        EvaluationConfig("regression", pred, gt, tmp_path / "out2", allow_missing=True)
    )
    assert result.summary["dataset"]["mae"] == math.inf
    assert result.summary["metrics"]["all"]["abs_error"]["mean"] == math.inf
    assert result.summary["metrics"]["all"]["abs_error"]["n_valid"] == 3


def test_regression_nan_value_names_the_case(tmp_path: Path) -> None:
    gt = _csv(tmp_path / "gt.csv", [{"case_id": "a", "value": 1.0}, {"case_id": "b", "value": 2.0}])
    pred = _csv(
        tmp_path / "pred.csv",
        [{"case_id": "a", "value": 1.0}, {"case_id": "b", "value": float("nan")}],
    )
    with pytest.raises(InputFileError, match="case b: pred value"):
        run_evaluation(EvaluationConfig("regression", pred, gt, tmp_path / "out"))


def test_landmarks_end_to_end(tmp_path: Path) -> None:
    gt = _csv(
        tmp_path / "gt.csv",
        [
            {"case_id": "a", "landmarks": "10,10;20,20", "spacing": "0.5,0.1"},
            {"case_id": "b", "landmarks": "0,0;5,5", "spacing": "1,1"},
        ],
    )
    pred = _csv(
        tmp_path / "pred.csv",
        [
            {"case_id": "a", "landmarks": "13,14;20,20"},
            {"case_id": "b", "landmarks": "0,3;nan,nan"},
        ],
    )
    cfg = EvaluationConfig(
        "landmarks", pred, gt, tmp_path / "out", radii=(2.0, 3.0), missing_landmarks="failure"
    )
    result = run_evaluation(cfg)
    errors = {(r["case_id"], r["label"]): r["error"] for r in result.rows}
    # case a: dx = 3 columns * 0.1 mm, dy = 4 rows * 0.5 mm
    assert errors[("a", 0)] == pytest.approx(math.hypot(0.3, 2.0))
    assert errors[("a", 1)] == 0.0 and errors[("b", 0)] == 3.0
    assert math.isnan(errors[("b", 1)])
    ds = result.summary["dataset"]
    assert ds["mre"] == pytest.approx((math.hypot(0.3, 2.0) + 0 + 3) / 3)
    assert ds["sdr_2"] == pytest.approx(0.25) and ds["sdr_3"] == pytest.approx(
        0.75
    )  # <=, missing fails
    assert ds["n_missing"] == 1 and ds["unit"] == "mm"
    assert result.summary["metrics"]["1"]["error"]["n_scored"] == 1
    strict = run_evaluation(
        EvaluationConfig(
            "landmarks",
            pred,
            gt,
            tmp_path / "o2",
            radii=(3.0,),
            sdr_comparison="<",
            landmark_penalty=10.0,
        )
    )
    assert strict.summary["dataset"]["sdr_3"] == pytest.approx(0.5)
    assert strict.summary["dataset"]["mre"] == pytest.approx((math.hypot(0.3, 2.0) + 3 + 10) / 4)
    assert strict.summary["metrics"]["all"]["error"]["mean"] == pytest.approx(
        strict.summary["dataset"]["mre"]
    )


def test_landmark_count_mismatch_is_listed(tmp_path: Path) -> None:
    gt = _csv(tmp_path / "gt.csv", [{"case_id": "a", "landmarks": "1,1;2,2"}])
    pred = _csv(tmp_path / "pred.csv", [{"case_id": "a", "landmarks": "1,1"}])
    with pytest.raises(CaseMismatchError, match="case a: 1 predicted landmarks"):
        run_evaluation(EvaluationConfig("landmarks", pred, gt, tmp_path / "out"))


def test_table_errors(tmp_path: Path) -> None:
    gt = _csv(tmp_path / "gt.csv", [{"case_id": "a", "value": 1.0}, {"case_id": "a", "value": 2.0}])
    pred = _csv(tmp_path / "pred.csv", [{"case_id": "a", "value": 1.0}])
    with pytest.raises(InputFileError, match="lists case 'a' more than once"):
        run_evaluation(EvaluationConfig("regression", pred, gt, tmp_path / "out"))
    _csv(tmp_path / "gt.csv", [{"case_id": "a", "target": 1.0}])
    with pytest.raises(InputFileError, match=r"lacks column\(s\) \['value'\]"):
        run_evaluation(EvaluationConfig("regression", pred, gt, tmp_path / "out"))
    with pytest.raises(OptionError, match="unknown task type"):
        EvaluationConfig("ranking", pred, gt, tmp_path / "out")
