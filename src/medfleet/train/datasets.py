"""Torch datasets over the rows of a manifest task's table.

Each sample is one table row: the image is read with :func:`medfleet.data.io.read_image`
(honouring the row's ``spacing``), normalised, converted to the task's channel count,
scaled so its longer side is the model size and padded at the bottom and right (see
:mod:`medfleet.train.geometry`). Targets move with the image: masks by nearest neighbour
(padding marked ``-1`` = ignore), boxes and landmarks by the same scale, classes become
indices into the task's ``classes``.

Problems in the data are found before training starts: :func:`load_task_rows` checks the
table and its target column, and :meth:`TaskDataset.check` reads every sample once, so a
label outside the task's classes, a mask that does not match its image or images with
mixed channel counts stop the run with a message naming the file, case and fix.

Volumes (tasks with ``dim: 3``: classification, regression, segmentation) are read as
``(S, H, W)`` arrays with the slice axis first (NIfTI as stored; spacing from the file or
the row's ``spacing`` cell ``slice,row,col``), normalised over the whole volume per
channel, and every slice is mapped in-plane exactly like a 2D image; the slice axis is
resampled to a fixed ``slices`` count (linear for images, nearest for masks; see
:class:`~medfleet.train.geometry.VolumeGeometry`). A volume sample's image is
``(D, C, size, size)`` and a batch ``(B, D, C, size, size)``, the input the unified model
takes for 3D tasks. 3D detection and landmarks are refused with a clear error.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from medfleet.data.io import ImageData, read_image
from medfleet.errors import ManifestError, MedfleetError
from medfleet.tables import (
    BASE_COLUMNS,
    SPLITS,
    TARGET_COLUMNS,
    CellFormatError,
    parse_boxes,
    parse_float,
    parse_landmarks,
    parse_spacing,
    read_table,
)
from medfleet.tasks import Manifest, TaskSpec, TaskType
from medfleet.train.geometry import Geometry, VolumeGeometry, resize_nearest

Normalisation = Literal["zscore", "minmax", "none"]
MaskEncoder = Callable[[str, np.ndarray], Any]

DEFAULT_SLICES = 16
"""Slices per volume of the model input when neither the caller nor the model says."""

VOLUME_TYPES = (TaskType.classification, TaskType.regression, TaskType.segmentation)
"""Task types that may have ``dim: 3``."""

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class DataError(ManifestError):
    """A task's table or images cannot be used for training or prediction."""


def target_column(spec: TaskSpec) -> str:
    """The table column holding a task's target.

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> target_column(TaskSpec(name="t", type="regression", table="t.csv", unit="mm"))
        'value'
    """
    return TARGET_COLUMNS[spec.type.value][0]


def is_labelled(spec: TaskSpec, row: dict[str, str]) -> bool:
    """Whether a row has a target (an empty target cell marks an unlabelled row).

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> spec = TaskSpec(name="t", type="classification", table="t.csv", classes=["a", "b"])
        >>> is_labelled(spec, {"label": "a"}), is_labelled(spec, {"label": " "})
        (True, False)
    """
    return bool((row.get(target_column(spec)) or "").strip())


