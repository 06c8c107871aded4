"""``medfleet evaluate``: score predictions; write cases.csv, summary.json and report.html.

``--preset NAME`` scores with a challenge's official scheme (docs/challenges.md).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from medfleet.cli.common import (
    FORMAT_OPTION,
    OutputFormat,
    check_out_folder,
    console,
    fail,
    literal,
    print_json,
    say,
)
from medfleet.cli.progress import progress_bar

_TASK_HELP = "segmentation, classification, detection, regression or landmarks."


def _split_list(text: str | None, flag: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        fail(f"{flag} is empty; give comma-separated values such as 1,2,3", code=2)
    return items


def _parse_reference(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        i, j = (int(p) for p in parts)
    except ValueError:
        fail(f"--landmark-reference {text!r} must be two landmark indices such as 0,1", code=2)
    return i, j


def _preset_options(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail(f"--preset-option {item!r} must be NAME=VALUE (e.g. literal=true)", code=2)
        out.append((name.strip(), value.strip()))
    return tuple(out)


def evaluate(
    pred: Annotated[
        Path,
        typer.Option(
            "--pred", help="Folder of predicted masks (segmentation) or a predictions CSV."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder for cases.csv and summary.json.")
    ],
    gt: Annotated[
        Path | None,
        typer.Option(
            "--gt",
            help="Folder of reference masks (segmentation) or a reference CSV. Required, "
            "except for single-mask biometry (--preset iugc --preset-option mode=biometry).",
        ),
    ] = None,
    task_type: Annotated[
        str | None,
        typer.Option(
            "--task-type", help=f"Task type: {_TASK_HELP} Optional with --preset (its default)."
        ),
    ] = None,
    meta: Annotated[
        Path | None,
        typer.Option(
            "--meta", help="CSV with case_id and metadata columns (and optional spacing)."
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Segmentation: folder of the cases' images (file name = case id, e.g. "
            "case_001.png), drawn under the outlines of the report's worst-case gallery.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes for segmentation cases.")
    ] = 1,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing", help="Score missing predictions as worst case; ignore extra ones."
        ),
    ] = False,
    resample_pred: Annotated[
        str | None,
        typer.Option(
            "--resample-pred",
            help="'nearest': resample predictions whose shape differs onto the reference grid.",
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels", help="Comma-separated segmentation labels to score, or the class order."
        ),
    ] = None,
    percentile: Annotated[
        float, typer.Option("--percentile", help="Percentile of the HD (95 gives hd95).")
    ] = 95.0,
    percentile_method: Annotated[
        str,
        typer.Option(
            "--percentile-method",
            help="max-directed (MONAI), pooled (MedPy) or area-weighted (DeepMind).",
        ),
    ] = "max-directed",
    nsd_tolerance: Annotated[
        list[float] | None,
        typer.Option("--nsd-tolerance", help="NSD tolerance in mm; repeat for several [1, 2]."),
    ] = None,
    surface: Annotated[
        str,
        typer.Option("--surface", help="border (voxel centres) or corner-area (DeepMind surfels)."),
    ] = "border",
    connectivity: Annotated[
        int,
        typer.Option(
            "--connectivity", help="Border connectivity: rank 1..ndim, 4/8 (2D), 6/18/26 (3D)."
        ),
    ] = 1,
    empty_policy: Annotated[
        str,
        typer.Option(
            "--empty-policy",
            help="Distance when exactly one mask is empty: inf, nan, diagonal or a number of mm.",
        ),
    ] = "inf",
    both_empty: Annotated[
        str,
        typer.Option(
            "--both-empty", help="Metrics of a label absent from both masks: nan or best."
        ),
    ] = "nan",
    positive_label: Annotated[
        str | None,
        typer.Option("--positive-label", help="Positive class of a binary classification."),
    ] = None,
    multilabel: Annotated[
        bool,
        typer.Option("--multilabel", help="Classification labels are ';'-separated class sets."),
    ] = False,
    zero_division: Annotated[
        float,
        typer.Option(
            "--zero-division", help="Classification ratio with a zero denominator (0, 1 or nan)."
        ),
    ] = 0.0,
    iou_threshold: Annotated[
        float,
        typer.Option("--iou-threshold", help="Detection IoU for TP/FP/FN and the detection rate."),
    ] = 0.5,
    radius: Annotated[
        list[float] | None,
        typer.Option("--radius", help="Landmark SDR radius; repeat for several [2, 2.5, 3, 4]."),
    ] = None,
    sdr_comparison: Annotated[
        str, typer.Option("--sdr-comparison", help="Landmark SDR success test: '<=' or '<'.")
    ] = "<=",
    missing_landmarks: Annotated[
        str,
        typer.Option("--missing-landmarks", help="Missing landmarks: penalty, failure or exclude."),
    ] = "penalty",
    landmark_penalty: Annotated[
        float,
        typer.Option("--landmark-penalty", help="Error of a missing landmark under 'penalty'."),
    ] = math.inf,
    landmark_reference: Annotated[
        str | None,
        typer.Option(
            "--landmark-reference",
            help="Two landmark indices i,j whose reference distance normalises the errors.",
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="Challenge preset: mama-mia-seg, mama-mia-pcr, curvas, fugc, iugc, fmc-uia, "
            "landmarks-isbi2015 or hc18 (docs/challenges.md).",
        ),
    ] = None,
    preset_option: Annotated[
        list[str] | None,
        typer.Option("--preset-option", help="Preset option NAME=VALUE; repeat for several."),
    ] = None,
    units: Annotated[
        str | None,
        typer.Option("--units", help="Preset units, e.g. voxel or mm (preset default)."),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write report.html next to the results.")
    ] = True,
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Score predictions against references; write cases.csv, summary.json and report.html."""
    from medfleet.errors import MedfleetError
    from medfleet.evaluate.runner import EvaluationConfig, run_evaluation
    from medfleet.evaluate.runner.aggregate import json_safe

    if task_type is None and preset is None:
        fail("give --task-type (or a --preset, which implies one)", code=2)
    options = _preset_options(preset_option)
    if gt is None:
        from medfleet.evaluate.runner.config import gt_required_message

        message = gt_required_message(preset, options)
        if message is not None:
            fail(message, code=2)
    check_out_folder(out)
    try:
        if task_type is None:
            from medfleet.evaluate.challenges import get_preset

            task_type = get_preset(str(preset)).task_types[0]
        config = EvaluationConfig(
            task_type=task_type,
            pred=pred,
            gt=gt,
            out=out,
            meta=meta,
            workers=workers,
            allow_missing=allow_missing,
            resample_pred=resample_pred,
            labels=_split_list(labels, "--labels"),
            percentile=percentile,
            percentile_method=percentile_method,
            nsd_tolerances=tuple(nsd_tolerance or (1.0, 2.0)),
            surface=surface,
            connectivity=connectivity,
            both_empty=both_empty,
            one_empty=empty_policy,
            positive_label=positive_label,
            multilabel=multilabel,
            zero_division=zero_division,
            iou_threshold=iou_threshold,
            radii=tuple(radius or (2.0, 2.5, 3.0, 4.0)),
            sdr_comparison=sdr_comparison,
            missing_landmarks=missing_landmarks,
            landmark_penalty=landmark_penalty,
            landmark_reference=_parse_reference(landmark_reference),
            preset=preset,
            preset_options=options,
            units=units,
            report=report,
            images=images,
        )
        with contextlib.ExitStack() as stack:
            bar: list[Any] = []

            def update(done: int, total: int) -> None:
                if not bar:  # the bar appears only once cases are being scored
                    enabled = output_format == OutputFormat.text
                    bar.append(stack.enter_context(progress_bar("scoring cases", enabled)))
                bar[0](done, total)

            result = run_evaluation(config, progress=update)
    except MedfleetError as err:
        fail(str(err))
    if output_format == OutputFormat.json:
        print_json(
            json_safe(
                {
                    "cases_csv": result.cases_csv,
                    "summary_json": result.summary_json,
                    "report_html": result.report_html,
                    "summary": result.summary,
                }
            )
        )
        return
    _print_summary(result)


