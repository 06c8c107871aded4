"""One site's side of a federated run: its rows, its model, its local state.

A :class:`SiteWorker` trains the unified model on the rows of its own site only (the task
tables are filtered by their ``site`` column into the site's state folder), keeps what
never leaves the site (DualLoRA's local adapter, private heads, FedBN norms, regression
target statistics) in ``<state_dir>/state/local.safetensors`` (written atomically after each round,
read back at the start of the next, so it survives a restart of the site), and at the end
writes the site's personalised model as a run folder (``model.safetensors`` + ``training.json``)
that :func:`medfleet.train.run.load_trained` and ``medfleet predict`` read.
"""

from __future__ import annotations

import csv
import hashlib
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfleet.errors import ManifestError, MedfleetError, one_line
from medfleet.federated import params as P
from medfleet.federated.failures import (
    InjectedFault,
    NoTrainingRowsError,
    SiteConfigError,
    SiteStateError,
    SiteWriteError,
)
from medfleet.federated.job import FederatedJob
from medfleet.models.files import MODEL_FILE, SITE_STATE_FILE, SITE_STATE_KIND, find_file
from medfleet.tasks import Manifest
from medfleet.utils.atomic import atomic_open, write_json_atomic
from medfleet.utils.tensorfile import read_tensor_file, write_tensor_file

STATE_FORMAT = "medfleet.federated.site-state/1"


