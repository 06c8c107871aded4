"""Semi-supervised segmentation: losses, EMA teacher, multi-task use and exact resume."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from medfleet.models import ModelConfig, build_model
from medfleet.tables import read_table, write_table
from medfleet.tasks import Manifest
from medfleet.train.config import TrainConfig
from medfleet.train.run import train_model
from medfleet.train.semi import (
    consistency_loss,
    drop_labels,
    pseudo_label_loss,
    rampup_weight,
    valid_region,
)
from medfleet.train.trainer import Trainer, seed_everything
from medfleet.utils.tensorfile import read_tensor_file

KINDS = ("training-checkpoint", "unified-model")

SIZE = 32
SEG = "organ_lesion_seg"


@pytest.fixture(scope="module")
def scarce(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Segmentation + classification phantoms; most training masks (and one label) removed."""
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    path = generate_phantoms(
        tmp_path_factory.mktemp("semi"),
        PhantomConfig(tasks=[SEG, "lesion_cls"]),
        sites=1,
        cases_per_site=12,
        size=SIZE,
        seed=3,
    )
    manifest = Manifest.load(path)
    counts = drop_labels(manifest, SEG, 0.3, seed=1)
    assert counts["labelled"] >= 1 and counts["unlabelled"] >= 3
    table = manifest.table_path(manifest.task("lesion_cls"))
    rows = read_table(table)
    first = next(i for i, r in enumerate(rows) if r["split"] == "train")
    rows[first]["label"] = ""  # an unlabelled classification row is simply left out
    write_table(table, rows, columns=list(rows[0]))
    return path


def _config(method: str | None, **kw) -> TrainConfig:
    base = dict(
        max_steps=4,
        batch_size=2,
        batches_per_epoch=4,
        checkpoint_every=2,
        lr=1e-3,
        warmup_steps=1,
        seed=5,
        threads=1,
        tensorboard=False,
        semi_supervised=method,
        consistency_rampup=0.5,
        confidence_threshold=0.5,
        augment="light",
        sampling="uniform",
    )
    return TrainConfig(**{**base, **kw})


def _trainer(scarce: Path, out: Path, method: str | None, **kw) -> tuple[object, Trainer]:
    """A fresh seeded model and its trainer on the scarce-label phantoms."""
    manifest = Manifest.load(scarce)
    seed_everything(0)
    model = build_model(manifest, ModelConfig(image_size=SIZE))
    return model, Trainer(model, manifest, _config(method, **kw), out)


def test_losses_match_hand_computed_values():
    logits = torch.zeros(1, 2, 1, 3)  # student softmax 0.5 / 0.5 everywhere
    probs = torch.tensor([[[[1.0, 0.8, 0.3]], [[0.0, 0.2, 0.7]]]])
    valid = torch.tensor([[[0, 0, -1]]])  # third pixel is padding
    loss, _ = consistency_loss(logits, probs, valid)
    assert loss.item() == pytest.approx((0.25 + 0.25 + 0.09 + 0.09) / 2)
    loss, parts = pseudo_label_loss(logits, probs, valid, 0.75)
    assert loss.item() == pytest.approx(2 * math.log(2) / 2) and parts["confident_share"] == 1.0
    loss, parts = pseudo_label_loss(logits, probs, valid, 0.9)
    assert loss.item() == pytest.approx(math.log(2) / 2) and parts["confident_share"] == 0.5
    assert rampup_weight(0, 10) == pytest.approx(math.exp(-5)) and rampup_weight(20, 10) == 1.0


def test_valid_region_marks_padding():
    class _S:
        def __init__(self, resized):
            self.geometry = type("G", (), {"resized": resized})()

    v = valid_region([_S((4, 2)), _S((3, 4))], 4)
    assert v[0].tolist() == [[0, 0, -1, -1]] * 4
    assert v[1, 3].tolist() == [-1] * 4 and v[1, :3].eq(0).all()


