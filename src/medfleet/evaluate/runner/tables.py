"""Scoring of table-based task types for the evaluation runner.

Classification, detection, regression and landmarks read one CSV of predictions and one
of references, each with a ``case_id`` column (see :mod:`medfleet.evaluate.runner.cases` for the
cell formats), and score them with the plain metric functions of
:mod:`medfleet.evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfleet.errors import InputFileError, OptionError
from medfleet.evaluate.runner.aggregate import summarize_table
from medfleet.evaluate.runner.cases import (
    CaseMismatchError,
    parse_boxes,
    parse_numbers,
    parse_points,
    parse_spacing,
    read_case_table,
)
from medfleet.evaluate.runner.config import (
    EvaluationConfig,
    ScoredTask,
    check_match,
    fmt_spacing,
    match_info,
    meta_spacing,
    spacing_differs,
)

__all__ = ["score_table_task"]

_REQUIRED = {
    "classification": ((), ("label",)),
    "detection": (("boxes",), ("boxes",)),
    "regression": (("value",), ("value",)),
    "landmarks": (("landmarks",), ("landmarks",)),
}


def score_table_task(
    config: EvaluationConfig, meta_rows: Mapping[str, Mapping[str, Any]]
) -> tuple[ScoredTask, dict[str, Any]]:
    """Score a classification, detection, regression or landmarks run from its CSV tables.

    Args:
        config: Run configuration.
        meta_rows: ``--meta`` rows by case id (their ``spacing`` is used for landmarks).

    Returns:
        The scored rows and summaries, and the ``cases`` block of ``summary.json``.

    Raises:
        CaseMismatchError: Missing, extra or mismatched cases.
        InputFileError: A malformed table or cell; the message names the case.
        OptionError: An invalid setting (positive label, missing-landmark policy, ...).
    """
    pred_required, gt_required = _REQUIRED[config.task_type]
    pred_table = read_case_table(config.pred, pred_required, role="--pred")
    gt_table = read_case_table(config.gt, gt_required, role="--gt")
    pred_rows = pred_table.rows
    gt_rows = gt_table.rows
    match = check_match(config, pred_rows, gt_rows)
    case_ids = sorted([*match.matched, *(match.missing if config.allow_missing else [])])
    if not case_ids:
        raise InputFileError(f"no case of {config.gt} has a prediction in {config.pred}")
    scorer = {
        "classification": _classification,
        "detection": _detection,
        "regression": _regression,
        "landmarks": _landmarks,
    }[config.task_type]
    scored = scorer(config, case_ids, pred_rows, gt_rows, meta_rows, list(pred_table.columns))
    scored.conventions["allow_missing"] = config.allow_missing
    scored.conventions["std_ddof"] = 1
    return scored, match_info(match, config)


def _cell_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _natural_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _classes_as_values(classes: list[str]) -> list[Any]:
    """Class names as ints when every one is an integer (so 0/1 problems are binary)."""
    try:
        ints = [int(c) for c in classes]
    except ValueError:
        return classes
    return ints if [str(i) for i in ints] == classes else classes


@dataclass(frozen=True)
class _ClassTables:
    """What a classification run's tables declare, checked: columns, classes, positive class.

    Attributes:
        prob_columns: The ``prob_<class>`` columns of ``--pred``.
        has_score: ``--pred`` has a binary ``score`` column.
        has_label: ``--pred`` has a ``label`` column.
        classes: The classes, in order.
        positive: The positive class of a binary problem (``None``: none).
        multilabel: Labels are ``;``-separated class sets.
        truth: Case id -> its reference classes.
    """

    prob_columns: list[str]
    has_score: bool
    has_label: bool
    classes: list[str]
    positive: str | None
    multilabel: bool
    truth: dict[str, list[str]]

    @property
    def use_scores(self) -> bool:
        """Whether the predictions carry probabilities or a score."""
        return bool(self.prob_columns) or self.has_score

    def split(self, cell: Any) -> list[str]:
        """The classes of a label cell (one, or a ``;``-separated set when multilabel)."""
        text = _cell_text(cell)
        if not self.multilabel:
            return [text] if text else []
        return [t.strip() for t in text.split(";") if t.strip()]

    def check(self, value: str, case_id: str, role: str) -> None:
        """Refuse a label outside the classes, naming the case."""
        if value not in self.classes:
            raise InputFileError(
                f"case {case_id}: {role} label {value!r} is not one of the classes {self.classes}"
            )


def _classification(
    config: EvaluationConfig,
    case_ids: list[str],
    pred_rows: Mapping[str, Mapping[str, Any]],
    gt_rows: Mapping[str, Mapping[str, Any]],
    meta_rows: Mapping[str, Mapping[str, Any]],
    pred_columns: list[str],
) -> ScoredTask:
    tables = _class_tables(config, case_ids, pred_rows, gt_rows, pred_columns)
    rows: list[dict[str, Any]] = []
    y_true: list[Any] = []
    y_pred: list[Any] = []
    scores: list[Any] = []
    for c in case_ids:
        row, pred, prob_or_score = _classification_row(tables, c, pred_rows.get(c))
        rows.append(row)
        truth = tables.truth[c]
        if tables.multilabel:
            y_true.append([int(k in truth) for k in tables.classes])
            y_pred.append([int(k in pred) for k in tables.classes])
        else:
            y_true.append(truth[0])
            y_pred.append(pred[0])
        if tables.use_scores:
            scores.append(prob_or_score)
    dataset = _classification_dataset(config, tables, y_true, y_pred, scores)
    dataset["n_missing"] = sum(r["status"] == "pred_missing" for r in rows)
    metrics = summarize_table(rows, ["correct"], group_by=None, worst={"correct": 0.0})
    return ScoredTask(rows, metrics, dataset, _classification_conventions(config, tables))


def _class_tables(
    config: EvaluationConfig,
    case_ids: list[str],
    pred_rows: Mapping[str, Mapping[str, Any]],
    gt_rows: Mapping[str, Mapping[str, Any]],
    pred_columns: list[str],
) -> _ClassTables:
    """Read the columns and classes of a classification run and check they fit together."""
    prob_columns = [c for c in pred_columns if c.startswith("prob_")]
    has_score = "score" in pred_columns
    has_label = "label" in pred_columns
    if not (has_label or prob_columns or has_score):
        raise InputFileError(
            f"--pred {config.pred} needs a 'label' column, 'prob_<class>' columns or a 'score' "
            "column"
        )
    probe = _ClassTables(prob_columns, has_score, has_label, [], None, config.multilabel, {})
    truth: dict[str, list[str]] = {}
    for c in case_ids:
        values = probe.split(gt_rows[c]["label"])
        if not values and not config.multilabel:
            raise InputFileError(f"--gt {config.gt}: case {c} has an empty label")
        truth[c] = values
    if config.labels is not None:
        classes = [str(v) for v in config.labels]
    else:
        seen = {v for vs in truth.values() for v in vs}
        if has_label:
            seen |= {
                v for c in case_ids if c in pred_rows for v in probe.split(pred_rows[c]["label"])
            }
        seen |= {col[len("prob_") :] for col in prob_columns}
        classes = sorted(seen, key=_natural_key)
    unknown_prob = [col for col in prob_columns if col[len("prob_") :] not in classes]
    if unknown_prob:
        raise InputFileError(f"--pred columns {unknown_prob} name classes outside {classes}")
    if prob_columns and len(prob_columns) != len(classes):
        absent = [f"prob_{k}" for k in classes if f"prob_{k}" not in prob_columns]
        raise InputFileError(
            f"--pred {config.pred} has probability columns for some classes only; add {absent}"
        )
    if config.multilabel and not prob_columns and not has_label:
        raise InputFileError(
            "multilabel predictions need a 'label' column or 'prob_<class>' columns"
        )
    positive = _positive_class(config, classes)
    if (
        has_score
        and not prob_columns
        and (len(classes) != 2 or positive is None or config.multilabel)
    ):
        raise InputFileError(
            "a 'score' column needs a binary problem with a positive class "
            f"(classes {classes}; fix: pass --positive-label or give prob_<class> columns)"
        )
    tables = _ClassTables(
        prob_columns, has_score, has_label, classes, positive, config.multilabel, truth
    )
    for c, values in truth.items():
        for v in values:
            tables.check(v, c, "gt")
    return tables


def _positive_class(config: EvaluationConfig, classes: list[str]) -> str | None:
    """``--positive-label`` (checked), or ``"1"`` of a 0/1 single-label problem, or ``None``."""
    if config.positive_label is not None:
        pos = str(config.positive_label)
        if pos not in classes:
            raise OptionError(f"--positive-label {pos!r} is not one of the classes {classes}")
        return pos
    if not config.multilabel and len(classes) == 2 and set(classes) <= {"0", "1"}:
        return "1"
    return None


def _classification_row(
    tables: _ClassTables, case_id: str, pred_row: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str], Any]:
    """One case's ``cases.csv`` row, its predicted classes and its probabilities or score."""
    truth = tables.truth[case_id]
    classes, pos = tables.classes, tables.positive
    row: dict[str, Any] = {"case_id": case_id, "status": "ok"}
    if pred_row is None:
        row["status"] = "pred_missing"
        prob, score, pred = _worst_classification(truth, classes, pos, tables.multilabel)
        if not tables.prob_columns:
            prob = None
        if not tables.has_score or tables.prob_columns:
            score = None
    else:
        prob = None
        score = None
        if tables.prob_columns:
            prob = np.array(
                [_probability(pred_row[f"prob_{k}"], case_id, f"prob_{k}") for k in classes]
            )
        elif tables.has_score:
            score = _probability(pred_row["score"], case_id, "score")
        pred = tables.split(pred_row["label"]) if tables.has_label else None
        if tables.has_label and not tables.multilabel and not pred:
            pred = None
        if pred is None:
            pred = _predicted_from_scores(prob, score, classes, pos, tables.multilabel, case_id)
        for v in pred:
            tables.check(v, case_id, "pred")
    row["gt"] = ";".join(truth)
    row["pred"] = ";".join(pred)
    row["correct"] = float(sorted(truth) == sorted(pred))
    if prob is not None:
        for k, p in zip(classes, prob, strict=True):
            row[f"prob_{k}"] = float(p)
    if score is not None:
        row["score"] = float(score)
    return row, pred, prob if prob is not None else score


