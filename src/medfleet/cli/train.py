"""``medfleet train``: train task-specific, grouped or unified models (or all three and compare)."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from medfleet.cli.common import (
    DEFAULT_N_RESAMPLES,
    FORMAT_OPTION,
    MIN_N_RESAMPLES,
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
from medfleet.cli.run_options import (
    BackboneOption,
    BatchSizeOption,
    ConfigOption,
    DeviceOption,
    ImageSizeOption,
    LrOption,
    SeedOption,
    ThreadsOption,
    WeightsOption,
    check_length_options,
    load_configs,
    settings_error,
    split_names,
)


class SemiMethod(enum.StrEnum):
    """Semi-supervised method for the unlabelled rows of segmentation tasks."""

    mean_teacher = "mean-teacher"
    fixmatch = "fixmatch"


class AugmentLevel(enum.StrEnum):
    """Training augmentation level."""

    none = "none"
    light = "light"
    standard = "standard"
    strong = "strong"


class Paradigm(enum.StrEnum):
    """Which models to train."""

    task_specific = "task-specific"
    grouped = "grouped"
    unified = "unified"
    all = "all"


def train(
    manifest: ManifestOption,
    out: Annotated[Path, typer.Option("--out", help="Output folder of the experiment.")],
    paradigm: Annotated[
        Paradigm,
        typer.Option(
            "--paradigm",
            help="task-specific (one model per task), grouped (one per clinical group), "
            "unified (one for all) or all (the three, then the transfer analysis).",
        ),
    ] = Paradigm.unified,
    config: ConfigOption = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Passes over the training rows.")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Optimiser steps of the run (instead of --epochs)."),
    ] = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    seed: SeedOption = None,
    sampling: Annotated[
        str | None,
        typer.Option("--sampling", help="Task sampling: proportional, uniform or temperature."),
    ] = None,
    backbone: BackboneOption = None,
    image_size: ImageSizeOption = None,
    weights: WeightsOption = None,
    tasks: Annotated[
        str | None,
        typer.Option("--tasks", help="Comma-separated task names (default: all of the manifest)."),
    ] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue every model from its last checkpoint.")
    ] = False,
    augment: Annotated[
        AugmentLevel | None,
        typer.Option(
            "--augment",
            help="Training augmentation: none, light, standard or strong (flip, scale, "
            "shift, intensity; strong also rotates up to 30 degrees; targets move with "
            "the image).",
        ),
    ] = None,
    semi_supervised: Annotated[
        SemiMethod | None,
        typer.Option(
            "--semi-supervised",
            help="Also learn from segmentation rows without a mask: mean-teacher or fixmatch.",
        ),
    ] = None,
    cutmix: Annotated[
        float | None,
        typer.Option(
            "--cutmix",
            min=0.0,
            max=1.0,
            help="Share of the unlabelled strong views that get a rectangle of another "
            "image pasted in, targets mixed alike (with --semi-supervised).",
        ),
    ] = None,
    landmark_sigma: Annotated[
        float | None,
        typer.Option(
            "--landmark-sigma", min=0.01, help="Gaussian sigma of landmark heatmaps (cells)."
        ),
    ] = None,
    test_split: Annotated[
        str, typer.Option("--test-split", help="Split predicted and scored after training.")
    ] = "test",
    evaluation_report: Annotated[
        bool,
        typer.Option(
            "--evaluation-report/--no-evaluation-report",
            help="Write each task's evaluation report.html.",
        ),
    ] = True,
    n_resamples: Annotated[
        int,
        typer.Option(
            "--n-resamples",
            min=MIN_N_RESAMPLES,
            help="Bootstrap resamples of each interval of the transfer analysis (--paradigm all).",
        ),
    ] = DEFAULT_N_RESAMPLES,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Train models on a manifest's tasks, predict the test split and score it."""
    from pydantic import ValidationError

    from medfleet.errors import MedfleetError

    text = fmt is OutputFormat.text
    check_out_folder(out)
    check_length_options(epochs, steps)
    try:
        loaded = load_manifest(manifest)
        model_config, train_config = load_configs(
            config,
            model={"backbone": backbone, "image_size": image_size, "weights": weights},
            train={
                "epochs": epochs,
                "max_steps": steps,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "sampling": sampling,
                "device": device,
                "threads": threads,
                "augment": augment.value if augment is not None else None,
                "semi_supervised": semi_supervised.value if semi_supervised is not None else None,
                "cutmix": cutmix,
            },
        )
        if landmark_sigma is not None:
            heads = model_config.heads.model_copy(update={"landmark_sigma": landmark_sigma})
            model_config = model_config.model_copy(update={"heads": heads})
    except ValidationError as exc:
        fail(f"invalid setting: {settings_error(exc)}", code=2)
    except MedfleetError as exc:
        fail(str(exc))
    if cutmix is not None and train_config.semi_supervised is None:
        fail(
            "--cutmix mixes the unlabelled views of semi-supervised training (fix: add "
            "--semi-supervised mean-teacher|fixmatch, or set augment_cutmix in --config for "
            "CutMix on labelled batches)",
            code=2,
        )

    def log(message: str) -> None:
        if text:
            console.print(message, highlight=False, markup=False)

    try:
        summary = run_training(
            loaded,
            paradigm.value,
            out,
            model_config,
            train_config,
            tasks=split_names(tasks, "--tasks"),
            resume=resume,
            test_split=test_split,
            evaluation_report=evaluation_report,
            n_resamples=n_resamples,
            log=log,
            progress_factory=lambda description: progress_bar(description, enabled=text),
        )
    except MedfleetError as exc:
        fail(str(exc))
    if not text:
        print_json(summary)
        return
    _print_summary(summary)


