"""Per-case results of a federated study: metrics with bootstrap intervals and paired tests.

:func:`read_task_cases` reads one arm's evaluation ``cases.csv`` of a task at a site;
:func:`analyse_cases` turns the arms' aligned cases into per-site and pooled metrics with
percentile bootstrap intervals (:func:`metric_ci`) and paired tests between arms on the same
cases (:func:`paired_tests`, Holm-adjusted): McNemar on correctness, DeLong on the AUC of a
binary task (multiclass: paired bootstrap of the macro one-vs-rest AUC), a paired bootstrap of
the balanced accuracy, and Wilcoxon on per-case Dice.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.evaluate.runner.cases import cell_float, read_result_rows
from medfleet.tasks import TaskType

POOLED = "pooled"
"""The ``site`` value of metrics over the test cases of every site."""


@dataclass
class TaskCases:
    """One arm's test cases of one task, all sites together.

    Attributes:
        case_ids: Case ids, sorted.
        sites: Site of each case.
        truth: Classification: index of the true class.
        pred: Classification: index of the predicted class.
        probs: Classification: ``(n, K)`` class probabilities.
        dice: Segmentation: Dice per case (mean over foreground labels).
        hd95: Segmentation: HD95 per case in mm (mean over labels; inf when a mask is empty).
    """

    case_ids: list[str]
    sites: list[str]
    truth: np.ndarray | None = None
    pred: np.ndarray | None = None
    probs: np.ndarray | None = None
    dice: np.ndarray | None = None
    hd95: np.ndarray | None = None

    def subset(self, keep: Sequence[int]) -> TaskCases:
        """The cases at positions ``keep``."""
        idx = np.asarray(keep, dtype=np.int64)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return TaskCases(
            [self.case_ids[i] for i in idx],
            [self.sites[i] for i in idx],
            take(self.truth),
            take(self.pred),
            take(self.probs),
            take(self.dice),
            take(self.hd95),
        )

    @staticmethod
    def concat(parts: Sequence[TaskCases]) -> TaskCases:
        """All cases of ``parts``, sorted by case id."""
        ids = [c for p in parts for c in p.case_ids]
        sites = [s for p in parts for s in p.sites]
        order = sorted(range(len(ids)), key=lambda i: ids[i])

        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            if any(a is None for a in arrays) or not arrays:
                return None
            return np.concatenate(arrays)[order]

        return TaskCases(
            [ids[i] for i in order],
            [sites[i] for i in order],
            cat("truth"),
            cat("pred"),
            cat("probs"),
            cat("dice"),
            cat("hd95"),
        )


def read_task_cases(
    spec: Any, cases_csv: str | Path, site_of: Mapping[str, str] | str
) -> TaskCases:
    """Per-case results of one task from an evaluation ``cases.csv``.

    Args:
        spec: The task (:class:`medfleet.tasks.TaskSpec`).
        cases_csv: ``cases.csv`` written by the evaluation runner.
        site_of: Site of every case, or one site for all.

    Raises:
        MedfleetError: The file is missing or lacks the needed columns.
    """
    kind = spec.type
    needed = ("gt", "pred") if kind is TaskType.classification else ("dice", "hd95")
    grouped = read_result_rows(cases_csv, needed, f"task {spec.name!r}")
    ids = sorted(grouped)

    def site(c: str) -> str:
        return site_of if isinstance(site_of, str) else str(site_of.get(c, ""))

    sites = [site(c) for c in ids]
    if kind is TaskType.classification:
        classes = list(spec.classes or [])
        index = {k: i for i, k in enumerate(classes)}
        truth = np.array([index.get(grouped[c][0]["gt"], -1) for c in ids], dtype=np.int64)
        pred = np.array([index.get(grouped[c][0]["pred"], -1) for c in ids], dtype=np.int64)
        probs = np.zeros((len(ids), len(classes)))
        for i, c in enumerate(ids):
            row = grouped[c][0]
            values = [cell_float(row.get(f"prob_{k}")) for k in classes]
            if all(math.isfinite(v) for v in values):
                probs[i] = values
            elif 0 <= pred[i] < len(classes):  # no probabilities: the label as a score
                probs[i, pred[i]] = 1.0
        return TaskCases(ids, sites, truth=truth, pred=pred, probs=probs)
    dice = np.array([np.nanmean([cell_float(r["dice"]) for r in grouped[c]]) for c in ids])
    hd95 = np.array([np.mean([cell_float(r["hd95"]) for r in grouped[c]]) for c in ids])
    return TaskCases(ids, sites, dice=dice, hd95=hd95)


def align(cases: Mapping[str, TaskCases]) -> dict[str, TaskCases]:
    """Every arm restricted to the cases all arms scored, in one order (for paired tests).

    Example:
        >>> a = TaskCases(["1", "2", "3"], ["s"] * 3, dice=np.array([.1, .2, .3]),
        ...               hd95=np.zeros(3))
        >>> b = TaskCases(["2", "3"], ["s"] * 2, dice=np.array([.5, .6]), hd95=np.zeros(2))
        >>> align({"a": a, "b": b})["a"].dice.tolist()
        [0.2, 0.3]
    """
    common = set.intersection(*(set(c.case_ids) for c in cases.values())) if cases else set()
    out = {}
    for arm, c in cases.items():
        keep = [i for i, cid in enumerate(c.case_ids) if cid in common]
        out[arm] = c.subset(keep)
    return out


# ----------------------------------------------------------------------------- metrics


def _nanmean(values: Any) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def classification_value(
    metric: str, truth: np.ndarray, pred: np.ndarray, probs: np.ndarray, pos: int | None
) -> float:
    """One classification metric of class-index arrays.

    ``pos`` is the positive class (binary metrics); ``None`` gives macro one-vs-rest means
    over the classes present in ``truth`` (a class without cases is left out).

    Example:
        >>> t, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
        >>> s = np.array([[.8, .2], [.4, .6], [.3, .7], [.1, .9]])
        >>> [classification_value(m, t, p, s, 1) for m in METRICS["classification"]]
        [0.75, 1.0, 0.5, 1.0]
    """
    from medfleet.evaluate.metrics.classification import (
        balanced_accuracy,
        roc_auc,
        sensitivity,
        specificity,
    )

    if truth.size == 0:
        return math.nan
    k = probs.shape[1]
    labels = list(range(k))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy(truth, pred, labels))
    if metric in ("sensitivity", "specificity"):
        fn = sensitivity if metric == "sensitivity" else specificity
        if pos is not None:
            return float(fn(truth, pred, labels=labels, pos_label=pos, zero_division=math.nan))
        return float(fn(truth, pred, average="macro", labels=labels, zero_division=math.nan))
    if metric == "auc":
        if pos is not None:
            return float(roc_auc((truth == pos).astype(int), probs[:, pos]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per_class = roc_auc(truth, probs, average=None, labels=labels)
        return _nanmean(per_class)
    raise MedfleetError(f"unknown classification metric {metric!r}")


METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("balanced_accuracy", "sensitivity", "specificity", "auc"),
    "segmentation": ("dice", "hd95"),
}
"""Metrics reported per task type (segmentation: mean Dice, median HD95 in mm)."""

HIGHER_IS_BETTER = {
    "balanced_accuracy": True,
    "sensitivity": True,
    "specificity": True,
    "auc": True,
    "dice": True,
    "hd95": False,
}


def positive_index(spec: Any, positive_class: str | None = None) -> int | None:
    """Index of the positive class: ``positive_class``, else the second of two classes.

    Multiclass tasks without ``positive_class`` give ``None`` (macro one-vs-rest).

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> spec = TaskSpec(name="t", type="classification", table="t.csv",
        ...                 classes=["normal", "pneumonia"])
        >>> positive_index(spec), positive_index(spec, "normal")
        (1, 0)
    """
    classes = list(spec.classes or [])
    if positive_class is not None:
        if positive_class not in classes:
            raise MedfleetError(
                f"task {spec.name!r}: positive class {positive_class!r} is not one of "
                f"{classes} (fix: name one of the task's classes)"
            )
        return classes.index(positive_class)
    return 1 if len(classes) == 2 else None


def _statistic(kind: str, metric: str, cases: TaskCases, pos: int | None) -> Callable:
    """``f(index array) -> float`` of a metric over the cases at those positions."""
    if kind == "classification":
        truth, pred, probs = cases.truth, cases.pred, cases.probs
        assert truth is not None and pred is not None and probs is not None

        def cls(i: np.ndarray) -> float:
            j = i.astype(np.int64)
            return classification_value(metric, truth[j], pred[j], probs[j], pos)

        return cls
    values = cases.dice if metric == "dice" else cases.hd95
    assert values is not None
    reduce = np.nanmean if metric == "dice" else np.nanmedian

    def seg(i: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(reduce(values[i.astype(np.int64)]))

    return seg


def metric_ci(
    kind: str,
    metric: str,
    cases: TaskCases,
    pos: int | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """A metric over ``cases`` with a percentile bootstrap interval (cases resampled).

    Resamples where the metric is undefined (e.g. an AUC without positive cases) are left
    out of the interval and counted in ``n_undefined``.

    Example:
        >>> c = TaskCases([str(i) for i in range(6)], ["s"] * 6,
        ...               dice=np.array([.7, .8, .9, .6, .8, .75]), hd95=np.ones(6))
        >>> r = metric_ci("segmentation", "dice", c, n_resamples=200)
        >>> round(r["estimate"], 4), r["low"] <= r["estimate"] <= r["high"], r["n"]
        (0.7583, True, 6)
    """
    from medfleet.evaluate.stats import bootstrap_distribution

    n = len(cases.case_ids)
    stat = _statistic(kind, metric, cases, pos)
    idx = np.arange(n, dtype=np.float64)
    estimate = stat(idx) if n else math.nan
    low = high = math.nan
    undefined = 0
    if n:
        boot = bootstrap_distribution(
            [idx], stat, n_resamples=n_resamples, seed=seed, vectorized=False
        )
        ok = ~np.isnan(boot)
        undefined = int((~ok).sum())
        if ok.any():
            alpha = (1.0 - confidence) / 2.0
            finite = boot[ok]
            if np.isinf(finite).any():
                finite = np.sort(finite)
                low = float(finite[math.floor(alpha * (finite.size - 1))])
                high = float(finite[math.ceil((1 - alpha) * (finite.size - 1))])
            else:
                low, high = (float(v) for v in np.quantile(finite, [alpha, 1 - alpha]))
    return {
        "metric": metric,
        "estimate": float(estimate),
        "low": low,
        "high": high,
        "confidence": confidence,
        "n": n,
        "n_undefined": undefined,
        "method": "percentile bootstrap over cases",
    }


def paired_tests(
    kind: str,
    arm_a: str,
    arm_b: str,
    a: TaskCases,
    b: TaskCases,
    pos: int | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Paired tests of arm ``b`` against arm ``a`` on the same cases (aligned first).

    Classification: McNemar on per-case correctness (accuracy), a paired bootstrap of the
    balanced accuracy, and DeLong on the AUC of the positive class (a task with more
    than two classes and no positive class: paired bootstrap of the macro AUC).
    Segmentation: Wilcoxon signed-rank on per-case Dice. ``difference`` is ``b - a``.

    Example:
        >>> a = TaskCases(list("abcdefgh"), ["s"] * 8, dice=np.linspace(.5, .6, 8),
        ...               hd95=np.ones(8))
        >>> b = TaskCases(list("abcdefgh"), ["s"] * 8, dice=np.linspace(.5, .6, 8) + .1,
        ...               hd95=np.ones(8))
        >>> r = paired_tests("segmentation", "x", "y", a, b)[0]
        >>> r["test"], round(r["difference"], 3), round(r["p_value"], 4)
        ('wilcoxon', 0.1, 0.0078)
    """
    from medfleet.evaluate.stats import (
        delong_test,
        mcnemar,
        paired_bootstrap,
        wilcoxon_signed_rank,
    )

    pair = align({"a": a, "b": b})
    a, b = pair["a"], pair["b"]
    n = len(a.case_ids)
    rows: list[dict[str, Any]] = []
    base = {"arm_a": arm_a, "arm_b": arm_b, "n": n}
    if n == 0:
        return rows
    if kind == "segmentation":
        assert a.dice is not None and b.dice is not None
        r = wilcoxon_signed_rank(a.dice, b.dice)
        ea, eb = _nanmean(a.dice), _nanmean(b.dice)
        rows.append(
            {
                **base,
                "metric": "dice",
                "test": "wilcoxon",
                "estimate_a": ea,
                "estimate_b": eb,
                "difference": eb - ea,
                "low": math.nan,
                "high": math.nan,
                "statistic": r.statistic,
                "p_value": r.p_value,
                "method": r.method,
            }
        )
        return rows
    assert a.truth is not None and a.pred is not None and a.probs is not None
    assert b.pred is not None and b.probs is not None
    truth = a.truth
    correct_a = (a.pred == truth).astype(float)
    correct_b = (b.pred == truth).astype(float)
    r = mcnemar(correct_a, correct_b)
    rows.append(
        {
            **base,
            "metric": "accuracy",
            "test": "mcnemar",
            "estimate_a": float(correct_a.mean()),
            "estimate_b": float(correct_b.mean()),
            "difference": float(correct_b.mean() - correct_a.mean()),
            "low": math.nan,
            "high": math.nan,
            "statistic": r.statistic,
            "p_value": r.p_value,
            "method": r.method,
        }
    )
    # A paired bootstrap over the stacked cases of both arms: positions i (arm a) and
    # i + n (arm b) are drawn together, so both metrics see the same resampled cases.
    stacked = TaskCases(
        a.case_ids + b.case_ids,
        a.sites + b.sites,
        truth=np.concatenate([truth, truth]),
        pred=np.concatenate([a.pred, b.pred]),
        probs=np.vstack([a.probs, b.probs]),
    )
    idx = np.arange(n, dtype=np.float64)
    measures = [("balanced_accuracy", "paired bootstrap")]
    if pos is None:
        measures.append(("auc", "paired bootstrap"))
    for metric, test in measures:
        stat = _statistic(kind, metric, stacked, pos)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pb = paired_bootstrap(
                idx,
                idx + n,
                stat,
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
                vectorized=False,
            )
        rows.append(
            {
                **base,
                "metric": metric,
                "test": test,
                "estimate_a": pb.estimate_a,
                "estimate_b": pb.estimate_b,
                "difference": pb.estimate,
                "low": pb.low,
                "high": pb.high,
                "statistic": pb.estimate,
                "p_value": pb.p_value,
                "method": "paired percentile bootstrap over cases",
            }
        )
    if pos is not None:
        y = (truth == pos).astype(int)
        if 0 < y.sum() < y.size:
            d = delong_test(y, a.probs[:, pos], b.probs[:, pos], confidence=confidence)
            rows.append(
                {
                    **base,
                    "metric": "auc",
                    "test": "delong",
                    "estimate_a": d.auc_a,
                    "estimate_b": d.auc_b,
                    "difference": d.difference,
                    "low": d.ci_low,
                    "high": d.ci_high,
                    "statistic": d.statistic,
                    "p_value": d.p_value,
                    "method": d.method,
                }
            )
    return rows


