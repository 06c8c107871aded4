"""CURVAS 2024: calibration and uncertainty for multi-rater volume assessment (abdominal CT).

Inputs per case: several rater label maps (labels ``1..K``, one organ each), the
predicted organ probabilities ``p_1..p_K`` (channel-first array) and the binarized
prediction (a label map, or the arg-max of ``[1 - sum p, p_1, ..., p_K]``). Per organ
``k``:

* consensus foreground = voxels every rater labels ``k``; consensus background = voxels
  no rater labels ``k``; dissensus = the rest;
* **consensus Dice** = Dice of the predicted organ outside the dissensus against the
  consensus foreground, NaN when the consensus foreground is empty (MONAI
  ``ignore_empty``). ``literal=true`` reproduces the official call, which hands MONAI the
  ``(slices, rows, columns)`` arrays without batch and channel axes: a Dice per (slice,
  row) over the columns, row 0 dropped as "background", empty rows skipped, averaged per
  slice and then over slices (0 when nothing is left);
* **consensus confidence** = 1/2 [mean p_k over the consensus foreground + (1 - mean p_k
  over the consensus background)], NaN when a consensus region is empty;
* **volume CRPS** of the predicted volume ``sum(p_k) x voxel volume`` against the raters'
  volumes: official form (a normal with the raters' mean and *population* SD, its CDF
  linearly interpolated on 100 points between the 1 % and 99 % quantiles, integrated with
  ``scipy.integrate.quad`` over mean +/- 3 SD, so 0 when all raters agree;
  ``crps_integration=exact`` integrates the same integrand exactly), or the exact Gaussian
  or empirical-ensemble CRPS (``crps_form``).

Per rater, **ECE** over all voxels with the ``K + 1``-class probabilities
``[1 - sum p, p_1, ..., p_K]``, 50 equal-width bins, top-1 confidence, as torchmetrics'
``MulticlassCalibrationError``: if any of these values lies outside [0, 1] (the organ
probabilities sum above 1 somewhere) a softmax is applied to every voxel first; bins are
right-open (``torch.bucketize(..., right=True)``) and a confidence of exactly 1 falls in
an extra bin of its own. Binning runs in float64 (torchmetrics casts to float32; the two
can differ only for a confidence within float32 rounding of a bin edge).

``crop=true`` first crops every array in-plane (the last two axes) to the bounding box
of ``CT > 0`` (MONAI ``CropForeground``), which changes ECE and confidence.

The consensus regions, consensus Dice and confidence, per-rater calibration and CRPS forms
are those of :mod:`medfleet.evaluate.multirater`, called with the CURVAS settings; this
module adds the row-wise Dice, the official volume indexing and the crop.

Source: github.com/SYCAI-Technologies/curvas-challenge, ``CURVAS_2024/evaluation_metrics/
metrics.py``. See docs/challenges.md for the kept quirks and deviations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import ManifestError, MedfleetError
from medfleet.evaluate.cases import CaseMismatchError, list_case_files, match_cases
from medfleet.evaluate.challenges._inputs import read_label_map
from medfleet.evaluate.challenges.base import Preset, PresetOption, PresetOutcome, PresetRun
from medfleet.evaluate.multirater import (
    consensus_confidence,
    consensus_dice,
    consensus_regions,
    crps_curvas,
    crps_ensemble,
    crps_gaussian,
    per_rater_calibration,
)
from medfleet.evaluate.multirater import rater_volumes as mr_rater_volumes
from medfleet.evaluate.run_common import match_info, meta_spacing

__all__ = [
    "PRESET",
    "body_crop_box",
    "consensus_dice_rowwise",
    "curvas_crps",
    "curvas_ece",
    "pooled_reliability",
    "rater_volumes",
]

N_BINS = 50


def consensus_dice_rowwise(pred_labels: np.ndarray, raters: np.ndarray, label: int) -> float:
    """The official code's Dice: per (slice, row) over columns, rows 0 dropped (see module).

    Example:
        >>> r = np.zeros((2, 1, 3, 4), int); r[:, 0, 1, :2] = 1; r[:, 0, 2, :] = 1
        >>> p = np.zeros((1, 3, 4), int); p[0, 1, :2] = 1; p[0, 0, :] = 1
        >>> consensus_dice_rowwise(p, r, 1)  # row 1: 1.0, row 2: 0.0, row 0 dropped
        0.5
    """
    regions = consensus_regions(raters, label)
    fg, dis = regions.foreground, regions.dissensus
    pred = (np.asarray(pred_labels) == label) & ~dis
    if fg.ndim == 2:
        fg, pred = fg[None], pred[None]
    if fg.ndim != 3:
        raise ValueError(f"the row-wise Dice needs 2-D or 3-D maps, got {fg.ndim}-D")
    g = fg[:, 1:, :].reshape(fg.shape[0], fg.shape[1] - 1, -1)
    p = pred[:, 1:, :].reshape(g.shape)
    inter = np.count_nonzero(g & p, axis=-1).astype(np.float64)
    n_g = g.sum(axis=-1).astype(np.float64)
    n_p = p.sum(axis=-1).astype(np.float64)
    valid = n_g > 0
    dice = np.where(valid, 2.0 * inter / np.where(valid, n_g + n_p, 1.0), 0.0)
    per_slice_n = valid.sum(axis=1)
    slice_mean = np.where(per_slice_n > 0, dice.sum(axis=1) / np.maximum(per_slice_n, 1), 0.0)
    n_slices = int((per_slice_n > 0).sum())
    return float(slice_mean.sum() / n_slices) if n_slices else 0.0


def rater_volumes(
    raters: np.ndarray, label: int, voxel_volume: float = 1.0, count: str = "label"
) -> list[float]:
    """Each rater's volume of one label (voxel count x ``voxel_volume``).

    ``count="unique-index"`` reproduces the official ``np.unique(gt,
    return_counts=True)[1][label]``: the count of the ``label``-th distinct value, which is
    the label's own count only when every smaller label occurs in that rater's map.

    Example:
        >>> r = np.array([[0, 1, 1, 3], [0, 3, 3, 3]])
        >>> rater_volumes(r, 3), rater_volumes(r, 1, count="unique-index")
        ([1.0, 3.0], [2.0, 3.0])
    """
    if count == "label":
        return [float(v) * float(voxel_volume) for v in mr_rater_volumes(raters, label)]
    if count != "unique-index":
        raise ValueError(f"count must be 'label' or 'unique-index', got {count!r}")
    out = []
    for rater in np.asarray(raters):
        counts = np.unique(rater, return_counts=True)[1]
        if label >= len(counts):
            raise IndexError(
                f"the rater map holds {len(counts)} distinct values, so the official "
                f"volume of label {label} (the count at index {label}) does not exist"
            )
        out.append(int(counts[label]) * float(voxel_volume))
    return out


def curvas_crps(
    predicted: float, volumes: Sequence[float], form: str = "curvas", integration: str = "quad"
) -> float:
    """CRPS of a predicted volume against the raters' volumes.

    Args:
        predicted: Predicted volume.
        volumes: The raters' volumes.
        form: ``"curvas"`` (official form, see the module docs), ``"gaussian"`` (closed form
            for the normal with population SD; ``|v - mean|`` when the SD is 0) or
            ``"ensemble"`` (the empirical CRPS of the rater volumes).
        integration: ``"curvas"`` form: ``"quad"`` (the official ``scipy.integrate.quad``
            call, digit for digit) or ``"exact"`` (the exact integral of the same integrand).

    Example:
        >>> curvas_crps(10.0, [10.0, 10.0, 10.0])
        0.0
        >>> round(curvas_crps(2.0, [1.0, 3.0], "ensemble"), 6)
        0.5
    """
    v = np.asarray(volumes, dtype=np.float64)
    if form == "ensemble":
        return crps_ensemble(float(predicted), v)
    if form == "gaussian":
        return crps_gaussian(float(predicted), float(v.mean()), float(v.std()))
    if form != "curvas":
        raise ValueError(f"form must be 'curvas', 'gaussian' or 'ensemble', got {form!r}")
    return crps_curvas(float(predicted), v, integration=integration)  # type: ignore[arg-type]


def curvas_ece(probs: np.ndarray, raters: np.ndarray, n_bins: int = N_BINS) -> list[Any]:
    """ECE of ``K`` organ probabilities against each rater, with the CURVAS settings.

    Probabilities ``[1 - sum p, p_1, ..., p_K]``, top-label, ``n_bins`` equal-width bins
    with torchmetrics' edge rule, and a softmax over every voxel when any of those values
    lies outside [0, 1] (:func:`medfleet.evaluate.multirater.per_rater_calibration`).

    Returns:
        One :class:`~medfleet.evaluate.calibration.CalibrationResult` per rater.

    Example:
        >>> p = np.array([[0.8, 0.3]]); r = np.array([[1, 0]])
        >>> round(curvas_ece(p, r, 10)[0].ece, 6)  # confidences 0.8 and 0.7, both right
        0.25
    """
    return per_rater_calibration(
        probs,
        raters,
        n_bins=n_bins,
        class_axis=0,
        background="complement",
        invalid="softmax",
        mode="top-label",
        edge_rule="torchmetrics",
    )


def pooled_reliability(results: Sequence[Any]) -> dict[str, list[float]]:
    """Pool the reliability bins of several calibration results (same bins).

    Example:
        >>> r = curvas_ece(np.array([[0.85, 0.25]]), np.array([[1, 0], [1, 1]]), 10)
        >>> pooled_reliability(r)["count"][7:9]  # confidences 0.75 and 0.85, two raters
        [2.0, 2.0]
    """
    counts = conf = acc = None
    for result in results:
        rel = result.reliability
        c = np.asarray(rel.counts, dtype=np.float64)
        sc = np.nan_to_num(np.asarray(rel.confidence) * c)
        sa = np.nan_to_num(np.asarray(rel.accuracy) * c)
        counts = c if counts is None else counts + c
        conf = sc if conf is None else conf + sc
        acc = sa if acc is None else acc + sa
    if counts is None:
        return {"count": [], "confidence": [], "accuracy": []}
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": counts.tolist(),
            "confidence": np.where(counts > 0, conf / counts, np.nan).tolist(),
            "accuracy": np.where(counts > 0, acc / counts, np.nan).tolist(),
        }


def body_crop_box(ct: np.ndarray) -> tuple[slice, slice]:
    """In-plane (last two axes) bounding box of ``ct > 0`` over all leading axes.

    Example:
        >>> ct = np.zeros((2, 5, 6)); ct[1, 1:3, 2:5] = 100
        >>> body_crop_box(ct)
        (slice(1, 3, None), slice(2, 5, None))
    """
    body = np.asarray(ct) > 0
    if body.ndim > 2:
        body = body.reshape(-1, *body.shape[-2:]).any(axis=0)
    if not body.any():
        raise ValueError("the CT holds no voxel > 0, so there is no body to crop to")
    rows = np.flatnonzero(body.any(axis=1))
    cols = np.flatnonzero(body.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


# ---------------------------------------------------------------- inputs


def _rater_folders(gt: Path, names: str) -> list[Path]:
    root = Path(gt)
    if not root.is_dir():
        raise ManifestError(f"--gt {root} is not a folder of rater folders")
    if names:
        folders = [root / n.strip() for n in names.split(",") if n.strip()]
        absent = [str(f) for f in folders if not f.is_dir()]
        if absent:
            raise ManifestError(f"rater folder(s) {absent} do not exist (option raters)")
        return folders
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    raters = [p for p in subs if "rater" in p.name.lower()] or subs
    if not raters:
        raise ManifestError(
            f"--gt {root} has no rater sub-folders (fix: one folder of masks per rater, or "
            "--preset-option raters=a,b,c)"
        )
    return raters


def _read_probabilities(path: Path, case_id: str, shape: tuple[int, ...]) -> np.ndarray:
    from medfleet.data.io import read_image

    arr = np.asarray(read_image(path).array, dtype=np.float64)
    if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
        probs = arr
    elif arr.ndim == len(shape) + 1 and arr.shape[:-1] == shape:
        probs = np.moveaxis(arr, -1, 0)
    elif arr.shape == shape:
        probs = arr[None]
    else:
        raise MedfleetError(
            f"case {case_id}: the probabilities {path.name} have shape {arr.shape}, but the "
            f"rater masks {shape} (fix: save a (organs, *mask shape) array)"
        )
    if not np.isfinite(probs).all():
        raise MedfleetError(f"case {case_id}: the probabilities {path.name} hold NaN or inf")
    return probs


def _run(run: PresetRun) -> PresetOutcome:
    opts = run.options
    config = run.config
    raters = _rater_folders(config.gt, opts["raters"])
    rater_files = [list_case_files(r, f"rater folder {r.name}") for r in raters]
    common = set(rater_files[0]).intersection(*rater_files[1:])
    uneven = sorted(set().union(*rater_files) - common)
    if uneven:
        raise ManifestError(
            f"cases {uneven[:10]} lack a mask in some rater folders (fix: every rater "
            "folder needs every case)"
        )
    pred_files = list_case_files(config.pred, "--pred")
    match = match_cases(pred_files, common)
    if match.missing or match.extra:
        raise CaseMismatchError(match.missing, match.extra, pred=config.pred, gt=config.gt)
    label_files = (
        list_case_files(opts["pred_labels"], "pred_labels") if opts["pred_labels"] else None
    )
    ct_files = list_case_files(opts["ct"], "ct") if opts["ct"] else None
    if opts["crop"] and ct_files is None:
        raise ManifestError("crop=true needs --preset-option ct=FOLDER of CT images")
    rows: list[dict[str, Any]] = []
    calibrations: list[Any] = []
    n_organs: int | None = None
    total = len(match.matched)
    run.tick(0, total)
    for done, case_id in enumerate(match.matched, start=1):
        override = meta_spacing(run.meta_rows, case_id)
        maps = []
        spacing: tuple[float, ...] = ()
        for files in rater_files:
            arr, spacing = read_label_map(files[case_id], case_id, "rater", override)
            maps.append(arr)
        shapes = {m.shape for m in maps}
        if len(shapes) > 1:
            raise CaseMismatchError(
                mismatched=[(case_id, f"rater masks have shapes {shapes}")],
                pred=config.pred,
                gt=config.gt,
            )
        stack = np.stack(maps)
        probs = _read_probabilities(pred_files[case_id], case_id, stack.shape[1:])
        if n_organs is None:
            n_organs = probs.shape[0]
        elif probs.shape[0] != n_organs:
            raise MedfleetError(
                f"case {case_id}: {probs.shape[0]} organ channels, other cases {n_organs}"
            )
        if label_files is not None:
            if case_id not in label_files:
                raise ManifestError(f"case {case_id}: no binarized prediction in pred_labels")
            pred_labels, _ = read_label_map(label_files[case_id], case_id, "pred_labels")
        else:
            pred_labels = np.argmax(
                np.concatenate([1.0 - probs.sum(axis=0, keepdims=True), probs]), axis=0
            )
        if pred_labels.shape != stack.shape[1:]:
            raise CaseMismatchError(
                mismatched=[
                    (
                        case_id,
                        f"binarized prediction {pred_labels.shape} vs masks {stack.shape[1:]}",
                    )
                ],
                pred=config.pred,
                gt=config.gt,
            )
        if opts["crop"]:
            assert ct_files is not None
            if case_id not in ct_files:
                raise ManifestError(f"case {case_id}: no CT image in the ct folder")
            from medfleet.data.io import read_image

            ct = np.asarray(read_image(ct_files[case_id]).array)
            if ct.shape != stack.shape[1:]:
                raise CaseMismatchError(
                    mismatched=[(case_id, f"CT {ct.shape} vs masks {stack.shape[1:]}")],
                    pred=config.pred,
                    gt=config.gt,
                )
            try:
                box = (Ellipsis, *body_crop_box(ct))
            except ValueError as exc:
                raise MedfleetError(f"case {case_id}: {exc}") from None
            stack, probs, pred_labels = stack[box], probs[box], pred_labels[box]
        voxel_volume = float(np.prod(spacing)) if run.units == "mm" else 1.0
        row: dict[str, Any] = {"case_id": case_id, "status": "ok"}
        for k in range(1, n_organs + 1):
            dice_fn = consensus_dice_rowwise if opts["literal"] else consensus_dice
            row[f"dice_{k}"] = dice_fn(pred_labels, stack, k)
            row[f"confidence_{k}"] = consensus_confidence(probs[k - 1], stack, k)
            try:
                volumes = rater_volumes(stack, k, voxel_volume, opts["volume_count"])
            except IndexError as exc:
                raise MedfleetError(
                    f"case {case_id}: {exc} (fix: --preset-option volume_count=label)"
                ) from None
            predicted = float(probs[k - 1].sum()) * voxel_volume
            row[f"volume_pred_{k}"] = predicted
            row[f"volume_raters_mean_{k}"] = float(np.mean(volumes))
            row[f"crps_{k}"] = curvas_crps(
                predicted, volumes, opts["crps_form"], opts["crps_integration"]
            )
        try:
            results = curvas_ece(probs, stack, opts["n_bins"])
        except ValueError as exc:
            raise MedfleetError(f"case {case_id}: {exc}") from None
        for r, result in enumerate(results):
            row[f"ece_rater{r + 1}"] = result.ece
        calibrations.extend(results)
        row["ece"] = float(np.mean([row[f"ece_rater{r + 1}"] for r in range(len(raters))]))
        for name in ("dice", "confidence", "crps"):
            values = [row[f"{name}_{k}"] for k in range(1, n_organs + 1)]
            finite = [v for v in values if not math.isnan(v)]
            row[name] = float(np.mean(finite)) if finite else math.nan
        rows.append(row)
        run.tick(done, total)
    assert n_organs is not None
    components: dict[str, Any] = {"n_raters": len(raters), "n_organs": n_organs}
    for name in ("dice", "confidence", "crps"):
        for k in range(1, n_organs + 1):
            values = [r[f"{name}_{k}"] for r in rows if not math.isnan(r[f"{name}_{k}"])]
            components[f"{name}_{k}"] = float(np.mean(values)) if values else math.nan
            components[f"{name}_{k}_n_nan"] = len(rows) - len(values)
        per_organ = [components[f"{name}_{k}"] for k in range(1, n_organs + 1)]
        finite = [v for v in per_organ if not math.isnan(v)]
        components[name] = float(np.mean(finite)) if finite else math.nan
    for r in range(len(raters)):
        components[f"ece_rater{r + 1}"] = float(np.mean([row[f"ece_rater{r + 1}"] for row in rows]))
    components["ece"] = float(np.mean([row["ece"] for row in rows]))
    metrics = ["dice", "confidence", "crps", "ece"]
    for k in range(1, n_organs + 1):
        metrics += [f"dice_{k}", f"confidence_{k}", f"crps_{k}"]
    return PresetOutcome(
        rows=rows,
        metrics=metrics,
        score=None,
        score_name="no single official score: consensus Dice, confidence, ECE and CRPS are "
        "ranked separately",
        components=components,
        cases=match_info(match, config),
        conventions={
            "raters": [r.name for r in raters],
            "dice": "row-wise (official call)" if opts["literal"] else "3-D consensus Dice",
            "ece": f"top-label, {opts['n_bins']} equal-width bins, torchmetrics binning",
            "crps_form": opts["crps_form"],
            "crps_integration": opts["crps_integration"],
            "volume_count": opts["volume_count"],
            "voxel_volume": "mm^3" if run.units == "mm" else "1 (voxel count)",
            "crop": bool(opts["crop"]),
            "binarized_prediction": "pred_labels folder"
            if label_files is not None
            else "arg-max of [1 - sum p, p_1, ...]",
        },
        higher_is_better={"dice": True, "confidence": True, "crps": False, "ece": False},
        report={
            "reliability": {
                **pooled_reliability(calibrations),
                "label": "top-label, all raters pooled",
            }
        },
    )


PRESET = Preset(
    name="curvas",
    title="CURVAS 2024: multi-rater calibration and volume assessment (abdominal CT)",
    source="github.com/SYCAI-Technologies/curvas-challenge CURVAS_2024/evaluation_metrics/"
    "metrics.py",
    task_types=("segmentation",),
    units=("voxel", "mm"),
    summary="consensus Dice, consensus confidence, ECE per rater, volume CRPS per organ",
    options=(
        PresetOption("literal", False, "Reproduce the official row-wise Dice.", "bool"),
        PresetOption(
            "raters",
            "",
            "Comma-separated rater sub-folders of --gt (default: those named *rater*, else all).",
        ),
        PresetOption(
            "pred_labels", None, "Folder of binarized predictions (default: arg-max).", "path"
        ),
        PresetOption("ct", None, "Folder of CT images (for crop).", "path"),
        PresetOption("crop", False, "Crop in-plane to the CT > 0 bounding box.", "bool"),
        PresetOption(
            "crps_integration",
            "quad",
            "curvas form: quad (the official scipy quad call) or exact (the exact integral).",
            choices=("quad", "exact"),
        ),
        PresetOption(
            "crps_form",
            "curvas",
            "curvas (official), gaussian or ensemble.",
            choices=("curvas", "gaussian", "ensemble"),
        ),
        PresetOption(
            "volume_count",
            "label",
            "label (the voxels of the label) or unique-index (the official np.unique "
            "indexing, equal when every smaller label occurs in the rater's map).",
            choices=("label", "unique-index"),
        ),
        PresetOption("n_bins", N_BINS, "ECE bins.", "int"),
    ),
    run=_run,
)
