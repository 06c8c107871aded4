"""Federated study: local-only, centralised and federated strategies compared on the same cases.

:func:`run_study` trains, for one manifest with several sites:

* **local-only**: one model per site, on that site's rows only (``OUT/local/<site>/``);
* **centralised**: one model on the pooled rows of every site (``OUT/centralised/``), the
  upper reference that federated learning tries to reach without moving images;
* **each federated strategy** (``fedavg``, ``fedprox``, ``lora``, ``dual-lora``) with
  :func:`medfleet.federated.run_federated` (``OUT/federated/<strategy>/``).

Budget matching: every arm gets the same number of local optimiser steps on the same model
configuration, batch size and peak learning rate. A federated run of ``R`` rounds with
``L`` local steps per round gives each site ``R * L`` steps; local-only trains each site's
model for ``R * L`` steps and centralised trains for ``S * R * L`` steps (``S`` sites), the
total work of the federation. With ``local_epochs`` instead of ``local_steps``, ``L`` is the
site's batches per epoch times the epochs. Federated clients start each round's ``L`` steps
with a fresh optimiser and warm-up/cosine schedule; local-only and centralised runs use one
schedule over all their steps.

Every resulting model then predicts each site's test split with
:func:`medfleet.train.predict.predict_manifest` and is scored by the evaluation runner
(:func:`medfleet.train.predict.evaluate_predictions`); a site is always scored by the model
that site would use (its local model, the centralised model, or its copy of the federated
model with its private parts). :func:`analyse_cases` turns the per-case results into
per-site and pooled metrics with bootstrap confidence intervals and paired tests between
arms on the same cases (Holm-adjusted): McNemar on correctness, DeLong on the AUC of a
binary task (multiclass: paired bootstrap of the macro one-vs-rest AUC), a paired bootstrap
of the balanced accuracy, and Wilcoxon on per-case Dice.

``OUT/study.json`` holds everything; :mod:`medfleet.federated.study_report` writes the CSV
tables and ``report.html``.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.evaluate.cases import read_result_rows
from medfleet.tasks import Manifest, TaskType

STUDY_FORMAT = "medfleet.federated.study/1"
"""Version string of ``study.json``."""

LOCAL = "local-only"
"""Name of the arm where each site trains alone."""

CENTRALISED = "centralised"
"""Name of the arm trained on the pooled rows of all sites."""

POOLED = "pooled"
"""The ``site`` value of metrics over the test cases of every site."""

STUDY_TYPES = (TaskType.classification, TaskType.segmentation)
"""Task types the study scores with metrics, intervals and paired tests."""

LogCallback = Callable[[str], None]
FederatedRunner = Callable[..., Any]


# ----------------------------------------------------------------------------- site data


def site_rows(manifest: Manifest, site: str, task: str) -> list[dict[str, str]]:
    """Rows of ``task``'s table that belong to ``site`` (every split).

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> m = Manifest.load(generate_phantoms(tempfile.mkdtemp(),
        ...     PhantomConfig(tasks=["lesion_cls"]), sites=2, cases_per_site=3, size=32))
        >>> len(site_rows(m, "site_b", "lesion_cls"))
        3
    """
    from medfleet.tables import read_table

    path = manifest.table_path(task)
    if not path.is_file():
        raise MedfleetError(
            f"task {task!r}: table {path} not found (fix: check 'table' in the manifest)"
        )
    return [r for r in read_table(path) if (r.get("site") or "").strip() == site]


def _site_part(manifest: Manifest, site: str, folder: str | Path, tasks: Sequence[str]) -> Manifest:
    """``site``'s rows of ``tasks`` as a manifest (tables written under ``folder``).

    The filtering is the federated clients' own (:func:`medfleet.federated.site.site_manifest`),
    so local-only training sees exactly the rows the site trains on in a federated run.
    """
    from medfleet.federated.site import site_manifest

    kept = manifest.model_copy(update={"tasks": [manifest.task(t) for t in tasks]})
    kept.root = manifest.root
    part, _ = site_manifest(kept, site, Path(folder))
    part = part.model_copy(update={"sites": [s for s in manifest.sites if s.name == site]})
    part.root = manifest.root
    return part


def _split_rows(manifest: Manifest, tasks: Sequence[str], site: str, split: str) -> int:
    return sum(
        1
        for t in tasks
        for r in site_rows(manifest, site, t)
        if (r.get("split") or "").strip() == split
    )


# ----------------------------------------------------------------------------- budget


def matched_budget(
    fed_config: Any, train_rows: Mapping[str, int], batch_size: int
) -> dict[str, Any]:
    """Optimiser steps of each arm so that all arms do the same local work.

    Args:
        fed_config: The federated configuration (``rounds`` and ``local_steps`` or
            ``local_epochs``).
        train_rows: Training rows per site.
        batch_size: Images per batch.

    Returns:
        ``rounds``, ``steps_per_round`` and ``steps`` per site, ``centralised_steps`` (their
        sum) and ``rule`` (the matching rule in words).

    Example:
        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(rounds=3, local_steps=5)
        >>> b = matched_budget(cfg, {"a": 10, "b": 20}, 4)
        >>> b["steps"], b["centralised_steps"]
        ({'a': 15, 'b': 15}, 30)
        >>> cfg = SimpleNamespace(rounds=2, local_steps=None, local_epochs=1)
        >>> matched_budget(cfg, {"a": 10, "b": 20}, 4)["steps"]
        {'a': 6, 'b': 10}
    """
    rounds = int(fed_config.rounds)
    local_steps = getattr(fed_config, "local_steps", None)
    per_round: dict[str, int] = {}
    for site, n in train_rows.items():
        if local_steps:
            per_round[site] = int(local_steps)
        else:
            epochs = float(getattr(fed_config, "local_epochs", None) or 1)
            per_round[site] = max(1, math.ceil(epochs * math.ceil(max(n, 1) / batch_size)))
    steps = {site: rounds * k for site, k in per_round.items()}
    return {
        "rounds": rounds,
        "steps_per_round": per_round,
        "steps": steps,
        "centralised_steps": int(sum(steps.values())),
        "batch_size": int(batch_size),
        "rule": (
            "same model configuration, batch size and peak learning rate; each site does "
            "rounds x local steps optimiser steps in every federated strategy (a fresh "
            "optimiser and schedule each round) and in local-only training (one schedule); "
            "centralised training does the sum over sites (the federation's total work)"
        ),
    }


# ----------------------------------------------------------------------------- per-case data


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


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


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
            values = [_float(row.get(f"prob_{k}")) for k in classes]
            if all(math.isfinite(v) for v in values):
                probs[i] = values
            elif 0 <= pred[i] < len(classes):  # no probabilities: the label as a score
                probs[i, pred[i]] = 1.0
        return TaskCases(ids, sites, truth=truth, pred=pred, probs=probs)
    dice = np.array([np.nanmean([_float(r["dice"]) for r in grouped[c]]) for c in ids])
    hd95 = np.array([np.mean([_float(r["hd95"]) for r in grouped[c]]) for c in ids])
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
    from medfleet.evaluate.classification import (
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


# ----------------------------------------------------------------------------- federated.json


def read_federated(path: str | Path) -> dict[str, Any]:
    """Read ``federated.json`` (a file or the run folder holding it).

    Raises:
        MedfleetError: Missing or unreadable file, or not the federated format.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "federated.json"
    if not path.is_file():
        raise MedfleetError(f"{path} not found (fix: give the folder of a federated run)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MedfleetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith(
        "medfleet.federated/"
    ):
        raise MedfleetError(f"{path} is not a federated run record (format medfleet.federated/N)")
    return data


