"""End to end on CPU: synth train -> sample -> the written manifest validates and trains;
quality, reader kit and the augmentation study through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medfleet.cli.app import app

RUNNER = CliRunner()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    return generate_phantoms(
        tmp_path_factory.mktemp("synth_ph"), PhantomConfig(tasks=["nodule_det"]), sites=2,
        cases_per_site=8, size=32,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_model") / "model"
    result = RUNNER.invoke(
        app,
        ["synth", "train", "--manifest", str(phantoms), "--task", "nodule_det", "--out", str(out),
         "--steps", "4", "--vae-steps", "4", "--image-size", "16", "--batch-size", "4",
         "--caption-template", "{objects} at {site}, {density}", "--threads", "1",
         "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["train_cases"] > 0 and np.isfinite(info["reconstruction"]["psnr_db"])
    return out


def test_model_folder_holds_every_component(model_dir: Path):
    for part in ("vae", "unet", "controlnet", "text_encoder", "scheduler"):
        assert (model_dir / part).is_dir(), part
    meta = json.loads((model_dir / "medfleet_synth.json").read_text())
    assert meta["condition_names"] == ["cyst", "nodule"]
    assert meta["caption_template"] == "{objects} at {site}, {density}"
    assert "nodule" in meta["vocab"]["tokens"]
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_reloaded_model_samples_deterministically(model_dir: Path):
    from medfleet.synth.config import SampleConfig
    from medfleet.synth.model import load_synth
    from medfleet.synth.sample import generate, plan_layouts

    model = load_synth(model_dir)
    conds, _, caps, _, _ = plan_layouts(model, model_dir, 3)
    cfg = SampleConfig(steps=3, sampler="ddim", guidance=2.0)
    a = generate(model, conds, caps, cfg)
    b = generate(load_synth(model_dir), conds, caps, cfg)
    assert a.shape == (3, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    c = generate(model, conds, caps, SampleConfig(steps=3, sampler="ddpm", seed=1))
    assert not np.array_equal(a, c)


def test_sampled_manifest_validates_and_trains(model_dir: Path, tmp_path: Path):
    from medfleet.data.validate import validate_manifest
    from medfleet.models import ModelConfig
    from medfleet.tables import parse_boxes, read_table
    from medfleet.tasks import Manifest
    from medfleet.train.config import TrainConfig
    from medfleet.train.run import train_model

    out = tmp_path / "syn"
    result = RUNNER.invoke(
        app,
        ["synth", "sample", "--model", str(model_dir), "--n", "5", "--out", str(out),
         "--sample-steps", "2", "--sampler", "ddpm", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest_path = Path(json.loads(result.stdout)["manifest"])
    report = validate_manifest(manifest_path)
    assert report.ok, report.problems
    manifest = Manifest.load(manifest_path)
    rows = read_table(manifest.table_path("nodule_det"))
    assert len(rows) == 5
    assert all(r["synthetic"] == "1" and r["split"] == "train" for r in rows)
    assert all(r["source"] == "synth:model" and r["source_case"] for r in rows)
    for row in rows:
        boxes = parse_boxes(row["boxes"])
        assert boxes and all(b.label in ("cyst", "nodule") for b in boxes)
        assert all(0 <= c <= 16 for b in boxes for c in b.coords)
    trained = train_model(
        manifest, ModelConfig(backbone="unet-tiny", image_size=16),
        TrainConfig(max_steps=2, batch_size=2, val_every=0, tensorboard=False, threads=1,
                    device="cpu"),
        tmp_path / "det", tasks=["nodule_det"],
    )  # fmt: skip
    assert trained.result.steps == 2 and (tmp_path / "det" / "model.safetensors").is_file()


def test_random_layout_with_captions_file(model_dir: Path, tmp_path: Path):
    from medfleet.tables import read_table

    captions = tmp_path / "captions.txt"
    captions.write_text("2 nodule at site_a, high\n1 cyst at site_b, low\n")
    out = tmp_path / "rand"
    result = RUNNER.invoke(
        app,
        ["synth", "sample", "--model", str(model_dir), "--n", "3", "--out", str(out),
         "--layout", "random", "--captions", str(captions), "--sample-steps", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_table(out / "nodule_det.csv")
    assert [r["caption"] for r in rows] == [
        "2 nodule at site_a, high",
        "1 cyst at site_b, low",
        "2 nodule at site_a, high",
    ]
    assert all(r["site"] == "synthetic" and r["source_case"] == "" for r in rows)


def test_quality_reader_kit_and_scoring(model_dir: Path, phantoms: Path, tmp_path: Path):
    syn = tmp_path / "syn"
    assert RUNNER.invoke(
        app, ["synth", "sample", "--model", str(model_dir), "--n", "4", "--out", str(syn),
              "--sample-steps", "2"],
    ).exit_code == 0  # fmt: skip
    result = RUNNER.invoke(
        app, ["synth", "quality", "--manifest", str(phantoms), "--synthetic",
              str(syn / "manifest.yaml"), "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    quality = json.loads(result.stdout)
    assert quality["fid_backbone"] >= 0 and 0 < quality["ms_ssim_synthetic"] <= 1
    kit = tmp_path / "kit"
    result = RUNNER.invoke(
        app, ["synth", "reader-kit", "--manifest", str(phantoms), "--synthetic",
              str(syn / "manifest.yaml"), "--out", str(kit), "--n", "3", "--split", "",
              "--readers", "ann,bob"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    key = {r["image"]: r["truth"] for r in _read_csv(kit / "key" / "key.csv")}
    assert sorted(key.values()) == ["real"] * 3 + ["synthetic"] * 3
    assert len(list((kit / "images").glob("img_*.png"))) == 6
    sheet = _read_csv(kit / "scoring_sheet.csv")
    assert len(sheet) == 12 and {r["reader"] for r in sheet} == {"ann", "bob"}
    assert "truth" not in sheet[0]
    for row in sheet:  # ann is always right, bob always says real
        row["call"] = key[row["image"]] if row["reader"] == "ann" else "real"
        row["confidence"] = "3"
    filled = tmp_path / "filled.csv"
    with open(filled, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(sheet[0]))
        writer.writeheader()
        writer.writerows(sheet)
    result = RUNNER.invoke(
        app, ["synth", "reader-score", "--key", str(kit / "key" / "key.csv"), str(filled),
              "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["readers"]["ann"]["accuracy"] == 1.0
    assert scores["readers"]["bob"]["accuracy"] == 0.5
    assert scores["readers"]["bob"]["sensitivity_synthetic"] == 0.0
    assert scores["overall"]["accuracy"] == 0.75


def test_augment_study_writes_table_plot_and_cis(model_dir: Path, phantoms: Path, tmp_path: Path):
    out = tmp_path / "study"
    result = RUNNER.invoke(
        app,
        ["synth", "augment-study", "--manifest", str(phantoms), "--task", "nodule_det",
         "--out", str(out), "--model", str(model_dir), "--fractions", "0,0.5",
         "--steps", "2", "--image-size", "16", "--sample-steps", "2", "--n-resamples", "50",
         "--backbone", "unet-tiny", "--threads", "1", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["external_site"] == "site_b"
    assert json.loads((out / "results.json").read_text())["settings"]["backbone"] == "unet-tiny"
    rows = summary["results"]
    assert [(r["fraction"], r["group"]) for r in rows] == [
        (0.0, "internal"),
        (0.0, "external"),
        (0.5, "internal"),
        (0.5, "external"),
    ]
    n_train = summary["internal_train_rows"]
    assert rows[2]["synthetic_rows"] == round(0.5 * n_train)
    for r in rows:
        assert r["metric"] == "detection_rate" and r["n"] > 0
        assert 0 <= r["low"] <= r["estimate"] <= r["high"] <= 1
    mixed = (out / "runs" / "f050" / "data" / "nodule_det.csv").read_text().splitlines()
    assert len(mixed) - 1 == 16 + round(0.5 * n_train)
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "external" in page


def test_bad_inputs_name_the_problem(phantoms: Path, tmp_path: Path):
    result = RUNNER.invoke(
        app, ["synth", "train", "--manifest", str(phantoms), "--task", "nope", "--out",
              str(tmp_path / "m")],
    )  # fmt: skip
    assert result.exit_code == 1 and "nope" in result.output
    result = RUNNER.invoke(
        app, ["synth", "sample", "--model", str(tmp_path), "--n", "2", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 1 and "medfleet_synth.json" in result.output
    result = RUNNER.invoke(
        app, ["synth", "train", "--manifest", str(phantoms), "--task", "nodule_det", "--out",
              str(tmp_path / "m"), "--image-size", "18"],
    )  # fmt: skip
    assert result.exit_code == 2 and "multiple of" in result.output
