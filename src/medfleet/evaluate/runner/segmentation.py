"""Segmentation scoring for the evaluation runner: mask folders, geometry checks, workers.

Cases are the mask files of the two folders, matched by case id. Before any scoring, one
pass over the file headers lists every shape or spacing mismatch together with missing and
extra cases. Spacing is compared only when both files record a physical size (formats
without one, such as NPY or a PNG without ``pHYs``, take the reference's spacing); a
``spacing`` column in ``--meta`` overrides both. Each case is then read and scored by
:class:`~medfleet.evaluate.metrics.segmentation_metric.SegmentationMetric` in a worker process.
Labels absent from a case but present in others are scored as absent from both masks.

:func:`read_gallery` reads the few cases drawn in the report's worst-case gallery: one 2D
plane per case (3D: the slice with the largest reference plus prediction area), the image
from ``images`` when there is one of the same shape, all downsampled for drawing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError, OptionError
from medfleet.evaluate.runner.aggregate import summarize_table
from medfleet.evaluate.runner.cases import (
    CaseMismatchError,
    case_id_from_path,
    list_case_files,
    match_cases,
)
from medfleet.evaluate.runner.config import (
    EvaluationConfig,
    ProgressCallback,
    ScoredTask,
    fmt_spacing,
    match_info,
    meta_spacing,
    spacing_differs,
)

__all__ = ["Gallery", "GalleryCase", "read_gallery", "resample_nearest", "score_segmentation"]

#: Longest side, in pixels, of the planes kept for the report's gallery.
GALLERY_MAX_SIDE = 512


def resample_nearest(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resampling onto ``shape`` with pixel centres aligned.

    Output index ``i`` along an axis of input size ``n`` and output size ``m`` reads input
    index ``floor((i + 0.5) * n / m)``: both grids cover the same physical extent.

    Example:
        >>> resample_nearest(np.array([[1, 2], [3, 4]]), (4, 4)).tolist()
        [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
        >>> resample_nearest(np.arange(6).reshape(1, 6), (1, 3)).tolist()
        [[1, 3, 5]]
    """
    if len(shape) != array.ndim:
        raise ValueError(f"cannot resample a {array.ndim}-D array to shape {tuple(shape)}")
    index = []
    for n, m in zip(array.shape, shape, strict=True):
        src = np.floor((np.arange(m) + 0.5) * (n / m)).astype(np.intp)
        index.append(np.clip(src, 0, n - 1))
    return array[np.ix_(*index)]


def _label_array(image: Any, case_id: str, role: str) -> np.ndarray:
    """A reader's image as an integer label map, or a clear error naming the case."""
    arr = image.array
    if image.meta.get("channel_axis") is not None:
        if arr.shape[-1] >= 1 and all(
            np.array_equal(arr[..., 0], arr[..., i]) for i in range(arr.shape[-1])
        ):
            arr = arr[..., 0]
        else:
            raise MedfleetError(
                f"case {case_id}: the {role} mask {image.meta.get('path')} is a colour image "
                "(fix: save masks as single-channel label images)"
            )
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise MedfleetError(
                f"case {case_id}: the {role} mask {image.meta.get('path')} holds non-integer "
                "values (fix: threshold probabilities into a label map first)"
            )
        return arr.astype(np.int64)
    raise MedfleetError(
        f"case {case_id}: the {role} mask {image.meta.get('path')} has dtype {arr.dtype} "
        "(fix: store an integer label map)"
    )


def _has_physical_spacing(path: Path, spacing: Sequence[float], source: str | None = None) -> bool:
    """Whether a spacing comes from the file's physical metadata (not a 1.0 default)."""
    if source is not None:
        return source not in ("default", "")
    name = path.name.lower()
    if name.endswith((".npy", ".npz")):
        return False
    if name.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
        return any(float(s) != 1.0 for s in spacing)
    return True


