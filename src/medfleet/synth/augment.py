"""Downstream study: does adding synthetic pairs help a detector or segmenter?

:func:`run_augment_study` holds out one **external site** entirely, trains a synthesis
model on the internal sites' ``train`` rows, generates pairs from those layouts, then
trains the same detector/segmenter (same configuration, steps and seed) on the internal
``train`` rows plus ``fraction x n_train`` synthetic pairs for each fraction, and scores
every model on the internal ``test`` rows and on all rows of the external site:

* detection: **detection rate** = found ground-truth boxes / all ground-truth boxes, a
  box being found by a prediction with IoU >= ``iou`` (greedy matching in score order,
  predictions scoring below ``score_threshold`` dropped), with a paired percentile
  bootstrap CI over images (ratio of sums);
* segmentation: mean **Dice** over foreground labels per image, bootstrap CI of the mean.

``OUT/results.csv``, ``OUT/results.json`` and ``OUT/report.html`` (table and plot) hold
the results; ``OUT/data`` the derived manifest, ``OUT/synth_model`` the synthesis model,
``OUT/synthetic`` the pairs and ``OUT/runs/f<percent>`` each trained model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.synth.config import SampleConfig, SynthConfig
from medfleet.tables import parse_boxes, read_table, write_table
from medfleet.tasks import Manifest, TaskType
from medfleet.utils.atomic import write_json_atomic

LogFn = Callable[[str], None]
DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.5)
PATH_COLUMNS = ("image", "mask", "instance_mask", "lesion_mask")


@dataclass
class StudySettings:
    """Settings of the augmentation study.

    Attributes:
        fractions: Synthetic pairs added, as fractions of the internal training rows.
        external_site: Site held out for external testing (default: the last site).
        iou: IoU needed for a detection to count.
        score_threshold: Minimum score of a counted detection.
        steps: Optimiser steps of every downstream model.
        batch_size: Batch size of the downstream models.
        image_size: Input side of the downstream models.
        backbone: Backbone of the downstream models (the default of ``medfleet train``).
        lr: Learning rate of the downstream models.
        n_resamples: Bootstrap resamples of the CIs.
        layout: Layout of the synthetic pairs (``from-manifest`` or ``random``).
        seed: Seed of everything.
        threads: CPU threads of torch.
    """

    fractions: Sequence[float] = DEFAULT_FRACTIONS
    external_site: str | None = None
    iou: float = 0.5
    score_threshold: float = 0.3
    steps: int = 200
    batch_size: int = 8
    image_size: int = 32
    backbone: str = "unet-small"
    lr: float = 1e-3
    n_resamples: int = 1000
    layout: str = "from-manifest"
    seed: int = 0
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def is_path_column(column: str) -> bool:
    """Whether a table column holds file paths (image and mask columns).

    Example:
        >>> [is_path_column(c) for c in ("image", "mask_rater2", "head_mask", "site")]
        [True, True, True, False]
    """
    return column in PATH_COLUMNS or column.startswith("mask") or column.endswith("_mask")


def absolute_paths(row: dict[str, str], manifest: Manifest) -> dict[str, str]:
    """Make the row's path cells absolute (in place) so the row can move to another table."""
    for column, value in row.items():
        if column and value and is_path_column(column):
            row[column] = str(manifest.resolve(value).resolve())
    return row