def test_unlabelled_rows_feed_only_segmentation_and_teacher_is_an_ema(scarce, tmp_path):
    manifest = Manifest.load(scarce)
    seed_everything(0)
    model = build_model(manifest, ModelConfig(image_size=SIZE))
    seen: list[tuple[dict, dict]] = []

    def grab(trainer: Trainer) -> None:
        if trainer.step == 1:
            seen.append(
                (
                    copy.deepcopy(trainer.module.state_dict()),
                    copy.deepcopy(trainer.semi.teacher.state_dict()),
                )
            )

    trainer = Trainer(model, manifest, _config("mean-teacher"), tmp_path / "r", on_step=grab)
    # the teacher starts as the model the trainer prepared (class weights set from the data)
    initial = copy.deepcopy(trainer.module.state_dict())
    assert trainer.semi.tasks == [SEG]
    pool = trainer.semi.datasets[SEG].rows  # every training image, labelled ones too
    train_ids = {r["case_id"] for r in read_table(manifest.table_path(manifest.task(SEG)))
                 if r["split"] == "train"}  # fmt: skip
    assert {r["case_id"] for r in pool} == train_ids
    assert any(r["mask"].strip() for r in pool) and any(not r["mask"].strip() for r in pool)
    assert all(r["label"].strip() for r in trainer.train_sets["lesion_cls"].rows)
    result = trainer.fit()
    student, teacher = seen[0]
    for name, value in teacher.items():  # step 0: decay min(0.99, 1 / 10) = 0.1
        if torch.is_floating_point(value):
            expected = 0.1 * initial[name] + 0.9 * student[name]
            assert torch.allclose(value, expected, atol=1e-6), name
    tasks = {r["task"] for r in result.history if r["metric"] == "unlabelled_loss"}
    assert tasks == {SEG}
    assert all(math.isfinite(r["value"]) for r in result.history if r["metric"] == "loss")


@pytest.mark.parametrize("method", ["mean-teacher", "fixmatch"])
def test_killed_semi_supervised_run_resumes_exactly(scarce, tmp_path, method):
    manifest = Manifest.load(scarce)
    config = _config(method)
    model_config = ModelConfig(image_size=SIZE)
    straight = train_model(manifest, model_config, config, tmp_path / "a")

    class Killed(RuntimeError):
        pass

    def kill(trainer: Trainer) -> None:
        if trainer.step == 3:
            raise Killed

    with pytest.raises(Killed):
        train_model(manifest, model_config, config, tmp_path / "b", on_step=kill)
    resumed = train_model(manifest, model_config, config, tmp_path / "b", resume=True)
    assert resumed.result.resumed_from == 2
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca = read_tensor_file(tmp_path / "a" / "checkpoints" / "last.safetensors", KINDS)["semi"]
    cb = read_tensor_file(tmp_path / "b" / "checkpoints" / "last.safetensors", KINDS)["semi"]
    assert ca["method"] == method
    student_a = read_tensor_file(tmp_path / "a" / "checkpoints" / "last.safetensors", KINDS)[
        "model"
    ]
    student_b = read_tensor_file(tmp_path / "b" / "checkpoints" / "last.safetensors", KINDS)[
        "model"
    ]
    for key in student_a:
        assert torch.equal(student_a[key], student_b[key]), key
    for key, value in ca["teacher"].items():
        assert torch.equal(value, cb["teacher"][key]), key
    if method == "mean-teacher":
        assert ca["teacher"].keys() == a.keys()
    else:  # FixMatch keeps an EMA of the student as well (the kept model by default)
        assert ca["teacher"].keys() == a.keys()
    assert any(r["metric"] == "unlabelled_loss" for r in straight.result.history)


def test_settings_change_refuses_resume(scarce, tmp_path):
    from medfleet.errors import MedfleetError

    manifest = Manifest.load(scarce)
    train_model(manifest, ModelConfig(image_size=SIZE), _config("fixmatch", max_steps=2), tmp_path)
    with pytest.raises(MedfleetError, match="semi_supervised"):
        train_model(
            manifest,
            ModelConfig(image_size=SIZE),
            _config("mean-teacher", max_steps=3),
            tmp_path,
            resume=True,
        )


def test_include_labelled_off_keeps_only_unlabelled_rows(scarce, tmp_path):
    _, trainer = _trainer(scarce, tmp_path / "r", "fixmatch", semi_include_labelled=False)
    rows = trainer.semi.datasets[SEG].rows
    assert len(rows) >= 3 and all(not r["mask"].strip() for r in rows)


