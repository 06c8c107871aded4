"""The Flower ServerApp and medfleet's strategies (subclasses of Flower's FedAvg/FedProx).

Flower's ``FedAvg.aggregate_train`` requires every reply to hold the same keys; medfleet's
replies differ (a site without a task has no head for it), so :class:`RecordingMixin`
replaces the aggregation with a key-wise average weighted by ``num-examples`` (with
differential privacy: clipped updates, equal weights and per-key Gaussian noise,
:mod:`medfleet.federated.privacy`), skips a round's aggregation when fewer than ``min_fit``
sites answered and records, per round and site, status, error code, serialised bytes each
way, examples, training loss and validation metrics. A failed site is recorded by its code
only (:mod:`medfleet.federated.failures`); at the end the run's status (``finished``,
``degraded`` or ``failed``) and each site's status are written (:func:`run_outcome`).
Sampling, message construction, FedProx's ``proximal-mu`` and the round loop
(``Strategy.start``) are Flower's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.federated import params as P
from medfleet.federated.accounting import message_bytes
from medfleet.federated.client_app import ARRAYS_KEY, CONFIG_KEY, METRICS_KEY, numpy_arrays
from medfleet.federated.failures import failure_code
from medfleet.federated.job import FederatedJob, job_from_run_config
from medfleet.federated.privacy import (
    clip_to_norm,
    dp_average,
    dp_enabled,
    noise_rng,
    privacy_record,
)
from medfleet.federated.results import empty_client, run_outcome, write_results
from medfleet.models.files import MODEL_FILE

ProgressCallback = Callable[[int, int], None]


class RecordingMixin:
    """Key-wise aggregation, fault tolerance, differential privacy and per-round records.

    Args:
        job: The federated job.
        progress: Called as ``progress(round, rounds)`` after each round.
    """

    def _setup(self, job: FederatedJob, progress: ProgressCallback | None = None) -> None:
        self.job = job
        self.progress = progress
        self.sites = [s["name"] for s in job.manifest_data["sites"]]
        self.node_site: dict[int, str] = {}
        self.rounds: list[dict[str, Any]] = []
        self.current: dict[str, np.ndarray] = {}
        self.sampled: dict[int, set[int]] = {}
        # DP noise comes from the operating system's entropy, never from the job's seed
        self.dp_rng = noise_rng()

    # -------------------------------------------------------------- identity
    def _identify(self, grid: Any, server_round: int) -> None:
        """Ask nodes not yet known which site they serve (a ``query`` message).

        The bytes of these messages count towards the round in which they are sent.
        """
        from flwr.app import ConfigRecord, Message, MessageType, RecordDict

        unknown = [n for n in grid.get_node_ids() if n not in self.node_site]
        if not unknown:
            return
        sizes = {}
        messages = []
        for node in unknown:
            content = RecordDict({CONFIG_KEY: ConfigRecord({"server-round": server_round})})
            message = Message(content, dst_node_id=node, message_type=MessageType.QUERY)
            sizes[node] = message_bytes(message)
            messages.append(message)
        timeout = min(self.job.federated.round_timeout, 600.0)
        for reply in grid.send_and_receive(messages, timeout=timeout):
            node = reply.metadata.src_node_id
            if reply.has_error():
                continue
            index = int(reply.content[METRICS_KEY].get("site-index", -1))
            if 0 <= index < len(self.sites):
                self.node_site[node] = self.sites[index]
                client = self._client(server_round, node)
                client["bytes_received"] += sizes.get(node, 0)
                client["bytes_sent"] += message_bytes(reply)

    def _site(self, node_id: int) -> str:
        return self.node_site.get(node_id, f"node-{node_id}")

    def _round(self, server_round: int) -> dict[str, Any]:
        while len(self.rounds) < server_round:
            r = len(self.rounds) + 1
            self.rounds.append(
                {
                    "round": r,
                    "clients": {s: empty_client() for s in self.sites},
                    "metrics": {},
                    "aggregated": False,
                }
            )
        return self.rounds[server_round - 1]

    def _client(self, server_round: int, node_id: int) -> dict[str, Any]:
        record = self._round(server_round)
        return record["clients"].setdefault(self._site(node_id), empty_client())

    # ------------------------------------------------------------ training
    def configure_train(  # type: ignore[override]
        self, server_round: int, arrays: Any, config: Any, grid: Any
    ) -> Iterable[Any]:
        """Identify new nodes, send the global arrays, count bytes sent to each."""
        self._identify(grid, server_round)
        self.current = {k: v.numpy() for k, v in arrays.items()}
        fed = self.job.federated
        if fed.dp_clip is not None:
            config["clipping-norm"] = float(fed.dp_clip)
        messages = list(super().configure_train(server_round, arrays, config, grid))  # type: ignore[misc]
        self.sampled[server_round] = {m.metadata.dst_node_id for m in messages}
        record = self._round(server_round)
        for message in messages:
            client = self._client(server_round, message.metadata.dst_node_id)
            client.update({"status": "failed", "error": None})
            client["bytes_received"] += message_bytes(message)
        record["sampled"] = sorted(self._site(n) for n in self.sampled[server_round])
        return messages

    def aggregate_train(  # type: ignore[override]
        self, server_round: int, replies: Iterable[Any]
    ) -> tuple[Any, Any]:
        """Key-wise average of the successful replies; record failures and bytes."""
        from flwr.app import ArrayRecord, MetricRecord

        replies = list(replies)
        record = self._round(server_round)
        answered: set[int] = set()
        contributions = []
        for reply in replies:
            node = reply.metadata.src_node_id
            answered.add(node)
            client = self._client(server_round, node)
            client["bytes_sent"] += message_bytes(reply)
            if reply.has_error():
                # only a code is recorded, whatever text the error carries
                client.update({"status": "failed", "error": failure_code(reply.error)})
                continue
            metrics = reply.content[METRICS_KEY]
            arrays = {k: v.numpy() for k, v in reply.content[ARRAYS_KEY].items()}
            examples = int(metrics.get("num-examples", 0))
            client.update(
                {
                    "status": "ok",
                    "error": None,
                    "num_examples": examples,
                    "train_loss": float(metrics.get("train-loss", float("nan"))),
                    "update_norm": float(metrics.get("update-norm", float("nan"))),
                }
            )
            contributions.append((arrays, float(max(examples, 1))))
        for node in self.sampled.get(server_round, set()) - answered:
            self._client(server_round, node).update(
                {"status": "failed", "error": "network/no-reply"}
            )
        fed = self.job.federated
        if len(contributions) < fed.min_fit:
            record["aggregated"] = False
            record["note"] = (
                f"{len(contributions)} of the min_fit={fed.min_fit} sites answered; the global "
                "weights were kept"
            )
            logging.getLogger(__name__).warning(record["note"])
            return None, None
        averaged = self._average(contributions, record)
        merged = {**self.current, **{k: v for k, v in averaged.items() if k in self.current}}
        record["aggregated"] = True
        losses = [c["train_loss"] for c in record["clients"].values() if c["status"] == "ok"]
        finite = [x for x in losses if x is not None and np.isfinite(x)]
        metrics = MetricRecord(
            {"train-loss": float(np.mean(finite)) if finite else 0.0, "sites": len(contributions)}
        )
        return ArrayRecord(numpy_arrays(merged)), metrics

    def _average(
        self, contributions: list[tuple[dict[str, np.ndarray], float]], record: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """The round's new global weights for the keys the sites sent.

        Without DP: the key-wise average weighted by examples. With ``dp_clip``: every
        reply's update (its weights minus the global weights sent) is clipped again here,
        jointly over its keys, to ``dp_clip``. With noise: equal weight per site and, per
        key held by ``n_k`` sites, Gaussian noise of std ``dp_noise * dp_clip / n_k``
        (:func:`medfleet.federated.privacy.dp_average`).
        """
        fed = self.job.federated
        if fed.dp_clip is None:
            return P.keywise_average(contributions)
        clip = float(fed.dp_clip)
        updates = []
        over = 0
        for arrays, _ in contributions:
            update, norm = clip_to_norm(arrays, self.current, clip)
            over += int(norm > clip * (1 + 1e-6))
            updates.append(update)
        if not dp_enabled(fed):
            clipped = [
                ({k: self.current[k] + u for k, u in update.items()}, weight)
                for update, (_, weight) in zip(updates, contributions, strict=True)
            ]
            record["dp"] = {"clip": clip, "noise_multiplier": 0.0, "replies_over_clip": over}
            return P.keywise_average(clipped)
        mean, std = dp_average(updates, fed.dp_noise, clip, self.dp_rng)
        holders: dict[str, int] = {}
        for update in updates:
            for key in update:
                holders[key] = holders.get(key, 0) + 1
        by_holders: dict[str, float] = {}
        keys_by: dict[str, int] = {}
        for key, n in holders.items():
            by_holders[str(n)] = std[key]
            keys_by[str(n)] = keys_by.get(str(n), 0) + 1
        record["dp"] = {
            "weighting": "equal per site",
            "clip": clip,
            "noise_multiplier": float(fed.dp_noise),
            "noise_std_by_holders": dict(sorted(by_holders.items())),
            "keys_by_holders": dict(sorted(keys_by.items())),
            "replies_over_clip": over,
        }
        return {
            k: (np.asarray(self.current[k], np.float64) + u).astype(np.float32)
            for k, u in mean.items()
        }

    # ------------------------------------------------------------ evaluation
    def configure_evaluate(  # type: ignore[override]
        self, server_round: int, arrays: Any, config: Any, grid: Any
    ) -> Iterable[Any]:
        """Ask sites to validate their personalised model (and save it in the last round)."""
        config["final"] = server_round == self.job.federated.rounds
        messages = list(super().configure_evaluate(server_round, arrays, config, grid))  # type: ignore[misc]
        self.sampled[-server_round] = {m.metadata.dst_node_id for m in messages}
        for message in messages:
            client = self._client(server_round, message.metadata.dst_node_id)
            client["bytes_received"] += message_bytes(message)
        return messages

    def aggregate_evaluate(  # type: ignore[override]
        self, server_round: int, replies: Iterable[Any]
    ) -> Any:
        """Record each site's validation metrics and bytes."""
        from flwr.app import MetricRecord

        record = self._round(server_round)
        final = server_round == self.job.federated.rounds
        values: dict[str, list[float]] = {}
        answered: set[int] = set()
        for reply in replies:
            answered.add(reply.metadata.src_node_id)
            client = self._client(server_round, reply.metadata.src_node_id)
            client["bytes_sent"] += message_bytes(reply)
            site = self._site(reply.metadata.src_node_id)
            if reply.has_error():
                client["eval_error"] = failure_code(reply.error)
                continue
            if final:
                client["model"] = True  # the site wrote its model before it answered
            metrics: dict[str, dict[str, float]] = {}
            for key, value in reply.content[METRICS_KEY].items():
                if not key.startswith("val/"):
                    continue
                _, task, name = key.split("/", 2)
                metrics.setdefault(task, {})[name] = float(value)  # type: ignore[arg-type]
                values.setdefault(key, []).append(float(value))  # type: ignore[arg-type]
            record["metrics"][site] = metrics
        for node in self.sampled.get(-server_round, set()) - answered:
            self._client(server_round, node)["eval_error"] = "network/no-reply"
        if not values:
            return None
        return MetricRecord({k: _mean(v) for k, v in values.items()})

    # ------------------------------------------------------------- records
    def flush(self, status: str = "running", extra: dict[str, Any] | None = None) -> Path:
        """Write ``federated.json`` with the rounds recorded so far."""
        return write_results(
            Path(self.job.out),
            self.job.federated.strategy,
            self.job.federated.model_dump(mode="json"),
            self.sites,
            self.rounds,
            status,
            extra={
                "model": self.job.effective_model().model_dump(mode="json"),
                "train": self.job.train.model_dump(mode="json"),
                "nodes": {str(k): v for k, v in self.node_site.items()},
                "privacy": privacy_record(self.job.federated),
                **(extra or {}),
            },
        )

    def after_round(self, server_round: int, arrays: Any) -> None:
        """Record the round (called by ``Strategy.start`` as its ``evaluate_fn``)."""
        if server_round == 0:
            return
        self._round(server_round)
        self.flush()
        if self.progress is not None:
            self.progress(server_round, self.job.federated.rounds)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else 0.0


