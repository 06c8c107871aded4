"""The Dice and focal losses of the heads against MONAI's losses, called directly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai import losses as monai_losses

from medfleet.models.heads.losses import (
    IGNORE_INDEX,
    segmentation_loss,
    sigmoid_focal_loss,
    soft_dice_loss,
)


def _segmentation_batch(seed: int, classes: int, spatial: tuple[int, ...], unlabelled: bool):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, classes, *spatial, generator=g, dtype=torch.float64) * 2
    low = IGNORE_INDEX if unlabelled else 0
    target = torch.randint(low, classes, (3, *spatial), generator=g)
    return logits.requires_grad_(), target


def _monai_soft_dice_loss(logits, target, eps, ignore_index=None):
    options = {"ignore_index": ignore_index} if ignore_index is not None else {}
    loss = monai_losses.DiceLoss(
        include_background=False,
        to_onehot_y=True,
        softmax=True,
        batch=True,
        smooth_nr=eps,
        smooth_dr=eps,
        **options,
    )
    return loss(logits, target.unsqueeze(1))


@pytest.mark.parametrize("spatial", [(9, 7), (5, 4, 6)])
@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("eps", [1.0, 1e-5])
def test_soft_dice_equals_monai_dice_loss_with_softmax_and_one_hot(spatial, classes, eps):
    logits, target = _segmentation_batch(classes, classes, spatial, unlabelled=False)
    ours = soft_dice_loss(logits, target, eps=eps)
    (grad,) = torch.autograd.grad(ours, logits)
    ref = _monai_soft_dice_loss(logits, target, eps)
    (ref_grad,) = torch.autograd.grad(ref, logits)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("classes", [2, 3])
def test_soft_dice_masks_unlabelled_pixels_like_monai_ignore_index(classes):
    logits, target = _segmentation_batch(7 + classes, classes, (11, 8), unlabelled=True)
    assert bool((target == IGNORE_INDEX).any())
    ours = soft_dice_loss(logits, target)
    ref = _monai_soft_dice_loss(logits, target, 1.0, ignore_index=IGNORE_INDEX)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    (grad,) = torch.autograd.grad(ours, logits)
    assert float(grad.abs().sum(1)[target == IGNORE_INDEX].max()) == 0.0


def test_soft_dice_of_a_single_class_output_is_zero():
    # the softmax of one class is 1 on every pixel: every labelled pixel is predicted
    logits, target = _segmentation_batch(3, 1, (6, 6), unlabelled=True)
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-12)


def test_segmentation_loss_is_cross_entropy_plus_monai_dice():
    logits, target = _segmentation_batch(5, 3, (10, 10), unlabelled=True)
    weights = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    loss, parts = segmentation_loss(logits, target, weights, dice_weight=0.7, ce_weight=1.3)
    ce = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE_INDEX)
    reference = _monai_soft_dice_loss(logits, target, 1.0, ignore_index=IGNORE_INDEX)
    assert loss.item() == pytest.approx(1.3 * ce.item() + 0.7 * reference.item(), rel=1e-12)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-12)
    empty, _ = segmentation_loss(logits, torch.full_like(target, IGNORE_INDEX))
    assert empty.item() == 0.0 and empty.requires_grad


@pytest.mark.parametrize("shape", [(50,), (4, 64), (2, 1, 8, 8)])
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (0.5, 0.0), (0.9, 1.5)])
def test_sigmoid_focal_loss_equals_monai_focal_loss_summed(shape, alpha, gamma):
    g = torch.Generator().manual_seed(len(shape))
    logits = (torch.randn(shape, generator=g) * 4).requires_grad_()
    target = (torch.rand(shape, generator=g) > 0.8).float()
    ours = sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma)
    (grad,) = torch.autograd.grad(ours, logits)
    focal = monai_losses.FocalLoss(alpha=alpha, gamma=gamma, reduction="none")
    ref = focal(logits.reshape(1, -1), target.reshape(1, -1)).sum()
    (ref_grad,) = torch.autograd.grad(ref, logits)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(grad, ref_grad)
    # RetinaNet's definition, by hand
    p = logits.detach().sigmoid()
    p_t = p * target + (1 - p) * (1 - target)
    bce = F.binary_cross_entropy_with_logits(logits.detach(), target, reduction="none")
    w = alpha * target + (1 - alpha) * (1 - target)
    assert ours.item() == pytest.approx(float((w * bce * (1 - p_t) ** gamma).sum()), rel=1e-5)


def test_focal_loss_keeps_a_float64_result_dtype():
    logits = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    assert sigmoid_focal_loss(logits, target).dtype == torch.float64
