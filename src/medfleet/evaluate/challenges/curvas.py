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
``[1 - sum p, p_1, ..., p_K]``, 50 equal-width bins, top-1 confidence, exactly as
torchmetrics' ``MulticlassCalibrationError`` computes it (:func:`curvas_ece`): the
background and, if any of these values lies outside [0, 1], a softmax over every voxel are
computed in the probabilities' own precision; confidences are cast to float32; bins are
torch's float32 ``linspace`` edges, right-open (``torch.bucketize(..., right=True)``), with
a confidence of exactly 1 in an extra bin of its own; and each bin's count, confidence sum
and accuracy sum accumulate in float32 in voxel order (``scatter_add_``), so a bin count
stops growing at 2^24 voxels and the confidence sums carry float32 rounding.

``crop=true`` first crops every array in-plane (the last two axes) to the bounding box
of ``CT > 0`` (MONAI ``CropForeground``), which changes ECE and confidence.

Axis order: the official code reads every file with SimpleITK, whose arrays are
``(slices, rows, columns)``; medfleet reads NIfTI through nibabel in the reverse order.
``axes=sitk`` (default) reverses the axes of every NIfTI array read, so the row-wise Dice,
the crop and the voxel order of the ECE sums are the official ones; ``.npy``/``.npz``
arrays are taken as stored (the official ``probabilities.npz`` is in SimpleITK order).
``axes=nibabel`` keeps nibabel's order. A probabilities array whose shape matches the
masks only after permuting its axes is refused.

Layouts: ``--gt`` holds either one sub-folder per rater (one label map per case in each)
or the challenge's case folders (``<case>/annotation_1.nii.gz``, ``annotation_2``, ...,
and optionally the CT as ``image.nii.gz``); ``--pred`` holds either one probabilities file
per case or case folders (``<case>/probabilities.npz`` and the binarized
``prediction.nii.gz``).

A case that cannot be scored (an unreadable file, a volume the official code would index
out of range, a refused array) becomes an error row of ``cases.csv``; the other cases are
scored. Where medfleet gives a number the official code could not compute, a warning
names the case.

The consensus regions, consensus Dice and confidence and CRPS forms are those of
:mod:`medfleet.evaluate.analysis.multirater`, called with the CURVAS settings; this module adds the
row-wise Dice, the official volume indexing, the torchmetrics ECE and the crop.

Source: github.com/SYCAI-Technologies/curvas-challenge, ``CURVAS_2024/evaluation_metrics/
metrics.py``. See docs/challenges.md for the kept quirks and deviations.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import InputFileError, MedfleetError, OptionError
from medfleet.evaluate.analysis.calibration import (
    DEFAULT_CHUNK,
    CalibrationResult,
    ReliabilityData,
)
from medfleet.evaluate.analysis.multirater import (
    consensus_confidence,
    consensus_dice,
    consensus_regions,
    crps_curvas,
    crps_ensemble,
    crps_gaussian,
)
from medfleet.evaluate.challenges._inputs import read_label_map
from medfleet.evaluate.challenges.base import (
    CASE_ERROR,
    Preset,
    PresetOption,
    PresetOutcome,
    PresetRun,
    score_cases,
)
from medfleet.evaluate.runner.cases import (
    MASK_SUFFIXES,
    CaseMatch,
    CaseMismatchError,
    case_id_from_path,
    list_case_files,
    match_cases,
)
from medfleet.evaluate.runner.config import match_info, meta_spacing

__all__ = [
    "PRESET",
    "body_crop_box",
    "consensus_dice_rowwise",
    "curvas_crps",
    "curvas_ece",
    "pooled_reliability",
    "rater_volumes",
    "to_axes",
    "torchmetrics_bin_edges",
    "unique_index_counts",
]

N_BINS = 50
#: ``axes`` option values: SimpleITK's ``(slices, rows, columns)`` or nibabel's order.
AXES = ("sitk", "nibabel")
#: A float32 sum of ones stops growing here: 2^24 + 1 rounds back to 2^24.
F32_COUNT_LIMIT = 1 << 24
#: Per-case failures recorded as error rows (whole-run problems are re-raised first).
_ANNOTATION = re.compile(r"annotation_?(\d+)$", re.IGNORECASE)
_NIFTI = (".nii", ".nii.gz")


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


