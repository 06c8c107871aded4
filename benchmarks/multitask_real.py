"""Unified vs task-specific training on three real data sets merged into one manifest.

HC18 (fetal head mask + head circumference, US), BUSI (3 classes, breast US) and
PneumoniaMNIST (2 classes, chest X-ray, 28 x 28) are prepared with their adapters and
merged with :func:`medfleet.data.catalog.merge_manifests` into one manifest with three
sites (one per data set) and four tasks. Two paradigms of :mod:`medfleet.train.paradigms`
are trained, predicted on the test split and scored by ``medfleet evaluate``:

* ``task-specific``: one model per task, ``--steps`` steps each;
* ``unified``: one model for the four tasks with ``--steps`` x 4 steps and uniform task
  sampling, so every task gets as many batches as its task-specific model (the same total
  training compute).

The transfer table (:mod:`medfleet.train.transfer`: relative change of each task's
primary metric against task-specific training, paired bootstrap intervals over test cases)
goes to ``OUT/transfer/`` and is printed. Models are small and randomly initialised (no
pretrained weights are available offline).

Run ``python benchmarks/multitask_real.py --help``; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_data import (
    add_common_arguments,
    cpu_train_config,
    emit,
    prepared,
    require_data_root,
    settings,
)

DATASETS = ("hc18", "busi", "pneumoniamnist")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, merge, train both paradigms, write and return the transfer analysis."""
    import torch

    from medfleet.data.catalog import merge_manifests
    from medfleet.models import ModelConfig
    from medfleet.tasks import Manifest
    from medfleet.train.datasets import load_task_rows
    from medfleet.train.paradigms import run_paradigm
    from medfleet.train.transfer import analyse_transfer, write_transfer

    torch.set_num_threads(args.threads)
    root = require_data_root(args.data)
    out = Path(args.out)
    limits = {"hc18": args.limit_hc18, "busi": args.limit_busi, "pneumoniamnist": args.limit_pmnist}
    sources = [
        prepared(name, root, out / "prepared" / name, limit=limits[name], seed=args.seed)
        for name in DATASETS
    ]
    manifest_path = merge_manifests(
        sources, out / "merged", name="hc18_busi_pneumoniamnist", description="three real sets"
    )
    manifest = Manifest.load(manifest_path)
    tasks = [t.name for t in manifest.tasks]
    rows = {
        t: {s: len(load_task_rows(manifest, t, (s,))) for s in ("train", "val", "test")}
        for t in tasks
    }
    model_config = ModelConfig(backbone=args.backbone, image_size=args.image_size, in_channels=1)

    def config(steps: int) -> Any:
        return cpu_train_config(args, steps, sampling="uniform")

    tic = time.perf_counter()
    results = {
        "task-specific": run_paradigm(
            manifest, "task-specific", out, model_config, config(args.steps),
            evaluation_report=False,
        ),
        "unified": run_paradigm(
            manifest, "unified", out, model_config, config(args.steps * len(tasks)),
            evaluation_report=False,
        ),
    }  # fmt: skip
    analysis = analyse_transfer(
        manifest,
        {p: r.cases_csv for p, r in results.items()},
        costs={p: r.costs() for p, r in results.items()},
        n_resamples=1000,
        seed=args.seed,
    )
    files = write_transfer(analysis, out / "transfer")
    return {
        "manifest": str(manifest_path),
        "sites": [s.name for s in manifest.sites],
        "rows_per_split": rows,
        "settings": settings(args)
        | {"unified_steps": args.steps * len(tasks), "sampling": "uniform"},
        "test_metrics": {
            p: {t: m for run in r.runs for t, m in run.test_metrics.items()}
            for p, r in results.items()
        },
        "costs": {p: r.costs() for p, r in results.items()},
        "transfer": analysis.to_dict(),
        "files": {k: str(v) for k, v in files.items()},
        "wall_seconds": round(time.perf_counter() - tic, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    """The transfer table (tasks, then averages) as markdown."""
    lines = [
        "| level | name | metric | task-specific | unified | delta [95% CI] | negative transfer |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for row in result["transfer"]["rows"]:
        lines.append(
            f"| {row['level']} | {row['name']} | {row.get('metric', '')} "
            f"| {_num(row.get('m_specific'))} | {_num(row.get('m_paradigm'))} "
            f"| {_pct(row['delta'])} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}] "
            f"| {'yes' if row['negative_transfer'] else 'no'} |"
        )
    return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) and value == value else ""


def _pct(value: Any) -> str:
    return f"{100 * value:+.1f}%" if isinstance(value, int | float) else str(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(
        parser,
        out="out/benchmarks/multitask",
        image_size=64,
        batch_size=16,
        steps=250,
        steps_help="steps per task-specific model",
    )
    parser.add_argument("--limit-hc18", type=int, default=None)
    parser.add_argument("--limit-busi", type=int, default=None)
    parser.add_argument("--limit-pmnist", type=int, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.limit_hc18, args.limit_busi, args.limit_pmnist = 30, 60, 60
        args.image_size, args.steps = 32, 3
        args.out = str(Path(args.out) / "quick")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run, print JSON and the markdown table."""
    args = parse_args(argv)
    result = run(args)
    emit(result, markdown(result), "multitask_real.py", argv, args)


if __name__ == "__main__":
    main()
