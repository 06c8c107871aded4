"""Loss functions of the task heads.

* segmentation: soft Dice over the foreground classes + cross-entropy
  (``ignore_index=-1`` marks unlabelled pixels);
* classification: cross-entropy with optional class weights;
* detection: focal objectness + L1 and generalised-IoU on matched boxes + class CE;
* regression: L1 / MSE / smooth-L1 on the normalised target;
* landmarks: heatmap MSE against Gaussians, missing points masked out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1
"""Target index of unlabelled pixels in segmentation targets."""


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX, eps: float = 1.0
) -> torch.Tensor:
    """Mean soft Dice loss over the foreground classes (index >= 1).

    Args:
        logits: ``(N, K, *spatial)``.
        target: ``(N, *spatial)`` class indices, ``ignore_index`` for unlabelled pixels.
        ignore_index: Index excluded from the loss.
        eps: Smoothing added to numerator and denominator.

    Example:
        >>> t = torch.tensor([[[0, 1], [1, 1]]])
        >>> perfect = F.one_hot(t, 2).permute(0, 3, 1, 2).float() * 100
        >>> round(soft_dice_loss(perfect, t).item(), 4)
        0.0
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    safe = target.clamp(min=0)
    probs = logits.softmax(dim=1) * valid
    onehot = F.one_hot(safe, num_classes).movedim(-1, 1).to(logits.dtype) * valid
    dims = (0, *range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    fg = dice[1:] if num_classes > 1 else dice
    return 1.0 - fg.mean()


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Dice + cross-entropy.

    Example:
        >>> t = torch.zeros(1, 4, 4, dtype=torch.long)
        >>> loss, parts = segmentation_loss(torch.zeros(1, 2, 4, 4), t)
        >>> sorted(parts)
        ['ce', 'dice']
    """
    if bool((target == IGNORE_INDEX).all()):
        zero = logits.sum() * 0.0
        return zero, {"dice": zero.detach(), "ce": zero.detach()}
    ce = F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE_INDEX)
    dice = soft_dice_loss(logits, target)
    loss = ce_weight * ce + dice_weight * dice
    return loss, {"dice": dice.detach(), "ce": ce.detach()}


def classification_loss(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy with optional class weights.

    Example:
        >>> loss, _ = classification_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        >>> round(loss.item(), 4) == round(math.log(2), 4)
        True
    """
    ce = F.cross_entropy(logits, target, weight=class_weights)
    return ce, {"ce": ce.detach()}


def regression_loss(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "l1"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1, MSE or smooth-L1 between (normalised) predictions and targets.

    Example:
        >>> regression_loss(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]))[0].item()
        1.0
    """
    if kind == "l1":
        loss = F.l1_loss(pred, target)
    elif kind == "mse":
        loss = F.mse_loss(pred, target)
    elif kind == "smooth_l1":
        loss = F.smooth_l1_loss(pred, target)
    else:
        raise ValueError(f"unknown regression loss {kind!r} (use l1, mse or smooth_l1)")
    return loss, {kind: loss.detach()}


def gaussian_heatmaps(
    points: torch.Tensor, size: tuple[int, int], stride: float, sigma: float
) -> torch.Tensor:
    """Gaussian heatmaps (peak 1) of points given in input-pixel coordinates.

    Cell ``u`` of a heatmap at ``stride`` covers pixels ``[stride*u, stride*(u+1))``;
    with pixel-centre coordinates its centre is ``x = stride*u + (stride-1)/2``.

    Args:
        points: ``(N, L, 2)`` pixel ``x, y``; NaN rows give all-zero maps.
        size: Heatmap ``(h, w)``.
        stride: Input pixels per heatmap cell.
        sigma: Standard deviation in heatmap cells.

    Example:
        >>> hm = gaussian_heatmaps(torch.tensor([[[5.5, 1.5]]]), (4, 4), 4.0, 1.0)
        >>> (hm[0, 0] == hm.max()).nonzero().tolist()
        [[0, 1]]
    """
    h, w = size
    offset = (stride - 1.0) / 2.0
    cells = (points - offset) / stride
    ys = torch.arange(h, dtype=points.dtype, device=points.device)
    xs = torch.arange(w, dtype=points.dtype, device=points.device)
    dx = xs.view(1, 1, 1, w) - cells[..., 0, None, None]
    dy = ys.view(1, 1, h, 1) - cells[..., 1, None, None]
    maps = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    return torch.nan_to_num(maps, nan=0.0)


def heatmap_loss(
    heatmaps: torch.Tensor, points: torch.Tensor, stride: float, sigma: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Squared error against Gaussian targets, per landmark, normalised by the Gaussian's mass.

    The sum of squared errors of one heatmap is divided by ``pi * sigma**2``
    (the sum of the squared target), so an all-zero prediction scores about 1.
    Landmarks with a NaN coordinate are left out.

    Example:
        >>> pts = torch.tensor([[[6.0, 6.0]]])
        >>> target = gaussian_heatmaps(pts, (4, 4), 4.0, 1.0)
        >>> heatmap_loss(target, pts, 4.0, 1.0)[0].item()
        0.0
    """
    valid = ~torch.isnan(points).any(dim=-1)
    target = gaussian_heatmaps(points, tuple(heatmaps.shape[-2:]), stride, sigma)
    err = ((heatmaps - target) ** 2).sum(dim=(-2, -1)) / (math.pi * sigma**2)
    if not bool(valid.any()):
        zero = heatmaps.sum() * 0.0
        return zero, {"heatmap_mse": zero.detach()}
    loss = err[valid].mean()
    return loss, {"heatmap_mse": loss.detach()}


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of ``(..., 4)`` boxes ``x0, y0, x1, y1``."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``(n, m)`` of boxes ``a (n, 4)`` and ``b (m, 4)``.

    Example:
        >>> pairwise_iou(torch.tensor([[0., 0, 2, 2]]), torch.tensor([[1., 0, 3, 2]])).item()
        0.3333333432674408
    """
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=1e-9)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise generalised IoU of paired boxes ``(n, 4)``.

    Example:
        >>> a = torch.tensor([[0., 0, 1, 1]]); b = torch.tensor([[2., 0, 3, 1]])
        >>> generalized_iou(a, b).item()
        -0.3333333432674408
    """
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    union = box_area(a) + box_area(b) - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0)
    hull_area = hull.prod(dim=-1)
    return iou - (hull_area - union) / hull_area.clamp(min=1e-9)


def sigmoid_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Summed focal loss (RetinaNet) of binary logits.

    Example:
        >>> sigmoid_focal_loss(torch.tensor([10.0]), torch.tensor([1.0])).item() < 1e-6
        True
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * loss).sum()
