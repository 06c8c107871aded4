"""The end-to-end demo as a pipeline of named stages.

``medfleet demo`` runs :func:`default_stages` in order over a shared :class:`DemoContext`.
Each stage reads what earlier stages left in the context, does its work under
``ctx.out``, and returns a JSON-ready dict that becomes its section of
``demo_summary.json``. New capabilities join the demo by appending a stage.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medfleet.utils.atomic import write_json_atomic
from medfleet.utils.progress import ProgressCallback


@dataclass
class DemoContext:
    """State shared by the demo's stages.

    Attributes:
        out: Folder every stage writes under.
        quick: Smaller data and shorter runs.
        seed: Seed for everything random.
        manifest: The data set's manifest, once a stage has made it.
        results: Each finished stage's result, by stage name.
    """

    out: Path
    quick: bool = False
    seed: int = 0
    manifest: Path | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


class Stage(Protocol):
    """One step of the demo."""

    name: str
    description: str

    def run(self, ctx: DemoContext, progress: ProgressCallback) -> dict[str, Any]:
        """Do the work and return this stage's JSON-ready result."""
        ...


class PhantomStage:
    """Generate the multi-site, multi-task phantom data set."""

    name = "phantoms"
    description = "generate multi-site phantoms"

    def run(self, ctx: DemoContext, progress: ProgressCallback) -> dict[str, Any]:
        """Write phantoms under ``out/data`` and record the manifest in the context."""
        from medfleet.data.phantoms import generate_phantoms

        cases = 12 if ctx.quick else 40
        size = 96 if ctx.quick else 128
        ctx.manifest = generate_phantoms(
            ctx.out / "data",
            sites=3,
            cases_per_site=cases,
            dim=2,
            seed=ctx.seed,
            size=size,
            progress=progress,
        )
        return {"manifest": str(ctx.manifest), "sites": 3, "cases_per_site": cases, "size": size}


class ValidateStage:
    """Validate the manifest and every table row."""

    name = "validate"
    description = "validate manifest and tables"

    def run(self, ctx: DemoContext, progress: ProgressCallback) -> dict[str, Any]:
        """Validate; stop the demo with the problems when there is any error."""
        from medfleet.data.validate import validate_manifest
        from medfleet.errors import MedfleetError

        assert ctx.manifest is not None, "the phantoms stage must run first"
        report = validate_manifest(ctx.manifest, progress=progress)
        if not report.ok:
            listing = "\n".join(str(p) for p in report.errors[:20])
            raise MedfleetError(f"demo data failed validation:\n{listing}")
        return {"ok": report.ok, "warnings": len(report.warnings), "counts": report.counts}


class SiteSummaryStage:
    """Summarise tasks and per-site image statistics (the site shift the data carries)."""

    name = "summary"
    description = "summarise tasks and sites"

    def run(self, ctx: DemoContext, progress: ProgressCallback) -> dict[str, Any]:
        """Per task and site: case count, mean and std of image intensity, spacing."""
        from medfleet.data.io import read_image
        from medfleet.tables import parse_spacing, read_table
        from medfleet.tasks import Manifest

        assert ctx.manifest is not None, "the phantoms stage must run first"
        manifest = Manifest.load(ctx.manifest)
        tasks: dict[str, Any] = {}
        tables = {spec.name: read_table(manifest.table_path(spec)) for spec in manifest.tasks}
        total = sum(len(rows) for rows in tables.values())
        done = 0
        for spec in manifest.tasks:
            per_site: dict[str, list[tuple[float, float]]] = {}
            spacings: dict[str, set[tuple[float, ...]]] = {}
            for row in tables[spec.name]:
                spacing = parse_spacing(row["spacing"]) if row.get("spacing") else None
                image = read_image(manifest.resolve(row["image"]), spacing=spacing)
                pixels = image.array.astype(np.float64)
                per_site.setdefault(row["site"], []).append((pixels.mean(), pixels.std()))
                spacings.setdefault(row["site"], set()).add(
                    tuple(round(s, 4) for s in image.spacing)
                )
                done += 1
                progress(done, total)
            tasks[spec.name] = {
                "type": spec.type.value,
                "sites": {
                    site: {
                        "cases": len(stats),
                        "intensity_mean": round(float(np.mean([m for m, _ in stats])), 3),
                        "intensity_std": round(float(np.mean([sd for _, sd in stats])), 3),
                        "spacing_mm": sorted(spacings[site]),
                    }
                    for site, stats in sorted(per_site.items())
                },
            }
        return {"tasks": tasks}


