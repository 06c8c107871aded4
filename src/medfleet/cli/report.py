"""``medfleet report``: reports built from finished runs (``compare`` two evaluations)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medfleet.cli.common import (
    DEFAULT_N_RESAMPLES,
    FORMAT_OPTION,
    NResamplesOption,
    OutputFormat,
    check_out_folder,
    console,
    fail,
    literal,
    print_json,
    say,
)
from medfleet.cli.deprecated import renamed_options

app = typer.Typer(
    name="report",
    help="Reports from finished runs: compare two evaluations with paired tests.",
    no_args_is_help=True,
)


@app.command("compare", cls=renamed_options({"--resamples": "--n-resamples"}))
def compare(
    run_a: Annotated[Path, typer.Argument(help="Folder of evaluation A (the reference).")],
    run_b: Annotated[Path, typer.Argument(help="Folder of evaluation B (compared with A).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: compare_<A>_vs_<B> next to B)."),
    ] = None,
    n_resamples: NResamplesOption = DEFAULT_N_RESAMPLES,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Bootstrap seed.")] = 0,
    alpha: Annotated[
        float,
        typer.Option("--alpha", min=0.0, max=1.0, help="Significance level after Holm."),
    ] = 0.05,
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Compare two evaluations case by case; write compare.json and compare.html.

    RUN_A: the reference evaluation's folder; RUN_B: the folder of the one compared with it.
    """
    from medfleet.errors import MedfleetError
    from medfleet.evaluate.compare import compare_runs, write_comparison

    target = out or run_b.parent / f"compare_{run_a.name}_vs_{run_b.name}"
    check_out_folder(target, "--out" if out is not None else "the output folder")
    try:
        result = compare_runs(run_a, run_b, n_resamples=n_resamples, seed=seed, alpha=alpha)
        json_path, html_path = write_comparison(result, target)
    except MedfleetError as err:
        fail(str(err))
    if output_format == OutputFormat.json:
        print_json(
            {"compare_json": str(json_path), "compare_html": str(html_path), **result.to_dict()}
        )
        return
    _print(result, json_path, html_path)


def _print(result: Any, json_path: Path, html_path: Path) -> None:
    from rich import box
    from rich.table import Table

    from medfleet.report.html import format_value as _fmt

    table = Table(
        title=literal(f"medfleet report compare: B - A ({result.task_type})"),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in (
        "group",
        "metric",
        "n",
        "mean A",
        "mean B",
        "B - A",
        "95% CI",
        "p (Holm)",
        "better",
    ):
        table.add_column(column, justify="left" if column in ("group", "metric") else "right")
    for r in result.rows:
        table.add_row(
            literal(r["group"]),
            literal(r["metric"]),
            str(r["n"]),
            _fmt(r["mean_a"]),
            _fmt(r["mean_b"]),
            _fmt(r["difference"]),
            literal(f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"),
            _fmt(r.get("p_holm")),
            str(r.get("better")),
        )
    console.print(table)
    if result.only_a or result.only_b:
        say(
            f"{len(result.only_a)} case(s) only in A, {len(result.only_b)} only in B "
            "(not compared)",
            style="yellow",
        )
    say(f"wrote {json_path} and {html_path}")
