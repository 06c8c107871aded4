"""Convolutional backbones: a U-Net encoder of MONAI blocks and the DINOv3 ConvNeXt family.

Both return one feature map per stage, fine to coarse, for the U-Net decoder of the dense
heads (:class:`~medfleet.models.decoders.UNetDecoder`), and a pooled vector for the
classification and regression heads.

* ``conv`` (``unet-tiny``, ``unet-small``, ``unet-base``): the encoder half of MONAI's
  ``BasicUNet`` (``TwoConv`` then ``Down`` blocks: two 3x3 convolutions with instance
  normalisation and LeakyReLU per stage, max-pooling between stages), so stage ``i`` has
  stride ``2**i``. It is built for training from scratch on a few hundred images. Pooled
  vector: global max pooling of the last stage (the mean of ``tokens`` gives the average).
* ``dinov3-convnext`` (``convnext-compact``, ``dinov3-convnext-tiny|small|base``):
  transformers' ``DINOv3ConvNextModel``, strides 4, 8, 16, 32. Local DINOv3 ConvNeXt
  weights load through ``ModelConfig.weights`` (a transformers directory or one file).
  Pooled vector: the model's own final LayerNorm over the mean and the tokens of the last
  stage, as its ``pooler_output``.

Mixture-of-Experts on a CNN: after each chosen stage, a residual pointwise MLP
(:class:`StageMLP`, zero-initialised so the network starts as without it) whose MLP
becomes task-routed experts, one token per pixel. LoRA adapts the stages' convolutions
(``conv``: every 3x3 convolution) or pointwise layers (ConvNeXt) through PEFT.

Example:
    >>> from medfleet.models.backbones import build_backbone
    >>> bb = build_backbone("convnext-compact", in_channels=1)
    >>> feats = bb(torch.zeros(1, 1, 64, 64))
    >>> [m.shape[-1] for m in feats.maps], bb.layout.strides
    ([16, 8, 4, 2], (4, 8, 16, 32))
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medfleet.errors import MedfleetError
from medfleet.models.backbones import (
    Backbone,
    BackboneFeatures,
    BackboneSpec,
    FeatureLayout,
    normalise_block_indices,
    pad_to_multiple,
)


class ConvEncoderConfig:
    """Configuration of :class:`ConvEncoderModel` (serialisable like a transformers config).

    Args:
        features: Channels of each stage (stage ``i`` has stride ``2**i``).
        num_channels: Input channels.
        norm: MONAI normalisation name (``instance``, ``batch``, ``group``).
        act: MONAI activation name.
        dropout: Dropout inside the blocks.

    Example:
        >>> ConvEncoderConfig.from_dict(ConvEncoderConfig([8, 16]).to_dict()).features
        [8, 16]
    """

    model_type = "medfleet-conv-encoder"

    def __init__(
        self,
        features: Sequence[int] = (32, 32, 64, 128, 256),
        num_channels: int = 1,
        norm: str = "instance",
        act: str = "leakyrelu",
        dropout: float = 0.0,
        **_ignored: Any,
    ) -> None:
        self.features = [int(f) for f in features]
        self.num_channels = int(num_channels)
        self.norm = str(norm)
        self.act = str(act)
        self.dropout = float(dropout)
        if len(self.features) < 2 or min(self.features) < 1:
            raise MedfleetError(
                f"conv encoder features {self.features}: give at least two positive widths"
            )

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data."""
        return {
            "model_type": self.model_type,
            "features": list(self.features),
            "num_channels": self.num_channels,
            "norm": self.norm,
            "act": self.act,
            "dropout": self.dropout,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvEncoderConfig:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**{k: v for k, v in data.items() if k != "model_type"})


def _norm(name: str) -> Any:
    return (name, {"affine": True}) if name == "instance" else name


def _act(name: str) -> Any:
    # BasicUNet's activation: LeakyReLU with slope 0.1
    return ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}) if name == "leakyrelu" else name


class ConvEncoderModel(nn.Module):
    """The encoder of MONAI's ``BasicUNet``: ``TwoConv``, then ``Down`` blocks.

    Example:
        >>> m = ConvEncoderModel(ConvEncoderConfig([4, 8], num_channels=1))
        >>> [n for n, _ in m.stages.named_children()]
        ['0', '1']
    """

    config_class = ConvEncoderConfig

    def __init__(self, config: ConvEncoderConfig) -> None:
        super().__init__()
        from monai.networks.nets.basic_unet import Down, TwoConv

        self.config = config
        f, norm, act = config.features, _norm(config.norm), _act(config.act)
        first = TwoConv(2, config.num_channels, f[0], act, norm, True, config.dropout)
        downs = [Down(2, f[i - 1], f[i], act, norm, True, config.dropout) for i in range(1, len(f))]
        self.stages = nn.ModuleList([first, *downs])


