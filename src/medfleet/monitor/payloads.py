"""Request bodies of the monitoring service: JSON text to a checked batch or reference.

The parsers take whatever a client sent and either return validated outputs or raise
:class:`PayloadError` (a :class:`~medfleet.monitor.batches.BatchError`, so a
:class:`~medfleet.errors.MedfleetError`) naming the field: never another exception,
whatever the JSON holds (``tests/monitor/test_batch_fuzz.py`` checks this). A body is a
JSON object nested at most :data:`MAX_JSON_DEPTH` levels deep:

* batch: ``{"batch_id": "b7", "timestamp": "2025-03-01T10:00:00+00:00" or epoch seconds,
  "outputs": {"prob": [...], "pred_class": [...]}}``
* reference: ``{"outputs": {...}}``

Example:
    >>> batch = parse_batch(
    ...     parse_json(b'{"batch_id": 7, "timestamp": 0, "outputs": {"prob": [0.2, 0.9]}}'),
    ...     site="site_a",
    ... )
    >>> batch.batch_id, batch.timestamp, batch.n
    ('7', '1970-01-01T00:00:00+00:00', 2)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from medfleet.monitor.batches import BatchError, OutputBatch, validate_outputs
from medfleet.monitor.values import printable_text, short_repr

BATCH_FIELDS = ("batch_id", "timestamp", "outputs")
"""Fields of a batch body."""

REFERENCE_FIELDS = ("outputs",)
"""Fields of a reference body."""

MAX_BATCH_ID = 200
"""Longest batch id accepted (in characters)."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of objects and lists accepted in a body (a batch needs 4)."""


class PayloadError(BatchError):
    """A request body that is not a well-formed batch or reference (answered 422)."""


def parse_json(raw: bytes) -> Any:
    """Decode a UTF-8 JSON body nested at most :data:`MAX_JSON_DEPTH` levels deep.

    Raises:
        PayloadError: Empty, not UTF-8, not JSON, or nested too deep (field ``body``, or
            the object key under which the nesting goes too deep).

    Example:
        >>> parse_json(b'{"a": [1, 2]}')
        {'a': [1, 2]}
    """
    if not raw.strip():
        raise PayloadError("body is empty; send a JSON object", field="body")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise PayloadError(
            f"body nests lists or objects far deeper than the {MAX_JSON_DEPTH} levels allowed",
            field="body",
        ) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise PayloadError(f"body is not valid JSON: {_first_line(err)}", field="body") from None
    check_depth(value)
    return value


def _first_line(err: Exception) -> str:
    return short_repr(str(err).splitlines()[0] if str(err) else type(err).__name__, 200)


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON-like data nested more than ``limit`` levels deep (without recursing).

    Raises:
        PayloadError: Naming the innermost object key above the excess (else ``body``).

    Example:
        >>> check_depth({"outputs": {"prob": [[0.5]]}}, limit=4)
        >>> try:
        ...     check_depth({"outputs": {"prob": [[[0.5]]]}}, limit=4)
        ... except PayloadError as err:
        ...     print(err.field)
        prob
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, "body")]
    while stack:
        item, depth, field = stack.pop()
        if depth > limit:
            raise PayloadError(
                f"nests lists or objects more than {limit} levels deep",
                field=field,
                fix="send one value or one row of values per case",
            )
        if isinstance(item, dict):
            stack.extend(
                (v, depth + 1, str(k)[:100]) for k, v in item.items() if isinstance(v, list | dict)
            )
        elif isinstance(item, list):
            stack.extend((v, depth + 1, field) for v in item if isinstance(v, list | dict))


