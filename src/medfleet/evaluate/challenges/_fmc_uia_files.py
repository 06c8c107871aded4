"""Reading the FMC_UIA challenge's own files: the data root's tables and the prediction root.

The challenge's baseline code (``evaluate.py`` and ``model.py`` of
github.com/lijiake2408/Foundation-Model-Challenge-for-Ultrasound-Image-Analysis) lays out
a run as:

* a data root whose ``csv_files/*.csv`` (read together) list one image per row with
  ``task_id``, ``task_name`` (``segmentation``, ``classification``, ``detection`` or
  ``Regression``), ``num_classes`` and ``image_path``, and per task ``mask_path`` (a label
  image, relative to ``csv_files/``), ``mask`` (the class index), ``x_min, y_min, x_max,
  y_max`` (a box in pixels) or ``point_1_xy`` .. ``point_K_xy`` (JSON ``[x, y]`` pixels,
  ``K = num_classes``);
* a prediction root with each predicted mask at ``mask_path`` without its ``../`` and
  ``classification_predictions.json``, ``detection_predictions.json`` and
  ``regression_predictions.json``, lists of entries keyed by ``task_id`` and ``image_path``.

This module reads and checks those files (the JSON files are untrusted input: parsed with
:func:`json.load` only, every field validated) and hands plain values to the scorers of
:mod:`medfleet.evaluate.challenges.fmc_uia`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from medfleet.errors import InputFileError

__all__ = [
    "BOX_COLUMNS",
    "CSV_FOLDER",
    "PREDICTION_FILES",
    "MaskCase",
    "OfficialTask",
    "TaskRow",
    "case_id_from_image_path",
    "check_task_type",
    "data_root",
    "mask_cases",
    "read_predictions",
    "read_task",
    "reference_box",
    "reference_class",
    "reference_points",
]

#: Folder of the data root that holds the task tables.
CSV_FOLDER = "csv_files"
#: Prediction file of each task type, inside the prediction root.
PREDICTION_FILES: dict[str, str] = {
    "classification": "classification_predictions.json",
    "detection": "detection_predictions.json",
    "landmarks": "regression_predictions.json",
}
#: ``task_name`` of the tables (lower case) -> the ``--task-type`` values that score it.
TASK_TYPES: dict[str, tuple[str, ...]] = {
    "segmentation": ("segmentation",),
    "classification": ("classification",),
    "detection": ("detection",),
    "regression": ("landmarks", "regression"),
}
#: Reference box columns of a detection task, in pixels.
BOX_COLUMNS: tuple[str, ...] = ("x_min", "y_min", "x_max", "y_max")
_REQUIRED = ("task_id", "task_name", "num_classes", "image_path")
_TYPE_COLUMNS = {
    "segmentation": ("mask_path",),
    "classification": ("mask",),
    "detection": BOX_COLUMNS,
}


@dataclass(frozen=True)
class TaskRow:
    """One image of a task: its case id, image path and table cells.

    Attributes:
        case_id: Case id derived from ``image_path`` (see :func:`case_id_from_image_path`).
        image_path: The ``image_path`` cell as written.
        cells: Column -> text of the row (stripped; absent columns are absent).
        where: ``FILE line N`` for messages.
    """

    case_id: str
    image_path: str
    cells: dict[str, str]
    where: str


@dataclass(frozen=True)
class OfficialTask:
    """The rows of one task of the data root.

    Attributes:
        task_id: The task.
        task_name: Its ``task_name`` as written (``Regression`` for keypoint tasks).
        task_types: The ``--task-type`` values that score it (the first is suggested).
        num_classes: ``num_classes`` of its rows (the number of points of a keypoint task).
        rows: Case id -> row, in table order.
        by_image: ``image_path`` -> case id.
        csv_dir: The ``csv_files`` folder.
    """

    task_id: str
    task_name: str
    task_types: tuple[str, ...]
    num_classes: int
    rows: dict[str, TaskRow]
    by_image: dict[str, str]
    csv_dir: Path


@dataclass(frozen=True)
class MaskCase:
    """Where one segmentation case's masks are.

    Attributes:
        case_id: The case.
        gt: Reference mask (``None`` when ``problem`` is set).
        pred: Predicted mask in the prediction root (``None`` when ``problem`` is set).
        problem: Why the case cannot be read (empty when it can).
    """

    case_id: str
    gt: Path | None
    pred: Path | None
    problem: str = ""


def data_root(gt: Path) -> Path | None:
    """The data root when ``gt`` is one (a folder with ``csv_files/``) or its ``csv_files``.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "csv_files").mkdir()
        >>> data_root(root) == root, data_root(root / "csv_files") == root
        (True, True)
        >>> data_root(root / "elsewhere") is None
        True
    """
    gt = Path(gt)
    if (gt / CSV_FOLDER).is_dir():
        return gt
    if gt.name == CSV_FOLDER and gt.is_dir():
        return gt.parent
    return None


def case_id_from_image_path(image_path: str) -> str:
    """A readable case id: the image path without leading ``../`` and ``./`` and its suffix.

    Example:
        >>> case_id_from_image_path("../images/Task01/img_0003.png")
        'images/Task01/img_0003'
        >>> case_id_from_image_path("./a/b.c.jpg"), case_id_from_image_path("scan")
        ('a/b.c', 'scan')
    """
    parts = [p for p in PurePosixPath(image_path.replace("\\", "/")).parts if p not in ("/", "..")]
    if not parts:
        return image_path
    stem, dot, _ = parts[-1].rpartition(".")
    if dot and stem:
        parts[-1] = stem
    return "/".join(parts)


def _read_csv(path: Path) -> tuple[tuple[str, ...], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line, row)`` pairs of one table (UTF-8; a BOM is accepted)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return (), []
            columns = tuple(c.strip() for c in header)
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                cells = {c: v.strip() for c, v in zip(columns, values, strict=False) if c}
                rows.append((reader.line_num, cells))
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"--gt {path} is not a UTF-8 CSV table: {exc} (fix: save it as UTF-8 CSV)"
        ) from None
    except (OSError, csv.Error) as exc:
        raise InputFileError(f"--gt {path} is not a readable CSV table: {exc}") from None
    return columns, rows


def read_task(root: Path, task_id: str) -> OfficialTask:
    """Read the rows of ``task_id`` from ``root/csv_files/*.csv`` (all tables together).

    Args:
        root: The data root.
        task_id: The task to read; empty reads the only task of the tables.

    Returns:
        The task's rows, keyed by case ids derived from ``image_path``.

    Raises:
        InputFileError: No table, a table without the needed columns, an unknown task
            (the message lists the known ones), inconsistent ``task_name`` or
            ``num_classes``, an image listed twice.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()); (root / "csv_files").mkdir()
        >>> _ = (root / "csv_files" / "t.csv").write_text(
        ...     "task_id,task_name,num_classes,image_path,mask" + chr(10)
        ...     + "T1,classification,2,../images/a.png,1" + chr(10)
        ... )
        >>> task = read_task(root, "T1")
        >>> task.task_types, task.num_classes, list(task.rows)
        (('classification',), 2, ['images/a'])
    """
    csv_dir = Path(root) / CSV_FOLDER
    files = sorted(p for p in csv_dir.glob("*.csv") if p.is_file())
    if not files:
        raise InputFileError(
            f"--gt {csv_dir} holds no .csv table (fix: point --gt at the challenge's data "
            "root, whose csv_files/ lists the images of each task)"
        )
    by_task: dict[str, list[tuple[Path, tuple[str, ...], int, dict[str, str]]]] = {}
    for path in files:
        columns, records = _read_csv(path)
        if not records:
            continue
        if "task_id" not in columns:
            raise InputFileError(
                f"--gt {path} has no task_id column; it has {list(columns)} (fix: use the "
                "challenge's tables, with task_id, task_name, num_classes and image_path)"
            )
        for line, cells in records:
            tid = cells.get("task_id", "")
            if not tid:
                raise InputFileError(
                    f"--gt {path} line {line}: task_id is empty (fix: give every row its task)"
                )
            by_task.setdefault(tid, []).append((path, columns, line, cells))
    known = ", ".join(sorted(by_task)) or "none"
    if not task_id:
        if len(by_task) != 1:
            raise InputFileError(
                f"--gt {csv_dir} lists {len(by_task)} tasks ({known}); one run scores one "
                "(fix: --preset-option task_id=TASK)"
            )
        task_id = next(iter(by_task))
    if task_id not in by_task:
        raise InputFileError(
            f"task_id {task_id!r} is not in {csv_dir} (known tasks: {known}) "
            "(fix: --preset-option task_id=<one of those>)"
        )
    records = by_task[task_id]
    first_path, first_columns, first_line, first = records[0]
    absent = [c for c in _REQUIRED if c not in first_columns]
    if absent:
        raise InputFileError(
            f"--gt {first_path} lacks column(s) {absent} (fix: use the challenge's tables)"
        )
    task_name = first.get("task_name", "")
    types = TASK_TYPES.get(task_name.lower())
    if types is None:
        raise InputFileError(
            f"--gt {first_path} line {first_line}: task {task_id} has task_name {task_name!r}, "
            "not segmentation, classification, detection or Regression"
        )
    num_classes = _class_count(first.get("num_classes", ""), f"{first_path} line {first_line}")
    needed = (*_REQUIRED, *_TYPE_COLUMNS.get(types[0], ()))
    raw: dict[str, TaskRow] = {}
    seen_files: set[Path] = set()
    for path, columns, line, cells in records:
        where = f"{path} line {line}"
        if path not in seen_files:
            seen_files.add(path)
            absent = [c for c in needed if c not in columns]
            if absent:
                raise InputFileError(
                    f"--gt {path} lacks column(s) {absent} needed by {types[0]} task "
                    f"{task_id} (fix: use the challenge's tables)"
                )
        if cells.get("task_name", "") != task_name:
            raise InputFileError(
                f"--gt {where}: task {task_id} has task_name {cells.get('task_name')!r} here "
                f"but {task_name!r} in {first_path} line {first_line} (fix: one name per task)"
            )
        if _class_count(cells.get("num_classes", ""), where) != num_classes:
            raise InputFileError(
                f"--gt {where}: task {task_id} has num_classes {cells.get('num_classes')!r} "
                f"here but {num_classes} in {first_path} line {first_line} "
                "(fix: one num_classes per task)"
            )
        image_path = cells.get("image_path", "")
        if not image_path:
            raise InputFileError(f"--gt {where}: image_path is empty (fix: name the image)")
        if image_path in raw:
            raise InputFileError(
                f"--gt {where}: task {task_id} lists image {image_path!r} again (also in "
                f"{raw[image_path].where}) (fix: one row per image)"
            )
        raw[image_path] = TaskRow("", image_path, cells, where)
    ids = _case_ids(list(raw), task_id)
    return OfficialTask(
        task_id=task_id,
        task_name=task_name,
        task_types=types,
        num_classes=num_classes,
        rows={ids[p]: TaskRow(ids[p], p, r.cells, r.where) for p, r in raw.items()},
        by_image={p: ids[p] for p in raw},
        csv_dir=csv_dir,
    )


def _case_ids(image_paths: list[str], task_id: str) -> dict[str, str]:
    """Image path -> case id; paths whose short ids collide are their own ids, as written."""
    short = {p: case_id_from_image_path(p) for p in image_paths}
    counts: dict[str, int] = {}
    for cid in short.values():
        counts[cid] = counts.get(cid, 0) + 1
    ids = {p: (cid if counts[cid] == 1 else p) for p, cid in short.items()}
    taken: dict[str, str] = {}
    for path, cid in ids.items():
        if cid in taken:
            raise InputFileError(
                f"task {task_id}: images {taken[cid]!r} and {path!r} give the same case id "
                f"{cid!r} (fix: one row per image)"
            )
        taken[cid] = path
    return ids


def _class_count(text: str, where: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer() or value < 1:
        raise InputFileError(
            f"--gt {where}: num_classes {text!r} is not a positive whole number "
            "(fix: the number of classes, background included, or of points)"
        )
    return int(value)


def check_task_type(task: OfficialTask, task_type: str, default: str) -> None:
    """Stop unless ``--task-type`` scores the task's ``task_name``.

    Args:
        task: The task.
        task_type: The run's task type.
        default: The preset's default task type (used when ``--task-type`` is absent).

    Raises:
        InputFileError: The types differ; the message names the task, its type and the fix.
    """
    if task_type in task.task_types:
        return
    implied = (
        " (the default of --preset fmc-uia when --task-type is not given)"
        if task_type == default
        else ""
    )
    raise InputFileError(
        f"task {task.task_id} of {task.csv_dir} is a {task.task_types[0]} task (task_name "
        f"{task.task_name!r}), but this run scores {task_type}{implied} "
        f"(fix: --task-type {task.task_types[0]})"
    )


def mask_cases(task: OfficialTask, pred_root: Path) -> list[MaskCase]:
    """Reference and prediction mask of each image of a segmentation task.

    The reference is ``csv_files/<mask_path>``; the prediction is
    ``pred_root/<mask_path with every "../" removed>`` (where the challenge's ``model.py``
    writes it). A row without ``mask_path``, or one that would leave the prediction root,
    gets a ``problem`` instead.

    Example:
        >>> row = TaskRow("m/a", "../images/a.png", {"mask_path": "../masks/a.png"}, "t.csv")
        >>> task = OfficialTask("T", "segmentation", ("segmentation",), 2, {"m/a": row},
        ...                     {"../images/a.png": "m/a"}, Path("/data/csv_files"))
        >>> case = mask_cases(task, Path("/preds"))[0]
        >>> str(case.gt), str(case.pred)
        ('/data/masks/a.png', '/preds/masks/a.png')
    """
    out: list[MaskCase] = []
    for case_id, row in task.rows.items():
        mask_path = row.cells.get("mask_path", "")
        if not mask_path:
            problem = f"{row.where}: mask_path is empty (the official script skips the image)"
            out.append(MaskCase(case_id, None, None, problem))
            continue
        relative = PurePosixPath(mask_path.replace("../", ""))
        if relative.is_absolute() or ".." in relative.parts or "#" in mask_path:
            problem = (
                f"{row.where}: mask_path {mask_path!r} cannot be found inside the prediction "
                "root (fix: a relative path such as ../masks/NAME.png, without '#')"
            )
            out.append(MaskCase(case_id, None, None, problem))
            continue
        gt = Path(os.path.normpath(task.csv_dir / mask_path))
        out.append(MaskCase(case_id, gt, Path(pred_root) / relative))
    return out


def reference_class(row: TaskRow, n_classes: int) -> int:
    """The class index in the ``mask`` cell of a classification row.

    Example:
        >>> reference_class(TaskRow("a", "a.png", {"mask": "2.0"}, "t.csv line 2"), 3)
        2
    """
    text = row.cells.get("mask", "")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer() or not 0 <= value < n_classes:
        raise InputFileError(
            f"--gt {row.where}: mask {text!r} is not a class index 0..{n_classes - 1} "
            "(fix: the image's class; or --preset-option num_classes= the number of classes)"
        )
    return int(value)


def reference_box(row: TaskRow) -> np.ndarray | None:
    """The ``x_min, y_min, x_max, y_max`` box of a detection row; ``None`` when a cell is empty.

    Example:
        >>> cells = {"x_min": "1", "y_min": "2", "x_max": "5", "y_max": "6.5"}
        >>> reference_box(TaskRow("a", "a.png", cells, "t.csv line 2")).tolist()
        [1.0, 2.0, 5.0, 6.5]
    """
    texts = [row.cells.get(c, "") for c in BOX_COLUMNS]
    if any(t == "" or t.lower() == "nan" for t in texts):
        return None
    try:
        box = np.array([float(t) for t in texts])
    except ValueError:
        box = np.array([math.nan])
    if not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
        raise InputFileError(
            f"--gt {row.where}: the box {', '.join(texts)} is not four numbers with "
            "x_min <= x_max and y_min <= y_max (fix: x_min, y_min, x_max, y_max in pixels)"
        )
    return box


def reference_points(row: TaskRow, n_points: int) -> np.ndarray:
    """The ``point_1_xy`` .. ``point_K_xy`` cells as ``(K, 2)``; a missing point is (0, 0).

    The challenge's script counts an empty (or absent) point cell as (0, 0); so does
    this (a ``NaN`` coordinate too).

    Example:
        >>> cells = {"point_1_xy": "[3, 4]", "point_2_xy": ""}
        >>> reference_points(TaskRow("a", "a.png", cells, "t.csv line 2"), 2).tolist()
        [[3.0, 4.0], [0.0, 0.0]]
    """
    points = np.zeros((n_points, 2))
    for i in range(n_points):
        column = f"point_{i + 1}_xy"
        text = row.cells.get(column, "")
        if text == "" or text.lower() == "nan":
            continue
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not _numbers(value, 2, allow_nan=True):
            raise InputFileError(
                f"--gt {row.where}: {column} {text!r} is not a point (fix: write it as JSON "
                "[x, y] in pixels, or leave it empty)"
            )
        points[i] = np.nan_to_num(np.array(value, dtype=float), nan=0.0)
    return points


def _number(value: Any, *, allow_nan: bool = False) -> bool:
    """Whether ``value`` is a JSON number that fits a float (finite unless ``allow_nan``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return False
    return math.isfinite(number) or (allow_nan and math.isnan(number))


def _numbers(value: Any, n: int, *, allow_nan: bool = False) -> bool:
    """Whether ``value`` is a list of ``n`` numbers (finite unless ``allow_nan``)."""
    return (
        isinstance(value, list)
        and len(value) == n
        and all(_number(v, allow_nan=allow_nan) for v in value)
    )


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_predictions(
    pred: Path, task: OfficialTask, task_type: str, n_classes: int
) -> tuple[dict[str, Any], list[str], Path]:
    """Read and check the task's entries of its prediction JSON file.

    Args:
        pred: The prediction root (or the JSON file itself).
        task: The task.
        task_type: ``classification``, ``detection`` or ``landmarks``.
        n_classes: Classes of a classification task, points of a keypoint task.

    Returns:
        ``(values, extra, path)``: case id -> value (classification: ``(class,
        probabilities or None)``; detection: the ``(4,)`` box; keypoints: the ``(K, 2)``
        points), the image paths of the task's entries with no row in the tables, and
        the file read.

    Raises:
        InputFileError: A missing or unparsable file, or an entry that is not valid; the
            message names the file, the entry index and the fix.

    Example:
        >>> import tempfile
        >>> pred = Path(tempfile.mkdtemp())
        >>> entry = {"task_id": "T", "image_path": "a.png", "bbox_pixels": [0, 0, 4, 4]}
        >>> _ = (pred / "detection_predictions.json").write_text(json.dumps([entry]))
        >>> row = TaskRow("a", "a.png", {}, "t.csv line 2")
        >>> task = OfficialTask("T", "detection", ("detection",), 1, {"a": row}, {"a.png": "a"},
        ...                     Path("csv_files"))
        >>> values, extra, _ = read_predictions(pred, task, "detection", 1)
        >>> values["a"].tolist(), extra
        ([0.0, 0.0, 4.0, 4.0], [])
    """
    kind = "landmarks" if task_type == "regression" else task_type
    name = PREDICTION_FILES[kind]
    pred = Path(pred)
    path = pred / name if pred.is_dir() else pred
    if not path.is_file():
        raise InputFileError(
            f"--pred {path} does not exist (fix: --pred is the prediction root holding {name}, "
            "as the challenge's model.py writes it, or that JSON file itself)"
        )
    try:
        with open(path, encoding="utf-8") as fh:
            entries = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(
            f"--pred {path} is not a readable JSON file: {exc} (fix: write it with json.dump)"
        ) from None
    if not isinstance(entries, list):
        raise InputFileError(
            f"--pred {path} holds a {type(entries).__name__}, not a list of entries "
            "(fix: a JSON list of {task_id, image_path, ...} objects)"
        )
    values: dict[str, Any] = {}
    seen: dict[str, int] = {}
    extra: list[str] = []
    for index, entry in enumerate(entries):
        where = f"--pred {path} entry {index}"
        if not isinstance(entry, dict):
            raise InputFileError(
                f"{where} is a {type(entry).__name__}, not an object (fix: one "
                "{task_id, image_path, ...} object per image)"
            )
        for key in ("task_id", "image_path"):
            if key not in entry:
                raise InputFileError(f"{where} has no {key!r} (fix: add it to every entry)")
        tid, image_path = entry["task_id"], entry["image_path"]
        if isinstance(tid, bool) or not isinstance(tid, (str, int)):
            raise InputFileError(f"{where}: task_id {_show(tid)} is not text (fix: the task id)")
        if not isinstance(image_path, str):
            raise InputFileError(
                f"{where}: image_path {_show(image_path)} is not text (fix: the image_path of "
                "the image's row in csv_files)"
            )
        if str(tid) != task.task_id:
            continue
        where = f"{where} (task {task.task_id}, image {image_path!r})"
        if image_path in seen:
            raise InputFileError(
                f"{where} repeats entry {seen[image_path]} (fix: one entry per image)"
            )
        seen[image_path] = index
        value = _entry_value(entry, kind, n_classes, where)
        case_id = task.by_image.get(image_path)
        if case_id is None:
            extra.append(image_path)
        else:
            values[case_id] = value
    return values, extra, path


def _entry_value(entry: dict[str, Any], kind: str, n_classes: int, where: str) -> Any:
    """The checked prediction of one entry."""
    if kind == "classification":
        if "predicted_class" not in entry:
            raise InputFileError(
                f"{where} has no 'predicted_class' (fix: the predicted class index)"
            )
        label = entry["predicted_class"]
        if not _number(label) or not float(label).is_integer() or not 0 <= label < n_classes:
            raise InputFileError(
                f"{where}: predicted_class {_show(label)} is not a class index "
                f"0..{n_classes - 1} (fix: the index of the predicted class)"
            )
        probs = entry.get("predicted_probs")
        if probs is not None and not _numbers(probs, n_classes):
            raise InputFileError(
                f"{where}: predicted_probs {_show(probs)} is not a list of {n_classes} numbers "
                "(fix: one probability per class, in class order, or leave it out)"
            )
        return int(label), (None if probs is None else np.array(probs, dtype=float))
    if kind == "detection":
        if "bbox_pixels" not in entry:
            raise InputFileError(
                f"{where} has no 'bbox_pixels' (fix: [x_min, y_min, x_max, y_max] in pixels)"
            )
        box = entry["bbox_pixels"]
        if not _numbers(box, 4):
            raise InputFileError(
                f"{where}: bbox_pixels {_show(box)} is not 4 numbers "
                "(fix: [x_min, y_min, x_max, y_max] in pixels)"
            )
        return np.array(box, dtype=float)
    if "predicted_points_pixels" not in entry:
        raise InputFileError(
            f"{where} has no 'predicted_points_pixels' (fix: [x1, y1, x2, y2, ...] in pixels)"
        )
    points = entry["predicted_points_pixels"]
    flat = points
    if isinstance(points, list) and points and all(isinstance(p, list) for p in points):
        flat = [v for p in points for v in p] if all(len(p) == 2 for p in points) else None
    if not _numbers(flat, 2 * n_classes):
        raise InputFileError(
            f"{where}: predicted_points_pixels {_show(points)} is not {n_classes} points "
            f"(fix: a flat list [x1, y1, ..., x{n_classes}, y{n_classes}] of "
            f"{2 * n_classes} numbers in pixels)"
        )
    return np.array(flat, dtype=float).reshape(n_classes, 2)