def analyse_cases(
    specs: Mapping[str, Any],
    cases: Mapping[str, Mapping[str, TaskCases]],
    *,
    positive_class: Mapping[str, str] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Per-site and pooled metrics with intervals, and Holm-adjusted paired tests.

    Args:
        specs: Task name -> :class:`medfleet.tasks.TaskSpec` (classification/segmentation).
        cases: Task -> arm -> its cases (all sites).
        positive_class: Task -> positive class name (binary metrics and DeLong).
        n_resamples: Bootstrap resamples.
        confidence: Interval coverage.
        seed: Bootstrap seed.

    Returns:
        ``{"metrics": rows, "tests": rows}``. Metric rows: ``arm, task, site, metric,
        estimate, low, high, n``; ``site`` is a site name or ``pooled``. Test rows: ``task,
        metric, test, arm_a, arm_b, n, estimate_a, estimate_b, difference, low, high,
        statistic, p_value, p_holm, significant``; Holm's correction runs over the pairs of
        one task and test, on the pooled cases.
    """
    from medfleet.evaluate.stats import holm

    positive_class = dict(positive_class or {})
    metric_rows: list[dict[str, Any]] = []
    test_rows: list[dict[str, Any]] = []
    for task, spec in specs.items():
        kind = spec.type.value
        pos = positive_index(spec, positive_class.get(task)) if kind == "classification" else None
        arms = cases.get(task, {})
        for arm, c in arms.items():
            site_names = sorted(set(c.sites))
            for site in [*site_names, POOLED]:
                keep = [i for i, s in enumerate(c.sites) if site in (POOLED, s)]
                sub = c.subset(keep)
                for metric in METRICS[kind]:
                    ci = metric_ci(
                        kind,
                        metric,
                        sub,
                        pos,
                        n_resamples=n_resamples,
                        confidence=confidence,
                        seed=seed,
                    )
                    metric_rows.append({"arm": arm, "task": task, "site": site, **ci})
        task_tests: list[dict[str, Any]] = []
        for arm_a, arm_b in itertools.combinations(list(arms), 2):
            for row in paired_tests(
                kind,
                arm_a,
                arm_b,
                arms[arm_a],
                arms[arm_b],
                pos,
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
            ):
                task_tests.append({"task": task, "site": POOLED, **row})
        for test in sorted({r["test"] + "/" + r["metric"] for r in task_tests}):
            family = [r for r in task_tests if r["test"] + "/" + r["metric"] == test]
            adjusted = holm([r["p_value"] for r in family])
            for r, p in zip(family, adjusted, strict=True):
                r["p_holm"] = float(p)
                r["significant"] = bool(p < 1.0 - confidence)
        test_rows.extend(task_tests)
    return {"metrics": metric_rows, "tests": test_rows}
