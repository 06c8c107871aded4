"""Property-based fuzzing of the monitor's batch parser: parse, or refuse with medfleet's error.

Whatever JSON-like value a client sends - nested dicts and lists, floats including NaN,
infinities and huge values, huge integers, text, booleans, nulls - the parser
(:mod:`medfleet.monitor.payloads`, :func:`~medfleet.monitor.batches.validate_outputs`) either
returns a batch or raises a :class:`~medfleet.errors.MedfleetError` naming the field; any
other exception would be an HTTP 500. What parses is then judged by a coordinator, which
also may only refuse with a MedfleetError.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medfleet.errors import MedfleetError
from medfleet.monitor.agent import Coordinator
from medfleet.monitor.batches import OutputBatch, validate_outputs
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.payloads import parse_batch, parse_json, parse_reference
from medfleet.monitor.store import MemoryStore

NAMES = ["prob", "pred_class", "risk", "emb", "prob_x", "label", "", "x" * 120]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.sampled_from([0, 1, 2, 1e30, -1, 2**31, 2**63, 1e308, -0.0, 5e-324]),
    st.text(max_size=12),
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)), inner, max_size=4)
    ),
    max_leaves=30,
)
rows = st.one_of(
    st.lists(scalars, min_size=0, max_size=8),
    st.lists(st.lists(scalars, min_size=1, max_size=3), min_size=1, max_size=6),
    st.lists(st.lists(st.floats(0, 1), min_size=2, max_size=2), min_size=1, max_size=6),
    json_like,
)
outputs = st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=6)), rows, max_size=3)
bodies = st.one_of(
    json_like,
    st.fixed_dictionaries(
        {"batch_id": json_like, "outputs": outputs},
        optional={"timestamp": json_like, "extra": json_like},
    ),
    st.fixed_dictionaries(
        {"batch_id": st.one_of(st.text(max_size=8), st.integers()), "outputs": outputs},
        optional={"timestamp": st.one_of(scalars, st.text(max_size=30))},
    ),
)


def _parse_or_refuse(action, *args):
    try:
        return action(*args)
    except MedfleetError as err:
        assert str(err)  # the refusal says something
        return None


@settings(max_examples=200)
@given(body=bodies)
def test_batch_bodies_parse_or_raise_medfleet_errors(body) -> None:
    batch = _parse_or_refuse(parse_batch, body, "site_a")
    if batch is not None:
        assert isinstance(batch, OutputBatch) and batch.n >= 1
        for arr in batch.outputs.values():
            assert arr.ndim in (1, 2) and np.isfinite(arr).all()
    _parse_or_refuse(parse_reference, body, "site_a")


@settings(max_examples=200)
@given(values=outputs)
def test_outputs_validate_or_raise_medfleet_errors(values) -> None:
    arrays = _parse_or_refuse(validate_outputs, values)
    if arrays is not None:
        assert {a.shape[0] for a in arrays.values()} == {len(next(iter(values.values())))}


@settings(max_examples=200)
@given(raw=st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode)))
def test_raw_bodies_decode_or_raise_medfleet_errors(raw: bytes) -> None:
    _parse_or_refuse(parse_json, raw)


@settings(max_examples=100)
@given(body=bodies)
def test_json_text_of_any_body_parses_the_same_way(body) -> None:
    try:
        raw = json.dumps(body).encode()
    except (ValueError, TypeError):  # not representable (e.g. an int beyond the digit limit)
        return
    _parse_or_refuse(lambda: parse_batch(_parse_or_refuse(parse_json, raw), "site_a"))


def _coordinator() -> Coordinator:
    rng = np.random.default_rng(0)
    cfg = MonitorConfig(
        sites=["site_a"],
        scheme="site",
        tests=["ks", "chi2"],
        thresholds={"bootstrap": 20, "shift_bootstrap": 5},
    )
    coord = Coordinator(cfg, MemoryStore())
    prob = rng.beta(2, 5, 200)
    coord.set_reference("site_a", {"prob": prob, "pred_class": (prob > 0.5).astype(int)})
    return coord


COORDINATOR = _coordinator()


@settings(max_examples=100)
@given(body=bodies, n=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_what_parses_is_judged_or_refused_with_medfleet_errors(body, n, seed) -> None:
    batch = _parse_or_refuse(parse_batch, body, "site_a")
    if batch is None:  # also try a batch of the right names with fuzzed values
        rng = np.random.default_rng(seed)
        prob = rng.beta(2, 5, n)
        body = {"batch_id": f"g{seed}", "outputs": {"prob": prob.tolist(), "pred_class": body}}
        batch = _parse_or_refuse(parse_batch, body, "site_a")
    if batch is not None:
        _parse_or_refuse(COORDINATOR.process, batch)
