"""Training-time augmentation on the model grid: flip, rotation, scale, shift and intensity.

Geometric transforms act on the square ``S x S`` model input after resizing and padding
(see :mod:`medfleet.train.geometry`) and move every target with the image:

* images: bilinear resampling, zeros outside;
* segmentation masks: nearest neighbour, ``-1`` (ignored) outside;
* boxes (edges on pixel borders): mapped corners, clipped to the image; boxes that leave
  the image are dropped with their labels;
* landmarks (pixel centres): mapped points; points leaving the image become NaN (missing),
  and under a horizontal flip the declared left/right pairs swap their names.

With pixel-centre coordinates ``p`` and ``c = (S - 1) / 2`` the forward map is
``p' = s * R(theta) (flip(p) - c) + c + t`` where ``flip(x) = S - 1 - x`` when the sample is
flipped, ``R(theta)`` the rotation by ``theta``, ``s`` the scale and ``t`` the translation in
pixels; box borders ``b`` map as pixel centres ``b - 0.5`` (a rotated box becomes the box
around its four mapped corners). Intensity jitter (brightness, contrast, gamma, Gaussian
noise) changes only the image; it is the "strong" perturbation of semi-supervised
training. CutMix pastes a rectangle of another image of the batch into an image and mixes
its mask alike (:func:`cutmix_boxes`): on labelled segmentation batches with ``cutmix`` of
:func:`augment_batch`, and on the unlabelled strong views of :mod:`medfleet.train.semi`.

Randomness comes from a :class:`torch.Generator` the caller seeds (the trainer seeds it from
the run seed and the step), so an augmented run is reproducible and resumes exactly.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> a = Affine(flip=True, scale=1.0, tx=0.0, ty=0.0, size=8)
    >>> a.points(np.array([[0.0, 2.0]])).tolist()
    [[7.0, 2.0]]
    >>> len(sample_affines(3, 8, PRESETS["standard"], g))
    3
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfleet.errors import MedfleetError


@dataclass(frozen=True)
class AugmentSettings:
    """Strength of each augmentation (0 turns it off).

    Attributes:
        flip: Probability of a horizontal flip.
        rotate: Largest rotation in degrees (uniform in ``[-rotate, rotate]``).
        scale: Range ``(low, high)`` of the isotropic scale factor (about the image centre).
        translate: Largest shift as a fraction of the image size (each axis).
        brightness: Largest additive shift, in units of the normalised intensity.
        contrast: Largest relative change of the contrast about the image mean.
        gamma: Largest ``|log gamma|`` of a gamma curve on the image's min-max range.
        noise: Largest standard deviation of added Gaussian noise.

    Example:
        >>> AugmentSettings().geometric, PRESETS["light"].geometric
        (False, True)
    """

    flip: float = 0.0
    rotate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    noise: float = 0.0

    @property
    def geometric(self) -> bool:
        """Whether any geometric transform is on."""
        return self.flip > 0 or self.rotate > 0 or self.scale != (1.0, 1.0) or self.translate > 0

    @property
    def intensity(self) -> bool:
        """Whether any intensity transform is on."""
        return any(v > 0 for v in (self.brightness, self.contrast, self.gamma, self.noise))


PRESETS: dict[str, AugmentSettings] = {
    "none": AugmentSettings(),
    "light": AugmentSettings(
        flip=0.5, scale=(0.9, 1.1), translate=0.05, brightness=0.1, contrast=0.1
    ),
    "standard": AugmentSettings(
        flip=0.5,
        scale=(0.8, 1.2),
        translate=0.1,
        brightness=0.2,
        contrast=0.2,
        gamma=0.2,
        noise=0.05,
    ),
    "strong": AugmentSettings(
        flip=0.5,
        rotate=30.0,
        scale=(0.75, 1.3),
        translate=0.1,
        brightness=0.2,
        contrast=0.25,
        gamma=0.3,
        noise=0.05,
    ),
}
"""Named augmentation levels of ``TrainConfig.augment``."""

STRONG = AugmentSettings(brightness=0.5, contrast=0.4, gamma=0.4, noise=0.15)
"""Intensity perturbation of the strong view in semi-supervised training."""


def settings_for(level: str, flip: float | None = None) -> AugmentSettings:
    """The preset ``level`` with an optional flip probability override.

    Raises:
        MedfleetError: For an unknown level.

    Example:
        >>> settings_for("standard", flip=0.0).flip
        0.0
    """
    if level not in PRESETS:
        raise MedfleetError(f"augment {level!r} is not one of {sorted(PRESETS)}")
    settings = PRESETS[level]
    return settings if flip is None else replace(settings, flip=float(flip))


@dataclass(frozen=True)
class Affine:
    """One sample's geometric transform on an ``S x S`` grid.

    Attributes:
        flip: Horizontal flip first.
        scale: Isotropic scale about the centre ``c = (S - 1) / 2``.
        tx: Shift along x in pixels (after scaling).
        ty: Shift along y in pixels.
        size: ``S``.
        angle: Rotation about the centre in radians (after the flip; positive turns +x
            towards +y).

    Example:
        >>> a = Affine(flip=False, scale=2.0, tx=1.0, ty=0.0, size=8)
        >>> a.points(np.array([[3.5, 3.5], [4.0, 0.0]])).tolist()
        [[4.5, 3.5], [5.5, -3.5]]
        >>> a.inverse_points(a.points(np.array([[1.25, 6.0]]))).tolist()
        [[1.25, 6.0]]
    """

    flip: bool
    scale: float
    tx: float
    ty: float
    size: int
    angle: float = 0.0

    @property
    def identity(self) -> bool:
        """True when the transform changes nothing."""
        return (
            not self.flip
            and self.scale == 1.0
            and self.tx == 0.0
            and self.ty == 0.0
            and self.angle == 0.0
        )

    def _rotate(self, pts: np.ndarray, angle: float) -> np.ndarray:
        if angle == 0.0:
            return pts
        cos, sin = math.cos(angle), math.sin(angle)
        x, y = pts[..., 0], pts[..., 1]
        return np.stack([cos * x - sin * y, sin * x + cos * y], axis=-1)

    def points(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` pixel-centre ``x, y`` (NaN stays NaN)."""
        pts = np.array(points, dtype=np.float64, copy=True)
        c = (self.size - 1) / 2.0
        if self.flip:
            pts[..., 0] = self.size - 1 - pts[..., 0]
        pts = self.scale * self._rotate(pts - c, self.angle) + c
        return pts + np.array([self.tx, self.ty])

    def inverse_points(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`points`."""
        pts = np.asarray(points, dtype=np.float64) - np.array([self.tx, self.ty])
        c = (self.size - 1) / 2.0
        pts = self._rotate((pts - c) / self.scale, -self.angle) + c
        if self.flip:
            pts = pts.copy()
            pts[..., 0] = self.size - 1 - pts[..., 0]
        return pts

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(n, 4)`` boxes ``x0, y0, x1, y1`` (pixel borders); not clipped.

        The result is the box around the four mapped corners (the box itself under flips,
        scales and shifts).
        """
        arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        corners = np.stack([arr[:, [0, 1]], arr[:, [2, 1]], arr[:, [0, 3]], arr[:, [2, 3]]], axis=1)
        mapped = self.points(corners - 0.5) + 0.5
        return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)