def unique_index_counts(rater: np.ndarray) -> np.ndarray:
    """``np.unique(rater, return_counts=True)[1]``: the count of each distinct value, sorted.

    Computed with ``bincount`` for non-negative integer maps (fast on CT volumes).

    Example:
        >>> unique_index_counts(np.array([[0, 3, 3], [0, 0, 1]])).tolist()
        [3, 1, 2]
    """
    r = np.asarray(rater)
    if r.size and np.issubdtype(r.dtype, np.integer) and int(r.min()) >= 0:
        counts = np.bincount(r.reshape(-1))
        return counts[counts > 0]
    return np.unique(r, return_counts=True)[1]


def rater_volumes(
    raters: np.ndarray, label: int, voxel_volume: float = 1.0, count: str = "label"
) -> list[float]:
    """Each rater's volume of one label (voxel count x ``voxel_volume``).

    ``count="unique-index"`` reproduces the official ``np.unique(gt,
    return_counts=True)[1][label]``: the count of the ``label``-th distinct value, which is
    the label's own count only when every smaller label occurs in that rater's map.

    Raises:
        IndexError: ``unique-index`` and a rater map with at most ``label`` distinct values
            (the official code fails there too).

    Example:
        >>> r = np.array([[0, 1, 1, 3], [0, 3, 3, 3]])
        >>> rater_volumes(r, 3), rater_volumes(r, 1, count="unique-index")
        ([1.0, 3.0], [2.0, 3.0])
    """
    if count not in ("label", "unique-index"):
        raise ValueError(f"count must be 'label' or 'unique-index', got {count!r}")
    out = []
    for rater in np.asarray(raters):
        if count == "label":
            out.append(float(np.count_nonzero(rater == label)) * float(voxel_volume))
            continue
        counts = unique_index_counts(rater)
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


# ---------------------------------------------------------------- ECE (torchmetrics)


def torchmetrics_bin_edges(n_bins: int) -> np.ndarray:
    """The float32 bin edges of torchmetrics' ECE: ``torch.linspace(0, 1, n_bins + 1)``.

    torch computes edge ``i`` as ``i * step`` below the middle and ``1 - (n_bins - i) *
    step`` from the middle on, with ``step = float32(1 / n_bins)``, each in one rounding (a
    fused multiply-add on AVX2/AVX-512 CPUs). Several edges differ by one float32 unit from
    ``float32(i / n_bins)``.

    Example:
        >>> e = torchmetrics_bin_edges(50)
        >>> e.dtype, float(e[0]), float(e[-1]), bool(e[5] != np.float32(5 / 50))
        (dtype('float32'), 0.0, 1.0, True)
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    n = int(n_bins)
    step = float(np.float32(1.0) / np.float32(n))
    i = np.arange(n + 1, dtype=np.float64)
    # exact in float64 (a 24-bit step times a small integer), then one rounding to float32
    exact = np.where(i < (n + 1) // 2, step * i, 1.0 - step * (n - i))
    return exact.astype(np.float32)


def _bucketize(conf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``torch.bucketize(conf, edges, right=True) - 1`` for float32 ``conf`` in [0, 1].

    A floor of ``conf * n`` is at most one bin off (the edges lie within a float32 unit of
    ``i / n``); one comparison with the actual edges each way makes it exact.
    """
    n = edges.size - 1
    idx = np.floor(conf.astype(np.float64) * n).astype(np.intp)
    np.clip(idx, 0, n, out=idx)
    idx -= edges[idx] > conf
    up = (idx < n) & (edges[np.minimum(idx + 1, n)] <= conf)
    idx += up
    return idx


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 in ``x``'s precision (exp within a float32 unit of torch's)."""
    d = x - x.max(axis=0)
    e = np.exp(d.astype(np.float64)).astype(x.dtype)
    return e * (x.dtype.type(1) / e.sum(axis=0))


@dataclass
class _EceState:
    """float32 per-bin state of torchmetrics' binning, plus exact counts for the report."""

    n_bins: int
    n_raters: int
    counts: np.ndarray = field(init=False)
    conf_sum: np.ndarray = field(init=False)
    correct: np.ndarray = field(init=False)
    brier: np.ndarray = field(init=False)
    n: int = 0

    def __post_init__(self) -> None:
        width = self.n_bins + 1
        self.counts = np.zeros(width, np.int64)
        self.conf_sum = np.zeros(width, np.float32)
        self.correct = np.zeros((self.n_raters, width), np.int64)
        self.brier = np.zeros(self.n_raters, np.float64)

    def result(self, r: int, edges: np.ndarray) -> CalibrationResult:
        # scatter_add_ of ones in float32: exact up to 2^24, then 2^24 + 1 rounds to 2^24
        count = np.minimum(self.counts, F32_COUNT_LIMIT).astype(np.float32)
        acc = np.minimum(self.correct[r], F32_COUNT_LIMIT).astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            conf_bin = np.nan_to_num(self.conf_sum / count)
            acc_bin = np.nan_to_num(acc / count)
            prop = count / count.sum(dtype=np.float32)
        gaps = np.abs(acc_bin - conf_bin)
        ece = float(np.sum(gaps * prop, dtype=np.float32)) if self.n else math.nan
        filled = self.counts > 0
        conf = np.where(filled, conf_bin.astype(np.float64), np.nan)
        accuracy = np.where(filled, acc_bin.astype(np.float64), np.nan)
        mce = float(gaps[filled].max()) if filled.any() else math.nan
        rel = ReliabilityData(
            np.append(edges.astype(np.float64), 1.0), conf, accuracy, self.counts.copy()
        )
        brier = float(self.brier[r] / self.n) if self.n else math.nan
        return CalibrationResult(
            ece, mce, brier, self.n, rel, [], 0.0, "equal-width", "top-label", self.n_bins
        )