def _print_summary(result: Any) -> None:
    from rich import box
    from rich.table import Table

    from medfleet.report.html import format_value as _fmt

    summary = result.summary
    title = f"medfleet evaluate: {summary['task_type']} ({summary['n_cases']} cases)"
    table = Table(title=literal(title), box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("group", no_wrap=True)
    table.add_column("metric", no_wrap=True, min_width=17)
    for column in ("mean", "std", "median", "valid", "scored", "cases"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for group, metrics in summary["metrics"].items():
        for name, stats in metrics.items():
            table.add_row(
                literal(group),
                literal(name),
                *(_fmt(stats[k]) for k in ("mean", "std", "median")),
                *(str(stats[k]) for k in ("n_valid", "n_scored", "n_cases")),
            )
    console.print(table)
    scalars = {
        k: v for k, v in summary["dataset"].items() if isinstance(v, (int, float)) and k != "n"
    }
    if scalars:
        say("dataset: " + ", ".join(f"{k}={_fmt(v)}" for k, v in scalars.items()))
    cases = summary["cases"]
    if cases["missing_scored_as_worst"]:
        n_missing = len(cases["missing_scored_as_worst"])
        say(f"{n_missing} missing prediction(s) scored as worst case", style="yellow")
    if cases["extra_ignored"]:
        say(f"{len(cases['extra_ignored'])} extra prediction(s) ignored", style="yellow")
    preset = summary.get("preset")
    if preset:
        score = preset["score"]
        shown = "none" if score is None else _fmt(float(score))
        say(f"{preset['name']}: {preset['score_name']} = {shown}")
    written = [result.cases_csv, result.summary_json]
    if result.report_html is not None:
        written.append(result.report_html)
    say("wrote " + ", ".join(str(p) for p in written))