def sample_affines(
    n: int, size: int, settings: AugmentSettings, generator: torch.Generator
) -> list[Affine]:
    """Draw ``n`` transforms (identity when the settings have no geometric part).

    Example:
        >>> g = torch.Generator().manual_seed(1)
        >>> all(a.identity for a in sample_affines(2, 16, PRESETS["none"], g))
        True
    """
    draws = torch.rand((n, 4), generator=generator, dtype=torch.float64).numpy()
    # drawn only when rotation is on, so runs without it keep their random stream
    turns = (
        torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        if settings.rotate > 0
        else np.full(n, 0.5)
    )
    lo, hi = settings.scale
    out = []
    for (flip_u, scale_u, tx_u, ty_u), turn_u in zip(draws, turns, strict=True):
        # log-uniform scale so that zooming in and out are equally likely
        scale = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * scale_u) if hi > lo else lo
        shift = settings.translate * size
        out.append(
            Affine(
                flip=bool(flip_u < settings.flip),
                scale=float(scale),
                tx=float((2 * tx_u - 1) * shift),
                ty=float((2 * ty_u - 1) * shift),
                size=int(size),
                angle=math.radians(settings.rotate) * float(2 * turn_u - 1),
            )
        )
    return out


def _grid(affines: Sequence[Affine], size: int, device: torch.device) -> torch.Tensor:
    """``grid_sample`` grid (``align_corners=False``): input location of each output pixel."""
    ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64),
                         indexing="ij")  # fmt: skip
    out = np.stack([xs, ys], axis=-1)
    grids = [a.inverse_points(out) for a in affines]
    grid = (2.0 * np.stack(grids) + 1.0) / size - 1.0
    return torch.as_tensor(grid, dtype=torch.float32, device=device)


