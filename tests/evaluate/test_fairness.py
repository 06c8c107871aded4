"""Subgroup analysis: pandas/scikit-learn oracles, hand-computed spreads, equalized odds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix

from medfleet.evaluate.analysis.fairness import (
    GroupMetricFrame,
    SmallGroupWarning,
    bin_continuous,
    equalized_odds_gap,
    group_rates,
)
from medfleet.evaluate.metrics.conventions import MetricInputError
from medfleet.evaluate.stats import bootstrap_ci


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 120
    return pd.DataFrame(
        {
            "dice": np.clip(rng.normal(0.8, 0.1, n), 0, 1),
            "hd95": rng.gamma(2.0, 3.0, n),
            "site": rng.choice(["site_a", "site_b", "site_c"], n),
            "age": rng.integers(25, 85, n).astype(float),
            "density": rng.choice(["a", "b", "c", "d", None], n),
        }
    )


def _frame(cohort, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallGroupWarning)
        return GroupMetricFrame(
            cohort[["dice", "hd95"]],
            cohort[["site", "age", "density"]],
            bins={"age": [0, 40, 50, 60, 70, 200]},
            bin_labels={"age": ["0-40", "41-50", "51-60", "61-70", "71+"]},
            **kw,
        )


def test_by_group_matches_pandas_groupby(cohort):
    frame = _frame(cohort)
    site = cohort.groupby("site")[["dice", "hd95"]].mean()
    got = frame.by_group.loc["site"]
    assert got[["dice", "hd95"]].to_numpy() == pytest.approx(site.to_numpy())
    assert got["n"].tolist() == cohort.groupby("site").size().tolist()
    ages = pd.cut(
        cohort["age"], [0, 40, 50, 60, 70, 200], labels=["0-40", "41-50", "51-60", "61-70", "71+"]
    )
    ref = cohort.groupby(ages, observed=True)["dice"].mean()
    assert frame.by_group.loc["age", "dice"].to_numpy() == pytest.approx(ref.to_numpy())
    assert list(frame.by_group.loc["age"].index) == list(ref.index)  # bin order kept
    # a missing density drops the case from that variable only
    assert frame.by_group.loc["density", "n"].sum() == cohort["density"].notna().sum()
    assert frame.overall["dice"] == pytest.approx(cohort["dice"].mean())
    assert any("density: " in w and "without a group" in w for w in frame.warnings)


def test_spreads_hand_computed():
    values = {"dice": [0.9, 0.7, 0.6, 0.4, 0.5, 0.5]}
    groups = {"site": ["a", "a", "b", "b", "c", "c"]}
    frame = GroupMetricFrame(values, groups, min_group_size=1)
    # group means a 0.8, b 0.5, c 0.5; overall 0.6
    assert frame.difference().loc["site", "dice"] == pytest.approx(0.3)
    assert frame.difference("to_overall").loc["site", "dice"] == pytest.approx(0.2)
    assert frame.ratio().loc["site", "dice"] == pytest.approx(0.5 / 0.8)
    # to overall: min over groups of min(g / o, o / g) = min(0.6 / 0.8, 0.5 / 0.6)
    assert frame.ratio("to_overall").loc["site", "dice"] == pytest.approx(0.75)
    assert frame.group_min().loc["site", "dice"] == pytest.approx(0.5)
    assert frame.group_max().loc["site", "dice"] == pytest.approx(0.8)
    median = GroupMetricFrame(values, groups, min_group_size=1, aggregate="median")
    assert median.overall["dice"] == pytest.approx(0.55)
    custom = GroupMetricFrame(values, groups, min_group_size=1, aggregate=np.max)
    assert custom.by_group["dice"].tolist() == [0.9, 0.6, 0.5]


def test_small_groups_warn_and_can_be_excluded():
    values = {"dice": [0.9, 0.8, 0.85, 0.3]}
    groups = {"site": ["a", "a", "a", "b"]}
    with pytest.warns(SmallGroupWarning, match="site=b: 1 case"):
        frame = GroupMetricFrame(values, groups, min_group_size=2)
    assert any("site=b" in w for w in frame.warnings)
    assert frame.difference().loc["site", "dice"] == pytest.approx(0.55)
    assert frame.difference(exclude_small=True).loc["site", "dice"] == 0.0  # one group left


def test_nan_metrics_and_missing_groups():
    values = {"hd95": [1.0, np.nan, 3.0, 5.0], "dice": [0.5, 0.6, np.nan, 0.8]}
    groups = pd.Series(["x", "x", None, "y"], name="sex")
    frame = GroupMetricFrame(values, groups, min_group_size=1)
    assert frame.by_group.loc[("sex", "x"), "hd95"] == 1.0
    assert frame.n_valid.loc[("sex", "x"), "hd95"] == 1
    assert frame.by_group.loc[("sex", "x"), "n"] == 2
    kept = GroupMetricFrame(values, groups, min_group_size=1, missing_group="group")
    assert kept.by_group.loc[("sex", "missing"), "hd95"] == 3.0
    inf = GroupMetricFrame({"hd95": [1.0, math.inf]}, ["a", "a"], min_group_size=1)
    assert inf.by_group["hd95"].iloc[0] == math.inf


def test_categorical_groups_keep_their_order():
    order = pd.CategoricalDtype(["pre", "post", "unknown"], ordered=True)
    groups = pd.Series(["post", "pre", "unknown", "post"], dtype=order, name="menopause")
    frame = GroupMetricFrame({"dice": [0.5, 0.9, 0.7, 0.7]}, groups, min_group_size=1)
    assert list(frame.by_group.loc["menopause"].index) == ["pre", "post", "unknown"]
    assert frame.by_group.loc[("menopause", "post"), "dice"] == pytest.approx(0.6)


def test_intersection_of_variables():
    values = {"dice": [0.9, 0.8, 0.7, 0.6]}
    groups = {"site": ["a", "a", "b", "b"], "sex": ["F", "M", "F", "M"]}
    frame = GroupMetricFrame(values, groups, min_group_size=1, intersect=True)
    assert frame.variables == ["site", "sex", "site & sex"]
    assert frame.by_group.loc[("site & sex", "b & M"), "dice"] == 0.6
    assert frame.difference().loc["site & sex", "dice"] == pytest.approx(0.3)


def test_bootstrap_ci_per_group_equals_direct_bootstrap(cohort):
    frame = _frame(cohort)
    table = frame.bootstrap_ci(n_resamples=200, seed=4)
    members = cohort["site"] == "site_b"
    ref = bootstrap_ci(cohort.loc[members, "dice"].to_numpy(), n_resamples=200, seed=4)
    row = table.loc[("site", "site_b", "dice")]
    assert (row["estimate"], row["low"], row["high"]) == pytest.approx(
        (ref.estimate, ref.low, ref.high)
    )
    overall = table.loc[("overall", "overall", "hd95")]
    assert overall["n"] == len(cohort)


def test_difference_ci_brackets_a_clear_gap():
    rng = np.random.default_rng(1)
    values = {"dice": np.r_[rng.normal(0.9, 0.02, 40), rng.normal(0.6, 0.02, 40)]}
    frame = GroupMetricFrame(values, {"site": ["a"] * 40 + ["b"] * 40})
    ci = frame.difference_ci(n_resamples=300).loc[("site", "dice")]
    assert ci["low"] < ci["estimate"] < ci["high"]
    assert ci["low"] > 0.25 and ci["high"] < 0.35


def test_bin_continuous_pandas_cut_semantics():
    x = [0, 1, 40, 40.5, 50, 71, 200, 201, None, float("nan")]
    got = bin_continuous(x, [0, 40, 50, 70, 200])
    ref = pd.cut(pd.Series(x, dtype=float), [0, 40, 50, 70, 200])
    expected = [None if pd.isna(v) else f"({v.left:g}, {v.right:g}]" for v in ref]
    assert got.tolist() == expected
    left = bin_continuous([0, 40, 200], [0, 40, 200], right=False)
    assert left.tolist() == ["[0, 40)", "[40, 200)", None]
    with pytest.raises(MetricInputError, match="increasing"):
        bin_continuous([1], [3, 2])


def test_bad_inputs():
    with pytest.raises(MetricInputError, match="one value per case"):
        GroupMetricFrame({"dice": [1.0, 2.0]}, {"site": ["a"]})
    with pytest.raises(MetricInputError, match="not grouping variables"):
        GroupMetricFrame({"dice": [1.0]}, {"site": ["a"]}, bins={"age": [0, 1]})
    with pytest.raises(MetricInputError, match="non-numeric"):
        GroupMetricFrame({"dice": ["x"]}, {"site": ["a"]})


# ----------------------------------------------------------------------------- equalized odds


def test_equalized_odds_single_class_group_policies():
    # a: TPR 1, FPR 0; b: TPR 1, FPR 1; c: positives only, all predicted positive
    y = [1, 0, 1, 0, 1, 1]
    p = [1, 0, 1, 1, 1, 1]
    g = ["a", "a", "b", "b", "c", "c"]
    assert equalized_odds_gap(y, p, g) == (0.0, 1.0, 1.0)  # c's FPR undefined: skipped
    assert equalized_odds_gap(y, p, g, policy="zero") == (0.0, 1.0, 1.0)  # c's FPR = 0
    # MAMA-MIA: truth and prediction hold one class in c -> TPR = FPR = 0 there
    assert equalized_odds_gap(y, p, g, policy="mama-mia") == (1.0, 1.0, 2.0)
    rates = group_rates(y, p, g)
    assert math.isnan(rates.loc["c", "fpr"]) and rates.loc["c", "tp"] == 2


def _official_mama_mia(y, p, g):
    """The MAMA-MIA task-2 scorer's loop (scoring_task2.py), kept literal."""
    df = pd.DataFrame({"pcr": y, "pcr_pred": p, "var": g})
    tpr, fpr = {}, {}
    for i, (_, group) in enumerate(df.groupby("var")):
        yt, yp = group["pcr"].astype(int), group["pcr_pred"].astype(int)
        try:
            tn, fp_, fn, tp = confusion_matrix(yt, yp).ravel()
            tpr[i] = tp / (tp + fn) if (tp + fn) else 0
            fpr[i] = fp_ / (fp_ + tn) if (fp_ + tn) else 0
        except ValueError:
            tpr[i], fpr[i] = 0, 0
    return max(tpr.values()) - min(tpr.values()), max(fpr.values()) - min(fpr.values())


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_mama_mia_policy_matches_the_official_loop():
    rng = np.random.default_rng(8)
    for trial in range(40):
        n = int(rng.integers(6, 40))
        y = rng.integers(0, 2, n)
        p = rng.integers(0, 2, n)
        g = rng.choice(["g1", "g2", "g3", "g4"], n)
        if trial % 3 == 0:  # force a one-class group, sometimes perfectly classified
            y[g == "g1"] = 1
            p[g == "g1"] = 1 if trial % 2 else rng.integers(0, 2, int((g == "g1").sum()))
        ref = _official_mama_mia(y, p, g)
        got = equalized_odds_gap(y, p, g, policy="mama-mia")
        assert (got.tpr_gap, got.fpr_gap) == pytest.approx(ref), trial


