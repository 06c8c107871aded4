"""Multi-task batch schedules: which task each batch comes from, and which rows it holds.

Every batch holds rows of a single task (the model runs one task head per forward pass).
Tasks are drawn with probability

* ``proportional``: ``n_t / sum(n)`` (every row seen about once per epoch),
* ``uniform``: ``1 / T`` (small tasks are seen as often as large ones),
* ``temperature``: ``n_t^(1/tau) / sum(n^(1/tau))`` (``tau = 1`` is proportional, large
  ``tau`` approaches uniform).

An epoch's schedule is a pure function of ``(seed, epoch)``, so a resumed run regenerates
it and skips the batches already done: the sampler position is just the batch index.
Within a task, rows come from successive random permutations, so every row is used before
any repeats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medfleet.errors import MedfleetError

Strategy = Literal["proportional", "uniform", "temperature"]
STRATEGIES: tuple[str, ...] = ("proportional", "uniform", "temperature")


def task_probabilities(
    sizes: Mapping[str, int], strategy: Strategy = "proportional", temperature: float = 2.0
) -> dict[str, float]:
    """Probability of drawing each task for a batch.

    Example:
        >>> task_probabilities({"a": 30, "b": 10})
        {'a': 0.75, 'b': 0.25}
        >>> task_probabilities({"a": 30, "b": 10}, "uniform")
        {'a': 0.5, 'b': 0.5}
        >>> {k: round(v, 3) for k, v in task_probabilities({"a": 36, "b": 4}, "temperature",
        ...                                                 2.0).items()}
        {'a': 0.75, 'b': 0.25}
    """
    if strategy not in STRATEGIES:
        raise MedfleetError(f"sampling {strategy!r} is not one of {list(STRATEGIES)}")
    if not sizes:
        raise MedfleetError("no task to sample from")
    empty = [k for k, n in sizes.items() if n < 1]
    if empty:
        raise MedfleetError(f"task(s) {empty} have no training rows")
    if strategy == "temperature" and not temperature > 0:
        raise MedfleetError(f"temperature must be > 0, got {temperature}")
    exponent = {"proportional": 1.0, "uniform": 0.0, "temperature": 1.0 / temperature}[strategy]
    weights = {k: float(n) ** exponent for k, n in sizes.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


@dataclass(frozen=True)
class ScheduledBatch:
    """One entry of an epoch's schedule.

    Attributes:
        task: Task name.
        indices: Dataset row indices of the global batch (all ranks together).
    """

    task: str
    indices: tuple[int, ...]

    def shard(self, rank: int, world_size: int) -> tuple[int, ...]:
        """The rows this process handles (rank ``r`` takes every ``world_size``-th).

        Example:
            >>> ScheduledBatch("a", (5, 6, 7, 8)).shard(1, 2)
            (6, 8)
        """
        return self.indices[rank::world_size]


class MultiTaskSchedule:
    """Deterministic multi-task batch schedule.

    Args:
        sizes: Training rows per task (task order is kept).
        batch_size: Rows per batch and process.
        strategy: ``proportional``, ``uniform`` or ``temperature``.
        temperature: ``tau`` of the temperature strategy.
        seed: Seed; with the epoch number it fixes the schedule.
        batches_per_epoch: Batches per epoch; default ``sum(ceil(n_t / global batch))``.
        world_size: Processes sharing each batch (distributed training).

    Example:
        >>> sched = MultiTaskSchedule({"a": 6, "b": 2}, batch_size=2, seed=0)
        >>> len(sched.epoch(0)), sched.epoch(0) == sched.epoch(0)
        (4, True)
        >>> sorted({i for b in sched.epoch(0) if b.task == "b" for i in b.indices}) <= [0, 1]
        True
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        batch_size: int,
        strategy: Strategy = "proportional",
        temperature: float = 2.0,
        seed: int = 0,
        batches_per_epoch: int | None = None,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise MedfleetError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1:
            raise MedfleetError(f"world_size must be >= 1, got {world_size}")
        self.sizes = dict(sizes)
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.strategy = strategy
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.probabilities = task_probabilities(self.sizes, strategy, temperature)
        self.global_batch = self.batch_size * self.world_size
        default = sum(math.ceil(n / self.global_batch) for n in self.sizes.values())
        self.batches_per_epoch = int(batches_per_epoch or default)
        if self.batches_per_epoch < 1:
            raise MedfleetError(f"batches_per_epoch must be >= 1, got {batches_per_epoch}")

    def epoch(self, epoch: int) -> list[ScheduledBatch]:
        """The schedule of epoch ``epoch`` (0-based): the same list every time it is asked."""
        names = list(self.sizes)
        rng = np.random.default_rng([self.seed, epoch, 0])
        p = np.array([self.probabilities[k] for k in names])
        draws = rng.choice(len(names), size=self.batches_per_epoch, p=p)
        streams = {
            name: _RowStream(self.sizes[name], np.random.default_rng([self.seed, epoch, 1 + i]))
            for i, name in enumerate(names)
        }
        return [ScheduledBatch(names[k], streams[names[k]].take(self.global_batch)) for k in draws]


class _RowStream:
    """Rows of one task from successive random permutations."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n = n
        self.rng = rng
        self.buffer: list[int] = []

    def take(self, k: int) -> tuple[int, ...]:
        while len(self.buffer) < k:
            self.buffer.extend(int(i) for i in self.rng.permutation(self.n))
        out, self.buffer = self.buffer[:k], self.buffer[k:]
        return tuple(out)
