"""Regression metrics against scikit-learn and hand-computed Bland-Altman cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from medfleet.evaluate.metrics import regression as reg


@pytest.mark.parametrize("seed", range(10))
def test_mae_rmse_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    y = rng.normal(150, 40, n)
    p = y + rng.normal(2, 5, n)
    assert reg.mae(y, p) == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert reg.rmse(y, p) == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)), rel=1e-12)
    assert reg.bias(y, p) == pytest.approx(np.mean(p - y), rel=1e-12)


def test_bland_altman_hand_computed() -> None:
    y = [100.0, 110.0, 120.0, 130.0]
    p = [102.0, 108.0, 125.0, 131.0]
    # differences 2, -2, 5, 1: mean 1.5, sample variance ((0.5^2 + 3.5^2 + 3.5^2 + 0.5^2) / 3)
    sd = np.sqrt((0.25 + 12.25 + 12.25 + 0.25) / 3)
    ba = reg.bland_altman(y, p)
    assert ba.bias == pytest.approx(1.5)
    assert ba.sd == pytest.approx(sd)
    assert (ba.lower, ba.upper) == pytest.approx((1.5 - 1.96 * sd, 1.5 + 1.96 * sd))
    assert ba.n == 4 and ba.k == 1.96
    assert reg.bland_altman(y, p, k=2.0).upper == pytest.approx(1.5 + 2 * sd)
    m = reg.regression_metrics(y, p)
    assert m["mae"] == pytest.approx(2.5)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 4 + 25 + 1) / 4))
    assert m["loa_lower"] == pytest.approx(ba.lower)


def test_single_sample_and_sign_convention() -> None:
    ba = reg.bland_altman([10.0], [12.0])
    assert ba.bias == 2.0  # prediction above the truth: positive bias
    assert np.isnan(ba.sd) and np.isnan(ba.upper)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"y_pred\[1\] is not finite"):
        reg.mae([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="different lengths"):
        reg.rmse([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        reg.bias([], [])
