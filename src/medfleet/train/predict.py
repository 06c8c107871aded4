"""Run a trained model over a manifest split or a folder of images; write what ``evaluate`` reads.

Predictions stream: each case is written as its batch is decoded (:func:`iter_predictions`,
:class:`TaskPredictionWriter`), so memory does not grow with the number of images; only the
small per-case CSV rows are kept until the table is written at the end.

Predictions are mapped back onto each image's own grid (see :mod:`medfleet.train.geometry`)
and written per task under ``OUT/<task>/``:

==================  ===========================================================================
file                content
==================  ===========================================================================
predictions.csv     ``case_id``, the task's prediction columns, ``runtime_s`` (every task type)
masks/              segmentation: one label map per case, ``<case_id>.png``, label values
                    (3D tasks: ``<case_id>.nii.gz`` on the volume's grid, spacing and affine)
probs/              segmentation: ``<case_id>.npz`` with ``probs`` (K, H, W) float16 and
                    ``labels`` (the K label values); 3D: ``probs`` (K, S, H, W)
reference.csv       the split's labelled rows: ``case_id``, target, ``spacing``, site and
                    metadata (the ``--gt`` table, or ``--meta`` for segmentation)
reference_masks/    segmentation: the split's reference masks as ``<case_id>.png``
                    (3D: ``<case_id>.nii.gz`` with the reference's spacing and affine)
images/             2D segmentation: a grey 8-bit preview of each input image,
                    ``<case_id>.png`` on the image's own grid (the masks' grid), min-max
                    scaled; ``medfleet evaluate --images`` draws it under the outlines of
                    the report's worst cases
==================  ===========================================================================

A folder of images (:func:`predict_images`) has no references: only the predictions are
written.

Volumes (``dim: 3``) come back from the model's ``(D, size, size)`` grid to the volume's
own ``(S, H, W)`` grid: the in-plane padding is cropped and the probabilities are
resampled trilinearly (aligned voxel centres) before the argmax.

Prediction columns: classification ``label`` and ``prob_<class>``; detection ``boxes``
(``[class:]x0,y0,x1,y1;...``) and ``scores``; regression ``value``; landmarks
``landmarks`` (``x,y;...``) and ``spacing``; segmentation ``mask`` and ``probs`` (paths
relative to the task folder). ``runtime_s`` is the wall time of the forward pass,
decoding, mapping back and post-processing, per image. ``OUT/predictions.json`` lists the
tasks, files, mean runtimes and the ``medfleet evaluate`` command of each task, and records
the test-time augmentation and post-processing asked for and applied per task.

Mirror test-time augmentation (``tta="flip"``, :data:`TTA_MODES`) runs the model on each
batch and on its horizontal mirror, flips the mirrored output back and averages the two
before decoding: segmentation probabilities pixel-wise (softmax of the logits), class
probabilities, regression values. Detection and landmark outputs are not mirrored back
(boxes need matching, landmarks have left/right pairs), so those tasks are predicted without
it (see :func:`effective_tta`).

Single-object post-processing (:data:`POSTPROCESS_STEPS`, :func:`postprocess_mask`) edits a
segmentation's final mask on the image's own grid: per foreground label the largest
connected component is kept and its holes are filled. The probabilities are left as
predicted.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfleet.data.io import dicom, nifti, raster, read_image, write_nifti, write_png
from medfleet.errors import MedfleetError
from medfleet.tables import (
    SPLITS,
    Box,
    format_boxes,
    format_landmarks,
    format_spacing,
    parse_spacing,
    rater_column,
    write_table,
)
from medfleet.tasks import Manifest, Site, TaskSpec, TaskType
from medfleet.train.datasets import (
    DEFAULT_SLICES,
    Normalisation,
    Sample,
    TaskDataset,
    collate,
    is_labelled,
    length_per_model_pixel,
    load_task_rows,
    scales_with_spacing,
    target_column,
)
from medfleet.train.geometry import Geometry, VolumeGeometry
from medfleet.utils.atomic import atomic_path, write_json_atomic
from medfleet.utils.progress import ProgressCallback

EVALUATE_TYPES = {
    TaskType.segmentation: "segmentation",
    TaskType.classification: "classification",
    TaskType.detection: "detection",
    TaskType.regression: "regression",
    TaskType.landmarks: "landmarks",
}

SPLIT_ALL = "all"
"""The ``split`` that predicts every row of a task, whatever its split."""

IMAGE_SUFFIXES: tuple[str, ...] = (*raster.SUFFIXES, *nifti.SUFFIXES, *dicom.SUFFIXES, ".npy")
"""Suffixes of the one-image files :func:`image_rows` picks from a folder."""

TTA_MODES: tuple[str, ...] = ("none", "flip")
"""Test-time augmentation: ``none``, or ``flip`` (identity and horizontal mirror, averaged)."""

TTA_TYPES = frozenset({TaskType.segmentation, TaskType.classification, TaskType.regression})
"""Task types whose outputs mirror test-time augmentation can flip back and average."""

POSTPROCESS_STEPS: tuple[str, ...] = ("largest-component", "fill-holes")
"""Segmentation post-processing steps, in the order they are applied."""


@dataclass
class CasePrediction:
    """One case's prediction on its image's own grid.

    Attributes:
        case_id: The case.
        runtime_s: Seconds for forward pass, decoding and mapping back (per image).
        spacing: mm per array axis of the image.
        mask: Segmentation label map (label values).
        probs: Segmentation ``(K, H, W)`` or classification ``(K,)`` probabilities.
        label: Predicted class name.
        boxes: ``(n, 4)`` boxes ``x0, y0, x1, y1`` in pixels (borders).
        scores: ``(n,)`` box scores.
        box_labels: Class name of each box (``None`` entries when the task has no classes).
        value: Regression value in the task's unit.
        landmarks: ``(L, 2)`` points ``x, y`` in pixels (NaN = not found).
        affine: Voxel-to-world matrix of a volume (written with 3D masks).
        image: 2D segmentation: grey uint8 preview of the input image on its own grid
            (see :func:`preview_image`), written to ``images/``; ``None`` otherwise.
    """

    case_id: str
    runtime_s: float
    spacing: tuple[float, ...]
    mask: np.ndarray | None = None
    probs: np.ndarray | None = None
    label: str | None = None
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    box_labels: list[str | None] = field(default_factory=list)
    value: float | None = None
    landmarks: np.ndarray | None = None
    affine: list[list[float]] | None = None
    image: np.ndarray | None = None


def label_values(spec: TaskSpec) -> list[int]:
    """Segmentation label values in class-index order (background first).

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> label_values(TaskSpec(name="s", type="segmentation", table="s.csv",
        ...                       labels={2: "b", 0: "bg", 1: "a"}))
        [0, 1, 2]
    """
    return sorted(spec.labels or {0: "background"})


def _field(decoded: Any, *names: str) -> Any:
    if isinstance(decoded, dict):
        for name in names:
            if name in decoded:
                return decoded[name]
        raise MedfleetError(f"model output {sorted(decoded)} lacks any of {list(names)}")
    for name in names:
        if hasattr(decoded, name):
            return getattr(decoded, name)
    raise MedfleetError(f"model output {type(decoded).__name__} lacks any of {list(names)}")


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def to_original(
    spec: TaskSpec,
    decoded: Any,
    geometry: Geometry | VolumeGeometry,
    case_id: str,
    spacing: tuple[float, ...],
) -> CasePrediction:
    """Map one decoded model output (model grid) back to the image's grid.

    Args:
        spec: The task.
        decoded: One sample of ``model.decode(task, out)``: segmentation ``{"mask", "probs"}``
            (``probs`` ``(K, S, S)``, or ``(K, D, S, S)`` for a volume, decides the mask),
            classification ``{"probs", "label"}``,
            detection a list of ``(box, score, class name or index)``, regression a float,
            landmarks ``(L, 2)``.
        geometry: The sample's geometry (:class:`VolumeGeometry` for a volume).
        case_id: The case.
        spacing: The image's spacing.

    Returns:
        The prediction with ``runtime_s`` 0 (the caller times it).
    """
    pred = CasePrediction(case_id=case_id, runtime_s=0.0, spacing=tuple(spacing))
    kind = spec.type
    if kind is TaskType.segmentation:
        probs = _numpy(_field(decoded, "probs", "probabilities")).astype(np.float32)
        cropped = torch.from_numpy(np.ascontiguousarray(geometry.crop(probs)))[None]
        mode = "trilinear" if isinstance(geometry, VolumeGeometry) else "bilinear"
        if cropped.ndim != (5 if mode == "trilinear" else 4):
            raise MedfleetError(
                f"task {spec.name!r}: probabilities of shape {tuple(probs.shape)} do not fit "
                f"a {spec.dim}D image (fix: use a checkpoint trained on this manifest)"
            )
        resized = torch.nn.functional.interpolate(
            cropped, size=geometry.original, mode=mode, align_corners=False
        )[0]
        resized = resized.clamp_min(0)
        resized = resized / resized.sum(dim=0, keepdim=True).clamp_min(1e-12)
        pred.probs = resized.numpy()
        values = np.asarray(label_values(spec), dtype=np.int64)
        pred.mask = values[np.argmax(pred.probs, axis=0)]
    elif kind is TaskType.classification:
        probs = _numpy(_field(decoded, "probs", "probabilities")).astype(np.float64).reshape(-1)
        classes = list(spec.classes or [])
        if len(probs) != len(classes):
            raise MedfleetError(
                f"task {spec.name!r}: the model gives {len(probs)} probabilities for "
                f"{len(classes)} classes (fix: use a checkpoint trained on this manifest)"
            )
        probs = np.clip(probs, 0.0, 1.0)
        pred.probs = probs / probs.sum() if probs.sum() > 0 else probs
        pred.label = classes[int(np.argmax(pred.probs))]
    elif kind is TaskType.detection:
        items = list(decoded or [])
        boxes = np.array([_numpy(b).reshape(4) for b, _, _ in items], dtype=np.float64)
        pred.boxes = geometry.boxes_from_model(boxes.reshape(-1, 4))
        pred.scores = np.array([float(s) for _, s, _ in items], dtype=np.float64)
        classes = list(spec.classes or [])
        pred.box_labels = [_box_class(k, classes, spec.name) for _, _, k in items]
        keep = (pred.boxes[:, 2] > pred.boxes[:, 0]) & (pred.boxes[:, 3] > pred.boxes[:, 1])
        pred.boxes, pred.scores = pred.boxes[keep], np.clip(pred.scores[keep], 0.0, 1.0)
        pred.box_labels = [k for k, ok in zip(pred.box_labels, keep, strict=True) if ok]
    elif kind is TaskType.regression:
        pred.value = float(_numpy(decoded).reshape(-1)[0])
        if scales_with_spacing(spec):  # the model predicts model-grid pixels
            assert isinstance(geometry, Geometry)
            pred.value *= length_per_model_pixel(geometry, spacing)
    else:
        points = _numpy(decoded).astype(np.float64).reshape(-1, 2)
        pred.landmarks = geometry.points_from_model(points)
    return pred


def _box_class(label: Any, classes: list[str], task: str) -> str | None:
    """A decoded box label (class name or index) as a class name (``None`` without classes)."""
    if not classes:
        return None
    if isinstance(label, str):
        if label not in classes:
            raise MedfleetError(
                f"task {task!r}: the model predicts box class {label!r} not in {classes}"
            )
        return label
    return classes[int(label)]


def check_tta(tta: str) -> str:
    """Validate a test-time augmentation mode (one of :data:`TTA_MODES`).

    Raises:
        MedfleetError: An unknown mode (the message names ``--tta`` and the choices).

    Example:
        >>> check_tta("flip")
        'flip'
    """
    if tta not in TTA_MODES:
        raise MedfleetError(
            f"--tta {tta!r} is not a test-time augmentation (fix: use one of {list(TTA_MODES)})"
        )
    return tta


def effective_tta(spec: TaskSpec, tta: str) -> str:
    """The test-time augmentation a task gets when ``tta`` is asked for.

    Mirror TTA applies to segmentation, classification and regression (:data:`TTA_TYPES`);
    detection boxes and landmark points would need matching and left/right pairs to be
    mirrored back, so those tasks are predicted without it (``none``).

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> seg = TaskSpec(name="s", type="segmentation", table="s.csv", labels={0: "bg"})
        >>> det = TaskSpec(name="d", type="detection", table="d.csv")
        >>> effective_tta(seg, "flip"), effective_tta(det, "flip")
        ('flip', 'none')
    """
    check_tta(tta)
    return tta if spec.type in TTA_TYPES else "none"


def parse_postprocess(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Post-processing steps from ``"largest-component,fill-holes"`` (or a list), in apply order.

    ``None``, ``""`` and ``"none"`` give no step. The steps are returned in the order of
    :data:`POSTPROCESS_STEPS` (largest component first), whatever order they are given in.

    Raises:
        MedfleetError: An unknown step (the message names ``--postprocess`` and the choices).

    Example:
        >>> parse_postprocess("fill-holes, largest-component")
        ('largest-component', 'fill-holes')
        >>> parse_postprocess("none")
        ()
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = {str(v).strip() for v in items} - {"", "none"}
    unknown = sorted(names - set(POSTPROCESS_STEPS))
    if unknown:
        raise MedfleetError(
            f"--postprocess {unknown} is not a post-processing step (fix: give a comma-separated "
            f"subset of {list(POSTPROCESS_STEPS)}, or none)"
        )
    return tuple(step for step in POSTPROCESS_STEPS if step in names)


def postprocess_mask(mask: np.ndarray, steps: Sequence[str], background: int = 0) -> np.ndarray:
    """Single-object post-processing of a label map, per foreground label.

    ``largest-component`` keeps, for each label value other than ``background``, its largest
    connected component (face connectivity: 4-neighbours in 2D, 6 in 3D; on a tie the first
    in raster order) and sets the other components to ``background``. ``fill-holes`` then
    gives each label the ``background`` pixels it encloses (regions that do not reach the
    border through face neighbours, :func:`scipy.ndimage.binary_fill_holes`), label by label
    in increasing value; pixels of other labels inside a hole are kept. Meant for tasks with
    one object per label (a fetal head, an organ).

    Args:
        mask: Label map (2D or 3D) of label values.
        steps: Steps from :func:`parse_postprocess`.
        background: The background label value.

    Returns:
        A new label map (``mask`` is not changed).

    Example:
        >>> m = np.array([[1, 1, 1, 0, 0],
        ...               [1, 0, 1, 0, 1],
        ...               [1, 1, 1, 0, 0]])
        >>> postprocess_mask(m, ("largest-component", "fill-holes"))
        array([[1, 1, 1, 0, 0],
               [1, 1, 1, 0, 0],
               [1, 1, 1, 0, 0]])
    """
    from scipy import ndimage

    steps = parse_postprocess(list(steps))
    out = np.array(mask, copy=True)
    values = [v for v in np.unique(out).tolist() if v != background]
    structure = ndimage.generate_binary_structure(out.ndim, 1)
    if "largest-component" in steps:
        for value in values:
            region = out == value
            components, n = ndimage.label(region, structure=structure)
            if n > 1:
                keep = 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
                out[region & (components != keep)] = background
    if "fill-holes" in steps:
        for value in values:
            filled = ndimage.binary_fill_holes(out == value, structure=structure)
            out[filled & (out == background)] = value
    return out


def _flip_key(spec: TaskSpec) -> str:
    return "value" if spec.type is TaskType.regression else "logits"


def _merge_flipped(spec: TaskSpec, raw: Any, mirrored: Any) -> Any:
    """The model's output averaged with its output on the mirrored images, flipped back.

    Segmentation and classification: the softmax probabilities (channel axis 1, or the last
    axis) are averaged and handed to decoding as their logarithm, so ``decode`` (a softmax)
    gives the average back. Regression: the values are averaged.
    """
    key = _flip_key(spec)
    for out in (raw, mirrored):
        if not isinstance(out, dict) or key not in out:
            found = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise MedfleetError(
                f"task {spec.name!r}: --tta flip averages the model's {key!r} output, which "
                f"its output {found} lacks (fix: use --tta none with this model)"
            )
    a, b = raw[key].float(), mirrored[key].float()
    merged = copy.copy(raw)
    if spec.type is TaskType.regression:
        merged[key] = (a + b) / 2
        return merged
    if spec.type is TaskType.segmentation:
        probs = (a.softmax(dim=1) + b.softmax(dim=1).flip(-1)) / 2
    else:
        probs = (a.softmax(dim=-1) + b.softmax(dim=-1)) / 2
    merged[key] = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
    return merged


def iter_predictions(
    model: Any,
    dataset: TaskDataset,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    tta: str = "none",
    postprocess: Sequence[str] = (),
    previews: bool = False,
) -> Iterator[CasePrediction]:
    """Predict every row of a dataset, in dataset order, yielding each case as it is decoded.

    Only the current batch is held: a consumer that writes each prediction and drops it
    (:class:`TaskPredictionWriter`) keeps memory bounded whatever the number of rows.

    Args:
        model: A model following the ``UnifiedModel`` interface (``model(images, task)``,
            ``model.decode(task, out)``).
        dataset: The rows (labelled or not).
        device: Where the model runs.
        batch_size: Images per forward pass; ``runtime_s`` is the batch time divided evenly.
        progress: Called as ``progress(done, total)`` after each batch.
        tta: ``none`` or ``flip``: also run the horizontally mirrored images and average
            the flipped-back output with the plain one before decoding (segmentation,
            classification and regression tasks; see :func:`effective_tta`).
        postprocess: Segmentation only: steps of :func:`postprocess_mask` applied to each
            mask on the image's own grid (the probabilities are kept as predicted).
        previews: 2D segmentation only: also attach a grey preview of each input image
            (:func:`preview_image`, ``CasePrediction.image``) for the writer's ``images/``.

    Yields:
        One prediction per row, on the image's own grid.

    Raises:
        MedfleetError: ``tta`` unknown or ``flip`` for a detection or landmarks task, or
            ``postprocess`` steps for a task other than segmentation.

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> from medfleet.models import ModelConfig, build_model
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["lesion_cls"]),
        ...                          sites=1, cases_per_site=3, size=32)
        >>> manifest = Manifest.load(path)
        >>> model = build_model(manifest, ModelConfig(image_size=32))
        >>> ds = TaskDataset(manifest, "lesion_cls", SPLITS, 32, labelled_only=False)
        >>> [p.label in manifest.task("lesion_cls").classes for p in iter_predictions(model, ds)]
        [True, True, True]
    """
    spec = dataset.spec
    if effective_tta(spec, tta) != tta:
        raise MedfleetError(
            f"task {spec.name!r}: --tta {tta} cannot mirror {spec.type.value} outputs back "
            f"(fix: use --tta none for this task; flip serves "
            f"{sorted(t.value for t in TTA_TYPES)})"
        )
    steps = parse_postprocess(list(postprocess))
    if steps and spec.type is not TaskType.segmentation:
        raise MedfleetError(
            f"task {spec.name!r}: --postprocess edits segmentation masks, and this task is "
            f"{spec.type.value} (fix: leave out --postprocess for this task)"
        )
    was_training = model.training
    model.eval()
    total = len(dataset)
    try:
        for start in range(0, total, batch_size):
            indices = range(start, min(start + batch_size, total))
            samples = [dataset[i] for i in indices]
            preds = _predict_batch(model, spec, samples, device, tta=tta, postprocess=steps)
            if previews and spec.type is TaskType.segmentation:
                _attach_previews(preds, samples)
            if progress is not None:
                progress(indices.stop, total)
            preds.reverse()
            while preds:  # hand each prediction over and keep no reference to it
                yield preds.pop()
    finally:
        model.train(was_training)


def _attach_previews(preds: list[CasePrediction], samples: list[Sample]) -> None:
    """Give each 2D prediction the grey preview of its input image (not timed)."""
    for pred, sample in zip(preds, samples, strict=True):
        if isinstance(sample.geometry, Geometry):
            pred.image = preview_image(sample.image, sample.geometry)


def _predict_batch(
    model: Any,
    spec: TaskSpec,
    samples: list[Sample],
    device: str | torch.device,
    *,
    tta: str = "none",
    postprocess: tuple[str, ...] = (),
) -> list[CasePrediction]:
    """One forward pass (two under flip TTA), decoded and mapped back; time per image."""
    with torch.no_grad():  # not across a yield: the consumer keeps its grad mode
        batch = collate(spec, samples)
        tic = time.perf_counter()
        images = batch.images.to(device)
        raw = model(images, spec.name)
        if tta == "flip":  # the last axis is the width for images and volumes alike
            raw = _merge_flipped(spec, raw, model(images.flip(-1), spec.name))
        decoded = model.decode(spec.name, raw)
        preds = [
            to_original(spec, d, s.geometry, s.case_id, s.spacing)
            for d, s in zip(decoded, samples, strict=True)
        ]
        for p, s in zip(preds, samples, strict=True):
            p.affine = s.affine
            if postprocess and p.mask is not None:
                p.mask = postprocess_mask(p.mask, postprocess, label_values(spec)[0])
        if isinstance(device, torch.device | str) and str(device).startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = (time.perf_counter() - tic) / len(samples)
    for p in preds:
        p.runtime_s = elapsed
    return preds


def predict_dataset(
    model: Any,
    dataset: TaskDataset,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    tta: str = "none",
    postprocess: Sequence[str] = (),
    previews: bool = False,
) -> list[CasePrediction]:
    """Predict every row of a dataset, in dataset order, on the images' own grids.

    Keeps every prediction (segmentation: full-resolution probability maps) in memory; to
    write many images use :func:`iter_predictions` with :class:`TaskPredictionWriter`.

    Args:
        model: A model following the ``UnifiedModel`` interface (``model(images, task)``,
            ``model.decode(task, out)``).
        dataset: The rows (labelled or not).
        device: Where the model runs.
        batch_size: Images per forward pass; ``runtime_s`` is the batch time divided evenly.
        progress: Called as ``progress(done, total)``.
        tta: Test-time augmentation (see :func:`iter_predictions`).
        postprocess: Segmentation post-processing steps (see :func:`iter_predictions`).
        previews: Attach grey input previews (see :func:`iter_predictions`).

    Returns:
        One prediction per row.
    """
    return list(
        iter_predictions(
            model,
            dataset,
            device=device,
            batch_size=batch_size,
            progress=progress,
            tta=tta,
            postprocess=postprocess,
            previews=previews,
        )
    )


def _safe_case_id(case_id: str, task: str) -> str:
    if not case_id or "/" in case_id or "\\" in case_id or case_id.startswith("."):
        raise MedfleetError(
            f"task {task!r}: case id {case_id!r} cannot be a file name "
            "(fix: use case ids without '/', '\\' or a leading '.')"
        )
    return case_id


def nifti_affine(affine: Any, spacing: Sequence[float]) -> list[list[float]] | None:
    """``affine`` when its column lengths agree with ``spacing`` (else ``None``: diagonal).

    A ``spacing`` cell in the table overrides the file's spacing; the file's affine then no
    longer describes the voxels, so the written mask gets the diagonal affine of the spacing.

    Example:
        >>> nifti_affine([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], (2, 1, 1))[0]
        [2.0, 0.0, 0.0, 0.0]
        >>> nifti_affine([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], (3, 1, 1))
    """
    if affine is None:
        return None
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or len(spacing) < 3:
        return None
    lengths = np.linalg.norm(matrix[:3, :3], axis=0)
    if not np.allclose(lengths, np.asarray(spacing[:3], float), rtol=1e-4, atol=1e-6):
        return None
    return matrix.tolist()


def write_mask(
    path_stem: Path, mask: np.ndarray, spacing: Sequence[float], affine: Any = None
) -> Path:
    """Write a label map as PNG (2D) or NIfTI ``.nii.gz`` (3D, with spacing and affine).

    Returns:
        The written path (``path_stem`` plus ``.png`` or ``.nii.gz``).
    """
    array = np.asarray(mask).astype(np.int64)
    if array.ndim == 3:
        path = path_stem.with_name(path_stem.name + ".nii.gz")
        return write_nifti(path, array, tuple(spacing), nifti_affine(affine, spacing))
    return write_png(path_stem.with_name(path_stem.name + ".png"), array, label=True)


def preview_image(image: torch.Tensor | np.ndarray, geometry: Geometry) -> np.ndarray:
    """A grey 8-bit preview of a model input, back on the image's own grid.

    The channels are averaged, the padding cropped and the result resized bilinearly to
    ``geometry.original`` (the grid of the image as read, hence of its masks), then scaled
    from its minimum to its maximum onto 0-255. It is made from the model input the
    prediction already holds, so the image is not read again; its detail is that of the
    model's input size.

    Args:
        image: ``(C, S, S)`` model input of one 2D image (any normalisation).
        geometry: How the image maps onto the model grid.

    Returns:
        ``(H, W)`` uint8.

    Example:
        >>> g = Geometry.fit((4, 8), 8)
        >>> x = torch.zeros(1, 8, 8); x[0, :4, 4:] = 3.0
        >>> preview_image(x, g).tolist()[0]
        [0, 0, 0, 0, 255, 255, 255, 255]
    """
    grey = torch.as_tensor(image, dtype=torch.float32).detach().cpu().mean(dim=0)
    cropped = grey[: geometry.resized[0], : geometry.resized[1]][None, None]
    if tuple(cropped.shape[-2:]) != tuple(geometry.original):
        cropped = torch.nn.functional.interpolate(
            cropped, size=geometry.original, mode="bilinear", align_corners=False
        )
    array = np.nan_to_num(cropped[0, 0].numpy().astype(np.float64))
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round((array - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _round(values: np.ndarray, digits: int = 4) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64), digits)


class TaskPredictionWriter:
    """Write one task's predictions case by case in the formats ``medfleet evaluate`` reads.

    Masks, probability maps and (2D segmentation) image previews are written (atomically) as
    each case arrives; only the small CSV row of each case is kept, and :meth:`finish`
    writes ``predictions.csv`` atomically.

    Args:
        spec: The task.
        task_dir: The task's output folder (created).

    Raises:
        MedfleetError: From :meth:`add`, a case id that cannot be a file name or that
            comes twice.

    Example:
        >>> import tempfile
        >>> from medfleet.tasks import TaskSpec
        >>> spec = TaskSpec(name="r", type="regression", table="r.csv", unit="mm")
        >>> writer = TaskPredictionWriter(spec, Path(tempfile.mkdtemp()) / "r")
        >>> writer.add(CasePrediction("a", 0.5, (1.0, 1.0), value=3.0))
        >>> info = writer.finish()
        >>> info["n_cases"], info["runtime_s_mean"]
        (1, 0.5)
    """

    def __init__(self, spec: TaskSpec, task_dir: str | Path) -> None:
        self.spec = spec
        self.task_dir = Path(task_dir)
        self.task_dir.mkdir(parents=True, exist_ok=True)
        self.masks_dir = self.task_dir / "masks"
        self.probs_dir = self.task_dir / "probs"
        self.images_dir = self.task_dir / "images"
        self.n_images = 0
        self.rows: list[dict[str, Any]] = []
        self.runtimes: list[float] = []
        self._seen: set[str] = set()

    def add(self, p: CasePrediction) -> None:
        """Write one case's files and keep its CSV row."""
        spec, kind = self.spec, self.spec.type
        case_id = _safe_case_id(p.case_id, spec.name)
        if case_id in self._seen:
            raise MedfleetError(
                f"task {spec.name!r}: case id {case_id!r} comes twice; its files would "
                "overwrite each other (fix: give every row of the task its own case_id)"
            )
        self._seen.add(case_id)
        row: dict[str, Any] = {"case_id": case_id}
        if kind is TaskType.segmentation:
            assert p.mask is not None and p.probs is not None
            mask_path = write_mask(self.masks_dir / case_id, p.mask, p.spacing, p.affine)
            with atomic_path(self.probs_dir / f"{case_id}.npz") as tmp:
                np.savez_compressed(
                    tmp,
                    probs=p.probs.astype(np.float16),
                    labels=np.asarray(label_values(spec), np.int64),
                )
            row["mask"] = f"masks/{mask_path.name}"
            row["probs"] = f"probs/{case_id}.npz"
            if p.image is not None and p.image.ndim == 2 and p.image.shape == p.mask.shape:
                write_png(self.images_dir / f"{case_id}.png", p.image)
                self.n_images += 1
        elif kind is TaskType.classification:
            assert p.probs is not None
            row["label"] = p.label
            for name, prob in zip(spec.classes or [], p.probs, strict=True):
                row[f"prob_{name}"] = round(float(prob), 6)
        elif kind is TaskType.detection:
            assert p.boxes is not None and p.scores is not None
            order = np.argsort(-p.scores, kind="stable")
            boxes = [
                Box(tuple(float(v) for v in _round(p.boxes[i])), p.box_labels[i]) for i in order
            ]
            row["boxes"] = format_boxes(boxes)
            row["scores"] = ";".join(f"{float(p.scores[i]):.6g}" for i in order)
        elif kind is TaskType.regression:
            row["value"] = round(float(p.value or 0.0), 6)
        else:
            assert p.landmarks is not None
            row["landmarks"] = format_landmarks(_round(p.landmarks))
            row["spacing"] = format_spacing(p.spacing)
        row["runtime_s"] = f"{p.runtime_s:.6f}"
        self.rows.append(row)
        self.runtimes.append(p.runtime_s)

    def finish(self) -> dict[str, Any]:
        """Write ``predictions.csv`` (atomically) and describe what was written.

        Returns:
            ``{"predictions": csv path, "masks": folder or None, "probs": folder or None,
            "images": folder of image previews or None, "n_cases": n,
            "runtime_s_mean": seconds}``.
        """
        rows = self.rows
        csv_path = write_table(
            self.task_dir / "predictions.csv", rows, columns=list(rows[0]) if rows else None
        )
        segmentation = self.spec.type is TaskType.segmentation
        return {
            "predictions": str(csv_path),
            "masks": str(self.masks_dir) if segmentation else None,
            "probs": str(self.probs_dir) if segmentation else None,
            "images": str(self.images_dir) if self.n_images else None,
            "n_cases": len(rows),
            "runtime_s_mean": float(np.mean(self.runtimes)) if self.runtimes else float("nan"),
        }


