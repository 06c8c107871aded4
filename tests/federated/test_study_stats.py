"""Study analysis: metrics, bootstrap intervals and paired tests on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfleet.evaluate.stats import delong_test, holm, mcnemar_from_counts
from medfleet.federated.study import federated_arms, matched_budget
from medfleet.federated.study_cases import (
    METRICS,
    POOLED,
    TaskCases,
    align,
    analyse_cases,
    classification_value,
    metric_ci,
    paired_tests,
    positive_index,
    read_task_cases,
)
from medfleet.federated.study_record import communication_rows, communication_summary, curve_rows
from medfleet.tasks import TaskSpec

BINARY = TaskSpec(name="cls", type="classification", table="c.csv", classes=["neg", "pos"])
TRIPLE = TaskSpec(name="tri", type="classification", table="t.csv", classes=["a", "b", "c"])
SEG = TaskSpec(name="seg", type="segmentation", table="s.csv", labels={0: "bg", 1: "organ"})


def _binary_cases(truth, pred, score, sites=None) -> TaskCases:
    truth = np.asarray(truth)
    score = np.asarray(score, dtype=float)
    n = truth.size
    return TaskCases(
        [f"c{i:02d}" for i in range(n)],
        list(sites) if sites is not None else ["s1"] * n,
        truth=truth,
        pred=np.asarray(pred),
        probs=np.stack([1 - score, score], axis=1),
    )


def test_binary_metrics_match_hand_counts():
    # TP=3, FN=1, TN=2, FP=2 -> sens 3/4, spec 2/4, balanced accuracy 5/8
    truth = [1, 1, 1, 1, 0, 0, 0, 0]
    pred = [1, 1, 1, 0, 0, 0, 1, 1]
    score = [0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.6, 0.65]
    c = _binary_cases(truth, pred, score)
    values = {
        m: classification_value(m, c.truth, c.pred, c.probs, 1) for m in METRICS["classification"]
    }
    assert values["sensitivity"] == pytest.approx(0.75)
    assert values["specificity"] == pytest.approx(0.5)
    assert values["balanced_accuracy"] == pytest.approx(0.625)
    # AUC by pair counting: positives 0.9, 0.8, 0.7, 0.1 vs negatives 0.2, 0.3, 0.6, 0.65
    wins = sum(p > q for p in (0.9, 0.8, 0.7, 0.1) for q in (0.2, 0.3, 0.6, 0.65))
    assert values["auc"] == pytest.approx(wins / 16)


def test_multiclass_macro_leaves_out_absent_classes():
    truth = np.array([0, 0, 1, 1])  # class 2 has no case
    pred = np.array([0, 1, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    # recall of class 0: 1/2, class 1: 2/2 -> balanced accuracy 0.75
    assert classification_value("balanced_accuracy", truth, pred, probs, None) == 0.75
    # sensitivity macro over present classes = 0.75; class 2 (no case) left out
    assert classification_value("sensitivity", truth, pred, probs, None) == pytest.approx(0.75)
    # one-vs-rest AUCs of classes 0 and 1 are both 1.0; class 2 undefined and left out
    assert classification_value("auc", truth, pred, probs, None) == pytest.approx(1.0)


def test_positive_index_rules():
    assert positive_index(BINARY) == 1
    assert positive_index(TRIPLE) is None
    assert positive_index(TRIPLE, "c") == 2
    with pytest.raises(Exception, match="positive class"):
        positive_index(TRIPLE, "z")


def test_bootstrap_intervals_bracket_estimates():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 60)
    score = np.clip(truth * 0.3 + rng.uniform(0, 0.7, 60), 0, 1)
    pred = (score > 0.5).astype(int)
    c = _binary_cases(truth, pred, score)
    for metric in METRICS["classification"]:
        r = metric_ci("classification", metric, c, 1, n_resamples=300)
        assert r["low"] <= r["estimate"] <= r["high"], metric
        assert r["high"] - r["low"] > 0, metric
        assert r["n"] == 60
    seg = TaskCases(
        [str(i) for i in range(30)],
        ["s"] * 30,
        dice=rng.uniform(0.5, 0.9, 30),
        hd95=np.r_[rng.uniform(1, 9, 29), np.inf],
    )
    dice = metric_ci("segmentation", "dice", seg, n_resamples=300)
    assert dice["estimate"] == pytest.approx(float(seg.dice.mean()))
    assert dice["low"] <= dice["estimate"] <= dice["high"]
    hd = metric_ci("segmentation", "hd95", seg, n_resamples=300)
    assert hd["estimate"] == pytest.approx(float(np.median(seg.hd95)))
    assert hd["low"] <= hd["estimate"] <= hd["high"]


def test_interval_of_constant_values_is_the_value():
    seg = TaskCases(list("abcd"), ["s"] * 4, dice=np.full(4, 0.8), hd95=np.ones(4))
    r = metric_ci("segmentation", "dice", seg, n_resamples=50)
    assert r["estimate"] == r["low"] == r["high"] == pytest.approx(0.8)


def test_mcnemar_and_delong_on_hand_made_pairs():
    truth = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    # arm a is right everywhere; arm b wrong on 6 cases -> discordant (6, 0)
    pred_a = truth.copy()
    pred_b = truth.copy()
    pred_b[[0, 1, 2, 5, 6, 7]] = 1 - pred_b[[0, 1, 2, 5, 6, 7]]
    score_a = np.where(truth == 1, 0.9, 0.1) + np.linspace(0, 0.05, 10)
    score_b = np.linspace(0.2, 0.8, 10)
    a = _binary_cases(truth, pred_a, score_a)
    b = _binary_cases(truth, pred_b, score_b)
    rows = {r["test"]: r for r in paired_tests("classification", "A", "B", a, b, 1)}
    assert rows["mcnemar"]["p_value"] == pytest.approx(mcnemar_from_counts(6, 0).p_value)
    assert rows["mcnemar"]["p_value"] == pytest.approx(2 * 0.5**6)
    assert rows["mcnemar"]["difference"] == pytest.approx(-0.6)
    ref = delong_test(truth, score_a, score_b)
    assert rows["delong"]["p_value"] == pytest.approx(ref.p_value)
    assert rows["delong"]["estimate_a"] == pytest.approx(1.0)
    ba = rows["paired bootstrap"]
    assert ba["metric"] == "balanced_accuracy"
    assert ba["estimate_a"] == 1.0 and ba["estimate_b"] == pytest.approx(0.4)
    assert ba["low"] <= ba["difference"] <= ba["high"] < 0


def test_wilcoxon_on_per_case_dice():
    base = np.array([0.50, 0.55, 0.60, 0.62, 0.70, 0.71, 0.75, 0.80])
    a = TaskCases(list("abcdefgh"), ["s"] * 8, dice=base, hd95=np.ones(8))
    b = TaskCases(list("abcdefgh"), ["s"] * 8, dice=base + np.arange(1, 9) / 100, hd95=np.ones(8))
    (row,) = paired_tests("segmentation", "A", "B", a, b)
    # every difference positive, no ties: exact two-sided p = 2 / 2^8
    assert row["p_value"] == pytest.approx(2 / 256)
    assert row["difference"] == pytest.approx(0.045)


def test_pairs_are_aligned_on_common_cases():
    a = TaskCases(["x", "y", "z"], ["s"] * 3, dice=np.array([0.1, 0.2, 0.3]), hd95=np.ones(3))
    b = TaskCases(["z", "y"], ["s"] * 2, dice=np.array([0.9, 0.8]), hd95=np.ones(2))
    b = TaskCases.concat([b])  # sorted by case id
    aligned = align({"a": a, "b": b})
    assert aligned["a"].case_ids == aligned["b"].case_ids == ["y", "z"]
    assert aligned["b"].dice.tolist() == [0.8, 0.9]


def test_analysis_per_site_pooled_and_holm():
    rng = np.random.default_rng(0)
    sites = ["s1"] * 20 + ["s2"] * 20
    truth = rng.integers(0, 2, 40)
    arms = {}
    for k, noise in enumerate((0.9, 0.5, 0.2)):
        score = np.clip(truth * (1 - noise) + rng.uniform(0, noise, 40), 0, 1)
        arms[f"arm{k}"] = _binary_cases(truth, (score > 0.5).astype(int), score, sites)
    result = analyse_cases({"cls": BINARY}, {"cls": arms}, n_resamples=200)
    metrics = result["metrics"]
    assert {r["site"] for r in metrics} == {"s1", "s2", POOLED}
    assert len(metrics) == 3 * 3 * 4  # arms x (2 sites + pooled) x metrics
    for r in metrics:
        if math.isfinite(r["estimate"]):
            assert r["low"] <= r["estimate"] <= r["high"]
    pooled = {r["n"] for r in metrics if r["site"] == POOLED}
    assert pooled == {40}
    tests = result["tests"]
    assert {(r["arm_a"], r["arm_b"]) for r in tests} == {
        ("arm0", "arm1"),
        ("arm0", "arm2"),
        ("arm1", "arm2"),
    }
    for name in ("mcnemar", "delong", "paired bootstrap"):
        family = [r for r in tests if r["test"] == name]
        assert len(family) == 3
        expected = holm([r["p_value"] for r in family])
        assert [r["p_holm"] for r in family] == pytest.approx(expected.tolist())
        assert all(r["p_holm"] >= r["p_value"] for r in family)


def test_read_task_cases_from_evaluation_tables(tmp_path):
    cls = tmp_path / "cls.csv"
    cls.write_text(
        "case_id,status,gt,pred,correct,prob_neg,prob_pos\n"
        "b,ok,pos,neg,0.0,0.6,0.4\n"
        "a,ok,neg,neg,1.0,0.7,0.3\n"
    )
    c = read_task_cases(BINARY, cls, {"a": "s1", "b": "s2"})
    assert c.case_ids == ["a", "b"] and c.sites == ["s1", "s2"]
    assert c.truth.tolist() == [0, 1] and c.pred.tolist() == [0, 0]
    assert c.probs[1].tolist() == [0.6, 0.4]
    seg = tmp_path / "seg.csv"
    seg.write_text("case_id,label,dice,hd95\nk,1,0.5,2.0\nk,2,0.7,inf\nj,1,0.9,1.0\nj,2,nan,nan\n")
    s = read_task_cases(SEG, seg, "site_x")
    assert s.case_ids == ["j", "k"] and s.sites == ["site_x", "site_x"]
    assert s.dice.tolist() == pytest.approx([0.9, 0.6])
    assert math.isinf(s.hd95[1])


def test_budget_communication_and_curves():
    from types import SimpleNamespace

    budget = matched_budget(SimpleNamespace(rounds=4, local_steps=3), {"a": 9, "b": 30}, 8)
    assert budget["steps"] == {"a": 12, "b": 12}
    assert budget["centralised_steps"] == 24
    record = {
        "config": {"strategy": "dual-lora"},
        "rounds": [
            {
                "round": r,
                "clients": {
                    "a": {"status": "ok", "bytes_sent": 100, "bytes_received": 300,
                          "train_loss": 2},
                    "b": {"status": "failed" if r == 2 else "ok", "bytes_sent": 50 * (r != 2),
                          "bytes_received": 300, "train_loss": None},
                },
                "metrics": {"a": {"t": {"balanced_accuracy": 0.5 + r / 10}},
                            "b": {"t": {"balanced_accuracy": 0.4}}},
            }
            for r in (1, 2)
        ],
    }  # fmt: skip
    rows = communication_rows("dl", record)
    assert [r["bytes_total"] for r in rows] == [750, 700]
    assert [r["clients_ok"] for r in rows] == [2, 1]
    assert rows[0]["strategy"] == "dual-lora"
    full = communication_rows("fedavg", {"rounds": [{"round": 1, "clients": {
        "a": {"status": "ok", "bytes_sent": 36250, "bytes_received": 36250}}}]})  # fmt: skip
    summary = {r["arm"]: r for r in communication_summary(full + rows)}
    assert summary["dl"]["bytes_per_round"] == 725
    assert summary["dl"]["fraction_of_fedavg"] == pytest.approx(725 / 72500)
    curves = curve_rows("dl", record)
    mean = [r["value"] for r in curves if r["site"] == "mean" and r["metric"] != "loss"]
    assert mean == pytest.approx([0.5, 0.55])
    assert federated_arms(["lora"]) == [("lora", {"strategy": "lora"})]
    with pytest.raises(Exception, match="twice or is reserved"):
        federated_arms(["lora", "lora"])
