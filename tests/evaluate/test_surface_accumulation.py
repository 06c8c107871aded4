"""SegmentationMetric and ResultAccumulator: results, n_valid, merging, missed structures."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from medfleet.evaluate.metrics import _nearest
from medfleet.evaluate.metrics.conventions import EmptyPolicy, MetricInputError
from medfleet.evaluate.metrics.results import PerLabelResult, ResultAccumulator, summarize
from medfleet.evaluate.metrics.segmentation_metric import SegmentationMetric
from medfleet.evaluate.metrics.surface import surface_distances, surface_metrics


def square(shape=(12, 12), lo=3, hi=8, shift=0) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[lo + shift : hi + shift, lo:hi] = 1
    return m


def test_missed_structure_never_improves_the_mean() -> None:
    gt = square()
    metric = SegmentationMetric(labels=[1], surface_metrics=("hd", "nsd"), nsd_tolerances=(1.0,))
    metric.update(square(shift=1), gt, case_id="good")
    metric.update(np.zeros_like(gt), gt, case_id="missed")
    s = metric.aggregate()
    assert s["dice"][1].mean == pytest.approx(0.4)  # (0.8 + 0) / 2
    assert s["hd"][1].mean == math.inf and s["hd"][1].median == math.inf
    assert s["hd"][1].n_valid == 1 and s["hd"][1].n_scored == 2 and s["hd"][1].n_cases == 2
    assert s["nsd_1mm"][1].mean == pytest.approx(0.5)


def test_nan_policy_is_scored_as_worst_but_both_empty_is_left_out() -> None:
    gt = square()
    empty = np.zeros_like(gt)
    metric = SegmentationMetric(
        labels=[1], surface_metrics=("hd95",), empty=EmptyPolicy(one_empty="nan")
    )
    metric.update(gt, gt, case_id="perfect")
    r = metric.update(empty, gt, case_id="missed")
    assert math.isnan(r.value("hd95", 1))
    metric.update(empty, empty, case_id="nothing")
    s = metric.aggregate()["hd95"][1]
    assert s.mean == math.inf and s.n_scored == 2 and s.n_valid == 1 and s.n_cases == 3
    dice = metric.aggregate()["dice"][1]
    assert dice.mean == pytest.approx(0.5) and dice.n_scored == 2


def test_penalty_policy_enters_the_mean() -> None:
    gt = square()
    metric = SegmentationMetric(
        labels=[1], surface_metrics=("hd",), empty=EmptyPolicy(one_empty=100.0), overlap=False
    )
    metric.update(square(shift=2), gt, case_id="a")
    metric.update(np.zeros_like(gt), gt, case_id="b")
    s = metric.aggregate()["hd"][1]
    assert s.mean == pytest.approx((2.0 + 100.0) / 2)
    assert s.std == pytest.approx(np.std([2.0, 100.0], ddof=1))
    assert s.n_valid == 1


def test_merge_state_equals_single_stream() -> None:
    rng = np.random.default_rng(0)
    cases = []
    for i in range(6):
        gt = square(shift=int(rng.integers(0, 3)))
        pred = square(shift=int(rng.integers(0, 3)))
        cases.append((f"c{i}", pred, gt))
    single = SegmentationMetric(labels=[1])
    site_a, site_b = SegmentationMetric(labels=[1]), SegmentationMetric(labels=[1])
    for i, (cid, pred, gt) in enumerate(cases):
        single.update(pred, gt, (1.0, 0.5), case_id=cid)
        (site_a if i % 2 else site_b).update(pred, gt, (1.0, 0.5), case_id=cid)
    site_a.merge_state(site_b)
    assert len(site_a) == 6
    a, b = single.aggregate(), site_a.aggregate()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name][1].mean == pytest.approx(b[name][1].mean)
        assert a[name][1].n_valid == b[name][1].n_valid
    with pytest.raises(MetricInputError, match="already added"):
        site_a.merge_state(site_b)


def test_rows_and_results_round_trip() -> None:
    metric = SegmentationMetric(labels=[1, 2], surface_metrics=("hd", "assd"))
    gt = square()
    gt[0, 0] = 2
    r = metric.update(square(shift=1), gt, case_id="x")
    rows = metric.rows()
    assert [row["label"] for row in rows] == [1, 2]
    assert rows[1]["status"] == "pred_empty" and rows[1]["hd_valid"] is False
    assert rows[0]["case"] == "x" and rows[0]["hd"] == pytest.approx(1.0)
    again = PerLabelResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again.labels == r.labels and again.status == r.status
    for name in r.metrics:
        np.testing.assert_array_equal(again[name], r[name])
        np.testing.assert_array_equal(again.valid[name], r.valid[name])
    assert pickle.loads(pickle.dumps(r)).value("assd", 1) == r.value("assd", 1)


def test_update_names_the_case_in_errors() -> None:
    metric = SegmentationMetric(labels=[1])
    with pytest.raises(MetricInputError, match=r"case 'broken'.*same grid"):
        metric.update(np.zeros((3, 3), bool), np.zeros((3, 4), bool), case_id="broken")
    with pytest.raises(MetricInputError, match="overlap=True or at least one"):
        SegmentationMetric(overlap=False, surface_metrics=())


def test_reset_and_add_result() -> None:
    metric = SegmentationMetric(labels=[1], overlap=False, surface_metrics=("hd",))
    r = surface_metrics(square(shift=1), square(), labels=[1], metrics=("hd",))
    metric.add_result(r, "precomputed")
    assert metric.case_ids == ("precomputed",)
    assert metric.aggregate()["hd"][1].mean == 1.0
    metric.reset()
    assert len(metric) == 0 and metric.aggregate() == {}


def test_summarize_handles_no_scored_values() -> None:
    s = summarize([math.nan], [False], ["both_empty"], worst=math.inf)
    assert math.isnan(s.mean) and s.n_scored == 0 and s.n_cases == 1
    assert s.to_dict()["n_cases"] == 1


def test_accumulator_orders_labels_and_keeps_string_keys() -> None:
    acc = ResultAccumulator()
    acc.add(PerLabelResult.from_columns(["b", "a"], {"m": [1, 2]}, {"m": [1, 1]}, ["ok", "ok"]))
    assert list(acc.summary()["m"]) == ["a", "b"]


def test_merged_results_require_same_labels() -> None:
    a = PerLabelResult.from_columns([1], {"x": [1.0]}, {"x": [True]}, ["ok"])
    b = PerLabelResult.from_columns([2], {"y": [1.0]}, {"y": [True]}, ["ok"])
    with pytest.raises(MetricInputError, match="cannot merge"):
        a.merged_with(b)
    with pytest.raises(MetricInputError, match="valid flag"):
        PerLabelResult(labels=(1,), values={"x": np.ones(1)}, valid={}, status=("ok",))


def test_auto_switches_to_the_transform_for_dense_surfaces(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    pred = rng.random((20, 22, 18)) < 0.4
    gt = rng.random((20, 22, 18)) < 0.4
    sparse = square((20, 22), 4, 12)
    assert surface_distances(sparse, sparse)[1].method == ("kdtree", "kdtree")
    monkeypatch.setattr(_nearest, "EDT_MIN_VOXELS", 0)
    auto = surface_distances(pred, gt, (1.0, 0.9, 2.0))[1]
    assert auto.method == ("edt", "edt")
    tree = surface_distances(pred, gt, (1.0, 0.9, 2.0), method="kdtree")[1]
    np.testing.assert_allclose(auto.pred_to_gt, tree.pred_to_gt, rtol=2e-6)
    np.testing.assert_allclose(auto.gt_to_pred, tree.gt_to_pred, rtol=2e-6)


def test_segmentation_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    modules = [
        "metrics.overlap",
        "metrics.surface",
        "metrics.results",
        "metrics.segmentation_metric",
        "metrics.conventions",
    ]
    code = (
        "import sys\n"
        + "".join(f"import medfleet.evaluate.{m}\n" for m in modules)
        + "print(','.join(m for m in ('torch', 'monai') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
