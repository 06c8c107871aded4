"""MAMA-MIA 2025 (breast DCE-MRI): tumour segmentation (task 1) and pCR prediction (task 2).

Both tasks rank by ``score = 0.5 P + 0.5 F``: a performance term and a fairness term over
three patient variables (age, menopausal status, breast density).

**Segmentation** (``mama-mia-seg``), per patient:

* Dice of label 1, ``2 TP / (2 TP + FP + FN)``, and 0 when both masks are empty;
* HD95 = ``max(P95(d(ref -> pred)), P95(d(pred -> ref)))`` between the two *label contours*
  (face-connected; a voxel is on the contour when a face neighbour *inside the image*
  carries another label, so a voxel on the image edge counts only if it touches another
  label inside the image), numpy's linear percentile, voxel-index units (header spacing
  ignored); 0 when both contours are empty, infinite when exactly one is;
* NormHD = HD95 / 150, and 1 when HD95 is infinite (not clipped otherwise).

``P = 1/2 [mean Dice + (1 - mean NormHD)]``; for each variable ``v`` with groups ``g``,
``F_v = 1 - 1/2 [(max_g - min_g mean Dice) + (max_g - min_g mean NormHD)]``;
``F = mean_v F_v``.

**pCR** (``mama-mia-pcr``): predicted pCR = probability strictly above 0.5;
``P`` = balanced accuracy; per variable ``D_v = (max - min TPR) + (max - min FPR)`` over
its groups, where each group's confusion matrix is built without a fixed label set, so a
group whose truth and predictions hold one single class gets TPR = FPR = 0;
``D = clip(mean_v D_v, 0, 1)`` and ``score = 0.5 P + 0.5 (1 - D)``. AUC is reported only.

Groups: age bins ``0-40, 41-50, 51-60, 61-70, 71+`` (``pandas.cut`` with edges
0, 40, 50, 60, 70, 100, right-closed: an age outside (0, 100] or missing is dropped from
the age variable only); menopausal status ``pre`` (including peri), ``post`` and
``unknown`` (a missing value) as its own group; breast density as given (``a``-``d``), a
missing density dropping the patient from that variable only.

Age bins, group means, their max - min and each group's TPR and FPR come from the subgroup
engine :mod:`medfleet.evaluate.analysis.fairness` (imported on first use: it needs pandas), with
the official quirks as its options: ``GroupMetricFrame(..., skipna=False)``, so a NaN
value makes its group mean and the variable's disparity NaN as the official ``mean``
does; ``group_rates`` with ``policy="mama-mia"`` (``"skip"`` with ``fixed_labels``).

Source: the official scoring scripts ``src/challenge/scoring_task1.py``,
``scoring_task2.py`` and ``metrics.py`` of github.com/LidiaGarrucho/MAMA-MIA. See
docs/challenges.md for every kept quirk and deviation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from medfleet.errors import InputFileError, MedfleetError
from medfleet.evaluate.challenges._inputs import (
    binary_cell,
    iter_mask_pairs,
    meta_column,
    plan_cases,
    plan_mask_pairs,
    read_table,
)
from medfleet.evaluate.challenges.base import Preset, PresetOption, PresetOutcome, PresetRun

__all__ = [
    "AGE_GROUPS",
    "PCR_PRESET",
    "SEG_PRESET",
    "age_group",
    "density_group",
    "equalized_odds_disparity",
    "label_contour",
    "mama_mia_dice",
    "mama_mia_hd95",
    "mama_mia_pcr_score",
    "mama_mia_seg_score",
    "menopause_group",
    "normalized_hd",
]

#: Age groups and the right-closed bin edges of the official ``pandas.cut``.
AGE_GROUPS: tuple[str, ...] = ("0-40", "41-50", "51-60", "61-70", "71+")
AGE_EDGES: tuple[float, ...] = (0.0, 40.0, 50.0, 60.0, 70.0, 100.0)
#: Fairness variables and the ``--meta`` column names accepted for each.
VARIABLES: dict[str, tuple[str, ...]] = {
    "age": ("age",),
    "menopausal_status": ("menopausal_status", "menopause"),
    "breast_density": ("breast_density", "density"),
}
HD_MAX = 150.0


# ---------------------------------------------------------------- segmentation metrics


def label_contour(labels: np.ndarray, edge: str = "inside") -> np.ndarray:
    """Face-connected label contour: non-zero voxels with a face neighbour of another label.

    Args:
        labels: Integer label map (2-D or 3-D).
        edge: ``"inside"`` (official, SimpleITK ``LabelContour``): only neighbours inside
            the image count, so a mask filling the image has no contour. ``"border"``:
            the outside of the image counts as background.

    Returns:
        Boolean contour mask.

    Example:
        >>> m = np.zeros((4, 5), np.uint8); m[:3, :3] = 1
        >>> label_contour(m).astype(int)
        array([[0, 0, 1, 0, 0],
               [0, 0, 1, 0, 0],
               [1, 1, 1, 0, 0],
               [0, 0, 0, 0, 0]])
    """
    lab = np.asarray(labels)
    if edge not in ("inside", "border"):
        raise ValueError(f"edge must be 'inside' or 'border', got {edge!r}")
    fg = lab != 0
    out = np.zeros(lab.shape, dtype=bool)
    for axis in range(lab.ndim):
        n = lab.shape[axis]
        lo = [slice(None)] * lab.ndim
        hi = [slice(None)] * lab.ndim
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        differs = lab[tuple(lo)] != lab[tuple(hi)]
        out[tuple(lo)] |= differs
        out[tuple(hi)] |= differs
        if edge == "border":
            first = [slice(None)] * lab.ndim
            last = [slice(None)] * lab.ndim
            first[axis], last[axis] = 0, n - 1
            out[tuple(first)] = True
            out[tuple(last)] = True
    return out & fg


def mama_mia_hd95(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    edge: str = "inside",
) -> float:
    """HD95 between the label contours of two label maps (every non-zero label counts).

    Args:
        pred: Predicted label map.
        gt: Reference label map (same shape).
        spacing: ``None`` for voxel-index units (official), or mm per array axis.
        edge: Contour convention (see :func:`label_contour`).

    Returns:
        ``max`` of the two directed linear 95th percentiles; 0 when both contours are
        empty, ``inf`` when exactly one is.

    Example:
        >>> gt = np.zeros((10, 10), np.uint8); gt[2:6, 2:6] = 1
        >>> mama_mia_hd95(np.roll(gt, 2, axis=1), gt)
        2.0
        >>> mama_mia_hd95(np.zeros_like(gt), gt), mama_mia_hd95(gt * 0, gt * 0)
        (inf, 0.0)
    """
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred has shape {p.shape} but gt has shape {g.shape}")
    a = np.argwhere(label_contour(g, edge)).astype(np.float64)
    b = np.argwhere(label_contour(p, edge)).astype(np.float64)
    if len(a) == 0:
        return 0.0 if len(b) == 0 else math.inf
    if len(b) == 0:
        return math.inf
    if spacing is not None:
        scale = np.asarray(spacing, dtype=np.float64).reshape(-1)
        if scale.size != p.ndim:
            raise ValueError(f"spacing {tuple(scale)} does not match a {p.ndim}-D mask")
        a *= scale
        b *= scale
    fwd = cKDTree(a).query(b, k=1)[0]
    bwd = cKDTree(b).query(a, k=1)[0]
    return float(max(np.percentile(fwd, 95), np.percentile(bwd, 95)))


def mama_mia_dice(
    pred: np.ndarray, gt: np.ndarray, label: int = 1, both_empty: float = 0.0
) -> float:
    """Dice of one label; ``both_empty`` (official: 0) when neither mask holds it.

    Example:
        >>> gt = np.array([[1, 1, 0, 0]]); pred = np.array([[1, 0, 0, 0]])
        >>> round(mama_mia_dice(pred, gt), 6), mama_mia_dice(gt * 0, gt * 0)
        (0.666667, 0.0)
    """
    p = np.asarray(pred) == label
    g = np.asarray(gt) == label
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    if tp + fp + fn == 0:
        return float(both_empty)
    return 2.0 * tp / (2.0 * tp + fp + fn)


def normalized_hd(hd95: float, hd_max: float = HD_MAX) -> float:
    """NormHD = HD95 / ``hd_max``, and 1 for an infinite HD95 (finite values are not clipped).

    Example:
        >>> normalized_hd(30.0), normalized_hd(float("inf")), normalized_hd(300.0)
        (0.2, 1.0, 2.0)
    """
    return 1.0 if math.isinf(hd95) else float(hd95) / hd_max


# ---------------------------------------------------------------- subgroups


def _age_years(value: Any) -> float:
    """An age in years as a number; NaN when missing, an error when text is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        if not text or text.lower() in ("nan", "na", "none"):
            return math.nan
        try:
            return float(text)
        except ValueError:
            raise InputFileError(f"age {value!r} is not a number of years") from None
    return float(value)


