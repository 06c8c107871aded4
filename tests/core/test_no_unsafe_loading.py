"""Nothing in the package opens a file in a way that could run code in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "medfleet"
READER = SRC / "utils" / "tensorfile.py"

UNSAFE = {
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
    "pickle.load": re.compile(r"\b(c?pickle|dill|joblib)\.loads?\("),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "yaml.load without a safe loader": re.compile(r"\byaml\.(load|load_all|unsafe_load)\("),
    "trust_remote_code=True": re.compile(r"trust_remote_code\s*=\s*True"),
    "eval/exec": re.compile(r"(?<![\w.])(?<!def )(eval|exec)\("),
}


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_no_unsafe_loading_in_the_package(name: str) -> None:
    pattern = UNSAFE[name]
    found = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line) and not line.lstrip().startswith(("#", ">>>"))
    ]
    assert found == []


def test_torch_load_is_called_only_by_the_one_reader() -> None:
    callers = [
        str(path.relative_to(SRC))
        for path in _sources()
        if re.search(r"\btorch\.load\(", path.read_text()) and path != READER
    ]
    assert callers == []
    assert "weights_only=True" in READER.read_text()
