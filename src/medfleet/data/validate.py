"""Check a manifest and every row of its task tables before anything trains on them.

:func:`validate_manifest` collects *every* problem rather than stopping at the
first one; each :class:`Problem` names the file, the line, the column and the
case, says what is wrong and how to fix it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import ManifestError, MedfleetError
from medfleet.tables import (
    BASE_COLUMNS,
    SPLITS,
    TARGET_COLUMNS,
    CellFormatError,
    parse_boxes,
    parse_float,
    parse_landmarks,
    parse_spacing,
    rater_column,
)
from medfleet.tasks import Manifest, TaskSpec, TaskType

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest or table.

    Attributes:
        file: The manifest or table file.
        message: What is wrong.
        fix: What would fix it.
        line: Line number in the file (the CSV header is line 1), if any.
        column: Table column, if any.
        case_id: The case, if any.
        task: The task, if any.
        severity: ``"error"`` (validation fails) or ``"warning"``.
    """

    file: str
    message: str
    fix: str
    line: int | None = None
    column: str | None = None
    case_id: str | None = None
    task: str | None = None
    severity: str = ERROR

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        parts = [where]
        if self.column:
            parts.append(f"[{self.column}]")
        if self.case_id:
            parts.append(f"case {self.case_id!r}:")
        else:
            parts[-1] += ":"
        return f"{' '.join(parts)} {self.message} (fix: {self.fix})"


