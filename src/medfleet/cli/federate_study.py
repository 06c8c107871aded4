"""``medfleet federate-study``: local-only, centralised and federated strategies compared."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from medfleet.cli.common import (
    DEFAULT_N_RESAMPLES,
    FORMAT_OPTION,
    ManifestOption,
    NResamplesOption,
    OutputFormat,
    check_out_folder,
    console,
    fail,
    print_json,
)
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

STRATEGY_NAMES = tuple(s.value for s in StrategyChoice)


#: Old spellings of this verb's options (accepted for one release, with a warning).
RENAMED = {"--positive-class": "--positive-label"}


def _positive(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in split_names(text, "--positive-label") or []:
        task, sep, cls = item.partition("=")
        if not sep or not task.strip() or not cls.strip():
            fail(f"--positive-label {item!r}: write TASK=CLASS (e.g. cxr=pneumonia)", code=2)
        out[task.strip()] = cls.strip()
    return out


def federate_study(
    manifest: ManifestOption,
    out: Annotated[Path, typer.Option("--out", help="Output folder of the study.")],
    strategies: Annotated[
        str,
        typer.Option(
            "--strategies",
            help="Comma-separated federated strategies: fedavg, fedprox, lora, dual-lora "
            "(empty string: none).",
        ),
    ] = "fedavg,lora,dual-lora",
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Federated rounds.")] = 3,
    include_local: Annotated[
        bool,
        typer.Option("--include-local/--no-include-local", help="Train each site alone."),
    ] = True,
    include_centralised: Annotated[
        bool,
        typer.Option(
            "--include-centralised/--no-include-centralised",
            help="Train on the pooled sites (the upper reference).",
        ),
    ] = True,
    config: ConfigOption = None,
    backbone: BackboneOption = None,
    image_size: ImageSizeOption = None,
    weights: WeightsOption = None,
    local_steps: LocalStepsOption = None,
    local_epochs: LocalEpochsOption = 1,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    blocks: BlocksOption = None,
    rank: RankOption = 4,
    mu: MuOption = 0.01,
    fedbn: FedBNOption = False,
    tasks: Annotated[
        str | None,
        typer.Option(
            "--tasks",
            help="Comma-separated task names (default: every classification and segmentation "
            "task).",
        ),
    ] = None,
    positive_class: Annotated[
        str | None,
        typer.Option(
            "--positive-label",
            help="TASK=CLASS pairs, comma-separated: the positive class of binary metrics "
            "(default: the second of two classes; macro one-vs-rest otherwise).",
        ),
    ] = None,
    n_resamples: NResamplesOption = DEFAULT_N_RESAMPLES,
    engine: EngineOption = DEFAULT_ENGINE,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            help="Seed of initialisation and training of every arm (default: the --config's "
            "train.seed, else 0).",
        ),
    ] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = 1,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Compare local-only, centralised and federated training on the same budget and cases."""
    check_out_folder(out)
    from pydantic import ValidationError

    from medfleet.errors import MedfleetError
    from medfleet.federated.config import FederatedConfig
    from medfleet.tasks import Manifest

    text = fmt is OutputFormat.text
    chosen = [s.strip() for s in strategies.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STRATEGY_NAMES]
    if unknown:
        fail(f"--strategies: unknown {unknown} (fix: use {', '.join(STRATEGY_NAMES)})", code=2)
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
            strategy=chosen[0] if chosen else "fedavg",
            rounds=rounds,
            local_steps=local_steps,
            local_epochs=local_epochs,
            mu=mu,
            blocks=parse_blocks(blocks),
            rank=rank,
            fedbn=fedbn,
            seed=train_config.seed,
        )
    except ValidationError as exc:
        fail(f"invalid setting: {exc}", code=2)
    except MedfleetError as exc:
        fail(str(exc))

    def log(line: str) -> None:
        if text:
            console.print(line, highlight=False, markup=False)

    from medfleet.federated.study import StudyOptions, run_study

    runner = None
    if chosen:
        from medfleet.federated.simulation import run_federated

        runner = functools.partial(run_federated, engine=engine.value)
    try:
        result = run_study(
            loaded,
            model_config,
            train_config,
            fed_config,
            out,
            StudyOptions(
                strategies=chosen,
                include_local=include_local,
                include_centralised=include_centralised,
                tasks=split_names(tasks, "--tasks"),
                positive_class=_positive(positive_class),
                n_resamples=n_resamples,
            ),
            log=log,
            federated_runner=runner,
        )
    except MedfleetError as exc:
        fail(str(exc))
    summary = {
        "out": str(result.out),
        "files": {k: str(v) for k, v in result.files.items()},
        "arms": [a["name"] for a in result.data["arms"]],
        "pooled": [r for r in result.data["metrics"] if r["site"] == "pooled"],
        "communication": result.data["communication_summary"],
    }
    if not text:
        print_json(summary)
        return
    _print_summary(result.data, summary)


def _fmt(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.3f}" if math.isfinite(value) else str(value)
    return "-" if value is None else str(value)


def _print_summary(data: dict[str, Any], summary: dict[str, Any]) -> None:
    from rich.table import Table

    from medfleet.federated.study_report import comparison_rows, format_bytes

    table = Table(title="pooled test cases: estimate [95% CI]")
    for column in ("task", "arm", "n", "metrics"):
        table.add_column(column)
    from medfleet.federated.study_cases import METRICS

    for row in comparison_rows(data):
        names = METRICS[data["tasks"][row[0]]]
        shown = "; ".join(f"{m} {v}" for m, v in zip(names, row[3:], strict=True))
        table.add_row(row[0], row[1], str(row[2]), shown)
    console.print(table)
    if summary["communication"]:
        comm = Table(title="communication")
        for column in ("arm", "bytes / round", "share of FedAvg"):
            comm.add_column(column)
        for r in summary["communication"]:
            share = r.get("fraction_of_fedavg")
            comm.add_row(
                r["arm"],
                format_bytes(r["bytes_per_round"]),
                "-" if share is None else f"{100 * share:.3g}%",
            )
        console.print(comm)
    console.print(f"report: {summary['files'].get('report_html', '-')}", highlight=False)
