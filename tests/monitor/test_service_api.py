"""The monitoring service through its HTTP client: reports, keys, bad input, persistence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from monitor_service_helpers import (
    KEYS,
    batch_body,
    batch_outputs,
    config,
    headers,
    post_references,
    reference_outputs,
)
from scipy import stats

from medfleet.monitor.api_keys import ApiKeyError, hash_api_key
from medfleet.monitor.service import ServiceSettings, create_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(tmp_path / "monitor.sqlite", config(), KEYS)
    with TestClient(app) as c:
        yield c


def _with_references(client: TestClient) -> TestClient:
    post_references(client)
    return client


def _stored(client: TestClient) -> tuple[int, int]:
    service = client.app.state.monitor
    return service.store.count_reports(), len(service.store.alerts())


def test_reports_carry_the_ks_statistic_of_batch_against_reference(client: TestClient) -> None:
    r = client.post(
        "/sites/site_a/reference",
        json={"outputs": reference_outputs(seed=0)},
        headers=headers("site_a"),
    )
    assert r.status_code == 201
    assert r.json() == {
        "site": "site_a",
        "n": 600,
        "outputs": {"prob": [600], "pred_class": [600]},
        "replaced": False,
    }
    ref_prob = np.array(reference_outputs(seed=0)["prob"])
    for i in range(4):
        body = batch_body(f"b{i}", seed=100 + i, day=i + 1)
        r = client.post("/sites/site_a/batches", json=body, headers=headers("site_a"))
        assert r.status_code == 201, r.text
        report = r.json()
        expected = stats.ks_2samp(ref_prob, np.array(body["outputs"]["prob"])).statistic
        assert report["statistic"] == pytest.approx(expected, abs=1e-12)
        assert (report["site"], report["batch_id"], report["n"]) == ("site_a", f"b{i}", 150)
        assert (report["lead"], report["test"], report["duplicate"]) == ("prob", "ks", False)
        assert report["timestamp"].startswith(f"2025-03-0{i + 1}T10:00:00")
        assert set(report["thresholds"]) == {"drift", "moderate", "severe"}
    history = client.get("/sites/site_a/history").json()
    assert [rep["batch_id"] for rep in history["reports"]] == ["b0", "b1", "b2", "b3"]
    assert [
        rep["batch_id"] for rep in client.get("/sites/site_a/history?limit=2").json()["reports"]
    ] == ["b2", "b3"]


def test_a_drifting_site_escalates_alerts_and_shows_on_the_dashboard(client: TestClient) -> None:
    _with_references(client)
    shifts = [0.0, 0.0, 0.0, 4.0, 4.0, 4.0]
    severities = []
    for i, shift in enumerate(shifts):
        for site in KEYS:
            s = shift if site == "site_b" else 0.0
            r = client.post(
                f"/sites/{site}/batches",
                json=batch_body(f"b{i}", seed=10 * i + len(site), shift=s, day=i + 1),
                headers=headers(site),
            )
            assert r.status_code == 201, r.text
            if site == "site_b":
                severities.append(r.json()["severity"])
    assert all(s in ("none", "mild") for s in severities[:3])
    assert severities[-1] == "severe"
    alerts = client.get("/alerts").json()["alerts"]
    b_alerts = [a for a in alerts if a["site"] == "site_b"]
    assert b_alerts and b_alerts[-1]["severity"] == "severe"
    assert b_alerts[-1]["batch_id"] in {"b3", "b4", "b5"}
    a_alerts = [a for a in alerts if a["site"] == "site_a"]
    assert client.get("/alerts?site=site_a").json() == {"alerts": a_alerts}
    assert client.get("/alerts?site=site_b").json() == {"alerts": b_alerts}
    summary = {row["site"]: row for row in client.get("/sites").json()["sites"]}
    assert summary["site_b"]["latest_severity"] == "severe"
    assert summary["site_a"]["batches"] == summary["site_b"]["batches"] == 6
    assert summary["site_b"]["alerts"] == len(b_alerts)
    assert summary["site_a"]["alerts"] == len(a_alerts)
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-site="site_a" data-points="6"' in page.text
    assert 'data-site="site_b" data-points="6"' in page.text
    assert page.text.count('class="alert-ring"') == len(alerts)
    assert page.text.count("<tr><td>") == len(alerts)


def test_resending_a_stored_batch_returns_it_and_stores_nothing(client: TestClient) -> None:
    _with_references(client)
    first = client.post(
        "/sites/site_a/batches", json=batch_body("b1", seed=1), headers=headers("site_a")
    )
    assert first.status_code == 201
    # Same id, same outputs (another timestamp): the stored verdict, nothing is re-judged.
    resent = batch_body("b1", seed=1, day=9)
    again = client.post("/sites/site_a/batches", json=resent, headers=headers("site_a"))
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["statistic"] == first.json()["statistic"]
    assert again.json()["timestamp"] == first.json()["timestamp"]
    # Same id, different outputs: refused (409), the stored verdict stands.
    other = client.post(
        "/sites/site_a/batches",
        json=batch_body("b1", seed=2, shift=5.0),
        headers=headers("site_a"),
    )
    assert other.status_code == 409
    assert other.json()["field"] == "batch_id"
    assert _stored(client) == (1, 0)


AUTH_CASES = [
    ({}, "site_a", 401, "missing X-API-Key header"),
    ({"X-API-Key": "not-a-key-of-anyone-0000"}, "site_a", 401, "API key not recognised"),
    ({"X-API-Key": KEYS["site_b"]}, "site_a", 403, "writes site 'site_b' only, not 'site_a'"),
    ({"X-API-Key": KEYS["site_a"]}, "site_zz", 404, "unknown site 'site_zz'"),
]


@pytest.mark.parametrize(("hdrs", "site", "status", "message"), AUTH_CASES)
@pytest.mark.parametrize("endpoint", ["reference", "batches"])
def test_keys_guard_every_write(
    client: TestClient, hdrs: dict, site: str, status: int, message: str, endpoint: str
) -> None:
    if endpoint == "batches":
        _with_references(client)
        body: dict[str, Any] = batch_body("b1", seed=1)
    else:
        body = {"outputs": reference_outputs(seed=5)}
    before = client.app.state.monitor.store.load_reference("site_a")
    r = client.post(f"/sites/{site}/{endpoint}", json=body, headers=hdrs)
    assert r.status_code == status
    assert message in r.json()["error"]
    if status == 401:
        assert r.headers["www-authenticate"] == "X-API-Key"
    assert _stored(client) == (0, 0)
    after = client.app.state.monitor.store.load_reference("site_a")
    if before is None:
        assert after is None
    else:
        np.testing.assert_array_equal(after["prob"], before["prob"])


def test_the_key_is_checked_before_the_body(client: TestClient) -> None:
    r = client.post("/sites/site_a/batches", content=b"{not json")
    assert r.status_code == 401


def _raw(text: str) -> bytes:
    return text.encode()


def _batch(prob: str, classes: str = "[0, 0, 1]") -> str:
    """Raw JSON of a batch, so that NaN and Infinity tokens reach the server as sent."""
    return '{"batch_id": "x", "outputs": {"prob": ' + prob + ', "pred_class": ' + classes + "}}"


BAD_BATCHES = [
    # (raw body, field, fragment of the message)
    (
        _batch("[0.1, NaN, 0.3]"),
        "prob",
        "NaN or infinite",
    ),
    (
        _batch("[0.1, Infinity, 0.3]"),
        "prob",
        "NaN or infinite",
    ),
    (
        _batch("[0.1, null, 0.3]"),
        "prob",
        "NaN or infinite",
    ),
    (
        _batch("[0.1, 1.5, 0.3]"),
        "prob",
        "outside [0, 1]",
    ),
    (
        _batch("[-0.2, 0.5, 0.3]"),
        "prob",
        "outside [0, 1]",
    ),
    ('{"batch_id": "x", "outputs": {"prob": [], "pred_class": []}}', "prob", "empty"),
    ('{"batch_id": "x", "outputs": {}}', "outputs", "non-empty object"),
    ('{"batch_id": "x"}', "outputs", "missing field 'outputs'"),
    ('{"outputs": {"prob": [0.1]}}', "batch_id", "missing field 'batch_id'"),
    ('{"batch_id": " ", "outputs": {"prob": [0.1]}}', "batch_id", "batch_id is empty"),
    ('{"batch_id": "x", "outputs": {"prob": [0.1]}, "site": "a"}', "site", "unknown field"),
    ('{"batch_id": "x", "outputs": {"prob": 0.5}}', "prob", "must be a list"),
    (
        _batch('["a", "b", "c"]'),
        "prob",
        "not numeric",
    ),
    (
        '{"batch_id": "x", "outputs": {"prob": [0.1, 0.2, 0.3], "pred_class": [0, 1]}}',
        "pred_class",
        "rows",
    ),
    ('{"batch_id": "x", "outputs": {"prob": [0.1, 0.2, 0.3]}}', "pred_class", "missing"),
    (
        '{"batch_id": "x", "outputs": {"prob": [0.1, 0.2, 0.3], "pred_class": [0, 0.5, 1]}}',
        "pred_class",
        "whole numbers",
    ),
    (
        '{"batch_id": "x", "timestamp": "last tuesday", '
        '"outputs": {"prob": [0.1, 0.2, 0.3], "pred_class": [0, 0, 1]}}',
        "timestamp",
        "ISO-8601",
    ),
    ("[1, 2, 3]", "body", "JSON object"),
    ('{"batch_id": "x", ', "body", "not valid JSON"),
    ("", "body", "body is empty"),
]


@pytest.mark.parametrize(("raw", "field", "fragment"), BAD_BATCHES)
def test_bad_batches_get_422_naming_the_field_and_store_nothing(
    client: TestClient, raw: str, field: str, fragment: str
) -> None:
    _with_references(client)
    client.post("/sites/site_a/batches", json=batch_body("ok", seed=1), headers=headers("site_a"))
    before = _stored(client)
    r = client.post(
        "/sites/site_a/batches",
        content=_raw(raw),
        headers={**headers("site_a"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    payload = r.json()
    assert payload["field"] == field
    assert fragment in payload["error"]
    assert payload["status"] == 422
    assert _stored(client) == before
    # Nothing was kept under the refused batch id: a good batch with that id is new.
    good = client.post(
        "/sites/site_a/batches", json=batch_body("x", seed=3), headers=headers("site_a")
    )
    assert good.status_code == 201
    assert good.json()["duplicate"] is False


def test_a_site_without_reference_gets_409_and_nothing_is_stored(client: TestClient) -> None:
    r = client.post(
        "/sites/site_a/batches", json=batch_body("b1", seed=1), headers=headers("site_a")
    )
    assert r.status_code == 409
    assert r.json()["field"] == "reference"
    assert "no reference" in r.json()["error"]
    assert _stored(client) == (0, 0)


def test_bad_reference_is_refused_and_not_stored(client: TestClient) -> None:
    bad = reference_outputs(seed=0)
    bad["prob"][7] = float("nan")
    r = client.post(
        "/sites/site_a/reference",
        content=json.dumps({"outputs": bad}).encode(),
        headers={**headers("site_a"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "prob"
    assert "row 7" in r.json()["error"]
    sites = {row["site"]: row for row in client.get("/sites").json()["sites"]}
    assert sites["site_a"]["has_reference"] is False


def test_replacing_a_reference_needs_replace_true(client: TestClient) -> None:
    _with_references(client)
    new = {"outputs": reference_outputs(seed=9, n=300)}
    r = client.post("/sites/site_a/reference", json=new, headers=headers("site_a"))
    assert r.status_code == 409
    assert "replace=true" in r.json()["error"]
    store = client.app.state.monitor.store
    assert store.load_reference("site_a")["prob"].shape == (600,)
    r = client.post("/sites/site_a/reference?replace=true", json=new, headers=headers("site_a"))
    assert r.status_code == 201
    assert r.json()["replaced"] is True
    assert store.load_reference("site_a")["prob"].shape == (300,)


def test_oversized_body_gets_413(tmp_path: Path) -> None:
    app = create_app(tmp_path / "m.sqlite", config(), KEYS, ServiceSettings(max_body_bytes=2000))
    with TestClient(app) as c:
        r = c.post(
            "/sites/site_a/reference",
            json={"outputs": reference_outputs(seed=0)},
            headers=headers("site_a"),
        )
        assert r.status_code == 413
        assert "exceeds the limit of 2000" in r.json()["error"]


def test_reads_validate_their_parameters(client: TestClient) -> None:
    r = client.get("/sites/site_a/history?limit=0")
    assert r.status_code == 422
    assert r.json()["field"] == "limit"
    assert "greater than or equal to 1" in r.json()["error"]
    assert client.get("/sites/nowhere/history").status_code == 404
    assert client.get("/alerts?site=nowhere").status_code == 404
    missing = client.get("/no/such/page")
    assert missing.status_code == 404
    assert missing.json()["error"] == "Not Found"
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["reports"] == 0


def test_a_key_for_a_site_outside_the_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyError, match="site_c"):
        create_app(tmp_path / "m.sqlite", config(), {**KEYS, "site_c": "key-of-site-c-0123456789"})


def test_without_keys_the_service_is_read_only(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "m.sqlite", config(), None)) as c:
        r = c.post("/sites/site_a/reference", json={"outputs": reference_outputs(seed=0)})
        assert r.status_code == 401
        assert "no API keys configured" in r.json()["error"]
        assert c.get("/").status_code == 200
        assert [row["site"] for row in c.get("/sites").json()["sites"]] == ["site_a", "site_b"]


def test_hashed_keys_authorise_like_plain_ones(tmp_path: Path) -> None:
    hashed = {site: hash_api_key(key) for site, key in KEYS.items()}
    with TestClient(create_app(tmp_path / "m.sqlite", config(), hashed)) as c:
        r = c.post(
            "/sites/site_b/reference",
            json={"outputs": reference_outputs(seed=0)},
            headers=headers("site_b"),
        )
        assert r.status_code == 201


def test_a_new_app_on_the_same_database_continues_the_history(tmp_path: Path) -> None:
    db = tmp_path / "monitor.sqlite"
    with TestClient(create_app(db, config(), KEYS)) as c:
        _with_references(c)
        for i in range(3):
            c.post(
                "/sites/site_b/batches", json=batch_body(f"b{i}", seed=i), headers=headers("site_b")
            )
    with TestClient(create_app(db, config(), KEYS)) as c:
        again = c.post(
            "/sites/site_b/batches", json=batch_body("b1", seed=1), headers=headers("site_b")
        )
        assert again.status_code == 200 and again.json()["duplicate"] is True
        new = c.post(
            "/sites/site_b/batches", json=batch_body("b3", seed=3), headers=headers("site_b")
        )
        assert new.status_code == 201
        ids = [r["batch_id"] for r in c.get("/sites/site_b/history").json()["reports"]]
        assert ids == ["b0", "b1", "b2", "b3"]


def test_config_reference_tables_are_loaded_at_start(tmp_path: Path) -> None:
    ref = reference_outputs(seed=4)
    pd.DataFrame({"site": "site_a", **ref}).to_csv(tmp_path / "ref_a.csv", index=False)
    cfg = config(references={"site_a": tmp_path / "ref_a.csv"})
    with TestClient(create_app(tmp_path / "m.sqlite", cfg, KEYS)) as c:
        sites = {row["site"]: row for row in c.get("/sites").json()["sites"]}
        assert sites["site_a"]["has_reference"] is True
        assert sites["site_b"]["has_reference"] is False
        body = {"batch_id": "b1", "outputs": batch_outputs(seed=8)}
        r = c.post("/sites/site_a/batches", json=body, headers=headers("site_a"))
        expected = stats.ks_2samp(ref["prob"], body["outputs"]["prob"]).statistic
        assert r.json()["statistic"] == pytest.approx(expected, abs=1e-12)


def test_a_shared_reference_table_serves_every_site(tmp_path: Path) -> None:
    frames = [
        pd.DataFrame({"site": site, **reference_outputs(seed=i, n=200)})
        for i, site in enumerate(KEYS)
    ]
    pd.concat(frames).to_csv(tmp_path / "refs.csv", index=False)
    cfg = config(references={"*": tmp_path / "refs.csv"})
    with TestClient(create_app(tmp_path / "m.sqlite", cfg, KEYS)) as c:
        store = c.app.state.monitor.store
        for i, site in enumerate(KEYS):
            expected = reference_outputs(seed=i, n=200)["prob"]
            np.testing.assert_allclose(store.load_reference(site)["prob"], expected)


def test_a_posted_reference_is_not_overwritten_by_the_config_at_restart(tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite"
    with TestClient(create_app(db, config(), KEYS)) as c:
        _with_references(c)
    pd.DataFrame(reference_outputs(seed=77, n=100)).to_csv(tmp_path / "other.csv", index=False)
    cfg = config(references={"site_a": tmp_path / "other.csv"})
    with TestClient(create_app(db, cfg, KEYS)) as c:
        kept = c.app.state.monitor.store.load_reference("site_a")["prob"]
        np.testing.assert_allclose(kept, reference_outputs(seed=0)["prob"])
