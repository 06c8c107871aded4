"""Requests beyond the service's limits get a 4xx naming the field, never a 500.

Query values beyond the store's integer range, bodies nested deeper than any batch needs,
epoch timestamps no calendar holds, bodies of another content type, and chunked uploads
(no Content-Length) larger than the body limit, which must be cut off while streaming.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from monitor_service_helpers import KEYS, batch_body, config, headers

from medfleet.monitor.service import ServiceSettings, create_app


def _post_raw(referenced_client: TestClient, raw: str | bytes, **extra: str):
    return referenced_client.post(
        "/sites/site_a/batches",
        content=raw.encode() if isinstance(raw, str) else raw,
        headers={**headers("site_a"), "Content-Type": "application/json", **extra},
    )


def _refused(r, status: int, field: str, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["field"] == field, payload
    assert payload["status"] == status
    for fragment in fragments:
        assert fragment in payload["error"], payload
    assert "Traceback" not in r.text
    return payload


@pytest.mark.parametrize("limit", [str(2**63), str(10**30), "18446744073709551616"])
def test_history_limit_beyond_the_store_integers_is_422(
    referenced_client: TestClient, limit: str
) -> None:
    _refused(referenced_client.get(f"/sites/site_a/history?limit={limit}"), 422, "limit")


def test_the_largest_history_limit_still_answers(referenced_client: TestClient) -> None:
    r = referenced_client.get(f"/sites/site_a/history?limit={2**63 - 1}")
    assert r.status_code == 200 and r.json()["reports"] == []


def test_a_body_nested_100000_deep_is_422(referenced_client: TestClient) -> None:
    _refused(_post_raw(referenced_client, "[" * 100_000 + "]" * 100_000), 422, "body", "nest")


def test_outputs_nested_too_deep_are_422_naming_the_output(referenced_client: TestClient) -> None:
    deep = "[" * 60 + "0.5" + "]" * 60
    raw = '{"batch_id": "x", "outputs": {"prob": ' + deep + ', "pred_class": [0]}}'
    _refused(_post_raw(referenced_client, raw), 422, "prob", "nest")


@pytest.mark.parametrize("stamp", ["1e300", "-1e300", "NaN", "Infinity", str(10**400)])
def test_epoch_timestamps_outside_the_calendar_are_422(
    referenced_client: TestClient, stamp: str
) -> None:
    body = json.dumps(batch_body("t1", seed=1))
    raw = body.replace('"2025-03-01T10:00:00+00:00"', stamp)
    assert stamp in raw
    _refused(_post_raw(referenced_client, raw), 422, "timestamp", "epoch seconds")
    assert referenced_client.get("/sites/site_a/history").json()["reports"] == []


def test_a_body_of_another_content_type_is_415(referenced_client: TestClient) -> None:
    body = json.dumps(batch_body("c1", seed=1))
    r = _post_raw(referenced_client, body, **{"Content-Type": "text/plain"})
    _refused(r, 415, "Content-Type", "application/json")


def test_a_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    app = create_app(tmp_path / "m.sqlite", config(), KEYS, ServiceSettings(max_body_bytes=2000))

    def chunks() -> Iterator[bytes]:
        yield b'{"outputs": {"prob": ['
        for _ in range(1000):
            yield b"0.5, "
        yield b"0.5]}}"

    with TestClient(app) as c:
        r = c.post("/sites/site_a/reference", content=chunks(), headers=headers("site_a"))
        assert "content-length" not in {k.lower() for k in r.request.headers}
        _refused(r, 413, "body", "limit of 2000")


def test_a_chunked_upload_is_cut_off_as_soon_as_it_exceeds_the_limit(tmp_path: Path) -> None:
    """The app stops reading at the limit: it never asks for the rest of the body."""
    limit, chunk, total = 10_000, 1_000, 1_000
    app = create_app(tmp_path / "m.sqlite", config(), KEYS, ServiceSettings(max_body_bytes=limit))
    asked: list[int] = []
    sent: list[dict] = []

    async def receive() -> dict:
        asked.append(1)
        if len(asked) > total:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b" " * chunk, "more_body": len(asked) < total}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/sites/site_a/batches",
        "raw_path": b"/sites/site_a/batches",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
            (b"x-api-key", KEYS["site_a"].encode()),
        ],
        "referenced_client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert len(asked) <= limit // chunk + 2, f"read {len(asked)} of {total} chunks"