def demo_model_scorer(ctx: DemoContext) -> Any:
    """The model trained by the demo's ``train`` stage as ``images -> probabilities``.

    Wraps the unified model's ``lesion_cls`` head so the monitoring stage watches the
    demo model's own outputs; returns None when no model was trained in this run.
    """
    trained = ctx.results.get("train")
    if not trained or ctx.manifest is None:
        return None
    from medfleet.tasks import Manifest
    from medfleet.train.run import load_trained
    from medfleet.train.scoring import classification_scorer

    loaded = load_trained(trained["model"], Manifest.load(ctx.manifest))
    if "lesion_cls" not in loaded.tasks:
        return None
    return classification_scorer(
        loaded.model, "lesion_cls", loaded.image_size, normalisation=loaded.normalisation
    )


def default_stages() -> list[Stage]:
    """The demo's stages, in order: data, training and evaluation, monitoring, federated."""
    from medfleet.federated.demo_stage import FederatedStage
    from medfleet.monitor.demo_stage import MonitorStage
    from medfleet.train.demo_stage import TrainStage

    return [
        PhantomStage(),
        ValidateStage(),
        SiteSummaryStage(),
        TrainStage(),
        MonitorStage(scorer_factory=demo_model_scorer),
        FederatedStage(),
    ]


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    seed: int = 0,
    stages: list[Stage] | None = None,
    only: list[str] | None = None,
    on_stage: Callable[[Stage], Any] | None = None,
    progress_factory: Callable[[Stage], Any] | None = None,
) -> dict[str, Any]:
    """Run the demo pipeline and write ``demo_summary.json`` under ``out``.

    Args:
        out: Output folder.
        quick: Smaller data for a fast run.
        seed: Random seed.
        stages: Stages to run (default :func:`default_stages`).
        only: Names of the default stages to run (in pipeline order); a stage that needs
            an earlier one's output fails with a clear message when that one is left out.
        on_stage: Called with each stage before it runs.
        progress_factory: Returns a context manager yielding a progress callback per stage.

    Returns:
        The summary: each stage's result and its duration in seconds.

    Example:
        >>> import tempfile
        >>> summary = run_demo(tempfile.mkdtemp(), quick=True)  # doctest: +SKIP
        >>> summary["stages"]["validate"]["ok"]  # doctest: +SKIP
        True
    """
    ctx = DemoContext(out=Path(out), quick=quick, seed=seed)
    ctx.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    selected = stages if stages is not None else default_stages()
    if only is not None:
        unknown = sorted(set(only) - {s.name for s in selected})
        if unknown:
            from medfleet.errors import MedfleetError

            names = ", ".join(s.name for s in selected)
            raise MedfleetError(f"unknown demo stage(s) {unknown}; stages: {names}")
        selected = [s for s in selected if s.name in only]
    for stage in selected:
        if on_stage is not None:
            on_stage(stage)
        manager = (
            progress_factory(stage)
            if progress_factory
            else contextlib.nullcontext(lambda d, t: None)
        )
        start = time.perf_counter()
        with manager as progress:
            ctx.results[stage.name] = stage.run(ctx, progress)
        timings[stage.name] = round(time.perf_counter() - start, 3)
    summary = {
        "out": str(ctx.out),
        "quick": quick,
        "seed": seed,
        "stages": ctx.results,
        "seconds": timings,
    }
    write_json_atomic(ctx.out / "demo_summary.json", summary, sort_keys=False)
    return summary
