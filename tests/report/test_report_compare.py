"""Paired comparison of two evaluation runs: pairing, tests, Holm correction, outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from medfleet.errors import MedfleetError
from medfleet.evaluate.compare import compare_runs, write_comparison
from medfleet.evaluate.runner import EvaluationConfig, run_evaluation


def _table(path: Path, column: str, values: dict[str, object]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", column])
        w.writerows(values.items())
    return path


def _regression(tmp_path: Path, name: str, truth: dict[str, float], pred: dict[str, float]) -> Path:
    gt = _table(tmp_path / f"{name}_gt.csv", "value", truth)
    pr = _table(tmp_path / f"{name}_pred.csv", "value", pred)
    out = tmp_path / name
    run_evaluation(EvaluationConfig("regression", pr, gt, out, report=False))
    return out


def test_regression_runs_paired_by_case(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    truth = {f"c{i}": float(v) for i, v in enumerate(rng.normal(50, 5, 15))}
    a = {k: v + rng.normal(0, 3) for k, v in truth.items()}
    b = {k: v + rng.normal(0, 0.5) for k, v in truth.items()}
    b["extra"] = 1.0
    truth_b = {**truth, "extra": 1.0}
    run_a = _regression(tmp_path, "a", truth, a)
    run_b = _regression(tmp_path, "b", truth_b, b)
    result = compare_runs(run_a, run_b, n_resamples=500)
    row = next(r for r in result.rows if r["metric"] == "abs_error")
    err_a = np.array([abs(a[k] - truth[k]) for k in sorted(truth)])
    err_b = np.array([abs(b[k] - truth[k]) for k in sorted(truth)])
    assert row["n"] == 15
    assert row["mean_a"] == pytest.approx(err_a.mean())
    assert row["difference"] == pytest.approx(err_b.mean() - err_a.mean())
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    assert row["p_value"] == pytest.approx(stats.wilcoxon(err_b, err_a).pvalue)
    assert row["p_holm"] >= row["p_value"]
    assert row["better"] == "B"  # smaller absolute errors, significant after Holm
    assert result.only_b == ["extra"] and result.only_a == []


def test_classification_correctness_uses_mcnemar(tmp_path: Path) -> None:
    truth = {f"c{i}": i % 2 for i in range(12)}
    wrong_a = {"c0", "c1", "c2", "c3", "c4", "c5", "c6"}
    wrong_b = {"c0"}
    runs = []
    for name, wrong in (("a", wrong_a), ("b", wrong_b)):
        gt = _table(tmp_path / f"{name}_gt.csv", "label", truth)
        pred = _table(
            tmp_path / f"{name}_pred.csv",
            "label",
            {k: (1 - v if k in wrong else v) for k, v in truth.items()},
        )
        run_evaluation(EvaluationConfig("classification", pred, gt, tmp_path / name, report=False))
        runs.append(tmp_path / name)
    result = compare_runs(*runs, n_resamples=300)
    row = next(r for r in result.rows if r["metric"] == "correct")
    assert "mcnemar" in row["test"].lower()
    # 6 discordant pairs, all in favour of B: exact binomial test
    assert row["p_value"] == pytest.approx(stats.binomtest(0, 6, 0.5).pvalue)
    assert row["difference"] == pytest.approx(6 / 12)


def test_outputs_and_errors(tmp_path: Path) -> None:
    truth = {"x": 1.0, "y": 2.0, "z": 3.0}
    run_a = _regression(tmp_path, "a", truth, {"x": 1.5, "y": 2.5, "z": 2.0})
    run_b = _regression(tmp_path, "b", truth, {"x": 1.0, "y": 2.0, "z": 3.5})
    result = compare_runs(run_a, run_b, n_resamples=200)
    json_path, html_path = write_comparison(result, tmp_path / "cmp")
    data = json.loads(json_path.read_text())
    assert data["task_type"] == "regression" and len(data["comparisons"]) == 3
    assert "Paired comparison" in html_path.read_text()
    with pytest.raises(MedfleetError, match=r"summary\.json not found"):
        compare_runs(tmp_path / "missing", run_b)
    gt = _table(tmp_path / "c_gt.csv", "label", {"x": 0, "y": 1})
    run_evaluation(EvaluationConfig("classification", gt, gt, tmp_path / "cls", report=False))
    with pytest.raises(MedfleetError, match="different task types"):
        compare_runs(run_a, tmp_path / "cls")
