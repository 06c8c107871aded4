"""Manifest models and table cell formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfleet.errors import ManifestError
from medfleet.tables import (
    Box,
    CellFormatError,
    format_boxes,
    format_landmarks,
    parse_boxes,
    parse_landmarks,
    parse_spacing,
    read_table,
    write_table,
)
from medfleet.tasks import Manifest, Site, TaskSpec, TaskType


def _manifest() -> Manifest:
    return Manifest(
        name="m",
        sites=[Site(name="a", vendor="GE", gain=1.2)],
        tasks=[
            TaskSpec(
                name="seg",
                type="segmentation",
                table="seg.csv",
                labels={0: "bg", 2: "lesion"},
                raters=3,
                organ="breast",
            ),
            TaskSpec(name="hc", type="regression", table="hc.csv", unit="mm", group="obstetrics"),
        ],
    )


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = _manifest()
    path = manifest.save(tmp_path / "m.yaml")
    loaded = Manifest.load(path)
    assert loaded.task("seg").labels == {0: "bg", 2: "lesion"}
    assert loaded.task("seg").foreground_labels == [2]
    assert loaded.task("seg").clinical_group == "breast"
    assert loaded.task("hc").clinical_group == "obstetrics"
    assert loaded.sites[0].model_extra == {"gain": 1.2}
    assert loaded.table_path("hc") == tmp_path / "hc.csv"
    assert loaded.to_yaml() == manifest.to_yaml()
    assert "'0'" not in path.read_text()  # label keys stay integers


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "segmentation"}, "needs 'labels'"),
        ({"type": "segmentation", "labels": {1: "x"}}, "must map 0 to the background"),
        ({"type": "classification", "classes": ["a"]}, "at least two names"),
        ({"type": "landmarks"}, "needs 'landmarks'"),
        ({"type": "regression"}, "needs 'unit'"),
        ({"type": "classification", "classes": ["a", "a"]}, "duplicate names"),
        ({"type": "regression", "unit": "mm", "raters": 2}, "segmentation tasks only"),
        ({"type": "regression", "unit": "mm", "name": "bad name"}, "must start with a letter"),
    ],
)
def test_task_spec_rejects(kwargs: dict, message: str) -> None:
    fields = {"name": "t", "table": "t.csv", **kwargs}
    with pytest.raises(ValueError, match=message):
        TaskSpec(**fields)


def test_duplicate_task_and_unknown_task() -> None:
    spec = TaskSpec(name="t", type="regression", table="t.csv", unit="mm")
    with pytest.raises(ValueError, match="task name 't' is declared twice"):
        Manifest(name="m", sites=[], tasks=[spec, spec])
    with pytest.raises(KeyError, match="no task 'x'"):
        _manifest().task("x")


def test_manifest_errors_name_file_and_task(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: m\nsites: [{name: a}]\ntasks:\n  - {name: t, type: regression, table: t.csv}\n"
    )
    with pytest.raises(
        ManifestError, match=r"(?s)m\.yaml: manifest is invalid.*task 't'.*needs 'unit'"
    ):
        Manifest.load(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ManifestError, match="expected a mapping"):
        Manifest.load(path)


def test_task_type_values() -> None:
    assert [t.value for t in TaskType] == [
        "segmentation",
        "classification",
        "detection",
        "regression",
        "landmarks",
    ]


def test_boxes_round_trip_and_errors() -> None:
    boxes = parse_boxes("lesion:1,2,3.5,4; 5 6 7 8")
    assert boxes[0] == Box((1.0, 2.0, 3.5, 4.0), "lesion")
    assert boxes[1].lower == (5.0, 6.0) and boxes[1].upper == (7.0, 8.0)
    assert parse_boxes(format_boxes(boxes)) == boxes
    assert parse_boxes("") == []
    box3 = parse_boxes("0,0,0,1,2,3", ndim=3)[0]
    assert box3.ndim == 3 and box3.upper == (1.0, 2.0, 3.0)
    with pytest.raises(CellFormatError, match="not a number"):
        parse_boxes("1,2,x,4")
    with pytest.raises(CellFormatError, match="not finite"):
        parse_boxes("1,2,inf,4")


@given(
    st.lists(
        st.tuples(
            st.floats(-1e4, 1e4, allow_nan=False),
            st.floats(-1e4, 1e4, allow_nan=False),
            st.floats(0.01, 1e3),
            st.floats(0.01, 1e3),
        ),
        max_size=5,
    )
)
def test_boxes_format_parse_inverse(raw: list[tuple[float, float, float, float]]) -> None:
    boxes = [Box((x, y, x + w, y + h)) for x, y, w, h in raw]
    boxes = [b for b in boxes if all(hi > lo for lo, hi in zip(b.lower, b.upper, strict=True))]
    assert parse_boxes(format_boxes(boxes)) == boxes


def test_landmarks_round_trip() -> None:
    points = parse_landmarks("1,2;;nan,nan;3.25,4", n_points=4)
    assert np.isnan(points[1]).all() and np.isnan(points[2]).all()
    np.testing.assert_array_equal(points[[0, 3]], [[1, 2], [3.25, 4]])
    again = parse_landmarks(format_landmarks(points), n_points=4)
    np.testing.assert_array_equal(np.isnan(again), np.isnan(points))
    with pytest.raises(CellFormatError, match="has 1 points; the task names 2"):
        parse_landmarks("1,2", n_points=2)
    with pytest.raises(CellFormatError, match="expected x,y,z"):
        parse_landmarks("1,2", ndim=3)


def test_spacing() -> None:
    assert parse_spacing("3, 0.8, 0.8", 3) == (3.0, 0.8, 0.8)
    with pytest.raises(CellFormatError, match="expected 2"):
        parse_spacing("1", 2)
    with pytest.raises(CellFormatError, match="positive"):
        parse_spacing("0,1")


def test_table_write_read(tmp_path: Path) -> None:
    rows = [
        {
            "label": "x",
            "case_id": "a",
            "image": "a.png",
            "site": "s",
            "split": "train",
            "subject": "a",
            "score": float("nan"),
            "age": 41.0,
        }
    ]
    path = write_table(tmp_path / "t.csv", rows)
    assert path.read_text().splitlines()[0] == "case_id,image,site,split,subject,label,score,age"
    assert read_table(path) == [
        {
            "case_id": "a",
            "image": "a.png",
            "site": "s",
            "split": "train",
            "subject": "a",
            "label": "x",
            "score": "",
            "age": "41",
        }
    ]
