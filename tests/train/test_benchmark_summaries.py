"""The classification benchmark's summary against scikit-learn (no data needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BUSI = Path(__file__).resolve().parents[2] / "benchmarks" / "busi.py"


def test_classification_summary_matches_scikit_learn_and_resamples_cases():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    spec = importlib.util.spec_from_file_location("busi_benchmark", BUSI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    y_true = np.repeat([0, 1, 2], 20)
    probs = rng.dirichlet([1, 1, 1], size=60)
    probs[np.arange(60), y_true] += 0.6  # informative scores: (n, K), one row per case
    probs /= probs.sum(axis=1, keepdims=True)
    y_pred = probs.argmax(axis=1)
    out = module.classification_summary(y_true, y_pred, probs, 3, n_resamples=300, seed=1)
    bacc, auc = out["balanced_accuracy"], out["macro_auc"]
    assert bacc["estimate"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-4)
    assert auc["estimate"] == pytest.approx(
        roc_auc_score(y_true, probs, multi_class="ovr", average="macro"), abs=1e-4
    )
    for stat in (bacc, auc):
        assert stat["ci_low"] < stat["estimate"] < stat["ci_high"]
        assert stat["resamples"] > 250  # resamples missing a class have no AUC
    assert out["recall_per_class"] == pytest.approx(
        [float(np.mean(y_pred[y_true == k] == k)) for k in range(3)], abs=1e-4
    )