def warp_images(images: torch.Tensor, affines: Sequence[Affine]) -> torch.Tensor:
    """Resample ``(B, C, S, S)`` images bilinearly (zeros outside).

    Example:
        >>> img = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
        >>> warp_images(img, [Affine(True, 1.0, 0.0, 0.0, 4)])[0, 0, 0].tolist()
        [3.0, 2.0, 1.0, 0.0]
    """
    if all(a.identity for a in affines):
        return images
    grid = _grid(affines, images.shape[-1], images.device)
    return F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def warp_labels(labels: torch.Tensor, affines: Sequence[Affine]) -> torch.Tensor:
    """Resample ``(B, S, S)`` class indices by nearest neighbour (``-1`` outside).

    Example:
        >>> lab = torch.tensor([[[0, 1], [2, -1]]])
        >>> warp_labels(lab, [Affine(True, 1.0, 0.0, 0.0, 2)]).tolist()
        [[[1, 0], [-1, 2]]]
    """
    if all(a.identity for a in affines):
        return labels
    grid = _grid(affines, labels.shape[-1], labels.device)
    shifted = (labels.long() + 1).float()[:, None]
    warped = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return warped[:, 0].round().long() - 1


def warp_boxes(
    targets: Sequence[dict[str, torch.Tensor]], affines: Sequence[Affine]
) -> list[dict[str, torch.Tensor]]:
    """Map each sample's ``boxes``/``labels``; clip to the image, drop boxes left outside.

    Example:
        >>> t = [{"boxes": torch.tensor([[0.0, 1.0, 2.0, 3.0]]), "labels": torch.tensor([1])}]
        >>> warp_boxes(t, [Affine(True, 1.0, 0.0, 0.0, 8)])[0]["boxes"].tolist()
        [[6.0, 1.0, 8.0, 3.0]]
    """
    out = []
    for target, affine in zip(targets, affines, strict=True):
        boxes = target["boxes"]
        if affine.identity or boxes.numel() == 0:
            out.append(dict(target))
            continue
        mapped = np.clip(affine.boxes(boxes.detach().cpu().numpy()), 0.0, float(affine.size))
        keep = (mapped[:, 2] > mapped[:, 0]) & (mapped[:, 3] > mapped[:, 1])
        new = dict(target)
        new["boxes"] = torch.as_tensor(mapped[keep], dtype=boxes.dtype, device=boxes.device)
        keep_t = torch.as_tensor(keep, device=target["labels"].device)
        new["labels"] = target["labels"][keep_t]
        out.append(new)
    return out


def flip_permutation(names: Sequence[str], pairs: Sequence[Sequence[str]]) -> list[int] | None:
    """Index of the point that takes each point's place after a horizontal flip.

    Returns ``None`` when no declared pair lies within ``names`` (such a task is not
    flipped: without pairs a lateralised point would keep the wrong name).

    Raises:
        MedfleetError: A pair that does not have two distinct names.

    Example:
        >>> flip_permutation(["l_eye", "r_eye", "nose"], [("l_eye", "r_eye")])
        [1, 0, 2]
        >>> flip_permutation(["a", "b"], [("x", "y")]) is None
        True
    """
    perm = list(range(len(names)))
    index = {n: i for i, n in enumerate(names)}
    found = False
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise MedfleetError(
                f"flip pair {list(pair)!r} must name two different landmarks "
                "(fix: give pairs like [left_eye, right_eye])"
            )
        a, b = pair
        if a in index and b in index:
            perm[index[a]], perm[index[b]] = index[b], index[a]
            found = True
    return perm if found else None


