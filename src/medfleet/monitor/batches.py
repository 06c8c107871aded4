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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError


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

    Example:
        >>> normalise_timestamp(0)
        '1970-01-01T00:00:00+00:00'
        >>> normalise_timestamp("2024-05-01")
        '2024-05-01T00:00:00'
    """
    if value is None:
        return datetime.now(UTC).isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC).isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    text = str(value).strip()
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise BatchError(
            f"timestamp {text!r} is not ISO-8601",
            field="timestamp",
            fix="use e.g. 2024-05-01T12:00",
        ) from exc


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

    Checks: at least one output and one row; every output has the same number
    of rows; probabilities are finite and in [0, 1]; scores and embeddings are
    finite; labels are whole numbers; the ``required`` outputs are present.

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
    if not outputs:
        raise BatchError("no outputs given", field="outputs", **where)
    for name in required or []:
        if name not in outputs:
            raise BatchError(
                f"output is missing (have: {', '.join(sorted(outputs))})",
                field=name,
                fix="send the same outputs as the reference",
                **where,
            )
    result: dict[str, np.ndarray] = {}
    rows: int | None = None
    for name, raw in outputs.items():
        kind = output_kind(name, kinds)
        try:
            arr = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BatchError(f"values are not numeric ({exc})", field=name, **where) from exc
        if arr.ndim == 0 or arr.ndim > 2:
            raise BatchError(
                f"expected one row per case (1-D or 2-D), got shape {arr.shape}",
                field=name,
                **where,
            )
        if arr.shape[0] == 0:
            raise BatchError(
                "batch is empty (0 rows)", field=name, fix="send at least one case", **where
            )
        if rows is None:
            rows = arr.shape[0]
        elif arr.shape[0] != rows:
            raise BatchError(
                f"has {arr.shape[0]} rows but other outputs have {rows}", field=name, **where
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argwhere(bad)[0][0])
            raise BatchError(
                f"{int(bad.sum())} value(s) are NaN or infinite (first at row {first})",
                field=name,
                fix="drop or repair those cases before sending",
                **where,
            )
        if kind is OutputKind.probability:
            out = (arr < 0) | (arr > 1)
            if out.any():
                first = tuple(np.argwhere(out)[0])
                raise BatchError(
                    f"{int(out.sum())} value(s) outside [0, 1] (first at row {first[0]}: "
                    f"{arr[first]:g})",
                    field=name,
                    fix="send probabilities, not logits or percentages",
                    **where,
                )
        if kind is OutputKind.label:
            if arr.ndim != 1:
                raise BatchError(
                    f"class labels must be 1-D, got shape {arr.shape}", field=name, **where
                )
            if np.any(arr != np.round(arr)):
                raise BatchError("class labels must be whole numbers", field=name, **where)
            arr = arr.astype(np.int64)
        result[str(name)] = arr
    return result


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
        times = pd.to_datetime(frame[time_column])
    except (ValueError, TypeError) as exc:
        raise BatchError(
            f"{path}: column {time_column!r} has unreadable times ({exc})", field=time_column
        ) from exc
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
