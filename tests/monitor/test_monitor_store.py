"""Store: atomic per-batch commits, idempotency, kill-and-restart losing or duplicating nothing.

The store tests run on SQLite and on PostgreSQL (``target`` / ``KINDS``; the PostgreSQL cases
skip unless ``MEDFLEET_TEST_POSTGRES_URL`` names a server).
"""

from __future__ import annotations

import runpy
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from store_targets import KINDS, store_target

from medfleet.monitor.agent import Coordinator
from medfleet.monitor.batches import OutputBatch
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.records import Alert, BatchReport
from medfleet.monitor.severity import Severity
from medfleet.monitor.store import AgentState, MemoryStore, MonitorStore, SQLiteStore
from medfleet.monitor.store_target import open_store


def _report(site="a", batch_id="1", drift=False):
    return BatchReport(
        site,
        batch_id,
        "2024-01-01T00:00:00",
        5,
        "site",
        "ks",
        0.1,
        0.5,
        Severity.mild if drift else Severity.none,
        drift,
        drift,
    )


@pytest.mark.parametrize("kind", [*KINDS, "memory"])
def test_store_protocol_roundtrip(tmp_path, kind):
    if kind == "memory":
        _roundtrip(MemoryStore())
    else:
        with store_target(kind, tmp_path) as where:
            _roundtrip(open_store(where))
            again = open_store(where)  # reopened: everything is still there
            assert [r.batch_id for r in again.history("a")] == ["1", "2"]
            assert again.history("a", limit=10**30)[0].batch_id == "1"
            again.close()


def _roundtrip(store):
    assert isinstance(store, MonitorStore)
    store.save_reference("b", {"prob": np.array([0.1, 0.2])})
    store.save_reference("a", {"prob": np.array([0.3])})
    state = AgentState({"k": 1}, {"w0/prob": np.arange(3.0)})
    alert = Alert("a", "1", "t", Severity.mild, "msg")
    assert store.commit_batch(_report(drift=True), state, alert)
    assert not store.commit_batch(_report(drift=False), AgentState({"k": 2}), None)
    assert store.get_report("a", "1").drift is True  # the first commit stands
    assert store.load_state("a").meta == {"k": 1}
    np.testing.assert_array_equal(store.load_state("a").arrays["w0/prob"], np.arange(3.0))
    assert store.commit_batch(_report(batch_id="2"), None)
    assert [r.batch_id for r in store.history("a")] == ["1", "2"]
    assert [r.batch_id for r in store.history("a", limit=1)] == ["2"]
    assert [a.message for a in store.alerts()] == ["msg"]
    assert store.alerts("b") == []
    assert store.sites() == ["a", "b"]
    assert store.reference_sites() == ["a", "b"]
    store.save_reference("a", {"prob": np.array([0.9])})  # new reference clears agent state
    assert store.load_state("a") is None
    store.close()


def test_sqlite_uses_wal_and_persists(tmp_path):
    path = tmp_path / "s.sqlite"
    store = SQLiteStore(path)
    report = _report()
    store.commit_batch(report, AgentState({"x": 1}))
    store.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    again = SQLiteStore(path)
    assert again.get_report("a", "1") == report
    assert again.load_state("a").meta == {"x": 1}


def test_failed_commit_leaves_nothing(target, monkeypatch):
    store = open_store(target)
    import medfleet.monitor.pgstore as pg_module
    import medfleet.monitor.store as store_module

    def boom(arrays):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_module, "outputs_to_bytes", boom)
    monkeypatch.setattr(pg_module, "outputs_to_bytes", boom)
    with pytest.raises(RuntimeError):
        store.commit_batch(_report(), AgentState({"x": 1}, {"a": np.zeros(1)}))
    assert store.get_report("a", "1") is None
    assert store.history("a") == []
    assert store.load_state("a") is None
    monkeypatch.undo()
    assert store.commit_batch(_report(), AgentState({"x": 1}, {"a": np.zeros(1)}))
    store.close()


