"""Regression metrics: MAE, RMSE, bias and Bland-Altman limits of agreement.

Conventions:

* The error is ``pred - true`` (so a positive bias means the prediction is too large).
* Bland-Altman: differences ``d = pred - true`` against means ``(pred + true) / 2``;
  bias = mean(d), SD = std(d, ddof=1) (sample SD, as Bland and Altman 1986), limits of
  agreement = bias -/+ 1.96 SD. With one sample, SD and the limits are ``nan``.
* Inputs must be finite; a ``nan`` is an error (leave missing cases out, or score them
  explicitly, before calling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "BlandAltman",
    "bias",
    "bland_altman",
    "mae",
    "regression_metrics",
    "rmse",
]


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {len(t)} and {len(p)}")
    if len(t) == 0:
        raise ValueError("y_true and y_pred are empty: at least one sample is needed")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(
                f"{name}[{int(np.flatnonzero(bad)[0])}] is not finite; "
                "drop or score missing values before computing regression metrics"
            )
    return t, p


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error, mean(|pred - true|).

    Example:
        >>> mae([1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
        0.5
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t)))


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error, sqrt(mean((pred - true)^2)).

    Example:
        >>> rmse([0.0, 0.0], [3.0, 4.0])
        3.5355339059327378
    """
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def bias(y_true: Any, y_pred: Any) -> float:
    """Mean signed error, mean(pred - true).

    Example:
        >>> bias([1.0, 2.0], [2.0, 2.5])
        0.75
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(p - t))


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman agreement of two measurements.

    Attributes:
        bias: Mean difference (pred - true).
        sd: Sample standard deviation of the differences (ddof=1).
        lower: Lower limit of agreement, bias - k * sd.
        upper: Upper limit of agreement, bias + k * sd.
        k: Multiplier of the SD (1.96 for 95 % limits).
        n: Number of pairs.
    """

    bias: float
    sd: float
    lower: float
    upper: float
    k: float
    n: int

    def as_dict(self) -> dict[str, float]:
        """The fields as a plain dictionary."""
        return asdict(self)


def bland_altman(y_true: Any, y_pred: Any, k: float = 1.96) -> BlandAltman:
    """Bland-Altman bias and limits of agreement.

    Args:
        y_true: Reference measurements.
        y_pred: New measurements.
        k: SD multiplier (1.96 gives 95 % limits for normal differences).

    Returns:
        The bias, SD and limits.

    Example:
        >>> ba = bland_altman([10.0, 20.0, 30.0], [11.0, 21.0, 33.0])
        >>> round(ba.bias, 6), round(ba.sd, 6), round(ba.upper, 6)
        (1.666667, 1.154701, 3.92988)
    """
    t, p = _pair(y_true, y_pred)
    d = p - t
    mean = float(np.mean(d))
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else float("nan")
    return BlandAltman(bias=mean, sd=sd, lower=mean - k * sd, upper=mean + k * sd, k=k, n=len(d))


def regression_metrics(y_true: Any, y_pred: Any, k: float = 1.96) -> dict[str, float]:
    """MAE, RMSE, bias, SD of the error and the Bland-Altman limits, as one dictionary.

    Example:
        >>> m = regression_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 3.0])
        >>> round(m["mae"], 4), round(m["rmse"], 4), round(m["loa_upper"], 4)
        (0.3333, 0.5774, 1.4649)
    """
    t, p = _pair(y_true, y_pred)
    ba = bland_altman(t, p, k)
    return {
        "n": len(t),
        "mae": mae(t, p),
        "rmse": rmse(t, p),
        "bias": ba.bias,
        "sd": ba.sd,
        "loa_lower": ba.lower,
        "loa_upper": ba.upper,
    }
