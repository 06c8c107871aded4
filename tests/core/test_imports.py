"""Light imports: the package and the evaluation core never pull in torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "monai", "transformers", "peft", "flwr", "diffusers")


@pytest.mark.parametrize(
    "module",
    [
        "medfleet",
        "medfleet.evaluate",
        "medfleet.tasks",
        "medfleet.tables",
        "medfleet.data.validate",
        "medfleet.data.io",
        "medfleet.cli",
    ],
)
def test_import_does_not_load_deep_learning_stack(module: str) -> None:
    code = (
        "import sys, importlib\n"
        f"importlib.import_module({module!r})\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"


def test_cli_help_lists_verbs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "medfleet", "--help"], capture_output=True, text=True, check=True
    )
    for verb in ("data", "demo", "evaluate"):
        assert verb in result.stdout
