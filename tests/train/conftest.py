"""Fixtures of the training tests: tiny phantoms and one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run far faster (and steadier) on one thread, above all on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2D phantoms of every task: 2 sites x 7 cases at 32 pixels; returns the manifest path."""
    from medfleet.data.phantoms import generate_phantoms

    return generate_phantoms(
        tmp_path_factory.mktemp("phantoms"), sites=2, cases_per_site=7, size=32, seed=0
    )
