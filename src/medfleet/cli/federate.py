"""``medfleet federate``: federated fine-tuning across the manifest's sites on Flower.

Exit status: 0 when the run finished or was degraded (some site failed some rounds but
every sampled site trained and wrote its model; the summary says which), 1 when it failed
(docs/federated.md, "Faults": a sampled site never trained or wrote no model, or the last
round did not aggregate), 2 for a usage error.
"""

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
    print_json,
)
from medfleet.cli.progress import progress_bar
from medfleet.cli.run_options import (
    DEFAULT_ENGINE,
    BackboneOption,
    BatchSizeOption,
    BlocksOption,
    ConfigOption,
    DeviceOption,
    EngineOption,
    FedBNOption,
    ImageSizeOption,
    LocalEpochsOption,
    LocalStepsOption,
    LrOption,
    MuOption,
    RankOption,
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
    manifest: ManifestOption,
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
        typer.Option(
            "--dp-clip",
            help="Clip each site's update (all travelling weights jointly) to this L2 norm; "
            "must be > 0.",
        ),
    ] = None,
    dp_noise: Annotated[
        float,
        typer.Option(
            "--dp-noise",
            min=0.0,
            help="Gaussian noise multiplier z (needs --dp-clip): noise std z*C/n_k on each "
            "key held by n_k sites, equal weight per site.",
        ),
    ] = 0.0,
    dp_delta: Annotated[
        float,
        typer.Option(
            "--dp-delta",
            help="The delta of the (epsilon, delta) guarantee recorded in federated.json.",
        ),
    ] = 1e-5,
    engine: EngineOption = DEFAULT_ENGINE,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            help="Seed of initialisation and local training (default: the --config's "
            "train.seed, else 0).",
        ),
    ] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = 1,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Fine-tune the unified model across the manifest's sites with Flower."""
    check_out_folder(out)
    from pydantic import ValidationError

    from medfleet.errors import MedfleetError, one_line
    from medfleet.federated.config import FederatedConfig
    from medfleet.tasks import Manifest

    text = fmt is OutputFormat.text
    _check_privacy_options(dp_clip, dp_noise, dp_delta)
    try:
        loaded = Manifest.load(manifest)
        model_config, train_config = load_configs(
            config,
            model={"backbone": backbone, "image_size": image_size, "weights": weights},
            train={
                "batch_size": batch_size,
                "lr": lr,
                "threads": threads,
                "seed": seed,
                "device": device,
            },
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
            dp_clip=dp_clip,
            dp_noise=dp_noise,
            dp_delta=dp_delta,
            seed=train_config.seed,
        )
    except ValidationError as exc:
        fail(f"invalid setting: {one_line(exc)}", code=2)
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
    summary["privacy"] = result.data.get("privacy")
    if not text:
        print_json(summary)
        return
    _print_summary(summary, manifest)


def _check_privacy_options(dp_clip: float | None, dp_noise: float, dp_delta: float) -> None:
    """Usage errors (exit 2) for differential-privacy options that cannot mean anything.

    Example:
        >>> _check_privacy_options(1.0, 1.0, 1e-5)
        >>> try:
        ...     _check_privacy_options(0.0, 0.0, 1e-5)
        ... except typer.Exit as exc:
        ...     exc.exit_code
        2
    """
    if dp_clip is not None and not dp_clip > 0:
        fail(
            f"--dp-clip {dp_clip:g}: the clipping norm must be > 0 (fix: give a positive "
            "L2 norm, e.g. --dp-clip 1.0, or leave --dp-clip out for no clipping)",
            code=2,
        )
    if dp_noise > 0 and dp_clip is None:
        fail(
            f"--dp-noise {dp_noise:g} needs --dp-clip: the noise is scaled by the clipping "
            "norm (fix: add --dp-clip, e.g. --dp-clip 1.0)",
            code=2,
        )
    if not 0 < dp_delta < 1:
        fail(f"--dp-delta {dp_delta:g}: delta must be in (0, 1), e.g. 1e-5", code=2)


def _print_summary(summary: dict[str, Any], manifest: Path) -> None:
    import shlex

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
    status = summary.get("status")
    if status == "degraded":
        problems = "; ".join(summary.get("problems") or [])
        console.print(
            f"status: degraded: {problems}", highlight=False, markup=False, soft_wrap=True
        )
    privacy = summary.get("privacy") or {}
    if privacy.get("enabled"):
        console.print(
            f"differential privacy: epsilon {privacy['epsilon']:.2f} at delta "
            f"{privacy['delta']:g} over {privacy['rounds']} round(s) (site level, "
            "no sampling amplification)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    models = summary.get("site_models") or {}
    missing = [s for s in summary["sites"] if s not in models]
    if missing:
        console.print(f"no model for: {', '.join(missing)}", highlight=False, markup=False)
    sites_dir = shlex.quote(f"{summary['out']}/sites")
    console.print(
        f"site models: {summary['out']}/sites/<site>; predict with: medfleet predict "
        f"--model {sites_dir}/<site> --manifest {shlex.quote(str(manifest))} "
        "--out <predictions-folder>",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
