"""Transfer analysis: how much sharing a model changes each task, against task-specific training.

For task ``t`` and paradigm ``p`` (grouped or unified) with primary test metric ``M``
(:data:`medfleet.train.validation.PRIMARY`)::

    delta = (M_p - M_specific) / M_specific          higher-is-better metrics
    delta = -(M_p - M_specific) / M_specific         lower-is-better metrics (MAE, MRE)

so a positive delta always means the shared model is better. Deltas are averaged by task
type, by clinical group and over all tasks. Confidence intervals come from a paired
percentile bootstrap over test cases (:func:`medfleet.evaluate.stats.bootstrap.
bootstrap_distribution`): each resample draws the test cases of every task with
replacement, the same draw for both paradigms, and recomputes every task's delta and
every average from that draw. A task or average is flagged as **negative transfer** when
its whole interval lies below zero.

Per-case inputs are the ``cases.csv`` files written by ``medfleet evaluate``:
segmentation Dice (mean over labels), classification true and predicted class (balanced
accuracy), detection true positives and ground-truth boxes (detection rate at IoU 0.5),
regression absolute error (MAE), landmarks the mean point error of each case (MRE).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.evaluate.runner.cases import cell_float, read_result_rows
from medfleet.tasks import Manifest, TaskSpec, TaskType
from medfleet.train.validation import primary_metric
from medfleet.utils.atomic import atomic_open, write_json_atomic, write_text_atomic

REFERENCE = "task-specific"


# ---------------------------------------------------------------------------- per-case data


def read_case_values(spec: TaskSpec, cases_csv: str | Path) -> dict[str, tuple[float, ...]]:
    """Per case, the numbers the task's primary metric is computed from.

    Returns:
        case id -> segmentation ``(dice,)``; classification ``(true index, predicted index)``;
        detection ``(tp, n_gt)``; regression ``(abs_error,)``; landmarks ``(mean error,)``.

    Raises:
        MedfleetError: The file is missing or lacks the needed columns.
    """
    needed = {
        TaskType.segmentation: ("dice",),
        TaskType.classification: ("gt", "pred"),
        TaskType.detection: ("tp", "n_gt"),
        TaskType.regression: ("abs_error",),
        TaskType.landmarks: ("error",),
    }[spec.type]
    grouped = read_result_rows(cases_csv, needed, f"task {spec.name!r}")
    out: dict[str, tuple[float, ...]] = {}
    classes = {c: i for i, c in enumerate(spec.classes or [])}
    for case_id, items in grouped.items():
        if spec.type is TaskType.segmentation:
            dice = np.array([cell_float(r["dice"]) for r in items])
            out[case_id] = (float(np.nanmean(dice)) if np.isfinite(dice).any() else math.nan,)
        elif spec.type is TaskType.classification:
            r = items[0]
            out[case_id] = (
                float(classes.get(r["gt"], -1)),
                float(classes.get(r["pred"], -1)),
            )
        elif spec.type is TaskType.detection:
            r = items[0]
            out[case_id] = (cell_float(r["tp"]), cell_float(r["n_gt"]))
        elif spec.type is TaskType.regression:
            out[case_id] = (cell_float(items[0]["abs_error"]),)
        else:
            errors = np.array([cell_float(r["error"]) for r in items])
            out[case_id] = (float(np.mean(errors)),)
    return out


def metric_from_arrays(kind: TaskType, *arrays: np.ndarray, axis: int = -1) -> np.ndarray:
    """The primary metric from per-case arrays (vectorised along ``axis`` = cases).

    Example:
        >>> y, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
        >>> float(metric_from_arrays(TaskType.classification, y, p))
        0.75
        >>> float(metric_from_arrays(TaskType.detection, np.array([1, 0]), np.array([1, 2])))
        0.3333333333333333
    """
    if kind is TaskType.classification:
        y, p = arrays
        classes = np.unique(y)
        recalls = []
        for k in classes:
            support = np.sum(y == k, axis=axis)
            hits = np.sum((y == k) & (p == k), axis=axis)
            with np.errstate(invalid="ignore", divide="ignore"):
                recalls.append(np.where(support > 0, hits / np.maximum(support, 1), np.nan))
        with np.errstate(invalid="ignore"):
            stacked = np.stack(recalls)
            counted = np.sum(np.isfinite(stacked), axis=0)
            return np.nansum(stacked, axis=0) / np.maximum(counted, 1)
    if kind is TaskType.detection:
        tp, n_gt = arrays
        total = np.sum(n_gt, axis=axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, np.sum(tp, axis=axis) / np.maximum(total, 1), np.nan)
    (values,) = arrays
    return np.mean(values, axis=axis)


def relative_delta(m_paradigm: Any, m_specific: Any, higher_is_better: bool) -> Any:
    """``(M_p - M_s) / M_s``, negated for lower-is-better metrics; NaN when ``M_s`` is 0.

    Example:
        >>> round(relative_delta(0.9, 0.8, True), 6), relative_delta(4.0, 5.0, False)
        (0.125, 0.2)
    """
    mp = np.asarray(m_paradigm, dtype=np.float64)
    ms = np.asarray(m_specific, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(ms != 0, (mp - ms) / np.abs(np.where(ms != 0, ms, 1.0)), np.nan)
    delta = delta if higher_is_better else -delta
    return float(delta) if delta.ndim == 0 else delta


@dataclass
class PairedTask:
    """One task's per-case values under task-specific training and one other paradigm.

    Attributes:
        spec: The task.
        case_ids: Cases scored under both paradigms (NaN cases dropped).
        specific: Arrays of the task-specific model (see :func:`read_case_values`).
        other: Arrays of the compared paradigm (the truth column shared for classification).
    """

    spec: TaskSpec
    case_ids: list[str]
    specific: list[np.ndarray]
    other: list[np.ndarray]

    def samples(self) -> list[np.ndarray]:
        """Arrays passed to the bootstrap: specific arrays then the compared ones."""
        return [*self.specific, *self.other]

    def delta(self, *arrays: np.ndarray, axis: int = -1) -> Any:
        """Delta from resampled arrays (vectorised)."""
        k = len(self.specific)
        kind = self.spec.type
        m_s = metric_from_arrays(kind, *arrays[:k], axis=axis)
        m_p = metric_from_arrays(kind, *arrays[k:], axis=axis)
        return relative_delta(m_p, m_s, primary_metric(self.spec)[1])

    def metrics(self) -> tuple[float, float]:
        """``(M_specific, M_paradigm)`` on all paired cases."""
        kind = self.spec.type
        return (
            float(metric_from_arrays(kind, *self.specific)),
            float(metric_from_arrays(kind, *self.other)),
        )


def pair_task(
    spec: TaskSpec,
    specific: Mapping[str, tuple[float, ...]],
    other: Mapping[str, tuple[float, ...]],
) -> PairedTask:
    """Align two paradigms' per-case values on their common cases (dropping NaN cases)."""
    ids = [c for c in sorted(set(specific) & set(other))]
    ids = [c for c in ids if all(math.isfinite(v) for v in (*specific[c], *other[c]))]
    if spec.type is TaskType.classification:
        ids = [c for c in ids if specific[c][0] >= 0 and specific[c][1] >= 0 and other[c][1] >= 0]
        spec_arrays = [np.array([specific[c][i] for c in ids]) for i in (0, 1)]
        other_arrays = [spec_arrays[0], np.array([other[c][1] for c in ids])]
    else:
        width = len(next(iter(specific.values()))) if specific else 1
        spec_arrays = [
            np.array([specific[c][i] for c in ids], dtype=np.float64) for i in range(width)
        ]
        other_arrays = [
            np.array([other[c][i] for c in ids], dtype=np.float64) for i in range(width)
        ]
        if spec.type is TaskType.detection:
            other_arrays[1] = spec_arrays[1]
    return PairedTask(spec, ids, spec_arrays, other_arrays)


