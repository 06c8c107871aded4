"""The HC18 preset reads the challenge's own files: ``NNN_HC_Annotation.png`` outlines and
``training_set_pixel_size_and_HC.csv`` keyed by ``filename``."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from medfleet.cli import app

CASES = ("000_HC", "001_HC", "010_HC")


def _evaluate(out: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["evaluate", *args, "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text())


def _official_rows(shared: Path) -> dict[str, dict[str, str]]:
    with open(shared / "hc18" / "training_set_pixel_size_and_HC.csv", newline="") as fh:
        return {r["filename"][: -len(".png")]: r for r in csv.DictReader(fh)}


def test_challenge_outlines_and_pixel_size_table_score_as_they_are(
    shared_data: Path, tmp_path: Path
) -> None:
    """Filled copies of the official outlines, named like the images, score against the
    outlines with the official table: HC within 1.5 % of the organisers' value."""
    annotations = shared_data / "hc18" / "annotations"
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for case in CASES:
        source = annotations / f"{case}_Annotation.png"
        shutil.copy(source, gt / source.name)
        filled = ndimage.binary_fill_holes(np.asarray(Image.open(source)) > 0)
        Image.fromarray((filled * 255).astype(np.uint8)).save(pred / f"{case}.png")
    table = shared_data / "hc18" / "training_set_pixel_size_and_HC.csv"
    subset = tmp_path / "training_set_pixel_size_and_HC.csv"
    official = _official_rows(shared_data)
    with open(subset, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(next(iter(official.values()))))
        writer.writeheader()
        writer.writerows(official[c] for c in CASES)
    assert table.is_file()

    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "hc18",
        "--pred",
        str(pred),
        "--gt",
        str(gt),
        "--meta",
        str(subset),
        "--preset-option",
        "hc_column=head circumference (mm)",
    )
    assert s["n_cases"] == len(CASES)
    with open(tmp_path / "out" / "cases.csv", newline="") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(CASES)
    for case in CASES:
        reference = float(official[case]["head circumference (mm)"])
        assert float(rows[case]["hc_gt_mm"]) == pytest.approx(reference)
        assert float(rows[case]["hc_pred_mm"]) == pytest.approx(reference, rel=0.015)

    # Without the table the pixel size is unknown (1 per pixel): the HC is in pixels, so the
    # pixel size really came from the table's "pixel size(mm)" column.
    s_px = _evaluate(tmp_path / "out_px", "--preset", "hc18", "--pred", str(pred), "--gt", str(gt))
    with open(tmp_path / "out_px" / "cases.csv", newline="") as fh:
        hc_px = {r["case_id"]: float(r["hc_pred_mm"]) for r in csv.DictReader(fh)}
    size = float(official["000_HC"]["pixel size(mm)"])
    assert hc_px["000_HC"] * size == pytest.approx(float(rows["000_HC"]["hc_pred_mm"]), rel=1e-6)
    assert math.isfinite(s_px["preset"]["score"])


def test_strip_suffix_collision_and_opt_out(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    rows, cols = np.mgrid[:64, :64]
    mask = (((cols - 32) / 20.0) ** 2 + ((rows - 32) / 14.0) ** 2 <= 1).astype(np.uint8) * 255
    for folder, name in ((gt, "a_HC_Annotation.png"), (gt, "a_HC.png"), (pred, "a_HC.png")):
        Image.fromarray(mask).save(folder / name)
    base = ["evaluate", "--preset", "hc18", "--pred", str(pred), "--gt", str(gt)]
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "o1")])
    assert result.exit_code != 0
    assert "a_HC.png and a_HC_Annotation.png are both case" in result.output
    assert "strip_suffix=" in result.output
    kept = CliRunner().invoke(
        app,
        [
            *base,
            "--out",
            str(tmp_path / "o2"),
            "--preset-option",
            "strip_suffix=",
            "--allow-missing",
        ],
    )
    assert kept.exit_code == 0, kept.output