def curvas_ece(
    probs: np.ndarray, raters: np.ndarray, n_bins: int = N_BINS, *, chunk_size: int = DEFAULT_CHUNK
) -> list[CalibrationResult]:
    """ECE of ``K`` organ probabilities against each rater, as the CURVAS scorer computes it.

    The official ``expected_calibration_error`` builds ``[1 - sum p, p_1, ..., p_K]`` per
    voxel (in the probabilities' precision) and calls torchmetrics'
    ``MulticlassCalibrationError(num_classes=K + 1, n_bins=n_bins)``, which

    1. applies a softmax to every voxel when any of those values lies outside [0, 1];
    2. takes the top-1 confidence (first class on ties) and casts it to float32;
    3. bins it with ``torch.bucketize(conf, linspace(0, 1, n_bins + 1), right=True) - 1``
       (float32 edges, :func:`torchmetrics_bin_edges`; a confidence of exactly 1 gets an
       extra bin);
    4. accumulates per bin the count, the confidence sum and the accuracy sum with float32
       ``scatter_add_`` in voxel order (C order of the arrays), so a count stops at 2^24;
    5. returns ``sum |acc_sum / count - conf_sum / count| * count / sum(count)`` in float32.

    This function repeats those steps with NumPy: float32 ``np.add.at`` adds in the same
    order as ``scatter_add_`` on the CPU, so the sums are bit-identical; the softmax may
    differ from torch's by one float32 unit, which moves the ECE by float32 rounding only.
    Probabilities in float32 are computed in float32, any other dtype in float64.

    Args:
        probs: ``(K, *grid)`` organ probabilities.
        raters: ``(R, *grid)`` label maps (values ``0..K``).
        n_bins: Number of bins.
        chunk_size: Voxels per chunk (does not change the result).

    Returns:
        One :class:`~medfleet.evaluate.analysis.calibration.CalibrationResult` per rater (the ECE in
        float32 precision; reliability with the exact per-bin counts).

    Raises:
        ValueError: Shapes differ, or a rater label lies outside ``0..K`` (torchmetrics
            rejects such a target too).

    Example:
        >>> p = np.array([[0.8, 0.3]]); r = np.array([[1, 0]])
        >>> round(curvas_ece(p, r, 10)[0].ece, 6)  # confidences 0.8 and 0.7, both right
        0.25
    """
    p_all = np.asarray(probs)
    masks = np.asarray(raters)
    if p_all.ndim < 1 or masks.ndim != p_all.ndim or masks.shape[1:] != p_all.shape[1:]:
        raise ValueError(
            f"probabilities {p_all.shape} and rater maps {masks.shape} need the shapes "
            "(K, *grid) and (R, *grid)"
        )
    work = np.float32 if p_all.dtype == np.float32 else np.float64
    n_organs, n_raters = p_all.shape[0], masks.shape[0]
    flat = p_all.reshape(n_organs, -1)
    flat_masks = masks.reshape(n_raters, -1)
    if flat_masks.size:
        lo, hi = int(flat_masks.min()), int(flat_masks.max())
        if lo < 0 or hi > n_organs:
            raise ValueError(
                f"a rater map holds label {lo if lo < 0 else hi}, outside 0..{n_organs} (the "
                f"{n_organs + 1} classes of the probabilities; torchmetrics refuses it too)"
            )
    n_vox = flat.shape[1]
    step = max(1, int(chunk_size))

    def with_background(s: slice) -> np.ndarray:
        p = np.asarray(flat[:, s], dtype=work)
        return np.concatenate([(work(1) - p.sum(axis=0))[None], p])

    softmax = any(
        bool(np.any((f < 0) | (f > 1)))
        for f in (with_background(slice(a, a + step)) for a in range(0, n_vox, step))
    )
    edges = torchmetrics_bin_edges(n_bins)
    state = _EceState(int(n_bins), n_raters)
    width = int(n_bins) + 1
    for a in range(0, n_vox, step):
        s = slice(a, min(n_vox, a + step))
        full = with_background(s)
        if softmax:
            full = _softmax(full)
        pred = full.argmax(axis=0)
        conf = full.max(axis=0).astype(np.float32)
        idx = _bucketize(conf, edges)
        state.counts += np.bincount(idx, minlength=width)
        np.add.at(state.conf_sum, idx, conf)
        f64 = full.astype(np.float64)
        squares = np.einsum("kn,kn->n", f64, f64)
        cols = np.arange(full.shape[1])
        for r in range(n_raters):
            y = flat_masks[r, s]
            state.correct[r] += np.bincount(idx[pred == y], minlength=width)
            state.brier[r] += float(np.sum(squares - 2.0 * f64[y, cols] + 1.0))
        state.n += full.shape[1]
    if n_organs == 1:
        state.brier /= 2.0
    return [state.result(r, edges) for r in range(n_raters)]


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


