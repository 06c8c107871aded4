"""Common base of the task heads."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medfleet.errors import MedfleetError
from medfleet.models.backbones import BackboneFeatures, FeatureLayout
from medfleet.models.config import HeadConfig
from medfleet.tasks import TaskSpec


class TaskOutput(dict):
    """A head's outputs: a ``dict[str, Tensor]`` that also carries ``meta``.

    ``meta`` holds geometry the loss and decoding need (input size, patch
    grid, stride) and the task name; it is not part of the tensors.

    Example:
        >>> out = TaskOutput({"value": torch.zeros(2)}, meta={"task": "hc"})
        >>> sorted(out), out.meta["task"]
        (['value'], 'hc')
    """

    def __init__(self, *args: Any, meta: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meta: dict[str, Any] = dict(meta or {})


class TaskHead(nn.Module):
    """A head for one task: forward, loss and decoding to numpy.

    Args:
        spec: The task's specification.
        layout: Channels and strides of the backbone's maps, width of its pooled vector.
        options: Head and loss options.
    """

    def __init__(self, spec: TaskSpec, layout: FeatureLayout, options: HeadConfig) -> None:
        super().__init__()
        self.spec = spec
        self.options = options
        self.layout = layout
        self.embed_dim = layout.global_dim
        self.num_maps = layout.num_maps

    @property
    def task(self) -> str:
        """The task's name."""
        return self.spec.name

    def forward(self, features: BackboneFeatures) -> dict[str, torch.Tensor]:
        """Map backbone features to the task's outputs."""
        raise NotImplementedError

    def loss(
        self, out: dict[str, torch.Tensor], targets: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss and its components."""
        raise NotImplementedError

    def decode(self, out: dict[str, torch.Tensor]) -> list[Any]:
        """Per-sample predictions as numpy / Python values."""
        raise NotImplementedError

    def error(self, message: str, fix: str | None = None) -> MedfleetError:
        """A :class:`MedfleetError` naming the task."""
        text = f"task {self.task!r} ({self.spec.type.value}): {message}"
        if fix:
            text += f" (fix: {fix})"
        return MedfleetError(text)

    def require_key(self, out: dict[str, torch.Tensor], key: str) -> torch.Tensor:
        """``out[key]`` or an error saying which output is missing."""
        if key not in out:
            raise self.error(
                f"model output lacks {key!r} (has {sorted(out)})",
                "pass the output of model(images, task) for this same task",
            )
        return out[key]
