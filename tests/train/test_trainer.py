"""The trainer on phantoms: losses fall, heads have their shapes, a killed run resumes exactly."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.models import HeadConfig, ModelConfig, MoEConfig, build_model
from medfleet.tasks import Manifest
from medfleet.train.config import TrainConfig
from medfleet.train.datasets import collate
from medfleet.train.run import load_trained, train_model
from medfleet.train.sampling import ScheduledBatch
from medfleet.train.trainer import Trainer, lr_factor, seed_everything
from medfleet.utils.tensorfile import read_tensor_file

KINDS = ("training-checkpoint", "unified-model")

SIZE = 32


def _moe_config(backbone: str = "unet-small", **heads) -> ModelConfig:
    return ModelConfig(
        backbone=backbone,
        image_size=SIZE,
        moe=MoEConfig(blocks=[-1], num_experts=2, top_k=1),
        heads=HeadConfig(**heads),
    )


def test_unified_moe_loss_falls_on_fixed_batches_and_heads_have_their_shapes(
    tiny_phantoms, tmp_path
):
    manifest = Manifest.load(tiny_phantoms)
    seed_everything(0)
    # the small ViT this check was calibrated on: 8 steps on two images per task
    model = build_model(manifest, _moe_config("vit-tiny"))
    config = TrainConfig(
        lr=3e-3, warmup_steps=0, min_lr_ratio=1.0, val_every=0, seed=0, augment="none"
    )  # fixed batches: no augmentation
    trainer = Trainer(model, manifest, config, tmp_path)
    fixed = [ScheduledBatch(task, (0, 1)) for task in trainer.tasks]
    history = [trainer._train_step(fixed) for _ in range(8)]
    for task in trainer.tasks:
        first, last = history[0][task][0], history[-1][task][0]
        assert last < first, f"{task}: loss {first:.4f} -> {last:.4f}"
    assert {t.type.value for t in manifest.tasks} == {
        "segmentation", "classification", "detection", "regression", "landmarks"
    }  # fmt: skip

    model.eval()
    with torch.no_grad():
        for task, ds in trainer.train_sets.items():
            batch = collate(ds.spec, [ds[0], ds[1]])
            out = model(batch.images, task)
            kind = ds.spec.type.value
            if kind == "segmentation":
                assert out["logits"].shape == (2, len(ds.spec.labels), SIZE, SIZE)
            elif kind == "classification":
                assert out["logits"].shape == (2, len(ds.spec.classes))
            elif kind == "regression":
                assert out["value"].shape == (2,)
            elif kind == "landmarks":
                assert out["heatmaps"].shape == (2, len(ds.spec.landmarks), SIZE // 4, SIZE // 4)
            else:
                assert out["boxes"].shape[0] == 2 and out["boxes"].shape[-1] == 4
    usage = model.expert_usage()
    assert set(usage) == set(trainer.tasks) and all(u.sum() > 0 for u in usage.values())


def test_killed_run_resumes_to_the_same_parameters(tiny_phantoms, tmp_path):
    manifest = Manifest.load(tiny_phantoms)
    tasks = ["lesion_cls", "spine_landmarks"]
    config = TrainConfig(
        max_steps=6,
        batch_size=2,
        batches_per_epoch=4,
        checkpoint_every=3,
        lr=1e-3,
        warmup_steps=2,
        seed=7,
    )
    model_config = _moe_config(dropout=0.3)

    straight = train_model(manifest, model_config, config, tmp_path / "a", tasks=tasks)

    class Killed(RuntimeError):
        pass

    def kill(trainer: Trainer) -> None:
        if trainer.step == 4:  # mid-epoch checkpoint at step 3; killed before the epoch-end one
            raise Killed

    with pytest.raises(Killed):
        train_model(manifest, model_config, config, tmp_path / "b", tasks=tasks, on_step=kill)
    saved = read_tensor_file(tmp_path / "b" / "checkpoints" / "last.safetensors", KINDS)
    assert saved["step"] == 3

    resumed = train_model(manifest, model_config, config, tmp_path / "b", tasks=tasks, resume=True)
    assert resumed.result.resumed_from == 3 and resumed.result.steps == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.dumps(straight.result.history) == json.dumps(resumed.result.history)  # NaN-safe
    with open(tmp_path / "b" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    val = {(r["task"], r["metric"]) for r in rows if r["split"] == "val"}
    assert ("lesion_cls", "balanced_accuracy") in val and ("spine_landmarks", "mre") in val
    assert max(int(r["step"]) for r in rows) == 6

    loaded = load_trained(tmp_path / "b" / "model.safetensors", manifest)
    assert loaded.tasks == tasks and loaded.image_size == SIZE
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, b[key]), key
    from_checkpoint = load_trained(tmp_path / "b" / "checkpoints" / "last.safetensors", manifest)
    for key, value in from_checkpoint.model.state_dict().items():
        assert torch.equal(value, b[key]), key


def test_resume_refuses_a_checkpoint_of_other_tasks_or_settings(tiny_phantoms, tmp_path):
    manifest = Manifest.load(tiny_phantoms)
    config = TrainConfig(max_steps=1, batch_size=2, val_every=0)
    train_model(manifest, _moe_config(), config, tmp_path, tasks=["lesion_cls"])
    with pytest.raises(MedfleetError, match="with tasks"):
        train_model(manifest, _moe_config(), config, tmp_path, tasks=["head_circumference"],
                    resume=True)  # fmt: skip
    other = config.model_copy(update={"lr": 1.0})
    with pytest.raises(MedfleetError, match="lr"):
        train_model(manifest, _moe_config(), other, tmp_path, tasks=["lesion_cls"], resume=True)


def test_gradient_accumulation_counts_optimiser_steps(tiny_phantoms, tmp_path):
    manifest = Manifest.load(tiny_phantoms)
    model = build_model(manifest, ModelConfig(image_size=SIZE), tasks=["lesion_cls"])
    config = TrainConfig(epochs=2, batch_size=2, grad_accum=2, batches_per_epoch=5, val_every=0)
    seen = []
    trainer = Trainer(model, manifest, config, tmp_path, tasks=["lesion_cls"])
    original = trainer._train_step
    trainer._train_step = lambda micro: seen.append(len(micro)) or original(micro)
    result = trainer.fit()
    assert trainer.steps_per_epoch == 3 and result.steps == result.total_steps == 6
    assert seen == [2, 2, 1, 2, 2, 1]  # the last step of an epoch takes the odd batch
    assert trainer.optimizer.state_dict()["state"][0]["step"] == 6


def test_warm_up_then_cosine():
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


@pytest.mark.slow
def test_demo_train_stage_on_tiny_phantoms(tiny_phantoms, tmp_path):
    from medfleet.demo import DemoContext
    from medfleet.train.demo_stage import TrainStage

    ctx = DemoContext(out=tmp_path, quick=True, seed=0, manifest=tiny_phantoms)
    calls = []
    result = TrainStage().run(ctx, lambda done, total: calls.append((done, total)))
    assert result["steps"] == calls[-1][0] == calls[-1][1]
    manifest = Manifest.load(tiny_phantoms)
    assert set(result["test"]) == {t.name for t in manifest.tasks}
    assert set(result["validation"]) == {t.name for t in manifest.tasks}
    assert (tmp_path / "train" / "unified" / "model.safetensors").is_file()
    usage = result["expert_usage"]
    assert set(usage) == {t.name for t in manifest.tasks}
    # every trained task is set against its trivial baseline, fitted on train
    import math

    assert set(result["baseline"]) == set(result["test"])
    for task, entry in result["baseline"].items():
        assert entry["kind"] and entry["direction"] in ("higher", "lower"), task
        for key in ("model", "baseline", "difference"):
            assert isinstance(entry[key], float) and math.isfinite(entry[key]), (task, key)
        assert entry["model"] == result["test"][task][entry["metric"]]
    assert result["baseline"]["head_circumference"]["unit"] == "mm"
    assert (tmp_path / "train" / "baseline" / "evaluation" / "lesion_cls").is_dir()


@pytest.mark.parametrize("mode", ["balanced", "none"])
def test_classification_class_weights_follow_the_training_rows(tiny_phantoms, tmp_path, mode):
    from collections import Counter

    from medfleet.train.datasets import load_task_rows

    manifest = Manifest.load(tiny_phantoms)
    config = TrainConfig(max_steps=1, batch_size=2, val_every=0, class_weights=mode)
    trained = train_model(
        manifest, ModelConfig(image_size=SIZE), config, tmp_path, tasks=["lesion_cls"]
    )
    classes = manifest.task("lesion_cls").classes
    counts = Counter(r["label"] for r in load_task_rows(manifest, "lesion_cls", ("train",)))
    n, k = sum(counts.values()), len([c for c in classes if counts[c]])
    expected = [n / (k * counts[c]) if counts[c] else 1.0 for c in classes]
    if mode == "none":
        expected = [1.0] * len(classes)
    weights = trained.model.head("lesion_cls").class_weights.tolist()
    assert weights == pytest.approx(expected)
    again = load_trained(tmp_path / "model.safetensors", manifest).model
    assert again.head("lesion_cls").class_weights.tolist() == pytest.approx(expected)
