"""The evaluation runner behind ``medfleet evaluate``: match cases, score, write results.

:func:`run_evaluation` takes an :class:`EvaluationConfig` and

1. finds the cases: mask folders for ``segmentation`` (case id = file name without its
   image suffix), CSV tables with a ``case_id`` column for the other task types;
2. matches predictions to references by case id and stops with one
   :class:`~medfleet.evaluate.runner.cases.CaseMismatchError` listing every missing, extra and
   mismatched (shape, spacing) case, unless ``allow_missing`` scores missing predictions
   as worst case (and ignores extra ones);
3. scores every case (segmentation in parallel worker processes), and
4. writes ``cases.csv`` (one row per case, and per label for segmentation and landmarks),
   ``summary.json`` (per-metric mean, std, median, n_valid, n_scored, n_cases, the
   dataset-level metrics, the conventions and the medfleet version) and ``report.html``
   (:mod:`medfleet.report`; for segmentation without a preset with a gallery of the worst
   cases' outlines, over their images from ``images`` when given), all atomically.

With ``preset`` set, a challenge preset (:mod:`medfleet.evaluate.challenges`) scores the
run instead and ``summary.json`` gains a ``preset`` block with the official score, every
component and the subgroup tables. A preset run that measures predictions alone
(``--preset iugc`` with ``mode=biometry``) has no ``gt``; ``inputs.gt`` is then ``null``.

Worst case of a missing prediction (``allow_missing``), per task type:

* segmentation: an empty mask (Dice 0; distances follow the one-empty policy);
* classification: a wrong class with probability 1 (the first class, in class order,
  other than the true one; for multilabel input the complement of the true set);
  a binary ``score`` of 0 for a positive case and 1 for a negative one;
* detection: no boxes (every ground-truth box missed);
* regression: no value: absolute and squared errors count as ``inf`` in the summary and the
  dataset MAE/RMSE are ``inf`` (bias and limits of agreement ``nan``);
* landmarks: every landmark missing, scored by the missing-landmark policy.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfleet import __version__
from medfleet.evaluate.runner.aggregate import json_safe
from medfleet.evaluate.runner.cases import read_case_table
from medfleet.evaluate.runner.config import TASK_TYPES, EvaluationConfig, ProgressCallback
from medfleet.evaluate.runner.segmentation import (
    Gallery,
    read_gallery,
    resample_nearest,
    score_segmentation,
)
from medfleet.evaluate.runner.tables import score_table_task
from medfleet.utils.atomic import atomic_open, write_json_atomic, write_text_atomic

__all__ = [
    "SUMMARY_SCHEMA",
    "TASK_TYPES",
    "EvaluationConfig",
    "EvaluationResult",
    "resample_nearest",
    "run_evaluation",
]

#: Version string of the ``summary.json`` layout.
SUMMARY_SCHEMA = "medfleet.evaluate.summary/1"


@dataclass
class EvaluationResult:
    """What :func:`run_evaluation` produced.

    Attributes:
        rows: The rows of ``cases.csv``.
        summary: The content of ``summary.json`` (before JSON conversion).
        cases_csv: Path of ``cases.csv``.
        summary_json: Path of ``summary.json``.
        report_html: Path of ``report.html`` (``None`` when the report was switched off).
    """

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    cases_csv: Path
    summary_json: Path
    report_html: Path | None = None


def run_evaluation(
    config: EvaluationConfig, *, progress: ProgressCallback | None = None
) -> EvaluationResult:
    """Score predictions against references and write ``cases.csv`` and ``summary.json``.

    Args:
        config: The run's inputs and conventions.
        progress: Called as ``progress(done, total)`` while segmentation cases are scored
            (``medfleet evaluate`` draws a progress bar with it).

    Returns:
        The rows, the summary and the written paths.

    Raises:
        CaseMismatchError: Missing, extra or mismatched cases (one error lists them all).
        InputFileError: A malformed table or input folder.
        OptionError: An invalid setting or preset option.
        MedfleetError: A case could not be read or scored; the message names it.
    """
    meta_rows = _read_meta(config.meta)
    preset_block: dict[str, Any] | None = None
    if config.preset is not None:
        from medfleet.evaluate.challenges import run_preset

        scored, cases, preset_block = run_preset(config, meta_rows, progress)
    elif config.task_type == "segmentation":
        scored, cases = score_segmentation(config, meta_rows, progress)
    else:
        scored, cases = score_table_task(config, meta_rows)
    rows = _attach_meta(scored.rows, meta_rows)
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "medfleet_version": __version__,
        "task_type": config.task_type,
        "inputs": {
            "pred": str(config.pred),
            "gt": None if config.gt is None else str(config.gt),
            "meta": None if config.meta is None else str(config.meta),
        },
        "n_cases": cases["n_cases"],
        "cases": cases,
        "conventions": scored.conventions,
        "metrics": scored.metrics,
        "dataset": scored.dataset,
        "warnings": scored.warnings,
    }
    if config.images is not None:  # recorded in summary.json, never shown in the report
        summary["inputs"]["images"] = str(config.images)
    if preset_block is not None:
        summary["preset"] = preset_block
    html = None
    if config.report:
        from medfleet.evaluate.runner.report import evaluation_report_html

        safe = json_safe(summary)
        html = evaluation_report_html(safe, rows, gallery=_gallery(config, safe, rows))
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    cases_csv = _write_rows(out / "cases.csv", rows)
    summary_json = write_json_atomic(out / "summary.json", json_safe(summary))
    report_html = write_text_atomic(out / "report.html", html) if html is not None else None
    return EvaluationResult(rows, summary, cases_csv, summary_json, report_html)


def _gallery(
    config: EvaluationConfig, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> Gallery | None:
    """The worst cases' masks and images for the report (segmentation without a preset)."""
    if config.task_type != "segmentation" or config.preset is not None:
        return None
    if config.gallery_cases < 1:
        return None
    from medfleet.evaluate.runner.report import gallery_case_ids

    return read_gallery(config, gallery_case_ids(summary, rows, config.gallery_cases))


def _read_meta(path: Path | None) -> dict[str, Mapping[str, Any]]:
    if path is None:
        return {}
    return dict(read_case_table(path, role="--meta").rows)


def _attach_meta(
    rows: list[dict[str, Any]], meta_rows: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    if not meta_rows:
        return rows
    out = []
    for row in rows:
        extra = meta_rows.get(str(row["case_id"]), {})
        merged = dict(row)
        for key, value in extra.items():
            if key == "case_id":
                continue
            merged[f"meta_{key}" if key in merged else key] = value
        out.append(merged)
    return out


def _write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in columns])
    return path


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)
    return value
