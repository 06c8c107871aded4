"""Fixtures of the training tests: tiny phantoms and one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2D phantoms of every task: 2 sites x 7 cases at 32 pixels; returns the manifest path."""
    from medfleet.data.phantoms import generate_phantoms

    return generate_phantoms(
        tmp_path_factory.mktemp("phantoms"), sites=2, cases_per_site=7, size=32, seed=0
    )
