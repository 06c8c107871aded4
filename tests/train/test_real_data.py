"""A very short HC18 training on the shared real images produces finite Dice, HD and HC errors.

Runs the code of ``benchmarks/hc18.py`` (prepare, subject-wise split check, joint
segmentation + head-circumference training, evaluation on held-out subjects) on a few
images with a tiny model; skipped when the shared data is absent.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.data

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "hc18.py"


@pytest.fixture(scope="module")
def hc18_benchmark():
    spec = importlib.util.spec_from_file_location("hc18_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_hc18_training_gives_finite_metrics_on_held_out_subjects(
    shared_data, hc18_benchmark, tmp_path
):
    import torch

    from medfleet.tasks import Manifest
    from medfleet.train.datasets import load_task_rows

    if not (shared_data / "hc18").is_dir():
        pytest.skip("no hc18 folder in the shared data")
    torch.set_num_threads(1)
    bench = hc18_benchmark
    path = bench.prepared("hc18", shared_data, tmp_path / "prepared", limit=14, seed=0)
    manifest = Manifest.load(path)
    subjects = bench.check_subject_split(manifest)  # raises when a subject crosses splits
    assert set(subjects) == {"train", "val", "test"}
    test_rows = load_task_rows(manifest, bench.SEG, ("test",))
    assert test_rows
    args = bench.parse_args(
        ["--image-size", "32", "--batch-size", "4", "--lr", "1e-3", "--seed", "0", "--threads", "1"]
    )
    trained = bench.train(manifest, tmp_path / "run", [bench.SEG, bench.HC], args, steps=3)
    assert trained.result.steps == 3
    result = bench.evaluate(trained.model, manifest, 32)
    summary, cases = result["summary"], result["cases"]
    assert summary["n_images"] == len(test_rows) == len(cases)
    for case in cases.values():
        assert math.isfinite(case["hc_ref_mm"]) and case["hc_ref_mm"] > 0
        assert 0.0 <= case["dice"] <= 1.0
        assert math.isfinite(case["hc_reg_mm"]) and case["hc_reg_abs_err_mm"] >= 0
        assert case["hc_reg_abs_err_mm"] == pytest.approx(
            abs(case["hc_reg_mm"] - case["hc_ref_mm"])
        )
    for key in ("dice", "hd_mm", "hc_mask_abs_err_mm", "hc_reg_abs_err_mm"):
        stat = summary[key]
        assert stat["n"] >= 1, key  # at least one finite value
        assert stat["ci_low"] <= stat["mean"] <= stat["ci_high"], key
        assert all(math.isfinite(stat[k]) for k in ("mean", "ci_low", "ci_high")), key
