"""Regression head: one value per image in the task's unit.

The network predicts a normalised value; ``set_target_stats(mean, std)``
(stored with the model) maps it to the unit, and the loss compares
normalised values so its scale does not depend on the unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medfleet.models.backbones import FeatureLayout
from medfleet.models.config import HeadConfig
from medfleet.models.heads.classification import PooledHead
from medfleet.models.heads.losses import regression_loss
from medfleet.tasks import TaskSpec


class RegressionHead(PooledHead):
    """``{"value": (B,)}`` in the task's unit."""

    def __init__(self, spec: TaskSpec, layout: FeatureLayout, options: HeadConfig) -> None:
        super().__init__(spec, layout, options, 1)
        self.register_buffer("target_mean", torch.zeros(()), persistent=True)
        self.register_buffer("target_std", torch.ones(()), persistent=True)

    def set_target_stats(self, mean: float, std: float) -> None:
        """Mean and standard deviation of the training targets (in the task's unit)."""
        mean, std = float(mean), float(std)
        if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
            raise self.error(
                f"target stats need a finite mean and a positive std, got {mean}, {std}"
            )
        self.target_mean.fill_(mean)
        self.target_std.fill_(std)

    def predict(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """Value in the task's unit."""
        # float32: half precision would round values such as 180 mm to whole units
        z = self.output(self.dropout(embedding)).squeeze(-1).float()
        return {"value": z * self.target_std + self.target_mean}

    def loss(
        self, out: dict[str, torch.Tensor], targets: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L1 / MSE / smooth-L1 on ``(value - mean) / std``."""
        value = self.require_key(out, "value").float()
        target = torch.as_tensor(targets, device=value.device, dtype=value.dtype).reshape(-1)
        if target.shape[0] != value.shape[0]:
            raise self.error(f"{target.shape[0]} targets for {value.shape[0]} images")
        if not bool(torch.isfinite(target).all()):
            raise self.error("targets contain NaN or infinite values", "drop those rows")
        pred_z = (value - self.target_mean) / self.target_std
        target_z = (target - self.target_mean) / self.target_std
        return regression_loss(pred_z, target_z, self.options.regression_loss)

    def decode(self, out: dict[str, torch.Tensor]) -> list[float]:
        """Per sample: the value as a float."""
        return [float(v) for v in self.require_key(out, "value").detach().float().cpu().numpy()]
