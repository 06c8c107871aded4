"""Surface metrics against MONAI, MedPy and DeepMind surface-distance in matched conventions.

Oracle conventions reproduced here (see docs/metrics.md):

* MedPy ``hd``/``hd95``/``assd``: border voxels (erosion with connectivity 1,
  image edge = background), float64 EDT, pooled linear percentile, pooled mean.
* MONAI ``compute_hausdorff_distance``/``compute_average_surface_distance``/
  ``compute_surface_dice``: same border voxels, float32 results, max of the
  directed linear percentiles, pooled mean; ``use_subvoxels=True`` switches NSD
  to DeepMind's corner surface elements.
* DeepMind ``surface_distance``: corner-grid surface elements weighted by area,
  area-weighted nearest-rank percentile.
"""

from __future__ import annotations

import warnings

import medpy.metric.binary as medpy_binary
import monai.metrics as monai_metrics
import numpy as np
import pytest
import surface_distance
import torch
from scipy import ndimage

from medfleet.evaluate.metrics.surface import surface_distances, surface_metrics

pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy.*:FutureWarning")

FLOAT32_TOL = 1e-4  # MONAI returns float32
EXACT_TOL = 1e-6


def random_blob(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 1.5) -> np.ndarray:
    """A smooth random shape, possibly several components, possibly touching the image edge."""
    noise = rng.random(shape)
    smooth = ndimage.gaussian_filter(noise, sigma)
    level = np.quantile(smooth, rng.uniform(0.45, 0.8))
    return smooth > level


