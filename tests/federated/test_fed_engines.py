"""The CLI verb, a client timeout, and Flower's Ray simulation engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfleet.cli.app import app
from medfleet.federated import Fault, FederatedConfig, run_federated


def test_cli_federate_then_predict_with_a_site_model(fed_phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "fl"
    args = [
        "federate",
        "--manifest",
        str(fed_phantoms),
        "--out",
        str(out),
        "--strategy",
        "fedavg",
        "--rounds",
        "1",
        "--local-steps",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--engine",
        "inprocess",
        "--min-fit",
        "3",
        "--format",
        "json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["strategy"] == "fedavg" and summary["failures"] == {"1": []}
    full_bytes = summary["bytes_per_round"]["1"]["sent"]
    # every trainable weight travels: more than 4 bytes per parameter of the tiny ViT
    info = json.loads((out / "sites" / "site_a" / "training.json").read_text())
    assert full_bytes > 3 * 4 * info["parameters"] * 0.9
    pred = CliRunner().invoke(
        app,
        [
            "predict",
            "--model",
            str(out / "sites" / "site_a"),
            "--manifest",
            str(fed_phantoms),
            "--out",
            str(tmp_path / "pred"),
            "--split",
            "val",
            "--format",
            "json",
        ],
    )
    assert pred.exit_code == 0, pred.output


@pytest.mark.slow
def test_a_client_that_times_out_is_recorded_and_rejoins(
    fed_manifest, tiny_settings, tmp_path: Path
) -> None:
    late = fed_manifest.site_names[2]
    result = run_federated(
        fed_manifest,
        *tiny_settings,
        FederatedConfig(
            strategy="lora",
            rounds=2,
            local_steps=1,
            min_fit=2,
            min_available=3,
            round_timeout=20,
            faults=[Fault(site=late, round=1, kind="timeout")],
        ),
        tmp_path / "out",
    )
    first, second = result.rounds
    assert first["clients"][late]["status"] == "failed"
    assert first["clients"][late]["error"] == "network/no-reply"
    assert first["aggregated"] is True
    assert second["clients"][late]["status"] == "ok"
    assert result.data["status"] == "degraded"
    assert result.data["site_status"][late]["failed_rounds"] == {"1": "network/no-reply"}


@pytest.mark.slow
def test_ray_simulation_engine_dual_lora(fed_manifest, tiny_settings, tmp_path: Path) -> None:
    from medfleet.train.run import load_trained

    rounds_seen: list[int] = []
    result = run_federated(
        fed_manifest,
        *tiny_settings,
        FederatedConfig(strategy="dual-lora", rounds=2, local_steps=1, blocks=[-2, -1]),
        tmp_path / "out",
        progress=lambda r, n: rounds_seen.append(r),
        engine="simulation",
    )
    assert rounds_seen == [1, 2]
    assert all(c["status"] == "ok" for record in result.rounds for c in record["clients"].values())
    assert set(result.site_dirs) == set(fed_manifest.site_names)
    for site in fed_manifest.site_names:
        load_trained(result.site_dirs[site], fed_manifest)
