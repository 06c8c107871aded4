"""Site agents and the coordinator: decisions, corrections, alerts, idempotency, restore."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medfleet.monitor.agent import BatchReport, Coordinator, SiteAgent, deciding_test
from medfleet.monitor.batches import OutputBatch, OutputKind
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.references import FixedReference
from medfleet.monitor.store import MemoryStore, SQLiteStore


def _outputs(rng, n, a=2.0, b=5.0):
    p = rng.beta(a, b, n)
    return {"prob": np.column_stack([p, 1 - p]), "pred_class": (p > 0.5).astype(int)}


def _coord(store=None, **cfg):
    rng = np.random.default_rng(0)
    config = MonitorConfig(sites=["a", "b"], **({"scheme": "site"} | cfg))
    coord = Coordinator(config, store or MemoryStore())
    coord.set_reference("a", _outputs(rng, 1000))
    coord.set_reference("b", _outputs(rng, 1000, 3, 4))
    return coord


def test_report_columns_match_independent_tests():
    coord = _coord(tests=["ks", "wasserstein", "chi2"])
    rng = np.random.default_rng(5)
    batch = OutputBatch("a", "1", "2024-01-01", _outputs(rng, 300, 2.4, 5))
    report = coord.process(batch)
    ref = coord.store.load_reference("a")
    raw = []
    for j in range(2):
        expected = stats.ks_2samp(ref["prob"][:, j], batch.outputs["prob"][:, j], method="asymp")
        col = report.columns[f"prob[{j}]"]
        assert col["test"] == "ks"
        assert col["statistic"] == pytest.approx(expected.statistic)
        assert col["raw_p_value"] == pytest.approx(expected.pvalue)
        assert report.statistics["wasserstein"][f"prob[{j}]"] == pytest.approx(
            stats.wasserstein_distance(ref["prob"][:, j], batch.outputs["prob"][:, j])
        )
        raw.append(expected.pvalue)
    chi = report.columns["pred_class"]
    assert chi["test"] == "chi2"
    raw.append(chi["raw_p_value"])
    # Holm across the three columns.
    order = np.argsort(raw)
    holm = np.maximum.accumulate(np.array(raw)[order] * (3 - np.arange(3)))
    adjusted = np.empty(3)
    adjusted[order] = np.minimum(holm, 1)
    got = [report.columns[c]["p_value"] for c in ("prob[0]", "prob[1]", "pred_class")]
    assert got == pytest.approx(adjusted.tolist())
    assert report.p_value == pytest.approx(min(got))
    assert report.lead == "prob[0]" and report.statistic == report.columns["prob[0]"]["statistic"]
    assert set(report.thresholds) == {"drift", "moderate", "severe"}


def test_reprocessing_is_idempotent_and_changes_nothing():
    coord = _coord(scheme="adaptive", adaptive={"warmup": 0, "initial": "site"})
    rng = np.random.default_rng(1)
    batch = OutputBatch("a", "x", 0, _outputs(rng, 200))
    first = coord.process(batch)
    version = coord.agent("a").scheme.version
    other = OutputBatch("a", "x", 0, _outputs(rng, 200, 6, 1))  # same id, different content
    again = coord.process(other)
    assert again == first
    assert coord.agent("a").scheme.version == version
    assert len(coord.store.history("a")) == 1


def test_alerts_follow_consecutive_rule_and_escalation():
    coord = _coord(alert={"consecutive": 2})
    rng = np.random.default_rng(2)
    plan = [(2, 5), (2.3, 5), (2.3, 5), (7, 1), (2, 5), (7, 1), (7, 1)]
    reports = [
        coord.process(OutputBatch("a", str(i), i, _outputs(rng, 400, a, b)))
        for i, (a, b) in enumerate(plan)
    ]
    drift = [r.drift for r in reports]
    alert = [r.alert for r in reports]
    assert drift == [False, True, True, True, False, True, True]
    # second drifted batch in a row alerts; escalation to severe alerts again; the episode
    # ends with a stable batch; a new episode needs two drifted batches again.
    assert alert == [False, False, True, True, False, False, True]
    assert [a.batch_id for a in coord.alerts("a")] == ["2", "3", "6"]
    assert coord.alerts("a")[1].severity.value == "severe"


def test_production_scheme_warms_up_then_decides():
    coord = _coord(scheme="production", production={"batches": 2})
    rng = np.random.default_rng(3)
    r = [coord.process(OutputBatch("b", str(i), i, _outputs(rng, 200))) for i in range(4)]
    assert [x.status for x in r] == ["warmup", "warmup", "ok", "ok"]
    assert r[0].statistic is None and r[2].statistic is not None


def test_restored_coordinator_continues_exactly(tmp_path):
    rng = np.random.default_rng(4)
    batches = [OutputBatch("a", str(i), i, _outputs(rng, 150, 2 + (i >= 5), 5)) for i in range(9)]
    cfg = {
        "scheme": "adaptive",
        "adaptive": {"warmup": 1, "window": 2, "mode": "exponential"},
        "tests": ["psi", "chi2"],
        "thresholds": {"bootstrap": 60, "recalibrate_every": 2},
    }
    straight = _coord(**cfg)
    expected = [straight.process(b) for b in batches]
    path = tmp_path / "m.sqlite"
    first = _coord(SQLiteStore(path), **cfg)
    for b in batches[:4]:
        first.process(b)
    first.store.close()
    second = Coordinator(first.config, SQLiteStore(path))
    got = [second.process(b) for b in batches]

    def key(r: BatchReport):
        return (r.status, r.drift, r.severity, r.alert, r.statistic, r.p_value)

    assert [key(r) for r in got] == [key(r) for r in expected]
    assert len(second.store.history("a")) == 9


def test_embeddings_are_tested_with_mmd():
    rng = np.random.default_rng(6)
    config = MonitorConfig(scheme="site", tests=["ks", "mmd_perm"])
    agent = SiteAgent("s", config, FixedReference({"embedding": rng.normal(size=(400, 4))}))
    calm = agent.process(OutputBatch("s", "1", 0, {"embedding": rng.normal(size=(200, 4))}))
    moved = agent.process(OutputBatch("s", "2", 0, {"embedding": rng.normal(size=(200, 4)) + 0.6}))
    assert calm.columns["embedding"]["test"] == "mmd_perm" and not calm.drift
    assert moved.drift and moved.severity.value == "mild"


def test_deciding_test_defaults():
    assert deciding_test(OutputKind.probability, ["chi2", "psi"]) == "psi"
    assert deciding_test(OutputKind.label, ["ks"]) == "chi2"
    assert deciding_test(OutputKind.embedding, ["ks"]) == "mmd_linear"


def test_summary_and_store_queries():
    coord = _coord()
    rng = np.random.default_rng(7)
    coord.process(OutputBatch("a", "1", 0, _outputs(rng, 200)))
    coord.process(OutputBatch("a", "2", 0, _outputs(rng, 200, 8, 1)))
    summary = coord.summary()
    assert summary["a"] == {"batches": 2, "drifted": 1, "alerts": 1, "latest_severity": "severe"}
    assert summary["b"]["batches"] == 0
    assert coord.store.sites() == ["a", "b"]
    assert BatchReport.from_dict(coord.store.history("a")[1].to_dict()).severity.value == "severe"