def _classification_dataset(
    config: EvaluationConfig,
    tables: _ClassTables,
    y_true: list[Any],
    y_pred: list[Any],
    scores: list[Any],
) -> dict[str, Any]:
    """The dataset-level classification metrics of the collected labels and scores."""
    from medfleet.evaluate.metrics.classification import classification_metrics

    classes = tables.classes
    values = _classes_as_values(classes)
    mapping = dict(zip(classes, values, strict=True))
    if tables.multilabel:
        t_arr, p_arr = np.array(y_true), np.array(y_pred)
    else:
        t_arr = np.array([mapping[v] for v in y_true])
        p_arr = np.array([mapping[v] for v in y_pred])
    s_arr = np.array(scores, dtype=np.float64) if tables.use_scores else None
    dataset = classification_metrics(
        t_arr,
        p_arr,
        s_arr,
        labels=classes if tables.multilabel else values,
        pos_label=None if tables.positive is None else mapping[tables.positive],
        zero_division=config.zero_division,
    )
    if tables.multilabel:
        dataset["labels"] = classes
    return dataset


def _classification_conventions(config: EvaluationConfig, tables: _ClassTables) -> dict[str, Any]:
    """The conventions block of a classification run."""
    return {
        "classes": tables.classes,
        "positive_label": tables.positive,
        "multilabel": config.multilabel,
        "zero_division": config.zero_division,
        "scores": "prob_<class> columns"
        if tables.prob_columns
        else ("score column" if tables.has_score else None),
        "predicted_label": "label column"
        if tables.has_label
        else "argmax of probabilities (multilabel / binary score: >= 0.5)",
        "auc": "Mann-Whitney (ties count 1/2); multiclass one-vs-rest",
        "missing_prediction": "a wrong class with probability 1",
    }


