"""The one JSON encoding of numbers: the policy, its inverse, and every artefact writer."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medfleet.utils.atomic import write_json_atomic
from medfleet.utils.jsonsafe import from_json_number, json_safe


def _strict(text: str) -> Any:
    """Parse JSON, refusing the non-standard NaN / Infinity tokens."""

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- the policy


def test_non_finite_floats():
    assert json_safe(math.nan) is None
    assert json_safe(math.inf) == "inf"
    assert json_safe(-math.inf) == "-inf"
    assert json_safe(np.float64("nan")) is None
    assert json_safe(np.float32("inf")) == "inf"
    assert json_safe(np.float16("-inf")) == "-inf"
    assert json_safe(0.25) == 0.25 and json_safe(-0.0) == 0.0


def test_numpy_scalars_become_python_values():
    values = [np.float32(0.5), np.int64(7), np.uint8(3), np.bool_(True), np.str_("a")]
    out = json_safe(values)
    assert out == [0.5, 7, 3, True, "a"]
    assert [type(v) for v in out] == [float, int, int, bool, str]


def test_nested_arrays_tuples_and_sets():
    data = {
        "grid": np.array([[1.0, np.nan], [np.inf, -np.inf]], dtype=np.float32),
        "ints": np.arange(3, dtype=np.int64),
        "scalar_array": np.array(2.5),
        "pair": (1, (np.int32(2), math.nan)),
        "set": {3, 1, 2},
        "mixed_set": frozenset({"a"}),
    }
    assert json_safe(data) == {
        "grid": [[1.0, None], ["inf", "-inf"]],
        "ints": [0, 1, 2],
        "scalar_array": 2.5,
        "pair": [1, [2, None]],
        "set": [1, 2, 3],
        "mixed_set": ["a"],
    }


def test_paths_and_keys_become_text():
    out = json_safe(
        {
            Path("runs") / "a": Path("runs") / "b.json",
            3: "int",
            1.5: "float",
            np.int64(4): "numpy int",
            True: "bool",
            None: "none",
            math.inf: "inf key",
        }
    )
    assert out == {
        str(Path("runs") / "a"): str(Path("runs") / "b.json"),
        "3": "int",
        "1.5": "float",
        "4": "numpy int",
        "true": "bool",
        "null": "none",
        "inf": "inf key",
    }


def test_output_is_strict_json_and_idempotent():
    data = {"a": [math.nan, math.inf, np.float32(-np.inf)], "b": {"c": np.array([1, 2])}}
    once = json_safe(data)
    assert json_safe(once) == once
    assert _strict(json.dumps(once, allow_nan=False)) == once
    assert data["a"][0] != data["a"][0]  # the input is left as it was


def test_write_json_atomic_applies_the_policy(tmp_path):
    path = write_json_atomic(
        tmp_path / "x.json",
        {"hd": math.inf, "dice": math.nan, "n": np.int64(3), "p": np.float32(0.5), "s": {2, 1}},
    )
    assert _strict(path.read_text()) == {"dice": None, "hd": "inf", "n": 3, "p": 0.5, "s": [1, 2]}


# ----------------------------------------------------------------------------- the inverse


@pytest.mark.parametrize("value", [0.0, -2.5, 3, 1e308, math.inf, -math.inf, math.nan])
def test_round_trip_through_strict_json(value):
    text = json.dumps(json_safe({"v": value}), allow_nan=False)
    back = from_json_number(_strict(text)["v"])
    assert isinstance(back, float)
    if math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value


def test_inverse_by_hand_and_refusals():
    assert from_json_number("inf") == math.inf
    assert from_json_number("-inf") == -math.inf
    assert math.isnan(from_json_number(None))
    assert from_json_number(np.int64(2)) == 2.0
    with pytest.raises(ValueError, match="not a number"):
        from_json_number("Infinity")
    with pytest.raises(TypeError):
        from_json_number(True)
    with pytest.raises(TypeError):
        from_json_number([1.0])


def test_evaluate_aggregate_re_exports_the_one_function():
    from medfleet.evaluate.runner import aggregate

    assert aggregate.json_safe is json_safe


# ----------------------------------------------------------------------------- writers


def _csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_evaluation_summary_writes_inf_as_text(tmp_path):
    from medfleet.evaluate.runner import EvaluationConfig, run_evaluation

    gt = _csv(
        tmp_path / "gt.csv", [{"case_id": c, "value": 100.0 + i} for i, c in enumerate("abc")]
    )
    pred = _csv(tmp_path / "pred.csv", [{"case_id": "a", "value": 101.0}])
    run_evaluation(
        EvaluationConfig("regression", pred, gt, tmp_path / "out", allow_missing=True, report=False)
    )
    summary = _strict((tmp_path / "out" / "summary.json").read_text())
    assert summary["dataset"]["mae"] == "inf"
    assert summary["metrics"]["all"]["abs_error"]["mean"] == "inf"
    assert from_json_number(summary["dataset"]["mae"]) == math.inf


def test_transfer_json_writes_inf_as_text(tmp_path):
    from medfleet.tasks import Manifest, Site, TaskSpec
    from medfleet.train.transfer import analyse_transfer, write_transfer

    manifest = Manifest(
        name="m",
        sites=[Site(name="a")],
        tasks=[TaskSpec(name="hc", type="regression", table="h.csv", unit="mm", group="ob")],
    )

    def table(name: str, errors: list[Any]) -> dict[str, Path]:
        rows = [{"case_id": f"h{i}", "abs_error": e} for i, e in enumerate(errors)]
        return {"hc": _csv(tmp_path / name / "hc.csv", rows)}

    # a task-specific MAE of 0 leaves the relative delta undefined (NaN)
    cases = {"task-specific": table("ts", [0.0, 0.0]), "unified": table("u", [1.0, 3.0])}
    costs = {
        "task-specific": {"models": 1, "parameters": 10, "train_seconds": 1.0,
                          "inference_s_per_image": 0.1},
        "unified": {"models": 1, "parameters": np.int64(10), "train_seconds": math.inf,
                    "inference_s_per_image": np.float32(0.5)},
    }  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        analysis = analyse_transfer(manifest, cases, costs=costs, n_resamples=20)
        files = write_transfer(analysis, tmp_path / "out")
    data = _strict(files["transfer_json"].read_text())
    row = next(r for r in data["rows"] if r["level"] == "task")
    assert row["m_specific"] == 0.0 and row["delta"] is None
    unified = next(c for c in data["costs"] if c["paradigm"] == "unified")
    assert unified["train_seconds"] == "inf"
    assert unified["parameters"] == 10 and unified["inference_s_per_image"] == 0.5


def test_federated_json_writes_inf_as_text(tmp_path):
    from medfleet.federated.results import write_results

    rounds = [
        {
            "round": 1,
            "clients": {"a": {"status": "ok", "train_loss": math.nan, "bytes_sent": 1}},
            "metrics": {"a": {"seg": {"hd": math.inf, "dice": np.float32(0.5)}}},
        }
    ]
    extra = {"privacy": {"epsilon": math.inf}}
    path = write_results(tmp_path, "fedavg", {}, ["a"], rounds, "finished", extra)
    data = _strict(path.read_text())
    assert data["rounds"][0]["metrics"]["a"]["seg"] == {"hd": "inf", "dice": 0.5}
    assert data["rounds"][0]["clients"]["a"]["train_loss"] is None
    assert data["privacy"]["epsilon"] == "inf"


def test_compare_json_writes_inf_as_text(tmp_path):
    from medfleet.evaluate.compare import Comparison, write_comparison

    row = {
        "group": "all",
        "metric": "hd",
        "n": 2,
        "n_dropped": 1,
        "mean_a": math.inf,
        "mean_b": 3.0,
        "difference": -math.inf,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "test": "-",
        "statistic": math.nan,
        "p_value": math.nan,
        "p_holm": math.nan,
        "higher_is_better": False,
        "better": "-",
    }
    comparison = Comparison(tmp_path / "a", tmp_path / "b", "segmentation", [row])
    json_path, _ = write_comparison(comparison, tmp_path / "cmp")
    written = _strict(json_path.read_text())["comparisons"][0]
    assert written["mean_a"] == "inf" and written["difference"] == "-inf"
    assert written["p_value"] is None


def test_monitor_service_answers_inf_as_text():
    from fastapi.testclient import TestClient

    from medfleet.monitor.config import MonitorConfig
    from medfleet.monitor.records import BatchReport
    from medfleet.monitor.service import create_app
    from medfleet.monitor.severity import Severity
    from medfleet.monitor.store import MemoryStore

    store = MemoryStore()
    report = BatchReport(
        site="site_a",
        batch_id="b1",
        timestamp="2025-03-01T10:00:00+00:00",
        n=3,
        scheme="site",
        test="wasserstein",
        statistic=math.inf,
        p_value=np.float64(0.01),
        severity=Severity.severe,
        drift=True,
        alert=False,
        lead="score",
        thresholds={"drift": 0.1, "moderate": 0.2, "severe": math.inf},
        columns={"score": {"statistic": math.inf, "raw_p_value": math.nan}},
    )
    assert store.commit_batch(report, None)
    with TestClient(create_app(store, MonitorConfig(scheme="site"), None)) as client:
        answer = client.get("/sites/site_a/history")
    assert answer.status_code == 200
    (body,) = _strict(answer.text)["reports"]
    assert body["statistic"] == "inf" and body["thresholds"]["severe"] == "inf"
    assert body["columns"]["score"] == {"statistic": "inf", "raw_p_value": None}
    assert body["p_value"] == 0.01
