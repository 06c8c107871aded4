"""Convolutional backbones: feature shapes, full-resolution decoding, MoE, LoRA, weights.

Oracles: MONAI's ``BasicUNet`` (the U-Net encoder must compute what its encoder
computes) and transformers' ``DINOv3ConvNextModel.forward`` (stage maps and pooled
vector).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from medfleet.errors import MedfleetError
from medfleet.models import AdapterConfig, ModelConfig, MoEConfig, build_model
from medfleet.models.adapters import GLOBAL_ADAPTER, LOCAL_ADAPTER, lora_target_names
from medfleet.models.backbones import FeatureLayout, build_backbone, get_backbone_spec
from medfleet.models.checkpoint import load_model
from medfleet.models.conv_backbones import StageMLP
from medfleet.models.decoders import UNetDecoder, build_neck

CONV = ("unet-tiny", "convnext-compact")


@pytest.mark.parametrize(
    ("name", "channels", "strides"),
    [
        ("unet-tiny", (8, 16, 32, 64), (1, 2, 4, 8)),
        ("unet-small", (32, 32, 64, 128, 256), (1, 2, 4, 8, 16)),
        ("convnext-compact", (32, 64, 128, 256), (4, 8, 16, 32)),
    ],
)
def test_feature_maps_have_the_layout_shapes(name, channels, strides) -> None:
    bb = build_backbone(name, in_channels=1)
    assert bb.layout == FeatureLayout(channels, strides, channels[-1])
    spec = get_backbone_spec(name)
    assert spec.patch_size == strides[-1] and spec.hidden_size == channels[-1]
    x = torch.randn(2, 1, 70, 45)  # neither side a multiple of the coarsest stride
    feats = bb(x)
    padded = [-(-s // strides[-1]) * strides[-1] for s in (70, 45)]
    for fmap, c, s in zip(feats.maps, channels, strides, strict=True):
        assert tuple(fmap.shape) == (2, c, padded[0] // s, padded[1] // s)
    assert feats.map_strides == list(strides)
    assert tuple(feats.cls.shape) == (2, channels[-1])
    assert feats.tokens.shape[-1] == channels[-1]
    assert feats.image_size == (70, 45)


def test_feature_blocks_choose_the_stages() -> None:
    bb = build_backbone("unet-tiny", in_channels=1, feature_blocks=[1, -1])
    assert bb.layout.strides == (2, 8) and bb.layout.channels == (16, 64)
    with pytest.raises(MedfleetError, match="feature_blocks: block 7 is outside"):
        build_backbone("unet-tiny", in_channels=1, feature_blocks=[7])


def test_unet_encoder_computes_monai_basic_unet_encoder() -> None:
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    ours = build_backbone("unet-small", in_channels=1).eval()
    ref = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2).eval()
    names = ["conv_0", "down_1", "down_2", "down_3", "down_4"]
    for i, name in enumerate(names):
        getattr(ref, name).load_state_dict(ours.hf.stages[i].state_dict())
    x = torch.randn(1, 1, 32, 48)
    with torch.no_grad():
        maps = ours(x).maps
        expected = [ref.conv_0(x)]
        for name in names[1:]:
            expected.append(getattr(ref, name)(expected[-1]))
    for got, want in zip(maps, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_convnext_matches_transformers_forward() -> None:
    bb = build_backbone("convnext-compact", in_channels=1).eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        feats = bb(x)
        ref = bb.hf(pixel_values=x, output_hidden_states=True)
    torch.testing.assert_close(feats.cls, ref.pooler_output)
    torch.testing.assert_close(feats.tokens, ref.last_hidden_state[:, 1:])
    stage_maps = ref.hidden_states[-len(feats.maps) :]
    for got, want in zip(feats.maps, stage_maps, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", [*CONV, "vit-tiny"])
def test_dense_heads_return_the_input_resolution(manifest, name) -> None:
    model = build_model(manifest, ModelConfig(backbone=name, image_size=48))
    x = torch.randn(2, 1, 50, 37)
    assert tuple(model(x, "seg")["logits"].shape) == (2, 3, 50, 37)
    assert tuple(model(x, "lm")["heatmaps"].shape) == (2, 3, 13, 10)  # stride-4 heatmaps
    det = model(x, "det")
    stride = det.meta["stride"]
    assert stride == 8.0  # vit-tiny's patch; a CNN's stage nearest stride 8
    assert det.meta["grid"] == (-(-50 // int(stride)), -(-37 // int(stride)))
    assert tuple(model(x, "cls")["logits"].shape) == (2, 3)


def test_unet_decoder_upsamples_to_the_finest_stage() -> None:
    dec = UNetDecoder((8, 16, 32), (1, 2, 4))
    maps = [torch.randn(1, 8, 20, 12), torch.randn(1, 16, 10, 6), torch.randn(1, 32, 5, 3)]
    assert tuple(dec(maps).shape) == (1, 8, 20, 12)
    assert dec.out_stride == 1.0 and dec.out_dim == 8
    assert build_neck(FeatureLayout((16,) * 4, (8,) * 4, 16), 24).out_stride == 2.0
    with pytest.raises(ValueError, match="must increase"):
        UNetDecoder((8, 16), (2, 2))


def test_too_small_inputs_are_refused_before_training(manifest) -> None:
    with pytest.raises(MedfleetError, match=r"image_size 16 is too small.*unet-small.*17"):
        build_model(manifest, ModelConfig(backbone="unet-small", image_size=16))
    bb = build_backbone("unet-tiny", in_channels=1)
    with pytest.raises(MedfleetError, match="at least 9 pixels"):
        bb(torch.zeros(1, 1, 8, 8))


def test_stage_mlp_starts_as_identity_and_moe_routes_per_task(manifest) -> None:
    block = StageMLP(8)
    x = torch.randn(2, 8, 3, 3)
    assert torch.equal(block(x), x)
    config = ModelConfig(
        backbone="unet-tiny", image_size=32, moe=MoEConfig(blocks=[-2, -1], num_experts=4)
    )
    model = build_model(manifest, config)
    assert model.moe_blocks == [2, 3]
    assert sorted(model.backbone.moe_slots) == ["2", "3"]
    images = torch.randn(2, 1, 32, 32)
    model(images, "seg")
    model(images, "cls")
    usage = model.expert_usage()
    # every pixel of the two MoE stages is one token routed to top_k = 2 experts
    assert usage["seg"][0].sum() == 2 * 2 * 8 * 8 and usage["seg"][1].sum() == 2 * 2 * 4 * 4
    assert usage["reg"].sum() == 0
    assert float(model.aux_loss().detach()) > 0


def test_lora_and_dual_lora_attach_to_convolutions(manifest) -> None:
    from peft.tuners.lora import Conv2d as LoraConv2d

    bb = build_backbone("unet-tiny", in_channels=1)
    assert lora_target_names(bb, AdapterConfig(kind="lora", blocks=[-1])) == [
        "stages.3.convs.conv_0.conv",
        "stages.3.convs.conv_1.conv",
    ]
    config = ModelConfig(
        backbone="unet-tiny",
        image_size=32,
        adapter=AdapterConfig(kind="dual-lora", rank=2),
        freeze="adapters",
    )
    torch.manual_seed(0)
    model = build_model(manifest, config)
    adapted = [m for m in model.backbone.modules() if isinstance(m, LoraConv2d)]
    assert len(adapted) == 8  # two 3x3 convolutions in each of the four stages
    assert model.backbone.in_channels == 1
    exported = model.global_adapter_state_dict()
    assert exported and all("lora_" in k for k in exported)
    assert not any(LOCAL_ADAPTER in k for k in exported)
    assert {k.split(".lora_")[0] for k in exported} == {
        n for n in lora_target_names(model.backbone, config.adapter)
    }
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("heads.") for n in trainable)
    assert any(f"lora_A.{LOCAL_ADAPTER}" in n for n in trainable)

    x = torch.randn(1, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        before = model(x, "seg")["logits"]
        changed = {k: torch.randn_like(v) * 0.1 for k, v in exported.items()}
        model.load_global_adapter_state_dict(changed)
        after = model(x, "seg")["logits"]
    assert not torch.allclose(before, after)
    for key, value in model.global_adapter_state_dict().items():
        torch.testing.assert_close(value, changed[key])
    adapter_params = [n for n in trainable if ".lora_" in n]
    assert 2 * len(exported) == len(adapter_params)  # every global tensor, no local one
    assert sum(f".{GLOBAL_ADAPTER}." in n for n in adapter_params) == len(exported)


def test_convnext_lora_targets_the_pointwise_layers() -> None:
    bb = build_backbone("convnext-compact", in_channels=1)
    names = lora_target_names(bb, AdapterConfig(kind="lora", blocks=[0]))
    assert names == [
        "model.stages.0.layers.0.pointwise_conv1",
        "model.stages.0.layers.1.pointwise_conv1",
        "model.stages.0.layers.0.pointwise_conv2",
        "model.stages.0.layers.1.pointwise_conv2",
    ]
    with pytest.raises(MedfleetError, match="matches no linear or convolution module"):
        lora_target_names(bb, AdapterConfig(kind="lora", targets=["q_proj"]))


@pytest.mark.parametrize("name", CONV)
def test_checkpoint_round_trip_with_moe_and_adapters(manifest, tmp_path, name) -> None:
    config = ModelConfig(
        backbone=name,
        image_size=32,
        moe=MoEConfig(blocks=[-1]),
        adapter=AdapterConfig(kind="dual-lora"),
    )
    torch.manual_seed(1)
    model = build_model(manifest, config).eval()
    for p in model.parameters():
        p.data.add_(torch.randn_like(p) * 0.01)  # LoRA B starts at zero: make it count
    path = model.save(tmp_path / "model.safetensors")
    again = load_model(path, manifest).eval()
    x = torch.randn(2, 1, 32, 40)
    with torch.no_grad():
        for task in model.tasks:
            for key, value in model(x, task).items():
                torch.testing.assert_close(again(x, task)[key], value)


def test_local_weights_load_and_mismatches_are_named(manifest, tmp_path) -> None:
    source = build_backbone("unet-tiny", in_channels=1)
    save_file(source.hf.state_dict(), str(tmp_path / "enc.safetensors"))
    model = build_model(
        manifest,
        ModelConfig(backbone="unet-tiny", image_size=32, weights=tmp_path / "enc.safetensors"),
    )
    for key, value in source.hf.state_dict().items():
        torch.testing.assert_close(model.backbone.hf.state_dict()[key], value)

    # a ConvNeXt file whose stage widths differ from the configuration
    wide = build_backbone("dinov3-convnext-tiny", in_channels=3)
    save_file(wide.hf.state_dict(), str(tmp_path / "tiny.safetensors"))
    with pytest.raises(MedfleetError, match=r"(?s)tiny\.safetensors.*shape mismatch"):
        build_model(
            manifest,
            ModelConfig(backbone="convnext-compact", weights=tmp_path / "tiny.safetensors"),
        )
    # another architecture's file
    with pytest.raises(MedfleetError, match=r"(?s)enc\.safetensors.*missing.*unexpected"):
        build_model(
            manifest,
            ModelConfig(backbone="convnext-compact", weights=tmp_path / "enc.safetensors"),
        )


def test_convnext_directory_weights_and_grey_stem(manifest, tmp_path) -> None:
    rgb = build_backbone("convnext-compact", in_channels=3)
    rgb.hf.save_pretrained(tmp_path / "compact")
    model = build_model(
        manifest, ModelConfig(backbone="convnext-compact", weights=tmp_path / "compact")
    )
    stem = model.backbone.stem
    assert stem.in_channels == 1  # the grey tasks' channel count
    torch.testing.assert_close(stem.weight, rgb.stem.weight.sum(dim=1, keepdim=True))
    with pytest.raises(MedfleetError, match=r"stage widths .* but backbone 'dinov3-convnext-tiny'"):
        build_model(
            manifest, ModelConfig(backbone="dinov3-convnext-tiny", weights=tmp_path / "compact")
        )
    with pytest.raises(MedfleetError, match="reads its weights from one file"):
        build_model(manifest, ModelConfig(backbone="unet-tiny", weights=tmp_path / "compact"))
