"""A short training of the default convolutional recipe on real HC18 images learns.

The segmentation Dice on held-out subjects after some steps must clearly exceed the Dice
of the same model after its first step. Skipped when the shared data is absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.data, pytest.mark.slow]

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "hc18.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("hc18_benchmark_learning", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_training_on_real_hc18_improves_dice(shared_data, tmp_path):
    import torch

    from medfleet.tasks import Manifest

    if not (shared_data / "hc18").is_dir():
        pytest.skip("no hc18 folder in the shared data")
    torch.set_num_threads(1)
    bench = _benchmark()
    manifest = Manifest.load(bench.prepared("hc18", shared_data, tmp_path / "p", limit=60, seed=0))
    args = bench.parse_args(
        ["--backbone", "unet-tiny", "--image-size", "64", "--batch-size", "8", "--threads", "1"]
    )
    first = bench.train(manifest, tmp_path / "first", [bench.SEG], args, steps=1)
    start = bench.evaluate(first.model, manifest, 64)["summary"]["dice"]["mean"]
    trained = bench.train(manifest, tmp_path / "trained", [bench.SEG], args, steps=150)
    end = bench.evaluate(trained.model, manifest, 64)["summary"]["dice"]["mean"]
    assert end > start + 0.2, (start, end)
    assert end > 0.75, end
