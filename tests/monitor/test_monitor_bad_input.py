"""Bad input: clear errors naming site, batch and field; nothing stored partially."""

from __future__ import annotations

import numpy as np
import pytest

from medfleet.errors import MedfleetError
from medfleet.monitor.agent import Coordinator
from medfleet.monitor.batches import BatchError, OutputBatch, read_batches, read_reference
from medfleet.monitor.config import ConfigError, MonitorConfig
from medfleet.monitor.run import run_config
from medfleet.monitor.store import SQLiteStore


@pytest.fixture
def coord(tmp_path):
    rng = np.random.default_rng(0)
    store = SQLiteStore(tmp_path / "m.sqlite")
    c = Coordinator(MonitorConfig(sites=["a", "b", "c"], scheme="site"), store)
    c.set_reference("a", {"prob": rng.beta(2, 5, 300), "pred_class": rng.integers(0, 3, 300)})
    return c


def _good(n=50):
    rng = np.random.default_rng(1)
    return {"prob": rng.beta(2, 5, n), "pred_class": rng.integers(0, 3, n)}


def _assert_refused(coord, batch, field, *words):
    state_before = coord.store.load_state(batch.site)
    with pytest.raises(BatchError) as info:
        coord.process(batch)
    err = info.value
    assert isinstance(err, MedfleetError)
    assert err.field == field
    assert err.site == batch.site
    assert err.batch_id == (batch.batch_id if field != "batch_id" else None)
    text = str(err)
    assert f"site {batch.site!r}" in text
    if field != "batch_id":
        assert f"batch {batch.batch_id!r}" in text
    for w in words:
        assert w in text
    assert coord.store.get_report(batch.site, batch.batch_id) is None
    assert coord.store.history(batch.site) == []
    assert coord.store.load_state(batch.site) == state_before
    return err


def test_nan_probabilities(coord):
    out = _good()
    out["prob"][7] = np.nan
    _assert_refused(coord, OutputBatch("a", "b1", 0, out), "prob", "NaN", "row 7")


def test_out_of_range_probabilities(coord):
    out = _good()
    out["prob"][3] = 1.7
    err = _assert_refused(coord, OutputBatch("a", "b1", 0, out), "prob", "outside [0, 1]")
    assert "logits" in err.fix
    out = _good()
    out["prob"][0] = -0.01
    _assert_refused(coord, OutputBatch("a", "b2", 0, out), "prob", "outside [0, 1]")


def test_empty_batch(coord):
    out = {"prob": np.array([]), "pred_class": np.array([])}
    _assert_refused(coord, OutputBatch("a", "b1", 0, out), "prob", "empty")


def test_unknown_site(coord):
    _assert_refused(coord, OutputBatch("zzz", "b1", 0, _good()), "site", "unknown site")


def test_site_without_reference(coord):
    _assert_refused(coord, OutputBatch("b", "b1", 0, _good()), "reference", "no reference")


def test_missing_output_and_mismatched_shapes(coord):
    _assert_refused(
        coord, OutputBatch("a", "b1", 0, {"prob": _good()["prob"]}), "pred_class", "missing"
    )
    out = _good()
    out["prob"] = np.column_stack([out["prob"], 1 - out["prob"]])
    _assert_refused(coord, OutputBatch("a", "b2", 0, out), "prob", "reference")
    out = _good()
    out["pred_class"] = out["pred_class"][:-1]
    _assert_refused(coord, OutputBatch("a", "b3", 0, out), "pred_class", "rows")
    out = _good()
    out["pred_class"] = out["pred_class"] + 0.5
    _assert_refused(coord, OutputBatch("a", "b4", 0, out), "pred_class", "whole numbers")


def test_empty_batch_id(coord):
    _assert_refused(coord, OutputBatch("a", " ", 0, _good()), "batch_id", "empty")


def test_bad_reference_is_refused_and_not_stored(coord):
    with pytest.raises(BatchError) as info:
        coord.set_reference("b", {"prob": np.array([0.2, np.inf])})
    assert info.value.field == "prob" and info.value.batch_id == "reference"
    assert coord.store.load_reference("b") is None


