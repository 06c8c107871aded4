"""Differential privacy: the noise covers one site's whole influence on every key, and ε."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfleet.federated import FederatedConfig
from medfleet.federated import params as P

CLIP, NOISE = 0.5, 1.3
SIZE = 4000  # elements per key: enough to estimate each key's noise std within a few %

# three sites, very unequal example counts, partially overlapping keys:
# "body" is held by all three, "head_x" by a and b, "head_y" by a only
SITES = {
    "site_a": (["body", "head_x", "head_y"], 500),
    "site_b": (["body", "head_x"], 20),
    "site_c": (["body"], 3),
}
HOLDERS = {"body": 3, "head_x": 2, "head_y": 1}


def _strategy(fed_manifest, fed: FederatedConfig):
    from medfleet.federated.job import FederatedJob
    from medfleet.federated.server_app import make_strategy
    from medfleet.models import ModelConfig
    from medfleet.train.config import TrainConfig

    job = FederatedJob.create(fed_manifest, ModelConfig(image_size=32), TrainConfig(), fed, "/x")
    strategy = make_strategy(job)
    for i, site in enumerate(fed_manifest.site_names):
        strategy.node_site[100 + i] = site
    return strategy


def _replies(updates: dict[str, dict[str, np.ndarray]], base: dict[str, np.ndarray]):
    """Flower train replies of the sites: ``base + update`` for their keys."""
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    replies = []
    for i, site in enumerate(SITES):
        keys, examples = SITES[site]
        arrays = {k: Array((base[k] + updates[site][k]).astype(np.float32)) for k in keys}
        ask = Message(RecordDict(), dst_node_id=100 + i, message_type="train")
        content = RecordDict(
            {
                "arrays": ArrayRecord(arrays),
                "metrics": MetricRecord({"num-examples": examples, "train-loss": 1.0}),
            }
        )
        replies.append(Message(content, reply_to=ask))
    return replies


def _aggregate(strategy, updates, base, seed: int) -> dict[str, np.ndarray]:
    """One aggregation with the noise drawn from ``seed`` (whichever RNG the code uses)."""
    strategy.current = {k: v.copy() for k, v in base.items()}
    strategy.dp_rng = np.random.default_rng(seed)
    np.random.seed(seed)
    arrays, _ = strategy.aggregate_train(1, _replies(updates, base))
    return {k: np.asarray(v.numpy(), np.float64) for k, v in arrays.items()}


def _clipped_updates(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Each site's update, clipped jointly over all its keys to norm CLIP (float32-exact)."""
    updates = {}
    for site, (keys, _) in SITES.items():
        raw = {k: rng.normal(0, 1, SIZE) for k in keys}
        norm = math.sqrt(sum(float(np.sum(v**2)) for v in raw.values()))
        updates[site] = {k: (v * CLIP * 0.999 / norm).astype(np.float32) for k, v in raw.items()}
    return updates


