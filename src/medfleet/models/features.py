"""Multi-scale features from a plain ViT for the dense heads.

A ViT keeps one resolution (the patch grid). Following DPT and ViTDet, the
outputs of up to four blocks (shallow to deep) are reassembled at relative
scales ``4, 2, 1, 1/2`` of the patch grid and fused top-down into one map at
``patch_size / 4`` pixels (for 1 to 3 blocks: the largest scale used).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALES: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
"""Relative scales of reassembled maps for four blocks, shallow to deep."""


def scales_for(count: int) -> list[float]:
    """Relative scales for ``count`` feature maps (shallow to deep).

    Example:
        >>> scales_for(4), scales_for(2)
        ([4.0, 2.0, 1.0, 0.5], [4.0, 2.0])
    """
    if not 1 <= count <= len(SCALES):
        raise ValueError(f"between 1 and {len(SCALES)} feature maps are supported, got {count}")
    return list(SCALES[:count])


def _resample(scale: float, channels: int) -> nn.Module:
    if scale == 1.0:
        return nn.Identity()
    if scale > 1.0:
        k = int(scale)
        return nn.ConvTranspose2d(channels, channels, kernel_size=k, stride=k)
    return nn.Conv2d(channels, channels, kernel_size=3, stride=round(1 / scale), padding=1)


class MultiScaleNeck(nn.Module):
    """Reassemble block outputs at several scales and fuse them top-down.

    Args:
        embed_dim: Token width ``D`` of the backbone.
        num_maps: Number of feature maps (1 to 4).
        out_dim: Channels of the fused map.
        patch_size: Patch side of the backbone (sets :attr:`out_stride`).

    Example:
        >>> neck = MultiScaleNeck(16, 4, 8)
        >>> maps = [torch.zeros(1, 16, 4, 4) for _ in range(4)]
        >>> tuple(neck(maps).shape), neck.max_scale
        ((1, 8, 16, 16), 4.0)
    """

    def __init__(self, embed_dim: int, num_maps: int, out_dim: int, patch_size: int = 1) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.patch_size = patch_size
        self.scales = scales_for(num_maps)
        self.project = nn.ModuleList(nn.Conv2d(embed_dim, out_dim, 1) for _ in self.scales)
        self.resample = nn.ModuleList(_resample(s, out_dim) for s in self.scales)
        self.fuse = nn.ModuleList(
            nn.Sequential(nn.Conv2d(out_dim, out_dim, 3, padding=1), nn.GELU()) for _ in self.scales
        )

    @property
    def max_scale(self) -> float:
        """Upsampling of the fused map relative to the patch grid."""
        return max(self.scales)

    @property
    def out_stride(self) -> float:
        """Pixels per cell of the fused map (``patch_size / max_scale``)."""
        return self.patch_size / self.max_scale

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Fuse ``maps`` (shallow to deep, each ``(N, D, h, w)``) into one finer map."""
        if len(maps) != len(self.scales):
            raise ValueError(f"expected {len(self.scales)} feature maps, got {len(maps)}")
        levels = [
            res(proj(m)) for m, proj, res in zip(maps, self.project, self.resample, strict=True)
        ]
        fused = self.fuse[-1](levels[-1])
        for level, fuse in zip(reversed(levels[:-1]), reversed(self.fuse[:-1]), strict=True):
            up = F.interpolate(fused, size=level.shape[-2:], mode="bilinear", align_corners=False)
            fused = fuse(up + level)
        return fused


def resize_to_stride(
    fmap: torch.Tensor, map_stride: float, stride: float, size: tuple[int, int]
) -> torch.Tensor:
    """Resample a map from ``map_stride`` to ``stride`` pixels per cell, cropped/padded to ``size``.

    Cell ``u`` of a map at stride ``s`` covers pixels ``[s*u, s*(u+1))``; the
    resampling keeps that geometry exactly (bilinear, ``align_corners=False``).

    Example:
        >>> x = torch.zeros(1, 2, 8, 8)
        >>> tuple(resize_to_stride(x, 2.0, 4.0, (4, 4)).shape)
        (1, 2, 4, 4)
    """
    factor = map_stride / stride
    if factor != 1.0:
        fmap = F.interpolate(
            fmap,
            scale_factor=factor,
            mode="bilinear",
            align_corners=False,
            recompute_scale_factor=False,
        )
    h, w = fmap.shape[-2:]
    th, tw = size
    if h < th or w < tw:
        fmap = F.pad(fmap, (0, max(0, tw - w), 0, max(0, th - h)), mode="replicate")
    return fmap[..., :th, :tw]
