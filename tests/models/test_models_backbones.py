"""Backbone registry, multi-scale features, channel adaptation and local weight loading."""

from __future__ import annotations

import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.models import ModelConfig, backbone_names, build_model, register_key_mapping
from medfleet.models.backbones import (
    adapt_patch_weight,
    build_backbone,
    default_feature_blocks,
    get_backbone_spec,
)
from medfleet.models.weights import dinov2_original_keys, load_backbone


def test_registry_names_and_architectures() -> None:
    names = backbone_names()
    for name in (
        "vit-tiny",
        "dinov2-vits14",
        "dinov2-vitb14",
        "dinov3-vits16",
        "dinov3-vitb16",
        "dinov3-vitl16",
    ):
        assert name in names
    assert get_backbone_spec("dinov3-vitl16").num_layers == 24
    assert get_backbone_spec("dinov2-vitb14").patch_size == 14
    with pytest.raises(MedfleetError, match=r"unknown backbone 'vit-huge'.*vit-tiny"):
        get_backbone_spec("vit-huge")


@pytest.mark.parametrize("name", ["vit-tiny", "vit-tiny-v3"])
def test_features_from_chosen_blocks(name) -> None:
    bb = build_backbone(name, in_channels=1, image_size=32, feature_blocks=[1, -1])
    assert bb.feature_blocks == [1, 3]
    feats = bb(torch.randn(2, 1, 30, 33))  # padded to 32 x 40
    assert feats.grid == (4, 5) and feats.image_size == (30, 33)
    assert [tuple(m.shape) for m in feats.maps] == [(2, 64, 4, 5)] * 2
    assert tuple(feats.cls.shape) == (2, 64) and tuple(feats.tokens.shape) == (2, 20, 64)


def test_pretrained_sized_registry_entry_builds_without_network() -> None:
    bb = build_backbone("dinov2-vits14", in_channels=1, image_size=56)
    assert bb.hidden_size == 384 and bb.feature_blocks == default_feature_blocks(12)
    feats = bb(torch.randn(1, 1, 56, 56))
    assert tuple(feats.maps[0].shape) == (1, 384, 4, 4)


def test_grey_images_are_repeated_for_rgb_backbone() -> None:
    torch.manual_seed(0)
    bb = build_backbone("vit-tiny", in_channels=3, image_size=32).eval()
    grey = torch.randn(1, 1, 32, 32)
    a = bb(grey).cls
    b = bb(grey.repeat(1, 3, 1, 1)).cls
    torch.testing.assert_close(a, b)
    with pytest.raises(MedfleetError, match="2 channels but the backbone expects 3"):
        bb(torch.randn(1, 2, 32, 32))


def test_patch_weight_adaptation_preserves_uniform_response() -> None:
    w = torch.randn(4, 3, 2, 2)
    for channels in (1, 2, 5):
        adapted = adapt_patch_weight(w, channels)
        assert adapted.shape == (4, channels, 2, 2)
        torch.testing.assert_close(adapted.sum(dim=1), w.sum(dim=1))


def test_weights_file_with_wrapper_prefix_loads_exactly(tmp_path, manifest) -> None:
    torch.manual_seed(0)
    source = build_backbone("vit-tiny", in_channels=3, image_size=32)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {f"module.{k}": v for k, v in source.hf.state_dict().items()}}, path)
    loaded = load_backbone("vit-tiny", 3, 32, weights=path)
    for k, v in source.hf.state_dict().items():
        torch.testing.assert_close(loaded.hf.state_dict()[k], v)
    # through the model config, with grey input: RGB filters are summed
    model = build_model(
        manifest, ModelConfig(backbone="vit-tiny", image_size=32, weights=path), tasks=["cls"]
    )
    pe = model.backbone.patch_embedding.weight
    torch.testing.assert_close(pe, source.patch_embedding.weight.sum(1, keepdim=True))


