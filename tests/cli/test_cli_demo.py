"""``medfleet demo`` and ``medfleet data phantoms`` end to end through the Typer app."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.demo import DemoContext, default_stages, run_demo

DATA_STAGES = "phantoms,validate,summary"


def test_demo_data_stages_write_summary(tmp_path: Path) -> None:
    args = ["demo", "--quick", "--out", str(tmp_path), "--stages", DATA_STAGES, "--format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    on_disk = json.loads((tmp_path / "demo_summary.json").read_text())
    assert printed == on_disk
    assert list(on_disk["stages"]) == DATA_STAGES.split(",")
    assert on_disk["stages"]["validate"]["ok"] is True
    tasks = on_disk["stages"]["summary"]["tasks"]
    assert {info["type"] for info in tasks.values()} >= {
        "segmentation",
        "classification",
        "detection",
        "regression",
        "landmarks",
    }
    # the sites differ in acquisition: their intensity statistics are not all equal
    for info in tasks.values():
        means = [s["intensity_mean"] for s in info["sites"].values()]
        assert len(means) == 3 and len(set(means)) == 3


def test_demo_text_output(tmp_path: Path) -> None:
    args = ["demo", "--quick", "--out", str(tmp_path), "--stages", DATA_STAGES]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "stage phantoms" in result.output and "demo finished" in result.output


def test_demo_unknown_stage(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--stages", "phantoms,tran"])
    assert result.exit_code == 1
    assert "unknown demo stage(s) ['tran']" in result.output


def test_default_stages_in_pipeline_order() -> None:
    assert [s.name for s in default_stages()] == [
        "phantoms",
        "validate",
        "summary",
        "train",
        "monitor",
        "federated",
    ]


def test_demo_stops_on_invalid_data(tmp_path: Path) -> None:
    class BreakData:
        name = "break"
        description = "corrupt one image"

        def run(self, ctx: DemoContext, progress) -> dict:
            image = next((ctx.out / "data").rglob("*.png"))
            image.write_bytes(b"not a png")
            return {"broken": str(image)}

    phantoms, validate = default_stages()[:2]
    with pytest.raises(Exception, match=r"(?s)failed validation.*cannot decode"):
        run_demo(tmp_path, quick=True, stages=[phantoms, BreakData(), validate])
    assert not (tmp_path / "demo_summary.json").exists()


@pytest.mark.slow
def test_full_quick_demo_trains_evaluates_and_monitors(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--quick", "--out", str(tmp_path), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert list(summary["stages"]) == [s.name for s in default_stages()]  # all, in order
    train = summary["stages"]["train"]
    assert set(train["test"]) == {t for t in summary["stages"]["summary"]["tasks"]}
    assert Path(train["model"]).is_file()
    assert set(train["baseline"]) == set(train["test"])  # a trivial baseline per task
    for task, entry in train["baseline"].items():
        values = (entry["model"], entry["baseline"], entry["difference"])
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), task
    monitor = summary["stages"]["monitor"]
    assert monitor["scorer"] == "demo model"
    assert monitor["drift_detected"] is True
    federated = summary["stages"]["federated"]
    assert federated["strategy"] == "dual-lora"
    assert federated["rounds"] == 2


def test_phantoms_command_json(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    args = [
        "data",
        "phantoms",
        "--out",
        str(out),
        "--sites",
        "2",
        "--cases-per-site",
        "4",
        "--size",
        "64",
        "--format",
        "json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = Path(json.loads(result.stdout)["manifest"])
    assert manifest.is_file()
    check = CliRunner().invoke(
        app, ["data", "validate", "--manifest", str(manifest), "--format", "json"]
    )
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["ok"] is True


def test_prepare_unknown_dataset(tmp_path: Path) -> None:
    args = ["data", "prepare", "nosuch", "--src", str(tmp_path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "unknown data set 'nosuch'" in result.output and "hc18" in result.output


def test_text_summary_shows_the_federated_stage(capsys: pytest.CaptureFixture[str]) -> None:
    from medfleet.cli.demo import _print_summary

    federated = {
        "strategy": "dual-lora",
        "rounds": 2,
        "balanced_accuracy": {"site_a": 0.75, "site_b": 0.5},
        "bytes_per_round": {"1": {"sent": 10, "received": 20, "total": 30}},
    }
    base = {"out": "demo", "seconds": {"federated": 1.0}}
    _print_summary({**base, "stages": {"federated": federated}})
    shown = " ".join(capsys.readouterr().out.split())
    assert "federated dual-lora, 2 rounds" in shown and "site_a" in shown
    assert "round 1: 30" in shown
    _print_summary({**base, "stages": {"federated": {"skipped": True, "reason": "flwr missing"}}})
    assert "federated stage skipped: flwr missing" in capsys.readouterr().out


def test_text_summary_sets_each_task_against_its_baseline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medfleet.cli.demo import _print_summary

    mae = {"model": 41.2, "baseline": 45.0, "direction": "lower", "difference": 3.8}
    dice = {"model": 0.5, "baseline": 0.7, "direction": "higher", "difference": -0.2}
    train = {
        "backbone": "vit-tiny",
        "test": {"head_circumference": {"mae": 41.2}, "seg": {"dice": 0.5}},
        "baseline": {
            "head_circumference": {"kind": "training mean", "unit": "mm", "metrics": {"mae": mae}},
            "seg": {"kind": "pixel-wise majority", "unit": None, "metrics": {"dice": dice}},
        },
    }
    _print_summary({"out": "demo", "seconds": {"train": 1.0}, "stages": {"train": train}})
    shown = " ".join(capsys.readouterr().out.split())
    assert "head_circumference: MAE 41.2 mm vs 45 mm for the training mean (3.8 mm better" in shown
    assert "seg: Dice 0.5 vs 0.7 for the pixel-wise majority (0.2 worse" in shown
