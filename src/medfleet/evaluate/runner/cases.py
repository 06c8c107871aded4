"""Finding, matching and parsing evaluation cases (mask folders and per-case CSV tables).

* A mask folder holds one file per case; the case id is the file name without its image
  suffix (``liver_003.nii.gz`` -> ``liver_003``). Files with other suffixes and hidden files
  are ignored; two files with the same case id are an error.
* A table is a CSV with a ``case_id`` column and the target columns of its task type, in
  the cell formats of the project's task tables (:mod:`medfleet.tables`): boxes
  ``"[class:]x0,y0,x1,y1;..."``, landmarks ``"x,y;x,y"`` (pixels; ``nan,nan`` or an empty
  item marks a missing point), spacing ``"0.8,0.8"`` (mm, array-axis order). Prediction
  tables add ``scores`` (``"0.9;0.4"``, one per box), ``prob_<class>`` or ``score``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet import tables
from medfleet.errors import InputFileError, MedfleetError

__all__ = [
    "ID_COLUMNS",
    "MASK_SUFFIXES",
    "CaseMatch",
    "CaseMismatchError",
    "CaseTable",
    "case_id_from_path",
    "cell_float",
    "list_case_files",
    "match_cases",
    "parse_boxes",
    "parse_numbers",
    "parse_points",
    "parse_spacing",
    "read_case_table",
    "read_result_rows",
]

#: File suffixes read as masks, longest first so ``.nii.gz`` wins over ``.gz``.
MASK_SUFFIXES: tuple[str, ...] = (
    ".nii.gz",
    ".nii",
    ".png",
    ".npy",
    ".npz",
    ".tif",
    ".tiff",
    ".bmp",
    ".h5",
    ".hdf5",
)


class CaseMismatchError(MedfleetError, ValueError):
    """Predictions and references do not pair up: missing, extra or mismatched cases.

    Attributes:
        missing: Case ids with a reference but no prediction.
        extra: Case ids with a prediction but no reference.
        mismatched: ``(case_id, reason)`` pairs (shape or spacing differences).
    """

    def __init__(
        self,
        missing: Sequence[str] = (),
        extra: Sequence[str] = (),
        mismatched: Sequence[tuple[str, str]] = (),
        *,
        pred: object = None,
        gt: object = None,
    ) -> None:
        self.missing = list(missing)
        self.extra = list(extra)
        self.mismatched = list(mismatched)
        lines = ["predictions and references do not match"]
        if pred is not None and gt is not None:
            lines[0] += f" (pred: {pred}, gt: {gt})"
        if self.missing:
            lines.append(f"  missing predictions ({len(self.missing)}): {_preview(self.missing)}")
        if self.extra:
            lines.append(
                f"  predictions without reference ({len(self.extra)}): {_preview(self.extra)}"
            )
        for case_id, reason in self.mismatched[:20]:
            lines.append(f"  case {case_id}: {reason}")
        if len(self.mismatched) > 20:
            lines.append(f"  ... and {len(self.mismatched) - 20} more mismatched cases")
        fixes = []
        if self.missing or self.extra:
            fixes.append(
                "add or rename the files, or pass --allow-missing to score missing "
                "predictions as worst case and ignore extra ones"
            )
        if any("shape" in r for _, r in self.mismatched):
            fixes.append("--resample-pred nearest resamples predictions onto the reference grid")
        if fixes:
            lines.append("  fix: " + "; ".join(fixes))
        super().__init__("\n".join(lines))


def _preview(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... and {len(ids) - limit} more" if len(ids) > limit else "")


def case_id_from_path(path: str | Path) -> str:
    """Case id of a mask file: its name without the image suffix.

    Example:
        >>> case_id_from_path("/data/pred/liver_003.nii.gz"), case_id_from_path("a.b.png")
        ('liver_003', 'a.b')
    """
    name = Path(path).name
    lower = name.lower()
    for suffix in MASK_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def list_case_files(folder: str | Path, role: str = "folder") -> dict[str, Path]:
    """Map case id -> mask file for every mask file directly inside ``folder``.

    Args:
        folder: Directory of masks.
        role: Name used in errors (``"--pred"``, ``"--gt"``).

    Returns:
        Case ids in sorted order, each with its file.

    Raises:
        InputFileError: The folder does not exist, holds no mask, or two files share a case id.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "b.png").write_bytes(b""); _ = (d / "a.nii.gz").write_bytes(b"")
        >>> list(list_case_files(d))
        ['a', 'b']
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputFileError(f"{role} {root} is not a folder (fix: give the folder of mask files)")
    found: dict[str, Path] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not path.name.lower().endswith(MASK_SUFFIXES):
            continue
        case_id = case_id_from_path(path)
        if case_id in found:
            raise InputFileError(
                f"{role} holds two files for case {case_id!r}: {found[case_id].name} and "
                f"{path.name} (fix: keep one file per case)"
            )
        found[case_id] = path
    if not found:
        raise InputFileError(
            f"{role} {root} holds no mask files (looked for {', '.join(MASK_SUFFIXES)})"
        )
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class CaseMatch:
    """Result of pairing prediction ids with reference ids.

    Attributes:
        matched: Ids present on both sides, sorted.
        missing: Ids with a reference but no prediction, sorted.
        extra: Ids with a prediction but no reference, sorted.
    """

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def match_cases(pred_ids: Iterable[str], gt_ids: Iterable[str]) -> CaseMatch:
    """Pair predictions with references by case id.

    Example:
        >>> m = match_cases(["a", "b", "x"], ["a", "b", "c"])
        >>> m.matched, m.missing, m.extra
        (['a', 'b'], ['c'], ['x'])
    """
    p, g = set(pred_ids), set(gt_ids)
    return CaseMatch(sorted(p & g), sorted(g - p), sorted(p - g))


