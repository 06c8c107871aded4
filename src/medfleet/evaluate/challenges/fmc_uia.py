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

Inputs: medfleet's own (mask folders; CSV tables with ``case_id`` and ``label`` /
``prob_<k>``, ``boxes`` or ``landmarks``), or the challenge's files as distributed: with
``--gt`` a data root holding ``csv_files/`` and ``--preset-option task_id=TASK``, the rows of
that task are the references, ``--pred`` is the prediction root (masks at ``mask_path``
without ``../``, ``classification_predictions.json``, ``detection_predictions.json``,
``regression_predictions.json``), and case ids are the image paths without their leading
``../`` and suffix (:mod:`medfleet.evaluate.challenges._fmc_uia_files`). There an image
that cannot be read or scored is an error row, and the other images are still scored.

Source: the FMC_UIA evaluation script (``Evaluator`` in the challenge's baseline code,
github.com/lijiake2408/Foundation-Model-Challenge-for-Ultrasound-Image-Analysis).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import InputFileError, OptionError
from medfleet.evaluate.challenges import _fmc_uia_files as files
from medfleet.evaluate.challenges._inputs import (
    iter_mask_pairs,
    plan_cases,
    plan_mask_pairs,
    read_label_map,
    read_table,
)
from medfleet.evaluate.challenges.base import (
    CASE_ERROR,
    Preset,
    PresetOption,
    PresetOutcome,
    PresetRun,
    case_error_row,
    score_cases,
)
from medfleet.evaluate.challenges.iugc import iugc_hd
from medfleet.evaluate.metrics.detection import box_iou
from medfleet.evaluate.metrics.landmarks import landmark_errors
from medfleet.evaluate.runner.cases import parse_boxes, parse_numbers, parse_points
from medfleet.evaluate.runner.segmentation import resample_nearest

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
            raise InputFileError(f"case {pair.case_id}: FMC_UIA masks are 2-D, got {pair.gt.shape}")
        metrics = fmc_segmentation_metrics(pair.pred, pair.gt, n_classes)
        rows.append({"case_id": pair.case_id, "status": pair.status, **metrics})
    return _segmentation_outcome(rows, n_classes, plan.cases)


def _segmentation_outcome(
    rows: list[dict[str, Any]],
    n_classes: int,
    cases: dict[str, Any],
    conventions: dict[str, Any] | None = None,
) -> PresetOutcome:
    """Per-class means over the scored images (error rows left out) and the task's DSC/HD."""
    scored = [r for r in rows if r["status"] != CASE_ERROR]
    classes = list(range(1, n_classes))
    components: dict[str, Any] = {"n_classes": n_classes}
    for c in classes:
        components[f"dice_{c}"] = _mean([r[f"dice_{c}"] for r in scored])
        components[f"hd_{c}"] = _mean([r[f"hd_{c}"] for r in scored])
    components["dsc"] = (
        float(np.mean([components[f"dice_{c}"] for c in classes])) if classes else 0.0
    )
    components["hd"] = float(np.mean([components[f"hd_{c}"] for c in classes])) if classes else 0.0
    components["n_images"] = len(scored)
    return PresetOutcome(
        rows=rows,
        metrics=["dice", "hd", *[f"dice_{c}" for c in classes], *[f"hd_{c}" for c in classes]],
        score=None,
        score_name="no single official score: DSC and HD per task",
        components=components,
        cases=cases,
        conventions={
            "hd": "Hausdorff of the foreground pixel sets, pixels; diagonal when one "
            "mask is empty, 0 when both are",
            "classes": f"1..{n_classes - 1}",
            **(conventions or {}),
        },
        higher_is_better={"dice": True, "hd": False},
    )


def _classification(run: PresetRun) -> PresetOutcome:
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
    items: list[tuple[str, int, int, np.ndarray | None]] = []
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
            raise InputFileError(f"case {c}: the prediction has no label and no prob_<k> columns")
        items.append((c, truths[c], label, p_vec))
    return _classification_outcome(run, items, n_classes, cases)


