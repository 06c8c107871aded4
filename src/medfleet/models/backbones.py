"""Backbones: a registry of named configurations and feature-extracting wrappers.

Every backbone is built from a configuration, so nothing is downloaded unless asked.
Two kinds share one interface (:class:`Backbone`):

* **ViTs** (``Dinov2Model``, ``DINOv3ViTModel`` of transformers, :class:`ViTBackbone`):
  run block by block, returning the outputs of chosen intermediate blocks, all on the
  patch grid; the dense heads reassemble them at several scales.
* **Convolutional encoders** (:mod:`medfleet.models.conv_backbones`): the DINOv3
  ConvNeXt family of transformers (``DINOv3ConvNextModel``) and a from-scratch U-Net
  encoder made of MONAI's blocks. They return one map per stage, from fine to coarse,
  which the dense heads decode with a U-Net decoder and skip connections.

A backbone describes its maps with a :class:`FeatureLayout` (channels and stride of
each map, width of the pooled vector), which is all the heads need to know.

Registered names:

=======================  ================  ===========================  ======  ==============
name                     family            widths (per stage)           stride  hub weights
=======================  ================  ===========================  ======  ==============
vit-tiny                 dinov2            64 x 4 blocks                8       none (tests)
vit-tiny-v3              dinov3            64 x 4 blocks                8       none (tests)
dinov2-vits14            dinov2            384 x 12 blocks              14      dinov2-small
dinov2-vitb14            dinov2            768 x 12 blocks              14      dinov2-base
dinov3-vits16            dinov3            384 x 12 blocks              16      dinov3-vits16
dinov3-vitb16            dinov3            768 x 12 blocks              16      dinov3-vitb16
dinov3-vitl16            dinov3            1024 x 24 blocks             16      dinov3-vitl16
unet-tiny                conv              8, 16, 32, 64                1-8     none (tests)
unet-small               conv              32, 32, 64, 128, 256         1-16    none
unet-base                conv              32, 64, 128, 256, 320, 320   1-32    none
convnext-compact         dinov3-convnext   32, 64, 128, 256             4-32    none
dinov3-convnext-tiny     dinov3-convnext   96, 192, 384, 768            4-32    convnext-tiny
dinov3-convnext-small    dinov3-convnext   96, 192, 384, 768            4-32    convnext-small
dinov3-convnext-base     dinov3-convnext   128, 256, 512, 1024          4-32    convnext-base
=======================  ================  ===========================  ======  ==============

Hub weights are used only with ``allow_download`` (the ``facebook/...`` ids of
:attr:`BackboneSpec.hub_id`); offline, ``weights`` names a local directory or file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from medfleet.errors import MedfleetError

Family = Literal["dinov2", "dinov3", "dinov3-convnext", "conv"]
VIT_FAMILIES: tuple[str, ...] = ("dinov2", "dinov3")
"""Families whose backbone is a plain ViT (one resolution: the patch grid)."""


@dataclass(frozen=True)
class BackboneSpec:
    """A named backbone configuration.

    Attributes:
        name: Registry name.
        family: ``dinov2`` (learned position embeddings), ``dinov3`` (RoPE, registers),
            ``dinov3-convnext`` (transformers' DINOv3 ConvNeXt) or ``conv`` (a U-Net
            encoder of MONAI blocks).
        config: Keyword arguments of the transformers configuration class.
        hub_id: Hugging Face hub id of the pretrained weights (used only with
            ``allow_download=True``).
        description: One line for listings.
        fixed_image_size: Image size baked into the position embeddings of the pretrained
            weights (DINOv2); ``None`` means use the model's ``image_size``.
    """

    name: str
    family: Family
    config: dict[str, Any]
    hub_id: str | None = None
    description: str = ""
    fixed_image_size: int | None = None

    @property
    def is_vit(self) -> bool:
        """Whether the backbone is a plain ViT."""
        return self.family in VIT_FAMILIES

    @property
    def stage_strides(self) -> list[int]:
        """Stride of each stage of a convolutional backbone (ConvNeXt's stem has stride 4).

        Example:
            >>> get_backbone_spec("convnext-compact").stage_strides
            [4, 8, 16, 32]
        """
        first = 4 if self.family == "dinov3-convnext" else 1
        return [first * 2**i for i in range(self.num_layers)]

    @property
    def patch_size(self) -> int:
        """Patch side in pixels (ViTs); the coarsest stage's stride (convolutional)."""
        if self.is_vit:
            return int(self.config["patch_size"])
        return self.stage_strides[-1]

    @property
    def hidden_size(self) -> int:
        """Token width (ViTs); the coarsest stage's channels (convolutional)."""
        if self.is_vit:
            return int(self.config["hidden_size"])
        return int((self.config.get("hidden_sizes") or self.config["features"])[-1])

    @property
    def num_layers(self) -> int:
        """Number of transformer blocks (ViTs) or stages (convolutional)."""
        if self.is_vit:
            return int(self.config["num_hidden_layers"])
        return len(self.config.get("hidden_sizes") or self.config["features"])


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec, overwrite: bool = False) -> BackboneSpec:
    """Add a backbone configuration to the registry.

    Args:
        spec: The configuration.
        overwrite: Replace an existing entry of the same name.

    Raises:
        MedfleetError: When the name is taken and ``overwrite`` is False.

    Example:
        >>> spec = BackboneSpec("vit-mini-doc", "dinov2", dict(hidden_size=32,
        ...     num_hidden_layers=2, num_attention_heads=2, patch_size=8, mlp_ratio=2))
        >>> register_backbone(spec, overwrite=True).patch_size
        8
    """
    if spec.name in _REGISTRY and not overwrite:
        raise MedfleetError(f"backbone {spec.name!r} is already registered (pass overwrite=True)")
    _REGISTRY[spec.name] = spec
    return spec


