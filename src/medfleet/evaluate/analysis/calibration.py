"""Calibration of predicted probabilities: ECE, MCE, Brier score and reliability diagrams.

Inputs: ``probs`` holds class probabilities with the class axis ``class_axis`` (default
last), e.g. ``(n, C)`` for cases or ``(C, z, y, x)`` with ``class_axis=0`` for a voxel map;
a 1-D ``probs`` is the positive-class probability of a binary problem (classes
``[1 - p, p]``). ``labels`` holds the true class of each sample (integers ``0..C-1``), in
the shape of ``probs`` without its class axis.

Definitions (Guo et al. 2017; Kull et al. 2019; Nixon et al. 2019):

* **top-label**: each sample's confidence is its largest probability and it is correct when
  that class (the first one on ties, as ``numpy.argmax``) is its label.
* **class-wise**: for each class ``k`` the confidence is ``p_k`` and the outcome is
  ``label == k``; the class-wise ECE is the mean over classes of these ECEs, the
  class-wise MCE their maximum.
* **ECE** = sum over bins of ``(n_b / N) |acc_b - conf_b|``; **MCE** = the largest
  ``|acc_b - conf_b|`` over non-empty bins.
* **equal-width** bins: ``n_bins`` intervals of ``[0, 1]`` with edges
  ``numpy.linspace(0, 1, n_bins + 1)``. ``edge_rule`` says where a value on an edge goes:
  ``"right"`` (default): ``(a, b]`` with 0.0 in the first bin, as scikit-learn's
  ``calibration_curve`` and Guo et al.'s code; ``"left"``: ``[a, b)`` with 1.0 in the last
  bin; ``"torchmetrics"``: ``[a, b)`` and a confidence of exactly 1.0 in a bin of its own
  (``torch.bucketize(..., right=True)`` in torchmetrics' ``_binning_bucketize``, used by
  the CURVAS scorer). The rules differ only for values exactly on an edge.
* **equal-mass** bins: the samples sorted by confidence (stable sort) are split into
  ``n_bins`` runs whose sizes differ by at most one (``numpy.array_split``); equal
  confidences may fall in two bins.
* **Brier score**: the mean over samples of ``sum_k (p_k - [label == k])^2``, halved for
  two classes so that a binary problem gives ``mean((p - y)^2)`` (scikit-learn's
  ``brier_score_loss`` with its default ``scale_by_half="auto"``).
* Probabilities must lie in ``[0, 1]``; values within 1e-6 outside are clipped, others
  raise. NaN raises.

**Streaming.** :class:`StreamingCalibration` takes one pass over chunks of samples (e.g.
slabs of a 10^8-voxel volume) and keeps only per-bin sums, so memory does not grow with
the number of voxels. Equal-width bins are exact: the result equals the in-memory one up to
floating-point summation order. Equal-mass bins cannot be exact in one pass; the stream
keeps a fine histogram (``resolution`` equal-width sub-bins, default 2^16, with counts and
sums) and places each equal-mass boundary on the sub-bin edge whose cumulative count is
closest to the exact boundary rank. Every sample that lands in a different bin than in the
in-memory split lies between such an edge and its exact rank, and moving one sample
changes the ECE by at most ``2 / N``, so ``ece_error_bound = 2 * sum_k |C_k - r_k| / N``
(``C_k`` the chosen cumulative count, ``r_k`` the exact rank) bounds the difference from
the in-memory equal-mass ECE; it is reported with the result (0 for equal-width bins). The
bound is small unless many samples share nearly the same confidence (then no equal-mass
split is well defined either).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medfleet.evaluate.metrics.conventions import MetricInputError

__all__ = [
    "CalibrationResult",
    "ReliabilityData",
    "StreamingCalibration",
    "brier_score",
    "calibration_summary",
    "expected_calibration_error",
    "iter_sample_chunks",
    "maximum_calibration_error",
    "reliability_diagram",
]

Binning = Literal["equal-width", "equal-mass"]
Mode = Literal["top-label", "class-wise"]
EdgeRule = Literal["left", "right", "torchmetrics"]

#: Samples per chunk when the in-memory functions stream over a large input.
DEFAULT_CHUNK = 1 << 18
#: Probabilities this far outside [0, 1] are clipped rather than rejected.
PROB_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ReliabilityData:
    """Per-bin statistics of a reliability diagram.

    Attributes:
        bin_edges: ``(n_bins + 1,)`` edges (equal-mass: the smallest confidence of each bin
            and the largest overall; torchmetrics rule: ``[..., 1.0, 1.0]`` for the bin of
            confidence 1).
        confidence: Mean confidence per bin (NaN for an empty bin).
        accuracy: Fraction correct per bin (NaN for an empty bin).
        counts: Samples per bin.
    """

    bin_edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        """``|accuracy - confidence|`` per bin (NaN for an empty bin)."""
        return np.abs(self.accuracy - self.confidence)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists (NaN kept as float NaN)."""
        return {
            "bin_edges": self.bin_edges.tolist(),
            "confidence": self.confidence.tolist(),
            "accuracy": self.accuracy.tolist(),
            "counts": self.counts.tolist(),
        }


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration metrics of one set of predictions.

    Attributes:
        ece: Expected calibration error (class-wise: mean over classes).
        mce: Maximum calibration error (class-wise: max over classes).
        brier: Brier score (see the module notes).
        n: Number of samples.
        reliability: Top-label: one :class:`ReliabilityData`; class-wise: one per class.
        per_class_ece: Class-wise ECE of each class (empty for top-label).
        ece_error_bound: Bound on ``|ece - in-memory ece|`` (streaming equal-mass only).
        binning: ``"equal-width"`` or ``"equal-mass"``.
        mode: ``"top-label"`` or ``"class-wise"``.
        n_bins: Number of bins requested.
    """

    ece: float
    mce: float
    brier: float
    n: int
    reliability: ReliabilityData | list[ReliabilityData]
    per_class_ece: list[float] = field(default_factory=list)
    ece_error_bound: float = 0.0
    binning: str = "equal-width"
    mode: str = "top-label"
    n_bins: int = 15

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary with the reliability data as lists."""
        rel = self.reliability
        return {
            "ece": self.ece,
            "mce": self.mce,
            "brier": self.brier,
            "n": self.n,
            "per_class_ece": list(self.per_class_ece),
            "ece_error_bound": self.ece_error_bound,
            "binning": self.binning,
            "mode": self.mode,
            "n_bins": self.n_bins,
            "reliability": [r.to_dict() for r in rel] if isinstance(rel, list) else rel.to_dict(),
        }