def _probability(value: Any, case_id: str, column: str) -> float:
    text = "" if value is None else str(value).strip()
    try:
        p = float(text) if text else math.nan
    except ValueError:
        raise InputFileError(f"case {case_id}: {column} is {value!r}, not a number") from None
    if math.isnan(p):
        raise InputFileError(
            f"case {case_id}: {column} is NaN or empty "
            "(fix: give a probability in [0, 1] for every case)"
        )
    if not 0.0 <= p <= 1.0:
        raise InputFileError(f"case {case_id}: {column} is {p:g}, outside the range [0, 1]")
    return p


def _predicted_from_scores(
    prob: np.ndarray | None,
    score: float | None,
    classes: list[str],
    pos: str | None,
    multilabel: bool,
    case_id: str,
) -> list[str]:
    if prob is not None:
        if multilabel:
            return [k for k, p in zip(classes, prob, strict=True) if p >= 0.5]
        return [classes[int(np.argmax(prob))]]
    if score is not None and pos is not None:
        neg = next(k for k in classes if k != pos)
        return [pos if score >= 0.5 else neg]
    raise InputFileError(f"case {case_id}: the prediction has no label and no probabilities")


def _worst_classification(
    truth: list[str], classes: list[str], pos: str | None, multilabel: bool
) -> tuple[np.ndarray, float, list[str]]:
    if multilabel:
        pred = [k for k in classes if k not in truth]
        prob = np.array([0.0 if k in truth else 1.0 for k in classes])
        return prob, math.nan, pred
    wrong = next(k for k in classes if k != truth[0]) if len(classes) > 1 else truth[0]
    prob = np.array([1.0 if k == wrong else 0.0 for k in classes])
    score = math.nan if pos is None else (0.0 if truth[0] == pos else 1.0)
    return prob, score, [wrong]


