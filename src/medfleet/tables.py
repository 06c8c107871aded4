"""Task tables: column names and the text formats of their typed cells.

A task table is a CSV with one row per image. Every table has the columns
``case_id, image, site, split, subject``; each task type adds its targets:

=============== ============================================================
type            target columns
=============== ============================================================
segmentation    ``mask`` (label image) and optional ``mask_rater1..N``
classification  ``label`` (a class name from the task's ``classes``)
detection       ``boxes``: ``x0,y0,x1,y1`` in pixels, several separated by
                ``;``, each optionally prefixed by a class name and ``:``
regression      ``value`` (a number in the task's ``unit``)
landmarks       ``landmarks``: ``x,y`` (or ``x,y,z``) per point, points
                separated by ``;`` in the order of the task's landmark names;
                an empty point (``;;``) or ``nan,nan`` marks a missing point
=============== ============================================================

Any other column is free metadata (age band, vendor, density, ...). Optional
``spacing`` gives the pixel spacing in mm in array axis order (``row,col`` or
``slice,row,col``) when the image file does not carry it.

Coordinates: ``x`` runs along the columns (array axis -1), ``y`` along the
rows (axis -2) and ``z`` along the slices (axis -3).

* Landmarks are pixel-centre indices: a point on pixel ``(row=i, col=j)`` is
  ``x=j, y=i``; sub-pixel values are allowed; inside the image means
  ``0 <= x <= W-1``.
* Box edges lie on pixel borders (the COCO convention): pixel ``(i, j)``
  covers ``[j, j+1) x [i, i+1)``, so the tight box around pixels with column
  indices ``j0..j1`` and row indices ``i0..i1`` is ``x0=j0, y0=i0, x1=j1+1,
  y1=i1+1``; its area is ``(x1 - x0) * (y1 - y0)`` and inside the image means
  ``0 <= x0 < x1 <= W`` (likewise for ``y`` and ``z``).

Paths in a table (``image``, ``mask``, ...) are relative to the manifest's
folder unless absolute, and may carry a fragment that picks one item of a
container: ``clip.mp4#frame=12``, ``set.npz#key=train_images&index=5``.
"""

from __future__ import annotations

import csv
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.utils.atomic import atomic_open


class TaskType(enum.StrEnum):
    """The kinds of clinical task: what a manifest's tasks and an evaluation score.

    Example:
        >>> TaskType("landmarks") == "landmarks", [t.value for t in TaskType][:2]
        (True, ['segmentation', 'classification'])
    """

    segmentation = "segmentation"
    classification = "classification"
    detection = "detection"
    regression = "regression"
    landmarks = "landmarks"


BASE_COLUMNS: tuple[str, ...] = ("case_id", "image", "site", "split", "subject")
"""Columns every task table has."""

TARGET_COLUMNS: dict[str, tuple[str, ...]] = {
    "segmentation": ("mask",),
    "classification": ("label",),
    "detection": ("boxes",),
    "regression": ("value",),
    "landmarks": ("landmarks",),
}
"""Target columns required by each task type."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Allowed values of the ``split`` column."""


def rater_column(index: int) -> str:
    """Column name of rater ``index`` (1-based) of a segmentation task.

    Example:
        >>> rater_column(2)
        'mask_rater2'
    """
    return f"mask_rater{index}"


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates (2D: x0,y0,x1,y1; 3D: x0,y0,z0,x1,y1,z1).

    Attributes:
        coords: Lower corner coordinates followed by upper corner coordinates.
        label: Optional class name.
        score: Optional confidence (predictions only).
    """

    coords: tuple[float, ...]
    label: str | None = None
    score: float | None = None

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.coords) // 2

    @property
    def lower(self) -> tuple[float, ...]:
        """Lower corner (x0, y0[, z0])."""
        return self.coords[: self.ndim]

    @property
    def upper(self) -> tuple[float, ...]:
        """Upper corner (x1, y1[, z1])."""
        return self.coords[self.ndim :]


class CellFormatError(ValueError):
    """A table cell does not follow its documented text format."""


def parse_float(text: str, what: str = "value") -> float:
    """Parse a finite float from a cell, with a message that says what was expected.

    Example:
        >>> parse_float(" 3.5 ")
        3.5
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise CellFormatError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CellFormatError(f"{what} {text!r} is not finite")
    return value


def parse_boxes(cell: str, ndim: int = 2) -> list[Box]:
    """Parse a ``boxes`` cell: ``[label:]x0,y0,x1,y1`` items separated by ``;``.

    Args:
        cell: The cell text; an empty cell means no boxes.
        ndim: 2 for ``x0,y0,x1,y1``; 3 for ``x0,y0,z0,x1,y1,z1``.

    Returns:
        The boxes in order.

    Raises:
        CellFormatError: When an item has the wrong number of numbers, a
            non-number, or an upper corner not above the lower corner.

    Example:
        >>> [(b.label, b.coords) for b in parse_boxes("lesion:10,20,30,40;5,5,8,9")]
        [('lesion', (10.0, 20.0, 30.0, 40.0)), (None, (5.0, 5.0, 8.0, 9.0))]
    """
    boxes: list[Box] = []
    text = (cell or "").strip()
    if not text:
        return boxes
    for item_index, item in enumerate(text.split(";")):
        item = item.strip()
        if not item:
            continue
        label: str | None = None
        if ":" in item:
            label, item = (part.strip() for part in item.split(":", 1))
        parts = [p for p in item.replace(" ", ",").split(",") if p != ""]
        if len(parts) != 2 * ndim:
            expected = "x0,y0,x1,y1" if ndim == 2 else "x0,y0,z0,x1,y1,z1"
            raise CellFormatError(
                f"box {item_index + 1} {item!r} has {len(parts)} numbers; expected {expected}"
            )
        coords = tuple(parse_float(p, f"box {item_index + 1} coordinate") for p in parts)
        lower, upper = coords[:ndim], coords[ndim:]
        if any(hi <= lo for lo, hi in zip(lower, upper, strict=True)):
            raise CellFormatError(
                f"box {item_index + 1} {item!r} has an upper corner not above its lower corner"
            )
        boxes.append(Box(coords=coords, label=label))
    return boxes


