"""Classifier-free checks that site shifts and subgroup effects are in the data as configured.

Each check measures plain image statistics (mean, standard deviation, high-frequency
energy, object size in pixels) per site or per subgroup and compares them with the
configuration: the configured direction must show, a configured "no effect" must not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medfleet.data.io import read_image
from medfleet.data.phantoms import PhantomConfig, SiteProfile, SubgroupEffects, generate_phantoms
from medfleet.tables import parse_spacing, read_table
from medfleet.tasks import Manifest

REFERENCE = {"vendor": "Ref", "gain": 1.0, "gamma": 1.0, "speckle": 0.1, "noise": 0.02, "blur": 0.6}
QUIET = {"vendor": "Quiet", "speckle": 0.1, "noise": 0.0, "blur": 0.4}


def hf_energy(image: np.ndarray) -> float:
    """Mean squared Laplacian, computed here independently of the generator's helper."""
    lap = (
        -4 * image[1:-1, 1:-1]
        + image[:-2, 1:-1]
        + image[2:, 1:-1]
        + image[1:-1, :-2]
        + image[1:-1, 2:]
    )
    return float(np.mean(lap**2))


def site_stats(manifest: Manifest, task: str) -> dict[str, dict[str, float]]:
    per_site: dict[str, list[tuple[float, float, float]]] = {}
    for row in read_table(manifest.table_path(task)):
        image = (
            np.asarray(read_image(manifest.resolve(row["image"])).array, dtype=np.float64) / 255.0
        )
        per_site.setdefault(row["site"], []).append((image.mean(), image.std(), hf_energy(image)))
    return {
        site: dict(zip(("mean", "std", "hf"), np.mean(values, axis=0).tolist(), strict=True))
        for site, values in per_site.items()
    }


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    sites = [
        SiteProfile(name="ref", **REFERENCE),
        SiteProfile(name="twin", **REFERENCE),  # configured identical: no shift expected
        SiteProfile(name="bright", **{**REFERENCE, "gain": 1.3}),
        SiteProfile(name="dark_gamma", **{**REFERENCE, "gamma": 1.4}),
        SiteProfile(name="noisy", **{**REFERENCE, "noise": 0.06}),
        SiteProfile(name="coarse", **{**REFERENCE, "spacing_scale": 1.25}),
        SiteProfile(name="quiet", **QUIET),
        SiteProfile(name="quiet_blurred", **{**QUIET, "blur": 1.8}),
    ]
    config = PhantomConfig(
        sites=sites, subgroups=SubgroupEffects.none(), tasks=["lesion_cls", "head_circumference"]
    )
    out = tmp_path_factory.mktemp("shifted")
    return Manifest.load(generate_phantoms(out, config, cases_per_site=24, seed=21))


def test_site_parameters_are_recorded_in_the_manifest(shifted: Manifest) -> None:
    entry = shifted.sites[shifted.site_names.index("bright")].model_dump()
    assert entry["gain"] == 1.3 and entry["vendor"] == "Ref"
    coarse = shifted.sites[shifted.site_names.index("coarse")].model_dump()
    ref = shifted.sites[shifted.site_names.index("ref")].model_dump()
    assert coarse["spacing_mm"]["head_circumference"][0] == pytest.approx(
        1.25 * ref["spacing_mm"]["head_circumference"][0], abs=1e-4
    )


def test_gain_and_gamma_move_the_mean_intensity_as_configured(shifted: Manifest) -> None:
    stats = site_stats(shifted, "lesion_cls")
    ref = stats["ref"]["mean"]
    assert stats["bright"]["mean"] / ref == pytest.approx(1.3, abs=0.05)
    # gamma 1.4 darkens mid-grey tissue (0.3 ** 1.4 / 0.3 = 0.62)
    assert 0.5 < stats["dark_gamma"]["mean"] / ref < 0.75


def test_noise_raises_and_blur_lowers_high_frequency_energy(shifted: Manifest) -> None:
    stats = site_stats(shifted, "lesion_cls")
    assert stats["noisy"]["hf"] > 3 * stats["ref"]["hf"]
    assert stats["quiet_blurred"]["hf"] < 0.3 * stats["quiet"]["hf"]
    assert stats["noisy"]["std"] > 1.3 * stats["ref"]["std"]


def test_coarser_spacing_shrinks_anatomy_in_pixels(shifted: Manifest) -> None:
    areas: dict[str, list[float]] = {}
    mm2: dict[str, list[float]] = {}
    for row in read_table(shifted.table_path("head_circumference")):
        mask = np.asarray(read_image(shifted.resolve(row["head_mask"])).array) > 0
        spacing = parse_spacing(row["spacing"])
        areas.setdefault(row["site"], []).append(mask.sum())
        mm2.setdefault(row["site"], []).append(mask.sum() * spacing[0] * spacing[1])
    ratio = np.mean(areas["coarse"]) / np.mean(areas["ref"])
    assert 0.5 < ratio < 0.8  # expected 1 / 1.25**2 = 0.64
    # In millimetres the anatomy is the same population.
    assert np.mean(mm2["coarse"]) / np.mean(mm2["ref"]) == pytest.approx(1.0, abs=0.2)


