"""Where the store tests keep their data: an SQLite file, or a fresh schema on PostgreSQL.

The PostgreSQL cases need a server: ``MEDFLEET_TEST_POSTGRES_URL`` holds its SQLAlchemy URL
(``eval "$(bash .ci/start-postgres.sh)"`` starts a throwaway one and sets it); with
``MEDFLEET_TEST_REQUIRE_POSTGRES`` set, as in CI, a missing server fails them. Each case gets
a schema of its own (``search_path`` in the URL), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_ENV = "MEDFLEET_TEST_POSTGRES_URL"
POSTGRES_SKIP = (
    f"{POSTGRES_ENV} is not set: no PostgreSQL server for the postgres store cases "
    '(eval "$(bash .ci/start-postgres.sh)" starts one)'
)
KINDS = ("sqlite", "postgres")
REQUIRE_ENV = "MEDFLEET_TEST_REQUIRE_POSTGRES"
"""Set (as CI does) to make the postgres cases fail, not skip, without a server."""


def postgres_url() -> str | None:
    """The test server's URL, or None when the variable is unset or empty."""
    return os.environ.get(POSTGRES_ENV) or None


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose connections use a fresh, empty schema (dropped on exit)."""
    import sqlalchemy as sa

    base = postgres_url()
    if base is None:
        if os.environ.get(REQUIRE_ENV):  # CI starts a server: its absence is a failure
            pytest.fail(f"{REQUIRE_ENV} is set but {POSTGRES_SKIP}")
        pytest.skip(POSTGRES_SKIP)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    engine = sa.create_engine(base)
    try:
        with engine.begin() as con:
            con.execute(sa.text(f"CREATE SCHEMA {schema}"))
        url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as con:
            con.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()


@contextmanager
def store_target(kind: str, folder: Path, name: str = "monitor.sqlite") -> Iterator[str]:
    """A store target of ``kind``: an SQLite path under ``folder`` or a PostgreSQL URL."""
    if kind == "sqlite":
        yield str(folder / name)
    elif kind == "postgres":
        with postgres_schema() as url:
            yield url
    else:
        raise ValueError(kind)
