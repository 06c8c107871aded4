"""The value rules of model outputs: numbers only, probabilities, class labels, timestamps.

These checks turn whatever a client sent (JSON lists, numpy arrays, table columns) into
float64 arrays or refuse it with a :class:`ValueProblem` that says what is wrong and how
to fix it; :func:`medfleet.monitor.batches.validate_outputs` adds the site, batch and
output name. Nothing here trusts the input's type: booleans, text, nulls, nested
containers and integers beyond float range are refused by name, never passed on to numpy
to be coerced.

Example:
    >>> numeric_array([0.25, 1]).tolist()
    [0.25, 1.0]
    >>> try:
    ...     numeric_array([0.5, True])
    ... except ValueProblem as err:
    ...     print(err.reason)
    1 value(s) are true/false (first at row 1); send numbers
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError

MAX_CLASS_LABEL = 2**31 - 1
"""Largest class label accepted; labels are whole numbers in ``[0, MAX_CLASS_LABEL]``."""

PROBABILITY_SUM_TOLERANCE = 1e-3
"""How far a row of class probabilities may sum from 1."""

_NUMBER_TYPES = (int, float, np.integer, np.floating)


class ValueProblem(MedfleetError, ValueError):
    """Output values that cannot be accepted; the caller names the output.

    Attributes:
        reason: What is wrong.
        fix: What would fix it, if known.
    """

    def __init__(self, reason: str, fix: str | None = None) -> None:
        self.reason = reason
        self.fix = fix
        super().__init__(reason)


def short_repr(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters (never fails, never echoes a whole body).

    Example:
        >>> short_repr("x" * 100, limit=10)
        "'xxxxx...(102 characters)"
    """
    try:
        text = f"{value:.6g}" if isinstance(value, float | np.floating) else repr(value)
    except (ValueError, OverflowError, RecursionError):
        return f"<{type(value).__name__} too large to show>"
    if len(text) > limit:
        return f"{text[: limit - 4]}...({len(text)} characters)"
    return text


def printable_text(text: str) -> bool:
    r"""Whether ``text`` is valid Unicode (UTF-8 encodable) without control characters.

    Example:
        >>> printable_text("site_a b7"), printable_text("a\nb"), printable_text("\ud800")
        (True, False, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def _kind_of(value: Any) -> str | None:
    """None for a number or null, else what the value is (for the error message)."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return "true/false"
    if isinstance(value, _NUMBER_TYPES):
        return None
    if isinstance(value, str | bytes):
        return "text"
    if isinstance(value, dict):
        return "objects"
    if isinstance(value, list | tuple | np.ndarray):
        return "lists"
    return type(value).__name__


def _check_scalars(values: Sequence[Any], row_of: Any) -> None:
    """Refuse anything but numbers (and nulls, which become NaN) in a flat sequence."""
    types = set(map(type, values))
    if types <= {float, int, type(None)}:
        return
    for i, value in enumerate(values):
        kind = _kind_of(value)
        if kind is not None:
            bad = sum(_kind_of(v) == kind for v in values)
            fix = "send numbers" if kind == "true/false" else None
            reason = f"{bad} value(s) are {kind} (first at row {row_of(i)})"
            if kind == "text":
                reason = f"values are not numeric: {reason}"
            raise ValueProblem(reason + ("; " + fix if fix else ""))


def _rows_shape(values: Sequence[Any]) -> tuple[int, ...]:
    """Shape of a list of numbers or of equal-length rows of numbers; refuses anything else."""
    if not values:
        return (0,)
    is_row = [isinstance(v, list | tuple | np.ndarray) for v in values]
    if not any(is_row):
        _check_scalars(values, lambda i: i)
        return (len(values),)
    if not all(is_row):
        first = is_row.index(not is_row[0])
        raise ValueProblem(
            f"mixes single values and rows (row 0 is {'a row' if is_row[0] else 'a value'}, "
            f"row {first} is not); send one value per case or one row per case"
        )
    width = len(values[0])
    for i, row in enumerate(values):
        if len(row) != width:
            raise ValueProblem(
                f"rows have different lengths (row 0: {width}, row {i}: {len(row)}); "
                "every case needs the same number of columns"
            )
        if any(isinstance(v, list | tuple | dict | np.ndarray) for v in row):
            raise ValueProblem(
                "values nest 3 or more levels deep; expected one row per case (1-D or 2-D)",
                fix="send one value or one row of values per case",
            )
        _check_scalars(row, lambda _j, i=i: i)
    return (len(values), width)


