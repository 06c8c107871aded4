"""Monitoring configuration (YAML), validated with pydantic.

Example YAML::

    sites: [site_a, site_b, site_c]
    scheme: adaptive            # site | global | production | adaptive
    tests: [ks, psi]            # the first test that applies to an output decides
    alpha: 0.05
    correction: holm
    outputs: {prob: probability, pred_class: label}
    references: {site_a: ref_a.csv, site_b: ref_b.csv, site_c: ref_c.csv}
    thresholds: {method: shift, moderate: 0.5, severe: 1.0}
    adaptive: {mode: window, window: 5, warmup: 3, initial: global}
    input: {paths: [outputs.csv], time_column: time, batch_freq: 1D}
    db: monitor.sqlite          # or postgresql+psycopg://user:password@host:5432/monitor

Relative paths are resolved against the YAML file's folder by
:meth:`MonitorConfig.load`.

Example:
    >>> cfg = MonitorConfig(sites=["a", "b"], scheme="site")
    >>> cfg.tests, cfg.thresholds.method
    (['ks'], 'shift')
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medfleet.errors import MedfleetError
from medfleet.monitor.two_sample import TEST_NAMES
from medfleet.utils.yamlfile import read_yaml_mapping

SCHEMES = ("site", "global", "production", "adaptive")
"""Reference schemes an online coordinator runs (the centralised baseline is in the simulator)."""


class ConfigError(MedfleetError, ValueError):
    """A monitoring configuration cannot be loaded."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThresholdConfig(_Model):
    """How detection and severity thresholds are calibrated (see docs/monitoring.md).

    Attributes:
        method: ``shift``: moderate/severe thresholds are the statistic's median
            under a shift of ``moderate`` / ``severe`` standard deviations (on the
            logit scale for probabilities) applied to bootstrap batches of the
            reference. ``null``: they are ``moderate_factor`` / ``severe_factor``
            times the null's ``1 - alpha`` quantile. ``fixed``: ``moderate`` and
            ``severe`` are used as statistic values directly.
        moderate: Shift size (``shift``) or statistic value (``fixed``) where moderate starts.
        severe: Shift size or statistic value where severe starts.
        moderate_factor: For ``null``.
        severe_factor: For ``null``.
        label_moderate: Total-variation distance of class frequencies where moderate starts.
        label_severe: Total-variation distance where severe starts.
        bootstrap: Bootstrap draws for the null distribution.
        shift_bootstrap: Bootstrap draws per shifted calibration.
        max_reference: Reference rows used for calibration (a random subset beyond it).
        recalibrate_every: An adaptive reference is recalibrated after this many updates.
        seed: Base seed (calibration is deterministic per site, output and batch size).
    """

    method: Literal["shift", "null", "fixed"] = "shift"
    moderate: float = Field(0.5, gt=0)
    severe: float = Field(1.0, gt=0)
    moderate_factor: float = Field(2.0, gt=1)
    severe_factor: float = Field(4.0, gt=1)
    label_moderate: float = Field(0.1, gt=0, le=1)
    label_severe: float = Field(0.25, gt=0, le=1)
    bootstrap: int = Field(200, ge=20)
    shift_bootstrap: int = Field(40, ge=5)
    max_reference: int = Field(2000, ge=50)
    recalibrate_every: int = Field(5, ge=1)
    seed: int = 0

    @field_validator("severe")
    @classmethod
    def _ordered(cls, v: float, info) -> float:
        moderate = info.data.get("moderate")
        if moderate is not None and v <= moderate:
            raise ValueError(f"severe ({v}) must be larger than moderate ({moderate})")
        return v


class AdaptiveConfig(_Model):
    """The adaptive reference.

    Attributes:
        mode: ``window``: the reference is the last ``window`` stable batches.
            ``exponential``: the warm-up batches form a pool and each later stable
            batch replaces a fraction ``decay`` of its rows, so older rows' weight
            decays geometrically. Either way the initial reference is in force
            only until the first batch is absorbed.
        window: Batches in the window.
        decay: Fraction replaced per stable batch.
        warmup: First batches absorbed without a decision (the site settles in).
        initial: Starting reference: pooled references of all sites (``global``), the
            site's own (``site``) or none (``none``: the warm-up batches form it).
    """

    mode: Literal["window", "exponential"] = "window"
    window: int = Field(8, ge=1)
    decay: float = Field(0.3, gt=0, le=1)
    warmup: int = Field(3, ge=0)
    initial: Literal["global", "site", "none"] = "global"


class ProductionConfig(_Model):
    """The production-only reference: the site's first ``batches`` batches."""

    batches: int = Field(3, ge=1)


