"""``medfleet monitor run`` and ``medfleet monitor simulate`` through the Typer app."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.monitor.store import SQLiteStore


@pytest.fixture
def monitor_files(tmp_path):
    rng = np.random.default_rng(0)
    ref_rows = ["site,prob_0,prob_1"]
    for site in ("a", "b"):
        p = rng.beta(2, 5, 400)
        ref_rows += [f"{site},{x:.5f},{1 - x:.5f}" for x in p]
    (tmp_path / "refs.csv").write_text("\n".join(ref_rows) + "\n")
    rows = ["site,time,prob_0,prob_1"]
    for day in range(1, 5):
        for site in ("a", "b"):
            a = 6.0 if (site == "b" and day >= 3) else 2.0
            for h, x in enumerate(rng.beta(a, 5, 200)):
                rows.append(f"{site},2024-03-0{day}T{h % 24:02d}:00,{x:.5f},{1 - x:.5f}")
    (tmp_path / "outputs.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "monitor.yaml").write_text(
        "sites: [a, b]\nscheme: site\ntests: [ks, psi]\n"
        "references: {'*': refs.csv}\ninput: {paths: [outputs.csv], batch_freq: 1D}\n"
        "db: store/monitor.sqlite\n"
    )
    return tmp_path


def test_run_processes_files_and_is_idempotent(monitor_files):
    runner = CliRunner()
    cfg = str(monitor_files / "monitor.yaml")
    first = runner.invoke(app, ["monitor", "run", "--config", cfg, "--format", "json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["new"] == 8 and data["already_stored"] == 0
    assert data["references_set"] == ["a", "b"]
    assert {(r["site"], r["batch_id"][:10]) for r in data["alerts"]} == {("b", "2024-03-03")}
    assert data["sites"]["b"]["drifted"] == 2 and data["sites"]["a"]["drifted"] == 0
    second = runner.invoke(app, ["monitor", "run", "--config", cfg, "--fail-on-alert"])
    assert second.exit_code == 0, second.output  # nothing new, so no new alert
    assert "skipped 8 already stored" in second.stdout
    store = SQLiteStore(monitor_files / "store" / "monitor.sqlite")
    assert len(store.history("b")) == 4 and len(store.alerts()) == 1


def test_run_fail_on_alert_and_db_override(monitor_files):
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "run",
            "--config",
            str(monitor_files / "monitor.yaml"),
            "--db",
            str(monitor_files / "other.sqlite"),
            "--fail-on-alert",
        ],
    )
    assert result.exit_code == 3, result.output
    assert "alert" in result.stdout and (monitor_files / "other.sqlite").is_file()


def test_run_reports_bad_input_clearly(monitor_files):
    (monitor_files / "bad.csv").write_text("site,time,prob_0,prob_1\na,2024-03-09,1.5,-0.5\n")
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "run",
            "--config",
            str(monitor_files / "monitor.yaml"),
            "--input",
            str(monitor_files / "bad.csv"),
        ],
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())  # undo the console's line wrapping
    assert "site 'a'" in text and "field 'prob'" in text
    assert "outside [0, 1]" in text
    missing = CliRunner().invoke(app, ["monitor", "run", "--config", str(monitor_files / "x.yaml")])
    assert missing.exit_code == 1 and "does not exist" in " ".join(missing.output.split())


def test_simulate_quick_writes_table_and_report(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "monitor",
            "simulate",
            "--quick",
            "--out",
            str(tmp_path),
            "--schemes",
            "site,centralised",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["scheme"] for r in data["table"]] == ["site", "centralised"]
    assert data["table"][0]["f1"] > data["table"][1]["f1"]
    assert (tmp_path / "report.html").is_file() and (tmp_path / "table.csv").is_file()
    bad = CliRunner().invoke(
        app, ["monitor", "simulate", "--quick", "--out", str(tmp_path), "--schemes", "nope"]
    )
    assert bad.exit_code == 1 and "unknown scheme" in bad.output