def _age_groups(years: Sequence[float]) -> list[str | None]:
    """Official age bins (the right-closed ``pandas.cut``) of ages in years."""
    from medfleet.evaluate.analysis.fairness import bin_continuous

    return bin_continuous(years, AGE_EDGES, labels=AGE_GROUPS).tolist()


def age_group(value: Any) -> str | None:
    """Official age bin of an age in years (``None`` when missing or outside (0, 100]).

    Example:
        >>> [age_group(v) for v in (40, 40.5, 71, 100, 101, "", None)]
        ['0-40', '41-50', '71+', '71+', None, None, None]
    """
    return _age_groups([_age_years(value)])[0]


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and (not value.strip() or value.strip().lower() == "nan")


def menopause_group(value: Any, scheme: str = "seg", lowercase: bool | None = None) -> str:
    """Menopausal status group as the official scorers map it.

    Args:
        value: The raw status (``None`` / empty means unknown).
        scheme: ``"seg"`` (task 1: ``peri`` -> pre, then ``post``, then ``pre``; case
            kept) or ``"pcr"`` (task 2: lower-cased; ``peri`` or ``pre`` -> pre, then
            ``post``).
        lowercase: Override the scheme's lower-casing.

    Example:
        >>> [menopause_group(v) for v in ("perimenopausal", "postmenopause", "Post", None)]
        ['pre', 'post', 'Post', 'unknown']
        >>> menopause_group("Post", "pcr")
        'post'
    """
    if scheme not in ("seg", "pcr"):
        raise ValueError(f"scheme must be 'seg' or 'pcr', got {scheme!r}")
    text = "unknown" if _missing(value) else str(value).strip()
    if lowercase if lowercase is not None else scheme == "pcr":
        text = text.lower()
    if scheme == "pcr":
        if "peri" in text or "pre" in text:
            return "pre"
        return "post" if "post" in text else text
    if "peri" in text:
        return "pre"
    if "post" in text:
        return "post"
    return "pre" if "pre" in text else text


