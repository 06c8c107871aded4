"""Classification metrics for binary, multiclass and multilabel problems (numpy only).

Inputs:

* **binary / multiclass**: ``y_true`` and ``y_pred`` are 1-D sequences of class labels
  (integers or strings); ``y_score`` is a 1-D score of the positive class (binary) or an
  ``(n_samples, n_classes)`` array whose columns follow ``labels`` (multiclass).
* **multilabel**: ``y_true``, ``y_pred`` and ``y_score`` are ``(n_samples, n_labels)``
  arrays; truth and prediction hold 0/1 indicators.

Conventions (the same as scikit-learn unless noted):

* ``labels`` defaults to the sorted union of the labels seen in ``y_true`` and ``y_pred``;
  a label outside an explicit ``labels`` list is an error (scikit-learn silently drops it).
* One-vs-rest counts per class: TP, FP, FN, TN. Sensitivity = TP/(TP+FN),
  specificity = TN/(TN+FP), PPV = TP/(TP+FP), NPV = TN/(TN+FN), F1 = 2TP/(2TP+FP+FN).
* ``average``: ``"binary"`` (the ``pos_label`` class only), ``"macro"`` (unweighted mean over
  classes), ``"weighted"`` (mean weighted by the number of true samples of each class),
  ``"micro"`` (counts pooled over classes) or ``None`` (one value per class).
* ``zero_division``: the value of a ratio whose denominator is 0 (default 0.0, as
  scikit-learn's default). With ``zero_division=nan`` the undefined classes are left out of
  macro and weighted averages (as scikit-learn does with ``zero_division=np.nan``).
* ``pos_label`` defaults to 1 (or ``True``) when the labels are a subset of {0, 1} or
  {-1, 1}; otherwise it must be given.
* Balanced accuracy is the mean recall over the classes present in ``y_true``; for
  multilabel input it is the mean over labels of (sensitivity + specificity) / 2.
* MCC is the multiclass R_K statistic (Gorodkin 2004); 0.0 when its denominator is 0.
  For multilabel input it is the macro mean of the per-label binary MCC.
* AUC is the Mann-Whitney statistic with ties counted as one half (exactly the trapezoidal
  ROC area). Multiclass AUC is one-vs-rest with ``average`` ``"macro"`` or ``"weighted"``
  (by prevalence); a class whose AUC is undefined (no positive or no negative sample) gives
  ``nan`` and makes the average ``nan``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "OneVsRestCounts",
    "accuracy",
    "balanced_accuracy",
    "binary_auc",
    "classification_metrics",
    "confusion_matrix",
    "f1_score",
    "matthews_corrcoef",
    "npv",
    "one_vs_rest_counts",
    "ppv",
    "roc_auc",
    "sensitivity",
    "specificity",
]

Average = Literal["binary", "macro", "weighted", "micro"] | None


@dataclass(frozen=True)
class OneVsRestCounts:
    """One-vs-rest confusion counts, one entry per class (or per label for multilabel).

    Attributes:
        labels: The classes, in the order of the count arrays.
        tp: True positives per class.
        fp: False positives per class.
        fn: False negatives per class.
        tn: True negatives per class.
    """

    labels: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def support(self) -> np.ndarray:
        """Number of true samples of each class (TP + FN)."""
        return self.tp + self.fn


def _is_multilabel(y: Any) -> bool:
    return np.ndim(y) == 2


def _as_1d(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample), got shape {arr.shape}")
    return arr


def _check_same_length(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names} have different lengths: {len(a)} and {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{names} are empty: at least one sample is needed")


def _resolve_labels(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[Any] | None
) -> np.ndarray:
    if labels is None:
        return np.unique(np.concatenate([y_true, y_pred]))
    out = np.asarray(list(labels))
    if len(out) == 0:
        raise ValueError("labels is empty")
    if len(np.unique(out)) != len(out):
        raise ValueError(f"labels contains duplicates: {list(out)}")
    return out


def _encode(y: np.ndarray, labels: np.ndarray, name: str) -> np.ndarray:
    """Index of each value of ``y`` in ``labels``; an unknown value is an error naming it."""
    try:
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        pos = np.clip(np.searchsorted(sorted_labels, y), 0, len(labels) - 1)
        found = sorted_labels[pos] == y
    except TypeError:  # labels of mixed types: fall back to a dictionary
        index = {_plain(v): i for i, v in enumerate(labels)}
        out = np.array([index.get(_plain(v), -1) for v in y], dtype=np.intp)
        found = out >= 0
    else:
        out = order[pos].astype(np.intp)
    if not np.all(found):
        i = int(np.flatnonzero(~np.asarray(found))[0])
        raise ValueError(
            f"{name}[{i}] = {_plain(y[i])!r} is not one of the labels "
            f"{[_plain(v) for v in labels]}; add it to labels or fix the value"
        )
    return out


def _plain(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar (for messages and dictionary keys)."""
    return value.item() if isinstance(value, np.generic) else value


