"""Reading the inputs of a preset run: mask folder pairs, per-case tables, metadata columns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import InputFileError, MedfleetError
from medfleet.evaluate.challenges.base import PresetRun
from medfleet.evaluate.runner.cases import (
    CaseMismatchError,
    CaseTable,
    list_case_files,
    read_case_table,
)
from medfleet.evaluate.runner.config import check_match, match_info, meta_spacing
from medfleet.evaluate.runner.segmentation import _label_array, resample_nearest

__all__ = [
    "MaskPair",
    "MaskPlan",
    "binary_cell",
    "iter_mask_pairs",
    "meta_column",
    "plan_cases",
    "plan_mask_pairs",
    "read_label_map",
    "read_mask_pair",
    "read_table",
]


def read_label_map(
    path: Path, case_id: str, role: str, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read an integer label map and its spacing (mm per array axis); errors name the case.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
        >>> np.save(p, np.eye(3, dtype=np.uint8))
        >>> arr, sp = read_label_map(p, "a", "gt")
        >>> int(arr.sum()), sp
        (3, (1.0, 1.0))
    """
    from medfleet.data.io import read_image

    image = read_image(path, spacing=spacing)
    return _label_array(image, case_id, role), tuple(float(s) for s in image.spacing)


@dataclass(frozen=True)
class MaskPlan:
    """The matched cases of two mask folders.

    Attributes:
        case_ids: Cases to score (matched, plus missing ones under ``allow_missing``).
        pred_files: Case id -> prediction file.
        gt_files: Case id -> reference file.
        cases: The ``cases`` block of ``summary.json``.
    """

    case_ids: list[str]
    pred_files: dict[str, Path]
    gt_files: dict[str, Path]
    cases: dict[str, Any]


@dataclass(frozen=True)
class MaskPair:
    """One case: prediction and reference label maps on the same grid.

    Attributes:
        case_id: The case.
        pred: Predicted label map (zeros when the prediction is missing).
        gt: Reference label map.
        spacing: Spacing in mm per array axis (reference file, or ``--meta`` override).
        status: ``"ok"`` or ``"pred_missing"``.
    """

    case_id: str
    pred: np.ndarray
    gt: np.ndarray
    spacing: tuple[float, ...]
    status: str = "ok"


def plan_mask_pairs(
    run: PresetRun, pred_dir: Path | None = None, gt_dir: Path | None = None
) -> MaskPlan:
    """Match the mask files of ``--pred`` and ``--gt`` (or the given folders) by case id.

    Raises:
        CaseMismatchError: Missing or extra cases without ``allow_missing``.
    """
    config = run.config
    pred_files = list_case_files(pred_dir or config.pred, "--pred")
    gt_files = list_case_files(gt_dir or config.gt, "--gt")
    case_ids, cases = plan_cases(run, pred_files, gt_files)
    return MaskPlan(case_ids, pred_files, gt_files, cases)


def plan_cases(
    run: PresetRun, pred_ids: Iterable[str], gt_ids: Iterable[str]
) -> tuple[list[str], dict[str, Any]]:
    """Cases to score (sorted; missing ones too under ``allow_missing``) and the ``cases`` block.

    Raises:
        CaseMismatchError: Missing or extra cases without ``allow_missing``.
        InputFileError: No case to score.
    """
    config = run.config
    match = check_match(config, pred_ids, gt_ids)
    case_ids = sorted([*match.matched, *(match.missing if config.allow_missing else [])])
    if not case_ids:
        raise InputFileError(f"no case of {config.gt} has a prediction in {config.pred}")
    return case_ids, match_info(match, config)


def iter_mask_pairs(run: PresetRun, plan: MaskPlan) -> Iterator[MaskPair]:
    """Read each planned case (one at a time, so large volumes never pile up in memory).

    A prediction whose shape differs from the reference is resampled onto it with
    ``--resample-pred nearest`` and is otherwise a mismatch, as in the plain runner.
    """
    total = len(plan.case_ids)
    run.tick(0, total)
    for done, case_id in enumerate(plan.case_ids, start=1):
        yield read_mask_pair(run, plan, case_id)
        run.tick(done, total)