def body_fields(
    body: Any, allowed: tuple[str, ...], required: tuple[str, ...], site: str | None = None
) -> dict[str, Any]:
    """The body as a dict with only ``allowed`` fields and every ``required`` one.

    Example:
        >>> body_fields({"outputs": {}}, REFERENCE_FIELDS, ("outputs",))
        {'outputs': {}}
    """
    if not isinstance(body, dict):
        raise PayloadError(
            f"body must be a JSON object with {', '.join(allowed)}", site=site, field="body"
        )
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        names = ", ".join(short_repr(u, 60) for u in unknown[:5])
        raise PayloadError(
            f"unknown field(s) {names}; allowed: {', '.join(allowed)}",
            site=site,
            field=unknown[0][:100],
        )
    for name in required:
        if name not in body:
            raise PayloadError(f"missing field {name!r}", site=site, field=name)
    return body


def parse_batch_id(value: Any, site: str | None = None) -> str:
    """A batch id: text or an integer, 1-:data:`MAX_BATCH_ID` printable characters.

    Example:
        >>> parse_batch_id(12)
        '12'
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError("batch_id must be text or an integer", site=site, field="batch_id")
    if isinstance(value, int) and abs(value) >= 10**MAX_BATCH_ID:
        text = "9" * (MAX_BATCH_ID + 1)  # too long; never converted (huge ints are slow)
    else:
        text = str(value)
    if not text.strip():
        raise PayloadError("batch_id is empty", site=site, field="batch_id")
    if len(text) > MAX_BATCH_ID or not printable_text(text):
        raise PayloadError(
            f"batch_id must be at most {MAX_BATCH_ID} printable characters",
            site=site,
            field="batch_id",
        )
    return text


def outputs_field(data: Mapping[str, Any], site: str | None = None) -> dict[str, Any]:
    """The ``outputs`` object: a non-empty mapping of name -> list.

    Example:
        >>> outputs_field({"outputs": {"prob": [0.5]}})
        {'prob': [0.5]}
    """
    outputs = data["outputs"]
    if not isinstance(outputs, dict) or not outputs:
        raise PayloadError(
            'outputs must be a non-empty object of name -> list of values, e.g. {"prob": [0.2]}',
            site=site,
            field="outputs",
        )
    for name, values in outputs.items():
        if not isinstance(values, list):
            raise PayloadError(
                "must be a list (one value or row per case)",
                site=site,
                field=str(name)[:100],
            )
    return outputs


def parse_batch(
    body: Any, site: str, kinds: Mapping[str, str] | None = None, *, default_time: Any = None
) -> OutputBatch:
    """A validated :class:`OutputBatch` from a decoded batch body.

    Args:
        body: The decoded JSON.
        site: The site it was posted for.
        kinds: Output kinds by name (the config's ``outputs``).
        default_time: Timestamp when the body has none (None: now, UTC).

    Raises:
        BatchError: Anything wrong with the body or its values, naming the field.
    """
    data = body_fields(body, BATCH_FIELDS, ("batch_id", "outputs"), site)
    batch_id = parse_batch_id(data["batch_id"], site)
    timestamp = data.get("timestamp", default_time)
    if timestamp is not None and (
        not isinstance(timestamp, str | int | float) or isinstance(timestamp, bool)
    ):
        raise PayloadError(
            "timestamp must be ISO-8601 text or epoch seconds",
            site=site,
            batch_id=batch_id,
            field="timestamp",
        )
    arrays = validate_outputs(outputs_field(data, site), kinds, site=site, batch_id=batch_id)
    try:
        return OutputBatch(site, batch_id, timestamp, arrays)
    except BatchError as err:
        raise PayloadError(
            err.reason, site=site, batch_id=batch_id, field=err.field, fix=err.fix
        ) from None


def parse_reference(
    body: Any, site: str, kinds: Mapping[str, str] | None = None
) -> dict[str, np.ndarray]:
    """Validated reference outputs from a decoded reference body.

    Example:
        >>> parse_reference({"outputs": {"prob": [0.1, 0.3]}}, "a")["prob"].tolist()
        [0.1, 0.3]
    """
    data = body_fields(body, REFERENCE_FIELDS, ("outputs",), site)
    return validate_outputs(outputs_field(data, site), kinds, site=site, batch_id="reference")
