"""Paired comparison of two evaluation runs (``medfleet report compare RUN_A RUN_B``).

Both runs are folders written by ``medfleet evaluate`` (``cases.csv`` and
``summary.json``). Cases are paired by ``case_id`` (and ``label`` when the rows have one);
for every metric and group present in both runs:

* the means of A and B on the paired cases and the difference ``B - A`` with a 95 %
  paired-bootstrap CI (the same case indices drawn for both runs);
* a paired test: McNemar's test for 0/1 outcomes (e.g. ``correct``), the Wilcoxon
  signed-rank test otherwise;
* Holm-adjusted p-values over all the tests of the comparison.

Pairs where either value is NaN or infinite are left out of the tests (counted in
``n_dropped``). Cases present in only one run are listed, never compared.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.report.html import Figure, Report, Table, Text, format_value, render_html

__all__ = ["Comparison", "compare_runs", "comparison_report", "load_run", "write_comparison"]


@dataclass
class Comparison:
    """Result of :func:`compare_runs`.

    Attributes:
        run_a: Folder of run A (the reference).
        run_b: Folder of run B (compared against A).
        task_type: The task type of both runs.
        rows: One dictionary per (group, metric): ``group``, ``metric``, ``n``,
            ``n_dropped``, ``mean_a``, ``mean_b``, ``difference``, ``ci_low``, ``ci_high``,
            ``test``, ``statistic``, ``p_value``, ``p_holm``, ``higher_is_better``,
            ``better`` (``"A"``, ``"B"`` or ``"-"`` at the chosen alpha).
        scores: Preset score of each run (when both used a preset).
        only_a: Pairing keys found only in run A.
        only_b: Pairing keys found only in run B.
        alpha: Significance level used for ``better``.
        differences: ``(group, metric) -> B - A`` per paired case (for the figures).
    """

    run_a: Path
    run_b: Path
    task_type: str
    rows: list[dict[str, Any]]
    scores: dict[str, Any] = field(default_factory=dict)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    alpha: float = 0.05
    differences: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (without the per-case differences)."""
        from medfleet.utils.jsonsafe import json_safe

        return json_safe(
            {
                "run_a": self.run_a,
                "run_b": self.run_b,
                "task_type": self.task_type,
                "alpha": self.alpha,
                "scores": self.scores,
                "comparisons": self.rows,
                "only_in_a": self.only_a,
                "only_in_b": self.only_b,
            }
        )


