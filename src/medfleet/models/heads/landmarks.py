"""Landmark head: one heatmap per point at 1/4 of the input resolution.

Heatmap cell ``u`` covers input pixels ``[4u, 4u+4)``, so its centre is the
pixel-centre coordinate ``x = 4u + 1.5`` (the convention of
:mod:`medfleet.tables`: pixel ``(row=i, col=j)`` is ``x=j, y=i``). Decoding
takes the peak cell and refines it to sub-pixel precision with a parabola
through the logarithm of the peak and its neighbours, which is exact for a
Gaussian peak.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from medfleet.models.backbones import BackboneFeatures, FeatureLayout
from medfleet.models.config import HeadConfig
from medfleet.models.decoders import build_neck
from medfleet.models.features import resize_to_stride
from medfleet.models.heads.base import TaskHead
from medfleet.models.heads.losses import heatmap_loss
from medfleet.tasks import TaskSpec

HEATMAP_STRIDE = 4
"""Input pixels per heatmap cell."""


def heatmap_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """Heatmap ``(h, w)`` for an input ``(H, W)``: ``ceil(H/4), ceil(W/4)``.

    Example:
        >>> heatmap_size((64, 62))
        (16, 16)
    """
    return math.ceil(image_size[0] / HEATMAP_STRIDE), math.ceil(image_size[1] / HEATMAP_STRIDE)


def _refine(left: float, centre: float, right: float) -> float:
    """Offset of the vertex of the parabola through log values at -1, 0, +1."""
    if min(left, centre, right) <= 0:
        return 0.0
    a, b, c = math.log(left), math.log(centre), math.log(right)
    denom = a - 2 * b + c
    if denom >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))


def _axis_offset(line: np.ndarray, i: int, sigma: float | None) -> float:
    n = line.shape[0]
    if 0 < i < n - 1:
        return _refine(line[i - 1], line[i], line[i + 1])
    if sigma is None or n < 2:
        return 0.0
    if i == 0:
        return _edge_refine(line[0], line[1], sigma, 1)
    return _edge_refine(line[n - 1], line[n - 2], sigma, -1)


def _edge_refine(peak: float, inner: float, sigma: float, direction: int) -> float:
    """Offset of a Gaussian peak on the border from the peak and its one inner neighbour."""
    if peak <= 0 or inner <= 0:
        return 0.0
    # log(inner / peak) = (2 c - 1) / (2 sigma^2) for a peak at offset c towards the inside
    offset = sigma**2 * math.log(inner / peak) + 0.5
    return float(np.clip(offset, -1.0, 0.5)) * direction


def decode_heatmaps(
    heatmaps: np.ndarray, stride: float = HEATMAP_STRIDE, sigma: float | None = None
) -> np.ndarray:
    """Sub-pixel peak of each heatmap ``(L, h, w)`` as pixel-centre ``x, y`` ``(L, 2)``.

    Peaks on the border are refined from their one inner neighbour when the
    Gaussian ``sigma`` (in cells) is given, otherwise kept at the cell centre.

    Example:
        >>> from medfleet.models.heads.losses import gaussian_heatmaps
        >>> pts = torch.tensor([[[10.3, 21.7]]])
        >>> hm = gaussian_heatmaps(pts, (16, 16), 4.0, 1.5)[0].numpy()
        >>> np.round(decode_heatmaps(hm), 3).tolist()
        [[10.3, 21.7]]
    """
    maps = np.asarray(heatmaps, dtype=np.float64)
    n = maps.shape[0]
    out = np.zeros((n, 2), dtype=np.float64)
    offset = (stride - 1.0) / 2.0
    for k in range(n):
        m = maps[k]
        iy, ix = np.unravel_index(int(np.argmax(m)), m.shape)
        dx = _axis_offset(m[iy, :], ix, sigma)
        dy = _axis_offset(m[:, ix], iy, sigma)
        out[k] = (stride * (ix + dx) + offset, stride * (iy + dy) + offset)
    return out


class LandmarkHead(TaskHead):
    """``{"heatmaps": (B, L, ceil(H/4), ceil(W/4))}``."""

    def __init__(self, spec: TaskSpec, layout: FeatureLayout, options: HeadConfig) -> None:
        super().__init__(spec, layout, options)
        self.names = list(spec.landmarks or [])
        dim = options.decoder_dim
        self.neck = build_neck(layout, dim)
        self.refine = nn.Sequential(nn.Conv2d(self.neck.out_dim, dim, 3, padding=1), nn.GELU())
        self.output = nn.Conv2d(dim, len(self.names), 1)

    @property
    def num_landmarks(self) -> int:
        """Number of points."""
        return len(self.names)

    def forward(self, features: BackboneFeatures) -> dict[str, torch.Tensor]:
        """Heatmaps at stride 4."""
        fused = self.neck(features.maps)
        size = heatmap_size(features.image_size)
        fmap = resize_to_stride(fused, self.neck.out_stride, float(HEATMAP_STRIDE), size)
        return {"heatmaps": self.output(self.refine(fmap))}

    def loss(
        self, out: dict[str, torch.Tensor], targets: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Heatmap MSE against Gaussians (sigma from the head options); NaN points ignored."""
        heatmaps = self.require_key(out, "heatmaps").float()
        points = torch.as_tensor(targets, device=heatmaps.device, dtype=heatmaps.dtype)
        expected = (heatmaps.shape[0], self.num_landmarks, 2)
        if tuple(points.shape) != expected:
            raise self.error(
                f"landmark targets have shape {tuple(points.shape)}, expected {expected} "
                f"(points {self.names})",
                "give x, y per point in the task's landmark order, NaN for missing points",
            )
        return heatmap_loss(heatmaps, points, float(HEATMAP_STRIDE), self.options.landmark_sigma)

    def decode(self, out: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Per sample: ``(L, 2)`` pixel-centre ``x, y``."""
        maps = self.require_key(out, "heatmaps").detach().float().cpu().numpy()
        return [decode_heatmaps(m, sigma=self.options.landmark_sigma) for m in maps]


def union_landmarks(specs: list[TaskSpec]) -> list[str]:
    """Union of the tasks' landmark names, in first-seen order.

    Example:
        >>> a = TaskSpec(name="a", type="landmarks", table="a.csv", landmarks=["n", "s", "go"])
        >>> b = TaskSpec(name="b", type="landmarks", table="b.csv", landmarks=["s", "me"])
        >>> union_landmarks([a, b])
        ['n', 's', 'go', 'me']
    """
    names: list[str] = []
    for spec in specs:
        names += [n for n in spec.landmarks or [] if n not in names]
    return names


def space_spec(space: str, specs: list[TaskSpec]) -> TaskSpec:
    """The synthetic landmark task of a shared space (its head has the union's channels).

    Example:
        >>> a = TaskSpec(name="a", type="landmarks", table="a.csv", landmarks=["n", "s"])
        >>> space_spec("ceph", [a]).landmarks
        ['n', 's']
    """
    return TaskSpec(
        name=space,
        type="landmarks",
        table=f"{space}.csv",
        landmarks=union_landmarks(specs),
        description="shared landmark space of " + ", ".join(s.name for s in specs),
    )


class LandmarkSpaceView(TaskHead):
    """One task's view of a shared :class:`LandmarkHead` over a union landmark space.

    The forward pass returns the union heatmaps (every channel); the loss places the task's
    points at their union indices (the other channels get NaN points, so the loss leaves
    them out); decoding returns the task's own points in its own order. The shared head is
    held, not registered, so its weights are stored once, by the model.

    Example:
        >>> from medfleet.models.heads.losses import gaussian_heatmaps
        >>> a = TaskSpec(name="a", type="landmarks", table="a.csv", landmarks=["p", "q"])
        >>> b = TaskSpec(name="b", type="landmarks", table="b.csv", landmarks=["q", "r"])
        >>> shared = LandmarkHead(space_spec("s", [a, b]), FeatureLayout((16,), (8,), 16),
        ...                       HeadConfig())
        >>> view = LandmarkSpaceView(b, shared)
        >>> view.indices, view.names
        ([1, 2], ['q', 'r'])
        >>> pts = torch.tensor([[[5.0, 6.0], [9.0, 2.0], [1.0, 1.0]]])
        >>> maps = gaussian_heatmaps(pts, (4, 4), 4.0, 1.5)
        >>> np.round(view.decode({"heatmaps": maps})[0], 2).tolist()
        [[9.0, 2.0], [1.0, 1.0]]
    """

    def __init__(self, spec: TaskSpec, shared: LandmarkHead) -> None:
        super().__init__(spec, shared.layout, shared.options)
        self.names = list(spec.landmarks or [])
        missing = [n for n in self.names if n not in shared.names]
        if missing:
            raise self.error(f"landmarks {missing} are not in the shared space {shared.names}")
        self.indices = [shared.names.index(n) for n in self.names]
        self.space = shared.task
        object.__setattr__(self, "_shared", shared)  # not a submodule: stored once

    @property
    def shared(self) -> LandmarkHead:
        """The shared head."""
        return self._shared  # type: ignore[no-any-return]

    @property
    def num_landmarks(self) -> int:
        """Number of this task's points."""
        return len(self.names)

    def forward(self, features: BackboneFeatures) -> dict[str, torch.Tensor]:
        """Heatmaps of the whole union space."""
        return self.shared(features)

    def to_space(self, targets: Any, device: Any = None) -> torch.Tensor:
        """``(B, L_task, 2)`` points -> ``(B, L_union, 2)`` with NaN for the other points."""
        points = torch.as_tensor(targets, dtype=torch.float32, device=device)
        expected = (self.num_landmarks, 2)
        if points.ndim != 3 or tuple(points.shape[1:]) != expected:
            raise self.error(
                f"landmark targets have shape {tuple(points.shape)}, expected (B, *{expected}) "
                f"(points {self.names})",
                "give x, y per point in the task's landmark order, NaN for missing points",
            )
        out = torch.full(
            (points.shape[0], self.shared.num_landmarks, 2), float("nan"), device=points.device
        )
        out[:, self.indices] = points
        return out

    def loss(
        self, out: dict[str, torch.Tensor], targets: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The shared head's loss on the task's points (other union points masked)."""
        heatmaps = self.require_key(out, "heatmaps")
        return self.shared.loss(out, self.to_space(targets, heatmaps.device).to(heatmaps.dtype))

    def decode(self, out: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Per sample: the task's ``(L, 2)`` pixel-centre ``x, y``."""
        maps = self.require_key(out, "heatmaps")
        return self.shared.decode({"heatmaps": maps[:, self.indices]})
