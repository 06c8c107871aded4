"""What the real-data benchmarks (``hc18.py``, ``busi.py``, ``multitask_real.py``) share.

The shared data folder and its one-time preparation, the CPU training settings every run
uses, the common command-line options and the JSON + markdown output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (
    "backbone",
    "image_size",
    "batch_size",
    "lr",
    "steps",
    "augment",
    "class_weights",
    "threads",
    "seed",
)
"""The options recorded in every result's ``settings``."""


def data_root(explicit: str | Path | None = None) -> Path | None:
    """The shared data folder: ``explicit``, ``$MEDFLEET_DATA`` or ``../shared/data``."""
    candidates = [Path(explicit)] if explicit else []
    if os.environ.get("MEDFLEET_DATA"):
        candidates.append(Path(os.environ["MEDFLEET_DATA"]))
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), None)


def require_data_root(explicit: str | Path | None = None) -> Path:
    """:func:`data_root`, or exit with what to do when the shared data is not there."""
    root = data_root(explicit)
    if root is None:
        raise SystemExit("shared data not found (fix: set MEDFLEET_DATA or pass --data)")
    return root


def prepared(name: str, root: Path, work: Path, *, limit: int | None = None, seed: int = 0) -> Path:
    """Prepare data set ``name`` from ``root/name`` into ``work`` once; return the manifest."""
    from medfleet.data.catalog import MANIFEST_NAME, prepare_dataset
    from medfleet.utils.atomic import write_json_atomic

    manifest = work / MANIFEST_NAME
    stamp = work / "prepared.json"
    wanted = {"name": name, "limit": limit, "seed": seed, "src": str(root / name)}
    if manifest.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return manifest
    path = prepare_dataset(name, root / name, work, seed=seed, limit=limit)
    write_json_atomic(stamp, wanted)
    return path


def cpu_train_config(args: argparse.Namespace, steps: int, **extra: Any) -> Any:
    """The training settings of a benchmark run: ``steps`` AdamW steps on the CPU.

    Batch size, learning rate, seed and threads come from ``args``; no validation,
    checkpoints or TensorBoard; ``extra`` adds or overrides ``TrainConfig`` fields.
    """
    from medfleet.train.config import TrainConfig

    settings: dict[str, Any] = {
        "epochs": 10_000,
        "max_steps": steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_fraction": 0.05,
        "seed": args.seed,
        "threads": args.threads,
        "device": "cpu",
        "val_every": 0,
        "checkpoint_every": 0,
        "tensorboard": False,
        "augment": args.augment,
        "class_weights": args.class_weights,
    }
    return TrainConfig(**(settings | extra))


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    out: str,
    image_size: int,
    batch_size: int,
    steps: int,
    steps_help: str | None = None,
) -> None:
    """The options every real-data benchmark has (its own come after them)."""
    parser.add_argument("--data", default=None, help="shared data folder (default: auto)")
    parser.add_argument("--out", default=out, help="work and result folder")
    parser.add_argument("--backbone", default="unet-small")
    parser.add_argument("--image-size", type=int, default=image_size)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=steps, help=steps_help)
    parser.add_argument(
        "--augment",
        default="strong",
        choices=["none", "light", "standard", "strong"],
        help="training augmentation level",
    )
    parser.add_argument(
        "--class-weights",
        default="balanced",
        choices=["none", "balanced"],
        help="cross-entropy class weights of classification tasks",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: best on a busy machine)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--json", default=None, help="also write the result here")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :data:`SETTINGS` of a run, for its result."""
    return {k: getattr(args, k) for k in SETTINGS}


def emit(
    result: dict[str, Any], table: str, script: str, argv: list[str] | None, args: Any
) -> None:
    """Print the result as JSON and as a markdown table; also write it to ``args.json``."""
    from medfleet.utils.atomic import write_text_atomic

    result["machine"] = f"{platform.processor() or platform.machine()}, threads={args.threads}"
    result["command"] = f"python benchmarks/{script} " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    text = json.dumps(result, indent=2, default=str)
    print(text)
    print(table)
    if args.json:
        write_text_atomic(Path(args.json), text + "\n")
