"""Subgroup helpers shared by the presets: group means, max-min disparities, group tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["group_indices", "group_means", "max_min"]


def group_indices(groups: Sequence[str | None]) -> dict[str, np.ndarray]:
    """Indices of each non-missing group, groups in sorted order (``None`` is dropped).

    Example:
        >>> {k: v.tolist() for k, v in group_indices(["b", None, "a", "b"]).items()}
        {'a': [2], 'b': [0, 3]}
    """
    out: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if g is None:
            continue
        out.setdefault(str(g), []).append(i)
    return {k: np.asarray(out[k], dtype=np.intp) for k in sorted(out)}


def group_means(
    values: Mapping[str, Sequence[float]], groups: Sequence[str | None]
) -> dict[str, dict[str, Any]]:
    """Per group: its size ``n`` and the mean of each metric.

    Example:
        >>> group_means({"dice": [1.0, 0.5, 0.0]}, ["x", "x", "y"])
        {'x': {'n': 2, 'dice': 0.75}, 'y': {'n': 1, 'dice': 0.0}}
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    table: dict[str, dict[str, Any]] = {}
    for name, idx in group_indices(groups).items():
        row: dict[str, Any] = {"n": int(idx.size)}
        for metric, arr in arrays.items():
            row[metric] = float(np.mean(arr[idx]))
        table[name] = row
    return table


def max_min(values: Sequence[float], *, ignore_nan: bool = False) -> float:
    """``max - min`` of the values (0 for none; NaN propagates unless ``ignore_nan``).

    Example:
        >>> max_min([0.25, 1.0, 0.5]), max_min([]), max_min([1.0, float("nan")], ignore_nan=True)
        (0.75, 0.0, 0.0)
    """
    arr = np.asarray(list(values), dtype=np.float64)
    if ignore_nan:
        arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return 0.0
    if np.isnan(arr).any():
        return math.nan
    return float(arr.max() - arr.min())
