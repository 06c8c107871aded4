"""The MAMA-MIA presets read the challenge's own tables: ``patient_id``, the clinical sheet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.errors import InputFileError
from medfleet.evaluate.runner.cases import read_case_table

AGES = [35, 45, 55, 65, 75]
STATUS = ["premenopausal", "postmenopausal", "perimenopausal", "", "Postmenopausal"]
DENSITY = ["a", "b", "c", "d", ""]


def _clinical(n: int, seed: int = 7) -> pd.DataFrame:
    """A clinical table shaped like the official ``dataset_info`` sheet (every age bin used)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "patient_id": [f"DUKE_{i:03d}" for i in range(n)],
            "dataset": ["duke"] * n,
            "age": [AGES[i % 5] + int(rng.integers(0, 4)) for i in range(n)],
            "menopausal_status": [STATUS[(i * 3) % 5] for i in range(n)],
            "breast_density": [DENSITY[(i * 2) % 5] for i in range(n)],
            "pcr": rng.integers(0, 2, n),
        }
    )


def _official_task2(clinical: pd.DataFrame, pcr_pred: np.ndarray) -> float:
    """The ranking score as ``scoring_task2.py`` computes it (its steps, on its columns)."""
    df = clinical[["patient_id", "pcr", "age", "menopausal_status", "breast_density"]].copy()
    df["age"] = pd.cut(
        df["age"], bins=[0, 40, 50, 60, 70, 100], labels=["0-40", "41-50", "51-60", "61-70", "71+"]
    )
    df["menopausal_status"] = (
        df["menopausal_status"]
        .replace("", np.nan)
        .fillna("unknown")
        .str.lower()
        .apply(lambda x: "pre" if "peri" in x or "pre" in x else ("post" if "post" in x else x))
    )
    df["breast_density"] = df["breast_density"].replace("", np.nan)
    df["pcr_pred"] = pcr_pred.astype(int)
    performance = balanced_accuracy_score(df["pcr"].astype(int), df["pcr_pred"])
    disparities = []
    for var in ("age", "menopausal_status", "breast_density"):
        tpr, fpr = {}, {}
        for i, (_, group) in enumerate(df.groupby(var, observed=True)):
            try:
                tn, fp, fn, tp = confusion_matrix(group["pcr"], group["pcr_pred"]).ravel()
                tpr[i] = tp / (tp + fn) if (tp + fn) else 0
                fpr[i] = fp / (fp + tn) if (fp + tn) else 0
            except ValueError:
                tpr[i], fpr[i] = 0, 0
        disparities.append(
            max(tpr.values()) - min(tpr.values()) + max(fpr.values()) - min(fpr.values())
        )
    fairness = float(np.clip(np.mean(disparities), 0, 1))
    return 0.5 * performance + 0.5 * (1 - fairness)


def _evaluate(out: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["evaluate", *args, "--out", str(out), "--format", "json", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text())


def test_official_task2_output_scores_with_patient_id_and_pcr_pred(tmp_path: Path) -> None:
    clinical = _clinical(40)
    rng = np.random.default_rng(3)
    pcr_pred = rng.integers(0, 2, len(clinical))
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    # The official template's results_task2.csv: the truth as ``pcr`` beside ``pcr_pred``.
    output = clinical[["patient_id", "pcr", "age", "menopausal_status", "breast_density"]].copy()
    output["pcr_pred"] = pcr_pred
    output.to_csv(tmp_path / "results_task2.csv", index=False)
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "mama-mia-pcr",
        "--pred",
        str(tmp_path / "results_task2.csv"),
        "--gt",
        str(tmp_path / "clinical.csv"),
    )
    p = s["preset"]
    assert p["score"] == pytest.approx(_official_task2(clinical, pcr_pred), abs=1e-12)
    assert p["components"]["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(clinical["pcr"], pcr_pred)
    )
    columns = s["conventions"]["columns"]
    assert columns["prediction"] == "pcr_pred" and columns["truth"] == "pcr"
    assert columns["id"] == "patient_id (--pred), patient_id (--gt)"


def test_clinical_spreadsheet_sheet_dataset_info_is_read(tmp_path: Path) -> None:
    clinical = _clinical(30, seed=11)
    scores = np.random.default_rng(5).random(len(clinical))
    book = tmp_path / "clinical_and_imaging_info.xlsx"
    with pd.ExcelWriter(book) as writer:
        pd.DataFrame({"note": ["other sheet first"]}).to_excel(writer, sheet_name="readme")
        clinical.to_excel(writer, sheet_name="dataset_info", index=False)
    pd.DataFrame({"patient_id": clinical["patient_id"], "score": scores}).to_csv(
        tmp_path / "pred.csv", index=False
    )
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "mama-mia-pcr",
        "--pred",
        str(tmp_path / "pred.csv"),
        "--gt",
        str(book),
        "--meta",
        str(book),
    )
    official = _official_task2(clinical, (scores > 0.5).astype(int))
    assert s["preset"]["score"] == pytest.approx(official, abs=1e-12)
    table = read_case_table(book, ["age"])
    assert table.rows["DUKE_002"]["breast_density"] == ""  # an empty cell stays empty
    assert table.rows["DUKE_000"]["age"] == str(clinical["age"][0])


def test_segmentation_masks_named_by_patient_with_the_clinical_table(tmp_path: Path) -> None:
    clinical = _clinical(10, seed=2)
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    rng = np.random.default_rng(0)
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
    for pid in clinical["patient_id"]:
        gt = np.zeros((12, 14, 10), np.uint8)
        gt[3:8, 4:10, 2:7] = 1
        pred = np.roll(gt, int(rng.integers(-2, 3)), axis=1)
        for folder, arr in (("gt", gt), ("pred", pred)):
            nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / folder / f"{pid}.nii.gz")
    s = _evaluate(
        tmp_path / "out",
        "--preset",
        "mama-mia-seg",
        "--pred",
        str(tmp_path / "pred"),
        "--gt",
        str(tmp_path / "gt"),
        "--meta",
        str(tmp_path / "clinical.csv"),
    )
    groups = s["preset"]["subgroups"]["age"]["groups"]
    assert sum(g["n"] for g in groups.values()) == 10 and len(groups) == 5


def test_case_id_wins_over_patient_id_and_a_missing_id_column_names_both(tmp_path: Path) -> None:
    both = tmp_path / "both.csv"
    both.write_text("patient_id,case_id,value\nP1,img_a,1\nP1,img_b,2\n")
    table = read_case_table(both, ["value"])
    assert table.id_column == "case_id" and sorted(table.rows) == ["img_a", "img_b"]
    none = tmp_path / "none.csv"
    none.write_text("subject,value\nP1,1\n")
    with pytest.raises(InputFileError, match="patient_id"):
        read_case_table(none, ["value"])
