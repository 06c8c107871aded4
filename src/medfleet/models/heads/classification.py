"""Classification head: class token + mean of the patch tokens, then a small MLP."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medfleet.models.backbones import BackboneFeatures, FeatureLayout
from medfleet.models.config import HeadConfig
from medfleet.models.heads.base import TaskHead
from medfleet.models.heads.losses import classification_loss
from medfleet.tasks import TaskSpec


class PooledHead(TaskHead):
    """Base of heads that predict from one pooled embedding per image.

    ``embed`` maps features to ``(N, hidden_dim)``; ``predict`` maps embeddings
    to outputs, so volumes can pool slice embeddings in between.
    """

    def __init__(
        self, spec: TaskSpec, layout: FeatureLayout, options: HeadConfig, outputs: int
    ) -> None:
        super().__init__(spec, layout, options)
        hidden = options.hidden_dim
        self.embedder = nn.Sequential(
            nn.LayerNorm(2 * self.embed_dim), nn.Linear(2 * self.embed_dim, hidden), nn.GELU()
        )
        self.dropout = nn.Dropout(options.dropout)
        self.output = nn.Linear(hidden, outputs)

    @property
    def embedding_dim(self) -> int:
        """Width of the pooled embedding."""
        return self.output.in_features

    def embed(self, features: BackboneFeatures) -> torch.Tensor:
        """Pooled embedding ``(N, hidden_dim)`` from class token and mean patch token."""
        pooled = torch.cat([features.cls, features.tokens.mean(dim=1)], dim=-1)
        return self.embedder(pooled)

    def predict(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs from pooled embeddings."""
        raise NotImplementedError

    def forward(self, features: BackboneFeatures) -> dict[str, torch.Tensor]:
        """Outputs from backbone features."""
        return self.predict(self.embed(features))


class ClassificationHead(PooledHead):
    """Logits ``(B, n_classes)`` in the order of the task's ``classes``."""

    def __init__(self, spec: TaskSpec, layout: FeatureLayout, options: HeadConfig) -> None:
        super().__init__(spec, layout, options, len(spec.classes or []))
        self.classes = list(spec.classes or [])
        self.register_buffer("class_weights", torch.ones(len(self.classes)), persistent=True)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def set_class_weights(self, weights: torch.Tensor | np.ndarray | list[float]) -> None:
        """Cross-entropy weight per class (in the order of ``classes``)."""
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if w.shape != (self.num_classes,):
            raise self.error(f"class weights need {self.num_classes} values, got {tuple(w.shape)}")
        self.class_weights.copy_(w)

    def predict(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class logits."""
        return {"logits": self.output(self.dropout(embedding))}

    def encode_label(self, label: str) -> int:
        """Index of a class name.

        Raises:
            MedfleetError: Naming the task's classes when ``label`` is not one of them.
        """
        try:
            return self.classes.index(str(label))
        except ValueError:
            raise self.error(
                f"label {label!r} is not one of the task's classes {self.classes}",
                "add it to 'classes' in the manifest or correct the table",
            ) from None

    def loss(
        self, out: dict[str, torch.Tensor], targets: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy with the head's class weights."""
        logits = self.require_key(out, "logits").float()
        target = torch.as_tensor(targets, device=logits.device).long().reshape(-1)
        if target.shape[0] != logits.shape[0]:
            raise self.error(f"{target.shape[0]} targets for {logits.shape[0]} images")
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
            raise self.error(
                f"target index {int(target.max()) if int(target.max()) >= 0 else int(target.min())}"
                f" outside 0..{self.num_classes - 1} (classes {self.classes})",
                "map class names to indices with model.encode_label(task, name)",
            )
        return classification_loss(logits, target, self.class_weights)

    def decode(self, out: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """Per sample: ``probs`` ``(n_classes,)`` and the most likely ``label`` name."""
        probs = self.require_key(out, "logits").detach().float().softmax(dim=-1).cpu().numpy()
        return [
            {"probs": p.astype(np.float32), "label": self.classes[int(p.argmax())]} for p in probs
        ]
