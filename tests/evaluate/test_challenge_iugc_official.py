"""IUGC ``biometry=ellipse-official``: the port against OpenCV called directly, step by step."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medfleet.errors import MedfleetError
from medfleet.evaluate.challenges._iugc_official import (
    CvEllipse,
    drawline_aod,
    official_aop,
    onehot_channels,
    require_cv2,
)
from medfleet.evaluate.challenges.iugc import (
    intrapartum_geometry_ellipse,
    intrapartum_geometry_official,
)

ROWS, COLS = np.mgrid[:512, :512].astype(float)


def _ellipse(lab: np.ndarray, centre: tuple, axes: tuple, angle: float, value: int) -> None:
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    u = ((COLS - centre[0]) * c + (ROWS - centre[1]) * s) / axes[0]
    w = (-(COLS - centre[0]) * s + (ROWS - centre[1]) * c) / axes[1]
    lab[u * u + w * w <= 1] = value


def _mask(ps: tuple, head: tuple, ps_value: int = 1, head_value: int = 2) -> np.ndarray:
    lab = np.zeros((512, 512), np.uint8)
    _ellipse(lab, *ps, ps_value)
    _ellipse(lab, *head, head_value)
    return lab


# (centre, semi-axes, angle in degrees) of the PS and of the head
CASES = {
    "typical": (((150, 170), (50, 14), 20), ((320, 300), (110, 90), 30)),
    "steep_ps": (((120, 160), (45, 12), 40), ((300, 300), (115, 85), 120)),
    "flat_head": (((160, 150), (55, 15), -10), ((330, 290), (125, 70), 0)),
    "other_root": (((90, 208), (50, 14), 36), ((286, 261), (109, 75), 175)),
    "inside_head": (((210, 210), (50, 14), 30), ((320, 300), (110, 90), 30)),
}


def _reference_aop(lab: np.ndarray) -> tuple[float | None, tuple | None]:
    """The official eval/cal_aop.py + eval/ellipse.py steps, written out with cv2 and numpy."""
    import cv2

    data = lab.astype(np.float64)
    channels = np.zeros([3, 512, 512])
    ps = data.copy()
    ps[ps == 1] = 255
    ps[ps == 2] = 0
    channels[1] = ps
    fh = data.copy()
    fh[fh == 2] = 255
    fh[fh == 1] = 0
    channels[2] = fh
    image = cv2.merge([channels[0], channels[1], channels[2]]).astype(np.uint8)
    ellipses = []
    for ch in (1, 2):
        contours, _ = cv2.findContours(
            cv2.medianBlur(image[:, :, ch], 1), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        found = None
        if len(contours):
            sizes = [c.shape[0] for c in contours]
            best = sizes.index(max(sizes))  # the first of the largest
            approx = cv2.approxPolyDP(contours[best], 1, closed=True)
            if approx.shape[0] > 5:
                found = cv2.fitEllipse(approx)
        ellipses.append(found)
    ps_e, fh_e = ellipses
    if ps_e is None or fh_e is None:
        return None, None
    # drawline_AOD(fh, ps): (h, w) swapped, angle - 90
    (hx, hy), (hw, hh), hang = fh_e
    (px, py), (_, ph), pang = ps_e
    f = (pang - 90) * 0.01745
    d1 = np.array([px - ph / 2 * math.cos(f), py - ph / 2 * math.sin(f)])
    d2 = np.array([px + ph / 2 * math.cos(f), py + ph / 2 * math.sin(f)])
    a, b = hh / 2, hw / 2
    rad = 2 * math.pi * (hang - 90) / 360
    to_frame = np.array([[math.cos(-rad), -math.sin(-rad)], [math.sin(-rad), math.cos(-rad)]])
    back = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
    x, y = (to_frame @ np.array([[d2[0] - hx], [d2[1] - hy]]))[:, 0]
    if x**2 - a**2 == 0:
        x += 1
    disc = b**2 * x**2 + a**2 * y**2 - a**2 * b**2
    k = (x * y - math.sqrt(disc)) / (x**2 - a**2) if disc >= 0 else 0
    c = y - k * x
    tx = (-2 * k * c / b**2) / (2 * (1 / a**2 + k**2 / b**2))
    t = (back @ np.array([[tx], [tx * k + c]]))[:, 0] + np.array([hx, hy])
    l13, l34, l14 = np.linalg.norm(d1 - d2), np.linalg.norm(d2 - t), np.linalg.norm(d1 - t)
    aop = math.acos((l13**2 + l34**2 - l14**2) / (2 * l13 * l34)) / math.pi * 180
    return aop, (tuple(d1), tuple(d2), tuple(t))


@pytest.mark.parametrize("name", sorted(CASES))
def test_port_equals_the_official_steps_run_with_opencv(name: str) -> None:
    lab = _mask(*CASES[name])
    expected, points = _reference_aop(lab)
    got = official_aop(lab)
    assert expected is not None and points is not None
    assert got.aop == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert got.geometry is not None
    assert got.geometry.d1 == pytest.approx(points[0], abs=1e-9)
    assert got.geometry.d2 == pytest.approx(points[1], abs=1e-9)
    assert got.geometry.tangent == pytest.approx(points[2], abs=1e-7)
    g = intrapartum_geometry_official(lab)
    assert g.aop == got.aop and g.p1 == got.geometry.d2 and g.tangent == got.geometry.tangent


def test_the_dataset_labels_7_and_8_give_the_same_aop() -> None:
    import cv2  # noqa: F401  (the oracle; a missing one fails, never skips)

    ps, head = CASES["typical"]
    lab = _mask(ps, head)
    dataset = _mask(ps, head, 7, 8)
    assert official_aop(dataset, 7, 8).aop == official_aop(lab).aop
    # with the default labels 1/2, onehot_to_mask leaves 7 and 8 in both channels
    ps_channel, fh_channel = onehot_channels(dataset)
    assert np.array_equal(ps_channel > 0, dataset > 0)
    assert np.array_equal(fh_channel > 0, dataset > 0)


def test_a_third_label_belongs_to_both_channels_as_in_onehot_to_mask() -> None:
    lab = _mask(*CASES["typical"])
    _ellipse(lab, (103, 153), (12, 12), 0, 3)  # a blob of another label on the PS end
    expected, _ = _reference_aop(lab)
    got = official_aop(lab)
    assert got.aop == pytest.approx(expected, rel=1e-9)
    assert got.aop != official_aop(_mask(*CASES["typical"])).aop  # the blob moved the PS
    assert got.head.n_contours == 2  # the blob is a second FH contour
    ps, fh = onehot_channels(lab)
    assert ps[153, 103] == 255 and fh[153, 103] == 255


def test_the_largest_contour_is_chosen_by_points_not_area() -> None:
    import cv2

    lab = _mask(*CASES["typical"])
    _ellipse(lab, (400, 40), (90, 3), 0, 1)  # a long thin PS stray: more points, less area
    contours, _ = cv2.findContours(
        (lab == 1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    longest = max(contours, key=len)
    assert cv2.contourArea(longest) < max(cv2.contourArea(c) for c in contours)
    got = official_aop(lab)
    assert got.ps.n_contours == 2 and got.ps.n_points == len(longest)
    assert got.ps.ellipse is not None and got.ps.ellipse.center[0] > 300  # the stray
    assert got.aop == pytest.approx(_reference_aop(lab)[0], rel=1e-9)


def test_the_old_ellipse_variant_differs_from_the_official_code() -> None:
    # the official fixed root is the smaller-angle tangent here; the old variant takes
    # the larger angle
    lab = _mask(*CASES["other_root"])
    official = intrapartum_geometry_official(lab)
    old = intrapartum_geometry_ellipse(lab)
    assert abs(official.aop - old.aop) > 0.5
    assert official.aop == pytest.approx(_reference_aop(lab)[0], rel=1e-9)
    assert old.aop > official.aop + 30  # the other tangent
    typical = _mask(*CASES["typical"])
    small = abs(
        intrapartum_geometry_official(typical).aop - intrapartum_geometry_ellipse(typical).aop
    )
    assert 0.0 < small < 1.0  # same tangent; fits and factor differ a little


def test_drawline_aod_on_hand_computed_geometry() -> None:
    # head: circle of radius 80 at (300, 300); PS: h axis horizontal (angle 90) at (100, 150)
    head = CvEllipse((300.0, 300.0), (160.0, 160.0), 0.0)
    ps = CvEllipse((100.0, 150.0), (20.0, 100.0), 90.0)
    g = drawline_aod(head, ps)
    assert g.d1 == (50.0, 150.0) and g.d2 == (150.0, 150.0)
    # tangents from (150, 150) leave at 45 deg +- asin(80 / |(150, 150)|); the fixed root
    # is the one at 45 - asin(...) below the horizontal, so AoP = 135 + asin(...)
    half = math.degrees(math.asin(80 / math.hypot(150, 150)))
    assert g.aop == pytest.approx(135 + half, abs=1e-9)
    assert math.dist(g.tangent, (300.0, 300.0)) == pytest.approx(80.0, abs=1e-9)
    # the factor 0.01745: a PS at angle 0 (h axis vertical) is turned by 90 * 3.3e-6 rad
    tilted = drawline_aod(head, CvEllipse((100.0, 150.0), (20.0, 100.0), 0.0))
    phi = -90 * 0.01745
    assert tilted.d2 == pytest.approx((100 + 50 * math.cos(phi), 150 + 50 * math.sin(phi)))
    assert tilted.d2[0] - 100.0 == pytest.approx(50 * (math.pi / 2 - 90 * 0.01745), rel=1e-6)


def test_a_ps_endpoint_inside_the_head_still_gets_the_official_number() -> None:
    lab = _mask(*CASES["inside_head"])
    official = intrapartum_geometry_official(lab)
    assert official.status == "no_real_tangent" and official.official_note is not None
    assert official.aop == pytest.approx(_reference_aop(lab)[0], rel=1e-9)
    assert intrapartum_geometry_ellipse(lab).status == "no_tangent"  # no number there


def test_inside_the_head_the_slope_falls_back_to_zero() -> None:
    head = CvEllipse((0.0, 0.0), (100.0, 200.0), 90.0)  # a = 100 along x, b = 50 along y
    ps = CvEllipse((-40.0, 10.0), (10.0, 60.0), 90.0)  # d2 = (-10, 10): inside the head
    g = drawline_aod(head, ps)
    assert not g.real_tangent and g.slope == 0.0
    # slope 0: the "tangency point" is (0, y of d2) in the head's frame, not on the head
    assert g.tangent == pytest.approx((0.0, 10.0), abs=1e-9)
    assert g.aop == pytest.approx(180.0, abs=1e-6)


def test_too_few_vertices_means_no_ellipse() -> None:
    lab = _mask(*CASES["typical"])
    lab[lab == 1] = 0
    lab[150:160, 100:160] = 1  # a rectangle: 4 approxPolyDP vertices
    res = official_aop(lab)
    assert res.status == "no_ellipse_ps" and math.isnan(res.aop)
    assert res.ps.n_vertices == 4
    assert _reference_aop(lab)[0] is None


def test_missing_opencv_names_the_option_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MedfleetError, match=r"biometry=ellipse-official.*medfleet\[opencv\]"):
        require_cv2()


def test_missing_opencv_stops_the_run_before_any_case(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from medfleet.cli import app

    masks = tmp_path / "masks"
    masks.mkdir()
    np.save(masks / "a.npy", _mask(*CASES["typical"]))
    monkeypatch.setitem(sys.modules, "cv2", None)
    args = ["evaluate", "--preset", "iugc", "--pred", str(masks), "--gt", str(masks)]
    args += ["--out", str(tmp_path / "o"), "--preset-option", "biometry=ellipse-official"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert 'pip install "medfleet[opencv]"' in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_importing_the_preset_does_not_import_opencv() -> None:
    code = (
        "import sys, medfleet.evaluate.challenges.iugc, medfleet.evaluate.challenges;"
        "assert 'cv2' not in sys.modules, 'cv2 imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_preset_run_uses_the_port_and_warns_where_the_official_code_cannot(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from medfleet.cli import app

    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for name in ("typical", "steep_ps", "inside_head"):
        np.save(gt / f"{name}.npy", _mask(*CASES[name]))
        np.save(pred / f"{name}.npy", _mask(*CASES["flat_head"]))
    small = np.zeros((300, 300), np.uint8)  # not 512 x 512: the official code fails
    small[:, :] = _mask(*CASES["typical"])[:300, :300]
    np.save(gt / "small.npy", small)
    np.save(pred / "small.npy", small)
    out = tmp_path / "out"
    args = ["evaluate", "--preset", "iugc", "--pred", str(pred), "--gt", str(gt)]
    args += ["--out", str(out), "--preset-option", "biometry=ellipse-official"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "cases.csv", newline="") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    flat = _reference_aop(_mask(*CASES["flat_head"]))[0]
    for name in ("typical", "steep_ps", "inside_head"):
        ref = _reference_aop(_mask(*CASES[name]))[0]
        assert float(rows[name]["aop_gt"]) == pytest.approx(ref, rel=1e-9)
        assert float(rows[name]["aop_error"]) == pytest.approx(abs(flat - ref), rel=1e-9)
    assert summary["preset"]["options"]["biometry"] == "ellipse-official"
    assert rows["inside_head"]["biometry_status_gt"] == "no_real_tangent"
    assert any("not 512x512" in w and "small" in w for w in summary["warnings"])
    assert any(
        w.startswith("case inside_head (reference)") and "slope 0" in w for w in summary["warnings"]
    )
    assert summary["conventions"]["hsd"].startswith("not computed by the official code")
