"""Trivial baselines: the bar a trained model must clear on each task.

A baseline is fitted on the training split only and predicts the same thing for every
image (up to the image's own grid):

==============  ======================  ===================================================
task type       baseline (``kind``)     prediction
==============  ======================  ===================================================
classification  ``majority class``      the training split's most frequent class, with the
                                        class priors as probabilities (AUC 0.5)
regression      ``training mean``       the mean training target, in the task's unit
landmarks       ``mean shape``          each point's mean training position
                                        (:func:`medfleet.train.landmark_space.mean_shape`)
segmentation    ``pixel-wise majority`` each pixel's most frequent training label, the
                                        training masks resized (nearest neighbour) to a
                                        common grid and the result resized to each image
detection       ``mean box``            one box, the mean of the training boxes normalised
                                        to image size and mapped back to each image
==============  ======================  ===================================================

:func:`predict_baselines` writes the baselines' predictions of a split, and the split's
references, in the formats ``medfleet evaluate`` reads (the layout of
:func:`medfleet.train.predict.predict_manifest`), so
:func:`medfleet.train.predict.evaluate_predictions` scores a baseline exactly as it scores
a model. :func:`compare_with_baseline` sets a model's headline metrics against them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.tables import parse_boxes, parse_spacing
from medfleet.tasks import Manifest, TaskSpec, TaskType
from medfleet.train.datasets import load_task_rows, target_column
from medfleet.train.geometry import nearest_indices

if TYPE_CHECKING:
    from medfleet.train.predict import CasePrediction, PredictionRun

BASELINE_KINDS: dict[TaskType, str] = {
    TaskType.classification: "majority class",
    TaskType.regression: "training mean",
    TaskType.landmarks: "mean shape",
    TaskType.segmentation: "pixel-wise majority",
    TaskType.detection: "mean box",
}
"""The baseline of each task type."""

HEADLINE_METRICS: dict[TaskType, tuple[tuple[str, bool], ...]] = {
    TaskType.classification: (("balanced_accuracy", True), ("auc", True), ("auc_macro", True)),
    TaskType.regression: (("mae", False),),
    TaskType.landmarks: (("mre", False),),
    TaskType.segmentation: (("dice", True),),
    TaskType.detection: (("ap50", True),),
}
"""Per task type: the metrics compared with the baseline and whether higher is better
(keys of :func:`medfleet.train.paradigms.headline`)."""


@dataclass(frozen=True)
class Baseline:
    """A trivial predictor fitted on one split of a task.

    Attributes:
        task: The task's name.
        type: The task's type.
        kind: See :data:`BASELINE_KINDS`.
        description: What it predicts, in words.
        n_fit: Labelled rows it was fitted on.
        label: Classification: the majority class.
        probs: Classification: the class priors (in ``spec.classes`` order).
        value: Regression: the mean target.
        landmarks: Landmarks: ``(L, 2)`` mean points ``x, y`` in pixels.
        box: Detection: mean box ``x0, y0, x1, y1`` as fractions of image width and height
            (``None`` when the split has no box).
        box_label: Detection: the most frequent box class (``None`` without classes).
        frequencies: Segmentation: ``(K, *grid)`` share of training masks with each label
            value at each pixel of a common grid.
        values: Segmentation: the ``K`` label values (``label_values(spec)``, background
            first).
    """

    task: str
    type: TaskType
    kind: str
    description: str
    n_fit: int
    label: str | None = None
    probs: np.ndarray | None = None
    value: float | None = None
    landmarks: np.ndarray | None = None
    box: np.ndarray | None = None
    box_label: str | None = None
    frequencies: np.ndarray | None = None
    values: np.ndarray | None = None

    def predict(
        self,
        case_id: str,
        shape: Sequence[int],
        spacing: Sequence[float],
        affine: list[list[float]] | None = None,
    ) -> CasePrediction:
        """The baseline's prediction for one image of spatial ``shape`` (runtime 0).

        Example:
            >>> from medfleet.tasks import TaskType
            >>> b = Baseline("hc", TaskType.regression, "training mean", "mean", 2, value=3.5)
            >>> b.predict("a", (8, 8), (1.0, 1.0)).value
            3.5
        """
        from medfleet.train.predict import CasePrediction

        pred = CasePrediction(case_id=case_id, runtime_s=0.0, spacing=tuple(spacing))
        if self.type is TaskType.classification:
            pred.label, pred.probs = self.label, self.probs
        elif self.type is TaskType.regression:
            pred.value = self.value
        elif self.type is TaskType.landmarks:
            pred.landmarks = self.landmarks
        elif self.type is TaskType.detection:
            if self.box is None:
                pred.boxes, pred.scores = np.zeros((0, 4)), np.zeros(0)
            else:
                height, width = shape[-2], shape[-1]
                pred.boxes = (self.box * np.array([width, height, width, height]))[None]
                pred.scores = np.ones(1)
                pred.box_labels = [self.box_label]
        else:
            assert self.frequencies is not None and self.values is not None
            probs = resize_nearest_nd(self.frequencies, tuple(shape))
            pred.probs = probs.astype(np.float32)
            pred.mask = self.values[np.argmax(probs, axis=0)]
            pred.affine = affine
        return pred


def majority_class(labels: Sequence[str], classes: Sequence[str]) -> tuple[str, np.ndarray]:
    """The most frequent label and the class priors (ties: the first class in ``classes``).

    Example:
        >>> label, priors = majority_class(["b", "a", "b", "c"], ["a", "b", "c"])
        >>> label, priors.tolist()
        ('b', [0.25, 0.5, 0.25])
    """
    if not labels:
        raise MedfleetError("no labels to take the majority class of")
    counts = Counter(labels)
    unknown = sorted(set(counts) - set(classes))
    if unknown:
        raise MedfleetError(f"labels {unknown} are not among the classes {list(classes)}")
    priors = np.array([counts[c] for c in classes], dtype=np.float64) / len(labels)
    return str(classes[int(np.argmax(priors))]), priors


def mean_box(boxes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Mean of ``(n, 4)`` pixel boxes ``x0, y0, x1, y1`` as fractions of their images' sizes.

    Args:
        boxes: The boxes, one per row.
        sizes: ``(n, 2)`` height and width of each box's image.

    Example:
        >>> mean_box(np.array([[0, 0, 5, 5], [10, 10, 20, 20.0]]),
        ...          np.array([[10, 10], [20, 20]])).tolist()
        [0.25, 0.25, 0.75, 0.75]
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if not len(boxes):
        raise MedfleetError("no boxes to average")
    scale = np.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], axis=1)
    return (boxes / scale).mean(axis=0)


def resize_nearest_nd(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize the trailing ``len(shape)`` axes by nearest neighbour (aligned pixel centres).

    Example:
        >>> resize_nearest_nd(np.array([[1, 2], [3, 4]]), (2, 4)).tolist()
        [[1, 1, 2, 2], [3, 3, 4, 4]]
    """
    lead = array.ndim - len(shape)
    index = np.ix_(*(nearest_indices(array.shape[lead + i], n) for i, n in enumerate(shape)))
    return array[(Ellipsis, *index)]


