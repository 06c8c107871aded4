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
        The run's :class:`FederatedResult`.

    Raises:
        MedfleetError: Unknown engine, secure aggregation requested, Flower missing, or a
            run that ended without its results.
    """
    check_flower()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    job = FederatedJob.create(manifest, model_config, train_config, fed_config, out)
    job.save(out)
    from medfleet.federated.client_app import make_client_app
    from medfleet.federated.server_app import SECAGG_UNSUPPORTED, make_server_app

    if fed_config.secagg:
        raise MedfleetError(SECAGG_UNSUPPORTED)
    sites = manifest.site_names
    if fed_config.min_available > len(sites):
        raise MedfleetError(
            f"min_available={fed_config.min_available} but the manifest has {len(sites)} "
            "site(s) (fix: lower --min-available)"
        )
    client_app = make_client_app(job, mods=client_mods)
    server_app = make_server_app(job, progress)
    if engine not in ENGINES:
        raise MedfleetError(f"unknown engine {engine!r} (fix: use one of {list(ENGINES)})")
    with flower_log_level(logging.INFO if verbose else logging.WARNING):
        if engine == "inprocess":
            _run_inprocess(server_app, client_app, sites)
        else:
            _run_ray(server_app, client_app, len(sites), train_config)
    result = FederatedResult.load(out)
    if result.data.get("status") != "finished":
        raise MedfleetError(
            f"the federated run in {out} did not finish (see the log above; fix the error "
            "and run again)"
        )
    return result


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
