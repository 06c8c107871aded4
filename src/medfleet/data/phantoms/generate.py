"""The public entry point: write a multi-site, multi-task phantom data set and its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.phantoms.acquisition import acquire, to_uint8
from medfleet.data.phantoms.cases import CaseContext, PhantomTask
from medfleet.data.phantoms.config import PhantomConfig, SiteProfile
from medfleet.data.phantoms.raters import rater_masks
from medfleet.data.phantoms.seeding import (
    case_generators,
    layout_generator,
    split_generator,
    subject_generators,
)
from medfleet.data.phantoms.splits import assign_splits, subject_layout
from medfleet.data.phantoms.subgroups import draw_subject
from medfleet.data.phantoms.tasks2d import tasks_2d
from medfleet.data.phantoms.tasks3d import tasks_3d
from medfleet.errors import MedfleetError
from medfleet.tables import format_spacing, rater_column, write_table
from medfleet.tasks import Manifest, Site
from medfleet.utils.progress import ProgressCallback

FORMAT_VERSION = 1
"""Version of the phantom layout and truth definitions (bumped when outputs change meaning)."""

DEFAULT_SIZE = {2: 128, 3: 64}
"""Default image side length in pixels per dimension."""

MIN_SIZE = {2: 32, 3: 32}
"""Smallest allowed side length per dimension."""


def available_tasks(dim: int) -> list[str]:
    """Names of the phantom tasks of a dimension, in manifest order.

    Example:
        >>> available_tasks(2)[:2]
        ['organ_lesion_seg', 'lesion_cls']
    """
    return [t.name for t in _registry(dim)]


def volume_shape(size: int) -> tuple[int, int, int]:
    """Shape ``(slices, rows, cols)`` of 3D phantoms of in-plane side ``size``.

    Example:
        >>> volume_shape(64)
        (24, 64, 64)
    """
    return (max(8, round(size * 3 / 8)), size, size)


def task_spacing(task: PhantomTask, site: SiteProfile, shape: tuple[int, ...]) -> tuple[float, ...]:
    """Spacing (mm per array axis) of a task at a site: nominal field of view / size * site scale.

    In-plane axes use ``spacing_scale``, the slice axis of volumes ``slice_scale``;
    values are rounded to 0.1 micrometre so the ``spacing`` column and file headers agree.
    """
    scales = [site.spacing_scale] * len(shape)
    if len(shape) == 3:
        scales[0] = site.slice_scale
    return tuple(
        round(fov / n * scale, 4) for fov, n, scale in zip(task.fov_mm, shape, scales, strict=True)
    )


def generate_phantoms(
    out_dir: str | Path,
    config: PhantomConfig | None = None,
    *,
    sites: int = 3,
    cases_per_site: int = 40,
    dim: int = 2,
    seed: int = 0,
    size: int | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Write a multi-site, multi-task synthetic data set with known truth, and its manifest.

    Every task gets ``cases_per_site`` cases at every site, a table ``<task>.csv`` and a
    folder ``<task>/`` with one sub-folder per image column (``images``, ``mask``,
    ``mask_rater1``, ...). The output is byte-identical for the same arguments and
    config; every file is written atomically.

    Args:
        out_dir: Folder to write into (created if missing; files of the same names are replaced).
        config: Sites, subgroup effects, raters, splits and task selection; defaults to
            :class:`PhantomConfig` with ``sites`` built-in sites.
        sites: Number of built-in sites when ``config.sites`` is not set (ignored otherwise).
        cases_per_site: Cases per task and site.
        dim: 2 for PNG images, 3 for NIfTI volumes (slice axis first, anisotropic spacing).
        seed: Random seed (non-negative).
        size: Image side length in pixels (default 128 in 2D, 64 in 3D; volumes have
            ``round(3 * size / 8)`` slices).
        progress: Called as ``progress(done, total)`` while cases are written.

    Returns:
        The manifest path, ``out_dir / "manifest.yaml"``.

    Raises:
        MedfleetError: On an argument out of range or an unknown task name.

    Example:
        >>> import tempfile
        >>> from medfleet.tasks import Manifest
        >>> path = generate_phantoms(tempfile.mkdtemp(), sites=2, cases_per_site=2, size=48)
        >>> [t.name for t in Manifest.load(path).tasks][:3]
        ['organ_lesion_seg', 'lesion_cls', 'nodule_det']
    """
    if dim not in (2, 3):
        raise MedfleetError(f"dim must be 2 or 3, got {dim!r}")
    if cases_per_site < 1:
        raise MedfleetError(f"cases_per_site must be at least 1, got {cases_per_site}")
    if seed < 0:
        raise MedfleetError(f"seed must be a non-negative integer, got {seed}")
    size = DEFAULT_SIZE[dim] if size is None else int(size)
    if size < MIN_SIZE[dim]:
        raise MedfleetError(
            f"size must be at least {MIN_SIZE[dim]} pixels for dim={dim}, got {size}"
        )
    base = config if config is not None else PhantomConfig()
    if base.sites is None and sites < 1:
        raise MedfleetError(f"sites must be at least 1, got {sites}")
    config = base.with_sites(sites)
    site_profiles: list[SiteProfile] = list(config.sites or [])
    tasks = _select_tasks(dim, config.tasks)
    shape: tuple[int, ...] = (size, size) if dim == 2 else volume_shape(size)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total = len(site_profiles) * len(tasks) * cases_per_site
    done = 0
    if progress is not None:
        progress(0, total)
    spacings: dict[str, dict[str, list[float]]] = {s.name: {} for s in site_profiles}
    for task in tasks:
        rows: list[dict[str, Any]] = []
        for site_index, site in enumerate(site_profiles):
            spacing = task_spacing(task, site, shape)
            spacings[site.name][task.name] = list(spacing)
            layout = subject_layout(
                cases_per_site, layout_generator(seed, site_index, task.name), config.repeat_weights
            )
            splits = assign_splits(
                layout, split_generator(seed, site_index, task.name), config.split_fractions
            )
            for case_index, subject in enumerate(layout):
                rows.append(
                    _write_case(
                        out,
                        task,
                        config,
                        site,
                        site_index,
                        case_index,
                        subject,
                        splits[subject],
                        shape,
                        spacing,
                        seed,
                        dim,
                    )
                )
                done += 1
                if progress is not None:
                    progress(done, total)
        write_table(out / task.spec.table, rows)

    manifest = Manifest(
        name=config.name,
        description=(
            f"Synthetic {dim}D multi-site, multi-task phantoms with known truth "
            f"(medfleet.data.phantoms, seed {seed}); see docs/phantoms.md."
        ),
        sites=[_site_entry(s, spacings[s.name], dim) for s in site_profiles],
        tasks=[_task_spec(t, config) for t in tasks],
        metadata={
            "generator": "medfleet.data.phantoms",
            "format_version": FORMAT_VERSION,
            "seed": seed,
            "dim": dim,
            "size": size,
            "shape": list(shape),
            "cases_per_site": cases_per_site,
            "config": config.model_dump(mode="json"),
        },
    )
    return manifest.save(out / "manifest.yaml")


