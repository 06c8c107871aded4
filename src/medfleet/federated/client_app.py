"""The Flower ClientApp: one site trains on its own rows and answers with weights and scalars.

Messages a site answers (Flower Message API):

* ``query``: the site's index in the manifest (``site-index``), so the server can name the
  node in its records;
* ``train``: loads the global arrays, trains locally (FedProx's ``proximal-mu`` and the DP
  ``clipping-norm`` come in the config), replies with the travelling arrays and the scalar
  metrics ``num-examples``, ``train-loss``, ``update-norm``, ``site-index``;
* ``evaluate``: validates the personalised model on the site's ``val`` rows; replies with
  scalar metrics ``val/<task>/<metric>``, ``num-examples``, ``site-index``. In the last
  round (``final``) the site also writes its personalised model.

A reply never carries images, labels, case ids or file names: only parameter arrays and
scalar metrics (tested). A handler that fails, whatever the exception, does not raise: it
logs the full text at the site (:func:`medfleet.federated.failures.log_site_failure`) and
returns a Flower error reply whose reason is only a code such as ``data/unreadable-image``
(:data:`medfleet.federated.failures.SITE_FAILURES`), so no Flower runtime ever puts the
exception's text (case ids, paths, traceback) into the reply.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medfleet.errors import one_line
from medfleet.federated.failures import (
    JobConfigError,
    SiteConfigError,
    classify,
    error_reply,
    log_site_failure,
)
from medfleet.federated.job import FederatedJob, job_from_run_config

ARRAYS_KEY = "arrays"
CONFIG_KEY = "config"
METRICS_KEY = "metrics"


def site_from_context(job: FederatedJob, node_config: dict[str, Any]) -> str:
    """The site a node serves: node-config ``site``, else ``partition-id`` into the sites.

    Raises:
        SiteConfigError: When neither is given or the partition is out of range.

    Example:
        >>> from medfleet.tasks import Manifest, Site, TaskSpec
        >>> from medfleet.models import ModelConfig
        >>> from medfleet.train.config import TrainConfig
        >>> from medfleet.federated.config import FederatedConfig
        >>> m = Manifest(name="m", sites=[Site(name="a"), Site(name="b")], tasks=[TaskSpec(
        ...     name="t", type="classification", table="t.csv", classes=["x", "y"])])
        >>> job = FederatedJob.create(m, ModelConfig(), TrainConfig(), FederatedConfig(), "/o")
        >>> site_from_context(job, {"partition-id": 1}), site_from_context(job, {"site": "a"})
        ('b', 'a')
    """
    sites = [s["name"] for s in job.manifest_data["sites"]]
    if node_config.get("site"):
        return str(node_config["site"])
    if "partition-id" in node_config:
        index = int(node_config["partition-id"])
        if 0 <= index < len(sites):
            return sites[index]
        raise SiteConfigError(
            f"partition-id {index} is out of range for the {len(sites)} sites {sites} "
            "(fix: run one SuperNode per site with partition-id 0..n-1)"
        )
    raise SiteConfigError(
        "the SuperNode names no site (fix: start it with --node-config 'site=\"<site>\"' "
        f"where <site> is one of {sites})"
    )


def state_dir_from_context(job: FederatedJob, site: str, node_config: dict[str, Any]) -> Path:
    """Where the site keeps its state: node-config ``state-dir``, else ``<out>/sites/<site>``.

    Example:
        >>> state_dir_from_context.__name__
        'state_dir_from_context'
    """
    given = node_config.get("state-dir")
    return Path(str(given)) if given else Path(job.out) / "sites" / site


def make_client_app(job: FederatedJob | None = None, mods: list[Any] | None = None) -> Any:
    """Build the ClientApp (the job comes from the run config when not given).

    Example:
        >>> type(make_client_app()).__name__
        'ClientApp'
    """
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp(mods=mods or [])

    def current_job(context: Context) -> FederatedJob:
        if job is not None:
            return job
        try:
            return job_from_run_config(dict(context.run_config))
        except Exception as exc:
            raise JobConfigError(
                f"cannot build the federated job from the run configuration: {one_line(exc)}"
            ) from exc

    def identify(context: Context, where: dict[str, Any]) -> tuple[FederatedJob, str, int]:
        """The job, this node's site and its index; fills ``where`` for the failure log."""
        current = current_job(context)
        node_config = dict(context.node_config)
        site = site_from_context(current, node_config)
        where["site"] = site
        sites = [s["name"] for s in current.manifest_data["sites"]]
        if site not in sites:
            raise SiteConfigError(
                f"the SuperNode names site {site!r}, which manifest "
                f"{current.manifest_data.get('name')!r} does not declare (sites: {sites}) "
                "(fix: start it with --node-config 'site=\"<one of them>\"')"
            )
        where["state_dir"] = state_dir_from_context(current, site, node_config)
        return current, site, sites.index(site)

    def resolve(context: Context, where: dict[str, Any], server_round: int) -> Any:
        from medfleet.federated.site import get_worker

        current, site, _ = identify(context, where)
        threads = current.train.threads
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        # round 1 starts a run: nothing of an earlier one (files or cached worker) carries over
        new_run = server_round == 1 and where.get("phase") == "train"
        return get_worker(current, site, where["state_dir"], new_run=new_run)

    def guarded(phase: str, body: Callable[[Message, Context, dict[str, Any]], Message]) -> Any:
        def handler(msg: Message, context: Context) -> Message:
            where: dict[str, Any] = {"site": None, "state_dir": None, "phase": phase}
            server_round = _server_round(msg)
            try:
                return body(msg, context, where)
            except Exception as exc:  # every failure: a code to the server, text at the site
                code = classify(exc)
                log_site_failure(
                    exc,
                    code,
                    site=where["site"],
                    phase=phase,
                    server_round=server_round,
                    state_dir=where["state_dir"],
                )
                return error_reply(msg, code)

        handler.__name__ = phase
        return handler

    def query(msg: Message, context: Context, where: dict[str, Any]) -> Message:
        _, _, index = identify(context, where)
        return Message(RecordDict({METRICS_KEY: MetricRecord({"site-index": index})}), reply_to=msg)

    def train(msg: Message, context: Context, where: dict[str, Any]) -> Message:
        config = msg.content[CONFIG_KEY]
        server_round = int(config.get("server-round", 0))
        worker = resolve(context, where, server_round)
        arrays = {k: v.numpy() for k, v in msg.content[ARRAYS_KEY].items()}
        mu = float(config.get("proximal-mu", 0.0) or 0.0)
        clip = config.get("clipping-norm")
        outcome = worker.train(
            arrays,
            server_round,
            mu=mu,
            clip=None if clip is None else float(clip),
        )
        metrics = MetricRecord(
            {
                "num-examples": outcome.num_examples,
                "train-loss": outcome.train_loss,
                "update-norm": outcome.update_norm,
                "site-index": worker.site_index,
            }
        )
        reply = RecordDict(
            {ARRAYS_KEY: ArrayRecord(numpy_arrays(outcome.arrays)), METRICS_KEY: metrics}
        )
        return Message(reply, reply_to=msg)

    def evaluate(msg: Message, context: Context, where: dict[str, Any]) -> Message:
        config = msg.content[CONFIG_KEY]
        server_round = int(config.get("server-round", 0))
        worker = resolve(context, where, server_round)
        arrays = {k: v.numpy() for k, v in msg.content[ARRAYS_KEY].items()}
        results, count = worker.evaluate(
            arrays, server_round, final=bool(config.get("final", False))
        )
        values: dict[str, Any] = {"num-examples": count, "site-index": worker.site_index}
        for task, metrics in results.items():
            for name, value in metrics.items():
                values[f"val/{task}/{name}"] = float(value)
        return Message(RecordDict({METRICS_KEY: MetricRecord(values)}), reply_to=msg)

    app.query()(guarded("query", query))
    app.train()(guarded("train", train))
    app.evaluate()(guarded("evaluate", evaluate))
    return app


def _server_round(msg: Any) -> int:
    """The message's ``server-round`` (0 when it has none)."""
    try:
        return int(msg.content[CONFIG_KEY].get("server-round", 0))
    except Exception:
        return 0


def numpy_arrays(arrays: dict[str, Any]) -> dict[str, Any]:
    """Wrap numpy arrays as Flower ``Array`` objects (keys kept in order).

    Example:
        >>> import numpy as np
        >>> list(numpy_arrays({"w": np.zeros(2, "f4")}))
        ['w']
    """
    from flwr.app import Array

    return {k: Array(v) for k, v in arrays.items()}