def make_strategy(job: FederatedJob, progress: ProgressCallback | None = None) -> Any:
    """Flower strategy of the job: FedAvg (fedavg, lora, dual-lora) or FedProx (fedprox).

    Example:
        >>> from medfleet.tasks import Manifest, Site, TaskSpec
        >>> from medfleet.models import ModelConfig
        >>> from medfleet.train.config import TrainConfig
        >>> from medfleet.federated.config import FederatedConfig
        >>> m = Manifest(name="m", sites=[Site(name="a")], tasks=[TaskSpec(
        ...     name="t", type="classification", table="t.csv", classes=["x", "y"])])
        >>> job = FederatedJob.create(m, ModelConfig(), TrainConfig(),
        ...                           FederatedConfig(strategy="fedprox", mu=0.1), "/o")
        >>> s = make_strategy(job)
        >>> type(s).__mro__[2].__name__, s.proximal_mu
        ('FedProx', 0.1)
    """
    from flwr.serverapp.strategy import FedAvg, FedProx

    fed = job.federated
    kwargs = {
        "fraction_train": 1.0,
        "fraction_evaluate": 1.0,
        "min_train_nodes": fed.min_fit,
        "min_evaluate_nodes": 1,
        "min_available_nodes": fed.min_available,
        "arrayrecord_key": ARRAYS_KEY,
    }
    if fed.strategy == "fedprox":

        class MedfleetFedProx(RecordingMixin, FedProx):
            """FedProx with medfleet's key-wise aggregation and records."""

        strategy: Any = MedfleetFedProx(proximal_mu=fed.mu, **kwargs)
    else:

        class MedfleetFedAvg(RecordingMixin, FedAvg):
            """FedAvg with medfleet's key-wise aggregation and records."""

        strategy = MedfleetFedAvg(**kwargs)
    strategy._setup(job, progress)
    return strategy