# ---------------------------------------------------------------------------- analysis


@dataclass
class TransferAnalysis:
    """The transfer table, the costs and the bootstrap settings.

    Attributes:
        rows: One row per (level, name, paradigm): ``level`` is ``task``, ``type``,
            ``group`` or ``all``; with ``metric``, ``m_specific``, ``m_paradigm``, ``delta``,
            ``ci_low``, ``ci_high``, ``n_cases``, ``n_tasks``, ``negative_transfer``.
        costs: One row per paradigm: ``models``, ``parameters``, ``train_seconds``,
            ``inference_s_per_image``.
        settings: Bootstrap settings and notes.
    """

    rows: list[dict[str, Any]]
    costs: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"rows": self.rows, "costs": self.costs, "settings": self.settings}


def analyse_transfer(
    manifest: Manifest,
    cases: Mapping[str, Mapping[str, str | Path]],
    *,
    costs: Mapping[str, Mapping[str, Any]] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> TransferAnalysis:
    """Compute the transfer table from per-paradigm evaluation tables.

    Args:
        manifest: The manifest (task types and clinical groups).
        cases: paradigm -> task -> ``cases.csv`` of ``medfleet evaluate``; must include
            ``task-specific``.
        costs: paradigm -> ``{"models", "parameters", "train_seconds",
            "inference_s_per_image"}``.
        n_resamples: Bootstrap resamples.
        confidence: Interval coverage.
        seed: Bootstrap seed.

    Returns:
        The analysis.

    Raises:
        MedfleetError: No task-specific results, or a paradigm lacks a task.
    """
    from medfleet.evaluate.stats.bootstrap import bootstrap_distribution

    if REFERENCE not in cases:
        raise MedfleetError("transfer analysis needs the task-specific results as reference")
    reference = cases[REFERENCE]
    alpha = (1.0 - confidence) / 2.0
    rows: list[dict[str, Any]] = []
    for paradigm, per_task in cases.items():
        if paradigm == REFERENCE:
            continue
        replicates: dict[str, np.ndarray] = {}
        paired: dict[str, PairedTask] = {}
        for i, spec in enumerate(manifest.tasks):
            if spec.name not in reference or spec.name not in per_task:
                continue
            pair = pair_task(
                spec,
                read_case_values(spec, reference[spec.name]),
                read_case_values(spec, per_task[spec.name]),
            )
            paired[spec.name] = pair
            if pair.case_ids:
                replicates[spec.name] = bootstrap_distribution(
                    pair.samples(),
                    pair.delta,
                    n_resamples=n_resamples,
                    seed=[seed, i],
                    vectorized=True,
                )
            else:
                replicates[spec.name] = np.full(n_resamples, np.nan)
        for name, pair in paired.items():
            m_s, m_p = pair.metrics() if pair.case_ids else (math.nan, math.nan)
            delta = relative_delta(m_p, m_s, primary_metric(pair.spec)[1])
            rows.append(
                _row(
                    "task",
                    name,
                    paradigm,
                    replicates[name],
                    delta,
                    alpha,
                    metric=primary_metric(pair.spec)[0],
                    m_specific=m_s,
                    m_paradigm=m_p,
                    n_cases=len(pair.case_ids),
                    n_tasks=1,
                    type=pair.spec.type.value,
                    group=pair.spec.clinical_group,
                )
            )
        task_delta = {r["name"]: r["delta"] for r in rows if r["paradigm"] == paradigm}
        levels = {
            "type": lambda s: s.type.value,
            "group": lambda s: s.clinical_group,
            "all": lambda s: "all",
        }
        for level, key in levels.items():
            members: dict[str, list[str]] = {}
            for name, pair in paired.items():
                members.setdefault(key(pair.spec), []).append(name)
            for value, names in members.items():
                stack = np.stack([replicates[n] for n in names])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples
                    reps = np.nanmean(stack, axis=0)
                point = [task_delta[n] for n in names if math.isfinite(task_delta[n])]
                rows.append(
                    _row(
                        level,
                        value,
                        paradigm,
                        reps,
                        float(np.mean(point)) if point else math.nan,
                        alpha,
                        metric="mean delta",
                        m_specific=math.nan,
                        m_paradigm=math.nan,
                        n_cases=sum(len(paired[n].case_ids) for n in names),
                        n_tasks=len(names),
                        type=value if level == "type" else "",
                        group=value if level == "group" else "",
                    )
                )
    cost_rows = [{"paradigm": p, **dict(c)} for p, c in (costs or {}).items()]
    settings = {
        "reference": REFERENCE,
        "n_resamples": n_resamples,
        "confidence": confidence,
        "seed": seed,
        "interval": "paired percentile bootstrap over test cases, resampled per task",
        "negative_transfer": "the whole interval lies below zero",
        "undefined_resamples": "resamples whose task-specific metric is 0 (delta undefined) "
        "are left out of the interval; an average skips tasks without a delta",
        "delta": "(M_p - M_specific) / M_specific, sign flipped for lower-is-better metrics",
    }
    return TransferAnalysis(rows, cost_rows, settings)


def _row(
    level: str,
    name: str,
    paradigm: str,
    replicates: np.ndarray,
    delta: float,
    alpha: float,
    **extra: Any,
) -> dict[str, Any]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size:
        low, high = (float(v) for v in np.quantile(finite, [alpha, 1.0 - alpha]))
    else:
        low = high = math.nan
    return {
        "level": level,
        "name": name,
        "paradigm": paradigm,
        **extra,
        "delta": float(delta),
        "ci_low": low,
        "ci_high": high,
        "negative_transfer": bool(math.isfinite(high) and high < 0),
    }


# ---------------------------------------------------------------------------- outputs


_COLUMNS = [
    "level",
    "name",
    "paradigm",
    "type",
    "group",
    "metric",
    "m_specific",
    "m_paradigm",
    "delta",
    "ci_low",
    "ci_high",
    "n_cases",
    "n_tasks",
    "negative_transfer",
]


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


def write_transfer(analysis: TransferAnalysis, out: str | Path) -> dict[str, Path]:
    """Write ``transfer.csv``, ``costs.csv``, ``transfer.json`` and ``report.html`` under ``out``.

    Returns:
        Name -> written path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    with atomic_open(out / "transfer.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in analysis.rows:
            writer.writerow({c: _cell(row.get(c, "")) for c in _COLUMNS})
    paths["transfer_csv"] = out / "transfer.csv"
    cost_columns = ["paradigm", "models", "parameters", "train_seconds", "inference_s_per_image"]
    with atomic_open(out / "costs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cost_columns, lineterminator="\n")
        writer.writeheader()
        for row in analysis.costs:
            writer.writerow({c: _cell(row.get(c, "")) for c in cost_columns})
    paths["costs_csv"] = out / "costs.csv"
    paths["transfer_json"] = write_json_atomic(out / "transfer.json", analysis.to_dict())
    paths["report_html"] = write_text_atomic(out / "report.html", render_report(analysis))
    return paths


def transfer_plot_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """A horizontal bar chart of per-task deltas with their intervals, one colour per paradigm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task_rows = [r for r in rows if r["level"] == "task"]
    tasks = list(dict.fromkeys(r["name"] for r in task_rows))
    paradigms = list(dict.fromkeys(r["paradigm"] for r in task_rows))
    fig, ax = plt.subplots(figsize=(7.0, 0.5 + 0.45 * max(1, len(tasks)) * max(1, len(paradigms))))
    height = 0.8 / max(1, len(paradigms))
    for j, paradigm in enumerate(paradigms):
        ys, xs, lo, hi, colours = [], [], [], [], []
        for i, task in enumerate(tasks):
            row = next(
                (r for r in task_rows if r["name"] == task and r["paradigm"] == paradigm), None
            )
            if row is None:
                continue
            ys.append(i + (j - (len(paradigms) - 1) / 2) * height)
            delta = row["delta"] if math.isfinite(row["delta"]) else 0.0
            xs.append(100 * delta)
            lo.append(100 * max(0.0, delta - row["ci_low"]) if math.isfinite(row["ci_low"]) else 0)
            hi.append(
                100 * max(0.0, row["ci_high"] - delta) if math.isfinite(row["ci_high"]) else 0
            )
            colours.append("#c0392b" if row["negative_transfer"] else None)
        bars = ax.barh(ys, xs, height=height, xerr=[lo, hi], label=paradigm, capsize=3)
        for bar, colour in zip(bars, colours, strict=True):
            if colour:
                bar.set_edgecolor(colour)
                bar.set_linewidth(2)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.invert_yaxis()
    ax.set_xlabel("relative change vs task-specific (%), positive = better")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _pct(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{100 * value:+.1f}%"
    return "-"


def render_report(analysis: TransferAnalysis) -> str:
    """Self-contained HTML (:mod:`medfleet.report.html`): plot, transfer table, costs."""
    from medfleet.report.html import Figure, Report, Table, Text, render_html

    s = analysis.settings
    report = Report(
        "Transfer analysis",
        {
            "reference": s.get("reference", REFERENCE),
            "delta": s.get("delta", ""),
            "interval": f"{s.get('interval', '')}, {s.get('n_resamples')} resamples, "
            f"{100 * float(s.get('confidence', 0.95)):.0f}% coverage",
            "negative transfer": s.get("negative_transfer", ""),
        },
    )
    summary = report.section("Relative change against task-specific training")
    summary.add(
        Text(
            "A positive delta means the shared model is better than the task-specific one "
            "(the sign is flipped for lower-is-better metrics such as MAE and MRE)."
        )
    )
    flagged = [r for r in analysis.rows if r["negative_transfer"]]
    if flagged:
        names = ", ".join(f"{r['name']} ({r['paradigm']}, {r['level']})" for r in flagged)
        summary.add(Text(f"Negative transfer: {names}.", warning=True))
    summary.add(
        Figure(
            transfer_plot_png(analysis.rows),
            "Per-task delta with confidence intervals",
            "Bars outlined in red lie entirely below zero (negative transfer).",
        )
    )
    columns = ["level", "name", "paradigm", "metric", "task-specific", "paradigm value",
               "delta", "CI low", "CI high", "cases", "negative transfer"]  # fmt: skip
    rows = [
        [
            r["level"],
            r["name"],
            r["paradigm"],
            r["metric"],
            r["m_specific"],
            r["m_paradigm"],
            _pct(r["delta"]),
            _pct(r["ci_low"]),
            _pct(r["ci_high"]),
            r["n_cases"],
            "yes" if r["negative_transfer"] else "",
        ]
        for r in analysis.rows
    ]
    report.section("Per task, task type, clinical group and overall").add(Table(columns, rows))
    cost_rows = [
        [
            c.get("paradigm"),
            c.get("models"),
            c.get("parameters"),
            c.get("train_seconds"),
            1000 * float(c.get("inference_s_per_image", math.nan)),
        ]
        for c in analysis.costs
    ]
    report.section("Cost per paradigm").add(
        Table(
            ["paradigm", "models", "parameters", "training time (s)", "inference (ms / image)"],
            cost_rows,
            note="Parameters and training time are summed over the paradigm's models; "
            "inference time is the mean per test image.",
        )
    )
    return render_html(report)