# ----------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------


def _check_options(n_bins: int, binning: str, mode: str, edge_rule: str) -> None:
    if int(n_bins) < 1:
        raise MetricInputError(f"n_bins must be at least 1, got {n_bins}")
    if binning not in ("equal-width", "equal-mass"):
        raise MetricInputError(f"binning must be 'equal-width' or 'equal-mass', got {binning!r}")
    if mode not in ("top-label", "class-wise"):
        raise MetricInputError(f"mode must be 'top-label' or 'class-wise', got {mode!r}")
    if edge_rule not in ("left", "right", "torchmetrics"):
        raise MetricInputError(f"edge_rule must be left, right or torchmetrics, got {edge_rule!r}")


def iter_sample_chunks(
    probs: Any, labels: Any, *, class_axis: int = -1, chunk_size: int = DEFAULT_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(probs (n, C), labels (n,))`` chunks of a possibly huge probability map.

    With the class axis first or last of a C-contiguous array (or a ``numpy.memmap``) only
    one chunk is copied at a time; another class axis makes one transposed copy.

    Args:
        probs: Probabilities with a class axis, or a 1-D binary positive-class probability.
        labels: True class per sample, ``probs``'s shape without the class axis.
        class_axis: Axis of ``probs`` that holds the classes.
        chunk_size: Samples per chunk.

    Yields:
        ``(p, y)`` with ``p`` of shape ``(n, C)`` (binary input: ``C = 2``).

    Example:
        >>> p = np.zeros((3, 2, 2)); p[0] = 1.0
        >>> chunks = list(iter_sample_chunks(p, np.zeros((2, 2), int), class_axis=0,
        ...                                  chunk_size=3))
        >>> [c[0].shape for c in chunks]
        [(3, 3), (1, 3)]
    """
    p = np.asarray(probs) if not isinstance(probs, np.memmap) else probs
    y = np.asarray(labels) if not isinstance(labels, np.memmap) else labels
    if p.ndim == 1:
        if y.shape != p.shape:
            raise MetricInputError(
                f"labels have shape {y.shape}, binary probs {p.shape}: one label per sample"
            )
        for s in range(0, p.size, chunk_size):
            pos = np.asarray(p[s : s + chunk_size], dtype=np.float64)
            yield np.column_stack([1.0 - pos, pos]), np.asarray(y[s : s + chunk_size])
        return
    axis = class_axis % p.ndim
    spatial = p.shape[:axis] + p.shape[axis + 1 :]
    if y.shape != spatial:
        raise MetricInputError(
            f"labels have shape {y.shape} but probs {p.shape} with class axis {class_axis} "
            f"need labels of shape {spatial} (fix: set class_axis to the axis of the classes)"
        )
    n_classes = p.shape[axis]
    flat_y = y.reshape(-1)
    if axis == 0:
        flat = p.reshape(n_classes, -1)
        for s in range(0, flat.shape[1], chunk_size):
            yield (
                np.asarray(flat[:, s : s + chunk_size], dtype=np.float64).T,
                np.asarray(flat_y[s : s + chunk_size]),
            )
        return
    flat = np.moveaxis(p, axis, -1).reshape(-1, n_classes)
    for s in range(0, flat.shape[0], chunk_size):
        yield (
            np.asarray(flat[s : s + chunk_size], dtype=np.float64),
            np.asarray(flat_y[s : s + chunk_size]),
        )


def _validate_chunk(
    p: np.ndarray, y: np.ndarray, n_classes: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise MetricInputError(
            f"a chunk needs probs (n, C) and labels (n,), got {p.shape}, {y.shape}"
        )
    if n_classes is not None and p.shape[1] != n_classes:
        raise MetricInputError(
            f"this chunk has {p.shape[1]} classes, earlier chunks had {n_classes}"
        )
    if p.size:
        lo, hi = float(np.min(p)), float(np.max(p))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise MetricInputError("probabilities contain NaN or infinite values")
        if lo < -PROB_TOLERANCE or hi > 1.0 + PROB_TOLERANCE:
            raise MetricInputError(
                f"probabilities must lie in [0, 1], found values in [{lo:.6g}, {hi:.6g}] "
                "(fix: apply a softmax or sigmoid to logits first)"
            )
        if lo < 0.0 or hi > 1.0:
            p = np.clip(p, 0.0, 1.0)
    if y.dtype == bool:
        y = y.astype(np.int64)
    if y.size:
        if not np.issubdtype(y.dtype, np.integer):
            yf = np.asarray(y, dtype=np.float64)
            if not np.all(np.isfinite(yf)) or not np.all(yf == np.round(yf)):
                raise MetricInputError("labels must be integer class indices (found non-integers)")
            y = yf.astype(np.int64)
        if int(y.min()) < 0 or int(y.max()) >= p.shape[1]:
            raise MetricInputError(
                f"labels must lie in 0..{p.shape[1] - 1} (the class columns), found "
                f"{int(y.min())}..{int(y.max())}"
            )
    return p, y.astype(np.int64, copy=False)


def _streams(p: np.ndarray, y: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Confidences and outcomes, ``(S, n)`` each: S = 1 (top-label) or C (class-wise)."""
    if mode == "top-label":
        # argmax over the few classes, first maximum wins (as numpy.argmax)
        conf = p[:, 0].copy()
        pred = np.zeros(p.shape[0], dtype=np.int64)
        for k in range(1, p.shape[1]):
            col = p[:, k]
            np.copyto(pred, k, where=col > conf)
            np.maximum(conf, col, out=conf)
        return conf[None, :], (pred == y).astype(np.float64)[None, :]
    onehot = (y[None, :] == np.arange(p.shape[1])[:, None]).astype(np.float64)
    return np.ascontiguousarray(p.T), onehot


def _brier_terms(p: np.ndarray, y: np.ndarray) -> float:
    sq = p.copy()
    sq[np.arange(p.shape[0]), y] -= 1.0
    total = float(np.sum(sq * sq))
    return total / 2.0 if p.shape[1] == 2 else total


def _width_edges(n_bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, int(n_bins) + 1)


def _uniform_searchsorted(edges: np.ndarray, conf: np.ndarray, side: str) -> np.ndarray:
    """``numpy.searchsorted(edges, conf, side)`` for ``edges = linspace(0, 1, B + 1)``.

    A floor of ``conf * B`` is at most one bin off the true position; one correction step
    against the actual edges makes it exact (and much faster than a binary search).
    """
    n_bins = edges.size - 1
    i = np.floor(conf * n_bins).astype(np.int64)
    np.clip(i, 0, n_bins, out=i)
    i[conf < edges[i]] -= 1
    np.clip(i, 0, n_bins, out=i)
    upper = np.minimum(i + 1, n_bins)
    i[(conf >= edges[upper]) & (i < n_bins)] += 1
    i[conf < edges[0]] = -1
    # i is now the index of the last edge <= conf, i.e. searchsorted(side="right") - 1
    if side == "left":
        on_edge = (i >= 0) & (conf == edges[np.clip(i, 0, n_bins)])
        i[on_edge] -= 1
    return i + 1


def _width_index(conf: np.ndarray, edges: np.ndarray, edge_rule: str) -> np.ndarray:
    """Bin index per confidence; the torchmetrics rule uses index n_bins for conf >= 1."""
    n_bins = edges.size - 1
    if edge_rule == "right":
        return np.clip(_uniform_searchsorted(edges, conf, "left") - 1, 0, n_bins - 1)
    idx = _uniform_searchsorted(edges, conf, "right") - 1
    if edge_rule == "left":
        return np.clip(idx, 0, n_bins - 1)
    return np.clip(idx, 0, n_bins)


def _metrics_from_bins(
    counts: np.ndarray, sum_conf: np.ndarray, sum_acc: np.ndarray, total: int
) -> tuple[float, float, np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(counts > 0, sum_conf / counts, np.nan)
        acc = np.where(counts > 0, sum_acc / counts, np.nan)
    if total == 0:
        return math.nan, math.nan, conf, acc
    ece = float(np.sum(np.abs(sum_acc - sum_conf)) / total)
    gaps = np.abs(acc - conf)[counts > 0]
    mce = float(gaps.max()) if gaps.size else math.nan
    return ece, mce, conf, acc


# ----------------------------------------------------------------------------------
# Streaming accumulator
# ----------------------------------------------------------------------------------


class StreamingCalibration:
    """One-pass calibration over chunks of samples (voxels), with bounded memory.

    Args:
        n_classes: Number of classes (default: taken from the first chunk).
        n_bins: Number of bins.
        binning: ``"equal-width"`` (exact) or ``"equal-mass"`` (fine-histogram
            approximation with a reported error bound; see the module notes).
        mode: ``"top-label"`` or ``"class-wise"``.
        edge_rule: Equal-width edge rule: ``"right"``, ``"left"`` or ``"torchmetrics"``.
        class_axis: Class axis of the chunks passed to :meth:`update`.
        resolution: Sub-bins of the equal-mass histogram.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> p = rng.dirichlet([1, 1, 1], size=10_000); y = rng.integers(0, 3, 10_000)
        >>> s = StreamingCalibration(n_bins=10)
        >>> for start in range(0, 10_000, 3_000):
        ...     s.update(p[start:start + 3_000], y[start:start + 3_000])
        >>> r = s.compute()
        >>> abs(r.ece - expected_calibration_error(p, y, n_bins=10)) < 1e-12, r.n
        (True, 10000)
    """

    def __init__(
        self,
        n_classes: int | None = None,
        *,
        n_bins: int = 15,
        binning: Binning = "equal-width",
        mode: Mode = "top-label",
        edge_rule: EdgeRule = "right",
        class_axis: int = -1,
        resolution: int = 1 << 16,
    ) -> None:
        _check_options(n_bins, binning, mode, edge_rule)
        if int(resolution) < int(n_bins):
            raise MetricInputError(f"resolution ({resolution}) must be at least n_bins ({n_bins})")
        self.n_classes = n_classes
        self.n_bins = int(n_bins)
        self.binning = binning
        self.mode = mode
        self.edge_rule = edge_rule
        self.class_axis = class_axis
        self.resolution = int(resolution)
        self.n = 0
        self._brier_sum = 0.0
        self._counts: np.ndarray | None = None
        self._sum_conf: np.ndarray | None = None
        self._sum_acc: np.ndarray | None = None
        self._edges = _width_edges(self.n_bins)
        self._fine_edges = _width_edges(self.resolution)

    def _init_state(self, n_classes: int) -> None:
        self.n_classes = n_classes
        n_streams = 1 if self.mode == "top-label" else n_classes
        width = self.n_bins + 1 if self.binning == "equal-width" else self.resolution
        self._counts = np.zeros((n_streams, width), dtype=np.int64)
        self._sum_conf = np.zeros((n_streams, width), dtype=np.float64)
        self._sum_acc = np.zeros((n_streams, width), dtype=np.float64)

    def update(self, probs_chunk: Any, labels_chunk: Any) -> None:
        """Add a chunk of samples.

        Args:
            probs_chunk: Probabilities of the chunk, class axis ``class_axis`` (1-D: binary).
            labels_chunk: True classes of the chunk.
        """
        for p, y in iter_sample_chunks(probs_chunk, labels_chunk, class_axis=self.class_axis):
            p, y = _validate_chunk(p, y, self.n_classes if self._counts is not None else None)
            if self._counts is None:
                self._init_state(p.shape[1])
            self._add(p, y)

    def _add(self, p: np.ndarray, y: np.ndarray) -> None:
        assert self._counts is not None and self._sum_conf is not None
        assert self._sum_acc is not None
        conf, acc = _streams(p, y, self.mode)
        width = self._counts.shape[1]
        for s in range(conf.shape[0]):
            if self.binning == "equal-width":
                idx = _width_index(conf[s], self._edges, self.edge_rule)
            else:
                idx = _width_index(conf[s], self._fine_edges, "left")
            self._counts[s] += np.bincount(idx, minlength=width)
            self._sum_conf[s] += np.bincount(idx, weights=conf[s], minlength=width)
            self._sum_acc[s] += np.bincount(idx, weights=acc[s], minlength=width)
        self._brier_sum += _brier_terms(p, y)
        self.n += int(p.shape[0])

    def merge(self, other: StreamingCalibration) -> None:
        """Add the state of another accumulator with the same options (e.g. another worker)."""
        same = (
            other.n_bins == self.n_bins
            and other.binning == self.binning
            and other.mode == self.mode
            and other.edge_rule == self.edge_rule
            and other.resolution == self.resolution
        )
        if not same:
            raise MetricInputError("cannot merge calibration accumulators with different options")
        if other._counts is None:
            return
        if self._counts is None:
            self._init_state(int(other.n_classes or 0))
        if other.n_classes != self.n_classes:
            raise MetricInputError(
                f"cannot merge accumulators of {self.n_classes} and {other.n_classes} classes"
            )
        assert self._counts is not None and self._sum_conf is not None
        assert self._sum_acc is not None and other._sum_conf is not None
        assert other._sum_acc is not None
        self._counts += other._counts
        self._sum_conf += other._sum_conf
        self._sum_acc += other._sum_acc
        self._brier_sum += other._brier_sum
        self.n += other.n

    def compute(self) -> CalibrationResult:
        """Metrics and reliability data of all samples seen so far."""
        if self._counts is None or self.n == 0:
            nan_bins = np.full(self.n_bins, np.nan)
            empty = ReliabilityData(
                self._edges.copy(), nan_bins, nan_bins.copy(), np.zeros(self.n_bins, np.int64)
            )
            return CalibrationResult(
                math.nan,
                math.nan,
                math.nan,
                0,
                empty,
                [],
                0.0,
                self.binning,
                self.mode,
                self.n_bins,
            )
        assert self._sum_conf is not None and self._sum_acc is not None
        eces, mces, rels = [], [], []
        bound = 0.0
        for s in range(self._counts.shape[0]):
            if self.binning == "equal-width":
                counts, sc, sa = self._counts[s], self._sum_conf[s], self._sum_acc[s]
                edges = self._edges
                if self.edge_rule == "torchmetrics":
                    edges = np.append(edges, 1.0)
                else:
                    counts, sc, sa = counts[:-1], sc[:-1], sa[:-1]
            else:
                counts, sc, sa, edges, b = _coarsen_fine(
                    self._counts[s],
                    self._sum_conf[s],
                    self._sum_acc[s],
                    self._fine_edges,
                    self.n_bins,
                )
                bound = max(bound, b)
            ece, mce, conf, acc = _metrics_from_bins(counts, sc, sa, self.n)
            eces.append(ece)
            mces.append(mce)
            rels.append(ReliabilityData(edges, conf, acc, counts.copy()))
        return _combine_streams(
            eces,
            mces,
            rels,
            self._brier_sum / self.n,
            self.n,
            bound,
            self.binning,
            self.mode,
            self.n_bins,
        )


def _combine_streams(
    eces: list[float],
    mces: list[float],
    rels: list[ReliabilityData],
    brier: float,
    n: int,
    bound: float,
    binning: str,
    mode: str,
    n_bins: int,
) -> CalibrationResult:
    """Top-label: the single stream's metrics; class-wise: mean ECE and max finite MCE."""
    if mode == "top-label":
        return CalibrationResult(
            eces[0], mces[0], brier, n, rels[0], [], bound, binning, mode, n_bins
        )
    finite = [m for m in mces if not math.isnan(m)]
    return CalibrationResult(
        float(np.mean(eces)),
        max(finite) if finite else math.nan,
        brier,
        n,
        rels,
        [float(e) for e in eces],
        bound,
        binning,
        mode,
        n_bins,
    )


def _coarsen_fine(
    counts: np.ndarray,
    sum_conf: np.ndarray,
    sum_acc: np.ndarray,
    fine_edges: np.ndarray,
    n_bins: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Group fine sub-bins into ``n_bins`` near-equal-mass bins; return the error bound."""
    total = int(counts.sum())
    ranks = np.cumsum(_split_sizes(total, n_bins))[:-1]
    cum = np.concatenate([[0], np.cumsum(counts)])
    # the sub-bin edge whose cumulative count is closest to each exact boundary rank
    right = np.minimum(np.searchsorted(cum, ranks, side="left"), cum.size - 1)
    left = np.maximum(right - 1, 0)
    choose = np.where(np.abs(cum[left] - ranks) <= np.abs(cum[right] - ranks), left, right)
    if choose.size:
        choose = np.maximum.accumulate(choose)
    bounds = np.concatenate([[0], choose, [counts.size]]).astype(np.int64)
    moved = float(np.sum(np.abs(cum[choose] - ranks)))
    c_out = cum[bounds[1:]] - cum[bounds[:-1]]
    s_conf = _segment_sums(sum_conf, bounds)
    s_acc = _segment_sums(sum_acc, bounds)
    bound = 2.0 * moved / total if total else 0.0
    return c_out.astype(np.int64), s_conf, s_acc, fine_edges[bounds], bound


def _split_sizes(total: int, n_bins: int) -> np.ndarray:
    """Run lengths of ``numpy.array_split(range(total), n_bins)``."""
    sizes = np.full(n_bins, total // n_bins, dtype=np.int64)
    sizes[: total % n_bins] += 1
    return sizes


def _segment_sums(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sums of ``values[bounds[i]:bounds[i + 1]]`` (0 for an empty segment)."""
    out = np.zeros(bounds.size - 1)
    nonempty = bounds[:-1] < bounds[1:]
    if nonempty.any():
        out[nonempty] = np.add.reduceat(values, bounds[:-1][nonempty])
    return out


def _equal_mass_bins(
    conf: np.ndarray, acc: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact equal-mass split of sorted confidences: counts, sums and edges."""
    order = np.argsort(conf, kind="stable")
    c, a = conf[order], acc[order]
    sizes = _split_sizes(c.size, n_bins)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    if c.size:
        lower = np.where(sizes > 0, c[np.minimum(bounds[:-1], c.size - 1)], c[-1])
        edges = np.append(lower, c[-1])
    else:
        edges = np.full(n_bins + 1, np.nan)
    return sizes, _segment_sums(c, bounds), _segment_sums(a, bounds), edges


# ----------------------------------------------------------------------------------
# In-memory functions
# ----------------------------------------------------------------------------------


def calibration_summary(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    binning: Binning = "equal-width",
    mode: Mode = "top-label",
    edge_rule: EdgeRule = "right",
    class_axis: int = -1,
) -> CalibrationResult:
    """ECE, MCE, Brier score and reliability data in one pass over the input.

    Equal-width bins stream over chunks of the input (no full float64 copy); equal-mass
    bins sort all confidences (one float64 array per stream).

    Args:
        probs: Probabilities (see the module notes).
        labels: True classes.
        n_bins: Number of bins.
        binning: ``"equal-width"`` or ``"equal-mass"``.
        mode: ``"top-label"`` or ``"class-wise"``.
        edge_rule: Equal-width edge rule: ``"right"``, ``"left"`` or ``"torchmetrics"``.
        class_axis: Class axis of ``probs``.

    Returns:
        :class:`CalibrationResult`.

    Example:
        >>> r = calibration_summary([0.9, 0.8, 0.3, 0.6], [1, 1, 0, 0], n_bins=2)
        >>> round(r.ece, 12), round(r.brier, 4)  # one bin: confidence 0.75, accuracy 0.75
        (0.0, 0.125)
    """
    _check_options(n_bins, binning, mode, edge_rule)
    if binning == "equal-width":
        acc = StreamingCalibration(
            n_bins=n_bins, binning=binning, mode=mode, edge_rule=edge_rule, class_axis=class_axis
        )
        acc.update(probs, labels)
        return acc.compute()
    confs: list[np.ndarray] = []
    accs: list[np.ndarray] = []
    brier_sum, n, n_classes = 0.0, 0, None
    for p, y in iter_sample_chunks(probs, labels, class_axis=class_axis):
        p, y = _validate_chunk(p, y, n_classes)
        n_classes = p.shape[1]
        c, a = _streams(p, y, mode)
        confs.append(c)
        accs.append(a)
        brier_sum += _brier_terms(p, y)
        n += int(p.shape[0])
    if n == 0:
        return StreamingCalibration(n_bins=n_bins, binning=binning, mode=mode).compute()
    conf_all = np.concatenate(confs, axis=1)
    acc_all = np.concatenate(accs, axis=1)
    eces, mces, rels = [], [], []
    for s in range(conf_all.shape[0]):
        counts, sc, sa, edges = _equal_mass_bins(conf_all[s], acc_all[s], int(n_bins))
        ece, mce, conf, acc_bin = _metrics_from_bins(counts, sc, sa, n)
        eces.append(ece)
        mces.append(mce)
        rels.append(ReliabilityData(edges, conf, acc_bin, counts))
    return _combine_streams(eces, mces, rels, brier_sum / n, n, 0.0, binning, mode, int(n_bins))


def expected_calibration_error(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    binning: Binning = "equal-width",
    mode: Mode = "top-label",
    edge_rule: EdgeRule = "right",
    class_axis: int = -1,
) -> float:
    """Expected calibration error (see the module notes for the definitions).

    Example:
        >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]]
        >>> labels = [0, 1, 0, 1, 0, 1]
        >>> # bin [0.5, 0.75): conf 0.6, 0.7, 0.55 (2 right); [0.75, 1]: 0.9, 0.8, 0.8 (2 right)
        >>> round(expected_calibration_error(probs, labels, n_bins=4), 6)  # (0.15 + 0.5) / 6
        0.108333
    """
    return calibration_summary(
        probs,
        labels,
        n_bins=n_bins,
        binning=binning,
        mode=mode,
        edge_rule=edge_rule,
        class_axis=class_axis,
    ).ece


def maximum_calibration_error(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    binning: Binning = "equal-width",
    mode: Mode = "top-label",
    edge_rule: EdgeRule = "right",
    class_axis: int = -1,
) -> float:
    """Maximum calibration error: the largest bin gap ``|acc_b - conf_b|``.

    Example:
        >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]]
        >>> labels = [0, 1, 0, 1, 0, 1]
        >>> round(maximum_calibration_error(probs, labels, n_bins=4), 6)  # |2/3 - 2.5/3|
        0.166667
    """
    return calibration_summary(
        probs,
        labels,
        n_bins=n_bins,
        binning=binning,
        mode=mode,
        edge_rule=edge_rule,
        class_axis=class_axis,
    ).mce


def brier_score(probs: Any, labels: Any, *, class_axis: int = -1) -> float:
    """Brier score: mean of ``sum_k (p_k - [label == k])^2``, halved for two classes.

    Example:
        >>> brier_score([0.9, 0.2, 0.6], [1, 0, 0])  # binary: mean((p - y)^2)
        0.13666666666666666
    """
    total, n, n_classes = 0.0, 0, None
    for p, y in iter_sample_chunks(probs, labels, class_axis=class_axis):
        p, y = _validate_chunk(p, y, n_classes)
        n_classes = p.shape[1]
        total += _brier_terms(p, y)
        n += int(p.shape[0])
    return total / n if n else math.nan


def reliability_diagram(
    probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    binning: Binning = "equal-width",
    edge_rule: EdgeRule = "right",
    class_index: int | None = None,
    class_axis: int = -1,
) -> ReliabilityData:
    """Reliability-diagram data: per bin, mean confidence, accuracy and count.

    Args:
        probs: Probabilities (see the module notes).
        labels: True classes.
        n_bins: Number of bins.
        binning: ``"equal-width"`` or ``"equal-mass"``.
        edge_rule: Equal-width edge rule.
        class_index: ``None`` for the top-label diagram; a class for that class's
            (class-wise) diagram.
        class_axis: Class axis of ``probs``.

    Returns:
        :class:`ReliabilityData`.

    Example:
        >>> r = reliability_diagram([0.9, 0.8, 0.3, 0.6], [1, 1, 0, 0], n_bins=2)
        >>> r.counts.tolist(), r.accuracy.tolist()
        ([0, 4], [nan, 0.75])
    """
    mode: Mode = "top-label" if class_index is None else "class-wise"
    res = calibration_summary(
        probs,
        labels,
        n_bins=n_bins,
        binning=binning,
        mode=mode,
        edge_rule=edge_rule,
        class_axis=class_axis,
    )
    if class_index is None:
        assert isinstance(res.reliability, ReliabilityData)
        return res.reliability
    assert isinstance(res.reliability, list)
    if not 0 <= class_index < len(res.reliability):
        raise MetricInputError(
            f"class_index {class_index} is outside 0..{len(res.reliability) - 1}"
        )
    return res.reliability[class_index]
