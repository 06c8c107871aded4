"""Volumes (CT/MR stacks, cine MR) through the 2D backbone, slice by slice.

A volume batch is ``(B, S, C, H, W)``: ``S`` slices (or frames) of ``C``
channels. All ``B*S`` slices go through the backbone as one batch; then

* classification / regression: the per-slice embeddings are pooled across
  slices with learned attention (``softmax`` over slices of a small scoring
  MLP) and the head's output layer predicts from the pooled embedding;
* segmentation: the 2D head runs per slice and the logits are reassembled to
  ``(B, K, S, H, W)``; decoding gives a ``(S, H, W)`` label volume in the
  input's slice order, so the volume's spacing and affine apply unchanged.

The attention weights of the last forward are in ``out.meta["slice_weights"]``.
"""

from __future__ import annotations

import torch
from torch import nn

from medfleet.errors import MedfleetError
from medfleet.models.backbones import BackboneFeatures
from medfleet.models.config import HeadConfig
from medfleet.models.heads import PooledHead, SegmentationHead, TaskHead, TaskOutput


def flatten_volumes(volumes: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``(B, S, C, H, W)`` -> ``(B*S, C, H, W)``, ``B``, ``S``.

    Example:
        >>> x, b, s = flatten_volumes(torch.zeros(2, 3, 1, 8, 8))
        >>> tuple(x.shape), b, s
        ((6, 1, 8, 8), 2, 3)
    """
    if volumes.ndim != 5:
        raise MedfleetError(
            f"a volume batch must be (batch, slices, channels, height, width); got shape "
            f"{tuple(volumes.shape)}"
        )
    b, s = volumes.shape[:2]
    return volumes.reshape(b * s, *volumes.shape[2:]), int(b), int(s)


class SliceAttentionPool(nn.Module):
    """Attention pooling of ``(B, S, D)`` slice embeddings to ``(B, D)``.

    Example:
        >>> pool = SliceAttentionPool(4, 8)
        >>> pooled, weights = pool(torch.ones(2, 3, 4))
        >>> tuple(pooled.shape), round(float(weights[0].sum().detach()), 5)
        ((2, 4), 1.0)
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled embeddings and the attention weights ``(B, S)``."""
        weights = self.score(x).squeeze(-1).softmax(dim=-1)
        return (weights.unsqueeze(-1) * x).sum(dim=1), weights


class VolumeHead(nn.Module):
    """Wrap a 2D head so it predicts per volume (pooled) or per voxel (segmentation).

    Args:
        head: The task's 2D head (segmentation, classification or regression).
        options: Head options (``volume_pool_dim``).
    """

    def __init__(self, head: TaskHead, options: HeadConfig) -> None:
        super().__init__()
        if not isinstance(head, (PooledHead, SegmentationHead)):
            raise MedfleetError(
                f"task {head.task!r}: 3D {head.spec.type.value} is not supported "
                "(fix: use dim: 2 for detection/landmarks tasks, e.g. one row per slice)"
            )
        self.inner = head
        self.pool = (
            SliceAttentionPool(head.embedding_dim, options.volume_pool_dim)
            if isinstance(head, PooledHead)
            else None
        )

    def forward(self, features: BackboneFeatures, batch: int, slices: int) -> TaskOutput:
        """Outputs per volume from the features of ``batch * slices`` slices."""
        if isinstance(self.inner, PooledHead):
            assert self.pool is not None
            emb = self.inner.embed(features).reshape(batch, slices, -1)
            pooled, weights = self.pool(emb)
            out = TaskOutput(self.inner.predict(pooled))
            out.meta["slice_weights"] = weights.detach()
            return out
        logits = self.inner(features)["logits"]
        k, h, w = logits.shape[1:]
        logits = logits.reshape(batch, slices, k, h, w).permute(0, 2, 1, 3, 4)
        return TaskOutput(logits=logits)
