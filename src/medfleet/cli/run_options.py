"""Command-line options shared by the verbs that build, train or run a model.

``medfleet train``, ``medfleet federate`` and ``medfleet federate-study`` take the same
``--config`` YAML and the same model options; ``medfleet predict`` and the ``medfleet synth``
verbs reuse the ones they need (``--image-size``, ``--batch-size``, ``--device``, ...). The
option types live here once, and :func:`load_configs` merges the YAML with whatever was given
on the command line (``None``: not given).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medfleet.cli.common import fail

if TYPE_CHECKING:
    from medfleet.models import ModelConfig
    from medfleet.train.config import TrainConfig

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML with 'model:' (ModelConfig) and 'train:' sections."),
]
BackboneOption = Annotated[
    str | None,
    typer.Option("--backbone", help="Backbone name (default unet-small; e.g. vit-tiny)."),
]
ImageSizeOption = Annotated[
    int | None, typer.Option("--image-size", min=8, help="Model input size in pixels.")
]
_DEVICES = "auto (CUDA when available), cpu, cuda or cuda:N"
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help=f"Where the model trains: {_DEVICES} (default: the --config's train.device, "
        "else auto).",
    ),
]
"""``--device`` of the verbs with a ``--config`` (``None``: the YAML's value)."""
RunDeviceOption = Annotated[
    str, typer.Option("--device", help=f"Where the model runs: {_DEVICES}.")
]
"""``--device`` of the verbs without a ``--config`` (default ``auto``)."""
WeightsOption = Annotated[
    Path | None, typer.Option("--weights", help="Local pretrained backbone weights.")
]
BatchSizeOption = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Images per batch and process.")
]
LrOption = Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")]
BlocksOption = Annotated[
    str | None,
    typer.Option("--blocks", help="Blocks to adapt, comma-separated (e.g. -2,-1)."),
]


class StrategyChoice(enum.StrEnum):
    """Federated strategy."""

    fedavg = "fedavg"
    fedprox = "fedprox"
    lora = "lora"
    dual_lora = "dual-lora"


class EngineChoice(enum.StrEnum):
    """Where the federated clients run."""

    simulation = "simulation"
    inprocess = "inprocess"


DEFAULT_ENGINE = EngineChoice.inprocess
"""The ``--engine`` default of ``federate`` and ``federate-study`` (docs/federated.md, "Engines").

The in-process engine runs the same ServerApp, strategies and ClientApp as Ray, with every
message serialised as on the wire, one site after the other (reproducible runs), and without
Ray's start-up of tens of seconds; ``run_federated`` defaults to it too.
"""
EngineOption = Annotated[
    EngineChoice,
    typer.Option(
        "--engine",
        help="inprocess (Flower's apps on an in-process grid, sites one after the other, "
        "no Ray) or simulation (Flower's Ray simulation engine, one CPU per client).",
    ),
]

LocalEpochsOption = Annotated[
    int, typer.Option("--local-epochs", min=1, help="Local passes per round.")
]
LocalStepsOption = Annotated[
    int | None,
    typer.Option("--local-steps", min=1, help="Local optimiser steps per round (wins)."),
]
MuOption = Annotated[float, typer.Option("--mu", min=0.0, help="FedProx proximal weight.")]
RankOption = Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")]
FedBNOption = Annotated[
    bool, typer.Option("--fedbn", help="Keep normalisation layers local (FedBN).")
]
SeedOption = Annotated[int | None, typer.Option("--seed", min=0, help="Random seed.")]
ThreadsOption = Annotated[
    int | None, typer.Option("--threads", min=1, help="CPU threads of torch (per process).")
]


def load_configs(
    config: Path | None,
    *,
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
) -> tuple[ModelConfig, TrainConfig]:
    """The run config YAML (optional) with command-line values laid over it.

    ``None`` in ``model`` or ``train`` means "not given on the command line" and keeps the
    YAML's (or the default) value; every other value, ``0`` and ``False`` included, wins.

    Args:
        config: A YAML file with ``model:`` and/or ``train:`` sections, or ``None``.
        model: ``ModelConfig`` fields from the command line.
        train: ``TrainConfig`` fields from the command line.

    Returns:
        The validated model and training settings.

    Raises:
        MedfleetError: The YAML cannot be read or has an unknown section.
        pydantic.ValidationError: A value is invalid.

    Example:
        >>> m, t = load_configs(None, model={"image_size": 32, "weights": None}, train={"seed": 0})
        >>> m.image_size, t.seed
        (32, 0)
    """
    from medfleet.models import ModelConfig
    from medfleet.train.config import TrainConfig, load_run_config

    model_section: dict[str, Any] = {}
    train_config = TrainConfig()
    if config is not None:
        model_section, train_config = load_run_config(config)
    given_train = {k: v for k, v in (train or {}).items() if v is not None}
    train_config = TrainConfig.model_validate({**train_config.model_dump(), **given_train})
    given_model = {k: v for k, v in (model or {}).items() if v is not None}
    model_config = ModelConfig.model_validate({**model_section, **given_model})
    return model_config, train_config


def check_length_options(epochs: int | None, steps: int | None) -> None:
    """Refuse ``--epochs`` with ``--steps``: the run has one length, in epochs or in steps.

    ``--steps N`` runs exactly N optimiser steps (the epochs follow from it), so an
    ``--epochs`` beside it would be silently ignored.
    """
    if epochs is not None and steps is not None:
        fail(
            f"--epochs {epochs} and --steps {steps} both set the length of the run (fix: give "
            "--steps N for exactly N optimiser steps, or --epochs N for N passes over the data)",
            code=2,
        )


def check_device(device: str | None) -> None:
    """Refuse a ``--device`` that names no device (exit 2), before any model is loaded.

    Example:
        >>> check_device("cuda:1"), check_device(None)
        (None, None)
        >>> try:
        ...     check_device("gpu")
        ... except typer.Exit as exc:
        ...     exc.exit_code
        2
    """
    if device is None or device in ("auto", "cpu", "cuda"):
        return
    if device.startswith("cuda:") and device[5:].isdigit():
        return
    fail(f"--device {device!r}: give auto, cpu, cuda or cuda:N (e.g. cuda:0)", code=2)


def settings_error(exc: Exception) -> str:
    """One line naming each invalid setting of a pydantic ``ValidationError``."""
    from pydantic import ValidationError

    from medfleet.train.config import describe_settings_error

    if isinstance(exc, ValidationError):
        return describe_settings_error(exc)
    return " ".join(str(exc).split())


def split_names(text: str | None, option: str) -> list[str] | None:
    """Comma-separated names of ``option``; ``None`` when the option was not given.

    Example:
        >>> split_names("a, b,", "--tasks"), split_names(None, "--tasks")
        (['a', 'b'], None)
    """
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        fail(f"{option} is empty; give comma-separated names", code=2)
    return items


def parse_blocks(text: str | None) -> list[int] | None:
    """Block indices of ``--blocks`` (negative counts from the end); ``None`` for all blocks.

    Example:
        >>> parse_blocks("-2,-1"), parse_blocks(None)
        ([-2, -1], None)
    """
    if text is None or not text.strip():
        return None
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        fail(f"--blocks {text!r}: give comma-separated block indices, e.g. -2,-1", code=2)
