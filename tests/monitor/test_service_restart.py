"""Kill-and-restart: a live ``medfleet monitor serve`` killed mid-stream loses no accepted batch.

Runs on SQLite and on PostgreSQL (when ``MEDFLEET_TEST_POSTGRES_URL`` names a server).

A client posts batches of two sites as fast as the server takes them; after a number have
been acknowledged the server gets SIGKILL (no shutdown of any kind) while requests are in
flight. Restarted on the same database, the server must hold every batch that got a 2xx
exactly once and nothing twice; re-sending every batch (what a client does with the ones
that got no answer) must store each missing one once and duplicate none. Every stored
statistic must equal SciPy's two-sample KS statistic of that batch against the reference,
so no report was half-written or computed from a wrong state.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from monitor_service_helpers import (
    KEYS,
    batch_body,
    free_port,
    headers,
    post_references,
    reference_outputs,
    start_server,
    stop_server,
    write_keys_and_config,
)
from scipy import stats

N_BATCHES = 30  # per site
KILL_AFTER = 16  # acknowledged batches before the kill


def _all_batches() -> list[tuple[str, dict]]:
    batches = []
    for i in range(N_BATCHES):
        for site in KEYS:
            shift = 3.0 if site == "site_b" and i >= N_BATCHES // 2 else 0.0
            body = batch_body(f"b{i:03d}", seed=1000 * len(site) + i, shift=shift, day=1 + i % 28)
            batches.append((site, body))
    return batches


def _poster(
    url: str,
    batches: list[tuple[str, dict]],
    acked: list[tuple[str, str]],
    failed: list[str],
    stop: threading.Event,
) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for site, body in batches:
            if stop.is_set():
                return
            try:
                r = http.post(f"/sites/{site}/batches", json=body, headers=headers(site))
            except httpx.HTTPError:
                failed.append(body["batch_id"])  # the server is gone: not acknowledged
                return
            if 200 <= r.status_code < 300:
                acked.append((site, body["batch_id"]))
            else:
                raise AssertionError(f"unexpected {r.status_code}: {r.text}")


def _histories(url: str) -> dict[str, list[dict]]:
    return {
        site: httpx.get(f"{url}/sites/{site}/history", timeout=30).json()["reports"]
        for site in KEYS
    }


def test_killed_server_keeps_every_accepted_batch_exactly_once(tmp_path: Path, target: str) -> None:
    keys, cfg = write_keys_and_config(tmp_path)
    db = target  # an SQLite file, or a PostgreSQL URL (passed in MEDFLEET_MONITOR_DB)
    batches = _all_batches()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(db, keys, cfg, port)
    acked: list[tuple[str, str]] = []
    failed: list[str] = []
    stop = threading.Event()
    try:
        post_references(httpx, url, timeout=30)
        thread = threading.Thread(
            target=_poster, args=(url, batches, acked, failed, stop), daemon=True
        )
        thread.start()
        while len(acked) < KILL_AFTER and thread.is_alive():
            thread.join(timeout=0.01)
        assert len(acked) >= KILL_AFTER, "the client stopped before the kill"
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        thread.join(timeout=30)  # the client's next request fails, which ends it
    finally:
        stop.set()
        stop_server(server)
    assert server.returncode == -signal.SIGKILL
    assert len(acked) < len(batches), "every batch was acknowledged before the kill took effect"
    assert len(failed) == 1, "the kill did not cut the client's stream of requests"

    if "://" not in db:
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(db, keys, cfg, port)
    try:
        stored = _histories(url)
        counts = Counter((site, r["batch_id"]) for site in KEYS for r in stored[site])
        assert all(counts[key] == 1 for key in acked), "an acknowledged batch is missing"
        assert max(counts.values()) == 1, "a batch is stored twice"
        # At most the requests in flight at the kill were stored without an answer.
        assert len(counts) - len(acked) <= 2
        # Per site, the stored batches are the first ones sent, in order.
        for site in KEYS:
            ids = [r["batch_id"] for r in stored[site]]
            assert ids == [f"b{i:03d}" for i in range(len(ids))]

        # The client re-sends everything: stored ones come back as duplicates.
        answers = Counter()
        with httpx.Client(base_url=url, timeout=30) as http:
            for site, body in batches:
                r = http.post(f"/sites/{site}/batches", json=body, headers=headers(site))
                assert r.status_code in (200, 201), r.text
                duplicate = r.json()["duplicate"]
                assert duplicate == ((site, body["batch_id"]) in counts)
                answers[r.status_code] += 1
        assert answers[200] == len(counts)
        assert answers[201] == len(batches) - len(counts)

        final = _histories(url)
        bodies = {(site, body["batch_id"]): body for site, body in batches}
        for i, site in enumerate(KEYS):
            ids = [r["batch_id"] for r in final[site]]
            assert ids == [f"b{j:03d}" for j in range(N_BATCHES)]
            reference = np.array(reference_outputs(seed=i)["prob"])
            for report in final[site]:
                prob = bodies[(site, report["batch_id"])]["outputs"]["prob"]
                expected = stats.ks_2samp(reference, prob).statistic
                assert report["statistic"] == pytest.approx(expected, abs=1e-12)
        severities = [r["severity"] for r in final["site_b"][N_BATCHES // 2 :]]
        assert severities.count("severe") >= len(severities) - 1
    finally:
        stop_server(server)
