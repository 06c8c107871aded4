"""Batches of model outputs: the unit a site agent tests, plus reading and validation.

An :class:`OutputBatch` holds one site's outputs for one batch: a mapping from
output name to an array with one row per case, for example ``"prob"`` of
shape ``(n,)`` or ``(n, C)`` and ``"pred_class"`` of shape ``(n,)``. The kind of
each output (probability, score, class label, embedding) decides which tests
apply; it comes from the configuration or from the name (:func:`output_kind`).

Tables (CSV or Parquet) hold one row per case with a site column, a time
column and output columns; ``prob_0 .. prob_{C-1}`` become one ``(n, C)``
output ``prob``. Batches are the rows sharing a batch-id column, or else the
rows of a site falling in one time window (``batch_freq``, e.g. ``1D``).

Every problem raises :class:`BatchError` naming the site, batch and field.

Example:
    >>> import numpy as np
    >>> b = OutputBatch("site_a", "b1", "2024-01-01T00:00:00", {"prob": np.array([0.1, 0.9])})
    >>> b.n
    2
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError, one_line
from medfleet.monitor.values import (
    MAX_CLASS_LABEL,
    ValueProblem,
    check_labels,
    check_probabilities,
    epoch_to_iso,
    numeric_array,
    printable_text,
    short_repr,
)

__all__ = [
    "MAX_CLASS_LABEL",
    "MAX_OUTPUT_NAME",
    "BatchError",
    "OutputBatch",
    "OutputKind",
    "check_against",
    "normalise_timestamp",
    "output_columns",
    "output_kind",
    "outputs_digest",
    "read_batches",
    "read_reference",
    "read_table_file",
    "table_outputs",
    "validate_outputs",
]


MAX_OUTPUT_NAME = 100
"""Longest output name accepted (in characters)."""


class BatchError(MedfleetError, ValueError):
    """A batch (or reference) of outputs cannot be accepted.

    Attributes:
        site: Site the batch came from, when known.
        batch_id: Batch identifier, when known.
        field: The offending field: an output name, ``site``, ``batch_id``,
            ``reference``, ``n`` or a table column.
        fix: What would fix it, when known.

    Example:
        >>> str(BatchError("has NaN", site="a", batch_id="b7", field="prob"))
        "site 'a' batch 'b7' field 'prob': has NaN"
    """

    def __init__(
        self,
        reason: str,
        *,
        site: str | None = None,
        batch_id: str | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.site = site
        self.batch_id = batch_id
        self.field = field
        self.reason = reason
        self.fix = fix
        where = []
        if site is not None:
            where.append(f"site {site!r}")
        if batch_id is not None:
            where.append(f"batch {batch_id!r}")
        if field is not None:
            where.append(f"field {field!r}")
        message = (" ".join(where) + ": " if where else "") + reason
        if fix:
            message += f" (fix: {fix})"
        super().__init__(message)


class OutputKind(enum.StrEnum):
    """What an output holds; decides validation and which tests apply."""

    probability = "probability"
    score = "score"
    label = "label"
    embedding = "embedding"


def output_kind(name: str, kinds: Mapping[str, str] | None = None) -> OutputKind:
    """Kind of an output: from ``kinds`` if listed there, else guessed from its name.

    Names starting with ``prob`` are probabilities; names ending in ``class`` or
    ``label`` are class labels; names starting with ``emb`` are embeddings;
    anything else is a real-valued score.

    Example:
        >>> [output_kind(n).value for n in ("prob", "pred_class", "risk", "emb")]
        ['probability', 'label', 'score', 'embedding']
    """
    if kinds and name in kinds:
        return OutputKind(kinds[name])
    low = name.lower()
    if low.startswith("prob"):
        return OutputKind.probability
    if low.endswith(("class", "label")):
        return OutputKind.label
    if low.startswith("emb"):
        return OutputKind.embedding
    return OutputKind.score


def normalise_timestamp(value: Any) -> str:
    """ISO-8601 text for a timestamp given as text, datetime, pandas Timestamp or epoch seconds.

    Raises:
        BatchError: Text that is not ISO-8601, epoch seconds that are not finite or fall
            outside the years 1-9999, or a missing pandas time (``NaT``); field ``timestamp``.

    Example:
        >>> normalise_timestamp(0)
        '1970-01-01T00:00:00+00:00'
        >>> normalise_timestamp("2024-05-01")
        '2024-05-01T00:00:00'
    """
    if value is None:
        return datetime.now(UTC).isoformat()
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    ):
        try:
            return epoch_to_iso(value)
        except ValueProblem as exc:
            raise BatchError(exc.reason, field="timestamp", fix=exc.fix) from None
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        if text == "NaT":
            raise BatchError("timestamp is missing (NaT)", field="timestamp")
        return text
    if isinstance(value, np.datetime64):
        value = str(value)
    if not isinstance(value, str):
        raise BatchError(
            f"timestamp must be ISO-8601 text or epoch seconds, got {type(value).__name__}",
            field="timestamp",
        )
    text = value.strip()
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        raise BatchError(
            f"timestamp {short_repr(text)} is not ISO-8601",
            field="timestamp",
            fix="use e.g. 2024-05-01T12:00",
        ) from None


@dataclass(frozen=True)
class OutputBatch:
    """One site's outputs for one batch.

    Attributes:
        site: Site name.
        batch_id: Identifier unique within the site; re-sending it is a no-op.
        timestamp: When the batch was produced (ISO-8601 text; datetimes and epoch
            seconds are converted).
        outputs: Output name -> array with one row per case.
        n: Number of cases (rows); computed from ``outputs`` when omitted.
    """

    site: str
    batch_id: str
    timestamp: str
    outputs: dict[str, np.ndarray] = field(repr=False)
    n: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "site", str(self.site))
        object.__setattr__(self, "batch_id", str(self.batch_id))
        object.__setattr__(self, "timestamp", normalise_timestamp(self.timestamp))
        arrays = {str(k): np.asarray(v) for k, v in dict(self.outputs).items()}
        object.__setattr__(self, "outputs", arrays)
        if self.n is None:
            rows = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
            object.__setattr__(self, "n", max(rows) if rows else 0)


def validate_outputs(
    outputs: Mapping[str, Any],
    kinds: Mapping[str, str] | None = None,
    *,
    site: str | None = None,
    batch_id: str | None = None,
    required: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Check and convert outputs; raise :class:`BatchError` on the first problem.

    Checks: at least one output and one row; every output is a list (or array) of numbers
    with one value or one row per case, the same number of rows for all (booleans, text,
    objects and ragged or deeper nesting are refused); values are finite; probabilities are
    in [0, 1] and rows of class probabilities sum to 1; class labels are whole numbers in
    ``[0, MAX_CLASS_LABEL]``; the ``required`` outputs are present.

    Returns:
        Output name -> float64 array (labels as int64).

    Example:
        >>> try:
        ...     validate_outputs({"prob": [0.2, 1.5]}, site="a", batch_id="b")
        ... except BatchError as err:
        ...     print(err.field, "|", err.reason)
        prob | 1 value(s) outside [0, 1] (first at row 1: 1.5)
    """
    where = {"site": site, "batch_id": batch_id}
    if not isinstance(outputs, Mapping) or not outputs:
        raise BatchError("no outputs given", field="outputs", **where)
    for name in required or []:
        if name not in outputs:
            raise BatchError(
                f"output is missing (have: {', '.join(sorted(map(str, outputs)))})",
                field=name,
                fix="send the same outputs as the reference",
                **where,
            )
    result: dict[str, np.ndarray] = {}
    rows: int | None = None
    for name, raw in outputs.items():
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= MAX_OUTPUT_NAME
            or not printable_text(name)
        ):
            raise BatchError(
                f"output names must be 1-{MAX_OUTPUT_NAME} printable characters, "
                f"got {short_repr(name)}",
                field="outputs",
                **where,
            )
        try:
            result[name] = arr = _checked_values(name, raw, kinds)
        except ValueProblem as exc:
            raise BatchError(exc.reason, field=name, fix=exc.fix, **where) from None
        if rows is None:
            rows = arr.shape[0]
        elif arr.shape[0] != rows:
            raise BatchError(
                f"has {arr.shape[0]} rows but other outputs have {rows}", field=name, **where
            )
    return result