def _geometry_problem(
    case_id: str,
    pred_path: Path,
    pred_geom: tuple[tuple[int, ...], tuple[float, ...], str | None],
    gt_path: Path,
    gt_geom: tuple[tuple[int, ...], tuple[float, ...], str | None],
    resample: bool,
    spacing_override: bool,
) -> str | None:
    p_shape, p_sp, p_src = pred_geom
    g_shape, g_sp, g_src = gt_geom
    if p_shape != g_shape:
        if resample and len(p_shape) == len(g_shape):
            return None
        return f"shape {p_shape} in pred but {g_shape} in gt"
    if spacing_override:
        return None
    if (
        _has_physical_spacing(pred_path, p_sp, p_src)
        and _has_physical_spacing(gt_path, g_sp, g_src)
        and spacing_differs(p_sp, g_sp)
    ):
        return f"spacing {fmt_spacing(p_sp)} mm in pred but {fmt_spacing(g_sp)} mm in gt"
    return None


@dataclass(frozen=True)
class _SegJob:
    case_id: str
    pred: Path | None
    gt: Path
    spacing: tuple[float, ...] | None
    labels: tuple[int, ...] | None
    options: Mapping[str, Any]
    resample: bool


@dataclass
class _SegOutcome:
    case_id: str
    result: Any = None
    spacing: tuple[float, ...] = ()
    ndim: int = 0
    mismatch: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _segmentation_metric(labels: Sequence[int] | None, options: Mapping[str, Any]) -> Any:
    from medfleet.evaluate.metrics.conventions import EmptyPolicy
    from medfleet.evaluate.metrics.segmentation_metric import SegmentationMetric

    return SegmentationMetric(
        labels=None if labels is None else list(labels),
        surface_metrics=options["surface_metrics"],
        nsd_tolerances=options["nsd_tolerances"],
        percentile_method=options["percentile_method"],
        surface=options["surface"],
        connectivity=options["connectivity"],
        empty=EmptyPolicy(both_empty=options["both_empty"], one_empty=options["one_empty"]),
        workers=options["threads"],
    )


def _score_segmentation_case(job: _SegJob) -> _SegOutcome:
    """Worker: read one case, check its geometry, score it (errors come back as text)."""
    from medfleet.data.io import read_image

    out = _SegOutcome(job.case_id)
    try:
        gt_img = read_image(job.gt, spacing=job.spacing)
        gt = _label_array(gt_img, job.case_id, "gt")
        if job.pred is None:
            pred = np.zeros(gt.shape, dtype=np.uint8)
            out.notes.append("missing prediction scored as an empty mask")
        else:
            pred_img = read_image(job.pred, spacing=job.spacing)
            pred = _label_array(pred_img, job.case_id, "pred")
            problem = _geometry_problem(
                job.case_id,
                job.pred,
                (pred.shape, pred_img.spacing, pred_img.meta.get("spacing_source")),
                job.gt,
                (gt.shape, gt_img.spacing, gt_img.meta.get("spacing_source")),
                job.resample,
                job.spacing is not None,
            )
            if problem:
                out.mismatch = problem
                return out
            if pred.shape != gt.shape:
                out.notes.append(f"prediction resampled from {pred.shape} to {gt.shape} (nearest)")
                pred = resample_nearest(pred, gt.shape)
        out.spacing = tuple(gt_img.spacing)
        out.ndim = gt.ndim
        out.result = _segmentation_metric(job.labels, job.options).compute(pred, gt, out.spacing)
    except MedfleetError as err:
        out.error = str(err)
    return out


def _segmentation_options(config: EvaluationConfig, threads: int) -> dict[str, Any]:
    p = float(config.percentile)
    if not 0 <= p <= 100:
        raise OptionError(f"--percentile must be in [0, 100], got {p:g}")
    one_empty: str | float = config.one_empty
    if isinstance(one_empty, str) and one_empty not in ("inf", "nan", "diagonal"):
        try:
            one_empty = float(one_empty)
        except ValueError:
            raise OptionError(
                f"--empty-policy {one_empty!r} is not inf, nan, diagonal or a number of mm"
            ) from None
    return {
        "surface_metrics": ("hd", f"hd{p:g}", "assd", "masd", "nsd"),
        "nsd_tolerances": tuple(float(t) for t in config.nsd_tolerances),
        "percentile_method": config.percentile_method,
        "surface": config.surface,
        "connectivity": int(config.connectivity),
        "both_empty": config.both_empty,
        "one_empty": one_empty,
        "threads": threads,
    }


def _segmentation_labels(config: EvaluationConfig) -> tuple[int, ...] | None:
    if config.labels is None:
        return None
    out = []
    for v in config.labels:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            raise OptionError(f"--labels holds {v!r}; segmentation labels are integers") from None
    return tuple(out)


