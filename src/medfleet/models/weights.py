"""Pretrained backbone weights from local files, with a key-mapping hook.

Sources, in order of precedence:

1. ``weights`` is a directory saved by transformers (``config.json`` and
   ``model.safetensors``/``pytorch_model.bin``): loaded with
   ``from_pretrained(dir, local_files_only=True)``; the directory's
   configuration defines the architecture.
2. ``weights`` is one file (``.safetensors``, ``.pt``, ``.pth``, ``.bin``):
   its state dict (unwrapped from common containers such as ``state_dict``,
   ``model`` or ``teacher``) goes through a key mapping into the registry's
   architecture. Mappings are registered by name with
   :func:`register_key_mapping`; a mapping is a function from the file's
   state dict to one with transformers' key names. Wrapper prefixes
   (``module.``, ``backbone.``, ``dinov2.``, ``encoder.`` ...) are stripped
   when that makes the keys match.
3. No ``weights`` and ``allow_download=True``: the registry's hub id through
   ``from_pretrained`` (the only case that uses the network).
4. Otherwise: random initialisation from the registry configuration.

Patch embeddings with another channel count are adapted (RGB -> grey by
summing filters); DINOv2 position embeddings of another grid are kept at
their own size and interpolated at run time. Any other missing, unexpected
or mis-shaped key is an error listing them.

Example (a custom checkpoint whose keys are ``vit.*``)::

    from medfleet.models import register_key_mapping

    def my_vit(sd):
        return {k.replace("vit.", "", 1): v for k, v in sd.items()}

    register_key_mapping("my-vit", my_vit)
    # ModelConfig(backbone="dinov2-vitb14", weights="ckpt.pt", key_map="my-vit")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from medfleet.errors import MedfleetError, one_line
from medfleet.models.backbones import (
    Backbone,
    BackboneSpec,
    adapt_patch_weight,
    get_backbone_spec,
    hf_config_for,
    hf_model_class,
    set_in_channels,
    wrap_backbone,
)
from medfleet.utils.tensorfile import read_legacy_torch_file

KeyMapping = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""A function from a checkpoint's state dict to one with transformers' key names."""

_KEY_MAPPINGS: dict[str, KeyMapping] = {}

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
"""File suffixes accepted as a single weights file."""

_CONTAINER_KEYS = ("state_dict", "model", "teacher", "student", "module", "model_state_dict")
_WRAPPER_PREFIXES = ("module.", "backbone.", "dinov2.", "dinov3.", "encoder.", "model.", "vit.")
_OPTIONAL_KEYS = ("embeddings.mask_token",)


def register_key_mapping(name: str, fn: KeyMapping, overwrite: bool = False) -> None:
    """Register a checkpoint key mapping under ``name`` (used via ``ModelConfig.key_map``).

    Raises:
        MedfleetError: When ``name`` is taken and ``overwrite`` is False.

    Example:
        >>> register_key_mapping("doc-identity", lambda sd: dict(sd), overwrite=True)
        >>> "doc-identity" in key_mapping_names()
        True
    """
    if name in _KEY_MAPPINGS and not overwrite:
        raise MedfleetError(f"key mapping {name!r} is already registered (pass overwrite=True)")
    _KEY_MAPPINGS[name] = fn


def key_mapping_names() -> list[str]:
    """Names of the registered key mappings."""
    return list(_KEY_MAPPINGS)


def get_key_mapping(name: str) -> KeyMapping:
    """A registered key mapping.

    Raises:
        MedfleetError: Naming the registered mappings when ``name`` is unknown.
    """
    try:
        return _KEY_MAPPINGS[name]
    except KeyError:
        raise MedfleetError(
            f"unknown key mapping {name!r}; registered: {key_mapping_names()} "
            "(fix: register it with medfleet.models.register_key_mapping)"
        ) from None


