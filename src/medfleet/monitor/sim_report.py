"""``report.html`` of a drift simulation: quality table, scenarios and plots (medfleet.report)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from medfleet.monitor.simulate import SimulationResult

_SEVERITY_COLOURS = {
    "none": "#9aa5b1",
    "mild": "#f2c14e",
    "moderate": "#f08a24",
    "severe": "#d7263d",
}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    return buf.getvalue()


def _timeline_figure(result: SimulationResult, scheme: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    streams = result.streams
    sites = streams.sites
    fig = Figure(figsize=(10, 1.7 * len(sites) + 0.6))
    FigureCanvasAgg(fig)
    preds = result.schemes[scheme].predictions
    for i, site in enumerate(sites):
        ax = fig.add_subplot(len(sites), 1, i + 1)
        stats = [p[2] if p[2] is not None else float("nan") for p in preds[site]]
        t = list(range(len(stats)))
        ax.plot(t, stats, color="#335", lw=1)
        for k, (drift, sev, stat) in enumerate(preds[site]):
            if stat is not None:
                ax.scatter(
                    [k], [stat], s=14, color=_SEVERITY_COLOURS[sev if drift else "none"], zorder=3
                )
        truth = streams.truth[site]
        onset = next((k for k, v in enumerate(truth) if v != "none"), None)
        if onset is not None:
            ax.axvline(onset - 0.5, color="#d7263d", ls="--", lw=1)
        ax2 = ax.twinx()
        ax2.plot(t, streams.effects[site], color="#d7263d", alpha=0.35, lw=2)
        ax2.set_ylim(0, max(2.0, max(streams.effects[site]) * 1.1))
        ax2.set_ylabel("true effect", fontsize=7, color="#d7263d")
        ax2.tick_params(labelsize=7)
        scen = streams.scenarios.get(site, {})
        label = scen.get("shift", "none")
        if label != "none":
            label += f" {scen.get('severity')} {scen.get('pattern')} @ {scen.get('onset')}"
        ax.set_title(f"{site}: {label}", fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.set_ylabel("statistic", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _bars_figure(table: list[dict[str, Any]]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = [r["scheme"] for r in table]
    x = range(len(names))
    ax.bar(
        [i - 0.2 for i in x],
        [r["f1"] or 0 for r in table],
        width=0.4,
        label="detection F1",
        color="#335",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [r["severity_f1"] or 0 for r in table],
        width=0.4,
        label="severity F1",
        color="#f08a24",
    )
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.axhline(0.8, color="#999", ls=":", lw=1)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def write_simulation_report(result: SimulationResult, path: str | Path) -> Path:
    """Write the simulation's report.html (figures need matplotlib; without it, tables only)."""
    from medfleet.monitor.simulate import EFFECT_TARGETS, SEVERITY_BANDS, SUMMARY_COLUMNS
    from medfleet.report import Figure, Report, Table, Text, write_report

    cfg = result.config
    table = result.table()
    report = Report(
        "Drift monitoring simulation",
        {
            "sites": cfg.sites,
            "batches per site": cfg.batches,
            "batch size": cfg.batch_size,
            "reference outputs per site": cfg.reference_size,
            "tests": ", ".join(cfg.tests),
            "alpha (per batch, Holm across outputs)": cfg.alpha,
            "seed": cfg.seed,
        },
    )
    columns = list(SUMMARY_COLUMNS)
    report.section("Quality per scheme").add(
        Table(
            columns,
            [[row.get(c) for c in columns] for row in table],
            note="Batch-level detection over all sites; severity F1 is the macro F1 over "
            "mild/moderate/severe; delay is in batches from onset; false alarms per 100 "
            "stable batches; beats_centralised compares detection F1.",
        )
    )
    scen_rows = []
    for site, s in result.streams.scenarios.items():
        scen_rows.append(
            [
                site,
                s.get("shift"),
                s.get("pattern"),
                s.get("onset"),
                s.get("severity"),
                s.get("magnitude"),
                s.get("effect"),
            ]
        )
    report.section("Scenarios").add(
        Table(
            ["site", "shift", "pattern", "onset", "target severity", "magnitude", "effect"],
            scen_rows,
            note=f"Effect = max over probability outputs of W1(logits)/SD(reference logits); "
            f"targets {EFFECT_TARGETS}; bands mild/moderate/severe from {SEVERITY_BANDS}.",
        )
    )
    figures = report.section("Plots")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        figures.add(Text("matplotlib is not installed: plots left out.", warning=True))
    else:
        figures.add(Figure(_bars_figure(table), "Detection and severity F1 per scheme"))
        lead = next(
            (s for s in ("adaptive", "site", "production") if s in result.schemes),
            next(iter(result.schemes)),
        )
        figures.add(
            Figure(
                _timeline_figure(result, lead),
                f"Statistic per batch ({lead} scheme)",
                "Dots coloured by predicted severity (grey: no drift); dashed line: true onset; "
                "red band: the true effect (right axis).",
            )
        )
    return write_report(report, path)