def read_mask_pair(run: PresetRun, plan: MaskPlan, case_id: str) -> MaskPair:
    """Read one planned case (what :func:`iter_mask_pairs` yields for each case).

    Called on its own, a failure (an unreadable file, a colour or non-integer mask) is
    raised for this case alone, so a preset can record it as an error row and go on with
    the next case.

    Raises:
        CaseMismatchError: Prediction and reference shapes differ (without
            ``--resample-pred nearest``).
        MedfleetError: A file cannot be read as a label map (the message names the case).

    Example:
        >>> import tempfile, pathlib
        >>> from types import SimpleNamespace
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> np.save(d / "a.npy", np.eye(3, dtype=np.uint8))
        >>> plan = MaskPlan(["a"], {"a": d / "a.npy"}, {"a": d / "a.npy"}, {})
        >>> run = PresetRun(SimpleNamespace(resample_pred="none", pred=d, gt=d), {}, {})
        >>> pair = read_mask_pair(run, plan, "a")
        >>> pair.status, int(pair.pred.sum()), pair.spacing
        ('ok', 3, (1.0, 1.0))
    """
    config = run.config
    override = meta_spacing(run.meta_rows, case_id)
    gt, spacing = read_label_map(plan.gt_files[case_id], case_id, "gt", override)
    if case_id not in plan.pred_files:
        return MaskPair(case_id, np.zeros(gt.shape, dtype=np.uint8), gt, spacing, "pred_missing")
    pred, _ = read_label_map(plan.pred_files[case_id], case_id, "pred", override)
    if pred.shape != gt.shape:
        if config.resample_pred != "nearest" or pred.ndim != gt.ndim:
            raise CaseMismatchError(
                mismatched=[(case_id, f"shape {pred.shape} in pred but {gt.shape} in gt")],
                pred=config.pred,
                gt=config.gt,
            )
        pred = resample_nearest(pred, gt.shape)
    return MaskPair(case_id, pred, gt, spacing)


def binary_cell(text: str, case_id: str, column: str) -> int:
    """A 0/1 table cell (``"1"``, ``"0.0"``, ...) as an int; anything else is an error.

    Example:
        >>> binary_cell("1.0", "c1", "label")
        1
    """
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(f"case {case_id}: {column} {text!r} is not 0 or 1") from None
    if value not in (0.0, 1.0):
        raise InputFileError(f"case {case_id}: {column} is {text!r}, not 0 or 1")
    return int(value)


def read_table(path: Path, required: Sequence[str], role: str) -> CaseTable:
    """Read a per-case CSV table (``case_id`` plus ``required`` columns)."""
    return read_case_table(path, required, role=role)


def meta_column(
    run: PresetRun,
    case_id: str,
    names: Sequence[str],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> str | None:
    """The first of ``names`` found for a case in ``--meta`` (then in ``extra`` rows).

    Returns ``None`` when no column of that name exists; an empty cell gives ``""``.
    """
    for source in (run.meta_rows, extra or {}):
        row = source.get(case_id)
        if row is None:
            continue
        for name in names:
            if name in row:
                value = row[name]
                return "" if value is None else str(value).strip()
    return None


def require_columns(
    run: PresetRun,
    case_ids: Sequence[str],
    names: Mapping[str, Sequence[str]],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """Check that each variable has a column (under one of its names); return the names used.

    Raises:
        MedfleetError: A variable has no column in ``--meta`` (or the reference table).
    """
    found: dict[str, str] = {}
    sources = [run.meta_rows, extra or {}]
    for variable, candidates in names.items():
        for source in sources:
            rows = [source.get(c) for c in case_ids if source.get(c) is not None]
            hit = next((n for n in candidates if rows and all(n in r for r in rows)), None)
            if hit is not None:
                found[variable] = hit
                break
        else:
            raise MedfleetError(
                f"the preset needs a {variable!r} column for every case (looked for "
                f"{', '.join(candidates)} in --meta"
                + (" and the reference table" if extra else "")
                + "; fix: add the column to the --meta CSV)"
            )
    return found
