"""IUGC preset: the dataset's 0/7/8 masks, single-mask biometry, per-case errors, optional --gt."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.errors import OptionError
from medfleet.evaluate.challenges.iugc import intrapartum_geometry
from medfleet.evaluate.runner.config import EvaluationConfig


def _constructed(ps: int = 1, head: int = 2, shift: int = 0) -> np.ndarray:
    """PS: a line from (x=10, y=30) to (x=40, y=30); head: the square [50,70]x[40,60]."""
    lab = np.zeros((80, 90), np.uint8)
    lab[30, 10 + shift : 41] = ps
    lab[40:61, 50 + shift : 71] = head
    return lab


def _png(folder: Path, name: str, lab: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(lab).save(folder / f"{name}.png")


def _evaluate(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["evaluate", *(str(a) for a in args)])
    return result.exit_code, " ".join(result.output.split())


def _read(out: Path) -> tuple[dict, dict[str, dict[str, str]]]:
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "cases.csv", newline="") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    return summary, rows


# ---------------------------------------------------------------- the 0/7/8 encoding


@pytest.fixture
def dataset_masks(tmp_path: Path) -> tuple[Path, Path]:
    """Reference and predicted PNG masks in the dataset's own encoding (7 PS, 8 head)."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for k in range(3):
        _png(gt, f"img_{k}", _constructed(7, 8))
        _png(pred, f"img_{k}", _constructed(7, 8, shift=k))
    return gt, pred


def test_dataset_labels_scored_with_ps_label_and_head_label(
    dataset_masks: tuple[Path, Path], tmp_path: Path
) -> None:
    gt, pred = dataset_masks
    out = tmp_path / "out"
    code, text = _evaluate(
        "--preset", "iugc", "--pred", pred, "--gt", gt, "--out", out,
        "--preset-option", "ps_label=7", "--preset-option", "head_label=8",
    )  # fmt: skip
    assert code == 0, text
    summary, rows = _read(out)
    assert summary["preset"]["components"]["dsc_ps"] > 0.9
    assert float(rows["img_0"]["dsc_head"]) == 1.0 and float(rows["img_0"]["aop_error"]) == 0.0
    # the same geometry in 1/2 labels gives the same AoP
    assert float(rows["img_0"]["aop_gt"]) == pytest.approx(intrapartum_geometry(_constructed()).aop)
    assert not any("no pixel of label" in w for w in summary["warnings"])
    assert summary["conventions"]["labels"] == {"ps": 7, "head": 8}


def test_dataset_labels_without_the_options_warn_with_the_fix(
    dataset_masks: tuple[Path, Path], tmp_path: Path
) -> None:
    gt, pred = dataset_masks
    out = tmp_path / "out"
    code, text = _evaluate("--preset", "iugc", "--pred", pred, "--gt", gt, "--out", out)
    assert code == 0, text
    summary, _ = _read(out)
    expected = (
        "no pixel of labels 1/2 in any mask; labels present: 7, 8 "
        "(fix: --preset-option ps_label=7 --preset-option head_label=8"
    )
    assert any(w.startswith(expected) for w in summary["warnings"])


