"""FUGC 2025 (ISBI): semi-supervised cervical segmentation in transvaginal ultrasound.

Per image, with label 1 the upper (anterior) lip and label 2 the lower (posterior) lip:

* DSC = mean over labels 1 and 2 of the smoothed Dice
  ``(2 |P & G| + 1e-6) / (|P| + |G| + 1e-6)`` (two empty masks give 1);
* HD = mean of the full (100th percentile) Hausdorff distance in pixels over label 1,
  label 2 and their union. The organisers' published metric is SimpleITK's
  ``HausdorffDistanceImageFilter`` on the whole masks, i.e. the Hausdorff distance between
  the *sets of foreground pixels* (``hd=set``, the default): the directed distance from A
  to B is the largest distance from a pixel of A to the nearest pixel of B (0 for a pixel
  inside B). ``hd=border`` measures between the border pixels instead (MedPy's ``hd``:
  ``mask & ~erode(mask)``, face connectivity, image-edge pixels are border pixels); the two
  differ when part of one mask's border lies inside the other mask, e.g. where the two
  lips meet inside their union. A part whose mask is empty on either side has an infinite
  HD, so the image's HD and the mean over images can be infinite (the mean over finite
  images and the count of infinite ones are reported as well);
* RT = running time per image, read from a table (``runtime`` option).

The ranking score is ``0.4 DSC + 0.4 HD + 0.2 RT`` after normalising each metric across
submissions. The official normalisation is not published, so it is selectable:
``rank`` (default; ``(n - rank) / (n - 1)`` with average ranks for ties, best = 1) or
``minmax`` (best = 1, worst = 0; an infinite HD gets 0). Other submissions' mean DSC, HD
and RT come from the ``submissions`` table; without it the score is not defined and only
the components are written.

A case that cannot be scored (an unreadable file, a colour or non-integer mask) becomes an
error row of ``cases.csv`` and is left out of every mean; the other cases are scored.

Source: the FUGC 2025 challenge page (codabench.org/competitions/4781) and the challenge
summary (baijieyun/ISBI-2025-FUGC-Source-Code README: "0.4 x DSC + 0.4 x HD + 0.2 x RT").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata

from medfleet.errors import InputFileError, OptionError
from medfleet.evaluate.challenges._inputs import plan_mask_pairs, read_mask_pair, read_table
from medfleet.evaluate.challenges.base import (
    CASE_ERROR,
    Preset,
    PresetOption,
    PresetOutcome,
    PresetRun,
    finite_mean,
    score_cases,
)

__all__ = [
    "PRESET",
    "fugc_case_metrics",
    "fugc_dice",
    "fugc_hausdorff",
    "fugc_ranking",
    "normalize_metric",
]

SMOOTH = 1e-6
PARTS = {"upper_lip": (1,), "lower_lip": (2,), "cervix": (1, 2)}
WEIGHTS = {"dsc": 0.4, "hd": 0.4, "runtime": 0.2}
#: ``hd`` option values: between the foreground pixel sets (official) or the border pixels.
HD_MODES = ("set", "border")
#: The ``hd`` convention as written to ``summary.json``.
HD_CONVENTIONS = {
    "set": "full Hausdorff between the foreground pixel sets (SimpleITK "
    "HausdorffDistanceImageFilter, the official metric), pixels; inf when a part is empty "
    "on either side",
    "border": "full Hausdorff between the border pixels (face connectivity; MedPy hd), "
    "pixels; inf when a part is empty on either side",
}
#: Per-case failures recorded as error rows (whole-run problems are re-raised first).


def fugc_dice(pred: np.ndarray, gt: np.ndarray, smooth: float = SMOOTH) -> float:
    """Smoothed Dice of two boolean masks: ``(2 |P & G| + s) / (|P| + |G| + s)``.

    Example:
        >>> z = np.zeros((3, 3), bool)
        >>> fugc_dice(z, z), round(fugc_dice(np.eye(3, dtype=bool), np.eye(3, dtype=bool)), 9)
        (1.0, 1.0)
    """
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    inter = float(np.count_nonzero(p & g))
    return (2.0 * inter + smooth) / (float(p.sum()) + float(g.sum()) + smooth)


def _directed_set_distance(a: np.ndarray, b: np.ndarray, sampling: Sequence[float] | None) -> float:
    """Largest distance from a pixel of ``a`` to the nearest pixel of ``b`` (both non-empty)."""
    # Every pixel of a and of b lies in the bounding box of a | b, so the distance transform
    # of that box is exact.
    coords = np.nonzero(a | b)
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    distance = ndimage.distance_transform_edt(~b[box], sampling=sampling)
    return float(distance[a[box]].max())


def fugc_hausdorff(
    pred: np.ndarray,
    gt: np.ndarray,
    mode: str = "set",
    spacing: Sequence[float] | None = None,
) -> float:
    """Full Hausdorff distance between two boolean masks; infinite when either is empty.

    Args:
        pred: Predicted mask.
        gt: Reference mask.
        mode: ``"set"`` (default): between the sets of foreground pixels, as SimpleITK's
            ``HausdorffDistanceImageFilter`` used by the FUGC organisers: the larger of the
            two directed distances, each the largest Euclidean distance from a pixel of one
            mask to the nearest pixel of the other. ``"border"``: between the border pixels
            (``mask & ~erode(mask)``, face connectivity; MedPy's ``hd``).
        spacing: Pixel size per axis (default 1: distances in pixels, as the official call).

    Returns:
        The distance (``inf`` when either mask is empty).

    Example:
        >>> gt = np.zeros((8, 8), bool); gt[2:5, 2:5] = True
        >>> fugc_hausdorff(np.roll(gt, 2, axis=0), gt), fugc_hausdorff(gt & False, gt)
        (2.0, inf)
        >>> big = np.zeros((9, 9), bool); big[1:8, 1:8] = True
        >>> holed = big.copy(); holed[4, 4] = False  # the hole's edge: a border inside big
        >>> fugc_hausdorff(holed, big), fugc_hausdorff(holed, big, mode="border")
        (1.0, 2.0)
    """
    if mode not in HD_MODES:
        raise ValueError(f"mode must be one of {', '.join(HD_MODES)}, got {mode!r}")
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    if p.shape != g.shape:
        raise ValueError(f"masks have shapes {p.shape} and {g.shape}: they must match")
    if not p.any() or not g.any():
        return math.inf
    if mode == "set":
        sampling = None if spacing is None else [float(s) for s in spacing]
        return max(_directed_set_distance(p, g, sampling), _directed_set_distance(g, p, sampling))
    from medfleet.evaluate.metrics.surface import surface_metrics

    result = surface_metrics(p, g, spacing, [1], metrics=("hd",), surface="border", connectivity=1)
    return float(result.value("hd", 1))


def fugc_case_metrics(pred: np.ndarray, gt: np.ndarray, hd: str = "set") -> dict[str, float]:
    """Per-image DSC (labels 1, 2), HD (labels 1, 2 and union) and their parts.

    Args:
        pred: Predicted label map (1 upper lip, 2 lower lip).
        gt: Reference label map.
        hd: Hausdorff convention, ``"set"`` (official) or ``"border"``
            (see :func:`fugc_hausdorff`).

    Example:
        >>> gt = np.zeros((10, 10), np.uint8); gt[2:4, 2:8] = 1; gt[5:7, 2:8] = 2
        >>> m = fugc_case_metrics(gt, gt)
        >>> round(m["dsc"], 9), m["hd"], m["hd_upper_lip"]
        (1.0, 0.0, 0.0)
    """
    p, g = np.asarray(pred), np.asarray(gt)
    out: dict[str, float] = {}
    for part, labels in PARTS.items():
        pm, gm = np.isin(p, labels), np.isin(g, labels)
        if part != "cervix":
            out[f"dsc_{part}"] = fugc_dice(pm, gm)
        out[f"hd_{part}"] = fugc_hausdorff(pm, gm, hd)
    out["dsc"] = 0.5 * (out["dsc_upper_lip"] + out["dsc_lower_lip"])
    out["hd"] = float(np.mean([out[f"hd_{part}"] for part in PARTS]))
    return out


def normalize_metric(values: Sequence[float], higher_is_better: bool, method: str) -> np.ndarray:
    """Normalise one metric across submissions to [0, 1], best = 1.

    ``rank``: ``(n - rank) / (n - 1)`` with average ranks for ties (1 for a single
    submission). ``minmax``: ``(x - worst) / (best - worst)`` over finite values (1 when all
    are equal); an infinite or NaN value gets 0.

    Example:
        >>> normalize_metric([0.9, 0.8, 0.7], True, "rank").tolist()
        [1.0, 0.5, 0.0]
        >>> normalize_metric([10.0, 20.0, float("inf")], False, "minmax").tolist()
        [1.0, 0.0, 0.0]
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if method == "rank":
        key = np.where(np.isnan(v), -np.inf if higher_is_better else np.inf, v)
        ranks = rankdata(-key if higher_is_better else key, method="average")
        return np.ones(n) if n == 1 else (n - ranks) / (n - 1)
    if method != "minmax":
        raise ValueError(f"normalization must be 'rank' or 'minmax', got {method!r}")
    ok = np.isfinite(v)
    out = np.zeros(n)
    if not ok.any():
        return out
    lo, hi = float(v[ok].min()), float(v[ok].max())
    if hi == lo:
        out[ok] = 1.0
        return out
    out[ok] = (v[ok] - lo) / (hi - lo) if higher_is_better else (hi - v[ok]) / (hi - lo)
    return out


def fugc_ranking(
    submissions: Mapping[str, Mapping[str, float]], normalization: str = "rank"
) -> dict[str, dict[str, float]]:
    """Normalised components, score and rank of every submission.

    Args:
        submissions: Name -> ``{"dsc", "hd", "runtime"}`` (means over images).
        normalization: ``"rank"`` or ``"minmax"``.

    Returns:
        Name -> ``{"dsc_norm", "hd_norm", "runtime_norm", "score", "rank"}``.

    Example:
        >>> r = fugc_ranking({"a": {"dsc": 0.9, "hd": 10, "runtime": 1.0},
        ...                   "b": {"dsc": 0.8, "hd": 20, "runtime": 0.5}})
        >>> round(r["a"]["score"], 6), r["a"]["rank"], round(r["b"]["score"], 6)
        (0.8, 1.0, 0.2)
    """
    names = list(submissions)
    normed: dict[str, np.ndarray] = {}
    for metric, better in (("dsc", True), ("hd", False), ("runtime", False)):
        values = [float(submissions[n][metric]) for n in names]
        normed[metric] = normalize_metric(values, better, normalization)
    scores = sum(WEIGHTS[m] * normed[m] for m in WEIGHTS)
    ranks = rankdata(-np.asarray(scores), method="min")
    return {
        n: {
            "dsc_norm": float(normed["dsc"][i]),
            "hd_norm": float(normed["hd"][i]),
            "runtime_norm": float(normed["runtime"][i]),
            "score": float(scores[i]),
            "rank": float(ranks[i]),
        }
        for i, n in enumerate(names)
    }


def _runtime_table(run: PresetRun) -> dict[str, float] | None:
    path: Path | None = run.options["runtime"]
    if path is None:
        candidate = Path(run.config.pred) / "runtime.csv"
        if not candidate.is_file():
            return None
        path = candidate
    table = read_table(path, (), "--preset-option runtime")
    column = next(
        (c for c in ("runtime", "runtime_s", "time", "seconds") if c in table.columns), None
    )
    if column is None:
        raise InputFileError(
            f"runtime table {path} needs a 'runtime' column (seconds per image) next to case_id"
        )
    out = {}
    for case_id, row in table.rows.items():
        try:
            value = float(row[column])
        except ValueError:
            raise InputFileError(
                f"runtime table {path}: case {case_id}: {row[column]!r} is not a number"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise InputFileError(f"runtime table {path}: case {case_id}: runtime must be >= 0")
        out[case_id] = value
    return out


def _submissions(path: Path) -> dict[str, dict[str, float]]:
    import csv

    if not Path(path).is_file():
        raise InputFileError(f"submissions table {path} is not a file")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, dict[str, float]] = {}
    for line, row in enumerate(rows, start=2):
        missing = [c for c in ("submission", "dsc", "hd", "runtime") if c not in row]
        if missing:
            raise InputFileError(
                f"submissions table {path} lacks column(s) {missing} "
                "(fix: submission,dsc,hd,runtime)"
            )
        try:
            out[row["submission"].strip()] = {k: float(row[k]) for k in ("dsc", "hd", "runtime")}
        except ValueError:
            raise InputFileError(
                f"submissions table {path} line {line}: dsc, hd, runtime must be numbers"
            ) from None
    return out


def _run(run: PresetRun) -> PresetOutcome:
    opts = run.options
    plan = plan_mask_pairs(run)
    runtimes = _runtime_table(run)
    all_rows: list[dict[str, Any]] = []
    warnings: list[str] = []

    def score(case_id: str) -> dict[str, Any]:
        pair = read_mask_pair(run, plan, case_id)
        metrics = fugc_case_metrics(pair.pred, pair.gt, opts["hd"])
        return {"case_id": case_id, "status": pair.status, **metrics}

    for case_id, row in score_cases(run, plan.case_ids, score, all_rows):
        if runtimes is not None:
            row["runtime"] = runtimes.get(case_id, math.nan)
            if case_id not in runtimes:
                warnings.append(f"case {case_id}: no runtime in the runtime table")
        all_rows.append(row)
    rows = [r for r in all_rows if r["status"] != CASE_ERROR]
    dsc = float(np.mean([r["dsc"] for r in rows]))
    hd_values = [r["hd"] for r in rows]
    hd = float(np.mean(hd_values))
    hd_finite, n_inf = finite_mean(hd_values)
    runtime = math.nan
    if runtimes is not None:
        runtime = (
            float(np.nanmean([r["runtime"] for r in rows]))
            if any(not math.isnan(r["runtime"]) for r in rows)
            else math.nan
        )
    components: dict[str, Any] = {
        "dsc": dsc,
        "hd": hd,
        "hd_finite_mean": hd_finite,
        "n_hd_infinite": n_inf,
        "runtime": runtime,
        "normalization": opts["normalization"],
    }
    for part in ("upper_lip", "lower_lip"):
        components[f"dsc_{part}"] = float(np.mean([r[f"dsc_{part}"] for r in rows]))
    for part in ("upper_lip", "lower_lip", "cervix"):
        components[f"hd_{part}"] = float(np.mean([r[f"hd_{part}"] for r in rows]))
    score = None
    if opts["submissions"] is not None:
        others = _submissions(opts["submissions"])
        name = opts["name"]
        if name in others:
            raise OptionError(
                f"submissions table already lists {name!r} (fix: --preset-option name=...)"
            )
        if math.isnan(runtime):
            warnings.append("no runtime for this run: the score is undefined (give runtime=CSV)")
        table = fugc_ranking(
            {name: {"dsc": dsc, "hd": hd, "runtime": runtime}, **others}, opts["normalization"]
        )
        mine = table[name]
        components.update({k: mine[k] for k in ("dsc_norm", "hd_norm", "runtime_norm", "rank")})
        components["n_submissions"] = len(table)
        components["ranking"] = table
        score = None if math.isnan(runtime) else mine["score"]
    else:
        warnings.append(
            "the FUGC score normalises each metric across submissions: give "
            "--preset-option submissions=CSV (submission,dsc,hd,runtime) to compute it"
        )
    metrics = [
        "dsc",
        "hd",
        "dsc_upper_lip",
        "dsc_lower_lip",
        "hd_upper_lip",
        "hd_lower_lip",
        "hd_cervix",
    ]
    if runtimes is not None:
        metrics.append("runtime")
    return PresetOutcome(
        rows=all_rows,
        metrics=metrics,
        score=score,
        score_name="0.4 DSC + 0.4 HD + 0.2 RT (normalised across submissions)",
        components=components,
        cases=plan.cases,
        conventions={
            "dice_smoothing": SMOOTH,
            "hd": HD_CONVENTIONS[opts["hd"]],
            "normalization": opts["normalization"],
        },
        warnings=warnings,
        higher_is_better={"dsc": True, "hd": False, "runtime": False},
    )


PRESET = Preset(
    name="fugc",
    title="FUGC 2025: cervical segmentation in transvaginal ultrasound",
    source="codabench.org/competitions/4781; ISBI 2025 FUGC summary",
    task_types=("segmentation",),
    summary="0.4 DSC + 0.4 HD + 0.2 RT after normalising each across submissions",
    options=(
        PresetOption(
            "runtime",
            None,
            "CSV with case_id,runtime (seconds per image); default "
            "<pred>/runtime.csv when present.",
            "path",
        ),
        PresetOption(
            "submissions", None, "CSV of other submissions: submission,dsc,hd,runtime.", "path"
        ),
        PresetOption("name", "this run", "Name of this run in the ranking."),
        PresetOption(
            "normalization",
            "rank",
            "rank (default) or minmax across submissions.",
            choices=("rank", "minmax"),
        ),
        PresetOption(
            "hd",
            "set",
            "set (default; between the foreground pixel sets, as the official SimpleITK "
            "filter) or border (between the border pixels, MedPy's hd).",
            choices=HD_MODES,
        ),
    ),
    run=_run,
)
