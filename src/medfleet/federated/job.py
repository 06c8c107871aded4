"""A federated job: manifest, model, training and federated settings, output folder.

The job travels to the ServerApp and every ClientApp as one JSON document (in memory for
the in-process engine, as ``job.json`` for Ray and the deployment engine) or is built from
the flat ``--run-config`` keys of ``flwr run`` (see :func:`job_from_run_config`).

Example:
    >>> from medfleet.tasks import Manifest, Site, TaskSpec
    >>> m = Manifest(name="m", sites=[Site(name="a")], tasks=[TaskSpec(
    ...     name="t", type="classification", table="t.csv", classes=["x", "y"])])
    >>> job = FederatedJob.create(m, ModelConfig(image_size=32), TrainConfig(), FederatedConfig(),
    ...                           "/tmp/out")
    >>> FederatedJob.model_validate_json(job.model_dump_json()).manifest().name
    'm'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medfleet.errors import MedfleetError
from medfleet.federated.config import FederatedConfig
from medfleet.models.config import AdapterConfig, ModelConfig
from medfleet.tasks import Manifest
from medfleet.train.config import TrainConfig
from medfleet.utils.atomic import write_text_atomic

JOB_FILE = "job.json"


class FederatedJob(BaseModel):
    """Everything a ServerApp or ClientApp needs to take part in a run.

    Attributes:
        manifest_data: The manifest's fields.
        manifest_root: Folder the manifest's relative paths resolve against.
        model: Model settings (as given; see :func:`effective_model_config`).
        train: Local training settings.
        federated: Federated settings.
        out: Output folder of the run (server results; default site folders below it).
    """

    model_config = ConfigDict(extra="forbid")

    manifest_data: dict[str, Any]
    manifest_root: str | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    federated: FederatedConfig = Field(default_factory=FederatedConfig)
    out: str

    @classmethod
    def create(
        cls,
        manifest: Manifest,
        model: ModelConfig,
        train: TrainConfig,
        federated: FederatedConfig,
        out: str | Path,
    ) -> FederatedJob:
        """Build a job from loaded settings."""
        return cls(
            manifest_data=manifest.model_dump(mode="json"),
            manifest_root=None if manifest.root is None else str(manifest.root),
            model=model,
            train=train,
            federated=federated,
            out=str(Path(out).resolve()),
        )

    def manifest(self) -> Manifest:
        """The manifest, with its root restored."""
        manifest = Manifest.model_validate(self.manifest_data)
        manifest.root = None if self.manifest_root is None else Path(self.manifest_root)
        return manifest

    def effective_model(self) -> ModelConfig:
        """The model settings the strategy implies (see :func:`effective_model_config`)."""
        return effective_model_config(self.model, self.federated)

    def save(self, folder: str | Path) -> Path:
        """Write ``job.json`` into ``folder`` atomically."""
        return write_text_atomic(Path(folder) / JOB_FILE, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FederatedJob:
        """Read a ``job.json`` (or the one inside a folder).

        Raises:
            MedfleetError: When the file is missing or invalid.
        """
        path = Path(path)
        if path.is_dir():
            path = path / JOB_FILE
        if not path.is_file():
            raise MedfleetError(
                f"federated job file {path} not found (fix: run 'medfleet federate' or pass "
                "--run-config 'job=\"/path/to/job.json\"')"
            )
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise MedfleetError(f"{path}: not a valid federated job: {exc}") from exc


def effective_model_config(model: ModelConfig, federated: FederatedConfig) -> ModelConfig:
    """Model settings implied by the strategy.

    ``lora`` and ``dual-lora`` inject their adapter (rank, chosen blocks) and freeze the
    backbone; ``fedavg`` and ``fedprox`` keep the given model (full fine-tuning by default).

    Example:
        >>> cfg = effective_model_config(ModelConfig(), FederatedConfig(strategy="dual-lora",
        ...                              blocks=[-2, -1]))
        >>> cfg.adapter.kind, cfg.adapter.blocks, cfg.freeze
        ('dual-lora', [-2, -1], 'adapters')
    """
    if not federated.uses_lora:
        return model
    adapter = AdapterConfig.model_validate(
        {
            **model.adapter.model_dump(),
            "kind": federated.strategy,
            "rank": federated.rank,
            "alpha": 2.0 * federated.rank,
            "blocks": federated.blocks if federated.blocks is not None else model.adapter.blocks,
        }
    )
    freeze = "adapters+moe" if model.freeze == "adapters+moe" else "adapters"
    return model.model_copy(update={"adapter": adapter, "freeze": freeze})


_RUN_CONFIG_FIELDS = {
    "strategy": ("federated", "strategy", str),
    "rounds": ("federated", "rounds", int),
    "local-steps": ("federated", "local_steps", int),
    "local-epochs": ("federated", "local_epochs", int),
    "mu": ("federated", "mu", float),
    "fedbn": ("federated", "fedbn", bool),
    "min-fit": ("federated", "min_fit", int),
    "min-available": ("federated", "min_available", int),
    "round-timeout": ("federated", "round_timeout", float),
    "seed": ("federated", "seed", int),
    "backbone": ("model", "backbone", str),
    "image-size": ("model", "image_size", int),
    "batch-size": ("train", "batch_size", int),
    "lr": ("train", "lr", float),
    "threads": ("train", "threads", int),
}


def job_from_run_config(run_config: dict[str, Any]) -> FederatedJob:
    r"""Build a job from the run configuration of ``flwr run``.

    Either ``job`` names a ``job.json`` (written by ``medfleet federate`` or by hand), or
    ``manifest`` and ``out`` are given with optional flat keys (``strategy``, ``rounds``,
    ``local-steps``, ``blocks`` as ``"-2,-1"``, ``image-size``, ...).

    Raises:
        MedfleetError: When neither ``job`` nor ``manifest`` + ``out`` are set.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "t.csv").write_text("case_id,image,site,split,label\n")
        >>> _ = (d / "m.yaml").write_text("name: m\nsites: [{name: a}]\ntasks: [{name: t, "
        ...     "type: classification, table: t.csv, classes: [x, y]}]\n")
        >>> job = job_from_run_config({"manifest": str(d / "m.yaml"), "out": str(d / "o"),
        ...                            "strategy": "lora", "blocks": "-1"})
        >>> job.federated.strategy, job.federated.blocks
        ('lora', [-1])
        >>> job_from_run_config({"manifest": str(d / "m.yaml"), "out": str(d / "o"),
        ...                      "seed": 7}).train.seed
        7
    """
    path = str(run_config.get("job", "") or "")
    if path:
        return FederatedJob.load(path)
    manifest_path = str(run_config.get("manifest", "") or "")
    out = str(run_config.get("out", "") or "")
    if not manifest_path or not out:
        raise MedfleetError(
            "the run configuration names neither 'job' nor 'manifest' and 'out' "
            '(fix: flwr run . <connection> --run-config \'manifest="m.yaml" out="runs/fl"\')'
        )
    sections: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "federated": {}}
    for key, (section, field, kind) in _RUN_CONFIG_FIELDS.items():
        value = run_config.get(key)
        if value is None or value == "" or (key in ("local-steps", "threads") and value == 0):
            continue
        sections[section][field] = kind(value)
    if "seed" in sections["federated"]:
        # one seed: the initial weights and each site's local training
        sections["train"]["seed"] = sections["federated"]["seed"]
    blocks = str(run_config.get("blocks", "") or "").strip()
    if blocks:
        sections["federated"]["blocks"] = [int(b) for b in blocks.split(",") if b.strip()]
    extra = str(run_config.get("settings", "") or "")
    if extra:
        for section, values in json.loads(extra).items():
            sections.setdefault(section, {}).update(values)
    try:
        return FederatedJob.create(
            Manifest.load(manifest_path),
            ModelConfig.model_validate(sections["model"]),
            TrainConfig.model_validate(sections["train"]),
            FederatedConfig.model_validate(sections["federated"]),
            out,
        )
    except ValueError as exc:
        raise MedfleetError(f"invalid federated run configuration: {exc}") from exc