def backbone_names() -> list[str]:
    """Names of the registered backbones.

    Example:
        >>> "dinov3-vitb16" in backbone_names()
        True
    """
    return list(_REGISTRY)


def get_backbone_spec(name: str) -> BackboneSpec:
    """Look a backbone up by name.

    Raises:
        MedfleetError: Naming the registered backbones when ``name`` is unknown.

    Example:
        >>> get_backbone_spec("dinov2-vits14").hidden_size
        384
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MedfleetError(
            f"unknown backbone {name!r}; registered: {', '.join(backbone_names())} "
            "(fix: pick one of these or register_backbone() your own)"
        ) from None


def _dinov3(hidden: int, layers: int, heads: int, intermediate: int) -> dict[str, Any]:
    return dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        patch_size=16,
        num_register_tokens=4,
        layerscale_value=1.0,
        rope_theta=100.0,
        layer_norm_eps=1e-5,
        key_bias=False,
    )


def _dinov2(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        mlp_ratio=4,
        patch_size=14,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
    )


def _convnext(widths: list[int], depths: list[int]) -> dict[str, Any]:
    return dict(hidden_sizes=widths, depths=depths, layer_norm_eps=1e-6)


for _spec in (
    BackboneSpec(
        "vit-tiny",
        "dinov2",
        dict(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            mlp_ratio=4,
            patch_size=8,
            layerscale_value=1.0,
        ),
        description="tiny random ViT for tests and CPU demos",
    ),
    BackboneSpec(
        "vit-tiny-v3",
        "dinov3",
        dict(
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=256,
            patch_size=8,
            num_register_tokens=2,
        ),
        description="tiny random DINOv3-style ViT (RoPE, registers) for tests",
    ),
    BackboneSpec(
        "dinov2-vits14",
        "dinov2",
        _dinov2(384, 12, 6),
        "facebook/dinov2-small",
        "DINOv2 ViT-S/14",
        518,
    ),
    BackboneSpec(
        "dinov2-vitb14",
        "dinov2",
        _dinov2(768, 12, 12),
        "facebook/dinov2-base",
        "DINOv2 ViT-B/14",
        518,
    ),
    BackboneSpec(
        "dinov3-vits16",
        "dinov3",
        _dinov3(384, 12, 6, 1536),
        "facebook/dinov3-vits16-pretrain-lvd1689m",
        "DINOv3 ViT-S/16",
    ),
    BackboneSpec(
        "dinov3-vitb16",
        "dinov3",
        _dinov3(768, 12, 12, 3072),
        "facebook/dinov3-vitb16-pretrain-lvd1689m",
        "DINOv3 ViT-B/16",
    ),
    BackboneSpec(
        "dinov3-vitl16",
        "dinov3",
        _dinov3(1024, 24, 16, 4096),
        "facebook/dinov3-vitl16-pretrain-lvd1689m",
        "DINOv3 ViT-L/16",
    ),
    BackboneSpec(
        "unet-tiny",
        "conv",
        dict(features=[8, 16, 32, 64]),
        description="tiny random U-Net encoder (MONAI blocks) for tests",
    ),
    BackboneSpec(
        "unet-small",
        "conv",
        dict(features=[32, 32, 64, 128, 256]),
        description="U-Net encoder of MONAI's BasicUNet widths, from scratch (small data)",
    ),
    BackboneSpec(
        "unet-base",
        "conv",
        dict(features=[32, 64, 128, 256, 320, 320]),
        description="nnU-Net-like 2D encoder widths, from scratch",
    ),
    BackboneSpec(
        "convnext-compact",
        "dinov3-convnext",
        _convnext([32, 64, 128, 256], [2, 2, 2, 2]),
        description="compact ConvNeXt that trains on a CPU (random init)",
    ),
    BackboneSpec(
        "dinov3-convnext-tiny",
        "dinov3-convnext",
        _convnext([96, 192, 384, 768], [3, 3, 9, 3]),
        "facebook/dinov3-convnext-tiny-pretrain-lvd1689m",
        "DINOv3 ConvNeXt-T",
    ),
    BackboneSpec(
        "dinov3-convnext-small",
        "dinov3-convnext",
        _convnext([96, 192, 384, 768], [3, 3, 27, 3]),
        "facebook/dinov3-convnext-small-pretrain-lvd1689m",
        "DINOv3 ConvNeXt-S",
    ),
    BackboneSpec(
        "dinov3-convnext-base",
        "dinov3-convnext",
        _convnext([128, 256, 512, 1024], [3, 3, 27, 3]),
        "facebook/dinov3-convnext-base-pretrain-lvd1689m",
        "DINOv3 ConvNeXt-B",
    ),
):
    register_backbone(_spec)


@dataclass(frozen=True)
class FeatureLayout:
    """The feature maps a backbone hands to the dense heads.

    Attributes:
        channels: Channels of each map, shallow to deep.
        strides: Pixels per cell of each map (all equal for a ViT: its patch size).
        global_dim: Width of the pooled vectors (``cls`` and ``tokens``).

    Example:
        >>> layout = FeatureLayout((8, 16), (1, 2), 16)
        >>> layout.num_maps, layout.single_scale
        (2, False)
    """

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    global_dim: int

    @property
    def num_maps(self) -> int:
        """Number of maps."""
        return len(self.channels)

    @property
    def single_scale(self) -> bool:
        """Whether every map has the same stride (a plain ViT)."""
        return len(set(self.strides)) == 1

    @property
    def detection_stride(self) -> int:
        """Stride of the detection grid: a ViT's patch, else the map stride nearest 8.

        Example:
            >>> FeatureLayout((8, 16, 32, 64), (1, 2, 4, 8), 64).detection_stride
            8
        """
        if self.single_scale:
            return self.strides[0]
        return min(self.strides, key=lambda s: (abs(math.log2(s / 8)), -s))


@dataclass
class BackboneFeatures:
    """What the backbone hands to the heads.

    Attributes:
        maps: Feature maps ``(N, C_i, h_i, w_i)``, shallow to deep.
        cls: Pooled vector ``(N, D)`` (a ViT's class token).
        tokens: Final tokens ``(N, h*w, D)`` (a ViT's patch tokens, a CNN's last map).
        grid: Cell grid ``(h, w)`` of the deepest map.
        patch_size: Pixels per cell of the deepest map.
        image_size: Input ``(H, W)`` before padding.
        images: The input images after channel adaptation (for full-resolution skips).
        strides: Pixels per cell of each map (``None``: all ``patch_size``).
    """

    maps: list[torch.Tensor]
    cls: torch.Tensor
    tokens: torch.Tensor
    grid: tuple[int, int]
    patch_size: int
    image_size: tuple[int, int]
    images: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)
    strides: list[int] | None = None

    @property
    def padded_size(self) -> tuple[int, int]:
        """Input size after padding to whole cells of the deepest map."""
        return self.grid[0] * self.patch_size, self.grid[1] * self.patch_size

    @property
    def map_strides(self) -> list[int]:
        """Pixels per cell of each map."""
        return (
            list(self.strides) if self.strides is not None else [self.patch_size] * len(self.maps)
        )


def default_feature_blocks(num_layers: int, count: int = 4) -> list[int]:
    """Evenly spaced block indices ending at the last block.

    Example:
        >>> default_feature_blocks(12)
        [2, 5, 8, 11]
        >>> default_feature_blocks(4)
        [0, 1, 2, 3]
    """
    count = min(count, num_layers)
    return [round((i + 1) * num_layers / count) - 1 for i in range(count)]


def normalise_block_indices(blocks: Sequence[int], num_layers: int, what: str) -> list[int]:
    """Turn possibly negative block indices into sorted non-negative ones.

    Raises:
        MedfleetError: When an index is outside the backbone's blocks.

    Example:
        >>> normalise_block_indices([-1, 0], 4, "moe.blocks")
        [0, 3]
    """
    out = []
    for b in blocks:
        idx = b + num_layers if b < 0 else b
        if not 0 <= idx < num_layers:
            raise MedfleetError(
                f"{what}: block {b} is outside the backbone's {num_layers} blocks "
                f"(fix: use 0..{num_layers - 1} or -1..-{num_layers})"
            )
        out.append(idx)
    return sorted(set(out))


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(N, C, H, W)`` images at the bottom and right to a multiple of ``multiple``.

    Example:
        >>> tuple(pad_to_multiple(torch.zeros(1, 1, 30, 33), 16).shape)
        (1, 1, 32, 48)
    """
    height, width = images.shape[-2:]
    gh, gw = math.ceil(height / multiple), math.ceil(width / multiple)
    if gh * multiple == height and gw * multiple == width:
        return images
    return F.pad(images, (0, gw * multiple - width, 0, gh * multiple - height))


class Backbone(nn.Module):
    """What every backbone offers the unified model, its heads, MoE and adapters.

    Attributes:
        spec: The registry entry.
        hf: The wrapped model (its ``config`` has ``to_dict()``; adapters go into it).
        feature_blocks: Indices of the blocks or stages whose outputs feed the dense heads.
    """

    stem_path: str = ""
    """Dotted path (in ``hf``) of the first convolution, whose input channels adapt."""
    block_prefix: str = ""
    """Dotted path (in ``hf``) of the block list that MoE and adapter indices refer to."""
    adapter_types: tuple[type[nn.Module], ...] = (nn.Linear,)
    """Module types LoRA may adapt."""
    default_adapter_targets: tuple[str, ...] = ()
    """LoRA targets when the configuration names none."""

    def __init__(self, spec: BackboneSpec, hf_model: nn.Module, feature_blocks: list[int]) -> None:
        super().__init__()
        self.spec = spec
        self.hf = hf_model
        self.feature_blocks = list(feature_blocks)

    @property
    def family(self) -> Family:
        """The registry family."""
        return self.spec.family

    @property
    def blocks(self) -> nn.ModuleList:
        """The blocks (ViT) or stages (CNN) that MoE and adapter indices refer to."""
        return self.hf.get_submodule(self.block_prefix)  # type: ignore[return-value]

    @property
    def num_blocks(self) -> int:
        """Number of blocks or stages."""
        return len(self.blocks)

    def block_modules(self, index: int) -> list[nn.Module]:
        """The modules of block or stage ``index`` (with the experts attached after it)."""
        return [self.blocks[index]]

    @property
    def stem(self) -> nn.Conv2d:
        """The first convolution (under its LoRA wrapper when adapted)."""
        module = self.hf.get_submodule(self.stem_path)
        return getattr(module, "base_layer", module)  # type: ignore[no-any-return]

    @property
    def in_channels(self) -> int:
        """Channels the first convolution expects."""
        return int(self.stem.in_channels)

    @property
    def layout(self) -> FeatureLayout:
        """Channels and strides of the maps handed to the heads."""
        raise NotImplementedError

    @property
    def min_input_size(self) -> int:
        """Smallest input side the backbone accepts."""
        return 1

    def adapt_channels(self, images: torch.Tensor) -> torch.Tensor:
        """Repeat grey images to the stem's channels; reject other mismatches."""
        if images.ndim != 4:
            raise MedfleetError(
                f"backbone input must be (batch, channels, height, width); got shape "
                f"{tuple(images.shape)}"
            )
        channels = images.shape[1]
        expected = self.in_channels
        if channels == expected:
            return images
        if channels == 1:
            return images.expand(-1, expected, -1, -1)
        raise MedfleetError(
            f"images have {channels} channels but the backbone expects {expected} "
            "(fix: set ModelConfig.in_channels to the channel count of the images, "
            "or give grey images, which are repeated)"
        )

    def attach_moe(self, router: Any, blocks: list[int]) -> None:
        """Give the blocks ``blocks`` task-conditioned experts registered with ``router``."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> BackboneFeatures:
        """Encode ``(N, C, H, W)`` images."""
        raise NotImplementedError


class ViTBackbone(Backbone):
    """A transformers ViT run block by block, returning multi-scale features.

    Inputs are padded (zeros, bottom/right) to whole patches; grey images are
    repeated when the patch embedding expects more channels.

    Args:
        spec: The registry entry.
        hf_model: A ``Dinov2Model`` or ``DINOv3ViTModel``.
        feature_blocks: Non-negative indices of the blocks feeding the dense heads.
    """

    default_adapter_targets = ("q_proj", "v_proj")

    def __init__(self, spec: BackboneSpec, hf_model: nn.Module, feature_blocks: list[int]) -> None:
        super().__init__(spec, hf_model, feature_blocks)
        dinov2 = spec.family == "dinov2"
        self.block_prefix = "encoder.layer" if dinov2 else "model.layer"
        self.stem_path = (
            "embeddings.patch_embeddings.projection" if dinov2 else "embeddings.patch_embeddings"
        )

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer blocks."""
        return self.blocks

    @property
    def final_norm(self) -> nn.Module:
        """The final LayerNorm."""
        return self.hf.layernorm if self.family == "dinov2" else self.hf.norm

    @property
    def patch_embedding(self) -> nn.Conv2d:
        """The patch-embedding convolution."""
        return self.stem

    @property
    def hidden_size(self) -> int:
        """Token width ``D``."""
        return int(self.hf.config.hidden_size)

    @property
    def patch_size(self) -> int:
        """Patch side in pixels."""
        return int(self.hf.config.patch_size)

    @property
    def layout(self) -> FeatureLayout:
        """One map of width ``D`` on the patch grid per feature block."""
        n = len(self.feature_blocks)
        return FeatureLayout((self.hidden_size,) * n, (self.patch_size,) * n, self.hidden_size)

    @property
    def num_prefix_tokens(self) -> int:
        """Class token plus register tokens."""
        return 1 + int(getattr(self.hf.config, "num_register_tokens", 0) or 0)

    def attach_moe(self, router: Any, blocks: list[int]) -> None:
        """Turn the MLP of each block of ``blocks`` into routed experts."""
        router.attach(self.layers, blocks, self.hidden_size)

    def forward(self, images: torch.Tensor) -> BackboneFeatures:
        """Encode ``(N, C, H, W)`` images."""
        images = self.adapt_channels(images)
        height, width = images.shape[-2:]
        p = self.patch_size
        padded = pad_to_multiple(images, p)
        gh, gw = padded.shape[-2] // p, padded.shape[-1] // p
        if self.family == "dinov2":
            hidden = self.hf.embeddings(padded)
            kwargs: dict[str, Any] = {}
        else:
            hidden = self.hf.embeddings(padded)
            kwargs = {"position_embeddings": self.hf.rope_embeddings(padded)}
        norm = self.final_norm
        prefix = self.num_prefix_tokens
        maps = []
        wanted = set(self.feature_blocks)
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, **kwargs)
            if index in wanted:
                tokens = norm(hidden)[:, prefix:]
                maps.append(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, gh, gw))
        final = norm(hidden)
        return BackboneFeatures(
            maps=maps,
            cls=final[:, 0],
            tokens=final[:, prefix:],
            grid=(gh, gw),
            patch_size=p,
            image_size=(int(height), int(width)),
            images=images,
        )


