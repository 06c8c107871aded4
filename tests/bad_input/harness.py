"""What every bad-input case checks: a clean refusal, one line naming it, nothing half-written.

Each corpus file lists named cases; a case builds its bad input in ``tmp_path``, runs one
``medfleet`` command (or one HTTP request) and asserts with :func:`assert_refused`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from medfleet.cli.app import app


@dataclass
class Outcome:
    """What a CLI run left: exit code, both streams, and any exception that escaped."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    def describe(self) -> str:
        """Everything needed to debug a failing case."""
        return (
            f"exit {self.exit_code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}\n"
            f"--- exception {self.exception!r}"
        )


def run_cli(args: list[str]) -> Outcome:
    """Run ``medfleet <args>`` in-process and capture what a user would see."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    escaped = result.exception
    if isinstance(escaped, SystemExit):
        escaped = None
    return Outcome(result.exit_code, result.stdout, result.stderr, escaped)


def assert_refused(outcome: Outcome, *names: str, code: int | None = None) -> str:
    """The command failed cleanly: non-zero exit, one ``error:`` line naming ``names``.

    Returns:
        The error line.
    """
    info = outcome.describe()
    assert outcome.exception is None, info
    assert outcome.exit_code != 0, info
    if code is not None:
        assert outcome.exit_code == code, info
    assert "Traceback" not in outcome.stdout + outcome.stderr, info
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, info
    for name in names:
        assert name in errors[0], f"{name!r} not named in the error line\n{info}"
    return errors[0]


def assert_usage_error(outcome: Outcome, *names: str) -> None:
    """A command-line usage error (exit 2) naming the option or value."""
    info = outcome.describe()
    assert outcome.exception is None, info
    assert outcome.exit_code == 2, info
    assert "Traceback" not in outcome.stdout + outcome.stderr, info
    for name in names:
        assert name in outcome.stderr, f"{name!r} not named\n{info}"


def temporary_leftovers(folder: Path) -> list[Path]:
    """Files under ``folder`` that an interrupted atomic write would leave behind."""
    leftovers = []
    for root, _, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and (".tmp" in name or name.count(".") >= 2):
                leftovers.append(Path(root) / name)
    return leftovers


def assert_nothing_half_written(folder: Path, allowed: set[str] | None = None) -> None:
    """No temporary leftovers under ``folder``, and (when given) no files beyond ``allowed``."""
    assert temporary_leftovers(folder) == []
    if allowed is not None and folder.exists():
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert present <= allowed, sorted(present - allowed)
