"""Two service processes on one store race for the same batch ids: the answer is exact.

Each of two spawned processes builds its own app (store connection, coordinator, agents) on
the same SQLite file or PostgreSQL schema and posts the same batches at the same moment
(a barrier per batch). For every batch exactly one process must answer 201 (new) and the
other 200 (the stored report, ``duplicate: true``), the store must hold the batch once, and
both answers must carry the same statistic.
"""

from __future__ import annotations

import multiprocessing
from collections import defaultdict

import numpy as np
import pytest
from concurrency_workers import post_same_batches
from fastapi.testclient import TestClient
from monitor_service_helpers import (
    KEYS,
    batch_body,
    config,
    post_references,
    reference_outputs,
)
from scipy import stats

from medfleet.monitor.service import create_app

N_BATCHES = 10


def _set_references(target: str) -> None:
    with TestClient(create_app(target, config(), KEYS)) as client:
        post_references(client)


def _race(worker, target: str) -> dict:
    """Two processes start ``worker`` at one barrier; their answers by worker number."""
    _set_references(target)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=worker, args=(target, N_BATCHES, barrier, results, w)) for w in range(2)
    ]
    for proc in workers:
        proc.start()
    answers = dict(results.get(timeout=300) for _ in workers)
    for proc in workers:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return answers


def test_racing_processes_get_exactly_one_201_per_batch(target: str) -> None:
    answers = _race(post_same_batches, target)
    assert all(isinstance(a, list) for a in answers.values()), answers
    per_batch: dict[int, list[tuple[int, bool, float]]] = defaultdict(list)
    for worker_answers in answers.values():
        for i, status, duplicate, statistic in worker_answers:
            per_batch[i].append((status, duplicate, statistic))
    assert sorted(per_batch) == list(range(N_BATCHES))
    for i, got in per_batch.items():
        assert sorted((s, d) for s, d, _ in got) == [(200, True), (201, False)], (i, got)
        assert got[0][2] == got[1][2], f"batch {i}: the two answers differ"

    with TestClient(create_app(target, config(), KEYS)) as client:
        reports = client.get("/sites/site_a/history").json()["reports"]
    assert sorted(r["batch_id"] for r in reports) == [f"b{i:02d}" for i in range(N_BATCHES)]
    reference = np.array(reference_outputs(seed=0)["prob"])
    for report in reports:
        i = int(report["batch_id"][1:])
        prob = batch_body(report["batch_id"], seed=500 + i)["outputs"]["prob"]
        expected = stats.ks_2samp(reference, prob).statistic
        assert report["statistic"] == pytest.approx(expected, abs=1e-12)


def test_racing_processes_judge_every_batch_against_the_latest_state(target: str) -> None:
    """Processes posting different batches of one site never judge with a stale agent state.

    Under an adaptive reference each batch moves the reference; a process whose in-memory
    agent missed the other process's batches would judge against an old reference and
    overwrite the newer state. Every stored report must equal the report of a single
    coordinator fed the same batches in the order they were committed.
    """
    from concurrency_workers import ADAPTIVE, own_batch, post_own_batches

    from medfleet.monitor.agent import Coordinator
    from medfleet.monitor.batches import OutputBatch
    from medfleet.monitor.store import MemoryStore

    answers = _race(post_own_batches, target)
    for worker_answers in answers.values():
        assert isinstance(worker_answers, list), answers
        assert all(status == 201 for _, status, _ in worker_answers), worker_answers

    with TestClient(create_app(target, config(**ADAPTIVE), KEYS)) as client:
        stored = client.get("/sites/site_a/history").json()["reports"]
    assert len(stored) == 2 * N_BATCHES
    replay = Coordinator(config(**ADAPTIVE), MemoryStore())
    replay.set_reference("site_a", reference_outputs(seed=0))
    for report in stored:
        worker, i = (int(x) for x in report["batch_id"][1:].split("-"))
        body = own_batch(worker, i)
        batch = OutputBatch("site_a", body["batch_id"], body["timestamp"], body["outputs"])
        expected = replay.process(batch)
        got = (report["status"], report["statistic"], report["severity"])
        assert got == (expected.status, expected.statistic, expected.severity.value), (
            f"{report['batch_id']} was judged against a stale agent state"
        )


def test_a_lock_held_past_the_timeout_is_a_store_error_not_a_crash(tmp_path) -> None:
    """The service maps StoreError to 503; a busy SQLite must not surface as a raw error."""
    import sqlite3

    from medfleet.monitor.store import SQLiteStore, StoreError

    path = tmp_path / "m.sqlite"
    store = SQLiteStore(path, timeout=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="busy or unavailable"):
            store.save_reference("site_a", {"prob": np.array([[0.5, 0.5]])})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        store.close()