def communication_rows(
    arm: str, record: Mapping[str, Any], strategy: str | None = None
) -> list[dict[str, Any]]:
    """Bytes per round of one federated arm, summed over clients (both directions).

    ``bytes_sent`` is what the clients sent to the server (uploads), ``bytes_received``
    what they received (downloads), both measured on the serialized messages.

    Example:
        >>> rec = {"rounds": [{"round": 1, "clients": {
        ...     "a": {"status": "ok", "bytes_sent": 10, "bytes_received": 30},
        ...     "b": {"status": "failed", "bytes_sent": 0, "bytes_received": 30}}}]}
        >>> r = communication_rows("lora", rec)[0]
        >>> r["bytes_sent"], r["bytes_received"], r["bytes_total"], r["clients_ok"]
        (10, 60, 70, 1)
    """
    strategy = strategy or str((record.get("config") or {}).get("strategy") or arm)
    rows = []
    for rnd in record.get("rounds", []):
        clients = rnd.get("clients", {}) or {}
        sent = sum(int(c.get("bytes_sent") or 0) for c in clients.values())
        received = sum(int(c.get("bytes_received") or 0) for c in clients.values())
        ok = sum(1 for c in clients.values() if c.get("status") == "ok")
        rows.append(
            {
                "arm": arm,
                "strategy": strategy,
                "round": int(rnd.get("round", len(rows) + 1)),
                "clients": len(clients),
                "clients_ok": ok,
                "bytes_sent": sent,
                "bytes_received": received,
                "bytes_total": sent + received,
                "bytes_sent_per_client": sent / ok if ok else math.nan,
            }
        )
    return rows