def run_training(
    manifest: Any,
    paradigm: str,
    out: Path,
    model_config: Any,
    train_config: Any,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one paradigm or all three; write ``run_config.yaml`` and return a JSON-ready summary."""
    import shutil

    import yaml

    from medfleet.utils.atomic import write_text_atomic

    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    resolved = {
        "model": model_config.model_dump(mode="json"),
        "train": train_config.model_dump(mode="json"),
    }
    config_file = write_text_atomic(
        out / "run_config.yaml", yaml.safe_dump(resolved, sort_keys=False)
    )
    try:
        return _run_paradigms(manifest, paradigm, out, model_config, train_config, **kwargs)
    except BaseException:
        # a run refused before it wrote anything leaves nothing behind
        written = [f for f in out.rglob("*") if f.is_file() and f != config_file]
        if not written:
            config_file.unlink(missing_ok=True)
            if created:
                shutil.rmtree(out, ignore_errors=True)
        raise


def _run_paradigms(
    manifest: Any,
    paradigm: str,
    out: Path,
    model_config: Any,
    train_config: Any,
    **kwargs: Any,
) -> dict[str, Any]:
    from medfleet.train.paradigms import run_all, run_paradigm
    from medfleet.utils.jsonsafe import json_safe

    n_resamples = kwargs.pop("n_resamples", DEFAULT_N_RESAMPLES)
    summary: dict[str, Any] = {"out": str(out), "paradigm": paradigm}
    if paradigm == "all":
        results, files = run_all(
            manifest, out, model_config, train_config, n_resamples=n_resamples, **kwargs
        )
        summary["paradigms"] = {p: r.to_dict() for p, r in results.items()}
        summary["transfer"] = {k: str(v) for k, v in files.items()}
        import json

        summary["transfer_rows"] = json.loads(files["transfer_json"].read_text())["rows"]
    else:
        result = run_paradigm(manifest, paradigm, out, model_config, train_config, **kwargs)
        summary["paradigms"] = {paradigm: result.to_dict()}
    return json_safe(summary)


def _fmt(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "–" if value is None else str(value)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="test metrics")
    for column in ("paradigm", "model", "task", "metrics"):
        table.add_column(column)
    for paradigm, info in summary["paradigms"].items():
        for model in info["models"]:
            for task, metrics in model["test_metrics"].items():
                shown = ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
                table.add_row(*map(literal, (paradigm, model["name"], task, shown)))
    console.print(table)
    costs = Table(title="cost per paradigm")
    for column in ("paradigm", "models", "parameters", "train s", "ms / image"):
        costs.add_column(column)
    for paradigm, info in summary["paradigms"].items():
        c = info["costs"]
        per_image = c.get("inference_s_per_image")
        costs.add_row(
            literal(paradigm),
            str(c["models"]),
            f"{c['parameters']:,}",
            _fmt(c["train_seconds"]),
            _fmt(1000 * per_image) if isinstance(per_image, int | float) else "–",
        )
    console.print(costs)
    if "transfer" in summary:
        rows = [r for r in summary["transfer_rows"] if r["level"] in ("task", "all")]
        transfer = Table(title="transfer vs task-specific (positive = better)")
        for column in ("paradigm", "task", "delta", "95% CI", "negative transfer"):
            transfer.add_column(column)
        for r in rows:
            ci = f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"
            flag = "yes" if r["negative_transfer"] else ""
            cells = (r["paradigm"], r["name"], _pct(r["delta"]), ci, flag)
            transfer.add_row(*map(literal, cells))
        console.print(transfer)
        say(f"report: {summary['transfer']['report_html']}")
    say(f"outputs under {summary['out']}")


def _pct(value: Any) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{100 * value:+.1f}%"
    return "–"