class AlertConfig(_Model):
    """When a drift becomes an alert.

    Attributes:
        consecutive: Drifted batches in a row before the first alert of an episode.
        on_escalation: Alert again when severity rises within an episode.
    """

    consecutive: int = Field(1, ge=1)
    on_escalation: bool = True


class InputConfig(_Model):
    """Where ``medfleet monitor run`` reads batches and references."""

    paths: list[Path] = Field(default_factory=list)
    site_column: str = "site"
    time_column: str = "time"
    batch_column: str = "batch_id"
    batch_freq: str = "1D"


class MonitorConfig(_Model):
    """Everything a coordinator needs.

    Attributes:
        sites: Known sites; batches from other sites are refused. Empty: any site.
        scheme: Reference scheme (``site``, ``global``, ``production``, ``adaptive``).
        tests: Tests to run; per output the first that applies decides drift
            (``ks``/``wasserstein``/``psi``/``js``/``kl`` for probabilities and
            scores, ``chi2`` for class labels, ``mmd_linear``/``mmd_perm`` for
            2-D outputs as a whole); the rest are recorded.
        alpha: Family-wise significance level per batch.
        correction: Multiple-testing correction across output columns.
        bins: Histogram bins for PSI/JS/KL.
        outputs: Output kinds by name (others are guessed from the name).
        lead: Output column charted as "the" statistic (default: first continuous column).
        references: Reference table per site (CSV/Parquet), or one table with a site column
            under the key ``"*"``.
        thresholds: Threshold calibration.
        adaptive: Adaptive-reference settings.
        production: Production-only settings.
        alert: Alert rule.
        input: Batch input for ``medfleet monitor run``.
        db: SQLite database path, or a database URL (``postgresql+psycopg://...``; see
            :mod:`medfleet.monitor.store_target`).
    """

    sites: list[str] = Field(default_factory=list)
    scheme: Literal["site", "global", "production", "adaptive"] = "adaptive"
    tests: list[str] = Field(default_factory=lambda: ["ks"])
    alpha: float = Field(0.05, gt=0, lt=1)
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    bins: int = Field(10, ge=2)
    outputs: dict[str, Literal["probability", "score", "label", "embedding"]] = Field(
        default_factory=dict
    )
    lead: str | None = None
    references: dict[str, Path] = Field(default_factory=dict)
    thresholds: ThresholdConfig = Field(default_factory=ThresholdConfig)
    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig)
    production: ProductionConfig = Field(default_factory=ProductionConfig)
    alert: AlertConfig = Field(default_factory=AlertConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    db: Path | str = Path("monitor.sqlite")

    @field_validator("db", mode="before")
    @classmethod
    def _path_or_url(cls, v: object) -> object:
        """A database URL (``postgresql+psycopg://...``) stays text; anything else is a path."""
        from medfleet.monitor.store_target import is_store_url

        if isinstance(v, str) and not is_store_url(v):
            return Path(v)
        return v

    @field_validator("tests")
    @classmethod
    def _known_tests(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one test")
        unknown = [t for t in v if t not in TEST_NAMES]
        if unknown:
            raise ValueError(f"unknown test(s) {unknown}; choose from {', '.join(TEST_NAMES)}")
        return v

    @classmethod
    def load(cls, path: str | Path) -> MonitorConfig:
        r"""Load and validate a YAML configuration; relative paths resolve beside the file.

        Example:
            >>> import tempfile, pathlib
            >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.yaml"
            >>> _ = p.write_text("sites: [a]\nscheme: site\nreferences: {a: ref.csv}\n")
            >>> MonitorConfig.load(p).references["a"] == p.parent / "ref.csv"
            True
        """
        p = Path(path)
        data = read_yaml_mapping(p, "monitor config", error=ConfigError)
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"monitor config {p}: {problems}") from exc
        return cfg.resolved(p.parent)

    def resolved(self, base: Path) -> MonitorConfig:
        """A copy with relative paths made relative to ``base``."""

        def fix(q: Path) -> Path:
            return q if q.is_absolute() else base / q

        return self.model_copy(
            update={
                "references": {k: fix(v) for k, v in self.references.items()},
                "input": self.input.model_copy(
                    update={"paths": [fix(q) for q in self.input.paths]}
                ),
                "db": self.db if isinstance(self.db, str) else fix(self.db),
            }
        )

    def dump(self, path: str | Path) -> Path:
        """Write the configuration as YAML (atomically).

        Example:
            >>> import tempfile, pathlib
            >>> p = MonitorConfig(sites=["a"]).dump(pathlib.Path(tempfile.mkdtemp()) / "c.yaml")
            >>> MonitorConfig.load(p).sites
            ['a']
        """
        from medfleet.utils.atomic import write_text_atomic

        data = self.model_dump(mode="json")
        return write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
