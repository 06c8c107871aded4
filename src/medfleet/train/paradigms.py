"""The three training paradigms and the ``--paradigm all`` experiment.

* ``task-specific``: one model per task;
* ``grouped``: one model per clinical group (:attr:`medfleet.tasks.TaskSpec.clinical_group`);
* ``unified``: one model for all tasks.

Each model trains in ``OUT/<paradigm>/<model>/`` (see :mod:`medfleet.train.run`), then
predicts the test split (``predictions/``) and is scored by ``medfleet evaluate``
(``evaluation/<task>/``). ``OUT/<paradigm>/summary.json`` collects each paradigm's test
metrics and costs; with ``all``, ``OUT/transfer/`` holds the transfer table, costs and
``report.html`` (:mod:`medfleet.train.transfer`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.tasks import Manifest
from medfleet.train.config import TrainConfig
from medfleet.train.datasets import load_task_rows
from medfleet.train.predict import evaluate_predictions, predict_manifest
from medfleet.train.run import count_parameters, train_model
from medfleet.utils.atomic import write_json_atomic

PARADIGMS: tuple[str, ...] = ("task-specific", "grouped", "unified")
"""The training paradigms, reference first."""

LogCallback = Callable[[str], None]
ProgressFactory = Callable[[str], Any]


@dataclass(frozen=True)
class ModelPlan:
    """One model of a paradigm.

    Attributes:
        paradigm: ``task-specific``, ``grouped`` or ``unified``.
        name: Folder name of the model's run.
        tasks: Tasks the model trains on, in manifest order.
    """

    paradigm: str
    name: str
    tasks: tuple[str, ...]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip()).strip("-") or "group"


def plan_models(
    manifest: Manifest, paradigm: str, tasks: Sequence[str] | None = None
) -> list[ModelPlan]:
    """The models a paradigm trains.

    Example:
        >>> from medfleet.tasks import Manifest, Site, TaskSpec
        >>> m = Manifest(name="m", sites=[Site(name="a")], tasks=[
        ...     TaskSpec(name="a", type="regression", table="a.csv", unit="mm", group="ob"),
        ...     TaskSpec(name="b", type="regression", table="b.csv", unit="mm", group="ob"),
        ...     TaskSpec(name="c", type="regression", table="c.csv", unit="mm", organ="liver")])
        >>> [(p.name, p.tasks) for p in plan_models(m, "grouped")]
        [('ob', ('a', 'b')), ('liver', ('c',))]
        >>> [p.name for p in plan_models(m, "task-specific")]
        ['a', 'b', 'c']
    """
    if paradigm not in PARADIGMS:
        raise MedfleetError(f"paradigm {paradigm!r} is not one of {[*PARADIGMS, 'all']}")
    names = manifest.select_tasks(tasks)
    if paradigm == "task-specific":
        return [ModelPlan(paradigm, n, (n,)) for n in names]
    if paradigm == "unified":
        return [ModelPlan(paradigm, "unified", tuple(names))]
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(manifest.task(n).clinical_group, []).append(n)
    plans, used = [], set()
    for group, members in groups.items():
        slug = _slug(group)
        while slug in used:
            slug += "_"
        used.add(slug)
        plans.append(ModelPlan(paradigm, slug, tuple(members)))
    return plans


@dataclass
class ModelRun:
    """One trained, predicted and evaluated model.

    Attributes:
        plan: The model's plan.
        out: Its run folder.
        parameters: Parameter count.
        train_seconds: Training wall time.
        steps: Optimiser steps.
        inference_s_per_image: Mean prediction time per test image.
        test_metrics: task -> the evaluation summary's headline values.
        cases_csv: task -> ``cases.csv`` of the evaluation.
    """

    plan: ModelPlan
    out: Path
    parameters: int
    train_seconds: float
    steps: int
    inference_s_per_image: float
    test_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    cases_csv: dict[str, str] = field(default_factory=dict)


@dataclass
class ParadigmResult:
    """All models of one paradigm.

    Attributes:
        paradigm: The paradigm.
        out: ``OUT/<paradigm>``.
        runs: One per model.
    """

    paradigm: str
    out: Path
    runs: list[ModelRun]

    @property
    def cases_csv(self) -> dict[str, str]:
        """Task -> evaluation ``cases.csv`` across the paradigm's models."""
        return {t: p for r in self.runs for t, p in r.cases_csv.items()}

    def costs(self) -> dict[str, Any]:
        """Models, parameters, training time and mean inference time per image."""
        times = [r.inference_s_per_image for r in self.runs if np.isfinite(r.inference_s_per_image)]
        weights = [len(r.plan.tasks) for r in self.runs if np.isfinite(r.inference_s_per_image)]
        return {
            "models": len(self.runs),
            "parameters": sum(r.parameters for r in self.runs),
            "train_seconds": round(sum(r.train_seconds for r in self.runs), 3),
            "inference_s_per_image": float(np.average(times, weights=weights))
            if times
            else float("nan"),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``summary.json``)."""
        return {
            "paradigm": self.paradigm,
            "costs": self.costs(),
            "models": [
                {
                    "name": r.plan.name,
                    "tasks": list(r.plan.tasks),
                    "out": str(r.out),
                    "parameters": r.parameters,
                    "steps": r.steps,
                    "train_seconds": round(r.train_seconds, 3),
                    "inference_s_per_image": r.inference_s_per_image,
                    "test_metrics": r.test_metrics,
                }
                for r in self.runs
            ],
        }


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline values of an evaluation ``summary.json`` (per task type)."""
    kind = summary.get("task_type")
    dataset = summary.get("dataset", {})
    metrics = summary.get("metrics", {})
    if kind == "segmentation":
        means = [
            m["dice"]["mean"]
            for m in metrics.values()
            if "dice" in m and isinstance(m["dice"].get("mean"), int | float)
        ]
        return {"dice": float(np.mean(means)) if means else float("nan")}
    if kind == "classification":
        keys = ("balanced_accuracy", "accuracy", "auc", "auc_macro")
        return {k: dataset[k] for k in keys if k in dataset}
    if kind == "detection":
        keys = ("detection_rate", "precision", "ap50", "map")
        return {k: dataset[k] for k in keys if k in dataset}
    if kind == "regression":
        return {k: dataset[k] for k in ("mae", "rmse", "bias") if k in dataset}
    keys = [k for k in dataset if k == "mre" or k.startswith("sdr_")]
    return {k: dataset[k] for k in keys}