def site_manifest(manifest: Manifest, site: str, folder: Path) -> tuple[Manifest, list[str]]:
    r"""A copy of ``manifest`` whose task tables hold only ``site``'s rows.

    The filtered tables are written to ``folder/tables``; image paths still resolve against
    the original manifest folder.

    Returns:
        The site manifest and the tasks for which the site has training rows.

    Raises:
        SiteConfigError: When the site is not declared.
        ManifestError: When a table is missing or has no ``site`` column.
        NoTrainingRowsError: When the site has no training row.

    Example:
        >>> import tempfile, pathlib
        >>> from medfleet.tasks import Site, TaskSpec
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "t.csv").write_text("case_id,image,site,split,label\n"
        ...     "c1,a.png,site_a,train,x\nc2,b.png,site_b,train,y\nc3,c.png,site_b,val,x\n")
        >>> m = Manifest(name="m", sites=[Site(name="site_a"), Site(name="site_b")],
        ...              tasks=[TaskSpec(name="t", type="classification", table="t.csv",
        ...                              classes=["x", "y"])], root=d)
        >>> sm, tasks = site_manifest(m, "site_b", d / "b")
        >>> tasks, [r["case_id"] for r in csv.DictReader(open(sm.table_path("t")))]
        (['t'], ['c2', 'c3'])
    """
    if site not in manifest.site_names:
        raise SiteConfigError(
            f"site {site!r} is not declared in manifest {manifest.name!r} (sites: "
            f'{manifest.site_names}) (fix: give the SuperNode node-config site="<one of them>")'
        )
    tables = Path(folder) / "tables"
    specs = []
    tasks = []
    for spec in manifest.tasks:
        source = manifest.table_path(spec)
        if not source.is_file():
            raise ManifestError(f"task {spec.name!r}: table {source} not found")
        with source.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            if "site" not in fields:
                raise ManifestError(
                    f"task {spec.name!r}: table {source} has no 'site' column, so its rows "
                    "cannot be given to sites (fix: add a site column naming each row's site)"
                )
            rows = [r for r in reader if (r.get("site") or "").strip() == site]
        target = tables / f"{spec.name}.csv"
        with atomic_open(target, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        specs.append(spec.model_copy(update={"table": str(target.resolve())}))
        if any((r.get("split") or "").strip() == "train" for r in rows):
            tasks.append(spec.name)
    if not tasks:
        raise NoTrainingRowsError(
            f"site {site!r} has no training row in any task of manifest {manifest.name!r} "
            "(fix: check the 'site' and 'split' columns, or leave this site out)"
        )
    local = manifest.model_copy(update={"tasks": specs})
    local.root = manifest.root
    return local, tasks


def job_key(job: FederatedJob) -> str:
    """A short hash identifying a job (cache key of site workers).

    Example:
        >>> from medfleet.tasks import Site, TaskSpec
        >>> m = Manifest(name="m", sites=[Site(name="a")], tasks=[TaskSpec(
        ...     name="t", type="classification", table="t.csv", classes=["x", "y"])])
        >>> from medfleet.models import ModelConfig
        >>> from medfleet.train.config import TrainConfig
        >>> from medfleet.federated.config import FederatedConfig
        >>> len(job_key(FederatedJob.create(m, ModelConfig(), TrainConfig(), FederatedConfig(),
        ...                                  "/tmp/o")))
        16
    """
    return hashlib.sha256(job.model_dump_json().encode()).hexdigest()[:16]


def build_federated_model(job: FederatedJob, manifest: Manifest, tasks: list[str] | None) -> Any:
    """Build the model every participant starts from (same seed: same frozen weights)."""
    from medfleet.models import build_model
    from medfleet.train.trainer import seed_everything

    seed_everything(job.federated.seed)
    model = build_model(manifest, job.effective_model(), tasks=tasks)
    if job.federated.blocks is not None and not job.federated.uses_lora:
        P.restrict_to_blocks(model, job.federated.blocks)
    return model


@dataclass
class TrainOutcome:
    """What one local training round produced."""

    arrays: dict[str, np.ndarray]
    num_examples: int
    train_loss: float
    update_norm: float
    seconds: float


class SiteWorker:
    """The site's model and state for one job.

    Args:
        job: The federated job.
        site: This site's name.
        state_dir: Folder of the site's state and final model.
    """

    def __init__(self, job: FederatedJob, site: str, state_dir: str | Path) -> None:
        self.job = job
        self.site = site
        self.state_dir = Path(state_dir)
        self.full_manifest = job.manifest()
        self.site_index = (
            self.full_manifest.site_names.index(site)
            if (site in self.full_manifest.site_names)
            else -1
        )
        self.manifest, self.tasks = site_manifest(self.full_manifest, site, self.state_dir)
        self.model = build_federated_model(job, self.full_manifest, self.tasks)
        self.keys = P.exchange_keys(self.model, job.federated)

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        """``<state_dir>/state/local.safetensors`` (a medfleet tensor file)."""
        return self.state_dir / SITE_STATE_FILE

    def local_state(self) -> dict[str, torch.Tensor]:
        """Trainable weights and buffers that persist at the site."""
        trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        params = set(dict(self.model.named_parameters()))
        return {
            k: v.detach().cpu().clone()
            for k, v in self.model.state_dict().items()
            if k in trainable or k not in params
        }

    def save_local(self, server_round: int) -> Path:
        """Write the local state atomically."""
        payload = {
            "format": STATE_FORMAT,
            "site": self.site,
            "round": server_round,
            "tasks": self.tasks,
            "state": self.local_state(),
        }
        return write_tensor_file(self.state_path, payload, SITE_STATE_KIND)

    def load_local(self) -> int:
        """Load the saved local state, if any; return its round (0 when none).

        The file is read without running code (:mod:`medfleet.utils.tensorfile`).

        Raises:
            MedfleetError: Naming the file when it is damaged, unsafe or of another run.
        """
        path = find_file(self.state_dir, SITE_STATE_FILE)
        if not path.exists():
            return 0
        fix = "give this run its own state folder, or delete the old one"
        payload = read_tensor_file(path, (SITE_STATE_KIND,), what="site state", fix=fix)
        if payload.get("format") != STATE_FORMAT or payload.get("tasks") != self.tasks:
            raise MedfleetError(f"{path} holds the state of another run or task list (fix: {fix})")
        state = payload.get("state")
        try:
            self.model.load_state_dict(state, strict=False)
            return int(payload.get("round", 0))
        except (TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise MedfleetError(
                f"cannot read {path}: a damaged site state ({one_line(exc)}) (fix: {fix})"
            ) from None

    def restore_local(self) -> int:
        """:meth:`load_local`, with any failure raised as a :class:`SiteStateError`.

        The error names the state file (it is logged at the site, never sent).
        """
        try:
            return self.load_local()
        except Exception as exc:
            path = str(find_file(self.state_dir, SITE_STATE_FILE))
            reason = one_line(exc, limit=600)
            if path not in reason:
                reason = f"cannot use its state file {path}: {reason}"
            raise SiteStateError(
                f"site {self.site!r}: {reason} (to start this site afresh, delete "
                f"{self.state_dir / 'state'})"
            ) from exc

    def store_local(self, server_round: int) -> Path:
        """:meth:`save_local`, with any failure raised as a :class:`SiteWriteError`."""
        try:
            return self.save_local(server_round)
        except Exception as exc:
            raise SiteWriteError(
                f"site {self.site!r}: cannot write its state file {self.state_path} "
                f"({one_line(exc, limit=400)})"
            ) from exc

    # ------------------------------------------------------------------ faults
    def _maybe_fail(self, server_round: int, phase: str) -> None:
        for fault in self.job.federated.faults:
            if fault.site != self.site or fault.round != server_round or fault.phase != phase:
                continue
            if fault.kind == "timeout":
                time.sleep(self.job.federated.round_timeout + 1.0)
            raise InjectedFault(
                f"injected {fault.kind} fault at site {self.site!r} in round {server_round} "
                f"({phase})"
            )

    # ------------------------------------------------------------------ rounds
    def train(
        self,
        global_arrays: dict[str, np.ndarray],
        server_round: int,
        mu: float = 0.0,
        clip: float | None = None,
    ) -> TrainOutcome:
        """Load the global weights, train locally, return the weights that travel."""
        from medfleet.train.trainer import Trainer

        self._maybe_fail(server_round, "train")
        tic = time.perf_counter()
        self.restore_local()
        P.set_arrays(self.model, global_arrays)
        # what travels back: the site's exchanged weights that the server sent (a key the
        # server does not hold would not be aggregated, and has no update to clip)
        received = {
            k: np.asarray(v, dtype=np.float32) for k, v in global_arrays.items() if k in self.keys
        }
        fed = self.job.federated
        config = self.job.train.model_copy(
            update={
                "epochs": fed.local_epochs,
                "max_steps": fed.local_steps,
                "val_every": 0,
                "checkpoint_every": 0,
                "tensorboard": False,
                "seed": self.job.train.seed + 1000 * server_round + max(self.site_index, 0),
            }
        )
        trainer = Trainer(
            self.model,
            self.manifest,
            config,
            self.state_dir / "work",
            tasks=self.tasks,
            image_size=self.job.model.image_size,
        )
        anchor = {
            n: p.detach().clone()
            for n, p in self.model.named_parameters()
            if n in self.keys and mu > 0
        }
        if anchor:
            self._add_proximal_term(anchor, mu)
        try:
            trainer.fit(resume=False)
        finally:
            self.model.__dict__.pop("loss", None)
            trainer.close()
            # the round's optimiser checkpoint is not needed: the local state is saved below
            shutil.rmtree(self.state_dir / "work" / "checkpoints", ignore_errors=True)
        losses = [r["value"] for r in trainer.history if r["metric"] == "loss"]
        arrays = P.get_arrays(self.model, [k for k in self.keys if k in received])
        norm = P.update_norm(arrays, received)
        if clip is not None:
            # one joint clip over every array that travels
            arrays, norm = P.clip_update(arrays, received, clip)
            P.set_arrays(self.model, arrays)
        self.store_local(server_round)
        return TrainOutcome(
            arrays=arrays,
            num_examples=int(sum(len(ds) for ds in trainer.train_sets.values())),
            train_loss=float(np.mean(losses)) if losses else math.nan,
            update_norm=norm,
            seconds=time.perf_counter() - tic,
        )

    def _add_proximal_term(self, anchor: dict[str, torch.Tensor], mu: float) -> None:
        model = self.model
        base = type(model).loss
        named = [(p, anchor[n]) for n, p in model.named_parameters() if n in anchor]

        def loss_with_prox(task: str, out: Any, targets: Any) -> Any:
            loss, parts = base(model, task, out, targets)
            prox = sum(((p - a.to(p)) ** 2).sum() for p, a in named)
            return loss + 0.5 * mu * prox, parts

        model.__dict__["loss"] = loss_with_prox

    def evaluate(
        self, global_arrays: dict[str, np.ndarray], server_round: int, final: bool = False
    ) -> tuple[dict[str, dict[str, float]], int]:
        """Validate the site's personalised model (global weights + local state).

        Returns:
            Task -> metric -> value on the site's validation rows, and the row count.
        """
        from medfleet.train.datasets import TaskDataset, load_task_rows
        from medfleet.train.predict import predict_dataset
        from medfleet.train.validation import task_metrics

        self._maybe_fail(server_round, "evaluate")
        self.restore_local()
        P.set_arrays(self.model, global_arrays)
        split = self.job.train.val_split
        results: dict[str, dict[str, float]] = {}
        count = 0
        self.model.eval()
        for task in self.tasks:
            if not load_task_rows(self.manifest, task, (split,)):
                continue
            ds = TaskDataset(
                self.manifest,
                task,
                (split,),
                self.job.model.image_size,
                normalisation=self.job.train.normalisation,
                mask_encoder=self.model.encode_mask,
                slices=self.model.config.slices,
            )
            preds = predict_dataset(self.model, ds, batch_size=self.job.train.batch_size)
            metrics = task_metrics(self.manifest, ds.spec, ds.rows, preds)
            results[task] = {k: float(v) for k, v in metrics.items()}
            count += len(ds)
        if final:
            try:
                self.save_model(server_round, results)
            except OSError as exc:
                raise SiteWriteError(
                    f"site {self.site!r}: cannot write its model in {self.state_dir} "
                    f"({one_line(exc, limit=400)})"
                ) from exc
        return results, count

    def save_model(self, server_round: int, val_metrics: dict[str, Any]) -> Path:
        """Write the personalised model as a run folder (model file + ``training.json``)."""
        from medfleet.train.run import count_parameters
        from medfleet.train.trainer import manifest_fingerprint

        model_config = self.job.effective_model()
        info = {
            "format": "medfleet.train.run/1",
            "manifest": {
                "name": self.full_manifest.name,
                "fingerprint": manifest_fingerprint(self.full_manifest, self.tasks),
            },
            "tasks": self.tasks,
            "model": MODEL_FILE,
            "image_size": model_config.image_size,
            "normalisation": self.job.train.normalisation,
            "model_config": model_config.model_dump(mode="json"),
            "train_config": self.job.train.model_dump(mode="json"),
            "parameters": count_parameters(self.model),
            "federated": {
                "site": self.site,
                "strategy": self.job.federated.strategy,
                "rounds": server_round,
                "config": self.job.federated.model_dump(mode="json"),
            },
            "val_metrics": val_metrics,
        }
        extra = {"training": {k: info[k] for k in ("tasks", "image_size", "normalisation")}}
        path = self.model.save(self.state_dir / MODEL_FILE, extra=extra)
        write_json_atomic(self.state_dir / "training.json", info)
        return path


PREVIOUS_DIR = "previous"
"""Where :func:`retire_earlier_run` moves what an earlier run left at a site."""


def retire_earlier_run(state_dir: str | Path) -> list[Path]:
    """Move an earlier run's personalised model and local state out of the way.

    Called at the start of a run, so that a site that produces no model in this run is not
    left with an older one that looks current, and so that this run's first round does not
    start from an earlier run's local adapter. The model file, ``training.json`` and the
    state file (current or legacy names) move to ``<state_dir>/previous/`` (replacing what
    was there). A site restarted later in the same run keeps its state: only round 1 calls
    this.

    Returns:
        The files moved (their new paths).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "training.json").write_text("{}")
        >>> [p.relative_to(d).as_posix() for p in retire_earlier_run(d)]
        ['previous/training.json']
        >>> retire_earlier_run(d)
        []
    """
    from medfleet.models.files import LEGACY_NAMES

    folder = Path(state_dir)
    moved = []
    names = (MODEL_FILE, "training.json", SITE_STATE_FILE)
    for name in (*names, *(LEGACY_NAMES[n] for n in names if n in LEGACY_NAMES)):
        source = folder / name
        if source.is_file():
            target = folder / PREVIOUS_DIR / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
            moved.append(target)
    return moved


_WORKERS: dict[tuple[str, str, str], SiteWorker] = {}


def get_worker(
    job: FederatedJob, site: str, state_dir: str | Path, *, new_run: bool = False
) -> SiteWorker:
    """The cached worker of ``site`` for ``job`` (built on first use in this process).

    With ``new_run`` (round 1 of a run) what an earlier run left is dropped first: its
    model and local state files move to ``previous/`` (:func:`retire_earlier_run`) and a
    worker cached in memory, whose local adapter and private heads hold that run's
    weights, is built anew.
    """
    key = (job_key(job), site, str(Path(state_dir).resolve()))
    if new_run:
        retire_earlier_run(state_dir)
        _WORKERS.pop(key, None)
    worker = _WORKERS.get(key)
    if worker is None:
        worker = SiteWorker(job, site, state_dir)
        _WORKERS[key] = worker
    return worker


def clear_workers() -> None:
    """Forget cached workers (their state is on disk)."""
    _WORKERS.clear()