def warp_points(
    points: torch.Tensor, affines: Sequence[Affine], permutation: Sequence[int] | None = None
) -> torch.Tensor:
    """Map ``(B, L, 2)`` landmarks; swap names of flipped samples; outside -> NaN.

    Example:
        >>> p = torch.tensor([[[1.0, 2.0], [6.0, 2.0]]])
        >>> warp_points(p, [Affine(True, 1.0, 0.0, 0.0, 8)], [1, 0]).tolist()
        [[[1.0, 2.0], [6.0, 2.0]]]
    """
    if all(a.identity for a in affines):
        return points
    arr = points.detach().cpu().numpy().astype(np.float64)
    out = np.empty_like(arr)
    for i, affine in enumerate(affines):
        mapped = affine.points(arr[i])
        if affine.flip and permutation is not None:
            mapped = mapped[list(permutation)]
        limit = affine.size - 0.5
        outside = (mapped < -0.5) | (mapped > limit)
        mapped[outside.any(axis=-1)] = np.nan
        out[i] = mapped
    return torch.as_tensor(out, dtype=points.dtype, device=points.device)


def intensity_jitter(
    images: torch.Tensor, settings: AugmentSettings, generator: torch.Generator
) -> torch.Tensor:
    """Random brightness, contrast, gamma and noise per image of ``(B, C, S, S)``.

    Example:
        >>> img = torch.zeros(2, 1, 4, 4)
        >>> g = torch.Generator().manual_seed(0)
        >>> out = intensity_jitter(img, AugmentSettings(brightness=0.5), g)
        >>> bool((out[:, :, 0, 0] == out[:, :, 3, 3]).all()), bool(out.abs().max() <= 0.5)
        (True, True)
    """
    if not settings.intensity:
        return images
    b = images.shape[0]
    u = torch.rand((b, 4), generator=generator, dtype=torch.float32).to(images.device)
    noise_draw = torch.randn(images.shape, generator=generator, dtype=torch.float32)
    out = images.float()
    view = (b,) + (1,) * (images.ndim - 1)
    dims = tuple(range(1, images.ndim))
    if settings.gamma > 0:
        lo = out.amin(dim=dims, keepdim=True)
        span = (out.amax(dim=dims, keepdim=True) - lo).clamp_min(1e-6)
        gamma = torch.exp((2 * u[:, 2] - 1) * settings.gamma).view(view)
        out = ((out - lo) / span).clamp(0, 1) ** gamma * span + lo
    if settings.contrast > 0:
        mean = out.mean(dim=dims, keepdim=True)
        factor = (1 + (2 * u[:, 1] - 1) * settings.contrast).view(view)
        out = (out - mean) * factor + mean
    if settings.brightness > 0:
        out = out + ((2 * u[:, 0] - 1) * settings.brightness).view(view)
    if settings.noise > 0:
        sigma = (u[:, 3] * settings.noise).view(view)
        out = out + sigma * noise_draw.to(images.device)
    return out


