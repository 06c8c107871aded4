"""Names of the files that hold models, training checkpoints and site states.

All three are medfleet tensor files (:mod:`medfleet.utils.tensorfile`): safetensors with a
JSON header, which open without running code. Run folders of earlier medfleet versions hold
``torch.save`` files under the old names (``model.pt``, ``checkpoints/last.pt``,
``state/local.pt``); they are still found and read without running code.
"""

from __future__ import annotations

from pathlib import Path

MODEL_FILE = "model.safetensors"
"""A trained model in its run folder (``UnifiedModel.save``)."""
CHECKPOINT_FILE = "checkpoints/last.safetensors"
"""The training state a run resumes from, relative to the run folder."""
SITE_STATE_FILE = "state/local.safetensors"
"""What a federated site keeps between rounds, relative to its state folder."""
LEGACY_NAMES = {
    MODEL_FILE: "model.pt",
    CHECKPOINT_FILE: "checkpoints/last.pt",
    SITE_STATE_FILE: "state/local.pt",
}
"""The name each file had before medfleet wrote tensor files."""

MODEL_KIND = "unified-model"
"""Kind of a model file."""
CHECKPOINT_KIND = "training-checkpoint"
"""Kind of a training checkpoint."""
SITE_STATE_KIND = "site-state"
"""Kind of a federated site's state."""


def find_file(folder: str | Path, name: str) -> Path:
    """``folder/name``, or the legacy file of that name when only it exists.

    Example:
        >>> find_file("runs/a", MODEL_FILE).as_posix()
        'runs/a/model.safetensors'
    """
    current = Path(folder) / name
    legacy = Path(folder) / LEGACY_NAMES.get(name, name)
    return legacy if not current.exists() and legacy.is_file() else current


def has_model(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved model (current or legacy name).

    Example:
        >>> has_model("/nonexistent")
        False
    """
    return find_file(folder, MODEL_FILE).is_file()
