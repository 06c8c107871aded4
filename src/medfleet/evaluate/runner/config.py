"""Configuration and helpers shared by the evaluation runner's task scorers."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import InputFileError, OptionError
from medfleet.evaluate.runner.cases import CaseMatch, CaseMismatchError, match_cases, parse_spacing
from medfleet.tables import TaskType
from medfleet.utils.atomic import require_folder_path
from medfleet.utils.progress import ProgressCallback

__all__ = [
    "TASK_TYPES",
    "EvaluationConfig",
    "ProgressCallback",
    "ScoredTask",
    "check_match",
    "fmt_spacing",
    "gt_required_message",
    "match_info",
    "meta_spacing",
    "spacing_differs",
]

#: Called as ``progress(done, total)`` after each scored case.

#: The task types a run scores: those of :class:`medfleet.tables.TaskType`.
TASK_TYPES: tuple[str, ...] = tuple(t.value for t in TaskType)
#: Version string of the ``summary.json`` layout.
SUMMARY_SCHEMA = "medfleet.evaluate.summary/1"

#: Runs that score predictions alone, without ``--gt``: preset -> (option, value).
GT_OPTIONAL: dict[str, tuple[str, str]] = {"iugc": ("mode", "biometry")}


def gt_required_message(
    preset: str | None, preset_options: Iterable[tuple[str, str]] | Mapping[str, str] = ()
) -> str | None:
    """The usage error of a run without ``--gt``, or ``None`` when the run needs none.

    Example:
        >>> gt_required_message("iugc", {"mode": "biometry"}) is None
        True
        >>> gt_required_message("hc18").startswith("--gt is required unless")
        True
    """
    items = preset_options.items() if isinstance(preset_options, Mapping) else preset_options
    options = {str(k).strip(): str(v).strip() for k, v in items}
    needed = GT_OPTIONAL.get(preset or "")
    if needed is not None and options.get(needed[0]) == needed[1]:
        return None
    ways = "; ".join(f"--preset {p} --preset-option {o}={v}" for p, (o, v) in GT_OPTIONAL.items())
    return (
        f"--gt is required unless single masks are measured ({ways}) "
        "(fix: give --gt with the reference masks or table)"
    )


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything one evaluation run needs; defaults match the ``medfleet evaluate`` flags.

    Attributes:
        task_type: ``segmentation``, ``classification``, ``detection``, ``regression``
            or ``landmarks``.
        pred: Folder of predicted masks (segmentation) or a predictions CSV.
        gt: Folder of reference masks (segmentation) or a reference CSV; ``None`` only for
            a run that measures predictions alone (``preset="iugc"`` with
            ``mode=biometry``, see :func:`gt_required_message`).
        out: Output folder for ``cases.csv`` and ``summary.json``.
        meta: Optional CSV with ``case_id`` and metadata columns copied into ``cases.csv``;
            its ``spacing`` column (mm, array-axis order) overrides file spacings.
        workers: Processes for segmentation (1: in this process).
        allow_missing: Score missing predictions as worst case and ignore extra ones.
        resample_pred: ``"nearest"`` resamples a prediction whose shape differs from the
            reference onto the reference grid; ``None`` makes that a mismatch.
        labels: Segmentation labels to score (default: every nonzero label present in any
            reference or prediction), or the class order for classification.
        percentile: Percentile of the HD at a percentile (95 gives ``hd95``).
        percentile_method: ``max-directed``, ``pooled`` or ``area-weighted``.
        nsd_tolerances: NSD tolerances in mm.
        surface: ``border`` or ``corner-area``.
        connectivity: Border erosion connectivity (rank 1..ndim or 4/8, 6/18/26).
        both_empty: ``nan`` or ``best`` when a label is absent from both masks.
        one_empty: Distance when exactly one mask is empty: ``inf``, ``nan``, ``diagonal``
            or a number of mm.
        positive_label: Positive class of a binary classification.
        multilabel: Classification labels are ``;``-separated sets of classes.
        zero_division: Value of a classification ratio with a zero denominator.
        iou_threshold: Detection IoU threshold for TP/FP/FN and the detection rate.
        max_detections: Detections per image kept for COCO AP.
        radii: SDR radii (mm, or reference units with ``landmark_reference``).
        sdr_comparison: ``<=`` or ``<``.
        missing_landmarks: ``penalty``, ``failure`` or ``exclude``.
        landmark_penalty: Error of a missing landmark under ``penalty``.
        landmark_reference: Pair of landmark indices whose reference distance normalises
            the errors (``None``: errors in mm, or pixels without spacing).
        preset: Challenge preset (:mod:`medfleet.evaluate.challenges`) that scores the run
            instead of the plain task scorer; ``None`` for none.
        preset_options: ``(name, value)`` pairs of preset options (text, as on the CLI).
        units: Preset units (e.g. ``voxel`` or ``mm``); ``None`` for the preset default.
        report: Also write ``report.html`` next to ``cases.csv`` and ``summary.json``.
        images: Folder of the cases' images, a file per case named by its case id
            (``case_001.png``, ``case_001.nii.gz``, ...): drawn under the outlines of the
            report's worst-case gallery (segmentation without a preset only); ``None``
            draws the outlines on a neutral background.
        gallery_cases: Worst cases drawn in the report's gallery (segmentation without a
            preset; 0: no gallery).
    """

    task_type: str
    pred: Path
    gt: Path | None
    out: Path
    meta: Path | None = None
    workers: int = 1
    allow_missing: bool = False
    resample_pred: str | None = None
    labels: tuple[Any, ...] | None = None
    percentile: float = 95.0
    percentile_method: str = "max-directed"
    nsd_tolerances: tuple[float, ...] = (1.0, 2.0)
    surface: str = "border"
    connectivity: int = 1
    both_empty: str = "nan"
    one_empty: str | float = "inf"
    positive_label: str | None = None
    multilabel: bool = False
    zero_division: float = 0.0
    iou_threshold: float = 0.5
    max_detections: int = 100
    radii: tuple[float, ...] = (2.0, 2.5, 3.0, 4.0)
    sdr_comparison: str = "<="
    missing_landmarks: str = "penalty"
    landmark_penalty: float = math.inf
    landmark_reference: tuple[int, int] | None = None
    preset: str | None = None
    preset_options: tuple[tuple[str, str], ...] = ()
    units: str | None = None
    report: bool = True
    images: Path | None = None
    gallery_cases: int = 8

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise OptionError(
                f"unknown task type {self.task_type!r} (fix: use one of {', '.join(TASK_TYPES)})"
            )
        if self.workers < 1:
            raise OptionError(f"workers must be >= 1, got {self.workers}")
        if self.resample_pred not in (None, "nearest"):
            raise OptionError(
                f"resample_pred {self.resample_pred!r} is not supported (fix: 'nearest')"
            )
        if isinstance(self.preset_options, Mapping):
            items = tuple((str(k), str(v)) for k, v in self.preset_options.items())
            object.__setattr__(self, "preset_options", items)
        if self.gt is None:
            message = gt_required_message(self.preset, self.preset_options)
            if message is not None:
                raise OptionError(message)
        for name in ("pred", "gt", "out"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        require_folder_path(self.out)  # before any scoring
        if self.meta is not None:
            object.__setattr__(self, "meta", Path(self.meta))
        if self.gallery_cases < 0:
            raise OptionError(f"gallery_cases must be >= 0, got {self.gallery_cases}")
        if self.images is not None:
            self._check_images(Path(self.images))

    def _check_images(self, images: Path) -> None:
        object.__setattr__(self, "images", images)
        if self.task_type != "segmentation" or self.preset is not None:
            raise OptionError(
                "--images draws the worst-case gallery of segmentation runs without a preset "
                "(fix: leave out --images)"
            )
        if not images.is_dir():
            state = "is not a folder" if images.exists() else "does not exist"
            raise InputFileError(
                f"--images {images} {state} (fix: give the folder of the cases' images, one "
                "file per case named by its case id such as case_001.png, or leave out "
                "--images)"
            )


@dataclass
class ScoredTask:
    """What a task scorer hands back to the runner.

    Attributes:
        rows: The rows of ``cases.csv``.
        metrics: Group -> metric -> summary statistics.
        dataset: Metrics computed over all cases at once.
        conventions: The conventions used, for ``summary.json``.
        warnings: Notes about individual cases.
    """

    rows: list[dict[str, Any]]
    metrics: dict[str, dict[str, dict[str, float | int]]]
    dataset: dict[str, Any]
    conventions: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


_SPACING_RTOL = 1e-4


def meta_spacing(
    meta_rows: Mapping[str, Mapping[str, Any]], case_id: str
) -> tuple[float, ...] | None:
    """The ``spacing`` of a case from the ``--meta`` table, or ``None``."""
    row = meta_rows.get(case_id)
    if row is None or "spacing" not in row:
        return None
    return parse_spacing(row["spacing"], case_id=case_id, column="spacing (--meta)")


def check_match(
    config: EvaluationConfig, pred_ids: Iterable[str], gt_ids: Iterable[str]
) -> CaseMatch:
    """Match ids; missing or extra cases are an error unless ``allow_missing``."""
    match = match_cases(pred_ids, gt_ids)
    if (match.missing or match.extra) and not config.allow_missing:
        raise CaseMismatchError(match.missing, match.extra, pred=config.pred, gt=config.gt)
    return match


def match_info(match: CaseMatch, config: EvaluationConfig) -> dict[str, Any]:
    """The ``cases`` block of ``summary.json``."""
    scored_missing = list(match.missing) if config.allow_missing else []
    return {
        "n_cases": len(match.matched) + len(scored_missing),
        "n_matched": len(match.matched),
        "missing_scored_as_worst": scored_missing,
        "extra_ignored": list(match.extra),
    }


def spacing_differs(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two spacings differ beyond float rounding of headers (relative 1e-4).

    Example:
        >>> spacing_differs((0.8, 0.8), (0.80000001, 0.8)), spacing_differs((1.0,), (1.5,))
        (False, True)
    """
    return len(a) != len(b) or not np.allclose(a, b, rtol=_SPACING_RTOL, atol=1e-9)


def fmt_spacing(sp: Sequence[float]) -> str:
    """A spacing for messages.

    Example:
        >>> fmt_spacing((0.5, 2.0))
        '(0.5, 2)'
    """
    return "(" + ", ".join(f"{float(s):g}" for s in sp) + ")"