def derive_study_data(
    manifest: Manifest, task: str, out: str | Path, external_site: str | None = None
) -> tuple[Path, str, int]:
    """One-task manifest whose external site's rows are all ``test`` (absolute paths).

    Returns:
        The manifest path, the external site and the number of internal training rows.

    Raises:
        MedfleetError: Fewer than two sites, or an unknown external site.
    """
    spec = manifest.task(task)
    rows = read_table(manifest.table_path(spec))
    sites = [s for s in manifest.site_names if any(r.get("site") == s for r in rows)]
    if len(sites) < 2:
        raise MedfleetError(
            f"task {task!r} has rows from {len(sites)} site(s); the study needs an internal and "
            "an external site (fix: use a manifest with at least two sites)"
        )
    external = external_site or sites[-1]
    if external not in sites:
        raise MedfleetError(f"external site {external!r} has no rows of {task!r}; sites: {sites}")
    derived = []
    for row in rows:
        row = dict(row)
        absolute_paths(row, manifest)
        if row.get("site") == external:
            row["split"] = "test"
        row.setdefault("synthetic", "0")
        derived.append(row)
    out = Path(out)
    table = f"{task}.csv"
    write_table(out / table, derived)
    new = Manifest(
        name=f"{manifest.name}-{task}-study",
        sites=manifest.sites,
        tasks=[spec.model_copy(update={"table": Path(table), "raters": 0})],
    )
    n_train = sum(1 for r in derived if r["split"] == "train")
    return new.save(out / "manifest.yaml"), external, n_train


def mix_manifest(
    data_manifest: Path, synthetic_manifest: Path | None, count: int, out: str | Path
) -> Path:
    """The study data plus the first ``count`` synthetic rows (absolute paths)."""
    base = Manifest.load(data_manifest)
    spec = base.tasks[0]
    rows = read_table(base.table_path(spec))
    if count and synthetic_manifest is not None:
        syn = Manifest.load(synthetic_manifest)
        extra = read_table(syn.table_path(syn.tasks[0]))[:count]
        for row in extra:
            absolute_paths(row, syn)
        rows += extra
    out = Path(out)
    write_table(out / spec.table, rows)
    sites = list(base.sites)
    if any(r.get("site") == "synthetic" for r in rows):
        from medfleet.tasks import Site

        sites.append(Site(name="synthetic"))
    manifest = Manifest(name=f"{base.name}-mix{count}", sites=sites, tasks=[spec])
    return manifest.save(out / "manifest.yaml")


def _ratio(tp: np.ndarray, gt: np.ndarray, axis: int = -1) -> Any:
    total = gt.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp.sum(axis=axis) / total


def metric_with_ci(
    kind: str, values: dict[str, np.ndarray], n_resamples: int, seed: int
) -> dict[str, float]:
    """Estimate and percentile 95% CI of the detection rate or the mean Dice.

    Example:
        >>> r = metric_with_ci("detection_rate", {"tp": np.array([1, 0, 2]),
        ...                    "gt": np.array([1, 1, 2])}, 200, 0)
        >>> r["estimate"], r["low"] <= r["estimate"] <= r["high"]
        (0.75, True)
    """
    from medfleet.evaluate.stats.bootstrap import bootstrap_distribution

    if kind == "detection_rate":
        tp, gt = values["tp"].astype(float), values["gt"].astype(float)
        estimate = float(_ratio(tp, gt))
        boot = bootstrap_distribution(
            [tp, gt], _ratio, n_resamples=n_resamples, seed=seed, vectorized=True
        )
        n = int(gt.sum())
    else:
        dice = values["dice"][np.isfinite(values["dice"])]
        estimate = float(dice.mean()) if dice.size else math.nan
        boot = bootstrap_distribution(
            [dice], np.mean, n_resamples=n_resamples, seed=seed, vectorized=True
        )
        n = int(dice.size)
    boot = boot[np.isfinite(boot)]
    low, high = np.quantile(boot, [0.025, 0.975]) if boot.size else (math.nan, math.nan)
    return {"estimate": estimate, "low": float(low), "high": float(high), "n": n}