def dinov2_original_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the original DINOv2 release layout (``blocks.N.attn.qkv``...) to transformers'.

    Example:
        >>> sd = {"blocks.0.attn.qkv.weight": torch.zeros(6, 2), "norm.bias": torch.zeros(2)}
        >>> sorted(dinov2_original_keys(sd))  # doctest: +NORMALIZE_WHITESPACE
        ['encoder.layer.0.attention.k_proj.weight', 'encoder.layer.0.attention.q_proj.weight',
         'encoder.layer.0.attention.v_proj.weight', 'layernorm.bias']
    """
    out: dict[str, torch.Tensor] = {}
    simple = {
        "cls_token": "embeddings.cls_token",
        "mask_token": "embeddings.mask_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    block_map = {
        "norm1": "norm1",
        "norm2": "norm2",
        "attn.proj": "attention.o_proj",
        "ls1.gamma": "layer_scale1.lambda1",
        "ls2.gamma": "layer_scale2.lambda1",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
        "mlp.w3": "mlp.down_proj",
    }
    for key, value in sd.items():
        if key in simple:
            if key == "mask_token" and value.ndim == 2:
                value = value.reshape(1, -1)
            out[simple[key]] = value
            continue
        parts = key.split(".")
        if parts[0] != "blocks" or len(parts) < 4:
            out[key] = value
            continue
        index, rest = parts[1], ".".join(parts[2:])
        base = f"encoder.layer.{index}"
        if rest.startswith("attn.qkv."):
            leaf = rest.rsplit(".", 1)[-1]
            q, k, v = value.chunk(3, dim=0)
            for name, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{base}.attention.{name}.{leaf}"] = part
            continue
        if rest.startswith("mlp.w12."):
            leaf = rest.rsplit(".", 1)[-1]
            gate, up = value.chunk(2, dim=0)
            out[f"{base}.mlp.gate_proj.{leaf}"] = gate
            out[f"{base}.mlp.up_proj.{leaf}"] = up
            continue
        for src, dst in block_map.items():
            if rest == src or rest.startswith(src + "."):
                out[f"{base}.{dst}{rest[len(src) :]}"] = value
                break
        else:
            out[key] = value
    return out


register_key_mapping("hf", lambda sd: dict(sd))
register_key_mapping("dinov2-original", dinov2_original_keys)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a flat ``{key: tensor}`` dict.

    Raises:
        MedfleetError: When the file cannot be read or holds no tensors.
    """
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise MedfleetError(
                f"cannot read {path}: not a readable safetensors file ({one_line(exc)}) "
                "(fix: copy the weights again)"
            ) from None
    else:
        raw = read_legacy_torch_file(path)  # weights_only: a pickle that would run code is refused
    for _ in range(3):
        if isinstance(raw, dict) and not any(isinstance(v, torch.Tensor) for v in raw.values()):
            inner = next((raw[k] for k in _CONTAINER_KEYS if isinstance(raw.get(k), dict)), None)
            if inner is None:
                break
            raw = inner
    if not isinstance(raw, dict):
        raise MedfleetError(f"{path}: holds a {type(raw).__name__}, not a state dict")
    sd = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise MedfleetError(f"{path}: holds no tensors (keys: {list(raw)[:8]})")
    return sd