#: Column names that carry the case id of a per-case table, in order of preference:
#: ``patient_id`` is the name of the MAMA-MIA clinical table and of its official outputs;
#: ``filename`` (HC18's tables) gives the id of the named file, its image suffix removed.
ID_COLUMNS: tuple[str, ...] = ("case_id", "patient_id", "filename")
#: Suffixes read as spreadsheets (through pandas and openpyxl).
SPREADSHEET_SUFFIXES: tuple[str, ...] = (".xlsx", ".xlsm")
#: Sheet read from a spreadsheet when it exists (the MAMA-MIA clinical table's); else the first.
PREFERRED_SHEET = "dataset_info"


@dataclass(frozen=True)
class CaseTable:
    """A per-case table: its columns and its rows (text cells) keyed by case id.

    Attributes:
        path: The CSV or spreadsheet file.
        columns: Column names in file order.
        rows: Case id -> ``{column: text}``; every row also carries its id as ``case_id``.
        id_column: The column the case ids came from (``case_id`` or ``patient_id``).
    """

    path: Path
    columns: tuple[str, ...]
    rows: Mapping[str, Mapping[str, str]]
    id_column: str = "case_id"


def read_case_table(
    path: str | Path, required: Sequence[str] = (), role: str = "table"
) -> CaseTable:
    """Read a per-case table; its case ids must be present, non-empty and unique.

    The ids come from the ``case_id`` column or, when a table has none, from
    ``patient_id`` (the MAMA-MIA clinical table's name) or ``filename`` (HC18's; the id is
    the file name without its image suffix, ``000_HC.png`` -> ``000_HC``; see
    :data:`ID_COLUMNS`). A CSV
    file is read as UTF-8 (a BOM is accepted); an ``.xlsx`` spreadsheet is read from its
    ``dataset_info`` sheet when it has one, else from its first sheet (this needs
    ``openpyxl``), every cell as text.

    Args:
        path: CSV file or ``.xlsx`` spreadsheet.
        required: Columns that must be present besides the id column.
        role: Name used in errors (``"--pred"``, ``"--gt"``, ``"--meta"``).

    Returns:
        The table, cells as text.

    Raises:
        InputFileError: Missing file or column, empty or duplicated case ids.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = p.write_text(chr(10).join(["case_id,value", "a,1.5", "b,2"]))
        >>> t = read_case_table(p, ["value"])
        >>> t.columns, t.rows["b"]["value"]
        (('case_id', 'value'), '2')
        >>> _ = p.write_text(chr(10).join(["patient_id,pcr", "DUKE_001,1"]))
        >>> t = read_case_table(p, ["pcr"])
        >>> t.id_column, t.rows["DUKE_001"]["case_id"]
        ('patient_id', 'DUKE_001')
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "is not a file"
        raise InputFileError(f"{role} {path} {what} (fix: give a CSV table with case_id)")
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:
        columns, raw = _read_spreadsheet(path, role)
    else:
        columns, raw = _read_csv(path, role)
    if not columns:
        names = ", ".join(("case_id", *required))
        raise InputFileError(
            f"{role} {path} is empty (no header line) (fix: write a header line with "
            f"{names} and one row per case)"
        )
    id_column = next((c for c in ID_COLUMNS if c in columns), "case_id")
    absent = [c for c in (id_column, *required) if c not in columns]
    if absent:
        raise InputFileError(
            f"{role} {path} lacks column(s) {absent}; it has {list(columns)} "
            f"(fix: add {', '.join(absent)}; the case id may also be named patient_id "
            "or filename)"
        )
    rows: dict[str, dict[str, str]] = {}
    for line, values in enumerate(raw, start=2):
        if len(values) != len(columns) or any(v is None for v in values):
            raise InputFileError(
                f"{role} {path} line {line}: {len([v for v in values if v is not None])} cells "
                f"for {len(columns)} columns (fix: one cell per column; quote cells that "
                "hold commas)"
            )
        row = {
            c: ("" if v is None else str(v).strip()) for c, v in zip(columns, values, strict=True)
        }
        case_id = row[id_column]
        if id_column == "filename" and case_id:
            case_id = case_id_from_path(case_id)
        if not case_id:
            raise InputFileError(
                f"{role} {path} line {line}: {id_column} is empty (fix: give every row its case id)"
            )
        if case_id in rows:
            raise InputFileError(
                f"{role} {path} lists case {case_id!r} more than once (line {line}; "
                "fix: one row per case)"
            )
        row.setdefault("case_id", case_id)
        rows[case_id] = row
    return CaseTable(path, columns, rows, id_column)


def _read_csv(path: Path, role: str) -> tuple[tuple[str, ...], list[list[Any]]]:
    """Header and rows of a UTF-8 CSV table."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = tuple(c.strip() for c in (reader.fieldnames or ()))
            raw = [list(r.values()) for r in reader]
    except UnicodeDecodeError as exc:
        raise InputFileError(
            f"{role} {path} is not a readable UTF-8 CSV table: {exc} "
            "(fix: save the table as UTF-8 CSV)"
        ) from exc
    except (OSError, csv.Error) as exc:
        raise InputFileError(f"{role} {path} is not a readable CSV table: {exc}") from exc
    return columns, raw


