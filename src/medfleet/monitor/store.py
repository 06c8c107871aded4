"""Where monitoring state and history live: a store protocol, SQLite and in-memory stores.

Everything that changes when one batch is processed - the report, the
agent's new state and any alert - is written by :meth:`MonitorStore.commit_batch`
in a single transaction, keyed by ``(site, batch_id)``. A process killed at
any moment therefore leaves either all of a batch or none of it, and
re-sending a batch that was stored is recognised and not applied twice.

Several processes may share one store. Each site has a *revision*, bumped by every
commit and reference change (:meth:`SQLiteStore.state_revision`); a coordinator
commits with the revision its agent state was loaded at, and a commit made from a
state another process has since moved on raises :class:`StaleStateError` inside the
transaction, writing nothing, so the coordinator reloads the state and judges again.

:class:`SQLiteStore` is the embedded default (WAL journal, ``synchronous=FULL``,
one connection guarded by a lock, usable from several threads).
:class:`MemoryStore` keeps everything in dicts (simulations, tests).
:class:`~medfleet.monitor.pgstore.PostgresStore` keeps it on a PostgreSQL server.
Any object with the same methods can replace them (``state_revision`` and
``commit_batch``'s ``expected_revision`` are optional: without them a coordinator
assumes it is the store's only writer).

Example:
    >>> import tempfile, pathlib
    >>> store = SQLiteStore(pathlib.Path(tempfile.mkdtemp()) / "m.sqlite")
    >>> store.save_reference("site_a", {"prob": np.array([0.1, 0.2])})
    >>> store.sites()
    ['site_a']
    >>> store.close()
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.monitor.records import Alert, BatchReport, utc_now
from medfleet.monitor.references import outputs_from_bytes, outputs_to_bytes


class StoreError(MedfleetError):
    """The monitoring store cannot be opened or written."""


class StaleStateError(StoreError):
    """A commit was made from an agent state that another writer has since replaced."""


Revision = tuple[int, int]
"""A site's revision: (commits and reference changes of the site, reference changes anywhere)."""

REFERENCES_KEY = " references"
"""Revision row counting reference changes of every site (no site name starts with a space)."""


MAX_LIMIT = 2**63 - 1
"""Largest row count a store query takes (SQL's 64-bit integers)."""


def clamp_limit(limit: int) -> int:
    """``limit`` as a row count SQL accepts: at least 0, at most :data:`MAX_LIMIT`.

    Example:
        >>> clamp_limit(10**30) == MAX_LIMIT, clamp_limit(-5)
        (True, 0)
    """
    return max(0, min(int(limit), MAX_LIMIT))


@dataclass
class AgentState:
    """A site agent's persistent state: JSON-ready ``meta`` plus named arrays."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class MonitorStore(Protocol):
    """What coordinators need from a store. All writes for one batch are one transaction."""

    def get_report(self, site: str, batch_id: str) -> BatchReport | None:
        """The stored report of a batch, or None."""
        ...

    def commit_batch(
        self, report: BatchReport, state: AgentState | None, alert: Alert | None = None
    ) -> bool:
        """Store report, agent state and alert atomically; False if the batch was already stored."""
        ...

    def load_state(self, site: str) -> AgentState | None:
        """The agent state last committed for a site."""
        ...

    def save_reference(self, site: str, outputs: Mapping[str, np.ndarray]) -> None:
        """Store a site's reference outputs and clear its agent state, atomically."""
        ...

    def load_reference(self, site: str) -> dict[str, np.ndarray] | None:
        """A site's reference outputs, or None."""
        ...

    def reference_sites(self) -> list[str]:
        """Sites with a stored reference, sorted."""
        ...

    def history(self, site: str, limit: int | None = None) -> list[BatchReport]:
        """A site's reports in processing order (the last ``limit`` when given)."""
        ...

    def alerts(self, site: str | None = None) -> list[Alert]:
        """Alerts in the order raised, for one site or all."""
        ...

    def sites(self) -> list[str]:
        """Every site with a reference, a state or a report, sorted."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS reference (
    site TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    n INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_state (
    site TEXT PRIMARY KEY,
    meta TEXT NOT NULL,
    arrays BLOB NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS report (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    created TEXT NOT NULL,
    drift INTEGER NOT NULL,
    severity TEXT NOT NULL,
    alert INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (site, batch_id)
);
CREATE INDEX IF NOT EXISTS report_site ON report (site, seq);
CREATE TABLE IF NOT EXISTS alert (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (site, batch_id)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS site_revision (site TEXT PRIMARY KEY, revision INTEGER NOT NULL);
"""

