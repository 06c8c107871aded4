"""HTTP service of the drift monitor: sites post batches of model outputs, anyone reads.

``create_app(db, config, api_keys)`` builds a FastAPI app around a
:class:`~medfleet.monitor.agent.Coordinator` over a store: an SQLite file, or PostgreSQL
when ``db`` is a ``postgresql+psycopg://`` URL (:mod:`medfleet.monitor.store_target`):

========================================  ==========  ===============================
endpoint                                   key         answer
========================================  ==========  ===============================
``POST /sites/{site}/reference``           the site's  201: reference stored
``POST /sites/{site}/batches``             the site's  201: new report; 200: stored one
``GET /sites``                             -           per-site summary
``GET /sites/{site}/history?limit=N``      -           the site's reports, oldest first
``GET /alerts?site=S``                     -           alerts, oldest first
``GET /``                                  -           dashboard page (HTML)
``GET /healthz``                           -           liveness and store check
========================================  ==========  ===============================

Writes carry the site's key in the ``X-API-Key`` header (see
:mod:`medfleet.monitor.api_keys`); a key writes its own site only. A batch is
answered 201 only after its report, the agent's new state and any alert are
committed in one transaction (SQLite: WAL, ``synchronous=FULL``), so a batch
that got a 2xx survives a killed server; re-sending a stored batch id (with the
same outputs) returns the stored report with 200 and ``"duplicate": true`` and
changes nothing, so clients can simply retry everything that did not get a 2xx.
The answer is exact with several service processes on one database: the commit
inserts under the unique ``(site, batch_id)`` inside its transaction, so exactly
one process answers 201 for a batch and every other one 200.

Answers follow medfleet's one JSON policy (:mod:`medfleet.utils.jsonsafe`, as every JSON
artefact): a NaN is ``null`` and an infinite number the text ``"inf"`` / ``"-inf"``.
No answer has a declared numeric schema that text would break; statistics, p-values and
thresholds are finite in practice (validated inputs, floored histograms), and an infinite
one (a Wasserstein distance that overflows, say) then reads as infinite, not as missing.

Errors are JSON ``{"error": message, "field": name or null, "status": code}``:
401 missing or unknown key, 403 key of another site, 404 unknown site, 409 no
reference yet (or replacing one without ``?replace=true``, or a stored batch id
sent with other outputs), 413 body too large (checked while the body streams in),
415 a body that is not JSON, 422 malformed body or invalid outputs (NaN,
probabilities outside [0, 1], booleans, labels out of range, empty batch,
outputs that differ from the reference, a query value out of range), 503 the
store is unreachable. Nothing is stored for a request that gets an error.

Example:
    >>> import tempfile, pathlib
    >>> from fastapi.testclient import TestClient
    >>> from medfleet.monitor.config import MonitorConfig
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "monitor.sqlite"
    >>> app = create_app(db, MonitorConfig(scheme="site"), {"site_a": "a-key-of-16-chars"})
    >>> with TestClient(app) as client:
    ...     client.get("/healthz").json()["status"]
    'ok'
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from medfleet.errors import MedfleetError
from medfleet.monitor.agent import Coordinator
from medfleet.monitor.api_keys import ApiKeyError, ApiKeys
from medfleet.monitor.batches import BatchError, outputs_digest
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.dashboard import AlertRow, SeriesPoint, SiteSeries, render_dashboard
from medfleet.monitor.payloads import PayloadError, parse_batch, parse_json, parse_reference
from medfleet.monitor.records import BatchReport
from medfleet.monitor.store import MAX_LIMIT, MonitorStore, StoreError
from medfleet.monitor.store_target import StoreTarget, display_target, open_store
from medfleet.utils.jsonsafe import json_safe

API_KEY_HEADER = "X-API-Key"
"""Header that carries a site's API key."""

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body accepted (413 beyond it)."""

ApiKeyHeader = Annotated[
    str | None, Header(alias=API_KEY_HEADER, description="The site's API key.")
]

JSON_MEDIA_TYPES = ("application/json",)
"""Content types a body may declare (besides any ``+json`` type, or none)."""


class ServiceError(MedfleetError):
    """A request the service refuses, with the HTTP status to answer.

    Example:
        >>> err = ServiceError(404, "unknown site 'x'", field="site")
        >>> err.status, err.payload()["error"]
        (404, "unknown site 'x'")
    """

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status = status
        self.message = message
        self.field = field
        super().__init__(message)

    def payload(self) -> dict[str, Any]:
        """JSON body of the error answer (text that is not valid Unicode is escaped)."""
        return {"error": _clean(self.message), "field": _clean(self.field), "status": self.status}


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def status_of(error: BatchError) -> int:
    """HTTP status for a refused batch: 404 unknown site, 409 no reference, else 422.

    Example:
        >>> status_of(BatchError("no reference", field="reference"))
        409
    """
    if isinstance(error, PayloadError):
        return 422
    if error.field == "site":
        return 404
    if error.field == "reference":
        return 409
    return 422


@dataclass(frozen=True)
class ServiceSettings:
    """Knobs of the service besides the store, config and keys.

    Attributes:
        title: Dashboard heading.
        refresh_seconds: Dashboard reload period (0: never).
        dashboard_batches: Most recent batches charted per site.
        max_body_bytes: Largest request body accepted.
        load_config_references: Store the config's reference tables for sites that have
            no reference in the database yet, at start-up.
    """

    title: str = "medfleet drift monitor"
    refresh_seconds: int = 30
    dashboard_batches: int = 300
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    load_config_references: bool = True


class MonitorService:
    """The service's state: store, coordinator and keys; one write at a time.

    Args:
        db: SQLite database file (created when missing), a database URL
            (``postgresql+psycopg://...``), or an open store.
        config: Monitoring configuration.
        api_keys: Site keys.
        settings: Service settings.

    Raises:
        ApiKeyError: A key names a site the configuration does not list.
    """

    def __init__(
        self,
        db: StoreTarget | MonitorStore,
        config: MonitorConfig,
        api_keys: ApiKeys,
        settings: ServiceSettings | None = None,
    ) -> None:
        self.config = config
        self.keys = api_keys
        self.settings = settings or ServiceSettings()
        if config.sites:
            stray = [s for s in api_keys.sites if s not in config.sites]
            if stray:
                raise ApiKeyError(
                    f"{api_keys.source}: site(s) {', '.join(stray)} have a key but are not in "
                    f"the monitor config's sites ({', '.join(config.sites)}); add them there"
                )
        if isinstance(db, str | os.PathLike):
            self.target = display_target(db)
            self.store: Any = open_store(db)
        else:
            self.target = type(db).__name__
            self.store = db
        self.coordinator = Coordinator(config, self.store)
        self._write = threading.Lock()
        if self.settings.load_config_references:
            self._load_config_references()

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    # ------------------------------------------------------------------ sites and keys

    def known_sites(self) -> list[str]:
        """Sites with a key, in the config, or in the store, sorted."""
        return sorted({*self.keys.sites, *self.config.sites, *self.store.sites()})

    def require_known(self, site: str) -> None:
        """Raise 404 unless ``site`` is known."""
        if site not in self.known_sites():
            known = ", ".join(self.known_sites()) or "none"
            raise ServiceError(404, f"unknown site {site!r} (known sites: {known})", "site")

    def authorise(self, site: str, key: str | None) -> None:
        """Check that ``key`` may write ``site``: 401, 404 or 403 otherwise."""
        if not self.keys.sites:
            raise ServiceError(
                401, "this server has no API keys configured; start it with --keys", "X-API-Key"
            )
        if not key:
            raise ServiceError(401, f"missing {API_KEY_HEADER} header", "X-API-Key")
        owner = self.keys.site_for(key)
        if owner is None:
            raise ServiceError(401, "API key not recognised", "X-API-Key")
        self.require_known(site)
        if owner != site:
            raise ServiceError(
                403, f"this API key writes site {owner!r} only, not {site!r}", "X-API-Key"
            )

    def _load_config_references(self) -> None:
        """Store the config's reference tables of sites that have no reference yet.

        A reference posted over HTTP is never overwritten by the config's table; the key
        ``"*"`` (one table with a site column) serves the config's sites, else the keyed ones.
        """
        from medfleet.monitor.run import load_references

        have = set(self.store.reference_sites())
        refs = {s: p for s, p in self.config.references.items() if s != "*" and s not in have}
        sites = list(self.config.sites)
        if "*" in self.config.references:
            pooled = [
                s for s in (self.config.sites or self.keys.sites) if s not in have and s not in refs
            ]
            if pooled:
                refs["*"] = self.config.references["*"]
                sites = pooled
        if refs:
            derived = self.config.model_copy(update={"references": refs, "sites": sites})
            load_references(derived, self.coordinator)

    # ------------------------------------------------------------------ writes

    def set_reference(self, site: str, raw: bytes, replace: bool) -> dict[str, Any]:
        """Validate and store a site's reference outputs (``raw``: the JSON body)."""
        arrays = self._checked(lambda: parse_reference(parse_json(raw), site, self.config.outputs))
        with self._write:
            if not replace and site in self.store.reference_sites():
                raise ServiceError(
                    409,
                    f"site {site!r} already has a reference; add ?replace=true to replace it "
                    "(this restarts the site's agent; its history is kept)",
                    "reference",
                )
            self._checked(lambda: self.coordinator.set_reference(site, arrays))
        return {
            "site": site,
            "n": int(next(iter(arrays.values())).shape[0]),
            "outputs": {name: list(a.shape) for name, a in arrays.items()},
            "replaced": replace,
        }

    def submit_batch(self, site: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """Process a batch (``raw``: the JSON body).

        Returns:
            (201, report) when this call stored it; (200, stored report) when it was stored
            before, by this process or another one on the same database.

        Raises:
            ServiceError: 409 when the stored batch of that id has other outputs; 4xx for
                anything wrong with the batch.
        """
        batch = self._checked(lambda: parse_batch(parse_json(raw), site, self.config.outputs))
        with self._write:
            stored = self.store.get_report(site, batch.batch_id)
            if stored is None:
                submission = self._checked(lambda: self.coordinator.submit(batch))
                if submission.new:
                    return 201, _report_json(submission.report, duplicate=False)
                stored = submission.report
        if stored.digest is not None and stored.digest != outputs_digest(batch.outputs):
            raise ServiceError(
                409,
                f"site {site!r} batch_id {batch.batch_id!r} is already stored with different "
                "outputs; a batch id names one batch: send new batches under new ids",
                "batch_id",
            )
        return 200, _report_json(stored, duplicate=True)

    @staticmethod
    def _checked(action: Any) -> Any:
        try:
            return action()
        except BatchError as err:
            raise ServiceError(status_of(err), str(err), err.field) from err

    # ------------------------------------------------------------------ reads

    def sites_summary(self) -> list[dict[str, Any]]:
        """Per known site: key, reference, batches, drifted, alerts, latest report."""
        with_reference = set(self.store.reference_sites())
        rows = []
        for site in self.known_sites():
            latest = self.store.history(site, limit=1)
            rows.append(
                {
                    "site": site,
                    "has_key": site in self.keys.sites,
                    "has_reference": site in with_reference,
                    "batches": self.store.count_reports(site),
                    "alerts": len(self.store.alerts(site)),
                    "latest_severity": latest[0].severity.value if latest else None,
                    "latest_batch_id": latest[0].batch_id if latest else None,
                    "latest_timestamp": latest[0].timestamp if latest else None,
                }
            )
        return rows

    def history(self, site: str, limit: int | None) -> list[dict[str, Any]]:
        """A known site's reports, oldest first."""
        self.require_known(site)
        return [_report_json(r) for r in self.store.history(site, limit=limit)]

    def alerts(self, site: str | None) -> list[dict[str, Any]]:
        """Alerts, oldest first (one site's when given)."""
        if site is not None:
            self.require_known(site)
        return [json_safe(a.to_dict()) for a in self.store.alerts(site)]

    def dashboard(self) -> str:
        """The dashboard page."""
        with_reference = set(self.store.reference_sites())
        needs_reference = self.config.scheme in ("site", "global") or (
            self.config.scheme == "adaptive" and self.config.adaptive.initial == "site"
        )
        series = []
        for site in self.known_sites():
            reports = self.store.history(site, limit=self.settings.dashboard_batches)
            series.append(
                site_series(
                    site,
                    reports,
                    has_reference=site in with_reference or not needs_reference,
                )
            )
        alerts = [
            AlertRow(a.site, a.batch_id, a.timestamp, a.severity.value, a.message)
            for a in reversed(self.store.alerts())
        ]
        return render_dashboard(
            series,
            alerts,
            title=self.settings.title,
            generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            refresh_seconds=self.settings.refresh_seconds,
        )

    def health(self) -> dict[str, Any]:
        """Liveness plus a store query."""
        return {
            "status": "ok",
            "db": self.target,
            "sites": len(self.known_sites()),
            "reports": self.store.count_reports(),
        }


def site_series(site: str, reports: list[BatchReport], has_reference: bool = True) -> SiteSeries:
    """Chart data of one site from its reports (warm-up batches have no statistic).

    Example:
        >>> from medfleet.monitor.severity import Severity
        >>> r = BatchReport(site="a", batch_id="b1", timestamp="t", n=5, scheme="site",
        ...                 test="ks", statistic=0.2, p_value=0.01, severity=Severity.mild,
        ...                 drift=True, alert=False, lead="prob",
        ...                 thresholds={"drift": 0.1, "moderate": 0.3, "severe": 0.5})
        >>> s = site_series("a", [r])
        >>> s.statistic_name, s.points[0].thresholds["drift"]
        ('ks statistic of prob', 0.1)
    """
    points = [
        SeriesPoint(
            batch_id=r.batch_id,
            timestamp=r.timestamp,
            statistic=r.statistic,
            severity=r.severity.value,
            alert=r.alert,
            thresholds=dict(r.thresholds) or None,
        )
        for r in reports
    ]
    lead = next((r for r in reversed(reports) if r.lead), None)
    name = f"{lead.test} statistic of {lead.lead}" if lead else "drift statistic"
    return SiteSeries(site, points, {}, name, has_reference)


def _report_json(report: BatchReport, duplicate: bool | None = None) -> dict[str, Any]:
    data = json_safe(report.to_dict())
    if duplicate is not None:
        data["duplicate"] = duplicate
    return data


def _check_content_type(request: Request) -> None:
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media not in JSON_MEDIA_TYPES and not media.endswith("+json"):
        raise ServiceError(
            415,
            f"body must be JSON: send Content-Type: application/json (got {media[:60]!r})",
            "Content-Type",
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read as it streams in and refused with 413 once beyond ``limit``.

    A declared Content-Length beyond the limit is refused before reading anything; a
    chunked upload (no Content-Length) is cut off at the first chunk that crosses it,
    so no more than ``limit`` bytes plus one chunk are ever held.

    Raises:
        ServiceError: 413 naming ``body``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, f"body of {declared} bytes exceeds the limit of {limit}", "body")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(
                413,
                f"body of more than {limit} bytes exceeds the limit of {limit} "
                f"(stopped reading at {size} bytes)",
                "body",
            )
        parts.append(chunk)
    return b"".join(parts)


def _as_keys(api_keys: ApiKeys | Mapping[str, str] | str | os.PathLike[str] | None) -> ApiKeys:
    if api_keys is None:
        return ApiKeys({})
    if isinstance(api_keys, ApiKeys):
        return api_keys
    if isinstance(api_keys, Mapping):
        return ApiKeys(api_keys)
    return ApiKeys.load(api_keys)


def _as_config(config: MonitorConfig | str | os.PathLike[str] | None) -> MonitorConfig:
    if config is None:
        return MonitorConfig()
    if isinstance(config, MonitorConfig):
        return config
    return MonitorConfig.load(config)


def create_app(
    db: StoreTarget | MonitorStore,
    config: MonitorConfig | str | os.PathLike[str] | None,
    api_keys: ApiKeys | Mapping[str, str] | str | os.PathLike[str] | None,
    settings: ServiceSettings | None = None,
) -> FastAPI:
    """Build the monitoring service's FastAPI app; the store opens now and closes on shutdown.

    Args:
        db: SQLite database file (created when missing; reopened with its history), a
            database URL (``postgresql+psycopg://user:password@host/db``), or an open store.
        config: A :class:`MonitorConfig`, a YAML path, or None for the defaults.
        api_keys: :class:`ApiKeys`, a site -> key mapping, a key file path, or None
            (read-only: every write answers 401).
        settings: Dashboard and limits (:class:`ServiceSettings`).

    Returns:
        The app; ``app.state.monitor`` is its :class:`MonitorService`.

    Raises:
        MedfleetError: Bad config, key file or database (the message names it).

    Example:
        >>> import tempfile, pathlib
        >>> db = pathlib.Path(tempfile.mkdtemp()) / "m.sqlite"
        >>> sorted(r.path for r in create_app(db, None, None).routes if "sites" in r.path)
        ['/sites', '/sites/{site}/batches', '/sites/{site}/history', '/sites/{site}/reference']
    """
    service = MonitorService(db, _as_config(config), _as_keys(api_keys), settings)
    limit = service.settings.max_body_bytes

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="medfleet drift monitor",
        summary="Per-site drift monitoring of model outputs.",
        version="1",
        lifespan=lifespan,
    )
    app.state.monitor = service

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, err: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": API_KEY_HEADER} if err.status == 401 else None
        return JSONResponse(err.payload(), status_code=err.status, headers=headers)

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, err: StoreError) -> JSONResponse:
        error = ServiceError(503, f"the monitor store is unavailable: {err}; retry later", "db")
        return JSONResponse(error.payload(), status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in err.errors()
        ]
        loc = err.errors()[0].get("loc", ()) if err.errors() else ()
        error = ServiceError(422, "; ".join(problems), str(loc[-1]) if loc else None)
        return JSONResponse(error.payload(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        error = ServiceError(err.status_code, str(err.detail))
        return JSONResponse(error.payload(), status_code=err.status_code, headers=err.headers)

    batch_schema = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "example": {
                        "batch_id": "2025-03-01T10",
                        "timestamp": "2025-03-01T10:00:00+00:00",
                        "outputs": {"prob": [0.12, 0.80, 0.33], "pred_class": [0, 1, 0]},
                    }
                }
            },
        }
    }
    reference_schema = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "example": {"outputs": {"prob": [0.1, 0.4, 0.7], "pred_class": [0, 0, 1]}}
                }
            },
        }
    }

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the store answers a query."""
        return service.health()

    @app.get("/", response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        """Dashboard: each site's statistic over time, thresholds, severity and alerts."""
        return HTMLResponse(service.dashboard())

    @app.get("/sites")
    def sites() -> dict[str, Any]:
        """Every known site with its key, reference, counts and latest severity."""
        return {"sites": service.sites_summary()}

    @app.get("/sites/{site}/history")
    def history(
        site: str,
        limit: Annotated[
            int | None,
            Query(ge=1, le=MAX_LIMIT, description="Only the most recent N reports."),
        ] = None,
    ) -> dict[str, Any]:
        """A site's batch reports, oldest first."""
        return {"site": site, "reports": service.history(site, limit)}

    @app.get("/alerts")
    def alerts(
        site: Annotated[str | None, Query(description="Only this site's alerts.")] = None,
    ) -> dict[str, Any]:
        """Alerts raised, oldest first."""
        return {"alerts": service.alerts(site)}

    @app.post("/sites/{site}/reference", status_code=201, openapi_extra=reference_schema)
    async def reference(
        site: str,
        request: Request,
        x_api_key: ApiKeyHeader = None,
        replace: Annotated[
            bool, Query(description="Replace an existing reference (restarts the agent).")
        ] = False,
    ) -> JSONResponse:
        """Store the site's reference outputs (e.g. its validation outputs)."""
        await run_in_threadpool(service.authorise, site, x_api_key)
        _check_content_type(request)
        raw = await read_body(request, limit)
        result = await run_in_threadpool(service.set_reference, site, raw, replace)
        return JSONResponse(result, status_code=201)

    @app.post("/sites/{site}/batches", status_code=201, openapi_extra=batch_schema)
    async def batches(site: str, request: Request, x_api_key: ApiKeyHeader = None) -> JSONResponse:
        """Judge a batch of outputs; 201 once its report is committed, 200 for a stored one."""
        await run_in_threadpool(service.authorise, site, x_api_key)
        _check_content_type(request)
        raw = await read_body(request, limit)
        status, result = await run_in_threadpool(service.submit_batch, site, raw)
        return JSONResponse(result, status_code=status)

    return app


def serve(
    db: StoreTarget | MonitorStore,
    config: MonitorConfig | str | os.PathLike[str] | None,
    api_keys: ApiKeys | Mapping[str, str] | str | os.PathLike[str] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServiceSettings | None = None,
    log_level: str = "info",
) -> None:
    """Run the service with Uvicorn until interrupted (Ctrl-C or SIGTERM).

    Args:
        db: SQLite database file or database URL (see :func:`create_app`).
        config: Monitoring configuration (object, YAML path or None).
        api_keys: Site keys (object, mapping, key file or None).
        host: Interface to bind; ``0.0.0.0`` for every interface.
        port: TCP port.
        settings: Service settings.
        log_level: Uvicorn log level.
    """
    import uvicorn

    app = create_app(db, config, api_keys, settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
