"""Challenge presets: official scoring schemes selected by ``medfleet evaluate --preset NAME``.

Each preset reproduces one challenge's official score and writes every component (and
the per-subgroup tables where the scheme has them) into ``summary.json``. Where the
official code has a known quirk, the preset keeps the behaviour documented in
docs/challenges.md as its default and offers the other one as a ``--preset-option``.

Example:
    >>> sorted(PRESETS)[:3]
    ['curvas', 'fmc-uia', 'fugc']
    >>> get_preset("hc18").task_types
    ('segmentation',)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medfleet.errors import OptionError
from medfleet.evaluate.challenges.base import (
    Preset,
    PresetOption,
    PresetOutcome,
    PresetRun,
    case_errors,
    parse_option_value,
)
from medfleet.evaluate.challenges.curvas import PRESET as _CURVAS
from medfleet.evaluate.challenges.fmc_uia import PRESET as _FMC_UIA
from medfleet.evaluate.challenges.fugc import PRESET as _FUGC
from medfleet.evaluate.challenges.hc18 import PRESET as _HC18
from medfleet.evaluate.challenges.iugc import PRESET as _IUGC
from medfleet.evaluate.challenges.landmarks_isbi2015 import PRESET as _ISBI2015
from medfleet.evaluate.challenges.mama_mia import PCR_PRESET as _MAMA_MIA_PCR
from medfleet.evaluate.challenges.mama_mia import SEG_PRESET as _MAMA_MIA_SEG

__all__ = [
    "PRESETS",
    "Preset",
    "PresetOption",
    "PresetOutcome",
    "PresetRun",
    "get_preset",
    "parse_option_value",
    "run_preset",
]

#: Every preset by name.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _MAMA_MIA_SEG,
        _MAMA_MIA_PCR,
        _CURVAS,
        _FUGC,
        _IUGC,
        _FMC_UIA,
        _ISBI2015,
        _HC18,
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        OptionError: No such preset (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise OptionError(
            f"unknown preset {name!r} (fix: use one of {', '.join(sorted(PRESETS))})"
        ) from None


def run_preset(
    config: Any,
    meta_rows: Mapping[str, Mapping[str, Any]],
    progress: Any = None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Score a run with its preset.

    Args:
        config: An :class:`~medfleet.evaluate.runner.config.EvaluationConfig` whose ``preset``
            is set.
        meta_rows: ``--meta`` rows by case id.
        progress: Optional ``progress(done, total)`` callback.

    Returns:
        ``(scored, cases, preset_block)``: a
        :class:`~medfleet.evaluate.runner.config.ScoredTask` for the runner, the ``cases``
        block and the ``preset`` block of ``summary.json``.

    Raises:
        OptionError: Unknown preset or option, a task type the preset does not take.
    """
    from medfleet.evaluate.runner.aggregate import summarize_table
    from medfleet.evaluate.runner.config import ScoredTask

    preset = get_preset(config.preset)
    if config.task_type not in preset.task_types:
        raise OptionError(
            f"preset {preset.name} scores {', '.join(preset.task_types)} tasks, not "
            f"{config.task_type} (fix: drop --task-type or use one of those)"
        )
    options = preset.parse_options(dict(config.preset_options or ()))
    units = preset.resolve_units(config.units)
    run = PresetRun(config, meta_rows, options, units, progress)
    outcome = preset.run(run)
    metrics = summarize_table(
        outcome.rows, outcome.metrics, group_by=outcome.group_by, worst=outcome.worst
    )
    conventions = {
        "preset": preset.name,
        "preset_options": options,
        "units": units,
        **outcome.conventions,
        "allow_missing": config.allow_missing,
        "std_ddof": 1,
    }
    warnings = list(outcome.warnings)
    cases = dict(outcome.cases)
    failed = case_errors(outcome.rows)
    cases["errors"] = len(failed)
    if failed:
        cases["error_cases"] = failed
        warnings.append(
            f"{len(failed)} case(s) could not be scored and are left out of every mean "
            f"(status 'error' in cases.csv, with the reason): {', '.join(failed)}"
        )
    scored = ScoredTask(outcome.rows, metrics, dict(outcome.components), conventions, warnings)
    block = {
        "name": preset.name,
        "title": preset.title,
        "source": preset.source,
        "formula": preset.summary,
        "options": options,
        "units": units,
        "score": outcome.score,
        "score_name": outcome.score_name,
        "components": outcome.components,
        "subgroups": outcome.subgroups,
        "higher_is_better": outcome.higher_is_better,
        "report": outcome.report,
    }
    return scored, cases, block
