"""Bad model, checkpoint and weights files through ``medfleet predict`` and ``medfleet train``.

A crafted file must be refused before anything in it runs; a damaged one must end in one line
naming the file and the fix (an empty checkpoint once printed only "Aborted.").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.bad_input.harness import assert_refused, run_cli

from medfleet.utils.tensorfile import write_tensor_file

TASK = "lesion_cls"


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medfleet.data.phantoms import generate_phantoms

    return generate_phantoms(
        tmp_path_factory.mktemp("bad_ckpt_phantoms"), sites=2, cases_per_site=5, size=32
    )


def _train(phantoms: Path, out: Path, *extra: str):
    return run_cli(
        ["train", "-m", phantoms, "--tasks", TASK, "--paradigm", "unified", "--out", out,
         "--steps", "1", "--batch-size", "4", "--image-size", "32", "--threads", "1",
         "--no-evaluation-report", "--format", "json", *extra]
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad_ckpt_run")
    outcome = _train(phantoms, out)
    assert outcome.exit_code == 0, outcome.describe()
    return out / "unified" / "unified"


def _predict(checkpoint: Path, phantoms: Path, out: Path):
    return run_cli(
        ["predict", "--model", checkpoint, "-m", phantoms, "--out", out, "--split", "test",
         "--threads", "1"]
    )  # fmt: skip


def _crafted(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "medfleet-unified-model", "x": _RunsCode(marker)}, path)
    return path


# ----------------------------------------------------------------------- predict
@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "last.pt"])
def test_predict_refuses_a_crafted_model_file(phantoms, tmp_path, name):
    marker = tmp_path / "ran"
    path = _crafted(tmp_path / name, marker)
    error = assert_refused(_predict(path, phantoms, tmp_path / "pred"), str(path), "refused")
    assert "run code" in error
    assert not marker.exists() and not (tmp_path / "pred").exists()


def test_predict_refuses_a_crafted_legacy_model_in_a_run_folder(phantoms, tmp_path):
    marker = tmp_path / "ran"
    _crafted(tmp_path / "run" / "model.pt", marker)
    assert_refused(_predict(tmp_path / "run", phantoms, tmp_path / "pred"), "model.pt", "refused")
    assert not marker.exists()


def test_predict_with_a_truncated_model(run_dir, phantoms, tmp_path):
    path = tmp_path / "model.safetensors"
    data = (run_dir / "model.safetensors").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused(_predict(path, phantoms, tmp_path / "pred"), str(path), "truncated", "fix:")
    assert not (tmp_path / "pred").exists()


def test_predict_with_an_empty_model(phantoms, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    assert_refused(_predict(path, phantoms, tmp_path / "pred"), str(path), "empty")


def test_predict_with_plain_safetensors_weights(phantoms, tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    assert_refused(_predict(path, phantoms, tmp_path / "pred"), str(path), "--weights")


def test_predict_with_a_site_state_file(phantoms, tmp_path):
    path = write_tensor_file(tmp_path / "local.safetensors", {"state": {}}, "site-state")
    assert_refused(_predict(path, phantoms, tmp_path / "pred"), str(path), "site-state")


def test_predict_with_a_folder_without_a_model(phantoms, tmp_path):
    (tmp_path / "empty_run").mkdir()
    assert_refused(
        _predict(tmp_path / "empty_run", phantoms, tmp_path / "pred"), "model.safetensors"
    )


def test_predict_with_a_damaged_model_header(run_dir, phantoms, tmp_path):
    from medfleet.utils.tensorfile import read_tensor_file

    payload = read_tensor_file(run_dir / "model.safetensors", ("unified-model",))
    payload.pop("__kind__")
    payload["config"] = {"backbone": 42}
    path = write_tensor_file(tmp_path / "model.safetensors", payload, "unified-model")
    assert_refused(_predict(path, phantoms, tmp_path / "pred"), str(path), "configuration")


# ------------------------------------------------------------------------ resume
def _resumable(run_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the --out folder of the trained run, and its checkpoint."""
    out = tmp_path / "out"
    shutil.copytree(run_dir.parent.parent, out)
    return out, out / "unified" / "unified" / "checkpoints" / "last.safetensors"


@pytest.mark.parametrize(
    "damage",
    ["empty", "truncated", "garbage", "crafted-pickle", "crafted-legacy-name", "other-kind"],
)
def test_resume_from_a_bad_checkpoint(run_dir, phantoms, tmp_path, damage):
    out, checkpoint = _resumable(run_dir, tmp_path)
    marker = tmp_path / "ran"
    named = checkpoint
    data = checkpoint.read_bytes()
    if damage == "empty":
        checkpoint.write_bytes(b"")
    elif damage == "truncated":
        checkpoint.write_bytes(data[: len(data) - 100])
    elif damage == "garbage":
        checkpoint.write_bytes(os.urandom(2048))
    elif damage == "crafted-pickle":
        _crafted(checkpoint, marker)
    elif damage == "crafted-legacy-name":
        checkpoint.unlink()
        named = _crafted(checkpoint.with_suffix(".pt"), marker)
    else:
        write_tensor_file(checkpoint, {"format": "x"}, "unified-model")
    model = out / "unified" / "unified" / "model.safetensors"
    before = model.read_bytes()
    error = assert_refused(_train(phantoms, out, "--resume"), str(named), "fix:")
    assert "Aborted" not in error
    assert not marker.exists()
    assert model.read_bytes() == before  # nothing replaced


def test_resume_with_a_checkpoint_of_another_task_list(run_dir, phantoms, tmp_path):
    out, checkpoint = _resumable(run_dir, tmp_path)
    from medfleet.utils.tensorfile import read_tensor_file

    state = read_tensor_file(checkpoint, ("training-checkpoint",))
    state.pop("__kind__")
    state["tasks"] = ["head_circumference"]
    write_tensor_file(checkpoint, state, "training-checkpoint")
    assert_refused(_train(phantoms, out, "--resume"), str(checkpoint), "head_circumference")


def test_resume_with_a_damaged_checkpoint_body(run_dir, phantoms, tmp_path):
    out, checkpoint = _resumable(run_dir, tmp_path)
    from medfleet.utils.tensorfile import read_tensor_file

    state = read_tensor_file(checkpoint, ("training-checkpoint",))
    state.pop("__kind__")
    del state["optimizer"]
    write_tensor_file(checkpoint, state, "training-checkpoint")
    assert_refused(_train(phantoms, out, "--resume"), str(checkpoint), "damaged")


# ----------------------------------------------------------------------- weights
def test_train_refuses_crafted_pretrained_weights(phantoms, tmp_path):
    marker = tmp_path / "ran"
    weights = tmp_path / "backbone.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _RunsCode(marker)}, weights)
    outcome = _train(phantoms, tmp_path / "out", "--weights", weights)
    assert_refused(outcome, str(weights), "refused")
    assert not marker.exists()
