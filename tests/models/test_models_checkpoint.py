"""Save / load round trip and checkpoints from another manifest."""

from __future__ import annotations

import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.models import AdapterConfig, ModelConfig, MoEConfig, build_model, load_model


def test_round_trip_restores_outputs_usage_and_stats(tmp_path, manifest) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        image_size=32,
        moe=MoEConfig(blocks=[-1], num_experts=3),
        adapter=AdapterConfig(kind="dual-lora"),
        freeze="adapters+moe",
    )
    model = build_model(manifest, config)
    model.set_target_stats("reg", 42.0, 7.0)
    model.set_class_weights("cls", [1.0, 2.0, 3.0])
    x = torch.randn(2, 1, 32, 32)
    for task in model.tasks:
        model(x, task)
    path = model.save(tmp_path / "m.safetensors", extra={"epoch": 3})
    assert not list(tmp_path.glob(".m.safetensors*"))  # no temporary file left
    loaded = load_model(path, manifest)
    assert loaded.config == config and loaded.checkpoint_extra == {"epoch": 3}
    for task, usage in model.expert_usage().items():
        assert (loaded.expert_usage()[task] == usage).all() and usage.sum() > 0
    assert loaded.count_parameters() == model.count_parameters()
    model.eval()
    loaded.eval()
    with torch.no_grad():
        for task in model.tasks:
            a, b = model(x, task), loaded(x, task)
            for key in a:
                torch.testing.assert_close(a[key], b[key])
    assert loaded.head("reg").target_mean.item() == 42.0
    assert loaded.head("cls").class_weights.tolist() == [1.0, 2.0, 3.0]


def test_load_without_manifest_uses_stored_specs(tmp_path, manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32), tasks=["lm", "seg"])
    loaded = load_model(model.save(tmp_path / "m.safetensors"))
    assert loaded.tasks == ["lm", "seg"]
    assert loaded.specs["seg"].labels == {0: "bg", 2: "a", 5: "b"}


def test_checkpoint_from_another_manifest_names_the_tasks(
    tmp_path, manifest, manifest_factory
) -> None:
    model = build_model(manifest, ModelConfig(image_size=32), tasks=["seg", "cls", "lm"])
    path = model.save(tmp_path / "m.safetensors")
    other = manifest_factory(
        "other", cls={"classes": ["x", "y"]}, seg={"labels": {0: "bg", 1: "a"}}
    )
    other = other.model_copy(update={"tasks": [t for t in other.tasks if t.name != "lm"]})
    with pytest.raises(MedfleetError) as info:
        load_model(path, other)
    text = str(info.value)
    assert "manifest 'other'" in text and "built for manifest 'tiny'" in text
    assert "task 'seg' differs (labels:" in text
    assert "task 'cls' differs (classes: model ['x', 'y', 'z'] vs manifest ['x', 'y'])" in text
    assert "task 'lm' is not in manifest 'other'" in text


def test_not_a_checkpoint(tmp_path) -> None:
    with pytest.raises(MedfleetError, match=r"missing\.safetensors: file not found"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(1)}, junk)
    with pytest.raises(MedfleetError, match=r"junk\.pt: not a medfleet model"):
        load_model(junk)
