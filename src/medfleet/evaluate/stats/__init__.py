"""Statistics for comparing and ranking evaluations (numpy/scipy only).

One import point for:

* bootstrap confidence intervals over cases, single (:func:`bootstrap_ci`) and paired
  between methods (:func:`paired_bootstrap`), from :mod:`medfleet.evaluate.stats.bootstrap`;
* paired tests: :func:`wilcoxon_signed_rank`, :func:`mcnemar`, :func:`delong_test` (with
  :func:`delong_auc_ci`), and the corrections :func:`holm`, :func:`bonferroni`,
  :func:`benjamini_hochberg`, from :mod:`medfleet.evaluate.stats.hypothesis`;
* challenge rankings: :func:`rank_then_aggregate`, :func:`aggregate_then_rank` and
  :func:`bootstrap_rank_stability`, from :mod:`medfleet.evaluate.stats.ranking`;
* the result records :class:`CI`, :class:`PairedResult`, :class:`TestResult`,
  :class:`DeLongResult`.

Each module states its conventions; docs/analysis.md collects them with examples.

Example:
    >>> from medfleet.evaluate.stats import bootstrap_ci, holm
    >>> bootstrap_ci([1.0, 2.0, 3.0, 4.0], n_resamples=200).estimate
    2.5
    >>> holm([0.01, 0.02]).tolist()
    [0.02, 0.02]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medfleet.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from medfleet.evaluate.stats.bootstrap import (
        NanPolicy,
        bootstrap_ci,
        bootstrap_distribution,
        paired_bootstrap,
    )
    from medfleet.evaluate.stats.hypothesis import (
        MCNEMAR_EXACT_BELOW,
        benjamini_hochberg,
        bonferroni,
        delong_auc_ci,
        delong_covariance,
        delong_test,
        holm,
        mcnemar,
        mcnemar_from_counts,
        wilcoxon_signed_rank,
    )
    from medfleet.evaluate.stats.ranking import (
        Ranking,
        RankStability,
        aggregate_then_rank,
        bootstrap_rank_stability,
        rank,
        rank_then_aggregate,
    )
    from medfleet.evaluate.stats.results import CI, DeLongResult, PairedResult, TestResult

# Each submodule loads on first use (PEP 562): the bootstrap alone needs no scipy.stats,
# the paired tests no pandas.
_EXPORTS = {
    "CI": "results",
    "DeLongResult": "results",
    "MCNEMAR_EXACT_BELOW": "hypothesis",
    "NanPolicy": "bootstrap",
    "PairedResult": "results",
    "RankStability": "ranking",
    "Ranking": "ranking",
    "TestResult": "results",
    "aggregate_then_rank": "ranking",
    "benjamini_hochberg": "hypothesis",
    "bonferroni": "hypothesis",
    "bootstrap_ci": "bootstrap",
    "bootstrap_distribution": "bootstrap",
    "bootstrap_rank_stability": "ranking",
    "delong_auc_ci": "hypothesis",
    "delong_covariance": "hypothesis",
    "delong_test": "hypothesis",
    "holm": "hypothesis",
    "mcnemar": "hypothesis",
    "mcnemar_from_counts": "hypothesis",
    "paired_bootstrap": "bootstrap",
    "rank": "ranking",
    "rank_then_aggregate": "ranking",
    "wilcoxon_signed_rank": "hypothesis",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "CI",
    "MCNEMAR_EXACT_BELOW",
    "DeLongResult",
    "NanPolicy",
    "PairedResult",
    "RankStability",
    "Ranking",
    "TestResult",
    "aggregate_then_rank",
    "benjamini_hochberg",
    "bonferroni",
    "bootstrap_ci",
    "bootstrap_distribution",
    "bootstrap_rank_stability",
    "delong_auc_ci",
    "delong_covariance",
    "delong_test",
    "holm",
    "mcnemar",
    "mcnemar_from_counts",
    "paired_bootstrap",
    "rank",
    "rank_then_aggregate",
    "wilcoxon_signed_rank",
]