class StageMLP(nn.Module):
    """A residual pointwise MLP on a feature map; its ``mlp`` can become routed experts.

    ``x + mlp(LayerNorm(x))`` per pixel; the last layer starts at zero, so the block
    starts as the identity.

    Example:
        >>> block = StageMLP(8)
        >>> x = torch.randn(2, 8, 4, 4)
        >>> bool(torch.equal(block(x), x))
        True
    """

    def __init__(self, channels: int, ratio: int = 2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(channels, ratio * channels),
                act=nn.GELU(),
                fc2=nn.Linear(ratio * channels, channels),
            )
        )
        nn.init.zeros_(self.mlp.fc2.weight)
        nn.init.zeros_(self.mlp.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> same shape."""
        tokens = x.permute(0, 2, 3, 1)
        return x + self.mlp(self.norm(tokens)).permute(0, 3, 1, 2)


class ConvBackbone(Backbone):
    """A convolutional encoder run stage by stage, returning one map per chosen stage.

    Inputs are zero-padded (bottom/right) to a multiple of the coarsest stride; the heads
    crop their outputs back to the input size.

    Args:
        spec: The registry entry.
        hf_model: A :class:`ConvEncoderModel` or a ``DINOv3ConvNextModel``.
        feature_blocks: Non-negative indices of the stages feeding the dense heads.
    """

    adapter_types = (nn.Linear, nn.Conv2d)

    def __init__(self, spec: BackboneSpec, hf_model: nn.Module, feature_blocks: list[int]) -> None:
        super().__init__(spec, hf_model, feature_blocks)
        self.convnext = spec.family == "dinov3-convnext"
        if self.convnext:
            self.block_prefix = "model.stages"
            self.stem_path = "model.stages.0.downsample_layers.0"
            self.default_adapter_targets = ("pointwise_conv1", "pointwise_conv2")
            self.widths = [int(c) for c in hf_model.config.hidden_sizes]
        else:
            self.block_prefix = "stages"
            self.stem_path = "stages.0.conv_0.conv"
            self.default_adapter_targets = ("conv",)
            self.widths = [int(c) for c in hf_model.config.features]
        self.strides = spec.stage_strides
        if len(self.strides) != len(self.widths):
            raise MedfleetError(
                f"backbone {spec.name!r}: the model has {len(self.widths)} stages but the "
                f"registry entry {len(self.strides)} (fix: register the model's configuration "
                "under its own name)"
            )
        self.moe_slots = nn.ModuleDict()

    @property
    def layout(self) -> FeatureLayout:
        """One map per feature stage, at its own stride and width."""
        return FeatureLayout(
            tuple(self.widths[i] for i in self.feature_blocks),
            tuple(self.strides[i] for i in self.feature_blocks),
            self.widths[-1],
        )

    @property
    def max_stride(self) -> int:
        """Stride of the coarsest stage."""
        return self.strides[-1]

    @property
    def min_input_size(self) -> int:
        """Smallest input side: instance normalisation needs more than one cell per map."""
        return 1 if self.convnext else self.max_stride + 1

    def block_modules(self, index: int) -> list[nn.Module]:
        """Stage ``index`` and the MoE block after it, when there is one."""
        key = str(index)
        extra = [self.moe_slots[key]] if key in self.moe_slots else []
        return [self.blocks[index], *extra]

    def attach_moe(self, router: Any, blocks: list[int]) -> None:
        """A :class:`StageMLP` with routed experts after each stage of ``blocks``."""
        for i in blocks:
            slot = StageMLP(self.widths[i])
            router.attach_one(i, slot, self.widths[i])
            self.moe_slots[str(i)] = slot

    def _pool(self, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = last.flatten(2).transpose(1, 2)
        if self.convnext:
            joined = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
            normed = self.hf.layer_norm(joined)
            return normed[:, 0], normed[:, 1:]
        return last.amax(dim=(2, 3)), tokens

    def forward(self, images: torch.Tensor) -> BackboneFeatures:
        """Encode ``(N, C, H, W)`` images."""
        images = self.adapt_channels(images)
        height, width = (int(v) for v in images.shape[-2:])
        if max(height, width) < self.min_input_size:
            raise MedfleetError(
                f"backbone {self.spec.name!r}: a {height} x {width} input leaves its coarsest "
                f"stage (stride {self.max_stride}) one cell, which instance normalisation "
                f"cannot normalise (fix: use inputs of at least {self.min_input_size} pixels, "
                "e.g. a larger image_size, or a backbone with fewer stages)"
            )
        x = pad_to_multiple(images, self.max_stride)
        wanted = set(self.feature_blocks)
        maps = []
        for index, stage in enumerate(self.blocks):
            x = stage(x)
            if str(index) in self.moe_slots:
                x = self.moe_slots[str(index)](x)
            if index in wanted:
                maps.append(x)
        cls, tokens = self._pool(x)
        return BackboneFeatures(
            maps=maps,
            cls=cls,
            tokens=tokens,
            grid=(int(x.shape[-2]), int(x.shape[-1])),
            patch_size=self.max_stride,
            image_size=(height, width),
            images=images,
            strides=[self.strides[i] for i in self.feature_blocks],
        )


def wrap_conv_backbone(
    spec: BackboneSpec, hf_model: nn.Module, feature_blocks: Sequence[int] | None
) -> ConvBackbone:
    """Wrap a convolutional model; by default every stage feeds the dense heads.

    Raises:
        MedfleetError: For stage indices outside the model.
    """
    stages = len(hf_model.get_submodule("model.stages" if spec.family != "conv" else "stages"))
    blocks = (
        list(range(stages))
        if feature_blocks is None
        else normalise_block_indices(feature_blocks, stages, "feature_blocks")
    )
    return ConvBackbone(spec, hf_model, blocks)
