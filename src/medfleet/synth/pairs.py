"""Image-annotation pairs for synthesis: images, conditioning masks and captions per row.

Every image is resized to the model's square ``S x S`` grid (aspect ratio not kept).
The conditioning input is a stack of binary masks, one channel per box class
(detection; one channel when the task has no classes) or per foreground label
(segmentation). Boxes are rounded outwards to whole pixels of the new grid so the box
written with a synthetic image is exactly the filled rectangle it was generated from.

Random layouts (``layout="random"``) draw boxes whose count, class and size follow the
training boxes, at uniform positions; segmentation layouts are training masks moved by a
random flip, quarter turn and shift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from medfleet.data.io import read_image
from medfleet.errors import MedfleetError
from medfleet.tables import Box, parse_boxes
from medfleet.tasks import Manifest, TaskSpec, TaskType


def condition_names(spec: TaskSpec) -> list[str]:
    """Names of the conditioning channels of a detection or segmentation task.

    Raises:
        MedfleetError: For other task types.

    Example:
        >>> condition_names(TaskSpec(name="d", type="detection", table="d.csv",
        ...                          classes=["cyst", "nodule"]))
        ['cyst', 'nodule']
    """
    if spec.type is TaskType.detection:
        return list(spec.classes or ["object"])
    if spec.type is TaskType.segmentation:
        return [str((spec.labels or {})[v]) for v in spec.foreground_labels]
    raise MedfleetError(
        f"task {spec.name!r} is a {spec.type.value} task; synthesis needs boxes or masks "
        "(fix: pick a detection or segmentation task)"
    )


def scale_boxes(boxes: Sequence[Box], shape: tuple[int, int], size: int) -> list[Box]:
    """Boxes of an ``(H, W)`` image on the ``size x size`` grid, rounded outwards to pixels.

    Example:
        >>> [b.coords for b in scale_boxes([Box((10, 20, 30, 41), "a")], (80, 40), 20)]
        [(5.0, 5.0, 15.0, 11.0)]
    """
    height, width = shape
    out = []
    for box in boxes:
        x0, y0, x1, y1 = box.coords[:4]
        sx, sy = size / width, size / height
        nx0, ny0 = max(0, int(np.floor(x0 * sx))), max(0, int(np.floor(y0 * sy)))
        nx1 = min(size, max(nx0 + 1, int(np.ceil(x1 * sx))))
        ny1 = min(size, max(ny0 + 1, int(np.ceil(y1 * sy))))
        out.append(Box((float(nx0), float(ny0), float(nx1), float(ny1)), box.label))
    return out


def box_condition(boxes: Sequence[Box], names: Sequence[str], size: int) -> np.ndarray:
    """``(C, S, S)`` float32 mask with each box filled in its class channel.

    Example:
        >>> m = box_condition([Box((1, 0, 3, 2), "b")], ["a", "b"], 4)
        >>> m[1].astype(int).tolist()
        [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    """
    cond = np.zeros((len(names), size, size), np.float32)
    for box in boxes:
        channel = names.index(box.label) if box.label in names else 0
        x0, y0, x1, y1 = (round(c) for c in box.coords[:4])
        cond[channel, y0:y1, x0:x1] = 1.0
    return cond


def resize_nearest(array: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes to ``size x size`` (label maps).

    Example:
        >>> resize_nearest(np.array([[1, 2], [3, 4]]), 4)[0].tolist()
        [1, 1, 2, 2]
    """
    h, w = array.shape[-2:]
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(int)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(int)
    return array[..., rows[:, None], cols[None, :]]


def mask_condition(labels: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """``(C, S, S)`` one-hot channels of the label values (background excluded).

    Example:
        >>> mask_condition(np.array([[0, 1], [2, 1]]), [1, 2])[0].tolist()
        [[0.0, 1.0], [0.0, 1.0]]
    """
    return np.stack([(labels == v).astype(np.float32) for v in values])


def labels_from_condition(cond: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Label map from one-hot channels (later channels win where they overlap).

    Example:
        >>> labels_from_condition(np.array([[[1.0, 1.0]], [[0.0, 1.0]]]), [1, 2]).tolist()
        [[1, 2]]
    """
    out = np.zeros(cond.shape[1:], np.uint8)
    for channel, value in enumerate(values):
        out[cond[channel] > 0.5] = value
    return out


def image_to_unit(array: np.ndarray, channels: int) -> np.ndarray:
    """Pixels as ``(channels, H, W)`` float32 in [0, 1] (8-bit / 255, otherwise min-max).

    Example:
        >>> image_to_unit(np.array([[0, 255]], np.uint8), 1).tolist()
        [[[0.0, 1.0]]]
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3):
        arr = np.moveaxis(arr[..., :3], -1, 0)
    elif arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] == 4:
        arr = arr[:3]
    if arr.dtype == np.uint8:
        unit = arr.astype(np.float32) / 255.0
    else:
        lo, hi = float(arr.min()), float(arr.max())
        unit = ((arr - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    if unit.shape[0] == channels:
        return unit
    if unit.shape[0] == 1:
        return np.repeat(unit, channels, axis=0)
    if unit.shape[0] == 3 and channels == 1:
        luma = np.array([0.299, 0.587, 0.114], np.float32)
        return np.tensordot(luma, unit, axes=1)[None].astype(np.float32)
    raise MedfleetError(f"image with {unit.shape[0]} channels cannot become {channels} channels")


def resize_image(unit: np.ndarray, size: int) -> np.ndarray:
    """Area/bilinear resize of ``(C, H, W)`` float pixels to ``(C, size, size)``."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(unit))[None]
    mode = "area" if min(unit.shape[-2:]) >= size else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(tensor, size=(size, size), mode=mode, **kwargs)[0].numpy()


@dataclass
class Pair:
    """One training pair on the model grid.

    Attributes:
        case_id: The source case.
        site: Its site.
        image: ``(C, S, S)`` pixels in [0, 1].
        condition: ``(K, S, S)`` conditioning masks.
        boxes: Boxes on the grid (detection).
        row: The table row (text cells).
    """

    case_id: str
    site: str
    image: np.ndarray | None
    condition: np.ndarray
    boxes: list[Box]
    row: dict[str, str]


def load_pair(
    manifest: Manifest,
    spec: TaskSpec,
    row: Mapping[str, str],
    size: int,
    channels: int,
    *,
    with_image: bool = True,
) -> Pair:
    """Image, conditioning mask and boxes of one row on the ``size x size`` grid.

    Raises:
        MedfleetError: Naming the case when its image, mask or boxes cannot be read.
    """
    names = condition_names(spec)
    case = row.get("case_id", "?")
    try:
        data = read_image(manifest.resolve(row["image"]))
    except MedfleetError as exc:
        raise MedfleetError(f"task {spec.name!r}, case {case!r}: {exc}") from exc
    pixels = np.asarray(data.array)
    if data.meta.get("channel_axis") == -1:
        pixels = np.moveaxis(pixels, -1, 0)
    shape = (int(pixels.shape[-2]), int(pixels.shape[-1]))
    image = resize_image(image_to_unit(pixels, channels), size) if with_image else None
    boxes: list[Box] = []
    if spec.type is TaskType.detection:
        try:
            boxes = scale_boxes(parse_boxes(row.get("boxes", "")), shape, size)
        except ValueError as exc:
            raise MedfleetError(f"task {spec.name!r}, case {case!r}: boxes: {exc}") from exc
        cond = box_condition(boxes, names, size)
    else:
        try:
            labels = np.asarray(read_image(manifest.resolve(row["mask"])).array)
        except MedfleetError as exc:
            raise MedfleetError(f"task {spec.name!r}, case {case!r}: mask: {exc}") from exc
        cond = mask_condition(resize_nearest(labels, size), spec.foreground_labels)
    return Pair(str(case), str(row.get("site", "")), image, cond, boxes, dict(row))


def random_layout(
    spec: TaskSpec, examples: Sequence[Pair], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[Box]]:
    """A new conditioning mask drawn from the training layouts' statistics.

    Detection: as many boxes as a random training image, each with the class and size of
    a random training box, placed uniformly without overlap where possible. Segmentation:
    a random training mask flipped, turned by a multiple of 90 degrees and shifted.

    Example:
        >>> spec = TaskSpec(name="d", type="detection", table="d.csv", classes=["a"])
        >>> ex = [Pair("c", "s", None, np.zeros((1, 8, 8)), [Box((0, 0, 3, 3), "a")], {})]
        >>> cond, boxes = random_layout(spec, ex, 8, np.random.default_rng(0))
        >>> int(cond.sum()), len(boxes)
        (9, 1)
    """
    if not examples:
        raise MedfleetError(f"task {spec.name!r}: no training layouts to draw random ones from")
    if spec.type is TaskType.segmentation:
        cond = examples[int(rng.integers(len(examples)))].condition
        if rng.random() < 0.5:
            cond = cond[:, :, ::-1]
        cond = np.rot90(cond, int(rng.integers(4)), axes=(1, 2))
        shift = rng.integers(-size // 8, size // 8 + 1, size=2)
        cond = np.roll(cond, (int(shift[0]), int(shift[1])), axis=(1, 2))
        return np.ascontiguousarray(cond, dtype=np.float32), []
    all_boxes = [b for p in examples for b in p.boxes]
    count = len(examples[int(rng.integers(len(examples)))].boxes)
    names = condition_names(spec)
    placed: list[Box] = []
    for _ in range(count if all_boxes else 0):
        template = all_boxes[int(rng.integers(len(all_boxes)))]
        w = int(template.coords[2] - template.coords[0])
        h = int(template.coords[3] - template.coords[1])
        for _attempt in range(20):
            x0 = int(rng.integers(0, size - w + 1))
            y0 = int(rng.integers(0, size - h + 1))
            box = Box((float(x0), float(y0), float(x0 + w), float(y0 + h)), template.label)
            if all(not _overlap(box, other) for other in placed):
                break
        placed.append(box)
    return box_condition(placed, names, size), placed


def _overlap(a: Box, b: Box) -> bool:
    ax0, ay0, ax1, ay1 = a.coords[:4]
    bx0, by0, bx1, by1 = b.coords[:4]
    return ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
