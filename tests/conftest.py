"""Shared fixtures: the public data folder, temporary phantoms."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Wall-clock deadlines make property tests flaky on a loaded 2-core machine; tests never
# assert times, so hypothesis does not either.
settings.register_profile("medfleet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("medfleet")

REPO_ROOT = Path(__file__).resolve().parents[1]
# Shared test helpers import as ``tests.<package>.<module>`` (e.g. tests.bad_input.harness)
# under plain ``pytest`` too, which puts only the test folders on sys.path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def shared_data_dir() -> Path | None:
    """The shared public data folder ($MEDFLEET_DATA, else ../shared/data), or None."""
    env = os.environ.get("MEDFLEET_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: tiny models are faster and steadier so on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared public data; skips the test cleanly when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared public data not found (set MEDFLEET_DATA or place ../shared/data)")
    return path
