"""Bad-input corpus for ``medfleet train``, ``medfleet predict`` and ``medfleet report``.

Tiny phantoms (2 sites, 7 cases, 32 pixels) and a 2-step ``vit-tiny`` model keep the corpus
fast. Every refusal is one ``error:`` line (or a usage error) naming the option, file, task or
case, with no traceback; a refusal before training leaves no model behind, and a refused
``--out`` leaves nothing at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.bad_input.builders import Rows, make_phantoms, one_task_manifest, row_of
from tests.bad_input.harness import (
    Outcome,
    assert_nothing_half_written,
    assert_refused,
    assert_usage_error,
    run_cli,
)

FAST = ["--image-size", "32", "--threads", "1", "--no-evaluation-report"]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantoms(tmp_path_factory.mktemp("bad_train_phantoms"))


@pytest.fixture(scope="module")
def trained(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step unified model for lesion_cls; returns the model file."""
    out = tmp_path_factory.mktemp("bad_train_model")
    outcome = run_cli(
        ["train", "--manifest", phantoms, "--out", out, "--tasks", "lesion_cls",
         "--steps", "2", *FAST]
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.describe()
    record = next(out.rglob("training.json"))
    return record.parent / json.loads(record.read_text())["model"]


def _train(manifest: Path, out: Path, *extra: object) -> Outcome:
    return run_cli(["train", "--manifest", manifest, "--out", out, "--steps", "2", *FAST, *extra])


def _models(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith("model.")]


# ----------------------------------------------------------------- train: bad data


def _set(case: str, column: str, value: str):
    def edit(rows: Rows) -> None:
        row_of(rows, case)[column] = value

    return edit


# (id, task, edit, names in the error line)
DATA_CASES = [
    (
        "corrupt-image",
        "lesion_cls",
        None,
        ["'lesion_cls'", "'cls_site_a_000'", "cls_site_a_000.png"],
    ),
    (
        "unknown-label-with-markup-in-case-id",
        "lesion_cls",
        lambda rows: rows[0].update(case_id="[/bold]x", label="[red]benign"),
        ["'lesion_cls'", "case '[/bold]x'", "'[red]benign'"],
    ),
    (
        "nan-regression-target",
        "head_circumference",
        _set("hc_site_a_002", "value", "nan"),
        ["'head_circumference'", "'hc_site_a_002'", "nan"],
    ),
    (
        "missing-image-file",
        "lesion_cls",
        _set("cls_site_a_000", "image", "/no/such/folder/cls_site_a_000.png"),
        ["'lesion_cls'", "/no/such/folder/cls_site_a_000.png"],
    ),
]


@pytest.mark.parametrize(
    ("task", "edit", "names"), [pytest.param(t, e, n, id=i) for i, t, e, n in DATA_CASES]
)
def test_train_refuses_bad_data_before_training(
    phantoms: Path, tmp_path: Path, task: str, edit, names: list[str]
) -> None:
    folder = tmp_path / "set"
    manifest = one_task_manifest(phantoms, folder, task, edit, copy_files=("image",))
    if edit is None:  # the corrupt-image case damages its copy of the first image
        (folder / "image" / "cls_site_a_000.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = tmp_path / "out"
    outcome = _train(manifest, out)
    assert_refused(outcome, *names, code=1)
    assert _models(out) == []
    assert not out.exists()  # a refused run leaves nothing behind


# ----------------------------------------------------------------- train: options and files


def test_train_refuses_zero_steps_as_a_usage_error(phantoms: Path, tmp_path: Path) -> None:
    outcome = run_cli(["train", "--manifest", phantoms, "--out", tmp_path / "o", "--steps", "0"])
    assert_usage_error(outcome, "--steps")
    assert not (tmp_path / "o").exists()


def test_train_refuses_epochs_and_steps_together(phantoms: Path, tmp_path: Path) -> None:
    outcome = run_cli(
        ["train", "--manifest", phantoms, "--out", tmp_path / "o", "--steps", "300",
         "--epochs", "2"]
    )  # fmt: skip
    assert_refused(outcome, "--epochs", "--steps", code=2)
    assert not (tmp_path / "o").exists()


def test_train_refuses_an_out_that_is_a_file(phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "experiment"
    out.write_text("keep me")
    outcome = _train(phantoms, out, "--tasks", "lesion_cls")
    line = assert_refused(outcome, "--out", str(out), "fix:", code=2)
    assert "existing file" in line
    assert "training" not in outcome.stdout  # refused before any model was built
    assert out.read_text() == "keep me"
    assert_nothing_half_written(tmp_path, allowed={"experiment"})


def test_train_refuses_an_out_under_a_file(phantoms: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("x")
    outcome = _train(phantoms, blocker / "exp", "--tasks", "lesion_cls")
    assert_refused(outcome, "--out", str(blocker), code=2)
    assert_nothing_half_written(tmp_path, allowed={"runs"})


def test_train_refuses_an_unknown_task(phantoms: Path, tmp_path: Path) -> None:
    outcome = _train(phantoms, tmp_path / "o", "--tasks", "lesion_cls,lesion_clf")
    assert_refused(outcome, "'lesion_clf'", "lesion_cls")
    assert _models(tmp_path) == []


def test_train_refuses_empty_tasks_as_a_usage_error(phantoms: Path, tmp_path: Path) -> None:
    outcome = _train(phantoms, tmp_path / "o", "--tasks", ",")
    assert_refused(outcome, "--tasks", code=2)
    assert not (tmp_path / "o").exists()


def test_train_names_an_invalid_device_on_one_line(phantoms: Path, tmp_path: Path) -> None:
    outcome = _train(phantoms, tmp_path / "o", "--device", "tpu")
    line = assert_refused(outcome, "device", "'tpu'", code=2)
    assert "input_value" not in line  # pydantic's dump of every setting is not shown
    assert not (tmp_path / "o").exists()


def test_train_names_a_misspelt_config_field(phantoms: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("train: {epocs: 2}\n")
    outcome = _train(phantoms, tmp_path / "o", "--config", config)
    assert_refused(outcome, str(config), "'train'", "epocs")
    assert not (tmp_path / "o").exists()


def test_train_names_an_unknown_config_section(phantoms: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("trian: {epochs: 2}\n")
    outcome = _train(phantoms, tmp_path / "o", "--config", config)
    assert_refused(outcome, str(config), "'trian'")


def test_train_names_a_missing_config(phantoms: Path, tmp_path: Path) -> None:
    outcome = _train(phantoms, tmp_path / "o", "--config", tmp_path / "nope.yaml")
    assert_refused(outcome, str(tmp_path / "nope.yaml"))


def test_train_names_a_missing_manifest(tmp_path: Path) -> None:
    outcome = _train(tmp_path / "nope.yaml", tmp_path / "o")
    assert_refused(outcome, str(tmp_path / "nope.yaml"), "not found")
    assert not (tmp_path / "o").exists()


def test_train_names_a_folder_given_as_the_manifest(phantoms: Path, tmp_path: Path) -> None:
    outcome = _train(phantoms.parent, tmp_path / "o")
    assert_refused(outcome, str(phantoms.parent), "folder")
    assert not (tmp_path / "o").exists()


def test_train_runs_exactly_the_steps_asked_and_prints_out_as_written(
    phantoms: Path, tmp_path: Path
) -> None:
    # lesion_cls has 7 training rows: one batch of 8 per epoch, so the default 10 epochs
    # end after 10 steps; --steps 12 must still run 12 optimiser steps
    out = tmp_path / "runs[v2]" / "[/bold]exp"
    outcome = run_cli(
        ["train", "--manifest", phantoms, "--out", out, "--tasks", "lesion_cls",
         "--steps", "12", "--batch-size", "8", *FAST]
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.describe()
    record = json.loads(next(out.rglob("training.json")).read_text())
    assert (record["steps"], record["total_steps"]) == (12, 12)
    assert f"outputs under {out}" in outcome.stdout, outcome.describe()


# ----------------------------------------------------------------- predict


def test_predict_names_a_missing_checkpoint(phantoms: Path, tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "model.safetensors"
    outcome = run_cli(
        ["predict", "--model", missing, "--manifest", phantoms, "--out", tmp_path / "p"]
    )
    assert_refused(outcome, str(missing))
    assert not (tmp_path / "p").exists()


def test_predict_refuses_an_out_that_is_a_file(
    trained: Path, phantoms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "predictions"
    out.write_text("keep me")
    outcome = run_cli(
        ["predict", "--model", trained, "--manifest", phantoms, "--out", out,
         "--threads", "1"]
    )  # fmt: skip
    assert_refused(outcome, "--out", str(out), code=2)
    assert out.read_text() == "keep me"
    assert_nothing_half_written(tmp_path, allowed={"predictions"})


def test_predict_refuses_an_unknown_split(trained: Path, phantoms: Path, tmp_path: Path) -> None:
    outcome = run_cli(
        ["predict", "--model", trained, "--manifest", phantoms, "--out", tmp_path / "p",
         "--split", "tset"]
    )  # fmt: skip
    assert_refused(outcome, "--split", "'tset'", code=2)
    assert not (tmp_path / "p").exists()


def test_predict_refuses_a_task_the_model_lacks(
    trained: Path, phantoms: Path, tmp_path: Path
) -> None:
    outcome = run_cli(
        ["predict", "--model", trained, "--manifest", phantoms, "--out", tmp_path / "p",
         "--tasks", "nodule_det", "--threads", "1"]
    )  # fmt: skip
    assert_refused(outcome, "'nodule_det'", "lesion_cls")
    assert not (tmp_path / "p").exists()


def test_predict_prints_an_out_with_brackets_as_written(
    trained: Path, phantoms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pred[v2]" / "[/bold]test"
    outcome = run_cli(
        ["predict", "--model", trained, "--manifest", phantoms, "--out", out,
         "--threads", "1"]
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.describe()
    assert f"written under {out}; score with:" in outcome.stdout, outcome.describe()


# ----------------------------------------------------------------- report compare


def test_compare_names_a_missing_run(tmp_path: Path) -> None:
    outcome = run_cli(["report", "compare", tmp_path / "a", tmp_path / "b"])
    assert_refused(outcome, str(tmp_path / "a"))
    assert_nothing_half_written(tmp_path, allowed=set())


def test_compare_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    out = tmp_path / "compare"
    out.write_text("x")
    outcome = run_cli(["report", "compare", tmp_path / "a", tmp_path / "b", "--out", out])
    assert_refused(outcome, "--out", str(out), code=2)


def test_train_model_refuses_a_run_folder_under_a_file(phantoms: Path, tmp_path: Path) -> None:
    from medfleet.errors import MedfleetError
    from medfleet.models import ModelConfig
    from medfleet.tasks import Manifest
    from medfleet.train.config import TrainConfig
    from medfleet.train.run import train_model

    blocker = tmp_path / "runs"
    blocker.write_text("x")
    with pytest.raises(MedfleetError, match="existing file") as info:
        train_model(
            Manifest.load(phantoms), ModelConfig(image_size=32), TrainConfig(max_steps=1),
            blocker / "model", tasks=["lesion_cls"],
        )  # fmt: skip
    assert str(blocker) in str(info.value)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["demo", "--quick"], id="demo"),
        pytest.param(["synth", "sample", "--model", "m", "--n", "1"], id="synth-sample"),
        pytest.param(["synth", "train", "--manifest", "m.yaml", "--task", "t"], id="synth-train"),
    ],
)
def test_other_verbs_refuse_an_out_that_is_a_file(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out"
    out.write_text("keep me")
    outcome = run_cli([*args, "--out", out])
    assert_refused(outcome, "--out", str(out), code=2)
    assert out.read_text() == "keep me"
    assert_nothing_half_written(tmp_path, allowed={"out"})
