"""Reference schemes: fixed, production-only, adaptive (never absorbing drifted batches)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfleet.monitor.agent import Coordinator
from medfleet.monitor.batches import OutputBatch
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.references import (
    AdaptiveReference,
    FixedReference,
    ProductionReference,
    ReferenceScheme,
)
from medfleet.monitor.store import MemoryStore


def _batch(tag: float, n: int = 5) -> dict[str, np.ndarray]:
    return {"prob": np.full(n, tag)}


@given(
    flags=st.lists(st.booleans(), min_size=1, max_size=25),
    mode=st.sampled_from(["window", "exponential"]),
    warmup=st.integers(0, 3),
    window=st.integers(1, 4),
)
@settings(max_examples=120, deadline=None)
def test_adaptive_never_absorbs_drifted_batches(flags, mode, warmup, window):
    ref: ReferenceScheme = AdaptiveReference(
        _batch(-1.0, 20), mode=mode, window=window, decay=0.5, warmup=warmup
    )
    absorbed_tags = {-1.0}
    for i, drift in enumerate(flags):
        tag = float(i)
        ref = ref.observe(_batch(tag), drift=drift)
        if i < warmup or not drift:
            absorbed_tags.add(tag)
        values = set(np.unique(ref.current()["prob"]).tolist())
        assert values <= absorbed_tags  # only initial, warm-up or stable batches
        drifted = {float(j) for j, d in enumerate(flags[: i + 1]) if d and j >= warmup}
        assert not values & drifted


def test_window_keeps_last_stable_batches_and_drops_initial():
    ref = AdaptiveReference(_batch(-1.0), mode="window", window=2, warmup=0)
    assert set(ref.current()["prob"]) == {-1.0}
    for tag in (1.0, 2.0, 3.0):
        ref = ref.observe(_batch(tag), drift=False)
    assert sorted(set(ref.current()["prob"])) == [2.0, 3.0]
    assert ref.version == 3


def test_exponential_weights_decay_geometrically():
    ref = AdaptiveReference(None, mode="exponential", decay=0.5, warmup=1, seed=0)
    ref = ref.observe(_batch(0.0, 1000), drift=True)  # warm-up: absorbed regardless
    assert ref.deciding()
    for tag in (1.0, 2.0, 3.0):
        ref = ref.observe(_batch(tag, 1000), drift=False)
    values = ref.current()["prob"]
    shares = [np.mean(values == t) for t in (0.0, 1.0, 2.0, 3.0)]
    assert shares == pytest.approx([0.125, 0.125, 0.25, 0.5], abs=0.03)


def test_observe_leaves_the_old_scheme_untouched():
    ref = AdaptiveReference(_batch(-1.0), warmup=0)
    new = ref.observe(_batch(5.0), drift=False)
    assert set(ref.current()["prob"]) == {-1.0}
    assert set(new.current()["prob"]) == {5.0}


def test_production_reference_forms_then_freezes():
    ref = ProductionReference(batches=2)
    assert ref.current() is None and not ref.deciding()
    ref = ref.observe(_batch(1.0), False).observe(_batch(2.0), True)
    assert sorted(set(ref.current()["prob"])) == [1.0, 2.0]
    assert (
        ref.observe(_batch(3.0), False).current()["prob"].tolist() == ref.current()["prob"].tolist()
    )


@pytest.mark.parametrize(
    "scheme",
    [
        FixedReference(_batch(0.5)),
        ProductionReference(2).observe(_batch(1.0), False),
        AdaptiveReference(_batch(0.1), mode="window", window=2, warmup=1).observe(
            _batch(1.0), False
        ),
        AdaptiveReference(_batch(0.1), mode="exponential", warmup=1)
        .observe(_batch(1.0), False)
        .observe(_batch(2.0), False),
    ],
)
def test_state_roundtrip(scheme):
    meta, arrays = scheme.state()
    initial = (
        scheme.reference if isinstance(scheme, FixedReference) else getattr(scheme, "initial", None)
    )
    again = ReferenceScheme.from_state(meta, arrays, initial)
    a, b = scheme.current(), again.current()
    assert (a is None) == (b is None)
    if a is not None:
        np.testing.assert_array_equal(a["prob"], b["prob"])
    assert again.version == scheme.version


def test_coordinator_adaptive_keeps_drifted_batch_out_of_reference():
    rng = np.random.default_rng(0)
    cfg = MonitorConfig(
        sites=["a"], scheme="adaptive", adaptive={"warmup": 0, "initial": "site", "window": 3}
    )
    coord = Coordinator(cfg, MemoryStore())
    coord.set_reference("a", {"prob": rng.beta(2, 5, 800)})
    stable = coord.process(OutputBatch("a", "1", 0, {"prob": rng.beta(2, 5, 300)}))
    assert not stable.drift
    before = coord.agent("a").scheme.current()["prob"].copy()
    drifted = coord.process(OutputBatch("a", "2", 0, {"prob": rng.beta(6, 2, 300)}))
    assert drifted.drift and drifted.severity.value == "severe"
    after = coord.agent("a").scheme.current()["prob"]
    np.testing.assert_array_equal(before, after)


def test_global_scheme_pools_every_site_reference():
    cfg = MonitorConfig(sites=["a", "b"], scheme="global")
    coord = Coordinator(cfg, MemoryStore())
    coord.set_reference("a", {"prob": np.full(10, 0.2)})
    coord.set_reference("b", {"prob": np.full(5, 0.8)})
    pooled = coord.agent("a").scheme.current()["prob"]
    assert sorted(pooled.tolist()) == [0.2] * 10 + [0.8] * 5
