"""``medfleet federate`` option parsing that needs no training."""

from __future__ import annotations

import pytest
import typer

from medfleet.cli.federate import _shared_heads


def test_shared_heads_all_none_and_names():
    assert _shared_heads(None) is None
    assert _shared_heads(" All ") == ["*"]
    assert _shared_heads("none") == []
    assert _shared_heads("seg, cls,") == ["seg", "cls"]


def test_shared_heads_without_a_name_is_a_usage_error():
    with pytest.raises(typer.Exit) as info:
        _shared_heads(" , ")
    assert info.value.exit_code == 2


# ------------------------------------------------------------------ runs of the verb


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Three tiny classification sites (8 cases each, 32 pixels)."""
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    return generate_phantoms(
        tmp_path_factory.mktemp("fed_cli"),
        PhantomConfig(tasks=["lesion_cls"]),
        sites=3,
        cases_per_site=8,
        size=32,
        seed=0,
    )


def _federate(manifest, out, *extra):
    from typer.testing import CliRunner

    from medfleet.cli.app import app

    args = [
        "federate",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--strategy",
        "lora",
        "--blocks",
        "-1",
        "--rounds",
        "1",
        "--local-steps",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--engine",
        "inprocess",
        *[str(a) for a in extra],
    ]
    return CliRunner().invoke(app, args)


def _global_weights(out, manifest):
    from medfleet.models import load_model
    from medfleet.models.files import MODEL_FILE
    from medfleet.tasks import Manifest

    model = load_model(out / "global" / MODEL_FILE, Manifest.load(manifest))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_seed_reaches_local_training(phantoms, tmp_path, one_torch_thread) -> None:
    import json

    import torch

    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        result = _federate(phantoms, tmp_path / name, "--seed", seed, "--format", "json")
        assert result.exit_code == 0, result.output
        job = json.loads((tmp_path / name / "job.json").read_text())
        assert job["train"]["seed"] == seed, "--seed must reach the local training"
        assert job["federated"]["seed"] == seed
        runs[name] = _global_weights(tmp_path / name, phantoms)
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_the_printed_predict_command_uses_real_options(phantoms, tmp_path) -> None:
    import shlex

    import click
    from typer.main import get_command
    from typer.testing import CliRunner

    from medfleet.cli.app import app

    out = tmp_path / "fl"
    result = _federate(phantoms, out)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if "medfleet predict" in x)
    command = shlex.split(line[line.index("medfleet predict") :])
    predict = get_command(app).commands["predict"]  # type: ignore[attr-defined]
    known = {o for p in predict.params if isinstance(p, click.Option) for o in p.opts}
    given = [a for a in command if a.startswith("--")]
    assert given and set(given) <= known, (given, known)
    assert "--model" in given
    # and the command, with the placeholders filled in, runs
    filled = [
        a.replace("<site>", "site_a").replace("<predictions-folder>", str(tmp_path / "pred"))
        for a in command[2:]
    ]
    ran = CliRunner().invoke(app, ["predict", *filled, "--split", "val"])
    assert ran.exit_code == 0, ran.output


@pytest.mark.parametrize("value", ["0", "-1", "-0.5"])
def test_dp_clip_must_be_positive(value, tmp_path) -> None:
    from typer.testing import CliRunner

    from medfleet.cli.app import app

    result = CliRunner().invoke(
        app, ["federate", "-m", "nowhere.yaml", "--out", str(tmp_path / "o"), "--dp-clip", value]
    )
    assert result.exit_code == 2, result.output
    assert "--dp-clip" in result.stderr
    assert not (tmp_path / "o").exists()


def test_secagg_is_no_option() -> None:
    from typer.testing import CliRunner

    from medfleet.cli.app import app

    result = CliRunner().invoke(app, ["federate", "-m", "m.yaml", "--out", "o", "--secagg"])
    assert result.exit_code == 2
    assert "--secagg" in result.stderr and "No such option" in result.stderr
