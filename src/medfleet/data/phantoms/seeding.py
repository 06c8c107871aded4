"""Order-independent random streams for phantoms.

Every random draw comes from a :class:`numpy.random.Generator` seeded by a
:class:`numpy.random.SeedSequence` keyed by the data seed, a stream tag, the
site index, the task and a case or subject index. Nothing depends on the order
in which cases are generated, so one case can be regenerated alone and adding
a site does not change the others.
"""

from __future__ import annotations

import zlib

import numpy as np

STREAM_CASE = 1
STREAM_SUBJECT = 2
STREAM_LAYOUT = 3
STREAM_SPLITS = 4


def task_key(task: str) -> int:
    """A stable 32-bit integer for a task name (CRC-32, independent of Python's hash seed).

    Example:
        >>> task_key("lesion_cls") == task_key("lesion_cls")
        True
    """
    return zlib.crc32(task.encode("utf-8"))


def seed_sequence(
    seed: int, stream: int, site_index: int, task: str, index: int = 0
) -> np.random.SeedSequence:
    """The seed sequence of one stream.

    Args:
        seed: Data set seed (non-negative).
        stream: One of the ``STREAM_*`` tags.
        site_index: 0-based site index.
        task: Task name.
        index: Case or subject index within the site and task.

    Example:
        >>> a = np.random.default_rng(seed_sequence(0, STREAM_CASE, 0, "t", 5)).random()
        >>> b = np.random.default_rng(seed_sequence(0, STREAM_CASE, 0, "t", 5)).random()
        >>> a == b
        True
    """
    return np.random.SeedSequence(
        [int(seed), int(stream), int(site_index), task_key(task), int(index)]
    )


def case_generators(
    seed: int, site_index: int, task: str, case_index: int
) -> dict[str, np.random.Generator]:
    """Independent generators of one case: ``anatomy``, ``acquisition`` and ``raters``.

    Keeping them apart means that changing, say, the rater settings leaves the
    images untouched, and switching an acquisition effect off leaves the anatomy.

    Example:
        >>> sorted(case_generators(0, 0, "t", 0))
        ['acquisition', 'anatomy', 'raters']
    """
    children = seed_sequence(seed, STREAM_CASE, site_index, task, case_index).spawn(3)
    names = ("anatomy", "acquisition", "raters")
    return {name: np.random.default_rng(child) for name, child in zip(names, children, strict=True)}


def subject_generators(
    seed: int, site_index: int, task: str, subject_index: int
) -> tuple[np.random.Generator, np.random.Generator]:
    """Fresh generators of one subject: ``(metadata, identity)``.

    They yield the same numbers for every image of the subject, so all its images
    share the metadata (age band, density, ...) and identity (sizes, shapes, class).

    Example:
        >>> a = subject_generators(0, 0, "t", 3)[1].random()
        >>> b = subject_generators(0, 0, "t", 3)[1].random()
        >>> a == b
        True
    """
    meta, identity = seed_sequence(seed, STREAM_SUBJECT, site_index, task, subject_index).spawn(2)
    return np.random.default_rng(meta), np.random.default_rng(identity)


def layout_generator(seed: int, site_index: int, task: str) -> np.random.Generator:
    """The generator of a site's subject layout and split assignment for one task."""
    return np.random.default_rng(seed_sequence(seed, STREAM_LAYOUT, site_index, task))


def split_generator(seed: int, site_index: int, task: str) -> np.random.Generator:
    """The generator of a site's subject-wise split assignment for one task."""
    return np.random.default_rng(seed_sequence(seed, STREAM_SPLITS, site_index, task))
