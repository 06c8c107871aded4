"""Tables and ``report.html`` of a federated study (:mod:`medfleet.federated.study`).

:func:`write_study_report` writes, next to ``study.json``:

==================  =========================================================================
file                content
==================  =========================================================================
metrics.csv         arm, task, site (or ``pooled``), metric, estimate, low, high, n
tests.csv           paired tests between arms on the pooled test cases, with Holm's p-values
communication.csv   bytes sent and received per federated arm and round (all clients)
curves.csv          per-round metrics of each federated arm, per site and their mean
report.html         comparison table with intervals, paired tests, bytes per round and
                    learning curves per site
==================  =========================================================================
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medfleet.report.html import Figure, Report, Table, Text, write_report
from medfleet.utils.atomic import atomic_open
from medfleet.utils.jsonsafe import from_json_number

PRIMARY = {"classification": "balanced_accuracy", "segmentation": "dice"}
"""The metric of the per-site table and the learning curves, per task type."""

_CURVE_PREFERENCE = ("balanced_accuracy", "dice", "accuracy", "auc")


def _num(value: Any) -> float:
    """A number of ``study.json`` (null, "inf" and "-inf" included); NaN when it is none."""
    try:
        return from_json_number(value)
    except (TypeError, ValueError):
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan


def format_ci(estimate: Any, low: Any, high: Any, digits: int = 3) -> str:
    """``estimate [low, high]`` with ``digits`` decimals (``-`` for a missing value).

    Example:
        >>> format_ci(0.81234, 0.7, 0.9)
        '0.812 [0.700, 0.900]'
        >>> format_ci(None, None, None)
        '-'
    """
    e, lo, hi = _num(estimate), _num(low), _num(high)
    if math.isnan(e):
        return "-"

    def f(v: float) -> str:
        return "nan" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.{digits}f}")

    if math.isnan(lo) and math.isnan(hi):
        return f(e)
    return f"{f(e)} [{f(lo)}, {f(hi)}]"


def format_bytes(n: Any) -> str:
    """A byte count in B, kB, MB or GB (powers of 1000).

    Example:
        >>> format_bytes(1234), format_bytes(5_600_000), format_bytes(12)
        ('1.23 kB', '5.60 MB', '12 B')
    """
    v = _num(n)
    if math.isnan(v):
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v:.0f} B"


def _arm_order(data: Mapping[str, Any]) -> list[str]:
    return [a["name"] for a in data.get("arms", [])]


def comparison_rows(data: Mapping[str, Any], site: str = "pooled") -> list[list[Any]]:
    """Rows ``task, arm, <metric with CI>...`` of one site (default: pooled cases).

    Example:
        >>> data = {"arms": [{"name": "fedavg"}], "tasks": {"t": "segmentation"},
        ...         "metrics": [{"arm": "fedavg", "task": "t", "site": "pooled",
        ...                      "metric": "dice", "estimate": 0.8, "low": 0.7, "high": 0.9,
        ...                      "n": 5}]}
        >>> comparison_rows(data)
        [['t', 'fedavg', 5, '0.800 [0.700, 0.900]', '-']]
    """
    from medfleet.federated.study_cases import METRICS

    index = {(r["arm"], r["task"], r["site"], r["metric"]): r for r in data.get("metrics", [])}
    rows = []
    for task, kind in data.get("tasks", {}).items():
        for arm in _arm_order(data):
            cells = [index.get((arm, task, site, m)) for m in METRICS[kind]]
            if not any(cells):
                continue
            n = next((c["n"] for c in cells if c), 0)
            row: list[Any] = [task, arm, n]
            row += [format_ci(c["estimate"], c["low"], c["high"]) if c else "-" for c in cells]
            rows.append(row)
    return rows


def per_site_rows(data: Mapping[str, Any], task: str) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of one task's primary metric per site and pooled, one row per arm."""
    kind = data["tasks"][task]
    metric = PRIMARY[kind]
    sites = [*data.get("sites", []), "pooled"]
    index = {
        (r["arm"], r["site"]): r
        for r in data.get("metrics", [])
        if r["task"] == task and r["metric"] == metric
    }
    rows = []
    for arm in _arm_order(data):
        if not any((arm, s) in index for s in sites):
            continue
        cells = [index.get((arm, s)) for s in sites]
        rows.append(
            [arm] + [format_ci(c["estimate"], c["low"], c["high"]) if c else "-" for c in cells]
        )
    return ["arm", *sites], rows