def communication_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean bytes per round per arm, and each arm's share of the FedAvg arm's.

    The reference is the arm named ``fedavg``, else the first arm with strategy ``fedavg``.

    Example:
        >>> rows = [{"arm": "fedavg", "strategy": "fedavg", "bytes_total": 1000,
        ...          "bytes_sent": 400},
        ...         {"arm": "lora", "strategy": "lora", "bytes_total": 10, "bytes_sent": 4}]
        >>> [(r["arm"], r["fraction_of_fedavg"]) for r in communication_summary(rows)]
        [('fedavg', 1.0), ('lora', 0.01)]
    """
    arms: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        arms.setdefault(str(r.get("arm", r.get("strategy"))), []).append(r)
    out = []
    for name, items in arms.items():
        out.append(
            {
                "arm": name,
                "strategy": str(items[0].get("strategy", name)),
                "rounds": len(items),
                "bytes_per_round": float(np.mean([r["bytes_total"] for r in items])),
                "bytes_sent_per_round": float(np.mean([r["bytes_sent"] for r in items])),
            }
        )
    reference = next((r for r in out if r["arm"] == "fedavg"), None) or next(
        (r for r in out if r["strategy"] == "fedavg"), None
    )
    for r in out:
        r["fraction_of_fedavg"] = (
            r["bytes_per_round"] / reference["bytes_per_round"]
            if reference and reference["bytes_per_round"]
            else math.nan
        )
    return out


def curve_rows(arm: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Learning curves: one row per round, site, task and metric, plus the site mean.

    Rows come from the per-round ``metrics`` (site -> task -> metric -> value) and the
    clients' ``train_loss`` (task ``train``, metric ``loss``); ``site`` ``mean`` is the
    unweighted mean over the sites that reported the metric that round.

    Example:
        >>> rec = {"rounds": [{"round": 1, "clients": {"a": {"train_loss": 1.0},
        ...     "b": {"train_loss": 3.0}}, "metrics": {"a": {"t": {"auc": 0.6}},
        ...     "b": {"t": {"auc": 0.8}}}}]}
        >>> [(r["site"], r["metric"], r["value"]) for r in curve_rows("fedavg", rec)
        ...  if r["site"] == "mean"]
        [('mean', 'loss', 2.0), ('mean', 'auc', 0.7)]
    """
    rows: list[dict[str, Any]] = []
    for rnd in record.get("rounds", []):
        number = int(rnd.get("round", 0))
        values: dict[tuple[str, str], dict[str, float]] = {}
        for site, client in (rnd.get("clients") or {}).items():
            loss = _float(client.get("train_loss"))
            if math.isfinite(loss):
                values.setdefault(("train", "loss"), {})[site] = loss
        for site, tasks in (rnd.get("metrics") or {}).items():
            for task, metrics in (tasks or {}).items():
                if not isinstance(metrics, Mapping):
                    continue
                for metric, value in metrics.items():
                    v = _float(value)
                    if math.isfinite(v):
                        values.setdefault((task, metric), {})[site] = v
        for (task, metric), by_site in values.items():
            for site, v in sorted(by_site.items()):
                rows.append(
                    {
                        "arm": arm,
                        "round": number,
                        "site": site,
                        "task": task,
                        "metric": metric,
                        "value": v,
                    }
                )
            rows.append(
                {
                    "arm": arm,
                    "round": number,
                    "site": "mean",
                    "task": task,
                    "metric": metric,
                    "value": float(np.mean(list(by_site.values()))),
                }
            )
    return rows


# ----------------------------------------------------------------------------- the study


@dataclass
class StudyResult:
    """What :func:`run_study` produced.

    Attributes:
        out: The study folder.
        data: The content of ``study.json``.
        files: Written files by role (``study_json``, ``metrics_csv``, ``report_html``...).
    """

    out: Path
    data: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def _train_config(train_config: Any, steps: int) -> Any:
    """The training settings with ``steps`` optimiser steps and no intermediate validation."""
    return train_config.model_copy(
        update={"max_steps": int(steps), "epochs": max(train_config.epochs, 10_000), "val_every": 0}
    )


