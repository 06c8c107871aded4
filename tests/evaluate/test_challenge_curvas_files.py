"""CURVAS preset on the challenge's own files: case folders written by SimpleITK.

The expected values are computed on the arrays in SimpleITK ``GetArrayFromImage`` order
``(slices, rows, columns)``, which is how the official code reads every file; the volumes are
not cubic, so reading them in nibabel's (reversed) order would change the row-wise Dice and
the crop, or not match the probabilities at all.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.evaluate.analysis.multirater import consensus_confidence, consensus_dice
from medfleet.evaluate.challenges.curvas import (
    body_crop_box,
    consensus_dice_rowwise,
    curvas_crps,
    curvas_ece,
)

SHAPE = (5, 12, 16)  # slices, rows, columns: every axis a different length
SPACING_XYZ = (0.75, 0.8, 2.5)  # SimpleITK spacing is (x, y, z)
CASES = ("case_01", "case_02", "case_03")


def _write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_XYZ)
    sitk.WriteImage(image, str(path))


def _case_arrays(seed: int) -> dict[str, Any]:
    """Three raters, organ probabilities, the binarized prediction and a CT, in (z, y, x)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(SHAPE)
    base = np.zeros(SHAPE, np.uint8)
    base[(yy - 4) ** 2 + (xx - 5) ** 2 < 10] = 1  # organ 1: a cylinder left of centre
    base[(yy >= 7) & (yy <= 10) & (xx >= 9) & (xx <= 14) & (zz >= 1)] = 2  # organ 2: a box
    base[(zz >= 2) & (yy <= 2) & (xx >= 11)] = 3  # organ 3: a corner block
    raters = []
    for _ in range(3):
        rater = base.copy()
        flip = rng.random(SHAPE) < 0.06
        rater[flip] = rng.integers(0, 4, int(flip.sum()))
        raters.append(rater)
    onehot = (base[None] == np.arange(1, 4)[:, None, None, None]).astype(np.float32)
    probs = np.clip(
        0.85 * onehot + rng.random((3, *SHAPE), dtype=np.float32) * np.float32(0.1), 0, 1
    ).astype(np.float32)
    if seed == 1:
        probs[:, 0, 0, 0] = [0.7, 0.5, 0.1]  # sums to 1.3: the ECE softmaxes every voxel
    background = 1 - probs.sum(axis=0, keepdims=True)
    prediction = np.argmax(np.concatenate([background, probs]), axis=0).astype(np.uint8)
    wrong = rng.random(SHAPE) < 0.15  # the submitted label map differs from the arg-max
    prediction[wrong] = rng.integers(0, 4, int(wrong.sum()))
    ct = np.full(SHAPE, -1000, np.int16)
    ct[:, 1:11, 2:15] = 40  # body: rows 1..10, columns 2..14
    ct[2, 0, 5] = 100
    return {"raters": np.stack(raters), "probs": probs, "prediction": prediction, "ct": ct}


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``gt/<case>/annotation_<n>.nii.gz`` + ``image.nii.gz``; ``pred/<case>/probabilities.npz``
    + ``prediction.nii.gz``, all written as the challenge distributes them."""
    root = tmp_path_factory.mktemp("curvas_official")
    gt, pred = root / "gt", root / "pred"
    arrays = {}
    for seed, case in enumerate(CASES):
        a = _case_arrays(seed)
        arrays[case] = a
        (gt / case).mkdir(parents=True)
        (pred / case).mkdir(parents=True)
        for r, rater in enumerate(a["raters"], start=1):
            _write(rater, gt / case / f"annotation_{r}.nii.gz")
        _write(a["ct"], gt / case / "image.nii.gz")
        _write(a["prediction"], pred / case / "prediction.nii.gz")
        np.savez_compressed(pred / case / "probabilities.npz", probabilities=a["probs"])
    return {"gt": gt, "pred": pred, "arrays": arrays, "root": root}


def _run(out: Path, pred: Path, gt: Path, *options: str) -> tuple[dict[str, Any], list[dict]]:
    args = ["evaluate", "--preset", "curvas", "--pred", str(pred), "--gt", str(gt)]
    for option in options:
        args += ["--preset-option", option]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return summary, rows


def _expected(a: dict[str, Any], literal: bool = False, crop: bool = False) -> dict[str, float]:
    """The scores computed straight from the (z, y, x) arrays."""
    raters, probs, prediction = a["raters"], a["probs"], a["prediction"]
    if crop:
        box = (Ellipsis, *body_crop_box(a["ct"]))
        raters, probs, prediction = raters[box], probs[box], prediction[box]
    out = {}
    for k in (1, 2, 3):
        dice = consensus_dice_rowwise if literal else consensus_dice
        out[f"dice_{k}"] = dice(prediction, raters, k)
        out[f"confidence_{k}"] = consensus_confidence(probs[k - 1], raters, k)
        volumes = [float(np.unique(r, return_counts=True)[1][k]) for r in raters]
        out[f"crps_{k}"] = curvas_crps(float(probs[k - 1].sum()), volumes)
        out[f"volume_pred_{k}"] = float(probs[k - 1].sum())
    for r, result in enumerate(curvas_ece(probs, raters), start=1):
        out[f"ece_rater{r}"] = result.ece
    return out


def _check(rows: list[dict[str, str]], arrays: dict[str, Any], **kw: bool) -> None:
    by_case = {r["case_id"]: r for r in rows}
    assert set(by_case) == set(arrays)
    for case, a in arrays.items():
        for name, value in _expected(a, **kw).items():
            got = float(by_case[case][name])
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (case, name)


def test_official_case_folders_score_in_simpleitk_order(official, tmp_path: Path) -> None:
    summary, rows = _run(tmp_path / "plain", official["pred"], official["gt"])
    _check(rows, official["arrays"])
    conventions = summary["conventions"]
    assert conventions["raters"] == ["annotation_1", "annotation_2", "annotation_3"]
    assert conventions["binarized_prediction"] == "prediction.nii.gz of each case folder"
    assert conventions["axes"].startswith("SimpleITK")
    assert summary["cases"]["errors"] == 0
    literal, rows = _run(
        tmp_path / "literal", official["pred"], official["gt"], "literal=true", "crop=true"
    )
    _check(rows, official["arrays"], literal=True, crop=True)
    assert literal["conventions"]["crop"] is True  # the CT came from each case's image.nii.gz


def test_nibabel_order_changes_the_rowwise_dice(official, tmp_path: Path) -> None:
    """axes=nibabel reads the same files in reversed order: fine for 3-D sums, not rows."""
    pred = tmp_path / "pred_nib"
    for case in CASES:
        (pred / case).mkdir(parents=True)
        probs = official["arrays"][case]["probs"]
        np.savez(pred / case / "probabilities.npz", probabilities=probs.transpose(0, 3, 2, 1))
        src = official["pred"] / case / "prediction.nii.gz"
        (pred / case / "prediction.nii.gz").write_bytes(src.read_bytes())
    _, sitk_rows = _run(tmp_path / "a", official["pred"], official["gt"], "literal=true")
    _, nib_rows = _run(tmp_path / "b", pred, official["gt"], "literal=true", "axes=nibabel")
    s = {r["case_id"]: r for r in sitk_rows}
    n = {r["case_id"]: r for r in nib_rows}
    for case in CASES:
        assert float(n[case]["confidence_1"]) == pytest.approx(float(s[case]["confidence_1"]))
    assert all(float(n[c]["dice_1"]) != pytest.approx(float(s[c]["dice_1"])) for c in CASES)


def test_transposed_probabilities_are_refused(official, tmp_path: Path) -> None:
    pred = tmp_path / "pred"
    for case in CASES:
        (pred / case).mkdir(parents=True)
        probs = official["arrays"][case]["probs"]
        if case == "case_02":  # saved in nibabel's order: (organs, columns, rows, slices)
            probs = probs.transpose(0, 3, 2, 1)
        np.savez(pred / case / "probabilities.npz", probabilities=probs)
        src = official["pred"] / case / "prediction.nii.gz"
        (pred / case / "prediction.nii.gz").write_bytes(src.read_bytes())
    summary, rows = _run(tmp_path / "out", pred, official["gt"])
    assert summary["cases"]["errors"] == 1 and summary["cases"]["error_cases"] == ["case_02"]
    bad = next(r for r in rows if r["case_id"] == "case_02")
    assert bad["status"] == "error"
    assert "(3, 16, 12, 5)" in bad["error"] and "(5, 12, 16)" in bad["error"]
    assert "permuted" in bad["error"]
    _check(
        [r for r in rows if r["case_id"] != "case_02"],
        {c: official["arrays"][c] for c in ("case_01", "case_03")},
    )
    # every case transposed: nothing to score, the run stops with the reason and the fix
    for case in ("case_01", "case_03"):
        probs = official["arrays"][case]["probs"].transpose(0, 3, 2, 1)
        np.savez(pred / case / "probabilities.npz", probabilities=probs)
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--preset",
            "curvas",
            "--pred",
            str(pred),
            "--gt",
            str(official["gt"]),
            "--out",
            str(tmp_path / "none"),
        ],
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "permuted" in text and "axes=nibabel" in text


def test_a_failing_case_is_an_error_row_and_the_others_are_scored(official, tmp_path: Path) -> None:
    gt = tmp_path / "gt"
    for case in CASES:
        (gt / case).mkdir(parents=True)
        raters = official["arrays"][case]["raters"].copy()
        if case == "case_03":
            raters[1][raters[1] == 2] = 0  # rater 2 never labels organ 2
        for r, rater in enumerate(raters, start=1):
            _write(rater, gt / case / f"annotation_{r}.nii.gz")
    # the official np.unique indexing fails for organ 3 of case_03 (3 distinct values)
    summary, rows = _run(tmp_path / "unique", official["pred"], gt, "volume_count=unique-index")
    assert summary["cases"]["errors"] == 1 and summary["cases"]["error_cases"] == ["case_03"]
    failed = next(r for r in rows if r["case_id"] == "case_03")
    assert failed["status"] == "error" and "volume_count=label" in failed["error"]
    scored = [r for r in rows if r["status"] == "ok"]
    assert {r["case_id"] for r in scored} == {"case_01", "case_02"}
    c = summary["preset"]["components"]
    assert c["dice_1"] == pytest.approx(np.mean([float(r["dice_1"]) for r in scored]))
    assert c["ece_rater2"] == pytest.approx(np.mean([float(r["ece_rater2"]) for r in scored]))
    assert any("case_03" in w and "could not be scored" in w for w in summary["warnings"])
    # counting the organ's voxels scores it, with a warning that the official code cannot
    summary, rows = _run(tmp_path / "label", official["pred"], gt)
    assert summary["cases"]["errors"] == 0 and len(rows) == 3
    assert any(
        "case_03" in w and "organ 3" in w and "does not exist" in w for w in summary["warnings"]
    )
    assert any(
        "case_03" in w and "organ 2" in w and "another label" in w for w in summary["warnings"]
    )


def test_an_unreadable_probabilities_file_is_an_error_row(official, tmp_path: Path) -> None:
    pred = tmp_path / "pred"
    for case in CASES:
        (pred / case).mkdir(parents=True)
        target = pred / case / "probabilities.npz"
        if case == "case_01":
            target.write_bytes(b"not a zip archive")
        else:
            target.write_bytes((official["pred"] / case / "probabilities.npz").read_bytes())
    summary, rows = _run(tmp_path / "out", pred, official["gt"])
    assert summary["cases"]["error_cases"] == ["case_01"]
    assert "probabilities.npz" in next(r for r in rows if r["case_id"] == "case_01")["error"]
    # no prediction.nii.gz here: the arg-max is the binarized prediction
    assert summary["conventions"]["binarized_prediction"].startswith("arg-max")
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 2 and all(math.isfinite(float(r["ece"])) for r in ok)


def test_nnunet_probabilities_with_a_background_channel(official, tmp_path: Path) -> None:
    pred = tmp_path / "pred"
    for case in CASES:
        (pred / case).mkdir(parents=True)
        probs = official["arrays"][case]["probs"]
        background = np.clip(1 - probs.sum(axis=0, keepdims=True), 0, 1)
        np.savez(
            pred / case / "probabilities.npz", probabilities=np.concatenate([background, probs])
        )
        src = official["pred"] / case / "prediction.nii.gz"
        (pred / case / "prediction.nii.gz").write_bytes(src.read_bytes())
    summary, rows = _run(tmp_path / "dropped", pred, official["gt"], "prob_background=true")
    _check(rows, official["arrays"])
    summary, _ = _run(tmp_path / "kept", pred, official["gt"])
    assert summary["preset"]["components"]["n_organs"] == 4
    assert any("prob_background=true" in w for w in summary["warnings"])