def _read_spreadsheet(path: Path, role: str) -> tuple[tuple[str, ...], list[list[Any]]]:
    """Header and rows (cells as text, empty cells as ``""``) of an ``.xlsx`` sheet."""
    try:
        import openpyxl  # noqa: F401  (pandas reads .xlsx through it)
    except ImportError:
        raise InputFileError(
            f"{role} {path} is a spreadsheet and reading it needs openpyxl "
            '(fix: pip install "medfleet[xlsx]", or save the sheet as CSV)'
        ) from None
    import pandas as pd

    try:
        with pd.ExcelFile(path, engine="openpyxl") as book:
            names = [str(n) for n in book.sheet_names]
            sheet = PREFERRED_SHEET if PREFERRED_SHEET in names else names[0]
            frame = pd.read_excel(book, sheet_name=sheet, dtype=str, keep_default_na=False)
    except Exception as exc:  # any parse failure means a bad input file
        raise InputFileError(
            f"{role} {path} is not a readable spreadsheet: {exc} (fix: save it as .xlsx or CSV)"
        ) from None
    columns = tuple(str(c).strip() for c in frame.columns)
    raw = [["" if v is None else str(v) for v in values] for values in frame.to_numpy().tolist()]
    return columns, raw


def cell_float(text: Any) -> float:
    """A table cell as a float; NaN when empty or not a number.

    Example:
        >>> cell_float("0.5"), cell_float("")
        (0.5, nan)
    """
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_result_rows(
    path: str | Path, needed: Sequence[str], what: str
) -> dict[str, list[dict[str, str]]]:
    r"""The rows of an evaluation ``cases.csv``, grouped by case id (one row per label or box).

    Args:
        path: ``cases.csv`` written by the evaluation runner.
        needed: Columns that must be present.
        what: What the table belongs to, for messages (e.g. ``"task 'seg'"``).

    Raises:
        MedfleetError: The file is missing or lacks a needed column.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "cases.csv"
        >>> _ = p.write_text("case_id,label,dice\na,1,0.5\na,2,0.7\nb,1,0.9\n")
        >>> {k: len(v) for k, v in read_result_rows(p, ["dice"], "task 'seg'").items()}
        {'a': 2, 'b': 1}
    """
    path = Path(path)
    if not path.is_file():
        raise MedfleetError(f"{what}: evaluation table {path} not found")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and any(c not in rows[0] for c in needed):
        raise MedfleetError(f"{what}: {path} lacks column(s) {list(needed)}")
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row["case_id"], []).append(row)
    return grouped


