"""Detection head: anchor-free, one candidate box per patch-grid cell.

Each cell of the patch grid (stride ``p`` pixels) predicts an objectness
logit, the distances from its centre to the four box edges, and class
logits when the task names box classes. Boxes are in input-pixel
coordinates with edges on pixel borders (:mod:`medfleet.tables`); they are
clipped to the image (the gradient passes the clip unchanged).

Matching for the loss (centre sampling, as in FCOS/CenterNet): a ground-truth
box claims the cell containing its centre and the neighbouring cells whose
centres lie inside the box; a cell claimed by several boxes goes to the
smallest. Unclaimed cells are negatives of the focal objectness loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medfleet.models.backbones import BackboneFeatures, FeatureLayout
from medfleet.models.config import HeadConfig
from medfleet.models.features import resize_to_stride
from medfleet.models.heads.base import TaskHead, TaskOutput
from medfleet.models.heads.losses import (
    box_area,
    generalized_iou,
    pairwise_iou,
    sigmoid_focal_loss,
)
from medfleet.tasks import TaskSpec


def cell_centres(grid: tuple[int, int], stride: float, device: torch.device) -> torch.Tensor:
    """Centres ``(h*w, 2)`` (x, y, pixel-border coordinates) of the cells, row-major.

    Example:
        >>> cell_centres((1, 2), 8.0, torch.device("cpu")).tolist()
        [[4.0, 4.0], [12.0, 4.0]]
    """
    gh, gw = grid
    ys = (torch.arange(gh, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(gw, device=device, dtype=torch.float32) + 0.5) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def assign_cells(
    centres: torch.Tensor, boxes: torch.Tensor, stride: float, radius: float = 1.0
) -> torch.Tensor:
    """Index of the ground-truth box each cell is matched to (-1: background).

    Args:
        centres: ``(Q, 2)`` cell centres.
        boxes: ``(n, 4)`` ground-truth boxes.
        stride: Cell size in pixels.
        radius: Neighbourhood (in cells) around a box centre that may match.

    Example:
        >>> c = cell_centres((2, 2), 8.0, torch.device("cpu"))
        >>> assign_cells(c, torch.tensor([[0.0, 0.0, 6.0, 6.0]]), 8.0).tolist()
        [0, -1, -1, -1]
    """
    q = centres.shape[0]
    if boxes.numel() == 0:
        return torch.full((q,), -1, dtype=torch.long, device=centres.device)
    cx, cy = centres[:, 0:1], centres[:, 1:2]
    gx = (boxes[:, 0] + boxes[:, 2]) / 2
    gy = (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (cx > boxes[:, 0]) & (cx < boxes[:, 2]) & (cy > boxes[:, 1]) & (cy < boxes[:, 3])
    near = ((cx - gx).abs() <= radius * stride) & ((cy - gy).abs() <= radius * stride)
    own = ((cx - gx).abs() <= stride / 2) & ((cy - gy).abs() <= stride / 2)
    # the cell containing the centre (ties on borders: the nearest one)
    dist = (cx - gx) ** 2 + (cy - gy) ** 2
    nearest = torch.zeros_like(own)
    nearest[dist.argmin(dim=0), torch.arange(boxes.shape[0], device=centres.device)] = True
    candidate = (inside & near) | (own & nearest)
    area = box_area(boxes)[None, :].expand(q, -1)
    area = torch.where(candidate, area, torch.full_like(area, float("inf")))
    best = area.argmin(dim=1)
    return torch.where(candidate.any(dim=1), best, torch.full_like(best, -1))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices kept by greedy non-maximum suppression, best first.

    Example:
        >>> b = torch.tensor([[0., 0, 10, 10], [1., 1, 10, 10], [20., 20, 30, 30]])
        >>> nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    order = scores.argsort(descending=True)
    keep: list[int] = []
    while order.numel():
        i = int(order[0])
        keep.append(i)
        if order.numel() == 1:
            break
        ious = pairwise_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return torch.as_tensor(keep, dtype=torch.long)


class DetectionHead(TaskHead):
    """``boxes (B, Q, 4)``, ``scores (B, Q)`` logits, ``class_logits (B, Q, C)`` with classes."""

    def __init__(self, spec: TaskSpec, layout: FeatureLayout, options: HeadConfig) -> None:
        super().__init__(spec, layout, options)
        self.classes = list(spec.classes or [])
        dim = options.decoder_dim
        # the grid: a ViT's patches; a CNN's stage nearest stride 8, fed by it and the
        # coarser stages (FPN-style: each projected and resampled to the grid, then summed)
        self.stride = layout.detection_stride
        self.used = [i for i, s in enumerate(layout.strides) if s >= self.stride]
        self.project = nn.ModuleList(nn.Conv2d(layout.channels[i], dim, 1) for i in self.used)
        self.tower = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.GELU(),
        )
        self.objectness = nn.Conv2d(dim, 1, 1)
        self.distances = nn.Conv2d(dim, 4, 1)
        self.class_logits = nn.Conv2d(dim, len(self.classes), 1) if self.classes else None
        with torch.no_grad():
            # start with rare positives (focal-loss prior) and boxes about two cells wide
            self.objectness.bias.fill_(-4.0)
            self.distances.bias.fill_(0.5)

    def forward(self, features: BackboneFeatures) -> dict[str, torch.Tensor]:
        """Candidate boxes of every cell."""
        stride = float(self.stride)
        h, w = features.image_size
        grid = (math.ceil(h / self.stride), math.ceil(w / self.stride))
        strides = features.map_strides
        x = sum(
            resize_to_stride(proj(features.maps[i]), float(strides[i]), stride, grid)
            for proj, i in zip(self.project, self.used, strict=True)
        )
        x = self.tower(x)
        # box geometry in float32: half precision cannot hold pixel coordinates exactly
        centres = cell_centres(grid, stride, x.device)
        dist = F.softplus(self.distances(x).float()).flatten(2).transpose(1, 2) * stride
        boxes = torch.cat([centres - dist[..., :2], centres + dist[..., 2:]], dim=-1)
        limit = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        clipped = torch.minimum(boxes.clamp(min=0), limit)
        boxes = boxes + (clipped - boxes).detach()
        out = TaskOutput(
            boxes=boxes,
            scores=self.objectness(x).flatten(1).float(),
            meta={"image_size": (h, w), "grid": grid, "stride": stride},
        )
        if self.class_logits is not None:
            out["class_logits"] = self.class_logits(x).flatten(2).transpose(1, 2)
        self._geometry = dict(out.meta)
        return out

    def encode_label(self, label: str | None) -> int:
        """Index of a box class name (0 when the task has no classes)."""
        if not self.classes:
            return 0
        if label is None or str(label) not in self.classes:
            raise self.error(
                f"box label {label!r} is not one of the task's classes {self.classes}",
                "prefix each box with a class name from 'classes' in the manifest",
            )
        return self.classes.index(str(label))

    def _check_targets(self, targets: Any, batch: int) -> list[dict[str, torch.Tensor]]:
        if not isinstance(targets, (list, tuple)) or len(targets) != batch:
            raise self.error(
                f"detection targets must be a list of {batch} dicts with 'boxes' (and 'labels')"
            )
        checked = []
        for i, t in enumerate(targets):
            boxes = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
            if boxes.numel() and bool(
                ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any()
            ):
                raise self.error(f"sample {i}: a box has x1 <= x0 or y1 <= y0: {boxes.tolist()}")
            labels = t.get("labels")
            labels = (
                torch.zeros(boxes.shape[0], dtype=torch.long)
                if labels is None
                else torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            )
            if labels.shape[0] != boxes.shape[0]:
                raise self.error(f"sample {i}: {labels.shape[0]} labels for {boxes.shape[0]} boxes")
            n_cls = max(1, len(self.classes))
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_cls):
                raise self.error(
                    f"sample {i}: box label index outside 0..{n_cls - 1} (classes {self.classes})",
                    "map class names with model.encode_label(task, name)",
                )
            checked.append({"boxes": boxes, "labels": labels})
        return checked

    def loss(
        self, out: dict[str, torch.Tensor], targets: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Focal objectness + L1 + GIoU on matched cells (+ class CE)."""
        boxes = self.require_key(out, "boxes")
        scores = self.require_key(out, "scores")
        batch, _ = scores.shape
        checked = self._check_targets(targets, batch)
        device = boxes.device
        geometry = self.geometry(out)
        stride = float(geometry["stride"])
        centres = cell_centres(geometry["grid"], stride, device)
        obj_target = torch.zeros_like(scores)
        pred_pos, gt_pos, cls_pos, lab_pos = [], [], [], []
        for i, t in enumerate(checked):
            gt = t["boxes"].to(device)
            match = assign_cells(centres, gt, stride)
            pos = match >= 0
            obj_target[i, pos] = 1.0
            if bool(pos.any()):
                pred_pos.append(boxes[i, pos])
                gt_pos.append(gt[match[pos]])
                lab_pos.append(t["labels"].to(device)[match[pos]])
                if "class_logits" in out:
                    cls_pos.append(out["class_logits"][i, pos])
        num_pos = max(1.0, float(obj_target.sum()))
        obj = sigmoid_focal_loss(scores, obj_target) / num_pos
        o = self.options
        parts = {"objectness": obj.detach()}
        total = o.det_obj_weight * obj
        if pred_pos:
            pred = torch.cat(pred_pos)
            gt = torch.cat(gt_pos)
            h, w = geometry["image_size"]
            scale = torch.tensor([w, h, w, h], dtype=pred.dtype, device=device)
            l1 = (F.l1_loss(pred / scale, gt / scale, reduction="none").sum(-1)).mean()
            giou = (1.0 - generalized_iou(pred, gt)).mean()
            total = total + o.det_l1_weight * l1 + o.det_giou_weight * giou
            parts.update(l1=l1.detach(), giou=giou.detach())
            if cls_pos:
                ce = F.cross_entropy(torch.cat(cls_pos), torch.cat(lab_pos))
                total = total + o.det_cls_weight * ce
                parts["class_ce"] = ce.detach()
        else:
            zero = boxes.sum() * 0.0
            total = total + zero
            parts.update(l1=zero.detach(), giou=zero.detach())
        return total, parts

    def geometry(self, out: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Input size, grid and stride of an output (from its ``meta``, else the last forward)."""
        meta = getattr(out, "meta", None) or getattr(self, "_geometry", None)
        if not meta or "grid" not in meta:
            raise self.error(
                "the output carries no geometry", "pass the TaskOutput returned by model(...)"
            )
        return meta

    def decode(self, out: dict[str, torch.Tensor]) -> list[list[tuple[Any, ...]]]:
        """Per sample: ``[(box (x0, y0, x1, y1), score, label), ...]`` best first, after NMS."""
        boxes = self.require_key(out, "boxes").detach().float().cpu()
        probs = self.require_key(out, "scores").detach().float().sigmoid().cpu()
        cls = out.get("class_logits")
        cls = cls.detach().float().softmax(-1).cpu() if cls is not None else None
        o = self.options
        results: list[list[tuple[Any, ...]]] = []
        for i in range(boxes.shape[0]):
            keep = probs[i] >= o.det_score_threshold
            b, s = boxes[i][keep], probs[i][keep]
            labels = cls[i][keep].argmax(-1) if cls is not None else None
            valid = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            b, s = b[valid], s[valid]
            labels = labels[valid] if labels is not None else None
            kept = nms(b, s, o.det_nms_iou)[: o.det_max_boxes] if b.shape[0] else []
            sample = []
            for j in kept:
                j = int(j)
                name = self.classes[int(labels[j])] if labels is not None else None
                sample.append((tuple(float(v) for v in b[j].tolist()), float(s[j]), name))
            results.append(sample)
        return results

    @staticmethod
    def boxes_to_numpy(sample: list[tuple[Any, ...]]) -> np.ndarray:
        """``(n, 4)`` array of the boxes of one decoded sample."""
        return np.asarray([b for b, _, _ in sample], dtype=np.float64).reshape(-1, 4)
