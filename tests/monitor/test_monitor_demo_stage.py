"""The demo's monitoring stage (three sites, one drifts)."""

from __future__ import annotations

import pytest

from medfleet.demo import DemoContext
from medfleet.monitor.demo_stage import MonitorStage
from medfleet.monitor.store import SQLiteStore


@pytest.mark.slow
def test_monitor_stage_detects_the_drifting_site(tmp_path):
    calls = []
    result = MonitorStage().run(DemoContext(out=tmp_path, quick=True), lambda d, t: calls.append(d))
    assert result["drift_detected"] is True
    assert calls and calls[-1] > 0
    rows = {r["scheme"]: r for r in result["table"]}
    assert rows["site"]["f1"] > rows["centralised"]["f1"]
    store = SQLiteStore(result["db"])
    assert store.sites() == ["site_a", "site_b", "site_c"]
    assert any(r.drift for r in store.history("site_c"))
    assert (tmp_path / "monitor" / "report.html").is_file()