def write_task_predictions(
    spec: TaskSpec,
    predictions: Iterator[CasePrediction] | Sequence[CasePrediction],
    task_dir: str | Path,
) -> dict[str, Any]:
    """Write one task's predictions in the formats ``medfleet evaluate`` reads.

    ``predictions`` may be an iterator (:func:`iter_predictions`): each case is written
    as it arrives (see :class:`TaskPredictionWriter`).

    Returns:
        ``{"predictions": csv path, "masks": folder or None, "probs": folder or None,
        "n_cases": n, "runtime_s_mean": seconds}``.
    """
    writer = TaskPredictionWriter(spec, task_dir)
    for p in predictions:
        writer.add(p)
        del p  # hold no case while the next batch is predicted
    return writer.finish()


def write_task_reference(
    manifest: Manifest, spec: TaskSpec, rows: Sequence[dict[str, str]], task_dir: str | Path
) -> dict[str, Any]:
    """Write the labelled rows of a split as ``reference.csv`` (and reference masks).

    The table keeps every column but image paths (and, for segmentation, the mask paths);
    ``spacing`` is filled from the image when the table has none, so landmark errors and
    surface distances are in mm.

    Returns:
        ``{"reference": csv path, "reference_masks": folder or None, "n_reference": n}``.
    """
    task_dir = Path(task_dir)
    labelled = [r for r in rows if is_labelled(spec, r)]
    skip = {"image"}
    if spec.type is TaskType.segmentation:
        skip |= {"mask", *(rater_column(k) for k in range(1, spec.raters + 1))}
    masks_dir = task_dir / "reference_masks"
    out_rows = []
    for row in labelled:
        case_id = _safe_case_id(row["case_id"], spec.name)
        spacing = None
        if (row.get("spacing") or "").strip():
            spacing = parse_spacing(row["spacing"])
        if spec.type is TaskType.segmentation:
            mask = read_image(manifest.resolve(row["mask"]), spacing=spacing)
            array = mask.array[..., 0] if mask.meta.get("channel_axis") == -1 else mask.array
            spacing = spacing or mask.spacing
            if spec.dim == 3:
                write_mask(masks_dir / case_id, array, spacing, mask.meta.get("affine"))
            else:
                write_png(
                    masks_dir / f"{case_id}.png", np.asarray(array).astype(np.int64), label=True
                )
        elif spacing is None:
            spacing = read_image(manifest.resolve(row["image"])).spacing
        kept = {k: v for k, v in row.items() if k not in skip and not k.startswith("mask_rater")}
        kept["spacing"] = format_spacing(spacing)
        out_rows.append(kept)
    path = write_table(task_dir / "reference.csv", out_rows) if out_rows else None
    return {
        "reference": None if path is None else str(path),
        "reference_masks": str(masks_dir) if spec.type is TaskType.segmentation else None,
        "n_reference": len(out_rows),
    }


