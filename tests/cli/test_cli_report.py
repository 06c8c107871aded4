"""``medfleet report compare`` through the Typer app."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from medfleet.cli import app


def _run(tmp_path: Path, name: str, pred: list[float]) -> Path:
    truth = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    for role, values in (("gt", truth), ("pred", pred)):
        with open(tmp_path / f"{name}_{role}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["case_id", "value"])
            w.writerows([[f"c{i}", v] for i, v in enumerate(values)])
    out = tmp_path / name
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--task-type",
            "regression",
            "--pred",
            str(tmp_path / f"{name}_pred.csv"),
            "--gt",
            str(tmp_path / f"{name}_gt.csv"),
            "--out",
            str(out),
            "--no-report",
        ],
    )
    assert result.exit_code == 0, result.output
    assert not (out / "report.html").exists()
    return out


def test_compare_text_and_json(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", [1.5, 2.5, 3.5, 4.5, 5.5, 6.5])
    b = _run(tmp_path, "b", [1.1, 2.0, 2.9, 4.0, 5.1, 6.0])
    runner = CliRunner()
    text = runner.invoke(app, ["report", "compare", str(a), str(b)])
    assert text.exit_code == 0, text.output
    default_out = tmp_path / "compare_a_vs_b"
    assert (default_out / "compare.html").is_file() and (default_out / "compare.json").is_file()
    assert "medfleet report compare" in text.output and "wrote" in text.output
    out = tmp_path / "cmp"
    js = runner.invoke(
        app,
        [
            "report",
            "compare",
            str(a),
            str(b),
            "--out",
            str(out),
            "--n-resamples",
            "200",
            "--format",
            "json",
        ],
    )
    assert js.exit_code == 0, js.output
    printed = json.loads(js.stdout)
    assert printed["compare_html"] == str(out / "compare.html")
    row = next(r for r in printed["comparisons"] if r["metric"] == "abs_error")
    assert row["mean_a"] == 0.5 and row["difference"] < 0


def test_compare_reports_a_missing_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "compare",
            str(tmp_path / "x"),
            str(tmp_path / "y"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1
    assert "summary.json not found" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()
