"""``medfleet demo`` and ``medfleet data phantoms`` end to end through the Typer app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.demo import STAGES, DemoContext, run_demo


def test_demo_quick_writes_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--quick", "--out", str(tmp_path), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    on_disk = json.loads((tmp_path / "demo_summary.json").read_text())
    assert printed == on_disk
    assert list(on_disk["stages"]) == [stage.name for stage in STAGES]
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
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "stage phantoms" in result.output and "demo finished" in result.output


def test_demo_stops_on_invalid_data(tmp_path: Path) -> None:
    class BreakData:
        name = "break"
        description = "corrupt one image"

        def run(self, ctx: DemoContext, progress) -> dict:
            image = next((ctx.out / "data").rglob("*.png"))
            image.write_bytes(b"not a png")
            return {"broken": str(image)}

    phantoms, validate = STAGES[0], STAGES[1]
    try:
        run_demo(tmp_path, quick=True, stages=[phantoms, BreakData(), validate])
    except Exception as exc:
        assert "failed validation" in str(exc) and "cannot decode" in str(exc)
    else:
        raise AssertionError("the demo accepted corrupt data")
    assert not (tmp_path / "demo_summary.json").exists()


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
    check = CliRunner().invoke(app, ["data", "validate", str(manifest), "--format", "json"])
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["ok"] is True


def test_prepare_unknown_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "prepare", "nosuch", "--src", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "unknown data set 'nosuch'" in result.output and "hc18" in result.output
