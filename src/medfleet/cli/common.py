"""Helpers shared by CLI verbs: shared options, output format, console, error reporting.

The options every kind of verb takes (``--manifest``, ``--n-resamples``, ``--format``) are
defined here once; the model and run options of the verbs that train or run a model are in
:mod:`medfleet.cli.run_options`. docs/cli/README.md lists every option with its file.
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

console = Console(stderr=False)
err_console = Console(stderr=True)


class OutputFormat(enum.StrEnum):
    """How a command prints its result: for people (``text``) or programs (``json``)."""

    text = "text"
    json = "json"


FORMAT_OPTION = typer.Option(
    OutputFormat.text, "--format", help="Output for people (text) or programs (json)."
)

ManifestOption = Annotated[Path, typer.Option("--manifest", "-m", help="The manifest YAML.")]

DEFAULT_N_RESAMPLES = 1000
"""The one default of ``--n-resamples`` (every verb that bootstraps takes it)."""
MIN_N_RESAMPLES = 10
"""The one minimum of ``--n-resamples``."""

NResamplesOption = Annotated[
    int,
    typer.Option(
        "--n-resamples",
        min=MIN_N_RESAMPLES,
        help="Bootstrap resamples of each confidence interval.",
    ),
]


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (sorted keys, no Rich markup).

    Non-finite numbers follow the one policy of :mod:`medfleet.utils.jsonsafe` (NaN as
    ``null``, infinity as ``"inf"``), as in every JSON file medfleet writes.
    """
    from medfleet.utils.jsonsafe import json_safe

    text = json.dumps(json_safe(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error on stderr and exit with ``code``.

    The message is printed as it is: brackets in user data (a case id ``[/bold]x``, a path
    ``runs[v2]/pred``) are text, never Rich markup.

    Example:
        >>> try:
        ...     fail("cannot read runs[v2]/a.png: [/bold] is not an image")
        ... except typer.Exit as exc:
        ...     exc.exit_code
        1
    """
    text = Text("error:", style="bold red")
    text.append(" " + str(message))
    err_console.print(text, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def say(message: str, *, style: str | None = None, err: bool = False) -> None:
    """Print one line for people, as it is: user data in it is never Rich markup.

    Case ids, labels and paths (``[/bold]x``, ``runs[v2]/pred``) come out exactly as written;
    long lines are not wrapped, so a path stays whole for copying and grepping.

    Example:
        >>> say("wrote runs[v2]/pred/[/bold]x.csv")
        wrote runs[v2]/pred/[/bold]x.csv
    """
    target = err_console if err else console
    target.print(Text(message, style=style or ""), highlight=False, soft_wrap=True)


def literal(value: object, style: str | None = None) -> Text:
    """``value`` as Rich text shown as it is (for table cells and titles that hold user data).

    Example:
        >>> literal("[red]benign").plain
        '[red]benign'
    """
    return Text(str(value), style=style or "")


def check_out_folder(out: Path | None, option: str = "--out") -> None:
    """Refuse an output folder that cannot be one, before any work: one line, exit code 2.

    An existing file at ``out``, or a file where one of its parent folders should be, would
    otherwise fail only when the first result is written (after minutes of training or
    scoring) with a traceback. ``None`` (option not given) is accepted.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "results.csv"
        >>> _ = f.write_text("x")
        >>> try:
        ...     check_out_folder(f)
        ... except typer.Exit as exc:
        ...     exc.exit_code
        2
    """
    if out is None:
        return
    from medfleet.utils.atomic import file_in_the_way

    path = Path(out)
    blocker = file_in_the_way(path)
    if blocker is None:
        return
    where = (
        "is an existing file, not a folder"
        if blocker == path
        else f"cannot be a folder: {blocker} is an existing file"
    )
    fail(
        f"{option} {path} {where} (fix: give a folder path for {option}, or move {blocker} away)",
        code=2,
    )


def load_manifest(path: Path) -> Any:
    """Load the manifest at ``path``; a folder given instead is refused by name.

    Raises:
        ManifestError: The file is missing or invalid (the message names it).
    """
    from medfleet.tasks import Manifest

    if Path(path).is_dir():
        fail(
            f"manifest {path} is a folder, not a manifest file (fix: give the manifest YAML, "
            f"e.g. {Path(path) / 'manifest.yaml'})"
        )
    return Manifest.load(path)


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: what failed on which file, and the fix.

    Example:
        >>> message = os_error_message(NotADirectoryError(20, "Not a directory", "runs/out/a.csv"))
        >>> what, fix = message.split(" (fix: ")
        >>> what
        'cannot use runs/out/a.csv: Not a directory'
        >>> fix
        'give a path whose parent folders are folders, not files)'
    """
    import errno

    name = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or type(exc).__name__
    fixes = {
        errno.ENOTDIR: "give a path whose parent folders are folders, not files",
        errno.EISDIR: "give a file path, not a folder",
        errno.EEXIST: "give a path that is not an existing file, or remove it",
        errno.EACCES: "check the permissions of the file and its folder",
        errno.EPERM: "check the permissions of the file and its folder",
        errno.ENOENT: "check the path",
        errno.ENOSPC: "free disk space and rerun",
        errno.EROFS: "write to a writable location",
    }
    fix = fixes.get(exc.errno or -1)
    return f"cannot use {name}: {reason}" + (f" (fix: {fix})" if fix else "")


class MedfleetGroup(TyperGroup):
    """Root command group: a medfleet error from any verb ends in one line, never a traceback.

    :class:`~medfleet.errors.MedfleetError` and file-system errors (a folder where a file was
    expected, no permission, disk full) print ``error: <message>`` and exit 1; anything else
    is a defect and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning medfleet and file-system errors into one clean line."""
        from medfleet.errors import MedfleetError

        try:
            return super().invoke(ctx)
        except MedfleetError as exc:
            fail(str(exc))
        except OSError as exc:
            if exc.errno is None:
                raise
            fail(os_error_message(exc))
