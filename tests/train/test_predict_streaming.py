"""Prediction streams: same files as the list-based path, bounded live predictions, ``all``."""

from __future__ import annotations

import csv
import filecmp
import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.tables import SPLITS
from medfleet.tasks import Manifest
from medfleet.train import predict as predict_module
from medfleet.train.datasets import TaskDataset, load_task_rows
from medfleet.train.predict import (
    CasePrediction,
    TaskPredictionWriter,
    iter_predictions,
    predict_dataset,
    predict_manifest,
    write_task_predictions,
    write_task_reference,
)

TASKS = ["organ_lesion_seg", "lesion_cls", "nodule_det", "head_circumference", "spine_landmarks"]


def _model(manifest: Manifest, tasks: list[str] = TASKS):
    from medfleet.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(manifest, ModelConfig(image_size=32), tasks=tasks)
    if "head_circumference" in tasks:
        model.set_target_stats("head_circumference", 200.0, 30.0)
    return model


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV's header and rows without ``runtime_s`` (a wall time, never reproducible)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [{k: v for k, v in r.items() if k != "runtime_s"} for r in reader]
        return list(reader.fieldnames or []), rows


def _assert_same_files(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.name == "predictions.csv":
            assert _rows(a / rel) == _rows(b / rel), rel
        elif rel.suffix == ".npz":  # a zip: its members carry the time they were written
            with np.load(a / rel) as x, np.load(b / rel) as y:
                assert sorted(x) == sorted(y)
                for key in x:
                    assert x[key].dtype == y[key].dtype and np.array_equal(x[key], y[key]), rel
        else:
            assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def test_a_streamed_run_writes_what_the_list_based_path_writes(tiny_phantoms, tmp_path):
    manifest = Manifest.load(tiny_phantoms)
    streamed = tmp_path / "streamed"
    run = predict_manifest(_model(manifest), manifest, streamed, image_size=32, batch_size=3)
    listed = tmp_path / "listed"
    model = _model(manifest)
    for name in TASKS:  # every prediction in memory first, then written (the former path)
        ds = TaskDataset(manifest, name, ("test",), 32, labelled_only=False, cache=False)
        preds = predict_dataset(model, ds, batch_size=3, previews=True)
        assert isinstance(preds, list) and len(preds) == len(ds)
        write_task_predictions(ds.spec, preds, listed / name)
        write_task_reference(manifest, ds.spec, ds.rows, listed / name)
    (streamed / "predictions.json").unlink()
    _assert_same_files(streamed, listed)
    assert set(run.tasks) == set(TASKS)


def test_live_predictions_never_exceed_the_batch_size(tiny_phantoms, tmp_path, monkeypatch):
    manifest = Manifest.load(tiny_phantoms)
    live: list[weakref.ref[CasePrediction]] = []  # (a dataclass is not hashable)
    counts: list[int] = []

    def count() -> None:
        gc.collect()
        counts.append(sum(r() is not None for r in live))

    original_to_original = predict_module.to_original
    original_add = TaskPredictionWriter.add

    def tracked(*args, **kwargs):
        pred = original_to_original(*args, **kwargs)
        live.append(weakref.ref(pred))
        count()
        return pred

    def add(self, pred):
        count()
        original_add(self, pred)

    monkeypatch.setattr(predict_module, "to_original", tracked)
    monkeypatch.setattr(TaskPredictionWriter, "add", add)
    name = "organ_lesion_seg"  # full-resolution probability maps: the heavy case
    n_rows = len(load_task_rows(manifest, name, SPLITS, labelled_only=False))
    assert n_rows >= 10
    run = predict_manifest(
        _model(manifest, [name]), manifest, tmp_path / "p", split="all", image_size=32,
        batch_size=2,
    )  # fmt: skip
    assert run.tasks[name]["n_cases"] == n_rows
    assert len(counts) == 2 * n_rows and max(counts) <= 2
    # the counter sees what a list of every prediction holds
    counts.clear()
    ds = TaskDataset(manifest, name, SPLITS, 32, labelled_only=False, cache=False)
    kept = predict_dataset(_model(manifest, [name]), ds, batch_size=2)
    count()
    assert counts[-1] == len(kept) == n_rows


def test_iter_predictions_restores_the_mode_and_leaves_grad_to_the_consumer(tiny_phantoms):
    manifest = Manifest.load(tiny_phantoms)
    model = _model(manifest, ["lesion_cls"])
    model.train()
    ds = TaskDataset(manifest, "lesion_cls", ("test",), 32, labelled_only=False, cache=False)
    modes = []
    for _ in iter_predictions(model, ds, batch_size=2):
        modes.append((model.training, torch.is_grad_enabled()))
    assert modes and set(modes) == {(False, True)}
    assert model.training
    stream = iter_predictions(model, ds, batch_size=2)
    next(stream)
    stream.close()  # stopped early
    assert model.training


def test_split_all_predicts_every_row_and_references_the_labelled_ones(tiny_phantoms, tmp_path):
    manifest = Manifest.load(tiny_phantoms)
    tasks = ["lesion_cls", "head_circumference"]
    run = predict_manifest(
        _model(manifest, tasks), manifest, tmp_path, split="all", tasks=tasks, image_size=32,
        batch_size=4,
    )  # fmt: skip
    assert json.loads((tmp_path / "predictions.json").read_text())["split"] == "all"
    for name in tasks:
        every = load_task_rows(manifest, name, SPLITS, labelled_only=False)
        labelled = load_task_rows(manifest, name, SPLITS)
        assert {r["split"] for r in every} == set(SPLITS)
        info = run.tasks[name]
        assert info["n_cases"] == len(every) and info["n_reference"] == len(labelled)
        _, rows = _rows(Path(info["predictions"]))
        assert [r["case_id"] for r in rows] == [r["case_id"] for r in every]


def test_a_case_id_twice_in_a_task_is_refused(tmp_path):
    from medfleet.tasks import TaskSpec

    spec = TaskSpec(name="r", type="regression", table="r.csv", unit="mm")
    writer = TaskPredictionWriter(spec, tmp_path / "r")
    writer.add(CasePrediction("a", 0.1, (1.0, 1.0), value=1.0))
    with pytest.raises(MedfleetError, match=r"'a' comes twice.*fix:"):
        writer.add(CasePrediction("a", 0.1, (1.0, 1.0), value=2.0))
    assert not (tmp_path / "r" / "predictions.csv").exists()
