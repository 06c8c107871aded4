"""Subjects with repeated images and subject-wise train/val/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medfleet.tables import SPLITS


def subject_layout(
    n_cases: int, rng: np.random.Generator, repeat_weights: Sequence[float]
) -> list[int]:
    """Assign consecutive cases to subjects, each subject having 1, 2, 3, ... images.

    Args:
        n_cases: Number of cases.
        rng: Random generator.
        repeat_weights: Relative probabilities of a subject having 1, 2, 3, ... images.

    Returns:
        The subject index of every case (non-decreasing, starting at 0).

    Example:
        >>> layout = subject_layout(6, np.random.default_rng(0), [0.5, 0.5])
        >>> len(layout), layout[0], all(b - a in (0, 1) for a, b in zip(layout, layout[1:]))
        (6, 0, True)
    """
    weights = np.asarray(repeat_weights, dtype=np.float64)
    probs = weights / weights.sum()
    layout: list[int] = []
    subject = 0
    while len(layout) < n_cases:
        count = int(rng.choice(len(probs), p=probs)) + 1
        layout.extend([subject] * min(count, n_cases - len(layout)))
        subject += 1
    return layout


def assign_splits(
    case_subjects: Sequence[int], rng: np.random.Generator, fractions: Sequence[float]
) -> dict[int, str]:
    """Assign whole subjects to ``train``/``val``/``test`` so case counts follow ``fractions``.

    Subjects are taken in a random order; each goes to the split furthest below
    its target case count (ties broken in the order train, val, test). No subject
    is ever split across two splits.

    Args:
        case_subjects: Subject index of every case.
        rng: Random generator (the subject order).
        fractions: Target fractions of cases for train, val and test.

    Returns:
        ``{subject index: split name}``.

    Example:
        >>> splits = assign_splits(list(range(10)), np.random.default_rng(0), (0.6, 0.2, 0.2))
        >>> sorted(list(splits.values()).count(s) for s in ("train", "val", "test"))
        [2, 2, 6]
    """
    counts: dict[int, int] = {}
    for subject in case_subjects:
        counts[subject] = counts.get(subject, 0) + 1
    subjects = sorted(counts)
    frac = np.asarray(fractions, dtype=np.float64)
    targets = frac / frac.sum() * len(case_subjects)
    filled = np.zeros(len(SPLITS))
    result: dict[int, str] = {}
    for position in rng.permutation(len(subjects)):
        subject = subjects[int(position)]
        deficit = np.where(targets > 0, targets - filled, -np.inf)
        choice = int(np.argmax(deficit))
        result[subject] = SPLITS[choice]
        filled[choice] += counts[subject]
    return result
