"""What a batch must be: the reference's outputs exactly, numbers not booleans, labels in range.

Checked through the validator, the coordinator and the HTTP service: every refusal names the
field and stores nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from monitor_service_helpers import KEYS, batch_body, config, headers

from medfleet.monitor.agent import Coordinator
from medfleet.monitor.batches import MAX_CLASS_LABEL, BatchError, OutputBatch, validate_outputs
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.service import create_app
from medfleet.monitor.store import MemoryStore


def _refuse(outputs: dict, field: str, *fragments: str) -> BatchError:
    with pytest.raises(BatchError) as info:
        validate_outputs(outputs, site="a", batch_id="b")
    assert info.value.field == field
    for fragment in fragments:
        assert fragment in str(info.value)
    return info.value


@pytest.mark.parametrize(
    "values",
    [[True, False, True], [0.2, True, 0.4], [[0.4, 0.6], [True, False]], np.array([True, False])],
    ids=["all-bools", "one-bool", "bool-row", "numpy-bools"],
)
def test_booleans_are_not_probabilities(values) -> None:
    _refuse({"prob": values}, "prob", "true/false")


def test_booleans_are_not_class_labels_or_scores() -> None:
    _refuse({"pred_class": [0, True]}, "pred_class", "true/false")
    _refuse({"risk": [1.5, False]}, "risk", "true/false")


@pytest.mark.parametrize(
    ("label", "fragment"),
    [(1e30, "1e+30"), (-1, "-1"), (float(MAX_CLASS_LABEL) + 1, "2.14748e+09"), (2**70, "1.18")],
    ids=["1e30", "negative", "max-plus-one", "huge-int"],
)
def test_class_labels_outside_the_valid_range_are_refused(label, fragment) -> None:
    err = _refuse({"pred_class": [0, 1, label]}, "pred_class", f"[0, {MAX_CLASS_LABEL}]", "row 2")
    assert fragment in str(err)


def test_the_largest_class_label_is_accepted() -> None:
    out = validate_outputs({"pred_class": [0, MAX_CLASS_LABEL]})
    assert out["pred_class"].tolist() == [0, MAX_CLASS_LABEL]


def test_class_probability_rows_must_sum_to_one() -> None:
    _refuse({"prob": [[0.2, 0.8], [0.5, 0.6]]}, "prob", "sum to 1", "row 1")
    ok = validate_outputs({"prob": [[0.2, 0.8], [0.3334, 0.6666]]})
    assert ok["prob"].shape == (2, 2)


def _production_coordinator() -> Coordinator:
    cfg = MonitorConfig(sites=["a"], scheme="production", production={"batches": 2})
    return Coordinator(cfg, MemoryStore())


def _outputs(seed: int, names=("prob", "pred_class")) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    prob = rng.beta(2, 5, 80)
    full = {"prob": prob, "pred_class": (prob > 0.5).astype(int), "risk": rng.normal(size=80)}
    return {name: full[name] for name in names}


def test_a_batch_lacking_an_output_of_the_forming_reference_is_refused() -> None:
    coord = _production_coordinator()
    coord.process(OutputBatch("a", "1", 0, _outputs(1)))
    with pytest.raises(BatchError) as info:
        coord.process(OutputBatch("a", "2", 0, _outputs(2, names=("prob",))))
    assert info.value.field == "pred_class" and "missing" in str(info.value)
    assert [r.batch_id for r in coord.store.history("a")] == ["1"]
    # The reference forms normally from batches that carry every output.
    for i in (2, 3, 4):
        coord.process(OutputBatch("a", str(i), 0, _outputs(i)))
    assert coord.store.history("a")[-1].status == "ok"


def test_an_output_the_reference_lacks_is_refused_not_dropped() -> None:
    coord = Coordinator(MonitorConfig(sites=["a"], scheme="site"), MemoryStore())
    coord.set_reference("a", _outputs(0))
    with pytest.raises(BatchError) as info:
        coord.process(OutputBatch("a", "1", 0, _outputs(1, names=("prob", "pred_class", "risk"))))
    assert info.value.field == "risk" and "not in the reference" in str(info.value)
    assert coord.store.history("a") == []


def _post(referenced_client: TestClient, body: dict):
    return referenced_client.post(
        "/sites/site_a/batches",
        content=json.dumps(body).encode(),
        headers={**headers("site_a"), "Content-Type": "application/json"},
    )


def _assert_422(r, field: str, *fragments: str) -> None:
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    for fragment in fragments:
        assert fragment in r.json()["error"]


def test_http_boolean_probabilities_are_422(referenced_client: TestClient) -> None:
    body = batch_body("b1", seed=1)
    body["outputs"]["prob"] = [True, False] * 75
    _assert_422(_post(referenced_client, body), "prob", "true/false")


def test_http_class_label_1e30_is_422_with_the_range(referenced_client: TestClient) -> None:
    body = batch_body("b1", seed=1)
    body["outputs"]["pred_class"][0] = 1e30
    _assert_422(_post(referenced_client, body), "pred_class", f"[0, {MAX_CLASS_LABEL}]")


def test_http_missing_output_under_a_forming_reference_is_422(tmp_path: Path) -> None:
    app = create_app(tmp_path / "m.sqlite", config(scheme="production"), KEYS)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert _post(c, batch_body("b1", seed=1)).status_code == 201
        body = batch_body("b2", seed=2)
        del body["outputs"]["pred_class"]
        _assert_422(_post(c, body), "pred_class", "missing")
        assert [r["batch_id"] for r in c.get("/sites/site_a/history").json()["reports"]] == ["b1"]


def test_http_extra_output_is_422(referenced_client: TestClient) -> None:
    body = batch_body("b1", seed=1)
    body["outputs"]["risk"] = [0.0] * 150
    _assert_422(_post(referenced_client, body), "risk", "not in the reference")


def test_http_same_batch_id_with_other_outputs_is_409(referenced_client: TestClient) -> None:
    assert _post(referenced_client, batch_body("b1", seed=1)).status_code == 201
    again = _post(referenced_client, batch_body("b1", seed=1))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    other = batch_body("b1", seed=2)
    r = _post(referenced_client, other)
    assert r.status_code == 409, r.text
    assert r.json()["field"] == "batch_id"
    assert "different outputs" in r.json()["error"]
    assert len(referenced_client.get("/sites/site_a/history").json()["reports"]) == 1