def _is_nifti(path: Path) -> bool:
    return Path(path).name.lower().endswith(_NIFTI)


def to_axes(array: np.ndarray, path: Path, axes: str, channel_last: bool = False) -> np.ndarray:
    """An array read from ``path`` in the ``axes`` order (``"sitk"`` or ``"nibabel"``).

    A NIfTI file read by nibabel gives ``(i, j, k)``; SimpleITK's ``GetArrayFromImage``
    gives ``(k, j, i)``. Under ``"sitk"`` the spatial axes of a NIfTI array are reversed (a
    trailing channel axis, ``channel_last``, stays last); other files are kept as stored.

    Example:
        >>> a = np.zeros((4, 3, 2))
        >>> to_axes(a, Path("x.nii.gz"), "sitk").shape, to_axes(a, Path("x.npy"), "sitk").shape
        ((2, 3, 4), (4, 3, 2))
    """
    if axes not in AXES:
        raise ValueError(f"axes must be one of {', '.join(AXES)}, got {axes!r}")
    if axes == "nibabel" or not _is_nifti(path):
        return array
    n = array.ndim - 1 if channel_last else array.ndim
    order = [*range(n - 1, -1, -1), *range(n, array.ndim)]
    return np.ascontiguousarray(np.transpose(array, order))


def _read_map(
    path: Path, case_id: str, role: str, override: Sequence[float] | None, axes: str
) -> tuple[np.ndarray, tuple[float, ...]]:
    arr, spacing = read_label_map(path, case_id, role, override)
    if axes == "sitk" and _is_nifti(path):
        return to_axes(arr, path, axes), tuple(reversed(spacing))
    return arr, spacing


def _load_probabilities(path: Path) -> np.ndarray:
    """The array of a probabilities file (an ``.npz`` needs one array or ``probabilities``)."""
    from medfleet.data.io import read_image

    if path.name.lower().endswith(".npz"):
        from medfleet.data.io.arrays import read_npz

        try:
            with zipfile.ZipFile(path) as archive:
                names = sorted(n[:-4] if n.endswith(".npy") else n for n in archive.namelist())
        except (OSError, zipfile.BadZipFile) as exc:
            raise MedfleetError(f"cannot read {path}: not an .npz archive ({exc})") from None
        if "probabilities" in names:
            return np.asarray(read_npz(path, {"key": "probabilities"}).array)
        if len(names) != 1:
            raise MedfleetError(
                f"{path} holds arrays {names} and none is named 'probabilities' (fix: store "
                "one (organs, slices, rows, columns) array, named probabilities)"
            )
        return np.asarray(read_npz(path, {}).array)
    image = read_image(path)
    return np.asarray(image.array)


