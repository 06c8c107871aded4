"""Severity grading (none / mild / moderate / severe) with calibrated thresholds.

A drifted batch is graded by the size of its statistic against three
thresholds calibrated for the reference and the batch size:

* **detection** (``drift``): the ``1 - alpha`` quantile of the statistic's
  bootstrap null distribution: pseudo-references and pseudo-batches drawn
  with replacement from the reference. It also gives empirical p-values for
  tests without an analytic null (Wasserstein, PSI, JS, KL).
* **moderate** and **severe**, by method:

  - ``shift`` (default): the median statistic when bootstrap batches of the
    reference are shifted by ``moderate`` (0.5) or ``severe`` (1.0) reference
    standard deviations; probabilities are shifted on the logit scale. A
    batch is thus graded by the size of an equivalent mean shift of its
    outputs: below 0.5 SD mild, 0.5-1.0 moderate, above 1.0 severe.
  - ``null``: ``moderate_factor`` (2) and ``severe_factor`` (4) times the
    detection threshold.
  - ``fixed``: ``moderate`` and ``severe`` taken as statistic values.

Class-label outputs are graded by the total-variation distance between class
frequencies (``label_moderate`` 0.1, ``label_severe`` 0.25); the chi-squared
test decides whether they drifted at all.

A batch that did not drift is always ``none``; a drifted one is at least ``mild``.

Example:
    >>> import numpy as np
    >>> ref = np.random.default_rng(0).normal(size=1000)
    >>> cal = calibrate_column(ref, 200, "ks", "score")
    >>> cal.grade(cal.moderate * 1.01, drift=True)
    <Severity.moderate: 'moderate'>
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _stats

from medfleet.monitor.two_sample import bootstrap_null

LOGIT_CLIP = 1e-6
"""Probabilities are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before the logit."""


class Severity(enum.StrEnum):
    """Drift severity, ordered none < mild < moderate < severe."""

    none = "none"
    mild = "mild"
    moderate = "moderate"
    severe = "severe"

    @property
    def rank(self) -> int:
        """0 (none) to 3 (severe).

        Example:
            >>> Severity.severe.rank
            3
        """
        return _ORDER.index(self)

    @classmethod
    def worst(cls, levels: list[Severity]) -> Severity:
        """The highest of several levels (``none`` for an empty list).

        Example:
            >>> Severity.worst([Severity.mild, Severity.severe, Severity.none])
            <Severity.severe: 'severe'>
        """
        return max(levels, key=lambda s: s.rank, default=cls.none)


_ORDER = [Severity.none, Severity.mild, Severity.moderate, Severity.severe]


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds with probabilities clipped away from 0 and 1.

    Example:
        >>> float(logit(np.array(0.5)))
        0.0
    """
    q = np.clip(np.asarray(p, dtype=np.float64), LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(q / (1 - q))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`logit`.

    Example:
        >>> float(sigmoid(np.array(0.0)))
        0.5
    """
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def shift_outputs(values: np.ndarray, kind: str, size: float, scale: float) -> np.ndarray:
    """Shift outputs by ``size`` standard deviations (``scale``) of the reference.

    Probabilities move on the logit scale and stay in (0, 1); scores move directly.

    Example:
        >>> shift_outputs(np.array([0.5]), "probability", 1.0, 2.0).round(3).tolist()
        [0.881]
    """
    if kind == "probability":
        return sigmoid(logit(values) + size * scale)
    return np.asarray(values, dtype=np.float64) + size * scale


def reference_scale(values: np.ndarray, kind: str) -> float:
    """Standard deviation of the reference on the scale shifts act on (1.0 if degenerate).

    Example:
        >>> reference_scale(np.array([1.0, 3.0]), "score")
        1.0
    """
    v = logit(values) if kind == "probability" else np.asarray(values, dtype=np.float64)
    sd = float(np.std(v))
    return sd if np.isfinite(sd) and sd > 1e-12 else 1.0


def stable_seed(*parts: Any) -> int:
    """A seed derived from ``parts`` that is the same in every process (unlike ``hash``).

    Example:
        >>> stable_seed("site_a", "prob", 256) == stable_seed("site_a", "prob", 256)
        True
    """
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


@dataclass
class ColumnCalibration:
    """Thresholds for one output column, one test and one batch size.

    Attributes:
        test: Statistic name.
        n: Batch size calibrated for.
        null: Sorted bootstrap null statistics (empty for class labels, and for KS,
            whose null is analytic).
        drift: Detection threshold (the null's ``1 - alpha`` quantile; for KS the
            asymptotic critical value).
        moderate: Statistic where moderate starts.
        severe: Statistic where severe starts.
        version: Reference version the calibration was made from.
        label: True when graded by total-variation distance (class labels).
    """

    test: str
    n: int
    null: np.ndarray
    drift: float
    moderate: float
    severe: float
    version: int = 0
    label: bool = False

    def p_value(self, statistic: float) -> float:
        """Empirical p-value (1 + #{null >= statistic}) / (1 + #null).

        Example:
            >>> cal = ColumnCalibration("psi", 10, np.array([0.1, 0.2, 0.3]), 0.3, 1.0, 2.0)
            >>> cal.p_value(0.25)
            0.5
        """
        count = self.null.size - int(np.searchsorted(self.null, statistic, side="left"))
        return (1 + count) / (1 + self.null.size)

    def grade(self, statistic: float, drift: bool) -> Severity:
        """Severity of a batch with this statistic, given whether its test flagged drift.

        Example:
            >>> cal = ColumnCalibration("ks", 10, np.array([]), 0.1, 0.2, 0.4)
            >>> [cal.grade(s, True).value for s in (0.05, 0.3, 0.5)]
            ['mild', 'moderate', 'severe']
            >>> cal.grade(0.5, False).value
            'none'
        """
        if not drift:
            return Severity.none
        if statistic >= self.severe:
            return Severity.severe
        if statistic >= self.moderate:
            return Severity.moderate
        return Severity.mild

    def thresholds(self) -> dict[str, float]:
        """The three thresholds, for reports and charts."""
        return {"drift": self.drift, "moderate": self.moderate, "severe": self.severe}

    def to_state(self) -> dict[str, Any]:
        """JSON-ready form (the null is stored as a list)."""
        return {
            "test": self.test,
            "n": self.n,
            "null": [float(x) for x in self.null],
            "drift": self.drift,
            "moderate": self.moderate,
            "severe": self.severe,
            "version": self.version,
            "label": self.label,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ColumnCalibration:
        """Inverse of :meth:`to_state`."""
        return cls(**{**data, "null": np.asarray(data["null"], dtype=np.float64)})


def calibrate_column(
    ref: np.ndarray,
    n: int,
    test: str,
    kind: str,
    *,
    method: str = "shift",
    alpha: float = 0.05,
    moderate: float = 0.5,
    severe: float = 1.0,
    moderate_factor: float = 2.0,
    severe_factor: float = 4.0,
    n_boot: int = 200,
    n_shift_boot: int = 40,
    bins: int = 10,
    max_reference: int = 2000,
    seed: int = 0,
    version: int = 0,
) -> ColumnCalibration:
    """Calibrate detection and severity thresholds for one continuous output column.

    Args:
        ref: Reference values of the column.
        n: Batch size to calibrate for.
        test: ``ks``, ``wasserstein``, ``psi``, ``js`` or ``kl``.
        kind: ``probability`` or ``score`` (how shifts act).
        method: ``shift``, ``null`` or ``fixed`` (see the module docstring).
        alpha: Level of the detection threshold.
        moderate: Shift size (``shift``) or value (``fixed``) where moderate starts.
        severe: Shift size or value where severe starts.
        moderate_factor: Multiple of the detection threshold (``null``).
        severe_factor: Multiple of the detection threshold (``null``).
        n_boot: Null bootstrap draws.
        n_shift_boot: Draws per shifted calibration.
        bins: Histogram bins for PSI/JS/KL.
        max_reference: Reference rows used (a seeded random subset beyond it).
        seed: Random seed.
        version: Reference version, recorded.

    Returns:
        The calibration; moderate/severe are forced above the detection threshold
        and increasing.

    Example:
        >>> ref = np.random.default_rng(1).beta(2, 5, size=800)
        >>> cal = calibrate_column(ref, 300, "ks", "probability", n_boot=100)
        >>> cal.drift < cal.moderate < cal.severe
        True
    """
    r = np.asarray(ref, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    if r.size > max_reference:
        r = r[rng.choice(r.size, max_reference, replace=False)]
    if test == "ks" and method != "null":
        # KS has an analytic null: no bootstrap needed for detection.
        null = np.array([])
        drift = ks_critical_value(r.size, n, alpha)
    else:
        null = np.sort(bootstrap_null(r, n, test, n_boot=n_boot, seed=seed, bins=bins))
        drift = float(np.quantile(null, 1 - alpha))
    if method == "shift":
        scale = reference_scale(r, kind)
        levels = []
        for i, size in enumerate((moderate, severe)):
            shifted = bootstrap_null(
                r,
                n,
                test,
                n_boot=n_shift_boot,
                seed=seed + 1 + i,
                bins=bins,
                transform=lambda x, s=size: shift_outputs(x, kind, s, scale),
            )
            levels.append(float(np.median(shifted)))
        t_mod, t_sev = levels
    elif method == "null":
        t_mod, t_sev = drift * moderate_factor, drift * severe_factor
    elif method == "fixed":
        t_mod, t_sev = float(moderate), float(severe)
    else:
        raise ValueError(f"unknown threshold method {method!r}; use shift, null or fixed")
    tiny = 1e-12
    t_mod = max(t_mod, drift + tiny)
    t_sev = max(t_sev, t_mod + tiny)
    return ColumnCalibration(test, int(n), null, drift, t_mod, t_sev, version)


def ks_critical_value(m: int, n: int, alpha: float) -> float:
    """Smallest KS statistic with asymptotic p-value below ``alpha`` for samples of m and n.

    Example:
        >>> round(ks_critical_value(1000, 1000, 0.05), 3)
        0.06
    """
    big, small = max(m, n), min(m, n)
    return float(_stats.kstwo.isf(alpha, np.round(big * small / (big + small))))


def label_calibration(
    moderate: float = 0.1, severe: float = 0.25, version: int = 0
) -> ColumnCalibration:
    """Calibration for class labels: graded by total-variation distance of class frequencies.

    Example:
        >>> label_calibration().grade(0.3, drift=True).value
        'severe'
    """
    return ColumnCalibration("tv", 0, np.array([]), 0.0, moderate, severe, version, label=True)


def total_variation(ref: np.ndarray, cur: np.ndarray) -> float:
    """Total-variation distance between the class frequencies of two label samples.

    Example:
        >>> total_variation(np.array([0, 0, 1, 1]), np.array([1, 1, 1, 1]))
        0.5
    """
    classes, inverse = np.unique(np.concatenate([ref, cur]), return_inverse=True)
    m = len(ref)
    p = np.bincount(inverse[:m], minlength=len(classes)) / m
    q = np.bincount(inverse[m:], minlength=len(classes)) / len(cur)
    return float(0.5 * np.abs(p - q).sum())


def n_bucket(n: int) -> int:
    """Batch size rounded to a half-power of two, so calibrations are reused across similar sizes.

    Example:
        >>> [n_bucket(n) for n in (100, 128, 1000, 1100)]
        [91, 128, 1024, 1024]
    """
    if n <= 8:
        return max(int(n), 1)
    return round(2 ** (round(float(np.log2(n)) * 2) / 2))