def _detection(
    config: EvaluationConfig,
    case_ids: list[str],
    pred_rows: Mapping[str, Mapping[str, Any]],
    gt_rows: Mapping[str, Mapping[str, Any]],
    meta_rows: Mapping[str, Mapping[str, Any]],
    pred_columns: list[str],
) -> ScoredTask:
    from medfleet.evaluate.metrics.detection import (
        DetectionCounts,
        coco_map_by_class,
        detection_counts,
        pairwise_iou,
    )

    has_scores = "scores" in pred_columns
    rows: list[dict[str, Any]] = []
    images: list[tuple[np.ndarray, np.ndarray, list[Any], np.ndarray, list[Any]]] = []
    for c in case_ids:
        gt, gt_cls = parse_boxes(gt_rows[c]["boxes"], case_id=c, column="boxes (--gt)")
        status = "ok"
        if c in pred_rows:
            pred, pred_cls = parse_boxes(pred_rows[c]["boxes"], case_id=c, column="boxes (--pred)")
            scores = np.ones(len(pred))
            if has_scores:
                scores = parse_numbers(pred_rows[c]["scores"], case_id=c, column="scores")
                if len(scores) != len(pred):
                    raise InputFileError(
                        f"case {c}: {len(pred)} boxes but {len(scores)} scores "
                        "(fix: one score per box, separated by ';')"
                    )
                if not np.all(np.isfinite(scores)):
                    raise InputFileError(f"case {c}: scores contain NaN or infinite values")
        else:
            status = "pred_missing"
            pred, pred_cls, scores = np.zeros((0, 4)), [], np.zeros(0)
        images.append((pred, scores, pred_cls, gt, gt_cls))
        rows.append({"case_id": c, "status": status})
    labelled = {cls is not None for _, _, pc, _, gc in images for cls in (*pc, *gc)}
    if len(labelled) > 1:
        raise InputFileError(
            "some boxes carry a class (class:x0,y0,x1,y1) and others not "
            "(fix: give every box a class, or none)"
        )
    totals = DetectionCounts(0, 0, 0)
    for row, (pred, scores, pred_cls, gt, gt_cls) in zip(rows, images, strict=True):
        counts = DetectionCounts(0, 0, 0)
        for cls in {*pred_cls, *gt_cls}:  # boxes match only within their class
            pk = np.array([k == cls for k in pred_cls], bool).reshape(-1)
            gk = np.array([k == cls for k in gt_cls], bool).reshape(-1)
            counts += detection_counts(pred[pk], gt[gk], scores[pk], config.iou_threshold)
        same = np.equal.outer(np.array(gt_cls, object), np.array(pred_cls, object))
        ious = np.where(same, pairwise_iou(gt, pred), 0.0) if len(pred) else np.zeros((len(gt), 0))
        totals += counts
        row.update(
            n_gt=len(gt),
            n_pred=len(pred),
            tp=counts.tp,
            fp=counts.fp,
            fn=counts.fn,
            recall=counts.recall,
            precision=counts.precision,
            mean_iou=float(ious.max(axis=1, initial=0.0).mean()) if len(gt) else math.nan,
        )
    coco = coco_map_by_class(
        [im[0] for im in images],
        [im[1] for im in images],
        [im[2] for im in images],
        [im[3] for im in images],
        [im[4] for im in images],
        max_detections=config.max_detections,
    )
    if labelled != {True}:
        coco.pop("per_class", None)
    tp, fp, fn = totals.tp, totals.fp, totals.fn
    dataset = {
        **coco,
        "iou_threshold": config.iou_threshold,
        "detection_rate": totals.recall,
        "precision": totals.precision,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_gt_boxes": tp + fn,
        "n_pred_boxes": tp + fp,
        "n_missing": sum(r["status"] == "pred_missing" for r in rows),
    }
    worst = {"recall": 0.0, "precision": 0.0, "mean_iou": 0.0}
    metrics = summarize_table(rows, ["recall", "precision", "mean_iou"], group_by=None, worst=worst)
    conventions = {
        "box_format": "[class:]x0,y0,x1,y1 in continuous pixel coordinates; area (x1-x0)*(y1-y0)",
        "matching": "greedy by descending score within each class, IoU >= threshold, "
        "one-to-one (COCO)",
        "ap": "COCO 101-point interpolated AP per class, averaged over classes with ground "
        "truth; map averages IoU 0.50:0.05:0.95",
        "max_detections": config.max_detections,
        "scores": "scores column" if has_scores else "absent: every box scored 1.0 (file order)",
        "mean_iou": "mean over ground-truth boxes of the best IoU with a predicted box of "
        "the same class",
        "missing_prediction": "no boxes",
    }
    return ScoredTask(rows, metrics, dataset, conventions)