def _read_probabilities(
    path: Path, case_id: str, shape: tuple[int, ...], axes: str, background: bool
) -> np.ndarray:
    arr = _load_probabilities(path)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64)
    if _is_nifti(path):
        arr = to_axes(arr, path, axes, channel_last=arr.ndim == len(shape) + 1)
    n = len(shape)
    if arr.ndim == n + 1 and arr.shape[1:] == shape:
        probs = arr
    elif arr.ndim == n + 1 and arr.shape[:-1] == shape:
        probs = np.moveaxis(arr, -1, 0)
    elif arr.shape == shape:
        probs = arr[None]
    else:
        grids = [arr.shape] if arr.ndim == n else [arr.shape[1:], arr.shape[:-1]]
        if arr.ndim in (n, n + 1) and any(sorted(g) == sorted(shape) for g in grids):
            order, other = (
                ("slices, rows, columns", "nibabel") if axes == "sitk" else ("i, j, k", "sitk")
            )
            raise MedfleetError(
                f"case {case_id}: {path.name} shape {arr.shape} matches the masks {shape} "
                f"({axes} order) only with axes permuted (fix: save it as (organs, {order}), "
                f"or axes={other})"
            )
        raise MedfleetError(
            f"case {case_id}: the probabilities {path.name} have shape {arr.shape}, but the "
            f"rater masks {shape} (fix: save a (organs, *mask shape) array)"
        )
    if background:
        if probs.shape[0] < 2:
            raise MedfleetError(
                f"case {case_id}: {path.name} has {probs.shape[0]} channel, so there is no "
                "background channel to drop (fix: prob_background=false)"
            )
        probs = probs[1:]
    if not np.isfinite(probs).all():
        raise MedfleetError(f"case {case_id}: the probabilities {path.name} hold NaN or inf")
    return probs


def _rater_folders(gt: Path, names: str) -> list[Path]:
    root = Path(gt)
    if not root.is_dir():
        raise InputFileError(f"--gt {root} is not a folder of rater folders")
    if names:
        folders = [root / n.strip() for n in names.split(",") if n.strip()]
        absent = [str(f) for f in folders if not f.is_dir()]
        if absent:
            raise InputFileError(f"rater folder(s) {absent} do not exist (option raters)")
        return folders
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    raters = [p for p in subs if "rater" in p.name.lower()] or subs
    if not raters:
        raise InputFileError(
            f"--gt {root} has no rater sub-folders (fix: one folder of masks per rater, "
            "one case folder of annotation_1.nii.gz, annotation_2.nii.gz, ... per case, or "
            "--preset-option raters=a,b,c)"
        )
    return raters


def _annotation_number(name: str) -> int:
    match = _ANNOTATION.fullmatch(name)
    return int(match[1]) if match else -1


def _annotations(folder: Path) -> dict[str, Path]:
    """``annotation_<n>`` -> file for the rater maps directly inside a case folder."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.lower().endswith(MASK_SUFFIXES):
            stem = case_id_from_path(path)
            if _ANNOTATION.fullmatch(stem):
                found[stem] = path
    return {name: found[name] for name in sorted(found, key=_annotation_number)}


def _sub_folders(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def _named_file(folder: Path, stem: str) -> Path | None:
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        if path.is_file() and name.endswith(MASK_SUFFIXES) and case_id_from_path(name) == stem:
            return path
    return None


@dataclass
class _Inputs:
    """Where each matched case's files are, and how the folders were read."""

    rater_names: list[str]
    rater_files: dict[str, list[Path]]
    prob_files: dict[str, Path]
    label_files: dict[str, Path] | None
    ct_files: dict[str, Path] | None
    match: CaseMatch
    layout: dict[str, str]
    warnings: list[str]


def _gt_inputs(
    root: Path, names: str
) -> tuple[list[str], dict[str, list[Path]], dict[str, Path], str]:
    """Rater names, case -> rater files, case -> CT (case folders only) and the layout."""
    if not Path(root).is_dir():
        raise InputFileError(f"--gt {root} is not a folder (fix: rater folders or case folders)")
    case_folders = {f.name: f for f in _sub_folders(root) if _annotations(f)}
    if not case_folders:
        raters = _rater_folders(root, names)
        files = [list_case_files(r, f"rater folder {r.name}") for r in raters]
        common = set(files[0]).intersection(*files[1:])
        uneven = sorted(set().union(*files) - common)
        if uneven:
            raise InputFileError(
                f"cases {uneven[:10]} lack a mask in some rater folders (fix: every rater "
                "folder needs every case)"
            )
        per_case = {c: [f[c] for f in files] for c in sorted(common)}
        return [r.name for r in raters], per_case, {}, "rater folders"
    found = {c: _annotations(f) for c, f in case_folders.items()}
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    all_names = sorted(set().union(*found.values()), key=_annotation_number)
    rater_names = wanted or all_names
    lacking = sorted(c for c, a in found.items() if any(n not in a for n in rater_names))
    if lacking:
        raise InputFileError(
            f"case folders {lacking[:10]} of --gt lack some of {', '.join(rater_names)} (fix: "
            "every case folder needs every rater's annotation, or --preset-option raters=...)"
        )
    per_case = {c: [a[n] for n in rater_names] for c, a in sorted(found.items())}
    cts = {c: p for c, f in case_folders.items() if (p := _named_file(f, "image")) is not None}
    return rater_names, per_case, cts, "case folders (annotation_<n>)"