def label_frequencies(
    masks: Sequence[np.ndarray], values: Sequence[int], grid: tuple[int, ...]
) -> np.ndarray:
    """Share of ``masks`` with each label value at each pixel of ``grid``.

    Each mask is resized to ``grid`` by nearest neighbour; the argmax over the first axis
    is the pixel-wise majority mask.

    Args:
        masks: Label maps (any shapes with ``len(grid)`` axes).
        values: The label values, background first.
        grid: The common grid.

    Returns:
        ``(len(values), *grid)`` frequencies that sum to 1 at each pixel (label values
        outside ``values`` are counted as background).

    Example:
        >>> masks = [np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, 1]]), np.zeros((4, 4))]
        >>> f = label_frequencies(masks, [0, 1], (2, 2))
        >>> np.argmax(f, axis=0).tolist()
        [[0, 0], [1, 1]]
    """
    if not masks:
        raise MedfleetError("no masks to take the pixel-wise majority of")
    counts = np.zeros((len(values), *grid), dtype=np.float64)
    for mask in masks:
        resized = resize_nearest_nd(np.asarray(mask), grid)
        known = np.zeros(grid, dtype=bool)
        for k, value in enumerate(values[1:], start=1):
            hit = resized == value
            counts[k] += hit
            known |= hit
        counts[0] += ~known
    return counts / len(masks)


def _image(manifest: Manifest, row: dict[str, str], column: str = "image") -> Any:
    from medfleet.data.io import read_image

    spacing = parse_spacing(row["spacing"]) if (row.get("spacing") or "").strip() else None
    return read_image(manifest.resolve(row[column]), spacing=spacing)


def _mask_array(manifest: Manifest, row: dict[str, str]) -> np.ndarray:
    mask = _image(manifest, row, "mask")
    return mask.array[..., 0] if mask.meta.get("channel_axis") == -1 else mask.array


