"""ViT backbones: a registry of named configurations and a feature-extracting wrapper.

Every backbone is a transformers model (``Dinov2Model`` or ``DINOv3ViTModel``)
built from a configuration, so nothing is downloaded unless asked. The
wrapper runs the embedding and the transformer blocks itself, which lets it
return the outputs of chosen intermediate blocks (for dense heads), and lets
the Mixture-of-Experts and LoRA code replace modules inside the blocks.

Registered names:

================  ===========  ======  ======  =====  ===========================================
name              family       hidden  layers  patch  hub weights (only with allow_download)
================  ===========  ======  ======  =====  ===========================================
vit-tiny          dinov2       64      4       8      none (random, for tests)
vit-tiny-v3       dinov3       64      4       8      none (random, for tests)
dinov2-vits14     dinov2       384     12      14     facebook/dinov2-small
dinov2-vitb14     dinov2       768     12      14     facebook/dinov2-base
dinov3-vits16     dinov3       384     12      16     facebook/dinov3-vits16-pretrain-lvd1689m
dinov3-vitb16     dinov3       768     12      16     facebook/dinov3-vitb16-pretrain-lvd1689m
dinov3-vitl16     dinov3       1024    24      16     facebook/dinov3-vitl16-pretrain-lvd1689m
================  ===========  ======  ======  =====  ===========================================
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

Family = Literal["dinov2", "dinov3"]


@dataclass(frozen=True)
class BackboneSpec:
    """A named backbone configuration.

    Attributes:
        name: Registry name.
        family: ``dinov2`` (learned position embeddings) or ``dinov3`` (RoPE, registers).
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
    def patch_size(self) -> int:
        """Patch side in pixels."""
        return int(self.config["patch_size"])

    @property
    def hidden_size(self) -> int:
        """Token width."""
        return int(self.config["hidden_size"])

    @property
    def num_layers(self) -> int:
        """Number of transformer blocks."""
        return int(self.config["num_hidden_layers"])


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
):
    register_backbone(_spec)


@dataclass
class BackboneFeatures:
    """What the backbone hands to the heads.

    Attributes:
        maps: Outputs of the feature blocks as ``(N, D, h, w)`` maps, shallow to deep.
        cls: Final class token ``(N, D)``.
        tokens: Final patch tokens ``(N, h*w, D)``.
        grid: Patch grid ``(h, w)`` of the padded input.
        patch_size: Patch side in pixels.
        image_size: Input ``(H, W)`` before padding to a multiple of the patch size.
        images: The input images after channel adaptation (for full-resolution skips).
    """

    maps: list[torch.Tensor]
    cls: torch.Tensor
    tokens: torch.Tensor
    grid: tuple[int, int]
    patch_size: int
    image_size: tuple[int, int]
    images: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def padded_size(self) -> tuple[int, int]:
        """Input size after padding to whole patches."""
        return self.grid[0] * self.patch_size, self.grid[1] * self.patch_size


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