@dataclass
class ValidationReport:
    """Everything found while validating a manifest.

    Attributes:
        manifest: The manifest path.
        problems: Errors and warnings, in the order found.
        counts: Per task: rows, labelled rows, unlabelled rows, and rows per split and site.
    """

    manifest: str
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        """Problems that make validation fail."""
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """Problems worth knowing that do not fail validation."""
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``ok``, ``errors``, ``warnings``, ``counts``)."""
        return {
            "manifest": self.manifest,
            "ok": self.ok,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "errors": [asdict(p) for p in self.errors],
            "warnings": [asdict(p) for p in self.warnings],
            "counts": self.counts,
        }


_MANIFEST_FIX = "correct the manifest as described"
_WHERE = re.compile(r"^(task|site) '((?:[^'\\]|\\.)*)'(?: field '([^']+)')?")


def _manifest_problems(path: Path, exc: ManifestError) -> list[Problem]:
    """The problems of a manifest that does not load: one per thing wrong, each on one line.

    A YAML syntax error is reported at its line; each invalid field of a task or site at the
    line of that field (or of the task) in the YAML.
    """
    import yaml

    cause = exc.__cause__
    if isinstance(cause, yaml.YAMLError):
        mark = getattr(cause, "problem_mark", None)
        context = getattr(cause, "context", None) or ""
        problem = getattr(cause, "problem", None) or str(cause)
        column = f" (column {mark.column + 1})" if mark is not None else ""
        return [
            Problem(
                file=str(path),
                line=mark.line + 1 if mark is not None else None,
                message=f"not valid YAML{column}: {' '.join(f'{context} {problem}'.split())}",
                fix="correct the YAML syntax there (indentation, quotes, brackets)",
            )
        ]
    message = str(exc).removeprefix(f"{path}: ")
    _, *items = message.splitlines()
    if items and all(item.startswith("  - ") for item in items):
        problems = []
        for item in items:
            text = item.removeprefix("  - ")
            problems.append(
                Problem(
                    file=str(path),
                    line=_yaml_line(path, text),
                    message=f"invalid manifest: {text}",
                    fix=_MANIFEST_FIX,
                )
            )
        return problems
    message, _, fix = " ".join(message.split()).partition(" (fix: ")
    return [Problem(file=str(path), message=message, fix=fix.removesuffix(")") or _MANIFEST_FIX)]


def _yaml_line(path: Path, where: str) -> int | None:
    """Line of ``task 'name' field 'key'`` (or of the task/site) in the manifest YAML."""
    import yaml

    match = _WHERE.match(where)
    if match is None:
        return None
    kind, name, field_path = match.groups()
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    items = next((v for k, v in root.value if k.value == f"{kind}s"), None)
    if not isinstance(items, yaml.SequenceNode):
        return None
    for item in items.value:
        if not isinstance(item, yaml.MappingNode):
            continue
        keys = {k.value: (k, v) for k, v in item.value}
        if "name" not in keys or str(keys["name"][1].value) != name:
            continue
        key = (field_path or "").split(".")[0]
        node = keys[key][0] if key in keys else item
        return int(node.start_mark.line) + 1
    return None


def validate_manifest(
    path: str | Path,
    *,
    decode: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    r"""Validate a manifest and all its task tables.

    Checks that the manifest parses; each table exists, is CSV and has the
    columns of its task type; every row names a declared site, a known split,
    a unique case id and a subject; image and mask files exist and decode;
    masks match their image's shape and hold only labels of the label map;
    boxes and landmarks are well formed and inside the image; regression
    values are finite numbers; and no subject of a site appears in two splits
    (across all tasks).

    Args:
        path: The manifest YAML.
        decode: Decode every image and mask (set False to check only that files exist).
        progress: Called as ``progress(done, total)`` over table rows.

    Returns:
        A report with every problem found; ``report.ok`` is False on any error.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "m.yaml").write_text(
        ...     "name: x\nsites: [{name: a}]\n"
        ...     "tasks: [{name: t, type: regression, unit: mm, table: t.csv}]\n")
        >>> report = validate_manifest(d / "m.yaml")
        >>> report.ok, report.errors[0].message
        (False, 'table file not found')
    """
    path = Path(path)
    report = ValidationReport(manifest=str(path))
    if path.is_dir():
        report.problems.append(
            Problem(
                file=str(path),
                message="is a folder, not a manifest file",
                fix=f"give the manifest YAML file, e.g. {path / 'manifest.yaml'}",
            )
        )
        return report
    try:
        manifest = Manifest.load(path)
    except ManifestError as exc:
        report.problems.extend(_manifest_problems(path, exc))
        return report

    checker = _Checker(manifest, report, decode=decode)
    tables = []
    for spec in manifest.tasks:
        rows = checker.read_table(spec)
        if rows is not None:
            tables.append((spec, rows))
    total = sum(len(rows) for _, rows in tables)
    done = 0
    for spec, rows in tables:
        for line, row in rows:
            checker.check_row(spec, line, row)
            done += 1
            if progress is not None:
                progress(done, total)
    checker.check_subjects()
    checker.check_unused_sites()
    return report


def _axes_text(extent: tuple[int, ...], template: str) -> str:
    """``template`` filled per axis (``axis`` = x, y, z; ``size`` = its extent), comma-joined.

    Example:
        >>> _axes_text((64, 48), "{axis} in [0, {size}]")
        'x in [0, 64], y in [0, 48]'
    """
    return ", ".join(template.format(axis=a, size=n) for a, n in zip("xyz", extent, strict=False))


class _Checker:
    """Row-level checks with a cache of decoded files (tasks often share images)."""

    def __init__(self, manifest: Manifest, report: ValidationReport, decode: bool) -> None:
        self.manifest = manifest
        self.report = report
        self.decode = decode
        self.sites = set(manifest.site_names)
        self.used_sites: set[str] = set()
        self.case_ids: dict[str, dict[str, int]] = defaultdict(dict)
        # (site, subject) -> {split: (table, line, case_id)}
        self.subject_splits: dict[tuple[str, str], dict[str, tuple[str, int, str]]] = defaultdict(
            dict
        )
        self._images: dict[tuple[str, bool], Any] = {}

    # -- problems -------------------------------------------------------------------------

    def add(self, spec: TaskSpec | None, message: str, fix: str, **where: Any) -> None:
        file = where.pop("file", None) or (
            str(self.manifest.table_path(spec)) if spec is not None else self.report.manifest
        )
        self.report.problems.append(
            Problem(file=file, message=message, fix=fix, task=spec.name if spec else None, **where)
        )

    # -- table ----------------------------------------------------------------------------

    def read_table(self, spec: TaskSpec) -> list[tuple[int, dict[str, str]]] | None:
        import csv

        table = self.manifest.table_path(spec)
        counts: dict[str, Any] = {"rows": 0, "labelled": 0, "unlabelled": 0}
        self.report.counts[spec.name] = counts
        if not table.is_file():
            self.add(
                spec,
                "table file not found",
                f"create it or correct 'table' of task {spec.name!r} in the manifest",
                file=str(table),
            )
            return None
        try:
            with open(table, newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                raw_rows = list(reader)
        except (UnicodeDecodeError, csv.Error) as exc:
            self.add(spec, f"not a readable UTF-8 CSV file ({exc})", "save the table as UTF-8 CSV")
            return None
        if not header:
            self.add(
                spec, "table is empty (no header line)", "add the header line and one row per case"
            )
            return None
        header = [h.strip() for h in header]
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            self.add(
                spec,
                f"columns {duplicates} appear more than once",
                "keep one of each column",
                line=1,
            )
        required = list(BASE_COLUMNS) + list(TARGET_COLUMNS[spec.type.value])
        required += [rater_column(k) for k in range(1, spec.raters + 1)]
        missing = [c for c in required if c not in header]
        if missing:
            self.add(
                spec,
                f"missing required column(s) {missing} for a {spec.type.value} task",
                f"add the column(s); a {spec.type.value} table needs {required}",
                line=1,
            )
            return None
        rows = []
        for offset, values in enumerate(raw_rows):
            line = offset + 2
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                self.add(
                    spec,
                    f"has {len(values)} cells but the header has {len(header)} columns",
                    'quote cells that contain commas, e.g. "1,2,3,4"',
                    line=line,
                )
                continue
            rows.append((line, {h: v.strip() for h, v in zip(header, values, strict=True)}))
        if not rows:
            self.add(spec, "table has no rows", "add one row per case", line=1)
        counts["rows"] = len(rows)
        return rows

    # -- rows -----------------------------------------------------------------------------

    def check_row(self, spec: TaskSpec, line: int, row: dict[str, str]) -> None:
        case_id = row.get("case_id") or None
        where = {"line": line, "case_id": case_id}
        counts = self.report.counts[spec.name]
        for column in BASE_COLUMNS:
            if not row.get(column):
                self.add(
                    spec, "empty cell", f"fill in '{column}' for every row", column=column, **where
                )
        if case_id:
            first = self.case_ids[spec.name].get(case_id)
            if first is not None:
                self.add(
                    spec,
                    f"case id repeats line {first}",
                    "give every row of a task its own case_id",
                    column="case_id",
                    **where,
                )
            else:
                self.case_ids[spec.name][case_id] = line
        site, split, subject = row.get("site", ""), row.get("split", ""), row.get("subject", "")
        if site:
            self.used_sites.add(site)
            if site not in self.sites:
                self.add(
                    spec,
                    f"site {site!r} is not declared in the manifest",
                    f"add it under 'sites' or use one of {sorted(self.sites)}",
                    column="site",
                    **where,
                )
            counts.setdefault("sites", {}).setdefault(site, 0)
            counts["sites"][site] += 1
        if split:
            if split not in SPLITS:
                self.add(
                    spec,
                    f"split {split!r} is not one of {list(SPLITS)}",
                    f"use one of {list(SPLITS)}",
                    column="split",
                    **where,
                )
            counts.setdefault("splits", {}).setdefault(split, 0)
            counts["splits"][split] += 1
        if subject and site and split in SPLITS:
            self.subject_splits[(site, subject)].setdefault(
                split, (str(self.manifest.table_path(spec)), line, case_id or "")
            )

        self._check_spacing(spec, row, where)
        image = self._load(spec, row.get("image", ""), "image", where)
        target_column = TARGET_COLUMNS[spec.type.value][0]
        if not row.get(target_column):
            counts["unlabelled"] += 1
            if split in ("val", "test"):
                self.add(
                    spec,
                    f"a {split} row has no '{target_column}'",
                    f"fill in '{target_column}' (rows without a target may only be in train)",
                    column=target_column,
                    **where,
                )
            return
        counts["labelled"] += 1
        shape = None if image is None else image[0]
        check = {
            TaskType.segmentation: self._check_segmentation,
            TaskType.classification: self._check_classification,
            TaskType.detection: self._check_detection,
            TaskType.regression: self._check_regression,
            TaskType.landmarks: self._check_landmarks,
        }[spec.type]
        check(spec, row, where, shape)

    def _check_spacing(self, spec: TaskSpec, row: dict[str, str], where: dict[str, Any]) -> None:
        text = row.get("spacing", "")
        if not text:
            return
        try:
            parse_spacing(text, spec.dim)
        except CellFormatError as exc:
            self.add(
                spec,
                str(exc),
                f"write {spec.dim} positive numbers in mm, in array axis order, e.g. "
                + ('"0.5,0.5"' if spec.dim == 2 else '"3,0.8,0.8"'),
                column="spacing",
                **where,
            )

    def _load(
        self,
        spec: TaskSpec,
        ref: str,
        column: str,
        where: dict[str, Any],
        want_values: bool = False,
    ) -> tuple[tuple[int, ...], np.ndarray | None] | None:
        """Return (spatial shape, unique values or None) of a file; None after adding a problem."""
        if not ref:
            return None
        resolved = self._resolve(ref)
        file_part = resolved.split("#", 1)[0]
        if not Path(file_part).exists():
            self.add(
                spec,
                f"file not found: {file_part}",
                f"check the path in '{column}' (relative paths start at the manifest's folder)",
                column=column,
                **where,
            )
            return None
        with_values = want_values or column != "image"
        # A file read for its shape only has no values: a later mask use must decode it again.
        key = (resolved, with_values)
        if key not in self._images:
            self._images[key] = self._decode(resolved, with_values)
        result = self._images[key]
        if isinstance(result, str):
            self.add(
                spec,
                f"cannot decode {file_part}: {result}",
                "replace the file with a readable one (re-export or re-download it)",
                column=column,
                **where,
            )
            return None
        shape, values, n_spatial = result
        if n_spatial != spec.dim:
            self.add(
                spec,
                f"{column} has {n_spatial} spatial dimensions but the task is {spec.dim}D",
                f"set 'dim: {n_spatial}' for task {spec.name!r} or point at a {spec.dim}D file",
                column=column,
                **where,
            )
            return None
        return shape, values

    def _decode(
        self, ref: str, with_values: bool
    ) -> tuple[tuple[int, ...], np.ndarray | None, int] | str:
        from medfleet.data.io import read_header, read_image

        try:
            if self.decode or with_values:
                data = read_image(ref)
                values = None
                if with_values:
                    array = data.array
                    if data.meta.get("channel_axis") is not None:
                        return "a mask must be a single-channel label image, not colour"
                    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
                        return "mask holds NaN or infinite values"
                    values = np.unique(array)
                n = data.ndim_spatial
                return tuple(int(s) for s in data.array.shape[:n]), values, n
            shape, _ = read_header(ref)
            return tuple(int(s) for s in shape), None, len(shape)
        except MedfleetError as exc:
            return getattr(exc, "reason", None) or str(exc)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def _resolve(self, ref: str) -> str:
        file_part, sep, fragment = ref.partition("#")
        return str(self.manifest.resolve(file_part)) + sep + fragment

    # -- per type -------------------------------------------------------------------------

    def _check_segmentation(
        self,
        spec: TaskSpec,
        row: dict[str, str],
        where: dict[str, Any],
        shape: tuple[int, ...] | None,
    ) -> None:
        allowed = set(spec.labels or {})
        columns = ["mask"] + [rater_column(k) for k in range(1, spec.raters + 1)]
        for column in columns:
            if not row.get(column):
                if column != "mask":
                    self.add(
                        spec,
                        f"rater mask '{column}' is empty",
                        f"fill in '{column}' or lower 'raters' of task {spec.name!r}",
                        column=column,
                        **where,
                    )
                continue
            loaded = self._load(spec, row[column], column, where, want_values=True)
            if loaded is None:
                continue
            mask_shape, values = loaded
            if shape is not None and mask_shape != shape:
                self.add(
                    spec,
                    f"{column} shape {mask_shape} differs from image shape {shape}",
                    "export the mask on the image's grid (same size, same orientation)",
                    column=column,
                    **where,
                )
            if values is not None:
                bad = [v for v in values.tolist() if v not in allowed]
                if bad:
                    shown = ", ".join(f"{v:g}" for v in bad[:10])
                    self.add(
                        spec,
                        f"{column} holds label value(s) {shown} outside the label map "
                        f"{sorted(allowed)}",
                        f"add them to 'labels' of task {spec.name!r} or fix the mask",
                        column=column,
                        **where,
                    )

    def _check_classification(
        self,
        spec: TaskSpec,
        row: dict[str, str],
        where: dict[str, Any],
        shape: tuple[int, ...] | None,
    ) -> None:
        label = row["label"]
        if label not in (spec.classes or []):
            self.add(
                spec,
                f"label {label!r} is not one of the task's classes",
                f"use one of {spec.classes} or add it to 'classes' of task {spec.name!r}",
                column="label",
                **where,
            )

    def _check_detection(
        self,
        spec: TaskSpec,
        row: dict[str, str],
        where: dict[str, Any],
        shape: tuple[int, ...] | None,
    ) -> None:
        try:
            boxes = parse_boxes(row["boxes"], spec.dim)
        except CellFormatError as exc:
            example = '"10,20,50,60;70,5,90,30"' if spec.dim == 2 else '"1,2,3,10,20,30"'
            self.add(spec, str(exc), f"write boxes as {example}", column="boxes", **where)
            return
        extent = None if shape is None else tuple(reversed(shape))  # (W, H[, D]): x, y, z order
        for k, box in enumerate(boxes, start=1):
            if box.label and spec.classes and box.label not in spec.classes:
                self.add(
                    spec,
                    f"box {k} class {box.label!r} is not one of the task's classes",
                    f"use one of {spec.classes}",
                    column="boxes",
                    **where,
                )
            if extent is None:
                continue
            if any(lo < 0 for lo in box.lower) or any(
                hi > size for hi, size in zip(box.upper, extent, strict=True)
            ):
                self.add(
                    spec,
                    f"box {k} {box.coords} extends outside the image "
                    f"({_axes_text(extent, '{axis} in [0, {size}]')})",
                    "clip the box to the image or check x/y order (x is the column)",
                    column="boxes",
                    **where,
                )

    def _check_regression(
        self,
        spec: TaskSpec,
        row: dict[str, str],
        where: dict[str, Any],
        shape: tuple[int, ...] | None,
    ) -> None:
        try:
            parse_float(row["value"], "value")
        except CellFormatError as exc:
            self.add(
                spec,
                str(exc),
                f"write a finite number in {spec.unit} (no unit text, '.' as decimal point)",
                column="value",
                **where,
            )

    def _check_landmarks(
        self,
        spec: TaskSpec,
        row: dict[str, str],
        where: dict[str, Any],
        shape: tuple[int, ...] | None,
    ) -> None:
        names = spec.landmarks or []
        try:
            points = parse_landmarks(row["landmarks"], len(names), spec.dim)
        except CellFormatError as exc:
            example = (
                ";".join(["x,y"] * len(names))
                if spec.dim == 2
                else ";".join(["x,y,z"] * len(names))
            )
            self.add(
                spec,
                f"landmarks {exc}",
                f"write one point per name {names} as {example!r} (empty item for a missing point)",
                column="landmarks",
                **where,
            )
            return
        if shape is None:
            return
        extent = tuple(reversed(shape))
        for name, point in zip(names, points, strict=True):
            if np.isnan(point).any():
                continue
            if any(c < 0 or c > size - 1 for c, size in zip(point, extent, strict=True)):
                self.add(
                    spec,
                    f"landmark {name!r} at {tuple(float(c) for c in point)} lies outside the image "
                    f"of size ({_axes_text(extent, '{axis}={size}')})",
                    "check x/y order (x is the column) and that coordinates are in pixels",
                    column="landmarks",
                    **where,
                )

    # -- cross-row checks -----------------------------------------------------------------

    def check_subjects(self) -> None:
        for (site, subject), splits in sorted(self.subject_splits.items()):
            if len(splits) < 2:
                continue
            places = "; ".join(
                f"{split} at {Path(table).name}:{line} (case {case!r})"
                for split, (table, line, case) in sorted(splits.items())
            )
            table, line, case = next(iter(splits.values()))
            self.report.problems.append(
                Problem(
                    file=table,
                    line=line,
                    column="split",
                    case_id=case,
                    message=(
                        f"subject {subject!r} of site {site!r} is in {len(splits)} splits: {places}"
                    ),
                    fix="put all images of a subject in one split (split by subject, not by image)",
                )
            )

    def check_unused_sites(self) -> None:
        for site in self.manifest.site_names:
            if site not in self.used_sites:
                self.report.problems.append(
                    Problem(
                        file=self.report.manifest,
                        message=f"site {site!r} is declared but no table row uses it",
                        fix="remove it from 'sites' or add its rows",
                        severity=WARNING,
                    )
                )
