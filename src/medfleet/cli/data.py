"""``medfleet data``: make, import and check data sets (phantoms, public sets, validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medfleet.cli.common import (
    FORMAT_OPTION,
    ManifestOption,
    OutputFormat,
    check_out_folder,
    console,
    fail,
    literal,
    print_json,
    say,
)
from medfleet.cli.deprecated import renamed_options
from medfleet.cli.progress import progress_bar

app = typer.Typer(help="Make, import and check data sets.", no_args_is_help=True)


@app.command("phantoms")
def phantoms(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write the data set and its manifest.yaml into.")
    ],
    sites: Annotated[int, typer.Option("--sites", min=1, max=26, help="Number of sites.")] = 3,
    cases_per_site: Annotated[
        int, typer.Option("--cases-per-site", min=1, help="Cases per task and site.")
    ] = 40,
    dim: Annotated[
        int, typer.Option("--dim", min=2, max=3, help="2 for images, 3 for NIfTI volumes.")
    ] = 2,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", min=0, help="Random seed; the same seed gives byte-identical files."
        ),
    ] = 0,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            min=32,
            help="Side of the phantom images in pixels (not a model input size) "
            "[default: 128 in 2D, 64 in 3D].",
        ),
    ] = None,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Write a multi-site, multi-task synthetic data set with known truth."""
    from medfleet.data.phantoms import generate_phantoms

    check_out_folder(out)
    with progress_bar("phantoms", enabled=fmt is OutputFormat.text) as update:
        manifest = generate_phantoms(
            out,
            sites=sites,
            cases_per_site=cases_per_site,
            dim=dim,
            seed=seed,
            size=size,
            progress=update,
        )
    result = {
        "manifest": str(manifest),
        "sites": sites,
        "cases_per_site": cases_per_site,
        "dim": dim,
        "seed": seed,
    }
    if fmt is OutputFormat.json:
        print_json(result)
    else:
        say(f"wrote phantoms: {manifest}")


@app.command("prepare")
def prepare(
    name: Annotated[
        str, typer.Argument(help="Data set: hc18, busi, pneumoniamnist or kvasir_seg.")
    ],
    src: Annotated[
        Path, typer.Option("--src", help="Folder holding the public data set as downloaded.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the manifest, tables and derived files.")
    ],
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the split.")] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use only the first N cases.")
    ] = None,
    test_only: Annotated[
        bool,
        typer.Option(
            "--test-only",
            help="Put every row in the test split: an external set to score a trained model on.",
        ),
    ] = False,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Convert the public data set NAME into a medfleet manifest and task tables.

    NAME: hc18, busi, pneumoniamnist or kvasir_seg, as downloaded into --src.
    """
    from medfleet.data.catalog import ADAPTERS, prepare_dataset
    from medfleet.errors import MedfleetError

    if name not in ADAPTERS:
        fail(f"unknown data set {name!r}; known: {', '.join(sorted(ADAPTERS))}", code=2)
    check_out_folder(out)
    try:
        with progress_bar(f"prepare {name}", enabled=fmt is OutputFormat.text) as update:
            manifest = prepare_dataset(
                name, src, out, seed=seed, limit=limit, progress=update, test_only=test_only
            )
    except MedfleetError as exc:
        fail(str(exc))
    if fmt is OutputFormat.json:
        print_json({"dataset": name, "manifest": str(manifest)})
    else:
        say(f"wrote {manifest}")


@app.command("validate", cls=renamed_options(positional="--manifest"))
def validate(
    manifest: ManifestOption,
    decode: Annotated[
        bool, typer.Option("--decode/--no-decode", help="Decode every image and mask.")
    ] = True,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Check a manifest and all its tables; list every problem; exit 1 on any error."""
    from medfleet.data.validate import validate_manifest

    with progress_bar("validate", enabled=fmt is OutputFormat.text) as update:
        report = validate_manifest(manifest, decode=decode, progress=update)
    if fmt is OutputFormat.json:
        print_json(report.to_dict())
    else:
        print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def print_report(report: object) -> None:
    """Print a validation report for people: problems, then per-task counts."""
    from rich.table import Table

    from medfleet.data.validate import ValidationReport

    assert isinstance(report, ValidationReport)
    # problems are printed unwrapped so that file:line stays greppable and clickable
    for problem in report.errors:
        typer.secho(f"error {problem}", err=True, fg="red")
    for problem in report.warnings:
        typer.secho(f"warning {problem}", err=True, fg="yellow")
    if report.counts:
        table = Table(title=literal(f"tasks in {report.manifest}"))
        for column in ("task", "rows", "labelled", "unlabelled", "splits", "sites"):
            table.add_column(column)
        for task, counts in report.counts.items():
            cells = (
                task,
                counts.get("rows", 0),
                counts.get("labelled", 0),
                counts.get("unlabelled", 0),
                " ".join(f"{k}={v}" for k, v in sorted(counts.get("splits", {}).items())),
                " ".join(f"{k}={v}" for k, v in sorted(counts.get("sites", {}).items())),
            )
            table.add_row(*map(literal, cells))
        console.print(table)
    verdict = (
        literal("valid", "green") if report.ok else literal(f"{len(report.errors)} error(s)", "red")
    )
    line = literal(f"{report.manifest}: ").append_text(verdict)
    line.append(f", {len(report.warnings)} warning(s)")
    console.print(line, highlight=False, soft_wrap=True)
