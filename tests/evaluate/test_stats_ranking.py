"""Challenge rankings: hand-computed rankings, input forms, missing values, bootstrap stability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from medfleet.evaluate.metrics.conventions import MetricInputError
from medfleet.evaluate.stats import (
    aggregate_then_rank,
    bootstrap_rank_stability,
    rank,
    rank_then_aggregate,
)

DICE = {"A": [0.9, 0.8, 0.7], "B": [0.85, 0.85, 0.6], "C": [0.9, 0.7, 0.75]}
HD = {"A": [5.0, 3.0, 10.0], "B": [4.0, 6.0, 12.0], "C": [5.0, 2.0, 8.0]}
HIGHER = {"dice": True, "hd95": False}


def _nested(dice=DICE, hd=HD):
    return {
        m: {f"c{i}": {"dice": dice[m][i], "hd95": hd[m][i]} for i in range(len(dice[m]))}
        for m in dice
    }


def test_rank_then_aggregate_hand_computed():
    # per-case ranks (min ties) -- dice: A 1,2,2  B 3,1,3  C 1,3,1; hd95: A 2,2,2  B 1,3,3  C 2,1,1
    r = rank_then_aggregate(_nested(), HIGHER)
    assert r.order == ["C", "A", "B"]
    assert r.table.loc["A", "score"] == pytest.approx(11 / 6)
    assert r.table.loc["B", "score"] == pytest.approx(14 / 6)
    assert r.table.loc["C", "score"] == pytest.approx(9 / 6)
    assert r.table.loc["A", "dice"] == pytest.approx(5 / 3)  # mean rank on dice
    assert r.ranks.to_dict() == {"C": 1.0, "A": 2.0, "B": 3.0}
    assert r.scheme == "rank-then-aggregate" and r.n_cases == 3


def test_aggregate_then_rank_hand_computed_with_ties():
    # means -- dice: A 0.8, B 0.7667, C 0.7833 -> ranks A1 C2 B3; hd95: A 6, B 7.33, C 5 -> C1 A2 B3
    r = aggregate_then_rank(_nested(), HIGHER)
    assert r.table.loc["A", "score"] == pytest.approx(1.5)
    assert r.table.loc["C", "score"] == pytest.approx(1.5)
    assert r.ranks.to_dict() == {"A": 1.0, "C": 1.0, "B": 3.0}  # "min" ties
    avg = aggregate_then_rank(_nested(), HIGHER, ties="average")
    assert avg.ranks.to_dict() == {"A": 1.5, "C": 1.5, "B": 3.0}
    assert r.table.loc["B", "hd95"] == pytest.approx(22 / 3)
    assert r.table.loc["C", "dice_rank"] == 2.0


def test_the_two_schemes_can_disagree():
    scores = {"A": {"c1": 0.95, "c2": 0.95, "c3": 0.1}, "B": {"c1": 0.9, "c2": 0.9, "c3": 0.9}}
    assert rank_then_aggregate(scores, True).order == ["A", "B"]  # A wins 2 of 3 cases
    agg = aggregate_then_rank(scores, True)
    assert agg.order == ["B", "A"]  # but B has the better mean
    assert agg.table.loc["B", "score"] == pytest.approx(0.9)
    assert agg.score_higher_is_better


def test_dataframe_inputs_equal_the_mapping():
    rows = [
        {"method": m, "case": f"c{i}", "dice": DICE[m][i], "hd95": HD[m][i]}
        for m in DICE
        for i in range(3)
    ]
    wide = pd.DataFrame(rows)
    long = wide.melt(id_vars=["method", "case"], var_name="metric", value_name="value")
    ref = rank_then_aggregate(_nested(), HIGHER).table
    for frame in (wide, long):
        got = rank_then_aggregate(frame, HIGHER).table
        pd.testing.assert_frame_equal(got, ref)


def test_missing_values_policies():
    scores = _nested()
    del scores["C"]["c1"]  # C did not submit case c1
    worst = rank_then_aggregate(scores, {"dice": True})
    # dice ranks -- c0: A 1, C 1, B 3; c1: B 1, A 2, C 3 (missing = last); c2: C 1, A 2, B 3
    assert worst.table.loc["C", "score"] == pytest.approx(5 / 3)
    assert worst.table.loc["A", "score"] == pytest.approx(5 / 3)
    dropped = rank_then_aggregate(scores, {"dice": True}, missing="drop")
    assert dropped.table.loc["C", "score"] == pytest.approx(1.0)  # c1 dropped for everyone
    assert dropped.table.loc["A", "score"] == pytest.approx(1.5)
    with pytest.raises(MetricInputError, match="has no 'dice' for case 'c1'"):
        rank_then_aggregate(scores, {"dice": True}, missing="raise")
    # aggregate-then-rank: the missing dice takes the worst observed dice (0.6)
    agg = aggregate_then_rank(scores, {"dice": True})
    assert agg.table.loc["C", "dice"] == pytest.approx((0.9 + 0.6 + 0.75) / 3)
    agg0 = aggregate_then_rank(scores, {"dice": True}, worst={"dice": 0.0})
    assert agg0.table.loc["C", "dice"] == pytest.approx((0.9 + 0.0 + 0.75) / 3)
    kept = aggregate_then_rank(scores, {"dice": True}, missing="drop")
    assert kept.table.loc["C", "dice"] == pytest.approx((0.9 + 0.75) / 2)


def test_infinite_values_rank_last():
    scores = {"A": {"c1": 3.0}, "B": {"c1": float("inf")}, "C": {"c1": 1.0}}
    assert rank_then_aggregate(scores, False).order == ["C", "A", "B"]
    # a missing (NaN) value is as bad as the worst: tied with an infinite distance
    assert rank([1.0, float("inf"), float("nan")], higher_is_better=False).tolist() == [1, 2, 2]


def test_median_aggregate():
    r = rank_then_aggregate(_nested(), HIGHER, aggregate="median")
    assert r.table.loc["B", "score"] == 3.0  # ranks 3,1,3,1,3,3
    a = aggregate_then_rank(_nested(), {"hd95": False}, aggregate="median")
    assert a.table.loc["A", "score"] == 5.0


def test_bad_inputs():
    with pytest.raises(MetricInputError, match="no value"):
        rank_then_aggregate(_nested(), {"nsd": True})
    with pytest.raises(MetricInputError, match="ties"):
        rank_then_aggregate(_nested(), HIGHER, ties="first")
    with pytest.raises(MetricInputError, match="'method' and 'case'"):
        rank_then_aggregate(pd.DataFrame({"x": [1]}), True)


def _resampled(scores, idx):
    cases = sorted(next(iter(scores.values())))
    return {
        m: {f"{cases[j]}#{k}": per_case[cases[j]] for k, j in enumerate(idx)}
        for m, per_case in scores.items()
    }


@pytest.mark.parametrize("scheme", ["rank-then-aggregate", "aggregate-then-rank"])
def test_bootstrap_rank_stability_matches_explicit_resamples(scheme):
    rng = np.random.default_rng(3)
    base = {"A": 0.80, "B": 0.78, "C": 0.70, "D": 0.69}
    cases = [f"c{i:02d}" for i in range(15)]
    scores = {m: {c: {"dice": mu + rng.normal(0, 0.05)} for c in cases} for m, mu in base.items()}
    s = bootstrap_rank_stability(scores, {"dice": True}, scheme=scheme, n_resamples=40, seed=5)
    fn = rank_then_aggregate if scheme == "rank-then-aggregate" else aggregate_then_rank
    full = fn(scores, {"dice": True})
    pd.testing.assert_series_equal(s.summary["rank"], full.ranks, check_names=False)
    draws = np.random.default_rng(5)
    for b in range(5):
        idx = draws.integers(0, len(cases), len(cases))
        expected = fn(_resampled(scores, idx), {"dice": True}).ranks.reindex(s.methods)
        assert s.rank_samples[b].tolist() == expected.tolist()
        tau = kendalltau(expected.to_numpy(), full.ranks.reindex(s.methods).to_numpy())
        assert s.kendall_tau[b] == pytest.approx(tau.statistic)
    assert np.allclose(s.rank_frequencies.sum(axis=1), 1.0)
    assert s.rank_samples.shape == (40, 4)
    again = bootstrap_rank_stability(scores, {"dice": True}, scheme=scheme, n_resamples=40, seed=5)
    assert np.array_equal(again.rank_samples, s.rank_samples)


def test_dominant_ranking_is_perfectly_stable():
    scores = {
        m: {f"c{i}": {"dice": d + 0.01 * i} for i in range(10)}
        for m, d in (("A", 0.9), ("B", 0.5), ("C", 0.2))
    }
    s = bootstrap_rank_stability(scores, {"dice": True}, n_resamples=30)
    assert s.summary["p_same_rank"].tolist() == [1.0, 1.0, 1.0]
    assert s.kendall_tau_mean == 1.0 and s.kendall_tau_median == 1.0
    assert s.rank_frequencies.loc["A", 1] == 1.0
    assert s.to_dict()["summary"][0]["method"] == "A"