def density_group(value: Any) -> str | None:
    """Breast density as given (e.g. ``a``-``d``); ``None`` when missing (dropped).

    Example:
        >>> density_group(" b "), density_group("")
        ('b', None)
    """
    return None if _missing(value) else str(value).strip()


# ---------------------------------------------------------------- scores


def mama_mia_seg_score(
    dice: Sequence[float],
    norm_hd: Sequence[float],
    groups: Mapping[str, Sequence[str | None]],
    alpha: float = 0.5,
) -> dict[str, Any]:
    """Performance, fairness and ranking score of task 1 from per-patient values.

    Args:
        dice: Dice per patient.
        norm_hd: NormHD per patient.
        groups: Variable -> group of each patient (``None`` or NaN: dropped from that
            variable, as the official ``groupby`` drops it; groups sorted, keyed by their text).
        alpha: Weight of the fairness term (official 0.5).

    Returns:
        ``{"score", "performance", "fairness", "mean_dice", "mean_norm_hd",
        "fairness_by_variable", "subgroups"}``; a variable without any group is left out of
        ``fairness`` (its ``F_v`` is NaN).

    Example:
        >>> s = mama_mia_seg_score([1.0, 0.5], [0.0, 0.2], {"site": ["a", "b"]})
        >>> s["performance"], s["fairness_by_variable"]["site"], s["score"]
        (0.825, 0.65, 0.7375)
    """
    from medfleet.evaluate.analysis.fairness import GroupMetricFrame

    frame = GroupMetricFrame(
        {"dice": np.asarray(dice, dtype=np.float64), "norm_hd": np.asarray(norm_hd, np.float64)},
        {variable: list(labels) for variable, labels in groups.items()},
        min_group_size=0,
        skipna=False,
    )
    mean_dice, mean_hd = float(frame.overall["dice"]), float(frame.overall["norm_hd"])
    performance = 0.5 * (mean_dice + (1.0 - mean_hd))
    gaps = frame.difference()
    by_group: dict[str, dict[str, dict[str, Any]]] = {v: {} for v in frame.variables}
    for (variable, group), row in _json_rows(frame.by_group[["n", "dice", "norm_hd"]]):
        by_group[variable][str(group)] = row
    f_by_var: dict[str, float] = {}
    tables: dict[str, Any] = {}
    for variable, table in by_group.items():
        dice_gap = float(gaps.loc[variable, "dice"])
        hd_gap = float(gaps.loc[variable, "norm_hd"])
        f_v = 1.0 - 0.5 * (dice_gap + hd_gap)  # NaN for a variable without any group
        f_by_var[variable] = f_v
        tables[variable] = {
            "groups": table,
            "dice_disparity": dice_gap,
            "norm_hd_disparity": hd_gap,
            "fairness": f_v,
            "n_dropped": frame.n_cases - sum(t["n"] for t in table.values()),
        }
    defined = [v for v in f_by_var.values() if not math.isnan(v)]
    fairness = float(np.mean(defined)) if defined else math.nan
    return {
        "score": (1.0 - alpha) * performance + alpha * fairness,
        "performance": performance,
        "fairness": fairness,
        "mean_dice": mean_dice,
        "mean_norm_hd": mean_hd,
        "fairness_by_variable": f_by_var,
        "subgroups": tables,
    }