@pytest.mark.parametrize(
    ("method", "final"), [("mean-teacher", "teacher"), ("fixmatch", "student")]
)
def test_kept_model_is_the_chosen_semi_final(scarce, tmp_path, method, final):
    """The model file, returned model, validation and a reloaded checkpoint use ``semi_final``."""
    from medfleet.models import load_model
    from medfleet.train.predict import predict_dataset
    from medfleet.train.run import load_trained
    from medfleet.train.validation import task_metrics

    manifest = Manifest.load(scarce)
    config = _config(method, semi_final=final)
    trained = train_model(manifest, ModelConfig(image_size=SIZE), config, tmp_path)
    state = read_tensor_file(tmp_path / "checkpoints" / "last.safetensors", KINDS)
    expected = state["semi"]["teacher"] if final == "teacher" else state["model"]
    other = state["model"] if final == "teacher" else state["semi"]["teacher"]
    assert any(not torch.equal(expected[k], other[k]) for k in expected)  # they differ
    saved = load_model(tmp_path / "model.safetensors", manifest).state_dict()
    reloaded = load_trained(
        tmp_path / "checkpoints" / "last.safetensors", manifest
    ).model.state_dict()
    for key, value in expected.items():
        assert torch.equal(saved[key], value), key
        assert torch.equal(trained.model.state_dict()[key], value), key
        assert torch.equal(reloaded[key], value), key
    ds = Trainer(
        build_model(manifest, ModelConfig(image_size=SIZE)), manifest, config, tmp_path / "x"
    ).val_sets[SEG]
    preds = predict_dataset(trained.model, ds, batch_size=2)
    want = task_metrics(manifest, ds.spec, ds.rows, preds)
    assert trained.result.val_metrics[SEG] == pytest.approx(want)


def test_class_balanced_losses_weigh_each_target_class_equally():
    student = torch.zeros(1, 2, 1, 3)  # softmax 0.5 / 0.5
    probs = torch.tensor([[[[1.0, 0.9, 0.2]], [[0.0, 0.1, 0.8]]]])  # argmax 0, 0, 1
    valid = torch.zeros(1, 1, 3, dtype=torch.long)
    plain, _ = consistency_loss(student, probs, valid)
    balanced, _ = consistency_loss(student, probs, valid, class_balanced=True)
    assert plain.item() == pytest.approx((0.5 + 0.32 + 0.18) / 3)
    assert balanced.item() == pytest.approx(((0.5 + 0.32) / 2 + 0.18) / 2)
    logits = torch.tensor([[[[2.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 0.0]]]])
    probs = torch.tensor([[[[0.95, 0.92, 0.1, 0.6]], [[0.05, 0.08, 0.9, 0.4]]]])
    valid = torch.zeros(1, 1, 4, dtype=torch.long)
    ce = [math.log(1 + math.exp(-2)), math.log(2), math.log(1 + math.exp(-1))]
    plain, parts = pseudo_label_loss(logits, probs, valid, 0.9)
    balanced, _ = pseudo_label_loss(logits, probs, valid, 0.9, class_balanced=True)
    assert parts["confident_share"] == 0.75
    assert plain.item() == pytest.approx(sum(ce) / 4)
    assert balanced.item() == pytest.approx(((ce[0] + ce[1]) / 2 + ce[2]) / 2 * 0.75)
    nothing, _ = pseudo_label_loss(logits, probs, valid, 0.99, class_balanced=True)
    assert nothing.item() == 0.0


def test_strong_scale_zero_gives_the_weak_view(scarce, tmp_path):
    _, trainer = _trainer(scarce, tmp_path, "mean-teacher", strong_scale=0.0, cutmix=0.0)
    views = trainer.semi.views(SEG, 2, torch.Generator().manual_seed(0))
    assert torch.equal(views.weak, views.strong) and views.valid.shape == (2, SIZE, SIZE)
    assert views.mix is None and views.warp is None
    _, trainer = _trainer(scarce, tmp_path / "b", "mean-teacher", cutmix=0.0)
    views = trainer.semi.views(SEG, 2, torch.Generator().manual_seed(0))
    assert not torch.allclose(views.weak, views.strong)


