"""Loss functions of the task heads.

* segmentation: soft Dice over the foreground classes (MONAI's ``DiceLoss``) +
  cross-entropy (``ignore_index=-1`` marks unlabelled pixels);
* classification: cross-entropy with optional class weights;
* detection: focal objectness (MONAI's ``FocalLoss``) + L1 and generalised-IoU on matched
  boxes + class CE;
* regression: L1 / MSE / smooth-L1 on the normalised target;
* landmarks: heatmap MSE against Gaussians, missing points masked out.

The Dice and focal terms are MONAI's losses behind thin wrappers that keep medfleet's
conventions; ``tests/models/test_losses_library.py`` checks each wrapper against the MONAI
call. MONAI is imported on the first Dice or focal loss (``import monai`` takes seconds), so
heads and models that never compute those losses do not load it.

* The softmax, the one-hot encoding and the masking of unlabelled pixels are done here
  because MONAI skips the first two for a single-class output (a segmentation task
  without labels has one class); for two or more classes the result equals
  ``DiceLoss(to_onehot_y=True, softmax=True, ignore_index=-1)`` (tested).
* ``segmentation_loss`` adds ``torch.nn.functional.cross_entropy`` rather than using
  ``DiceCELoss``, which has no ``ignore_index`` for its cross-entropy and applies its
  ``weight`` to the Dice classes too (here the class weights weight the cross-entropy
  only); a batch without a labelled pixel gives a zero loss.
* ``sigmoid_focal_loss`` sums with ``reduction="none"``: MONAI's ``"sum"`` first averages
  over the spatial dimensions. MONAI computes it in float32, and a soft target ``t`` is
  weighted by ``sigmoid(-x (2t - 1)) ** gamma`` (the same as ``(1 - p_t) ** gamma`` for 0/1
  targets, which are the detection targets).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1
"""Target index of unlabelled pixels in segmentation targets."""


@cache
def _dice_loss(include_background: bool, smooth: float) -> Any:
    from monai.losses import DiceLoss

    return DiceLoss(
        include_background=include_background,
        batch=True,
        smooth_nr=smooth,
        smooth_dr=smooth,
        reduction="mean",
    )


@cache
def _focal_loss(alpha: float, gamma: float) -> Any:
    from monai.losses import FocalLoss

    return FocalLoss(alpha=alpha, gamma=gamma, use_softmax=False, reduction="none")


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX, eps: float = 1.0
) -> torch.Tensor:
    """Mean soft Dice loss over the foreground classes (index >= 1).

    One Dice per class over the whole batch, ``(2 sum(p y) + eps) / (sum(p) + sum(y) + eps)``
    with ``p`` the softmax and ``y`` the one-hot target, both zero on unlabelled pixels;
    the loss is ``1 -`` the mean over the foreground classes (the only class when there is
    one). This is ``monai.losses.DiceLoss(include_background=False, batch=True,
    smooth_nr=eps, smooth_dr=eps)`` on the masked softmax and one-hot target.

    Args:
        logits: ``(N, K, *spatial)``.
        target: ``(N, *spatial)`` class indices, ``ignore_index`` for unlabelled pixels.
        ignore_index: Index excluded from the loss.
        eps: Smoothing added to numerator and denominator.

    Returns:
        Scalar loss.

    Example:
        >>> t = torch.tensor([[[0, 1], [1, 1]]])
        >>> perfect = F.one_hot(t, 2).permute(0, 3, 1, 2).float() * 100
        >>> round(soft_dice_loss(perfect, t).item(), 4)
        0.0
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    probs = logits.softmax(dim=1) * valid
    onehot = F.one_hot(target.clamp(min=0), num_classes).movedim(-1, 1).to(logits.dtype) * valid
    return _dice_loss(num_classes == 1, float(eps))(probs, onehot)


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

    ``sum(w * BCE(x, t) * (1 - p_t) ** gamma)`` with ``w = alpha`` for positives and
    ``1 - alpha`` for negatives: ``monai.losses.FocalLoss(alpha=alpha, gamma=gamma,
    reduction="none")`` summed, computed in float32 (float64 logits give a float64 result).

    Args:
        logits: Binary logits, any shape.
        target: 0/1 targets of the same shape.
        alpha: Weight of the positives.
        gamma: Focusing exponent.

    Returns:
        Scalar loss.

    Example:
        >>> sigmoid_focal_loss(torch.tensor([10.0]), torch.tensor([1.0])).item() < 1e-6
        True
    """
    flat = logits.reshape(1, -1)
    loss = _focal_loss(float(alpha), float(gamma))(flat, target.reshape(1, -1).to(flat.dtype))
    return loss.sum().to(torch.promote_types(logits.dtype, torch.float32))
