"""LoRA / DualLoRA through PEFT, global-adapter export, freezing policies."""

from __future__ import annotations

import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.models import AdapterConfig, ModelConfig, MoEConfig, build_model


def dual_model(manifest, **kw):
    config = ModelConfig(
        backbone="vit-tiny",
        image_size=32,
        adapter=AdapterConfig(
            kind="dual-lora", rank=2, alpha=6, targets=["q_proj", "fc2"], blocks=[0, -1]
        ),
        **kw,
    )
    return build_model(manifest, config, tasks=["cls", "seg"])


def test_dual_lora_layer_equals_w0_plus_both_low_rank_updates(manifest) -> None:
    torch.manual_seed(0)
    model = dual_model(manifest)
    layer = model.backbone.layers[0].attention.q_proj
    assert sorted(layer.active_adapters) == ["global", "local"]
    for name in ("global", "local"):
        torch.nn.init.normal_(layer.lora_B[name].weight)  # B starts at 0: make it non-trivial
    x = torch.randn(5, 64)
    w0, b0 = layer.base_layer.weight, layer.base_layer.bias
    s = 6 / 2
    delta_g = layer.lora_B["global"].weight @ layer.lora_A["global"].weight
    delta_l = layer.lora_B["local"].weight @ layer.lora_A["local"].weight
    expected = x @ (w0 + s * delta_g + s * delta_l).T + b0
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_adapters_sit_only_on_chosen_blocks_and_modules(manifest) -> None:
    model = dual_model(manifest)
    lora = {n.split(".lora_")[0] for n, _ in model.named_parameters() if ".lora_" in n}
    assert lora == {
        f"backbone.hf.encoder.layer.{i}.{m}"
        for i in (0, 3)
        for m in ("attention.q_proj", "mlp.fc2")
    }


def test_global_adapter_export_holds_only_global_keys_and_round_trips(manifest) -> None:
    torch.manual_seed(0)
    a = dual_model(manifest)
    b = dual_model(manifest)
    with torch.no_grad():
        for n, p in a.named_parameters():
            if ".lora_" in n:
                p.normal_()
    sd = a.global_adapter_state_dict()
    assert len(sd) == 2 * 2 * 2  # 2 blocks x 2 modules x (A, B)
    assert all(".lora_A.weight" in k or ".lora_B.weight" in k for k in sd)
    assert not any("local" in k or "global" in k for k in sd)
    b.load_global_adapter_state_dict(sd)
    named_a, named_b = dict(a.named_parameters()), dict(b.named_parameters())
    for n in named_a:
        if ".global." in n:
            torch.testing.assert_close(named_a[n], named_b[n])
        if ".local." in n and "lora_A" in n:
            assert not torch.equal(named_a[n], named_b[n])  # local adapter untouched
    bad = dict(sd)
    bad.pop(next(iter(bad)))
    bad["encoder.layer.9.attention.q_proj.lora_A.weight"] = torch.zeros(2, 64)
    with pytest.raises(MedfleetError, match=r"missing \[.*unexpected \[encoder.layer.9"):
        b.load_global_adapter_state_dict(bad)


def test_plain_lora_exports_its_single_adapter(manifest) -> None:
    config = ModelConfig(
        backbone="vit-tiny", image_size=32, adapter=AdapterConfig(kind="lora", rank=4)
    )
    model = build_model(manifest, config, tasks=["reg"])
    assert len(model.global_adapter_state_dict()) == 4 * 2 * 2  # 4 blocks, q and v, A and B
    dense = build_model(manifest, ModelConfig(backbone="vit-tiny", image_size=32), tasks=["reg"])
    with pytest.raises(MedfleetError, match="no LoRA adapter"):
        dense.global_adapter_state_dict()


def trainable_groups(model) -> dict[str, bool]:
    groups = model.parameter_group_names()
    named = dict(model.named_parameters())
    state: dict[str, set[bool]] = {}
    for name, group in groups.items():
        state.setdefault(group, set()).add(named[name].requires_grad)
    assert all(len(v) == 1 for v in state.values()), state  # a group is all-or-nothing
    return {g: v.pop() for g, v in state.items()}


@pytest.mark.parametrize(
    ("freeze", "expected"),
    [
        ("none", {"backbone": True, "heads": True, "moe": True, "adapters": True}),
        ("backbone", {"backbone": False, "heads": True, "moe": False, "adapters": False}),
        ("adapters", {"backbone": False, "heads": True, "moe": False, "adapters": True}),
        ("adapters+moe", {"backbone": False, "heads": True, "moe": True, "adapters": True}),
    ],
)
def test_freezing_policies(manifest, freeze, expected) -> None:
    model = dual_model(manifest, moe=MoEConfig(blocks=[-1]), freeze=freeze)
    assert trainable_groups(model) == expected
    counts = model.count_parameters()
    assert counts["trainable"] == sum(counts[g] for g, on in expected.items() if on)
    groups = model.parameter_groups()
    assert sum(p.numel() for ps in groups.values() for p in ps) == counts["trainable"]


def test_moe_expert_parameters_are_in_the_moe_group(manifest) -> None:
    model = dual_model(manifest, moe=MoEConfig(blocks=[-1]))
    groups = model.parameter_group_names()
    assert groups["backbone.hf.encoder.layer.3.mlp.experts.0.fc1.weight"] == "moe"
    assert groups["router.embedding.weight"] == "moe"
    assert groups["backbone.hf.encoder.layer.0.mlp.fc1.weight"] == "backbone"
    assert groups["backbone.hf.encoder.layer.0.mlp.fc2.lora_A.local.weight"] == "adapters"


def test_adapter_config_errors(manifest) -> None:
    with pytest.raises(ValueError, match=r"adapter\.kind is 'none'"):
        ModelConfig(freeze="adapters")
    with pytest.raises(ValueError, match="moe is not configured"):
        ModelConfig(freeze="adapters+moe", adapter=AdapterConfig(kind="lora"))
    bad = ModelConfig(
        backbone="vit-tiny", image_size=32, adapter=AdapterConfig(kind="lora", targets=["qkv"])
    )
    with pytest.raises(MedfleetError, match=r"'qkv' matches no linear module.*q_proj"):
        build_model(manifest, bad, tasks=["cls"])
