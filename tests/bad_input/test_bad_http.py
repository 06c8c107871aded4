"""Bad-input corpus for the monitoring service's HTTP API (``medfleet monitor serve``).

Every case sends one bad request to a fresh service (two sites with references, SQLite
store) and checks the answer: the expected 4xx status, a JSON error whose ``field`` names
what is wrong, no key or other secret echoed, no traceback, and nothing stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medfleet.monitor.batches import MAX_CLASS_LABEL
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.service import ServiceSettings, create_app

KEYS = {"site_a": "bad-http-key-of-site-a-0123", "site_b": "bad-http-key-of-site-b-0123"}
WRONG_KEY = "not-the-key-of-anyone-0123456"
SECRETS = (*KEYS.values(), WRONG_KEY)
BODY_LIMIT = 200_000


def _prob(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).beta(2.0, 5.0, n)


def _reference(seed: int, classes: int) -> dict[str, Any]:
    p = _prob(seed, 300)
    prob = p.tolist() if classes == 1 else np.column_stack([p, 1 - p]).tolist()
    return {"outputs": {"prob": prob, "pred_class": (p > 0.5).astype(int).tolist()}}


def batch(batch_id: str = "b1", seed: int = 7, **changes: Any) -> dict[str, Any]:
    """A good site_a batch (1-D probabilities) with ``changes`` to its outputs."""
    p = _prob(seed, 50)
    body: dict[str, Any] = {
        "batch_id": batch_id,
        "timestamp": "2025-03-01T10:00:00+00:00",
        "outputs": {"prob": p.tolist(), "pred_class": (p > 0.5).astype(int).tolist()},
    }
    for name, value in changes.items():
        if name in ("batch_id", "timestamp", "extra"):
            body[name] = value
        elif value is None:
            del body["outputs"][name]
        else:
            body["outputs"][name] = value
    return body


def with_row(name: str, row: int, value: Any) -> Callable[[dict], dict]:
    def edit(body: dict) -> dict:
        body["outputs"][name][row] = value
        return body

    return edit


def _raw_batch(
    prob: str = "[0.5]", pred_class: str = "[0]", timestamp: str = '"2025-03-01"'
) -> bytes:
    """A batch as JSON text, so that NaN and huge numbers reach the server as written."""
    outputs = f'{{"prob": {prob}, "pred_class": {pred_class}}}'
    return f'{{"batch_id": "raw", "timestamp": {timestamp}, "outputs": {outputs}}}'.encode()


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@dataclass
class Case:
    """One bad request and the answer it must get."""

    status: int
    field: str
    fragments: tuple[str, ...] = ()
    body: Any = None  # dict -> JSON, bytes -> as is, callable -> iterator (chunked)
    path: str = "/sites/site_a/batches"
    method: str = "POST"
    key: str | None = KEYS["site_a"]
    headers: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[TestClient], None] | None = None
    keys: dict[str, str] | None = field(default_factory=lambda: dict(KEYS))


def _post_first(client: TestClient) -> None:
    r = client.post(
        "/sites/site_a/batches", json=batch("b1"), headers={"X-API-Key": KEYS["site_a"]}
    )
    assert r.status_code == 201, r.text


def _chunks() -> Iterator[bytes]:
    yield b'{"batch_id": "big", "outputs": {"prob": ['
    for _ in range(BODY_LIMIT // 1000 + 5):
        yield b"0.5, " * 200
    yield b"0.5]}}"


SITE_B = {"path": "/sites/site_b/batches", "key": KEYS["site_b"]}  # 2-class references
GET = {"method": "GET", "key": None}

CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- keys and sites
    "unknown-site": Case(
        404, "site", ("unknown site 'site_zz'",), batch(), "/sites/site_zz/batches"
    ),
    "missing-api-key": Case(401, "X-API-Key", ("missing X-API-Key",), batch(), key=None),
    "wrong-api-key": Case(401, "X-API-Key", ("not recognised",), batch(), key=WRONG_KEY),
    "key-of-another-site": Case(
        403, "X-API-Key", ("writes site 'site_b' only",), batch(), key=KEYS["site_b"]
    ),
    "server-without-keys": Case(401, "X-API-Key", ("no API keys configured",), batch(), keys=None),
    # ---------------------------------------------------------------- the body itself
    "malformed-json": Case(422, "body", ("not valid JSON",), b'{"batch_id": "b1", "outputs": '),
    "empty-body": Case(422, "body", ("body is empty",), b""),
    "body-not-an-object": Case(422, "body", ("JSON object",), [1, 2, 3]),
    "wrong-content-type": Case(
        415, "Content-Type", ("application/json",), batch(), headers={"Content-Type": "text/plain"}
    ),
    "form-encoded-body": Case(
        415,
        "Content-Type",
        ("application/json",),
        b"batch_id=b1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "nested-100000-deep": Case(422, "body", ("nest",), b"[" * 100_000 + b"]" * 100_000),
    "declared-body-over-limit": Case(
        413, "body", (f"limit of {BODY_LIMIT}",), b"{}" + b" " * BODY_LIMIT
    ),
    "chunked-body-over-limit": Case(413, "body", (f"limit of {BODY_LIMIT}",), _chunks),
    "unknown-field": Case(422, "extra", ("unknown field",), batch(extra=1)),
    "missing-outputs": Case(422, "outputs", ("missing field 'outputs'",), {"batch_id": "b1"}),
    # ---------------------------------------------------------------- batch ids and times
    "batch-id-too-long": Case(422, "batch_id", ("at most 200",), batch(batch_id="x" * 201)),
    "batch-id-control-character": Case(422, "batch_id", ("printable",), batch(batch_id="b\n1")),
    "batch-id-boolean": Case(422, "batch_id", ("text or an integer",), batch(batch_id=True)),
    "duplicate-batch-id-other-outputs": Case(
        409,
        "batch_id",
        ("different outputs",),
        batch("b1", seed=99),
        prepare=_post_first,
    ),
    "timestamp-1e300": Case(422, "timestamp", ("epoch seconds",), _raw_batch(timestamp="1e300")),
    "timestamp-nan": Case(422, "timestamp", ("epoch seconds",), _raw_batch(timestamp="NaN")),
    "timestamp-not-iso": Case(422, "timestamp", ("ISO-8601",), batch(timestamp="next tuesday")),
    "timestamp-object": Case(422, "timestamp", ("ISO-8601",), batch(timestamp={"day": 1})),
    # ---------------------------------------------------------------- output values
    "empty-batch": Case(422, "prob", ("empty",), batch(prob=[], pred_class=[])),
    "nan-probability": Case(
        422,
        "prob",
        ("NaN or infinite", "row 3"),
        _raw_batch(prob="[0.1, 0.2, 0.3, NaN]", pred_class="[0, 0, 0, 0]"),
    ),
    "probability-above-1": Case(
        422, "prob", ("outside [0, 1]", "logits"), with_row("prob", 4, 1.5)(batch())
    ),
    "boolean-probabilities": Case(422, "prob", ("true/false",), batch(prob=[True, False] * 25)),
    "text-probabilities": Case(422, "prob", ("not numeric",), batch(prob=["0.5"] * 50)),
    "integer-beyond-float": Case(
        422, "prob", ("too large",), _raw_batch(prob="[1" + "0" * 400 + "]")
    ),
    "class-probabilities-not-summing-to-1": Case(
        422,
        "prob",
        ("sum to 1", "row 1"),
        batch(prob=[[0.2, 0.8], [0.7, 0.7]], pred_class=[1, 0]),
        **SITE_B,
    ),
    "wrong-number-of-classes": Case(
        422, "prob", ("per row",), batch(prob=[[0.2, 0.3, 0.5]] * 4, pred_class=[2] * 4), **SITE_B
    ),
    "mask-of-wrong-shape": Case(
        422, "prob", ("1-D or 2-D",), batch(prob=[[[0.5, 0.5], [0.5, 0.5]]] * 3, pred_class=[0] * 3)
    ),
    "ragged-rows": Case(
        422,
        "prob",
        ("different lengths",),
        batch(prob=[[0.5, 0.5], [1.0]], pred_class=[0, 0]),
        **SITE_B,
    ),
    "outputs-of-different-lengths": Case(422, "pred_class", ("rows",), batch(pred_class=[0, 1])),
    "class-label-1e30": Case(
        422,
        "pred_class",
        (f"[0, {MAX_CLASS_LABEL}]", "1e+30"),
        with_row("pred_class", 2, 1e30)(batch()),
    ),
    "class-label-negative": Case(
        422, "pred_class", (f"[0, {MAX_CLASS_LABEL}]",), with_row("pred_class", 0, -1)(batch())
    ),
    "class-label-fraction": Case(
        422, "pred_class", ("whole numbers",), with_row("pred_class", 0, 0.5)(batch())
    ),
    "missing-output": Case(
        422, "pred_class", ("missing", "the reference has"), batch(pred_class=None)
    ),
    "output-not-in-reference": Case(422, "risk", ("not in the reference",), batch(risk=[0.1] * 50)),
    "output-name-too-long": Case(
        422, "outputs", ("1-100 printable",), batch(**{"p" * 101: [0.5] * 50})
    ),
    # ---------------------------------------------------------------- references
    "reference-with-nan": Case(
        422,
        "prob",
        ("NaN or infinite",),
        b'{"outputs": {"prob": [0.1, NaN]}}',
        path="/sites/site_a/reference",
    ),
    "reference-replaced-without-flag": Case(
        409, "reference", ("replace=true",), _reference(3, 1), path="/sites/site_a/reference"
    ),
    # ---------------------------------------------------------------- reads (no key)
    "history-limit-beyond-int64": Case(
        422, "limit", ("less than or equal",), path=f"/sites/site_a/history?limit={2**63}", **GET
    ),
    "history-limit-zero": Case(
        422, "limit", ("greater than or equal to 1",), path="/sites/site_a/history?limit=0", **GET
    ),
    "history-limit-not-a-number": Case(
        422, "limit", ("integer",), path="/sites/site_a/history?limit=1e3", **GET
    ),
    "history-of-unknown-site": Case(
        404, "site", ("unknown site",), path="/sites/site_zz/history", **GET
    ),
    "site-name-not-unicode": Case(
        404, "site", ("unknown site",), path="/sites/%ED%A0%80/history", **GET
    ),
    "alerts-of-unknown-site": Case(
        404, "site", ("unknown site",), path="/alerts?site=site_zz", **GET
    ),
}


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[[Case], TestClient]]:
    clients: list[TestClient] = []

    def make(case: Case) -> TestClient:
        cfg = MonitorConfig(
            sites=list(KEYS),
            scheme="site",
            tests=["ks", "chi2"],
            thresholds={"bootstrap": 20, "shift_bootstrap": 5},
        )
        settings = ServiceSettings(max_body_bytes=BODY_LIMIT)
        db = tmp_path / "monitor.sqlite"
        with TestClient(create_app(db, cfg, KEYS, settings)) as setup:
            for i, site in enumerate(KEYS):
                r = setup.post(
                    f"/sites/{site}/reference",
                    json=_reference(i, classes=1 if site == "site_a" else 2),
                    headers={"X-API-Key": KEYS[site]},
                )
                assert r.status_code == 201, r.text
        client = TestClient(create_app(db, cfg, case.keys, settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _request(client: TestClient, case: Case):
    headers = {"Content-Type": "application/json", **case.headers}
    if case.key is not None:
        headers["X-API-Key"] = case.key
    if case.method == "GET":
        return client.get(case.path, headers=headers)
    body = case.body
    if callable(body):
        content: Any = body()
    elif isinstance(body, bytes):
        content = body
    else:
        content = _json(body)
    return client.request(case.method, case.path, content=content, headers=headers)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_request_is_refused_naming_the_field(make_client, case: Case) -> None:
    client = make_client(case)
    if case.prepare is not None:
        case.prepare(client)
    store = client.app.state.monitor.store
    before = (store.count_reports(), len(store.alerts()), store.reference_sites())
    r = _request(client, case)
    assert r.status_code == case.status, r.text
    payload = r.json()
    assert set(payload) == {"error", "field", "status"}, payload
    assert payload["status"] == case.status
    assert payload["field"] == case.field, payload
    for fragment in case.fragments:
        assert fragment in payload["error"], payload
    for secret in SECRETS:
        assert secret not in r.text
    assert "Traceback" not in r.text and 'File "' not in r.text
    assert (store.count_reports(), len(store.alerts()), store.reference_sites()) == before
    if case.status == 401:
        assert r.headers["www-authenticate"] == "X-API-Key"


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20
