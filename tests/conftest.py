"""Shared fixtures: the public data folder, temporary phantoms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared public data folder ($MEDFLEET_DATA, else ../shared/data), or None."""
    env = os.environ.get("MEDFLEET_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared public data; skips the test cleanly when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared public data not found (set MEDFLEET_DATA or place ../shared/data)")
    return path
