"""A length target in mm is learned in model-grid pixels and scaled back by each image's spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medfleet.data.io import write_png
from medfleet.tables import write_table
from medfleet.tasks import Manifest, Site, TaskSpec
from medfleet.train.datasets import TaskDataset, regression_stats, scales_with_spacing
from medfleet.train.predict import to_original

SIZE = 32
# (case, image shape, spacing mm, value): the model grid is 32 px on the longer side, so
# one model pixel covers spacing * longer side / 32 mm.
CASES = [
    ("a", (64, 32), 0.5, 180.0),  # 0.5 * 64 / 32 = 1.0 mm per model pixel
    ("b", (64, 32), 0.2, 90.0),  # 0.4 mm per model pixel
    ("c", (30, 30), 0.2, 12.3),  # 0.1875 mm per model pixel
]
MM_PER_MODEL_PIXEL = {"a": 1.0, "b": 0.4, "c": 0.1875}


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    rng = np.random.default_rng(0)
    rows = []
    for case, shape, spacing, value in CASES:
        write_png(tmp_path / f"{case}.png", rng.integers(0, 255, shape).astype(np.uint8))
        rows.append(
            {
                "case_id": case,
                "image": f"{case}.png",
                "site": "s",
                "split": "train",
                "spacing": f"{spacing},{spacing}",
                "value": value,
            }
        )
    write_table(tmp_path / "len.csv", rows)
    write_table(tmp_path / "vol.csv", rows)
    tasks = [
        TaskSpec(name="len", type="regression", table="len.csv", unit="mm"),
        TaskSpec(name="vol", type="regression", table="vol.csv", unit="ml"),
    ]
    path = Manifest(name="m", sites=[Site(name="s")], tasks=tasks).save(tmp_path / "m.yaml")
    return Manifest.load(path)


def test_only_2d_lengths_in_mm_are_scaled():
    assert scales_with_spacing(TaskSpec(name="a", type="regression", table="a.csv", unit="mm"))
    assert not scales_with_spacing(TaskSpec(name="b", type="regression", table="b.csv", unit="ml"))
    assert not scales_with_spacing(
        TaskSpec(name="c", type="regression", table="c.csv", unit="mm", dim=3)
    )


def test_length_target_is_in_model_pixels_and_round_trips_exactly(manifest):
    ds = TaskDataset(manifest, "len", ("train",), SIZE)
    spec = manifest.task("len")
    for i, (case, _, spacing, value) in enumerate(CASES):
        sample = ds[i]
        assert sample.target == pytest.approx(value / MM_PER_MODEL_PIXEL[case], rel=1e-12)
        back = to_original(spec, sample.target, sample.geometry, case, sample.spacing)
        assert back.value == pytest.approx(value, rel=1e-12)
        assert sample.spacing == (spacing, spacing)
    pixels = np.array([v / MM_PER_MODEL_PIXEL[c] for c, _, _, v in CASES])
    assert regression_stats(ds) == pytest.approx((pixels.mean(), pixels.std()))


def test_a_constant_pixel_length_gives_mm_proportional_to_spacing(manifest):
    ds = TaskDataset(manifest, "len", ("train",), SIZE)
    spec = manifest.task("len")
    mm = [to_original(spec, 50.0, ds[i].geometry, c, ds[i].spacing).value for i, (c, *_) in
          enumerate(CASES)]  # fmt: skip
    assert mm == pytest.approx([50.0, 20.0, 9.375])
    assert mm[0] / mm[1] == pytest.approx(0.5 / 0.2)  # same shape: ratio of the spacings


def test_other_units_are_learned_as_they_are(manifest):
    ds = TaskDataset(manifest, "vol", ("train",), SIZE)
    spec = manifest.task("vol")
    for i, (case, _, _, value) in enumerate(CASES):
        assert ds[i].target == value
        assert to_original(spec, value, ds[i].geometry, case, ds[i].spacing).value == value
    assert regression_stats(ds) == pytest.approx(
        (np.mean([v for *_, v in CASES]), np.std([v for *_, v in CASES]))
    )
