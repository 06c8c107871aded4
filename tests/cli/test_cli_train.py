"""``medfleet train`` and ``medfleet predict`` on phantoms, bad input, kill and resume, torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medfleet.cli.app import app
from medfleet.utils.tensorfile import read_tensor_file

KINDS = ("training-checkpoint", "unified-model")

RUNNER = CliRunner()
TASKS = "lesion_cls,head_circumference,intrapartum_seg"


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medfleet.data.phantoms import generate_phantoms

    return generate_phantoms(
        tmp_path_factory.mktemp("cli_train_phantoms"), sites=2, cases_per_site=7, size=32
    )


@pytest.fixture(scope="module")
def experiment(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("experiment")
    result = RUNNER.invoke(
        app,
        ["train", "--manifest", str(phantoms), "--paradigm", "all", "--out", str(out),
         "--tasks", TASKS, "--steps", "2", "--batch-size", "4", "--image-size", "32",
         "--n-resamples", "100", "--no-evaluation-report", "--threads", "1",
         "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_paradigm_all_writes_the_transfer_table_and_report(experiment):
    out, summary = experiment
    models = {p: [m["name"] for m in info["models"]] for p, info in summary["paradigms"].items()}
    assert models == {
        "task-specific": ["lesion_cls", "head_circumference", "intrapartum_seg"],
        "grouped": ["breast", "obstetrics"],
        "unified": ["unified"],
    }
    with open(out / "transfer" / "transfer.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    per_task = {(r["paradigm"], r["name"]) for r in rows if r["level"] == "task"}
    assert per_task == {(p, t) for p in ("grouped", "unified") for t in TASKS.split(",")}
    levels = {r["level"] for r in rows}
    assert levels == {"task", "type", "group", "all"}
    page = (out / "transfer" / "report.html").read_text()
    assert "Transfer analysis" in page and "Cost per paradigm" in page
    costs = summary["paradigms"]
    assert costs["unified"]["costs"]["models"] == 1
    assert costs["unified"]["costs"]["parameters"] < costs["task-specific"]["costs"]["parameters"]
    for paradigm in models:
        assert (out / paradigm / "summary.json").is_file()
    assert (out / "unified" / "unified" / "model.safetensors").is_file()
    assert (out / "run_config.yaml").is_file()


def test_predict_then_evaluate(experiment, phantoms, tmp_path):
    out, _ = experiment
    pred = tmp_path / "pred"
    result = RUNNER.invoke(
        app,
        ["predict", "--model", str(out / "unified" / "unified" / "model.safetensors"),
         "--manifest", str(phantoms), "--split", "test", "--out", str(pred), "--format", "json",
         "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary["tasks"]) == set(TASKS.split(","))
    task = pred / "head_circumference"
    scored = RUNNER.invoke(
        app,
        ["evaluate", "--task-type", "regression", "--pred", str(task / "predictions.csv"),
         "--gt", str(task / "reference.csv"), "--out", str(tmp_path / "ev"), "--format", "json"],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    mae = json.loads(scored.stdout)["summary"]["dataset"]["mae"]
    with open(task / "predictions.csv", newline="") as fh:
        pred_values = {r["case_id"]: float(r["value"]) for r in csv.DictReader(fh)}
    with open(task / "reference.csv", newline="") as fh:
        truth = {r["case_id"]: float(r["value"]) for r in csv.DictReader(fh)}
    expected = np.mean([abs(pred_values[c] - truth[c]) for c in truth])
    assert mae == pytest.approx(expected, rel=1e-6)
    seg = pred / "intrapartum_seg"
    scored = RUNNER.invoke(
        app,
        ["evaluate", "--task-type", "segmentation", "--pred", str(seg / "masks"),
         "--gt", str(seg / "reference_masks"), "--meta", str(seg / "reference.csv"),
         "--out", str(tmp_path / "ev_seg"), "--format", "json"],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output


def test_missing_target_column_fails_before_training(phantoms, tmp_path):
    from medfleet.tables import read_table, write_table
    from medfleet.tasks import Manifest

    manifest = Manifest.load(phantoms)
    spec = manifest.task("lesion_cls")
    rows = read_table(manifest.table_path(spec))
    for row in rows:
        row["diagnosis"] = row.pop("label")
        row["image"] = str(manifest.resolve(row["image"]))
    write_table(tmp_path / "lesion_cls.csv", rows)
    broken = manifest.model_copy(update={"tasks": [spec]})
    path = broken.save(tmp_path / "manifest.yaml")
    result = RUNNER.invoke(
        app,
        ["train", "--manifest", str(path), "--out", str(tmp_path / "out"), "--steps", "1",
         "--threads", "1"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "lacks column(s) ['label']" in result.output and "fix:" in result.output
    assert not (tmp_path / "out" / "unified" / "unified" / "checkpoints").exists()


def test_semi_supervised_options_reach_the_run(phantoms, tmp_path):
    import shutil

    from medfleet.tasks import Manifest
    from medfleet.train.semi import drop_labels

    data = tmp_path / "data"
    shutil.copytree(phantoms.parent, data)
    copy = data / phantoms.name
    drop_labels(Manifest.load(copy), "intrapartum_seg", 0.3, seed=0)
    out = tmp_path / "out"
    result = RUNNER.invoke(
        app,
        ["train", "--manifest", str(copy), "--out", str(out), "--tasks", "intrapartum_seg",
         "--steps", "2", "--batch-size", "2", "--image-size", "32", "--threads", "1",
         "--semi-supervised", "fixmatch", "--cutmix", "0.25", "--no-evaluation-report"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads((out / "unified" / "unified" / "training.json").read_text())
    assert info["train_config"]["semi_supervised"] == "fixmatch"
    assert info["train_config"]["cutmix"] == 0.25
    bad = RUNNER.invoke(app, ["train", "--manifest", str(copy), "--out", str(out / "x"),
                              "--semi-supervised", "fixmatch", "--cutmix", "1.5"])  # fmt: skip
    assert bad.exit_code == 2
    alone = RUNNER.invoke(app, ["train", "--manifest", str(copy), "--out", str(out / "y"),
                                "--cutmix", "0.5"])  # fmt: skip
    assert alone.exit_code == 2 and "--semi-supervised" in alone.output
    assert not (out / "y").exists()


def _train_command(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "medfleet", "train", "--manifest", str(manifest),
            "--out", str(out), "--tasks", "lesion_cls,spine_landmarks", "--image-size", "32",
            "--batch-size", "2", "--steps", "12", "--threads", "1", "--config",
            str(out.parent / "run.yaml"), "--no-evaluation-report", *extra]  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(phantoms, tmp_path):
    import torch

    (tmp_path / "run.yaml").write_text(
        "train: {checkpoint_every: 1, batches_per_epoch: 8, val_every: 0, lr: 0.001}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_train_command(phantoms, straight), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    ckpt = killed / "unified" / "unified" / "checkpoints" / "last.safetensors"
    proc = subprocess.Popen(_train_command(phantoms, killed), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            try:
                step = read_tensor_file(ckpt, KINDS)["step"]
            except Exception:  # the file is being replaced; try again
                step = 0
            if step >= 3:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert 3 <= read_tensor_file(ckpt, KINDS)["step"] < 12
    subprocess.run(
        _train_command(phantoms, killed, "--resume"), check=True, env=env, capture_output=True
    )
    model = ("unified", "unified", "model.safetensors")
    a = read_tensor_file(straight.joinpath(*model), KINDS)["state_dict"]
    b = read_tensor_file(killed.joinpath(*model), KINDS)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


_DDP_SCRIPT = """
import json, sys, torch
from medfleet.models import ModelConfig
from medfleet.tasks import Manifest
from medfleet.train.config import TrainConfig
from medfleet.train.run import train_model
manifest = Manifest.load(sys.argv[1])
config = TrainConfig(max_steps=3, batch_size=2, val_every=0, threads=1, device="cpu")
trained = train_model(manifest, ModelConfig(image_size=32), config, sys.argv[2],
                      tasks=["lesion_cls", "head_circumference"])
digest = float(sum(p.double().sum() for p in trained.model.parameters()))
print(json.dumps({"digest": digest, "world": trained.info["world_size"]}))
"""


@pytest.mark.slow
def test_two_process_torchrun_on_cpu(phantoms, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", "29533", str(script), str(phantoms), str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 2 and all(r["world"] == 2 for r in reports)
    assert reports[0]["digest"] == reports[1]["digest"]  # replicas stay identical
    assert (tmp_path / "run" / "model.safetensors").is_file()