def load_task_rows(
    manifest: Manifest,
    spec: TaskSpec | str,
    splits: Sequence[str] = ("train",),
    *,
    labelled_only: bool = True,
) -> list[dict[str, str]]:
    """Read a task's table and return the rows of the given splits, checked.

    Args:
        manifest: The loaded manifest (its folder resolves the table path).
        spec: The task or its name.
        splits: Splits to keep (``train``, ``val``, ``test``).
        labelled_only: Drop rows whose target cell is empty.

    Returns:
        The rows, in table order.

    Raises:
        DataError: The table is missing, lacks a base or target column, or has a row with
            an unknown split; the message names the table and says what to add.

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["lesion_cls"]),
        ...                          sites=1, cases_per_site=4, size=32)
        >>> rows = load_task_rows(Manifest.load(path), "lesion_cls", ("train", "val", "test"))
        >>> len(rows)
        4
    """
    spec = manifest.task(spec) if isinstance(spec, str) else spec
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DataError(f"unknown split(s) {unknown} (fix: use {list(SPLITS)})")
    path = manifest.table_path(spec)
    if not path.is_file():
        raise DataError(
            f"task {spec.name!r}: table {path} not found (fix: check 'table' in the manifest)"
        )
    try:
        rows = read_table(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"task {spec.name!r}: cannot read table {path}: {exc}") from exc
    columns = _columns(path)
    target = target_column(spec)
    missing = [c for c in ("case_id", "image", "split") if c not in columns]
    if target not in columns:
        missing.append(target)
    if missing:
        raise DataError(
            f"task {spec.name!r} ({spec.type.value}): table {path} lacks column(s) {missing}; "
            f"it has {columns} (fix: add the column(s); a {spec.type.value} task reads its "
            f"target from '{target}', see medfleet.tables)"
        )
    kept = []
    for line, row in enumerate(rows, start=2):
        split = (row.get("split") or "").strip()
        if split not in SPLITS:
            raise DataError(
                f"task {spec.name!r}: table {path} line {line} (case {row.get('case_id')!r}) has "
                f"split {split!r} (fix: use one of {list(SPLITS)})"
            )
        if split in splits and (is_labelled(spec, row) or not labelled_only):
            kept.append(row)
    return kept