SCHEMA_VERSION = "1"


class SQLiteStore:
    """Embedded SQLite store (WAL, one transaction per batch).

    Args:
        path: Database file (created with its folder), or ``":memory:"``.
        timeout: Seconds to wait for a lock held by another process.
        synchronous: SQLite ``synchronous`` pragma; ``FULL`` survives power loss,
            ``NORMAL`` survives a killed process.
    """

    def __init__(self, path: str | Path, timeout: float = 30.0, synchronous: str = "FULL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                elif row[0] != SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: store schema {row[0]} is not the supported {SCHEMA_VERSION}"
                    )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open monitor store {self.path}: {exc}") from exc

    class _Tx:
        def __init__(self, store: SQLiteStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                self.store._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                self.store._lock.release()
                raise _busy(self.store.path, exc) from None
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._db

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                if exc_type is None:
                    self.store._db.execute("COMMIT")
                else:
                    self.store._db.execute("ROLLBACK")
            finally:
                self.store._lock.release()

    def _transaction(self) -> SQLiteStore._Tx:
        return SQLiteStore._Tx(self)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise _busy(self.path, exc) from None

    def get_report(self, site: str, batch_id: str) -> BatchReport | None:
        """The stored report of ``(site, batch_id)``, or None."""
        rows = self._query("SELECT body FROM report WHERE site=? AND batch_id=?", (site, batch_id))
        return BatchReport.from_dict(json.loads(rows[0][0])) if rows else None

    @staticmethod
    def _revision(db: sqlite3.Connection, site: str) -> Revision:
        rows = dict(
            db.execute(
                "SELECT site, revision FROM site_revision WHERE site IN (?, ?)",
                (site, REFERENCES_KEY),
            ).fetchall()
        )
        return int(rows.get(site, 0)), int(rows.get(REFERENCES_KEY, 0))

    @staticmethod
    def _bump(db: sqlite3.Connection, *sites: str) -> None:
        for site in sites:
            db.execute(
                "INSERT INTO site_revision (site, revision) VALUES (?, 1)"
                " ON CONFLICT (site) DO UPDATE SET revision = revision + 1",
                (site,),
            )

    def state_revision(self, site: str) -> Revision:
        """``site``'s revision now; read it before the state it guards.

        Example:
            >>> store = SQLiteStore(":memory:")
            >>> store.state_revision("a")
            (0, 0)
            >>> store.save_reference("a", {"prob": np.array([0.5])})
            >>> store.state_revision("a"), store.state_revision("b")
            ((1, 1), (0, 1))
        """
        with self._lock:
            return self._revision(self._db, site)

    def commit_batch(
        self,
        report: BatchReport,
        state: AgentState | None,
        alert: Alert | None = None,
        expected_revision: Revision | None = None,
    ) -> bool:
        """Insert the report, replace the agent state and insert the alert in one transaction.

        Args:
            report: The batch's report.
            state: The agent's state after the batch (None: leave the stored one).
            alert: The alert the batch raised, if any.
            expected_revision: The site's revision the agent state was loaded at; None
                skips the check.

        Returns:
            False (and nothing written) when ``(site, batch_id)`` was already stored.

        Raises:
            StaleStateError: The site's revision is no longer ``expected_revision`` (another
                writer committed in between); nothing is written.
        """
        body = json.dumps(report.to_dict(), sort_keys=True)
        with self._transaction() as db:
            # BEGIN IMMEDIATE holds the write lock; the unique (site, batch_id) decides.
            inserted = db.execute(
                "INSERT INTO report"
                " (site, batch_id, timestamp, created, drift, severity, alert, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (site, batch_id) DO NOTHING",
                (
                    report.site,
                    report.batch_id,
                    report.timestamp,
                    report.created,
                    int(report.drift),
                    report.severity.value,
                    int(report.alert),
                    body,
                ),
            ).rowcount
            if not inserted:
                return False
            if expected_revision is not None:
                current = self._revision(db, report.site)
                if current != tuple(expected_revision):
                    raise StaleStateError(
                        f"site {report.site!r}: agent state of revision {expected_revision} "
                        f"is stale (the store is at {current})"
                    )
            self._bump(db, report.site)
            if state is not None:
                db.execute(
                    "INSERT OR REPLACE INTO agent_state (site, meta, arrays, updated)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        report.site,
                        json.dumps(state.meta, sort_keys=True),
                        outputs_to_bytes(state.arrays),
                        utc_now(),
                    ),
                )
            if alert is not None:
                db.execute(
                    "INSERT INTO alert (site, batch_id, body) VALUES (?, ?, ?)",
                    (alert.site, alert.batch_id, json.dumps(alert.to_dict(), sort_keys=True)),
                )
        return True

    def load_state(self, site: str) -> AgentState | None:
        """The agent state last committed for ``site``."""
        rows = self._query("SELECT meta, arrays FROM agent_state WHERE site=?", (site,))
        if not rows:
            return None
        return AgentState(json.loads(rows[0][0]), outputs_from_bytes(rows[0][1]))

    def save_reference(self, site: str, outputs: Mapping[str, np.ndarray]) -> None:
        """Store ``site``'s reference and clear its agent state (one transaction)."""
        n = int(next(iter(outputs.values())).shape[0]) if outputs else 0
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO reference (site, data, n, created) VALUES (?, ?, ?, ?)",
                (site, outputs_to_bytes(outputs), n, utc_now()),
            )
            db.execute("DELETE FROM agent_state WHERE site=?", (site,))
            self._bump(db, site, REFERENCES_KEY)

    def load_reference(self, site: str) -> dict[str, np.ndarray] | None:
        """``site``'s reference outputs, or None."""
        rows = self._query("SELECT data FROM reference WHERE site=?", (site,))
        return outputs_from_bytes(rows[0][0]) if rows else None

    def reference_sites(self) -> list[str]:
        """Sites with a stored reference, sorted."""
        return [r[0] for r in self._query("SELECT site FROM reference ORDER BY site")]

    def history(self, site: str, limit: int | None = None) -> list[BatchReport]:
        """``site``'s reports in processing order; with ``limit``, only the most recent ones."""
        if limit is None:
            rows = self._query("SELECT body FROM report WHERE site=? ORDER BY seq", (site,))
        else:
            rows = self._query(
                "SELECT body FROM (SELECT seq, body FROM report WHERE site=? ORDER BY seq DESC"
                " LIMIT ?) ORDER BY seq",
                (site, clamp_limit(limit)),
            )
        return [BatchReport.from_dict(json.loads(r[0])) for r in rows]

    def alerts(self, site: str | None = None) -> list[Alert]:
        """Alerts in the order raised, for ``site`` or for every site."""
        if site is None:
            rows = self._query("SELECT body FROM alert ORDER BY seq")
        else:
            rows = self._query("SELECT body FROM alert WHERE site=? ORDER BY seq", (site,))
        return [Alert.from_dict(json.loads(r[0])) for r in rows]

    def sites(self) -> list[str]:
        """Every site with a reference, a state or a report, sorted."""
        rows = self._query(
            "SELECT site FROM reference UNION SELECT site FROM agent_state"
            " UNION SELECT DISTINCT site FROM report ORDER BY site"
        )
        return [r[0] for r in rows]

    def count_reports(self, site: str | None = None) -> int:
        """Number of stored reports (for one site or all)."""
        if site is None:
            return int(self._query("SELECT COUNT(*) FROM report")[0][0])
        return int(self._query("SELECT COUNT(*) FROM report WHERE site=?", (site,))[0][0])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _busy(path: str, exc: sqlite3.OperationalError) -> StoreError:
    """A lock held past the timeout (or another operational failure) as a :class:`StoreError`.

    The service answers it with 503 (retry later) instead of 500.

    Example:
        >>> str(_busy("m.sqlite", sqlite3.OperationalError("database is locked")))
        'monitor store m.sqlite is busy or unavailable (database is locked); retry later'
    """
    return StoreError(f"monitor store {path} is busy or unavailable ({exc}); retry later")


