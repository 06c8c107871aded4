"""medfleet's statistics next to the SciPy calls they wrap or replace, same inputs, same run.

* ``bootstrap_ci`` (percentile and BCa) and ``paired_bootstrap`` against
  ``scipy.stats.bootstrap`` called directly with the same resamples and seed: the cost of
  medfleet's wrapper (NaN policy, checks, its own p-value for the paired case);
* ``wilcoxon_signed_rank`` against ``scipy.stats.wilcoxon`` on paired data with ties and
  zeros (where SciPy's ``auto`` runs a permutation test) and on continuous data; the
  statistics and p-values are checked equal before timing.

Prints a markdown table (median of ``--repeats`` runs, milliseconds).

    python benchmarks/stats_peers.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy import stats

from medfleet.evaluate.stats import bootstrap_ci, paired_bootstrap, wilcoxon_signed_rank


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Time each pair and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--n", type=int, default=500, help="values per sample")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(0.8, 0.1, args.n)
    y = x + rng.normal(0.01, 0.05, args.n)
    k = args.resamples

    def scipy_ci(method: str) -> object:
        return stats.bootstrap(
            (x,), np.mean, n_resamples=k, method=method, rng=np.random.default_rng(0)
        )

    def scipy_paired() -> object:
        return stats.bootstrap(
            (x, y),
            lambda a, b, axis=-1: np.mean(b - a, axis=axis),
            n_resamples=k,
            paired=True,
            method="percentile",
            rng=np.random.default_rng(0),
        )

    ties_a = np.round(rng.normal(0.80, 0.05, 12), 2)
    ties_b = ties_a + np.round(rng.normal(0.01, 0.02, 12), 2)
    cont_a, cont_b = rng.normal(0, 1, 60), rng.normal(0.2, 1, 60)
    for a, b in ((ties_a, ties_b), (cont_a, cont_b)):
        ours = wilcoxon_signed_rank(a, b)
        ref = stats.wilcoxon(b, a)
        assert np.isclose(ours.statistic, ref.statistic), (ours, ref)
        assert np.isclose(ours.p_value, ref.pvalue, rtol=1e-6), (ours, ref)

    rows = [
        (
            f"bootstrap CI, percentile, n={args.n}, {k} resamples",
            _median_ms(lambda: bootstrap_ci(x, n_resamples=k, method="percentile"), args.repeats),
            _median_ms(lambda: scipy_ci("percentile"), args.repeats),
        ),
        (
            f"bootstrap CI, BCa, n={args.n}, {k} resamples",
            _median_ms(lambda: bootstrap_ci(x, n_resamples=k, method="bca"), args.repeats),
            _median_ms(lambda: scipy_ci("BCa"), args.repeats),
        ),
        (
            f"paired bootstrap, n={args.n}, {k} resamples",
            _median_ms(lambda: paired_bootstrap(x, y, n_resamples=k), args.repeats),
            _median_ms(scipy_paired, args.repeats),
        ),
        (
            "Wilcoxon, 12 pairs with ties and zeros",
            _median_ms(lambda: wilcoxon_signed_rank(ties_a, ties_b), args.repeats),
            _median_ms(lambda: stats.wilcoxon(ties_b, ties_a), max(3, args.repeats // 5)),
        ),
        (
            "Wilcoxon, 60 continuous pairs",
            _median_ms(lambda: wilcoxon_signed_rank(cont_a, cont_b), args.repeats),
            _median_ms(lambda: stats.wilcoxon(cont_b, cont_a), args.repeats),
        ),
    ]
    print("| computation | medfleet ms | SciPy ms | ratio |")
    print("|---|---:|---:|---:|")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    main()