@dataclass(frozen=True)
class CutMix:
    """Rectangles pasted from a partner image: ``out[i] = where(box[i], x[partner[i]], x[i])``.

    Attributes:
        partner: ``(B,)`` index of the image each rectangle comes from.
        boxes: ``(B, S, S)`` boolean rectangles (all False for an image left unmixed).

    Example:
        >>> mix = CutMix(torch.tensor([1, 0]), torch.tensor([[[True, False]], [[False, False]]]))
        >>> mix.apply(torch.tensor([[[1, 2]], [[3, 4]]])).tolist()
        [[[3, 2]], [[3, 4]]]
    """

    partner: torch.Tensor
    boxes: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Mix ``(B, S, S)`` or ``(B, C, S, S)`` tensors with the rectangles."""
        box = self.boxes.to(x.device)
        if x.dim() == 4:
            box = box[:, None]
        return torch.where(box, x[self.partner.to(x.device)], x)


def cutmix_boxes(
    n: int,
    size: int,
    probability: float,
    generator: torch.Generator,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 1.0 / 0.3),
) -> CutMix | None:
    """Draw a CutMix rectangle and partner for each of ``n`` images (``None`` if none mixes).

    Each image is mixed with ``probability``; its rectangle covers a share of the image
    drawn uniformly from ``area``, with an aspect ratio drawn log-uniformly from
    ``aspect`` (UniMatch's ranges), placed uniformly inside the image; its partner is
    another image of the batch (the batch shifted by a random offset).

    Example:
        >>> mix = cutmix_boxes(4, 16, 1.0, torch.Generator().manual_seed(0))
        >>> bool((mix.partner != torch.arange(4)).all()), bool(mix.boxes.any(dim=(1, 2)).all())
        (True, True)
        >>> cutmix_boxes(1, 16, 1.0, torch.Generator()) is None
        True
    """
    if n < 2 or probability <= 0:
        return None
    draws = torch.rand((n, 5), generator=generator, dtype=torch.float64)
    shift = 1 + int(torch.randint(n - 1, (1,), generator=generator))
    boxes = torch.zeros((n, size, size), dtype=torch.bool)
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    for i, (p, a, r, u, v) in enumerate(draws.tolist()):
        if p >= probability:
            continue
        share = area[0] + a * (area[1] - area[0])
        ratio = math.exp(log_lo + r * (log_hi - log_lo))
        h = min(size, max(1, round(size * math.sqrt(share * ratio))))
        w = min(size, max(1, round(size * math.sqrt(share / ratio))))
        top, left = int(u * (size - h + 1)), int(v * (size - w + 1))
        boxes[i, top : top + h, left : left + w] = True
    if not bool(boxes.any()):
        return None
    return CutMix((torch.arange(n) + shift) % n, boxes)


def augment_targets(kind: str, targets: Any, affines: Sequence[Affine], perm: Any = None) -> Any:
    """Move a batch's targets (by task type name) with the images.

    Example:
        >>> augment_targets("classification", torch.tensor([1]), [Affine(True, 1.0, 0, 0, 4)])
        tensor([1])
    """
    if targets is None:
        return None
    if kind == "segmentation":
        return warp_labels(targets, affines)
    if kind == "detection":
        return warp_boxes(targets, affines)
    if kind == "landmarks":
        return warp_points(targets, affines, perm)
    return targets


def augment_batch(
    batch: Any,
    spec: Any,
    settings: AugmentSettings,
    generator: torch.Generator,
    flip_pairs: Sequence[Sequence[str]] = (),
    cutmix: float = 0.0,
) -> Any:
    """Augment a :class:`~medfleet.train.datasets.Batch` of one task (2D only).

    Segmentation, detection and landmark targets move with the image; classification
    targets stay. Regression tasks get no scaling (sizes measured in mm would change) and
    landmark tasks are flipped only when ``flip_pairs`` pair some of their points. Volumes
    (``dim: 3``) get intensity jitter only. With ``cutmix`` > 0, that share of the images of
    a 2D segmentation batch get a CutMix rectangle from another image of the batch, after
    the other transforms, with the masks mixed alike.

    Example:
        >>> from medfleet.tasks import TaskSpec
        >>> from medfleet.train.datasets import Batch
        >>> spec = TaskSpec(name="s", type="segmentation", table="s.csv", labels={0: "b", 1: "a"})
        >>> b = Batch("s", torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), ["c"],
        ...           [None])
        >>> out = augment_batch(b, spec, PRESETS["standard"], torch.Generator().manual_seed(0))
        >>> tuple(out.images.shape), tuple(out.targets.shape)
        ((1, 1, 4, 4), (1, 4, 4))
    """
    from medfleet.train.datasets import Batch

    kind = spec.type.value
    images = batch.images
    targets = batch.targets
    if images.ndim == 4 and settings.geometric:
        local = settings
        perm = None
        if kind == "regression":
            local = replace(local, scale=(1.0, 1.0))
        if kind == "landmarks":
            perm = flip_permutation(list(spec.landmarks or []), flip_pairs)
            if perm is None:
                local = replace(local, flip=0.0)
        affines = sample_affines(images.shape[0], images.shape[-1], local, generator)
        images = warp_images(images, affines)
        targets = augment_targets(kind, targets, affines, perm)
    images = intensity_jitter(images, settings, generator)
    if cutmix > 0 and kind == "segmentation" and images.ndim == 4 and targets is not None:
        mix = cutmix_boxes(images.shape[0], images.shape[-1], cutmix, generator)
        if mix is not None:
            images, targets = mix.apply(images), mix.apply(targets)
    return Batch(batch.task, images, targets, batch.case_ids, batch.geometries, batch.spacings)


__all__ = [
    "PRESETS",
    "STRONG",
    "Affine",
    "AugmentSettings",
    "CutMix",
    "augment_batch",
    "augment_targets",
    "cutmix_boxes",
    "flip_permutation",
    "intensity_jitter",
    "sample_affines",
    "settings_for",
    "warp_boxes",
    "warp_images",
    "warp_labels",
    "warp_points",
]
