"""The ISBI 2015 preset reads the challenge's annotation folders (``NNN.txt``) as they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medfleet.cli import app


def _write_case(folder: Path, name: str, points: np.ndarray, extra: list[str]) -> None:
    lines = [f"{int(x)},{int(y)}" for x, y in points] + extra
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")


def test_annotation_folders_score_by_hand(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gt, pred = tmp_path / "400_senior", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    errors_px = []
    for case in ("001", "002", "003"):
        points = rng.integers(100, 1800, size=(19, 2))
        offsets = rng.choice([(0, 0), (3, 4), (12, 16), (24, 32)], size=19)
        errors_px.extend(np.hypot(offsets[:, 0], offsets[:, 1]))
        # The senior files carry classification lines after the 19 landmarks.
        _write_case(gt, case, points, ["1", "3", "2"])
        _write_case(pred, case, points + offsets, [])
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "evaluate", "--preset", "landmarks-isbi2015", "--pred", str(pred), "--gt", str(gt),
            "--out", str(out), "--no-report",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    s = json.loads((out / "summary.json").read_text())
    errors_mm = np.array(errors_px) * 0.1
    c = s["preset"]["components"]
    assert s["preset"]["score"] == pytest.approx(errors_mm.mean())
    assert c["sdr_2"] == pytest.approx(np.mean(errors_mm <= 2.0))
    assert c["sdr_4"] == pytest.approx(np.mean(errors_mm <= 4.0))
    assert s["n_cases"] == 3


def test_a_short_annotation_file_is_named(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    _write_case(gt, "001", np.ones((19, 2)), [])
    _write_case(pred, "001", np.ones((18, 2)), [])
    result = CliRunner().invoke(
        app,
        [
            "evaluate", "--preset", "landmarks-isbi2015", "--pred", str(pred), "--gt", str(gt),
            "--out", str(tmp_path / "out"),
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "001.txt has 18 landmark lines, not 19" in result.output
    assert not (tmp_path / "out").exists()