def _value(cell: Any, case_id: str, role: str) -> float:
    try:
        v = float(cell)
    except (TypeError, ValueError):
        raise InputFileError(f"case {case_id}: {role} value {cell!r} is not a number") from None
    if not math.isfinite(v):
        raise InputFileError(
            f"case {case_id}: {role} value is {cell!r} (fix: give a finite number for every case)"
        )
    return v


def _regression(
    config: EvaluationConfig,
    case_ids: list[str],
    pred_rows: Mapping[str, Mapping[str, Any]],
    gt_rows: Mapping[str, Mapping[str, Any]],
    meta_rows: Mapping[str, Mapping[str, Any]],
    pred_columns: list[str],
) -> ScoredTask:
    from medfleet.evaluate.metrics.regression import regression_metrics

    rows: list[dict[str, Any]] = []
    t_ok: list[float] = []
    p_ok: list[float] = []
    for c in case_ids:
        truth = _value(gt_rows[c]["value"], c, "gt")
        present = c in pred_rows
        pred = _value(pred_rows[c]["value"], c, "pred") if present else math.nan
        err = pred - truth  # NaN for a missing prediction
        rows.append(
            {
                "case_id": c,
                "status": "ok" if present else "pred_missing",
                "gt": truth,
                "pred": pred,
                "error": err,
                "abs_error": abs(err),
                "squared_error": err * err,
            }
        )
        if present:
            t_ok.append(truth)
            p_ok.append(pred)
    n_missing = len(case_ids) - len(t_ok)
    # case_ids is never empty, so with no prediction at all n_missing > 0 fills the rest
    dataset: dict[str, Any] = regression_metrics(t_ok, p_ok) if t_ok else {"n": 0}
    if n_missing:
        dataset.update(
            mae=math.inf,
            rmse=math.inf,
            bias=math.nan,
            sd=math.nan,
            loa_lower=math.nan,
            loa_upper=math.nan,
        )
    dataset["n_missing"] = n_missing
    worst = {"abs_error": math.inf, "squared_error": math.inf}
    metrics = summarize_table(
        rows, ["abs_error", "squared_error", "error"], group_by=None, worst=worst
    )
    conventions = {
        "error": "pred - gt",
        "bland_altman": "bias +/- 1.96 SD of pred - gt, SD with ddof=1",
        "missing_prediction": "abs/squared error inf; bias and limits nan",
    }
    return ScoredTask(rows, metrics, dataset, conventions)


