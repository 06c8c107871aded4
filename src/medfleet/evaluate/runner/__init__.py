"""The runner behind ``medfleet evaluate``: configuration, case matching, scoring, writing.

* :mod:`~medfleet.evaluate.runner.run`: :func:`run_evaluation` (match, score, write
  ``cases.csv``, ``summary.json`` and ``report.html``);
* :mod:`~medfleet.evaluate.runner.config`: :class:`EvaluationConfig` and what plain and
  preset runs share;
* :mod:`~medfleet.evaluate.runner.cases`: case ids, mask folders and per-case tables;
* :mod:`~medfleet.evaluate.runner.segmentation` and :mod:`~medfleet.evaluate.runner.tables`:
  plain segmentation runs and the table-based task types;
* :mod:`~medfleet.evaluate.runner.aggregate`: per-metric summaries;
* :mod:`~medfleet.evaluate.runner.report`: the evaluation's ``report.html``.

Example:
    >>> from medfleet.evaluate.runner import EvaluationConfig, run_evaluation
    >>> callable(run_evaluation) and EvaluationConfig.__name__
    'EvaluationConfig'
"""

from medfleet.evaluate.runner.run import (
    SUMMARY_SCHEMA,
    TASK_TYPES,
    EvaluationConfig,
    EvaluationResult,
    resample_nearest,
    run_evaluation,
)

__all__ = [
    "SUMMARY_SCHEMA",
    "TASK_TYPES",
    "EvaluationConfig",
    "EvaluationResult",
    "resample_nearest",
    "run_evaluation",
]