def test_good_batch_after_refusals_is_processed(coord):
    report = coord.process(OutputBatch("a", "ok", 0, _good()))
    assert report.status == "ok" and len(coord.store.history("a")) == 1


def test_table_errors_name_file_batch_and_column(tmp_path):
    path = tmp_path / "o.csv"
    path.write_text("site,time,prob\na,2024-01-01T01:00,0.2\na,2024-01-02T01:00,nan\n")
    with pytest.raises(BatchError) as info:
        read_batches(path)
    assert info.value.field == "prob" and info.value.site == "a"
    assert info.value.batch_id == "2024-01-02T00:00:00"
    path.write_text("where,time,prob\na,2024-01-01,0.2\n")
    with pytest.raises(BatchError, match="column 'site' is missing"):
        read_batches(path)
    path.write_text("site,time,prob_0,prob_2\na,2024-01-01,0.2,0.8\n")
    with pytest.raises(BatchError, match=r"prob_0 \.\. prob_1"):
        read_batches(path)
    with pytest.raises(BatchError, match="does not exist"):
        read_batches(tmp_path / "missing.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(BatchError, match="unknown table type"):
        read_batches(tmp_path / "x.json")


def test_reading_groups_indexed_columns_and_batch_ids(tmp_path):
    path = tmp_path / "o.csv"
    path.write_text(
        "site,time,batch_id,prob_0,prob_1,pred_class\n"
        "a,2024-01-01,x1,0.2,0.8,1\nb,2024-01-01,x1,0.6,0.4,0\na,2024-01-03,x2,0.3,0.7,1\n"
    )
    batches = read_batches(path)
    assert [(b.site, b.batch_id, b.n) for b in batches] == [
        ("a", "x1", 1),
        ("b", "x1", 1),
        ("a", "x2", 1),
    ]
    assert batches[0].outputs["prob"].shape == (1, 2)
    ref = read_reference(path, "a", reserved={"time", "batch_id"})
    assert ref["prob"].shape == (2, 2) and ref["pred_class"].tolist() == [1, 1]
    with pytest.raises(BatchError, match="no reference rows"):
        read_reference(path, "zzz")


def test_parquet_reading(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"site": ["a"], "time": ["2024-01-01"], "prob": [0.3]})
    path = tmp_path / "o.parquet"
    try:
        frame.to_parquet(path)
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(BatchError, match="Parquet engine"):
            read_batches(path)
        return
    assert read_batches(path)[0].outputs["prob"].tolist() == [0.3]


def test_run_config_stores_nothing_when_any_batch_is_bad(tmp_path):
    ref = tmp_path / "ref.csv"
    ref.write_text("site,prob\n" + "".join(f"a,{p:.3f}\n" for p in np.linspace(0.1, 0.9, 60)))
    good = tmp_path / "good.csv"
    good.write_text("site,time,prob\n" + "".join(f"a,2024-01-0{d},0.5\n" for d in (1, 2)))
    bad = tmp_path / "bad.csv"
    bad.write_text("site,time,prob\nq,2024-01-03,0.5\n")  # unknown site
    cfg = MonitorConfig(
        sites=["a"],
        scheme="site",
        references={"a": ref},
        input={"paths": [good, bad]},
        db=tmp_path / "m.sqlite",
    )
    with pytest.raises(BatchError, match="unknown site"):
        run_config(cfg)
    store = SQLiteStore(tmp_path / "m.sqlite")
    assert store.history("a") == []
    store.close()
    cfg2 = cfg.model_copy(update={"input": cfg.input.model_copy(update={"paths": [good]})})
    assert run_config(cfg2).new == 2


def test_config_errors_name_file_and_field(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("scheme: nonsense\ntests: [ks, magic]\n")
    with pytest.raises(ConfigError) as info:
        MonitorConfig.load(p)
    assert str(p) in str(info.value) and "scheme" in str(info.value) and "magic" in str(info.value)
    p.write_text("sites: [a\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        MonitorConfig.load(p)
    with pytest.raises(ConfigError, match="does not exist"):
        MonitorConfig.load(tmp_path / "none.yaml")
    p.write_text("thresholds: {moderate: 1.0, severe: 0.5}\n")
    with pytest.raises(ConfigError, match="severe"):
        MonitorConfig.load(p)
