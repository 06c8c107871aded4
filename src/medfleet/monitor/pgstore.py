"""PostgreSQL store for monitors beyond one machine (SQLAlchemy Core over psycopg 3).

:class:`PostgresStore` implements :class:`~medfleet.monitor.store.MonitorStore` with the same
semantics as :class:`~medfleet.monitor.store.SQLiteStore`: everything one batch changes -
report, agent state, alert - is written in one transaction, and the report is inserted
with ``ON CONFLICT (site, batch_id) DO NOTHING`` inside it, so when several service
processes (on one machine or many) commit the same batch at once exactly one insert wins
and every other commit returns False and writes nothing; a commit made from an agent
state that another process has moved on since raises
:class:`~medfleet.monitor.store.StaleStateError` (see :meth:`PostgresStore.state_revision`),
so no process overwrites a newer state with one computed from an older. The tables are
created on first
use (under an advisory lock, so processes starting together do not race) in the first
schema of the connection's ``search_path``.

Select it with a SQLAlchemy URL wherever a SQLite path is accepted
(``--db postgresql+psycopg://user:password@host:5432/monitor``, the config's ``db``, or
``MEDFLEET_MONITOR_DB``); see :func:`medfleet.monitor.store_target.open_store`. It needs
``pip install 'medfleet[postgres]'``. A password in the URL is never shown: errors and
``/healthz`` print the URL with ``***`` in its place.

Example:
    >>> import os
    >>> url = os.environ.get("MEDFLEET_TEST_POSTGRES_URL")
    >>> if url:  # a server is needed; CI starts one with .ci/start-postgres.sh
    ...     store = PostgresStore(url)
    ...     store.close()
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from medfleet.monitor.records import Alert, BatchReport, utc_now
from medfleet.monitor.references import outputs_from_bytes, outputs_to_bytes
from medfleet.monitor.store import (
    REFERENCES_KEY,
    SCHEMA_VERSION,
    AgentState,
    Revision,
    StaleStateError,
    StoreError,
    clamp_limit,
)

_SCHEMA_LOCK = 0x6D6564666C656574  # pg_advisory_xact_lock key while creating tables ("medfleet")

_F = TypeVar("_F", bound=Callable[..., Any])


def _unavailable_as_store_error(method: _F) -> _F:
    """Turn a lost or refused connection into :class:`StoreError` (the service answers 503)."""

    @functools.wraps(method)
    def wrapper(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        sa = self._sa
        try:
            return method(self, *args, **kwargs)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StoreError(f"monitor store {self.url} is unavailable: {reason}") from None

    return wrapper  # type: ignore[return-value]


def _tables(sa: Any) -> tuple[Any, dict[str, Any]]:
    meta = sa.MetaData()
    tables = {
        "reference": sa.Table(
            "medfleet_reference",
            meta,
            sa.Column("site", sa.Text, primary_key=True),
            sa.Column("data", sa.LargeBinary, nullable=False),
            sa.Column("n", sa.BigInteger, nullable=False),
            sa.Column("created", sa.Text, nullable=False),
        ),
        "agent_state": sa.Table(
            "medfleet_agent_state",
            meta,
            sa.Column("site", sa.Text, primary_key=True),
            sa.Column("meta", sa.Text, nullable=False),
            sa.Column("arrays", sa.LargeBinary, nullable=False),
            sa.Column("updated", sa.Text, nullable=False),
        ),
        "report": sa.Table(
            "medfleet_report",
            meta,
            sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column("site", sa.Text, nullable=False),
            sa.Column("batch_id", sa.Text, nullable=False),
            sa.Column("timestamp", sa.Text, nullable=False),
            sa.Column("created", sa.Text, nullable=False),
            sa.Column("drift", sa.Boolean, nullable=False),
            sa.Column("severity", sa.Text, nullable=False),
            sa.Column("alert", sa.Boolean, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.UniqueConstraint("site", "batch_id", name="medfleet_report_site_batch"),
            sa.Index("medfleet_report_site_seq", "site", "seq"),
        ),
        "alert": sa.Table(
            "medfleet_alert",
            meta,
            sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column("site", sa.Text, nullable=False),
            sa.Column("batch_id", sa.Text, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.UniqueConstraint("site", "batch_id", name="medfleet_alert_site_batch"),
        ),
        "revision": sa.Table(
            "medfleet_site_revision",
            meta,
            sa.Column("site", sa.Text, primary_key=True),
            sa.Column("revision", sa.BigInteger, nullable=False),
        ),
        "meta": sa.Table(
            "medfleet_meta",
            meta,
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        ),
    }
    return meta, tables


def _import_sqlalchemy() -> Any:
    try:
        import sqlalchemy as sa
    except ImportError as exc:  # pragma: no cover - the postgres extra is installed in tests
        raise StoreError(
            "a PostgreSQL store needs SQLAlchemy and psycopg: pip install 'medfleet[postgres]'"
        ) from exc
    return sa


class PostgresStore:
    """Monitoring store on PostgreSQL: one transaction per batch, exact under concurrency.

    Args:
        url: SQLAlchemy URL, ``postgresql+psycopg://user:password@host:port/database``
            (query options such as ``?sslmode=require`` or
            ``?options=-csearch_path%3Dmonitor`` pass through to libpq).
        pool_size: Connections kept open (the service's worker threads share them).
        connect_timeout: Seconds to wait for the server when connecting.

    Raises:
        StoreError: No driver, the server cannot be reached or refuses the login, or the
            tables hold another schema version; the message shows the URL without its
            password.
    """

    def __init__(self, url: str, pool_size: int = 5, connect_timeout: float = 10.0) -> None:
        sa = _import_sqlalchemy()
        self._sa = sa
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise StoreError(f"cannot parse the database URL: {exc}") from None
        self.url = parsed.render_as_string(hide_password=True)
        self.path = self.url  # what errors and /healthz show
        args = {"connect_timeout": max(1, round(connect_timeout))}
        try:
            self._engine = sa.create_engine(
                parsed, pool_size=pool_size, pool_pre_ping=True, connect_args=args
            )
            self._meta, self._t = _tables(sa)
            self._create_schema()
        except sa.exc.NoSuchModuleError as exc:
            raise StoreError(f"cannot open monitor store {self.url}: no driver ({exc})") from None
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StoreError(f"cannot open monitor store {self.url}: {reason}") from None
        self._closed = False
        self._lock = threading.Lock()

    def _create_schema(self) -> None:
        sa = self._sa
        with self._engine.begin() as con:
            con.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            self._meta.create_all(con)
            meta = self._t["meta"]
            row = con.execute(sa.select(meta.c.value).where(meta.c.key == "schema")).first()
            if row is None:
                con.execute(meta.insert().values(key="schema", value=SCHEMA_VERSION))
            elif row[0] != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.url}: store schema {row[0]} is not the supported {SCHEMA_VERSION}"
                )

    @_unavailable_as_store_error
    def _rows(self, statement: Any) -> list[Any]:
        with self._engine.connect() as con:
            return list(con.execute(statement))

    # ------------------------------------------------------------------ batches

    def get_report(self, site: str, batch_id: str) -> BatchReport | None:
        """The stored report of ``(site, batch_id)``, or None."""
        t = self._t["report"]
        rows = self._rows(
            self._sa.select(t.c.body).where(t.c.site == site, t.c.batch_id == batch_id)
        )
        return BatchReport.from_dict(json.loads(rows[0][0])) if rows else None

    def _revision(self, con: Any, site: str, lock: bool = False) -> Revision:
        t = self._t["revision"]
        query = self._sa.select(t.c.site, t.c.revision).where(t.c.site.in_([site, REFERENCES_KEY]))
        # FOR SHARE: a reference change elsewhere waits until this commit is done.
        rows = dict(con.execute(query.with_for_update(read=True) if lock else query).all())
        return int(rows.get(site, 0)), int(rows.get(REFERENCES_KEY, 0))

    def _bump(self, con: Any, *sites: str) -> None:
        from sqlalchemy.dialects.postgresql import insert

        t = self._t["revision"]
        for site in sites:
            con.execute(
                insert(t)
                .values(site=site, revision=1)
                .on_conflict_do_update(index_elements=["site"], set_={"revision": t.c.revision + 1})
            )

    @_unavailable_as_store_error
    def state_revision(self, site: str) -> Revision:
        """``site``'s revision now: (its commits and reference changes, all reference changes).

        A coordinator reads it before the agent state it guards and commits with it as
        ``expected_revision``.
        """
        with self._engine.connect() as con:
            return self._revision(con, site)

    @_unavailable_as_store_error
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
            False (and nothing written) when ``(site, batch_id)`` was already stored,
            including by another process committing at the same moment.

        Raises:
            StaleStateError: Another writer moved the site's revision on since
                ``expected_revision``; nothing is written.
        """
        from sqlalchemy.dialects.postgresql import insert

        t = self._t
        body = json.dumps(report.to_dict(), sort_keys=True)
        with self._engine.begin() as con:
            inserted = con.execute(
                insert(t["report"])
                .values(
                    site=report.site,
                    batch_id=report.batch_id,
                    timestamp=report.timestamp,
                    created=report.created,
                    drift=bool(report.drift),
                    severity=report.severity.value,
                    alert=bool(report.alert),
                    body=body,
                )
                .on_conflict_do_nothing(index_elements=["site", "batch_id"])
                .returning(t["report"].c.seq)
            ).first()
            if inserted is None:
                return False
            # The bump takes the revision rows' locks, so concurrent commits of one site
            # serialise here and the second one sees the first one's revision.
            self._bump(con, report.site)
            if expected_revision is not None:
                current = self._revision(con, report.site, lock=True)
                expected = (expected_revision[0] + 1, expected_revision[1])
                if current != expected:
                    raise StaleStateError(
                        f"site {report.site!r}: agent state of revision {expected_revision} "
                        f"is stale (the store is at {(current[0] - 1, current[1])})"
                    )
            if state is not None:
                values = {
                    "meta": json.dumps(state.meta, sort_keys=True),
                    "arrays": outputs_to_bytes(state.arrays),
                    "updated": utc_now(),
                }
                con.execute(
                    insert(t["agent_state"])
                    .values(site=report.site, **values)
                    .on_conflict_do_update(index_elements=["site"], set_=values)
                )
            if alert is not None:
                con.execute(
                    t["alert"]
                    .insert()
                    .values(
                        site=alert.site,
                        batch_id=alert.batch_id,
                        body=json.dumps(alert.to_dict(), sort_keys=True),
                    )
                )
        return True

    def load_state(self, site: str) -> AgentState | None:
        """The agent state last committed for ``site``."""
        t = self._t["agent_state"]
        rows = self._rows(self._sa.select(t.c.meta, t.c.arrays).where(t.c.site == site))
        if not rows:
            return None
        return AgentState(json.loads(rows[0][0]), outputs_from_bytes(bytes(rows[0][1])))

    # ------------------------------------------------------------------ references

    @_unavailable_as_store_error
    def save_reference(self, site: str, outputs: Mapping[str, np.ndarray]) -> None:
        """Store ``site``'s reference and clear its agent state (one transaction)."""
        from sqlalchemy.dialects.postgresql import insert

        n = int(next(iter(outputs.values())).shape[0]) if outputs else 0
        values = {"data": outputs_to_bytes(outputs), "n": n, "created": utc_now()}
        t = self._t
        with self._engine.begin() as con:
            con.execute(
                insert(t["reference"])
                .values(site=site, **values)
                .on_conflict_do_update(index_elements=["site"], set_=values)
            )
            con.execute(t["agent_state"].delete().where(t["agent_state"].c.site == site))
            self._bump(con, site, REFERENCES_KEY)

    def load_reference(self, site: str) -> dict[str, np.ndarray] | None:
        """``site``'s reference outputs, or None."""
        t = self._t["reference"]
        rows = self._rows(self._sa.select(t.c.data).where(t.c.site == site))
        return outputs_from_bytes(bytes(rows[0][0])) if rows else None

    def reference_sites(self) -> list[str]:
        """Sites with a stored reference, sorted."""
        t = self._t["reference"]
        return [r[0] for r in self._rows(self._sa.select(t.c.site).order_by(t.c.site))]

    # ------------------------------------------------------------------ reads

    def history(self, site: str, limit: int | None = None) -> list[BatchReport]:
        """``site``'s reports in processing order; with ``limit``, only the most recent ones."""
        sa, t = self._sa, self._t["report"]
        query = sa.select(t.c.seq, t.c.body).where(t.c.site == site)
        if limit is not None:
            recent = query.order_by(t.c.seq.desc()).limit(clamp_limit(limit)).subquery()
            query = sa.select(recent.c.seq, recent.c.body)
            rows = self._rows(query.order_by(recent.c.seq))
        else:
            rows = self._rows(query.order_by(t.c.seq))
        return [BatchReport.from_dict(json.loads(r[1])) for r in rows]

    def alerts(self, site: str | None = None) -> list[Alert]:
        """Alerts in the order raised, for ``site`` or for every site."""
        t = self._t["alert"]
        query = self._sa.select(t.c.body).order_by(t.c.seq)
        if site is not None:
            query = query.where(t.c.site == site)
        return [Alert.from_dict(json.loads(r[0])) for r in self._rows(query)]

    def sites(self) -> list[str]:
        """Every site with a reference, a state or a report, sorted."""
        sa, t = self._sa, self._t
        union = sa.union(
            sa.select(t["reference"].c.site),
            sa.select(t["agent_state"].c.site),
            sa.select(t["report"].c.site).distinct(),
        ).subquery()
        return [r[0] for r in self._rows(sa.select(union.c.site).order_by(union.c.site))]

    def count_reports(self, site: str | None = None) -> int:
        """Number of stored reports (for one site or all)."""
        sa, t = self._sa, self._t["report"]
        query = sa.select(sa.func.count()).select_from(t)
        if site is not None:
            query = query.where(t.c.site == site)
        return int(self._rows(query)[0][0])

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            if not self._closed:
                self._engine.dispose()
                self._closed = True

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
