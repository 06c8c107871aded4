"""Helpers shared by CLI verbs: output format, console, error reporting."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any, NoReturn

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


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (sorted keys, no Rich markup)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
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


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: what failed on which file, and the fix.

    Example:
        >>> os_error_message(NotADirectoryError(20, "Not a directory", "runs/out/a.csv"))
        'cannot use runs/out/a.csv: Not a directory (fix: give a path whose parent folders are folders, not files)'
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
            if isinstance(exc, MedfleetError) or exc.errno is None:
                raise
            fail(os_error_message(exc))
