"""Fixtures of the monitoring tests: the store each store test runs against, a served app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from monitor_service_helpers import KEYS, config, post_references
from store_targets import KINDS, store_target

from medfleet.monitor.service import create_app


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store: an SQLite file, or a fresh PostgreSQL schema (skips without a server)."""
    with store_target(request.param, tmp_path) as where:
        yield where


@pytest.fixture
def referenced_client(tmp_path: Path) -> Iterator[TestClient]:
    """A service on a fresh SQLite store whose sites have their references (errors as 5xx)."""
    app = create_app(tmp_path / "monitor.sqlite", config(), KEYS)
    with TestClient(app, raise_server_exceptions=False) as client:
        post_references(client)
        yield client
