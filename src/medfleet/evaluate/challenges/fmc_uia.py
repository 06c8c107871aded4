"""FMC_UIA (Foundation Model Challenge for Ultrasound Image Analysis): the 27-task benchmark.

One run scores one task; ``--task-type`` picks the scheme:

* ``segmentation``: per image and foreground class ``c = 1 .. K-1``, Dice (1 when both
  masks are empty) and the Hausdorff distance in pixels between the sets of foreground
  pixels (SimpleITK ``HausdorffDistanceImageFilter``), 0 when both are empty and the image
  diagonal ``sqrt(h^2 + w^2)`` when exactly one is; each class is averaged over images and
  the task's DSC and HD are the means over the foreground classes.
* ``classification``: accuracy, AUC (binary: the positive-class probability; otherwise
  macro one-vs-rest), macro and weighted F1 (zero division 0) and MCC. An AUC that cannot
  be computed (one class, or probabilities missing) is 0 as in the official script
  (option ``auc_undefined=nan``).
* ``detection``: mean IoU of one box per image (the first box of each cell, or the one
  with the highest score); a zero union gives 0.
* ``landmarks`` (the benchmark's keypoint "regression" tasks): per image the mean
  Euclidean distance of its points in pixels; MRE is the mean over images.

A missing prediction is skipped by the official script; here it is an error unless
``--allow-missing``, which scores it as the worst case (Dice 0, HD = diagonal, IoU 0;
classification and keypoints are then left out, as officially).

Source: the FMC_UIA evaluation script (``Evaluator`` in the challenge's baseline code,
github.com/lijiake2408/Foundation-Model-Challenge-for-Ultrasound-Image-Analysis).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medfleet.errors import ManifestError
from medfleet.evaluate.cases import parse_boxes, parse_numbers, parse_points
from medfleet.evaluate.challenges._inputs import (
    iter_mask_pairs,
    plan_cases,
    plan_mask_pairs,
    read_table,
)
from medfleet.evaluate.challenges.base import Preset, PresetOption, PresetOutcome, PresetRun
from medfleet.evaluate.challenges.iugc import iugc_hd
from medfleet.evaluate.detection import box_iou
from medfleet.evaluate.landmarks import landmark_errors

__all__ = ["PRESET", "fmc_segmentation_metrics"]


def fmc_segmentation_metrics(pred: np.ndarray, gt: np.ndarray, n_classes: int) -> dict[str, float]:
    """Dice and HD of each foreground class ``1 .. n_classes - 1`` and their means.

    Example:
        >>> gt = np.zeros((3, 4), np.uint8); gt[0, 0] = 1
        >>> m = fmc_segmentation_metrics(np.zeros_like(gt), gt, 3)
        >>> m["dice_1"], m["hd_1"], m["dice_2"], m["hd_2"], m["dice"], m["hd"]
        (0.0, 5.0, 1.0, 0.0, 0.5, 2.5)
    """
    p, g = np.asarray(pred), np.asarray(gt)
    diagonal = float(math.sqrt(sum(float(n) ** 2 for n in g.shape)))
    out: dict[str, float] = {}
    for c in range(1, n_classes):
        pm, gm = p == c, g == c
        n_p, n_g = int(pm.sum()), int(gm.sum())
        dice = 1.0 if n_p + n_g == 0 else 2.0 * float(np.count_nonzero(pm & gm)) / (n_p + n_g)
        if n_p == 0 and n_g == 0:
            hd = 0.0
        elif n_p == 0 or n_g == 0:
            hd = diagonal
        else:
            hd = iugc_hd(pm, gm)
        out[f"dice_{c}"] = dice
        out[f"hd_{c}"] = hd
    classes = range(1, n_classes)
    out["dice"] = float(np.mean([out[f"dice_{c}"] for c in classes])) if n_classes > 1 else 0.0
    out["hd"] = float(np.mean([out[f"hd_{c}"] for c in classes])) if n_classes > 1 else 0.0
    return out


def _segmentation(run: PresetRun) -> PresetOutcome:
    plan = plan_mask_pairs(run)
    n_classes = int(run.options["num_classes"])
    rows: list[dict[str, Any]] = []
    pairs = list(iter_mask_pairs(run, plan)) if n_classes <= 0 else None
    if n_classes <= 0:
        assert pairs is not None
        top = max(max(int(p.gt.max()), int(p.pred.max())) for p in pairs)
        n_classes = top + 1
    for pair in pairs if pairs is not None else iter_mask_pairs(run, plan):
        if pair.gt.ndim != 2:
            raise ManifestError(f"case {pair.case_id}: FMC_UIA masks are 2-D, got {pair.gt.shape}")
        metrics = fmc_segmentation_metrics(pair.pred, pair.gt, n_classes)
        rows.append({"case_id": pair.case_id, "status": pair.status, **metrics})
    classes = list(range(1, n_classes))
    components: dict[str, Any] = {"n_classes": n_classes}
    for c in classes:
        components[f"dice_{c}"] = float(np.mean([r[f"dice_{c}"] for r in rows]))
        components[f"hd_{c}"] = float(np.mean([r[f"hd_{c}"] for r in rows]))
    components["dsc"] = (
        float(np.mean([components[f"dice_{c}"] for c in classes])) if classes else 0.0
    )
    components["hd"] = float(np.mean([components[f"hd_{c}"] for c in classes])) if classes else 0.0
    components["n_images"] = len(rows)
    return PresetOutcome(
        rows=rows,
        metrics=["dice", "hd", *[f"dice_{c}" for c in classes], *[f"hd_{c}" for c in classes]],
        score=None,
        score_name="no single official score: DSC and HD per task",
        components=components,
        cases=plan.cases,
        conventions={
            "hd": "Hausdorff of the foreground pixel sets, pixels; diagonal when one "
            "mask is empty, 0 when both are",
            "classes": f"1..{n_classes - 1}",
        },
        higher_is_better={"dice": True, "hd": False},
    )


def _classification(run: PresetRun) -> PresetOutcome:
    from medfleet.evaluate.classification import accuracy, f1_score, matthews_corrcoef, roc_auc

    config = run.config
    pred = read_table(config.pred, (), "--pred")
    gt = read_table(config.gt, ("label",), "--gt")
    case_ids, cases = plan_cases(run, pred.rows, gt.rows)
    scored = [c for c in case_ids if c in pred.rows]
    prob_cols = sorted(
        (c for c in pred.columns if c.startswith("prob_")),
        key=lambda c: int(c[5:]) if c[5:].isdigit() else c,
    )
    truths = {c: _int(gt.rows[c]["label"], c, "label") for c in scored}
    n_classes = (
        int(run.options["num_classes"])
        or max(
            [
                *truths.values(),
                len(prob_cols) - 1,
                *(
                    _int(pred.rows[c]["label"], c, "label")
                    for c in scored
                    if "label" in pred.columns and pred.rows[c]["label"] != ""
                ),
            ]
        )
        + 1
    )
    rows, y_true, y_pred, probs = [], [], [], []
    for c in scored:
        row = pred.rows[c]
        p_vec = None
        if prob_cols:
            p_vec = np.array([_float(row[k], c, k) for k in prob_cols])
        if "label" in pred.columns and row["label"] != "":
            label = _int(row["label"], c, "label")
        elif p_vec is not None:
            label = int(np.argmax(p_vec))
        else:
            raise ManifestError(f"case {c}: the prediction has no label and no prob_<k> columns")
        y_true.append(truths[c])
        y_pred.append(label)
        if p_vec is not None:
            probs.append(p_vec)
        rows.append(
            {
                "case_id": c,
                "status": "ok",
                "gt": truths[c],
                "pred": label,
                "correct": float(label == truths[c]),
            }
        )
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(n_classes))
    present = sorted(set(yt.tolist()) | set(yp.tolist()))
    auc = math.nan
    if len(probs) == len(yt) and probs:
        score = np.stack(probs)
        try:
            if n_classes == 2:
                auc = float(roc_auc(yt, score[:, 1], labels=[0, 1], pos_label=1))
            elif n_classes > 2:
                auc = float(roc_auc(yt, score, average="macro", labels=labels))
        except ValueError:
            auc = math.nan
    if math.isnan(auc) and run.options["auc_undefined"] == "zero":
        auc = 0.0
    components = {
        "accuracy": accuracy(yt, yp),
        "auc": auc,
        "f1_macro": float(f1_score(yt, yp, average="macro", labels=present)),
        "f1_weighted": float(f1_score(yt, yp, average="weighted", labels=present)),
        "mcc": matthews_corrcoef(yt, yp),
        "n_images": len(rows),
        "n_classes": n_classes,
    }
    return PresetOutcome(
        rows=rows,
        metrics=["correct"],
        score=None,
        score_name="no single official score: accuracy, AUC, F1, MCC per task",
        components=components,
        cases=cases,
        conventions={
            "f1": "sklearn f1_score over the classes present, zero_division 0",
            "auc_undefined": run.options["auc_undefined"],
        },
        higher_is_better={"correct": True},
    )


def _detection(run: PresetRun) -> PresetOutcome:
    config = run.config
    pred = read_table(config.pred, ("boxes",), "--pred")
    gt = read_table(config.gt, ("boxes",), "--gt")
    case_ids, cases = plan_cases(run, pred.rows, gt.rows)
    rows = []
    for c in case_ids:
        g_boxes, _ = parse_boxes(gt.rows[c]["boxes"], case_id=c, column="boxes (--gt)")
        if len(g_boxes) != 1:
            raise ManifestError(
                f"case {c}: FMC_UIA detection needs one reference box, got {len(g_boxes)}"
            )
        status = "ok"
        if c in pred.rows:
            p_boxes, _ = parse_boxes(pred.rows[c]["boxes"], case_id=c, column="boxes (--pred)")
            if "scores" in pred.columns and len(p_boxes) > 1:
                s = parse_numbers(pred.rows[c]["scores"], case_id=c, column="scores")
                p_boxes = p_boxes[[int(np.argmax(s))]] if len(s) == len(p_boxes) else p_boxes
            iou = box_iou(p_boxes[0], g_boxes[0]) if len(p_boxes) else 0.0
        else:
            iou, status = 0.0, "pred_missing"
        rows.append({"case_id": c, "status": status, "iou": iou})
    return PresetOutcome(
        rows=rows,
        metrics=["iou"],
        score=None,
        score_name="no single official score: mean IoU per task",
        components={"iou": float(np.mean([r["iou"] for r in rows])), "n_images": len(rows)},
        cases=cases,
        conventions={
            "box": "x_min,y_min,x_max,y_max in pixels; first (or highest-score) predicted box"
        },
        higher_is_better={"iou": True},
    )


def _keypoints(run: PresetRun) -> PresetOutcome:
    config = run.config
    pred = read_table(config.pred, ("landmarks",), "--pred")
    gt = read_table(config.gt, ("landmarks",), "--gt")
    case_ids, cases = plan_cases(run, pred.rows, gt.rows)
    rows = []
    for c in case_ids:
        if c not in pred.rows:
            continue
        g = parse_points(gt.rows[c]["landmarks"], case_id=c, column="landmarks (--gt)")
        p = parse_points(pred.rows[c]["landmarks"], case_id=c, column="landmarks (--pred)")
        if p.shape != g.shape:
            raise ManifestError(
                f"case {c}: {len(p)} predicted points but {len(g)} in the reference"
            )
        g = np.where(np.isnan(g), 0.0, g)  # a missing reference point is (0, 0) officially
        if np.isnan(p).any():
            raise ManifestError(
                f"case {c}: a predicted point is missing (fix: predict every point)"
            )
        rows.append({"case_id": c, "status": "ok", "mre": float(np.mean(landmark_errors(p, g)))})
    if not rows:
        raise ManifestError("no case has a keypoint prediction")
    return PresetOutcome(
        rows=rows,
        metrics=["mre"],
        score=None,
        score_name="no single official score: MRE (pixels) per task",
        components={"mre": float(np.mean([r["mre"] for r in rows])), "n_images": len(rows)},
        cases=cases,
        conventions={
            "mre": "per image mean Euclidean point distance in pixels, then mean over images",
            "missing_prediction": "skipped (official)",
        },
        higher_is_better={"mre": False},
    )


def _int(text: str, case_id: str, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(f"case {case_id}: {column} {text!r} is not a class index") from None
    if not value.is_integer() or value < 0:
        raise ManifestError(f"case {case_id}: {column} {text!r} is not a class index 0, 1, ...")
    return int(value)


def _float(text: str, case_id: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(f"case {case_id}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ManifestError(f"case {case_id}: {column} is not finite")
    return value


def _run(run: PresetRun) -> PresetOutcome:
    scorer = {
        "segmentation": _segmentation,
        "classification": _classification,
        "detection": _detection,
        "landmarks": _keypoints,
        "regression": _keypoints,
    }[run.config.task_type]
    return scorer(run)


PRESET = Preset(
    name="fmc-uia",
    title="FMC_UIA: foundation model challenge for ultrasound image analysis (27 tasks)",
    source="FMC_UIA evaluation script (Evaluator), github.com/lijiake2408/"
    "Foundation-Model-Challenge-for-Ultrasound-Image-Analysis",
    task_types=("segmentation", "classification", "detection", "landmarks", "regression"),
    summary="segmentation DSC/HD (px); classification accuracy, AUC, F1, MCC; detection "
    "IoU; keypoint MRE (px)",
    options=(
        PresetOption(
            "num_classes", 0, "Classes including background (0: infer from the data).", "int"
        ),
        PresetOption(
            "auc_undefined",
            "zero",
            "AUC when it cannot be computed: zero (official) or nan.",
            choices=("zero", "nan"),
        ),
    ),
    run=_run,
)
