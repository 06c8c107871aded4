"""The ``medfleet`` command-line interface (one Typer app, one module per verb group)."""

from medfleet.cli.app import app, main

__all__ = ["app", "main"]