def test_strong_geometric_view_and_targets_share_the_extra_warp(scarce, tmp_path):
    from medfleet.train.augment import warp_images

    model, trainer = _trainer(
        scarce, tmp_path, "mean-teacher", strong_scale=0.0, strong_geometric=True, cutmix=0.0
    )
    semi = trainer.semi
    views = semi.views(SEG, 4, torch.Generator().manual_seed(2))
    weak, valid, warp = views.weak, views.valid, views.warp
    assert warp is not None and len(warp) == 4
    assert torch.equal(views.strong, warp_images(weak, warp))
    plain = semi.targets(SEG, replace(views, warp=None), model)
    moved = semi.targets(SEG, views, model)
    expected = warp_images(plain, warp)
    expected = expected / expected.sum(dim=1, keepdim=True).clamp_min(1e-6)
    assert torch.allclose(moved, expected)
    inside = valid >= 0  # where the strong view sees the image, targets are distributions
    assert torch.allclose(moved.sum(dim=1)[inside], torch.ones(int(inside.sum())), atol=1e-4)


def test_cutmix_pastes_the_partner_into_the_strong_view_and_its_targets(scarce, tmp_path):
    model, trainer = _trainer(scarce, tmp_path, "mean-teacher", strong_scale=0.0, cutmix=1.0)
    semi = trainer.semi
    views = semi.views(SEG, 4, torch.Generator().manual_seed(3))
    mix = views.mix
    assert mix is not None and bool(mix.boxes.any(dim=(1, 2)).all())
    box = mix.boxes[:, None]
    # strong = weak outside the box, the partner's weak view inside it
    assert torch.equal(views.strong, torch.where(box, views.weak[mix.partner], views.weak))
    plain = semi.targets(SEG, replace(views, mix=None), model)
    mixed = semi.targets(SEG, views, model)
    i = 0
    j = int(mix.partner[i])
    inside = mix.boxes[i]
    assert torch.equal(mixed[i][:, inside], plain[j][:, inside])
    assert torch.equal(mixed[i][:, ~inside], plain[i][:, ~inside])


def test_cutmix_training_runs_and_is_deterministic(scarce, tmp_path):
    weights = []
    for run in ("a", "b"):
        _, trainer = _trainer(scarce, tmp_path / run, "fixmatch", cutmix=0.5)
        trainer.fit()
        weights.append(trainer.final_module.state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


def test_feature_perturbed_branch_learns_the_weak_targets(scarce, tmp_path):
    from medfleet.models.heads.base import TaskOutput

    model, trainer = _trainer(scarce, tmp_path, "mean-teacher", feature_dropout=0.5, cutmix=1.0)
    semi = trainer.semi
    views = semi.views(SEG, 3, torch.Generator().manual_seed(4))
    labelled = views.weak[:2]
    calls = []

    def forward(images, dropout, last):
        calls.append((images.shape[0], dropout, last))
        torch.manual_seed(11)
        out = model(torch.cat([labelled, images]), SEG, feature_dropout=dropout, dropout_last=last)
        return TaskOutput(dict(out), meta=dict(out.meta))

    loss, out = semi.unlabelled_loss(SEG, views, model, forward)
    assert calls == [(6, 0.5, 3)] and out["logits"].shape[0] == 8
    weak_probs = semi.weak_targets(SEG, views, model)
    strong, _ = semi.loss(out["logits"][2:5], views.to_strong(weak_probs), views.valid)
    perturbed, _ = semi.loss(out["logits"][5:], weak_probs, views.weak_valid)
    assert loss.item() == pytest.approx(0.5 * (strong.item() + perturbed.item()), rel=1e-6)
    # only the perturbed images see dropped features: the others match a clean pass
    clean = model(torch.cat([labelled, views.strong]), SEG)["logits"]
    assert torch.allclose(out["logits"][:5], clean, atol=1e-5)
    assert not torch.allclose(out["logits"][5:], model(views.weak, SEG)["logits"], atol=1e-3)
