"""Fixtures of the federated tests: three tiny phantom sites and one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def fed_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Classification phantoms: 3 sites x 8 cases at 32 pixels; returns the manifest path."""
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    return generate_phantoms(
        tmp_path_factory.mktemp("fed_phantoms"),
        PhantomConfig(tasks=["lesion_cls"]),
        sites=3,
        cases_per_site=8,
        size=32,
        seed=0,
    )


@pytest.fixture(scope="session")
def fed_manifest(fed_phantoms: Path):
    from medfleet.tasks import Manifest

    return Manifest.load(fed_phantoms)


@pytest.fixture()
def tiny_settings():
    """Model and training settings small enough for a loaded 2-core machine."""
    from medfleet.models import ModelConfig
    from medfleet.train.config import TrainConfig

    return ModelConfig(image_size=32), TrainConfig(batch_size=4, threads=1, lr=1e-3)