def _tasks_with_test_rows(manifest: Manifest, tasks: Sequence[str], split: str) -> list[str]:
    return [t for t in tasks if load_task_rows(manifest, t, (split,), labelled_only=True)]


def run_paradigm(
    manifest: Manifest,
    paradigm: str,
    out: str | Path,
    model_config: Any,
    train_config: TrainConfig,
    *,
    tasks: Sequence[str] | None = None,
    resume: bool = False,
    test_split: str = "test",
    evaluation_report: bool = True,
    log: LogCallback | None = None,
    progress_factory: ProgressFactory | None = None,
) -> ParadigmResult:
    """Train, predict and evaluate every model of one paradigm.

    Args:
        manifest: The manifest.
        paradigm: ``task-specific``, ``grouped`` or ``unified``.
        out: The experiment folder (the paradigm writes under ``out/<paradigm>``).
        model_config: A :class:`medfleet.models.ModelConfig`.
        train_config: Training settings (the same for every model).
        tasks: Restrict to these tasks.
        resume: Continue every model from its last checkpoint.
        test_split: Split predicted and scored.
        evaluation_report: Write each task's evaluation ``report.html``.
        log: Called with progress lines.
        progress_factory: ``factory(description)`` returns a context manager yielding a
            ``progress(done, total)`` callback (e.g. a Rich bar).

    Returns:
        The paradigm's runs.
    """
    import contextlib

    log = log or (lambda message: None)
    root = Path(out) / paradigm
    runs: list[ModelRun] = []
    for plan in plan_models(manifest, paradigm, tasks):
        run_dir = root / plan.name
        log(f"{paradigm}: training {plan.name} on {', '.join(plan.tasks)}")
        manager = (
            progress_factory(f"{paradigm}/{plan.name}")
            if progress_factory
            else contextlib.nullcontext(None)
        )
        with manager as progress:
            trained = train_model(
                manifest,
                model_config,
                train_config,
                run_dir,
                tasks=plan.tasks,
                resume=resume,
                progress=progress,
                log=log,
            )
        scored = _tasks_with_test_rows(manifest, plan.tasks, test_split)
        run = ModelRun(
            plan=plan,
            out=run_dir,
            parameters=count_parameters(trained.model),
            train_seconds=trained.result.train_seconds,
            steps=trained.result.steps,
            inference_s_per_image=float("nan"),
        )
        if scored:
            prediction = predict_manifest(
                trained.model,
                manifest,
                run_dir / "predictions",
                split=test_split,
                tasks=scored,
                image_size=model_config.image_size,
                normalisation=train_config.normalisation,
                device=next(trained.model.parameters()).device,
            )
            evaluation = evaluate_predictions(
                manifest, prediction, run_dir / "evaluation", report=evaluation_report
            )
            runtimes = [
                (info["runtime_s_mean"], info["n_cases"]) for info in prediction.tasks.values()
            ]
            run.inference_s_per_image = float(
                np.average([r for r, _ in runtimes], weights=[n for _, n in runtimes])
            )
            for task, result in evaluation.items():
                run.test_metrics[task] = headline(result["summary"])
                run.cases_csv[task] = result["cases_csv"]
        runs.append(run)
    result = ParadigmResult(paradigm, root, runs)
    write_json_atomic(root / "summary.json", result.to_dict())
    return result


def run_all(
    manifest: Manifest,
    out: str | Path,
    model_config: Any,
    train_config: TrainConfig,
    *,
    tasks: Sequence[str] | None = None,
    resume: bool = False,
    test_split: str = "test",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    evaluation_report: bool = True,
    log: LogCallback | None = None,
    progress_factory: ProgressFactory | None = None,
) -> tuple[dict[str, ParadigmResult], dict[str, Path]]:
    """Train the three paradigms and write the transfer analysis under ``out/transfer``.

    Returns:
        The paradigm results and the transfer files (``transfer_csv``, ``costs_csv``,
        ``transfer_json``, ``report_html``).
    """
    from medfleet.train.transfer import analyse_transfer, write_transfer

    results = {
        p: run_paradigm(
            manifest,
            p,
            out,
            model_config,
            train_config,
            tasks=tasks,
            resume=resume,
            test_split=test_split,
            evaluation_report=evaluation_report,
            log=log,
            progress_factory=progress_factory,
        )
        for p in PARADIGMS
    }
    analysis = analyse_transfer(
        manifest,
        {p: r.cases_csv for p, r in results.items()},
        costs={p: r.costs() for p, r in results.items()},
        n_resamples=n_resamples,
        confidence=confidence,
        seed=train_config.seed,
    )
    files = write_transfer(analysis, Path(out) / "transfer")
    return results, files
