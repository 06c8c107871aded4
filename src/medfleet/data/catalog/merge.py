"""Merge prepared manifests into one multi-site, multi-task manifest.

Each source manifest (e.g. one written by an adapter: one data set, one site) keeps its
sites, tasks, splits and rows; the merged manifest lists all of them. Tables are copied
into the output folder with every file path (``image``, and for segmentation ``mask`` and
``mask_raterK``) made absolute, so the merged manifest does not depend on where the
sources live relative to it. Nothing else is copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medfleet.errors import ManifestError
from medfleet.tables import rater_column, read_table, write_table
from medfleet.tasks import Manifest, TaskType

MANIFEST_NAME = "manifest.yaml"


def _path_columns(manifest: Manifest, task: str) -> list[str]:
    spec = manifest.task(task)
    columns = ["image"]
    if spec.type is TaskType.segmentation:
        columns += ["mask", *(rater_column(k) for k in range(1, spec.raters + 1))]
    return columns


def merge_manifests(
    manifests: Sequence[str | Path],
    out: str | Path,
    *,
    name: str = "merged",
    description: str | None = None,
) -> Path:
    """Write one manifest holding the sites and tasks of several manifests.

    Args:
        manifests: Paths of the source ``manifest.yaml`` files.
        out: Output folder (created): the merged ``manifest.yaml`` and one table per task.
        name: Name of the merged manifest.
        description: One line; defaults to the list of sources.

    Returns:
        Path of the merged ``manifest.yaml``.

    Raises:
        ManifestError: No source, or two sources that define the same task, site or
            table file name (the message names both sources).

    Example:
        >>> import tempfile, pathlib
        >>> from medfleet.tasks import Site, TaskSpec
        >>> from medfleet.tables import write_table
        >>> paths = []
        >>> for site in ("a", "b"):
        ...     d = pathlib.Path(tempfile.mkdtemp())
        ...     _ = write_table(d / f"{site}.csv", [{"case_id": "c1", "image": "c1.png",
        ...         "site": site, "split": "train", "label": "x"}])
        ...     paths.append(Manifest(name=site, sites=[Site(name=site)], tasks=[TaskSpec(
        ...         name=f"{site}_cls", type="classification", table=f"{site}.csv",
        ...         classes=["x", "y"])]).save(d / "manifest.yaml"))
        >>> merged = Manifest.load(merge_manifests(paths, tempfile.mkdtemp()))
        >>> [s.name for s in merged.sites], [t.name for t in merged.tasks]
        (['a', 'b'], ['a_cls', 'b_cls'])
    """
    if not manifests:
        raise ManifestError("no manifest to merge (fix: give at least one manifest.yaml)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    owners: dict[tuple[str, str], tuple[int, Path]] = {}
    sites: list[Any] = []
    tasks: list[Any] = []
    sources: list[dict[str, Any]] = []
    for index, source in enumerate(manifests):
        source = Path(source)
        manifest = Manifest.load(source)
        for kind, names in (
            ("site", [s.name for s in manifest.sites]),
            ("task", [t.name for t in manifest.tasks]),
            ("table", [Path(t.table).name for t in manifest.tasks]),
        ):
            for item in names:
                first, earlier = owners.setdefault((kind, item), (index, source))
                if first != index:
                    raise ManifestError(
                        f"{source}: {kind} {item!r} is also defined by {earlier} (fix: rename "
                        f"the {kind} in one of the manifests before merging)"
                    )
        sites.extend(manifest.sites)
        for spec in manifest.tasks:
            rows = read_table(manifest.table_path(spec))
            columns = _path_columns(manifest, spec.name)
            for row in rows:
                for column in columns:
                    if (row.get(column) or "").strip():
                        row[column] = str(manifest.resolve(row[column]).resolve())
            table = Path(spec.table).name
            write_table(out / table, rows)
            tasks.append(spec.model_copy(update={"table": Path(table)}))
        sources.append(
            {
                "manifest": str(source.resolve()),
                "name": manifest.name,
                "tasks": [t.name for t in manifest.tasks],
                "metadata": dict(manifest.metadata or {}),
            }
        )
    merged = Manifest(
        name=name,
        description=description or "merged from " + ", ".join(s["name"] for s in sources),
        sites=sites,
        tasks=tasks,
        metadata={"merged_from": sources},
    )
    return merged.save(out / MANIFEST_NAME)
