"""Saving and loading unified models (one file, written atomically, read without running code).

The file is a medfleet tensor file (:mod:`medfleet.utils.tensorfile`, kind ``unified-model``):
safetensors holding the weights, with everything else as JSON in its header. A
``torch.save`` file of an earlier medfleet is still read, with ``weights_only=True``.

A checkpoint holds the model configuration, the task specifications and
their fingerprints, the manifest name, the weights (including regression
target statistics, class weights and the accumulated expert usage) and any
``extra`` data (e.g. the trainer's state). It rebuilds without the manifest;
given a manifest, the tasks must match it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medfleet import __version__
from medfleet.errors import MedfleetError, one_line
from medfleet.models.config import ModelConfig
from medfleet.models.files import MODEL_KIND
from medfleet.models.unified import UnifiedModel, build_model
from medfleet.tasks import Manifest, Site, TaskSpec
from medfleet.utils.tensorfile import read_tensor_file, write_tensor_file

FORMAT = "medfleet-unified-model"
"""Value of the ``format`` field of a checkpoint."""
FORMAT_VERSION = 1
"""Version of the checkpoint layout."""


def checkpoint_payload(model: UnifiedModel, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dictionary :func:`save_model` writes."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "medfleet_version": __version__,
        "config": model.config.model_dump(mode="json"),
        "manifest_name": model.manifest_name,
        "tasks": [spec.model_dump(mode="json") for spec in model.specs.values()],
        "fingerprints": model.task_fingerprints(),
        "backbone_config": model.backbone.hf.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }


def save_model(model: UnifiedModel, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically and return its path.

    Args:
        model: The model.
        path: Destination file (``model.safetensors`` by convention).
        extra: Additional data: tensors, arrays, numbers, strings, lists, tuples and dicts.
    """
    return write_tensor_file(path, checkpoint_payload(model, extra), MODEL_KIND)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint file.

    No code in the file runs: see :mod:`medfleet.utils.tensorfile`.

    Raises:
        MedfleetError: When the file is missing, unreadable, unsafe or not a medfleet model.
    """
    path = Path(path)
    payload = read_tensor_file(
        path, (MODEL_KIND,), what="medfleet model", fix="give a model file written by medfleet"
    )
    return _checked(payload, path)


def _checked(payload: Any, path: Path) -> dict[str, Any]:
    """``payload`` if it is a model checkpoint this medfleet reads, else raise."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MedfleetError(
            f"cannot read {path}: not a medfleet model (fix: give a file written by model.save)"
        )
    missing = [k for k in ("config", "tasks", "state_dict") if not payload.get(k)]
    if missing or not isinstance(payload["state_dict"], dict):
        raise MedfleetError(
            f"cannot read {path}: a damaged medfleet model (no {', '.join(missing) or 'weights'})"
            " (fix: copy the file again or use the run's previous model)"
        )
    if not isinstance(payload.get("format_version", 0), int):
        raise MedfleetError(f"cannot read {path}: a damaged medfleet model (format_version)")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise MedfleetError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this medfleet "
            f"reads ({FORMAT_VERSION}) (fix: upgrade medfleet)"
        )
    return payload


def rebuild_model(
    manifest: Manifest,
    config: ModelConfig,
    tasks: list[str],
    backbone_config: dict[str, Any] | None,
) -> UnifiedModel:
    """The architecture of a saved model, ready for its weights (no pretrained weights read)."""
    rebuild = config.model_copy(update={"weights": None, "allow_download": False})
    model = build_model(manifest, rebuild, tasks=tasks, backbone_config=backbone_config)
    model.config = config
    return model


def load_model(
    path: str | Path,
    manifest: Manifest | None = None,
    map_location: str = "cpu",
    *,
    payload: dict[str, Any] | None = None,
) -> UnifiedModel:
    """Rebuild a model from a checkpoint (no pretrained weights are re-read).

    Args:
        path: Checkpoint written by ``model.save``.
        manifest: When given, every task of the model must be in it with the same
            type, dimensionality, channels, labels, classes, landmarks and unit.
        map_location: Device for the weights.
        payload: The file's contents when the caller has already read them (checked
            the same way; ``path`` then only names the file in messages).

    Raises:
        MedfleetError: Naming the mismatching task(s), or when the file is not a checkpoint.
    """
    path = Path(path)
    payload = read_checkpoint(path) if payload is None else _checked(payload, path)
    try:
        config = ModelConfig.model_validate(payload["config"])
        specs = [TaskSpec.model_validate(t) for t in payload["tasks"]]
    except (ValidationError, TypeError) as exc:
        raise MedfleetError(
            f"cannot read {path}: its model configuration is invalid for this medfleet "
            f"({one_line(exc)}) (fix: use the medfleet version that wrote it)"
        ) from None
    stored = Manifest(
        name=payload.get("manifest_name") or "checkpoint",
        sites=[Site(name="checkpoint")],
        tasks=specs,
    )
    model = rebuild_model(stored, config, [s.name for s in specs], payload.get("backbone_config"))
    if manifest is not None:
        try:
            model.check_manifest(manifest)
        except MedfleetError as exc:
            raise MedfleetError(f"{path}: {exc}") from None
    state = payload["state_dict"]
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise MedfleetError(
            f"{path}: checkpoint weights do not match the rebuilt model "
            f"(missing {missing[:8]}, unexpected {unexpected[:8]}); "
            "it was probably written by another medfleet version"
        )
    model.load_state_dict(state)
    model.apply_freeze_policy()
    model.checkpoint_extra = payload.get("extra", {})
    return model.to(map_location)
