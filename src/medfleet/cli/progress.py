"""Rich progress bars that long-running library calls drive through a ``(done, total)`` callback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medfleet.cli.common import err_console
from medfleet.utils.progress import ProgressCallback


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[ProgressCallback]:
    """Yield a ``progress(done, total)`` callback that draws a bar on stderr.

    Args:
        description: Text shown before the bar.
        enabled: When False (e.g. ``--format json``) the callback does nothing.

    Example:
        >>> with progress_bar("work", enabled=False) as update:
        ...     update(1, 2)
    """
    if not enabled:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("{task.description}", markup=False),  # a description may hold user text
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task_id = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task_id, completed=done, total=total)

        yield update
