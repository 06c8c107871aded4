"""Landmark detection on phantoms: heatmap model vs the mean-shape baseline; union landmark space.

Data: the vertebral-body phantom task ``spine_landmarks`` (4 corners; anterior is image
left, superior is image top; pixel spacing per site, so errors are in mm).

Part 1, one task: a tiny unified model with the heatmap landmark head (sub-pixel decoding)
trains with ``standard`` augmentation (flip with the anterior/posterior corner pairs
swapped, scale, shift, intensity); it predicts the test split, which is scored by
``medfleet evaluate`` (MRE in mm, SDR at 2 and 4 mm). The **mean-shape baseline**
predicts, for every test image, the mean position of each point over the training rows
(in pixels; all phantom images have the same size) and is scored the same way.

Part 2, a union landmark space: the rows of ``spine_landmarks`` are dealt to two tasks
with different but overlapping point sets (``upper_back``: superior-anterior,
superior-posterior, inferior-posterior; ``lower_back``: inferior-anterior,
superior-posterior, inferior-posterior; see
:func:`medfleet.train.landmark_space.derive_landmark_tasks`). One model trains both with
**one shared head** over the union of 4 points (``ModelConfig.landmark_spaces``; each
task's absent point is masked out of the loss), the other with **separate heads**; both
share the backbone and train for the same steps. Each task gets its own MRE/SDR and
mean-shape baseline.

Run ``python benchmarks/landmarks.py --help``; the defaults give the figures of
BENCHMARKS.md; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SOURCE = "spine_landmarks"
SA, SP, IP, IA = ("superior_anterior", "superior_posterior", "inferior_posterior",
                  "inferior_anterior")  # fmt: skip
PAIRS = [(SA, SP), (IA, IP)]
SUBSETS = {"upper_back": [SA, SP, IP], "lower_back": [IA, SP, IP]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="Output folder (default: temporary).")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--cases-per-site", type=int, default=40)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sigma", type=float, default=1.5, help="Heatmap sigma (cells).")
    p.add_argument("--augment", default="standard", choices=["none", "light", "standard"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parts", default="single,union", help="single and/or union.")
    p.add_argument("--quick", action="store_true", help="Tiny smoke run.")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.sites, args.cases_per_site, args.steps, args.batch_size = 32, 2, 12, 3, 2
    return args


def _config(args: argparse.Namespace) -> Any:
    from medfleet.train.config import TrainConfig

    return TrainConfig(
        epochs=1,
        batches_per_epoch=args.steps,
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        val_every=0,
        checkpoint_every=0,
        tensorboard=False,
        log_every=10,
        augment=args.augment,
        flip_pairs=PAIRS,
    )


def _model_config(args: argparse.Namespace, spaces: dict[str, str] | None = None) -> Any:
    from medfleet.models import HeadConfig, ModelConfig

    return ModelConfig(
        image_size=args.size,
        heads=HeadConfig(landmark_sigma=args.sigma),
        landmark_spaces=spaces or {},
    )


def _dataset(summary: dict[str, Any]) -> dict[str, float]:
    d = summary["dataset"]
    return {"mre_mm": d["mre"], "sd_mm": d["sd"], "sdr_2mm": d["sdr_2"], "sdr_4mm": d["sdr_4"]}


def mean_shape_scores(manifest: Any, run: Any, task: str, out: Path) -> dict[str, float]:
    """Score the mean-shape baseline on the rows the model predicted."""
    from medfleet.evaluate.runner import run_evaluation
    from medfleet.tables import format_landmarks
    from medfleet.train.landmark_space import mean_shape
    from medfleet.train.predict import evaluation_config

    spec = manifest.task(task)
    source = run.out / task
    target = out / task
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "reference.csv", target / "reference.csv")
    with open(source / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cell = format_landmarks(mean_shape(manifest, task).round(4))
    for row in rows:
        row["landmarks"] = cell
    with open(target / "predictions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = evaluation_config(spec, target, out / "evaluation" / task)
    return _dataset(run_evaluation(dataclasses.replace(config, report=False)).summary)


def train_and_score(
    args: argparse.Namespace, manifest: Any, tasks: list[str], out: Path, spaces: dict | None
) -> dict[str, Any]:
    """Train one model on ``tasks``, predict and score the test split, plus baselines."""
    from medfleet.train.predict import evaluate_predictions, predict_manifest
    from medfleet.train.run import count_parameters, train_model

    tic = time.perf_counter()
    trained = train_model(manifest, _model_config(args, spaces), _config(args), out, tasks=tasks)
    seconds = time.perf_counter() - tic
    run = predict_manifest(trained.model, manifest, out / "pred", image_size=args.size)
    scores = evaluate_predictions(manifest, run, report=False)
    result: dict[str, Any] = {
        "train_seconds": round(seconds, 1),
        "parameters": count_parameters(trained.model),
        "head_parameters": trained.model.count_parameters()["heads"],
        "tasks": {},
    }
    for task in tasks:
        result["tasks"][task] = {
            "model": _dataset(scores[task]["summary"]),
            "mean_shape": mean_shape_scores(manifest, run, task, out / "baseline"),
            "n_test": run.tasks[task]["n_reference"],
        }
    return result


def markdown(results: dict[str, Any]) -> str:
    """The result tables."""
    lines = [
        "| part | task | predictor | MRE mm (SD) | SDR@2mm | SDR@4mm | test cases |",
        "|---|---|---|---|---|---|---|",
    ]
    for part, res in results.items():
        for task, r in res["tasks"].items():
            for name, m in (("heatmap model", r["model"]), ("mean shape", r["mean_shape"])):
                lines.append(
                    f"| {part} | {task} | {name} | {m['mre_mm']:.2f} ({m['sd_mm']:.2f}) | "
                    f"{m['sdr_2mm']:.2f} | {m['sdr_4mm']:.2f} | {r['n_test']} |"
                )
    lines.append("")
    lines.append("| part | parameters | head parameters | train s |")
    lines.append("|---|---|---|---|")
    for part, res in results.items():
        lines.append(
            f"| {part} | {res['parameters']:,} | {res['head_parameters']:,} | "
            f"{res['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables and write ``OUT/landmarks.json``."""
    args = parse_args(argv)
    import torch

    from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    from medfleet.tasks import Manifest
    from medfleet.train.landmark_space import derive_landmark_tasks
    from medfleet.utils.atomic import write_json_atomic

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="medfleet-landmarks-"))
    out.mkdir(parents=True, exist_ok=True)
    path = generate_phantoms(
        out / "data",
        PhantomConfig(tasks=[SOURCE]),
        sites=args.sites,
        cases_per_site=args.cases_per_site,
        size=args.size,
        seed=args.seed,
    )
    manifest = Manifest.load(path)
    parts = {p.strip() for p in args.parts.split(",")}
    results: dict[str, Any] = {}
    if "single" in parts:
        results["single task"] = train_and_score(args, manifest, [SOURCE], out / "single", None)
    if "union" in parts:
        union = Manifest.load(
            derive_landmark_tasks(manifest, SOURCE, SUBSETS, path.parent / "union.yaml")
        )
        tasks = list(SUBSETS)
        spaces = dict.fromkeys(tasks, "spine")
        results["union space"] = train_and_score(args, union, tasks, out / "union", spaces)
        results["separate heads"] = train_and_score(args, union, tasks, out / "separate", None)
    for part, res in results.items():
        print(part, {t: r["model"]["mre_mm"] for t, r in res["tasks"].items()})
    command = "python benchmarks/landmarks.py " + shlex.join(argv or sys.argv[1:])
    payload = {
        "command": command.strip(),
        "machine": platform.platform(),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "results": results,
    }
    write_json_atomic(out / "landmarks.json", payload)
    print(markdown(results))
    print(f"results: {out / 'landmarks.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