def test_group_rates_give_sklearn_balanced_accuracy():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.7, y, 1 - y)
    g = rng.choice(["pre", "post"], 200)
    rates = group_rates(y, p, g)
    for group, row in rates.iterrows():
        m = g == group
        expected = balanced_accuracy_score(y[m], p[m])
        assert (row["tpr"] + 1 - row["fpr"]) / 2 == pytest.approx(expected)
        tn, fp, fn, tp = confusion_matrix(y[m], p[m], labels=[0, 1]).ravel()
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (tp, fp, fn, tn)


def test_skipna_false_lets_nan_through():
    values = {"dice": [0.5, np.nan, 0.9, 0.7], "hd95": [1.0, 2.0, 3.0, 5.0]}
    groups = {"site": ["a", "a", "b", "b"], "sex": ["F", "M", "F", "M"]}
    frame = GroupMetricFrame(values, groups, min_group_size=0, skipna=False)
    assert math.isnan(frame.by_group.loc[("site", "a"), "dice"])
    assert frame.n_valid.loc[("site", "a"), "dice"] == 1
    assert math.isnan(frame.overall["dice"])
    diff = frame.difference()
    assert math.isnan(diff.loc["site", "dice"]) and math.isnan(diff.loc["sex", "dice"])
    assert diff.loc["site", "hd95"] == pytest.approx(2.5)
    assert math.isnan(frame.bootstrap_ci(n_resamples=50).loc[("site", "a", "dice"), "low"])
    assert frame.group_values("site", "a", "dice").size == 2
    skipped = GroupMetricFrame(values, groups, min_group_size=0)
    assert skipped.difference().loc["site", "dice"] == pytest.approx(0.3)
    assert skipped.group_values("site", "a", "dice").tolist() == [0.5]
    with pytest.raises(MetricInputError, match="no metric"):
        skipped.group_values("site", "c", "dice")