def fit_baseline(manifest: Manifest, task: TaskSpec | str, split: str = "train") -> Baseline:
    """Fit a task's trivial baseline on the labelled rows of one split.

    Args:
        manifest: The loaded manifest.
        task: The task or its name.
        split: The split it learns from (the training split: never the one it is scored on).

    Returns:
        The baseline (see :data:`BASELINE_KINDS`).

    Raises:
        MedfleetError: The split has no labelled row, or a 3D detection or landmark task
            (its baseline is not implemented).

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["lesion_cls"]),
        ...                          sites=1, cases_per_site=6, size=32)
        >>> b = fit_baseline(Manifest.load(path), "lesion_cls")
        >>> b.kind, b.label in ("benign", "malignant", "normal"), round(float(b.probs.sum()), 6)
        ('majority class', True, 1.0)
    """
    from medfleet.train.landmark_space import mean_shape
    from medfleet.train.predict import label_values

    spec = manifest.task(task) if isinstance(task, str) else task
    if spec.dim == 3 and spec.type in (TaskType.detection, TaskType.landmarks):
        raise MedfleetError(
            f"task {spec.name!r}: no trivial baseline for 3D {spec.type.value} yet "
            "(fix: leave the task out of the baselines)"
        )
    rows = load_task_rows(manifest, spec, (split,))
    if not rows:
        raise MedfleetError(
            f"task {spec.name!r}: no labelled {split} rows to fit the baseline on "
            "(fix: assign labelled rows to that split)"
        )
    kind, n = BASELINE_KINDS[spec.type], len(rows)
    common = {"task": spec.name, "type": spec.type, "kind": kind, "n_fit": n}
    if spec.type is TaskType.classification:
        classes = list(spec.classes or [])
        label, priors = majority_class([r[target_column(spec)].strip() for r in rows], classes)
        text = f"the {split} split's majority class {label!r}, class priors as scores"
        return Baseline(**common, description=text, label=label, probs=priors)
    if spec.type is TaskType.regression:
        value = float(np.mean([float(r[target_column(spec)]) for r in rows]))
        unit = f" {spec.unit}" if spec.unit else ""
        text = f"the {split} mean {value:.4g}{unit} for every image"
        return Baseline(**common, description=text, value=value)
    if spec.type is TaskType.landmarks:
        points = mean_shape(manifest, spec.name, split)
        text = f"each point's mean {split} position (pixels) for every image"
        return Baseline(**common, description=text, landmarks=points)
    if spec.type is TaskType.detection:
        boxes, sizes, labels = [], [], []
        for row in rows:
            parsed = parse_boxes(row[target_column(spec)])
            if not parsed:
                continue
            shape = _image(manifest, row).spatial_shape
            for box in parsed:
                boxes.append(box.coords)
                sizes.append(shape[-2:])
                labels.append(box.label)
        if not boxes:
            text = f"no box (the {split} split has none)"
            return Baseline(**common, description=text)
        named = [label for label in labels if label is not None]
        box_label = Counter(named).most_common(1)[0][0] if named else None
        text = f"one box, the mean of {len(boxes)} {split} boxes scaled to each image"
        if box_label is not None:
            text += f", class {box_label!r}"
        return Baseline(
            **common,
            description=text,
            box=mean_box(np.array(boxes), np.array(sizes)),
            box_label=box_label,
        )
    values = label_values(spec)
    masks = [_mask_array(manifest, r) for r in rows]
    grid = Counter(tuple(m.shape) for m in masks).most_common(1)[0][0]
    text = (
        f"each pixel's majority label over {n} {split} masks, "
        f"on a {'x'.join(map(str, grid))} grid resized to each image"
    )
    return Baseline(
        **common,
        description=text,
        values=np.asarray(values, dtype=np.int64),
        frequencies=label_frequencies(masks, values, grid),
    )


