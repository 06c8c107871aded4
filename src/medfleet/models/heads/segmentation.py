"""Segmentation head: a multi-scale decoder to full resolution.

The backbone's maps are decoded to one fine map (:func:`~medfleet.models.decoders.
build_neck`: a ViT's blocks fused at ``patch/4``, a CNN's stages through a U-Net
decoder with skip connections to the finest stage), upsampled to the input size
and refined with a shallow full-resolution branch on the image itself.
Channel ``k`` of the logits is the ``k``-th label value of the task in
sorted order (0, the background, first).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medfleet.models.backbones import BackboneFeatures, FeatureLayout
from medfleet.models.config import HeadConfig
from medfleet.models.decoders import build_neck
from medfleet.models.features import resize_to_stride
from medfleet.models.heads.base import TaskHead
from medfleet.models.heads.losses import IGNORE_INDEX, segmentation_loss
from medfleet.tasks import TaskSpec


class SegmentationHead(TaskHead):
    """Per-pixel logits ``(B, K, H, W)`` over the task's sorted label values."""

    def __init__(
        self,
        spec: TaskSpec,
        layout: FeatureLayout,
        options: HeadConfig,
        in_channels: int,
    ) -> None:
        super().__init__(spec, layout, options)
        self.label_values = sorted(int(v) for v in (spec.labels or {0: "background"}))
        self.num_classes = len(self.label_values)
        dim = options.decoder_dim
        coarse, fine, skip = min(dim, 32), 16, 8
        self.neck = build_neck(layout, dim)
        self.reduce = nn.Sequential(nn.Conv2d(self.neck.out_dim, coarse, 3, padding=1), nn.GELU())
        self.skip = nn.Sequential(nn.Conv2d(in_channels, skip, 3, padding=1), nn.GELU())
        self.refine = nn.Sequential(nn.Conv2d(coarse + skip, fine, 3, padding=1), nn.GELU())
        self.classifier = nn.Conv2d(fine, self.num_classes, 1)
        self.register_buffer("class_weights", torch.ones(self.num_classes), persistent=True)

    def set_class_weights(self, weights: torch.Tensor | np.ndarray | list[float]) -> None:
        """Weights of the cross-entropy term per class index (``K`` values)."""
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if w.shape != (self.num_classes,):
            raise self.error(f"class weights need {self.num_classes} values, got {tuple(w.shape)}")
        self.class_weights.copy_(w)

    def forward(self, features: BackboneFeatures) -> dict[str, torch.Tensor]:
        """Logits at the input resolution."""
        fused = self.neck(features.maps)
        fine = self.reduce(fused)
        full = resize_to_stride(fine, self.neck.out_stride, 1.0, features.image_size)
        skip = self.skip(features.images)
        logits = self.classifier(self.refine(torch.cat([full, skip], dim=1)))
        return {"logits": logits}

    def encode_mask(self, mask: np.ndarray, ignore_value: int | None = None) -> np.ndarray:
        """Map label values to class indices (``ignore_value`` pixels -> -1).

        Raises:
            MedfleetError: Naming the label values that the task does not declare.
        """
        arr = np.asarray(mask)
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.isfinite(arr)) or not np.all(np.equal(np.round(arr), arr)):
                raise self.error(
                    "mask has non-integer values",
                    "masks must hold the integer label values of the task",
                )
            arr = arr.astype(np.int64)
        values = np.asarray(self.label_values, dtype=np.int64)
        lut_size = max(int(values.max()), int(arr.max(initial=0))) + 1
        lut = np.full(lut_size, -2, dtype=np.int64)
        lut[values] = np.arange(len(values))
        arr = arr.astype(np.int64)
        ignore = np.zeros(arr.shape, dtype=bool) if ignore_value is None else arr == ignore_value
        negative = (arr < 0) & ~ignore
        if negative.any():
            raise self.error(
                f"mask has negative label value(s) {sorted(np.unique(arr[negative]).tolist())}",
                "use the label values declared in the manifest",
            )
        out = lut[np.where(ignore | (arr < 0), 0, arr)]
        out[ignore] = IGNORE_INDEX
        bad = out == -2
        if bad.any():
            unknown = sorted(np.unique(arr[bad]).tolist())
            raise self.error(
                f"mask has label value(s) {unknown} outside the task's labels {self.label_values}",
                "add them to 'labels' in the manifest or correct the masks",
            )
        return out

    def check_target(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Validate a target index tensor against the logits."""
        if not isinstance(target, torch.Tensor):
            target = torch.as_tensor(np.asarray(target))
        target = target.to(device=logits.device, dtype=torch.long)
        expected = (logits.shape[0], *logits.shape[2:])
        if tuple(target.shape) != expected:
            raise self.error(
                f"target shape {tuple(target.shape)} does not match the prediction {expected}",
                "give one index mask per image, of the image's size",
            )
        low, high = int(target.min()), int(target.max())
        if low < IGNORE_INDEX or high >= self.num_classes:
            raise self.error(
                f"target indices span {low}..{high} but the head has {self.num_classes} classes "
                f"(label values {self.label_values})",
                "map label values to indices with model.encode_mask(task, mask)",
            )
        return target

    def loss(
        self, out: dict[str, torch.Tensor], targets: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Dice + cross-entropy (``-1`` = unlabelled)."""
        logits = self.require_key(out, "logits").float()
        target = self.check_target(logits, targets)
        return segmentation_loss(
            logits,
            target,
            class_weights=self.class_weights,
            dice_weight=self.options.dice_weight,
            ce_weight=self.options.ce_weight,
        )

    def decode(self, out: dict[str, torch.Tensor]) -> list[dict[str, np.ndarray]]:
        """Per sample: ``mask`` (label values) and ``probs`` ``(K, ...)``."""
        logits = self.require_key(out, "logits").detach().float()
        probs = logits.softmax(dim=1)
        index = probs.argmax(dim=1).cpu().numpy()
        values = np.asarray(self.label_values)
        dtype = np.uint8 if values.max() < 256 else np.int32
        probs_np = probs.cpu().numpy().astype(np.float32)
        return [
            {"mask": values[index[i]].astype(dtype), "probs": probs_np[i]}
            for i in range(index.shape[0])
        ]