def _registry(dim: int) -> list[PhantomTask]:
    if dim not in (2, 3):
        raise MedfleetError(f"dim must be 2 or 3, got {dim!r}")
    return tasks_2d() if dim == 2 else tasks_3d()


def _select_tasks(dim: int, names: list[str] | None) -> list[PhantomTask]:
    registry = _registry(dim)
    if names is None:
        return registry
    known = {t.name: t for t in registry}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MedfleetError(
            f"unknown phantom task(s) {unknown} for dim={dim}; choose from {sorted(known)} "
            "(config field 'tasks')"
        )
    if not names:
        raise MedfleetError(
            "config field 'tasks' is empty: name at least one task, or None for all"
        )
    return [t for t in registry if t.name in set(names)]


def _task_spec(task: PhantomTask, config: PhantomConfig) -> Any:
    if task.raters and config.raters:
        return task.spec.model_copy(update={"raters": len(config.raters)})
    return task.spec


def _site_entry(site: SiteProfile, spacings: dict[str, list[float]], dim: int) -> Site:
    extra = site.model_dump(exclude={"name", "vendor", "density_weights", "class_weights"})
    if dim == 2:
        extra.pop("slice_scale")
    for key in ("density_weights", "class_weights"):
        value = getattr(site, key)
        if value is not None:
            extra[key] = list(value)
    return Site(
        name=site.name,
        vendor=site.vendor,
        description="phantom site; acquisition parameters as in medfleet.data.phantoms.SiteProfile",
        spacing_mm=spacings,
        **extra,
    )


def _write_case(
    out: Path,
    task: PhantomTask,
    config: PhantomConfig,
    site: SiteProfile,
    site_index: int,
    case_index: int,
    subject: int,
    split: str,
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    seed: int,
    dim: int,
) -> dict[str, Any]:
    case_id = f"{task.short}_{site.name}_{case_index:03d}"
    subject_id = f"{task.short}_{site.name}_s{subject:03d}"
    generators = case_generators(seed, site_index, task.name, case_index)
    meta_rng, identity_rng = subject_generators(seed, site_index, task.name, subject)
    attrs = draw_subject(meta_rng, config, site)
    ctx = CaseContext(
        rng=generators["anatomy"],
        subject_rng=identity_rng,
        site=site,
        attrs=attrs,
        config=config,
        shape=shape,
        spacing=spacing,
        case_id=case_id,
    )
    result = task.generate(ctx)
    image = to_uint8(acquire(result.clean, site, generators["acquisition"], spacing))
    suffix = ".png" if dim == 2 else ".nii.gz"

    def save(column: str, array: np.ndarray) -> str:
        relative = f"{task.name}/{column}/{case_id}{suffix}"
        _write_array(out / relative, array, spacing, dim, label=column != "images")
        return relative

    row: dict[str, Any] = {
        "case_id": case_id,
        "image": save("images", image),
        "site": site.name,
        "split": split,
        "subject": subject_id,
    }
    if "mask" in result.masks:
        row["mask"] = save("mask", result.masks["mask"])
    if task.raters and config.raters:
        if result.truth is None:  # pragma: no cover - every rater task returns its truth
            raise MedfleetError(f"task {task.name} has raters but returned no truth label map")
        drawn = rater_masks(
            result.truth, config.raters, generators["raters"], config.rater_smoothness_px, spacing
        )
        for k, rater in enumerate(drawn, start=1):
            row[rater_column(k)] = save(rater_column(k), rater)
    row.update(result.fields)
    for column, array in result.masks.items():
        if column != "mask":
            row[column] = save(column, array)
    row["spacing"] = format_spacing(spacing)
    row.update(attrs.columns())
    row["vendor"] = site.vendor
    return row


def _write_array(
    path: Path, array: np.ndarray, spacing: tuple[float, ...], dim: int, label: bool
) -> None:
    from medfleet.data.io import write_nifti, write_png

    path.parent.mkdir(parents=True, exist_ok=True)
    if dim == 2:
        write_png(path, np.ascontiguousarray(array, dtype=np.uint8), label=label)
    else:
        write_nifti(path, np.ascontiguousarray(array, dtype=np.uint8), spacing)