def predict_baselines(
    manifest: Manifest,
    out: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    split: str = "test",
    fit_split: str = "train",
) -> tuple[PredictionRun, dict[str, Baseline]]:
    """Fit each task's baseline and write its predictions of a split, with the references.

    The layout is that of :func:`medfleet.train.predict.predict_manifest` (``OUT/<task>/``
    with ``predictions.csv``, masks, ``reference.csv``, reference masks, and
    ``OUT/predictions.json``), so :func:`medfleet.train.predict.evaluate_predictions` or
    ``medfleet evaluate`` score it like a model's predictions. No model runs: images are
    read only for their grid and spacing.

    Args:
        manifest: The loaded manifest.
        out: Output folder.
        tasks: Tasks (default: every task of the manifest).
        split: The split predicted (``all``: every row).
        fit_split: The split the baselines are fitted on.

    Returns:
        The prediction run and the fitted baselines, by task. Tasks without rows in
        ``split`` are skipped.

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["lesion_cls"]),
        ...                          sites=2, cases_per_site=6, size=32)
        >>> run, fitted = predict_baselines(Manifest.load(path), tempfile.mkdtemp())
        >>> list(run.tasks), fitted["lesion_cls"].kind
        (['lesion_cls'], 'majority class')
    """
    from medfleet.train.predict import (
        PredictionRun,
        TaskPredictionWriter,
        evaluate_command,
        split_values,
        write_task_reference,
    )
    from medfleet.utils.atomic import write_json_atomic

    out = Path(out)
    names = list(tasks) if tasks is not None else [t.name for t in manifest.tasks]
    results: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Baseline] = {}
    skipped: list[str] = []
    for name in names:
        spec = manifest.task(name)
        rows = load_task_rows(manifest, spec, split_values(split), labelled_only=False)
        if not rows:
            skipped.append(name)
            continue
        baseline = fit_baseline(manifest, spec, fit_split)
        task_dir = out / spec.name
        writer = TaskPredictionWriter(spec, task_dir)
        for row in rows:
            image = _image(manifest, row)
            writer.add(
                baseline.predict(
                    row["case_id"], image.spatial_shape, image.spacing, image.meta.get("affine")
                )
            )
        info = writer.finish()
        info.update(write_task_reference(manifest, spec, rows, task_dir))
        info["type"] = spec.type.value
        info["baseline"] = {"kind": baseline.kind, "description": baseline.description}
        info["evaluate"] = " ".join(
            evaluate_command(spec, task_dir, out / "evaluation" / spec.name)
        )
        results[name] = info
        fitted[name] = baseline
    run = PredictionRun(out, split, results, skipped)
    write_json_atomic(out / "predictions.json", run.to_dict())
    return run, fitted


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def compare_with_baseline(
    task_type: TaskType | str,
    model: Mapping[str, Any],
    baseline: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Set a model's headline metrics against its baseline's.

    Args:
        task_type: The task's type (picks the metrics, see :data:`HEADLINE_METRICS`).
        model: The model's headline values (:func:`medfleet.train.paradigms.headline`).
        baseline: The baseline's headline values.

    Returns:
        Per metric both have: ``model``, ``baseline``, ``direction`` (``higher`` or
        ``lower`` is better) and ``difference``, model minus baseline signed so that a
        positive value means the model is better (``None`` when either value is not
        finite).

    Example:
        >>> compare_with_baseline("regression", {"mae": 41.2}, {"mae": 45.0})["mae"]
        {'model': 41.2, 'baseline': 45.0, 'direction': 'lower', 'difference': 3.8}
    """
    kind = TaskType(task_type)
    compared: dict[str, dict[str, Any]] = {}
    for metric, higher in HEADLINE_METRICS[kind]:
        if metric not in model or metric not in baseline:
            continue
        m, b = _finite(model[metric]), _finite(baseline[metric])
        difference = None
        if m is not None and b is not None:
            difference = round((m - b) if higher else (b - m), 10)
        compared[metric] = {
            "model": m,
            "baseline": b,
            "direction": "higher" if higher else "lower",
            "difference": difference,
        }
    return compared


def baseline_summary(
    task_type: TaskType | str,
    kind: str,
    model: Mapping[str, Any],
    baseline: Mapping[str, Any],
    *,
    description: str | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """One task's model-versus-baseline entry: the first compared metric, flat, and all.

    Args:
        task_type: The task's type.
        kind: The baseline's kind (see :data:`BASELINE_KINDS`).
        model: The model's headline values.
        baseline: The baseline's headline values.
        description: What the baseline predicts, in words.
        unit: Unit of the metric values (``None`` for unitless metrics).

    Returns:
        ``kind``, ``description``, ``metric`` (the first of :data:`HEADLINE_METRICS` that
        both have), ``unit``, its ``model``, ``baseline``, ``direction`` and ``difference``
        (positive: the model is better), and ``metrics`` (every compared metric).

    Example:
        >>> entry = baseline_summary("classification", "majority class",
        ...     {"balanced_accuracy": 0.8, "auc": 0.9}, {"balanced_accuracy": 0.5, "auc": 0.5})
        >>> entry["metric"], entry["difference"], entry["direction"], list(entry["metrics"])
        ('balanced_accuracy', 0.3, 'higher', ['balanced_accuracy', 'auc'])
    """
    compared = compare_with_baseline(task_type, model, baseline)
    metric = next(iter(compared), None)
    first = compared[metric] if metric is not None else {}
    return {
        "kind": kind,
        "description": description,
        "metric": metric,
        "unit": unit,
        "model": first.get("model"),
        "baseline": first.get("baseline"),
        "direction": first.get("direction"),
        "difference": first.get("difference"),
        "metrics": compared,
    }


__all__ = [
    "BASELINE_KINDS",
    "HEADLINE_METRICS",
    "Baseline",
    "baseline_summary",
    "compare_with_baseline",
    "fit_baseline",
    "label_frequencies",
    "majority_class",
    "mean_box",
    "predict_baselines",
    "resize_nearest_nd",
]
