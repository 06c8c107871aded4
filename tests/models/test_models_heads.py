"""Shapes, losses and decoding of the five head types on vit-tiny."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.models import ModelConfig, MoEConfig, build_model, decode_heatmaps
from medfleet.models.heads.detection import assign_cells, cell_centres, nms
from medfleet.models.heads.losses import (
    gaussian_heatmaps,
    generalized_iou,
    heatmap_loss,
    pairwise_iou,
    soft_dice_loss,
)


def targets_for(batch: int, h: int, w: int) -> dict:
    seg = torch.zeros(batch, h, w, dtype=torch.long)
    seg[:, 4:12, 4:12] = 1
    seg[:, 16:24, 10:20] = 2
    return {
        "seg": seg,
        "cls": torch.arange(batch) % 3,
        "det": [
            {
                "boxes": torch.tensor([[4.0, 4.0, 12.0, 14.0], [16.0, 18.0, 28.0, 30.0]]),
                "labels": torch.tensor([0, 1]),
            }
            for _ in range(batch)
        ],
        "reg": torch.linspace(50.0, 70.0, batch),
        "lm": torch.tensor([[[5.0, 6.0], [20.5, 10.25], [float("nan"), float("nan")]]]).repeat(
            batch, 1, 1
        ),
    }


@pytest.mark.parametrize("size", [(32, 32), (30, 37)])
def test_output_shapes_all_task_types(manifest, size) -> None:
    h, w = size
    model = build_model(manifest, ModelConfig(image_size=32))
    x = torch.randn(2, 1, h, w)
    shapes = {task: {k: tuple(v.shape) for k, v in model(x, task).items()} for task in model.tasks}
    q = math.ceil(h / 8) * math.ceil(w / 8)
    assert shapes["seg"] == {"logits": (2, 3, h, w)}
    assert shapes["cls"] == {"logits": (2, 3)}
    assert shapes["det"] == {"boxes": (2, q, 4), "scores": (2, q), "class_logits": (2, q, 2)}
    assert shapes["reg"] == {"value": (2,)}
    assert shapes["lm"] == {"heatmaps": (2, 3, math.ceil(h / 4), math.ceil(w / 4))}


def test_detection_boxes_stay_inside_image(manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32))
    out = model(torch.randn(2, 1, 30, 37), "det")
    boxes = out["boxes"].detach()
    assert float(boxes[..., 0].min()) >= 0 and float(boxes[..., 2].max()) <= 37
    assert float(boxes[..., 1].min()) >= 0 and float(boxes[..., 3].max()) <= 30


@pytest.mark.parametrize("backbone", ["vit-tiny", "unet-tiny", "convnext-compact"])
def test_unified_moe_model_learns_all_five_tasks(manifest, backbone) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        backbone=backbone,
        image_size=32,
        moe=MoEConfig(blocks=[-2, -1], num_experts=4, top_k=2),
    )
    model = build_model(manifest, config)
    model.set_target_stats("reg", 60.0, 10.0)
    x = torch.randn(2, 1, 32, 32)
    targets = targets_for(2, 32, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first, last = {}, {}
    for step in range(20):
        for task in model.tasks:
            out = model(x, task)
            loss, parts = model.loss(task, out, targets[task])
            total = loss + model.aux_loss()
            opt.zero_grad()
            total.backward()
            opt.step()
            assert all(v.ndim == 0 for v in parts.values())
            (first if step == 0 else last)[task] = float(loss.detach())
    for task in model.tasks:
        assert last[task] < 0.7 * first[task], (task, first[task], last[task])


def test_encode_mask_maps_sorted_label_values_and_rejects_unknown(manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32))
    mask = np.array([[0, 2], [5, 255]])
    idx = model.encode_mask("seg", mask, ignore_value=255)
    assert idx.tolist() == [[0, 1], [2, -1]]
    with pytest.raises(MedfleetError, match=r"label value\(s\) \[3\].*'seg'|'seg'.*\[3\]"):
        model.encode_mask("seg", np.array([[0, 3]]))


def test_bad_targets_raise_clear_errors(manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32))
    x = torch.randn(2, 1, 32, 32)
    with pytest.raises(MedfleetError, match="encode_mask"):
        model.loss("seg", model(x, "seg"), torch.full((2, 32, 32), 5))
    with pytest.raises(MedfleetError, match=r"classes \['x', 'y', 'z'\]"):
        model.loss("cls", model(x, "cls"), torch.tensor([0, 3]))
    with pytest.raises(MedfleetError, match="not one of the task's classes"):
        model.encode_label("cls", "w")
    assert model.encode_label("det", "q") == 1
    with pytest.raises(MedfleetError, match="landmark targets have shape"):
        model.loss("lm", model(x, "lm"), torch.zeros(2, 2, 2))
    with pytest.raises(MedfleetError, match="no head for task 'nope'"):
        model(x, "nope")


def test_channel_mismatch_is_a_clear_error(manifest_factory) -> None:
    manifest = manifest_factory(cls={"channels": 3}, seg={"channels": 2})
    with pytest.raises(MedfleetError, match="mixed channel counts"):
        build_model(manifest, ModelConfig(image_size=32))
    rgb = manifest_factory(cls={"channels": 3})
    model = build_model(rgb, ModelConfig(image_size=32))
    assert model.backbone.in_channels == 3
    assert tuple(model(torch.randn(1, 3, 32, 32), "cls")["logits"].shape) == (1, 3)
    assert tuple(model(torch.randn(1, 1, 32, 32), "seg")["logits"].shape) == (1, 3, 32, 32)
    with pytest.raises(MedfleetError, match="declares 1 channel"):
        model(torch.randn(1, 2, 32, 32), "seg")


def test_segmentation_decode_gives_label_values_and_probabilities(manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32))
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2, 0, 0] = 5.0
    logits[0, 1, 1, 1] = 5.0
    (pred,) = model.decode("seg", {"logits": logits})
    assert pred["mask"].tolist() == [[5, 0], [0, 2]]
    assert pred["probs"].shape == (3, 2, 2)
    np.testing.assert_allclose(pred["probs"].sum(axis=0), 1.0, rtol=1e-6)


def test_classification_decode_names_the_class(manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32))
    (pred,) = model.decode("cls", {"logits": torch.tensor([[0.0, 3.0, 1.0]])})
    assert pred["label"] == "y"
    np.testing.assert_allclose(pred["probs"], np.exp([0, 3, 1]) / np.exp([0, 3, 1]).sum(), 1e-6)


def test_regression_uses_target_stats(manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32))
    model.set_target_stats("reg", 100.0, 20.0)
    out = model(torch.randn(3, 1, 32, 32), "reg")
    loss, _ = model.loss("reg", out, out["value"].detach() + 20.0)
    assert loss.item() == pytest.approx(1.0, abs=1e-5)  # l1 of (20 / std)
    with pytest.raises(MedfleetError, match="positive std"):
        model.set_target_stats("reg", 1.0, 0.0)


def test_heatmap_decoding_recovers_subpixel_points() -> None:
    pts = torch.tensor([[[10.3, 21.7], [33.0, 2.4], [47.9, 40.1]]])
    hm = gaussian_heatmaps(pts, (16, 16), 4.0, 1.5)[0].numpy()
    np.testing.assert_allclose(decode_heatmaps(hm, sigma=1.5), pts[0].numpy(), atol=1e-4)
    # without sigma a border peak stays at its cell centre (pixel 4*0+1.5)
    assert decode_heatmaps(hm)[1, 1] == pytest.approx(1.5)


def test_heatmap_target_is_centred_on_pixel_centre_convention() -> None:
    # pixel (row 5, col 9) lies in heatmap cell (1, 2), whose centre is pixel 4*2+1.5 = 9.5
    hm = gaussian_heatmaps(torch.tensor([[[9.5, 5.5]]]), (4, 4), 4.0, 1.0)[0, 0]
    assert hm[1, 2].item() == pytest.approx(1.0)
    assert hm[1, 1].item() == pytest.approx(math.exp(-0.5))


def test_heatmap_loss_masks_missing_points() -> None:
    pts = torch.tensor([[[6.0, 6.0], [float("nan"), 3.0]]])
    target = gaussian_heatmaps(pts[:, :1], (4, 4), 4.0, 1.0)
    pred = torch.cat([target, torch.full_like(target, 9.0)], dim=1)
    assert heatmap_loss(pred, pts, 4.0, 1.0)[0].item() == pytest.approx(0.0, abs=1e-7)
    zero = heatmap_loss(torch.zeros(1, 1, 16, 16), pts[:, :1], 4.0, 1.0)[0].item()
    assert zero == pytest.approx(1.0, rel=0.02)  # sum of target^2 = pi sigma^2


def test_dice_of_disjoint_prediction_is_one() -> None:
    target = torch.tensor([[[1, 1], [0, 0]]])
    wrong = torch.tensor([[[0, 0], [1, 1]]])
    logits = torch.nn.functional.one_hot(wrong, 2).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(logits, target, eps=0.0).item() == pytest.approx(1.0, abs=1e-6)


def test_giou_hand_computed() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    # inter 1, union 7, hull 9: 1/7 - 2/9
    assert generalized_iou(a, b).item() == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)


def test_detection_matching_gives_overlapping_cells_to_smaller_box() -> None:
    centres = cell_centres((4, 4), 8.0, torch.device("cpu"))
    big = [0.0, 0.0, 32.0, 32.0]
    small = [8.0, 8.0, 16.0, 16.0]
    match = assign_cells(centres, torch.tensor([big, small]), 8.0).reshape(4, 4)
    assert match[1, 1].item() == 1  # the small box's centre cell
    assert match[2, 2].item() == 0  # the big box's centre (16, 16) lies on a border
    assert (match >= 0).sum().item() >= 2


def test_detection_decode_threshold_and_nms(manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32))
    boxes = torch.tensor([[[0.0, 0, 10, 10], [1.0, 1, 10, 10], [20.0, 20, 30, 30], [5, 5, 6, 6]]])
    scores = torch.logit(torch.tensor([[0.9, 0.8, 0.7, 0.01]]))
    cls = torch.tensor([[[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])
    (pred,) = model.decode("det", {"boxes": boxes, "scores": scores, "class_logits": cls})
    assert [(b, round(s, 3), label) for b, s, label in pred] == [
        ((0.0, 0.0, 10.0, 10.0), 0.9, "p"),
        ((20.0, 20.0, 30.0, 30.0), 0.7, "q"),
    ]
    assert nms(boxes[0], scores[0].sigmoid(), 0.9).tolist() == [0, 1, 2, 3]


def test_detection_learns_box_position(manifest) -> None:
    torch.manual_seed(1)
    model = build_model(manifest, ModelConfig(image_size=32))
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:20, 10:26] = 1.0
    target = [{"boxes": torch.tensor([[10.0, 8.0, 26.0, 20.0]]), "labels": torch.tensor([1])}]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss, _ = model.loss("det", model(x, "det"), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model.decode("det", model(x, "det"))[0]
    assert pred, "no box decoded"
    box, _, label = pred[0]
    iou = float(pairwise_iou(torch.tensor([box]), target[0]["boxes"]))
    assert iou > 0.5 and label == "q"
