"""The one JSON encoding of medfleet's values: strict JSON, with non-finite numbers kept apart.

Every JSON artefact medfleet writes (an evaluation's ``summary.json``, ``compare.json``,
``transfer.json``, a paradigm's ``summary.json``, ``federated.json``, ``study.json``,
``training.json``, the monitor's ``table.json``, anything :func:`medfleet.utils.atomic.
write_json_atomic` writes) and every answer of the monitoring service encodes values by
:func:`json_safe`:

==========================================  =====================================
value                                        JSON
==========================================  =====================================
NaN (float or numpy)                         ``null`` (missing, undefined)
``+inf`` / ``-inf``                          ``"inf"`` / ``"-inf"`` (text)
numpy scalars (``float32``, ``int64``...)    the Python number, bool or text
numpy arrays, tuples, lists                  lists (recursively)
sets and frozensets                          lists, sorted when the items sort
:class:`pathlib.PurePath`                    its text
dictionary keys                              text: ``str(key)``; ``true``,
                                             ``false`` and ``null`` for True,
                                             False and None (JSON's own spelling)
anything else                                unchanged
==========================================  =====================================

An infinite value is meaningful (the Hausdorff distance to an empty prediction, a missed
landmark's error, an unbounded privacy loss) and must not read as "missing", so it is
written as text rather than ``null``; NaN is ``null``. The output contains no ``NaN`` or
``Infinity`` token, so it passes ``json.dumps(..., allow_nan=False)`` and any strict
JSON parser.

:func:`from_json_number` is the inverse for one number read back: ``null`` -> NaN,
``"inf"`` / ``"-inf"`` -> ``±math.inf``, numbers -> ``float``.

Example:
    >>> import json, math
    >>> text = json.dumps(json_safe({"hd": math.inf, "dice": float("nan")}), allow_nan=False)
    >>> text
    '{"hd": "inf", "dice": null}'
    >>> from_json_number(json.loads(text)["hd"])
    inf
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["NEGATIVE_INFINITY", "POSITIVE_INFINITY", "from_json_number", "json_safe"]

POSITIVE_INFINITY = "inf"
"""How ``+inf`` is written."""

NEGATIVE_INFINITY = "-inf"
"""How ``-inf`` is written."""


def _key(key: Any) -> str:
    if isinstance(key, np.generic):
        key = key.item()
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    return str(key)


def _number(value: float) -> float | str | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return POSITIVE_INFINITY if value > 0 else NEGATIVE_INFINITY
    return value


def _sorted_if_possible(items: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def json_safe(obj: Any) -> Any:
    """``obj`` as strict JSON values under medfleet's one policy (see the module docs).

    NaN becomes ``None`` (``null``), ``+inf`` / ``-inf`` become ``"inf"`` / ``"-inf"``,
    numpy scalars and arrays become Python values and lists, tuples and sets become lists,
    paths become text and dictionary keys become text. Applying it twice changes nothing.

    Args:
        obj: Any nesting of mappings, sequences, numbers, numpy values and paths.

    Returns:
        The converted value (a new container; ``obj`` is not modified).

    Example:
        >>> import numpy as np
        >>> from pathlib import Path
        >>> json_safe({"a": float("nan"), "b": np.float32(-np.inf), 3: (1, np.int64(2))})
        {'a': None, 'b': '-inf', '3': [1, 2]}
        >>> json_safe([np.array([[0.5, np.inf]]), Path("out") / "x.json", {True: {2, 1}}])
        [[[0.5, 'inf']], 'out/x.json', {'true': [1, 2]}]
    """
    if isinstance(obj, Mapping):
        return {_key(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return [json_safe(v) for v in _sorted_if_possible(obj)]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return _number(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def from_json_number(value: Any) -> float:
    """One number as :func:`json_safe` wrote it, back as a float.

    Args:
        value: A value read from medfleet's JSON: a number, ``None`` (a NaN), ``"inf"`` or
            ``"-inf"``.

    Returns:
        The float (``math.nan`` for ``None``, ``±math.inf`` for the two texts).

    Raises:
        TypeError: ``value`` is a boolean, a container or another type that is no number.
        ValueError: ``value`` is text other than ``"inf"`` and ``"-inf"``.

    Example:
        >>> from_json_number("inf"), from_json_number("-inf"), from_json_number(None)
        (inf, -inf, nan)
        >>> from_json_number(3)
        3.0
    """
    if value is None:
        return math.nan
    if isinstance(value, str):
        if value == POSITIVE_INFINITY:
            return math.inf
        if value == NEGATIVE_INFINITY:
            return -math.inf
        raise ValueError(
            f"{value!r} is not a number as medfleet writes it "
            f"(a number, null, {POSITIVE_INFINITY!r} or {NEGATIVE_INFINITY!r})"
        )
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"expected a number, null, 'inf' or '-inf', got {type(value).__name__}")
    return float(value)
