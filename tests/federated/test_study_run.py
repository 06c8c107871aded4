"""The study end to end on tiny phantoms: CLI, real Flower engine, fake runner, bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfleet.cli.app import app
from medfleet.errors import MedfleetError

RUNNER = CliRunner()


@pytest.fixture()
def phantoms(fed_phantoms: Path) -> Path:
    """Three sites x 8 ``lesion_cls`` cases at 32 pixels (the federated tests' phantoms)."""
    return fed_phantoms


def test_cli_study_end_to_end(phantoms, tmp_path):
    out = tmp_path / "study"
    result = RUNNER.invoke(
        app,
        [
            "federate-study",
            "--manifest", str(phantoms),
            "--strategies", "dual-lora",
            "--rounds", "1",
            "--local-steps", "2",
            "--blocks=-1",
            "--batch-size", "4",
            "--image-size", "32",
            "--n-resamples", "100",
            "--out", str(out),
            "--format", "json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["arms"] == ["local-only", "centralised", "dual-lora"]
    data = json.loads((out / "study.json").read_text())
    sites = data["sites"]
    assert sites == ["site_a", "site_b", "site_c"]
    # budget: 1 round x 2 local steps per site; centralised does the sum
    assert data["budget"]["steps"] == dict.fromkeys(sites, 2)
    for site in sites:
        info = json.loads((out / "local" / site / "training.json").read_text())
        assert info["steps"] == 2
    assert json.loads((out / "centralised" / "training.json").read_text())["steps"] == 6
    # per-site and pooled rows for every arm, intervals around the estimates
    rows = [r for r in data["metrics"] if r["metric"] == "balanced_accuracy"]
    assert {(r["arm"], r["site"]) for r in rows} == {
        (a, s) for a in summary["arms"] for s in [*sites, "pooled"]
    }
    for r in data["metrics"]:
        if r["estimate"] is not None and r["low"] is not None:
            assert r["low"] - 1e-12 <= r["estimate"] <= r["high"] + 1e-12
    pooled_n = {r["n"] for r in rows if r["site"] == "pooled"}
    per_site = sum(r["n"] for r in rows if r["arm"] == "centralised" and r["site"] != "pooled")
    assert pooled_n == {per_site}
    # paired tests of the 3 pairs, Holm-adjusted
    tests = data["tests"]
    assert {(t["arm_a"], t["arm_b"]) for t in tests} == {
        ("local-only", "centralised"),
        ("local-only", "dual-lora"),
        ("centralised", "dual-lora"),
    }
    assert all(t["p_holm"] >= t["p_value"] for t in tests if t["p_value"] is not None)
    # bytes per round come from the federated run's own accounting
    record = json.loads((out / "federated" / "dual-lora" / "federated.json").read_text())
    (comm,) = data["communication"]
    assert comm["bytes_total"] == record["bytes_per_round"]["1"]["total"] > 0
    html = (out / "report.html").read_text()
    assert "Paired tests between arms" in html and "mcnemar" in html
    for name in ("metrics.csv", "tests.csv", "communication.csv", "curves.csv"):
        assert (out / name).stat().st_size > 0


def _fake_runner(drop_site: str | None = None):
    """Train one model on the pooled rows and copy it to every site; write federated.json."""

    def run(manifest, model_config, train_config, fed_config, out, progress=None):
        from medfleet.train.run import train_model
        from medfleet.utils.atomic import write_json_atomic

        out = Path(out)
        steps = fed_config.rounds * (fed_config.local_steps or 1)
        config = train_config.model_copy(update={"max_steps": steps, "val_every": 0})
        train_model(manifest, model_config, config, out / "global")
        for site in manifest.site_names:
            if site != drop_site:
                shutil.copytree(out / "global", out / "sites" / site)
        rounds = [
            {
                "round": r + 1,
                "clients": {
                    s: {"status": "ok", "error": None, "bytes_sent": 10, "bytes_received": 20,
                        "num_examples": 4, "train_loss": 1.0}
                    for s in manifest.site_names
                },
                "metrics": {},
            }
            for r in range(fed_config.rounds)
        ]  # fmt: skip
        write_json_atomic(
            out / "federated.json",
            {"format": "medfleet.federated/1", "strategy": fed_config.strategy,
             "config": fed_config.model_dump(mode="json"), "sites": manifest.site_names,
             "rounds": rounds, "bytes_per_round": {}, "status": "finished"},
        )  # fmt: skip

    return run


def _configs():
    from medfleet.federated import FederatedConfig
    from medfleet.models import ModelConfig
    from medfleet.train.config import TrainConfig

    train = TrainConfig(batch_size=4, threads=1, tensorboard=False, checkpoint_every=0)
    return ModelConfig(image_size=32), train, FederatedConfig(rounds=1, local_steps=1)


def test_study_with_a_given_runner_and_paired_arms(phantoms, tmp_path):
    from medfleet.federated.study import StudyOptions, run_study
    from medfleet.tasks import Manifest

    model, train, fed = _configs()
    result = run_study(
        Manifest.load(phantoms),
        model,
        train,
        fed,
        tmp_path / "s",
        StudyOptions(
            strategies=["fedavg", ("fedavg-copy", {"strategy": "fedavg"})],
            include_local=False,
            include_centralised=False,
            n_resamples=50,
            report=False,
        ),
        federated_runner=_fake_runner(),
    )
    data = result.data
    assert [a["name"] for a in data["arms"]] == ["fedavg", "fedavg-copy"]
    # the two arms hold identical models: every paired test sees no difference
    for t in data["tests"]:
        assert t["difference"] == 0
        assert t["p_value"] == 1.0
    assert {r["fraction_of_fedavg"] for r in data["communication_summary"]} == {1.0}
    assert not (tmp_path / "s" / "report.html").exists()
    assert all(math.isfinite(r["estimate"]) for r in data["metrics"] if r["metric"] != "auc")

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run with the same settings is trained again")

    again = run_study(
        Manifest.load(phantoms),
        model,
        train,
        fed,
        tmp_path / "s",
        StudyOptions(
            strategies=["fedavg"],
            include_local=False,
            include_centralised=False,
            n_resamples=50,
            report=False,
            reuse=True,
        ),
        federated_runner=refuse,
    )
    first = [r for r in data["metrics"] if r["arm"] == "fedavg"]
    assert again.data["metrics"] == first


def test_study_names_a_site_without_model(phantoms, tmp_path):
    from medfleet.federated.study import StudyOptions, run_study
    from medfleet.tasks import Manifest

    model, train, fed = _configs()
    with pytest.raises(MedfleetError, match="site_b"):
        run_study(
            Manifest.load(phantoms),
            model,
            train,
            fed,
            tmp_path / "s",
            StudyOptions(strategies=["lora"], include_local=False, include_centralised=False),
            federated_runner=_fake_runner(drop_site="site_b"),
        )


def test_bad_input_is_refused(phantoms, tmp_path):
    result = RUNNER.invoke(
        app,
        ["federate-study", "-m", str(phantoms), "--out", str(tmp_path), "--strategies", "fedsgd"],
    )
    assert result.exit_code == 2 and "fedsgd" in result.output
    from medfleet.federated.study import StudyOptions, run_study
    from medfleet.tasks import Manifest

    model, train, fed = _configs()
    manifest = Manifest.load(phantoms)
    single = manifest.model_copy(update={"sites": manifest.sites[:1]})
    single.root = manifest.root
    with pytest.raises(MedfleetError, match="at least two"):
        run_study(single, model, train, fed, tmp_path / "x", StudyOptions(strategies=[]))
    with pytest.raises(MedfleetError, match="not in the manifest"):
        run_study(manifest, model, train, fed, tmp_path / "y", StudyOptions(tasks=["nope"]))