def _pred_inputs(root: Path) -> tuple[dict[str, Path], dict[str, Path], str]:
    """Case -> probabilities file, case -> binarized prediction (case folders) and layout."""
    if not Path(root).is_dir():
        raise InputFileError(f"--pred {root} is not a folder of probabilities files")
    probs: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for folder in _sub_folders(root):
        p = _named_file(folder, "probabilities")
        if p is not None:
            probs[folder.name] = p
            label = _named_file(folder, "prediction")
            if label is not None:
                labels[folder.name] = label
    if probs:
        return probs, labels, "case folders (probabilities, prediction)"
    return list_case_files(root, "--pred"), {}, "one probabilities file per case"


def _plan_inputs(run: PresetRun) -> _Inputs:
    opts, config = run.options, run.config
    warnings: list[str] = []
    rater_names, rater_files, gt_cts, gt_layout = _gt_inputs(Path(config.gt), opts["raters"])
    prob_files, pred_labels, pred_layout = _pred_inputs(Path(config.pred))
    if gt_layout.startswith("case folders"):
        ignored = [f.name for f in _sub_folders(Path(config.gt)) if f.name not in rater_files]
        if ignored:
            warnings.append(
                f"--gt sub-folders {ignored[:10]} hold no annotation_<n> file and were ignored"
            )
    match = match_cases(prob_files, rater_files)
    if match.missing or match.extra:
        raise CaseMismatchError(match.missing, match.extra, pred=config.pred, gt=config.gt)
    label_files: dict[str, Path] | None = None
    if opts["pred_labels"]:
        label_files = list_case_files(opts["pred_labels"], "pred_labels")
    elif pred_labels:
        label_files = pred_labels
        absent = [c for c in match.matched if c not in pred_labels]
        if absent:
            warnings.append(
                f"cases {absent[:10]} have no prediction.nii.gz: their binarized prediction "
                "is the arg-max of [1 - sum p, p_1, ...]"
            )
    ct_files: dict[str, Path] | None = None
    if opts["ct"]:
        ct_files = list_case_files(opts["ct"], "ct")
    elif gt_cts:
        ct_files = gt_cts
    if opts["crop"] and ct_files is None:
        raise OptionError(
            "crop=true needs the CT: --preset-option ct=FOLDER of CT images, or image.nii.gz "
            "in each case folder of --gt"
        )
    layout = {"gt": gt_layout, "pred": pred_layout}
    return _Inputs(
        rater_names, rater_files, prob_files, label_files, ct_files, match, layout, warnings
    )


# ---------------------------------------------------------------- scoring


@dataclass
class _Case:
    """One scored case: its row, its calibration results and notes for the warnings."""

    row: dict[str, Any]
    calibrations: list[CalibrationResult]
    notes: list[str]
    n_organs: int
    ndim: int
    extra_channel: bool


def _official_volume_note(stack: np.ndarray, k: int, case_id: str) -> str | None:
    """A warning when the official ``np.unique`` indexing differs from the label's count."""
    for r, rater in enumerate(stack, start=1):
        counts = unique_index_counts(rater)
        if k >= len(counts):
            return (
                f"case {case_id}: organ {k}: the official volume (np.unique index {k}) does "
                f"not exist for rater {r}, whose map holds {len(counts)} distinct values; "
                "medfleet counts the organ's voxels (volume_count=label)"
            )
        if int(counts[k]) != int(np.count_nonzero(rater == k)):
            return (
                f"case {case_id}: organ {k}: the official volume (np.unique index {k}) is "
                f"another label's count for rater {r}; medfleet counts the organ's voxels "
                "(volume_count=label)"
            )
    return None