def score_model(
    loaded: Any,
    manifest: Manifest,
    task: str,
    image_size: int,
    normalisation: str,
    sites: dict[str, Callable[[dict[str, str]], bool]],
    settings: StudySettings,
) -> dict[str, dict[str, float]]:
    """Detection rate or Dice of a trained model on the test rows of each site group."""
    from medfleet.evaluate.metrics.detection import detection_counts
    from medfleet.evaluate.metrics.overlap import overlap_metrics
    from medfleet.train.datasets import TaskDataset
    from medfleet.train.predict import predict_dataset

    spec = manifest.task(task)
    dataset = TaskDataset(
        manifest,
        spec,
        ("test",),
        image_size,
        normalisation=normalisation,  # type: ignore[arg-type]
    )
    preds = predict_dataset(loaded, dataset)
    out = {}
    for group, keep in sites.items():
        picked = [(row, p) for row, p in zip(dataset.rows, preds, strict=True) if keep(row)]
        if spec.type is TaskType.detection:
            tp, gt = [], []
            for row, p in picked:
                truth = [b.coords for b in parse_boxes(row["boxes"])]
                boxes = np.zeros((0, 4)) if p.boxes is None else p.boxes
                counts = detection_counts(
                    boxes, np.array(truth).reshape(-1, 4), p.scores, settings.iou,
                    settings.score_threshold,
                )  # fmt: skip
                tp.append(counts.tp)
                gt.append(len(truth))
            values = {"tp": np.array(tp), "gt": np.array(gt)}
            kind = "detection_rate"
        else:
            from medfleet.data.io import read_image

            dice = []
            for row, p in picked:
                ref = np.asarray(read_image(manifest.resolve(row["mask"])).array)
                result = overlap_metrics(p.mask, ref, spec.foreground_labels)
                per = [result.value("dice", v) for v in spec.foreground_labels]
                dice.append(float(np.nanmean(per)) if np.isfinite(per).any() else math.nan)
            values = {"dice": np.array(dice, float)}
            kind = "dice"
        out[group] = {"metric": kind, **metric_with_ci(kind, values, settings.n_resamples,
                                                        settings.seed)}  # fmt: skip
    return out


def run_augment_study(
    manifest_path: str | Path,
    task: str,
    out: str | Path,
    *,
    settings: StudySettings | None = None,
    synth_config: SynthConfig | None = None,
    sample_config: SampleConfig | None = None,
    synth_model: str | Path | None = None,
    caption_template: str | None = None,
    caption_column: str | None = None,
    log: LogFn | None = None,
) -> dict[str, Any]:
    """Run the study and write results and report (see the module notes).

    Args:
        manifest_path: The manifest.
        task: A detection or segmentation task.
        out: Output folder.
        settings: Study settings.
        synth_config: Settings of the synthesis model (trained on internal train rows).
        sample_config: Sampling settings.
        synth_model: Use this trained synthesis model instead of training one.
        caption_template: Caption template of the synthesis model.
        caption_column: Caption column of the synthesis model.
        log: Receives progress lines.

    Returns:
        The content of ``results.json``.
    """
    import torch

    from medfleet.models import ModelConfig
    from medfleet.synth.sample import write_synthetic_set
    from medfleet.synth.train import train_synth
    from medfleet.train.config import TrainConfig
    from medfleet.train.run import train_model

    settings = settings or StudySettings()
    say = log or (lambda _line: None)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    out = Path(out)
    manifest = Manifest.load(manifest_path)
    data_path, external, n_train = derive_study_data(
        manifest, task, out / "data", settings.external_site
    )
    data = Manifest.load(data_path)
    say(f"internal train rows: {n_train}; external site: {external}")
    model_dir = Path(synth_model) if synth_model else out / "synth_model"
    if synth_model is None:
        cfg = synth_config or SynthConfig(seed=settings.seed, threads=settings.threads)
        result = train_synth(
            data, task, model_dir, cfg, caption_column=caption_column,
            caption_template=caption_template, log=say,
        )  # fmt: skip
        synth_info = result.info
    else:
        import json

        synth_info = json.loads((model_dir / "medfleet_synth.json").read_text())
    counts = {f: round(f * n_train) for f in settings.fractions}
    n_syn = max(counts.values())
    syn_manifest = None
    if n_syn:
        sample_config = sample_config or SampleConfig(seed=settings.seed)
        syn_manifest = write_synthetic_set(
            model_dir, out / "synthetic", n_syn, layout=settings.layout,  # type: ignore[arg-type]
            config=sample_config,
        )  # fmt: skip
        say(f"generated {n_syn} synthetic pairs")
    groups = {
        "internal": lambda r: r.get("site") != external,
        "external": lambda r: r.get("site") == external,
    }
    results = []
    for fraction in settings.fractions:
        count = counts[fraction]
        run_dir = out / "runs" / f"f{round(100 * fraction):03d}"
        mixed = Manifest.load(mix_manifest(data_path, syn_manifest, count, run_dir / "data"))
        model_config = ModelConfig(backbone=settings.backbone, image_size=settings.image_size)
        train_config = TrainConfig(
            epochs=1000, max_steps=settings.steps, batch_size=settings.batch_size,
            lr=settings.lr, seed=settings.seed, threads=settings.threads, device="cpu",
            val_every=0, tensorboard=False, checkpoint_every=0,
        )  # fmt: skip
        trained = train_model(mixed, model_config, train_config, run_dir / "model", tasks=[task])
        scores = score_model(
            trained.model, data, task, settings.image_size, train_config.normalisation,
            groups, settings,
        )  # fmt: skip
        for group, score in scores.items():
            results.append({"fraction": fraction, "synthetic_rows": count, "group": group, **score})
        say(
            f"+{100 * fraction:.0f}% synthetic ({count}): "
            + ", ".join(f"{g} {s['metric']} {s['estimate']:.3f}" for g, s in scores.items())
        )
    summary = {
        "task": task,
        "external_site": external,
        "internal_train_rows": n_train,
        "settings": {k: v for k, v in settings.__dict__.items() if k != "extra"},
        "synthesis": {
            k: synth_info.get(k) for k in ("reconstruction", "loss_last", "train_seconds")
        },
        "results": results,
    }
    write_table(out / "results.csv", results)
    write_json_atomic(out / "results.json", summary)
    write_study_report(summary, out / "report.html")
    return summary


