"""Volumes: slice-wise encoding, attention pooling, 3D segmentation reassembly."""

from __future__ import annotations

import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.models import ModelConfig, build_model
from medfleet.models.volumes import SliceAttentionPool


@pytest.fixture
def volume_manifest(manifest_factory):
    return manifest_factory("vol", seg={"dim": 3}, cls={"dim": 3}, reg={"dim": 3})


def test_volume_outputs(volume_manifest) -> None:
    model = build_model(volume_manifest, ModelConfig(image_size=32), tasks=["seg", "cls", "reg"])
    vol = torch.randn(2, 5, 1, 32, 24)
    seg = model(vol, "seg")
    assert tuple(seg["logits"].shape) == (2, 3, 5, 32, 24)
    cls = model(vol, "cls")
    assert tuple(cls["logits"].shape) == (2, 3)
    weights = cls.meta["slice_weights"]
    assert tuple(weights.shape) == (2, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert tuple(model(vol, "reg")["value"].shape) == (2,)
    target = torch.zeros(2, 5, 32, 24, dtype=torch.long)
    target[:, 1:3, 5:10, 5:10] = 2
    loss, parts = model.loss("seg", seg, target)
    assert loss.requires_grad and set(parts) == {"dice", "ce"}
    pred = model.decode("seg", seg)[0]
    assert pred["mask"].shape == (5, 32, 24) and pred["probs"].shape == (3, 5, 32, 24)
    assert set(pred["mask"].ravel().tolist()) <= {0, 2, 5}


def test_volume_segmentation_is_slicewise(volume_manifest) -> None:
    model = build_model(volume_manifest, ModelConfig(image_size=32), tasks=["seg"]).eval()
    vol = torch.randn(1, 3, 1, 32, 32)
    with torch.no_grad():
        whole = model(vol, "seg")["logits"]
        flat = model.head("seg")(model.backbone(vol[0]))["logits"]
    torch.testing.assert_close(whole[0].permute(1, 0, 2, 3), flat)


def test_attention_pool_picks_the_scored_slice() -> None:
    pool = SliceAttentionPool(2, 4)
    with torch.no_grad():
        for p in pool.parameters():
            p.zero_()
        pool.score[2].weight.zero_()
    x = torch.tensor([[[1.0, 0.0], [3.0, 4.0]]])
    pooled, weights = pool(x)
    torch.testing.assert_close(weights, torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 2.0]]))


def test_volume_shape_errors(volume_manifest, manifest_factory) -> None:
    model = build_model(volume_manifest, ModelConfig(image_size=32), tasks=["cls", "lm"])
    with pytest.raises(MedfleetError, match=r"\(batch, slices, channels, height, width\)"):
        model(torch.randn(2, 1, 32, 32), "cls")
    with pytest.raises(MedfleetError, match="set dim: 3"):
        model(torch.randn(2, 3, 1, 32, 32), "lm")
    with pytest.raises(MedfleetError, match="3D detection is not supported"):
        build_model(manifest_factory(det={"dim": 3}), ModelConfig(image_size=32), tasks=["det"])