def _cell_error(case_id: str, column: str, exc: Exception) -> InputFileError:
    return InputFileError(f"case {case_id}: column {column!r}: {exc}")


def parse_numbers(cell: str | None, *, case_id: str, column: str) -> np.ndarray:
    """Parse ``"a;b;c"`` into a float array (NaN allowed); a blank cell gives an empty array.

    Example:
        >>> parse_numbers("0.9;0.25", case_id="c1", column="scores").tolist()
        [0.9, 0.25]
    """
    text = (cell or "").strip()
    if not text:
        return np.zeros(0)
    try:
        return np.array([float(v) for v in text.split(";") if v.strip()], dtype=np.float64)
    except ValueError:
        raise InputFileError(
            f"case {case_id}: column {column!r} holds {cell!r}, not numbers separated by ';'"
        ) from None


def parse_boxes(
    cell: str | None, *, case_id: str, column: str = "boxes"
) -> tuple[np.ndarray, list[str | None]]:
    """Parse a 2-D ``boxes`` cell (``[class:]x0,y0,x1,y1;...``) into boxes and class names.

    Example:
        >>> boxes, classes = parse_boxes("polyp:0,0,10,10; 5,5,8,9", case_id="c1")
        >>> boxes.tolist(), classes
        ([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 8.0, 9.0]], ['polyp', None])
    """
    try:
        parsed = tables.parse_boxes(cell or "", ndim=2)
    except tables.CellFormatError as exc:
        raise _cell_error(case_id, column, exc) from None
    boxes = np.array([b.coords for b in parsed], dtype=np.float64).reshape(-1, 4)
    return boxes, [b.label for b in parsed]


def parse_points(cell: str | None, *, case_id: str, column: str = "landmarks") -> np.ndarray:
    """Parse a ``landmarks`` cell (``x,y;x,y`` or ``x,y,z;...``) into ``(n, d)``; NaN = missing.

    An empty item or ``nan`` coordinates mark a missing landmark.

    Example:
        >>> parse_points("10,20;nan,nan;;3.5,4", case_id="c1").tolist()
        [[10.0, 20.0], [nan, nan], [nan, nan], [3.5, 4.0]]
    """
    text = (cell or "").strip()
    first = next((item for item in text.split(";") if item.strip()), "")
    ndim = 3 if len([p for p in first.replace(" ", ",").split(",") if p]) == 3 else 2
    try:
        return tables.parse_landmarks(text, ndim=ndim)
    except tables.CellFormatError as exc:
        raise _cell_error(case_id, column, exc) from None


def parse_spacing(
    cell: str | None, *, case_id: str, column: str = "spacing"
) -> tuple[float, ...] | None:
    """Parse a ``spacing`` cell (mm per array axis, rows first); a blank cell gives ``None``.

    Example:
        >>> parse_spacing("0.5,0.25", case_id="c1"), parse_spacing("", case_id="c1")
        ((0.5, 0.25), None)
    """
    if not (cell or "").strip():
        return None
    try:
        return tables.parse_spacing(cell or "")
    except tables.CellFormatError as exc:
        raise _cell_error(case_id, column, exc) from None
