"""Building blocks shared by the challenge presets: options, run context and outcome.

A :class:`Preset` bundles an official scoring scheme: the task types it accepts, the
options that switch between the official code's behaviour and the intended definition,
and a ``run`` function that reads the inputs of an
:class:`~medfleet.evaluate.runner.config.EvaluationConfig` and returns a
:class:`PresetOutcome` (per-case rows, the official score and every component, subgroup
tables). The runner turns the outcome into ``cases.csv``, ``summary.json`` and the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from medfleet.errors import MedfleetError, OptionError, one_line
from medfleet.evaluate.runner.cases import CaseMismatchError

__all__ = [
    "Preset",
    "PresetOption",
    "PresetOutcome",
    "PresetRun",
    "case_error_row",
    "case_errors",
    "finite_mean",
    "parse_option_value",
    "score_cases",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class PresetOption:
    """One ``--preset-option NAME=VALUE`` of a preset.

    Attributes:
        name: Option name.
        default: Value when the option is not given (already of the option's kind).
        help: One-line description (shown in docs and errors).
        kind: ``"str"``, ``"bool"``, ``"float"``, ``"int"`` or ``"path"``.
        choices: Allowed values of a ``"str"`` option (``None``: any).
    """

    name: str
    default: Any
    help: str
    kind: str = "str"
    choices: tuple[str, ...] | None = None


def parse_option_value(option: PresetOption, text: str, preset: str) -> Any:
    """Convert the text of a ``--preset-option`` to the option's kind.

    Example:
        >>> parse_option_value(PresetOption("literal", False, "x", "bool"), "true", "curvas")
        True
        >>> parse_option_value(PresetOption("hd_max", 150.0, "x", "float"), "100", "p")
        100.0
    """
    raw = text.strip()
    where = f"--preset-option {option.name}={text!r} ({preset})"
    if option.kind == "bool":
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise OptionError(f"{where} is not a boolean (fix: true or false)")
    if option.kind in ("float", "int"):
        try:
            value: float | int = float(raw) if option.kind == "float" else int(raw)
        except ValueError:
            raise OptionError(f"{where} is not a number (fix: e.g. {option.default})") from None
        if option.kind == "float" and not math.isfinite(float(value)):
            raise OptionError(f"{where} must be finite")
        return value
    if option.kind == "path":
        if not raw:
            raise OptionError(f"{where} is empty (fix: give a path)")
        return Path(raw)
    if option.choices is not None and raw not in option.choices:
        raise OptionError(f"{where} is not one of {', '.join(option.choices)}")
    return raw


@dataclass(frozen=True)
class Preset:
    """An official challenge scoring scheme, selected by ``medfleet evaluate --preset NAME``.

    Attributes:
        name: Preset name (``mama-mia-seg``, ``curvas``, ...).
        title: Human-readable title.
        source: Where the official definition comes from (paper, code repository, page).
        task_types: Task types the preset accepts; the first is the default.
        options: The preset's options.
        run: Scores a run: ``run(PresetRun) -> PresetOutcome``.
        units: Allowed ``--units`` values, the default first (empty: not applicable).
        summary: One-line description of the official score.
    """

    name: str
    title: str
    source: str
    task_types: tuple[str, ...]
    options: tuple[PresetOption, ...]
    run: Callable[[PresetRun], PresetOutcome]
    units: tuple[str, ...] = ()
    summary: str = ""

    def option(self, name: str) -> PresetOption:
        """The option called ``name``."""
        for opt in self.options:
            if opt.name == name:
                return opt
        known = ", ".join(o.name for o in self.options) or "none"
        raise OptionError(f"preset {self.name} has no option {name!r} (fix: use one of: {known})")

    def parse_options(self, raw: Mapping[str, str] | None) -> dict[str, Any]:
        """Defaults updated by the given ``NAME -> text`` options, converted to their kinds.

        Example:
            >>> from medfleet.evaluate.challenges import get_preset
            >>> get_preset("curvas").parse_options({"literal": "true"})["literal"]
            True
        """
        values = {o.name: o.default for o in self.options}
        for name, text in (raw or {}).items():
            values[name] = parse_option_value(self.option(name), str(text), self.name)
        return values

    def resolve_units(self, units: str | None) -> str | None:
        """The ``--units`` value to use (the preset default when ``None``)."""
        if units is None:
            return self.units[0] if self.units else None
        if not self.units:
            raise OptionError(f"preset {self.name} takes no --units (got {units!r})")
        if units not in self.units:
            raise OptionError(
                f"--units {units!r} is not valid for preset {self.name} "
                f"(fix: use one of {', '.join(self.units)})"
            )
        return units


@dataclass
class PresetRun:
    """Everything a preset's ``run`` needs.

    Attributes:
        config: The evaluation configuration (inputs, task type, missing-case policy).
        meta_rows: ``--meta`` rows by case id.
        options: The parsed preset options.
        units: The resolved ``--units`` value (``None`` when not applicable).
        progress: Optional ``progress(done, total)`` callback.
    """

    config: Any
    meta_rows: Mapping[str, Mapping[str, Any]]
    options: dict[str, Any]
    units: str | None = None
    progress: Callable[[int, int], None] | None = None

    def tick(self, done: int, total: int) -> None:
        """Report progress when a callback was given."""
        if self.progress is not None:
            self.progress(done, total)


@dataclass
class PresetOutcome:
    """What a preset hands back to the runner.

    Attributes:
        rows: Rows of ``cases.csv`` (one per case, or per case and part/label).
        metrics: Per-case metric columns summarised in ``summary.json``.
        score: The official score (``None`` when the scheme has none or it is undefined).
        score_name: What ``score`` is (e.g. ``"ranking score"``).
        components: Every component of the score (and reported-only values).
        cases: The ``cases`` block of ``summary.json``.
        group_by: Column that groups ``rows`` in the metric summaries (``None``: one group).
        worst: Metric -> worst value for penalised rows in the summaries.
        subgroups: Per-subgroup tables (variable -> group -> values, with ``n``).
        conventions: Conventions and options used.
        warnings: Notes about individual cases or groups.
        higher_is_better: Metric -> direction (used to list the worst cases in the report).
        report: Extra data for the report (reliability bins, Bland-Altman columns).
    """

    rows: list[dict[str, Any]]
    metrics: list[str]
    score: float | None
    score_name: str
    components: dict[str, Any]
    cases: dict[str, Any]
    group_by: str | None = None
    worst: dict[str, float] = field(default_factory=dict)
    subgroups: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def finite_mean(values: Sequence[float]) -> tuple[float, int]:
    """Mean over the finite values and the number of infinite ones (NaN ignored).

    Example:
        >>> finite_mean([1.0, 3.0, float("inf")])
        (2.0, 1)
    """
    finite = [float(v) for v in values if math.isfinite(float(v))]
    n_inf = sum(1 for v in values if math.isinf(float(v)))
    return (sum(finite) / len(finite) if finite else math.nan), n_inf


#: ``status`` of a ``cases.csv`` row whose case could not be scored.
CASE_ERROR = "error"


def case_error_row(case_id: str, exc: BaseException, **extra: Any) -> dict[str, Any]:
    """The ``cases.csv`` row of a case that could not be scored.

    A per-case failure (a rater map the official code would index out of range, an
    unreadable file, a degenerate fit) never aborts a preset run: the case gets this row,
    with ``status`` ``"error"`` and the first line of the error, and the runner counts it
    in ``summary.json`` (``cases.errors``) and names it in the warnings. Its metric columns
    are absent, so the summaries skip it.

    Args:
        case_id: The case.
        exc: What went wrong.
        **extra: Further columns (e.g. the part or label of a per-part row).

    Example:
        >>> case_error_row("case_07", IndexError("index 3 is out of bounds"))
        {'case_id': 'case_07', 'status': 'error', 'error': 'index 3 is out of bounds'}
    """
    return {"case_id": case_id, "status": CASE_ERROR, "error": one_line(exc), **extra}


def case_errors(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The case ids (each once, in row order) of rows written by :func:`case_error_row`.

    Example:
        >>> case_errors([{"case_id": "a", "status": "ok"}, {"case_id": "b", "status": "error"}])
        ['b']
    """
    seen: dict[str, None] = {}
    for row in rows:
        if row.get("status") == CASE_ERROR:
            seen.setdefault(str(row["case_id"]), None)
    return list(seen)


#: What one case may raise and leave the run going: a medfleet error about the case (its
#: file, a cell, a fit), or numpy's and the official formulas' own failures.
CASE_FAILURES: tuple[type[BaseException], ...] = (
    MedfleetError,
    ValueError,
    IndexError,
    KeyError,
    OSError,
    ArithmeticError,
)
#: What stops the whole run even from inside one case: a bad option, mismatched case sets.
RUN_FAILURES: tuple[type[BaseException], ...] = (OptionError, CaseMismatchError)

_T = TypeVar("_T")


def score_cases(
    run: PresetRun,
    case_ids: Sequence[str],
    score_one: Callable[[str], _T],
    rows: list[dict[str, Any]],
    *,
    require_one: bool = True,
) -> Iterator[tuple[str, _T]]:
    """Score each case, yielding ``(case_id, result)``; a failing case becomes an error row.

    The one loop of the presets: progress ticks, :func:`case_error_row` for a case that
    raises one of :data:`CASE_FAILURES` (appended to ``rows`` in case order, between the
    rows the caller appends for the cases yielded), and :data:`RUN_FAILURES` passed on.

    Args:
        run: The preset run (its progress callback).
        case_ids: The cases, in order.
        score_one: Scores one case.
        rows: The ``cases.csv`` rows; error rows are appended here.
        require_one: Stop, naming the first failure, when no case could be scored.

    Raises:
        MedfleetError: No case could be scored (with ``require_one``).

    Example:
        >>> rows = []
        >>> run = PresetRun(None, {}, {})
        >>> for c, v in score_cases(run, ["a", "b"], lambda c: 1 / (c == "a"), rows):
        ...     rows.append({"case_id": c, "status": "ok", "x": v})
        >>> [(r["case_id"], r["status"]) for r in rows]
        [('a', 'ok'), ('b', 'error')]
    """
    failures: list[tuple[str, BaseException]] = []
    total = len(case_ids)
    run.tick(0, total)
    for done, case_id in enumerate(case_ids, start=1):
        try:
            result = score_one(case_id)
        except RUN_FAILURES:
            raise
        except CASE_FAILURES as exc:
            rows.append(case_error_row(case_id, exc))
            failures.append((case_id, exc))
        else:
            yield case_id, result
        run.tick(done, total)
    if require_one and failures and len(failures) == total:
        case_id, exc = failures[0]
        raise MedfleetError(f"no case could be scored; the first, case {case_id}: {exc}")