def run_server(grid: Any, job: FederatedJob, progress: ProgressCallback | None = None) -> Any:
    """The body of the ServerApp: initial weights, Flower's round loop, final records.

    ``federated.json`` ends with ``status`` ``finished``, ``degraded`` or ``failed`` and a
    ``site_status`` per site (:func:`medfleet.federated.results.run_outcome`); a run that
    stops on an error is recorded as ``failed`` before the error propagates.
    """
    from flwr.app import ArrayRecord, ConfigRecord

    from medfleet.federated.site import build_federated_model, retire_earlier_run

    fed = job.federated
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    # an earlier run's global model must not look like this run's
    retire_earlier_run(out / "global")
    manifest = job.manifest()
    model = build_federated_model(job, manifest, None)
    keys = P.exchange_keys(model, fed)
    strategy = make_strategy(job, progress)
    strategy.flush()
    tic = time.perf_counter()
    initial = P.get_arrays(model, keys)
    try:
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(numpy_arrays(initial)),
            num_rounds=fed.rounds,
            timeout=fed.round_timeout,
            train_config=ConfigRecord({"rounds": fed.rounds}),
            evaluate_config=ConfigRecord(),
            evaluate_fn=lambda r, arrays: strategy.after_round(r, arrays),
        )
    except BaseException as exc:
        strategy.flush("failed", extra={"stopped": f"the server stopped: {type(exc).__name__}"})
        raise
    # no aggregated round (every round below min_fit) keeps the initial global weights
    final = {k: v.numpy() for k, v in result.arrays.items()} if len(result.arrays) else initial
    P.set_arrays(model, final)
    global_dir = save_global(job, model, out / "global")
    status, sites, problems = run_outcome(strategy.rounds, strategy.sites, fed.rounds)
    return strategy.flush(
        status,
        extra={
            "site_status": sites,
            "problems": problems,
            "exchanged_keys": len(keys),
            "exchanged_parameters": int(sum(np.asarray(v).size for v in final.values())),
            "global_model": global_dir.name,
            "seconds": round(time.perf_counter() - tic, 3),
        },
    )


