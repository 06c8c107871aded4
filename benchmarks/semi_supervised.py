"""Semi-supervised segmentation on phantoms with 10 % of the masks: gain over labelled-only.

The organ + lesion phantom task (``organ_lesion_seg``, labels organ and lesion) is
generated, then the ``mask`` cell of all but ``--keep`` of the training rows is emptied
(:func:`medfleet.train.semi.drop_labels`), so those rows become unlabelled. Three runs
train the same tiny unified model for the same number of optimiser steps with the same
labelled batches, augmentation (``--augment`` and, on the labelled batches of every run,
supervised CutMix ``--augment-cutmix``) and seed:

* ``labelled-only``: the labelled rows only (the unlabelled rows are ignored);
* ``mean-teacher``: plus the EMA-teacher consistency loss on the unlabelled rows;
* ``fixmatch``: plus confidence-thresholded pseudo-labels on the unlabelled rows.

The semi-supervised runs CutMix their strong views (``--cutmix``) and draw
``--unlabelled-ratio`` unlabelled images per labelled one. ``--unlabelled-rows N`` is an
ablation that deletes all but N unlabelled rows, so the unlabelled pool is (nearly) the
labelled images: the gain that remains then comes from the consistency loss itself, not
from unlabelled images.

Each model predicts a split (``--split``: tune on ``val``, report ``test``) and is scored
with ``medfleet evaluate`` (:func:`medfleet.train.predict.evaluate_predictions`); the
report gives the Dice (mean over foreground labels, then cases) with a 95 % bootstrap
interval over cases, the organ and lesion Dice, the paired bootstrap difference to
``labelled-only`` (same cases, same seed) and, for semi-supervised runs, the Dice of the
student next to the kept model (the EMA teacher by default, ``--semi-final``). With several
``--seeds`` every seed is a separate training run; a second table gives per method the
mean ± sd over seeds and the seed-averaged paired gain with a bootstrap interval over cases.

The "same budget" is the same number of optimiser steps; a semi-supervised step also
runs the unlabelled images and a teacher forward pass, so it costs more time; the wall
time of each run is reported.

Run ``python benchmarks/semi_supervised.py --help``; the defaults are the settings of the
figures in BENCHMARKS.md (chosen on the val split), which also gives their commands;
``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METHODS = ("labelled-only", "mean-teacher", "fixmatch")
TASK = "organ_lesion_seg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="Output folder (default: temporary).")
    p.add_argument("--size", type=int, default=32, help="Phantom and model image size.")
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--cases-per-site", type=int, default=40)
    p.add_argument("--keep", type=float, default=0.1, help="Share of training masks kept.")
    p.add_argument("--steps", type=int, default=800, help="Optimiser steps of every run.")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--augment", default="light", choices=["none", "light", "standard"])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", default="0", help="Comma-separated training seeds.")
    p.add_argument("--ema-decay", type=float, default=0.99)
    p.add_argument("--consistency-weight", type=float, default=10.0, help="Mean-teacher weight.")
    p.add_argument(
        "--fixmatch-weight",
        type=float,
        default=2.0,
        help="Unlabelled-loss weight of FixMatch.",
    )
    p.add_argument("--consistency-rampup", type=float, default=0.3)
    p.add_argument("--threshold", type=float, default=0.9, help="FixMatch confidence.")
    p.add_argument("--unlabelled-ratio", type=float, default=2.0)
    p.add_argument("--strong-geometric", action="store_true", help="Own geometry per view.")
    p.add_argument("--class-balanced", action="store_true", help="Class-balanced loss.")
    p.add_argument("--strong-scale", type=float, default=1.0, help="Strong-view jitter scale.")
    p.add_argument("--cutmix", type=float, default=1.0, help="Share of strong views CutMixed.")
    p.add_argument(
        "--augment-cutmix",
        type=float,
        default=1.0,
        help="Supervised CutMix on the labelled batches of every method (0: off).",
    )
    p.add_argument(
        "--feature-dropout", type=float, default=0.0, help="UniMatch FP branch dropout (0: off)."
    )
    p.add_argument(
        "--semi-final",
        default="teacher",
        choices=["teacher", "student"],
        help="Model kept by a semi-supervised run (the student is always scored as well).",
    )
    p.add_argument(
        "--no-include-labelled",
        action="store_true",
        help="Leave the labelled images out of the unlabelled loss.",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["val", "test"],
        help="Split scored: tune on val, report test.",
    )
    p.add_argument(
        "--unlabelled-rows",
        type=int,
        default=None,
        help="Ablation: keep only the first N unlabelled training rows in the table (the "
        "pool then holds the labelled images and these N); default: all.",
    )
    p.add_argument("--data-seed", type=int, default=0, help="Phantom and mask-drop seed.")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-resamples", type=int, default=2000)
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        help="Combine the runs of earlier result files (e.g. seeds run in parallel) into one "
        "report in --out instead of training.",
    )
    p.add_argument("--quick", action="store_true", help="Tiny smoke run.")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.sites, args.cases_per_site, args.steps = 32, 1, 24, 4
        args.batch_size, args.n_resamples = 2, 200
    return args


def make_data(args: argparse.Namespace, root: Path) -> tuple[Path, dict[str, int]]:
    """Generate the phantoms and drop all but ``--keep`` of the training masks."""
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    from medfleet.tasks import Manifest
    from medfleet.train.semi import drop_labels

    path = generate_phantoms(
        root / "data",
        PhantomConfig(tasks=[TASK]),
        sites=args.sites,
        cases_per_site=args.cases_per_site,
        size=args.size,
        seed=args.data_seed,
    )
    manifest = Manifest.load(path)
    counts = drop_labels(manifest, TASK, args.keep, seed=args.data_seed)
    if args.unlabelled_rows is not None:
        counts["unlabelled"] = limit_unlabelled(manifest, args.unlabelled_rows)
    return path, counts


def limit_unlabelled(manifest: Any, keep: int) -> int:
    """Remove all but the first ``keep`` unlabelled training rows from the task's table."""
    from medfleet.tables import read_table, write_table
    from medfleet.train.datasets import is_labelled

    spec = manifest.task(TASK)
    path = manifest.table_path(spec)
    rows = read_table(path)
    kept, out = 0, []
    for row in rows:
        if row.get("split") == "train" and not is_labelled(spec, row):
            if kept >= keep:
                continue
            kept += 1
        out.append(row)
    write_table(path, out, columns=list(rows[0]))
    return kept