class MemoryStore:
    """A store in plain dicts: same behaviour as :class:`SQLiteStore`, nothing persisted.

    Example:
        >>> store = MemoryStore()
        >>> store.save_reference("a", {"prob": np.array([0.5])})
        >>> store.load_reference("a")["prob"].tolist()
        [0.5]
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._references: dict[str, dict[str, np.ndarray]] = {}
        self._states: dict[str, AgentState] = {}
        self._reports: dict[str, dict[str, BatchReport]] = {}
        self._alerts: list[Alert] = []
        self._revisions: dict[str, int] = {}

    def get_report(self, site: str, batch_id: str) -> BatchReport | None:
        """The stored report of ``(site, batch_id)``, or None."""
        return self._reports.get(site, {}).get(batch_id)

    def state_revision(self, site: str) -> Revision:
        """``site``'s revision (see :meth:`SQLiteStore.state_revision`)."""
        with self._lock:
            return self._revisions.get(site, 0), self._revisions.get(REFERENCES_KEY, 0)

    def commit_batch(
        self,
        report: BatchReport,
        state: AgentState | None,
        alert: Alert | None = None,
        expected_revision: Revision | None = None,
    ) -> bool:
        """Store report, state and alert together; False if the batch was already stored.

        Raises:
            StaleStateError: As :meth:`SQLiteStore.commit_batch`.
        """
        with self._lock:
            reports = self._reports.setdefault(report.site, {})
            if report.batch_id in reports:
                return False
            current = self.state_revision(report.site)
            if expected_revision is not None and current != tuple(expected_revision):
                raise StaleStateError(
                    f"site {report.site!r}: agent state of revision {expected_revision} "
                    f"is stale (the store is at {current})"
                )
            self._revisions[report.site] = current[0] + 1
            reports[report.batch_id] = report
            if state is not None:
                self._states[report.site] = state
            if alert is not None:
                self._alerts.append(alert)
            return True

    def load_state(self, site: str) -> AgentState | None:
        """The agent state last committed for ``site``."""
        return self._states.get(site)

    def save_reference(self, site: str, outputs: Mapping[str, np.ndarray]) -> None:
        """Store ``site``'s reference and clear its agent state."""
        with self._lock:
            self._references[site] = {k: np.asarray(v).copy() for k, v in outputs.items()}
            self._states.pop(site, None)
            for key in (site, REFERENCES_KEY):
                self._revisions[key] = self._revisions.get(key, 0) + 1

    def load_reference(self, site: str) -> dict[str, np.ndarray] | None:
        """``site``'s reference outputs, or None."""
        return self._references.get(site)

    def reference_sites(self) -> list[str]:
        """Sites with a stored reference, sorted."""
        return sorted(self._references)

    def history(self, site: str, limit: int | None = None) -> list[BatchReport]:
        """``site``'s reports in processing order; with ``limit``, only the most recent ones."""
        reports = list(self._reports.get(site, {}).values())
        if limit is None:
            return reports
        limit = clamp_limit(limit)
        return reports[-limit:] if limit else []

    def alerts(self, site: str | None = None) -> list[Alert]:
        """Alerts in the order raised, for ``site`` or for every site."""
        return [a for a in self._alerts if site is None or a.site == site]

    def sites(self) -> list[str]:
        """Every site with a reference, a state or a report, sorted."""
        return sorted(set(self._references) | set(self._states) | set(self._reports))

    def close(self) -> None:
        """Nothing to release."""
