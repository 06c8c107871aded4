"""Bad-input corpus for ``medfleet evaluate`` (task types and challenge presets).

Every case runs one ``medfleet evaluate`` on small tables or mask folders built in
``tmp_path`` and checks the refusal: the exit code, one ``error:`` message naming the file,
case or option (a case mismatch lists its cases on indented lines below it), no traceback,
and no output folder left behind. User text with brackets (``[/bold]x``, ``runs[v2]``) is
printed as written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.bad_input.harness import (
    Outcome,
    assert_nothing_half_written,
    assert_refused,
    assert_usage_error,
    run_cli,
)

from medfleet.data.io import write_png

GT_CLS = "case_id,label\na,benign\nb,malignant\nc,benign\n"
GT_REG = "case_id,value\na,1.5\nb,2\nc,3\n"


def assert_error_names(outcome: Outcome, *names: str, code: int | None = None) -> str:
    """One ``error:`` line (continuation lines indented below it) naming all of ``names``."""
    assert_refused(outcome, code=code)
    lines = outcome.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error:"))
    message = "\n".join(lines[start:])
    assert all(line.startswith("  ") for line in lines[start + 1 :] if line.strip()), message
    for name in names:
        assert name in message, f"{name!r} not named\n{outcome.describe()}"
    return message


def _write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def _evaluate(task_type: str, pred: Path, gt: Path, out: Path, *extra: object) -> Outcome:
    return run_cli(
        ["evaluate", "--task-type", task_type, "--pred", pred, "--gt", gt, "--out", out, *extra]
    )


# ----------------------------------------------------------------- tables (cls / regression)

# (id, task type, reference table, prediction table, names in the error)
TABLE_CASES = [
    (
        "missing-prediction-for-a-case",
        "classification",
        GT_CLS,
        "case_id,label\na,benign\nb,benign\n",
        ["pred.csv", "missing predictions (1): c"],
    ),
    (
        "prediction-for-a-missing-case",
        "classification",
        GT_CLS,
        "case_id,label\na,benign\nb,benign\nc,benign\nzz,benign\n",
        ["predictions without reference (1): zz"],
    ),
    (
        "duplicate-case-id",
        "classification",
        GT_CLS,
        "case_id,label\na,benign\na,benign\nb,benign\nc,benign\n",
        ["pred.csv", "case 'a'", "line 3"],
    ),
    (
        "empty-table",
        "classification",
        GT_CLS,
        "",
        ["pred.csv", "empty", "fix:"],
    ),
    (
        "table-without-rows",
        "classification",
        GT_CLS,
        "case_id,label\n",
        ["missing predictions (3): a, b, c"],
    ),
    (
        "missing-column",
        "classification",
        GT_CLS,
        "case_id,lbl\na,benign\nb,benign\nc,benign\n",
        ["pred.csv", "'label'"],
    ),
    (
        "empty-case-id",
        "regression",
        GT_REG,
        "case_id,value\na,1\n,2\nc,3\n",
        ["pred.csv", "line 3", "case_id is empty"],
    ),
    (
        "nan-in-prediction",
        "regression",
        GT_REG,
        "case_id,value\na,1\nb,nan\nc,3\n",
        ["case b", "'nan'"],
    ),
    (
        "text-in-prediction",
        "regression",
        GT_REG,
        "case_id,value\na,1\nb,two\nc,3\n",
        ["case b", "'two'"],
    ),
    (
        "nan-in-reference",
        "regression",
        "case_id,value\na,1\nb,nan\nc,3\n",
        GT_REG,
        ["case b", "'nan'"],
    ),
    (
        "wrong-cell-count",
        "regression",
        GT_REG,
        "case_id,value\na,1\nb,2,7\nc,3\n",
        ["pred.csv", "line 3"],
    ),
    (
        "missing-case-with-markup-in-its-id",
        "classification",
        "case_id,label\n[/bold]x,benign\nb,malignant\n",
        "case_id,label\nb,benign\n",
        ["missing predictions (1): [/bold]x"],
    ),
]


@pytest.mark.parametrize(
    ("task_type", "gt_text", "pred_text", "names"),
    [pytest.param(*rest, id=i) for i, *rest in TABLE_CASES],
)
def test_bad_tables_are_refused(
    tmp_path: Path, task_type: str, gt_text: str, pred_text: str, names: list[str]
) -> None:
    gt = _write(tmp_path, "gt.csv", gt_text)
    pred = _write(tmp_path, "pred.csv", pred_text)
    outcome = _evaluate(task_type, pred, gt, tmp_path / "out")
    assert_error_names(outcome, *names, code=1)
    assert_nothing_half_written(tmp_path, allowed={"gt.csv", "pred.csv"})


def test_non_utf8_prediction_table_is_refused(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    pred = _write(tmp_path, "pred.csv", "case_id,label\na,b\u00e9nin\nb,x\nc,x\n", "latin-1")
    outcome = _evaluate("classification", pred, gt, tmp_path / "out")
    assert_error_names(outcome, str(pred), "UTF-8", "fix:")
    assert not (tmp_path / "out").exists()


def test_label_outside_the_given_classes_is_refused(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    pred = _write(tmp_path, "pred.csv", "case_id,label\na,benign\nb,[red]x\nc,benign\n")
    outcome = _evaluate(
        "classification", pred, gt, tmp_path / "out", "--labels", "benign,malignant"
    )
    assert_error_names(outcome, "case b", "'[red]x'")
    assert not (tmp_path / "out").exists()


def test_a_folder_given_for_a_table_is_refused(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    outcome = _evaluate("classification", tmp_path, gt, tmp_path / "out")
    assert_error_names(outcome, "--pred", str(tmp_path), "folder")


def test_missing_prediction_file_is_refused(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    outcome = _evaluate("classification", tmp_path / "nope.csv", gt, tmp_path / "out")
    assert_error_names(outcome, "--pred", str(tmp_path / "nope.csv"))
    assert not (tmp_path / "out").exists()


def test_meta_without_case_id_is_refused(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    meta = _write(tmp_path, "meta.csv", "id,site\na,x\n")
    outcome = _evaluate("classification", gt, gt, tmp_path / "out", "--meta", meta)
    assert_error_names(outcome, "--meta", str(meta), "'case_id'")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- segmentation mask folders


def _mask_folders(tmp_path: Path, cases: tuple[str, ...] = ("a", "b", "c")) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for folder in (gt, pred):
        folder.mkdir()
        for case in cases:
            mask = np.zeros((16, 16), np.uint8)
            mask[4:10, 4:10] = 1
            write_png(folder / f"{case}.png", mask)
    return gt, pred


def test_mask_of_another_shape_is_refused(tmp_path: Path) -> None:
    gt, pred = _mask_folders(tmp_path)
    write_png(pred / "b.png", np.zeros((12, 16), np.uint8))
    outcome = _evaluate("segmentation", pred, gt, tmp_path / "out")
    assert_error_names(outcome, "case b", "(12, 16)", "(16, 16)", "--resample-pred")
    assert not (tmp_path / "out").exists()


def test_corrupt_prediction_mask_is_refused(tmp_path: Path) -> None:
    gt, pred = _mask_folders(tmp_path)
    (pred / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot the rest of a PNG")
    outcome = _evaluate("segmentation", pred, gt, tmp_path / "out")
    assert_error_names(outcome, "case b", str(pred / "b.png"))
    assert not (tmp_path / "out").exists()


def test_missing_mask_with_markup_in_its_case_id_is_named_as_written(tmp_path: Path) -> None:
    gt, pred = _mask_folders(tmp_path, ("a", "[red]c"))
    (pred / "[red]c.png").unlink()
    outcome = _evaluate("segmentation", pred, gt, tmp_path / "out")
    assert_error_names(outcome, "missing predictions (1): [red]c")


def test_folder_without_masks_is_refused(tmp_path: Path) -> None:
    gt, _ = _mask_folders(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    outcome = _evaluate("segmentation", empty, gt, tmp_path / "out")
    assert_error_names(outcome, "--pred", str(empty), "no mask files")


def test_success_prints_output_paths_and_case_text_as_written(tmp_path: Path) -> None:
    gt, pred = _mask_folders(tmp_path, ("a", "[red]c"))
    out = tmp_path / "runs[v2]" / "[/bold]eval"
    outcome = _evaluate("segmentation", pred, gt, out, "--no-report")
    assert outcome.exit_code == 0, outcome.describe()
    assert f"wrote {out / 'cases.csv'}, {out / 'summary.json'}" in outcome.stdout
    assert (out / "cases.csv").read_text().count("[red]c") == 1


def test_classification_labels_with_markup_print_as_written(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", "case_id,label\n[/bold]x,[red]benign\nb,malignant\n")
    out = tmp_path / "ev[1]"
    outcome = _evaluate("classification", gt, gt, out, "--no-report")
    assert outcome.exit_code == 0, outcome.describe()
    assert f"wrote {out / 'cases.csv'}" in outcome.stdout, outcome.describe()


# ----------------------------------------------------------------- options and --out


def test_unknown_task_type_is_refused(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    outcome = _evaluate("segmentaton", gt, gt, tmp_path / "out")
    assert_error_names(outcome, "'segmentaton'", "segmentation")
    assert not (tmp_path / "out").exists()


def test_unknown_preset_is_refused(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    outcome = run_cli(
        ["evaluate", "--preset", "hc19", "--pred", gt, "--gt", gt, "--out", tmp_path / "out"]
    )
    assert_error_names(outcome, "'hc19'", "hc18", "fix:")
    assert not (tmp_path / "out").exists()


def test_preset_given_the_wrong_inputs_is_refused(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    outcome = run_cli(
        ["evaluate", "--preset", "hc18", "--pred", gt, "--gt", gt, "--out", tmp_path / "out"]
    )
    assert_error_names(outcome, "--pred", str(gt))
    assert not (tmp_path / "out").exists()


def test_unknown_preset_option_is_refused(tmp_path: Path) -> None:
    gt, pred = _mask_folders(tmp_path)
    outcome = run_cli(
        ["evaluate", "--preset", "hc18", "--pred", pred, "--gt", gt, "--out", tmp_path / "out",
         "--preset-option", "colour=red"]
    )  # fmt: skip
    assert_error_names(outcome, "'colour'", "hc18")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("--preset-option", "literal", id="preset-option-without-value"),
        pytest.param("--labels", ",", id="empty-labels"),
        pytest.param("--landmark-reference", "0", id="landmark-reference-one-index"),
    ],
)
def test_malformed_options_are_usage_errors(tmp_path: Path, option: str, value: str) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    outcome = _evaluate("classification", gt, gt, tmp_path / "out", option, value)
    assert_refused(outcome, option, code=2)
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused_before_scoring(tmp_path: Path) -> None:
    gt, pred = _mask_folders(tmp_path)
    out = tmp_path / "results"
    out.write_text("keep me")
    outcome = _evaluate("segmentation", pred, gt, out)
    line = assert_refused(outcome, "--out", str(out), "fix:", code=2)
    assert "existing file" in line
    assert "scoring cases" not in outcome.stderr  # refused before any case was scored
    assert out.read_text() == "keep me"


def test_out_under_a_file_is_refused_before_scoring(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    blocker = _write(tmp_path, "runs", "x")
    outcome = _evaluate("classification", gt, gt, blocker / "eval")
    assert_refused(outcome, "--out", str(blocker / "eval"), str(blocker), code=2)
    assert_nothing_half_written(tmp_path, allowed={"gt.csv", "runs"})


def test_missing_task_type_and_preset_is_a_usage_error(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    outcome = run_cli(["evaluate", "--pred", gt, "--gt", gt, "--out", tmp_path / "out"])
    assert_refused(outcome, "--task-type", code=2)


def test_negative_workers_is_a_usage_error(tmp_path: Path) -> None:
    gt = _write(tmp_path, "gt.csv", GT_CLS)
    outcome = _evaluate("classification", gt, gt, tmp_path / "out", "--workers", "0")
    assert_usage_error(outcome, "--workers")


def test_evaluation_config_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    from medfleet.errors import MedfleetError
    from medfleet.evaluate.runner import EvaluationConfig

    out = _write(tmp_path, "out", "x")
    with pytest.raises(MedfleetError, match="existing file") as info:
        EvaluationConfig(task_type="regression", pred=out, gt=out, out=out / "sub")
    assert str(out) in str(info.value)