def train_config(args: argparse.Namespace, method: str, seed: int) -> Any:
    """The training settings of one run (identical apart from the method)."""
    from medfleet.train.config import TrainConfig

    return TrainConfig(
        epochs=1,
        batches_per_epoch=args.steps,
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        threads=args.threads,
        val_every=0,
        checkpoint_every=0,
        tensorboard=False,
        log_every=10,
        augment=args.augment,
        augment_cutmix=args.augment_cutmix,
        semi_supervised=None if method == "labelled-only" else method,
        ema_decay=args.ema_decay,
        consistency_weight=(
            args.fixmatch_weight if method == "fixmatch" else args.consistency_weight
        ),
        consistency_rampup=args.consistency_rampup,
        confidence_threshold=args.threshold,
        unlabelled_ratio=args.unlabelled_ratio,
        semi_final=args.semi_final,
        strong_scale=args.strong_scale,
        semi_class_balanced=args.class_balanced,
        strong_geometric=args.strong_geometric,
        cutmix=args.cutmix,
        feature_dropout=args.feature_dropout,
        semi_include_labelled=not args.no_include_labelled,
    )


def score(model: Any, manifest: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Per-case Dice (mean over labels) and mean Dice per label on ``args.split``."""
    import csv

    from medfleet.train.predict import evaluate_predictions, predict_manifest
    from medfleet.train.transfer import read_case_values

    run = predict_manifest(model, manifest, out, image_size=args.size, split=args.split)
    scores = evaluate_predictions(manifest, run, report=False)
    path = scores[TASK]["cases_csv"]
    cases = read_case_values(manifest.task(TASK), path)
    per_label: dict[str, list[float]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("dice_valid", "True") == "True":
                per_label.setdefault(row["label"], []).append(float(row["dice"]))
    return {
        "dice": {case: values[0] for case, values in sorted(cases.items())},
        "label_dice": {k: sum(v) / len(v) for k, v in sorted(per_label.items())},
    }


def run_one(
    args: argparse.Namespace, manifest_path: Path, method: str, seed: int, out: Path
) -> dict[str, Any]:
    """Train, predict ``args.split``, score it; per-case Dice and the run's figures.

    A semi-supervised run's kept model (``--semi-final``) is scored, and its student too.
    """
    import copy

    import torch

    from medfleet.models import ModelConfig
    from medfleet.tasks import Manifest
    from medfleet.train.run import train_model

    manifest = Manifest.load(manifest_path)
    tic = time.perf_counter()
    trained = train_model(
        manifest, ModelConfig(image_size=args.size), train_config(args, method, seed), out
    )
    train_s = time.perf_counter() - tic
    result = {"method": method, "seed": seed, "train_seconds": round(train_s, 1)}
    result.update(score(trained.model, manifest, args, out / "pred"))
    if method != "labelled-only":
        state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
        student = copy.deepcopy(trained.model)
        student.load_state_dict(state["model"])
        student.eval()
        scored = score(student, manifest, args, out / "pred_student")
        result["student_dice"] = scored["dice"]
        result["student_label_dice"] = scored["label_dice"]
    return result


def summarise(results: list[dict[str, Any]], n_resamples: int) -> list[dict[str, Any]]:
    """Mean Dice with bootstrap CI, and the paired difference to labelled-only, per run."""
    import numpy as np

    from medfleet.evaluate.stats.bootstrap import bootstrap_ci, paired_bootstrap

    base = {r["seed"]: r for r in results if r["method"] == "labelled-only"}
    rows = []
    for r in results:
        cases = list(r["dice"])
        values = np.array([r["dice"][c] for c in cases], dtype=float)
        ci = bootstrap_ci(values, n_resamples=n_resamples, seed=0)
        row = {
            "method": r["method"],
            "seed": r["seed"],
            "dice": ci.estimate,
            "ci": [ci.low, ci.high],
            "n_cases": ci.n,
            "train_seconds": r["train_seconds"],
            "label_dice": r["label_dice"],
        }
        if "student_dice" in r:
            row["student_dice"] = float(np.mean([r["student_dice"][c] for c in cases]))
        ref = base.get(r["seed"])
        if ref is not None and r["method"] != "labelled-only":
            a = np.array([ref["dice"][c] for c in cases], dtype=float)
            diff = paired_bootstrap(a, values, n_resamples=n_resamples, seed=0)
            row["gain"] = diff.estimate
            row["gain_ci"] = [diff.low, diff.high]
            row["p_value"] = diff.p_value
        rows.append(row)
    return rows


def pooled(results: list[dict[str, Any]], n_resamples: int) -> list[dict[str, Any]]:
    """Per method over seeds: mean and sd of the Dice, and the paired gain over all
    (seed, case) pairs with a bootstrap interval that resamples cases (seeds kept)."""
    import numpy as np

    from medfleet.evaluate.stats.bootstrap import paired_bootstrap

    base = {r["seed"]: r for r in results if r["method"] == "labelled-only"}
    out = []
    for method in dict.fromkeys(r["method"] for r in results):
        runs = [r for r in results if r["method"] == method]
        means = [float(np.mean(list(r["dice"].values()))) for r in runs]
        row: dict[str, Any] = {
            "method": method,
            "seeds": [r["seed"] for r in runs],
            "dice_mean": float(np.mean(means)),
            "dice_sd": float(np.std(means, ddof=1)) if len(means) > 1 else 0.0,
        }
        paired = [r for r in runs if r["seed"] in base]
        if method != "labelled-only" and paired:
            cases = list(paired[0]["dice"])
            a = np.array([[base[r["seed"]]["dice"][c] for r in paired] for c in cases])
            b = np.array([[r["dice"][c] for r in paired] for c in cases])
            diff = paired_bootstrap(a.mean(1), b.mean(1), n_resamples=n_resamples, seed=0)
            row["gain"] = diff.estimate
            row["gain_ci"] = [diff.low, diff.high]
            row["gains_per_seed"] = [float(x) for x in (b - a).mean(0)]
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]], split: str = "test") -> str:
    """The result table."""
    lines = [
        f"| method | seed | {split} Dice (95% CI) | gain vs labelled-only (95% CI, paired) "
        "| organ / lesion Dice | student Dice | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = "–"
        if "gain" in r:
            gain = f"{r['gain']:+.3f} [{r['gain_ci'][0]:+.3f}, {r['gain_ci'][1]:+.3f}]"
        labels = " / ".join(f"{v:.3f}" for v in r["label_dice"].values())
        student = f"{r['student_dice']:.3f}" if "student_dice" in r else "–"
        lines.append(
            f"| {r['method']} | {r['seed']} | {r['dice']:.3f} [{r['ci'][0]:.3f}, "
            f"{r['ci'][1]:.3f}] | {gain} | {labels} | {student} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def markdown_pooled(rows: list[dict[str, Any]]) -> str:
    """The over-seeds table."""
    lines = [
        "| method | seeds | Dice mean ± sd | gain per seed | pooled gain (95% CI, paired) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        gain, per_seed = "–", "–"
        if "gain" in r:
            gain = f"{r['gain']:+.3f} [{r['gain_ci'][0]:+.3f}, {r['gain_ci'][1]:+.3f}]"
            per_seed = ", ".join(f"{g:+.3f}" for g in r["gains_per_seed"])
        lines.append(
            f"| {r['method']} | {len(r['seeds'])} | {r['dice_mean']:.3f} ± {r['dice_sd']:.3f} "
            f"| {per_seed} | {gain} |"
        )
    return "\n".join(lines)


def report(
    results: list[dict[str, Any]], args: argparse.Namespace, payload: dict[str, Any], out: Path
) -> None:
    """Summarise ``results``, write ``OUT/semi_supervised.json`` and print the tables."""
    from medfleet.utils.atomic import write_json_atomic

    rows = summarise(results, args.n_resamples)
    over_seeds = pooled(results, args.n_resamples)
    payload = {**payload, "rows": rows, "over_seeds": over_seeds, "results": results}
    write_json_atomic(out / "semi_supervised.json", payload)
    print(markdown(rows, args.split))
    print(markdown_pooled(over_seeds))
    print(f"results: {out / 'semi_supervised.json'}")


def merge(args: argparse.Namespace, out: Path, command: str) -> int:
    """Report the runs of several result files together (same data and settings)."""
    import json

    loaded = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.merge]
    for f, data in zip(args.merge, loaded, strict=True):
        if "results" not in data:
            raise SystemExit(f"{f}: has no per-case results (written by an older version)")
    first = loaded[0]
    for f, data in zip(args.merge[1:], loaded[1:], strict=True):
        a = {k: v for k, v in first["settings"].items() if k not in ("seeds", "out", "merge")}
        b = {k: v for k, v in data["settings"].items() if k not in ("seeds", "out", "merge")}
        if a != b:
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            raise SystemExit(f"{f}: settings differ from {args.merge[0]} in {diff}")
    results = [r for data in loaded for r in data["results"]]
    seen = [(r["method"], r["seed"]) for r in results]
    if len(seen) != len(set(seen)):
        raise SystemExit("the files share (method, seed) runs: merge disjoint seeds")
    args.split = first["settings"]["split"]
    payload = {
        "command": command,
        "merged": [
            {"file": str(f), "command": d["command"]}
            for f, d in zip(args.merge, loaded, strict=True)
        ],
        "machine": first["machine"],
        "masks": first["masks"],
        "settings": first["settings"],
    }
    report(results, args, payload, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (and JSON to ``OUT/semi_supervised.json``)."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="medfleet-semi-"))
    out.mkdir(parents=True, exist_ok=True)
    command = ("python benchmarks/semi_supervised.py " + shlex.join(argv or sys.argv[1:])).strip()
    if args.merge:
        return merge(args, out, command)
    manifest_path, counts = make_data(args, out)
    print(f"training masks kept: {counts['labelled']}, dropped: {counts['unlabelled']}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for method in methods:
            result = run_one(args, manifest_path, method, seed, out / f"{method}_s{seed}")
            mean = sum(result["dice"].values()) / max(1, len(result["dice"]))
            extra = ""
            if "student_dice" in result:
                s_mean = sum(result["student_dice"].values()) / max(1, len(result["student_dice"]))
                extra = f", student {s_mean:.4f}"
            print(
                f"{method} seed {seed}: {args.split} Dice {mean:.4f}{extra} "
                f"{result['label_dice']} ({result['train_seconds']} s)",
                flush=True,
            )
            results.append(result)
    payload = {
        "command": command,
        "machine": platform.platform(),
        "masks": counts,
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    report(results, args, payload, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
