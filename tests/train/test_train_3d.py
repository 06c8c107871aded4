"""Volumes (dim: 3) through datasets, trainer, predict and evaluate, on tiny 3D phantoms."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medfleet.data.io import read_image
from medfleet.tasks import Manifest

SEG, CLS, REG = "organ_lesion_seg3d", "lesion_cls3d", "lesion_volume"
TASKS_3D = [SEG, CLS, REG]


@pytest.fixture(scope="module")
def phantoms_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3D phantoms (2 sites x 4 cases, 12 x 32 x 32 voxels); returns the manifest path."""
    from medfleet.data.phantoms import generate_phantoms

    return generate_phantoms(
        tmp_path_factory.mktemp("ph3d"), dim=3, sites=2, cases_per_site=4, size=32, seed=0
    )


@pytest.fixture(scope="module")
def mixed_manifest(phantoms_3d: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """The 3D manifest plus the 2D ``lesion_cls`` task (its table rewritten with absolute paths)."""
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    path2 = generate_phantoms(
        tmp_path_factory.mktemp("ph2d"),
        PhantomConfig(tasks=["lesion_cls"]),
        sites=2,
        cases_per_site=4,
        size=32,
    )
    m2, m3 = Manifest.load(path2), Manifest.load(phantoms_3d)
    spec2 = m2.task("lesion_cls")
    with open(m2.table_path(spec2), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["image"] = str(m2.resolve(row["image"]))
    table = phantoms_3d.parent / "lesion_cls_2d.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    task2 = spec2.model_copy(update={"table": table.name})
    return m3.model_copy(update={"tasks": [*m3.tasks, task2]})


def test_volume_dataset_resamples_slices_linearly_and_masks_nearest(phantoms_3d: Path) -> None:
    from medfleet.train.datasets import TaskDataset, collate

    m = Manifest.load(phantoms_3d)
    ds = TaskDataset(m, SEG, ("train", "val", "test"), 32, normalisation="none", slices=8)
    sample = ds[0]
    row = ds.rows[0]
    image = read_image(m.resolve(row["image"]))
    mask = read_image(m.resolve(row["mask"])).array.astype(np.int64)
    assert image.array.shape == (12, 32, 32)
    assert tuple(sample.image.shape) == (8, 1, 32, 32)
    assert sample.geometry.original == (12, 32, 32)
    assert sample.spacing == pytest.approx(tuple(float(v) for v in row["spacing"].split(",")))
    # nearest slice of model slice j: floor((j + 0.5) * 12 / 8), computed by hand
    picked = [0, 2, 3, 5, 6, 8, 9, 11]
    assert np.array_equal(sample.target.numpy(), mask[picked])  # labels 0, 1, 2 = indices
    # linear resampling to 24 slices: model slice 2k+1 sits at source k + 0.25
    ds24 = TaskDataset(m, SEG, ("train", "val", "test"), 32, normalisation="none", slices=24)
    vol = ds24[0].image[:, 0].numpy()
    raw = image.array.astype(np.float64)
    k = 5
    np.testing.assert_allclose(vol[2 * k + 1], 0.75 * raw[k] + 0.25 * raw[k + 1], atol=1e-4)
    batch = collate(ds.spec, [ds[0], ds[1]])
    assert tuple(batch.images.shape) == (2, 8, 1, 32, 32)
    assert tuple(batch.targets.shape) == (2, 8, 32, 32)


def test_exact_upsampling_maps_back_to_the_reference_mask(phantoms_3d: Path) -> None:
    """In-plane 2x and slice 2x by nearest, back by (tri)linear: the original labels return."""
    from medfleet.train.datasets import TaskDataset
    from medfleet.train.predict import to_original

    m = Manifest.load(phantoms_3d)
    ds = TaskDataset(m, SEG, ("train", "val", "test"), 64, slices=24)
    for i in range(2):
        s = ds[i]
        target = s.target.numpy()
        assert target.shape == (24, 64, 64)
        probs = np.stack([(target == c).astype(np.float32) for c in range(3)])
        pred = to_original(ds.spec, {"probs": probs}, s.geometry, s.case_id, s.spacing)
        ref = read_image(m.resolve(ds.rows[i]["mask"])).array
        assert np.array_equal(pred.mask, ref)


def test_3d_detection_and_landmarks_are_refused(phantoms_3d: Path) -> None:
    from medfleet.errors import MedfleetError
    from medfleet.models import ModelConfig, build_model
    from medfleet.train.datasets import DataError, TaskDataset

    m = Manifest.load(phantoms_3d)
    for task, kind in (("nodule_det3d", "detection"), ("tetra_landmarks", "landmarks")):
        with pytest.raises(DataError, match=f"3D {kind} is not supported.*fix: use dim: 2"):
            TaskDataset(m, task, ("train",), 32)
        with pytest.raises(MedfleetError, match=f"3D {kind} is not supported"):
            build_model(m, ModelConfig(image_size=32), tasks=[task])


def _fixed_batches(model, manifest: Manifest, tasks: list[str]) -> dict:
    from medfleet.train.datasets import TaskDataset, collate, regression_stats

    batches = {}
    for task in tasks:
        ds = TaskDataset(
            manifest,
            task,
            ("train",),
            32,
            mask_encoder=model.encode_mask,
            slices=model.config.slices,
        )
        if ds.spec.type.value == "regression":
            model.set_target_stats(task, *regression_stats(ds))
        batches[task] = collate(ds.spec, [ds[i] for i in range(min(3, len(ds)))])
    return batches


def test_unified_moe_trains_3d_and_2d_tasks_together(mixed_manifest: Manifest, tmp_path) -> None:
    from medfleet.models import ModelConfig, build_model
    from medfleet.models.config import MoEConfig
    from medfleet.train.config import TrainConfig
    from medfleet.train.trainer import Trainer, seed_everything

    tasks = [*TASKS_3D, "lesion_cls"]
    seed_everything(0)
    config = ModelConfig(
        image_size=32, slices=6, moe=MoEConfig(num_experts=2, top_k=1, blocks=[-1])
    )
    model = build_model(mixed_manifest, config, tasks=tasks)
    batches = _fixed_batches(model, mixed_manifest, tasks)
    assert tuple(batches[SEG].images.shape) == (3, 6, 1, 32, 32)
    assert batches["lesion_cls"].images.ndim == 4

    def losses() -> dict[str, float]:
        model.train()
        out = {}
        with torch.no_grad():
            for task, b in batches.items():
                out[task] = float(model.loss(task, model(b.images, task), b.targets)[0])
        return out

    with torch.no_grad():
        seg_out = model(batches[SEG].images, SEG)
        assert tuple(seg_out["logits"].shape) == (3, 3, 6, 32, 32)
        assert tuple(model(batches[CLS].images, CLS)["logits"].shape) == (3, 3)
    before = losses()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(8):
        for task, b in batches.items():
            opt.zero_grad()
            loss = model.loss(task, model(b.images, task), b.targets)[0] + model.aux_loss()
            loss.backward()
            opt.step()
    after = losses()
    for task in tasks:
        assert after[task] < before[task], (task, before[task], after[task])
    usage = model.expert_usage()
    assert all(usage[t].sum() > 0 for t in tasks)

    # the trainer runs the same mixed set end to end, with 3D validation metrics
    model2 = build_model(mixed_manifest, config, tasks=tasks)
    trainer = Trainer(
        model2,
        mixed_manifest,
        TrainConfig(max_steps=4, batch_size=2, device="cpu", tensorboard=False, sampling="uniform"),
        tmp_path / "run",
        tasks=tasks,
    )
    result = trainer.fit()
    assert result.steps == 4
    assert set(result.val_metrics[SEG]) == {"dice"}
    assert 0.0 <= result.val_metrics[SEG]["dice"] <= 1.0
    assert "balanced_accuracy" in result.val_metrics[CLS]
    assert np.isfinite(result.val_metrics[REG]["mae"])


def test_predict_writes_volumes_on_the_reference_grid(phantoms_3d: Path, tmp_path) -> None:
    from medfleet.models import ModelConfig, build_model
    from medfleet.train.predict import evaluate_predictions, predict_manifest

    m = Manifest.load(phantoms_3d)
    model = build_model(m, ModelConfig(image_size=32, slices=5), tasks=TASKS_3D)
    run = predict_manifest(model, m, tmp_path / "pred", split="val", image_size=32)
    seg = run.tasks[SEG]
    masks = sorted(Path(seg["masks"]).glob("*.nii.gz"))
    assert len(masks) == seg["n_cases"] >= 1
    for path in masks:
        pred = read_image(path)
        ref = read_image(Path(seg["reference_masks"]) / path.name)
        assert pred.array.shape == ref.array.shape == (12, 32, 32)
        assert pred.spacing == pytest.approx(ref.spacing)
        np.testing.assert_allclose(pred.meta["affine"], ref.meta["affine"], atol=1e-5)
        probs = np.load(Path(seg["probs"]) / path.name.replace(".nii.gz", ".npz"))["probs"]
        assert probs.shape == (3, 12, 32, 32)
    with open(run.tasks[CLS]["predictions"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"label", "prob_benign", "prob_malignant", "prob_normal"} <= set(rows[0])
    results = evaluate_predictions(m, run, report=False)
    assert set(results) == set(TASKS_3D)


def test_perfect_3d_predictions_score_dice_one(phantoms_3d: Path, tmp_path) -> None:
    from medfleet.train.datasets import load_task_rows
    from medfleet.train.predict import (
        CasePrediction,
        PredictionRun,
        evaluate_predictions,
        write_task_predictions,
        write_task_reference,
    )

    m = Manifest.load(phantoms_3d)
    spec = m.task(SEG)
    rows = load_task_rows(m, spec, ("train", "val", "test"))
    preds = []
    for row in rows:
        ref = read_image(m.resolve(row["mask"]))
        onehot = np.stack([(ref.array == v).astype(np.float32) for v in (0, 1, 2)])
        preds.append(
            CasePrediction(
                row["case_id"], 0.0, ref.spacing, mask=ref.array, probs=onehot,
                affine=ref.meta["affine"],
            )
        )  # fmt: skip
    task_dir = tmp_path / "pred" / SEG
    info = write_task_predictions(spec, preds, task_dir)
    info.update(write_task_reference(m, spec, rows, task_dir))
    run = PredictionRun(tmp_path / "pred", "all", {SEG: info})
    result = evaluate_predictions(m, run, report=False)[SEG]
    summary = json.loads(Path(result["summary_json"]).read_text())
    for label in ("1", "2"):
        assert summary["metrics"][label]["dice"]["mean"] == pytest.approx(1.0)
        assert summary["metrics"][label]["dice"]["n_valid"] == len(rows)