def federated_arms(
    strategies: Sequence[str | tuple[str, Mapping[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """Federated arms as ``(name, FederatedConfig overrides)``.

    A plain strategy name is an arm of that name; ``(name, overrides)`` changes more fields
    (e.g. ``("dual-lora-2", {"strategy": "dual-lora", "blocks": [-2, -1]})``).

    Example:
        >>> federated_arms(["fedavg", ("dl2", {"strategy": "dual-lora", "blocks": [-2, -1]})])
        [('fedavg', {'strategy': 'fedavg'}), ('dl2', {'strategy': 'dual-lora', 'blocks': [-2, -1]})]
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for item in strategies:
        name, overrides = (item, {"strategy": item}) if isinstance(item, str) else item
        overrides = dict(overrides)
        overrides.setdefault("strategy", name)
        if name in (LOCAL, CENTRALISED) or name in {n for n, _ in out}:
            raise MedfleetError(
                f"arm name {name!r} is used twice or is reserved (fix: rename the arm)"
            )
        out.append((name, overrides))
    return out


def _default_runner() -> FederatedRunner:
    try:
        from medfleet.federated import run_federated
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MedfleetError(
            f"the federated engine is unavailable ({exc}) "
            "(fix: pip install -e '.[fl]' to install Flower)"
        ) from exc
    return run_federated


def run_study(
    manifest: Manifest,
    model_config: Any,
    train_config: Any,
    fed_config: Any,
    out: str | Path,
    *,
    strategies: Sequence[str | tuple[str, Mapping[str, Any]]] = ("fedavg", "lora", "dual-lora"),
    include_local: bool = True,
    include_centralised: bool = True,
    tasks: Sequence[str] | None = None,
    positive_class: Mapping[str, str] | None = None,
    split: str = "test",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    report: bool = True,
    reuse: bool = False,
    log: LogCallback | None = None,
    federated_runner: FederatedRunner | None = None,
) -> StudyResult:
    """Train local-only, centralised and federated models on the same budget and compare them.

    Args:
        manifest: A manifest with several sites.
        model_config: The model (:class:`medfleet.models.ModelConfig`), the same for every
            arm; federated strategies set their adapters from ``fed_config``.
        train_config: Training settings (:class:`medfleet.train.config.TrainConfig`).
        fed_config: :class:`medfleet.federated.FederatedConfig`; its ``strategy`` is
            replaced by each of ``strategies``.
        out: The study folder.
        strategies: Federated arms: strategy names, or ``(name, overrides)`` pairs that
            change more fields of ``fed_config`` (see :func:`federated_arms`).
        include_local: Train each site alone.
        include_centralised: Train on the pooled sites.
        tasks: Tasks to study (default: every classification and segmentation task).
        positive_class: Task -> positive class (binary metrics, DeLong).
        split: The split scored (``test``).
        n_resamples: Bootstrap resamples.
        confidence: Interval coverage and the significance level ``1 - confidence``.
        report: Also write the CSV tables and ``report.html``.
        reuse: Keep a run already in ``out`` when it finished with the same settings
            (``training.json`` / ``federated.json``), instead of training it again.
        log: Called with one line per stage.
        federated_runner: Replaces :func:`medfleet.federated.run_federated` (same
            signature), e.g. to study runs made elsewhere.

    Returns:
        The study record (also ``OUT/study.json``) and the written files.

    Raises:
        MedfleetError: Fewer than two sites with data, no task to study, an unknown task,
            or a failure of a training or evaluation stage (named).
    """
    from medfleet.train.run import train_model
    from medfleet.utils.atomic import write_json_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _line: None)
    names = _study_tasks(manifest, tasks)
    specs = {n: manifest.task(n) for n in names}
    sites = [s for s in manifest.site_names if any(site_rows(manifest, s, t) for t in names)]
    if len(sites) < 2:
        raise MedfleetError(
            f"manifest {manifest.name!r} has data from {len(sites)} site(s) in task(s) {names}; "
            "a federated study needs at least two (fix: check the 'site' column)"
        )
    if not (strategies or include_local or include_centralised):
        raise MedfleetError(
            "nothing to compare (fix: give strategies or include local/centralised)"
        )
    plans = federated_arms(strategies)  # checked before anything trains
    parts = {s: _site_part(manifest, s, out / "data" / s, names) for s in sites}
    pooled = manifest.model_copy(  # the studied tasks and the sites that have their data
        update={
            "tasks": [specs[n] for n in names],
            "sites": [s for s in manifest.sites if s.name in sites],
        }
    )
    pooled.root = manifest.root
    train_rows = {s: _split_rows(parts[s], names, s, "train") for s in sites}
    budget = matched_budget(fed_config, train_rows, int(train_config.batch_size))
    runs: dict[str, dict[str, Path]] = {}
    arms: list[dict[str, Any]] = []
    federated: dict[str, dict[str, Any]] = {}

    if include_local:
        runs[LOCAL] = {}
        for s in sites:
            folder = out / "local" / s
            config = _train_config(train_config, budget["steps"][s])
            runs[LOCAL][s] = folder
            if reuse and _trained(folder, model_config, config, names):
                say(f"local-only: reusing {folder}")
                continue
            say(f"local-only: training {s} for {budget['steps'][s]} steps")
            _stage(
                f"local-only training of site {s}",
                lambda s=s, folder=folder, config=config: train_model(
                    parts[s], model_config, config, folder, tasks=names
                ),
            )
        arms.append({"name": LOCAL, "kind": "local", "steps": budget["steps"]})
    if include_centralised:
        steps = budget["centralised_steps"]
        folder = out / "centralised"
        config = _train_config(train_config, steps)
        if reuse and _trained(folder, model_config, config, names):
            say(f"centralised: reusing {folder}")
        else:
            say(f"centralised: training on {len(sites)} pooled sites for {steps} steps")
            _stage(
                "centralised training",
                lambda: train_model(pooled, model_config, config, folder, tasks=names),
            )
        runs[CENTRALISED] = dict.fromkeys(sites, folder)
        arms.append({"name": CENTRALISED, "kind": "centralised", "steps": steps})
    runner = federated_runner or (_default_runner() if plans else None)
    for arm, overrides in plans:
        config = fed_config.model_copy(update=dict(overrides))
        config = type(config).model_validate(config.model_dump())
        folder = out / "federated" / arm
        if reuse and _federated_done(folder, config, train_config):
            say(f"federated: reusing {folder}")
        else:
            say(f"federated: {arm} ({config.strategy}), {config.rounds} rounds")
            _stage(
                f"federated run {arm!r}",
                lambda config=config, folder=folder: runner(  # type: ignore[misc]
                    pooled, model_config, train_config, config, folder
                ),
            )
        record = read_federated(folder)
        federated[arm] = record
        missing = [s for s in sites if not (folder / "sites" / s / "model.pt").is_file()]
        if missing:
            raise MedfleetError(
                f"federated run {arm!r} in {folder} has no model for site(s) {missing} "
                "(fix: check federated.json for failed clients and rerun)"
            )
        runs[arm] = {s: folder / "sites" / s for s in sites}
        arms.append(
            {
                "name": arm,
                "kind": "federated",
                "strategy": config.strategy,
                "steps": budget["steps"],
                "config": config.model_dump(mode="json"),
            }
        )

    say(f"scoring {len(runs)} arm(s) on the {split} split of {len(sites)} sites")
    cases = _score_arms(manifest, parts, runs, specs, split, out / "evaluation")
    analysis = analyse_cases(
        specs,
        cases,
        positive_class=positive_class,
        n_resamples=n_resamples,
        confidence=confidence,
    )
    strategy_of = {a["name"]: a.get("strategy") for a in arms}
    comm = [r for a, rec in federated.items() for r in communication_rows(a, rec, strategy_of[a])]
    data: dict[str, Any] = {
        "format": STUDY_FORMAT,
        "manifest": manifest.name,
        "sites": sites,
        "tasks": {n: specs[n].type.value for n in names},
        "split": split,
        "arms": arms,
        "budget": budget,
        "model_config": model_config.model_dump(mode="json"),
        "train_config": train_config.model_dump(mode="json"),
        "federated_config": fed_config.model_dump(mode="json"),
        "bootstrap": {"n_resamples": n_resamples, "confidence": confidence, "seed": 0},
        "runs": {a: {s: str(p) for s, p in by_site.items()} for a, by_site in runs.items()},
        "metrics": analysis["metrics"],
        "tests": analysis["tests"],
        "communication": comm,
        "communication_summary": [
            {**r, "exchanged_parameters": federated[r["arm"]].get("exchanged_parameters")}
            for r in communication_summary(comm)
        ],
        "bytes_per_round": {s: rec.get("bytes_per_round") for s, rec in federated.items()},
        "curves": [r for s, rec in federated.items() for r in curve_rows(s, rec)],
        "failures": [
            {"arm": s, "round": rnd.get("round"), "site": site, "error": c.get("error")}
            for s, rec in federated.items()
            for rnd in rec.get("rounds", [])
            for site, c in (rnd.get("clients") or {}).items()
            if c.get("status") not in (None, "ok")
        ],
    }
    from medfleet.evaluate.aggregate import json_safe

    data = json_safe(data)
    files = {"study_json": write_json_atomic(out / "study.json", data)}
    if report:
        from medfleet.federated.study_report import write_study_report

        files.update(write_study_report(data, out))
    say(f"study written to {out}")
    return StudyResult(out, data, files)


def _trained(folder: Path, model_config: Any, train_config: Any, tasks: Sequence[str]) -> bool:
    """Whether ``folder`` holds a finished training run with exactly these settings."""
    path = folder / "training.json"
    if not (folder / "model.pt").is_file() or not path.is_file():
        return False
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        info.get("tasks") == list(tasks)
        and info.get("model_config") == model_config.model_dump(mode="json")
        and info.get("train_config") == train_config.model_dump(mode="json")
    )


def _federated_done(folder: Path, fed_config: Any, train_config: Any) -> bool:
    """Whether ``folder`` holds a finished federated run with these settings."""
    try:
        record = read_federated(folder)
    except MedfleetError:
        return False
    return (
        record.get("status") == "finished"
        and record.get("config") == fed_config.model_dump(mode="json")
        and record.get("train") in (None, train_config.model_dump(mode="json"))
    )


def _study_tasks(manifest: Manifest, tasks: Sequence[str] | None) -> list[str]:
    known = [t.name for t in manifest.tasks]
    if tasks is not None:
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise MedfleetError(f"task(s) {unknown} are not in the manifest; tasks: {known}")
        chosen = [t for t in known if t in set(tasks)]
    else:
        chosen = known
    chosen = [t for t in chosen if manifest.task(t).type in STUDY_TYPES]
    if not chosen:
        raise MedfleetError(
            f"no classification or segmentation task to study in {tasks or known} "
            "(fix: choose such tasks with --tasks)"
        )
    return chosen


def _stage(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except MedfleetError as exc:
        raise MedfleetError(f"{what} failed: {exc}") from exc


def _score_arms(
    manifest: Manifest,
    parts: Mapping[str, Manifest],
    runs: Mapping[str, Mapping[str, Path]],
    specs: Mapping[str, Any],
    split: str,
    out: Path,
) -> dict[str, dict[str, TaskCases]]:
    """Predict and score each site's split with each arm's model for that site."""
    import torch

    from medfleet.train.predict import evaluate_predictions, predict_manifest
    from medfleet.train.run import load_trained

    by_task: dict[str, dict[str, list[TaskCases]]] = {t: {} for t in specs}
    for arm, by_site in runs.items():
        loaded: dict[Path, Any] = {}
        for site, folder in by_site.items():
            part = parts[site]
            present = [t for t in specs if _split_rows(part, [t], site, split)]
            if not present:
                continue
            if folder not in loaded:
                loaded[folder] = _stage(
                    f"loading the {arm} model of site {site}",
                    lambda folder=folder: load_trained(folder, manifest),
                )
            model = loaded[folder]
            target = out / arm / site
            run = _stage(
                f"predicting site {site} with the {arm} model",
                lambda model=model, part=part, target=target, present=present: predict_manifest(
                    model.model,
                    part,
                    target,
                    split=split,
                    tasks=present,
                    image_size=model.image_size,
                    normalisation=model.normalisation,
                    device=torch.device("cpu"),
                ),
            )
            scored = _stage(
                f"scoring site {site} with the {arm} model",
                lambda part=part, run=run: evaluate_predictions(part, run, report=False),
            )
            for task, info in scored.items():
                tc = read_task_cases(specs[task], info["cases_csv"], site)
                by_task[task].setdefault(arm, []).append(tc)
        loaded.clear()
    return {
        task: {arm: TaskCases.concat(parts_) for arm, parts_ in arms.items()}
        for task, arms in by_task.items()
    }


__all__ = [
    "CENTRALISED",
    "LOCAL",
    "METRICS",
    "POOLED",
    "STUDY_FORMAT",
    "StudyResult",
    "TaskCases",
    "align",
    "analyse_cases",
    "classification_value",
    "communication_rows",
    "communication_summary",
    "curve_rows",
    "federated_arms",
    "matched_budget",
    "metric_ci",
    "paired_tests",
    "positive_index",
    "read_federated",
    "read_task_cases",
    "run_study",
    "site_rows",
]