def save_global(job: FederatedJob, model: Any, folder: Path) -> Path:
    """Save the global model (travelling weights; local parts at their initial values)."""
    from medfleet.train.run import count_parameters
    from medfleet.train.trainer import manifest_fingerprint
    from medfleet.utils.atomic import write_json_atomic

    manifest = job.manifest()
    config = job.effective_model()
    info = {
        "format": "medfleet.train.run/1",
        "manifest": {"name": manifest.name, "fingerprint": manifest_fingerprint(manifest)},
        "tasks": list(model.tasks),
        "model": MODEL_FILE,
        "image_size": config.image_size,
        "normalisation": job.train.normalisation,
        "model_config": config.model_dump(mode="json"),
        "train_config": job.train.model_dump(mode="json"),
        "parameters": count_parameters(model),
        "federated": {"site": None, "strategy": job.federated.strategy},
    }
    extra = {"training": {k: info[k] for k in ("tasks", "image_size", "normalisation")}}
    model.save(folder / MODEL_FILE, extra=extra)
    write_json_atomic(folder / "training.json", info)
    return folder


def make_server_app(
    job: FederatedJob | None = None,
    progress: ProgressCallback | None = None,
    raise_on_failure: bool = True,
) -> Any:
    """Build the ServerApp (the job comes from the run config when not given).

    With ``raise_on_failure`` (deployment), a run whose status is ``failed`` ends the
    ServerApp with an error, so that Flower reports the run as failed too; the local engines
    read the status from ``federated.json`` instead.

    Example:
        >>> type(make_server_app()).__name__
        'ServerApp'
    """
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        current = job if job is not None else job_from_run_config(dict(context.run_config))
        if current.train.threads is not None:
            import torch

            torch.set_num_threads(current.train.threads)
        path = run_server(grid, current, progress)
        if raise_on_failure:
            import json

            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("status") == "failed":
                raise MedfleetError(failure_message(data, Path(path)))

    return app


def failure_message(data: dict[str, Any], path: Path) -> str:
    """One line saying why a run failed (from its ``federated.json``).

    Example:
        >>> line = failure_message({"problems": ["site_a failed in round 1 (state/corrupt)"]},
        ...                        Path("out/federated.json"))
        >>> line[:67]
        'federated run failed: site_a failed in round 1 (state/corrupt) (det'
    """
    problems = "; ".join(data.get("problems") or []) or "see the record"
    return (
        f"federated run failed: {problems} (details: {path}; each site logs the full error "
        "in <state-dir>/logs/errors.log)"
    )
