"""``medfleet federate``: federated fine-tuning across the manifest's sites on Flower."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medfleet.cli.common import FORMAT_OPTION, OutputFormat, console, fail, print_json
from medfleet.cli.progress import progress_bar
from medfleet.cli.run_options import (
    BackboneOption,
    BatchSizeOption,
    BlocksOption,
    ConfigOption,
    EngineChoice,
    FedBNOption,
    ImageSizeOption,
    LocalEpochsOption,
    LocalStepsOption,
    LrOption,
    MuOption,
    RankOption,
    SeedOption,
    StrategyChoice,
    ThreadsOption,
    WeightsOption,
    load_configs,
    parse_blocks,
    split_names,
)


def _shared_heads(text: str | None) -> list[str] | None:
    """``--shared-heads``: ``all`` (every head), ``none`` or comma-separated task names."""
    key = (text or "").strip().lower()
    if key == "all":
        return ["*"]
    if key == "none":
        return []
    return split_names(text, "--shared-heads")


def federate(
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="The manifest YAML.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder of the federated run.")],
    strategy: Annotated[
        StrategyChoice,
        typer.Option(
            "--strategy",
            help="fedavg (all weights travel), fedprox (+ proximal term), lora (only LoRA "
            "weights and shared heads travel), dual-lora (global LoRA travels, local LoRA "
            "and private heads stay at the site).",
        ),
    ] = StrategyChoice.fedavg,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Federated rounds.")] = 3,
    config: ConfigOption = None,
    backbone: BackboneOption = None,
    image_size: ImageSizeOption = None,
    weights: WeightsOption = None,
    local_epochs: LocalEpochsOption = 1,
    local_steps: LocalStepsOption = None,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    mu: MuOption = 0.01,
    blocks: BlocksOption = None,
    rank: RankOption = 4,
    shared_heads: Annotated[
        str | None,
        typer.Option(
            "--shared-heads",
            help="Tasks whose heads travel: comma list, 'all' or 'none' (default: all, "
            "none for dual-lora).",
        ),
    ] = None,
    fedbn: FedBNOption = False,
    min_fit: Annotated[
        int, typer.Option("--min-fit", min=1, help="Sites that must answer to aggregate.")
    ] = 1,
    min_available: Annotated[
        int | None,
        typer.Option("--min-available", min=1, help="Sites connected before a round starts."),
    ] = None,
    round_timeout: Annotated[
        float, typer.Option("--round-timeout", min=1.0, help="Seconds a round waits.")
    ] = 3600.0,
    dp_clip: Annotated[
        float | None,
        typer.Option("--dp-clip", min=0.0, help="Clip each site's update to this L2 norm."),
    ] = None,
    dp_noise: Annotated[
        float,
        typer.Option("--dp-noise", min=0.0, help="Gaussian noise multiplier (needs --dp-clip)."),
    ] = 0.0,
    secagg: Annotated[
        bool, typer.Option("--secagg", help="Secure aggregation (reported as unsupported).")
    ] = False,
    engine: Annotated[
        EngineChoice,
        typer.Option(
            "--engine",
            help="simulation (Flower's Ray simulation engine) or inprocess (no Ray).",
        ),
    ] = EngineChoice.simulation,
    seed: SeedOption = 0,
    threads: ThreadsOption = 1,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Fine-tune the unified model across the manifest's sites with Flower."""
    from pydantic import ValidationError

    from medfleet.errors import MedfleetError
    from medfleet.federated.config import FederatedConfig
    from medfleet.tasks import Manifest

    text = fmt is OutputFormat.text
    try:
        loaded = Manifest.load(manifest)
        model_config, train_config = load_configs(
            config,
            model={"backbone": backbone, "image_size": image_size, "weights": weights},
            train={"batch_size": batch_size, "lr": lr, "threads": threads},
        )
        fed_config = FederatedConfig(
            strategy=strategy.value,
            rounds=rounds,
            local_epochs=local_epochs,
            local_steps=local_steps,
            mu=mu,
            blocks=parse_blocks(blocks),
            rank=rank,
            shared_heads=_shared_heads(shared_heads),
            fedbn=fedbn,
            min_fit=min_fit,
            min_available=min_available if min_available is not None else min_fit,
            round_timeout=round_timeout,
            dp_clip=dp_clip if dp_clip else None,
            dp_noise=dp_noise,
            secagg=secagg,
            seed=seed,
        )
    except ValidationError as exc:
        fail(f"invalid setting: {exc}", code=2)
    except MedfleetError as exc:
        fail(str(exc))
    from medfleet.federated.simulation import run_federated

    try:
        with progress_bar(f"federated {strategy.value}", enabled=text) as update:
            result = run_federated(
                loaded, model_config, train_config, fed_config, out, update, engine=engine.value
            )
    except MedfleetError as exc:
        fail(str(exc))
    summary = result.summary()
    if not text:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"federated {summary['strategy']}: {summary['out']}")
    for column in ("round", "sent (B)", "received (B)", "failed sites"):
        table.add_column(column)
    for r, sizes in summary["bytes_per_round"].items():
        failed = ", ".join(summary["failures"].get(r, [])) or "-"
        table.add_row(r, str(sizes["sent"]), str(sizes["received"]), failed)
    console.print(table)
    for site, tasks in summary["last_metrics"].items():
        shown = "; ".join(
            f"{task}: " + ", ".join(f"{k} {v:.3g}" for k, v in m.items() if v is not None)
            for task, m in tasks.items()
        )
        console.print(f"{site}: {shown}", highlight=False, markup=False)
    console.print(f"site models: {summary['out']}/sites/<site> (medfleet predict --model ...)")
