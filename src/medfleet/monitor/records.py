"""Records of the monitor: what a site agent reports for each batch, and the alerts raised.

Example:
    >>> r = BatchReport(site="a", batch_id="b1", timestamp="2024-01-01T00:00:00", n=10,
    ...                 scheme="site", test="ks", statistic=0.4, p_value=0.001,
    ...                 severity=Severity.moderate, drift=True, alert=True)
    >>> BatchReport.from_dict(r.to_dict()) == r
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from medfleet.monitor.severity import Severity


def utc_now() -> str:
    """Current UTC time as ISO-8601 text.

    Example:
        >>> utc_now().endswith("+00:00")
        True
    """
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class BatchReport:
    """One batch's verdict.

    Attributes:
        site: Site name.
        batch_id: Batch identifier (unique within the site).
        timestamp: The batch's own time (ISO-8601).
        n: Cases in the batch.
        scheme: Reference scheme in force.
        test: Test deciding the lead column.
        statistic: The lead column's statistic (None during warm-up).
        p_value: Smallest multiplicity-adjusted p-value over columns (None during warm-up).
        severity: Worst severity over columns.
        drift: Whether any column drifted.
        alert: Whether this batch raised an alert.
        status: ``ok``, or ``warmup`` while the reference is forming (no decision).
        created: When the report was made (UTC, ISO-8601).
        lead: Name of the lead column.
        thresholds: The lead column's thresholds (``drift``, ``moderate``, ``severe``).
        columns: Per column: ``test``, ``statistic``, ``p_value`` (adjusted),
            ``raw_p_value``, ``drift``, ``severity``.
        statistics: Every configured test's statistic per column (recorded, not deciding).
        digest: SHA-256 of the batch's validated outputs (tells a re-sent batch from
            another batch under the same id); None in reports stored before it existed.
    """

    site: str
    batch_id: str
    timestamp: str
    n: int
    scheme: str
    test: str
    statistic: float | None
    p_value: float | None
    severity: Severity
    drift: bool
    alert: bool
    status: str = "ok"
    created: str = field(default_factory=utc_now)
    lead: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    statistics: dict[str, dict[str, float]] = field(default_factory=dict)
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (severity as text)."""
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchReport:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "severity": Severity(data["severity"])})


@dataclass(frozen=True)
class Alert:
    """An alert raised for a site.

    Attributes:
        site: Site name.
        batch_id: Batch that raised it.
        timestamp: The batch's time.
        severity: Severity at the time.
        message: Human-readable summary.
        created: When it was raised (UTC).
    """

    site: str
    batch_id: str
    timestamp: str
    severity: Severity
    message: str
    created: str = field(default_factory=utc_now)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (severity as text).

        Example:
            >>> Alert("a", "b", "t", Severity.mild, "m", "c").to_dict()["severity"]
            'mild'
        """
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "severity": Severity(data["severity"])})