def evaluate_command(spec: TaskSpec, task_dir: Path, out: Path) -> list[str]:
    """The ``medfleet evaluate`` command line that scores one task's predictions.

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> spec = TaskSpec(name="r", type="regression", table="r.csv", unit="mm")
        >>> evaluate_command(spec, Path("p/r"), Path("e/r"))[2:6]
        ['--task-type', 'regression', '--pred', 'p/r/predictions.csv']
    """
    kind = EVALUATE_TYPES[spec.type]
    if spec.type is TaskType.segmentation:
        pred, gt = task_dir / "masks", task_dir / "reference_masks"
        extra = ["--meta", str(task_dir / "reference.csv")]
        if (task_dir / "images").is_dir():
            extra += ["--images", str(task_dir / "images")]
    else:
        pred, gt = task_dir / "predictions.csv", task_dir / "reference.csv"
        extra = []
    return [
        "medfleet", "evaluate", "--task-type", kind, "--pred", str(pred), "--gt", str(gt),
        "--out", str(out), *extra,
    ]  # fmt: skip


def evaluation_config(spec: TaskSpec, task_dir: Path, out: Path) -> Any:
    """An :class:`~medfleet.evaluate.runner.config.EvaluationConfig` for one task's predictions.

    For segmentation, the image previews under ``images/`` (when written) are the images of
    the report's worst-case gallery.
    """
    from medfleet.evaluate.runner.config import EvaluationConfig

    kind = EVALUATE_TYPES[spec.type]
    if spec.type is TaskType.segmentation:
        images = task_dir / "images"
        return EvaluationConfig(
            task_type=kind,
            pred=task_dir / "masks",
            gt=task_dir / "reference_masks",
            out=out,
            meta=task_dir / "reference.csv",
            labels=tuple(spec.foreground_labels),
            images=images if images.is_dir() else None,
        )
    labels = tuple(spec.classes) if spec.type is TaskType.classification else None
    return EvaluationConfig(
        task_type=kind,
        pred=task_dir / "predictions.csv",
        gt=task_dir / "reference.csv",
        out=out,
        labels=labels,
    )


