"""HC18 on real images: head segmentation + head circumference, held-out subjects, CPU budget.

Prepares the shared HC18 subset with the ``hc18`` adapter (``$MEDFLEET_DATA`` or
``../shared/data``; whole subjects per split, checked here), trains one unified model
on ``hc18_seg`` and ``hc18_hc`` jointly (random initialisation: no pretrained weights
are available offline), predicts the test subjects and reports per image:

* Dice and Hausdorff distance (mm) of the predicted head mask on the image's own grid;
* HC absolute difference (mm) from the ellipse fitted to the predicted mask
  (:func:`medfleet.evaluate.challenges.hc18.hc18_case_metrics`, the challenge's ADF);
* HC absolute difference (mm) of the regression head (a length in mm: learned in
  model-grid pixels and scaled back by each image's pixel size, see
  :func:`medfleet.train.datasets.scales_with_spacing`).

Means come with 95 % bootstrap intervals over test images
(:func:`medfleet.evaluate.stats.bootstrap.bootstrap_ci`).

The ``--mask-fraction`` variant keeps the masks of only that share of the training
subjects (the other rows stay in the table without a mask) and trains segmentation alone,
labelled-only and semi-supervised (``--fraction-runs``; mean teacher and FixMatch with
CutMix, ``--consistency-weight``, ``--fixmatch-weight``, ``--cutmix``) at the same step
budget.

Run ``python benchmarks/hc18.py --help``; ``--quick`` is a seconds-long smoke run.
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

SEG, HC = "hc18_seg", "hc18_hc"


def check_subject_split(manifest: Any, task: str = SEG) -> dict[str, int]:
    """Subjects per split; raise when a subject has images in two splits."""
    from medfleet.train.datasets import load_task_rows

    rows = load_task_rows(manifest, task, ("train", "val", "test"), labelled_only=False)
    where: dict[str, set[str]] = {}
    for row in rows:
        where.setdefault(row["subject"], set()).add(row["split"])
    crossing = sorted(s for s, splits in where.items() if len(splits) > 1)
    if crossing:
        raise SystemExit(f"subjects {crossing[:5]} cross splits: the split leaks")
    counts: dict[str, int] = {}
    for splits in where.values():
        split = next(iter(splits))
        counts[split] = counts.get(split, 0) + 1
    return counts


def mask_subset_manifest(manifest_path: Path, out: Path, fraction: float, seed: int = 0) -> Path:
    """A copy of the HC18 manifest whose training rows keep masks for ``fraction`` of subjects.

    The other training rows of ``hc18_seg`` stay with an empty ``mask`` cell (unlabelled);
    validation and test rows are unchanged. Paths become absolute, so the copy can live
    anywhere. Returns the new manifest's path.
    """
    from medfleet.data.catalog.common import stable_key
    from medfleet.tables import read_table, write_table
    from medfleet.tasks import Manifest

    manifest = Manifest.load(manifest_path)
    out.mkdir(parents=True, exist_ok=True)
    for spec in manifest.tasks:
        rows = read_table(manifest.table_path(spec))
        for row in rows:
            for column in ("image", "mask"):
                if (row.get(column) or "").strip():
                    row[column] = str(manifest.resolve(row[column]).resolve())
        if spec.name == SEG:
            subjects = sorted(
                {r["subject"] for r in rows if r["split"] == "train"},
                key=lambda s: stable_key(seed, "masks", s),
            )
            keep = set(subjects[: max(1, round(fraction * len(subjects)))])
            for row in rows:
                if row["split"] == "train" and row["subject"] not in keep:
                    row["mask"] = ""
        write_table(out / Path(spec.table).name, rows)
    copy = manifest.model_copy(update={"name": f"{manifest.name}_masks{round(100 * fraction)}"})
    return copy.save(out / "manifest.yaml")


def summarise(values: Any, seed: int = 0) -> dict[str, float]:
    """Mean with a 95 % bootstrap interval, median and count of the finite values."""
    from medfleet.evaluate.stats.bootstrap import bootstrap_ci

    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    ci = bootstrap_ci(finite, np.mean, n_resamples=2000, seed=seed)
    return {
        "mean": round(float(ci.estimate), 4),
        "ci_low": round(float(ci.low), 4),
        "ci_high": round(float(ci.high), 4),
        "median": round(float(np.median(finite)), 4),
        "n": int(finite.size),
        "n_not_finite": int(arr.size - finite.size),
    }


def train(
    manifest: Any,
    out: Path,
    tasks: list[str],
    args: argparse.Namespace,
    *,
    steps: int,
    semi: str | None = None,
) -> Any:
    """Train one model on ``tasks`` for ``steps`` optimiser steps on the CPU."""
    from medfleet.models import ModelConfig
    from medfleet.train.run import train_model

    extra: dict[str, Any] = {"augment_cutmix": args.augment_cutmix}
    if semi:
        weight = args.fixmatch_weight if semi == "fixmatch" else args.consistency_weight
        extra.update(
            semi_supervised=semi,
            consistency_weight=weight,
            cutmix=args.cutmix,
            unlabelled_ratio=args.unlabelled_ratio,
        )
    model_config = ModelConfig(backbone=args.backbone, image_size=args.image_size, in_channels=1)
    train_config = cpu_train_config(args, steps, **extra)
    return train_model(manifest, model_config, train_config, out, tasks=tasks)


def evaluate(
    model: Any,
    manifest: Any,
    image_size: int,
    *,
    split: str = "test",
    seed: int = 0,
    tta: str = "none",
    postprocess: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Dice, HD (mm), HC error from the mask's ellipse and from the regression head."""
    import torch

    from medfleet.data.io import read_image
    from medfleet.evaluate.challenges.hc18 import hc18_case_metrics
    from medfleet.tables import parse_float
    from medfleet.train.datasets import TaskDataset
    from medfleet.train.predict import predict_dataset

    tasks = {t if isinstance(t, str) else t.name for t in getattr(model, "tasks", [SEG, HC])}
    hc_ds = TaskDataset(manifest, HC, (split,), image_size, cache=False)
    reference = {r["case_id"]: parse_float(r["value"], "value") for r in hc_ds.rows}
    cases: dict[str, dict[str, Any]] = {c: {"hc_ref_mm": v} for c, v in reference.items()}
    with torch.no_grad():
        if SEG in tasks:
            seg_ds = TaskDataset(manifest, SEG, (split,), image_size, cache=False)
            for row, pred in zip(
                seg_ds.rows,
                predict_dataset(model, seg_ds, tta=tta, postprocess=postprocess),
                strict=True,
            ):
                gt = np.asarray(read_image(manifest.resolve(row["mask"])).array)
                metrics = hc18_case_metrics(
                    pred.mask != 0,
                    gt != 0,
                    tuple(pred.spacing),
                    reference_hc=reference[row["case_id"]],
                )
                cases[row["case_id"]].update(
                    dice=metrics["dice"],
                    hd_mm=metrics["hd_mm"],
                    hc_mask_mm=metrics["hc_pred_mm"],
                    hc_mask_abs_err_mm=metrics["adf_mm"],
                )
        if HC in tasks:
            for pred in predict_dataset(model, hc_ds):
                cases[pred.case_id].update(
                    hc_reg_mm=pred.value,
                    hc_reg_abs_err_mm=abs(float(pred.value) - reference[pred.case_id]),
                )
    summary: dict[str, Any] = {"n_images": len(cases)}
    for key in ("dice", "hd_mm", "hc_mask_abs_err_mm", "hc_reg_abs_err_mm"):
        values = [c[key] for c in cases.values() if key in c]
        if values:
            summary[key] = summarise(values, seed)
    ref = np.array([c["hc_ref_mm"] for c in cases.values()])
    summary["mean_hc_baseline_abs_err_mm"] = round(float(np.mean(np.abs(ref - ref.mean()))), 3)
    return {"summary": summary, "cases": cases}