def study_plot(results: Sequence[dict[str, Any]]) -> bytes:
    """Metric against synthetic fraction, one line with CI bars per group (PNG bytes)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for group in sorted({r["group"] for r in results}):
        rows = [r for r in results if r["group"] == group]
        x = [100 * r["fraction"] for r in rows]
        y = np.array([r["estimate"] for r in rows])
        err = np.array([[e - r["low"], r["high"] - e] for r, e in zip(rows, y, strict=True)]).T
        ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", capsize=3, label=group)
    metric = results[0]["metric"] if results else "metric"
    ax.set_xlabel("synthetic data added (% of internal training rows)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_study_report(summary: dict[str, Any], path: str | Path) -> Path:
    """``report.html`` of the study: settings, results table with CIs and the plot."""
    from medfleet.report.html import Figure, Report, Table, Text, write_report

    results = summary["results"]
    report = Report(
        "Synthetic data augmentation study",
        facts={
            "task": summary["task"],
            "external site": summary["external_site"],
            "internal training rows": summary["internal_train_rows"],
        },
    )
    section = report.section("Results")
    section.add(
        Text(
            "Each model is trained with the same settings on the internal training rows plus "
            "the given share of synthetic pairs; 95% percentile bootstrap intervals over images."
        )
    )
    section.add(
        Table(
            ["synthetic %", "rows", "group", "metric", "estimate", "95% CI", "n"],
            [
                [
                    f"{100 * r['fraction']:.0f}",
                    r["synthetic_rows"],
                    r["group"],
                    r["metric"],
                    r["estimate"],
                    f"{r['low']:.3f} - {r['high']:.3f}",
                    r["n"],
                ]
                for r in results
            ],
        )
    )
    if results:
        section.add(Figure(study_plot(results), "Metric against synthetic share"))
    synth = report.section("Synthesis model")
    synth.add(Table(["item", "value"], [[k, str(v)] for k, v in summary["synthesis"].items()]))
    return write_report(report, path)
