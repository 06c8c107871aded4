"""Multi-task batch schedules: task probabilities, determinism, coverage, sharding."""

from __future__ import annotations

from collections import Counter

import pytest

from medfleet.errors import MedfleetError
from medfleet.train.sampling import MultiTaskSchedule, ScheduledBatch, task_probabilities


def test_probabilities_by_hand():
    sizes = {"big": 90, "small": 10}
    assert task_probabilities(sizes, "proportional") == {"big": 0.9, "small": 0.1}
    assert task_probabilities(sizes, "uniform") == {"big": 0.5, "small": 0.5}
    # tau = 2: weights sqrt(90) : sqrt(10) = 3 : 1
    p = task_probabilities(sizes, "temperature", temperature=2.0)
    assert p["big"] == pytest.approx(0.75) and p["small"] == pytest.approx(0.25)
    assert task_probabilities(sizes, "temperature", temperature=1.0) == pytest.approx(
        task_probabilities(sizes, "proportional")
    )


def test_bad_settings_are_errors():
    with pytest.raises(MedfleetError, match="not one of"):
        task_probabilities({"a": 1}, "random")  # type: ignore[arg-type]
    with pytest.raises(MedfleetError, match="no training rows"):
        task_probabilities({"a": 0, "b": 3})
    with pytest.raises(MedfleetError, match="batch_size"):
        MultiTaskSchedule({"a": 3}, batch_size=0)


def test_schedule_is_a_function_of_seed_and_epoch():
    sched = MultiTaskSchedule({"a": 12, "b": 5}, batch_size=4, seed=3)
    assert sched.epoch(2) == MultiTaskSchedule({"a": 12, "b": 5}, batch_size=4, seed=3).epoch(2)
    assert sched.epoch(0) != sched.epoch(1)
    assert sched.epoch(0) != MultiTaskSchedule({"a": 12, "b": 5}, batch_size=4, seed=4).epoch(0)
    assert len(sched.epoch(0)) == 3 + 2  # ceil(12/4) + ceil(5/4)


def test_rows_are_used_before_any_repeats():
    sched = MultiTaskSchedule({"a": 7}, batch_size=3, seed=0, batches_per_epoch=3)
    rows = [i for b in sched.epoch(0) for i in b.indices]
    assert len(rows) == 9
    assert sorted(rows[:7]) == list(range(7))  # one full permutation first


def test_uniform_sampling_balances_tasks():
    sched = MultiTaskSchedule(
        {"a": 1000, "b": 10}, batch_size=1, strategy="uniform", seed=0, batches_per_epoch=2000
    )
    counts = Counter(b.task for b in sched.epoch(0))
    assert 850 < counts["b"] < 1150
    proportional = MultiTaskSchedule({"a": 1000, "b": 10}, batch_size=1, seed=0,
                                     batches_per_epoch=2000)  # fmt: skip
    assert Counter(b.task for b in proportional.epoch(0))["b"] < 60


def test_shards_partition_the_global_batch():
    sched = MultiTaskSchedule({"a": 9}, batch_size=2, world_size=3, seed=1)
    for entry in sched.epoch(0):
        assert len(entry.indices) == 6
        parts = [entry.shard(r, 3) for r in range(3)]
        assert sorted(i for p in parts for i in p) == sorted(entry.indices)
    assert ScheduledBatch("a", (1, 2, 3)).shard(0, 1) == (1, 2, 3)
