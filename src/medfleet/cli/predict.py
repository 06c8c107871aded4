"""``medfleet predict``: run a model over a split or a folder of images; write evaluate's input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medfleet.cli.common import (
    FORMAT_OPTION,
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
    out: Annotated[Path, typer.Option("--out", help="Output folder for the predictions.")],
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", "-m", help="The manifest YAML (the model's tasks; or give --images)."
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="A folder of images to predict instead of a manifest split (one image per "
            "file; case id: the file name without its suffix); no reference, no --evaluate.",
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option("--split", help="Split to predict: train, val, test or all (every row)."),
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
    tta: Annotated[
        str,
        typer.Option(
            "--tta",
            help="Test-time augmentation: none, or flip (average the model's probabilities "
            "over the image and its horizontal mirror, flipped back; segmentation, "
            "classification and regression tasks only).",
        ),
    ] = "none",
    postprocess: Annotated[
        str,
        typer.Option(
            "--postprocess",
            help="Segmentation post-processing of each mask, comma-separated: "
            "largest-component (per label, face connectivity), fill-holes; or none. "
            "For tasks with one object per label.",
        ),
    ] = "none",
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Predict a manifest split or a folder of images; write masks, probabilities and CSVs.

    Give exactly one of --manifest (a split of its tables, with references) and --images (a
    folder of image files for the model's tasks, without references).
    """
    from medfleet.errors import MedfleetError
    from medfleet.tables import SPLITS
    from medfleet.train.predict import SPLIT_ALL, check_tta, parse_postprocess

    text = fmt is OutputFormat.text
    check_device(device)
    try:
        check_tta(tta)
        steps = parse_postprocess(postprocess)
    except MedfleetError as exc:
        fail(str(exc), code=2)
    if (manifest is None) == (images is None):
        fail(
            "give exactly one of --manifest (predict a split of its tables) and --images "
            "(predict a folder of images)",
            code=2,
        )
    if split not in (*SPLITS, SPLIT_ALL):
        fail(f"--split {split!r} is not one of {[*SPLITS, SPLIT_ALL]}", code=2)
    if images is not None:
        if evaluate:
            fail(
                "--evaluate needs references, which a folder of images has none of "
                "(fix: leave out --evaluate, or predict a manifest with --manifest)",
                code=2,
            )
        if split != "test":
            fail("--split selects rows of a manifest; with --images leave it out", code=2)
        if not images.is_dir():
            fail(
                f"--images {images} is not a folder (fix: give a folder of image files)",
                code=2,
            )
    check_out_folder(out)
    try:
        from medfleet.train.predict import evaluate_predictions, predict_images, predict_manifest
        from medfleet.train.run import load_trained
        from medfleet.train.trainer import resolve_device

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        dev = resolve_device(device)
        loaded_manifest = load_manifest(manifest) if manifest is not None else None
        loaded = load_trained(model, loaded_manifest, device=dev)
        names = loaded.tasks
        if tasks is not None:
            wanted = [t.strip() for t in tasks.split(",") if t.strip()]
            unknown = [t for t in wanted if t not in loaded.tasks]
            if unknown:
                fail(f"the model has no head for task(s) {unknown}; it serves {loaded.tasks}")
            names = wanted
        what = f"predict {split}" if images is None else "predict images"
        with progress_bar(what, enabled=text) as progress:
            common: dict[str, Any] = dict(
                tasks=names,
                image_size=loaded.image_size,
                normalisation=loaded.normalisation,
                device=dev,
                batch_size=batch_size,
                progress=progress,
                tta=tta,
                postprocess=steps,
            )
            if images is not None:
                run = predict_images(loaded.model, images, out, **common)
            else:
                run = predict_manifest(loaded.model, loaded_manifest, out, split=split, **common)
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

    if summary.get("images") is not None:
        title = f"predictions (images in {summary['images']})"
    else:
        title = f"predictions ({summary['split']} split)"
    table = Table(title=literal(title))
    for column in ("task", "type", "cases", "ms / image", "metrics"):
        table.add_column(column)
    evaluation = summary.get("evaluation", {})
    for task, info in summary["tasks"].items():
        metrics = evaluation.get(task, {}).get("metrics", {})
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        cells = (task, info["type"], info["n_cases"], f"{1000 * info['runtime_s_mean']:.1f}", shown)
        table.add_row(*map(literal, cells))
    console.print(table)
    if summary.get("tta", "none") != "none":
        say(f"test-time augmentation: {summary['tta']} (segmentation, classification, regression)")
    if summary.get("postprocess"):
        say(f"post-processing of segmentation masks: {', '.join(summary['postprocess'])}")
    for task, info in summary["tasks"].items():
        for note in info.get("notes", []):
            say(f"{task}: {note}")
    if summary.get("skipped"):
        say(f"no rows in this split: {', '.join(summary['skipped'])}")
    commands = [info["evaluate"] for info in summary["tasks"].values() if info.get("evaluate")]
    if not commands:
        say(f"written under {summary['out']} (no references: nothing to score with)")
        return
    say(f"written under {summary['out']}; score with:")
    for command in commands:
        say(f"  {command}")
