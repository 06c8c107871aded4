"""Run a federated job on one machine: in process, or on Flower's Ray simulation engine.

Example:
    >>> ENGINES
    ('inprocess', 'simulation')
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from medfleet.errors import MedfleetError
from medfleet.federated.config import FederatedConfig
from medfleet.federated.job import FederatedJob
from medfleet.federated.results import FederatedResult
from medfleet.tasks import Manifest

Engine = Literal["inprocess", "simulation"]
ENGINES: tuple[str, ...] = ("inprocess", "simulation")

ProgressCallback = Callable[[int, int], None]


def check_flower() -> None:
    """Raise a clear error when Flower is not installed.

    Example:
        >>> check_flower()
    """
    try:
        import flwr  # noqa: F401
    except ImportError as exc:
        raise MedfleetError(
            'federated runs need Flower (fix: pip install -e ".[fl]" or pip install flwr)'
        ) from exc


def run_federated(
    manifest: Manifest,
    model_config: Any,
    train_config: Any,
    fed_config: FederatedConfig,
    out: str | Path,
    progress: ProgressCallback | None = None,
    *,
    engine: Engine = "inprocess",
    client_mods: list[Any] | None = None,
    verbose: bool = False,
) -> FederatedResult:
    """Federated training of the unified model over the manifest's sites.

    Each site of the manifest is one Flower client training on its own rows. The run writes
    ``out/federated.json`` (per round and site: status, error, bytes each way, examples,
    training loss, validation metrics), ``out/job.json``, each site's personalised model in
    ``out/sites/<site>/`` (``model.safetensors`` + ``training.json``, readable by
    :func:`medfleet.train.run.load_trained` and ``medfleet predict``) and the global model
    in ``out/global/``.

    Args:
        manifest: The manifest (rows carry a ``site`` column).
        model_config: A :class:`medfleet.models.ModelConfig`.
        train_config: Local training settings (:class:`medfleet.train.config.TrainConfig`).
        fed_config: Federated settings.
        out: Output folder.
        progress: Called as ``progress(round, rounds)`` after each round.
        engine: ``inprocess`` (Flower's ServerApp, strategy and ClientApp on an in-process
            grid; no Ray) or ``simulation`` (Flower's Ray simulation engine,
            ``flwr.simulation.run_simulation``, one CPU per client).
        client_mods: Flower client mods wrapped around the ClientApp (e.g. inspectors).
        verbose: Show Flower's INFO log (default: warnings and errors only).

    Returns:
        The run's :class:`FederatedResult`; its ``data["status"]`` is ``finished`` or
        ``degraded`` (some site failed some rounds; ``site_status`` says which).

    Raises:
        MedfleetError: Unknown engine, Flower missing, a manifest whose sites and tables do
            not match (checked before anything is written), or a run that ended without
            its results.
        FederatedRunFailed: The run's status is ``failed`` (a sampled site never trained
            or wrote no model, or the last round did not aggregate); one line names the
            sites, rounds and codes.
    """
    check_flower()
    if engine not in ENGINES:
        raise MedfleetError(f"unknown engine {engine!r} (fix: use one of {list(ENGINES)})")
    sites = manifest.site_names
    if fed_config.min_available > len(sites):
        raise MedfleetError(
            f"min_available={fed_config.min_available} but the manifest has {len(sites)} "
            "site(s) (fix: lower --min-available)"
        )
    check_site_rows(manifest)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    job = FederatedJob.create(manifest, model_config, train_config, fed_config, out)
    job.save(out)
    from medfleet.federated.client_app import make_client_app
    from medfleet.federated.server_app import make_server_app
    from medfleet.federated.site import retire_earlier_run

    # an earlier run's site models must not look like this run's (the sites also do this
    # at round 1; here it covers a site that fails before it can)
    for site in sites:
        retire_earlier_run(out / "sites" / site)
    client_app = make_client_app(job, mods=client_mods)
    server_app = make_server_app(job, progress, raise_on_failure=False)
    with flower_log_level(logging.INFO if verbose else logging.WARNING):
        if engine == "inprocess":
            _run_inprocess(server_app, client_app, sites)
        else:
            _run_ray(server_app, client_app, len(sites), train_config)
    result = FederatedResult.load(out)
    status = result.data.get("status")
    if status == "failed" and result.data.get("site_status") is not None:
        from medfleet.federated.server_app import failure_message

        raise FederatedRunFailed(failure_message(result.data, out / "federated.json"), result)
    if status not in ("finished", "degraded"):
        raise MedfleetError(
            f"the federated run in {out} did not finish (see the log above; fix the error "
            "and run again)"
        )
    return result


class FederatedRunFailed(MedfleetError):
    """A federated run ended with status ``failed``; ``result`` holds its record."""

    def __init__(self, message: str, result: FederatedResult) -> None:
        super().__init__(message)
        self.result = result


def check_site_rows(manifest: Manifest) -> None:
    r"""Refuse a manifest whose tables name undeclared sites or leave a site without rows.

    Only the tables that exist and have a ``site`` column are read (the sites report the
    others when they build their data).

    Raises:
        MedfleetError: Naming the table and the site.

    Example:
        >>> import tempfile, pathlib
        >>> from medfleet.tasks import Site, TaskSpec
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "t.csv").write_text("case_id,image,site,split,label\nc1,a.png,b,train,x\n")
        >>> m = Manifest(name="m", sites=[Site(name="a")], tasks=[TaskSpec(
        ...     name="t", type="classification", table="t.csv", classes=["x", "y"])], root=d)
        >>> try:
        ...     check_site_rows(m)
        ... except MedfleetError as exc:
        ...     print(str(exc)[str(exc).index("names"):][:66])
        names site 'b', which the manifest does not declare (sites: ['a'])
    """
    import csv

    declared = manifest.site_names
    training: set[str] = set()
    complete = True
    for spec in manifest.tasks:
        path = manifest.table_path(spec)
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if "site" not in (reader.fieldnames or []):
                    complete = False
                    continue
                rows = [
                    ((r.get("site") or "").strip(), (r.get("split") or "").strip()) for r in reader
                ]
        except (OSError, UnicodeDecodeError, csv.Error):
            complete = False
            continue
        for site, split in rows:
            if not site:
                raise MedfleetError(
                    f"task {spec.name!r}: table {path} has a row with an empty 'site' cell, "
                    "so no site would train on it (fix: name the row's site)"
                )
            if site not in declared:
                raise MedfleetError(
                    f"task {spec.name!r}: table {path} names site {site!r}, which the "
                    f"manifest does not declare (sites: {declared}) (fix: declare the "
                    "site under 'sites:' or correct the 'site' column)"
                )
            if split == "train":
                training.add(site)
    idle = [s for s in declared if s not in training]
    if complete and idle:
        raise MedfleetError(
            f"site(s) {idle} of manifest {manifest.name!r} have no training row in any task "
            "table, so they cannot take part (fix: add their rows, or remove them from "
            "'sites:')"
        )


@contextlib.contextmanager
def flower_log_level(level: int) -> Iterator[None]:
    """Set the level of Flower's console log handler for the duration of a block.

    Example:
        >>> with flower_log_level(logging.WARNING):
        ...     pass
    """
    from flwr.supercore.logger import console_handler

    before = console_handler.level
    console_handler.setLevel(level)
    try:
        yield
    finally:
        console_handler.setLevel(before)


def _run_inprocess(server_app: Any, client_app: Any, sites: list[str]) -> None:
    from flwr.app import Context, RecordDict

    from medfleet.federated.local_grid import LocalGrid

    nodes = {1000 + i: {"site": site, "partition-id": i} for i, site in enumerate(sites)}
    grid = LocalGrid(client_app, nodes)
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    server_app(grid, context)


def _run_ray(server_app: Any, client_app: Any, n_sites: int, train_config: Any) -> None:
    from flwr.simulation import run_simulation

    cpus = max(1, int(train_config.threads or 1))
    backend_config = {
        "client_resources": {"num_cpus": cpus, "num_gpus": 0.0},
        "init_args": {"logging_level": logging.WARNING, "log_to_driver": True},
    }
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=n_sites,
        backend_name="ray",
        backend_config=backend_config,  # type: ignore[arg-type]
    )
