"""Transfer analysis from evaluation tables: deltas, sign flips, aggregation, CIs, report."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medfleet.tasks import Manifest, Site, TaskSpec, TaskType
from medfleet.train.transfer import (
    analyse_transfer,
    metric_from_arrays,
    relative_delta,
    write_transfer,
)


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


MANIFEST = Manifest(
    name="m",
    sites=[Site(name="a")],
    tasks=[
        TaskSpec(name="seg", type="segmentation", table="s.csv", labels={0: "bg", 1: "x"},
                 group="abdomen"),
        TaskSpec(name="hc", type="regression", table="h.csv", unit="mm", group="ob"),
        TaskSpec(name="cls", type="classification", table="c.csv", classes=["a", "b"],
                 group="ob"),
    ],
)  # fmt: skip


def _tables(root: Path, paradigm: str, dice: list[float], errors: list[float], preds: list[str]):
    return {
        "seg": _write(
            root / paradigm / "seg.csv",
            [{"case_id": f"s{i}", "label": 1, "dice": d} for i, d in enumerate(dice)],
        ),
        "hc": _write(
            root / paradigm / "hc.csv",
            [{"case_id": f"h{i}", "abs_error": e} for i, e in enumerate(errors)],
        ),
        "cls": _write(
            root / paradigm / "cls.csv",
            [
                {"case_id": f"c{i}", "gt": g, "pred": p}
                for i, (g, p) in enumerate(zip(["a", "a", "b", "b"], preds, strict=True))
            ],
        ),
    }


def test_deltas_by_hand(tmp_path):
    cases = {
        "task-specific": _tables(tmp_path, "ts", [0.8, 0.6, 0.7], [2.0, 4.0], ["a", "b", "b", "b"]),
        "unified": _tables(tmp_path, "u", [0.9, 0.7, 0.8], [3.0, 5.0], ["a", "a", "b", "b"]),
    }
    analysis = analyse_transfer(MANIFEST, cases, n_resamples=300, seed=1)
    rows = {(r["level"], r["name"]): r for r in analysis.rows}
    seg = rows[("task", "seg")]
    assert seg["m_specific"] == pytest.approx(0.7) and seg["m_paradigm"] == pytest.approx(0.8)
    assert seg["delta"] == pytest.approx(0.1 / 0.7)
    assert seg["ci_low"] > 0 and not seg["negative_transfer"]  # every case improved
    hc = rows[("task", "hc")]  # MAE 3 -> 4 is worse: delta = -(4 - 3) / 3
    assert hc["delta"] == pytest.approx(-1 / 3) and hc["metric"] == "mae"
    assert hc["ci_high"] < 0 and hc["negative_transfer"]
    cls = rows[("task", "cls")]  # balanced accuracy 0.75 -> 1.0
    assert cls["delta"] == pytest.approx(1 / 3)
    ob = rows[("group", "ob")]
    assert ob["delta"] == pytest.approx((-1 / 3 + 1 / 3) / 2) and ob["n_tasks"] == 2
    assert rows[("type", "regression")]["delta"] == pytest.approx(-1 / 3)
    everything = rows[("all", "all")]
    assert everything["delta"] == pytest.approx((0.1 / 0.7 - 1 / 3 + 1 / 3) / 3)
    assert everything["ci_low"] <= everything["delta"] <= everything["ci_high"]
    assert {r["paradigm"] for r in analysis.rows} == {"unified"}


def test_metric_helpers():
    y = np.array([0, 0, 0, 1])
    assert float(metric_from_arrays(TaskType.classification, y, np.array([0, 0, 1, 1]))) == (
        pytest.approx((2 / 3 + 1) / 2)
    )
    tp, n_gt = np.array([[1, 0], [2, 2]]), np.array([[2, 2], [2, 2]])
    np.testing.assert_allclose(metric_from_arrays(TaskType.detection, tp, n_gt), [0.25, 1.0])
    assert math.isnan(relative_delta(1.0, 0.0, True))
    assert relative_delta(2.0, 4.0, False) == pytest.approx(0.5)


def test_report_files(tmp_path):
    cases = {
        "task-specific": _tables(tmp_path, "ts", [0.8, 0.6, 0.7], [2.0, 4.0], ["a", "b", "b", "b"]),
        "grouped": _tables(tmp_path, "g", [0.7, 0.5, 0.6], [1.0, 3.0], ["a", "b", "b", "b"]),
    }
    costs = {
        "task-specific": {"models": 3, "parameters": 300, "train_seconds": 3.0,
                          "inference_s_per_image": 0.01},
        "grouped": {"models": 2, "parameters": 200, "train_seconds": 2.0,
                    "inference_s_per_image": 0.01},
    }  # fmt: skip
    analysis = analyse_transfer(MANIFEST, cases, costs=costs, n_resamples=100)
    files = write_transfer(analysis, tmp_path / "out")
    with open(files["transfer_csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    seg = next(r for r in table if r["level"] == "task" and r["name"] == "seg")
    assert seg["negative_transfer"] == "True" and float(seg["delta"]) == pytest.approx(-1 / 7)
    page = files["report_html"].read_text()
    assert "Transfer analysis" in page and "data:image/png;base64," in page
    assert "Negative transfer" in page and "seg (grouped, task)" in page
    with open(files["costs_csv"], newline="") as fh:
        assert [r["parameters"] for r in csv.DictReader(fh)] == ["300", "200"]
