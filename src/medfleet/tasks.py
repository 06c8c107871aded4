"""Task specifications and the YAML manifest that lists them.

A manifest names the sites that contribute data and the tasks; each task
points to its table (CSV, see :mod:`medfleet.tables`). Paths inside a manifest
are relative to the manifest's folder.

Example manifest::

    name: fetal-and-breast
    sites:
      - name: hospital_a
        vendor: GE
    tasks:
      - name: fetal_head_seg
        type: segmentation
        organ: fetal head
        group: obstetrics
        labels: {0: background, 1: head}
        table: fetal_head_seg.csv
      - name: breast_cls
        type: classification
        organ: breast
        group: breast
        classes: [benign, malignant, normal]
        table: breast_cls.csv
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medfleet.errors import ManifestError
from medfleet.tables import TaskType
from medfleet.utils.atomic import write_text_atomic

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_name(value: str, what: str) -> str:
    if not _NAME_PATTERN.match(value):
        raise ValueError(
            f"{what} {value!r} must start with a letter or digit and use only letters, digits, "
            "'_', '-' or '.'"
        )
    return value


class Site(BaseModel):
    """A contributing site (hospital, scanner park, country).

    Example:
        >>> Site(name="site_a", vendor="GE").name
        'site_a'
    """

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None
    vendor: str | None = None
    country: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value, "site name")


class TaskSpec(BaseModel):
    """One clinical task: what it predicts, over which organ, and where its table is.

    Attributes:
        name: Unique task name (letters, digits, ``_-.``).
        type: Segmentation, classification, detection, regression or landmarks.
        table: The task's CSV table, relative to the manifest folder.
        organ: Anatomy (e.g. ``"fetal head"``).
        group: Clinical group used by grouped training (defaults to ``organ``).
        modality: Imaging modality (``"US"``, ``"MR"``, ``"CT"``, ``"XR"``, ...).
        dim: 2 for images, 3 for volumes.
        channels: Image channels the model should expect (1 grey, 3 RGB, or frames).
        labels: Segmentation label map ``{value: name}``, with 0 the background.
        classes: Class names (classification; optional class names of detection boxes).
        landmarks: Landmark names in the order of the ``landmarks`` cells.
        unit: Unit of a regression target (e.g. ``"mm"``).
        target: What a regression value measures (e.g. ``"head circumference"``).
        raters: Number of ``mask_raterK`` columns of a segmentation task.
        metrics: Name of the evaluation preset to score this task with.
        description: Free text.

    Example:
        >>> spec = TaskSpec(name="hc", type="regression", table="hc.csv", unit="mm")
        >>> spec.type.value, spec.group
        ('regression', None)
    """

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    name: str
    type: TaskType
    table: Path
    organ: str | None = None
    group: str | None = None
    modality: str | None = None
    dim: int = Field(default=2, ge=2, le=3)
    channels: int = Field(default=1, ge=1)
    labels: dict[int, str] | None = None
    classes: list[str] | None = None
    landmarks: list[str] | None = None
    unit: str | None = None
    target: str | None = None
    raters: int = Field(default=0, ge=0)
    metrics: str | None = None
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value, "task name")

    @model_validator(mode="after")
    def _targets_declared(self) -> TaskSpec:
        kind = self.type
        if kind is TaskType.segmentation:
            if not self.labels:
                raise ValueError(
                    "a segmentation task needs 'labels' (e.g. {0: background, 1: lesion})"
                )
            if 0 not in self.labels:
                raise ValueError("'labels' must map 0 to the background (e.g. 0: background)")
            if any(v < 0 for v in self.labels):
                raise ValueError("'labels' values must be non-negative integers")
        if kind is TaskType.classification and (not self.classes or len(self.classes) < 2):
            raise ValueError("a classification task needs 'classes' with at least two names")
        if kind is TaskType.landmarks and not self.landmarks:
            raise ValueError("a landmarks task needs 'landmarks' (the point names, in order)")
        if kind is TaskType.regression and not self.unit:
            raise ValueError("a regression task needs 'unit' (e.g. mm, ml, degrees)")
        if self.raters and kind is not TaskType.segmentation:
            raise ValueError("'raters' applies to segmentation tasks only")
        for field, names in (("classes", self.classes), ("landmarks", self.landmarks)):
            if names and len(set(names)) != len(names):
                raise ValueError(f"'{field}' has duplicate names")
        return self

    @property
    def clinical_group(self) -> str:
        """The group used by clinically grouped training (``group``, else ``organ``, else name)."""
        return self.group or self.organ or self.name

    @property
    def foreground_labels(self) -> list[int]:
        """Segmentation label values other than background, sorted."""
        return sorted(v for v in (self.labels or {}) if v != 0)


class Manifest(BaseModel):
    """A data set: sites and tasks, loaded from and saved to YAML.

    Example:
        >>> m = Manifest(
        ...     name="demo",
        ...     sites=[Site(name="a")],
        ...     tasks=[TaskSpec(name="t", type="classification", table="t.csv",
        ...                     classes=["x", "y"])],
        ... )
        >>> m.task("t").classes
        ['x', 'y']
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int = 1
    description: str | None = None
    sites: list[Site]
    tasks: list[TaskSpec]
    metadata: dict[str, Any] = Field(default_factory=dict)

    root: Path | None = Field(default=None, exclude=True)
    """Folder that relative paths resolve against (the manifest's folder once loaded)."""

    @model_validator(mode="after")
    def _unique_names(self) -> Manifest:
        for what, names in (
            ("site", [s.name for s in self.sites]),
            ("task", [t.name for t in self.tasks]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{what} name {name!r} is declared twice")
                seen.add(name)
        if not self.tasks:
            raise ValueError("'tasks' is empty: declare at least one task")
        return self

    @property
    def site_names(self) -> list[str]:
        """Names of the declared sites, in order."""
        return [s.name for s in self.sites]

    def select_tasks(self, tasks: Sequence[str] | None = None) -> list[str]:
        """Names of the tasks in manifest order, only those in ``tasks`` when it is given.

        Raises:
            ManifestError: Naming the tasks of ``tasks`` that the manifest does not declare.

        Example:
            >>> m = Manifest(name="m", sites=[Site(name="s")], tasks=[
            ...     TaskSpec(name="a", type="classification", table="a.csv", classes=["x", "y"]),
            ...     TaskSpec(name="b", type="regression", table="b.csv", unit="mm")])
            >>> m.select_tasks(["b", "a"]), m.select_tasks()
            (['a', 'b'], ['a', 'b'])
            >>> m.select_tasks(["z"])
            Traceback (most recent call last):
            ...
            medfleet.errors.ManifestError: task(s) ['z'] are not in the manifest; tasks: ['a', 'b']
        """
        names = [t.name for t in self.tasks]
        if tasks is None:
            return names
        unknown = [t for t in tasks if t not in names]
        if unknown:
            raise ManifestError(f"task(s) {unknown} are not in the manifest; tasks: {names}")
        return [n for n in names if n in set(tasks)]

    def task(self, name: str) -> TaskSpec:
        """Return the task called ``name``.

        Raises:
            KeyError: Naming the known tasks when ``name`` is not one of them.
        """
        for spec in self.tasks:
            if spec.name == name:
                return spec
        raise KeyError(
            f"no task {name!r} in manifest {self.name!r}; tasks: {[t.name for t in self.tasks]}"
        )

    def resolve(self, path: str | Path) -> Path:
        """Resolve a path written in the manifest or a table against the manifest's folder."""
        p = Path(path)
        if p.is_absolute() or self.root is None:
            return p
        return self.root / p

    def table_path(self, task: str | TaskSpec) -> Path:
        """Absolute path of a task's table."""
        spec = self.task(task) if isinstance(task, str) else task
        return self.resolve(spec.table)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest YAML file.

        Raises:
            ManifestError: Naming the file, the YAML line or the field, and what to change.
        """
        path = Path(path)
        if not path.is_file():
            raise ManifestError(f"{path}: manifest file not found (fix: check the path)")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            where = ""
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                where = f" at line {mark.line + 1}, column {mark.column + 1}"
            raise ManifestError(f"{path}: not valid YAML{where}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{path}: not a UTF-8 text file (fix: save it as UTF-8)") from exc
        if not isinstance(raw, dict):
            raise ManifestError(
                f"{path}: expected a mapping with 'name', 'sites' and 'tasks' at the top level"
            )
        try:
            manifest = cls.model_validate(raw)
        except ValidationError as exc:
            raise ManifestError(_describe_validation_error(path, raw, exc)) from exc
        manifest.root = path.resolve().parent
        return manifest

    def to_yaml(self) -> str:
        """Serialise to YAML text (deterministic key order)."""
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
        data.pop("root", None)
        for task in data["tasks"]:
            for key in ("raters", "channels", "dim"):
                if key in task and task[key] == TaskSpec.model_fields[key].default:
                    task.pop(key)
            if "labels" in task:
                task["labels"] = {int(k): v for k, v in task["labels"].items()}
        if not data.get("metadata"):
            data.pop("metadata", None)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        """Write the manifest as YAML atomically and return the path."""
        return write_text_atomic(path, self.to_yaml())


def _describe_validation_error(path: Path, raw: dict[str, Any], exc: ValidationError) -> str:
    """Turn pydantic errors into lines naming the file, task and field."""
    lines = [f"{path}: manifest is invalid ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = list(err["loc"])
        where = []
        if len(loc) >= 2 and loc[0] in ("tasks", "sites") and isinstance(loc[1], int):
            items = raw.get(loc[0]) or []
            item = items[loc[1]] if loc[1] < len(items) else None
            label = item.get("name") if isinstance(item, dict) else None
            where.append(f"{loc[0][:-1]} {label!r}" if label else f"{loc[0]}[{loc[1]}]")
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        if field:
            where.append(f"field '{field}'")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "is required but missing"
        elif err["type"] == "extra_forbidden":
            message = "is not a known field (check its spelling)"
        lines.append(f"  - {' '.join(where) or 'top level'}: {message}")
    return "\n".join(lines)