def format_boxes(boxes: Sequence[Box]) -> str:
    """Write boxes in the ``boxes`` cell format (inverse of :func:`parse_boxes`).

    Example:
        >>> format_boxes([Box((1.0, 2.0, 3.5, 4.0), "polyp")])
        'polyp:1,2,3.5,4'
    """
    items = []
    for box in boxes:
        numbers = ",".join(_format_number(c) for c in box.coords)
        items.append(f"{box.label}:{numbers}" if box.label else numbers)
    return ";".join(items)


def parse_landmarks(cell: str, n_points: int | None = None, ndim: int = 2) -> np.ndarray:
    """Parse a ``landmarks`` cell into an ``(n_points, ndim)`` float array (x, y[, z]).

    Missing points (an empty item or ``nan`` coordinates) become NaN rows.

    Args:
        cell: The cell text.
        n_points: Expected number of points; checked when given.
        ndim: 2 for ``x,y``; 3 for ``x,y,z``.

    Raises:
        CellFormatError: On a wrong count or a malformed point.

    Example:
        >>> parse_landmarks("1,2;;3.5,4", n_points=3)
        array([[1. , 2. ],
               [nan, nan],
               [3.5, 4. ]])
    """
    text = (cell or "").strip()
    items = text.split(";") if text else []
    if n_points is not None and len(items) != n_points:
        raise CellFormatError(f"has {len(items)} points; the task names {n_points} landmarks")
    points = np.full((len(items), ndim), np.nan, dtype=np.float64)
    for i, item in enumerate(items):
        item = item.strip()
        if not item:
            continue
        parts = [p for p in item.replace(" ", ",").split(",") if p != ""]
        if len(parts) != ndim:
            expected = "x,y" if ndim == 2 else "x,y,z"
            raise CellFormatError(
                f"point {i + 1} {item!r} has {len(parts)} numbers; expected {expected}"
            )
        if all(p.lower() == "nan" for p in parts):
            continue
        points[i] = [parse_float(p, f"point {i + 1} coordinate") for p in parts]
    return points


def format_landmarks(points: np.ndarray) -> str:
    """Write points in the ``landmarks`` cell format (NaN rows become empty items).

    Example:
        >>> format_landmarks(np.array([[1.0, 2.0], [np.nan, np.nan]]))
        '1,2;'
    """
    items = []
    for row in np.asarray(points, dtype=np.float64):
        items.append("" if np.isnan(row).any() else ",".join(_format_number(v) for v in row))
    return ";".join(items)


def parse_spacing(cell: str, ndim: int | None = None) -> tuple[float, ...]:
    """Parse a ``spacing`` cell (mm per array axis, comma separated, all > 0).

    Example:
        >>> parse_spacing("0.5,0.25")
        (0.5, 0.25)
    """
    parts = [p for p in (cell or "").replace(" ", ",").split(",") if p != ""]
    if ndim is not None and len(parts) != ndim:
        raise CellFormatError(f"spacing {cell!r} has {len(parts)} values; expected {ndim}")
    values = tuple(parse_float(p, "spacing") for p in parts)
    if not values or any(v <= 0 for v in values):
        raise CellFormatError(f"spacing {cell!r} must be positive millimetres per axis")
    return values


def format_spacing(spacing: Sequence[float]) -> str:
    """Write a spacing tuple in the ``spacing`` cell format.

    Example:
        >>> format_spacing((0.5, 0.25))
        '0.5,0.25'
    """
    return ",".join(_format_number(float(s)) for s in spacing)


def _format_number(value: float) -> str:
    """Shortest round-trip text for a float, without a trailing ``.0``."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def write_table(
    path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write task-table rows as CSV atomically (base columns first, then the rest in order seen).

    Args:
        path: Destination CSV.
        rows: One mapping per case.
        columns: Column order; defaults to the base columns present, then any others.

    Returns:
        The written path.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = write_table(p, [{"case_id": "a", "image": "a.png", "site": "s", "split": "train",
        ...                      "subject": "a", "label": "x"}])
        >>> p.read_text().splitlines()[0]
        'case_id,image,site,split,subject,label'
    """
    rows = list(rows)
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        columns = [c for c in BASE_COLUMNS if c in seen] + [
            c for c in seen if c not in BASE_COLUMNS
        ]
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell_text(row.get(c, "")) for c in columns})
    return Path(path)


def read_table(path: str | Path) -> list[dict[str, str]]:
    r"""Read a task table as a list of ``{column: text}`` rows (cells stay text).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = p.write_text("case_id,label\na,x\n")
        >>> read_table(p)
        [{'case_id': 'a', 'label': 'x'}]
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [dict(row) for row in csv.DictReader(fh)]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else _format_number(value)
    return str(value)