def _as_indicator(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_samples, n_labels) indicator array")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 (or boolean) indicators for multilabel input")
    return arr.astype(bool)


def confusion_matrix(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None = None
) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of samples of true class i predicted as class j.

    Args:
        y_true: True labels, 1-D.
        y_pred: Predicted labels, 1-D.
        labels: Class order of the rows and columns; defaults to the sorted union.

    Returns:
        An ``(n_classes, n_classes)`` int64 array.

    Example:
        >>> confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2]).tolist()
        [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    """
    t = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    _check_same_length(t, p, "y_true and y_pred")
    lab = _resolve_labels(t, p, labels)
    k = len(lab)
    ti = _encode(t, lab, "y_true")
    pi = _encode(p, lab, "y_pred")
    return np.bincount(ti * k + pi, minlength=k * k).reshape(k, k).astype(np.int64)


def one_vs_rest_counts(
    y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None
) -> OneVsRestCounts:
    """TP, FP, FN and TN of every class against the rest.

    Args:
        y_true: True labels (1-D) or a multilabel indicator array.
        y_pred: Predicted labels (1-D) or a multilabel indicator array.
        labels: Class order (1-D input) or label names (multilabel; default 0..k-1).

    Returns:
        The counts per class.

    Example:
        >>> c = one_vs_rest_counts([0, 0, 1, 1], [0, 1, 1, 1])
        >>> c.tp.tolist(), c.fp.tolist(), c.fn.tolist(), c.tn.tolist()
        ([1, 2], [0, 1], [1, 0], [2, 1])
    """
    if _is_multilabel(y_true) or _is_multilabel(y_pred):
        t = _as_indicator(y_true, "y_true")
        p = _as_indicator(y_pred, "y_pred")
        if t.shape != p.shape:
            raise ValueError(f"y_true and y_pred have different shapes: {t.shape} and {p.shape}")
        if t.shape[0] == 0:
            raise ValueError("y_true and y_pred are empty: at least one sample is needed")
        names = np.arange(t.shape[1]) if labels is None else np.asarray(list(labels))
        if len(names) != t.shape[1]:
            raise ValueError(
                f"labels has {len(names)} names but the arrays have {t.shape[1]} labels"
            )
        tp = (t & p).sum(axis=0)
        fp = (~t & p).sum(axis=0)
        fn = (t & ~p).sum(axis=0)
        tn = (~t & ~p).sum(axis=0)
        return OneVsRestCounts(
            names,
            tp.astype(np.int64),
            fp.astype(np.int64),
            fn.astype(np.int64),
            tn.astype(np.int64),
        )
    t = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    lab = _resolve_labels(t, p, labels)
    cm = confusion_matrix(t, p, lab)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return OneVsRestCounts(lab, tp, fp, fn, tn)


def _default_pos_label(labels: np.ndarray) -> Any:
    values = {_plain(v) for v in labels}
    if values <= {0, 1} or values <= {-1, 1}:
        return 1
    raise ValueError(
        f"average='binary' needs pos_label for labels {sorted(map(str, values))}; "
        "pass pos_label (the positive class)"
    )


def _ratio(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, float(zero_division), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _averaged(
    counts: OneVsRestCounts,
    num_den: Any,
    average: Average,
    pos_label: Any,
    zero_division: float,
) -> float | np.ndarray:
    """Apply ``num_den(tp, fp, fn, tn) -> (numerator, denominator)`` with an averaging mode."""
    if average == "micro":
        num, den = num_den(counts.tp.sum(), counts.fp.sum(), counts.fn.sum(), counts.tn.sum())
        return float(_ratio(np.asarray(num), np.asarray(den), zero_division))
    num, den = num_den(counts.tp, counts.fp, counts.fn, counts.tn)
    per_class = _ratio(num, den, zero_division)
    if average is None:
        return per_class
    if average == "binary":
        if pos_label is None:
            pos_label = _default_pos_label(counts.labels)
        matches = [i for i, v in enumerate(counts.labels) if v == pos_label]
        if not matches:
            raise ValueError(
                f"pos_label {pos_label!r} is not one of the labels {list(counts.labels)}"
            )
        if len(counts.labels) > 2:
            raise ValueError(
                f"average='binary' needs at most 2 classes, got {len(counts.labels)}; "
                "use average='macro', 'weighted', 'micro' or None"
            )
        return float(per_class[matches[0]])
    if average in ("macro", "weighted"):
        keep = ~np.isnan(per_class)
        if not keep.any():
            return float("nan")
        if average == "macro":
            return float(per_class[keep].mean())
        weights = counts.support[keep].astype(np.float64)
        if weights.sum() == 0:
            return float(zero_division)
        return float(np.average(per_class[keep], weights=weights))
    raise ValueError(
        f"unknown average {average!r}; use 'binary', 'macro', 'weighted', 'micro' or None"
    )


#: Numerator and denominator of each one-vs-rest ratio, from (TP, FP, FN, TN).
_NUM_DEN: dict[str, Callable[..., tuple[Any, Any]]] = {
    "sensitivity": lambda tp, fp, fn, tn: (tp, tp + fn),
    "specificity": lambda tp, fp, fn, tn: (tn, tn + fp),
    "ppv": lambda tp, fp, fn, tn: (tp, tp + fp),
    "npv": lambda tp, fp, fn, tn: (tn, tn + fn),
    "f1": lambda tp, fp, fn, tn: (2 * tp, 2 * tp + fp + fn),
}


def _counted(
    name: str,
    y_true: Any,
    y_pred: Any,
    average: Average,
    labels: Sequence[Any] | None,
    pos_label: Any,
    zero_division: float,
) -> float | np.ndarray:
    counts = one_vs_rest_counts(y_true, y_pred, labels)
    return _averaged(counts, _NUM_DEN[name], average, pos_label, zero_division)


def sensitivity(
    y_true: Any,
    y_pred: Any,
    *,
    average: Average = "binary",
    labels: Sequence[Any] | None = None,
    pos_label: Any = None,
    zero_division: float = 0.0,
) -> float | np.ndarray:
    """Sensitivity (recall, true-positive rate) = TP / (TP + FN).

    Args:
        y_true: True labels (1-D) or multilabel indicators.
        y_pred: Predicted labels (1-D) or multilabel indicators.
        average: ``"binary"``, ``"macro"``, ``"weighted"``, ``"micro"`` or ``None``.
        labels: Class order; defaults to the sorted union of seen labels.
        pos_label: Positive class for ``average="binary"``.
        zero_division: Value when TP + FN = 0.

    Returns:
        A float, or one value per class when ``average`` is ``None``.

    Example:
        >>> sensitivity([0, 1, 1, 1], [0, 1, 0, 1])
        0.6666666666666666
    """
    return _counted("sensitivity", y_true, y_pred, average, labels, pos_label, zero_division)


def specificity(
    y_true: Any,
    y_pred: Any,
    *,
    average: Average = "binary",
    labels: Sequence[Any] | None = None,
    pos_label: Any = None,
    zero_division: float = 0.0,
) -> float | np.ndarray:
    """Specificity (true-negative rate) = TN / (TN + FP), one class against the rest.

    Arguments as in :func:`sensitivity`; ``zero_division`` applies when TN + FP = 0.

    Example:
        >>> specificity([0, 0, 0, 1], [0, 1, 0, 1])
        0.6666666666666666
    """
    return _counted("specificity", y_true, y_pred, average, labels, pos_label, zero_division)


def ppv(
    y_true: Any,
    y_pred: Any,
    *,
    average: Average = "binary",
    labels: Sequence[Any] | None = None,
    pos_label: Any = None,
    zero_division: float = 0.0,
) -> float | np.ndarray:
    """Positive predictive value (precision) = TP / (TP + FP).

    Arguments as in :func:`sensitivity`; ``zero_division`` applies when TP + FP = 0.

    Example:
        >>> ppv([0, 0, 1, 1], [1, 0, 1, 1])
        0.6666666666666666
    """
    return _counted("ppv", y_true, y_pred, average, labels, pos_label, zero_division)


def npv(
    y_true: Any,
    y_pred: Any,
    *,
    average: Average = "binary",
    labels: Sequence[Any] | None = None,
    pos_label: Any = None,
    zero_division: float = 0.0,
) -> float | np.ndarray:
    """Negative predictive value = TN / (TN + FN).

    Arguments as in :func:`sensitivity`; ``zero_division`` applies when TN + FN = 0.

    Example:
        >>> npv([0, 1, 1, 0], [0, 0, 1, 0])
        0.6666666666666666
    """
    return _counted("npv", y_true, y_pred, average, labels, pos_label, zero_division)


def f1_score(
    y_true: Any,
    y_pred: Any,
    *,
    average: Average = "binary",
    labels: Sequence[Any] | None = None,
    pos_label: Any = None,
    zero_division: float = 0.0,
) -> float | np.ndarray:
    """F1 = 2 TP / (2 TP + FP + FN), the harmonic mean of PPV and sensitivity.

    Arguments as in :func:`sensitivity`; ``zero_division`` applies when 2TP + FP + FN = 0.
    Macro F1 is the mean of the per-class F1 values (not the F1 of mean PPV and recall).

    Example:
        >>> f1_score([0, 1, 2, 2], [0, 2, 2, 2], average="macro")
        0.6
    """
    return _counted("f1", y_true, y_pred, average, labels, pos_label, zero_division)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples predicted exactly right (subset accuracy for multilabel input).

    Example:
        >>> accuracy([0, 1, 2, 2], [0, 2, 2, 2])
        0.75
    """
    if _is_multilabel(y_true) or _is_multilabel(y_pred):
        t = _as_indicator(y_true, "y_true")
        p = _as_indicator(y_pred, "y_pred")
        if t.shape != p.shape:
            raise ValueError(f"y_true and y_pred have different shapes: {t.shape} and {p.shape}")
        if t.shape[0] == 0:
            raise ValueError("y_true and y_pred are empty: at least one sample is needed")
        return float((t == p).all(axis=1).mean())
    t = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    _check_same_length(t, p, "y_true and y_pred")
    return float(np.mean(t == p))


def balanced_accuracy(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Mean per-class recall over the classes present in ``y_true``.

    For multilabel input: the mean over labels of (sensitivity + specificity) / 2, where an
    undefined rate (no positive or no negative sample of a label) is left out of its label.

    Example:
        >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
        0.5
    """
    counts = one_vs_rest_counts(y_true, y_pred, labels)
    if _is_multilabel(y_true):
        sens = _ratio(counts.tp, counts.tp + counts.fn, np.nan)
        spec = _ratio(counts.tn, counts.tn + counts.fp, np.nan)
        per_label = np.nanmean(np.stack([sens, spec]), axis=0)
        return float(np.mean(per_label))
    present = counts.support > 0
    return float(np.mean(counts.tp[present] / counts.support[present]))


def _binary_mcc(tp: float, fp: float, fn: float, tn: float) -> float:
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    if den == 0:
        return 0.0
    return float((tp * tn - fp * fn) / np.sqrt(den))


def matthews_corrcoef(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> float:
    """Matthews correlation coefficient (multiclass R_K; 0.0 when undefined).

    For multilabel input: the macro mean of the per-label binary MCC.

    Example:
        >>> round(matthews_corrcoef([0, 0, 1, 1], [0, 1, 1, 1]), 6)
        0.57735
    """
    if _is_multilabel(y_true) or _is_multilabel(y_pred):
        c = one_vs_rest_counts(y_true, y_pred, labels)
        values = [
            _binary_mcc(float(a), float(b), float(d), float(e))
            for a, b, d, e in zip(c.tp, c.fp, c.fn, c.tn, strict=True)
        ]
        return float(np.mean(values))
    t = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    cm = confusion_matrix(t, p, _resolve_labels(t, p, labels)).astype(np.float64)
    t_k = cm.sum(axis=1)
    p_k = cm.sum(axis=0)
    c = np.trace(cm)
    s = cm.sum()
    den = (s * s - p_k @ p_k) * (s * s - t_k @ t_k)
    if den == 0:
        return 0.0
    return float((c * s - t_k @ p_k) / np.sqrt(den))


def binary_auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve by the Mann-Whitney U statistic (ties count one half).

    Args:
        y_true: Boolean (or 0/1) truth per sample.
        y_score: Score per sample; larger means more likely positive.

    Returns:
        The AUC, or ``nan`` when ``y_true`` holds only one class.

    Example:
        >>> binary_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
        >>> binary_auc([0, 1], [0.5, 0.5])
        0.5
    """
    t = np.asarray(y_true)
    if t.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {t.shape}")
    if not np.isin(t, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 (or boolean) values for a binary AUC")
    t = t.astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    if s.shape != t.shape:
        raise ValueError(f"y_score has shape {s.shape} but y_true has shape {t.shape}")
    if not np.isfinite(s).all():
        raise ValueError("y_score contains NaN or infinite values")
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # scipy.stats takes ~0.6 s to import: only when used

    ranks = rankdata(s, method="average")
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc(
    y_true: Any,
    y_score: Any,
    *,
    average: Literal["macro", "weighted"] | None = "macro",
    labels: Sequence[Any] | None = None,
    pos_label: Any = None,
) -> float | np.ndarray:
    """ROC AUC for binary, multiclass (one-vs-rest) or multilabel input.

    Args:
        y_true: True labels (1-D) or a multilabel indicator array.
        y_score: Binary: 1-D score of ``pos_label``. Multiclass: ``(n, k)`` scores whose
            columns follow ``labels``. Multilabel: ``(n, k)`` scores.
        average: ``"macro"`` or ``"weighted"`` (by prevalence) over classes, or ``None``
            for one AUC per class. Ignored for binary input.
        labels: Class order (multiclass; defaults to the sorted labels of ``y_true``,
            which must then number as many as the score columns).
        pos_label: Positive class of a binary problem (default 1 for {0,1} labels).

    Returns:
        The AUC (``nan`` where undefined), or one value per class.

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
        >>> roc_auc([0, 1, 2, 2], [[.8, .1, .1], [.2, .7, .1], [.1, .2, .7], [.3, .3, .4]])
        1.0
    """
    score = np.asarray(y_score, dtype=np.float64)
    if not np.isfinite(score).all():
        raise ValueError("y_score contains NaN or infinite values")
    if _is_multilabel(y_true):
        t = _as_indicator(y_true, "y_true")
        if score.shape != t.shape:
            raise ValueError(f"y_score has shape {score.shape} but y_true has shape {t.shape}")
        per_class = np.array([binary_auc(t[:, j], score[:, j]) for j in range(t.shape[1])])
        weights = t.sum(axis=0).astype(np.float64)
    else:
        t = _as_1d(y_true, "y_true")
        if score.ndim == 1:
            lab = _resolve_labels(t, t, labels)
            if len(lab) > 2:
                raise ValueError(
                    f"a 1-D y_score needs a binary problem, but y_true has {len(lab)} classes; "
                    "pass one score column per class"
                )
            if pos_label is None:
                pos_label = _default_pos_label(lab)
            return binary_auc(t == pos_label, score)
        lab = np.unique(t) if labels is None else np.asarray(list(labels))
        if score.ndim != 2 or score.shape != (len(t), len(lab)):
            raise ValueError(
                f"y_score must have shape (n_samples, n_classes) = ({len(t)}, {len(lab)}), "
                f"got {score.shape}; pass labels in the order of the score columns"
            )
        idx = _encode(t, lab, "y_true")
        per_class = np.array([binary_auc(idx == j, score[:, j]) for j in range(len(lab))])
        weights = np.bincount(idx, minlength=len(lab)).astype(np.float64)
    if average is None:
        return per_class
    if average == "macro":
        return float(np.mean(per_class))
    if average == "weighted":
        return float(np.average(per_class, weights=weights)) if weights.sum() > 0 else float("nan")
    raise ValueError(f"unknown average {average!r}; use 'macro', 'weighted' or None")


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    y_score: Any = None,
    *,
    labels: Sequence[Any] | None = None,
    pos_label: Any = None,
    zero_division: float = 0.0,
) -> dict[str, Any]:
    """All classification metrics at once, as a flat dictionary.

    Binary problems (two classes, with ``pos_label`` given or {0,1}/{-1,1} labels) report
    the positive-class sensitivity, specificity, PPV, NPV and F1; other problems report the
    macro and weighted means (keys ``*_macro`` / ``*_weighted``). Per-class values are in
    ``per_class``; AUC keys appear only when ``y_score`` is given.

    Args:
        y_true: True labels (1-D) or multilabel indicators.
        y_pred: Predicted labels (1-D) or multilabel indicators.
        y_score: Optional scores (see :func:`roc_auc`).
        labels: Class order (also the column order of a 2-D ``y_score``).
        pos_label: Positive class of a binary problem.
        zero_division: Value of a ratio with a zero denominator.

    Returns:
        A dictionary of metric name to value.

    Example:
        >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], [0.2, 0.6, 0.7, 0.9])
        >>> m["accuracy"], m["sensitivity"], m["specificity"], m["auc"]
        (0.75, 1.0, 0.5, 1.0)
    """
    multilabel = _is_multilabel(y_true)
    counts = one_vs_rest_counts(y_true, y_pred, labels)
    lab = counts.labels
    out: dict[str, Any] = {
        "n_samples": len(np.asarray(y_true)),
        "accuracy": accuracy(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, lab),
        "mcc": matthews_corrcoef(y_true, y_pred, lab),
    }
    binary = not multilabel and len(lab) == 2
    if binary and pos_label is None:
        try:
            pos_label = _default_pos_label(lab)
        except ValueError:
            binary = False
    per_class: dict[str, dict[str, float]] = {str(v): {} for v in lab}
    for name, nd in _NUM_DEN.items():  # every average from the one set of counts
        if binary:
            out[name] = _averaged(counts, nd, "binary", pos_label, zero_division)
        out[f"{name}_macro"] = _averaged(counts, nd, "macro", None, zero_division)
        out[f"{name}_weighted"] = _averaged(counts, nd, "weighted", None, zero_division)
        per_cls = _averaged(counts, nd, None, None, zero_division)
        for v, value in zip(lab, np.asarray(per_cls), strict=True):
            per_class[str(v)][name] = float(value)
    for v, support in zip(lab, counts.support, strict=True):
        per_class[str(v)]["support"] = int(support)
    out["per_class"] = per_class
    if not multilabel:
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, lab).tolist()
        out["labels"] = [_plain(v) for v in lab]
    if y_score is not None:
        score = np.asarray(y_score, dtype=np.float64)
        if binary and score.ndim == 1:
            out["auc"] = roc_auc(y_true, score, labels=lab, pos_label=pos_label)
        elif binary and score.ndim == 2:
            pos_col = next(i for i, v in enumerate(lab) if v == pos_label)
            out["auc"] = roc_auc(y_true, score[:, pos_col], labels=lab, pos_label=pos_label)
        else:
            out["auc_macro"] = roc_auc(y_true, score, average="macro", labels=lab)
            out["auc_weighted"] = roc_auc(y_true, score, average="weighted", labels=lab)
    return out
