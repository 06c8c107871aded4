"""``medfleet predict``: run a trained model over a split; write what ``evaluate`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medfleet.cli.common import (
    FORMAT_OPTION,
    ManifestOption,
    OutputFormat,
    check_out_folder,
    console,
    fail,
    literal,
    load_manifest,
    print_json,
    say,
)
from medfleet.cli.progress import progress_bar
from medfleet.cli.run_options import RunDeviceOption, ThreadsOption, check_device

RENAMED = {"--checkpoint": "--model"}
"""Old spellings of this verb's options (accepted with a deprecation message)."""


def predict(
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            help="Trained model: a training run's folder, its model.safetensors or its "
            "checkpoints/last.safetensors.",
        ),
    ],
    manifest: ManifestOption,
    out: Annotated[Path, typer.Option("--out", help="Output folder for the predictions.")],
    split: Annotated[
        str, typer.Option("--split", help="Split to predict: train, val or test.")
    ] = "test",
    tasks: Annotated[
        str | None,
        typer.Option("--tasks", help="Comma-separated task names (default: all the model serves)."),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Images per forward pass (1: exact runtimes)."),
    ] = 1,
    device: RunDeviceOption = "auto",
    threads: ThreadsOption = None,
    evaluate: Annotated[
        bool,
        typer.Option("--evaluate", help="Also score the predictions (OUT/evaluation/<task>)."),
    ] = False,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Predict a split of a manifest with a trained model; write masks, probabilities and CSVs."""
    from medfleet.errors import MedfleetError
    from medfleet.tables import SPLITS

    text = fmt is OutputFormat.text
    check_device(device)
    if split not in SPLITS:
        fail(f"--split {split!r} is not one of {list(SPLITS)}", code=2)
    check_out_folder(out)
    try:
        from medfleet.train.predict import evaluate_predictions, predict_manifest
        from medfleet.train.run import load_trained
        from medfleet.train.trainer import resolve_device

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        loaded_manifest = load_manifest(manifest)
        dev = resolve_device(device)
        loaded = load_trained(model, loaded_manifest, device=dev)
        names = loaded.tasks
        if tasks is not None:
            wanted = [t.strip() for t in tasks.split(",") if t.strip()]
            unknown = [t for t in wanted if t not in loaded.tasks]
            if unknown:
                fail(f"the model has no head for task(s) {unknown}; it serves {loaded.tasks}")
            names = wanted
        with progress_bar(f"predict {split}", enabled=text) as progress:
            run = predict_manifest(
                loaded.model,
                loaded_manifest,
                out,
                split=split,
                tasks=names,
                image_size=loaded.image_size,
                normalisation=loaded.normalisation,  # type: ignore[arg-type]
                device=dev,
                batch_size=batch_size,
                progress=progress,
            )
        summary: dict[str, Any] = run.to_dict()
        if evaluate:
            from medfleet.train.paradigms import headline

            scored = evaluate_predictions(loaded_manifest, run)
            summary["evaluation"] = {
                task: {"summary_json": r["summary_json"], "metrics": headline(r["summary"])}
                for task, r in scored.items()
            }
    except MedfleetError as exc:
        fail(str(exc))
    if not text:
        from medfleet.utils.jsonsafe import json_safe

        print_json(json_safe(summary))
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=literal(f"predictions ({summary['split']} split)"))
    for column in ("task", "type", "cases", "ms / image", "metrics"):
        table.add_column(column)
    evaluation = summary.get("evaluation", {})
    for task, info in summary["tasks"].items():
        metrics = evaluation.get(task, {}).get("metrics", {})
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        cells = (task, info["type"], info["n_cases"], f"{1000 * info['runtime_s_mean']:.1f}", shown)
        table.add_row(*map(literal, cells))
    console.print(table)
    if summary.get("skipped"):
        say(f"no rows in this split: {', '.join(summary['skipped'])}")
    say(f"written under {summary['out']}; score with:")
    for info in summary["tasks"].values():
        say(f"  {info['evaluate']}")