def paired_test_rows(data: Mapping[str, Any]) -> list[list[Any]]:
    """Rows of the paired-test table."""
    rows = []
    for r in data.get("tests", []):
        rows.append(
            [
                r["task"],
                r["metric"],
                r["test"],
                r["arm_a"],
                r["arm_b"],
                r["n"],
                _num(r["estimate_a"]),
                _num(r["estimate_b"]),
                format_ci(r["difference"], r.get("low"), r.get("high")),
                _num(r["p_value"]),
                _num(r.get("p_holm")),
                "yes" if r.get("significant") else "",
            ]
        )
    return rows


def communication_table(data: Mapping[str, Any]) -> list[list[Any]]:
    """Rows of the communication table, one per federated arm.

    Columns: arm, strategy, rounds, parameters that travel, bytes per round (both directions),
    uploads per round, share of the FedAvg arm's bytes.
    """
    rows = []
    for r in data.get("communication_summary", []):
        share = _num(r.get("fraction_of_fedavg"))
        rows.append(
            [
                r["arm"],
                r["strategy"],
                r["rounds"],
                r.get("exchanged_parameters"),
                format_bytes(r["bytes_per_round"]),
                format_bytes(r["bytes_sent_per_round"]),
                "-" if math.isnan(share) else f"{100 * share:.3g}%",
            ]
        )
    return rows


def curve_metric(curves: Sequence[Mapping[str, Any]], arm: str, task: str) -> str | None:
    """The metric drawn for ``task`` in ``arm``'s learning curves (the primary when present)."""
    names = [r["metric"] for r in curves if r["arm"] == arm and r["task"] == task]
    for preferred in _CURVE_PREFERENCE:
        if preferred in names:
            return preferred
    return names[0] if names else None


