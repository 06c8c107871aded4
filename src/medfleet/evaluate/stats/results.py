"""Result records of the statistics in :mod:`medfleet.evaluate.stats`.

Every record is a frozen dataclass with a ``to_dict()`` that gives plain Python values (NaN
stays ``float("nan")``; pass the dictionary through
:func:`medfleet.utils.jsonsafe.json_safe`, also importable as
``medfleet.evaluate.runner.aggregate.json_safe``, before writing strict JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CI", "DeLongResult", "PairedResult", "TestResult"]


@dataclass(frozen=True)
class CI:
    """A point estimate with a two-sided confidence interval.

    Attributes:
        estimate: The statistic on the cases that were used.
        low: Lower bound of the interval.
        high: Upper bound of the interval.
        confidence: Coverage of the interval (e.g. 0.95).
        n: Number of cases used (after the NaN policy).
        method: How the interval was made (``"percentile"``, ``"bca"``, ``"delong"``...).
        n_dropped: Cases left out by the NaN policy.

    Example:
        >>> ci = CI(estimate=0.8, low=0.7, high=0.9, confidence=0.95, n=40)
        >>> round(ci.width, 6), ci.contains(0.75)
        (0.2, True)
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    method: str = "percentile"
    n_dropped: int = 0

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def contains(self, value: float) -> bool:
        """Whether ``low <= value <= high``."""
        return bool(self.low <= value <= self.high)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of two methods on the same cases: the difference ``b - a``.

    Attributes:
        estimate: ``statistic(b) - statistic(a)`` on the paired cases.
        low: Lower bound of the confidence interval of the difference.
        high: Upper bound of the confidence interval of the difference.
        confidence: Coverage of the interval.
        n: Number of paired cases used.
        p_value: Two-sided p-value for "no difference".
        estimate_a: ``statistic(a)``.
        estimate_b: ``statistic(b)``.
        method: How the interval was made.
        n_dropped: Pairs left out by the NaN policy.

    Example:
        >>> r = PairedResult(0.1, 0.02, 0.18, 0.95, 30, 0.01, 0.7, 0.8)
        >>> r.significant(0.05)
        True
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    p_value: float
    estimate_a: float
    estimate_b: float
    method: str = "percentile"
    n_dropped: int = 0

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether ``p_value < alpha``."""
        return bool(self.p_value < alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class TestResult:
    """Outcome of a hypothesis test: one statistic and one p-value.

    The drift monitor's two-sample tests return
    :class:`medfleet.monitor.two_sample.DriftTestResult` instead: arrays with one entry per
    output column, corrected p-values or thresholds, and a drift decision per column.

    Attributes:
        statistic: The test statistic (its meaning is given by ``method``).
        p_value: The p-value for the test's alternative.
        n: Number of cases (or pairs) that entered the test.
        method: A short description of the test and the variant used.

    Example:
        >>> TestResult(3.0, 0.25, 8, "wilcoxon exact").to_dict()["p_value"]
        0.25
    """

    __test__ = False  # not a pytest test class

    statistic: float
    p_value: float
    n: int
    method: str

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether ``p_value < alpha``."""
        return bool(self.p_value < alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class DeLongResult(TestResult):
    """DeLong's test for two correlated ROC AUCs, with the AUCs and their variances.

    ``statistic`` is the z score of ``auc_b - auc_a``.

    Attributes:
        auc_a: AUC of the first score.
        auc_b: AUC of the second score.
        difference: ``auc_b - auc_a``.
        se_difference: DeLong standard error of the difference.
        var_a: DeLong variance of ``auc_a``.
        var_b: DeLong variance of ``auc_b``.
        covariance: DeLong covariance of the two AUCs.
        ci_low: Lower bound of the normal confidence interval of the difference.
        ci_high: Upper bound of that interval.
        confidence: Coverage of that interval.
        n_positive: Number of positive cases.
        n_negative: Number of negative cases.

    Example:
        >>> r = DeLongResult(1.0, 0.3, 10, "delong", auc_a=0.7, auc_b=0.8)
        >>> round(r.difference, 6)
        0.1
    """

    auc_a: float = float("nan")
    auc_b: float = float("nan")
    se_difference: float = float("nan")
    var_a: float = float("nan")
    var_b: float = float("nan")
    covariance: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    confidence: float = 0.95
    n_positive: int = 0
    n_negative: int = 0

    @property
    def difference(self) -> float:
        """``auc_b - auc_a``."""
        return self.auc_b - self.auc_a

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary of the fields, with ``difference``."""
        out = asdict(self)
        out["difference"] = self.difference
        return out
