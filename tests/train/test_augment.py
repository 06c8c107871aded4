"""Augmentation moves images and every target type together (hand-computed and round trips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.tasks import TaskSpec
from medfleet.train.augment import (
    PRESETS,
    Affine,
    AugmentSettings,
    augment_batch,
    cutmix_boxes,
    flip_permutation,
    intensity_jitter,
    sample_affines,
    settings_for,
    warp_boxes,
    warp_images,
    warp_labels,
    warp_points,
)
from medfleet.train.datasets import Batch

S = 32


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_points_hand_computed_flip_scale_translation():
    c = (S - 1) / 2  # 15.5
    flip = Affine(flip=True, scale=1.0, tx=0.0, ty=0.0, size=S)
    assert flip.points(np.array([[0.0, 5.0], [31.0, 7.0], [15.5, 2.0]])).tolist() == [
        [31.0, 5.0],
        [0.0, 7.0],
        [15.5, 2.0],
    ]
    zoom = Affine(flip=False, scale=2.0, tx=3.0, ty=-1.0, size=S)
    # x' = 2 (x - 15.5) + 15.5 + 3
    assert zoom.points(np.array([[10.0, 20.0]])).tolist() == [
        [2 * (10 - c) + c + 3, 2 * (20 - c) + c - 1]
    ]
    both = Affine(flip=True, scale=0.5, tx=0.0, ty=0.0, size=S)
    assert both.points(np.array([[1.0, 1.0]])).tolist() == [[0.5 * (30 - c) + c, 0.5 * (1 - c) + c]]
    # borders map as pixel centres - 0.5: x border 0 -> centre -0.5 -> flipped 31.5 -> 23.5
    assert both.boxes(np.array([[0.0, 0.0, 4.0, 4.0]])).tolist() == [[22.0, 8.0, 24.0, 10.0]]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_affines_round_trip(seed):
    pts = np.random.default_rng(seed).uniform(0, S - 1, size=(5, 2))
    for affine in sample_affines(4, S, PRESETS["standard"], _gen(seed)):
        np.testing.assert_allclose(affine.inverse_points(affine.points(pts)), pts, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_landmark_painted_as_a_bright_pixel_stays_under_its_point(seed):
    rng = np.random.default_rng(seed)
    image = torch.zeros(1, 1, S, S)
    xy = rng.integers(8, S - 8, size=2)
    image[0, 0, xy[1], xy[0]] = 1.0
    points = torch.tensor([[[float(xy[0]), float(xy[1])]]])
    settings = AugmentSettings(flip=0.5, scale=(0.7, 1.4), translate=0.1)
    affines = sample_affines(1, S, settings, _gen(seed))
    warped = warp_images(image, affines)[0, 0]
    moved = warp_points(points, affines)[0, 0].numpy()
    # the output pixel nearest to the transformed point takes the largest share of the
    # bright pixel (bilinear weights fall with the distance on each axis)
    assert float(warped.max()) > 0
    iy, ix = np.unravel_index(int(warped.argmax()), warped.shape)
    assert abs(ix - moved[0]) <= 0.5 + 1e-6 and abs(iy - moved[1]) <= 0.5 + 1e-6


def test_integer_shift_and_flip_move_pixels_exactly():
    image = torch.arange(S * S, dtype=torch.float32).view(1, 1, S, S)
    a = Affine(flip=True, scale=1.0, tx=2.0, ty=-3.0, size=S)
    out = warp_images(image, [a])[0, 0]
    # output (y, x) comes from input (y + 3, S - 1 - (x - 2))
    assert out[5, 10] == image[0, 0, 8, S - 1 - 8]
    labels = torch.arange(S * S).view(1, S, S) % 3
    warped = warp_labels(labels, [a])[0]
    assert warped[5, 10] == labels[0, 8, S - 1 - 8]
    assert (warped[:, :2] == -1).all() and (warped[-3:] == -1).all()  # moved in: ignored


@pytest.mark.parametrize("seed", range(4))
def test_boxes_stay_consistent_with_masks(seed):
    mask = torch.full((1, S, S), 0, dtype=torch.long)
    mask[0, 6:14, 9:21] = 1  # rows 6..13, cols 9..20 -> box x0=9, y0=6, x1=21, y1=14
    targets = [{"boxes": torch.tensor([[9.0, 6.0, 21.0, 14.0]]), "labels": torch.tensor([1])}]
    affine = sample_affines(1, S, AugmentSettings(flip=0.5, translate=0.1), _gen(seed))[0]
    affine = Affine(affine.flip, 1.0, float(round(affine.tx)), float(round(affine.ty)), S)
    box = warp_boxes(targets, [affine])[0]["boxes"][0].tolist()
    ys, xs = np.nonzero(warp_labels(mask, [affine])[0].numpy() == 1)
    assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # exact for integer shifts
    scaled = Affine(affine.flip, 1.3, affine.tx, affine.ty, S)
    box = np.array(warp_boxes(targets, [scaled])[0]["boxes"][0].tolist())
    ys, xs = np.nonzero(warp_labels(mask, [scaled])[0].numpy() == 1)
    np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.0)


def test_boxes_outside_are_dropped_with_their_labels():
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 3.0, 3.0], [10.0, 10.0, 14.0, 14.0]]),
            "labels": torch.tensor([0, 1]),
        }
    ]
    out = warp_boxes(targets, [Affine(False, 1.0, -5.0, 0.0, S)])[0]
    assert out["labels"].tolist() == [1] and out["boxes"].tolist() == [[5.0, 10.0, 9.0, 14.0]]


def test_flip_swaps_paired_landmarks_and_points_leaving_become_nan():
    names = ["superior_anterior", "superior_posterior", "inferior_posterior", "inferior_anterior"]
    pairs = [
        ("superior_anterior", "superior_posterior"),
        ("inferior_anterior", "inferior_posterior"),
    ]
    perm = flip_permutation(names, pairs)
    assert perm == [1, 0, 3, 2]
    pts = torch.tensor([[[4.0, 4.0], [20.0, 5.0], [21.0, 15.0], [5.0, 16.0]]])
    out = warp_points(pts, [Affine(True, 1.0, 0.0, 0.0, S)], perm)[0].tolist()
    # anterior (left) corners stay on the left after the flip: the names swap
    assert out == [[11.0, 5.0], [27.0, 4.0], [26.0, 16.0], [10.0, 15.0]]
    gone = warp_points(pts, [Affine(False, 1.0, 12.0, 0.0, S)])[0]
    assert torch.isnan(gone[1]).all() and torch.isnan(gone[2]).all() and gone[0, 0] == 16.0
    with pytest.raises(MedfleetError, match="two different"):
        flip_permutation(names, [("a", "a")])


def test_augment_batch_respects_task_types():
    lmk = TaskSpec(name="l", type="landmarks", table="l.csv", landmarks=["a", "b"])
    pts = torch.tensor([[[3.0, 4.0], [10.0, 4.0]]])
    batch = Batch("l", torch.zeros(1, 1, S, S), pts, ["c"], [None])
    # no pair covers the task: never flipped, so x stays left of the other point
    flip_only = AugmentSettings(flip=1.0)
    assert torch.equal(augment_batch(batch, lmk, flip_only, _gen()).targets, pts)
    flipped = augment_batch(batch, lmk, flip_only, _gen(), [("a", "b")]).targets
    assert flipped.tolist() == [[[21.0, 4.0], [28.0, 4.0]]]
    reg = TaskSpec(name="r", type="regression", table="r.csv", unit="mm")
    image = torch.zeros(1, 1, S, S)
    image[0, 0, 10:20, 4:8] = 1.0
    rb = Batch("r", image, torch.tensor([5.0]), ["c"], [None])
    out = augment_batch(rb, reg, AugmentSettings(scale=(2.0, 2.0)), _gen())
    assert torch.equal(out.images, image) and out.targets.tolist() == [5.0]  # no scaling


def test_intensity_jitter_is_seeded_and_off_by_default():
    img = torch.randn(3, 1, S, S, generator=_gen(5))
    a = intensity_jitter(img, PRESETS["standard"], _gen(1))
    b = intensity_jitter(img, PRESETS["standard"], _gen(1))
    assert torch.equal(a, b) and not torch.equal(a, img)
    assert intensity_jitter(img, settings_for("none"), _gen(1)) is img
    assert not settings_for("none").geometric and settings_for("light", flip=0.0).flip == 0.0
    with pytest.raises(MedfleetError, match="augment"):
        settings_for("heavy")


def test_cutmix_boxes_follow_the_probability_and_area_range():
    g = torch.Generator().manual_seed(0)
    shares, mixed = [], 0
    for _ in range(200):
        mix = cutmix_boxes(4, 20, 0.5, g)
        if mix is None:
            continue
        assert set(mix.partner.tolist()) == {0, 1, 2, 3}  # a shift: every image once
        assert bool((mix.partner != torch.arange(4)).all())
        for box in mix.boxes:
            if box.any():
                mixed += 1
                rows, cols = box.any(dim=1), box.any(dim=0)
                assert int(box.sum()) == int(rows.sum()) * int(cols.sum())  # a rectangle
                shares.append(float(box.float().mean()))
    assert 0.4 < mixed / 800 < 0.6
    assert min(shares) >= 0.01 and max(shares) <= 0.45
    assert cutmix_boxes(4, 20, 0.0, g) is None


def test_labelled_cutmix_mixes_images_and_masks_alike():
    spec = TaskSpec(name="s", type="segmentation", table="s.csv", labels={0: "b", 1: "a", 2: "c"})
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, S, S).clone()
    masks = torch.arange(4).view(4, 1, 1).expand(4, S, S).clone() % 3
    masks[:, :2] = -1  # ignored rows stay ignored wherever they land
    batch = Batch("s", images, masks, ["a", "b", "c", "d"], [None] * 4)
    out = augment_batch(batch, spec, PRESETS["none"], _gen(1), cutmix=1.0)
    mix = cutmix_boxes(4, S, 1.0, _gen(1))  # the same draws
    assert mix is not None
    for i in range(4):
        j = int(mix.partner[i])
        inside = mix.boxes[i]
        assert bool(inside.any()) and not bool(inside.all())
        assert torch.equal(out.images[i, 0][inside], images[j, 0][inside])
        assert torch.equal(out.images[i, 0][~inside], images[i, 0][~inside])
        # the mask follows the pixel's source image
        assert torch.equal(out.targets[i][inside], masks[j][inside])
        assert torch.equal(out.targets[i][~inside], masks[i][~inside])
    # off by default, and never on classification batches
    same = augment_batch(batch, spec, PRESETS["none"], _gen(1))
    assert torch.equal(same.images, images) and torch.equal(same.targets, masks)
    cls = TaskSpec(name="c", type="classification", table="c.csv", classes=["x", "y"])
    labels = torch.tensor([0, 1, 0, 1])
    kept = augment_batch(Batch("c", images, labels, ["a"] * 4, [None] * 4), cls,
                         PRESETS["none"], _gen(1), cutmix=1.0)  # fmt: skip
    assert torch.equal(kept.images, images) and torch.equal(kept.targets, labels)


def test_rotation_hand_computed_and_consistent_with_the_image_warp():
    c = (S - 1) / 2
    quarter = Affine(flip=False, scale=1.0, tx=0.0, ty=0.0, size=S, angle=np.pi / 2)
    # +x turns towards +y: (c + 4, c) -> (c, c + 4)
    np.testing.assert_allclose(quarter.points(np.array([[c + 4, c]])), [[c, c + 4]], atol=1e-12)
    # a bright bar moves where its mapped box says, and the box grows to hold the corners
    img = torch.zeros(1, 1, S, S)
    img[0, 0, 10:14, 20:30] = 1.0
    out = warp_images(img, [quarter])[0, 0].numpy() > 0.5
    ys, xs = np.nonzero(out)
    box = quarter.boxes(np.array([[20.0, 10.0, 30.0, 14.0]]))[0]
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == pytest.approx(box.tolist())
    tilted = Affine(flip=True, scale=1.3, tx=2.0, ty=-1.0, size=S, angle=0.4)
    pts = np.random.default_rng(0).uniform(0, S - 1, size=(6, 2))
    np.testing.assert_allclose(tilted.inverse_points(tilted.points(pts)), pts, atol=1e-9)
    corners = tilted.points(np.array([[4.5, 5.5], [9.5, 5.5], [4.5, 8.5], [9.5, 8.5]]))
    expected = [*(corners.min(axis=0) + 0.5), *(corners.max(axis=0) + 0.5)]
    np.testing.assert_allclose(tilted.boxes(np.array([[5.0, 6.0, 10.0, 9.0]]))[0], expected)


def test_rotation_draws_keep_the_random_stream_of_runs_without_it():
    plain = sample_affines(5, S, PRESETS["standard"], _gen(3))
    with_turns = sample_affines(5, S, PRESETS["strong"], _gen(3))
    assert all(a.angle == 0.0 for a in plain)
    draws = torch.rand((5, 4), generator=_gen(3), dtype=torch.float64).numpy()
    assert [a.flip for a in plain] == [bool(u < 0.5) for u in draws[:, 0]]
    assert [a.flip for a in with_turns] == [a.flip for a in plain]  # same first draws
    angles = np.array([a.angle for a in with_turns])
    assert np.all(np.abs(angles) <= np.radians(30)) and np.any(angles != 0)
