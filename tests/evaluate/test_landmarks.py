"""Landmark metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfleet.evaluate.metrics import landmarks as lm


def test_errors_in_pixels_and_mm_with_axis_order() -> None:
    gt = [[10.0, 20.0], [0.0, 0.0]]
    pred = [[13.0, 24.0], [0.0, 1.0]]  # (dx, dy) = (3, 4) and (0, 1)
    np.testing.assert_allclose(lm.landmark_errors(pred, gt), [5.0, 1.0])
    # spacing is (row, column): rows 0.5 mm, columns 0.1 mm -> dx * 0.1, dy * 0.5
    np.testing.assert_allclose(
        lm.landmark_errors(pred, gt, spacing=(0.5, 0.1)), [math.hypot(0.3, 2.0), 0.5]
    )
    np.testing.assert_allclose(lm.landmark_errors(pred, gt, spacing=0.1), [0.5, 0.1])


def test_errors_3d_spacing_reversed() -> None:
    gt = [[0.0, 0.0, 0.0]]
    pred = [[1.0, 1.0, 1.0]]  # one voxel along x (column), y (row) and z (slice)
    # spacing (slice, row, column) = (3, 2, 1) mm
    np.testing.assert_allclose(
        lm.landmark_errors(pred, gt, spacing=(3.0, 2.0, 1.0)), [math.sqrt(14)]
    )


def test_normalised_errors() -> None:
    gt = [[0.0, 0.0], [30.0, 40.0], [5.0, 5.0]]
    pred = [[0.0, 5.0], [30.0, 40.0], [5.0, 5.0]]
    np.testing.assert_allclose(lm.landmark_errors(pred, gt, reference=(0, 1)), [0.1, 0.0, 0.0])
    np.testing.assert_allclose(lm.landmark_errors(pred, gt, reference=10.0), [0.5, 0.0, 0.0])
    # the reference distance is measured in mm too
    np.testing.assert_allclose(
        lm.landmark_errors(pred, gt, spacing=(2.0, 2.0), reference=(0, 1)), [0.1, 0.0, 0.0]
    )


def test_missing_policies() -> None:
    errors = [1.0, 2.0, 4.0, float("nan")]
    # penalty (default inf): MRE inf, SD undefined, never a success
    mre, sd = lm.mean_radial_error(errors)
    assert mre == math.inf and math.isnan(sd)
    assert lm.mean_radial_error(errors, penalty=9.0) == pytest.approx(
        (4.0, np.std([1, 2, 4, 9], ddof=1))
    )
    assert lm.successful_detection_rate(errors, [2.0]) == {2.0: 0.5}
    assert lm.successful_detection_rate(errors, [10.0], penalty=9.0) == {10.0: 1.0}
    # failure: out of the MRE, a failure in the SDR
    assert lm.mean_radial_error(errors, missing="failure") == pytest.approx(
        (7 / 3, np.std([1, 2, 4], ddof=1))
    )
    assert lm.successful_detection_rate(errors, [2.0, 100.0], missing="failure") == {
        2.0: 0.5,
        100.0: 0.75,
    }
    # exclude: out of everything
    assert lm.successful_detection_rate(errors, [2.0], missing="exclude") == {
        2.0: pytest.approx(2 / 3)
    }
    s = lm.summarize_landmark_errors(errors, [2.0, 4.0], missing="exclude", comparison="<")
    assert s.n_points == 4 and s.n_missing == 1
    assert s.sdr == {2.0: pytest.approx(1 / 3), 4.0: pytest.approx(2 / 3)}
    assert s.as_dict()["sdr_2"] == pytest.approx(1 / 3)


def test_sdr_boundary_comparison() -> None:
    errors = [2.0, 2.0, 2.5, 3.0]
    assert lm.successful_detection_rate(errors, [2.0, 2.5, 3.0]) == {2.0: 0.5, 2.5: 0.75, 3.0: 1.0}
    assert lm.successful_detection_rate(errors, [2.0, 2.5, 3.0], comparison="<") == {
        2.0: 0.0,
        2.5: 0.5,
        3.0: 0.75,
    }


def test_pred_nan_gives_nan_error_and_all_missing() -> None:
    e = lm.landmark_errors([[np.nan, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]])
    assert np.isnan(e[0]) and e[1] == 0.0
    s = lm.summarize_landmark_errors([np.nan, np.nan], missing="exclude")
    assert math.isnan(s.mre) and all(math.isnan(v) for v in s.sdr.values())


def test_errors() -> None:
    with pytest.raises(ValueError, match="gt landmark 1 is not finite"):
        lm.landmark_errors([[0, 0], [0, 0]], [[0, 0], [np.nan, 0]])
    with pytest.raises(ValueError, match="shape"):
        lm.landmark_errors([[0, 0]], [[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="spacing"):
        lm.landmark_errors([[0, 0]], [[0, 0]], spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="missing policy"):
        lm.mean_radial_error([1.0], missing="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="comparison"):
        lm.successful_detection_rate([1.0], [1.0], comparison="=")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reference"):
        lm.landmark_errors([[0, 0], [0, 0]], [[0, 0], [0, 0]], reference=(0, 1))
