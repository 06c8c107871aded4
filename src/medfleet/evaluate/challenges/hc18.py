"""HC18: automated measurement of the fetal head circumference in 2-D ultrasound.

Per image, from the predicted and reference head masks (filled ellipses, or outlines that
``fill=true`` fills first):

* HC (mm): the Ramanujan perimeter of the ellipse fitted to the mask boundary
  (:func:`medfleet.evaluate.metrics.biometry.head_circumference`, pixel size from the file or the
  ``spacing`` column of ``--meta``); the reference HC can instead come from a ``--meta``
  column (``hc_column``, e.g. the challenge's ``head circumference (mm)``);
* DF = HC_pred - HC_ref and ADF = |DF| (mm);
* Dice of the two masks and the Hausdorff distance (mm) between their borders.

The ranking criterion of the challenge is the mean absolute difference (ADF); DF, Dice
and HD are reported with it.

Source: van den Heuvel et al., "Automated measurement of fetal head circumference using
2D ultrasound images", PLoS ONE 13(8) 2018 (hc18.grand-challenge.org).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medfleet.errors import InputFileError
from medfleet.evaluate.challenges._inputs import (
    MaskPlan,
    iter_mask_pairs,
    meta_column,
    plan_cases,
)
from medfleet.evaluate.challenges.base import Preset, PresetOption, PresetOutcome, PresetRun
from medfleet.evaluate.runner.cases import list_case_files

__all__ = ["PRESET", "hc18_case_metrics"]


def hc18_case_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: tuple[float, ...],
    *,
    fill: bool = True,
    reference_hc: float | None = None,
) -> dict[str, Any]:
    """HC of both masks, their difference, Dice and HD (mm) of one image.

    Example:
        >>> rows, cols = np.mgrid[:120, :120]
        >>> gt = ((cols - 60) / 40.0) ** 2 + ((rows - 60) / 30.0) ** 2 <= 1
        >>> m = hc18_case_metrics(gt, gt, (0.5, 0.5))
        >>> m["adf_mm"], m["dice"], m["hd_mm"], abs(m["hc_gt_mm"] - 110.5) < 1.0
        (0.0, 1.0, 0.0, True)
    """
    from medfleet.evaluate.metrics.biometry import head_circumference
    from medfleet.evaluate.metrics.surface import surface_metrics

    p = np.asarray(pred) != 0
    g = np.asarray(gt) != 0
    if fill:
        p, g = ndimage.binary_fill_holes(p), ndimage.binary_fill_holes(g)
    out: dict[str, Any] = {}
    n_p, n_g = int(p.sum()), int(g.sum())
    out["dice"] = 2.0 * float(np.count_nonzero(p & g)) / (n_p + n_g) if n_p + n_g else math.nan
    if n_p and n_g:
        hd = surface_metrics(p, g, spacing, [1], metrics=("hd",)).value("hd", 1)
    else:
        hd = math.inf if n_p + n_g else math.nan
    out["hd_mm"] = float(hd)

    def hc(mask: np.ndarray) -> float:
        if not mask.any():
            return math.nan
        try:
            return head_circumference(mask, spacing)
        except ValueError:
            return math.nan

    out["hc_pred_mm"] = hc(p)
    out["hc_gt_mm"] = hc(g) if reference_hc is None else float(reference_hc)
    out["df_mm"] = out["hc_pred_mm"] - out["hc_gt_mm"]
    out["adf_mm"] = abs(out["df_mm"])
    return out


def _run(run: PresetRun) -> PresetOutcome:
    opts = run.options
    run = _with_pixel_size(run)
    plan = _plan(run, opts["strip_suffix"])
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for pair in iter_mask_pairs(run, plan):
        if pair.gt.ndim != 2:
            raise InputFileError(f"case {pair.case_id}: HC18 masks are 2-D, got {pair.gt.shape}")
        reference = None
        if opts["hc_column"]:
            text = meta_column(run, pair.case_id, [opts["hc_column"]])
            try:
                reference = float(text) if text else None
            except ValueError:
                raise InputFileError(
                    f"case {pair.case_id}: {opts['hc_column']} {text!r} is not a number"
                ) from None
            if reference is None:
                raise InputFileError(
                    f"case {pair.case_id}: no {opts['hc_column']!r} value in --meta "
                    "(fix: give the reference HC in mm for every case)"
                )
        metrics = hc18_case_metrics(
            pair.pred, pair.gt, pair.spacing, fill=opts["fill"], reference_hc=reference
        )
        if math.isnan(metrics["hc_pred_mm"]):
            warnings.append(f"case {pair.case_id}: no ellipse could be fitted to the prediction")
        rows.append({"case_id": pair.case_id, "status": pair.status, **metrics})
    adf = np.array([r["adf_mm"] for r in rows])
    df = np.array([r["df_mm"] for r in rows])
    n_missing = int(np.isnan(adf).sum())
    mean_adf = math.inf if n_missing else float(np.mean(adf))
    components = {
        "adf_mm": mean_adf,
        "adf_sd_mm": float(np.std(adf, ddof=1)) if len(adf) > 1 and not n_missing else math.nan,
        "df_mm": float(np.nanmean(df)) if n_missing < len(df) else math.nan,
        "dice": float(np.nanmean([r["dice"] for r in rows])),
        "hd_mm": float(np.mean([r["hd_mm"] for r in rows])),
        "n_hc_missing": n_missing,
    }
    return PresetOutcome(
        rows=rows,
        metrics=["adf_mm", "df_mm", "dice", "hd_mm"],
        score=mean_adf,
        score_name="mean absolute HC difference ADF (mm, lower is better)",
        components=components,
        cases=plan.cases,
        worst={"adf_mm": math.inf, "dice": 0.0, "hd_mm": math.inf},
        conventions={
            "hc": "Ramanujan perimeter of the least-squares ellipse of the mask boundary "
            "(pixel-edge midpoints, largest component), mm",
            "reference_hc": opts["hc_column"] or "fitted to the reference mask",
            "fill": opts["fill"],
            "missing_hc": "no ellipse: ADF infinite in the mean",
        },
        warnings=warnings,
        higher_is_better={"adf_mm": False, "dice": True, "hd_mm": False},
        report={
            "bland_altman": [
                {"reference": "hc_gt_mm", "measured": "hc_pred_mm", "label": "HC (mm)"}
            ]
        },
    )


#: The column of the challenge's ``training_set_pixel_size_and_HC.csv`` with the pixel size.
PIXEL_SIZE_COLUMN = "pixel size(mm)"


def _with_pixel_size(run: PresetRun) -> PresetRun:
    """``run`` with each ``--meta`` row's ``pixel size(mm)`` as its ``spacing`` (when absent)."""
    if not any(PIXEL_SIZE_COLUMN in row and "spacing" not in row for row in run.meta_rows.values()):
        return run
    rows: dict[str, Mapping[str, Any]] = {}
    for case_id, row in run.meta_rows.items():
        size = str(row.get(PIXEL_SIZE_COLUMN, "")).strip()
        if "spacing" in row or not size:
            rows[case_id] = row
        else:
            rows[case_id] = {**row, "spacing": f"{size},{size}"}
    return replace(run, meta_rows=rows)


