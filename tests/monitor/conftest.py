"""Fixtures of the monitoring tests: the store each store test runs against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_targets import KINDS, store_target


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store: an SQLite file, or a fresh PostgreSQL schema (skips without a server)."""
    with store_target(request.param, tmp_path) as where:
        yield where
