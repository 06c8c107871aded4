"""Evaluation against several raters: consensus, calibration, volume CRPS, references.

Consensus regions, consensus Dice and confidence, per-rater calibration, volume CRPS, and
majority / mean-soft reference masks.

``rater_masks`` is a sequence of label maps of one case (one per rater, same shape) or an
array stacked on a first rater axis. For one ``label``:

* **consensus foreground**: voxels every rater labels ``label``;
* **consensus background**: voxels no rater labels ``label``;
* **dissensus**: the rest (some raters do, some do not).

Conventions (those of the CURVAS challenge scorer unless noted):

* :func:`consensus_dice` scores the prediction of ``label`` against the consensus
  foreground, with the dissensus voxels removed from both. When the consensus foreground is
  empty it returns ``empty`` (default NaN, as MONAI's ``DiceMetric(ignore_empty=True)``
  per case; the official CURVAS code then averages with MONAI's reduction, which turns a
  case whose only value is NaN into 0.0: pass ``empty=0.0`` to reproduce that number).
* :func:`consensus_confidence` = 1/2 [mean probability over the consensus foreground +
  (1 - mean probability over the consensus background)]; NaN when either region is empty
  (the official ``np.nanmean`` of an empty region is NaN too).
* :func:`per_rater_ece` computes the ECE of the probabilities against each rater's label
  map, streaming over voxel chunks (see :mod:`medfleet.evaluate.analysis.calibration`).
* :func:`volume_crps`: the predicted volume is the sum of the probabilities of ``label``
  times the voxel volume; each rater's volume is its voxel count times the voxel volume;
  the raters' volumes define a distribution and the CRPS scores the predicted volume
  against it (lower is better, in volume units). Forms: ``"curvas"``, ``"gaussian"``,
  ``"ensemble"`` (see :func:`volume_crps`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy.integrate import IntegrationWarning, quad
from scipy.special import ndtr, ndtri

from medfleet.evaluate.analysis.calibration import (
    DEFAULT_CHUNK,
    PROB_TOLERANCE,
    Binning,
    CalibrationResult,
    EdgeRule,
    Mode,
    StreamingCalibration,
)
from medfleet.evaluate.metrics.conventions import MetricInputError, normalize_spacing

__all__ = [
    "ConsensusRegions",
    "consensus_confidence",
    "consensus_dice",
    "consensus_regions",
    "crps_curvas",
    "crps_ensemble",
    "crps_gaussian",
    "majority_vote",
    "mean_soft",
    "per_rater_calibration",
    "per_rater_ece",
    "rater_volumes",
    "volume_crps",
]

CrpsForm = Literal["curvas", "gaussian", "ensemble"]


class ConsensusRegions(NamedTuple):
    """Boolean masks of one label's consensus regions.

    Attributes:
        foreground: Every rater labels the voxel.
        background: No rater labels the voxel.
        dissensus: Some raters do and some do not.
    """

    foreground: np.ndarray
    background: np.ndarray
    dissensus: np.ndarray


def _raters(rater_masks: Any) -> list[np.ndarray]:
    if isinstance(rater_masks, np.ndarray):
        if rater_masks.ndim < 2:
            raise MetricInputError(
                f"rater_masks stacked as an array needs a rater axis first, got shape "
                f"{rater_masks.shape}"
            )
        masks = list(rater_masks)
    else:
        masks = [np.asarray(m) for m in rater_masks]
    if not masks:
        raise MetricInputError("rater_masks is empty: give at least one rater's label map")
    shape = masks[0].shape
    for i, m in enumerate(masks):
        if m.shape != shape:
            raise MetricInputError(
                f"rater {i} has shape {m.shape}, rater 0 has {shape}: every rater must label "
                "the same grid (fix: resample the masks to the image grid)"
            )
    return masks


def _check_shape(array: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if array.shape != shape:
        raise MetricInputError(
            f"{name} has shape {array.shape} but the rater masks have {shape} "
            "(fix: give the map of this one label on the raters' grid)"
        )


def consensus_regions(rater_masks: Any, label: int) -> ConsensusRegions:
    """Consensus foreground, consensus background and dissensus of one label.

    Args:
        rater_masks: One label map per rater (sequence, or array with a first rater axis).
        label: The label.

    Returns:
        :class:`ConsensusRegions` of boolean arrays.

    Example:
        >>> r1 = np.array([1, 1, 0, 0]); r2 = np.array([1, 0, 0, 2])
        >>> regions = consensus_regions([r1, r2], 1)
        >>> [regions.foreground.tolist(), regions.background.tolist(), regions.dissensus.tolist()]
        [[True, False, False, False], [False, False, True, True], [False, True, False, False]]
    """
    masks = _raters(rater_masks)
    fg = np.ones(masks[0].shape, dtype=bool)
    bg = np.ones(masks[0].shape, dtype=bool)
    for m in masks:
        hit = m == label
        fg &= hit
        bg &= ~hit
    return ConsensusRegions(fg, bg, ~(fg | bg))


def _label_mask(pred_mask: Any, label: int) -> np.ndarray:
    pred = np.asarray(pred_mask)
    return pred if pred.dtype == bool else pred == label


def consensus_dice(
    pred_mask: Any, rater_masks: Any, label: int, *, empty: float = math.nan
) -> float:
    """Dice of the prediction against the consensus foreground, ignoring the dissensus.

    Args:
        pred_mask: Predicted label map (or a boolean mask of ``label``).
        rater_masks: One label map per rater.
        label: The label.
        empty: Value when the consensus foreground is empty (see the module notes).

    Returns:
        ``2 |P & G| / (|P| + |G|)`` with ``P`` the prediction outside the dissensus and
        ``G`` the consensus foreground.

    Example:
        >>> r1 = np.array([1, 1, 1, 0, 0]); r2 = np.array([1, 1, 0, 0, 0])
        >>> pred = np.array([1, 0, 1, 1, 0])  # voxel 2 is dissensus and is ignored
        >>> round(consensus_dice(pred, [r1, r2], 1), 4)  # P = {0, 3}, G = {0, 1}
        0.5
    """
    regions = consensus_regions(rater_masks, label)
    pred = _label_mask(pred_mask, label)
    _check_shape(pred, regions.foreground.shape, "pred_mask")
    p = pred & ~regions.dissensus
    g = regions.foreground
    n_g = int(np.count_nonzero(g))
    if n_g == 0:
        return float(empty)
    inter = int(np.count_nonzero(p & g))
    return 2.0 * inter / (int(np.count_nonzero(p)) + n_g)


def consensus_confidence(prob: Any, rater_masks: Any, label: int) -> float:
    """Consensus confidence: 1/2 [mean p over consensus foreground + 1 - mean p over background].

    Args:
        prob: Probability map of ``label`` (the raters' grid).
        rater_masks: One label map per rater.
        label: The label.

    Returns:
        The confidence in [0, 1]; NaN when a consensus region is empty.

    Example:
        >>> r1 = np.array([1, 1, 0, 0]); r2 = np.array([1, 0, 0, 0])
        >>> p = np.array([0.9, 0.5, 0.2, 0.0])
        >>> round(consensus_confidence(p, [r1, r2], 1), 4)  # (0.9 + 1 - 0.1) / 2
        0.9
    """
    regions = consensus_regions(rater_masks, label)
    p = np.asarray(prob, dtype=np.float64)
    _check_shape(p, regions.foreground.shape, "prob")
    if not regions.foreground.any() or not regions.background.any():
        return math.nan
    mean_fg = float(p[regions.foreground].mean())
    mean_bg = float(p[regions.background].mean())
    return 0.5 * (mean_fg + (1.0 - mean_bg))


# ----------------------------------------------------------------------------------
# Per-rater calibration
# ----------------------------------------------------------------------------------


def _prob_chunks(
    probs: np.ndarray, class_axis: int, background: str, chunk_size: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(voxel slice, (n, C) float64 probabilities)`` with the background added."""
    axis = class_axis % probs.ndim
    n_classes = probs.shape[axis]
    if axis == 0:
        flat = probs.reshape(n_classes, -1)
        n_vox = flat.shape[1]

        def take(s: slice) -> np.ndarray:
            return np.asarray(flat[:, s], dtype=np.float64).T

    else:
        flat = np.moveaxis(probs, axis, -1).reshape(-1, n_classes)
        n_vox = flat.shape[0]

        def take(s: slice) -> np.ndarray:
            return np.asarray(flat[s], dtype=np.float64)

    for start in range(0, n_vox, chunk_size):
        s = slice(start, min(n_vox, start + chunk_size))
        p = take(s)
        if background == "complement":
            p = np.column_stack([1.0 - p.sum(axis=1), p])
        yield s, p


def _softmax(p: np.ndarray) -> np.ndarray:
    e = np.exp(p - p.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def per_rater_calibration(
    probs: Any,
    rater_masks: Any,
    *,
    n_bins: int = 50,
    class_axis: int = 0,
    background: Literal["included", "complement"] = "included",
    invalid: Literal["raise", "softmax"] = "raise",
    binning: Binning = "equal-width",
    mode: Mode = "top-label",
    edge_rule: EdgeRule = "right",
    chunk_size: int = DEFAULT_CHUNK,
) -> list[CalibrationResult]:
    """Calibration of voxel probabilities against each rater's label map, in one pass.

    Args:
        probs: Class probabilities with the class axis ``class_axis`` (default first:
            ``(C, *grid)``); the other axes are the raters' grid.
        rater_masks: One label map per rater (values ``0..C-1``).
        n_bins: Number of bins.
        class_axis: Axis of ``probs`` that holds the classes.
        background: ``"included"``: ``probs`` holds every class; ``"complement"``: it holds
            the foreground classes 1..K only and the background is ``1 - sum`` (CURVAS).
        invalid: What to do when a probability (after adding the background) lies outside
            [0, 1]: ``"raise"``, or ``"softmax"``: apply a softmax over the classes to every
            voxel before binning, as torchmetrics' ``MulticlassCalibrationError`` does (its
            check is strict: any value below 0 or above 1 triggers it).
        binning: ``"equal-width"`` or ``"equal-mass"`` (streaming approximation).
        mode: ``"top-label"`` or ``"class-wise"``.
        edge_rule: Equal-width edge rule (``"torchmetrics"`` for the CURVAS numbers).
        chunk_size: Voxels per chunk.

    Returns:
        One :class:`~medfleet.evaluate.analysis.calibration.CalibrationResult` per rater.
    """
    if background not in ("included", "complement"):
        raise MetricInputError(f"background must be included or complement: {background!r}")
    if invalid not in ("raise", "softmax"):
        raise MetricInputError(f"invalid must be raise or softmax, got {invalid!r}")
    p_all = probs if isinstance(probs, np.memmap) else np.asarray(probs)
    masks = _raters(rater_masks)
    if p_all.ndim != masks[0].ndim + 1:
        raise MetricInputError(
            f"probs has shape {p_all.shape}; with raters of shape {masks[0].shape} it needs one "
            "more axis for the classes"
        )
    axis = class_axis % p_all.ndim
    grid = p_all.shape[:axis] + p_all.shape[axis + 1 :]
    _check_shape(np.empty(grid, dtype=bool), masks[0].shape, "probs without its class axis")
    flat_masks = [m.reshape(-1) for m in masks]

    apply_softmax = False
    if invalid == "softmax":
        for _, p in _prob_chunks(p_all, axis, background, chunk_size):
            if np.any(p < 0.0) or np.any(p > 1.0):
                apply_softmax = True
                break
    accumulators = [
        StreamingCalibration(
            n_bins=n_bins, binning=binning, mode=mode, edge_rule=edge_rule, class_axis=-1
        )
        for _ in masks
    ]
    for s, p in _prob_chunks(p_all, axis, background, chunk_size):
        if apply_softmax:
            p = _softmax(p)
        elif invalid == "raise" and p.size:
            lo, hi = float(p.min()), float(p.max())
            if lo < -PROB_TOLERANCE or hi > 1.0 + PROB_TOLERANCE:
                raise MetricInputError(
                    f"probabilities (background {background}) lie in [{lo:.6g}, {hi:.6g}], "
                    "outside [0, 1] (fix: normalise them, or use invalid='softmax' to "
                    "reproduce torchmetrics)"
                )
        for acc, m in zip(accumulators, flat_masks, strict=True):
            acc.update(p, m[s])
    return [acc.compute() for acc in accumulators]


def per_rater_ece(
    probs: Any,
    rater_masks: Any,
    *,
    n_bins: int = 50,
    class_axis: int = 0,
    background: Literal["included", "complement"] = "included",
    invalid: Literal["raise", "softmax"] = "raise",
    binning: Binning = "equal-width",
    mode: Mode = "top-label",
    edge_rule: EdgeRule = "right",
    chunk_size: int = DEFAULT_CHUNK,
) -> list[float]:
    """ECE of voxel probabilities against each rater (see :func:`per_rater_calibration`).

    The CURVAS setting is ``background="complement"`` (probabilities
    ``[1 - sum p, p_1, p_2, p_3]``), ``n_bins=50``, top-label, ``invalid="softmax"`` and
    ``edge_rule="torchmetrics"``.

    Example:
        >>> probs = np.array([[0.9, 0.2, 0.6, 0.3], [0.1, 0.8, 0.4, 0.7]])  # (C=2, 4 voxels)
        >>> r1 = np.array([0, 1, 0, 1]); r2 = np.array([0, 1, 1, 1])
        >>> [round(e, 4) for e in per_rater_ece(probs, [r1, r2], n_bins=2)]
        [0.25, 0.0]
    """
    results = per_rater_calibration(
        probs,
        rater_masks,
        n_bins=n_bins,
        class_axis=class_axis,
        background=background,
        invalid=invalid,
        binning=binning,
        mode=mode,
        edge_rule=edge_rule,
        chunk_size=chunk_size,
    )
    return [r.ece for r in results]


# ----------------------------------------------------------------------------------
# Volume CRPS
# ----------------------------------------------------------------------------------


def crps_gaussian(x: float, mu: float, sigma: float) -> float:
    """Exact CRPS of the normal distribution N(mu, sigma^2) at the observation ``x``.

    ``sigma [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]`` with ``z = (x - mu) / sigma``
    (Gneiting and Raftery 2007); ``|x - mu|`` when ``sigma`` is 0.

    Example:
        >>> round(crps_gaussian(0.0, 0.0, 1.0), 6)  # (sqrt(2) - 1) / sqrt(pi)
        0.233695
    """
    if sigma < 0 or math.isnan(sigma):
        raise MetricInputError(f"sigma must be non-negative, got {sigma}")
    if sigma == 0:
        return abs(x - mu)
    z = (x - mu) / sigma
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return sigma * (z * (2.0 * float(ndtr(z)) - 1.0) + 2.0 * pdf - 1.0 / math.sqrt(math.pi))


def crps_ensemble(x: float, members: Sequence[float]) -> float:
    """Exact CRPS of the empirical distribution of ``members`` at the observation ``x``.

    ``mean |X_i - x| - 1/(2 m^2) sum_ij |X_i - X_j|`` (the integral of the squared
    difference between the empirical CDF and the step at ``x``).

    Example:
        >>> crps_ensemble(2.0, [1.0, 2.0, 3.0])  # 2/3 - 8/18
        0.2222222222222222
    """
    m = np.asarray(members, dtype=np.float64).reshape(-1)
    if m.size == 0:
        raise MetricInputError("crps_ensemble needs at least one member")
    spread = float(np.abs(m[:, None] - m[None, :]).sum()) / (2.0 * m.size**2)
    return float(np.abs(m - x).mean()) - spread


def crps_curvas(
    x: float, members: Sequence[float], *, integration: Literal["exact", "quad"] = "exact"
) -> float:
    """CRPS of the CURVAS challenge scorer, integrated exactly.

    The official ``volume_metric`` fits a normal to the raters' volumes with mean ``mu`` and
    population standard deviation ``sigma`` (``np.std``, ddof 0), tabulates its CDF at 100
    points from the 1st to the 99th percentile, interpolates it linearly (0 below the first
    point, 1 above the last), and integrates ``(F(y) - H(y - x))^2`` (H: Heaviside step) over
    ``[mu - 3 sigma, mu + 3 sigma]`` with ``scipy.integrate.quad``. The integrand is
    piecewise linear-squared, so by default (``integration="exact"``) medfleet integrates
    it exactly piece by piece. ``quad`` with its default settings does not resolve the jumps
    of the integrand (at ``x`` and at the 1st and 99th percentiles) exactly and the official
    numbers differ from the exact integral by up to about 1% (relative);
    ``integration="quad"`` repeats that call to reproduce them digit for digit. When every
    rater gives the same volume (``sigma = 0``) the interval is empty and the CRPS is 0,
    whatever ``x`` is. A volume outside the interval is only penalised over the interval.

    Example:
        >>> crps_curvas(100.0, [100.0, 100.0, 100.0])
        0.0
        >>> round(crps_curvas(10.0, [8.0, 10.0, 12.0]), 6)
        0.381634
        >>> round(crps_curvas(10.0, [8.0, 10.0, 12.0], integration="quad"), 6)
        0.381627
    """
    if integration not in ("exact", "quad"):
        raise MetricInputError(f"integration must be exact or quad, got {integration!r}")
    m = np.asarray(members, dtype=np.float64).reshape(-1)
    if m.size == 0:
        raise MetricInputError("crps_curvas needs at least one rater volume")
    if math.isnan(x):
        return math.nan
    mu, sigma = float(m.mean()), float(m.std())
    if sigma == 0:
        return 0.0
    lo, hi = mu - 3.0 * sigma, mu + 3.0 * sigma
    xs = np.linspace(mu + sigma * float(ndtri(0.01)), mu + sigma * float(ndtri(0.99)), 100)
    fs = ndtr((xs - mu) / sigma)
    if integration == "quad":
        return _quad_curvas(x, xs, fs, lo, hi)
    points = np.concatenate([[lo, hi], xs, [x]])
    points = np.unique(np.clip(points, lo, hi))
    s, t = points[:-1], points[1:]
    mid = 0.5 * (s + t)
    inside = (mid >= xs[0]) & (mid <= xs[-1])
    f_s = np.where(inside, np.interp(s, xs, fs), np.where(mid < xs[0], 0.0, 1.0))
    f_t = np.where(inside, np.interp(t, xs, fs), np.where(mid < xs[0], 0.0, 1.0))
    step = (mid > x).astype(np.float64)
    g0, g1 = f_s - step, f_t - step
    return float(np.sum((t - s) * (g0 * g0 + g0 * g1 + g1 * g1) / 3.0))


def _quad_curvas(x: float, xs: np.ndarray, fs: np.ndarray, lo: float, hi: float) -> float:
    """The official call: ``quad`` with default settings on the tabulated integrand."""

    def integrand(y: float) -> float:
        cdf = 0.0 if y < xs[0] else (1.0 if y > xs[-1] else float(np.interp(y, xs, fs)))
        step = 0.5 * (np.sign(y - x) + 1.0)
        return float((cdf - step) ** 2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        value, _ = quad(integrand, lo, hi)
    return float(value)


def rater_volumes(rater_masks: Any, label: int, spacing: Any = None) -> np.ndarray:
    """Volume of ``label`` in each rater's map: voxel count times the voxel volume.

    Example:
        >>> rater_volumes([np.array([[1, 1], [0, 1]]), np.array([[1, 0], [0, 0]])], 1,
        ...               (2.0, 0.5)).tolist()
        [3.0, 1.0]
    """
    masks = _raters(rater_masks)
    voxel = float(np.prod(normalize_spacing(spacing, masks[0].ndim)))
    return np.array([np.count_nonzero(m == label) * voxel for m in masks], dtype=np.float64)


def volume_crps(
    prob_map: Any,
    rater_masks: Any,
    label: int,
    spacing: Any = None,
    *,
    form: CrpsForm = "curvas",
    ddof: int = 0,
    integration: Literal["exact", "quad"] = "exact",
) -> float:
    """CRPS of the probabilistic volume of ``label`` against the raters' volumes.

    The predicted volume is ``sum(prob_map) x voxel volume`` (voxel volume: the product of
    ``spacing``; ``None`` = 1, i.e. voxel units as the official CURVAS default).

    Forms:

    * ``"curvas"``: the official CURVAS form (:func:`crps_curvas`): normal fitted with the
      population std, tabulated CDF, integral limited to mean +/- 3 std; 0 when all raters
      agree.
    * ``"gaussian"``: exact CRPS of the fitted normal (:func:`crps_gaussian`; std with
      ``ddof``), over the whole real line; ``|v - mean|`` when all raters agree.
    * ``"ensemble"``: exact CRPS of the raters' empirical distribution
      (:func:`crps_ensemble`); ``|v - mean|`` when all raters agree.

    Args:
        prob_map: Probability map of ``label`` on the raters' grid.
        rater_masks: One label map per rater.
        label: The label.
        spacing: Voxel spacing (one number per axis, or one number), or ``None``.
        form: ``"curvas"``, ``"gaussian"`` or ``"ensemble"``.
        ddof: Delta degrees of freedom of the std of the ``"gaussian"`` form.
        integration: ``"curvas"`` form only: ``"exact"`` integral, or ``"quad"`` to
            reproduce the official numbers (see :func:`crps_curvas`).

    Returns:
        The CRPS in volume units (lower is better).

    Example:
        >>> r = [np.zeros((4, 4), int) for _ in range(3)]
        >>> r[0][:2, :2] = 1; r[1][:2, :3] = 1; r[2][:2, :1] = 1  # volumes 4, 6, 2
        >>> prob = np.zeros((4, 4)); prob[:2, :2] = 1.0  # predicted volume 4
        >>> round(volume_crps(prob, r, 1, form="ensemble"), 4)  # 4/3 - 16/18
        0.4444
    """
    if form not in ("curvas", "gaussian", "ensemble"):
        raise MetricInputError(f"form must be curvas, gaussian or ensemble, got {form!r}")
    masks = _raters(rater_masks)
    p = np.asarray(prob_map)
    _check_shape(p, masks[0].shape, "prob_map")
    voxel = float(np.prod(normalize_spacing(spacing, p.ndim)))
    volume = float(np.sum(p, dtype=np.float64)) * voxel
    vols = rater_volumes(masks, label, spacing)
    if form == "curvas":
        return crps_curvas(volume, vols, integration=integration)
    if form == "gaussian":
        if vols.size - ddof < 1:
            raise MetricInputError(f"ddof={ddof} needs more than {ddof} raters, got {vols.size}")
        return crps_gaussian(volume, float(vols.mean()), float(vols.std(ddof=ddof)))
    return crps_ensemble(volume, vols)


# ----------------------------------------------------------------------------------
# Reference masks
# ----------------------------------------------------------------------------------


def majority_vote(
    rater_masks: Any, *, tie: Literal["background", "lowest"] = "background"
) -> np.ndarray:
    """Per voxel, the label chosen by the most raters (plurality vote).

    With binary masks and an odd number of raters this is the strict majority. On a tie
    between labels the voxel gets 0 (``tie="background"``) or the smallest tied label
    (``tie="lowest"``).

    Example:
        >>> r = [np.array([1, 1, 0, 2]), np.array([1, 0, 0, 1]), np.array([0, 2, 0, 2])]
        >>> majority_vote(r).tolist()  # voxel 1: 1, 0, 2 -> tie -> 0
        [1, 0, 0, 2]
    """
    if tie not in ("background", "lowest"):
        raise MetricInputError(f"tie must be background or lowest, got {tie!r}")
    masks = _raters(rater_masks)
    labels = np.unique(np.concatenate([np.unique(m) for m in masks]))
    best_count = np.full(masks[0].shape, -1, dtype=np.int32)
    best_label = np.zeros(masks[0].shape, dtype=masks[0].dtype)
    tied = np.zeros(masks[0].shape, dtype=bool)
    for lab in labels:
        count = np.zeros(masks[0].shape, dtype=np.int32)
        for m in masks:
            count += m == lab
        better = count > best_count
        same = count == best_count
        tied = np.where(better, False, tied | same)
        best_label = np.where(better, lab, best_label).astype(masks[0].dtype)
        best_count = np.maximum(best_count, count)
    if tie == "background":
        best_label = np.where(tied, 0, best_label).astype(masks[0].dtype)
    return best_label


def mean_soft(rater_masks: Any, label: int | None = None, *, dtype: Any = np.float32) -> np.ndarray:
    """Soft reference: the fraction of raters that label each voxel ``label``.

    Args:
        rater_masks: One label map per rater.
        label: The label; ``None`` counts any non-zero label.
        dtype: Output dtype (float32 by default: fractions k / R for R < 2^24 raters are
            exact to float32 precision).

    Example:
        >>> mean_soft([np.array([1, 1, 0]), np.array([1, 0, 0])], 1).tolist()
        [1.0, 0.5, 0.0]
    """
    masks = _raters(rater_masks)
    count = np.zeros(masks[0].shape, dtype=np.int32)
    for m in masks:
        count += (m != 0) if label is None else (m == label)
    return (count / len(masks)).astype(dtype)
