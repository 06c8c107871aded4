"""LoRA and DualLoRA adapters through PEFT, and the freezing policies.

* ``lora``: one PEFT LoRA adapter named ``global`` on the chosen linear
  modules of the chosen blocks.
* ``dual-lora``: two adapters, ``global`` and ``local``, injected on the same
  modules and active together, so a layer computes
  ``W0 x + s (B_g A_g x) + s (B_l A_l x)`` with ``s = alpha / rank``. Both are
  trained; only ``global`` is exported for federated averaging
  (:func:`global_adapter_state_dict`), while ``local`` stays on the site.

Freezing policies (parameters that stay trainable):

=================  ==========================================================
``none``           everything (full fine-tune)
``backbone``       the heads only (frozen backbone, its MoE and adapters)
``adapters``       LoRA adapters + heads
``adapters+moe``   LoRA adapters + MoE experts, routers, task embeddings + heads
=================  ==========================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import nn

from medfleet.errors import MedfleetError
from medfleet.models.backbones import Backbone, normalise_block_indices
from medfleet.models.config import AdapterConfig, FreezePolicy

GLOBAL_ADAPTER = "global"
"""Name of the adapter shared across sites (exported for federated averaging)."""
LOCAL_ADAPTER = "local"
"""Name of the site-specific adapter of DualLoRA."""


def lora_target_names(backbone: Backbone, config: AdapterConfig) -> list[str]:
    """Full module names (relative to ``backbone.hf``) that LoRA adapts.

    Targets match module names inside the chosen blocks (ViT) or stages (CNN) by their
    last parts; only linear layers (and, on CNNs, ungrouped convolutions) qualify. No
    targets in the configuration means the backbone's defaults: a ViT's ``q_proj`` and
    ``v_proj``, a ConvNeXt's two pointwise layers, a U-Net encoder's 3x3 convolutions.

    Raises:
        MedfleetError: When a target name matches no eligible module of a chosen block.

    Example:
        >>> from medfleet.models.backbones import build_backbone
        >>> bb = build_backbone("vit-tiny", 1, 32)
        >>> lora_target_names(bb, AdapterConfig(kind="lora", blocks=[-1]))
        ['encoder.layer.3.attention.q_proj', 'encoder.layer.3.attention.v_proj']
        >>> cnn = build_backbone("unet-tiny", 1)
        >>> lora_target_names(cnn, AdapterConfig(kind="lora", blocks=[0]))
        ['stages.0.conv_0.conv', 'stages.0.conv_1.conv']
    """
    layers = backbone.blocks
    blocks = (
        list(range(len(layers)))
        if config.blocks is None
        else normalise_block_indices(config.blocks, len(layers), "adapter.blocks")
    )
    targets = list(config.targets) if config.targets else list(backbone.default_adapter_targets)
    kinds = " or ".join(
        {"Linear": "linear", "Conv2d": "convolution"}.get(t.__name__, t.__name__)
        for t in backbone.adapter_types
    )
    names: list[str] = []
    for i in blocks:
        eligible = [
            n.removesuffix(".base_layer")  # a module already wrapped by PEFT
            for n, m in layers[i].named_modules()
            if isinstance(m, backbone.adapter_types)
            and getattr(m, "groups", 1) == 1
            and ".lora_" not in n
        ]
        for target in targets:
            hits = [n for n in eligible if n == target or n.endswith("." + target)]
            if not hits:
                leaf = sorted({n.rsplit(".", 1)[-1] for n in eligible})
                raise MedfleetError(
                    f"adapter target {target!r} matches no {kinds} module in block {i} of "
                    f"backbone {backbone.spec.name!r} (fix: use some of {leaf})"
                )
            names.extend(f"{backbone.block_prefix}.{i}.{n}" for n in hits)
    return names


def inject_adapters(backbone: Backbone, config: AdapterConfig) -> list[str]:
    """Inject the configured LoRA adapter(s) into ``backbone.hf`` in place.

    Returns:
        The adapted module names.
    """
    if config.kind == "none":
        return []
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import set_adapter

    targets = lora_target_names(backbone, config)
    for name in config.adapter_names:
        lora = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=list(targets),
            bias="none",
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*peft_config.*")
            inject_adapter_in_model(lora, backbone.hf, adapter_name=name)
    set_adapter(backbone.hf, list(config.adapter_names))
    return targets


def global_adapter_state_dict(backbone: Backbone) -> dict[str, torch.Tensor]:
    """Weights of the ``global`` adapter only (keys without the adapter name).

    Raises:
        MedfleetError: When the model has no adapter.
    """
    from peft import get_peft_model_state_dict

    _require_adapter(backbone)
    sd = get_peft_model_state_dict(backbone.hf, adapter_name=GLOBAL_ADAPTER)
    return {k: v.detach().clone() for k, v in sd.items()}


def load_global_adapter_state_dict(backbone: Backbone, state_dict: dict[str, torch.Tensor]) -> None:
    """Load the ``global`` adapter from :func:`global_adapter_state_dict` output.

    Raises:
        MedfleetError: Listing missing or unexpected keys, or shape mismatches.
    """
    from peft import set_peft_model_state_dict

    expected = global_adapter_state_dict(backbone)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise MedfleetError(
            "global adapter state does not match this model: "
            f"missing {_short(missing)}, unexpected {_short(unexpected)} "
            "(fix: export it from a model with the same backbone and adapter settings)"
        )
    bad = [
        f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise MedfleetError(f"global adapter shapes differ (given vs model): {_short(bad)}")
    with torch.no_grad():
        set_peft_model_state_dict(backbone.hf, dict(state_dict), adapter_name=GLOBAL_ADAPTER)


def _require_adapter(backbone: Backbone) -> None:
    configs = getattr(backbone.hf, "peft_config", None) or {}
    if GLOBAL_ADAPTER not in configs:
        raise MedfleetError(
            "the model has no LoRA adapter (fix: build it with adapter.kind 'lora' or 'dual-lora')"
        )


def _short(items: list[str], limit: int = 8) -> str:
    if not items:
        return "[]"
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)})"


def is_adapter_parameter(name: str) -> bool:
    """Whether a parameter name belongs to a LoRA adapter."""
    return ".lora_" in name or name.startswith("lora_")


def apply_freeze_policy(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    policy: FreezePolicy,
    group_of: dict[str, str],
) -> None:
    """Set ``requires_grad`` of every parameter for a freezing policy.

    Args:
        named_parameters: The model's named parameters.
        policy: The policy.
        group_of: Parameter name -> group (``backbone``, ``heads``, ``moe``, ``adapters``).
    """
    trainable = {
        "none": {"backbone", "heads", "moe", "adapters"},
        "backbone": {"heads"},
        "adapters": {"heads", "adapters"},
        "adapters+moe": {"heads", "adapters", "moe"},
    }[policy]
    for name, param in named_parameters:
        param.requires_grad_(group_of[name] in trainable)
