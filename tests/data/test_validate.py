"""Manifest validation: a valid data set passes; each kind of bad input is named precisely."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.data.validate import validate_manifest

H, W = 20, 30


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """A small valid manifest with one task of every type, two sites, all splits."""
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    mask = np.zeros((H, W), np.uint8)
    mask[5:10, 5:12] = 1
    mask[12:15, 20:25] = 2
    Image.fromarray(mask).save(tmp_path / "img" / "mask.png")
    rows: dict[str, list[dict[str, str]]] = {k: [] for k in ("seg", "cls", "det", "reg", "lmk")}
    for i in range(6):
        img = rng.integers(0, 255, (H, W), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / "img" / f"c{i}.png")
        base = {
            "case_id": f"c{i}",
            "image": f"img/c{i}.png",
            "site": "a" if i % 2 else "b",
            "split": ("train", "val", "test")[i // 2],
            "subject": f"s{i // 2}",
        }
        rows["seg"].append({**base, "mask": "img/mask.png", "mask_rater1": "img/mask.png"})
        rows["cls"].append(
            {**base, "label": "benign" if i % 2 else "malignant", "age_band": "40-50"}
        )
        rows["det"].append({**base, "boxes": "lesion:1,2,10,12;15,3,30,20"})
        rows["reg"].append({**base, "value": f"{100 + i}.5", "spacing": "0.5,0.5"})
        rows["lmk"].append({**base, "landmarks": "1,2;29,19;;3.5,4"})
    for name, table_rows in rows.items():
        _write_csv(tmp_path / f"{name}.csv", table_rows)
    manifest = {
        "name": "toy",
        "sites": [{"name": "a", "vendor": "GE"}, {"name": "b"}],
        "tasks": [
            {
                "name": "seg",
                "type": "segmentation",
                "table": "seg.csv",
                "organ": "breast",
                "labels": {0: "background", 1: "organ", 2: "lesion"},
                "raters": 1,
            },
            {
                "name": "cls",
                "type": "classification",
                "table": "cls.csv",
                "classes": ["benign", "malignant"],
            },
            {"name": "det", "type": "detection", "table": "det.csv", "classes": ["lesion"]},
            {"name": "reg", "type": "regression", "table": "reg.csv", "unit": "mm"},
            {
                "name": "lmk",
                "type": "landmarks",
                "table": "lmk.csv",
                "landmarks": ["p1", "p2", "p3", "p4"],
            },
        ],
    }
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def _edit(manifest: Path, table: str, line: int, **cells: str) -> None:
    """Change cells of data line ``line`` (the header is line 1) of a table."""
    path = manifest.parent / f"{table}.csv"
    rows = _read_csv(path)
    rows[line - 2].update(cells)
    _write_csv(path, rows)


def _only_error(manifest: Path):
    report = validate_manifest(manifest)
    assert len(report.errors) == 1, [str(p) for p in report.errors]
    return report.errors[0]


def test_valid_dataset_passes(dataset: Path) -> None:
    report = validate_manifest(dataset)
    assert report.ok, [str(p) for p in report.problems]
    assert report.counts["seg"]["rows"] == 6
    assert report.counts["cls"]["splits"] == {"train": 2, "val": 2, "test": 2}
    assert report.counts["det"]["sites"] == {"a": 3, "b": 3}


def test_missing_manifest_file(tmp_path: Path) -> None:
    report = validate_manifest(tmp_path / "nope.yaml")
    assert not report.ok
    assert "manifest file not found" in report.errors[0].message


def test_yaml_syntax_error_names_line(dataset: Path) -> None:
    dataset.write_text("name: x\ntasks: [unclosed\n")
    problem = _only_error(dataset)
    assert "not valid YAML" in problem.message
    assert problem.line == 3  # where the parser ran out of input: one line, file:line
    assert "\n" not in str(problem)


def test_unknown_task_type_and_field(dataset: Path) -> None:
    data = yaml.safe_load(dataset.read_text())
    data["tasks"][0]["type"] = "segmentaton"
    data["tasks"][1]["colour"] = "red"
    dataset.write_text(yaml.safe_dump(data, sort_keys=False))
    report = validate_manifest(dataset)
    assert len(report.errors) == 2, report.errors
    by_task = {("seg" if "'seg'" in p.message else "cls"): p for p in report.errors}
    assert "task 'seg' field 'type'" in by_task["seg"].message
    assert "task 'cls' field 'colour': is not a known field" in by_task["cls"].message
    lines = dataset.read_text().splitlines()
    # each problem points at the line of its field in the YAML
    assert lines[by_task["seg"].line - 1].strip().startswith("type: segmentaton")
    assert lines[by_task["cls"].line - 1].strip().startswith("colour: red")


def test_missing_table_file(dataset: Path) -> None:
    (dataset.parent / "reg.csv").unlink()
    problem = _only_error(dataset)
    assert problem.message == "table file not found"
    assert problem.file.endswith("reg.csv")
    assert "'table' of task 'reg'" in problem.fix


def test_missing_required_column(dataset: Path) -> None:
    path = dataset.parent / "cls.csv"
    rows = [{k: v for k, v in r.items() if k != "label"} for r in _read_csv(path)]
    _write_csv(path, rows)
    problem = _only_error(dataset)
    assert "missing required column(s) ['label']" in problem.message
    assert problem.line == 1


def test_missing_image_file(dataset: Path) -> None:
    _edit(dataset, "cls", 3, image="img/gone.png")
    problem = _only_error(dataset)
    assert problem.message.startswith("file not found:") and "gone.png" in problem.message
    assert (problem.line, problem.column, problem.case_id) == (3, "image", "c1")


def test_corrupt_image(dataset: Path) -> None:
    bad = dataset.parent / "img" / "broken.png"
    bad.write_bytes((dataset.parent / "img" / "c0.png").read_bytes()[:40])
    _edit(dataset, "reg", 2, image="img/broken.png")
    problem = _only_error(dataset)
    assert problem.message.startswith("cannot decode") and "broken.png" in problem.message
    assert problem.column == "image"


def test_mask_label_outside_label_map(dataset: Path) -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[2:4, 2:4] = 7
    Image.fromarray(mask).save(dataset.parent / "img" / "m7.png")
    _edit(dataset, "seg", 4, mask="img/m7.png")
    problem = _only_error(dataset)
    assert "label value(s) 7 outside the label map [0, 1, 2]" in problem.message
    assert (problem.column, problem.case_id) == ("mask", "c2")


def test_mask_labels_checked_when_file_also_read_as_image(dataset: Path) -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[2:4, 2:4] = 7
    Image.fromarray(mask).save(dataset.parent / "img" / "m7.png")
    # The image column is read first (shape only); the mask use must still see the values.
    _edit(dataset, "seg", 4, image="img/m7.png", mask="img/m7.png")
    problem = _only_error(dataset)
    assert "label value(s) 7 outside the label map [0, 1, 2]" in problem.message
    assert (problem.column, problem.case_id) == ("mask", "c2")


def test_mask_shape_mismatch(dataset: Path) -> None:
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(dataset.parent / "img" / "big.png")
    _edit(dataset, "seg", 2, mask_rater1="img/big.png")
    problem = _only_error(dataset)
    assert (
        f"mask_rater1 shape ({H + 1}, {W}) differs from image shape ({H}, {W})" in problem.message
    )


def test_box_outside_image(dataset: Path) -> None:
    _edit(dataset, "det", 5, boxes="lesion:1,2,31,12")
    problem = _only_error(dataset)
    assert "box 1" in problem.message and "extends outside the image" in problem.message
    assert "x in [0, 30]" in problem.message


def test_malformed_box(dataset: Path) -> None:
    _edit(dataset, "det", 2, boxes="1,2,10")
    problem = _only_error(dataset)
    assert "has 3 numbers; expected x0,y0,x1,y1" in problem.message


def test_inverted_box(dataset: Path) -> None:
    _edit(dataset, "det", 2, boxes="10,2,1,12")
    assert "upper corner not above its lower corner" in _only_error(dataset).message


def test_box_class_not_declared(dataset: Path) -> None:
    _edit(dataset, "det", 2, boxes="polyp:1,2,10,12")
    assert "class 'polyp' is not one of the task's classes" in _only_error(dataset).message


def test_landmark_count_mismatch(dataset: Path) -> None:
    _edit(dataset, "lmk", 6, landmarks="1,2;3,4")
    problem = _only_error(dataset)
    assert "has 2 points; the task names 4 landmarks" in problem.message
    assert problem.column == "landmarks"


def test_landmark_outside_image(dataset: Path) -> None:
    _edit(dataset, "lmk", 2, landmarks="1,2;30,19;;3.5,4")
    assert "landmark 'p2' at (30.0, 19.0) lies outside the image" in _only_error(dataset).message


def test_undeclared_site(dataset: Path) -> None:
    _edit(dataset, "cls", 2, site="c")
    problem = _only_error(dataset)
    assert "site 'c' is not declared in the manifest" in problem.message
    assert "['a', 'b']" in problem.fix


def test_subject_in_two_splits(dataset: Path) -> None:
    # c2 (subject s1, site b, val) becomes subject s0 of site b, which is in train via c0
    _edit(dataset, "cls", 4, subject="s0")
    problem = _only_error(dataset)
    assert "subject 's0' of site 'b' is in 2 splits" in problem.message
    assert "split by subject" in problem.fix


def test_subject_leak_across_tasks(dataset: Path) -> None:
    _edit(dataset, "reg", 4, subject="s0")  # reg row c2 moves subject s0 into val
    report = validate_manifest(dataset)
    messages = [p.message for p in report.errors]
    assert any("subject 's0' of site 'b' is in 2 splits" in m for m in messages)


def test_unknown_split(dataset: Path) -> None:
    _edit(dataset, "cls", 2, split="training")
    assert "split 'training' is not one of ['train', 'val', 'test']" in _only_error(dataset).message


def test_label_not_in_classes(dataset: Path) -> None:
    _edit(dataset, "cls", 3, label="malignent")
    problem = _only_error(dataset)
    assert "label 'malignent' is not one of the task's classes" in problem.message
    assert "['benign', 'malignant']" in problem.fix


def test_regression_value_not_a_number(dataset: Path) -> None:
    _edit(dataset, "reg", 2, value="12 mm")
    problem = _only_error(dataset)
    assert "value '12 mm' is not a number" in problem.message
    assert "no unit text" in problem.fix


def test_regression_value_nan(dataset: Path) -> None:
    _edit(dataset, "reg", 2, value="nan")
    assert "value 'nan' is not finite" in _only_error(dataset).message


def test_duplicate_case_id(dataset: Path) -> None:
    _edit(dataset, "cls", 3, case_id="c0")
    problem = _only_error(dataset)
    assert problem.message == "case id repeats line 2"
    assert problem.line == 3


def test_empty_subject_cell(dataset: Path) -> None:
    _edit(dataset, "cls", 2, subject="")
    problem = _only_error(dataset)
    assert (problem.message, problem.column) == ("empty cell", "subject")


def test_bad_spacing(dataset: Path) -> None:
    _edit(dataset, "reg", 3, spacing="0.5,-1")
    problem = _only_error(dataset)
    assert "must be positive millimetres" in problem.message and problem.column == "spacing"


def test_unlabelled_rows_allowed_only_in_train(dataset: Path) -> None:
    _edit(dataset, "seg", 2, mask="", mask_rater1="img/mask.png")  # train row: unlabelled is fine
    report = validate_manifest(dataset)
    assert report.ok and report.counts["seg"]["unlabelled"] == 1
    _edit(dataset, "cls", 6, label="")  # test row
    problem = _only_error(dataset)
    assert "a test row has no 'label'" in problem.message


def test_wrong_dimensionality(dataset: Path) -> None:
    data = yaml.safe_load(dataset.read_text())
    data["tasks"][3]["dim"] = 3
    dataset.write_text(yaml.safe_dump(data))
    report = validate_manifest(dataset)
    assert any("has 2 spatial dimensions but the task is 3D" in p.message for p in report.errors)


def test_every_problem_reported_at_once(dataset: Path) -> None:
    _edit(dataset, "cls", 2, site="zz", label="nope")
    (dataset.parent / "reg.csv").unlink()
    report = validate_manifest(dataset)
    assert len(report.errors) == 3


def test_cli_exit_code_and_json(dataset: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["data", "validate", "--manifest", str(dataset), "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    _edit(dataset, "cls", 2, site="zz")
    bad = runner.invoke(app, ["data", "validate", "--manifest", str(dataset)])
    assert bad.exit_code == 1
    assert "cls.csv:2 [site] case 'c0': site 'zz' is not declared" in bad.output