def _score_case(run: PresetRun, inputs: _Inputs, case_id: str, n_organs: int | None) -> _Case:
    opts, config = run.options, run.config
    axes = opts["axes"]
    override = meta_spacing(run.meta_rows, case_id)
    maps = []
    spacing: tuple[float, ...] = ()
    for path in inputs.rater_files[case_id]:
        arr, spacing = _read_map(path, case_id, "rater", override, axes)
        maps.append(arr)
    shapes = {m.shape for m in maps}
    if len(shapes) > 1:
        raise CaseMismatchError(
            mismatched=[(case_id, f"rater masks have shapes {shapes}")],
            pred=config.pred,
            gt=config.gt,
        )
    stack = np.stack(maps)
    grid = stack.shape[1:]
    probs = _read_probabilities(
        inputs.prob_files[case_id], case_id, grid, axes, opts["prob_background"]
    )
    if n_organs is not None and probs.shape[0] != n_organs:
        raise MedfleetError(
            f"case {case_id}: {probs.shape[0]} organ channels, other cases {n_organs}"
        )
    notes: list[str] = []
    extra_channel = probs.shape[0] > (int(stack.max()) if stack.size else 0)
    if inputs.label_files is not None and case_id in inputs.label_files:
        pred_labels, _ = _read_map(
            inputs.label_files[case_id], case_id, "binarized prediction", None, axes
        )
    elif inputs.label_files is not None and opts["pred_labels"]:
        raise InputFileError(f"case {case_id}: no binarized prediction in pred_labels")
    else:
        background = probs.dtype.type(1) - probs.sum(axis=0, keepdims=True)
        pred_labels = np.argmax(np.concatenate([background, probs]), axis=0)
    if pred_labels.shape != grid:
        raise CaseMismatchError(
            mismatched=[(case_id, f"binarized prediction {pred_labels.shape} vs masks {grid}")],
            pred=config.pred,
            gt=config.gt,
        )
    if opts["crop"]:
        assert inputs.ct_files is not None
        if case_id not in inputs.ct_files:
            raise InputFileError(f"case {case_id}: no CT image (ct folder or image.nii.gz)")
        from medfleet.data.io import read_image

        ct_path = inputs.ct_files[case_id]
        ct = to_axes(np.asarray(read_image(ct_path).array), ct_path, axes)
        if ct.shape != grid:
            raise CaseMismatchError(
                mismatched=[(case_id, f"CT {ct.shape} vs masks {grid}")],
                pred=config.pred,
                gt=config.gt,
            )
        box = (Ellipsis, *body_crop_box(ct))
        stack, probs, pred_labels = stack[box], probs[box], pred_labels[box]
    voxel_volume = float(np.prod(spacing)) if run.units == "mm" else 1.0
    row: dict[str, Any] = {"case_id": case_id, "status": "ok"}
    k_organs = probs.shape[0]
    for k in range(1, k_organs + 1):
        dice_fn = consensus_dice_rowwise if opts["literal"] else consensus_dice
        row[f"dice_{k}"] = dice_fn(pred_labels, stack, k)
        row[f"confidence_{k}"] = consensus_confidence(probs[k - 1], stack, k)
        try:
            volumes = rater_volumes(stack, k, voxel_volume, opts["volume_count"])
        except IndexError as exc:
            raise MedfleetError(
                f"case {case_id}: {exc} (the official code fails here too; "
                "--preset-option volume_count=label counts the organ's voxels)"
            ) from None
        if opts["volume_count"] == "label":
            note = _official_volume_note(stack, k, case_id)
            if note is not None:
                notes.append(note)
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
    row["ece"] = float(np.mean([result.ece for result in results]))
    for name in ("dice", "confidence", "crps"):
        values = [row[f"{name}_{k}"] for k in range(1, k_organs + 1)]
        finite = [v for v in values if not math.isnan(v)]
        row[name] = float(np.mean(finite)) if finite else math.nan
    return _Case(row, results, notes, k_organs, stack.ndim - 1, extra_channel)