def _header_geometry(path: Path) -> tuple[tuple[int, ...], tuple[float, ...], None] | None:
    from medfleet.data.io import read_header

    try:
        shape, spacing = read_header(path)
    except MedfleetError:
        return None  # reported with its reason when the case is read
    return tuple(int(s) for s in shape), tuple(float(s) for s in spacing), None


def score_segmentation(
    config: EvaluationConfig,
    meta_rows: Mapping[str, Mapping[str, Any]],
    progress: ProgressCallback | None = None,
) -> tuple[ScoredTask, dict[str, Any]]:
    """Score every segmentation case of ``config`` (mask folders).

    Args:
        config: Run configuration (``task_type`` segmentation).
        meta_rows: ``--meta`` rows by case id (their ``spacing`` overrides file spacings).
        progress: Optional ``progress(done, total)`` callback.

    Returns:
        The scored rows and summaries, and the ``cases`` block of ``summary.json``.

    Raises:
        CaseMismatchError: Missing, extra or mismatched cases, all listed.
        MedfleetError: Cases that could not be read or scored, all listed.
    """
    pred_files = list_case_files(config.pred, "--pred")
    gt_files = list_case_files(config.gt, "--gt")
    match = match_cases(pred_files, gt_files)
    # cheap header pass: list every geometry mismatch together with missing/extra cases
    mismatched: list[tuple[str, str]] = []
    for case_id in match.matched:
        override = meta_spacing(meta_rows, case_id)
        p_geom = _header_geometry(pred_files[case_id])
        g_geom = _header_geometry(gt_files[case_id])
        if p_geom is None or g_geom is None:
            continue
        problem = _geometry_problem(
            case_id,
            pred_files[case_id],
            p_geom,
            gt_files[case_id],
            g_geom,
            config.resample_pred == "nearest",
            override is not None,
        )
        if problem:
            mismatched.append((case_id, problem))
    if mismatched or ((match.missing or match.extra) and not config.allow_missing):
        missing = [] if config.allow_missing else match.missing
        extra = [] if config.allow_missing else match.extra
        raise CaseMismatchError(missing, extra, mismatched, pred=config.pred, gt=config.gt)

    labels = _segmentation_labels(config)
    threads = -1 if config.workers == 1 else 1
    options = _segmentation_options(config, threads)
    case_ids = sorted([*match.matched, *(match.missing if config.allow_missing else [])])
    jobs = [
        _SegJob(
            case_id=c,
            pred=pred_files.get(c),
            gt=gt_files[c],
            spacing=meta_spacing(meta_rows, c),
            labels=labels,
            options=options,
            resample=config.resample_pred == "nearest",
        )
        for c in case_ids
    ]
    _segmentation_metric(labels, options)  # fail on bad options before starting workers
    outcomes = _map_cases(_score_segmentation_case, jobs, config.workers, progress)
    errors = [(o.case_id, o.error) for o in outcomes if o.error]
    if errors:
        lines = [f"  case {c}: {e}" for c, e in errors[:20]]
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise MedfleetError(
            f"{len(errors)} case(s) could not be scored:\n" + "\n".join(lines) + more
        )
    late = [(o.case_id, o.mismatch) for o in outcomes if o.mismatch]
    if late:
        raise CaseMismatchError(mismatched=late, pred=config.pred, gt=config.gt)
    scored = _segmentation_rows(outcomes, labels, options)
    scored.conventions.update(
        {
            "resample_pred": config.resample_pred,
            "allow_missing": config.allow_missing,
            "labels": list(labels) if labels is not None else "present in any case",
            "percentile": float(config.percentile),
            "std_ddof": 1,
            "spacing_axis_order": "numpy array axes",
        }
    )
    return scored, match_info(match, config)


def _map_cases(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int,
    progress: ProgressCallback | None,
) -> list[Any]:
    """Run ``fn`` on every job, in this process or in a pool; results keep the job order."""
    total = len(jobs)
    if progress is not None:
        progress(0, total)
    if workers == 1 or total <= 1:
        results = []
        for job in jobs:
            results.append(fn(job))
            if progress is not None:
                progress(len(results), total)
        return results
    with ProcessPoolExecutor(max_workers=min(workers, total)) as pool:
        futures = [pool.submit(fn, job) for job in jobs]
        for done, future in enumerate(as_completed(futures), start=1):
            future.result()
            if progress is not None:
                progress(done, total)
        return [f.result() for f in futures]