def _json_rows(table: Any) -> list[tuple[Any, dict[str, Any]]]:
    """The rows of a DataFrame as ``(index, {column: value})`` with Python ints and floats."""
    columns = {c: table[c].tolist() for c in table.columns}
    return [
        (key, {c: values[i] for c, values in columns.items()}) for i, key in enumerate(table.index)
    ]


def equalized_odds_disparity(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    groups: Sequence[str | None],
    *,
    fixed_labels: bool = False,
) -> tuple[float, dict[str, dict[str, Any]]]:
    """``D_v = (max - min TPR) + (max - min FPR)`` over the groups of one variable.

    Args:
        y_true: True class (0/1) per patient.
        y_pred: Predicted class (0/1) per patient.
        groups: Group of each patient (``None`` or NaN: not in any group).
        fixed_labels: ``False`` (official): a group holding a single class in truth and
            predictions gets TPR = FPR = 0, and a zero denominator gives 0. ``True``: the
            confusion matrix always has both classes; an undefined rate is left out.

    Returns:
        ``(D_v, table)`` with each group's ``n``, counts, ``tpr`` and ``fpr``.

    Example:
        >>> d, t = equalized_odds_disparity([1, 0, 1, 1], [1, 0, 1, 1], ["a", "a", "b", "b"])
        >>> d, t["b"]["tpr"], t["b"]["fpr"]
        (1.0, 0.0, 0.0)
    """
    from medfleet.evaluate.analysis.fairness import group_rates, max_min

    rates = group_rates(
        np.asarray(y_true, dtype=np.int64),
        np.asarray(y_pred, dtype=np.int64),
        list(groups),
        policy="skip" if fixed_labels else "mama-mia",
    )
    # No rate at all (no group, or only undefined rates with fixed labels) counts as no gap.
    disparity = max_min(rates["tpr"], empty=0.0) + max_min(rates["fpr"], empty=0.0)
    return disparity, {str(group): row for group, row in _json_rows(rates)}