def hf_config_for(spec: BackboneSpec, in_channels: int, image_size: int) -> Any:
    """The configuration object of a registry entry's model (no network).

    Example:
        >>> hf_config_for(get_backbone_spec("vit-tiny"), 1, 64).num_channels
        1
        >>> hf_config_for(get_backbone_spec("unet-tiny"), 1, 64).features
        [8, 16, 32, 64]
    """
    kwargs = dict(spec.config)
    kwargs["num_channels"] = in_channels
    if spec.family == "conv":
        from medfleet.models.conv_backbones import ConvEncoderConfig

        return ConvEncoderConfig(**kwargs)
    kwargs["image_size"] = spec.fixed_image_size or image_size
    if spec.family == "dinov3-convnext":
        from transformers import DINOv3ConvNextConfig

        return DINOv3ConvNextConfig(**kwargs)
    if spec.family == "dinov2":
        from transformers import Dinov2Config

        return Dinov2Config(**kwargs)
    from transformers import DINOv3ViTConfig

    # Position jitter is a pretraining augmentation; fine-tuning uses exact positions.
    kwargs.setdefault("pos_embed_rescale", None)
    return DINOv3ViTConfig(**kwargs)


def hf_model_class(family: Family) -> type[nn.Module]:
    """The model class of a family (its ``config_class`` rebuilds stored configurations)."""
    if family == "dinov2":
        from transformers import Dinov2Model

        return Dinov2Model
    if family == "dinov3-convnext":
        from transformers import DINOv3ConvNextModel

        return DINOv3ConvNextModel
    if family == "conv":
        from medfleet.models.conv_backbones import ConvEncoderModel

        return ConvEncoderModel
    from transformers import DINOv3ViTModel

    return DINOv3ViTModel


