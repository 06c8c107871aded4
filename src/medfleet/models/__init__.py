"""The unified multi-task foundation model (needs the ``train`` extra: torch, transformers, peft).

Importing :mod:`medfleet.models` is cheap: the configuration classes are
pydantic only, and the torch-based parts load on first use.

Example:
    >>> from medfleet.models import ModelConfig, MoEConfig
    >>> ModelConfig(moe=MoEConfig(blocks=[-1])).moe.num_experts
    4
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medfleet.models.config import (
    AdapterConfig,
    FreezePolicy,
    HeadConfig,
    ModelConfig,
    MoEConfig,
)

if TYPE_CHECKING:
    from medfleet.models.backbones import (
        Backbone,
        BackboneFeatures,
        BackboneSpec,
        FeatureLayout,
        ViTBackbone,
        backbone_names,
        get_backbone_spec,
        register_backbone,
    )
    from medfleet.models.checkpoint import load_model, read_checkpoint, save_model
    from medfleet.models.conv_backbones import ConvBackbone
    from medfleet.models.decoders import UNetDecoder, build_neck
    from medfleet.models.heads import TaskOutput
    from medfleet.models.heads.landmarks import decode_heatmaps
    from medfleet.models.plots import plot_expert_usage
    from medfleet.models.unified import UnifiedModel, build_model, task_fingerprint
    from medfleet.models.weights import key_mapping_names, register_key_mapping

_LAZY: dict[str, str] = {
    "Backbone": "medfleet.models.backbones",
    "FeatureLayout": "medfleet.models.backbones",
    "ConvBackbone": "medfleet.models.conv_backbones",
    "UNetDecoder": "medfleet.models.decoders",
    "build_neck": "medfleet.models.decoders",
    "BackboneFeatures": "medfleet.models.backbones",
    "BackboneSpec": "medfleet.models.backbones",
    "ViTBackbone": "medfleet.models.backbones",
    "backbone_names": "medfleet.models.backbones",
    "get_backbone_spec": "medfleet.models.backbones",
    "register_backbone": "medfleet.models.backbones",
    "load_model": "medfleet.models.checkpoint",
    "read_checkpoint": "medfleet.models.checkpoint",
    "save_model": "medfleet.models.checkpoint",
    "TaskOutput": "medfleet.models.heads",
    "decode_heatmaps": "medfleet.models.heads.landmarks",
    "plot_expert_usage": "medfleet.models.plots",
    "UnifiedModel": "medfleet.models.unified",
    "build_model": "medfleet.models.unified",
    "task_fingerprint": "medfleet.models.unified",
    "key_mapping_names": "medfleet.models.weights",
    "register_key_mapping": "medfleet.models.weights",
}

__all__ = [
    "AdapterConfig",
    "Backbone",
    "BackboneFeatures",
    "BackboneSpec",
    "ConvBackbone",
    "FeatureLayout",
    "FreezePolicy",
    "HeadConfig",
    "MoEConfig",
    "ModelConfig",
    "TaskOutput",
    "UNetDecoder",
    "UnifiedModel",
    "ViTBackbone",
    "backbone_names",
    "build_model",
    "build_neck",
    "decode_heatmaps",
    "get_backbone_spec",
    "key_mapping_names",
    "load_model",
    "plot_expert_usage",
    "read_checkpoint",
    "register_backbone",
    "register_key_mapping",
    "save_model",
    "task_fingerprint",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medfleet.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
