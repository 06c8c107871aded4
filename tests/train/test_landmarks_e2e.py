"""Landmarks end to end: union landmark space, augmentation, predict -> evaluate in mm, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from medfleet.models import HeadConfig, ModelConfig, build_model
from medfleet.models.heads.landmarks import LandmarkSpaceView
from medfleet.tables import parse_landmarks, read_table
from medfleet.tasks import Manifest
from medfleet.train.config import TrainConfig
from medfleet.train.landmark_space import derive_landmark_tasks, mean_shape
from medfleet.train.predict import evaluate_predictions, predict_manifest
from medfleet.train.run import load_trained, train_model

SIZE = 32
SA, SP, IP, IA = ("superior_anterior", "superior_posterior", "inferior_posterior",
                  "inferior_anterior")  # fmt: skip
SUBSETS = {"upper_back": [SA, SP, IP], "lower_back": [IA, SP, IP]}
PAIRS = [(SA, SP), (IA, IP)]


@pytest.fixture(scope="module")
def union(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two landmark tasks with overlapping point names, dealt from the spine phantoms."""
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    path = generate_phantoms(
        tmp_path_factory.mktemp("lmk"),
        PhantomConfig(tasks=["spine_landmarks", "organ_lesion_seg"]),
        sites=2,
        cases_per_site=12,
        size=SIZE,
        seed=4,
    )
    return derive_landmark_tasks(
        Manifest.load(path), "spine_landmarks", SUBSETS, path.parent / "union.yaml"
    )


def test_derived_tasks_keep_their_points(union):
    manifest = Manifest.load(union)
    source = {r["case_id"]: r for r in read_table(union.parent / "spine_landmarks.csv")}
    for task, names in SUBSETS.items():
        rows = read_table(manifest.table_path(manifest.task(task)))
        assert rows and manifest.task(task).landmarks == names
        for row in rows[:3]:
            full = parse_landmarks(source[row["case_id"].removeprefix(f"{task}_")]["landmarks"], 4)
            order = [SA, SP, IP, IA]
            expected = full[[order.index(n) for n in names]]
            np.testing.assert_allclose(parse_landmarks(row["landmarks"], 3), expected)
    mean = mean_shape(manifest, "upper_back")
    table = read_table(manifest.table_path(manifest.task("upper_back")))
    pts = [parse_landmarks(r["landmarks"], 3) for r in table if r["split"] == "train"]
    np.testing.assert_allclose(mean, np.mean(pts, axis=0))


def test_union_space_shares_one_head_and_masks_absent_points(union):
    manifest = Manifest.load(union)
    tasks = list(SUBSETS)
    spaces = dict.fromkeys(tasks, "spine")
    shared = build_model(
        manifest, ModelConfig(image_size=SIZE, landmark_spaces=spaces), tasks=tasks
    )
    separate = build_model(manifest, ModelConfig(image_size=SIZE), tasks=tasks)
    lmk_params = sum(p.numel() for p in separate.head("upper_back").parameters())
    assert (
        separate.count_parameters()["heads"] - shared.count_parameters()["heads"]
        == lmk_params - (64 + 1)  # one head fewer, one more output channel (64 inputs + bias)
    )
    view = shared.head("lower_back")
    assert isinstance(view, LandmarkSpaceView) and view.shared.names == [SA, SP, IP, IA]
    assert view.indices == [3, 1, 2] and view.names == [IA, SP, IP]
    images = torch.randn(2, 1, SIZE, SIZE)
    out = shared(images, "lower_back")
    assert out["heatmaps"].shape == (2, 4, SIZE // 4, SIZE // 4)
    targets = torch.tensor([[[5.0, 20.0], [20.0, 6.0], [21.0, 18.0]]] * 2)
    loss, _ = shared.loss("lower_back", out, targets)
    loss.backward()
    grad = view.shared.output.weight.grad[:, :, 0, 0]
    assert grad[0].abs().sum() == 0  # superior_anterior: not a point of lower_back
    assert all(grad[i].abs().sum() > 0 for i in (1, 2, 3))
    decoded = shared.decode("lower_back", out)
    assert len(decoded) == 2 and decoded[0].shape == (3, 2)
    full = view.shared.decode(out)[0]
    np.testing.assert_allclose(decoded[0], full[[3, 1, 2]])
    keys = [k for k in shared.state_dict() if k.startswith("heads.") and "output" in k]
    assert keys == ["heads.landmark_space__spine.output.weight",
                    "heads.landmark_space__spine.output.bias"]  # fmt: skip


def test_union_training_predicts_and_scores_in_mm(union, tmp_path):
    manifest = Manifest.load(union)
    tasks = list(SUBSETS)
    model_config = ModelConfig(
        image_size=SIZE,
        landmark_spaces=dict.fromkeys(tasks, "spine"),
        heads=HeadConfig(landmark_sigma=2.0),
    )
    config = TrainConfig(
        max_steps=4,
        batch_size=4,
        lr=1e-3,
        threads=1,
        tensorboard=False,
        augment="standard",
        flip_pairs=PAIRS,
        val_every=0,
    )
    trained = train_model(manifest, model_config, config, tmp_path / "run", tasks=tasks)
    run = predict_manifest(trained.model, manifest, tmp_path / "pred", image_size=SIZE)
    scores = evaluate_predictions(manifest, run, report=False)
    for task in tasks:
        dataset = scores[task]["summary"]["dataset"]
        assert dataset["unit"] == "mm" and np.isfinite(dataset["mre"]) and dataset["mre"] > 0
        assert 0.0 <= dataset["sdr_2"] <= dataset["sdr_4"] <= 1.0
        rows = read_table(Path(run.tasks[task]["predictions"]))
        assert all(len(r["landmarks"].split(";")) == 3 for r in rows)
    loaded = load_trained(tmp_path / "run" / "model.safetensors", manifest)
    assert loaded.model.config.landmark_spaces == dict.fromkeys(tasks, "spine")
    assert loaded.model.config.heads.landmark_sigma == 2.0
    image = torch.randn(1, 1, SIZE, SIZE)
    with torch.no_grad():
        a = trained.model.decode("upper_back", trained.model(image, "upper_back"))[0]
        b = loaded.model.decode("upper_back", loaded.model(image, "upper_back"))[0]
    np.testing.assert_allclose(a, b)


def test_cli_passes_semi_supervised_augment_and_sigma(union, tmp_path):
    from medfleet.cli.app import app

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["train", "--manifest", str(union), "--out", str(out), "--tasks",
         "upper_back,organ_lesion_seg", "--image-size", str(SIZE), "--batch-size", "2",
         "--steps", "2", "--threads", "1", "--no-evaluation-report", "--format", "json",
         "--semi-supervised", "fixmatch", "--augment", "light", "--landmark-sigma", "2.5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert resolved["train"]["semi_supervised"] == "fixmatch"
    assert resolved["train"]["augment"] == "light"
    assert resolved["model"]["heads"]["landmark_sigma"] == 2.5
    summary = json.loads(result.output[result.output.index("{") :])
    metrics = summary["paradigms"]["unified"]["models"][0]["test_metrics"]
    assert set(metrics) == {"upper_back", "organ_lesion_seg"}
