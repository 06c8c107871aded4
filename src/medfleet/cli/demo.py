"""``medfleet demo``: run the end-to-end pipeline on phantoms, federated stage included."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medfleet.cli.common import (
    FORMAT_OPTION,
    OutputFormat,
    check_out_folder,
    console,
    fail,
    literal,
    print_json,
    say,
)
from medfleet.cli.progress import progress_bar
from medfleet.cli.run_options import SeedOption


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for everything the demo writes.")
    ] = Path("medfleet-demo"),
    quick: Annotated[
        bool, typer.Option("--quick", help="Smaller data for a run of a few seconds.")
    ] = False,
    seed: SeedOption = 0,
    stages: Annotated[
        str | None,
        typer.Option(
            "--stages",
            help="Comma-separated stages to run "
            "(phantoms,validate,summary,train,monitor,federated; default: all).",
        ),
    ] = None,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Run the demo on phantoms: data, training, evaluation, monitoring, federated fine-tuning.

    Three phantom sites are made and validated; a unified multi-task model is trained and
    scored; its outputs are monitored for drift at the three sites; and two rounds of
    DualLoRA federated fine-tuning run across the sites on Flower (skipped, with the reason,
    when Flower is not installed).
    """
    from medfleet.demo import run_demo
    from medfleet.errors import MedfleetError

    text = fmt is OutputFormat.text
    check_out_folder(out)

    def on_stage(stage: object) -> None:
        if text:
            line = literal("stage", "bold cyan")
            line.append(f" {stage.name}: {stage.description}")  # type: ignore[attr-defined]
            console.print(line, highlight=False, soft_wrap=True)

    try:
        summary = run_demo(
            out,
            quick=quick,
            seed=seed,
            only=[s.strip() for s in stages.split(",") if s.strip()] if stages else None,
            on_stage=on_stage,
            progress_factory=lambda stage: progress_bar(stage.name, enabled=text),
        )
    except MedfleetError as exc:
        fail(str(exc))
    if not text:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    tasks = summary["stages"].get("summary", {}).get("tasks", {})
    table = Table(title="phantom tasks by site (image intensity mean / std)")
    for column in ("task", "type", "site", "cases", "mean", "std", "spacing mm"):
        table.add_column(column)
    for name, info in tasks.items():
        for site, stats in info["sites"].items():
            spacing = ", ".join("x".join(f"{s:.3g}" for s in sp) for sp in stats["spacing_mm"])
            cells = (
                name,
                info["type"],
                site,
                stats["cases"],
                f"{stats['intensity_mean']:.1f}",
                f"{stats['intensity_std']:.1f}",
                spacing,
            )
            table.add_row(*map(literal, cells))
    if tasks:
        console.print(table)
    train = summary["stages"].get("train")
    if train:
        scores = Table(title=literal(f"unified {train['backbone']} model on the test split"))
        for column in ("task", "metric", "value"):
            scores.add_column(column)
        for task, metrics in train["test"].items():
            for metric, value in metrics.items():
                scores.add_row(*map(literal, (task, metric, _fmt(value))))
        console.print(scores)
        _print_baselines(train.get("baseline") or {})
    monitor = summary["stages"].get("monitor")
    if monitor:
        drift = Table(
            title=literal(
                f"drift monitoring ({monitor['scorer']}): {monitor['drifted_site']} drifts"
            )
        )
        columns = ["scheme", "precision", "recall", "f1", "severity_f1"]
        for column in columns:
            drift.add_column(column)
        for row in monitor["table"]:
            drift.add_row(*(literal(_fmt(row.get(c, ""))) for c in columns))
        console.print(drift)
        false_sites = ", ".join(monitor["false_alarm_sites"]) or "none"
        say(
            f"alerts: {len(monitor['alerts'])}; drift at {monitor['drifted_site']} detected: "
            f"{monitor['drift_detected']}; false-alarm sites: {false_sites}"
        )
    federated = summary["stages"].get("federated")
    if federated:
        _print_federated(federated)
    seconds = ", ".join(f"{k} {v:.1f}s" for k, v in summary["seconds"].items())
    say(f"demo finished ({seconds}); summary: {Path(summary['out']) / 'demo_summary.json'}")


METRIC_NAMES = {
    "balanced_accuracy": "balanced accuracy",
    "auc": "AUC",
    "auc_macro": "AUC",
    "mae": "MAE",
    "mre": "MRE",
    "dice": "Dice",
    "ap50": "AP50",
}


def _print_baselines(baselines: dict) -> None:
    """One line per task and metric: the model against the task's trivial baseline."""
    if not baselines:
        return
    say("model vs trivial baseline on the test split (baselines fitted on the train split):")
    for task, entry in baselines.items():
        unit = f" {entry['unit']}" if entry.get("unit") else ""
        for metric, values in entry.get("metrics", {}).items():
            model, base, diff = values["model"], values["baseline"], values["difference"]
            if diff is None:
                verdict = "difference undefined"
            elif diff == 0:
                verdict = "no better"
            else:
                verdict = f"{_fmt(abs(float(diff)))}{unit} {'better' if diff > 0 else 'worse'}"
            say(
                f"  {task}: {METRIC_NAMES.get(metric, metric)} {_num(model)}{unit} vs "
                f"{_num(base)}{unit} for the {entry['kind']} ({verdict}; "
                f"{values['direction']} is better)"
            )


def _num(value: object) -> str:
    return "n/a" if value is None else _fmt(float(value))  # type: ignore[arg-type]


def _print_federated(federated: dict) -> None:
    from rich.table import Table

    if federated.get("skipped"):
        say(f"federated stage skipped: {federated.get('reason', '')}")
        return
    table = Table(title=literal(f"federated {federated['strategy']}, {federated['rounds']} rounds"))
    for column in ("site", "lesion_cls balanced accuracy (val)"):
        table.add_column(column)
    for site, value in federated.get("balanced_accuracy", {}).items():
        table.add_row(literal(site), literal(_fmt(value)))
    console.print(table)
    sizes = federated.get("bytes_per_round", {})
    if sizes:
        shown = ", ".join(f"round {r}: {s['total']:,}" for r, s in sizes.items())
        say(f"federated bytes per round (all sites, both ways): {shown}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
