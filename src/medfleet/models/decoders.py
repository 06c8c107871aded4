"""Dense decoders: from a backbone's feature maps to one fine map for the dense heads.

* A ViT's block outputs all sit on the patch grid: :class:`~medfleet.models.features.
  MultiScaleNeck` reassembles them at four scales and fuses them at ``patch / 4``.
* A convolutional encoder's stages form a pyramid: :class:`UNetDecoder` upsamples the
  coarsest map step by step, concatenating each finer stage (skip connections) and
  refining with MONAI's ``TwoConv`` block, up to the finest stage's stride (1 for the
  ``conv`` encoders: full resolution; 4 for ConvNeXt, whose segmentation head then adds a
  full-resolution branch on the image).

:func:`build_neck` picks one from a :class:`~medfleet.models.backbones.FeatureLayout`;
both expose ``out_dim`` and ``out_stride``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from medfleet.models.backbones import FeatureLayout
from medfleet.models.features import MultiScaleNeck


class UNetDecoder(nn.Module):
    """Top-down U-Net decoder with skip connections over a feature pyramid.

    Args:
        channels: Channels of each map, fine to coarse.
        strides: Stride of each map, fine to coarse (strictly increasing).
        max_width: Cap on the channels of the decoder blocks (``None``: the skip's width).

    Example:
        >>> dec = UNetDecoder((8, 16, 32), (1, 2, 4))
        >>> maps = [torch.zeros(1, c, 16 // s, 16 // s) for c, s in ((8, 1), (16, 2), (32, 4))]
        >>> tuple(dec(maps).shape), dec.out_stride
        ((1, 8, 16, 16), 1.0)
    """

    def __init__(
        self, channels: Sequence[int], strides: Sequence[int], max_width: int | None = None
    ) -> None:
        super().__init__()
        from monai.networks.nets.basic_unet import TwoConv

        if len(channels) != len(strides) or len(channels) < 2:
            raise ValueError("a U-Net decoder needs two or more maps with one stride each")
        if any(b <= a for a, b in pairwise(strides)):
            raise ValueError(f"map strides {list(strides)} must increase from fine to coarse")
        self.strides = [int(s) for s in strides]
        widths = [c if max_width is None else min(c, max_width) for c in channels]
        blocks = []
        below = int(channels[-1])
        for level in range(len(channels) - 2, -1, -1):
            blocks.append(
                TwoConv(
                    2,
                    below + int(channels[level]),
                    widths[level],
                    ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
                    ("instance", {"affine": True}),
                    True,
                )
            )
            below = widths[level]
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = widths[0]

    @property
    def out_stride(self) -> float:
        """Pixels per cell of the output (the finest map's stride)."""
        return float(self.strides[0])

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Decode ``maps`` (fine to coarse) to one map at the finest stride."""
        if len(maps) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} feature maps, got {len(maps)}")
        x = maps[-1]
        for skip, block in zip(reversed(maps[:-1]), self.blocks, strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


def build_neck(layout: FeatureLayout, out_dim: int) -> MultiScaleNeck | UNetDecoder:
    """The decoder of a backbone's maps: reassembly for a ViT, a U-Net for a pyramid.

    ``out_dim`` sets the ViT neck's width; a U-Net decoder ends at its finest stage's
    width (see ``out_dim`` of the result).

    Example:
        >>> build_neck(FeatureLayout((16,) * 4, (8,) * 4, 16), 32).out_stride
        2.0
        >>> build_neck(FeatureLayout((8, 16), (1, 2), 16), 32).out_dim
        8
    """
    if layout.single_scale:
        return MultiScaleNeck(layout.channels[0], layout.num_maps, out_dim, layout.strides[0])
    return UNetDecoder(layout.channels, layout.strides)
