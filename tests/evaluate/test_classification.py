"""Classification metrics against scikit-learn (oracle) and hand-computed cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from medfleet.evaluate.metrics import classification as cl


def _random_multiclass(rng: np.random.Generator, n: int, k: int):
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    return y_true, y_pred


@pytest.mark.parametrize("seed", range(16))
def test_multiclass_counts_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    n = int(rng.integers(5, 80))
    y_true, y_pred = _random_multiclass(rng, n, k)
    labels = np.unique(np.concatenate([y_true, y_pred]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cl.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
        assert cl.balanced_accuracy(y_true, y_pred) == pytest.approx(
            skm.balanced_accuracy_score(y_true, y_pred)
        )
        assert cl.matthews_corrcoef(y_true, y_pred) == pytest.approx(
            skm.matthews_corrcoef(y_true, y_pred), abs=1e-12
        )
        np.testing.assert_array_equal(
            cl.confusion_matrix(y_true, y_pred), skm.confusion_matrix(y_true, y_pred, labels=labels)
        )
        for zd in (0.0, 1.0, np.nan):
            for avg in ("macro", "weighted", "micro", None):
                np.testing.assert_allclose(
                    cl.sensitivity(y_true, y_pred, average=avg, zero_division=zd),
                    skm.recall_score(y_true, y_pred, average=avg, zero_division=zd),
                    rtol=1e-12,
                )
                np.testing.assert_allclose(
                    cl.ppv(y_true, y_pred, average=avg, zero_division=zd),
                    skm.precision_score(y_true, y_pred, average=avg, zero_division=zd),
                    rtol=1e-12,
                )
                np.testing.assert_allclose(
                    cl.f1_score(y_true, y_pred, average=avg, zero_division=zd),
                    skm.f1_score(y_true, y_pred, average=avg, zero_division=zd),
                    rtol=1e-12,
                )
    # specificity and NPV per class from sklearn's one-vs-rest confusion matrices
    mcm = skm.multilabel_confusion_matrix(y_true, y_pred, labels=labels)
    tn, fp, fn = mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = np.where(tn + fp > 0, tn / (tn + fp), 0.0)
        npv = np.where(tn + fn > 0, tn / (tn + fn), 0.0)
    np.testing.assert_allclose(cl.specificity(y_true, y_pred, average=None), spec)
    np.testing.assert_allclose(cl.npv(y_true, y_pred, average=None), npv)
    assert cl.specificity(y_true, y_pred, average="macro") == pytest.approx(spec.mean())


@pytest.mark.parametrize("seed", range(30))
def test_binary_metrics_match_sklearn_with_string_labels(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(4, 60))
    names = np.array(["benign", "malignant"])
    y_true = names[rng.integers(0, 2, n)]
    y_pred = np.where(rng.random(n) < 0.7, y_true, names[rng.integers(0, 2, n)])
    pos = "malignant"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cl.sensitivity(y_true, y_pred, pos_label=pos) == pytest.approx(
            skm.recall_score(y_true, y_pred, pos_label=pos, zero_division=0.0)
        )
        # specificity is the recall of the negative class
        assert cl.specificity(y_true, y_pred, pos_label=pos) == pytest.approx(
            skm.recall_score(y_true, y_pred, pos_label="benign", zero_division=0.0)
        )
        assert cl.ppv(y_true, y_pred, pos_label=pos) == pytest.approx(
            skm.precision_score(y_true, y_pred, pos_label=pos, zero_division=0.0)
        )
        assert cl.npv(y_true, y_pred, pos_label=pos) == pytest.approx(
            skm.precision_score(y_true, y_pred, pos_label="benign", zero_division=0.0)
        )
        assert cl.f1_score(y_true, y_pred, pos_label=pos) == pytest.approx(
            skm.f1_score(y_true, y_pred, pos_label=pos, zero_division=0.0)
        )


@pytest.mark.parametrize("seed", range(60))
def test_binary_auc_matches_sklearn_including_ties(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(2, 200))
    y_true = rng.integers(0, 2, n)
    if y_true.min() == y_true.max():
        y_true[0] = 1 - y_true[0]
    # coarse scores give many ties; some seeds use continuous scores
    levels = int(rng.integers(2, 12)) if seed % 3 else 0
    score = rng.integers(0, levels, n) / levels if levels else rng.random(n)
    score = score + 0.3 * y_true * rng.random(n) * (seed % 2)
    assert cl.binary_auc(y_true, score) == pytest.approx(
        skm.roc_auc_score(y_true, score), abs=1e-12
    )
    assert cl.roc_auc(y_true, score) == pytest.approx(skm.roc_auc_score(y_true, score), abs=1e-12)


@pytest.mark.parametrize("seed", range(30))
def test_multiclass_ovr_auc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    k = int(rng.integers(3, 6))
    n = int(rng.integers(3 * k, 120))
    y_true = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y_true] * rng.random()
    if seed % 2:
        logits = np.round(logits)  # ties
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for avg in ("macro", "weighted"):
        assert cl.roc_auc(y_true, prob, average=avg) == pytest.approx(
            skm.roc_auc_score(y_true, prob, multi_class="ovr", average=avg), abs=1e-12
        )
    np.testing.assert_allclose(
        cl.roc_auc(y_true, prob, average=None),
        skm.roc_auc_score(y_true, prob, multi_class="ovr", average=None),
        atol=1e-12,
    )


@pytest.mark.parametrize("seed", range(20))
def test_multilabel_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(400 + seed)
    n, k = int(rng.integers(6, 60)), int(rng.integers(2, 5))
    y_true = rng.integers(0, 2, (n, k))
    y_true[0], y_true[1] = 1, 0  # every label has both classes
    y_pred = np.where(rng.random((n, k)) < 0.7, y_true, 1 - y_true)
    score = np.clip(y_true * 0.3 + rng.random((n, k)), 0, 1).round(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cl.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
        for avg in ("macro", "weighted", "micro", None):
            np.testing.assert_allclose(
                cl.sensitivity(y_true, y_pred, average=avg),
                skm.recall_score(y_true, y_pred, average=avg, zero_division=0.0),
            )
            np.testing.assert_allclose(
                cl.f1_score(y_true, y_pred, average=avg),
                skm.f1_score(y_true, y_pred, average=avg, zero_division=0.0),
            )
        for avg in ("macro", "weighted"):
            assert cl.roc_auc(y_true, score, average=avg) == pytest.approx(
                skm.roc_auc_score(y_true, score, average=avg), abs=1e-12
            )
        per_label_mcc = [skm.matthews_corrcoef(y_true[:, j], y_pred[:, j]) for j in range(k)]
        assert cl.matthews_corrcoef(y_true, y_pred) == pytest.approx(np.mean(per_label_mcc))


def test_hand_computed_binary_case() -> None:
    # TP=3, FN=1, FP=2, TN=4
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    m = cl.classification_metrics(y_true, y_pred)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["ppv"] == pytest.approx(3 / 5)
    assert m["npv"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(6 / 9)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 4 / 6) / 2)
    assert m["mcc"] == pytest.approx((3 * 4 - 2 * 1) / np.sqrt(5 * 4 * 6 * 5))
    assert m["confusion_matrix"] == [[4, 2], [1, 3]]
    assert m["per_class"]["1"]["support"] == 4


def test_zero_division_conventions() -> None:
    # class 1 never predicted: PPV undefined
    y_true, y_pred = [0, 1, 0], [0, 0, 0]
    assert cl.ppv(y_true, y_pred) == 0.0
    assert np.isnan(cl.ppv(y_true, y_pred, zero_division=np.nan))
    assert cl.ppv(y_true, y_pred, zero_division=1.0) == 1.0
    # nan classes are left out of the macro mean
    assert cl.ppv(y_true, y_pred, average="macro", zero_division=np.nan) == pytest.approx(2 / 3)
    assert cl.ppv(y_true, y_pred, average="macro") == pytest.approx(1 / 3)
    # MCC with a constant prediction is 0
    assert cl.matthews_corrcoef(y_true, y_pred) == 0.0


def test_auc_undefined_and_perfect() -> None:
    assert np.isnan(cl.binary_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert cl.binary_auc([0, 0, 1], [0.1, 0.2, 0.3]) == 1.0
    assert cl.binary_auc([0, 0, 1], [0.3, 0.2, 0.1]) == 0.0
    assert cl.binary_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # a class absent from y_true makes its one-vs-rest AUC undefined, and the macro mean nan
    y_true = [0, 0, 1, 1]
    prob = np.full((4, 3), 1 / 3)
    assert np.isnan(cl.roc_auc(y_true, prob, labels=[0, 1, 2]))


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="pos_label"):
        cl.sensitivity(["a", "b"], ["a", "a"])
    with pytest.raises(ValueError, match=r"y_pred\[1\] = 'c' is not one of the labels"):
        cl.confusion_matrix(["a", "b"], ["a", "c"], labels=["a", "b"])
    with pytest.raises(ValueError, match="different lengths"):
        cl.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="NaN"):
        cl.binary_auc([0, 1], [0.2, np.nan])
    with pytest.raises(ValueError, match="n_samples, n_classes"):
        cl.roc_auc([0, 1, 2], np.ones((3, 2)))
