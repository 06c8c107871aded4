"""Helpers shared by CLI verbs: output format, console, error reporting."""

from __future__ import annotations

import enum
import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

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
    """Print an error on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)