def mama_mia_pcr_score(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    groups: Mapping[str, Sequence[str | None]],
    *,
    y_score: Sequence[float] | None = None,
    alpha: float = 0.5,
    fixed_labels: bool = False,
) -> dict[str, Any]:
    """Balanced accuracy, equalized-odds disparity and ranking score of task 2.

    Example:
        >>> s = mama_mia_pcr_score([1, 0, 1, 0], [1, 0, 0, 0], {"v": ["a", "a", "b", "b"]})
        >>> s["balanced_accuracy"], s["disparity"], s["score"]
        (0.75, 1.0, 0.375)
    """
    from medfleet.evaluate.metrics.classification import balanced_accuracy, binary_auc

    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    ba = balanced_accuracy(yt, yp)
    by_var: dict[str, float] = {}
    tables: dict[str, Any] = {}
    for variable, labels in groups.items():
        d_v, table = equalized_odds_disparity(yt, yp, labels, fixed_labels=fixed_labels)
        by_var[variable] = d_v
        tables[variable] = {
            "groups": table,
            "disparity": d_v,
            "n_dropped": len(labels) - sum(t["n"] for t in table.values()),
        }
    raw = float(np.mean(list(by_var.values()))) if by_var else 0.0
    disparity = float(np.clip(raw, 0.0, 1.0))
    auc = math.nan
    if y_score is not None:
        auc = binary_auc(yt, np.asarray(y_score, dtype=np.float64))
    return {
        "score": (1.0 - alpha) * ba + alpha * (1.0 - disparity),
        "balanced_accuracy": ba,
        "performance": ba,
        "disparity": disparity,
        "disparity_unclipped": raw,
        "fairness": 1.0 - disparity,
        "disparity_by_variable": by_var,
        "auc": auc,
        "subgroups": tables,
    }


# ---------------------------------------------------------------- preset runs


def _groups_for(
    run: PresetRun,
    case_ids: Sequence[str],
    scheme: str,
    lowercase: bool | None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, list[str | None]]:
    """Age, menopausal-status and density groups of each case from ``--meta``."""
    lacking = [c for c in case_ids if c not in run.meta_rows and c not in (extra or {})]
    if lacking:
        shown = ", ".join(lacking[:10]) + (" ..." if len(lacking) > 10 else "")
        raise MedfleetError(
            f"{len(lacking)} case(s) have no metadata row: {shown} (fix: give --meta with "
            "case_id, age, menopausal_status and breast_density for every case)"
        )
    out: dict[str, list[str | None]] = {}
    for variable, names in VARIABLES.items():
        values = [meta_column(run, c, names, extra) for c in case_ids]
        if all(value is None for value in values):
            raise MedfleetError(
                f"no {variable!r} column for the fairness groups (looked for "
                f"{', '.join(names)}; fix: add it to the --meta CSV)"
            )
        if variable == "age":
            years = []
            for c, value in zip(case_ids, values, strict=True):
                try:
                    years.append(_age_years(value))
                except InputFileError as exc:
                    raise InputFileError(f"case {c}: {exc} (column age in --meta)") from None
            out[variable] = _age_groups(years)
        elif variable == "menopausal_status":
            out[variable] = [menopause_group(value, scheme, lowercase) for value in values]
        else:
            out[variable] = [density_group(value) for value in values]
    return out


def _add_group_columns(rows: list[dict[str, Any]], groups: Mapping[str, Sequence[Any]]) -> None:
    """Write each case's group of every variable into its ``cases.csv`` row (``group_<v>``)."""
    for i, row in enumerate(rows):
        for variable in VARIABLES:
            row[f"group_{variable}"] = groups[variable][i]