def _segmentation_rows(
    outcomes: Sequence[_SegOutcome], labels: tuple[int, ...] | None, options: Mapping[str, Any]
) -> ScoredTask:
    all_labels = sorted({lab for o in outcomes for lab in o.result.labels})
    if labels is not None:
        all_labels = list(labels)
    rows: list[dict[str, Any]] = []
    worst: dict[str, float] = {}
    metric_names: list[str] = []
    conventions: dict[str, Any] = {}
    notes: list[str] = []
    for o in outcomes:
        result = o.result
        absent = [lab for lab in all_labels if lab not in result.labels]
        if absent:  # labels found in other cases only: score them as absent from both masks
            filler = _segmentation_metric(absent, options).compute(
                np.zeros((2,) * o.ndim, np.uint8), np.zeros((2,) * o.ndim, np.uint8), o.spacing
            )
            case_rows = result.to_rows(o.case_id) + filler.to_rows(o.case_id)
        else:
            case_rows = result.to_rows(o.case_id)
        for row in sorted(case_rows, key=lambda r: r["label"]):
            row = {"case_id": row.pop("case"), **row}
            rows.append(row)
        worst.update(result.worst)
        for name in result.metrics:
            if name not in metric_names:
                metric_names.append(name)
        for key, value in result.conventions.items():
            if key != "spacing":
                conventions.setdefault(key, value)
        notes.extend(f"case {o.case_id}: {n}" for n in o.notes)
    metrics = summarize_table(rows, metric_names, group_by="label", worst=worst)
    conventions["worst_values"] = worst
    conventions["metrics"] = metric_names
    return ScoredTask(rows, metrics, {}, conventions, notes)


@dataclass
class GalleryCase:
    """One case of the report's worst-case gallery, ready to draw.

    Attributes:
        case_id: The case.
        reference: 2D reference label map (at most :data:`GALLERY_MAX_SIDE` on a side).
        prediction: 2D predicted label map of the same shape.
        image: The case's image on that plane (float32, grey), or ``None``.
        slice_index: The slice drawn of a 3D case (first array axis), ``None`` for 2D.
        note: A short note for the panel (why the image is not drawn), or ``""``.
    """

    case_id: str
    reference: np.ndarray
    prediction: np.ndarray
    image: np.ndarray | None = None
    slice_index: int | None = None
    note: str = ""