def test_safetensors_file_and_registered_key_mapping(tmp_path) -> None:
    from safetensors.torch import save_file

    source = build_backbone("vit-tiny", in_channels=1, image_size=32)
    renamed = {
        k.replace("encoder.layer.", "blocks_"): v.contiguous()
        for k, v in source.hf.state_dict().items()
    }
    path = tmp_path / "w.safetensors"
    save_file(renamed, str(path))
    with pytest.raises(MedfleetError) as info:
        load_backbone("vit-tiny", 1, 32, weights=path)
    message = str(info.value)
    assert "missing (72): encoder.layer.0.attention.k_proj.bias" in message
    assert "unexpected (72): blocks_0.attention.k_proj.bias" in message
    assert "register_key_mapping" in message
    register_key_mapping(
        "test-blocks",
        lambda sd: {k.replace("blocks_", "encoder.layer."): v for k, v in sd.items()},
        overwrite=True,
    )
    loaded = load_backbone("vit-tiny", 1, 32, weights=path, key_map="test-blocks")
    torch.testing.assert_close(
        loaded.hf.encoder.layer[2].mlp.fc1.weight, source.hf.encoder.layer[2].mlp.fc1.weight
    )


def test_original_dinov2_layout_maps_to_transformers_names() -> None:
    source = build_backbone("vit-tiny", in_channels=3, image_size=32)
    sd = source.hf.state_dict()
    original = {
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "mask_token": sd["embeddings.mask_token"].reshape(1, -1),
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    for i in range(4):
        p = f"encoder.layer.{i}."
        for leaf in ("weight", "bias"):
            original[f"blocks.{i}.attn.qkv.{leaf}"] = torch.cat(
                [sd[p + f"attention.{n}_proj.{leaf}"] for n in "qkv"]
            )
            original[f"blocks.{i}.attn.proj.{leaf}"] = sd[p + f"attention.o_proj.{leaf}"]
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                original[f"blocks.{i}.{n}.{leaf}"] = sd[p + f"{n}.{leaf}"]
        original[f"blocks.{i}.ls1.gamma"] = sd[p + "layer_scale1.lambda1"]
        original[f"blocks.{i}.ls2.gamma"] = sd[p + "layer_scale2.lambda1"]
    mapped = dinov2_original_keys(original)
    assert set(mapped) == set(sd)
    for k in sd:
        torch.testing.assert_close(mapped[k].reshape(sd[k].shape), sd[k])


def test_transformers_directory_loads_with_from_pretrained(tmp_path) -> None:
    source = build_backbone("vit-tiny-v3", in_channels=3, image_size=32)
    source.hf.save_pretrained(tmp_path / "dino")
    loaded = load_backbone("vit-tiny-v3", 1, 32, weights=tmp_path / "dino")
    assert loaded.in_channels == 1
    torch.testing.assert_close(
        loaded.patch_embedding.weight, source.patch_embedding.weight.sum(1, keepdim=True)
    )
    torch.testing.assert_close(loaded.hf.norm.weight, source.hf.norm.weight)


def test_missing_and_unknown_weight_paths_are_clear_errors(tmp_path) -> None:
    with pytest.raises(MedfleetError, match="pretrained weights not found"):
        load_backbone("vit-tiny", 1, 32, weights=tmp_path / "nope.pt")
    odd = tmp_path / "w.npz"
    odd.write_bytes(b"x")
    with pytest.raises(MedfleetError, match="unknown weights format"):
        load_backbone("vit-tiny", 1, 32, weights=odd)
    broken = tmp_path / "w.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(MedfleetError, match=r"w\.pt: is truncated or corrupt"):
        load_backbone("vit-tiny", 1, 32, weights=broken)
    with pytest.raises(MedfleetError, match="cannot load a Dinov2Model"):
        load_backbone("vit-tiny", 1, 32, weights=tmp_path)


def test_no_download_without_permission(monkeypatch) -> None:
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained must not be called")

    monkeypatch.setattr(transformers.Dinov2Model, "from_pretrained", refuse)
    bb = load_backbone("dinov2-vits14", 1, 28)
    assert bb.hidden_size == 384
