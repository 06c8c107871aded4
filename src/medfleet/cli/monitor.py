"""``medfleet monitor``: drift monitoring of model outputs per site.

Commands live in this module's Typer app; each is one function decorated with
``@app.command(...)``, importing its heavy dependencies inside the function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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

app = typer.Typer(
    help="Site-aware drift monitoring of model outputs: run on files, simulate, serve.",
    no_args_is_help=True,
)


@app.command("run")
def run(
    config: Annotated[
        Path, typer.Option("--config", help="Monitor configuration (YAML); see docs/monitoring.md.")
    ],
    input_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--input",
            help="Output table(s) (CSV/Parquet) to process instead of the config's input.paths; "
            "repeat for several.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="MEDFLEET_MONITOR_DB",
            help="SQLite file or postgresql+psycopg:// URL [default: the config's db].",
        ),
    ] = None,
    fail_on_alert: Annotated[
        bool,
        typer.Option("--fail-on-alert", help="Exit with status 3 when this run raised an alert."),
    ] = False,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Process batches of outputs from files: test each site's batches, store verdicts, alert.

    Re-running with the same files adds nothing: batches already in the store are skipped.
    """
    from medfleet.errors import MedfleetError
    from medfleet.monitor.config import MonitorConfig
    from medfleet.monitor.run import run_config

    text = fmt is OutputFormat.text
    try:
        cfg = MonitorConfig.load(config)
        with progress_bar("batches", enabled=text) as update:
            summary = run_config(cfg, paths=input_paths, db=db, progress=update)
    except MedfleetError as exc:
        fail(str(exc))
    if not text:
        print_json(summary.to_dict())
    else:
        _print_run(summary)
    if fail_on_alert and summary.new_alerts:
        raise typer.Exit(3)


def _print_run(summary) -> None:
    from rich.table import Table

    say(
        f"processed {summary.new} new batch(es), skipped {summary.already_stored} "
        f"already stored; store {summary.db}"
    )
    if summary.references_set:
        say("references set: " + ", ".join(summary.references_set))
    table = Table(title="sites")
    for column in ("site", "batches", "drifted", "alerts", "latest severity"):
        table.add_column(column)
    for site, info in summary.sites.items():
        table.add_row(
            literal(site),
            str(info["batches"]),
            str(info["drifted"]),
            str(info["alerts"]),
            str(info["latest_severity"]),
        )
    console.print(table)
    for report in summary.new_alerts:
        say(
            f"alert {report.site} {report.batch_id}: {report.severity.value} "
            f"({report.test} {report.statistic:.4g} on {report.lead}, p={report.p_value:.2g})",
            style="bold red",
        )


@app.command("simulate")
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder for streams, tables and report.html.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Simulation settings (YAML of SimulationConfig fields)."),
    ] = None,
    sites: Annotated[int | None, typer.Option("--sites", min=1, max=26, help="Sites.")] = None,
    batches: Annotated[
        int | None, typer.Option("--batches", min=2, help="Batches per site.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=10, help="Model outputs per monitored batch."),
    ] = None,
    schemes: Annotated[
        str | None,
        typer.Option(
            "--schemes",
            help="Comma-separated schemes: site, global, production, adaptive, adaptive_exp, "
            "centralised [default: all].",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Random seed (default: the config's).")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A small, fast simulation (3 sites, 12 batches).")
    ] = False,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Simulate multi-site output streams with known drift and score every reference scheme."""
    check_out_folder(out)
    from pydantic import ValidationError

    from medfleet.errors import MedfleetError
    from medfleet.monitor.simulate import (
        SUMMARY_COLUMNS,
        SimulationConfig,
        quick_config,
        run_simulation,
        summary_json,
    )
    from medfleet.utils.yamlfile import read_yaml_mapping

    text = fmt is OutputFormat.text
    data: dict = {}
    if config is not None:
        try:
            data = read_yaml_mapping(config, "simulation config")
        except MedfleetError as exc:
            fail(str(exc))
    elif quick:
        data = quick_config().model_dump()
    overrides = {"sites": sites, "batches": batches, "batch_size": batch_size, "seed": seed}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if schemes is not None:
        data["schemes"] = [s.strip() for s in schemes.split(",") if s.strip()]
    try:
        cfg = SimulationConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"invalid simulation settings: {problems}", code=2)
    try:
        with progress_bar("simulate", enabled=text) as update:
            result = run_simulation(cfg, out, progress=update)
    except (MedfleetError, ValueError) as exc:
        fail(str(exc))
    if not text:
        print_json(summary_json(result))
        return
    from rich.table import Table

    table = Table(title="drift detection per scheme")
    for c in SUMMARY_COLUMNS:
        table.add_column(c)
    for row in result.table():
        table.add_row(*("-" if row.get(c) is None else str(row[c]) for c in SUMMARY_COLUMNS))
    console.print(table)
    say(f"report: {result.files.get('report')}")


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@app.command("serve")
def serve(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="MEDFLEET_MONITOR_DB",
            help="SQLite file (created when missing) or postgresql+psycopg://user:password@"
            "host/db URL; put a URL with a password in MEDFLEET_MONITOR_DB rather than on the "
            "command line [default: the config's db].",
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            envvar="MEDFLEET_MONITOR_KEYS",
            help="YAML/JSON file of site: API key (or sha256:<digest>); without it, read-only.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Monitoring config YAML (sites, scheme, tests, references)."),
    ] = None,
    refresh: Annotated[
        int, typer.Option("--refresh", min=0, help="Dashboard reload period in seconds (0: off).")
    ] = 30,
    log_level: Annotated[
        str, typer.Option("--log-level", help="Server log level: " + ", ".join(_LOG_LEVELS) + ".")
    ] = "info",
) -> None:
    """Serve the HTTP API (each site posts batches with its key) and the dashboard page."""
    from medfleet.errors import MedfleetError
    from medfleet.monitor.config import MonitorConfig
    from medfleet.monitor.store_target import display_target

    if log_level not in _LOG_LEVELS:
        fail(f"--log-level {log_level!r}: choose one of {', '.join(_LOG_LEVELS)}", code=2)
    try:
        from medfleet.monitor.service import ServiceSettings
        from medfleet.monitor.service import serve as run_service
    except ImportError as err:
        fail(f"the service needs FastAPI and Uvicorn: pip install 'medfleet[serve]' ({err})")
    try:
        cfg = MonitorConfig.load(config) if config is not None else MonitorConfig()
        if db is None and config is None:
            fail("give --db PATH (or a --config whose db entry names the database)", code=2)
        target = db if db is not None else cfg.db
        mode = f"keys from {keys}" if keys is not None else "read-only: no --keys"
        console.print(
            f"medfleet monitor: dashboard at http://{host}:{port}/ · db "
            f"{display_target(target)} · {mode}",
            highlight=False,
            markup=False,
        )
        run_service(
            target,
            cfg,
            keys,
            host=host,
            port=port,
            settings=ServiceSettings(refresh_seconds=refresh),
            log_level=log_level,
        )
    except MedfleetError as err:
        fail(str(err))
