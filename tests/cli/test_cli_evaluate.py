"""``medfleet evaluate`` through the Typer app: outputs, JSON mode and clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from medfleet.cli import app


def _phantom_masks(root: Path, n: int = 4) -> tuple[Path, Path]:
    """Ground-truth discs and predictions perturbed by a shift of i pixels."""
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    rows, cols = np.mgrid[:48, :48]
    for i in range(n):
        gt = (((rows - 24) ** 2 + (cols - 24) ** 2) <= 12**2).astype(np.uint8)
        gt[4:8, 4:10] = 2
        pred = np.roll(gt, i, axis=1)
        Image.fromarray(gt).save(gt_dir / f"img{i:02d}.png")
        Image.fromarray(pred).save(pred_dir / f"img{i:02d}.png")
    return pred_dir, gt_dir


def _evaluate(task: str, pred: Path, gt: Path, out: Path, *extra: str) -> Result:
    """``medfleet evaluate --task-type TASK --pred PRED --gt GT --out OUT [EXTRA...]``."""
    args = ["evaluate", "--task-type", task, "--pred", str(pred), "--gt", str(gt)]
    return CliRunner().invoke(app, [*args, "--out", str(out), *extra])


def test_segmentation_json_output(tmp_path: Path) -> None:
    pred, gt = _phantom_masks(tmp_path)
    out = tmp_path / "out"
    result = _evaluate(
        "segmentation",
        pred,
        gt,
        out,
        "--nsd-tolerance",
        "1",
        "--nsd-tolerance",
        "3",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    on_disk = json.loads((out / "summary.json").read_text())
    assert printed["summary"] == on_disk
    assert printed["cases_csv"] == str(out / "cases.csv")
    assert set(on_disk["metrics"]) == {"1", "2"}
    assert on_disk["metrics"]["1"]["dice"]["n_cases"] == 4
    assert on_disk["metrics"]["1"]["hd"]["mean"] == 1.5  # shifts 0, 1, 2, 3 pixels
    assert "nsd_3mm" in on_disk["metrics"]["1"]
    table = pd.read_csv(out / "cases.csv")
    assert len(table) == 8 and list(table.columns[:3]) == ["case_id", "label", "status"]


def test_segmentation_text_output_with_workers(tmp_path: Path) -> None:
    pred, gt = _phantom_masks(tmp_path)
    result = _evaluate(
        "segmentation", pred, gt, tmp_path / "out", "--workers", "2", "--labels", "1"
    )
    assert result.exit_code == 0, result.output
    assert "dice" in result.stdout and "hd95" in result.stdout
    assert "wrote" in result.stdout
    table = pd.read_csv(tmp_path / "out" / "cases.csv")
    assert set(table["label"]) == {1}


def test_missing_case_gives_clear_error(tmp_path: Path) -> None:
    pred, gt = _phantom_masks(tmp_path)
    (pred / "img02.png").unlink()
    result = _evaluate("segmentation", pred, gt, tmp_path / "out")
    assert result.exit_code == 1
    assert "missing predictions (1): img02" in result.output
    assert not (tmp_path / "out" / "cases.csv").exists()
    result = _evaluate(
        "segmentation",
        pred,
        gt,
        tmp_path / "out",
        "--allow-missing",
        "--empty-policy",
        "50",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["cases"]["missing_scored_as_worst"] == ["img02"]
    assert summary["metrics"]["1"]["hd"]["mean"] == (0 + 1 + 50 + 3) / 4


def test_shape_mismatch_gives_clear_error(tmp_path: Path) -> None:
    pred, gt = _phantom_masks(tmp_path)
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(pred / "img01.png")
    args = [
        "evaluate",
        "--task-type",
        "segmentation",
        "--pred",
        str(pred),
        "--gt",
        str(gt),
        "--out",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "case img01: shape (40, 48) in pred but (48, 48) in gt" in result.output
    result = CliRunner().invoke(app, [*args, "--resample-pred", "nearest"])
    assert result.exit_code == 0, result.output


def test_nan_probability_gives_clear_error(tmp_path: Path) -> None:
    gt = tmp_path / "gt.csv"
    pred = tmp_path / "pred.csv"
    pd.DataFrame(
        {"case_id": ["p1", "p2", "p3"], "label": ["normal", "pneumonia", "normal"]}
    ).to_csv(gt, index=False)
    pd.DataFrame(
        {
            "case_id": ["p1", "p2", "p3"],
            "prob_normal": [0.8, math.nan, 0.6],
            "prob_pneumonia": [0.2, 0.9, 0.4],
        }
    ).to_csv(pred, index=False)
    args = [
        "evaluate",
        "--task-type",
        "classification",
        "--pred",
        str(pred),
        "--gt",
        str(gt),
        "--out",
        str(tmp_path / "out"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "case p2: prob_normal is NaN" in result.output
    pred_df = pd.read_csv(pred)
    pred_df.loc[1, "prob_normal"] = 0.1
    pred_df.to_csv(pred, index=False)
    result = CliRunner().invoke(app, [*args, "--positive-label", "pneumonia", "--format", "json"])
    assert result.exit_code == 0, result.output
    dataset = json.loads(result.stdout)["summary"]["dataset"]
    assert dataset["accuracy"] == 1.0 and dataset["auc"] == 1.0


def test_other_table_tasks(tmp_path: Path) -> None:
    pd.DataFrame({"case_id": ["a", "b"], "value": [150.0, 170.0]}).to_csv(
        tmp_path / "g.csv", index=False
    )
    pd.DataFrame({"case_id": ["a", "b"], "value": [152.0, 166.0]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    result = _evaluate(
        "regression", tmp_path / "p.csv", tmp_path / "g.csv", tmp_path / "r", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["dataset"]["mae"] == 3.0
    pd.DataFrame({"case_id": ["a"], "landmarks": ["10,10;20,20"]}).to_csv(
        tmp_path / "lg.csv", index=False
    )
    pd.DataFrame({"case_id": ["a"], "landmarks": ["10,12;20,20"]}).to_csv(
        tmp_path / "lp.csv", index=False
    )
    result = _evaluate(
        "landmarks",
        tmp_path / "lp.csv",
        tmp_path / "lg.csv",
        tmp_path / "l",
        "--radius",
        "2",
        "--sdr-comparison",
        "<",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    dataset = json.loads(result.stdout)["summary"]["dataset"]
    assert dataset["mre"] == 1.0 and dataset["sdr_2"] == 0.5 and dataset["unit"] == "pixel"


def test_bad_task_type_is_rejected(tmp_path: Path) -> None:
    result = _evaluate("ranking", tmp_path, tmp_path, tmp_path / "o")
    assert result.exit_code != 0
    assert "ranking" in result.output