def _plan(run: PresetRun, suffix: str) -> MaskPlan:
    """The cases of ``--pred`` and ``--gt``, ``suffix`` removed from the end of each id.

    The challenge names a reference outline ``000_HC_Annotation.png`` after its image
    ``000_HC.png``; with the default suffix both sides, and the rows of
    ``training_set_pixel_size_and_HC.csv``, meet on ``000_HC``.
    """

    def strip(files: Mapping[str, Path], role: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for case_id, path in files.items():
            key = case_id[: -len(suffix)] if suffix and case_id.endswith(suffix) else case_id
            if key in out:
                raise InputFileError(
                    f"{role}: {out[key].name} and {path.name} are both case {key!r} once "
                    f"{suffix!r} is removed (fix: --preset-option strip_suffix= to keep "
                    "the names as they are)"
                )
            out[key] = path
        return out

    pred_files = strip(list_case_files(run.config.pred, "--pred"), "--pred")
    gt_files = strip(list_case_files(run.config.gt, "--gt"), "--gt")
    case_ids, cases = plan_cases(run, pred_files, gt_files)
    return MaskPlan(case_ids, pred_files, gt_files, cases)


PRESET = Preset(
    name="hc18",
    title="HC18: fetal head circumference",
    source="van den Heuvel et al., PLoS ONE 2018; hc18.grand-challenge.org",
    task_types=("segmentation",),
    summary="mean |HC_pred - HC_ref| (mm); Dice and HD (mm) reported",
    options=(
        PresetOption("fill", True, "Fill outline masks before fitting and overlap.", "bool"),
        PresetOption(
            "hc_column",
            "",
            "--meta column with the reference HC in mm (default: fit the reference mask).",
        ),
        PresetOption(
            "strip_suffix",
            "_Annotation",
            "Removed from the end of mask file names to form case ids (the challenge's "
            "NNN_HC_Annotation.png is case NNN_HC); empty keeps the names.",
        ),
    ),
    run=_run,
)
