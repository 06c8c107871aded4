"""The ControlNet really uses the mask: a tiny model trained on phantoms moves intensity
inside the conditioning mask in the direction of the training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_generated_intensity_follows_the_mask_like_the_training_data(tmp_path: Path):
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    from medfleet.synth.config import SampleConfig, SynthConfig
    from medfleet.synth.sample import generate, plan_layouts
    from medfleet.synth.train import load_pairs, train_synth
    from medfleet.tasks import Manifest

    path = generate_phantoms(
        tmp_path / "ph", PhantomConfig(tasks=["organ_lesion_seg"]), sites=2, cases_per_site=12,
        size=32,
    )  # fmt: skip
    manifest = Manifest.load(path)
    config = SynthConfig(
        image_size=16, vae_steps=60, ldm_steps=0, controlnet_steps=120, freeze_ldm=False,
        lr=5e-3, threads=1, seed=0,
    )  # fmt: skip
    model_dir = tmp_path / "model"
    result = train_synth(manifest, "organ_lesion_seg", model_dir, config)
    model = result.model

    # direction in the training data: organ (channel 0) brighter than outside any structure
    pairs = load_pairs(manifest, "organ_lesion_seg", config)
    inside = np.mean([p.image[0][p.condition[0] > 0.5].mean() for p in pairs])
    outside = np.mean([p.image[0][p.condition.max(0) < 0.5].mean() for p in pairs])
    sign = np.sign(inside - outside)
    assert sign != 0

    # same noise, swapped masks: only the mask differs between the two images of a pair
    conds, _, caps, _, _ = plan_layouts(model, model_dir, 12, seed=0)
    swapped = np.roll(conds, 1, axis=0)
    cfg = SampleConfig(steps=15, sampler="ddim", guidance=1.0, seed=3)
    with_own = generate(model, conds, caps, cfg)[:, 0]
    with_other = generate(model, swapped, caps, cfg)[:, 0]
    region = (conds[:, 0] > 0.5) & (swapped.max(1) < 0.5)  # organ in own mask, nothing in other
    assert region.sum() > 50
    shift = float((with_own - with_other)[region].mean())
    assert np.sign(shift) == sign, (shift, inside, outside)
    # and the shift is a real effect, not noise: compare with the background of both masks
    neither = (conds.max(1) < 0.5) & (swapped.max(1) < 0.5)
    background_shift = float(np.abs((with_own - with_other)[neither]).mean())
    assert abs(shift) > 0.01 and abs(shift) > 1.5 * background_shift, (shift, background_shift)
    # with the ControlNet switched off, the mask no longer matters
    off = SampleConfig(steps=15, sampler="ddim", guidance=1.0, seed=3, controlnet_scale=0.0)
    a = generate(model, conds[:4], caps[:4], off)
    b = generate(model, swapped[:4], caps[:4], off)
    np.testing.assert_allclose(a, b, atol=1e-5)