def evaluate_run(model: Any, manifest: Any, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`evaluate` on the test split with the run's size, seed, TTA and post-processing."""
    return evaluate(
        model,
        manifest,
        args.image_size,
        seed=args.seed,
        tta=args.tta,
        postprocess=tuple(args.postprocess),
    )


def _mean_hc_train(manifest: Any) -> float:
    from medfleet.tables import parse_float
    from medfleet.train.datasets import load_task_rows

    return float(np.mean([parse_float(r["value"]) for r in load_task_rows(manifest, HC)]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready result."""
    import torch

    from medfleet.tables import parse_float
    from medfleet.tasks import Manifest
    from medfleet.train.datasets import load_task_rows

    torch.set_num_threads(args.threads)
    root = require_data_root(args.data)
    out = Path(args.out)
    manifest_path = prepared("hc18", root, out / "prepared", limit=args.limit, seed=args.seed)
    manifest = Manifest.load(manifest_path)
    result: dict[str, Any] = {
        "data": str(root / "hc18"),
        "subjects_per_split": check_subject_split(manifest),
        "images_per_split": {
            s: len(load_task_rows(manifest, SEG, (s,))) for s in ("train", "val", "test")
        },
        "settings": settings(args)
        | {
            k: getattr(args, k)
            for k in (
                "fraction_steps",
                "mask_fraction",
                "consistency_weight",
                "fixmatch_weight",
                "cutmix",
                "unlabelled_ratio",
                "augment_cutmix",
                "tta",
                "postprocess",
            )
        },
        "runs": {},
    }
    tic = time.perf_counter()
    if not args.skip_joint:
        trained = train(manifest, out / "joint", [SEG, HC], args, steps=args.steps)
        evaluation = evaluate_run(trained.model, manifest, args)
        # a constant prediction (training mean) as the floor the regression head must beat
        train_mean = _mean_hc_train(manifest)
        test_hc = [parse_float(r["value"]) for r in load_task_rows(manifest, HC, ("test",))]
        evaluation["summary"]["train_mean_hc_abs_err_mm"] = round(
            float(np.mean(np.abs(np.asarray(test_hc) - train_mean))), 3
        )
        result["runs"]["joint"] = {
            "tasks": [SEG, HC],
            "masks": "100%",
            "train_seconds": round(trained.result.train_seconds, 1),
            "steps": trained.result.steps,
            "parameters": trained.info["parameters"],
            **evaluation["summary"],
        }
        _write_run(out / "joint", result["runs"]["joint"], evaluation["cases"])
    if args.mask_fraction:
        label = f"masks{round(100 * args.mask_fraction)}"
        subset_path = mask_subset_manifest(
            manifest_path, out / f"prepared_{label}", args.mask_fraction, args.seed
        )
        subset = Manifest.load(subset_path)
        labelled = len(load_task_rows(subset, SEG, ("train",)))
        modes = [None if m == "labelled-only" else m for m in args.fraction_runs]
        for mode in modes:
            name = f"{label}_{mode or 'labelled-only'}"
            trained = train(subset, out / name, [SEG], args, steps=args.fraction_steps, semi=mode)
            evaluation = evaluate_run(trained.model, subset, args)
            result["runs"][name] = {
                "tasks": [SEG],
                "masks": f"{labelled} of {result['images_per_split']['train']} train images",
                "semi_supervised": mode or "off",
                "train_seconds": round(trained.result.train_seconds, 1),
                "steps": trained.result.steps,
                **evaluation["summary"],
            }
            _write_run(out / name, result["runs"][name], evaluation["cases"])
        reference = f"{label}_labelled-only"
        for name in result["runs"]:
            if name.startswith(label) and name != reference and reference in result["runs"]:
                result.setdefault("paired", {})[name] = compare_runs(
                    out / reference, out / name, seed=args.seed
                )
    result["wall_seconds"] = round(time.perf_counter() - tic, 1)
    return result


def compare_runs(reference: Path, other: Path, seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap (same test images) of ``other - reference`` from two runs' cases.json."""
    from medfleet.evaluate.stats.bootstrap import paired_bootstrap
    from medfleet.utils.jsonsafe import from_json_number

    ref = json.loads((reference / "cases.json").read_text())
    oth = json.loads((other / "cases.json").read_text())
    ids = sorted(set(ref) & set(oth))
    out: dict[str, Any] = {"n_images": len(ids)}
    for key in ("dice", "hd_mm", "hc_mask_abs_err_mm"):
        a = np.array([from_json_number(ref[c].get(key)) for c in ids], float)
        b = np.array([from_json_number(oth[c].get(key)) for c in ids], float)
        paired = paired_bootstrap(a, b, np.mean, n_resamples=2000, seed=seed)
        out[key] = {
            "difference": round(float(paired.estimate), 4),
            "ci_low": round(float(paired.low), 4),
            "ci_high": round(float(paired.high), 4),
            "p_value": round(float(paired.p_value), 4),
        }
    return out


def _write_run(folder: Path, summary: dict[str, Any], cases: dict[str, Any]) -> None:
    """``summary.json`` and ``cases.json`` (per test image) of one run (the JSON policy of
    :mod:`medfleet.utils.jsonsafe`: NaN as null, infinity as "inf")."""
    from medfleet.utils.atomic import write_json_atomic

    write_json_atomic(folder / "cases.json", cases)
    write_json_atomic(folder / "summary.json", summary)


def _fmt(stat: dict[str, float] | None, digits: int = 3) -> str:
    if not stat or not stat.get("n"):
        return "n/a"
    return f"{stat['mean']:.{digits}f} [{stat['ci_low']:.{digits}f}, {stat['ci_high']:.{digits}f}]"


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table (means with 95 % bootstrap CIs)."""
    lines = [
        "| run | masks | steps | train s | Dice | HD (mm) | HC err, mask ellipse (mm) "
        "| HC err, regression (mm) |",
        "|---|---|---:|---:|---|---|---|---|",
    ]
    for name, r in result["runs"].items():
        lines.append(
            f"| {name} | {r['masks']} | {r['steps']} | {r['train_seconds']:.0f} "
            f"| {_fmt(r.get('dice'))} | {_fmt(r.get('hd_mm'), 1)} "
            f"| {_fmt(r.get('hc_mask_abs_err_mm'), 1)} | {_fmt(r.get('hc_reg_abs_err_mm'), 1)} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(
        parser,
        out="out/benchmarks/hc18",
        image_size=128,
        batch_size=8,
        steps=800,
        steps_help="steps of the joint model",
    )
    parser.add_argument("--fraction-steps", type=int, default=400, help="steps per 10%% run")
    parser.add_argument("--mask-fraction", type=float, default=0.1, help="0 skips the variant")
    parser.add_argument(
        "--fraction-runs",
        nargs="*",
        default=["labelled-only", "mean-teacher"],
        choices=["labelled-only", "mean-teacher", "fixmatch"],
        help="runs of the mask-fraction variant, at the same step budget",
    )
    parser.add_argument(
        "--consistency-weight", type=float, default=10.0, help="mean-teacher loss weight"
    )
    parser.add_argument("--fixmatch-weight", type=float, default=2.0, help="FixMatch loss weight")
    parser.add_argument("--cutmix", type=float, default=1.0, help="share of CutMixed views")
    parser.add_argument(
        "--unlabelled-ratio", type=float, default=2.0, help="unlabelled images per labelled one"
    )
    parser.add_argument(
        "--augment-cutmix",
        type=float,
        default=0.0,
        help="supervised CutMix share on the labelled segmentation batches of every run",
    )
    parser.add_argument("--tta", default="flip", choices=["none", "flip"], help="predict's TTA")
    parser.add_argument(
        "--postprocess",
        nargs="*",
        default=["largest-component", "fill-holes"],
        help="segmentation post-processing steps of predict (none: leave out)",
    )
    parser.add_argument("--skip-joint", action="store_true", help="only the fraction variant")
    parser.add_argument("--limit", type=int, default=None, help="use the first N images only")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.image_size, args.steps, args.fraction_steps = 40, 32, 4, 2
        args.out = str(Path(args.out) / "quick")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run, print JSON and the markdown table."""
    args = parse_args(argv)
    result = run(args)
    emit(result, markdown(result), "hc18.py", argv, args)


if __name__ == "__main__":
    main()