def test_a_label_absent_from_every_mask_is_named(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    only_ps = _constructed()
    only_ps[only_ps == 2] = 0
    _png(gt, "a", only_ps)
    _png(pred, "a", only_ps)
    code, _ = _evaluate("--preset", "iugc", "--pred", pred, "--gt", gt, "--out", tmp_path / "o")
    assert code == 0
    summary, _ = _read(tmp_path / "o")
    assert any(w.startswith("no pixel of label 2 in any mask") for w in summary["warnings"])


def test_equal_or_zero_labels_are_refused(tmp_path: Path) -> None:
    gt = tmp_path / "gt"
    _png(gt, "a", _constructed())
    for bad in (["ps_label=2"], ["head_label=0"]):
        code, text = _evaluate(
            "--preset", "iugc", "--pred", gt, "--gt", gt, "--out", tmp_path / "o",
            *[x for b in bad for x in ("--preset-option", b)],
        )  # fmt: skip
        assert code == 1 and "two different nonzero labels" in text


# ---------------------------------------------------------------- mode=biometry


def test_single_mask_biometry_writes_values_and_landmarks(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    _png(masks, "a", _constructed())
    _png(masks, "b", _constructed(7, 8))  # only PS/head labels 7/8: missing for 1/2
    out = tmp_path / "out"
    code, text = _evaluate(
        "--preset", "iugc", "--preset-option", "mode=biometry", "--pred", masks, "--out", out
    )
    assert code == 0, text
    summary, rows = _read(out)
    a = rows["a"]
    # hand-computed: p1 = (40, 30), the nearest head point is the corner (50, 40), the
    # tangent from p1 with the larger angle touches (70, 40)
    assert float(a["aop"]) == pytest.approx(180.0 - math.degrees(math.atan2(10, 30)))
    assert float(a["hsd"]) == pytest.approx(math.sqrt(200))
    got = {k: float(a[k]) for k in a if k.endswith(("_x", "_y"))}
    assert got == {
        "ps1_x": 40.0, "ps1_y": 30.0, "ps2_x": 10.0, "ps2_y": 30.0,
        "hsd_x": 50.0, "hsd_y": 40.0, "tangent_x": 70.0, "tangent_y": 40.0,
    }  # fmt: skip
    assert rows["b"]["biometry_status"] == "missing_both" and rows["b"]["aop"] == "nan"
    assert summary["inputs"]["gt"] is None
    assert summary["preset"]["components"]["n_images"] == 2
    assert summary["preset"]["components"]["aop"] == pytest.approx(float(a["aop"]))
    assert summary["preset"]["components"]["n_aop_missing"] == 1
    assert any(w.startswith("case b: biometry missing") for w in summary["warnings"])
    assert (out / "report.html").is_file()


def test_single_mask_biometry_in_mm_scales_hsd_and_landmarks(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    _png(masks, "a", _constructed())
    meta = tmp_path / "meta.csv"
    meta.write_text('case_id,spacing\na,"0.5,0.25"\n')
    out = tmp_path / "out"
    code, text = _evaluate(
        "--preset", "iugc", "--preset-option", "mode=biometry", "--pred", masks,
        "--out", out, "--units", "mm", "--meta", meta,
    )  # fmt: skip
    assert code == 0, text
    _, rows = _read(out)
    # x (columns) at 0.25 mm, y (rows) at 0.5 mm: p1 = (10, 15) mm
    assert (float(rows["a"]["ps1_x"]), float(rows["a"]["ps1_y"])) == (10.0, 15.0)
    expected = intrapartum_geometry(_constructed(), spacing=(0.5, 0.25))
    assert float(rows["a"]["hsd"]) == pytest.approx(expected.hsd)


def test_single_mask_biometry_refuses_gt_and_classification(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    _png(masks, "a", _constructed())
    base = ["--preset", "iugc", "--preset-option", "mode=biometry", "--pred", masks]
    code, text = _evaluate(*base, "--gt", masks, "--out", tmp_path / "o")
    assert code == 1 and "mode=biometry measures the --pred masks alone" in text
    table = tmp_path / "t.csv"
    table.write_text("case_id,label\na,1\n")
    code, text = _evaluate(
        *base, "--out", tmp_path / "o", "--preset-option", f"classification_gt={table}",
        "--preset-option", f"classification_pred={table}",
    )  # fmt: skip
    assert code == 1 and "need mode=compare" in text
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- --gt optional


@pytest.mark.parametrize(
    "args",
    [
        ["--task-type", "segmentation"],
        ["--preset", "hc18"],
        ["--preset", "iugc"],
        ["--preset", "iugc", "--preset-option", "mode=compare"],
    ],
)
def test_gt_is_required_everywhere_else(tmp_path: Path, args: list[str]) -> None:
    masks = tmp_path / "masks"
    _png(masks, "a", _constructed())
    code, text = _evaluate(*args, "--pred", masks, "--out", tmp_path / "o")
    assert code == 2
    assert "--gt is required unless" in text and "mode=biometry" in text
    assert not (tmp_path / "o").exists()


def test_evaluation_config_without_gt(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="--gt is required unless"):
        EvaluationConfig(task_type="segmentation", pred=tmp_path, gt=None, out=tmp_path / "o")
    config = EvaluationConfig(
        task_type="segmentation",
        pred=tmp_path,
        gt=None,
        out=tmp_path / "o",
        preset="iugc",
        preset_options={"mode": "biometry"},
    )
    assert config.gt is None


# ---------------------------------------------------------------- per-case failures


def test_unreadable_or_unfittable_cases_are_error_rows_in_biometry_mode(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    _png(masks, "good", _constructed())
    (masks / "broken.png").write_bytes(b"not a png")
    np.save(masks / "volume.npy", np.zeros((3, 8, 8), np.uint8))
    out = tmp_path / "out"
    code, text = _evaluate(
        "--preset", "iugc", "--preset-option", "mode=biometry", "--pred", masks, "--out", out
    )
    assert code == 0, text
    summary, rows = _read(out)
    assert rows["good"]["status"] == "ok" and float(rows["good"]["aop"]) > 0
    assert rows["broken"]["status"] == "error" and "broken" in rows["broken"]["error"]
    assert rows["volume"]["status"] == "error" and "2-D" in rows["volume"]["error"]
    assert summary["cases"]["errors"] == 2
    assert summary["cases"]["error_cases"] == ["broken", "volume"]
    assert summary["metrics"]["all"]["aop"]["n_valid"] == 1
    assert summary["preset"]["components"]["aop"] == pytest.approx(float(rows["good"]["aop"]))


def _good_and_square() -> tuple[np.ndarray, np.ndarray]:
    """A fittable PS/FH mask, and the same with a rectangular PS (4 approxPolyDP vertices)."""
    rows, cols = np.mgrid[:200, :200]
    good = np.zeros((200, 200), np.uint8)
    good[((cols - 50) / 30.0) ** 2 + ((rows - 50) / 8.0) ** 2 <= 1] = 1
    good[(cols - 120) ** 2 + (rows - 110) ** 2 <= 45**2] = 2
    square_ps = good.copy()
    square_ps[square_ps == 1] = 0
    square_ps[40:50, 30:60] = 1
    return good, square_ps


def test_too_few_vertices_is_an_error_row_in_biometry_mode(tmp_path: Path) -> None:
    import cv2  # noqa: F401  (the oracle; a missing one fails, never skips)

    masks = tmp_path / "masks"
    good, square_ps = _good_and_square()
    _png(masks, "good", good)
    _png(masks, "square", square_ps)
    out = tmp_path / "out"
    code, text = _evaluate(
        "--preset", "iugc", "--pred", masks, "--out", out,
        "--preset-option", "mode=biometry", "--preset-option", "biometry=ellipse-official",
    )  # fmt: skip
    assert code == 0, text
    summary, rows = _read(out)
    assert rows["square"]["status"] == "error"
    assert "more than 5 approxPolyDP vertices" in rows["square"]["error"]
    assert rows["good"]["biometry_status"] == "ok"
    assert summary["cases"]["error_cases"] == ["square"]


def test_compare_mode_keeps_scoring_after_an_unreadable_case(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for name in ("a", "b", "c"):
        _png(gt, name, _constructed())
        _png(pred, name, _constructed(shift=2))
    (pred / "b.png").write_bytes(b"garbage")
    colour = np.zeros((80, 90, 3), np.uint8)
    colour[..., 0] = _constructed()
    Image.fromarray(colour).save(gt / "c.png")  # a colour reference mask
    out = tmp_path / "out"
    code, text = _evaluate("--preset", "iugc", "--pred", pred, "--gt", gt, "--out", out)
    assert code == 0, text
    summary, rows = _read(out)
    assert rows["a"]["status"] == "ok"
    assert [rows[c]["status"] for c in ("b", "c")] == ["error", "error"]
    assert "colour image" in rows["c"]["error"]
    assert summary["cases"]["error_cases"] == ["b", "c"]
    assert summary["preset"]["components"]["dsc"] == pytest.approx(float(rows["a"]["dsc"]))
    assert summary["preset"]["components"]["n_aop_error_missing"] == 0


def test_compare_mode_keeps_the_segmentation_of_an_unfittable_prediction(tmp_path: Path) -> None:
    good, square_ps = _good_and_square()
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _png(gt, "a", good)
    _png(pred, "a", square_ps)
    out = tmp_path / "out"
    code, text = _evaluate(
        "--preset", "iugc", "--pred", pred, "--gt", gt, "--out", out,
        "--preset-option", "biometry=ellipse-official",
    )  # fmt: skip
    assert code == 0, text
    summary, rows = _read(out)
    row = rows["a"]
    assert row["status"] == "ok" and row["biometry_status_pred"] == "no_ellipse_ps"
    assert row["aop_error"] == "nan" and float(row["dsc_ps"]) < 1.0
    assert summary["cases"]["errors"] == 0
    assert summary["preset"]["components"]["dsc_ps"] == pytest.approx(float(row["dsc_ps"]))
    assert summary["preset"]["components"]["n_aop_error_missing"] == 1
    expected = "case a: biometry missing (reference: ok, prediction: no_ellipse_ps)"
    assert expected in summary["warnings"]