def set_in_channels(backbone: Backbone, in_channels: int) -> None:
    """Change the first convolution's input channels, adapting its weights.

    Pretrained RGB filters become grey filters by summation; for ``k`` other
    channels (e.g. several frames) the mean RGB filter is repeated and scaled
    by ``3 / k`` so the response to a uniform image is unchanged.

    Example:
        >>> bb = build_backbone("vit-tiny", in_channels=3, image_size=32)
        >>> set_in_channels(bb, 1); bb.in_channels
        1
    """
    conv = backbone.stem
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(adapt_patch_weight(conv.weight, in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
    parent_path, _, leaf = backbone.stem_path.rpartition(".")
    parent = backbone.hf.get_submodule(parent_path) if parent_path else backbone.hf
    if leaf.isdigit():
        parent[int(leaf)] = new  # type: ignore[index]
    else:
        setattr(parent, leaf, new)
    if backbone.family == "dinov2":
        backbone.hf.embeddings.patch_embeddings.num_channels = in_channels
    backbone.hf.config.num_channels = in_channels


def adapt_patch_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-convolution kernel ``(D, C, k, k)`` to ``in_channels`` input channels.

    Example:
        >>> w = torch.ones(2, 3, 1, 1)
        >>> adapt_patch_weight(w, 1)[0, 0, 0, 0].item()
        3.0
        >>> adapt_patch_weight(w, 2)[0, :, 0, 0].tolist()
        [1.5, 1.5]
    """
    source = weight.shape[1]
    if source == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (source / in_channels)


def build_backbone(
    name: str,
    in_channels: int = 3,
    image_size: int = 224,
    feature_blocks: Sequence[int] | None = None,
) -> Backbone:
    """Build a randomly initialised backbone from the registry (no network).

    Args:
        name: Registry name.
        in_channels: Channels of the first convolution.
        image_size: Nominal input size (sets the position-embedding grid of small ViTs).
        feature_blocks: Blocks or stages feeding the dense heads (default: 4 evenly spaced
            blocks of a ViT, every stage of a CNN).

    Example:
        >>> bb = build_backbone("vit-tiny", in_channels=1, image_size=32)
        >>> feats = bb(torch.zeros(2, 1, 32, 32))
        >>> len(feats.maps), tuple(feats.maps[0].shape)
        (4, (2, 64, 4, 4))
        >>> cnn = build_backbone("unet-tiny", in_channels=1)
        >>> [tuple(m.shape[1:]) for m in cnn(torch.zeros(2, 1, 32, 32)).maps]
        [(8, 32, 32), (16, 16, 16), (32, 8, 8), (64, 4, 4)]
    """
    spec = get_backbone_spec(name)
    hf_config = hf_config_for(spec, in_channels, image_size)
    hf_model = hf_model_class(spec.family)(hf_config)
    return wrap_backbone(spec, hf_model, feature_blocks)


def wrap_backbone(
    spec: BackboneSpec, hf_model: nn.Module, feature_blocks: Sequence[int] | None
) -> Backbone:
    """Wrap a model of the spec's family, validating the feature block indices.

    Raises:
        MedfleetError: For block indices outside the model, or more than 4 ViT blocks.
    """
    if not spec.is_vit:
        from medfleet.models.conv_backbones import wrap_conv_backbone

        return wrap_conv_backbone(spec, hf_model, feature_blocks)
    layers = int(hf_model.config.num_hidden_layers)
    blocks = (
        default_feature_blocks(layers)
        if feature_blocks is None
        else normalise_block_indices(feature_blocks, layers, "feature_blocks")
    )
    if not 1 <= len(blocks) <= 4:
        raise MedfleetError(
            f"feature_blocks names {len(blocks)} blocks; a ViT feeds 1 to 4 blocks to the "
            "dense heads (fix: give 1 to 4 block indices)"
        )
    return ViTBackbone(spec, hf_model, blocks)
