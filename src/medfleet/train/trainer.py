"""The trainer: multi-task batches, AdamW with warm-up and cosine decay, checkpoints and resume.

One :class:`Trainer` trains one model on one or several tasks of a manifest:

* batches come from :class:`~medfleet.train.sampling.MultiTaskSchedule` (one task per
  batch; proportional, uniform or temperature sampling), ``grad_accum`` batches make one
  optimiser step;
* AdamW (no weight decay on biases, norms and other 1-D parameters) with a linear warm-up
  and cosine decay to ``min_lr_ratio * lr``; gradient clipping;
* mixed precision with :func:`torch.autocast` on GPU only (bf16 when supported, else fp16
  with a gradient scaler); float32 on CPU;
* a checkpoint (model, optimiser, schedule, scaler, step, random states, metric history)
  is written atomically every ``checkpoint_every`` steps and at each epoch end; a resumed
  run regenerates the epoch's schedule from the seed and continues at the saved step, so
  it ends with the same parameters as an uninterrupted run;
* several processes (``torchrun``) share each batch through ``DistributedDataParallel``
  (gloo on CPU, NCCL on GPU); rank 0 validates and writes;
* validation per task with :mod:`medfleet.train.validation` metrics; metrics go to
  ``metrics.csv`` (and TensorBoard when installed).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfleet.errors import MedfleetError, one_line
from medfleet.models.files import CHECKPOINT_FILE, CHECKPOINT_KIND, find_file
from medfleet.tasks import Manifest, TaskType
from medfleet.train.augment import augment_batch, settings_for
from medfleet.train.config import TrainConfig
from medfleet.train.datasets import (
    DEFAULT_SLICES,
    TaskDataset,
    balanced_class_weights,
    collate,
    load_task_rows,
    regression_stats,
)
from medfleet.train.predict import predict_dataset
from medfleet.train.sampling import MultiTaskSchedule, ScheduledBatch
from medfleet.train.semi import SemiSupervision, step_generator
from medfleet.train.validation import task_metrics
from medfleet.utils.atomic import atomic_open
from medfleet.utils.progress import ProgressCallback
from medfleet.utils.tensorfile import read_tensor_file, write_tensor_file

CHECKPOINT_FORMAT = "medfleet.train.checkpoint/1"
LogCallback = Callable[[str], None]

_RESUMABLE_CHANGES = {
    "threads",
    "checkpoint_every",
    "val_every",
    "device",
    "cache",
    "tensorboard",
    "log_every",
}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices).

    Example:
        >>> seed_everything(3); a = torch.rand(1); seed_everything(3)
        >>> bool(torch.equal(a, torch.rand(1)))
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def manifest_fingerprint(manifest: Manifest, tasks: Sequence[str] | None = None) -> str:
    """A short hash of the task definitions a model depends on (names, types, targets).

    Example:
        >>> from medfleet.tasks import Manifest, Site, TaskSpec
        >>> m = Manifest(name="m", sites=[Site(name="a")], tasks=[TaskSpec(
        ...     name="t", type="classification", table="t.csv", classes=["x", "y"])])
        >>> len(manifest_fingerprint(m))
        16
    """
    names = set(tasks) if tasks is not None else None
    specs = [
        t.model_dump(
            mode="json",
            include={"name", "type", "labels", "classes", "landmarks", "channels", "dim"},
        )
        for t in manifest.tasks
        if names is None or t.name in names
    ]
    text = json.dumps(specs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): warm-up, then cosine.

    Example:
        >>> [round(lr_factor(s, 10, 2, 0.0), 3) for s in (0, 1, 2, 6, 9)]
        [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class DistributedContext:
    """Where this process stands in a distributed run.

    Attributes:
        rank: Global rank (0 when not distributed).
        world_size: Number of processes.
        device: This process's device.
        started_here: Whether this trainer initialised the process group.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    started_here: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedfleetError(
            f"device {name!r} requested but CUDA is not available (fix: --device cpu)"
        )
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    The backend is NCCL on GPU and gloo on CPU.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistributedContext(0, 1, dev, False)
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        started = True
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), dev, started)


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block without disturbing the random states (Python, NumPy, torch)."""
    state = capture_rng(device)
    try:
        yield
    finally:
        restore_rng(state, device)


def capture_rng(device: torch.device) -> dict[str, Any]:
    """Random states of Python, NumPy, torch CPU and (when used) CUDA."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`capture_rng` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _backbone_config(model: Any) -> dict[str, Any] | None:
    """The transformers configuration of the model's backbone, when it has one."""
    hf = getattr(getattr(model, "backbone", None), "hf", None)
    config = getattr(hf, "config", None)
    return config.to_dict() if config is not None else None


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did.

    Attributes:
        out: The run folder.
        steps: Optimiser steps completed.
        total_steps: Steps planned.
        train_seconds: Wall time spent training (summed over resumed runs).
        history: Metric rows (``step, epoch, split, task, metric, value``).
        val_metrics: The last validation: task -> metric -> value.
        checkpoint: Path of the last checkpoint.
        resumed_from: Step the run resumed at (``None`` for a fresh run).
    """

    out: Path
    steps: int
    total_steps: int
    train_seconds: float
    history: list[dict[str, Any]]
    val_metrics: dict[str, dict[str, float]]
    checkpoint: Path
    resumed_from: int | None = None


class Trainer:
    """Train a model (``UnifiedModel`` interface) on tasks of a manifest.

    Args:
        model: The model: ``model(images, task)``, ``model.loss(task, out, targets)``,
            ``model.decode(task, out)``, ``model.aux_loss()``, ``model.set_target_stats``.
        manifest: The manifest.
        config: Training settings.
        out: Run folder (``checkpoints/``, ``metrics.csv``).
        tasks: Tasks to train (default: all of the manifest).
        image_size: Model input size (default ``model.config.image_size``).
        progress: Called as ``progress(step, total_steps)``.
        log: Called with one line per epoch and event.
        on_step: Called after every optimiser step with the trainer (for tests and hooks).

    Raises:
        DataError: A task's table or images are unusable (checked before training starts).
    """

    def __init__(
        self,
        model: Any,
        manifest: Manifest,
        config: TrainConfig,
        out: str | Path,
        *,
        tasks: Sequence[str] | None = None,
        image_size: int | None = None,
        progress: ProgressCallback | None = None,
        log: LogCallback | None = None,
        on_step: Callable[[Trainer], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.config = config
        self.out = Path(out)
        self.tasks = list(tasks) if tasks is not None else [t.name for t in manifest.tasks]
        for name in self.tasks:
            manifest.task(name)
        self.progress = progress
        self.log = log or (lambda message: None)
        self.on_step = on_step
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.dist = init_distributed(config.device)
        self.device = self.dist.device
        self.module = model.to(self.device)
        if image_size is None:
            image_size = int(getattr(getattr(model, "config", None), "image_size", 0) or 0)
        if not image_size:
            raise MedfleetError("image_size is unknown: pass it or give the model a config")
        self.image_size = image_size
        encoder = getattr(model, "encode_mask", None)
        self.slices = int(getattr(getattr(model, "config", None), "slices", None) or DEFAULT_SLICES)
        self.train_sets = {
            name: TaskDataset(
                manifest,
                name,
                ("train",),
                image_size,
                normalisation=config.normalisation,
                mask_encoder=encoder,
                cache=config.cache,
                slices=self.slices,
            )
            for name in self.tasks
        }
        self.val_sets = {
            name: TaskDataset(
                manifest,
                name,
                (config.val_split,),
                image_size,
                normalisation=config.normalisation,
                mask_encoder=encoder,
                cache=config.cache,
                slices=self.slices,
            )
            for name in self.tasks
            if load_task_rows(manifest, name, (config.val_split,))
        }
        self._check_data()
        for name, ds in self.train_sets.items():
            if ds.spec.type is TaskType.regression and hasattr(self.module, "set_target_stats"):
                self.module.set_target_stats(name, *regression_stats(ds))
            if (
                config.class_weights == "balanced"
                and ds.spec.type is TaskType.classification
                and hasattr(self.module, "set_class_weights")
            ):
                self.module.set_class_weights(name, balanced_class_weights(ds))
        self.schedule = MultiTaskSchedule(
            {k: len(v) for k, v in self.train_sets.items()},
            config.batch_size,
            config.sampling,
            config.temperature,
            config.seed,
            config.batches_per_epoch,
            self.dist.world_size,
        )
        self.batches_per_epoch = self.schedule.batches_per_epoch
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accum)
        self.total_steps = config.planned_steps(self.steps_per_epoch)
        self.warmup = (
            config.warmup_steps
            if config.warmup_steps is not None
            else int(config.warmup_fraction * self.total_steps)
        )
        self.augment = settings_for(config.augment, config.augment_flip)
        self.semi: SemiSupervision | None = None
        if config.semi_supervised:
            self.semi = SemiSupervision(
                self.module,
                manifest,
                self.tasks,
                config,
                image_size,
                self.augment,
                self.total_steps,
                {
                    "normalisation": config.normalisation,
                    "mask_encoder": encoder,
                    "cache": config.cache,
                },
            )
            self.semi.check()
        self._unlabelled_losses: dict[str, list[float]] = {}
        self.net = self.module
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(
                self.module, device_ids=ids, find_unused_parameters=True
            )
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, self.total_steps, self.warmup, config.min_lr_ratio),
        )
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype is torch.float16 and self.device.type == "cuda"
        )
        self.step = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.val_metrics: dict[str, dict[str, float]] = {}
        self._epoch_cache: tuple[int, list[ScheduledBatch]] | None = None
        self._tb: Any = None

    # ------------------------------------------------------------------ setup

    def _check_data(self) -> None:
        for ds in [*self.train_sets.values(), *self.val_sets.values()]:
            ds.check()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, param in self.module.named_parameters():
            if not param.requires_grad:
                continue
            if param.ndim < 2 or name.endswith(".bias") or "norm" in name.lower():
                no_decay.append(param)
            else:
                decay.append(param)
        if not decay and not no_decay:
            raise MedfleetError("the model has no trainable parameter (check the freeze policy)")
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=self.config.lr, betas=self.config.betas
        )

    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda" or self.config.amp == "off":
            return None
        if self.config.amp == "fp16":
            return torch.float16
        if self.config.amp == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    @property
    def checkpoint_path(self) -> Path:
        """``out/checkpoints/last.safetensors`` (a medfleet tensor file)."""
        return self.out / CHECKPOINT_FILE

    @property
    def final_module(self) -> torch.nn.Module:
        """The model validated and kept (the EMA teacher when ``semi_final`` is ``teacher``)."""
        if self.semi is not None:
            return self.semi.final_model(self.module)
        return self.module

    @property
    def epoch(self) -> int:
        """Epoch of the next step (0-based)."""
        return self.step // self.steps_per_epoch

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs."""
        model_config = getattr(self.module, "config", None)
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch,
            "train_seconds": self.train_seconds,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "semi": None if self.semi is None else self.semi.state_dict(),
            "rng": capture_rng(self.device),
            "history": self.history,
            "val_metrics": self.val_metrics,
            "train_config": self.config.model_dump(mode="json"),
            "model_config": None if model_config is None else model_config.model_dump(mode="json"),
            "backbone_config": _backbone_config(self.module),
            "tasks": self.tasks,
            "image_size": self.image_size,
            "manifest": {
                "name": self.manifest.name,
                "fingerprint": manifest_fingerprint(self.manifest, self.tasks),
            },
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        """Restore a state from :meth:`state_dict` after checking it belongs to this run.

        Raises:
            MedfleetError: The checkpoint is of another format, manifest, task list or
                training configuration.
        """
        if state.get("format") != CHECKPOINT_FORMAT:
            raise MedfleetError(
                f"cannot read {source}: not a medfleet training checkpoint (fix: start a new "
                "--out folder, or delete the file to train from scratch)"
            )
        fingerprint = manifest_fingerprint(self.manifest, self.tasks)
        saved = state.get("manifest", {})
        if state.get("tasks") != self.tasks or saved.get("fingerprint") != fingerprint:
            raise MedfleetError(
                f"{source} was trained on manifest {saved.get('name')!r} with tasks "
                f"{state.get('tasks')}, not on {self.manifest.name!r} with tasks {self.tasks} "
                "(fix: resume with the same manifest and tasks, or start a new --out folder)"
            )
        old = state.get("train_config", {})
        new = self.config.model_dump(mode="json")
        changed = sorted(
            k for k in new if k not in _RESUMABLE_CHANGES and old.get(k, new[k]) != new[k]
        )
        if changed:
            listing = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
            raise MedfleetError(
                f"{source} was written with other training settings ({listing}) "
                "(fix: resume with the same settings, or start a new --out folder)"
            )
        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            if self.semi is not None and state.get("semi"):
                self.semi.load_state_dict(state["semi"])
            self.step = int(state["step"])
            self.train_seconds = float(state.get("train_seconds", 0.0))
            self.history = list(state.get("history", []))
            self.val_metrics = dict(state.get("val_metrics", {}))
            restore_rng(state["rng"], self.device)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise MedfleetError(
                f"cannot read {source}: a damaged training checkpoint ({one_line(exc)}) "
                "(fix: start a new --out folder, or delete the file to train from scratch)"
            ) from None

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/last.safetensors`` and ``metrics.csv`` atomically (rank 0 only)."""
        if self.dist.is_main:
            write_tensor_file(self.checkpoint_path, self.state_dict(), CHECKPOINT_KIND)
            self.write_metrics()
        self._barrier()
        return self.checkpoint_path

    def write_metrics(self) -> Path:
        """Write the metric history to ``metrics.csv`` (rewritten whole, atomically)."""
        path = self.out / "metrics.csv"
        columns = ["step", "epoch", "split", "task", "metric", "value"]
        with atomic_open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            for row in self.history:
                writer.writerow({c: row.get(c, "") for c in columns})
        return path

    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    # ------------------------------------------------------------------ training

    def fit(self, resume: bool = False) -> TrainResult:
        """Train until ``total_steps``; with ``resume`` continue from the last checkpoint.

        A missing checkpoint with ``resume`` starts a fresh run (the kill came before the
        first save). The checkpoint is read without running code
        (:func:`~medfleet.utils.tensorfile.read_tensor_file`); an empty, truncated, foreign or
        unsafe one stops the run with an error naming the file.
        """
        resumed_from = None
        saved = find_file(self.out, CHECKPOINT_FILE)
        if resume and saved.exists():
            state = read_tensor_file(
                saved,
                (CHECKPOINT_KIND,),
                what="medfleet training checkpoint",
                fix=f"start a new --out folder, or delete {saved} to train from scratch",
            )
            self.load_state_dict(state, str(saved))
            resumed_from = self.step
            self.log(f"resumed at step {self.step} of {self.total_steps}")
        elif resume:
            self.log(f"no checkpoint in {self.checkpoint_path.parent}; starting a fresh run")
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._open_tensorboard()
        if self.progress is not None:
            self.progress(self.step, self.total_steps)
        try:
            while self.step < self.total_steps:
                tic = time.perf_counter()
                epoch, group = divmod(self.step, self.steps_per_epoch)
                entries = self._epoch_schedule(epoch)
                start = group * self.config.grad_accum
                micro = entries[start : start + self.config.grad_accum]
                losses = self._train_step(micro)
                self.step += 1
                self.train_seconds += time.perf_counter() - tic
                self._record_train(epoch, losses)
                epoch_end = group == self.steps_per_epoch - 1 or self.step == self.total_steps
                if epoch_end and self._validation_due(epoch):
                    self.validate(epoch)
                if self.on_step is not None:
                    self.on_step(self)
                every = self.config.checkpoint_every
                if epoch_end or (every and self.step % every == 0):
                    self.save_checkpoint()
                if self.progress is not None:
                    self.progress(self.step, self.total_steps)
                if epoch_end:
                    self.log(self._epoch_line(epoch))
        finally:
            if self._tb is not None:
                self._tb.close()
                self._tb = None
        return TrainResult(
            out=self.out,
            steps=self.step,
            total_steps=self.total_steps,
            train_seconds=self.train_seconds,
            history=self.history,
            val_metrics=self.val_metrics,
            checkpoint=self.checkpoint_path,
            resumed_from=resumed_from,
        )

    def _validation_due(self, epoch: int) -> bool:
        every = self.config.val_every
        if not every or not self.val_sets:
            return False
        return (epoch + 1) % every == 0 or self.step == self.total_steps

    def _epoch_schedule(self, epoch: int) -> list[ScheduledBatch]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, self.schedule.epoch(epoch))
        return self._epoch_cache[1]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def _train_step(self, micro: Sequence[ScheduledBatch]) -> dict[str, list[float]]:
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._unlabelled_losses = {}
        losses: dict[str, list[float]] = {}
        n = len(micro)
        for i, entry in enumerate(micro):
            ds = self.train_sets[entry.task]
            indices = entry.shard(self.dist.rank, self.dist.world_size)
            batch = collate(ds.spec, [ds[j] for j in indices])
            generator = step_generator(self.config.seed, self.step, i, self.dist.rank)
            if self.augment.geometric or self.augment.intensity or self.config.augment_cutmix:
                batch = augment_batch(
                    batch,
                    ds.spec,
                    self.augment,
                    generator,
                    self.config.flip_pairs,
                    self.config.augment_cutmix,
                )
            batch = batch.to(self.device)
            semi = self.semi if self.semi is not None and entry.task in self.semi.tasks else None
            sync = (
                self.net.no_sync()
                if self.dist.world_size > 1 and i < n - 1
                else contextlib.nullcontext()
            )
            with sync:
                with self._autocast():
                    if semi is None:
                        out = self.net(batch.images, entry.task)
                        loss, _parts = self.module.loss(entry.task, out, batch.targets)
                        aux = self.module.aux_loss() if hasattr(self.module, "aux_loss") else 0.0
                        total = loss + aux
                    else:
                        loss, total = self._semi_loss(semi, entry.task, batch, generator)
                if not torch.isfinite(total.detach()).all() and not self.scaler.is_enabled():
                    raise MedfleetError(
                        f"the loss of task {entry.task!r} is {float(total):g} at step "
                        f"{self.step + 1} (fix: lower the learning rate or check the targets "
                        f"of cases {batch.case_ids})"
                    )
                self.scaler.scale(total / n).backward()
            losses.setdefault(entry.task, []).append(float(loss.detach()))
        if self.config.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.semi is not None:
            self.semi.update_teacher(self.module, self.step)
        return losses

    def _semi_loss(
        self, semi: SemiSupervision, task: str, batch: Any, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Labelled loss and labelled + MoE + weighted unlabelled loss (one student pass)."""
        from medfleet.models.heads.base import TaskOutput

        views = semi.views(task, batch.images.shape[0], generator)
        n = batch.images.shape[0]

        def forward(images: torch.Tensor, dropout: float, last: int | None) -> Any:
            joint = torch.cat([batch.images, images.to(self.device)])
            return self.net(joint, task, feature_dropout=dropout, dropout_last=last)

        unlabelled, out = semi.unlabelled_loss(task, views, self.module, forward)
        labelled = TaskOutput({k: v[:n] for k, v in out.items()}, meta=dict(out.meta))
        loss, _parts = self.module.loss(task, labelled, batch.targets)
        aux = self.module.aux_loss() if hasattr(self.module, "aux_loss") else 0.0
        self._unlabelled_losses.setdefault(task, []).append(float(unlabelled.detach()))
        return loss, loss + aux + semi.weight(self.step) * unlabelled

    def _record_train(self, epoch: int, losses: dict[str, list[float]]) -> None:
        if self.step % self.config.log_every and self.step != self.total_steps:
            return
        for task, values in losses.items():
            self._record(epoch, "train", task, "loss", float(np.mean(values)))
        for task, values in self._unlabelled_losses.items():
            self._record(epoch, "train", task, "unlabelled_loss", float(np.mean(values)))
        self._unlabelled_losses = {}
        self._record(epoch, "train", "", "lr", float(self.scheduler.get_last_lr()[0]))

    def _record(self, epoch: int, split: str, task: str, metric: str, value: float) -> None:
        row = {
            "step": self.step,
            "epoch": epoch,
            "split": split,
            "task": task,
            "metric": metric,
            "value": value,
        }
        self.history.append(row)
        if self._tb is not None and math.isfinite(value):
            tag = f"{split}/{task}/{metric}" if task else f"{split}/{metric}"
            self._tb.add_scalar(tag, value, self.step)

    def _open_tensorboard(self) -> None:
        if not self.config.tensorboard or self._tb is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional
            return
        self._tb = SummaryWriter(str(self.out / "tensorboard"))

    def validate(self, epoch: int | None = None) -> dict[str, dict[str, float]]:
        """Score every task's validation split; record and return task -> metric -> value."""
        epoch = self.epoch if epoch is None else epoch
        results: dict[str, dict[str, float]] = {}
        if self.dist.is_main:
            with preserved_rng(self.device):
                for name, ds in self.val_sets.items():
                    preds = predict_dataset(
                        self.final_module, ds, device=self.device, batch_size=self.config.batch_size
                    )
                    results[name] = task_metrics(self.manifest, ds.spec, ds.rows, preds)
                    for metric, value in results[name].items():
                        self._record(epoch, "val", name, metric, float(value))
            self.val_metrics = results
        self._barrier()
        return results

    def _epoch_line(self, epoch: int) -> str:
        parts = [f"epoch {epoch + 1} step {self.step}/{self.total_steps}"]
        train = [r for r in self.history if r["epoch"] == epoch and r["metric"] == "loss"]
        if train:
            parts.append(f"loss {np.mean([r['value'] for r in train]):.4f}")
        validated = any(r["epoch"] == epoch and r["split"] == "val" for r in self.history)
        for task, metrics in self.val_metrics.items() if validated else ():
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            parts.append(f"{task}: {shown}")
        return " | ".join(parts)

    def close(self) -> None:
        """Leave the process group if this trainer joined it."""
        if self.dist.started_here:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.dist.started_here = False
