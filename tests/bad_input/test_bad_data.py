"""Bad-input corpus for ``medfleet data validate``, ``data prepare`` and ``data phantoms``.

``data validate`` reports every problem as ``error <file>:<line> [column] case '<id>': ...``
(exit 1); the other verbs refuse with one ``error:`` line. Nothing is written by a refused
command, and user text (case ids, labels, paths with brackets) is printed as written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tests.bad_input.builders import Rows, make_phantoms, one_task_manifest, row_of
from tests.bad_input.harness import (
    Outcome,
    assert_nothing_half_written,
    assert_refused,
    assert_usage_error,
    run_cli,
)

from medfleet.data.io import write_png


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantoms(tmp_path_factory.mktemp("bad_data_phantoms"))


def assert_reported(outcome: Outcome, *names: str) -> str:
    """``data validate`` failed cleanly and one reported problem names all of ``names``."""
    info = outcome.describe()
    assert outcome.exception is None, info
    assert outcome.exit_code == 1, info
    assert "Traceback" not in outcome.stdout + outcome.stderr, info
    problems = [line for line in outcome.stderr.splitlines() if line.startswith("error ")]
    assert problems, info
    named = [p for p in problems if all(n in p for n in names)]
    assert named, f"no problem names all of {names}\n{info}"
    return named[0]


# ----------------------------------------------------------------- data validate: table cells


def _set(case: str, column: str, value: str) -> Callable[[Rows], None]:
    def edit(rows: Rows) -> None:
        row_of(rows, case)[column] = value

    return edit


def _drop_column(column: str) -> Callable[[Rows], None]:
    def edit(rows: Rows) -> None:
        for row in rows:
            row.pop(column)

    return edit


def _duplicate_id(rows: Rows) -> None:
    rows[1]["case_id"] = rows[0]["case_id"]


# (id, task, edit, names in the problem line: file:line, [column], case or value)
CELL_CASES = [
    (
        "nan-in-regression-value",
        "head_circumference",
        _set("hc_site_a_000", "value", "nan"),
        ["head_circumference.csv:2", "[value]", "'hc_site_a_000'", "not finite"],
    ),
    (
        "unknown-site",
        "lesion_cls",
        _set("cls_site_a_000", "site", "site_zz"),
        ["lesion_cls.csv:2", "[site]", "'site_zz'"],
    ),
    (
        "unknown-label",
        "lesion_cls",
        _set("cls_site_a_001", "label", "benign-ish"),
        ["lesion_cls.csv:3", "[label]", "'benign-ish'"],
    ),
    (
        "unknown-split",
        "lesion_cls",
        _set("cls_site_a_000", "split", "tset"),
        ["lesion_cls.csv:2", "[split]", "'tset'"],
    ),
    (
        "missing-column",
        "lesion_cls",
        _drop_column("label"),
        ["lesion_cls.csv:1", "missing required column", "'label'"],
    ),
    (
        "duplicate-case-id",
        "lesion_cls",
        _duplicate_id,
        ["lesion_cls.csv:3", "[case_id]", "'cls_site_a_000'", "repeats line 2"],
    ),
    (
        "spacing-not-positive",
        "lesion_cls",
        _set("cls_site_a_000", "spacing", "0,1"),
        ["lesion_cls.csv:2", "[spacing]", "'0,1'"],
    ),
    (
        "spacing-wrong-count",
        "lesion_cls",
        _set("cls_site_a_000", "spacing", "1,2,3"),
        ["lesion_cls.csv:2", "[spacing]", "3 values"],
    ),
    (
        "missing-case-image",
        "lesion_cls",
        _set("cls_site_a_000", "image", "lesion_cls/images/no_such_case.png"),
        ["lesion_cls.csv:2", "[image]", "no_such_case.png", "not found"],
    ),
    (
        "landmarks-wrong-count",
        "spine_landmarks",
        _set("lmk_site_a_000", "landmarks", "1,2;3,4"),
        ["spine_landmarks.csv:2", "[landmarks]", "'lmk_site_a_000'"],
    ),
    (
        "box-not-numbers",
        "nodule_det",
        _set("det_site_a_000", "boxes", "cyst:a,b,c,d"),
        ["nodule_det.csv:2", "[boxes]", "'det_site_a_000'"],
    ),
    (
        "markup-in-case-id-and-label",
        "lesion_cls",
        lambda rows: rows[0].update(case_id="[/bold]x", label="[red]benign"),
        ["lesion_cls.csv:2", "[label]", "case '[/bold]x'", "label '[red]benign'"],
    ),
]


@pytest.mark.parametrize(
    ("task", "edit", "names"),
    [pytest.param(t, e, n, id=i) for i, t, e, n in CELL_CASES],
)
def test_validate_reports_bad_cells(
    phantoms: Path, tmp_path: Path, task: str, edit: Callable[[Rows], None], names: list[str]
) -> None:
    manifest = one_task_manifest(phantoms, tmp_path / "set", task, edit)
    before = sorted(tmp_path.rglob("*"))
    outcome = run_cli(["data", "validate", "--manifest", manifest, "--no-decode"])
    assert_reported(outcome, *names)
    assert sorted(tmp_path.rglob("*")) == before  # validation writes nothing


# ----------------------------------------------------------------- data validate: files


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\nthis is not the rest of a PNG")


def _mask_shape(path: Path) -> None:
    write_png(path, np.zeros((16, 32), np.uint8))


def _mask_labels(path: Path) -> None:
    write_png(path, np.full((32, 32), 7, np.uint8))


FILE_CASES = [
    ("corrupt-image", "image", _corrupt, ["[image]", "seg_site_a_000", "unreadable"]),
    ("mask-wrong-shape", "mask", _mask_shape, ["[mask]", "(16, 32)", "(32, 32)"]),
    ("mask-labels-outside-map", "mask", _mask_labels, ["[mask]", "7", "outside the label map"]),
]


@pytest.mark.parametrize(
    ("column", "damage", "names"), [pytest.param(c, d, n, id=i) for i, c, d, n in FILE_CASES]
)
def test_validate_reports_bad_files(
    phantoms: Path,
    tmp_path: Path,
    column: str,
    damage: Callable[[Path], None],
    names: list[str],
) -> None:
    folder = tmp_path / "set"
    manifest = one_task_manifest(phantoms, folder, "organ_lesion_seg", copy_files=("image", "mask"))
    damage(folder / column / "seg_site_a_000.png")
    outcome = run_cli(["data", "validate", "--manifest", manifest])
    assert_reported(outcome, "organ_lesion_seg.csv:2", *names)


# ----------------------------------------------------------------- data validate: whole table


TABLE_CASES = [
    ("empty-table", b"", ["lesion_cls.csv", "empty"]),
    ("header-only-table", None, ["lesion_cls.csv:1", "no rows"]),
    ("non-utf8-csv", "latin-1", ["lesion_cls.csv", "UTF-8"]),
]


@pytest.mark.parametrize(
    ("content", "names"), [pytest.param(c, n, id=i) for i, c, n in TABLE_CASES]
)
def test_validate_reports_bad_tables(
    phantoms: Path, tmp_path: Path, content: bytes | str | None, names: list[str]
) -> None:
    manifest = one_task_manifest(phantoms, tmp_path / "set", "lesion_cls")
    table = manifest.parent / "lesion_cls.csv"
    text = table.read_text(encoding="utf-8")
    if content is None:
        table.write_text(text.splitlines()[0] + "\n", encoding="utf-8")
    elif isinstance(content, str):
        table.write_bytes(text.replace("Aurora", "Aur\u00f6ra").encode(content))
    else:
        table.write_bytes(content)
    outcome = run_cli(["data", "validate", "--manifest", manifest, "--no-decode"])
    assert_reported(outcome, *names)


# ----------------------------------------------------------------- data validate: the manifest


def test_validate_reports_invalid_yaml(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("name: [unclosed\n")
    assert_reported(
        run_cli(["data", "validate", "--manifest", manifest]), str(manifest), "not valid YAML"
    )


def test_validate_reports_unknown_task_type(phantoms: Path, tmp_path: Path) -> None:
    manifest = one_task_manifest(phantoms, tmp_path / "set", "head_circumference")
    manifest.write_text(manifest.read_text().replace("type: regression", "type: regresion"))
    outcome = run_cli(["data", "validate", "--manifest", manifest])
    assert_reported(outcome, str(manifest), "'head_circumference'", "'type'")


def test_validate_names_a_folder_given_as_the_manifest(phantoms: Path) -> None:
    outcome = run_cli(["data", "validate", "--manifest", phantoms.parent])
    assert_reported(outcome, str(phantoms.parent), "folder")


def test_validate_prints_a_manifest_path_with_brackets_as_written(
    phantoms: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "runs[v2]" / "[/bold]set"
    manifest = one_task_manifest(
        phantoms, folder, "lesion_cls", _set("cls_site_a_000", "site", "x")
    )
    outcome = run_cli(["data", "validate", "--manifest", manifest, "--no-decode"])
    assert_reported(outcome, f"{folder / 'lesion_cls.csv'}:2")
    assert f"{manifest}: 1 error(s), 0 warning(s)" in outcome.stdout, outcome.describe()


def test_validate_of_a_valid_set_in_a_bracketed_folder_says_valid(
    phantoms: Path, tmp_path: Path
) -> None:
    manifest = one_task_manifest(phantoms, tmp_path / "runs[v2]", "lesion_cls")
    outcome = run_cli(["data", "validate", "--manifest", manifest, "--no-decode"])
    assert outcome.exit_code == 0, outcome.describe()
    assert f"{manifest}: valid, 0 warning(s)" in outcome.stdout, outcome.describe()


# ----------------------------------------------------------------- data phantoms / prepare


def test_phantoms_refuse_an_out_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "phantoms"
    target.write_text("not a folder")
    outcome = run_cli(["data", "phantoms", "--out", target, "--sites", "1", "--size", "32"])
    line = assert_refused(outcome, "--out", str(target), "fix:", code=2)
    assert "existing file" in line
    assert "phantoms" not in outcome.stderr.replace(str(target), "")  # refused before the bar
    assert target.read_text() == "not a folder"
    assert_nothing_half_written(tmp_path, allowed={"phantoms"})


def test_phantoms_refuse_an_out_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("x")
    outcome = run_cli(["data", "phantoms", "--out", blocker / "ph", "--sites", "1"])
    assert_refused(outcome, "--out", str(blocker / "ph"), str(blocker), code=2)
    assert_nothing_half_written(tmp_path, allowed={"runs"})


def test_phantoms_print_an_out_with_brackets_as_written(tmp_path: Path) -> None:
    out = tmp_path / "runs[v2]" / "[/bold]ph"
    outcome = run_cli(
        ["data", "phantoms", "--out", out, "--sites", "1", "--cases-per-site", "1",
         "--size", "32"]
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.describe()
    assert f"wrote phantoms: {out / 'manifest.yaml'}" in outcome.stdout, outcome.describe()


def test_prepare_refuses_an_unknown_data_set(tmp_path: Path) -> None:
    outcome = run_cli(["data", "prepare", "hc19", "--src", tmp_path, "--out", tmp_path / "o"])
    assert_refused(outcome, "'hc19'", "hc18", code=2)
    assert not (tmp_path / "o").exists()


def test_prepare_refuses_a_missing_source(tmp_path: Path) -> None:
    outcome = run_cli(
        ["data", "prepare", "hc18", "--src", tmp_path / "nope", "--out", tmp_path / "o"]
    )
    assert_refused(outcome, str(tmp_path / "nope"))
    assert not (tmp_path / "o").exists()


def test_prepare_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "prepared"
    target.write_text("x")
    outcome = run_cli(["data", "prepare", "busi", "--src", tmp_path, "--out", target])
    assert_refused(outcome, "--out", str(target), code=2)
    assert_nothing_half_written(tmp_path, allowed={"prepared"})


def test_phantoms_refuse_zero_sites_as_a_usage_error(tmp_path: Path) -> None:
    outcome = run_cli(["data", "phantoms", "--out", tmp_path / "o", "--sites", "0"])
    assert_usage_error(outcome, "--sites")
    assert not (tmp_path / "o").exists()
