"""Landmark data sets with different point sets, for training over a union landmark space.

A model trains several landmark tasks with one shared heatmap head when
``ModelConfig.landmark_spaces`` maps them to the same space name (see
:class:`medfleet.models.heads.landmarks.LandmarkSpaceView`): the head's channels are the
union of the tasks' landmark names, each task's points sit at their union indices, points
a task does not annotate are masked out of the loss, and decoding returns each task's own
points. This module derives such data sets from one landmark task (for benchmarks and
tests) and computes the mean-shape baseline that a landmark model must beat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.tables import format_landmarks, parse_landmarks, read_table, write_table
from medfleet.tasks import Manifest, TaskType
from medfleet.train.datasets import is_labelled, load_task_rows


def derive_landmark_tasks(
    manifest: Manifest,
    source: str,
    subsets: Mapping[str, Sequence[str]],
    out: str | Path,
) -> Path:
    """Write a manifest whose landmark task ``source`` is split into tasks with point subsets.

    Rows of ``source`` are dealt round-robin (within each split, in table order) to the
    new tasks, so the new tasks have disjoint cases; each keeps only its named points, in
    the order given. The other tasks of the manifest are kept. Tables are written next to
    the manifest as ``<task>.csv``.

    Args:
        manifest: The loaded manifest (its folder receives the new tables).
        source: A landmark task of the manifest.
        subsets: New task name -> landmark names (each a subset of the source's).
        out: Path of the new manifest YAML.

    Returns:
        ``out``.

    Raises:
        MedfleetError: ``source`` is not a landmark task, a name is not one of its points,
            or a new task name already exists.

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["spine_landmarks"]),
        ...                          sites=1, cases_per_site=4, size=32)
        >>> m = Manifest.load(path)
        >>> new = derive_landmark_tasks(m, "spine_landmarks", {
        ...     "upper": ["superior_anterior", "superior_posterior"],
        ...     "back": ["superior_posterior", "inferior_posterior"]}, path.parent / "u.yaml")
        >>> [(t.name, len(t.landmarks)) for t in Manifest.load(new).tasks]
        [('upper', 2), ('back', 2)]
    """
    spec = manifest.task(source)
    if spec.type is not TaskType.landmarks:
        raise MedfleetError(f"task {source!r} is {spec.type.value}, not landmarks")
    names = list(spec.landmarks or [])
    existing = {t.name for t in manifest.tasks}
    for task, points in subsets.items():
        unknown = [p for p in points if p not in names]
        if unknown:
            raise MedfleetError(
                f"task {task!r}: landmarks {unknown} are not points of {source!r} {names} "
                "(fix: pick from those names)"
            )
        if task in existing:
            raise MedfleetError(f"task {task!r} already exists (fix: choose a new name)")
    rows = read_table(manifest.table_path(spec))
    columns = list(rows[0]) if rows else None
    root = manifest.root or Path(out).parent
    per_split: dict[str, int] = {}
    dealt: dict[str, list[dict[str, str]]] = {t: [] for t in subsets}
    order = list(subsets)
    for row in rows:
        k = per_split.get(row["split"], 0)
        per_split[row["split"]] = k + 1
        task = order[k % len(order)]
        new = dict(row)
        if is_labelled(spec, row):
            points = parse_landmarks(row["landmarks"], n_points=len(names))
            keep = [names.index(p) for p in subsets[task]]
            new["landmarks"] = format_landmarks(points[keep])
        new["case_id"] = f"{task}_{row['case_id']}"
        dealt[task].append(new)
    tasks = [t for t in manifest.tasks if t.name != source]
    for task, points in subsets.items():
        table = f"{task}.csv"
        write_table(Path(root) / table, dealt[task], columns=columns)
        tasks.append(spec.model_copy(update={"name": task, "table": Path(table),
                                             "landmarks": list(points)}))  # fmt: skip
    new_manifest = manifest.model_copy(update={"tasks": tasks})
    return new_manifest.save(out)


def mean_shape(manifest: Manifest, task: str, split: str = "train") -> np.ndarray:
    """Mean position ``(L, 2)`` of each point over a split's labelled rows (pixels).

    The mean-shape baseline predicts these positions for every image; it is the bar a
    landmark model must clear.

    Raises:
        MedfleetError: When the split has no labelled row.

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["spine_landmarks"]),
        ...                          sites=1, cases_per_site=4, size=32)
        >>> mean_shape(Manifest.load(path), "spine_landmarks").shape
        (4, 2)
    """
    spec = manifest.task(task)
    rows = load_task_rows(manifest, spec, (split,))
    if not rows:
        raise MedfleetError(f"task {task!r}: no labelled {split} rows for the mean shape")
    n = len(spec.landmarks or [])
    stack = np.stack([parse_landmarks(r["landmarks"], n_points=n) for r in rows])
    return np.nanmean(stack, axis=0)


__all__ = ["derive_landmark_tasks", "mean_shape"]