def _run_seg(run: PresetRun) -> PresetOutcome:
    opts = run.options
    plan = plan_mask_pairs(run)
    groups = _groups_for(run, plan.case_ids, "seg", opts["lowercase_menopause"] or None)
    rows: list[dict[str, Any]] = []
    dice_values: list[float] = []
    hd_values: list[float] = []
    mm = run.units == "mm"
    for pair in iter_mask_pairs(run, plan):
        dice = mama_mia_dice(pair.pred, pair.gt, opts["label"], opts["both_empty_dice"])
        if opts["distance_labels"] == "all":
            p_map, g_map = pair.pred, pair.gt
        else:
            p_map = (pair.pred == opts["label"]).astype(np.uint8)
            g_map = (pair.gt == opts["label"]).astype(np.uint8)
        hd = mama_mia_hd95(p_map, g_map, pair.spacing if mm else None, edge=opts["contour_edge"])
        nhd = normalized_hd(hd, opts["hd_max"])
        dice_values.append(dice)
        hd_values.append(nhd)
        rows.append(
            {
                "case_id": pair.case_id,
                "status": pair.status,
                "dice": dice,
                "hd95": hd,
                "norm_hd": nhd,
            }
        )
    result = mama_mia_seg_score(dice_values, hd_values, groups, opts["alpha"])
    _add_group_columns(rows, groups)
    components = {k: v for k, v in result.items() if k not in ("score", "subgroups")}
    warnings = [
        f"fairness variable {v} has no group (every value missing): left out of F"
        for v, f in result["fairness_by_variable"].items()
        if math.isnan(f)
    ]
    return PresetOutcome(
        rows=rows,
        metrics=["dice", "hd95", "norm_hd"],
        score=result["score"],
        score_name="ranking score 0.5 P + 0.5 F",
        components=components,
        cases=plan.cases,
        subgroups=result["subgroups"],
        conventions={
            "hd95_units": "mm" if mm else "voxel",
            "contour": f"face-connected label contour, image edge: {opts['contour_edge']}",
            "percentile": "numpy linear, max of the two directed 95th percentiles",
            "join": "metadata joined to cases by case_id (the official template's per-patient "
            "join makes every group mean NaN)",
        },
        warnings=warnings,
        higher_is_better={"dice": True, "hd95": False, "norm_hd": False},
    )


#: Columns of a pCR prediction table holding the probability of pCR, in order of preference.
PCR_SCORE_COLUMNS: tuple[str, ...] = ("score", "prob_1", "pcr_prob", "probability")
#: Columns holding a 0/1 predicted pCR, read when no probability column is given. ``pcr_pred``
#: comes first: the official task 2 output holds the truth as ``pcr`` beside it.
PCR_LABEL_COLUMNS: tuple[str, ...] = ("pcr_pred", "label", "pcr")
#: Columns of the reference table holding the true pCR (the clinical table's is ``pcr``).
PCR_TRUTH_COLUMNS: tuple[str, ...] = ("label", "pcr")


def _pcr_prediction(row: Mapping[str, str], case_id: str, threshold: float) -> tuple[int, float]:
    """Predicted class and score of one pCR row (score NaN when only a label is given)."""
    for column in PCR_SCORE_COLUMNS:
        if column in row and row[column] != "":
            try:
                p = float(row[column])
            except ValueError:
                raise InputFileError(
                    f"case {case_id}: {column} {row[column]!r} is not a number"
                ) from None
            if not 0.0 <= p <= 1.0 or math.isnan(p):
                raise InputFileError(f"case {case_id}: {column} is {p:g}, outside [0, 1]")
            return int(p > threshold), p
    for column in PCR_LABEL_COLUMNS:
        if column in row and row[column] != "":
            return binary_cell(row[column], case_id, column), math.nan
    raise InputFileError(
        f"case {case_id}: the prediction has no value in any of "
        f"{', '.join(PCR_SCORE_COLUMNS + PCR_LABEL_COLUMNS)} "
        "(fix: a 'score' column with the pCR probability)"
    )


