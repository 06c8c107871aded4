"""The ``report.html`` of an evaluation run, built from its summary and per-case rows.

Sections (each only when the run has the data for it):

* **Official score** of a challenge preset, its formula, source and every component;
* **Summary** per group and metric: mean with a 95 % bootstrap CI over cases (percentile,
  2000 resamples, seed 0; infinite values make the mean and bounds infinite), median, SD
  and the counts;
* **Distributions**: box plots of the primary metric and up to two distances or errors
  (one box per group, e.g. per label);
* **Subgroups**: the preset's subgroup tables with bars of the group means and sizes, or,
  for plain runs, the primary metric by each categorical ``--meta`` column (group means
  and sizes from :class:`medfleet.evaluate.analysis.fairness.GroupMetricFrame`: NaN values left
  out of a mean, a missing column value a group named ``""``);
* **Calibration**: a reliability diagram (preset bins, class probabilities or a binary
  score);
* **Agreement**: Bland-Altman plots for regression and biometry;
* **Worst cases** by the primary metric, with their ids, and for segmentation runs without
  a preset a gallery of the worst cases (:func:`gallery_case_ids`): the reference and
  predicted outlines over each case's image (or a neutral background), the case id and its
  main metrics in each panel title;
* **Warnings** and **Conventions**.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medfleet.report.html import Figure, Report, Section, Table, Text, format_value, render_html
from medfleet.report.plots import (
    bland_altman_panels,
    box_plots,
    outline_gallery,
    reliability_diagram,
    subgroup_bar_panels,
)

if TYPE_CHECKING:
    from medfleet.evaluate.runner.segmentation import Gallery, GalleryCase

__all__ = [
    "build_evaluation_report",
    "evaluation_report_html",
    "gallery_case_ids",
    "higher_is_better",
    "primary_metric",
    "worst_rows",
]

_PRIMARY = {
    "segmentation": ("dice", "dsc"),
    "classification": ("correct",),
    "detection": ("mean_iou", "recall", "iou"),
    "regression": ("abs_error",),
    "landmarks": ("error", "error_mm"),
}
_HIGHER = (
    "dice",
    "dsc",
    "iou",
    "mean_iou",
    "correct",
    "recall",
    "precision",
    "sensitivity",
    "specificity",
    "volume_similarity",
    "confidence",
    "accuracy",
    "auc",
    "sdr",
    "nsd",
    "score",
    "f1",
    "mcc",
    "balanced_accuracy",
)
_STRUCTURAL = {"case_id", "label", "status", "gt", "pred", "score", "spacing", "image"}
_MAX_WORST = 10
_MAX_SUBGROUP_LEVELS = 12
_MAX_PANELS = 3
_MAX_BOXES = 3
#: The rows of ``cases.csv``, one mapping per row.
_Rows = Sequence[Mapping[str, Any]]


def higher_is_better(metric: str, overrides: Mapping[str, bool] | None = None) -> bool:
    """Whether larger values of ``metric`` are better (overlaps, rates) or worse (distances).

    Example:
        >>> higher_is_better("dice"), higher_is_better("hd95"), higher_is_better("nsd_1mm")
        (True, False, True)
    """
    if overrides and metric in overrides:
        return bool(overrides[metric])
    name = metric.lower()
    return any(name == h or name.startswith(h + "_") for h in _HIGHER)


def primary_metric(summary: Mapping[str, Any]) -> str | None:
    """The metric the report ranks cases by (the first metric of a preset).

    Example:
        >>> primary_metric({"task_type": "segmentation", "metrics": {"1": {"hd": {}, "dice": {}}}})
        'dice'
    """
    names: list[str] = []
    for per_metric in (summary.get("metrics") or {}).values():
        for name in per_metric:
            if name not in names:
                names.append(name)
    if not names:
        return None
    if summary.get("preset"):
        return names[0]
    for candidate in _PRIMARY.get(str(summary.get("task_type")), ()):
        if candidate in names:
            return candidate
    return names[0]


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    if isinstance(value, str):
        if value in ("inf", "-inf"):
            return math.inf if value == "inf" else -math.inf
        try:
            return float(value)
        except ValueError:
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _group_rows(rows: _Rows, group: str) -> list[Mapping[str, Any]]:
    if group == "all":
        return list(rows)
    return [r for r in rows if str(r.get("label")) == group]


def _ci(values: Sequence[float]) -> tuple[float, float]:
    from medfleet.evaluate.stats.bootstrap import bootstrap_ci  # alone: no paired tests, no pandas

    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    if np.isinf(arr).any():
        return math.nan, math.inf
    ci = bootstrap_ci(arr, n_resamples=2000, seed=0)
    return ci.low, ci.high


def _flatten(obj: Mapping[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if depth < 2:
                out.extend(_flatten(value, name + ".", depth + 1))
        elif isinstance(value, (list, tuple)):
            text = ", ".join(str(v) for v in value[:12]) + (" ..." if len(value) > 12 else "")
            out.append((name, text))
        else:
            out.append((name, value))
    return out


def _score_section(report: Report, preset: Mapping[str, Any]) -> None:
    sec = report.section(f"Official score: {preset.get('title', preset.get('name'))}")
    score = preset.get("score")
    if score is None:
        sec.add(Text(f"No score: {preset.get('score_name', '')}."))
    else:
        sec.add(Text(f"{preset.get('score_name', 'score')}: {_number(score):.6g}"))
    if preset.get("formula"):
        sec.add(Text(f"Formula: {preset['formula']}."))
    if preset.get("source"):
        sec.add(Text(f"Source: {preset['source']}."))
    components = [
        (k, v) for k, v in _flatten(preset.get("components") or {}) if not k.startswith("ranking.")
    ]
    if components:
        sec.add(Table(["component", "value"], [[k, v] for k, v in components], "Components"))
    ranking = (preset.get("components") or {}).get("ranking")
    if isinstance(ranking, Mapping) and ranking:
        cols = sorted({k for v in ranking.values() for k in v})
        sec.add(
            Table(
                ["submission", *cols],
                [[n, *(v.get(c) for c in cols)] for n, v in ranking.items()],
                "Ranking",
            )
        )
    options = preset.get("options") or {}
    if options:
        sec.add(Table(["option", "value"], [[k, v] for k, v in options.items()], "Options"))


def _summary_section(report: Report, summary: Mapping[str, Any], rows: _Rows) -> None:
    metrics = summary.get("metrics") or {}
    if not metrics:
        return
    table_rows = []
    for group, per_metric in metrics.items():
        members = _group_rows(rows, group)
        for name, stats in per_metric.items():
            mean = _number(stats.get("mean"))
            low, high = (math.nan, math.nan)
            if not math.isnan(mean):
                low, high = _ci([_number(r.get(name)) for r in members])
            ci_text = (
                "-"
                if math.isnan(low) and math.isnan(high)
                else (f"[{format_value(low)}, {format_value(high)}]")
            )
            table_rows.append(
                [
                    group,
                    name,
                    mean,
                    ci_text,
                    _number(stats.get("median")),
                    _number(stats.get("std")),
                    stats.get("n_valid"),
                    stats.get("n_scored"),
                    stats.get("n_cases"),
                ]
            )
    report.section("Summary").add(
        Table(
            ["group", "metric", "mean", "95% CI", "median", "SD", "valid", "scored", "cases"],
            table_rows,
            note="CI: percentile bootstrap over cases (2000 resamples) of the values in cases.csv; "
            "the mean follows the run's missing-structure policy.",
        )
    )
    dataset = summary.get("dataset") or {}
    scalars = [
        (k, v)
        for k, v in dataset.items()
        if isinstance(v, (int, float)) or v is None or v in ("inf", "-inf")
    ]
    if scalars and not summary.get("preset"):
        report.sections[-1].add(
            Table(
                ["dataset metric", "value"],
                [[k, _number(v)] for k, v in scalars],
                "Dataset-level metrics",
            )
        )


def _panel_metrics(summary: Mapping[str, Any]) -> list[str]:
    """Metrics shown as box plots: the primary one, then distances or errors (at most three)."""
    names: list[str] = []
    for per_metric in (summary.get("metrics") or {}).values():
        for name in per_metric:
            if name not in names:
                names.append(name)
    primary = primary_metric(summary)
    if summary.get("preset"):
        ordered = names
    else:
        preferred = ("hd95", "hd", "assd", "nsd", "iou", "mean_iou", "abs_error", "error")
        ordered = sorted(
            names,
            key=lambda n: (
                n != primary,
                next(
                    (i for i, p in enumerate(preferred) if n == p or n.startswith(p + "_")),
                    len(preferred),
                ),
            ),
        )
    return ordered[:_MAX_BOXES]


def _distribution_section(report: Report, summary: Mapping[str, Any], rows: _Rows) -> None:
    metrics = summary.get("metrics") or {}
    names = _panel_metrics(summary)
    if not names:
        return
    groups = [g for g in metrics if g != "all"] or ["all"]
    panels = []
    for name in names:
        data = {}
        for group in groups:
            values = [_number(r.get(name)) for r in _group_rows(rows, group)]
            values = [v for v in values if not math.isnan(v)]
            if values:
                data[group if group != "all" else name] = values
        if data:
            panels.append((name, data))
    if panels:
        report.section("Distributions").add(
            Figure(
                box_plots(panels),
                "Per-case values",
                "Boxes: quartiles; triangles: means of the finite values; n counts the finite "
                "values (every metric is in cases.csv).",
            )
        )


def _categorical_columns(summary: Mapping[str, Any], rows: _Rows) -> list[str]:
    if not (summary.get("inputs") or {}).get("meta"):
        return []
    metric_names = {n for per in (summary.get("metrics") or {}).values() for n in per}
    out = []
    for key in rows[0] if rows else {}:
        if key in _STRUCTURAL or key in metric_names or key.endswith("_valid"):
            continue
        if key.startswith(("prob_", "group_")):
            continue
        values = {str(r.get(key, "")) for r in rows}
        if 2 <= len(values) <= _MAX_SUBGROUP_LEVELS and len(values) < len(rows):
            out.append(key)
    return out


def _subgroup_section(
    report: Report, summary: Mapping[str, Any], rows: _Rows, primary: str | None
) -> None:
    preset = summary.get("preset") or {}
    subgroups = preset.get("subgroups") or {}
    if subgroups:
        sec = report.section("Subgroups")
        panels = []
        for variable, block in subgroups.items():
            groups = (block or {}).get("groups") or {}
            if not groups:
                continue
            cols = [c for c in next(iter(groups.values())) if c != "n"]
            sec.add(
                Table(
                    ["group", "n", *cols],
                    [
                        [g, v.get("n"), *(_number(v.get(c)) for c in cols)]
                        for g, v in groups.items()
                    ],
                    f"{variable}",
                )
            )
            extras = [(k, v) for k, v in block.items() if k != "groups"]
            if extras:
                sec.add(Table(["", "value"], [[k, v] for k, v in extras]))
            if cols:
                metric = cols[0]
                panels.append(
                    {
                        "groups": list(groups),
                        "values": [_number(v.get(metric)) for v in groups.values()],
                        "sizes": [int(v.get("n") or 0) for v in groups.values()],
                        "title": f"{metric} by {variable}",
                        "ylabel": metric,
                    }
                )
        if panels:
            sec.add(Figure(subgroup_bar_panels(panels[:_MAX_PANELS]), "Group means and sizes"))
        return
    columns = _categorical_columns(summary, rows)
    if not columns or primary is None:
        return
    from medfleet.evaluate.analysis.fairness import GroupMetricFrame

    metrics = summary.get("metrics") or {}
    first = next((g for g in metrics if g != "all"), "all")
    members = _group_rows(rows, first)
    frame = GroupMetricFrame(
        {primary: [_number(r.get(primary)) for r in members]},
        {column: [str(r.get(column, "")) for r in members] for column in columns},
        min_group_size=0,
    )
    sec = report.section(f"Subgroups ({primary}" + (f", group {first})" if first != "all" else ")"))
    panels = []
    for column in columns:
        table = frame.by_group[frame.by_group.index.get_level_values("variable") == column]
        groups = table.index.get_level_values("group").tolist()
        names = [str(group) for group in groups]
        means, sizes = table[primary].tolist(), table["n"].tolist()
        cis = [_ci(frame.group_values(column, group, primary).tolist()) for group in groups]
        sec.add(
            Table(
                [column, "n", f"mean {primary}", "95% CI"],
                [
                    [n, s, m, f"[{format_value(c[0])}, {format_value(c[1])}]"]
                    for n, s, m, c in zip(names, sizes, means, cis, strict=True)
                ],
            )
        )
        panels.append(
            {
                "groups": names,
                "values": means,
                "sizes": sizes,
                "title": f"{primary} by {column}",
                "ylabel": primary,
            }
        )
    sec.add(Figure(subgroup_bar_panels(panels[:_MAX_PANELS]), "Group means and sizes"))


def _calibration_section(report: Report, summary: Mapping[str, Any], rows: _Rows) -> None:
    preset = summary.get("preset") or {}
    extra = preset.get("report") or {}
    rel = extra.get("reliability")
    if rel:
        conf = [_number(v) for v in rel["confidence"]]
        acc = [_number(v) for v in rel["accuracy"]]
        report.section("Calibration").add(
            Figure(
                reliability_diagram(
                    conf, acc, rel["count"], f"Reliability ({rel.get('label', '')})"
                ),
                title="Reliability diagram",
                caption="Per bin: mean top-label confidence against the fraction correct.",
            )
        )
        return
    from medfleet.evaluate.analysis.calibration import reliability_diagram as reliability_data

    binary = extra.get("binary_scores")
    if binary:
        pairs = [(_number(r.get(binary["score"])), _number(r.get(binary["truth"]))) for r in rows]
        pairs = [p for p in pairs if not (math.isnan(p[0]) or math.isnan(p[1]))]
        if pairs:
            score, truth = np.array(pairs).T
            try:
                rel = reliability_data(score, truth.astype(int), n_bins=10, class_index=1)
            except ValueError as exc:
                report.section("Calibration").add(Text(f"No reliability diagram: {exc}"))
                return
            report.section("Calibration").add(
                Figure(
                    reliability_diagram(
                        rel.confidence,
                        rel.accuracy,
                        rel.counts,
                        "Reliability of the positive-class score",
                    ),
                    title="Reliability diagram",
                    caption="Per bin of the score: mean score against the fraction of "
                    "positives (10 equal-width bins).",
                )
            )
        return
    if summary.get("task_type") != "classification" or not rows:
        return
    prob_cols = [k for k in rows[0] if k.startswith("prob_")]
    if not prob_cols:
        return
    classes = [c[len("prob_") :] for c in prob_cols]
    probs = np.array([[_number(r.get(c)) for c in prob_cols] for r in rows])
    truth = np.array(
        [classes.index(str(r.get("gt"))) if str(r.get("gt")) in classes else -1 for r in rows]
    )
    ok = np.isfinite(probs).all(axis=1) & (truth >= 0)
    if not ok.any():
        return
    try:
        rel = reliability_data(probs[ok], truth[ok], n_bins=10)
    except ValueError as exc:
        report.section("Calibration").add(Text(f"No reliability diagram: {exc}"))
        return
    report.section("Calibration").add(
        Figure(
            reliability_diagram(rel.confidence, rel.accuracy, rel.counts, "Top-label reliability"),
            title="Reliability diagram",
            caption="Per bin: mean top-label probability against the fraction correct "
            "(10 equal-width bins).",
        )
    )


def _agreement_section(report: Report, summary: Mapping[str, Any], rows: _Rows) -> None:
    specs = list(((summary.get("preset") or {}).get("report") or {}).get("bland_altman") or [])
    if not specs and summary.get("task_type") == "regression" and not summary.get("preset"):
        specs = [{"reference": "gt", "measured": "pred", "label": "value"}]
    panels = []
    for spec in specs:
        ref = [_number(r.get(spec["reference"])) for r in rows]
        mea = [_number(r.get(spec["measured"])) for r in rows]
        if any(math.isfinite(a) and math.isfinite(b) for a, b in zip(ref, mea, strict=True)):
            panels.append((spec.get("label", ""), ref, mea))
    if panels:
        report.section("Agreement (Bland-Altman)").add(
            Figure(
                bland_altman_panels(panels), caption="Bias (solid) and bias +/- 1.96 SD (dashed)."
            )
        )


def worst_rows(
    summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], float]]:
    """Rows with a primary-metric value, worst first, each with that value.

    The order of the report's worst-case table and gallery: by the primary metric
    (:func:`primary_metric`), lowest first when higher is better; rows without a value are
    left out; ties keep the row order.

    Example:
        >>> summary = {"task_type": "segmentation", "metrics": {"1": {"dice": {}}}}
        >>> rows = [{"case_id": "a", "dice": 0.9}, {"case_id": "b", "dice": 0.2},
        ...         {"case_id": "c", "dice": "nan"}]
        >>> [(r["case_id"], v) for r, v in worst_rows(summary, rows)]
        [('b', 0.2), ('a', 0.9)]
    """
    primary = primary_metric(summary)
    if primary is None:
        return []
    overrides = (summary.get("preset") or {}).get("higher_is_better") or {}
    better_high = higher_is_better(primary, overrides)
    scored = [(r, _number(r.get(primary))) for r in rows if not math.isnan(_number(r.get(primary)))]
    scored.sort(key=lambda rv: rv[1], reverse=not better_high)
    return scored


def gallery_case_ids(
    summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], n: int = 8
) -> list[str]:
    """The ``n`` worst cases, worst first: those of the worst-case table, each case once.

    A case with several rows (one per label) takes the place of its worst row.

    Example:
        >>> summary = {"task_type": "segmentation", "metrics": {"1": {"dice": {}}}}
        >>> rows = [{"case_id": "a", "label": 1, "dice": 0.9},
        ...         {"case_id": "a", "label": 2, "dice": 0.1},
        ...         {"case_id": "b", "label": 1, "dice": 0.5}]
        >>> gallery_case_ids(summary, rows)
        ['a', 'b']
    """
    out: list[str] = []
    for row, _ in worst_rows(summary, rows):
        case_id = str(row.get("case_id"))
        if case_id not in out:
            out.append(case_id)
            if len(out) >= n:
                break
    return out


def _worst_section(
    report: Report,
    summary: Mapping[str, Any],
    rows: _Rows,
    primary: str | None,
    gallery: Gallery | None = None,
) -> None:
    if primary is None:
        return
    overrides = (summary.get("preset") or {}).get("higher_is_better") or {}
    better_high = higher_is_better(primary, overrides)
    scored = worst_rows(summary, rows)
    if not scored:
        return
    has_label = any("label" in r for r, _ in scored)
    cols = ["case_id", *(["label"] if has_label else []), primary, "status"]
    table = [
        [r.get("case_id"), *([r.get("label")] if has_label else []), v, r.get("status", "")]
        for r, v in scored[:_MAX_WORST]
    ]
    direction = "lowest" if better_high else "highest"
    section = report.section("Worst cases")
    section.add(Table(cols, table, f"{direction} {primary}"))
    if gallery is not None:
        _gallery_figure(section, summary, scored, gallery, f"{direction} {primary}")


def _gallery_title(
    case: GalleryCase, row: Mapping[str, Any] | None, metrics: Sequence[str], labelled: bool
) -> str:
    """``case id (slice k)`` over ``label L: dice 0.5 · hd95 3.2`` (the case's worst row)."""
    head = str(case.case_id)
    if case.slice_index is not None:
        head += f" (slice {case.slice_index})"
    if row is None:
        return head
    values = " · ".join(f"{m} {format_value(_number(row.get(m)), 3)}" for m in metrics)
    label = row.get("label")
    prefix = f"label {label}: " if labelled and label not in (None, "") else ""
    return f"{head}\n{prefix}{values}"


def _gallery_figure(
    section: Section,
    summary: Mapping[str, Any],
    scored: Sequence[tuple[Mapping[str, Any], float]],
    gallery: Gallery,
    order: str,
) -> None:
    worst: dict[str, Mapping[str, Any]] = {}
    for row, _ in scored:
        worst.setdefault(str(row.get("case_id")), row)
    metrics = _panel_metrics(summary)[:2]
    labelled = len({str(row.get("label")) for row, _ in scored}) > 1
    panels = [
        {
            "reference": case.reference,
            "prediction": case.prediction,
            "image": case.image,
            "title": _gallery_title(case, worst.get(case.case_id), metrics, labelled),
            "note": case.note,
        }
        for case in gallery.cases
    ]
    notes = "; ".join(gallery.notes)
    if not panels:
        if notes:
            section.add(Text(f"No gallery: {notes}."))
        return
    ids = ", ".join(str(case.case_id) for case in gallery.cases)
    caption = (
        f"Cases by {order}, worst first: {ids}. Outlines per foreground label (their union "
        "when a case has many labels); 3D cases show the slice (first array axis) with the "
        "largest reference plus prediction area. Without an image the outlines are drawn "
        "on a dark background."
    )
    if notes:
        caption += f" Notes: {notes}."
    section.add(
        Figure(outline_gallery(panels), f"Gallery of the {len(panels)} worst cases", caption)
    )


def build_evaluation_report(
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    gallery: Gallery | None = None,
) -> Report:
    """The :class:`~medfleet.report.html.Report` of one evaluation.

    Args:
        summary: The content of ``summary.json`` (JSON-safe values).
        rows: The rows of ``cases.csv``.
        gallery: The worst cases' masks and images
            (:func:`~medfleet.evaluate.runner.segmentation.read_gallery` of
            :func:`gallery_case_ids`), drawn under the worst-case table; ``None`` for none.

    Example:
        >>> summary = {"task_type": "regression", "n_cases": 2, "inputs": {}, "metrics": {
        ...     "all": {"abs_error": {"mean": 0.5, "median": 0.5, "std": 0.7, "n_valid": 2,
        ...                           "n_scored": 2, "n_cases": 2}}}, "conventions": {}}
        >>> rows = [{"case_id": "a", "gt": 1.0, "pred": 1.0, "abs_error": 0.0},
        ...         {"case_id": "b", "gt": 2.0, "pred": 3.0, "abs_error": 1.0}]
        >>> [s.title for s in build_evaluation_report(summary, rows).sections]
        ['Summary', 'Distributions', 'Agreement (Bland-Altman)', 'Worst cases']
    """
    preset = summary.get("preset") or {}
    inputs = summary.get("inputs") or {}
    title = f"medfleet evaluation: {preset.get('name') or summary.get('task_type')}"
    facts = {
        "task type": summary.get("task_type"),
        "preset": preset.get("name"),
        "cases": summary.get("n_cases"),
        "predictions": inputs.get("pred"),
        "references": inputs.get("gt"),
        "metadata": inputs.get("meta"),
        "medfleet": summary.get("medfleet_version"),
    }
    report = Report(title, {k: v for k, v in facts.items() if v is not None})
    if preset:
        _score_section(report, preset)
    warnings = list(summary.get("warnings") or [])
    if warnings:
        sec = report.section("Warnings")
        for w in warnings[:30]:
            sec.add(Text(str(w), warning=True))
        if len(warnings) > 30:
            sec.add(Text(f"... and {len(warnings) - 30} more in summary.json"))
    primary = primary_metric(summary)
    _summary_section(report, summary, rows)
    _distribution_section(report, summary, rows)
    _subgroup_section(report, summary, rows, primary)
    _calibration_section(report, summary, rows)
    _agreement_section(report, summary, rows)
    _worst_section(report, summary, rows, primary, gallery)
    conventions = _flatten(summary.get("conventions") or {})
    if conventions:
        report.section("Conventions").add(
            Table(["convention", "value"], [[k, str(v)[:200]] for k, v in conventions])
        )
    return report


def evaluation_report_html(
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    gallery: Gallery | None = None,
) -> str:
    """The self-contained HTML of :func:`build_evaluation_report`."""
    return render_html(build_evaluation_report(summary, rows, gallery=gallery))