def _columns(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    return [c.strip() for c in header]


def default_mask_encoder(spec: TaskSpec) -> Callable[[np.ndarray], np.ndarray]:
    """Label values -> class indices in sorted label order (background first).

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> spec = TaskSpec(name="s", type="segmentation", table="s.csv",
        ...                 labels={0: "bg", 5: "a", 7: "b"})
        >>> default_mask_encoder(spec)(np.array([0, 7, 5])).tolist()
        [0, 2, 1]
    """
    values = sorted(spec.labels or {0: "background"})
    lookup = {v: i for i, v in enumerate(values)}

    def encode(mask: np.ndarray) -> np.ndarray:
        out = np.full(mask.shape, -1, dtype=np.int64)
        for value, index in lookup.items():
            out[mask == value] = index
        return out

    return encode


@dataclass
class Sample:
    """One prepared row.

    Attributes:
        image: ``(C, S, S)`` float32 model input (a volume: ``(D, C, S, S)``).
        target: The model-grid target (see the module notes), ``None`` when unlabelled.
        case_id: The row's case id.
        geometry: How the image maps onto the model grid (:class:`VolumeGeometry` for
            a volume).
        spacing: mm per array axis of the original image.
        channels_in_file: The channel count of the file before conversion.
        index: Row index within the dataset.
        affine: Voxel-to-world matrix of a volume read from NIfTI (``None`` otherwise).
    """

    image: torch.Tensor
    target: Any
    case_id: str
    geometry: Geometry | VolumeGeometry
    spacing: tuple[float, ...]
    channels_in_file: int
    index: int
    affine: list[list[float]] | None = None


@dataclass
class Batch:
    """Samples of one task stacked for the model.

    Attributes:
        task: Task name.
        images: ``(B, C, S, S)`` float32 (volumes: ``(B, D, C, S, S)``).
        targets: The model's target format for the task type (``None`` when unlabelled).
        case_ids: Per sample.
        geometries: Per sample.
        spacings: Per sample.
    """

    task: str
    images: torch.Tensor
    targets: Any
    case_ids: list[str]
    geometries: list[Geometry | VolumeGeometry]
    spacings: list[tuple[float, ...]] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Batch:
        """Move images and targets to ``device``."""
        return Batch(
            self.task,
            self.images.to(device),
            move_targets(self.targets, device),
            self.case_ids,
            self.geometries,
            self.spacings,
        )


def move_targets(targets: Any, device: torch.device | str) -> Any:
    """Move a target structure (tensor, list of box dicts, ``None``) to ``device``."""
    if targets is None:
        return None
    if isinstance(targets, torch.Tensor):
        return targets.to(device)
    return [{k: v.to(device) for k, v in t.items()} for t in targets]


class TaskDataset(Dataset):
    """Rows of one task as model-ready samples.

    Args:
        manifest: The loaded manifest.
        task: Task name or spec.
        splits: Splits to include.
        image_size: Side ``S`` of the square model input.
        labelled_only: Exclude rows without a target (supervised training); when False,
            unlabelled rows give ``target=None`` (prediction).
        normalisation: ``zscore`` (per image and channel), ``minmax`` (to [0, 1]) or ``none``.
        mask_encoder: ``(task, mask) -> class indices``; defaults to sorted label order.
        cache: Keep prepared samples in memory after the first read.
        slices: Slices ``D`` of each volume's model input (``dim: 3`` tasks only).
        rows: The task's rows, given instead of reading the task's table (e.g. a folder of
            images to predict); ``splits`` and ``labelled_only`` then do not filter them.
            Each row needs ``case_id`` and ``image`` (resolved against the manifest's
            folder; an absolute path is used as it is).

    Raises:
        DataError: From :func:`load_task_rows`, when no row is left, or for a 3D
            detection or landmarks task.

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["nodule_det"]),
        ...                          sites=1, cases_per_site=3, size=40)
        >>> ds = TaskDataset(Manifest.load(path), "nodule_det", ("train", "val", "test"), 32)
        >>> s = ds[0]
        >>> tuple(s.image.shape), s.target["boxes"].shape[1]
        ((1, 32, 32), 4)
    """

    def __init__(
        self,
        manifest: Manifest,
        task: str | TaskSpec,
        splits: Sequence[str],
        image_size: int,
        *,
        labelled_only: bool = True,
        normalisation: Normalisation = "zscore",
        mask_encoder: MaskEncoder | None = None,
        cache: bool = True,
        slices: int = DEFAULT_SLICES,
        rows: Sequence[dict[str, str]] | None = None,
    ) -> None:
        self.manifest = manifest
        self.spec = manifest.task(task) if isinstance(task, str) else task
        check_dim(self.spec)
        if int(slices) < 1:
            raise DataError(f"slices must be at least 1, got {slices}")
        self.slices = int(slices)
        if normalisation not in ("zscore", "minmax", "none"):
            raise DataError(
                f"normalisation {normalisation!r} is not one of 'zscore', 'minmax', 'none'"
            )
        self.splits = tuple(splits)
        self.image_size = int(image_size)
        self.labelled_only = labelled_only
        self.normalisation = normalisation
        if rows is not None:
            self.rows = [dict(r) for r in rows]
        else:
            self.rows = load_task_rows(
                manifest, self.spec, self.splits, labelled_only=labelled_only
            )
        if not self.rows:
            what = "labelled rows" if labelled_only else "rows"
            raise DataError(
                f"task {self.spec.name!r}: no {what} in split(s) {list(self.splits)} of "
                f"{manifest.table_path(self.spec)} (fix: assign rows to these splits)"
            )
        self._encode_mask = _mask_encoder(self.spec, mask_encoder)
        self.cache = cache
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def case_ids(self) -> list[str]:
        """Case ids in dataset order."""
        return [r["case_id"] for r in self.rows]

    def __getitem__(self, index: int) -> Sample:
        if index in self._cache:
            return self._cache[index]
        sample = self._load(index)
        if self.cache:
            self._cache[index] = sample
        return sample

    def check(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Read every sample once; stop on the first bad row or on mixed channel counts.

        Returns:
            ``{"rows": n, "channels_in_files": {count: n_rows}}``.

        Raises:
            DataError: A bad row (the message names case and file) or images of different
                channel counts within the task (naming an example file of each count).
        """
        counts: Counter[int] = Counter()
        example: dict[int, str] = {}
        for i in range(len(self)):
            sample = self[i]
            counts[sample.channels_in_file] += 1
            example.setdefault(sample.channels_in_file, self.rows[i]["image"])
            if progress is not None:
                progress(i + 1, len(self))
        if len(counts) > 1:
            listing = "; ".join(
                f"{n} image(s) with {c} channel(s), e.g. {example[c]}"
                for c, n in sorted(counts.items())
            )
            raise DataError(
                f"task {self.spec.name!r}: images have mixed channel counts ({listing}); the "
                f"task declares channels={self.spec.channels} (fix: convert the images to one "
                "channel count, e.g. all grey or all RGB)"
            )
        return {"rows": len(self), "channels_in_files": dict(counts)}

    def _where(self, index: int) -> str:
        row = self.rows[index]
        return f"task {self.spec.name!r}, case {row.get('case_id')!r}"

    def _load(self, index: int) -> Sample:
        row = self.rows[index]
        where = self._where(index)
        spacing = None
        if (row.get("spacing") or "").strip():
            try:
                spacing = parse_spacing(row["spacing"])
            except CellFormatError as exc:
                raise DataError(f"{where}: column 'spacing': {exc}") from None
        ref = self.manifest.resolve(row["image"])
        image = _read(ref, spacing, where)
        geometry: Geometry | VolumeGeometry
        if self.spec.dim == 3:
            pixels, channels_in_file = volume_to_channels(
                image, self.spec.channels, where, str(ref)
            )
            geometry = VolumeGeometry.fit(pixels.shape[-3:], self.image_size, self.slices)
            tensor = prepare_volume(pixels, geometry, self.normalisation)
        else:
            pixels, channels_in_file = to_channels(image, self.spec.channels, where, str(ref))
            geometry = Geometry.fit(pixels.shape[-2:], self.image_size)
            tensor = prepare_pixels(pixels, geometry, self.normalisation)
        target = None
        if is_labelled(self.spec, row):
            shape = pixels.shape[-3:] if self.spec.dim == 3 else pixels.shape[-2:]
            target = self._target(row, geometry, shape, spacing, where)
            if scales_with_spacing(self.spec):  # a length in mm -> model-grid pixels
                target = target / length_per_model_pixel(geometry, image.spacing)
        affine = image.meta.get("affine") if self.spec.dim == 3 else None
        return Sample(
            tensor,
            target,
            row["case_id"],
            geometry,
            image.spacing,
            channels_in_file,
            index,
            affine,
        )

    def _target(
        self,
        row: dict[str, str],
        geometry: Any,
        shape: tuple[int, ...],
        spacing: tuple[float, ...] | None,
        where: str,
    ) -> Any:
        spec = self.spec
        column = target_column(spec)
        cell = row[column].strip()
        try:
            if spec.type is TaskType.segmentation:
                return self._mask_target(cell, geometry, shape, spacing, where)
            if spec.type is TaskType.classification:
                classes = list(spec.classes or [])
                if cell not in classes:
                    raise DataError(
                        f"{where}: label {cell!r} is not one of the task's classes {classes} "
                        "(fix: correct the label or add the class to 'classes' in the manifest)"
                    )
                return classes.index(cell)
            if spec.type is TaskType.detection:
                return self._box_target(cell, geometry, where)
            if spec.type is TaskType.regression:
                return parse_float(cell, "value")
            points = parse_landmarks(cell, n_points=len(spec.landmarks or []))
            return torch.as_tensor(geometry.points_to_model(points), dtype=torch.float32)
        except CellFormatError as exc:
            raise DataError(f"{where}: column {column!r}: {exc}") from None

    def _mask_target(
        self,
        cell: str,
        geometry: Geometry | VolumeGeometry,
        shape: tuple[int, ...],
        spacing: tuple[float, ...] | None,
        where: str,
    ) -> torch.Tensor:
        ref = self.manifest.resolve(cell)
        mask = _read(ref, spacing, where).array
        if self.spec.dim == 2 and mask.ndim == 3 and mask.shape[-1] in (3, 4):
            if not (mask[..., :3] == mask[..., :1]).all():
                raise DataError(
                    f"{where}: mask {ref} is a colour image with different channels "
                    "(fix: save the mask as a single-channel label map)"
                )
            mask = mask[..., 0]
        if tuple(mask.shape) != tuple(shape):
            raise DataError(
                f"{where}: mask {ref} has shape {tuple(mask.shape)} but its image "
                f"{tuple(shape)} (fix: store the mask on the image's grid)"
            )
        if np.issubdtype(mask.dtype, np.floating) and not np.all(mask == np.round(mask)):
            raise DataError(f"{where}: mask {ref} holds fractional values (fix: save labels)")
        declared = set(self.spec.labels or {})
        present = {int(v) for v in np.unique(mask)}
        outside = sorted(present - declared)
        if outside:
            raise DataError(
                f"{where}: mask {ref} holds label value(s) {outside} outside the task's labels "
                f"{sorted(declared)} (fix: correct the mask or declare the labels in the manifest)"
            )
        encoded = np.asarray(self._encode_mask(mask.astype(np.int64)), dtype=np.int64)
        if isinstance(geometry, VolumeGeometry):
            resized = resize_nearest(encoded, geometry.plane.resized)[geometry.slice_indices()]
            out = np.full(geometry.size, -1, dtype=np.int64)
            out[:, : resized.shape[1], : resized.shape[2]] = resized
            return torch.from_numpy(out)
        resized = resize_nearest(encoded, geometry.resized)
        out = np.full(geometry.size, -1, dtype=np.int64)
        out[: geometry.resized[0], : geometry.resized[1]] = resized
        return torch.from_numpy(out)

    def _box_target(self, cell: str, geometry: Geometry, where: str) -> dict[str, torch.Tensor]:
        boxes = parse_boxes(cell, ndim=2)
        classes = list(self.spec.classes or [])
        labels = []
        for box in boxes:
            if classes:
                if box.label not in classes:
                    raise DataError(
                        f"{where}: box class {box.label!r} is not one of the task's classes "
                        f"{classes} (fix: prefix every box with a declared class, e.g. "
                        f"'{classes[0]}:x0,y0,x1,y1')"
                    )
                labels.append(classes.index(box.label))
            else:
                labels.append(0)
        coords = np.array([b.coords for b in boxes], dtype=np.float64).reshape(-1, 4)
        return {
            "boxes": torch.as_tensor(geometry.boxes_to_model(coords), dtype=torch.float32),
            "labels": torch.as_tensor(labels, dtype=torch.int64),
        }


def check_dim(spec: TaskSpec) -> None:
    """Refuse task dimensions and 3D task types the trainer cannot serve.

    Raises:
        DataError: For ``dim`` other than 2 or 3, or a 3D detection or landmarks task.

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> check_dim(TaskSpec(name="v", type="regression", table="v.csv", unit="ml", dim=3))
    """
    if spec.dim == 2:
        return
    if spec.dim != 3:
        raise DataError(f"task {spec.name!r} has dim={spec.dim} (fix: use dim: 2 or dim: 3)")
    if spec.type not in VOLUME_TYPES:
        raise DataError(
            f"task {spec.name!r}: 3D {spec.type.value} is not supported (3D tasks may be "
            "classification, regression or segmentation) (fix: use dim: 2 with one row per "
            "slice, each with its own 2D targets)"
        )


def _mask_encoder(spec: TaskSpec, encoder: MaskEncoder | None) -> Callable[[np.ndarray], Any]:
    if encoder is None:
        return default_mask_encoder(spec)

    def encode(mask: np.ndarray) -> np.ndarray:
        out = encoder(spec.name, mask)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        return np.asarray(out)

    return encode


def _read(ref: Path, spacing: tuple[float, ...] | None, where: str) -> ImageData:
    try:
        return read_image(ref, spacing=spacing)
    except MedfleetError as exc:
        raise DataError(f"{where}: {exc}") from exc


def to_channels(
    image: ImageData, channels: int, where: str = "image", ref: str = ""
) -> tuple[np.ndarray, int]:
    """Pixels as ``(channels, H, W)`` float32 and the channel count found in the file.

    A grey image is repeated to ``channels``; an RGB(A) image becomes grey (ITU-R 601 luma)
    when one channel is wanted; a stack of frames ``(F, H, W)`` supplies ``F`` channels.

    Raises:
        DataError: When the file's channels cannot become ``channels``.

    Example:
        >>> img = ImageData(np.zeros((4, 5, 3), np.uint8), (1.0, 1.0), {"channel_axis": -1})
        >>> arr, found = to_channels(img, 1)
        >>> arr.shape, found
        ((1, 4, 5), 3)
    """
    array = np.asarray(image.array)
    if image.meta.get("channel_axis") == -1:
        pixels = np.moveaxis(array, -1, 0)
        if pixels.shape[0] == 4:
            pixels = pixels[:3]
    elif array.ndim == 2:
        pixels = array[None]
    elif array.ndim == 3:
        pixels = array
    else:
        raise DataError(
            f"{where}: image {ref} has shape {array.shape}; expected a 2D image "
            "(fix: give one image, or one frame with '#frame=N')"
        )
    pixels = pixels.astype(np.float32)
    found = int(pixels.shape[0])
    if found == channels:
        return pixels, found
    if found == 1:
        return np.repeat(pixels, channels, axis=0), found
    if found == 3 and channels == 1:
        return np.tensordot(_LUMA, pixels, axes=1)[None].astype(np.float32), found
    raise DataError(
        f"{where}: image {ref} has {found} channels but the task declares channels={channels} "
        "(fix: set 'channels' in the manifest to the images' channel count)"
    )


def volume_to_channels(
    image: ImageData, channels: int, where: str = "volume", ref: str = ""
) -> tuple[np.ndarray, int]:
    """Voxels ``(S, H, W)`` as ``(channels, S, H, W)`` float32 and the file's channel count.

    The slice axis comes first (NIfTI arrays as stored). A grey volume is repeated to
    ``channels``; a 4-D array ``(S, H, W, C)`` supplies ``C`` channels.

    Raises:
        DataError: When the array is not a volume or its channels cannot become ``channels``.

    Example:
        >>> img = ImageData(np.zeros((3, 4, 5), np.uint8), (2.0, 1.0, 1.0), {})
        >>> arr, found = volume_to_channels(img, 1)
        >>> arr.shape, found
        ((1, 3, 4, 5), 1)
    """
    array = np.asarray(image.array)
    if array.ndim == 3:
        voxels = array[None]
    elif array.ndim == 4:
        voxels = np.moveaxis(array, -1, 0)
    else:
        raise DataError(
            f"{where}: image {ref} has shape {array.shape}; a dim: 3 task expects a volume "
            "(slices, rows, cols) (fix: give a 3D volume, or set dim: 2 for 2D images)"
        )
    voxels = voxels.astype(np.float32)
    found = int(voxels.shape[0])
    if found == channels:
        return voxels, found
    if found == 1:
        return np.repeat(voxels, channels, axis=0), found
    raise DataError(
        f"{where}: volume {ref} has {found} channels but the task declares channels={channels} "
        "(fix: set 'channels' in the manifest to the volume's channel count)"
    )


def normalise(pixels: np.ndarray, method: Normalisation) -> np.ndarray:
    """Per-image, per-channel intensity normalisation.

    ``zscore`` subtracts the mean and divides by the standard deviation (1 when constant);
    ``minmax`` maps the range to [0, 1]; ``none`` leaves values as they are.

    Example:
        >>> normalise(np.array([[[0.0, 2.0]]]), "zscore").tolist()
        [[[-1.0, 1.0]]]
    """
    if method == "none":
        return pixels.astype(np.float32)
    axes = tuple(range(1, pixels.ndim))
    if method == "minmax":
        lo = pixels.min(axis=axes, keepdims=True)
        span = pixels.max(axis=axes, keepdims=True) - lo
        return ((pixels - lo) / np.where(span > 0, span, 1.0)).astype(np.float32)
    mean = pixels.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = pixels.std(axis=axes, keepdims=True, dtype=np.float64)
    return ((pixels - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def prepare_pixels(pixels: np.ndarray, geometry: Geometry, method: Normalisation) -> torch.Tensor:
    """Normalise, resize (bilinear with anti-aliasing) and pad ``(C, H, W)`` pixels.

    Example:
        >>> g = Geometry.fit((8, 4), 4)
        >>> tuple(prepare_pixels(np.ones((1, 8, 4), np.float32), g, "none").shape)
        (1, 4, 4)
    """
    tensor = torch.from_numpy(normalise(pixels, method))[None]
    if tuple(tensor.shape[-2:]) != geometry.resized:
        downscale = geometry.resized[0] < tensor.shape[-2] or geometry.resized[1] < tensor.shape[-1]
        tensor = torch.nn.functional.interpolate(
            tensor, size=geometry.resized, mode="bilinear", align_corners=False, antialias=downscale
        )
    out = torch.zeros((tensor.shape[1], *geometry.size), dtype=torch.float32)
    out[:, : geometry.resized[0], : geometry.resized[1]] = tensor[0]
    return out


def prepare_volume(
    voxels: np.ndarray, geometry: VolumeGeometry, method: Normalisation
) -> torch.Tensor:
    """Normalise ``(C, S, H, W)`` voxels over the volume; map each slice; resample slices.

    Slices are resized and padded in-plane like 2D images (:func:`prepare_pixels`), then
    the slice axis is resampled linearly (aligned slice centres) to ``geometry.depth``.

    Returns:
        ``(D, C, size, size)`` float32.

    Example:
        >>> g = VolumeGeometry.fit((5, 8, 4), 4, 3)
        >>> tuple(prepare_volume(np.ones((1, 5, 8, 4), np.float32), g, "none").shape)
        (3, 1, 4, 4)
    """
    normalised = normalise(voxels, method)
    slices = [
        prepare_pixels(normalised[:, k], geometry.plane, "none") for k in range(normalised.shape[1])
    ]
    stack = torch.stack(slices)  # (S, C, size, size)
    if stack.shape[0] != geometry.depth:
        s, c, h, w = stack.shape
        flat = stack.permute(1, 2, 3, 0).reshape(1, c * h * w, s)
        flat = torch.nn.functional.interpolate(
            flat, size=geometry.depth, mode="linear", align_corners=False
        )
        stack = flat.reshape(c, h, w, geometry.depth).permute(3, 0, 1, 2).contiguous()
    return stack


def collate(task: TaskSpec, samples: Sequence[Sample]) -> Batch:
    """Stack samples of one task into a :class:`Batch` in the model's target format.

    Targets: segmentation ``LongTensor[B, S, S]`` (volumes ``[B, D, S, S]``; ``-1``
    ignored), classification
    ``LongTensor[B]``, detection a list of ``{"boxes", "labels"}``, regression
    ``FloatTensor[B]``, landmarks ``FloatTensor[B, L, 2]`` (NaN = missing). When any
    sample is unlabelled the batch's targets are ``None``.
    """
    images = torch.stack([s.image for s in samples])
    targets: Any = None
    if all(s.target is not None for s in samples):
        kind = task.type
        if kind is TaskType.segmentation or kind is TaskType.landmarks:
            targets = torch.stack([s.target for s in samples])
        elif kind is TaskType.classification:
            targets = torch.as_tensor([s.target for s in samples], dtype=torch.int64)
        elif kind is TaskType.regression:
            targets = torch.as_tensor([s.target for s in samples], dtype=torch.float32)
        else:
            targets = [s.target for s in samples]
    return Batch(
        task.name,
        images,
        targets,
        [s.case_id for s in samples],
        [s.geometry for s in samples],
        [s.spacing for s in samples],
    )


LENGTH_UNITS = ("mm",)
"""Regression units that mark a target as a length in the image (see
:func:`scales_with_spacing`)."""


def scales_with_spacing(spec: TaskSpec) -> bool:
    """Whether a task's regression target is a length in mm, learned in model-grid pixels.

    A length measured on the image (a head circumference, a diameter) is only partly
    observable from the resized model input when pixel sizes vary: the same picture may show
    a 150 mm or a 250 mm head. For a 2D regression task whose ``unit`` is ``mm`` the
    dataset therefore divides the target by the image's mm per model-grid pixel
    (:func:`length_per_model_pixel`), the head predicts that pixel length, and
    :func:`medfleet.train.predict.to_original` multiplies the prediction back, so
    predictions, validation and ``predictions.csv`` stay in mm. Other units (``ml``,
    ``weeks``, ...) and volumes are learned as they are.

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> scales_with_spacing(TaskSpec(name="hc", type="regression", table="r.csv", unit="mm"))
        True
        >>> scales_with_spacing(TaskSpec(name="v", type="regression", table="r.csv", unit="ml"))
        False
    """
    return (
        spec.type is TaskType.regression
        and spec.dim == 2
        and (spec.unit or "").strip().lower() in LENGTH_UNITS
    )


def length_per_model_pixel(geometry: Geometry, spacing: Sequence[float]) -> float:
    """Millimetres covered by one model-grid pixel of an image (geometric mean of both axes).

    ``spacing`` is the image's mm per pixel (rows, cols); the resize of ``geometry``
    stretches each pixel by ``original / resized``.

    Example:
        >>> length_per_model_pixel(Geometry.fit((400, 800), 100), (0.2, 0.2))
        1.6
    """
    sy, sx = geometry.scale
    per_row, per_col = float(spacing[-2]) / sy, float(spacing[-1]) / sx
    if not (per_row > 0 and per_col > 0 and np.isfinite(per_row * per_col)):
        raise DataError(
            f"spacing {tuple(spacing)} cannot scale a length target (fix: give the rows a "
            "positive 'spacing' in mm)"
        )
    return float(np.sqrt(per_row * per_col))


def balanced_class_weights(dataset: Any) -> np.ndarray:
    """Inverse-frequency weights ``n / (K * n_k)`` of a classification dataset's classes.

    A class without training rows gets weight 1 (it cannot be seen anyway), so a weighted
    cross-entropy treats every class as if the classes were balanced.

    Example:
        >>> class _D:  # any object with .spec and .rows
        ...     from medfleet.tasks import TaskSpec
        ...     spec = TaskSpec(name="c", type="classification", table="c.csv",
        ...                     classes=["a", "b", "c"])
        ...     rows = [{"label": "a"}, {"label": "a"}, {"label": "a"}, {"label": "b"}]
        >>> balanced_class_weights(_D()).round(3).tolist()
        [0.667, 2.0, 1.0]
    """
    classes = list(dataset.spec.classes or [])
    counts = np.zeros(len(classes), dtype=np.float64)
    for row in dataset.rows:
        label = row.get("label")
        if label not in (None, "") and str(label) in classes:
            counts[classes.index(str(label))] += 1
    seen = counts > 0
    weights = np.ones(len(classes), dtype=np.float64)
    if seen.any():
        weights[seen] = counts.sum() / (seen.sum() * counts[seen])
    return weights


def regression_stats(dataset: TaskDataset) -> tuple[float, float]:
    """Mean and standard deviation (1 when constant) of a regression dataset's targets.

    The targets are taken as the model sees them: for a length in mm
    (:func:`scales_with_spacing`) in model-grid pixels, which reads every image once.

    Example:
        >>> class _D:  # any object with .spec and .rows
        ...     from medfleet.tasks import TaskSpec
        ...     spec = TaskSpec(name="r", type="regression", table="r.csv", unit="ml")
        ...     rows = [{"value": "1"}, {"value": "3"}]
        >>> regression_stats(_D())
        (2.0, 1.0)
    """
    if scales_with_spacing(dataset.spec) and isinstance(dataset, TaskDataset):
        samples = (dataset[i] for i in range(len(dataset)))
        values = [float(s.target) for s in samples if s.target is not None]
    else:
        values = [
            parse_float(r["value"], "value") for r in dataset.rows if is_labelled(dataset.spec, r)
        ]
    if not values:
        return 0.0, 1.0
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std())
    return float(arr.mean()), std if std > 0 else 1.0


__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_SLICES",
    "LENGTH_UNITS",
    "VOLUME_TYPES",
    "Batch",
    "DataError",
    "Sample",
    "TaskDataset",
    "check_dim",
    "collate",
    "default_mask_encoder",
    "is_labelled",
    "length_per_model_pixel",
    "load_task_rows",
    "move_targets",
    "normalise",
    "prepare_pixels",
    "prepare_volume",
    "regression_stats",
    "scales_with_spacing",
    "target_column",
    "to_channels",
    "volume_to_channels",
]
