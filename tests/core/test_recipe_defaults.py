"""The real-data benchmarks train with the defaults a user gets from ``medfleet train``."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from medfleet.models import ModelConfig
from medfleet.train.config import TrainConfig

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_defaults_are_the_train_defaults() -> None:
    real_data = _module("real_data")
    parser = argparse.ArgumentParser()
    real_data.add_common_arguments(parser, out="x", image_size=128, batch_size=8, steps=1)
    args = parser.parse_args([])
    model, train = ModelConfig(), TrainConfig()
    assert args.backbone == model.backbone == "unet-small"
    assert args.augment == train.augment == "strong"
    assert args.class_weights == train.class_weights == "balanced"
    assert args.lr == train.lr
    config = real_data.cpu_train_config(args, 5)
    assert (config.augment, config.class_weights, config.max_steps) == ("strong", "balanced", 5)
    for name in ("hc18", "busi"):
        assert _module(name).parse_args([]).image_size == model.image_size, name