def test_identically_configured_sites_show_no_shift(shifted: Manifest) -> None:
    stats = site_stats(shifted, "lesion_cls")
    ref, twin = stats["ref"], stats["twin"]
    assert abs(twin["mean"] - ref["mean"]) < 0.01
    assert twin["std"] / ref["std"] == pytest.approx(1.0, abs=0.2)  # lesions add spread
    assert twin["hf"] / ref["hf"] == pytest.approx(1.0, abs=0.1)
    # The configured shifts are far larger than this sampling noise.
    assert abs(stats["bright"]["mean"] - ref["mean"]) > 5 * abs(twin["mean"] - ref["mean"])


def test_default_sites_differ_in_the_direction_of_their_presets(tmp_path: Path) -> None:
    path = generate_phantoms(
        tmp_path, PhantomConfig(tasks=["lesion_cls"]), sites=3, cases_per_site=16, seed=4
    )
    stats = site_stats(Manifest.load(path), "lesion_cls")
    # site_b: gain 1.2, gamma 0.85, more speckle and noise; site_c: gain 0.85, gamma 1.25, blur 1.5.
    assert stats["site_b"]["mean"] > stats["site_a"]["mean"] > stats["site_c"]["mean"]
    assert stats["site_b"]["hf"] > stats["site_a"]["hf"] > stats["site_c"]["hf"]


# ----------------------------------------------------------------------------- subgroups


def subgroup_table(tmp: Path, effects: SubgroupEffects) -> list[dict[str, float]]:
    config = PhantomConfig(
        sites=[SiteProfile(name="lab", speckle=0.0, noise=0.0, blur=0.0)],
        subgroups=effects,
        tasks=["organ_lesion_seg"],
        raters=[],
        density_weights=[1, 1, 1, 1],
        age_weights=[1, 1, 1],
    )
    manifest = Manifest.load(generate_phantoms(tmp, config, sites=1, cases_per_site=90, seed=8))
    out = []
    for row in read_table(manifest.table_path("organ_lesion_seg")):
        image = (
            np.asarray(read_image(manifest.resolve(row["image"])).array, dtype=np.float64) / 255.0
        )
        mask = np.asarray(read_image(manifest.resolve(row["mask"])).array)
        background = mask == 0
        organ = ndimage.binary_erosion(mask == 1, iterations=1)
        out.append(
            {
                "density": "ABCD".index(row["density"]),
                "age": ("18-39", "40-59", "60+").index(row["age_band"]),
                "sex": row["sex"] == "M",
                "bg_mean": image[background].mean(),
                "bg_std": image[background].std(),
                "contrast": image[organ].mean() - image[background].mean(),
            }
        )
    return out


def fit(rows: list[dict[str, float]], target: str, predictors: list[str]) -> np.ndarray:
    design = np.column_stack([np.ones(len(rows))] + [[r[p] for r in rows] for p in predictors])
    return np.linalg.lstsq(design, np.array([r[target] for r in rows]), rcond=None)[0]


def test_subgroup_effects_have_the_configured_sizes(tmp_path: Path) -> None:
    effects = SubgroupEffects(
        density_brightness=0.04, density_texture=0.015, density_contrast=0.08, age_contrast=0.06
    )
    rows = subgroup_table(tmp_path, effects)
    assert len({r["density"] for r in rows}) == 4 and len({r["age"] for r in rows}) == 3
    intercept, slope = fit(rows, "bg_mean", ["density"])
    assert intercept == pytest.approx(0.30, abs=0.01)
    assert slope == pytest.approx(0.04, abs=0.006)
    assert fit(rows, "bg_std", ["density"])[1] == pytest.approx(0.015, abs=0.006)
    # Organ contrast 0.22 * (1 - 0.06 * age - 0.08 * density)
    base, age, density = fit(rows, "contrast", ["age", "density"]) / 0.22
    assert base == pytest.approx(1.0, abs=0.05)
    assert age == pytest.approx(-0.06, abs=0.02)
    assert density == pytest.approx(-0.08, abs=0.02)
    # Sex has no configured effect.
    assert abs(fit(rows, "bg_mean", ["density", "sex"])[2]) < 0.005


def test_subgroup_effects_vanish_when_switched_off(tmp_path: Path) -> None:
    rows = subgroup_table(tmp_path, SubgroupEffects.none())
    assert abs(fit(rows, "bg_mean", ["density"])[1]) < 0.004
    assert abs(fit(rows, "bg_std", ["density"])[1]) < 0.003
    _, age, density = fit(rows, "contrast", ["age", "density"]) / 0.22
    assert abs(age) < 0.02 and abs(density) < 0.02
