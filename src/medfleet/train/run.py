"""Build, train and save one model; load a trained model back for prediction.

A run folder holds::

    checkpoints/last.safetensors   the training state (resume with resume=True)
    metrics.csv                    step, epoch, split, task, metric, value
    model.safetensors              the trained model (``UnifiedModel.save``)
    training.json                  tasks, configurations, parameters, steps, time, last validation

Models and checkpoints are medfleet tensor files: they open without running code
(:mod:`medfleet.utils.tensorfile`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medfleet.errors import MedfleetError, one_line
from medfleet.models.files import (
    CHECKPOINT_FILE,
    CHECKPOINT_KIND,
    MODEL_FILE,
    MODEL_KIND,
    find_file,
)
from medfleet.tasks import Manifest
from medfleet.train.config import TrainConfig
from medfleet.train.trainer import (
    CHECKPOINT_FORMAT,
    LogCallback,
    ProgressCallback,
    Trainer,
    TrainResult,
    manifest_fingerprint,
    seed_everything,
)
from medfleet.utils.atomic import require_folder_path, write_json_atomic
from medfleet.utils.tensorfile import read_tensor_file


def count_parameters(model: Any) -> int:
    """Total parameters of a model (``model.count_parameters()`` when it has one).

    Example:
        >>> count_parameters(torch.nn.Linear(3, 2))
        8
    """
    counter = getattr(model, "count_parameters", None)
    if callable(counter):
        value = counter()
        if isinstance(value, dict):
            value = value.get("total", sum(int(v) for v in value.values()))
        return int(value)
    return int(sum(p.numel() for p in model.parameters()))


@dataclass
class TrainedModel:
    """A trained model with its run's record.

    Attributes:
        model: The model (on the training device, in eval mode).
        result: What the trainer did.
        info: The content of ``training.json``.
    """

    model: Any
    result: TrainResult
    info: dict[str, Any]


def train_model(
    manifest: Manifest,
    model_config: Any,
    train_config: TrainConfig,
    out: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
    on_step: Callable[[Trainer], None] | None = None,
) -> TrainedModel:
    """Build a model for ``tasks``, train it and write ``model.pt`` and ``training.json``.

    Args:
        manifest: The manifest.
        model_config: A :class:`medfleet.models.ModelConfig`.
        train_config: Training settings.
        out: Run folder.
        tasks: Tasks of this model (default all).
        resume: Continue from ``out/checkpoints/last.pt`` when it exists.
        progress: Called as ``progress(step, total)``.
        log: Called with one line per epoch.
        on_step: Called after every optimiser step.

    Returns:
        The trained model and its record.
    """
    from medfleet.models import build_model

    out = require_folder_path(out, "run folder")  # before building anything
    names = list(tasks) if tasks is not None else [t.name for t in manifest.tasks]
    seed_everything(train_config.seed)
    model = build_model(manifest, model_config, tasks=names)
    trainer = Trainer(
        model,
        manifest,
        train_config,
        out,
        tasks=names,
        image_size=model_config.image_size,
        progress=progress,
        log=log,
        on_step=on_step,
    )
    try:
        result = trainer.fit(resume=resume)
        if trainer.final_module is not trainer.module:  # semi-supervised: keep the EMA teacher
            model.load_state_dict(trainer.final_module.state_dict())
        info = {
            "format": "medfleet.train.run/1",
            "manifest": {
                "name": manifest.name,
                "fingerprint": manifest_fingerprint(manifest, names),
            },
            "tasks": names,
            "model": MODEL_FILE,
            "checkpoint": CHECKPOINT_FILE,
            "image_size": model_config.image_size,
            "normalisation": train_config.normalisation,
            "model_config": model_config.model_dump(mode="json"),
            "train_config": train_config.model_dump(mode="json"),
            "parameters": count_parameters(model),
            "steps": result.steps,
            "total_steps": result.total_steps,
            "train_seconds": round(result.train_seconds, 3),
            "val_metrics": result.val_metrics,
            "world_size": trainer.dist.world_size,
        }
        if trainer.dist.is_main:
            extra = {"training": {k: info[k] for k in ("tasks", "image_size", "normalisation")}}
            model.save(out / MODEL_FILE, extra=extra)
            write_json_atomic(out / "training.json", info)
    finally:
        trainer.close()
    model.eval()
    return TrainedModel(model, result, info)


@dataclass
class LoadedModel:
    """A model ready for prediction.

    Attributes:
        model: The model in eval mode.
        tasks: Tasks it serves.
        image_size: Its input size.
        normalisation: The intensity normalisation it was trained with.
        source: The file it came from.
    """

    model: Any
    tasks: list[str]
    image_size: int
    normalisation: str
    source: Path


def load_trained(
    checkpoint: str | Path, manifest: Manifest | None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load a trained model (``UnifiedModel.save``) or a training checkpoint for prediction.

    ``checkpoint`` is the model file, a training checkpoint, or a run folder (its model
    file). The input size and normalisation come from the checkpoint (``zscore`` for a model
    saved outside a training run). The file is read once and without running code. Without
    a manifest (predicting a folder of images) only a model file will do: it carries its
    tasks' definitions, a training checkpoint does not.

    Raises:
        MedfleetError: Missing, unreadable, unsafe checkpoint, one trained on another
            manifest, or a training checkpoint without a manifest.
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = find_file(path, MODEL_FILE)
    state = read_tensor_file(
        path,
        (MODEL_KIND, CHECKPOINT_KIND),
        what="medfleet model or training checkpoint",
        fix="give the model file or checkpoints/last.safetensors of a training run, or its folder",
    )
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        if manifest is None:
            raise MedfleetError(
                f"{path} is a training checkpoint, which does not define its tasks; --images "
                f"needs a model file (fix: give the run's {MODEL_FILE}, or use --manifest)"
            )
        from medfleet.models import ModelConfig
        from medfleet.models.checkpoint import rebuild_model

        tasks = [str(t) for t in state.get("tasks") or [] if isinstance(t, str)]
        if not tasks:
            raise MedfleetError(
                f"cannot read {path}: a damaged training checkpoint (no tasks) "
                "(fix: give the run's model file instead)"
            )
        missing = [t for t in tasks if t not in {s.name for s in manifest.tasks}]
        saved = state.get("manifest", {})
        if missing or saved.get("fingerprint") != manifest_fingerprint(manifest, tasks):
            raise MedfleetError(
                f"checkpoint {path} was trained on manifest {saved.get('name')!r} with tasks "
                f"{tasks}; manifest {manifest.name!r} defines these tasks differently"
                + (f" or lacks {missing}" if missing else "")
                + " (fix: predict with the manifest the model was trained on)"
            )
        try:
            config = ModelConfig.model_validate(state["model_config"])
            model = rebuild_model(manifest, config, tasks, state.get("backbone_config"))
            semi = state.get("semi") or {}
            final = semi.get("teacher") if semi.get("final", "student") == "teacher" else None
            model.load_state_dict(final if final is not None else state["model"])
            normalisation = state["train_config"].get("normalisation", "zscore")
            image_size = int(state.get("image_size") or config.image_size)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise MedfleetError(
                f"cannot read {path}: a damaged training checkpoint ({one_line(exc)}) "
                "(fix: give the run's model file instead)"
            ) from None
    else:
        from medfleet.models import load_model

        model = load_model(path, manifest, payload=state)  # the file is read once
        tasks = list(model.tasks)
        training = dict(getattr(model, "checkpoint_extra", {}).get("training", {}))
        normalisation = str(training.get("normalisation", "zscore"))
        image_size = int(training.get("image_size") or model.config.image_size)
    model.to(device)
    model.eval()
    return LoadedModel(model, tasks, image_size, normalisation, path)