def load_run(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Read ``summary.json`` and ``cases.csv`` of an evaluation folder.

    Raises:
        MedfleetError: The folder or one of the files is missing or unreadable.
    """
    root = Path(folder)
    summary_path, cases_path = root / "summary.json", root / "cases.csv"
    for path in (summary_path, cases_path):
        if not path.is_file():
            raise MedfleetError(
                f"{path} not found (fix: give a folder written by medfleet evaluate --out)"
            )
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        with open(cases_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError, csv.Error) as exc:
        raise MedfleetError(f"cannot read the evaluation in {root}: {exc}") from exc
    return summary, rows


def _value(text: Any) -> float:
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _key(row: Mapping[str, Any], with_label: bool) -> str:
    return f"{row['case_id']}|{row.get('label', '')}" if with_label else str(row["case_id"])


def _metric_groups(summary: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for group, per_metric in (summary.get("metrics") or {}).items():
        out[str(group)] = list(per_metric)
    return out


def _in_group(row: Mapping[str, Any], group: str) -> bool:
    return group == "all" or str(row.get("label")) == group


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Comparison:
    """Compare two evaluation runs case by case (see the module docs).

    Args:
        run_a: Folder of the reference run.
        run_b: Folder of the compared run.
        n_resamples: Bootstrap resamples of each CI.
        seed: Bootstrap seed.
        alpha: Significance level for the ``better`` column (after Holm's correction).

    Raises:
        MedfleetError: Unreadable runs, different task types, or no case in common.
    """
    from medfleet.evaluate.runner.report import higher_is_better
    from medfleet.evaluate.stats import holm, mcnemar, paired_bootstrap, wilcoxon_signed_rank

    summary_a, rows_a = load_run(run_a)
    summary_b, rows_b = load_run(run_b)
    task_a, task_b = summary_a.get("task_type"), summary_b.get("task_type")
    if task_a != task_b:
        raise MedfleetError(
            f"the runs score different task types ({task_a} in {run_a}, {task_b} in {run_b})"
        )
    with_label = bool(rows_a and "label" in rows_a[0] and rows_b and "label" in rows_b[0])
    index_a = {_key(r, with_label): r for r in rows_a}
    index_b = {_key(r, with_label): r for r in rows_b}
    common = sorted(set(index_a) & set(index_b))
    if not common:
        raise MedfleetError(f"the runs {run_a} and {run_b} have no case in common")
    groups_a, groups_b = _metric_groups(summary_a), _metric_groups(summary_b)
    overrides = {
        **((summary_a.get("preset") or {}).get("higher_is_better") or {}),
        **((summary_b.get("preset") or {}).get("higher_is_better") or {}),
    }
    out_rows: list[dict[str, Any]] = []
    differences: dict[tuple[str, str], list[float]] = {}
    for group, names in groups_a.items():
        for metric in names:
            if metric not in groups_b.get(group, []):
                continue
            keys = [k for k in common if _in_group(index_a[k], group)]
            a = np.array([_value(index_a[k].get(metric)) for k in keys])
            b = np.array([_value(index_b[k].get(metric)) for k in keys])
            ok = np.isfinite(a) & np.isfinite(b)
            a, b = a[ok], b[ok]
            row: dict[str, Any] = {
                "group": group,
                "metric": metric,
                "n": int(a.size),
                "n_dropped": int((~ok).sum()),
                "higher_is_better": higher_is_better(metric, overrides),
            }
            if a.size == 0:
                row.update(
                    mean_a=math.nan,
                    mean_b=math.nan,
                    difference=math.nan,
                    ci_low=math.nan,
                    ci_high=math.nan,
                    test="-",
                    statistic=math.nan,
                    p_value=math.nan,
                )
                out_rows.append(row)
                continue
            boot = paired_bootstrap(a, b, n_resamples=n_resamples, seed=seed)
            if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
                test = mcnemar(a, b)
            else:
                test = wilcoxon_signed_rank(a, b)
            row.update(
                mean_a=float(a.mean()),
                mean_b=float(b.mean()),
                difference=boot.estimate,
                ci_low=boot.low,
                ci_high=boot.high,
                test=test.method,
                statistic=test.statistic,
                p_value=test.p_value,
            )
            differences[(group, metric)] = (b - a).tolist()
            out_rows.append(row)
    adjusted = holm([r["p_value"] for r in out_rows]) if out_rows else []
    for row, p_adj in zip(out_rows, adjusted, strict=True):
        row["p_holm"] = float(p_adj)
        better = "-"
        if not math.isnan(p_adj) and p_adj < alpha and row["difference"] != 0:
            b_higher = row["difference"] > 0
            better = "B" if b_higher == row["higher_is_better"] else "A"
        row["better"] = better
    scores = {}
    pa, pb = summary_a.get("preset") or {}, summary_b.get("preset") or {}
    if pa or pb:
        scores = {
            "a": {"preset": pa.get("name"), "score": pa.get("score")},
            "b": {"preset": pb.get("name"), "score": pb.get("score")},
        }
    return Comparison(
        Path(run_a),
        Path(run_b),
        str(task_a),
        out_rows,
        scores,
        sorted(set(index_a) - set(index_b)),
        sorted(set(index_b) - set(index_a)),
        alpha,
        differences,
    )


def comparison_report(result: Comparison) -> Report:
    """The HTML report of a comparison: the table of tests and the paired differences."""
    from medfleet.report.plots import box_plots

    report = Report(
        "medfleet comparison of two evaluations",
        {
            "run A (reference)": str(result.run_a),
            "run B": str(result.run_b),
            "task type": result.task_type,
            "alpha (Holm)": result.alpha,
        },
    )
    if result.scores:
        report.section("Preset scores").add(
            Table(
                ["run", "preset", "score"],
                [[k.upper(), v.get("preset"), v.get("score")] for k, v in result.scores.items()],
            )
        )
    sec = report.section("Paired comparison (B - A)")
    sec.add(
        Table(
            [
                "group",
                "metric",
                "n",
                "mean A",
                "mean B",
                "B - A",
                "95% CI",
                "test",
                "p",
                "p (Holm)",
                "better",
            ],
            [
                [
                    r["group"],
                    r["metric"],
                    r["n"],
                    r["mean_a"],
                    r["mean_b"],
                    r["difference"],
                    f"[{format_value(r['ci_low'])}, {format_value(r['ci_high'])}]",
                    r["test"],
                    r["p_value"],
                    r.get("p_holm"),
                    r.get("better"),
                ]
                for r in result.rows
            ],
            note="CI: paired percentile bootstrap over cases; tests: McNemar for 0/1 outcomes, "
            "Wilcoxon signed-rank otherwise; pairs with a non-finite value are left out.",
        )
    )
    dropped = [r for r in result.rows if r["n_dropped"]]
    if dropped:
        sec.add(
            Text(
                "Pairs left out (NaN or infinite value): "
                + ", ".join(f"{r['group']}/{r['metric']}: {r['n_dropped']}" for r in dropped)
            )
        )
    panels = [
        (f"{m} ({g})" if g != "all" else m, {"B - A": d})
        for (g, m), d in list(result.differences.items())[:6]
    ]
    if panels:
        sec.add(Figure(box_plots(panels), "Paired differences B - A per case"))
    if result.only_a or result.only_b:
        report.section("Unpaired cases").add(
            Text(
                f"only in A ({len(result.only_a)}): {', '.join(result.only_a[:20])}; "
                f"only in B ({len(result.only_b)}): {', '.join(result.only_b[:20])}"
            )
        )
    return report


def write_comparison(result: Comparison, out: str | Path) -> tuple[Path, Path]:
    """Write ``compare.json`` and ``compare.html`` into ``out`` (atomically).

    Returns:
        The two paths.
    """
    from medfleet.utils.atomic import write_json_atomic, write_text_atomic

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    html = render_html(comparison_report(result))
    json_path = write_json_atomic(folder / "compare.json", result.to_dict())
    html_path = write_text_atomic(folder / "compare.html", html)
    return json_path, html_path
