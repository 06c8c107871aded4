"""Helpers shared by the data set adapters: source checks, splits, subsets, ids, writing.

Splits follow an order given by a keyed hash of ``(seed, stratum, subject)``,
so they are the same on every machine, Python and NumPy version, and do not
depend on the order in which a source lists its files.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from medfleet.errors import ManifestError, MedfleetError
from medfleet.tables import SPLITS, write_table
from medfleet.tasks import Manifest, Site, TaskSpec
from medfleet.utils.progress import ProgressCallback

T = TypeVar("T")


MANIFEST_NAME = "manifest.yaml"
"""File name of the manifest every adapter writes in its output folder."""


@dataclass(frozen=True)
class PrepareOptions:
    """Options every adapter takes.

    Attributes:
        seed: Seed of the split.
        val_fraction: Share of images (approximately; whole subjects move) for validation.
        test_fraction: Share of images for testing.
        progress: ``progress(done, total)`` callback, or None.
        limit: Keep at most this many cases (deterministic subset), or None for all.
    """

    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    progress: ProgressCallback | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        """Reject fractions and limits that cannot give a split."""
        for name, value in (
            ("val_fraction", self.val_fraction),
            ("test_fraction", self.test_fraction),
        ):
            if not (0.0 <= value < 1.0) or not math.isfinite(value):
                raise MedfleetError(f"{name} = {value!r} must be in [0, 1) (e.g. 0.15)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise MedfleetError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} "
                "leaves no training data; keep their sum below 1 (e.g. 0.15 + 0.15)"
            )
        if self.limit is not None and self.limit < 1:
            raise MedfleetError(f"limit = {self.limit} must be a positive number of cases or None")

    def tick(self, done: int, total: int) -> None:
        """Report progress when a callback was given."""
        if self.progress is not None:
            self.progress(done, total)


def require_dir(path: Path, dataset: str, expected: str, what: str = "source folder") -> Path:
    """Return ``path`` when it is a folder, else raise naming what the folder should hold.

    Args:
        path: The folder to check.
        dataset: Data set name, for the message.
        expected: What the source folder should contain, in words.
        what: Which folder this is (``"source folder"``, ``"masks folder"``...).

    Raises:
        ManifestError: When the folder does not exist or is a file.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> require_dir(d, "busi", "labels.csv") == d
        True
    """
    if not path.exists():
        raise ManifestError(
            f"{path}: {what} of {dataset} not found; the source folder should contain {expected} "
            "(fix: pass --src pointing at the downloaded data set)"
        )
    if not path.is_dir():
        raise ManifestError(
            f"{path}: is a file, not the {what} of {dataset}; the source folder should contain "
            f"{expected}"
        )
    return path


def require_file(path: Path, dataset: str, expected: str) -> Path:
    """Return ``path`` when it is a file, else raise naming it and the expected folder layout.

    Raises:
        ManifestError: When the file is missing.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> try:
        ...     require_file(d / "labels.csv", "busi", "labels.csv and class folders")
        ... except Exception as exc:
        ...     "labels.csv: required file of busi is missing" in str(exc)
        True
    """
    if not path.is_file():
        raise ManifestError(
            f"{path}: required file of {dataset} is missing; the source folder should contain "
            f"{expected}"
        )
    return path


def check_output_folder(src: Path, out: Path) -> Path:
    """Create ``out`` and refuse to write derived files into the source folder.

    Raises:
        MedfleetError: When ``out`` is ``src`` or inside it.
    """
    src_r, out_r = src.resolve(), out.resolve()
    if out_r == src_r or src_r in out_r.parents:
        raise MedfleetError(
            f"{out}: output folder is inside the source folder {src}; choose a separate --out "
            "folder so the source data stays untouched"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def read_csv_rows(path: Path, required: Sequence[str], dataset: str) -> list[dict[str, str]]:
    r"""Read a source CSV as text rows and check its header has the ``required`` columns.

    Raises:
        ManifestError: Naming the file and the missing columns.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "l.csv"
        >>> _ = p.write_text("image,label\na.png,x\n")
        >>> read_csv_rows(p, ["image", "label"], "demo")
        [{'image': 'a.png', 'label': 'x'}]
    """
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise ManifestError(
                    f"{path}: {dataset} CSV lacks column(s) {missing}; its header is {header} "
                    f"and should hold {list(required)}"
                )
            return [
                {(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader
            ]
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a UTF-8 text CSV (fix: re-export it as UTF-8)") from exc


def stable_key(*parts: object) -> str:
    """A hex digest of ``parts`` that is the same on every platform and Python version.

    Example:
        >>> stable_key(0, "train", "007")[:12]
        'a5fe2f884fd1'
    """
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def assign_splits(
    subjects: Mapping[str, int],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    strata: Mapping[str, Hashable] | None = None,
) -> dict[str, str]:
    """Assign each subject to train, val or test, keeping all of a subject's images together.

    Within each stratum (e.g. a class), subjects are ordered by a keyed hash of
    ``(seed, stratum, subject)``; test takes subjects in that order until it
    holds ``round(test_fraction * images)`` images, then val likewise, and the
    rest go to train. Targets count images, so a subject with several frames
    weighs more; a split may overshoot its target by at most one subject.

    Args:
        subjects: ``{subject: number of images}``.
        seed: Seed of the order.
        val_fraction: Target share of images in val.
        test_fraction: Target share of images in test.
        strata: Optional ``{subject: stratum}`` for a stratified split.

    Returns:
        ``{subject: split}``.

    Example:
        >>> plan = assign_splits({"a": 1, "b": 1, "c": 1, "d": 1}, seed=0,
        ...                      val_fraction=0.25, test_fraction=0.25)
        >>> sorted(plan.values())
        ['test', 'train', 'train', 'val']
    """
    groups: dict[Hashable, list[str]] = defaultdict(list)
    for subject in subjects:
        groups[strata[subject] if strata is not None else ""].append(subject)
    result: dict[str, str] = {}
    for stratum in sorted(groups, key=str):
        members = sorted(groups[stratum], key=lambda s: (stable_key(seed, stratum, s), s))
        total = sum(subjects[s] for s in members)
        targets = {"test": round(test_fraction * total), "val": round(val_fraction * total)}
        counts = {"test": 0, "val": 0}
        for subject in members:
            for split in ("test", "val"):
                if counts[split] < targets[split]:
                    counts[split] += subjects[subject]
                    result[subject] = split
                    break
            else:
                result[subject] = "train"
    assert set(result.values()) <= set(SPLITS)
    return result


def take_subset(
    items: Sequence[T], limit: int | None, key: Callable[[T], Hashable] | None = None
) -> list[T]:
    """Keep at most ``limit`` items, deterministically, preserving the proportions of ``key``.

    Without ``key`` this is ``items[:limit]``. With ``key`` (a class or a source
    split) each group keeps its first items in source order, in numbers
    proportional to the group's size (largest remainder), so a stratified
    subset stays stratified. The result keeps the source order.

    Example:
        >>> take_subset(list("aaaabbbbcc"), 5, key=lambda c: c)
        ['a', 'a', 'b', 'b', 'c']
    """
    if limit is None or limit >= len(items):
        return list(items)
    if key is None:
        return list(items[:limit])
    by_group: dict[Hashable, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_group[key(item)].append(index)
    order = sorted(by_group, key=str)
    exact = {g: limit * len(by_group[g]) / len(items) for g in order}
    quota = {g: math.floor(exact[g]) for g in order}
    spare = limit - sum(quota.values())
    for g in sorted(order, key=lambda g: (-(exact[g] - quota[g]), str(g)))[:spare]:
        quota[g] += 1
    keep = sorted(i for g in order for i in by_group[g][: quota[g]])
    return [items[i] for i in keep]


_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(text: str) -> str:
    """Turn a file stem into a case id (letters, digits, ``_.-``).

    Example:
        >>> slug("benign (12)")
        'benign_12'
    """
    return _SLUG.sub("_", text).strip("_") or "case"


def check_unique(ids: Iterable[str], what: str, where: Path) -> None:
    """Raise when an id repeats (e.g. two files that slug to the same case id).

    Raises:
        ManifestError: Naming the id and the source.
    """
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise ManifestError(f"{where}: {what} {value!r} occurs twice; rename one of the files")
        seen.add(value)


def write_manifest(
    out: Path,
    *,
    name: str,
    description: str,
    site: Site,
    tables: Sequence[tuple[TaskSpec, Sequence[Mapping[str, Any]]]],
    metadata: Mapping[str, Any],
) -> Path:
    """Write each task's table and the manifest into ``out``; return the manifest path.

    Args:
        out: Output folder.
        name: Manifest name.
        description: One-line description.
        site: The single site of the data set.
        tables: ``(task spec, rows)`` pairs; each spec's ``table`` is its CSV name.
        metadata: Provenance (source, licence, split rule, seed, exclusions).

    Returns:
        Path of ``out/manifest.yaml``.
    """
    for spec, rows in tables:
        write_table(out / spec.table, rows)
    manifest = Manifest(
        name=name,
        description=description,
        sites=[site],
        tasks=[spec for spec, _ in tables],
        metadata=dict(metadata),
    )
    return manifest.save(out / MANIFEST_NAME)


def split_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Number of rows per split, in train/val/test order (for manifest metadata).

    Example:
        >>> split_counts([{"split": "val"}, {"split": "train"}])
        {'train': 1, 'val': 1, 'test': 0}
    """
    counts = dict.fromkeys(SPLITS, 0)
    for row in rows:
        counts[row["split"]] += 1
    return counts
