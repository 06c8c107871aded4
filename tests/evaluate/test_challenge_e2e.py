"""``medfleet evaluate --preset NAME`` end to end on phantom data, for every preset."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.evaluate.challenges import PRESETS


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    root = tmp_path_factory.mktemp("phantoms")
    tasks = ["organ_lesion_seg", "intrapartum_seg", "head_circumference", "spine_landmarks"]
    generate_phantoms(root, PhantomConfig(tasks=tasks), sites=2, cases_per_site=3, size=48)
    return root


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _evaluate(out: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["evaluate", *args, "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    summary = json.loads((out / "summary.json").read_text())
    assert printed["summary"] == summary
    assert printed["report_html"] == str(out / "report.html")
    html = (out / "report.html").read_text()
    assert "Official score" in html and "data:image/png;base64," in html
    assert (out / "cases.csv").is_file()
    return summary


def _meta(path: Path, case_ids: list[str]) -> Path:
    ages = [35, 45, 55, 65, 75, 38]
    status = ["pre", "post", "", "peri", "postmenopausal", "pre"]
    density = ["a", "b", "", "c", "d", "a"]
    return _write(
        path,
        ["case_id", "age", "menopausal_status", "breast_density"],
        [[c, ages[i % 6], status[i % 6], density[i % 6]] for i, c in enumerate(case_ids)],
    )


def test_mama_mia_seg(phantoms: Path, tmp_path: Path) -> None:
    seg = phantoms / "organ_lesion_seg"
    ids = sorted(p.stem for p in (seg / "mask").glob("*.png"))
    meta = _meta(tmp_path / "meta.csv", ids)
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "mama-mia-seg",
        "--pred",
        str(seg / "mask_rater1"),
        "--gt",
        str(seg / "mask"),
        "--meta",
        str(meta),
    )
    p = s["preset"]
    c = p["components"]
    assert p["name"] == "mama-mia-seg" and s["task_type"] == "segmentation"
    assert p["score"] == pytest.approx(0.5 * c["performance"] + 0.5 * c["fairness"])
    assert c["performance"] == pytest.approx(0.5 * (c["mean_dice"] + 1 - c["mean_norm_hd"]))
    assert set(p["subgroups"]) == {"age", "menopausal_status", "breast_density"}
    meno = p["subgroups"]["menopausal_status"]["groups"]
    assert {g: v["n"] for g, v in meno.items()} == {"pre": 3, "post": 2, "unknown": 1}
    assert p["subgroups"]["breast_density"]["n_dropped"] == 1
    rows = _table(tmp_path / "out" / "cases.csv")
    assert len(rows) == 6 and all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    assert math.isfinite(p["score"])


def test_mama_mia_pcr(phantoms: Path, tmp_path: Path) -> None:
    ids = [f"p{i}" for i in range(12)]
    truth = [i % 2 for i in range(12)]
    scores = [0.9, 0.1, 0.8, 0.6, 0.3, 0.2, 0.5, 0.4, 0.7, 0.55, 0.65, 0.05]
    gt = _write(
        tmp_path / "gt.csv", ["case_id", "label"], [[c, t] for c, t in zip(ids, truth, strict=True)]
    )
    pred = _write(
        tmp_path / "pred.csv",
        ["case_id", "score"],
        [[c, s] for c, s in zip(ids, scores, strict=True)],
    )
    meta = _meta(tmp_path / "meta.csv", ids)
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "mama-mia-pcr",
        "--pred",
        str(pred),
        "--gt",
        str(gt),
        "--meta",
        str(meta),
    )
    p = s["preset"]
    predicted = [int(v > 0.5) for v in scores]  # 0.5 itself is not pCR
    assert predicted[6] == 0
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    assert p["components"]["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(truth, predicted)
    )
    assert p["components"]["auc"] == pytest.approx(roc_auc_score(truth, scores))
    assert p["score"] == pytest.approx(
        0.5 * p["components"]["balanced_accuracy"] + 0.5 * (1 - p["components"]["disparity"])
    )
    assert "Calibration" in (tmp_path / "out" / "report.html").read_text()


def test_curvas_with_body_crop(phantoms: Path, tmp_path: Path) -> None:
    seg = phantoms / "organ_lesion_seg"
    probs, ct = tmp_path / "probs", tmp_path / "ct"
    probs.mkdir()
    ct.mkdir()
    for path in sorted((seg / "mask").glob("*.png")):
        mask = np.asarray(Image.open(path))
        p = np.stack([ndimage.gaussian_filter((mask == k).astype(float), 1.0) for k in (1, 2)])
        np.save(probs / f"{path.stem}.npy", 0.95 * p)
        body = np.zeros(mask.shape, np.int16)
        body[4:-4, 4:-4] = 100
        np.save(ct / f"{path.stem}.npy", body)
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "curvas",
        "--pred",
        str(probs),
        "--gt",
        str(seg),
        "--preset-option",
        "crop=true",
        "--preset-option",
        f"ct={ct}",
    )
    c = s["preset"]["components"]
    assert c["n_raters"] == 3 and c["n_organs"] == 2
    assert 0.8 < c["dice_1"] <= 1.0 and 0.5 < c["confidence_1"] <= 1.0
    assert all(0.0 <= c[f"ece_rater{r}"] <= 1.0 for r in (1, 2, 3))
    assert c["crps_1"] >= 0.0
    assert s["preset"]["score"] is None  # the challenge ranks each metric separately
    assert "Reliability" in (tmp_path / "out" / "report.html").read_text()
    literal = _evaluate(
        tmp_path / "lit",
        "--preset",
        "curvas",
        "--pred",
        str(probs),
        "--gt",
        str(seg),
        "--preset-option",
        "literal=true",
    )
    assert literal["preset"]["components"]["dice_1"] != c["dice_1"]


def test_fugc_with_runtime_and_other_submissions(phantoms: Path, tmp_path: Path) -> None:
    seg = phantoms / "organ_lesion_seg"
    ids = sorted(p.stem for p in (seg / "mask").glob("*.png"))
    runtime = _write(tmp_path / "rt.csv", ["case_id", "runtime"], [[c, 0.2] for c in ids])
    others = _write(
        tmp_path / "subs.csv",
        ["submission", "dsc", "hd", "runtime"],
        [["team_x", 0.99, 50.0, 0.5], ["team_y", 0.1, 0.5, 0.01]],
    )
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "fugc",
        "--pred",
        str(seg / "mask_rater1"),
        "--gt",
        str(seg / "mask"),
        "--preset-option",
        f"runtime={runtime}",
        "--preset-option",
        f"submissions={others}",
    )
    c = s["preset"]["components"]
    assert c["n_submissions"] == 3 and c["runtime"] == pytest.approx(0.2)
    assert s["preset"]["score"] == pytest.approx(
        0.4 * c["dsc_norm"] + 0.4 * c["hd_norm"] + 0.2 * c["runtime_norm"]
    )
    assert "Ranking" in (tmp_path / "out" / "report.html").read_text()


def test_iugc_with_classification_and_mm(phantoms: Path, tmp_path: Path) -> None:
    ip = phantoms / "intrapartum_seg"
    rows = _table(phantoms / "intrapartum_seg.csv")
    meta = _write(
        tmp_path / "meta.csv", ["case_id", "spacing"], [[r["case_id"], r["spacing"]] for r in rows]
    )
    cls_gt = _write(
        tmp_path / "cls_gt.csv",
        ["case_id", "label"],
        [[r["case_id"], i % 2] for i, r in enumerate(rows)],
    )
    cls_pred = _write(
        tmp_path / "cls_pred.csv",
        ["case_id", "score"],
        [[r["case_id"], 0.8 if i % 2 else 0.3] for i, r in enumerate(rows)],
    )
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "iugc",
        "--pred",
        str(ip / "mask_rater1"),
        "--gt",
        str(ip / "mask"),
        "--meta",
        str(meta),
        "--units",
        "mm",
        "--preset-option",
        f"classification_pred={cls_pred}",
        "--preset-option",
        f"classification_gt={cls_gt}",
    )
    c = s["preset"]["components"]
    assert c["classification"]["accuracy"] == 1.0 and c["classification"]["auc"] == 1.0
    assert 0.5 < c["dsc"] <= 1.0 and c["hd"] >= 0.0
    assert math.isfinite(c["aop_error"]) and math.isfinite(c["hsd_error"])
    cases = _table(tmp_path / "out" / "cases.csv")
    hsd_px = [float(r["hsd_gt"]) for r in cases]
    spacing = float(rows[0]["spacing"].split(",")[0])
    assert spacing != 1.0 and all(v > 0 for v in hsd_px)
    assert "Bland-Altman" in (tmp_path / "out" / "report.html").read_text()


def test_fmc_uia_segmentation(phantoms: Path, tmp_path: Path) -> None:
    seg = phantoms / "organ_lesion_seg"
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "fmc-uia",
        "--task-type",
        "segmentation",
        "--pred",
        str(seg / "mask_rater2"),
        "--gt",
        str(seg / "mask"),
    )
    c = s["preset"]["components"]
    assert c["n_classes"] == 3
    assert c["dsc"] == pytest.approx((c["dice_1"] + c["dice_2"]) / 2)


def test_landmarks_isbi2015(phantoms: Path, tmp_path: Path) -> None:
    rows = _table(phantoms / "spine_landmarks.csv")
    gt = _write(
        tmp_path / "gt.csv",
        ["case_id", "landmarks"],
        [[r["case_id"], r["landmarks"]] for r in rows],
    )
    shifted = []
    for r in rows:
        pts = [[float(v) for v in p.split(",")] for p in r["landmarks"].split(";")]
        shifted.append([r["case_id"], ";".join(f"{x},{y + 30.0}" for x, y in pts)])
    pred = _write(tmp_path / "pred.csv", ["case_id", "landmarks"], shifted)
    s = _evaluate(
        tmp_path / "out", "--preset", "landmarks-isbi2015", "--pred", str(pred), "--gt", str(gt)
    )
    assert s["preset"]["score"] == pytest.approx(3.0)  # 30 pixels of 0.1 mm
    assert s["preset"]["components"]["sdr_4"] == 1.0


def test_hc18(phantoms: Path, tmp_path: Path) -> None:
    heads = phantoms / "head_circumference" / "head_mask"
    rows = _table(phantoms / "head_circumference.csv")
    meta = _write(
        tmp_path / "meta.csv",
        ["case_id", "spacing", "hc_mm"],
        [[r["case_id"], r["spacing"], r["value"]] for r in rows],
    )
    pred = tmp_path / "pred"
    pred.mkdir()
    for path in heads.glob("*.png"):
        mask = np.asarray(Image.open(path)) > 0
        Image.fromarray(ndimage.binary_dilation(mask).astype(np.uint8)).save(pred / path.name)
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "hc18",
        "--pred",
        str(pred),
        "--gt",
        str(heads),
        "--meta",
        str(meta),
        "--preset-option",
        "hc_column=hc_mm",
    )
    p = s["preset"]
    assert p["score"] == pytest.approx(p["components"]["adf_mm"])
    pixel = float(rows[0]["spacing"].split(",")[0])
    # one pixel of dilation adds about 2 pi pixels to the circumference
    assert 0.5 * 2 * math.pi * pixel < p["components"]["df_mm"] < 1.5 * 2 * math.pi * pixel
    cases = _table(tmp_path / "out" / "cases.csv")
    assert {float(r["hc_gt_mm"]) for r in cases} == {float(r["value"]) for r in rows}


def test_every_preset_is_exercised() -> None:
    assert set(PRESETS) == {
        "mama-mia-seg",
        "mama-mia-pcr",
        "curvas",
        "fugc",
        "iugc",
        "fmc-uia",
        "landmarks-isbi2015",
        "hc18",
    }


def test_preset_errors_are_clear(phantoms: Path, tmp_path: Path) -> None:
    seg = phantoms / "organ_lesion_seg"
    runner = CliRunner()
    base = [
        "evaluate",
        "--pred",
        str(seg / "mask_rater1"),
        "--gt",
        str(seg / "mask"),
        "--out",
        str(tmp_path / "o"),
    ]
    unknown = runner.invoke(app, [*base, "--preset", "nope"])
    assert unknown.exit_code == 1 and "unknown preset 'nope'" in " ".join(unknown.output.split())
    bad = runner.invoke(app, [*base, "--preset", "fugc", "--preset-option", "colour=red"])
    assert bad.exit_code == 1 and "has no option 'colour'" in " ".join(bad.output.split())
    no_meta = runner.invoke(app, [*base, "--preset", "mama-mia-seg"])
    assert no_meta.exit_code == 1 and "no metadata row" in " ".join(no_meta.output.split())
    wrong_type = runner.invoke(app, [*base, "--preset", "hc18", "--task-type", "detection"])
    assert wrong_type.exit_code == 1 and "scores segmentation tasks" in " ".join(
        wrong_type.output.split()
    )
    units = runner.invoke(app, [*base, "--preset", "fugc", "--units", "mm"])
    assert units.exit_code == 1 and "takes no --units" in " ".join(units.output.split())
    assert not (tmp_path / "o").exists()
