"""ModelConfig serialisation and validation."""

from __future__ import annotations

import pytest

from medfleet.errors import MedfleetError
from medfleet.models import AdapterConfig, ModelConfig, MoEConfig


def test_yaml_and_json_round_trip(tmp_path) -> None:
    config = ModelConfig(
        backbone="dinov3-vits16",
        image_size=224,
        in_channels=2,
        moe=MoEConfig(blocks=[8, 10], num_experts=6, top_k=2, token_routing=False),
        adapter=AdapterConfig(kind="dual-lora", rank=8, alpha=16, targets=["q_proj"], blocks=[-1]),
        freeze="adapters+moe",
        feature_blocks=[2, 5, 8, 11],
        weights=tmp_path / "w.safetensors",
    )
    for name in ("c.yaml", "c.json"):
        assert ModelConfig.load(config.save(tmp_path / name)) == config
    assert "dual-lora" in config.to_yaml()


def test_validation_messages(tmp_path) -> None:
    with pytest.raises(ValueError, match="feature_blocks is empty"):
        ModelConfig(feature_blocks=[])
    with pytest.raises(ValueError, match="extra"):
        ModelConfig(backbone_name="x")
    bad = tmp_path / "bad.yaml"
    bad.write_text("moe: {top_k: 9, num_experts: 2}\n")
    with pytest.raises(MedfleetError, match=r"bad\.yaml: not a valid model configuration"):
        ModelConfig.load(bad)


def test_moe_expert_width_default_matches_dense_compute() -> None:
    assert MoEConfig(top_k=2).hidden_ratio == 0.5
    assert MoEConfig(top_k=1, expert_hidden_ratio=1.0).hidden_ratio == 1.0
