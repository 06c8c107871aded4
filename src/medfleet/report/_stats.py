"""The statistics the reports use, from :mod:`medfleet.evaluate` (numpy/scipy only)."""

from __future__ import annotations

try:  # the public facade, when present
    from medfleet.evaluate.stats import (  # type: ignore[import-not-found]
        bootstrap_ci,
        holm,
        mcnemar,
        paired_bootstrap,
        wilcoxon_signed_rank,
    )
except ImportError:  # the implementing modules
    from medfleet.evaluate.stats_bootstrap import bootstrap_ci, paired_bootstrap
    from medfleet.evaluate.stats_hypothesis import holm, mcnemar, wilcoxon_signed_rank

__all__ = ["bootstrap_ci", "holm", "mcnemar", "paired_bootstrap", "wilcoxon_signed_rank"]