@dataclass
class PredictionRun:
    """What :func:`predict_manifest` or :func:`predict_images` wrote.

    Attributes:
        out: Output folder.
        split: The split predicted (``all``: every row); ``None`` for a folder of images.
        tasks: Per task: files, counts, runtime and the evaluate command.
        skipped: Tasks without rows in the split.
        images: The folder of images predicted (``None`` for a manifest split).
        tta: Test-time augmentation asked for (each task records what it got).
        postprocess: Segmentation post-processing steps asked for (likewise per task).
    """

    out: Path
    split: str | None
    tasks: dict[str, dict[str, Any]]
    skipped: list[str] = field(default_factory=list)
    images: Path | None = None
    tta: str = "none"
    postprocess: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``predictions.json``)."""
        data: dict[str, Any] = {
            "out": str(self.out),
            "split": self.split,
            "tasks": self.tasks,
            "skipped": self.skipped,
            "tta": self.tta,
            "postprocess": list(self.postprocess),
        }
        if self.images is not None:
            data["images"] = str(self.images)
        return data


def split_values(split: str) -> tuple[str, ...]:
    """The table splits that ``split`` selects: itself, or every split for ``all``.

    Example:
        >>> split_values("val"), split_values("all")
        (('val',), ('train', 'val', 'test'))
    """
    return tuple(SPLITS) if split == SPLIT_ALL else (split,)


def _predict_tasks(
    model: Any,
    datasets: Sequence[TaskDataset],
    out: Path,
    *,
    reference: Manifest | None,
    device: str | torch.device,
    batch_size: int,
    progress: ProgressCallback | None,
    tta: str = "none",
    postprocess: tuple[str, ...] = (),
) -> dict[str, dict[str, Any]]:
    """Stream each dataset's predictions to ``out/<task>/`` (and its reference, if any).

    Each task gets ``tta`` where its type allows it (:func:`effective_tta`) and
    ``postprocess`` if it is a segmentation task; what it got is recorded in its entry
    (``tta``, ``postprocess``), with a ``notes`` line for what was asked but not applied.
    """
    total = sum(len(d) for d in datasets)
    done = 0
    results: dict[str, dict[str, Any]] = {}
    for ds in datasets:
        spec = ds.spec
        offset = done

        def step(d: int, t: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + d, total)

        task_dir = out / spec.name
        task_tta = effective_tta(spec, tta)
        segmentation = spec.type is TaskType.segmentation
        steps = postprocess if segmentation else ()
        stream = iter_predictions(
            model,
            ds,
            device=device,
            batch_size=batch_size,
            progress=step,
            tta=task_tta,
            postprocess=steps,
            previews=True,
        )
        info = write_task_predictions(spec, stream, task_dir)
        info["tta"] = task_tta
        info["postprocess"] = list(steps)
        notes = []
        if task_tta != tta:
            notes.append(
                f"--tta {tta} not applied: {spec.type.value} outputs are not mirrored back"
            )
        if postprocess and not segmentation:
            notes.append("--postprocess not applied: it edits segmentation masks only")
        if notes:
            info["notes"] = notes
        done += len(ds)
        if reference is not None:
            info.update(write_task_reference(reference, spec, ds.rows, task_dir))
            info["type"] = spec.type.value
            info["evaluate"] = " ".join(
                evaluate_command(spec, task_dir, out / "evaluation" / spec.name)
            )
        else:
            info.update({"reference": None, "reference_masks": None, "n_reference": 0})
            info["type"] = spec.type.value
            info["evaluate"] = None
        results[spec.name] = info
    return results


def predict_manifest(
    model: Any,
    manifest: Manifest,
    out: str | Path,
    *,
    split: str = "test",
    tasks: Sequence[str] | None = None,
    image_size: int,
    normalisation: Normalisation = "zscore",
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    slices: int | None = None,
    tta: str = "none",
    postprocess: str | Sequence[str] | None = None,
) -> PredictionRun:
    """Predict a split of every task the model serves and write predictions and references.

    Each case is written as its batch is decoded, so memory does not grow with the number
    of rows.

    Args:
        model: The model (``UnifiedModel`` interface).
        manifest: The manifest the model was trained on.
        out: Output folder.
        split: ``train``, ``val``, ``test`` or ``all`` (every row whatever its split).
        tasks: Tasks to predict (default: the manifest's tasks the model has heads for).
        image_size: The model's input size.
        normalisation: Intensity normalisation used in training.
        device: Where the model runs.
        batch_size: Images per forward pass (1 gives exact per-image runtimes).
        progress: Called as ``progress(done, total)`` over all cases.
        slices: Slices per volume of 3D tasks (default: the model's ``config.slices``).
        tta: ``none`` or ``flip`` (mirror test-time augmentation of segmentation,
            classification and regression tasks; other tasks are predicted without it and
            their entry says so).
        postprocess: Segmentation post-processing, e.g. ``"largest-component,fill-holes"``
            (see :func:`postprocess_mask`); other task types are left as predicted.

    Returns:
        The written files per task (also in ``OUT/predictions.json``).

    Tasks without rows in the split are skipped (listed in ``skipped``).

    Raises:
        MedfleetError: A task unknown to the manifest or the model, no task has rows in
            the split, or an unknown ``tta`` or ``postprocess`` step.
    """
    check_tta(tta)
    steps = parse_postprocess(postprocess)
    out = Path(out)
    if slices is None:
        slices = _model_slices(model)
    names = list(tasks) if tasks is not None else model_tasks(model, manifest)
    splits = split_values(split)
    datasets = []
    skipped = []
    for name in names:
        spec = manifest.task(name)
        if not load_task_rows(manifest, spec, splits, labelled_only=False):
            skipped.append(name)
            continue
        datasets.append(
            TaskDataset(
                manifest,
                spec,
                splits,
                image_size,
                labelled_only=False,
                normalisation=normalisation,
                cache=False,
                slices=slices,
            )
        )
    if not datasets:
        raise MedfleetError(
            f"no rows in split {split!r} for task(s) {names} (fix: choose another --split)"
        )
    results = _predict_tasks(
        model,
        datasets,
        out,
        reference=manifest,
        device=device,
        batch_size=batch_size,
        progress=progress,
        tta=tta,
        postprocess=steps,
    )
    run = PredictionRun(out, split, results, skipped, tta=tta, postprocess=list(steps))
    write_json_atomic(out / "predictions.json", run.to_dict())
    return run


def _model_slices(model: Any) -> int:
    return int(getattr(getattr(model, "config", None), "slices", None) or DEFAULT_SLICES)


def _image_suffix(name: str) -> str | None:
    lower = name.lower()
    return next((s for s in IMAGE_SUFFIXES if lower.endswith(s)), None)


def image_rows(folder: str | Path) -> list[dict[str, str]]:
    """Rows for every image file of a folder: ``case_id`` (file name less its suffix), ``image``.

    Files are taken in name order; hidden files, sub-folders and files of other suffixes
    (see :data:`IMAGE_SUFFIXES`) are left out. Nothing is written into the folder.

    Raises:
        MedfleetError: The folder is missing, holds no image file, two files give one
            case id, or a file name cannot be a case id.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("b.png", "a.nii.gz", "notes.txt"):
        ...     _ = (folder / name).write_bytes(b"")
        >>> [(r["case_id"], Path(r["image"]).name) for r in image_rows(folder)]
        [('a', 'a.nii.gz'), ('b', 'b.png')]
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MedfleetError(
            f"image folder {folder} is not a folder (fix: give a folder of image files, "
            f"one image per file: {', '.join(IMAGE_SUFFIXES)})"
        )
    rows: list[dict[str, str]] = []
    by_case: dict[str, Path] = {}
    others = 0
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        suffix = _image_suffix(path.name)
        if path.name.startswith(".") or not path.is_file() or suffix is None:
            others += not path.name.startswith(".")
            continue
        case_id = path.name[: -len(suffix)]
        if not case_id or "#" in path.name:
            raise MedfleetError(
                f"image {path}: the file name cannot be a case id "
                "(fix: rename it, without '#' and with a name before the suffix)"
            )
        if case_id in by_case:
            raise MedfleetError(
                f"images {by_case[case_id]} and {path} give the same case id {case_id!r} "
                "(fix: rename one of them)"
            )
        by_case[case_id] = path
        rows.append({"case_id": case_id, "image": str(path.resolve()), "split": "test"})
    if not rows:
        extra = f" ({others} other file(s) or folder(s) left out)" if others else ""
        raise MedfleetError(
            f"image folder {folder} holds no image file{extra} (fix: put one image per "
            f"file with one of the suffixes {', '.join(IMAGE_SUFFIXES)} in it)"
        )
    return rows


def predict_images(
    model: Any,
    images: str | Path,
    out: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    image_size: int,
    normalisation: Normalisation = "zscore",
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    slices: int | None = None,
    tta: str = "none",
    postprocess: str | Sequence[str] | None = None,
) -> PredictionRun:
    """Predict every image file of a folder for the model's tasks; write the predictions.

    The rows are built in memory (:func:`image_rows`); the task definitions come from the
    model (``model.specs``), the spacing from each file. No reference is written, so the
    predictions cannot be scored; nothing is written into ``images``.

    Args:
        model: The model (``UnifiedModel`` interface, with ``specs``: task name -> spec).
        images: The folder of images.
        out: Output folder.
        tasks: Tasks to predict (default: every task of the model).
        image_size: The model's input size.
        normalisation: Intensity normalisation used in training.
        device: Where the model runs.
        batch_size: Images per forward pass (1 gives exact per-image runtimes).
        progress: Called as ``progress(done, total)`` over all cases.
        slices: Slices per volume of 3D tasks (default: the model's ``config.slices``).
        tta: ``none`` or ``flip`` (mirror test-time augmentation of segmentation,
            classification and regression tasks; other tasks are predicted without it and
            their entry says so).
        postprocess: Segmentation post-processing, e.g. ``"largest-component,fill-holes"``
            (see :func:`postprocess_mask`); other task types are left as predicted.

    Returns:
        The written files per task (also in ``OUT/predictions.json``), ``split`` ``None``.

    Raises:
        MedfleetError: From :func:`image_rows`, a task the model lacks, an image that
            cannot be read (the message names the file), or an unknown ``tta`` or
            ``postprocess`` step.
    """
    check_tta(tta)
    steps = parse_postprocess(postprocess)
    out = Path(out)
    images = Path(images)
    specs: dict[str, TaskSpec] = dict(getattr(model, "specs", None) or {})
    names = list(tasks) if tasks is not None else list(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise MedfleetError(
            f"the model has no head for task(s) {unknown}; it serves {list(specs)} "
            "(fix: choose among these tasks)"
        )
    rows = image_rows(images)
    manifest = Manifest(
        name=str(getattr(model, "manifest_name", None) or "images"),
        sites=[Site(name="images")],
        tasks=[specs[n] for n in names],
        root=images.resolve(),
    )
    if slices is None:
        slices = _model_slices(model)
    datasets = [
        TaskDataset(
            manifest,
            name,
            ("test",),
            image_size,
            labelled_only=False,
            normalisation=normalisation,
            cache=False,
            slices=slices,
            rows=rows,
        )
        for name in names
    ]
    results = _predict_tasks(
        model,
        datasets,
        out,
        reference=None,
        device=device,
        batch_size=batch_size,
        progress=progress,
        tta=tta,
        postprocess=steps,
    )
    run = PredictionRun(out, None, results, [], images=images, tta=tta, postprocess=list(steps))
    write_json_atomic(out / "predictions.json", run.to_dict())
    return run


def model_tasks(model: Any, manifest: Manifest) -> list[str]:
    """The manifest's tasks the model has a head for, in manifest order."""
    served = getattr(model, "tasks", None)
    if served is None:
        return [t.name for t in manifest.tasks]
    served_names = {t if isinstance(t, str) else t.name for t in served}
    return [t.name for t in manifest.tasks if t.name in served_names]


def evaluate_predictions(
    manifest: Manifest, run: PredictionRun, out: str | Path | None = None, *, report: bool = True
) -> dict[str, Any]:
    """Score every task of a prediction run with :func:`medfleet.evaluate.runner.run_evaluation`.

    Args:
        manifest: The manifest.
        run: What :func:`predict_manifest` wrote.
        out: Evaluation folder (default ``run.out / "evaluation"``); one sub-folder per task.
        report: Also write each task's ``report.html``.

    Returns:
        Per task: ``{"summary_json", "cases_csv", "summary"}``.
    """
    from medfleet.evaluate.runner import run_evaluation

    out = Path(out) if out is not None else run.out / "evaluation"
    results: dict[str, Any] = {}
    for name, info in run.tasks.items():
        if not info.get("n_reference") or info.get("reference") is None:
            continue
        spec = manifest.task(name)
        config = evaluation_config(spec, run.out / name, out / name)
        if info["n_cases"] > info["n_reference"]:  # unlabelled rows: score the labelled ones
            config = dataclasses.replace(config, allow_missing=True)
        config = dataclasses.replace(config, report=report)
        result = run_evaluation(config)
        results[name] = {
            "summary_json": str(result.summary_json),
            "cases_csv": str(result.cases_csv),
            "summary": result.summary,
        }
    return results


__all__ = [
    "POSTPROCESS_STEPS",
    "TTA_MODES",
    "TTA_TYPES",
    "CasePrediction",
    "PredictionRun",
    "TaskPredictionWriter",
    "check_tta",
    "effective_tta",
    "evaluate_command",
    "evaluate_predictions",
    "evaluation_config",
    "image_rows",
    "iter_predictions",
    "label_values",
    "model_tasks",
    "nifti_affine",
    "parse_postprocess",
    "postprocess_mask",
    "predict_dataset",
    "predict_images",
    "predict_manifest",
    "preview_image",
    "split_values",
    "target_column",
    "to_original",
    "write_mask",
    "write_task_predictions",
    "write_task_reference",
]