def numeric_array(raw: Any) -> np.ndarray:
    """A float64 array from one value or one row of numbers per case; refuse anything else.

    Accepts lists (of numbers, or of equal-length rows of numbers) and numeric numpy arrays
    or array-likes (pandas columns). Nulls become NaN (refused later as not finite).

    Raises:
        ValueProblem: Booleans, text, objects, ragged or deeper nesting, integers beyond
            float range, or not a list at all.

    Example:
        >>> numeric_array([[0.2, 0.8], [0.6, 0.4]]).shape
        (2, 2)
    """
    if isinstance(raw, np.ndarray):
        kind = raw.dtype.kind
        if kind == "b":
            raise ValueProblem(f"{raw.size} value(s) are true/false (first at row 0); send numbers")
        if kind == "O":
            return numeric_array(raw.tolist())
        if kind not in "iuf":
            raise ValueProblem(f"values are not numeric (array of {raw.dtype})")
        if raw.ndim == 0 or raw.ndim > 2:
            raise ValueProblem(f"expected one row per case (1-D or 2-D), got shape {raw.shape}")
        return raw.astype(np.float64, copy=False)
    if isinstance(raw, str | bytes | dict) or not hasattr(raw, "__len__"):
        raise ValueProblem(
            f"must be a list with one value or one row per case, got {type(raw).__name__}"
        )
    if not isinstance(raw, list | tuple):
        try:
            return numeric_array(np.asarray(raw))
        except (TypeError, ValueError) as exc:
            raise ValueProblem(f"values are not numeric ({exc})") from None
    shape = _rows_shape(raw)
    try:
        arr = np.array(raw, dtype=np.float64)
    except OverflowError:
        raise ValueProblem(
            "a value is too large for a 64-bit float", fix="send finite numbers"
        ) from None
    except (TypeError, ValueError) as exc:
        raise ValueProblem(f"values are not numeric ({exc})") from None
    if arr.shape != shape:  # pragma: no cover - _rows_shape checked every element
        raise ValueProblem(f"expected one row per case (1-D or 2-D), got shape {arr.shape}")
    return arr


def check_probabilities(arr: np.ndarray) -> None:
    """Probabilities lie in [0, 1]; rows of class probabilities (2+ columns) sum to 1.

    Example:
        >>> check_probabilities(np.array([[0.25, 0.75]]))
        >>> try:
        ...     check_probabilities(np.array([[0.5, 0.6]]))
        ... except ValueProblem as err:
        ...     print(err.reason)
        1 row(s) of class probabilities do not sum to 1 (first at row 0: 1.1)
    """
    out = (arr < 0) | (arr > 1)
    if out.any():
        first = tuple(np.argwhere(out)[0])
        raise ValueProblem(
            f"{int(out.sum())} value(s) outside [0, 1] (first at row {first[0]}: {arr[first]:g})",
            fix="send probabilities, not logits or percentages",
        )
    if arr.ndim == 2 and arr.shape[1] >= 2:
        sums = arr.sum(axis=1)
        off = np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE
        if off.any():
            first = int(np.argmax(off))
            raise ValueProblem(
                f"{int(off.sum())} row(s) of class probabilities do not sum to 1 "
                f"(first at row {first}: {sums[first]:.6g})",
                fix="send softmax class probabilities (one row per case, summing to 1), "
                "or independent probabilities as separate outputs",
            )


def check_labels(arr: np.ndarray) -> np.ndarray:
    """Class labels: 1-D whole numbers in ``[0, MAX_CLASS_LABEL]``; returned as int64.

    Example:
        >>> check_labels(np.array([0.0, 2.0])).tolist()
        [0, 2]
        >>> try:
        ...     check_labels(np.array([0.0, 1e30]))
        ... except ValueProblem as err:
        ...     print(err.reason[:54])
        class labels must be whole numbers in [0, 2147483647];
    """
    if arr.ndim != 1:
        raise ValueProblem(f"class labels must be 1-D, got shape {arr.shape}")
    fractional = arr != np.round(arr)
    if fractional.any():
        first = int(np.argmax(fractional))
        raise ValueProblem(
            f"class labels must be whole numbers; {int(fractional.sum())} value(s) are not "
            f"(first at row {first}: {arr[first]:g})"
        )
    out = (arr < 0) | (arr > MAX_CLASS_LABEL)
    if out.any():
        first = int(np.argmax(out))
        raise ValueProblem(
            f"class labels must be whole numbers in [0, {MAX_CLASS_LABEL}]; "
            f"{int(out.sum())} value(s) are not (first at row {first}: {arr[first]:g})",
            fix="send class indices 0 .. C-1",
        )
    return arr.astype(np.int64)


def epoch_to_iso(value: float | int) -> str:
    """ISO-8601 UTC text of epoch seconds; refuses NaN, infinities and years outside 1-9999.

    Example:
        >>> epoch_to_iso(86400)
        '1970-01-02T00:00:00+00:00'
    """
    try:
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError("not finite")
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        raise ValueProblem(
            f"timestamp {short_repr(value)} is not a usable time in epoch seconds "
            "(a finite number of seconds since 1970-01-01 UTC within the years 1-9999)",
            fix="send ISO-8601 text such as 2025-03-01T10:00:00+00:00, or epoch seconds",
        ) from None