def test_coordinator_failure_during_commit_keeps_agent_state(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    store = SQLiteStore(tmp_path / "s.sqlite")
    cfg = MonitorConfig(sites=["a"], scheme="adaptive", adaptive={"warmup": 0, "initial": "site"})
    coord = Coordinator(cfg, store)
    coord.set_reference("a", {"prob": rng.beta(2, 5, 500)})
    batch = OutputBatch("a", "1", 0, {"prob": rng.beta(2, 5, 200)})
    before = coord.agent("a").scheme.version

    def fail(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "commit_batch", fail)
    with pytest.raises(sqlite3.OperationalError):
        coord.process(batch)
    assert coord.agent("a").scheme.version == before  # not absorbed
    monkeypatch.undo()
    report = coord.process(batch)
    assert report.status == "ok" and coord.agent("a").scheme.version == before + 1


_WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from medfleet.monitor.agent import Coordinator
    from medfleet.monitor.batches import OutputBatch
    from medfleet.monitor.config import MonitorConfig
    from medfleet.monitor.store_target import open_store

    db, total, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    cfg = MonitorConfig(sites=["a", "b"], scheme="adaptive", tests=["ks", "psi"],
                        adaptive={"warmup": 2, "window": 3, "initial": "global"},
                        thresholds={"bootstrap": 50, "shift_bootstrap": 10})
    store = open_store(db)
    coord = Coordinator(cfg, store)
    if not store.reference_sites():
        rng = np.random.default_rng(0)
        coord.set_reference("a", {"prob": rng.beta(2, 5, 400)})
        coord.set_reference("b", {"prob": rng.beta(3, 4, 400)})
    for i in range(total):
        for site, (al, be) in (("a", (2, 5)), ("b", (3, 4))):
            rng = np.random.default_rng(1000 * i + (site == "b"))
            if site == "a" and i >= total // 2:
                al = 4
            batch = OutputBatch(site, f"{site}-{i:03d}", i * 3600, {"prob": rng.beta(al, be, 150)})
            report = coord.process(batch)
            print("accepted", site, batch.batch_id, flush=True)
            time.sleep(delay)
    store.close()
    print("done", flush=True)
    """
)


def _fingerprint(store):
    return {
        site: [
            (r.batch_id, r.status, r.drift, r.severity.value, r.alert, r.statistic, r.p_value)
            for r in store.history(site)
        ]
        for site in ("a", "b")
    }


@pytest.mark.parametrize("kind", KINDS)
def test_kill_and_restart_loses_and_duplicates_nothing(tmp_path, monkeypatch, kind):
    with (
        store_target(kind, tmp_path, "clean.sqlite") as clean_db,
        store_target(kind, tmp_path, "killed.sqlite") as db,
    ):
        _kill_and_restart(tmp_path, monkeypatch, clean_db, db)


def _kill_and_restart(tmp_path, monkeypatch, clean_db, db):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    total = 14
    # Uninterrupted run (in this process): the expected final history.
    monkeypatch.setattr(sys, "argv", ["worker.py", str(clean_db), str(total), "0"])
    runpy.run_path(str(script), run_name="__main__")
    # Interrupted run: SIGKILL after some batches were accepted, then restart.
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(total), "0.002"],
        stdout=subprocess.PIPE,
        text=True,
    )
    accepted = []
    deadline = time.monotonic() + 120
    while len(accepted) < 9 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("accepted"):
            accepted.append(tuple(line.split()[1:]))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert len(accepted) == 9, "worker did not reach the kill point"
    store = open_store(db)
    stored = {(r.site, r.batch_id) for s in ("a", "b") for r in store.history(s)}
    assert set(accepted) <= stored  # nothing accepted was lost
    assert len(stored) < 2 * total  # it really was killed mid-stream
    store.close()
    out = subprocess.run(
        [sys.executable, str(script), str(db), str(total), "0"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip().endswith("done")
    killed, clean = open_store(db), open_store(clean_db)
    for site in ("a", "b"):
        ids = [r.batch_id for r in killed.history(site)]
        assert len(ids) == len(set(ids)) == total  # no duplicates, none missing
    assert _fingerprint(killed) == _fingerprint(clean)  # state restored exactly
    assert [(a.site, a.batch_id) for a in killed.alerts()] == [
        (a.site, a.batch_id) for a in clean.alerts()
    ]
    assert any(r.drift for r in clean.history("a"))  # the scenario does drift
    killed.close()
    clean.close()


@pytest.mark.parametrize("kind", [*KINDS, "memory"])
def test_a_commit_from_a_stale_state_writes_nothing(tmp_path, kind):
    from medfleet.monitor.store import StaleStateError

    with store_target("sqlite" if kind == "memory" else kind, tmp_path) as where:
        store = MemoryStore() if kind == "memory" else open_store(where)
        assert store.state_revision("a") == (0, 0)
        store.save_reference("a", {"prob": np.array([0.3])})
        loaded = store.state_revision("a")
        assert loaded == (1, 1)
        assert store.commit_batch(_report(batch_id="1"), AgentState({"k": 1}), None, loaded)
        assert store.state_revision("a") == (2, 1)
        # A second writer still holding the state of revision (1, 1) is refused.
        with pytest.raises(StaleStateError, match="stale"):
            store.commit_batch(_report(batch_id="2"), AgentState({"k": 9}), None, loaded)
        assert store.get_report("a", "2") is None
        assert store.load_state("a").meta == {"k": 1}
        assert store.state_revision("a") == (2, 1)
        # A duplicate is answered as such even from a stale state.
        assert not store.commit_batch(_report(batch_id="1"), AgentState({"k": 9}), None, loaded)
        # A reference change elsewhere moves every site's revision on.
        store.save_reference("b", {"prob": np.array([0.4])})
        assert store.state_revision("a") == (2, 2)
        store.close()