def test_dp_noise_covers_one_sites_influence_on_every_key(fed_manifest) -> None:
    strategy = _strategy(fed_manifest, FederatedConfig(dp_clip=CLIP, dp_noise=NOISE))
    rng = np.random.default_rng(0)
    base = {k: rng.normal(0, 0.1, SIZE).astype(np.float32) for k in HOLDERS}
    updates = _clipped_updates(rng)

    # the noise actually added to each key, estimated from two aggregations that differ only
    # in the noise draw: Var(a - b) = 2 std^2
    first, second = _aggregate(strategy, updates, base, 1), _aggregate(strategy, updates, base, 2)
    std = {k: float(np.std(first[k] - second[k]) / math.sqrt(2)) for k in HOLDERS}

    # sensitivity: replace one site's clipped update by an adversarial one (the opposite
    # direction, the whole clip norm on one key) or by no update at all, with the same noise
    worst = dict.fromkeys(HOLDERS, 0.0)
    worst_overall = 0.0
    loud_changes: list[tuple[str, float]] = []
    for site, (keys, _) in SITES.items():
        for key in keys:
            direction = -updates[site][key] / np.linalg.norm(updates[site][key])
            adversarial = {k: np.zeros(SIZE, np.float32) for k in keys}
            adversarial[key] = (CLIP * direction).astype(np.float32)
            nothing = {k: np.zeros(SIZE, np.float32) for k in keys}
            a = _aggregate(strategy, {**updates, site: adversarial}, base, 7)
            b = _aggregate(strategy, {**updates, site: nothing}, base, 7)
            changes = {k: float(np.linalg.norm(a[k] - b[k])) for k in HOLDERS}
            for k, change in changes.items():
                worst[k] = max(worst[k], change)
            worst_overall = max(worst_overall, math.sqrt(sum(c**2 for c in changes.values())))
            # a site that sends more than the clip norm is clipped at the server too
            loud = {k: 10 * v for k, v in adversarial.items()}
            c = _aggregate(strategy, {**updates, site: loud}, base, 7)
            loud_changes.append((key, float(np.linalg.norm(c[key] - b[key]))))

    for key, holders in HOLDERS.items():
        weight = 1.0 / holders  # equal weight per site among the sites holding the key
        assert worst[key] <= CLIP * weight * (1 + 1e-4), (key, worst[key], CLIP * weight)
        assert worst[key] >= CLIP * weight * (1 - 1e-3)  # the bound is reached: it is tight
        assert std[key] == pytest.approx(NOISE * CLIP * weight, rel=0.05), key
        assert std[key] / worst[key] >= NOISE * (1 - 0.05), (key, std[key] / worst[key])
    assert worst_overall <= CLIP * max(1.0 / n for n in HOLDERS.values()) * (1 + 1e-4)
    for key, change in loud_changes:
        assert change <= CLIP / HOLDERS[key] * (1 + 1e-4), (key, change)


def test_dp_round_records_the_noise_of_each_key_group(fed_manifest) -> None:
    strategy = _strategy(fed_manifest, FederatedConfig(dp_clip=CLIP, dp_noise=NOISE))
    rng = np.random.default_rng(3)
    base = {k: np.zeros(SIZE, np.float32) for k in HOLDERS}
    _aggregate(strategy, _clipped_updates(rng), base, 1)
    record = strategy.rounds[0]["dp"]
    assert record["weighting"] == "equal per site"
    assert record["noise_std_by_holders"] == {
        str(n): pytest.approx(NOISE * CLIP / n) for n in HOLDERS.values()
    }
    assert record["keys_by_holders"] == {str(n): 1 for n in HOLDERS.values()}


def test_clip_update_is_exact_in_float32_and_joint_over_travelling_keys() -> None:
    rng = np.random.default_rng(0)
    old = {k: rng.normal(0, 1, 50_000).astype(np.float32) for k in ("a", "b")}
    new = {k: (v + rng.normal(0, 1e-2, v.size)).astype(np.float32) for k, v in old.items()}
    new["only_here"] = np.ones(3, np.float32)  # no global counterpart: cannot be clipped
    for clip in (1e-3, 0.05, 1.0):
        out, norm = P.clip_update(new, old, clip)
        assert set(out) == {"a", "b"}, "a key without a global value must not travel"
        assert all(v.dtype == np.float32 for v in out.values())
        sent = math.sqrt(sum(float(np.sum((out[k].astype(np.float64) - old[k]) ** 2)) for k in out))
        assert sent <= clip, (clip, sent)
        assert norm > clip


def test_epsilon_by_zcdp_composition() -> None:
    from medfleet.federated.privacy import dp_epsilon

    # rho = rounds / (2 z^2); eps = rho + 2 sqrt(rho ln(1/delta))
    rho = 10 / (2 * 1.3**2)
    assert dp_epsilon(1.3, 10, 1e-5) == pytest.approx(rho + 2 * math.sqrt(rho * math.log(1e5)))
    assert dp_epsilon(1.0, 1, 1e-5) == pytest.approx(0.5 + 2 * math.sqrt(0.5 * math.log(1e5)))
    assert dp_epsilon(2.0, 5, 1e-5) < dp_epsilon(1.0, 5, 1e-5)
    assert dp_epsilon(1.0, 10, 1e-5) > dp_epsilon(1.0, 5, 1e-5)
    assert dp_epsilon(0.0, 5, 1e-5) == math.inf
    with pytest.raises(ValueError, match="delta"):
        dp_epsilon(1.0, 5, 0.0)