def _run_pcr(run: PresetRun) -> PresetOutcome:
    opts = run.options
    config = run.config
    pred = read_table(config.pred, (), "--pred")
    gt = read_table(config.gt, (), "--gt")
    truth_col = next((c for c in PCR_TRUTH_COLUMNS if c in gt.columns), None)
    if truth_col is None:
        raise InputFileError(
            f"--gt {config.gt} needs a 'pcr' (or 'label') column with the true 0/1 pCR; "
            f"it has {list(gt.columns)}"
        )
    score_col = next((c for c in PCR_SCORE_COLUMNS if c in pred.columns), None)
    label_col = next((c for c in PCR_LABEL_COLUMNS if c in pred.columns), None)
    case_ids, cases = plan_cases(run, pred.rows, gt.rows)
    groups = _groups_for(run, case_ids, "pcr", opts["lowercase_menopause"], gt.rows)
    y_true, y_pred, scores, rows = [], [], [], []
    for c in case_ids:
        t = binary_cell(gt.rows[c][truth_col], c, truth_col)
        status = "ok"
        if c in pred.rows:
            p, s = _pcr_prediction(pred.rows[c], c, opts["threshold"])
        else:
            p, s, status = 1 - t, float(1 - t), "pred_missing"
        y_true.append(t)
        y_pred.append(p)
        scores.append(s)
        rows.append(
            {
                "case_id": c,
                "status": status,
                "gt": t,
                "score": s,
                "pred": p,
                "correct": float(p == t),
            }
        )
    have_scores = not any(math.isnan(s) for s in scores)
    result = mama_mia_pcr_score(
        y_true,
        y_pred,
        groups,
        y_score=scores if have_scores else None,
        alpha=opts["alpha"],
        fixed_labels=opts["fixed_labels"],
    )
    _add_group_columns(rows, groups)
    components = {k: v for k, v in result.items() if k not in ("score", "subgroups")}
    report: dict[str, Any] = {}
    if have_scores:
        report["binary_scores"] = {"truth": "gt", "score": "score"}
    return PresetOutcome(
        rows=rows,
        metrics=["correct"],
        score=result["score"],
        score_name="ranking score 0.5 BA + 0.5 (1 - D)",
        components=components,
        cases=cases,
        subgroups=result["subgroups"],
        conventions={
            "threshold": f"pCR predicted when score > {opts['threshold']:g}",
            "group_rates": "fixed labels [0, 1]"
            if opts["fixed_labels"]
            else "official: one-class group -> TPR = FPR = 0",
            "missing_prediction": "the wrong class with score 1 - truth",
            "columns": {
                "id": f"{pred.id_column} (--pred), {gt.id_column} (--gt)",
                "truth": truth_col,
                "prediction": score_col if score_col is not None else label_col,
            },
        },
        higher_is_better={"correct": True},
        report=report,
    )


_COMMON = (
    PresetOption("alpha", 0.5, "Weight of the fairness term in the ranking score.", "float"),
)

SEG_PRESET = Preset(
    name="mama-mia-seg",
    title="MAMA-MIA 2025, task 1: primary tumour segmentation (breast DCE-MRI)",
    source="github.com/LidiaGarrucho/MAMA-MIA src/challenge/scoring_task1.py and metrics.py",
    task_types=("segmentation",),
    units=("voxel", "mm"),
    summary="0.5 P + 0.5 F; P = 1/2[mean Dice + (1 - mean NormHD)], F = mean over age, "
    "menopause, density of 1 - 1/2(Dice gap + NormHD gap)",
    options=(
        *_COMMON,
        PresetOption("label", 1, "Label scored by Dice.", "int"),
        PresetOption("hd_max", HD_MAX, "HD95 that NormHD divides by.", "float"),
        PresetOption(
            "both_empty_dice", 0.0, "Dice when both masks are empty (official 0).", "float"
        ),
        PresetOption(
            "contour_edge",
            "inside",
            "inside (official: the image edge is not a contour) or border (it is).",
            choices=("inside", "border"),
        ),
        PresetOption(
            "distance_labels",
            "all",
            "all (official: HD95 over every non-zero label) or dice (the Dice label only).",
            choices=("all", "dice"),
        ),
        PresetOption(
            "lowercase_menopause",
            False,
            "Lower-case the menopausal status before grouping (the task 1 scorer does not).",
            "bool",
        ),
    ),
    run=_run_seg,
)

PCR_PRESET = Preset(
    name="mama-mia-pcr",
    title="MAMA-MIA 2025, task 2: pathologic complete response prediction",
    source="github.com/LidiaGarrucho/MAMA-MIA src/challenge/scoring_task2.py",
    task_types=("classification",),
    summary="0.5 balanced accuracy + 0.5 (1 - clip(mean equalized-odds disparity, 0, 1))",
    options=(
        *_COMMON,
        PresetOption(
            "threshold", 0.5, "pCR is predicted when the score is strictly above.", "float"
        ),
        PresetOption(
            "fixed_labels",
            False,
            "Build each group's confusion matrix over both classes (the official scorer "
            "does not: a one-class group gets TPR = FPR = 0).",
            "bool",
        ),
        PresetOption(
            "lowercase_menopause", True, "Lower-case the menopausal status (task 2 does).", "bool"
        ),
    ),
    run=_run_pcr,
)
