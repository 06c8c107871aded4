"""Fixtures of the model tests: a manifest with one task of each type, matching targets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from medfleet.tasks import Manifest, Site, TaskSpec


def make_manifest(name: str = "tiny", **overrides: dict) -> Manifest:
    tasks = [
        TaskSpec(name="seg", type="segmentation", table="s.csv", labels={0: "bg", 2: "a", 5: "b"}),
        TaskSpec(name="cls", type="classification", table="c.csv", classes=["x", "y", "z"]),
        TaskSpec(name="det", type="detection", table="d.csv", classes=["p", "q"]),
        TaskSpec(name="reg", type="regression", table="r.csv", unit="mm"),
        TaskSpec(name="lm", type="landmarks", table="l.csv", landmarks=["u", "v", "w"]),
    ]
    for task_name, changes in overrides.items():
        tasks = [t.model_copy(update=changes) if t.name == task_name else t for t in tasks]
    return Manifest(name=name, sites=[Site(name="a")], tasks=tasks)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded, above all on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def manifest() -> Manifest:
    return make_manifest()


@pytest.fixture
def manifest_factory():
    return make_manifest