def _classification_outcome(
    run: PresetRun,
    items: list[tuple[str, int, int, np.ndarray | None]],
    n_classes: int,
    cases: dict[str, Any],
    conventions: dict[str, Any] | None = None,
) -> PresetOutcome:
    """Accuracy, AUC, F1 and MCC of ``(case_id, truth, predicted class, probabilities)``."""
    from medfleet.evaluate.metrics.classification import (
        accuracy,
        f1_score,
        matthews_corrcoef,
        roc_auc,
    )

    rows, y_true, y_pred, probs = [], [], [], []
    for c, truth, label, p_vec in items:
        y_true.append(truth)
        y_pred.append(label)
        if p_vec is not None:
            probs.append(p_vec)
        rows.append(
            {
                "case_id": c,
                "status": "ok",
                "gt": truth,
                "pred": label,
                "correct": float(label == truth),
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
            **(conventions or {}),
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
            raise InputFileError(
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
    return _detection_outcome(
        rows,
        cases,
        {"box": "x_min,y_min,x_max,y_max in pixels; first (or highest-score) predicted box"},
    )


def _detection_outcome(
    rows: list[dict[str, Any]], cases: dict[str, Any], conventions: dict[str, Any]
) -> PresetOutcome:
    """Mean IoU over the scored images (error rows left out)."""
    scored = [r for r in rows if r["status"] != CASE_ERROR]
    return PresetOutcome(
        rows=rows,
        metrics=["iou"],
        score=None,
        score_name="no single official score: mean IoU per task",
        components={"iou": _mean([r["iou"] for r in scored]), "n_images": len(scored)},
        cases=cases,
        conventions=conventions,
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
            raise InputFileError(
                f"case {c}: {len(p)} predicted points but {len(g)} in the reference"
            )
        g = np.where(np.isnan(g), 0.0, g)  # a missing reference point is (0, 0) officially
        if np.isnan(p).any():
            raise InputFileError(
                f"case {c}: a predicted point is missing (fix: predict every point)"
            )
        rows.append({"case_id": c, "status": "ok", "mre": _mre(p, g)})
    return _keypoints_outcome(rows, cases)


def _mre(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean Euclidean distance of one image's points, in pixels."""
    return float(np.mean(landmark_errors(pred, gt)))


def _keypoints_outcome(
    rows: list[dict[str, Any]], cases: dict[str, Any], conventions: dict[str, Any] | None = None
) -> PresetOutcome:
    """MRE: the mean over the images of their mean point distance."""
    if not rows:
        raise InputFileError("no case has a keypoint prediction")
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
            **(conventions or {}),
        },
        higher_is_better={"mre": False},
    )


def _int(text: str, case_id: str, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(f"case {case_id}: {column} {text!r} is not a class index") from None
    if not value.is_integer() or value < 0:
        raise InputFileError(f"case {case_id}: {column} {text!r} is not a class index 0, 1, ...")
    return int(value)


def _float(text: str, case_id: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(f"case {case_id}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputFileError(f"case {case_id}: {column} is not finite")
    return value


def _mean(values: list[float]) -> float:
    """Mean, NaN for no value (every case an error row)."""
    return float(np.mean(values)) if values else math.nan


def _run(run: PresetRun) -> PresetOutcome:
    root = None if run.config.gt is None else files.data_root(run.config.gt)
    if root is not None:
        return _run_files(run, root)
    if run.options["task_id"]:
        raise OptionError(
            f"--preset-option task_id={run.options['task_id']} picks a task of the challenge's "
            f"data root, but --gt {run.config.gt} has no {files.CSV_FOLDER}/ folder (fix: "
            "--gt DATA_ROOT, the folder holding csv_files/, or drop task_id)"
        )
    scorer = {
        "segmentation": _segmentation,
        "classification": _classification,
        "detection": _detection,
        "landmarks": _keypoints,
        "regression": _keypoints,
    }[run.config.task_type]
    return scorer(run)


def _run_files(run: PresetRun, root: Path) -> PresetOutcome:
    """Score one task of the challenge's data root against its prediction root."""
    config = run.config
    task = files.read_task(root, str(run.options["task_id"]).strip())
    files.check_task_type(task, config.task_type, PRESET.task_types[0])
    n = int(run.options["num_classes"]) or task.num_classes
    conventions: dict[str, Any] = {
        "layout": "challenge files: data root csv_files/*.csv and prediction root",
        "task_id": task.task_id,
        "task_name": task.task_name,
        "num_classes": n,
        "case_id": "image_path without its leading ../ and its suffix",
    }
    kind = task.task_types[0]
    if kind == "segmentation":
        if not config.pred.is_dir():
            raise InputFileError(
                f"--pred {config.pred} is not a folder (fix: the prediction root, with each "
                "predicted mask at its mask_path without '../', as the challenge's model.py "
                "writes it)"
            )
        return _segmentation_files(run, task, n, conventions)
    values, extra, source = files.read_predictions(config.pred, task, kind, n)
    conventions["predictions"] = str(source)
    if kind == "classification":
        truths = {c: files.reference_class(row, n) for c, row in task.rows.items()}
        case_ids, cases = plan_cases(run, [*values, *extra], truths)
        items = [(c, truths[c], *values[c]) for c in case_ids if c in values]
        return _classification_outcome(run, items, n, cases, conventions)
    if kind == "detection":
        boxes = {c: files.reference_box(row) for c, row in task.rows.items()}
        boxless = [c for c, box in boxes.items() if box is None]
        case_ids, cases = plan_cases(run, [*values, *extra, *boxless], boxes)
        rows: list[dict[str, Any]] = []
        for c in case_ids:
            box = boxes[c]
            if box is None:
                problem = InputFileError(
                    f"{task.rows[c].where}: the reference box (x_min, y_min, x_max, y_max) "
                    "is empty; the official script skips the image"
                )
                rows.append(case_error_row(c, problem))
            elif c in values:
                rows.append({"case_id": c, "status": "ok", "iou": _official_iou(values[c], box)})
            else:
                rows.append({"case_id": c, "status": "pred_missing", "iou": 0.0})
        conventions["box"] = (
            "x_min,y_min,x_max,y_max in pixels (bbox_pixels); an inverted predicted box "
            "scores 0, as in the official formula"
        )
        return _detection_outcome(rows, cases, conventions)
    points = {c: files.reference_points(row, n) for c, row in task.rows.items()}
    case_ids, cases = plan_cases(run, [*values, *extra], points)
    rows = [
        {"case_id": c, "status": "ok", "mre": _mre(values[c], points[c])}
        for c in case_ids
        if c in values
    ]
    return _keypoints_outcome(rows, cases, conventions)


def _official_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two ``x_min, y_min, x_max, y_max`` boxes; 0 for an inverted predicted box.

    The official formula clips the intersection at 0, so a predicted box with
    ``x_max < x_min`` or ``y_max < y_min`` overlaps nothing and scores 0.

    Example:
        >>> _official_iou(np.array([0, 0, 4, 4]), np.array([2, 0, 6, 4]))
        0.3333333333333333
        >>> _official_iou(np.array([4, 0, 0, 4]), np.array([0, 0, 4, 4]))
        0.0
    """
    if pred[2] < pred[0] or pred[3] < pred[1]:
        return 0.0
    return box_iou(pred, gt)


def _segmentation_files(
    run: PresetRun, task: files.OfficialTask, n_classes: int, conventions: dict[str, Any]
) -> PresetOutcome:
    """Score each image's masks; an image that cannot be read or scored is an error row."""
    masks = {m.case_id: m for m in files.mask_cases(task, run.config.pred)}
    present = [c for c, m in masks.items() if m.pred is None or m.pred.exists()]
    case_ids, cases = plan_cases(run, present, masks)
    rows: list[dict[str, Any]] = []

    def score(case_id: str) -> dict[str, Any]:
        return _segmentation_case(run, masks[case_id], n_classes)

    rows.extend(row for _, row in score_cases(run, case_ids, score, rows, require_one=False))
    return _segmentation_outcome(rows, n_classes, cases, conventions)


def _segmentation_case(run: PresetRun, case: files.MaskCase, n_classes: int) -> dict[str, Any]:
    """The ``cases.csv`` row of one image of the data root."""
    if case.gt is None or case.pred is None:
        raise InputFileError(case.problem)
    gt, _ = read_label_map(case.gt, case.case_id, "gt")
    if gt.ndim != 2:
        raise InputFileError(f"the reference mask {case.gt} is not 2-D: {gt.shape}")
    status = "ok"
    if case.pred.exists():
        pred, _ = read_label_map(case.pred, case.case_id, "pred")
        if pred.shape != gt.shape:
            if run.config.resample_pred != "nearest" or pred.ndim != gt.ndim:
                raise InputFileError(
                    f"the predicted mask {case.pred} is {pred.shape}, the reference "
                    f"{gt.shape} (fix: --resample-pred nearest resizes predictions onto the "
                    "reference, as the official script does)"
                )
            pred = resample_nearest(pred, gt.shape)
    else:
        pred, status = np.zeros(gt.shape, dtype=np.uint8), "pred_missing"
    metrics = fmc_segmentation_metrics(pred, gt, n_classes)
    return {"case_id": case.case_id, "status": status, **metrics}


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
            "num_classes",
            0,
            "Classes including background, or points of a keypoint task (0: the task's "
            "num_classes in the challenge's csv_files, else inferred from the data).",
            "int",
        ),
        PresetOption(
            "task_id",
            "",
            "Task of the challenge's data root to score (--gt DATA_ROOT holding csv_files/; "
            "empty: its only task).",
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
