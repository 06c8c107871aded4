"""Study report: CSV tables and report.html from a hand-made study record."""

from __future__ import annotations

import csv
import json

import numpy as np

from medfleet.evaluate.runner.aggregate import json_safe
from medfleet.federated.study_cases import TaskCases, analyse_cases
from medfleet.federated.study_record import communication_rows, communication_summary, curve_rows
from medfleet.federated.study_report import (
    comparison_rows,
    format_ci,
    learning_curves_png,
    write_study_report,
)
from medfleet.tasks import TaskSpec


def _record(bytes_up: int, acc: float) -> dict:
    return {
        "rounds": [
            {
                "round": r,
                "clients": {
                    s: {"status": "ok", "bytes_sent": bytes_up, "bytes_received": 2 * bytes_up,
                        "train_loss": 1.0 / r}
                    for s in ("s1", "s2")
                },
                "metrics": {s: {"seg": {"dice": acc + r / 10}} for s in ("s1", "s2")},
            }
            for r in (1, 2, 3)
        ]
    }  # fmt: skip


def _study() -> dict:
    spec = TaskSpec(name="seg", type="segmentation", table="s.csv", labels={0: "bg", 1: "x"})
    rng = np.random.default_rng(1)
    ids = [f"c{i:02d}" for i in range(16)]
    sites = ["s1"] * 8 + ["s2"] * 8
    arms = {
        name: TaskCases(ids, sites, dice=rng.uniform(lo, lo + 0.2, 16), hd95=rng.uniform(1, 5, 16))
        for name, lo in (("local-only", 0.4), ("centralised", 0.7), ("fedavg", 0.6), ("dl", 0.65))
    }
    analysis = analyse_cases({"seg": spec}, {"seg": arms}, n_resamples=100)
    records = {"fedavg": _record(100_000, 0.5), "dl": _record(900, 0.55)}
    comm = [r for a, rec in records.items() for r in communication_rows(a, rec)]
    return json_safe(
        {
            "manifest": "demo",
            "sites": ["s1", "s2"],
            "tasks": {"seg": "segmentation"},
            "split": "test",
            "arms": [{"name": a} for a in arms],
            "budget": {"rounds": 3, "steps": {"s1": 6, "s2": 6}, "centralised_steps": 12,
                       "rule": "same steps"},
            "bootstrap": {"n_resamples": 100, "confidence": 0.95},
            "metrics": analysis["metrics"],
            "tests": analysis["tests"],
            "communication": comm,
            "communication_summary": communication_summary(comm),
            "curves": [r for a, rec in records.items() for r in curve_rows(a, rec)],
            "failures": [],
        }
    )  # fmt: skip


def test_report_holds_every_table(tmp_path):
    data = _study()
    files = write_study_report(data, tmp_path)
    html = files["report_html"].read_text()
    for title in (
        "Comparison on the pooled test cases",
        "Per site",
        "Paired tests between arms",
        "Communication",
        "Learning curves",
    ):
        assert title in html
    for arm in ("local-only", "centralised", "fedavg", "dl"):
        assert f"<td>{arm}</td>" in html
    assert "wilcoxon" in html
    assert "data:image/png;base64," in html
    # bytes per round: fedavg 2 clients x 300 kB; dl 2 x 2.7 kB -> 0.9 % of FedAvg
    assert "600.00 kB" in html and "5.40 kB" in html and "0.9%" in html
    with open(files["metrics_csv"], newline="") as fh:
        metrics = list(csv.DictReader(fh))
    assert len(metrics) == 4 * 3 * 2  # arms x (2 sites + pooled) x (dice, hd95)
    with open(files["tests_csv"], newline="") as fh:
        tests = list(csv.DictReader(fh))
    assert len(tests) == 6  # pairs of 4 arms, one Wilcoxon each
    with open(files["communication_csv"], newline="") as fh:
        comm = list(csv.DictReader(fh))
    assert [int(r["bytes_total"]) for r in comm if r["arm"] == "dl"] == [5400] * 3
    with open(files["curves_csv"], newline="") as fh:
        assert any(r["site"] == "mean" for r in csv.DictReader(fh))
    json.dumps(data, allow_nan=False)  # strict JSON


def test_comparison_table_cells_match_the_metric_rows():
    data = _study()
    rows = comparison_rows(data)
    assert [r[1] for r in rows] == ["local-only", "centralised", "fedavg", "dl"]
    pooled = {
        r["arm"]: r for r in data["metrics"] if r["site"] == "pooled" and r["metric"] == "dice"
    }
    for row in rows:
        m = pooled[row[1]]
        assert row[3] == format_ci(m["estimate"], m["low"], m["high"])
        assert m["low"] <= m["estimate"] <= m["high"]


def test_learning_curves_png():
    data = _study()
    png = learning_curves_png(data["curves"])
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert learning_curves_png([]) is None
