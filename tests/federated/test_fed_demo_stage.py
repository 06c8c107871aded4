"""The demo's federated stage."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from medfleet.demo import DemoContext, default_stages
from medfleet.federated.demo_stage import FederatedStage


def test_federated_stage_is_the_last_default_stage() -> None:
    assert default_stages()[-1].name == "federated"


def test_federated_stage_runs_dual_lora_on_three_sites(fed_phantoms: Path, tmp_path: Path) -> None:
    from medfleet.tasks import Manifest
    from medfleet.train.run import load_trained

    ctx = DemoContext(out=tmp_path, quick=True, manifest=fed_phantoms)
    done: list[int] = []
    result = FederatedStage().run(ctx, lambda d, t: done.append(d))
    assert result["strategy"] == "dual-lora" and result["rounds"] == 2
    assert len(result["sites"]) == 3 and done[-1] == 2
    assert result["failures"] == {"1": [], "2": []}
    assert set(result["bytes_per_round"]) == {"1", "2"}
    assert set(result["balanced_accuracy"]) == set(result["sites"])
    manifest = Manifest.load(fed_phantoms)
    for path in result["site_models"].values():
        assert load_trained(path, manifest).tasks == ["lesion_cls"]


def test_federated_stage_skips_without_flower(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "flwr" else real(name, *a)
    )
    result = FederatedStage().run(DemoContext(out=tmp_path), lambda d, t: None)
    assert result["skipped"] is True and "flwr" in result["reason"]