def learning_curves_png(curves: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Learning curves as PNG; ``None`` when there is no curve.

    One panel per federated arm and task (task ``train``: the training loss): the metric per
    round for every site (thin lines) and their mean (thick).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.ticker import MaxNLocator

    arms = list(dict.fromkeys(r["arm"] for r in curves))
    panels: list[tuple[str, str, str]] = []
    for arm in arms:
        tasks = list(dict.fromkeys(r["task"] for r in curves if r["arm"] == arm))
        for task in tasks:
            metric = curve_metric(curves, arm, task)
            if metric is not None:
                panels.append((arm, task, metric))
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = MplFigure(figsize=(4.2 * cols, 3.0 * rows), dpi=72)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.16, top=0.9, wspace=0.3, hspace=0.55)
    for i, (arm, task, metric) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        sel = [r for r in curves if r["arm"] == arm and r["task"] == task and r["metric"] == metric]
        for site in dict.fromkeys(r["site"] for r in sel):
            pts = sorted((r["round"], r["value"]) for r in sel if r["site"] == site)
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if site == "mean":
                ax.plot(xs, ys, color="black", linewidth=2.2, marker="o", label="mean of sites")
            else:
                ax.plot(xs, ys, linewidth=1.0, marker=".", label=site)
        title = "training loss" if task == "train" else f"{task}: {metric}"
        ax.set_title(f"{arm} - {title}", fontsize=9)
        ax.set_xlabel("round", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def build_study_report(data: Mapping[str, Any]) -> Report:
    """The study as a :class:`medfleet.report.Report`.

    Example:
        >>> data = {"manifest": "m", "sites": ["a"], "tasks": {}, "arms": [], "budget": {}}
        >>> [s.title for s in build_study_report(data).sections][:2]
        ['Comparison on the pooled test cases', 'Per site']
    """
    budget = data.get("budget", {})
    report = Report(
        f"Federated study: {data.get('manifest', '')}",
        {
            "sites": ", ".join(data.get("sites", [])),
            "tasks": ", ".join(f"{t} ({k})" for t, k in data.get("tasks", {}).items()),
            "arms": ", ".join(_arm_order(data)),
            "split scored": data.get("split", "test"),
            "rounds": budget.get("rounds"),
            "steps per site": ", ".join(f"{k}: {v}" for k, v in budget.get("steps", {}).items()),
            "centralised steps": budget.get("centralised_steps"),
        },
    )
    boot = data.get("bootstrap", {})
    conf = boot.get("confidence", 0.95)
    sec = report.section("Comparison on the pooled test cases")
    sec.add(
        Text(
            f"Each cell: estimate [{100 * conf:.0f}% percentile bootstrap interval over cases, "
            f"{boot.get('n_resamples', '?')} resamples]. A site is scored by the model it would "
            "use: its own model (local-only), the centralised model, or its copy of the "
            "federated model (with its private parts). Pooled = every site's test cases. "
            "Classification: balanced accuracy, and sensitivity, specificity and AUC of the "
            "positive class (macro one-vs-rest over the classes present with more than two "
            "classes); segmentation: mean Dice and median HD95 (mm)."
        )
    )
    kinds = set(data.get("tasks", {}).values())
    from medfleet.federated.study_cases import METRICS

    for kind in sorted(kinds):
        names = [t for t, k in data["tasks"].items() if k == kind]
        rows = [r for r in comparison_rows(data) if r[0] in names]
        sec.add(Table(["task", "arm", "n", *METRICS[kind]], rows, title=f"{kind} tasks"))
    sites = report.section("Per site")
    for task, kind in data.get("tasks", {}).items():
        columns, rows = per_site_rows(data, task)
        sites.add(Table(columns, rows, title=f"{task}: {PRIMARY[kind]} per site"))
    tests = report.section("Paired tests between arms")
    tests.add(
        Text(
            "On the pooled test cases both arms scored (difference = arm b - arm a). McNemar on "
            "per-case correctness, DeLong on the AUC of the positive class (paired bootstrap of "
            "the macro AUC with more than two classes), paired bootstrap of the balanced "
            "accuracy, Wilcoxon signed-rank on per-case Dice. Holm's correction runs over the "
            f"pairs of one task and test; 'significant' means Holm p < {1 - conf:.2g}."
        )
    )
    tests.add(
        Table(
            [
                "task",
                "metric",
                "test",
                "arm a",
                "arm b",
                "n",
                "a",
                "b",
                "difference [CI]",
                "p",
                "p (Holm)",
                "significant",
            ],
            paired_test_rows(data),
        )
    )
    comm = report.section("Communication")
    comm.add(
        Text(
            "Bytes of the serialized messages, summed over the clients of a round: what the "
            "server sent (downloads) plus what the clients sent back (uploads), averaged over "
            "rounds."
        )
    )
    comm.add(
        Table(
            [
                "arm",
                "strategy",
                "rounds",
                "parameters sent",
                "bytes / round",
                "uploads / round",
                "share of FedAvg",
            ],
            communication_table(data),
        )
    )
    per_round = [
        [r["arm"], r["round"], r["clients_ok"], r["clients"], r["bytes_sent"], r["bytes_received"]]
        for r in data.get("communication", [])
    ]
    comm.add(
        Table(
            ["arm", "round", "clients ok", "clients", "bytes sent", "bytes received"],
            per_round,
            title="per round",
        )
    )
    failures = data.get("failures", [])
    if failures:
        comm.add(
            Text(
                "Failed client rounds: "
                + "; ".join(f"{f['arm']} round {f['round']} {f['site']}" for f in failures),
                warning=True,
            )
        )
    curves = report.section("Learning curves")
    png = learning_curves_png(data.get("curves", []))
    if png is None:
        curves.add(Text("No per-round metrics were recorded by the federated runs."))
    else:
        curves.add(
            Figure(
                png,
                "Per-round metrics of each federated arm",
                "Thin lines: each site's metric after each round (as reported by the federated "
                "run's evaluation); thick: the unweighted mean over sites.",
            )
        )
    budget_sec = report.section("Budget")
    budget_sec.add(Text(str(budget.get("rule", ""))))
    return report


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return path


def write_study_report(data: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the CSV tables and ``report.html`` of a study into ``out``.

    Returns:
        ``metrics_csv``, ``tests_csv``, ``communication_csv``, ``curves_csv``,
        ``report_html``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics_csv": _write_csv(
            out / "metrics.csv",
            data.get("metrics", []),
            ["arm", "task", "site", "metric", "estimate", "low", "high", "n", "n_undefined"],
        ),
        "tests_csv": _write_csv(
            out / "tests.csv",
            data.get("tests", []),
            [
                "task",
                "site",
                "metric",
                "test",
                "arm_a",
                "arm_b",
                "n",
                "estimate_a",
                "estimate_b",
                "difference",
                "low",
                "high",
                "statistic",
                "p_value",
                "p_holm",
                "significant",
                "method",
            ],
        ),
        "communication_csv": _write_csv(
            out / "communication.csv",
            data.get("communication", []),
            [
                "arm",
                "strategy",
                "round",
                "clients",
                "clients_ok",
                "bytes_sent",
                "bytes_received",
                "bytes_total",
                "bytes_sent_per_client",
            ],
        ),
        "curves_csv": _write_csv(
            out / "curves.csv",
            data.get("curves", []),
            ["arm", "round", "site", "task", "metric", "value"],
        ),
    }
    files["report_html"] = write_report(build_study_report(data), out / "report.html")
    return files


__all__ = [
    "build_study_report",
    "communication_table",
    "comparison_rows",
    "format_bytes",
    "format_ci",
    "learning_curves_png",
    "paired_test_rows",
    "per_site_rows",
    "write_study_report",
]
