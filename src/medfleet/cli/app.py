"""Root Typer app: wires each verb group's module into ``medfleet <verb>``.

Verb modules import their heavy dependencies inside the command functions, so
``medfleet --help`` stays fast and never imports torch.
"""

from __future__ import annotations

from typing import Annotated

import typer

from medfleet import __version__
from medfleet.cli import data as data_cli
from medfleet.cli import demo as demo_cli
from medfleet.cli import evaluate as evaluate_cli
from medfleet.cli import federate as federate_cli
from medfleet.cli import federate_study as federate_study_cli
from medfleet.cli import monitor as monitor_cli
from medfleet.cli import predict as predict_cli
from medfleet.cli import report as report_cli
from medfleet.cli import synth as synth_cli
from medfleet.cli import train as train_cli
from medfleet.cli.common import MedfleetGroup
from medfleet.cli.deprecated import renamed_options

app = typer.Typer(
    name="medfleet",
    help="Multi-task, multi-site medical imaging AI: data, models, federated fine-tuning, "
    "evaluation, monitoring, synthesis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=MedfleetGroup,
)
app.add_typer(data_cli.app, name="data")
app.command("demo")(demo_cli.demo)
app.command("train")(train_cli.train)
app.command("predict", cls=renamed_options(predict_cli.RENAMED))(predict_cli.predict)
app.command("federate")(federate_cli.federate)
app.command("federate-study", cls=renamed_options(federate_study_cli.RENAMED))(
    federate_study_cli.federate_study
)
app.command("evaluate")(evaluate_cli.evaluate)
app.add_typer(report_cli.app, name="report")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(synth_cli.app, name="synth")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"medfleet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """medfleet: one toolkit for multi-task, multi-site medical imaging AI."""


def main() -> None:
    """Console-script entry point."""
    app()
