"""``medfleet predict --images DIR``: a plain folder of images, no manifest, no references."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medfleet.cli.app import app
from medfleet.tasks import Manifest
from medfleet.train.datasets import load_task_rows

TASKS = ["organ_lesion_seg", "lesion_cls"]


def _run(*args: object):
    return CliRunner().invoke(app, ["predict", *map(str, args)])


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(manifest, model file, folder of the test images of both tasks)."""
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    from medfleet.models import ModelConfig, build_model

    root = tmp_path_factory.mktemp("images_phantoms")
    path = generate_phantoms(
        root, PhantomConfig(tasks=TASKS), sites=1, cases_per_site=4, size=32, seed=0
    )
    manifest = Manifest.load(path)
    torch.manual_seed(0)
    model_file = build_model(manifest, ModelConfig(image_size=32), tasks=TASKS).save(
        root / "model.safetensors"
    )
    folder = tmp_path_factory.mktemp("scans")
    for row in load_task_rows(manifest, "organ_lesion_seg", ("train", "val", "test")):
        source = manifest.resolve(row["image"])
        shutil.copy(source, folder / f"{row['case_id']}{source.suffix}")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    return path, model_file, folder


def _listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def test_predict_a_folder_of_images(setup, tmp_path):
    _, model_file, folder = setup
    before = _listing(folder)
    out = tmp_path / "pred"
    result = _run("--model", model_file, "--images", folder, "--out", out, "--batch-size", 2,
                  "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _listing(folder) == before  # nothing written into the folder
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["split"] is None and summary["images"] == str(folder)
    stems = sorted(p.name.removesuffix(".png") for p in folder.glob("*.png"))
    assert stems
    for name in TASKS:
        info = summary["tasks"][name]
        assert info["n_cases"] == len(stems) and info["n_reference"] == 0
        assert info["reference"] is None and info["evaluate"] is None
        assert not (out / name / "reference.csv").exists()
        lines = (out / name / "predictions.csv").read_text().splitlines()
        assert sorted(line.split(",")[0] for line in lines[1:]) == stems
    assert sorted(p.stem for p in (out / "organ_lesion_seg" / "masks").glob("*.png")) == stems
    text = _run("--model", model_file, "--images", folder, "--out", tmp_path / "t",
                "--tasks", "lesion_cls")  # fmt: skip
    assert text.exit_code == 0, text.output
    assert "no references" in text.output
    assert json.loads((tmp_path / "t" / "predictions.json").read_text())["tasks"].keys() == {
        "lesion_cls"
    }


def test_images_refuse_evaluate_and_a_split(setup, tmp_path):
    _, model_file, folder = setup
    result = _run("--model", model_file, "--images", folder, "--out", tmp_path / "p", "--evaluate")
    assert result.exit_code == 2 and "--evaluate" in result.stderr and "fix:" in result.stderr
    result = _run("--model", model_file, "--images", folder, "--out", tmp_path / "p",
                  "--split", "val")  # fmt: skip
    assert result.exit_code == 2 and "--split" in result.stderr
    assert not (tmp_path / "p").exists()


def test_exactly_one_of_manifest_and_images(setup, tmp_path):
    manifest, model_file, folder = setup
    for extra in ([], ["--manifest", manifest, "--images", folder]):
        result = _run("--model", model_file, "--out", tmp_path / "p", *extra)
        assert result.exit_code == 2, result.output
        assert "exactly one of --manifest" in result.stderr and "--images" in result.stderr
    assert not (tmp_path / "p").exists()


def test_an_empty_folder_is_named(setup, tmp_path):
    _, model_file, _ = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    result = _run("--model", model_file, "--images", empty, "--out", tmp_path / "p")
    assert result.exit_code == 1
    assert str(empty) in result.stderr and "holds no image file" in result.stderr
    assert "fix:" in result.stderr and "Traceback" not in result.output


def test_an_unreadable_image_is_named(setup, tmp_path):
    _, model_file, folder = setup
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "zz_broken.png").write_bytes(b"not a png at all")
    result = _run("--model", model_file, "--images", bad, "--out", tmp_path / "p")
    assert result.exit_code == 1
    assert "zz_broken.png" in result.stderr and "Traceback" not in result.output


def test_two_files_of_one_case_id_are_refused(setup, tmp_path):
    _, model_file, folder = setup
    twice = tmp_path / "twice"
    twice.mkdir()
    first = next(folder.glob("*.png"))
    shutil.copy(first, twice / first.name)
    shutil.copy(first, twice / f"{first.stem}.tif")
    result = _run("--model", model_file, "--images", twice, "--out", tmp_path / "p")
    assert result.exit_code == 1 and "same case id" in result.stderr and "fix:" in result.stderr


def test_a_training_checkpoint_is_refused_with_the_fix(setup, tmp_path):
    manifest, _, folder = setup
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--manifest", str(manifest), "--out", str(run),
                                      "--tasks", "lesion_cls", "--steps", "1", "--image-size",
                                      "32", "--batch-size", "2", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    checkpoint = next(run.rglob("last.safetensors"))
    result = _run("--model", checkpoint, "--images", folder, "--out", tmp_path / "p")
    assert result.exit_code == 1
    assert "training checkpoint" in result.stderr and "--manifest" in result.stderr
    model_dir = next(run.rglob("model.safetensors")).parent
    result = _run("--model", model_dir, "--images", folder, "--out", tmp_path / "q")
    assert result.exit_code == 0, result.output