def _run(run: PresetRun) -> PresetOutcome:
    opts = run.options
    config = run.config
    inputs = _plan_inputs(run)
    warnings = list(inputs.warnings)
    all_rows: list[dict[str, Any]] = []
    calibrations: list[CalibrationResult] = []
    organs: list[int] = []  # the organ count of the first scored case, which all must share
    flat_cases: list[str] = []
    extra_channel_cases: list[str] = []

    def score(case_id: str) -> _Case:
        return _score_case(run, inputs, case_id, organs[0] if organs else None)

    for case_id, case in score_cases(run, inputs.match.matched, score, all_rows):
        organs[:] = [case.n_organs]
        all_rows.append(case.row)
        calibrations.extend(case.calibrations)
        warnings.extend(case.notes)
        if case.ndim != 3:
            flat_cases.append(case_id)
        if case.extra_channel:
            extra_channel_cases.append(case_id)
    rows = [r for r in all_rows if r["status"] != CASE_ERROR]
    n_organs = organs[0]  # score_cases stops when no case was scored
    n_raters = len(inputs.rater_names)
    if n_raters != 3 or n_organs != 3:
        warnings.append(
            f"the official code scores exactly 3 raters and 3 organs (4 classes); this run has "
            f"{n_raters} raters and {n_organs} organs, so every value here is medfleet's "
            "generalisation of the official formulas"
        )
    if extra_channel_cases:
        warnings.append(
            f"cases {extra_channel_cases[:10]} have more probability channels ({n_organs}) "
            "than the highest rater label: if channel 0 is the background (as in nnU-Net's "
            "probabilities.npz), set --preset-option prob_background=true"
        )
    if flat_cases:
        warnings.append(
            f"cases {flat_cases[:10]} are not 3-D volumes: the official ECE call (which "
            "permutes 4-D arrays) cannot score them; medfleet scores every voxel alike"
        )
    components: dict[str, Any] = {"n_raters": n_raters, "n_organs": n_organs}
    for name in ("dice", "confidence", "crps"):
        for k in range(1, n_organs + 1):
            values = [r[f"{name}_{k}"] for r in rows if not math.isnan(r[f"{name}_{k}"])]
            components[f"{name}_{k}"] = float(np.mean(values)) if values else math.nan
            components[f"{name}_{k}_n_nan"] = len(rows) - len(values)
        per_organ = [components[f"{name}_{k}"] for k in range(1, n_organs + 1)]
        finite = [v for v in per_organ if not math.isnan(v)]
        components[name] = float(np.mean(finite)) if finite else math.nan
    for r in range(n_raters):
        components[f"ece_rater{r + 1}"] = float(np.mean([row[f"ece_rater{r + 1}"] for row in rows]))
    components["ece"] = float(np.mean([row["ece"] for row in rows]))
    metrics = ["dice", "confidence", "crps", "ece"]
    for k in range(1, n_organs + 1):
        metrics += [f"dice_{k}", f"confidence_{k}", f"crps_{k}"]
    if inputs.label_files is None:
        binarized = "arg-max of [1 - sum p, p_1, ...]"
    elif opts["pred_labels"]:
        binarized = "pred_labels folder"
    else:
        binarized = "prediction.nii.gz of each case folder"
    return PresetOutcome(
        rows=all_rows,
        metrics=metrics,
        score=None,
        score_name="no single official score: consensus Dice, confidence, ECE and CRPS are "
        "ranked separately",
        components=components,
        cases=match_info(inputs.match, config),
        conventions={
            "raters": list(inputs.rater_names),
            "layout": inputs.layout,
            "axes": "SimpleITK (slices, rows, columns): NIfTI arrays reversed"
            if opts["axes"] == "sitk"
            else "nibabel (i, j, k), as read",
            "dice": "row-wise (official call)" if opts["literal"] else "3-D consensus Dice",
            "ece": f"top-label, {opts['n_bins']} equal-width bins, torchmetrics binning and "
            "float32 accumulation",
            "crps_form": opts["crps_form"],
            "crps_integration": opts["crps_integration"],
            "volume_count": opts["volume_count"],
            "voxel_volume": "mm^3" if run.units == "mm" else "1 (voxel count)",
            "crop": bool(opts["crop"]),
            "binarized_prediction": binarized,
            "probabilities_background_channel": bool(opts["prob_background"]),
        },
        warnings=warnings,
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
            "Comma-separated rater sub-folders of --gt (default: those named *rater*, else "
            "all), or annotation names of the case folders (default: every annotation_<n>).",
        ),
        PresetOption(
            "pred_labels",
            None,
            "Folder of binarized predictions (default: prediction.nii.gz of each case folder, "
            "else the arg-max).",
            "path",
        ),
        PresetOption(
            "ct",
            None,
            "Folder of CT images (for crop; default: image.nii.gz of each case).",
            "path",
        ),
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
        PresetOption(
            "axes",
            "sitk",
            "Array axis order: sitk (default; SimpleITK's (slices, rows, columns), as the "
            "official code reads the files: NIfTI arrays are reversed) or nibabel (as read).",
            choices=AXES,
        ),
        PresetOption(
            "prob_background",
            False,
            "Channel 0 of the probabilities is the background (nnU-Net's probabilities.npz) "
            "and is dropped.",
            "bool",
        ),
    ),
    run=_run,
)