def perturbed(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A prediction-like perturbation: shift, dilate or erode, plus a few stray voxels."""
    out = np.roll(
        mask, tuple(int(v) for v in rng.integers(-2, 3, mask.ndim)), axis=tuple(range(mask.ndim))
    )
    op = rng.integers(3)
    if op == 1:
        out = ndimage.binary_dilation(out)
    elif op == 2:
        out = ndimage.binary_erosion(out) | (out & (rng.random(mask.shape) < 0.3))
    strays = rng.random(mask.shape) < 0.002
    out = out | strays
    if not out.any():
        out.flat[0] = True
    return out


def case(seed: int, ndim: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(12, 22 if ndim == 3 else 48, ndim))
    gt = random_blob(rng, shape)
    if not gt.any():
        gt[tuple(s // 2 for s in shape)] = True
    pred = perturbed(rng, gt) if seed % 3 else random_blob(rng, shape)
    if not pred.any():
        pred[0, 0] = True
    spacing = tuple(float(v) for v in rng.uniform(0.4, 3.0, ndim))
    return pred, gt, spacing


CASES = [(seed, ndim) for ndim in (2, 3) for seed in range(10)]


def monai_inputs(pred: np.ndarray, gt: np.ndarray):
    return torch.from_numpy(pred[None, None].copy()), torch.from_numpy(gt[None, None].copy())


@pytest.mark.parametrize(("seed", "ndim"), CASES)
def test_matches_medpy_pooled_border(seed: int, ndim: int) -> None:
    pred, gt, spacing = case(seed, ndim)
    r = surface_metrics(
        pred, gt, spacing, metrics=("hd", "hd95", "assd"), percentile_method="pooled"
    )
    assert r.value("hd", 1) == pytest.approx(medpy_binary.hd(pred, gt, spacing), abs=EXACT_TOL)
    assert r.value("hd95", 1) == pytest.approx(medpy_binary.hd95(pred, gt, spacing), abs=EXACT_TOL)
    assert r.value("assd", 1) == pytest.approx(medpy_binary.assd(pred, gt, spacing), abs=EXACT_TOL)


@pytest.mark.parametrize("connectivity", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_medpy_higher_connectivity(seed: int, connectivity: int) -> None:
    pred, gt, spacing = case(seed + 100, 3)
    r = surface_metrics(
        pred,
        gt,
        spacing,
        metrics=("hd", "hd95", "assd"),
        percentile_method="pooled",
        connectivity=connectivity,
    )
    assert r.value("hd", 1) == pytest.approx(
        medpy_binary.hd(pred, gt, spacing, connectivity), abs=EXACT_TOL
    )
    assert r.value("hd95", 1) == pytest.approx(
        medpy_binary.hd95(pred, gt, spacing, connectivity), abs=EXACT_TOL
    )
    assert r.value("assd", 1) == pytest.approx(
        medpy_binary.assd(pred, gt, spacing, connectivity), abs=EXACT_TOL
    )


@pytest.mark.parametrize(("seed", "ndim"), CASES)
def test_matches_monai_max_directed_border(seed: int, ndim: int) -> None:
    pred, gt, spacing = case(seed, ndim)
    r = surface_metrics(
        pred,
        gt,
        spacing,
        metrics=("hd", "hd95", "hd99", "assd"),
        nsd_tolerances=(1.0, 2.0),
        percentile_method="max-directed",
    )
    p, g = monai_inputs(pred, gt)
    hd = monai_metrics.compute_hausdorff_distance(p, g, include_background=True, spacing=spacing)
    hd95 = monai_metrics.compute_hausdorff_distance(
        p, g, include_background=True, percentile=95, spacing=spacing
    )
    hd99 = monai_metrics.compute_hausdorff_distance(
        p, g, include_background=True, percentile=99, spacing=spacing
    )
    assd = monai_metrics.compute_average_surface_distance(
        p, g, include_background=True, symmetric=True, spacing=spacing
    )
    assert r.value("hd", 1) == pytest.approx(hd.item(), abs=FLOAT32_TOL)
    assert r.value("hd95", 1) == pytest.approx(hd95.item(), abs=FLOAT32_TOL)
    assert r.value("hd99", 1) == pytest.approx(hd99.item(), abs=FLOAT32_TOL)
    assert r.value("assd", 1) == pytest.approx(assd.item(), abs=FLOAT32_TOL)
    nsd = surface_metrics(pred, gt, spacing, metrics=("nsd",), nsd_tolerances=(1.0, 2.0))
    for tau in (1.0, 2.0):
        expected = monai_metrics.compute_surface_dice(
            p, g, [tau], include_background=True, spacing=spacing
        )
        assert nsd.value(f"nsd_{tau:g}mm", 1) == pytest.approx(expected.item(), abs=EXACT_TOL)


@pytest.mark.parametrize(("seed", "ndim"), CASES[::2])
def test_matches_monai_subvoxel_nsd(seed: int, ndim: int) -> None:
    pred, gt, spacing = case(seed, ndim)
    p, g = monai_inputs(pred, gt)
    r = surface_metrics(
        pred, gt, spacing, metrics=("nsd",), nsd_tolerances=(1.5,), surface="corner-area"
    )
    expected = monai_metrics.compute_surface_dice(
        p, g, [1.5], include_background=True, spacing=spacing, use_subvoxels=True
    )
    assert r.value("nsd_1.5mm", 1) == pytest.approx(expected.item(), abs=FLOAT32_TOL)


def deepmind(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    d = surface_distance.compute_surface_distances(gt, pred, spacing)
    gt_to_pred, pred_to_gt = surface_distance.compute_average_surface_distance(d)
    areas = np.concatenate([d["surfel_areas_gt"], d["surfel_areas_pred"]])
    dists = np.concatenate([d["distances_gt_to_pred"], d["distances_pred_to_gt"]])
    return {
        "hd": surface_distance.compute_robust_hausdorff(d, 100),
        "hd95": surface_distance.compute_robust_hausdorff(d, 95),
        "hd90": surface_distance.compute_robust_hausdorff(d, 90),
        "masd": 0.5 * (gt_to_pred + pred_to_gt),
        "assd": float(np.sum(areas * dists) / np.sum(areas)),
        "nsd_1mm": surface_distance.compute_surface_dice_at_tolerance(d, 1.0),
        "nsd_2.5mm": surface_distance.compute_surface_dice_at_tolerance(d, 2.5),
    }


@pytest.mark.parametrize(("seed", "ndim"), CASES)
def test_matches_deepmind_corner_area(seed: int, ndim: int) -> None:
    pred, gt, spacing = case(seed, ndim)
    r = surface_metrics(
        pred,
        gt,
        spacing,
        metrics=("hd", "hd95", "hd90", "assd", "masd", "nsd"),
        nsd_tolerances=(1.0, 2.5),
        surface="corner-area",
        percentile_method="area-weighted",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = deepmind(pred, gt, spacing)
    for name, value in expected.items():
        assert r.value(name, 1) == pytest.approx(value, abs=EXACT_TOL), name


@pytest.mark.parametrize("seed", [0, 1])
def test_deepmind_distances_and_areas_are_reproduced(seed: int) -> None:
    pred, gt, spacing = case(seed + 7, 3)
    d = surface_distances(pred, gt, spacing, surface="corner-area")[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = surface_distance.compute_surface_distances(gt, pred, spacing)
    # DeepMind sorts by (distance, area); compare the same multisets.
    mine = sorted(zip(d.gt_to_pred.round(9), d.gt_weights.round(9), strict=True))
    theirs = sorted(
        zip(
            ref["distances_gt_to_pred"].round(9),
            ref["surfel_areas_gt"].round(9),
            strict=True,
        )
    )
    assert mine == theirs
    assert d.pred_weights.sum() == pytest.approx(ref["surfel_areas_pred"].sum(), rel=1e-12)


def test_deepmind_one_empty_gives_infinite_distances(monkeypatch: pytest.MonkeyPatch) -> None:
    # surface-distance still spells np.Inf, which numpy 2 removed.
    monkeypatch.setattr(np, "Inf", np.inf, raising=False)
    gt = np.zeros((9, 9, 9), bool)
    gt[2:6, 3:7, 2:5] = True
    pred = np.zeros_like(gt)
    spacing = (1.0, 0.5, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = surface_distance.compute_surface_distances(gt, pred, spacing)
    mine = surface_distances(pred, gt, spacing, surface="corner-area")[1]
    assert mine.status == "pred_empty"
    assert np.all(np.isinf(mine.gt_to_pred)) and np.all(np.isinf(ref["distances_gt_to_pred"]))
    assert mine.gt_to_pred.size == ref["distances_gt_to_pred"].size
    assert mine.gt_weights.sum() == pytest.approx(ref["surfel_areas_gt"].sum())
    r = surface_metrics(pred, gt, spacing, metrics=("hd", "nsd"), surface="corner-area")
    assert r.value("hd", 1) == surface_distance.compute_robust_hausdorff(ref, 100) == np.inf
    assert r.value("nsd_1mm", 1) == surface_distance.compute_surface_dice_at_tolerance(ref, 1.0)


def test_monai_one_empty_conventions_are_reproduced() -> None:
    gt = np.zeros((10, 10), bool)
    gt[2:6, 3:7] = True
    pred = np.zeros_like(gt)
    p, g = monai_inputs(pred, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = monai_metrics.compute_hausdorff_distance(p, g, include_background=True).item()
        nsd = monai_metrics.compute_surface_dice(p, g, [1.0], include_background=True).item()
        both_hd = monai_metrics.compute_hausdorff_distance(p, p, include_background=True).item()
        both_nsd = monai_metrics.compute_surface_dice(p, p, [1.0], include_background=True).item()
    r = surface_metrics(pred, gt, labels=[1], metrics=("hd", "nsd"))
    assert hd == r.value("hd", 1) == np.inf
    assert nsd == r.value("nsd_1mm", 1) == 0.0
    both = surface_metrics(pred, pred, labels=[1], metrics=("hd", "nsd"))
    assert np.isnan(both_hd) and np.isnan(both.value("hd", 1))
    assert np.isnan(both_nsd) and np.isnan(both.value("nsd_1mm", 1))


def test_label_map_matches_per_label_oracles() -> None:
    rng = np.random.default_rng(5)
    shape = (18, 20, 16)
    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for label in (1, 2, 4):
        gt[random_blob(rng, shape, sigma=2.0) & (gt == 0)] = label
        pred[perturbed(rng, gt == label) & (pred == 0)] = label
    spacing = (1.7, 0.6, 0.9)
    r = surface_metrics(
        pred, gt, spacing, metrics=("hd", "hd95", "assd"), percentile_method="pooled"
    )
    assert r.labels == (1, 2, 4)
    for label in (1, 2, 4):
        p, g = pred == label, gt == label
        assert r.value("hd", label) == pytest.approx(medpy_binary.hd(p, g, spacing), abs=EXACT_TOL)
        assert r.value("hd95", label) == pytest.approx(
            medpy_binary.hd95(p, g, spacing), abs=EXACT_TOL
        )
        assert r.value("assd", label) == pytest.approx(
            medpy_binary.assd(p, g, spacing), abs=EXACT_TOL
        )


@pytest.mark.parametrize("seed", [3, 4])
def test_many_labels_use_one_pass_boxes_and_match(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (16, 18, 14)
    gt = np.zeros(shape, np.int32)
    for label in range(1, 8):
        gt[random_blob(rng, shape, sigma=1.0) & (gt == 0)] = label * 3
    pred = np.where(rng.random(shape) < 0.9, gt, np.roll(gt, 1, axis=0))
    spacing = (1.1, 0.7, 2.3)
    r = surface_metrics(
        pred, gt, spacing, metrics=("hd", "hd95", "assd"), percentile_method="pooled"
    )
    assert r.labels == tuple(sorted(set(np.unique(gt)) - {0}))
    for label in r.labels:
        p, g = pred == label, gt == label
        assert r.value("hd", label) == pytest.approx(medpy_binary.hd(p, g, spacing), abs=EXACT_TOL)
        assert r.value("assd", label) == pytest.approx(
            medpy_binary.assd(p, g, spacing), abs=EXACT_TOL
        )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dense_transform_path_matches_medpy(seed: int) -> None:
    """The EDT path (float32 transform) agrees with MedPy to float32 precision."""
    rng = np.random.default_rng(seed)
    shape = (14, 17, 15)
    gt = rng.random(shape) < 0.3  # speckle: every voxel is a border voxel
    pred = perturbed(rng, random_blob(rng, shape))
    spacing = tuple(float(v) for v in rng.uniform(0.5, 2.0, 3))
    r = surface_metrics(
        pred, gt, spacing, metrics=("hd", "hd95", "assd"), percentile_method="pooled", method="edt"
    )
    assert r.value("hd", 1) == pytest.approx(medpy_binary.hd(pred, gt, spacing), rel=1e-6)
    assert r.value("hd95", 1) == pytest.approx(medpy_binary.hd95(pred, gt, spacing), rel=1e-6)
    assert r.value("assd", 1) == pytest.approx(medpy_binary.assd(pred, gt, spacing), rel=1e-6)


@pytest.mark.data
def test_real_polyp_masks_match_medpy_and_deepmind(shared_data) -> None:
    from PIL import Image

    masks = sorted((shared_data / "kvasir_seg_5" / "masks").glob("*.jpg"))
    if not masks:
        pytest.skip("kvasir_seg_5 masks not found")
    rng = np.random.default_rng(0)
    for path in masks[:3]:
        gt = np.asarray(Image.open(path).convert("L")) > 127
        pred = perturbed(rng, gt)
        spacing = (0.3, 0.25)
        pooled = surface_metrics(
            pred, gt, spacing, metrics=("hd", "hd95", "assd"), percentile_method="pooled"
        )
        assert pooled.value("hd", 1) == pytest.approx(
            medpy_binary.hd(pred, gt, spacing), abs=EXACT_TOL
        ), path.name
        assert pooled.value("hd95", 1) == pytest.approx(
            medpy_binary.hd95(pred, gt, spacing), abs=EXACT_TOL
        ), path.name
        assert pooled.value("assd", 1) == pytest.approx(
            medpy_binary.assd(pred, gt, spacing), abs=EXACT_TOL
        ), path.name
        corner = surface_metrics(
            pred,
            gt,
            spacing,
            metrics=("hd95", "masd", "nsd"),
            surface="corner-area",
            percentile_method="area-weighted",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            expected = deepmind(pred, gt, spacing)
        for name in ("hd95", "masd", "nsd_1mm"):
            assert corner.value(name, 1) == pytest.approx(expected[name], abs=EXACT_TOL), name