def _checked_values(name: str, raw: Any, kinds: Mapping[str, str] | None) -> np.ndarray:
    kind = output_kind(name, kinds)
    arr = numeric_array(raw)
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueProblem(f"expected one row per case (1-D or 2-D), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueProblem("batch is empty (0 rows)", fix="send at least one case")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argwhere(bad)[0][0])
        raise ValueProblem(
            f"{int(bad.sum())} value(s) are NaN or infinite (first at row {first})",
            fix="drop or repair those cases before sending",
        )
    if kind is OutputKind.probability:
        check_probabilities(arr)
    if kind is OutputKind.label:
        arr = check_labels(arr)
    return arr


def check_against(
    outputs: Mapping[str, np.ndarray],
    template: Mapping[str, np.ndarray],
    *,
    site: str | None = None,
    batch_id: str | None = None,
) -> None:
    """Refuse outputs whose names or per-row shapes differ from ``template``'s (the reference).

    Every output of the reference must be there (none is dropped) and no other: a batch
    is compared with its reference output by output.

    Raises:
        BatchError: Naming the first missing, unexpected or differently shaped output.

    Example:
        >>> ref = {"prob": np.zeros(3), "pred_class": np.zeros(3)}
        >>> try:
        ...     check_against({"prob": np.zeros(2)}, ref, site="a", batch_id="b")
        ... except BatchError as err:
        ...     print(err.field, "|", err.reason)
        pred_class | output is missing (have: prob; the reference has: pred_class, prob)
    """
    where = {"site": site, "batch_id": batch_id}
    expected = ", ".join(sorted(template))
    for name in template:
        if name not in outputs:
            raise BatchError(
                f"output is missing (have: {', '.join(sorted(outputs))}; "
                f"the reference has: {expected})",
                field=name,
                fix="send the same outputs as the reference",
                **where,
            )
    for name in outputs:
        if name not in template:
            raise BatchError(
                f"output is not in the reference (the reference has: {expected})",
                field=name,
                fix="send the same outputs as the reference, or replace the reference",
                **where,
            )
    for name, ref in template.items():
        per_row = np.asarray(ref).shape[1:]
        if np.asarray(outputs[name]).shape[1:] != per_row:
            raise BatchError(
                f"has shape {np.asarray(outputs[name]).shape} but the reference has "
                f"{per_row or 'one column'} per row",
                field=name,
                **where,
            )


def outputs_digest(outputs: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of validated outputs (names, dtypes, shapes, values): tells re-sent batches apart.

    Example:
        >>> a = outputs_digest({"prob": np.array([0.1, 0.2])})
        >>> b = outputs_digest({"prob": np.array([0.2, 0.1])})
        >>> a == outputs_digest({"prob": np.array([0.1, 0.2])}), a == b
        (True, False)
    """
    h = hashlib.sha256()
    for name in sorted(outputs):
        arr = np.ascontiguousarray(outputs[name])
        h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def output_columns(
    outputs: Mapping[str, np.ndarray], kinds: Mapping[str, str] | None = None
) -> dict[str, tuple[OutputKind, np.ndarray]]:
    """Split outputs into named 1-D columns for per-column tests (embeddings are skipped).

    A ``(n, C)`` output ``prob`` becomes columns ``prob[0] .. prob[C-1]``.

    Example:
        >>> cols = output_columns({"prob": np.zeros((3, 2)), "pred_class": np.zeros(3)})
        >>> list(cols)
        ['prob[0]', 'prob[1]', 'pred_class']
    """
    cols: dict[str, tuple[OutputKind, np.ndarray]] = {}
    for name, arr in outputs.items():
        kind = output_kind(name, kinds)
        if kind is OutputKind.embedding:
            continue
        a = np.asarray(arr)
        if a.ndim == 1:
            cols[name] = (kind, a)
        else:
            for j in range(a.shape[1]):
                cols[f"{name}[{j}]"] = (kind, a[:, j])
    return cols


_INDEXED = re.compile(r"^(?P<base>.+)_(?P<index>\d+)$")


def table_outputs(frame: Any, columns: list[str] | None, reserved: set[str]) -> dict[str, Any]:
    """Output name -> 1-D or 2-D array from a table's columns (``x_0 .. x_k`` grouped as ``x``).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"site": ["a"], "prob_0": [0.3], "prob_1": [0.7]})
        >>> table_outputs(df, None, {"site"})["prob"].shape
        (1, 2)
    """
    names = [c for c in frame.columns if c not in reserved] if columns is None else []
    if columns is not None:
        for wanted in columns:
            if wanted in frame.columns:
                names.append(wanted)
            else:
                grouped = [
                    c
                    for c in frame.columns
                    if _INDEXED.match(str(c)) and _INDEXED.match(str(c)).group("base") == wanted
                ]
                if not grouped:
                    raise BatchError(
                        f"output column {wanted!r} (or {wanted}_0, {wanted}_1, ...) not in table "
                        f"(columns: {', '.join(map(str, frame.columns))})",
                        field=wanted,
                    )
                names.extend(grouped)
    plain: dict[str, Any] = {}
    groups: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        match = _INDEXED.match(str(name))
        if match and match.group("base") not in frame.columns:
            groups.setdefault(match.group("base"), []).append((int(match.group("index")), name))
        else:
            plain[str(name)] = frame[name].to_numpy()
    for base, members in groups.items():
        members.sort()
        indices = [i for i, _ in members]
        if indices != list(range(len(members))):
            raise BatchError(
                f"indexed columns of {base!r} must be {base}_0 .. {base}_{len(members) - 1}, "
                f"got indices {indices}",
                field=base,
            )
        plain[base] = np.column_stack([frame[c].to_numpy() for _, c in members])
    return plain


def read_table_file(path: str | Path) -> Any:
    """Read a CSV or Parquet table with pandas; errors name the file and the fix.

    Example:
        >>> try:
        ...     read_table_file("missing.csv")
        ... except BatchError as err:
        ...     print(err)
        field 'path': file missing.csv does not exist
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise BatchError(f"file {p} does not exist", field="path")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            try:
                return pd.read_parquet(p)
            except ImportError as exc:
                raise BatchError(
                    f"cannot read {p}: no Parquet engine installed",
                    field="path",
                    fix="pip install pyarrow, or convert the file to CSV",
                ) from exc
        if suffix in (".csv", ".tsv", ".txt") or suffix == ".gz":
            return pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
    except BatchError:
        raise
    except Exception as exc:
        raise BatchError(f"cannot read {p}: {exc}", field="path") from exc
    raise BatchError(
        f"cannot read {p}: unknown table type {suffix!r}", field="path", fix="use .csv or .parquet"
    )


def read_batches(
    path: str | Path,
    *,
    site_column: str = "site",
    time_column: str = "time",
    batch_column: str = "batch_id",
    batch_freq: str = "1D",
    outputs: list[str] | None = None,
    kinds: Mapping[str, str] | None = None,
) -> list[OutputBatch]:
    r"""Read a table of outputs and cut it into validated batches, in time order.

    Rows are grouped by site and by ``batch_column`` when the table has it,
    otherwise by time window of ``batch_freq`` (pandas offset alias) over
    ``time_column``; a window's batch id is its start time. Every batch is
    validated before any is returned, so a bad row stops the whole file.

    Args:
        path: CSV or Parquet file.
        site_column: Column holding the site name.
        time_column: Column holding the case time (ISO text or datetime).
        batch_column: Optional column holding a batch id.
        batch_freq: Window length when there is no batch column.
        outputs: Output columns to read (default: every other column).
        kinds: Output kinds by name (see :func:`output_kind`).

    Returns:
        Batches sorted by timestamp, then site, then batch id.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "o.csv"
        >>> _ = p.write_text("site,time,prob\na,2024-01-01T01:00,0.2\na,2024-01-02T01:00,0.4\n")
        >>> [(b.site, b.batch_id, b.n) for b in read_batches(p)]
        [('a', '2024-01-01T00:00:00', 1), ('a', '2024-01-02T00:00:00', 1)]
    """
    import pandas as pd

    frame = read_table_file(path)
    for col in (site_column, time_column):
        if col not in frame.columns:
            raise BatchError(
                f"{path}: column {col!r} is missing "
                f"(columns: {', '.join(map(str, frame.columns))})",
                field=col,
                fix=f"add a {col!r} column or set it in the config's input section",
            )
    if frame.empty:
        raise BatchError(f"{path}: table has no rows", field="n")
    try:
        # ISO 8601 in any precision and with or without a zone; no per-element guessing
        times = pd.to_datetime(frame[time_column], format="ISO8601")
    except (ValueError, TypeError, OverflowError) as exc:
        raise BatchError(
            f"{path}: column {time_column!r} has unreadable times ({one_line(exc)})",
            field=time_column,
            fix="write times as ISO 8601, e.g. 2026-03-01T14:30:00",
        ) from None
    frame = frame.assign(_time=times)
    has_batch = batch_column in frame.columns
    if not has_batch:
        try:
            frame["_batch"] = frame["_time"].dt.floor(batch_freq)
        except ValueError as exc:
            raise BatchError(
                f"batch_freq {batch_freq!r} is not a pandas offset alias ({exc})",
                field="batch_freq",
                fix="use e.g. 1D, 6h, 1W",
            ) from exc
    key = batch_column if has_batch else "_batch"
    reserved = {site_column, time_column, batch_column, "_time", "_batch"}
    batches = []
    for (site, bid), group in frame.groupby([site_column, key], sort=False):
        batch_id = bid.isoformat() if hasattr(bid, "isoformat") else str(bid)
        raw = table_outputs(group, outputs, reserved)
        arrays = validate_outputs(raw, kinds, site=str(site), batch_id=batch_id)
        stamp = group["_time"].min()
        batches.append(OutputBatch(str(site), batch_id, stamp.isoformat(), arrays))
    batches.sort(key=lambda b: (b.timestamp, b.site, b.batch_id))
    return batches


def read_reference(
    path: str | Path,
    site: str | None = None,
    *,
    site_column: str = "site",
    outputs: list[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    reserved: set[str] | None = None,
) -> dict[str, np.ndarray]:
    r"""Read reference outputs for one site from a CSV/Parquet table.

    When the table has a site column and ``site`` is given, only that site's
    rows are used.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
        >>> _ = p.write_text("site,prob\na,0.2\nb,0.4\na,0.3\n")
        >>> read_reference(p, "a")["prob"].tolist()
        [0.2, 0.3]
    """
    frame = read_table_file(path)
    if site is not None and site_column in frame.columns:
        frame = frame[frame[site_column].astype(str) == site]
        if frame.empty:
            raise BatchError(
                f"{path} has no reference rows for this site",
                site=site,
                field="reference",
                fix=f"add rows with {site_column}={site}",
            )
    skip = {site_column, "time", "batch_id"} | (reserved or set())
    raw = table_outputs(frame, outputs, skip)
    return validate_outputs(raw, kinds, site=site, batch_id="reference")