def _strip_prefixes(sd: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes as long as that increases the number of matching keys."""
    current = dict(sd)
    while True:
        best, best_hits = None, len(set(current) & expected)
        for prefix in _WRAPPER_PREFIXES:
            if not any(k.startswith(prefix) for k in current):
                continue
            stripped = {k.removeprefix(prefix): v for k, v in current.items()}
            hits = len(set(stripped) & expected)
            if hits > best_hits:
                best, best_hits = stripped, hits
        if best is None:
            return current
        current = best


def load_state_dict_into(
    backbone: Backbone, sd: dict[str, torch.Tensor], source: str, key_map: KeyMapping | None
) -> None:
    """Map, adapt and strictly load a state dict into ``backbone.hf``.

    Raises:
        MedfleetError: Listing missing, unexpected and mis-shaped keys.
    """
    model = backbone.hf
    own = model.state_dict()
    if key_map is not None:
        sd = key_map(sd)
    sd = _strip_prefixes(sd, set(own))
    patch_key = backbone.stem_path + ".weight"
    if patch_key in sd and sd[patch_key].ndim == 4:
        sd[patch_key] = adapt_patch_weight(sd[patch_key], backbone.in_channels)
    pos_key = "embeddings.position_embeddings"
    if (
        backbone.family == "dinov2"
        and pos_key in sd
        and pos_key in own
        and sd[pos_key].shape != own[pos_key].shape
        and sd[pos_key].ndim == 3
    ):
        model.embeddings.position_embeddings = nn.Parameter(torch.zeros_like(sd[pos_key]))
        side = round((sd[pos_key].shape[1] - 1) ** 0.5)
        model.config.image_size = side * backbone.patch_size
        model.embeddings.patch_embeddings.image_size = (side * backbone.patch_size,) * 2
        own = model.state_dict()
    missing = sorted(k for k in own if k not in sd and not k.endswith(_OPTIONAL_KEYS))
    unexpected = sorted(k for k in sd if k not in own)
    mis_shaped = sorted(
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in sd
        if k in own and tuple(sd[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mis_shaped:
        lines = [f"{source}: weights do not match backbone {backbone.spec.name!r}:"]
        for what, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch (file vs model)", mis_shaped),
        ):
            if items:
                shown = ", ".join(items[:10]) + (", ..." if len(items) > 10 else "")
                lines.append(f"  {what} ({len(items)}): {shown}")
        lines.append(
            "  fix: pick the backbone the weights were trained with, or register a key mapping "
            "(medfleet.models.register_key_mapping) and set ModelConfig.key_map"
        )
        raise MedfleetError("\n".join(lines))
    with torch.no_grad():
        model.load_state_dict(sd, strict=False)


def load_backbone(
    name: str,
    in_channels: int,
    image_size: int,
    feature_blocks: Sequence[int] | None = None,
    weights: str | Path | None = None,
    allow_download: bool = False,
    key_map: str | KeyMapping | None = None,
    hf_config: dict | None = None,
) -> Backbone:
    """Build a registry backbone and load its weights from a local source when given.

    Args:
        name: Registry name.
        in_channels: Channels of the first convolution.
        image_size: Nominal input size.
        feature_blocks: Blocks feeding the dense heads.
        weights: Local directory or file of pretrained weights.
        allow_download: Use the registry's hub weights when ``weights`` is None.
        key_map: Registered mapping name or a mapping function (weights files only).
        hf_config: A stored transformers configuration (``config.to_dict()``) to rebuild
            exactly the architecture of a checkpoint, randomly initialised.

    Raises:
        MedfleetError: When the path is missing, unreadable or does not match.

    Example:
        >>> load_backbone("vit-tiny", 1, 32).hidden_size
        64
    """
    spec = get_backbone_spec(name)
    mapping = get_key_mapping(key_map) if isinstance(key_map, str) else key_map
    if hf_config is not None:
        cls = hf_model_class(spec.family)
        config = cls.config_class.from_dict(dict(hf_config))
        return wrap_backbone(spec, cls(config), feature_blocks)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise MedfleetError(
                f"{path}: pretrained weights not found (fix: give an existing directory saved "
                "by transformers or a .safetensors/.pt file, or drop --weights)"
            )
        if path.is_dir():
            return _from_directory(spec, path, in_channels, feature_blocks)
        if path.suffix not in WEIGHT_SUFFIXES:
            raise MedfleetError(
                f"{path}: unknown weights format {path.suffix!r} "
                f"(fix: use one of {', '.join(WEIGHT_SUFFIXES)} or a transformers directory)"
            )
        backbone = _random(spec, in_channels, image_size, feature_blocks)
        load_state_dict_into(backbone, read_state_dict(path), str(path), mapping)
        return backbone
    if allow_download:
        if spec.hub_id is None:
            raise MedfleetError(f"backbone {name!r} has no hub weights; it is random-init only")
        return _from_directory(spec, spec.hub_id, in_channels, feature_blocks, local_only=False)
    return _random(spec, in_channels, image_size, feature_blocks)


def _random(
    spec: BackboneSpec, in_channels: int, image_size: int, feature_blocks: Sequence[int] | None
) -> Backbone:
    hf_model = hf_model_class(spec.family)(hf_config_for(spec, in_channels, image_size))
    return wrap_backbone(spec, hf_model, feature_blocks)


def _from_directory(
    spec: BackboneSpec,
    source: Path | str,
    in_channels: int,
    feature_blocks: Sequence[int] | None,
    local_only: bool = True,
) -> Backbone:
    cls = hf_model_class(spec.family)
    if not hasattr(cls, "from_pretrained"):
        raise MedfleetError(
            f"{source}: backbone {spec.name!r} reads its weights from one file, not a "
            "directory (fix: give the .safetensors file, e.g. one written by "
            "medfleet train or a state dict of the same widths)"
        )
    try:
        hf_model = cls.from_pretrained(str(source), local_files_only=local_only)
    except Exception as exc:
        raise MedfleetError(
            f"{source}: cannot load a {cls.__name__} from it ({type(exc).__name__}: {exc}) "
            f"(fix: give a directory saved by transformers for backbone {spec.name!r})"
        ) from exc
    if spec.family == "dinov3":
        hf_model.config.pos_embed_rescale = None
    if spec.family == "dinov3-convnext":
        found = {k: list(getattr(hf_model.config, k)) for k in ("hidden_sizes", "depths")}
        wanted = {k: list(spec.config[k]) for k in found}
        if found != wanted:
            raise MedfleetError(
                f"{source}: a ConvNeXt with stage widths {found['hidden_sizes']} and depths "
                f"{found['depths']}, but backbone {spec.name!r} has {wanted['hidden_sizes']} "
                f"and {wanted['depths']} (fix: pick the backbone these weights were trained "
                "as, e.g. dinov3-convnext-tiny/-small/-base)"
            )
    backbone = wrap_backbone(spec, hf_model, feature_blocks)
    set_in_channels(backbone, in_channels)
    return backbone
