"""Simulator: known drift, effect sizes, the phantom scorer, and detection quality per scheme."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from medfleet.data.phantoms.acquisition import acquire
from medfleet.data.phantoms.config import SiteProfile, default_site
from medfleet.monitor.config import MonitorConfig
from medfleet.monitor.run import run_config
from medfleet.monitor.scorer import PhantomScorer, acquire_stack
from medfleet.monitor.severity import sigmoid
from medfleet.monitor.simulate import (
    EFFECT_TARGETS,
    class_weights,
    drifted_profile,
    output_effect,
    phantom_pool,
    quick_config,
    run_simulation,
    severity_of_effect,
    weighted_w1,
)


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return run_simulation(quick_config(), out), out


def test_quick_simulation_detects_drift_better_than_centralised(simulation):
    result, _ = simulation
    rows = {r["scheme"]: r for r in result.table()}
    assert set(rows) == {"site", "global", "production", "adaptive", "adaptive_exp", "centralised"}
    central = rows["centralised"]
    for scheme in ("site", "production", "adaptive"):
        row = rows[scheme]
        assert row["f1"] >= 0.8, row
        assert row["f1"] > central["f1"], (row, central)
        assert row["severity_f1"] >= 0.6, row
        assert row["missed"] == 0 and row["delay_batches"] <= 2
        assert row["beats_centralised"] is True
    # Sites differ in acquisition, so one pooled reference for all raises false alarms.
    assert rows["global"]["false_alarms_per_100"] > rows["site"]["false_alarms_per_100"]


def test_truth_follows_the_scenarios(simulation):
    result, _ = simulation
    streams = result.streams
    assert set(streams.truth["site_a"]) == {"none"}
    b = streams.truth["site_b"]
    assert b[:6] == ["none"] * 6 and set(b[6:]) == {"severe"}
    assert streams.scenarios["site_b"]["effect"] == pytest.approx(
        EFFECT_TARGETS["severe"], rel=0.05
    )
    c_effects = streams.effects["site_c"]
    assert c_effects[:5] == [0.0] * 5
    assert (
        c_effects[5]
        < c_effects[6]
        < c_effects[7]
        == pytest.approx(EFFECT_TARGETS["moderate"], rel=0.05)
    )
    assert all(len(v) == 12 for v in streams.truth.values())


def test_files_are_written_and_monitor_config_runs(simulation):
    result, out = simulation
    with open(out / "table.csv", newline="") as fh:
        assert [r["scheme"] for r in csv.DictReader(fh)] == list(result.config.schemes)
    data = json.loads((out / "table.json").read_text())
    assert data["table"][0]["scheme"] == "site" and "scenarios" in data
    page = (out / "report.html").read_text()
    assert "Quality per scheme" in page and page.count("<img") == 2
    cfg = MonitorConfig.load(out / "streams" / "monitor.yaml")
    summary = run_config(cfg)
    assert summary.new == 36 and summary.references_set == ["site_a", "site_b", "site_c"]
    assert summary.sites["site_b"]["drifted"] >= 5
    assert run_config(cfg).already_stored == 36


def test_weighted_w1_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(0.4, 1.3, size=70)
    wa, wb = rng.uniform(0.1, 1, 50), rng.uniform(0.1, 1, 70)
    assert weighted_w1(a, wa, b, wb) == pytest.approx(
        stats.wasserstein_distance(a, b, u_weights=wa, v_weights=wb)
    )


def test_output_effect_of_a_pure_logit_shift_is_its_size():
    z = np.random.default_rng(1).normal(0, 2, size=(5000, 1))
    assert output_effect(sigmoid(z), sigmoid(z + 1.0)) == pytest.approx(1.0 / np.std(z), rel=1e-6)
    assert output_effect(sigmoid(z), sigmoid(z)) == 0.0
    assert [severity_of_effect(e).value for e in (0.0, 0.25, 0.6, 1.2)] == [
        "none",
        "mild",
        "moderate",
        "severe",
    ]


def test_prior_shift_weights():
    labels = np.array([0, 0, 1, 2, 2, 2])
    w = class_weights(labels, "prior", 1.0)
    assert w[labels == 1].sum() == pytest.approx(1.0)
    assert class_weights(labels, "gain", 1.0) == pytest.approx(np.full(6, 1 / 6))


def test_drifted_profiles():
    site = default_site(1)
    assert drifted_profile(site, "noise", 0.03).noise == pytest.approx(np.hypot(site.noise, 0.03))
    assert drifted_profile(site, "blur", 1.0).blur == pytest.approx(np.hypot(site.blur, 1.0))
    flat = drifted_profile(site, "contrast", 1.0)
    assert flat.gain == pytest.approx(site.gain / 2)
    assert drifted_profile(site, "prior", 1.0) == site


def test_acquire_stack_matches_phantom_acquisition_without_noise():
    rng = np.random.default_rng(2)
    clean = rng.uniform(0, 0.8, size=(3, 24, 24))
    profile = SiteProfile(
        name="s", speckle=0.0, noise=0.0, blur=1.2, gain=1.1, gamma=0.9, offset=0.02
    )
    stacked = acquire_stack(clean, profile, np.random.default_rng(0))
    for i in range(3):
        single = acquire(clean[i], profile, np.random.default_rng(0))
        assert np.allclose(stacked[i], single, atol=1e-5)


def test_acquire_stack_noise_levels():
    clean = np.full((20, 32, 32), 0.5)
    profile = SiteProfile(name="s", speckle=0.2, noise=0.05, blur=0.0)
    out = acquire_stack(clean, profile, np.random.default_rng(3))
    assert out.std() == pytest.approx(np.hypot(0.5 * 0.2, 0.05), rel=0.05)
    assert out.mean() == pytest.approx(0.5, abs=0.01)


def test_scorer_learns_the_phantom_classes(simulation):
    _, out = simulation
    pool = phantom_pool(out / "phantoms", 80, 32, 0)  # reuses the fixture's phantoms
    images, labels = pool.part("train")
    held_images, held_labels = pool.part("val", "test")
    site = default_site(0)
    scorer = PhantomScorer().fit(acquire_stack(images, site, np.random.default_rng(0)), labels)
    probs = scorer(acquire_stack(held_images, site, np.random.default_rng(1)))
    assert probs.shape == (held_labels.size, 3)
    assert np.allclose(probs.sum(axis=1), 1.0)
    accuracy = float(np.mean(probs.argmax(axis=1) == held_labels))
    assert accuracy > 0.5  # chance is about 1/3
    with pytest.raises(RuntimeError, match="not fitted"):
        PhantomScorer()(held_images)