class ViTBackbone(nn.Module):
    """A transformers ViT run block by block, returning multi-scale features.

    Inputs are padded (zeros, bottom/right) to whole patches; grey images are
    repeated when the patch embedding expects more channels.

    Args:
        spec: The registry entry.
        hf_model: A ``Dinov2Model`` or ``DINOv3ViTModel``.
        feature_blocks: Non-negative indices of the blocks feeding the dense heads.
    """

    def __init__(self, spec: BackboneSpec, hf_model: nn.Module, feature_blocks: list[int]) -> None:
        super().__init__()
        self.spec = spec
        self.hf = hf_model
        self.feature_blocks = list(feature_blocks)

    @property
    def family(self) -> Family:
        """``dinov2`` or ``dinov3``."""
        return self.spec.family

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer blocks."""
        if self.family == "dinov2":
            return self.hf.encoder.layer
        return self.hf.model.layer

    @property
    def final_norm(self) -> nn.Module:
        """The final LayerNorm."""
        return self.hf.layernorm if self.family == "dinov2" else self.hf.norm

    @property
    def patch_embedding(self) -> nn.Conv2d:
        """The patch-embedding convolution."""
        if self.family == "dinov2":
            return self.hf.embeddings.patch_embeddings.projection
        return self.hf.embeddings.patch_embeddings

    @property
    def hidden_size(self) -> int:
        """Token width ``D``."""
        return int(self.hf.config.hidden_size)

    @property
    def patch_size(self) -> int:
        """Patch side in pixels."""
        return int(self.hf.config.patch_size)

    @property
    def in_channels(self) -> int:
        """Channels the patch embedding expects."""
        return int(self.patch_embedding.in_channels)

    @property
    def num_prefix_tokens(self) -> int:
        """Class token plus register tokens."""
        return 1 + int(getattr(self.hf.config, "num_register_tokens", 0) or 0)

    def adapt_channels(self, images: torch.Tensor) -> torch.Tensor:
        """Repeat grey images to the patch embedding's channels; reject other mismatches."""
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

    def forward(self, images: torch.Tensor) -> BackboneFeatures:
        """Encode ``(N, C, H, W)`` images."""
        if images.ndim != 4:
            raise MedfleetError(
                f"backbone input must be (batch, channels, height, width); got shape "
                f"{tuple(images.shape)}"
            )
        images = self.adapt_channels(images)
        height, width = images.shape[-2:]
        p = self.patch_size
        gh, gw = math.ceil(height / p), math.ceil(width / p)
        padded = images
        if gh * p != height or gw * p != width:
            padded = F.pad(images, (0, gw * p - width, 0, gh * p - height))
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
    """The transformers configuration of a registry entry (no network).

    Example:
        >>> hf_config_for(get_backbone_spec("vit-tiny"), 1, 64).num_channels
        1
    """
    kwargs = dict(spec.config)
    kwargs["num_channels"] = in_channels
    kwargs["image_size"] = spec.fixed_image_size or image_size
    if spec.family == "dinov2":
        from transformers import Dinov2Config

        return Dinov2Config(**kwargs)
    from transformers import DINOv3ViTConfig

    # Position jitter is a pretraining augmentation; fine-tuning uses exact positions.
    kwargs.setdefault("pos_embed_rescale", None)
    return DINOv3ViTConfig(**kwargs)


def hf_model_class(family: Family) -> type[nn.Module]:
    """The transformers model class of a family."""
    if family == "dinov2":
        from transformers import Dinov2Model

        return Dinov2Model
    from transformers import DINOv3ViTModel

    return DINOv3ViTModel


def set_in_channels(backbone: ViTBackbone, in_channels: int) -> None:
    """Change the patch embedding's input channels, adapting its weights.

    Pretrained RGB filters become grey filters by summation; for ``k`` other
    channels (e.g. several frames) the mean RGB filter is repeated and scaled
    by ``3 / k`` so the response to a uniform image is unchanged.

    Example:
        >>> bb = build_backbone("vit-tiny", in_channels=3, image_size=32)
        >>> set_in_channels(bb, 1); bb.in_channels
        1
    """
    conv = backbone.patch_embedding
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(adapt_patch_weight(conv.weight, in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
    if backbone.family == "dinov2":
        pe = backbone.hf.embeddings.patch_embeddings
        pe.projection = new
        pe.num_channels = in_channels
    else:
        backbone.hf.embeddings.patch_embeddings = new
    backbone.hf.config.num_channels = in_channels


def adapt_patch_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a patch-embedding kernel ``(D, C, p, p)`` to ``in_channels`` input channels.

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
) -> ViTBackbone:
    """Build a randomly initialised backbone from the registry (no network).

    Args:
        name: Registry name.
        in_channels: Channels of the patch embedding.
        image_size: Nominal input size (sets the position-embedding grid of small ViTs).
        feature_blocks: Blocks feeding the dense heads (default: 4 evenly spaced).

    Example:
        >>> bb = build_backbone("vit-tiny", in_channels=1, image_size=32)
        >>> feats = bb(torch.zeros(2, 1, 32, 32))
        >>> len(feats.maps), tuple(feats.maps[0].shape)
        (4, (2, 64, 4, 4))
    """
    spec = get_backbone_spec(name)
    hf_config = hf_config_for(spec, in_channels, image_size)
    hf_model = hf_model_class(spec.family)(hf_config)
    return wrap_backbone(spec, hf_model, feature_blocks)


def wrap_backbone(
    spec: BackboneSpec, hf_model: nn.Module, feature_blocks: Sequence[int] | None
) -> ViTBackbone:
    """Wrap a transformers model, validating the feature block indices."""
    layers = int(hf_model.config.num_hidden_layers)
    blocks = (
        default_feature_blocks(layers)
        if feature_blocks is None
        else normalise_block_indices(feature_blocks, layers, "feature_blocks")
    )
    return ViTBackbone(spec, hf_model, blocks)
