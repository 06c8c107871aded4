"""Which store a path or URL names: SQLite for a file path, PostgreSQL for a SQLAlchemy URL.

Everywhere a monitor takes a database (``--db``, ``MEDFLEET_MONITOR_DB``, the config's
``db``, :func:`medfleet.monitor.service.create_app`), it takes either

* a file path (``monitor.sqlite``) or a ``sqlite:///path`` URL: :class:`SQLiteStore`;
* a PostgreSQL URL (``postgresql+psycopg://user:password@host:5432/db``; ``postgresql://``
  and ``postgres://`` mean the same, with psycopg 3 as the driver): :class:`PostgresStore`.

:func:`display_target` is what may be printed: a URL with its password masked.

Example:
    >>> is_store_url("postgresql+psycopg://u:secret@db.example:5432/monitor")
    True
    >>> display_target("postgresql+psycopg://u:secret@db.example:5432/monitor")
    'postgresql+psycopg://u:***@db.example:5432/monitor'
    >>> is_store_url("data/monitor.sqlite")
    False
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medfleet.monitor.store import MonitorStore, SQLiteStore, StoreError

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES = ("postgresql", "postgres")
_PASSWORD = re.compile(r"^(?P<head>[^:/?#]+://[^:/@?#]*:)(?P<password>[^@/?#]*)@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)

StoreTarget = str | os.PathLike[str]
"""A SQLite path or a database URL."""


def is_store_url(target: StoreTarget) -> bool:
    """Whether ``target`` is a URL (``scheme://...``) rather than a file path.

    Example:
        >>> is_store_url("sqlite:///m.sqlite"), is_store_url(Path("m.sqlite"))
        (True, False)
    """
    return isinstance(target, str) and _URL.match(target) is not None


def display_target(target: StoreTarget) -> str:
    """``target`` as text that may be printed or logged: a URL's password is masked.

    Example:
        >>> display_target("postgresql://me:pw@localhost/m"), display_target("m.sqlite")
        ('postgresql://me:***@localhost/m', 'm.sqlite')
    """
    text = os.fspath(target)
    if not is_store_url(text):
        return text
    text = _PASSWORD.sub(lambda m: f"{m['head']}***@", text, count=1)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def _dialect(url: str) -> tuple[str, str]:
    scheme = _URL.match(url)["scheme"].lower()  # type: ignore[index]
    dialect, _, driver = scheme.partition("+")
    return dialect, driver


def open_store(target: StoreTarget) -> MonitorStore:
    """Open the store that ``target`` names (see the module docstring).

    Raises:
        StoreError: An unsupported URL, a PostgreSQL driver other than psycopg, or a store
            that cannot be opened (the message shows the target without its password).

    Example:
        >>> import tempfile
        >>> store = open_store(Path(tempfile.mkdtemp()) / "m.sqlite")
        >>> type(store).__name__
        'SQLiteStore'
        >>> store.close()
    """
    if not is_store_url(target):
        return SQLiteStore(Path(target))
    url = os.fspath(target)
    dialect, driver = _dialect(url)
    if dialect == "sqlite":
        path = url.split("://", 1)[1]
        if not path.startswith("/") or path == "/":
            raise StoreError(
                f"{display_target(url)}: write SQLite URLs as sqlite:///relative/path or "
                "sqlite:////absolute/path (or give the file path itself)"
            )
        return SQLiteStore(path[1:] or ":memory:")
    if dialect in _POSTGRES:
        if driver not in ("", "psycopg"):
            raise StoreError(
                f"{display_target(url)}: the PostgreSQL driver {driver!r} is not supported; "
                "use postgresql+psycopg://"
            )
        from medfleet.monitor.pgstore import PostgresStore

        rest = url.split("://", 1)[1]
        return PostgresStore(f"postgresql+psycopg://{rest}")
    raise StoreError(
        f"{display_target(url)}: unsupported database {dialect!r}; give a SQLite file path "
        "or a postgresql+psycopg:// URL"
    )
