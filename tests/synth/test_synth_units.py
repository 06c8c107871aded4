"""Captions, layouts, quality metrics and reader scoring against hand-computed oracles."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medfleet.errors import MedfleetError
from medfleet.synth.captions import WordVocab, make_caption
from medfleet.synth.pairs import box_condition, labels_from_condition, mask_condition, scale_boxes
from medfleet.synth.quality import (
    diversity,
    fid_from_features,
    frechet_distance,
    mae,
    ms_ssim,
    psnr,
)
from medfleet.synth.reader import score_readers, wilson_interval
from medfleet.tables import Box
from medfleet.tasks import TaskSpec

DET = TaskSpec(name="d", type="detection", table="d.csv", classes=["cyst", "nodule"])
SEG = TaskSpec(name="s", type="segmentation", table="s.csv", labels={0: "bg", 1: "organ", 2: "x"})


def test_captions_from_template_column_and_errors():
    row = {"case_id": "c1", "boxes": "nodule:0,0,2,2;cyst:3,3,5,5", "site": "site_b",
           "density": "high", "caption": " given text "}  # fmt: skip
    assert make_caption(DET, row, template="{objects} {density} at {site}") == (
        "1 nodule 1 cyst high at site_b"
    )
    assert make_caption(DET, row, column="caption") == "given text"
    assert make_caption(SEG, {"site": "a"}) == "organ x at a"
    with pytest.raises(MedfleetError, match="age_band"):
        make_caption(DET, row, template="{age_band}")
    with pytest.raises(MedfleetError, match="caption column 'text'"):
        make_caption(DET, row, column="text")


def test_vocab_is_deterministic_and_round_trips():
    a = WordVocab.build(["b a", "c a"], max_words=5)
    b = WordVocab.build(["c a", "b a"], max_words=5)
    assert a.tokens == b.tokens == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c"]
    assert a.encode("a b c d e f") == [1, 4, 5, 6, 2]  # cut to max_words
    assert a.encode("") == [1, 2, 0, 0, 0]
    assert WordVocab.from_dict(a.to_dict()).encode("c") == a.encode("c")


def test_boxes_become_filled_class_channels_on_the_model_grid():
    boxes = scale_boxes([Box((8, 4, 16, 12), "nodule"), Box((0, 0, 3, 3), "cyst")], (32, 32), 8)
    assert [b.coords for b in boxes] == [(2, 1, 4, 3), (0, 0, 1, 1)]
    cond = box_condition(boxes, ["cyst", "nodule"], 8)
    assert cond.shape == (2, 8, 8)
    assert cond[1].sum() == 4 and cond[1, 1:3, 2:4].all()
    assert cond[0].sum() == 1 and cond[0, 0, 0] == 1


def test_mask_channels_round_trip_to_label_map():
    labels = np.array([[0, 1, 2], [2, 1, 0]])
    cond = mask_condition(labels, [1, 2])
    assert cond.shape == (2, 2, 3)
    np.testing.assert_array_equal(labels_from_condition(cond, [1, 2]), labels)


def test_frechet_distance_matches_closed_form_and_scipy_sqrtm():
    from scipy import linalg

    # diagonal covariances: |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 4 + ((1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    # full covariances against a direct scipy computation
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = m1 @ m1.T + np.eye(4), m2 @ m2.T + np.eye(4)
    root = linalg.sqrtm(s1)
    direct = np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(root @ s2 @ root)))
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(direct, rel=1e-6)


def test_fid_of_samples_approaches_the_gaussians_distance():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, size=(20000, 2))
    y = rng.normal(0.5, 2.0, size=(20000, 2))
    truth = 2 * 0.5**2 + 2 * (1 - 2) ** 2  # 2.5
    assert fid_from_features(x, y) == pytest.approx(truth, abs=0.08)
    with pytest.raises(MedfleetError, match="two images"):
        fid_from_features(x[:1], y)


def test_ms_ssim_identity_symmetry_and_noise_order():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64))
    assert ms_ssim(img, img) == pytest.approx(1.0)
    light = np.clip(img + 0.05 * rng.normal(size=img.shape), 0, 1)
    heavy = np.clip(img + 0.3 * rng.normal(size=img.shape), 0, 1)
    assert ms_ssim(img, light) == pytest.approx(ms_ssim(light, img))
    assert 1.0 > ms_ssim(img, light) > ms_ssim(img, heavy) > 0.0
    assert diversity([img, light, heavy], pairs=20) < 1.0
    with pytest.raises(MedfleetError, match="11 pixels"):
        ms_ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_ms_ssim_matches_monai():
    import monai.metrics as metrics
    import torch

    from medfleet.synth.quality import MS_SSIM_WEIGHTS

    rng = np.random.default_rng(0)
    a = rng.random((128, 128))
    b = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1)
    weights = np.array(MS_SSIM_WEIGHTS[:4]) / sum(MS_SSIM_WEIGHTS[:4])  # 4 scales fit 128 px
    metric = metrics.MultiScaleSSIMMetric(
        spatial_dims=2, data_range=1.0, kernel_type="gaussian", kernel_size=11,
        kernel_sigma=1.5, weights=tuple(weights),
    )  # fmt: skip
    to = lambda x: torch.tensor(x, dtype=torch.float64)[None, None]  # noqa: E731
    assert ms_ssim(a, b) == pytest.approx(float(metric(to(b), to(a))), abs=1e-5)


@pytest.mark.parametrize("shape", [(44, 50), (3, 64, 64), (180, 176)])
def test_ms_ssim_matches_monai_per_channel_at_three_and_five_scales(shape):
    import torch
    from monai.metrics.regression import compute_ms_ssim

    from medfleet.synth.quality import MS_SSIM_WEIGHTS

    rng = np.random.default_rng(1)
    a = rng.random(shape)
    b = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1)
    scales = 5 if min(shape[-2:]) >= 176 else 3
    weights = np.array(MS_SSIM_WEIGHTS[:scales]) / sum(MS_SSIM_WEIGHTS[:scales])
    # channels as a batch: MONAI would mix the channels before combining the scales
    to = lambda x: torch.tensor(x, dtype=torch.float64).reshape(-1, 1, *shape[-2:])  # noqa: E731
    ref = compute_ms_ssim(to(b), to(a), spatial_dims=2, weights=tuple(weights)).mean()
    assert ms_ssim(a, b) == pytest.approx(float(ref), abs=1e-5)


def test_psnr_and_mae_by_hand():
    a, b = np.zeros((4, 4)), np.full((4, 4), 0.5)
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.25))
    assert psnr(a, a) == math.inf
    assert mae(a, b) == 0.5


def test_reader_scores_by_hand(tmp_path: Path):
    key = tmp_path / "key.csv"
    key.write_text("image,truth\na,real\nb,synthetic\nc,real\nd,synthetic\n")
    r1 = tmp_path / "r1.csv"
    r1.write_text("image,reader,call,confidence\na,r1,real,5\nb,r1,synthetic,4\n"
                  "c,r1,synthetic,2\nd,r1,synthetic,3\n")  # fmt: skip
    r2 = tmp_path / "r2.csv"
    r2.write_text("image,reader,call,confidence\na,r2,synthetic,1\nb,r2,real,2\nc,r2,,\n"
                  "d,r2,synthetic,\n")  # fmt: skip
    result = score_readers(key, [r1, r2])
    one, two, overall = result["readers"]["r1"], result["readers"]["r2"], result["overall"]
    assert one["accuracy"] == 0.75 and one["n"] == 4
    assert one["sensitivity_synthetic"] == 1.0 and one["specificity_real"] == 0.5
    assert one["confidence_correct"] == pytest.approx(4.0) and one["confidence_wrong"] == 2.0
    assert two["accuracy"] == pytest.approx(1 / 3) and two["n"] == 3
    assert result["unanswered"] == 1
    assert overall["accuracy"] == pytest.approx(4 / 7)
    assert overall["p_value_vs_chance"] == pytest.approx(1.0)  # 4 of 7 vs 0.5
    low, high = wilson_interval(4, 7)
    assert (overall["accuracy_low"], overall["accuracy_high"]) == (low, high)
    bad = tmp_path / "bad.csv"
    bad.write_text("image,reader,call,confidence\na,r3,maybe,3\n")
    with pytest.raises(MedfleetError, match=r"line 2.*maybe"):
        score_readers(key, [bad])


def test_wilson_interval_matches_the_formula():
    # p = 0.8, n = 50, z = 1.96: centre (0.8 + 0.0384) / 1.0768, half-width by hand
    z = 1.959964
    centre = (0.8 + z**2 / 100) / (1 + z**2 / 50)
    half = z * math.sqrt(0.8 * 0.2 / 50 + z**2 / (4 * 2500)) / (1 + z**2 / 50)
    low, high = wilson_interval(40, 50)
    assert low == pytest.approx(centre - half) and high == pytest.approx(centre + half)
    assert 0.66 < low < 0.68 and 0.88 < high < 0.90


def test_wilson_interval_is_scipys_at_the_coverage_of_z():
    from scipy.stats import binomtest

    for k, n in [(0, 5), (3, 7), (5, 5), (40, 50)]:
        ref = binomtest(k, n).proportion_ci(0.99, method="wilson")
        assert wilson_interval(k, n, z=2.5758293035489004) == pytest.approx(
            (ref.low, ref.high), rel=1e-12, abs=1e-15
        )
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
