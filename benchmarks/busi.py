"""BUSI breast ultrasound on real images: 3-class classification on a CPU budget.

Prepares the shared BUSI images (benign / malignant / normal, 256 x 256) with the ``busi``
adapter: a split stratified by class. BUSI has no patient ids, so the split is
subject-agnostic: each image counts as its own subject, and images of one patient may
fall into different splits (the published BUSI does not say which images share a
patient). Trains a small unified model (random initialisation: no pretrained weights are
available offline) on ``busi_cls`` and reports, on the test split, balanced accuracy and
macro one-vs-rest AUC with 95 % percentile bootstrap intervals over test images
(:func:`medfleet.evaluate.stats.bootstrap.bootstrap_distribution`, paired resampling of
labels and predictions), plus the per-class recall.

``--dataset pneumoniamnist`` runs the same on the shared PneumoniaMNIST copy (normal /
pneumonia, 28 x 28, the npz's own split; task ``pneumoniamnist_cls``).

Run ``python benchmarks/busi.py --help``; ``--quick`` is a seconds-long smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_data import (
    add_common_arguments,
    cpu_train_config,
    emit,
    prepared,
    require_data_root,
    settings,
)

SPLIT_RULES = {
    "busi": "stratified by class; no patient ids in BUSI (subject-agnostic)",
    "pneumoniamnist": "the npz's own train / val / test split (not the official MedMNIST one)",
}
"""How each data set's adapter splits it."""


def classification_summary(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probs: np.ndarray,
    n_classes: int,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Balanced accuracy and macro AUC with 95 % bootstrap intervals, per-class recall."""
    from medfleet.evaluate.metrics.classification import balanced_accuracy, roc_auc
    from medfleet.evaluate.stats.bootstrap import bootstrap_distribution

    labels = list(range(n_classes))

    def bacc(t: np.ndarray, p: np.ndarray) -> float:
        return float(balanced_accuracy(t, p, labels))

    def auc(t: np.ndarray, s: np.ndarray) -> float:
        if len(set(t.tolist())) < n_classes:
            return math.nan
        try:
            return float(roc_auc(t, s, labels=labels, average="macro"))
        except ValueError:
            return math.nan

    out: dict[str, Any] = {"n_test": len(y_true)}
    # resample case indices: the scores are (n, K), one row per case
    index = np.arange(len(y_true))
    for name, fn, arrays in (
        ("balanced_accuracy", bacc, [y_true, y_pred]),
        ("macro_auc", auc, [y_true, probs]),
    ):

        def on_cases(idx: np.ndarray, fn: Any = fn, arrays: list = arrays) -> float:
            return fn(*(a[idx.astype(int)] for a in arrays))

        dist = bootstrap_distribution(
            [index], on_cases, n_resamples=n_resamples, seed=seed, vectorized=False
        )
        dist = dist[np.isfinite(dist)]
        out[name] = {
            "estimate": round(fn(*arrays), 4),
            "ci_low": round(float(np.percentile(dist, 2.5)), 4),
            "ci_high": round(float(np.percentile(dist, 97.5)), 4),
            "resamples": int(dist.size),
        }
    out["recall_per_class"] = [
        round(float(np.mean(y_pred[y_true == k] == k)), 4) if (y_true == k).any() else None
        for k in labels
    ]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, train, predict the test split and score it."""
    import torch

    from medfleet.models import ModelConfig
    from medfleet.tasks import Manifest
    from medfleet.train.datasets import TaskDataset, load_task_rows
    from medfleet.train.predict import predict_dataset
    from medfleet.train.run import load_trained, train_model

    torch.set_num_threads(args.threads)
    root = require_data_root(args.data)
    out = Path(args.out)
    manifest = Manifest.load(
        prepared(args.dataset, root, out / "prepared", limit=args.limit, seed=args.seed)
    )
    task = f"{args.dataset}_cls"
    spec = manifest.task(task)
    classes = list(spec.classes or [])
    counts = {split: {c: 0 for c in classes} for split in ("train", "val", "test")}
    for split in counts:
        for row in load_task_rows(manifest, task, (split,)):
            counts[split][row["label"]] += 1
    model_config = ModelConfig(backbone=args.backbone, image_size=args.image_size, in_channels=1)
    train_config = cpu_train_config(args, args.steps)
    tic = time.perf_counter()
    if args.evaluate_only:
        # score the model a finished run left in OUT/run (e.g. after a crash while scoring)
        loaded = load_trained(out / "run", manifest)
        info = json.loads((out / "run" / "training.json").read_text(encoding="utf-8"))
        model, train_seconds = loaded.model, float(info["train_seconds"])
        steps, parameters = int(info["steps"]), info["parameters"]
    else:
        trained = train_model(manifest, model_config, train_config, out / "run", tasks=[task])
        model, train_seconds = trained.model, trained.result.train_seconds
        steps, parameters = trained.result.steps, trained.info["parameters"]
    test = TaskDataset(manifest, task, ("test",), args.image_size, cache=False)
    preds = predict_dataset(model, test, tta=args.tta)
    y_true = np.array([classes.index(r["label"]) for r in test.rows])
    y_pred = np.array([classes.index(p.label) for p in preds])
    probs = np.array([p.probs for p in preds], dtype=np.float64)
    summary = classification_summary(y_true, y_pred, probs, len(classes), seed=args.seed)
    return {
        "data": str(root / args.dataset),
        "classes": classes,
        "images_per_split": counts,
        "split_rule": SPLIT_RULES[args.dataset],
        "settings": settings(args),
        "train_seconds": round(train_seconds, 1),
        "steps": steps,
        "parameters": parameters,
        "majority_class_balanced_accuracy": round(1.0 / len(classes), 4),
        **summary,
        "wall_seconds": round(time.perf_counter() - tic, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    """One-row markdown table of the result."""
    b, a = result["balanced_accuracy"], result["macro_auc"]
    recall = ", ".join(
        f"{c} {r:.2f}" for c, r in zip(result["classes"], result["recall_per_class"], strict=True)
    )
    return "\n".join(
        [
            "| test images | steps | train s | balanced accuracy [95% CI] | macro AUC [95% CI] "
            "| recall per class |",
            "|---:|---:|---:|---|---|---|",
            f"| {result['n_test']} | {result['steps']} | {result['train_seconds']:.0f} "
            f"| {b['estimate']:.3f} [{b['ci_low']:.3f}, {b['ci_high']:.3f}] "
            f"| {a['estimate']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}] | {recall} |",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(
        parser, out="out/benchmarks/busi", image_size=128, batch_size=16, steps=1600
    )
    parser.add_argument("--limit", type=int, default=None, help="use N images (stratified)")
    parser.add_argument(
        "--dataset", default="busi", choices=sorted(SPLIT_RULES), help="shared data set"
    )
    parser.add_argument("--tta", default="flip", choices=["none", "flip"], help="predict's TTA")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="score the model of a finished run in OUT/run instead of training",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.image_size, args.steps = 60, 32, 4
        args.out = str(Path(args.out) / "quick")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run, print JSON and the markdown table."""
    args = parse_args(argv)
    result = run(args)
    emit(result, markdown(result), "busi.py", argv, args)


if __name__ == "__main__":
    main()