def _landmarks(
    config: EvaluationConfig,
    case_ids: list[str],
    pred_rows: Mapping[str, Mapping[str, Any]],
    gt_rows: Mapping[str, Mapping[str, Any]],
    meta_rows: Mapping[str, Mapping[str, Any]],
    pred_columns: list[str],
) -> ScoredTask:
    from medfleet.evaluate.metrics.landmarks import (
        MISSING_POLICIES,
        landmark_errors,
        summarize_landmark_errors,
    )

    if config.missing_landmarks not in MISSING_POLICIES:
        raise OptionError(
            f"--missing-landmarks {config.missing_landmarks!r} is not one of {MISSING_POLICIES}"
        )
    if config.sdr_comparison not in ("<", "<="):
        raise OptionError(f"--sdr-comparison must be '<' or '<=', got {config.sdr_comparison!r}")
    rows: list[dict[str, Any]] = []
    errors_by_case: list[np.ndarray] = []
    units: set[str] = set()
    mismatched: list[tuple[str, str]] = []
    n_points: int | None = None
    for c in case_ids:
        gt = parse_points(gt_rows[c]["landmarks"], case_id=c, column="landmarks (--gt)")
        if not np.isfinite(gt).all():
            raise InputFileError(f"case {c}: the reference landmarks have a missing point")
        if n_points is None:
            n_points = len(gt)
        elif len(gt) != n_points:
            raise InputFileError(
                f"case {c}: the reference has {len(gt)} landmarks, other cases {n_points}"
            )
        spacing = meta_spacing(meta_rows, c)
        if spacing is None and "spacing" in gt_rows[c]:
            spacing = parse_spacing(gt_rows[c]["spacing"], case_id=c, column="spacing (--gt)")
        status = "ok"
        if c in pred_rows:
            pred = parse_points(pred_rows[c]["landmarks"], case_id=c, column="landmarks (--pred)")
            if pred.shape != gt.shape:
                mismatched.append(
                    (
                        c,
                        f"{len(pred)} predicted landmarks of {pred.shape[1]} coordinates "
                        f"but {len(gt)} of {gt.shape[1]} in gt",
                    )
                )
                continue
            pred_sp = None
            if "spacing" in pred_rows[c]:
                pred_sp = parse_spacing(
                    pred_rows[c]["spacing"], case_id=c, column="spacing (--pred)"
                )
            if (
                pred_sp is not None
                and spacing is not None
                and spacing_differs(
                    np.broadcast_to(pred_sp, (gt.shape[1],)),
                    np.broadcast_to(spacing, (gt.shape[1],)),
                )
            ):
                pair = f"{fmt_spacing(pred_sp)} mm in pred but {fmt_spacing(spacing)} mm in gt"
                mismatched.append((c, f"spacing {pair}"))
                continue
        else:
            status = "pred_missing"
            pred = np.full(gt.shape, np.nan)
        if spacing is not None and len(spacing) not in (1, gt.shape[1]):
            raise InputFileError(
                f"case {c}: spacing {fmt_spacing(spacing)} has {len(spacing)} values for "
                f"{gt.shape[1]}-D landmarks"
            )
        units.add("mm" if spacing is not None else "pixel")
        try:
            err = landmark_errors(pred, gt, spacing, reference=config.landmark_reference)
        except ValueError as exc:
            raise InputFileError(f"case {c}: {exc}") from exc
        errors_by_case.append(err)
        for i, e in enumerate(err):
            rows.append(
                {
                    "case_id": c,
                    "label": i,
                    "status": status if not math.isnan(e) else "pred_missing",
                    "error": float(e),
                }
            )
    if mismatched:
        raise CaseMismatchError(mismatched=mismatched, pred=config.pred, gt=config.gt)
    if len(units) > 1:
        raise InputFileError(
            "some cases have a spacing and others not, so errors would mix mm and pixels "
            "(fix: give a spacing for every case in --gt or --meta)"
        )
    unit = (
        "reference distance" if config.landmark_reference else (units.pop() if units else "pixel")
    )
    penalty = config.landmark_penalty
    summary_rows = [
        {
            **r,
            "status": r["status"]
            if config.missing_landmarks == "penalty"
            else ("excluded" if r["status"] == "pred_missing" else r["status"]),
        }
        for r in rows
    ]
    worst = {"error": penalty} if config.missing_landmarks == "penalty" else {}
    metrics = summarize_table(summary_rows, ["error"], group_by="label", worst=worst)
    metrics.update(summarize_table(summary_rows, ["error"], group_by=None, worst=worst))
    all_errors = np.concatenate(errors_by_case) if errors_by_case else np.zeros(0)
    kwargs = {
        "comparison": config.sdr_comparison,
        "missing": config.missing_landmarks,
        "penalty": penalty,
    }
    overall = summarize_landmark_errors(all_errors, config.radii, **kwargs).as_dict()
    per_landmark = {}
    if errors_by_case:
        stacked = np.stack(errors_by_case)
        for i in range(stacked.shape[1]):
            per_landmark[str(i)] = summarize_landmark_errors(
                stacked[:, i], config.radii, **kwargs
            ).as_dict()
    dataset = {**overall, "per_landmark": per_landmark, "unit": unit}
    conventions = {
        "coordinates": "x=column, y=row, z=slice, in pixels",
        "spacing": "mm in array-axis order (row, column[, ...]); x uses spacing[-1]",
        "unit": unit,
        "reference": list(config.landmark_reference) if config.landmark_reference else None,
        "radii": [float(r) for r in config.radii],
        "sdr_comparison": config.sdr_comparison,
        "missing_landmarks": config.missing_landmarks,
        "landmark_penalty": penalty,
        "missing_prediction": "every landmark missing",
    }
    return ScoredTask(rows, metrics, dataset, conventions)
