"""Bad data sets for the corpus: one phantom task copied into its own manifest, then damaged.

:func:`one_task_manifest` writes a manifest with a single task whose table points (by absolute
path) at the images of shared phantoms, so each case damages its own copy of a table (or of a
file) and never the phantoms the other cases use.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from medfleet.tables import read_table, write_table
from medfleet.tasks import Manifest

Rows = list[dict[str, str]]
#: The tiny phantoms of the corpus: 2 sites, 7 cases per task and site, 32 pixels.
PHANTOMS = {"sites": 2, "cases_per_site": 7, "size": 32}


def make_phantoms(folder: Path) -> Path:
    """Generate the corpus phantoms in ``folder``; return their manifest."""
    from medfleet.data.phantoms import generate_phantoms

    return generate_phantoms(folder, **PHANTOMS)  # type: ignore[arg-type]


def one_task_manifest(
    phantoms: Path,
    folder: Path,
    task: str,
    edit: Callable[[Rows], Rows | None] | None = None,
    *,
    copy_files: tuple[str, ...] = (),
) -> Path:
    """Write ``folder/manifest.yaml`` with only ``task``; its table is ``folder/<task>.csv``.

    Args:
        phantoms: The phantoms' manifest.
        folder: Where the new manifest and table go (created).
        task: The phantom task to keep.
        edit: Changes the rows in place (or returns new ones) before the table is written.
        copy_files: Columns whose files are copied into ``folder`` (so a case may damage
            its copy) instead of being referenced in the phantoms.

    Returns:
        The manifest path.
    """
    manifest = Manifest.load(phantoms)
    spec = manifest.task(task)
    rows = read_table(manifest.table_path(spec))
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        for column, value in row.items():
            source = manifest.resolve(value) if value else None
            if source is None or not source.is_file():
                continue
            if column in copy_files:
                target = folder / column / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                row[column] = str(target)
            else:
                row[column] = str(source)
    if edit is not None:
        rows = edit(rows) or rows
    write_table(folder / spec.table, rows)
    single = manifest.model_copy(update={"tasks": [spec]})
    return single.save(folder / "manifest.yaml")


def row_of(rows: Rows, case_id: str) -> dict[str, str]:
    """The row of ``case_id``."""
    return next(r for r in rows if r["case_id"] == case_id)