def test_variable_without_any_group_has_nan_spreads():
    frame = GroupMetricFrame({"dice": [0.5, 0.7]}, {"age": [None, None]}, min_group_size=0)
    assert frame.by_group.empty
    assert math.isnan(frame.difference().loc["age", "dice"])


def test_max_min():
    from medfleet.evaluate.analysis.fairness import max_min

    assert max_min([0.2, 0.9, 0.5]) == pytest.approx(0.7)
    assert max_min([0.2, np.nan]) == 0.0
    assert math.isnan(max_min([0.2, np.nan], skipna=False))
    assert math.isnan(max_min([])) and max_min([np.nan], empty=0.0) == 0.0
    assert max_min([1.0, math.inf]) == math.inf


def test_group_rates_skip_policy_is_fixed_labels():
    # a: positives only -> FPR undefined (NaN) with fixed labels, 0 with the official policy
    y, p, g = [1, 1, 1, 0], [1, 1, 1, 0], ["a", "a", "b", "b"]
    skip = group_rates(y, p, g)
    assert skip.loc["a", "tpr"] == 1.0 and math.isnan(skip.loc["a", "fpr"])
    official = group_rates(y, p, g, policy="mama-mia")
    assert (official.loc["a", "tpr"], official.loc["a", "fpr"]) == (0.0, 0.0)
    assert official["n"].tolist() == [2, 2] and official["tp"].tolist() == [2, 1]
    assert group_rates([1], [1], [None]).empty  # a case without a group is left out