@dataclass
class Gallery:
    """The cases of the worst-case gallery, worst first, and notes for its caption.

    Attributes:
        cases: The drawable cases.
        notes: ``case <id>: ...`` lines (images not drawn, cases left out); never a path.
    """

    cases: list[GalleryCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _drawing_shape(shape: Sequence[int], max_side: int) -> tuple[int, ...]:
    factor = max(shape) / max_side
    if factor <= 1:
        return tuple(int(s) for s in shape)
    return tuple(max(1, round(s / factor)) for s in shape)


def _plane(reference: np.ndarray, prediction: np.ndarray) -> int | None:
    """The slice (first axis) of a 3D case with the largest reference + prediction area."""
    if reference.ndim != 3:
        return None
    area = (reference != 0).sum(axis=(1, 2)) + (prediction != 0).sum(axis=(1, 2))
    if not area.any():
        return reference.shape[0] // 2
    return int(np.argmax(area))


def _image_files(folder: Path, wanted: set[str]) -> dict[str, Path]:
    """Case id -> image file in ``folder`` (the first in name order when several match)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or not path.is_file():
            continue
        case_id = case_id_from_path(path)
        if case_id in wanted and case_id not in found:
            found[case_id] = path
    return found


def _gallery_image(
    path: Path, shape: tuple[int, ...], slice_index: int | None
) -> tuple[np.ndarray | None, str]:
    """The grey image of a case on the drawn plane, or ``None`` and the reason (no path)."""
    from medfleet.data.io import read_image

    try:
        image = read_image(path)
        array = np.asarray(image.array)
        if image.meta.get("channel_axis") is not None:
            array = array.mean(axis=int(image.meta["channel_axis"]))
    except Exception:  # an optional picture: any failure leaves the outlines alone
        return None, "image unreadable"
    if tuple(array.shape) != shape:
        return None, f"image shape {tuple(array.shape)} differs from the masks {shape}"
    if slice_index is not None:
        array = array[slice_index]
    return np.array(array, dtype=np.float32), ""  # a copy: a volume's slice keeps no volume


def read_gallery(
    config: EvaluationConfig, case_ids: Sequence[str], max_side: int = GALLERY_MAX_SIDE
) -> Gallery:
    """Read the masks (and images) of the cases drawn in the report's worst-case gallery.

    Each case gives one 2D plane: the masks themselves, or for a 3D case the slice along
    the first array axis with the largest reference plus prediction area. The image
    comes from ``config.images`` (the file whose name less its suffix is the case id),
    when it has the masks' shape (colour images are drawn grey). Planes larger than
    ``max_side`` on a side are downsampled by nearest neighbour. A case whose image is
    missing, unreadable or of another shape is drawn without it, with a note; a case
    whose masks cannot be read, or that is neither 2D nor 3D, is left out with a note.
    Notes name the case, never a file.

    Args:
        config: The run (segmentation mask folders ``pred`` and ``gt``, optional ``images``).
        case_ids: The cases to draw, in drawing order.
        max_side: Longest side, in pixels, kept.

    Returns:
        The drawable cases in ``case_ids`` order and the notes.

    Example:
        >>> import tempfile
        >>> from medfleet.data.io import write_png
        >>> root = Path(tempfile.mkdtemp())
        >>> mask = np.zeros((6, 6), np.uint8); mask[1:4, 1:4] = 1
        >>> for folder in ("pred", "gt"):
        ...     _ = write_png(root / folder / "a.png", mask)
        >>> config = EvaluationConfig("segmentation", root / "pred", root / "gt", root / "out")
        >>> gallery = read_gallery(config, ["a"])
        >>> gallery.cases[0].reference.shape, gallery.cases[0].image, gallery.notes
        ((6, 6), None, [])
    """
    from medfleet.data.io import read_image

    if not case_ids:
        return Gallery()
    pred_files = list_case_files(config.pred, "--pred")
    gt_files = list_case_files(config.gt, "--gt") if config.gt is not None else {}
    gallery = Gallery()
    images: dict[str, Path] = {}
    if config.images is not None:
        try:
            images = _image_files(config.images, set(case_ids))
        except OSError:
            gallery.notes.append("the images folder could not be listed; no image is drawn")
    for case_id in case_ids:
        if case_id not in gt_files:
            continue
        try:
            gt = _label_array(read_image(gt_files[case_id]), case_id, "gt")
            if case_id in pred_files:
                pred = _label_array(read_image(pred_files[case_id]), case_id, "pred")
            else:
                pred = np.zeros(gt.shape, dtype=np.uint8)
        except MedfleetError:
            gallery.notes.append(f"case {case_id}: masks could not be read; left out")
            continue
        if pred.shape != gt.shape:
            if pred.ndim != gt.ndim:
                gallery.notes.append(f"case {case_id}: masks of different rank; left out")
                continue
            pred = resample_nearest(pred, gt.shape)
        if gt.ndim not in (2, 3):
            gallery.notes.append(f"case {case_id}: {gt.ndim}-D masks are not drawn")
            continue
        slice_index = _plane(gt, pred)
        shape = tuple(int(s) for s in gt.shape)
        if slice_index is not None:
            gt, pred = gt[slice_index], pred[slice_index]
        size = _drawing_shape(gt.shape, max_side)
        case = GalleryCase(  # copies: a slice of a volume must not keep the volume
            case_id,
            resample_nearest(gt, size) if size != gt.shape else gt.copy(),
            resample_nearest(pred, size) if size != pred.shape else pred.copy(),
            slice_index=slice_index,
        )
        path = images.get(case_id)
        if config.images is not None and path is None:
            case.note = "no image file"
        elif path is not None:
            image, case.note = _gallery_image(path, shape, slice_index)
            if image is not None:
                case.image = resample_nearest(image, size) if size != image.shape else image
        if case.note:
            gallery.notes.append(f"case {case_id}: {case.note}, drawn without it")
        gallery.cases.append(case)
        del gt, pred
    return gallery
