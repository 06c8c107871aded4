"""Training settings (pydantic; no torch import), loadable from the ``train:`` section of YAML.

Example:
    >>> cfg = TrainConfig(epochs=2, batch_size=4, sampling="temperature", temperature=3.0)
    >>> TrainConfig.model_validate(cfg.model_dump()) == cfg
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medfleet.errors import MedfleetError
from medfleet.utils.yamlfile import read_yaml_mapping


class TrainConfig(BaseModel):
    """How one model is trained.

    Attributes:
        epochs: Passes over the schedule (see ``batches_per_epoch``); not used when
            ``max_steps`` is set.
        max_steps: The run's length in optimiser steps: exactly this many, however many
            epochs that takes (``epochs`` is then not used). ``None``: ``epochs`` passes.
        batch_size: Images per batch and process.
        grad_accum: Batches accumulated into one optimiser step.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_steps: Linear warm-up steps; ``None`` uses ``warmup_fraction`` of all steps.
        warmup_fraction: Warm-up as a fraction of all steps when ``warmup_steps`` is None.
        min_lr_ratio: Final learning rate of the cosine schedule relative to ``lr``.
        max_grad_norm: Gradient clipping norm (``None`` or 0: no clipping).
        sampling: Task sampling: ``proportional``, ``uniform`` or ``temperature``.
        temperature: ``tau`` of temperature sampling.
        batches_per_epoch: Batches per epoch (default: enough to see every row once).
        seed: Seed of initialisation, schedule and dropout.
        checkpoint_every: Save a checkpoint every N optimiser steps (0: only at epoch end).
        val_every: Validate every N epochs (0: never); also after the last step.
        val_split: Split used for validation.
        normalisation: Per-image intensity normalisation (``zscore``, ``minmax``, ``none``).
        amp: Mixed precision on GPU: ``auto`` (bf16 when supported, else fp16), ``bf16``,
            ``fp16`` or ``off``. CPU runs always use float32.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        cache: Keep prepared images in memory.
        threads: CPU threads of torch (``None``: torch's default). One thread is often
            fastest for small models, and always on a busy machine.
        tensorboard: Also log to TensorBoard when it is installed.
        log_every: Record the training loss every N steps.
        augment: Training augmentation on the model grid (:mod:`medfleet.train.augment`):
            ``none``, ``light``, ``standard`` or ``strong`` (the default: adds rotations up
            to 30 degrees and a wider scale range, nnU-Net style).
        augment_flip: Probability of a horizontal flip, overriding the ``augment`` level.
        class_weights: Cross-entropy class weights of classification tasks: ``balanced``
            (the default: ``n / (K * n_k)`` from the training rows, so a rare class counts
            as much as a common one) or ``none``. Stored with the model.
        flip_pairs: Landmark names that swap under a horizontal flip (``[[left, right]]``);
            a landmark task is flipped only when some of its points are paired.
        augment_cutmix: Share of the images of a labelled 2D segmentation batch that get a
            rectangle of another image of the batch pasted in, masks mixed alike (supervised
            CutMix); 0: off.
        semi_supervised: ``mean-teacher`` or ``fixmatch`` uses the unlabelled rows (empty
            mask cell) of segmentation tasks (:mod:`medfleet.train.semi`); ``None``: off.
        ema_decay: EMA decay of the mean teacher's weights.
        consistency_weight: Weight of the unlabelled loss after ramp-up.
        consistency_rampup: Fraction of the steps over which that weight ramps up
            (sigmoid-shaped, from 0).
        confidence_threshold: FixMatch: smallest teacher probability of a pseudo-label.
        unlabelled_ratio: Unlabelled images per labelled image of a segmentation batch.
        semi_final: Weights of the trained model of a semi-supervised run (``model.safetensors``,
            validation, prediction): ``teacher``, the EMA of the student's weights (kept
            for both methods), or ``student``, the last optimiser iterate.
        strong_scale: Strength of the strong view's intensity jitter relative to
            :data:`medfleet.train.augment.STRONG` (0: the strong view is the weak view).
        strong_geometric: The strong view also gets its own flip, scale and shift (the
            ``standard`` level) on top of the weak view's; the targets are warped with it
            (transformation consistency).
        semi_class_balanced: Average the unlabelled loss per target class (the teacher's
            argmax) and then over classes, so a small structure weighs as much as the
            background.
        semi_include_labelled: Also use the labelled training images as unlabelled ones
            (their consistency term), as the mean teacher and FixMatch usually do.
        cutmix: Share of the strong views that get a rectangle of another unlabelled image
            pasted in, with the targets mixed the same way (CutMix-Seg / UniMatch); 0: off
            (without it neither method beat labelled-only training on the phantoms).
        feature_dropout: Channel dropout on the backbone maps of an extra, feature-perturbed
            weak view of the unlabelled images (UniMatch's FP branch); 0: off.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=10, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.05, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int | None = Field(default=None, ge=0)
    warmup_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    min_lr_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    max_grad_norm: float | None = Field(default=1.0, ge=0.0)
    sampling: Literal["proportional", "uniform", "temperature"] = "proportional"
    temperature: float = Field(default=2.0, gt=0.0)
    batches_per_epoch: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)
    checkpoint_every: int = Field(default=50, ge=0)
    val_every: int = Field(default=1, ge=0)
    val_split: Literal["train", "val", "test"] = "val"
    normalisation: Literal["zscore", "minmax", "none"] = "zscore"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    device: str = "auto"
    cache: bool = True
    threads: int | None = Field(default=None, ge=1)
    tensorboard: bool = True
    log_every: int = Field(default=1, ge=1)
    augment: Literal["none", "light", "standard", "strong"] = "strong"
    augment_flip: float | None = Field(default=None, ge=0.0, le=1.0)
    class_weights: Literal["none", "balanced"] = "balanced"
    flip_pairs: list[tuple[str, str]] = Field(default_factory=list)
    augment_cutmix: float = Field(default=0.0, ge=0.0, le=1.0)
    semi_supervised: Literal["mean-teacher", "fixmatch"] | None = None
    ema_decay: float = Field(default=0.99, ge=0.0, lt=1.0)
    consistency_weight: float = Field(default=1.0, ge=0.0)
    consistency_rampup: float = Field(default=0.3, ge=0.0, le=1.0)
    confidence_threshold: float = Field(default=0.9, ge=0.0, le=1.0)
    unlabelled_ratio: float = Field(default=1.0, gt=0.0)
    semi_final: Literal["teacher", "student"] = "teacher"
    semi_include_labelled: bool = True
    strong_scale: float = Field(default=1.0, ge=0.0)
    semi_class_balanced: bool = False
    strong_geometric: bool = False
    cutmix: float = Field(default=1.0, ge=0.0, le=1.0)
    feature_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    def planned_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of the run: ``max_steps`` when set, else ``epochs`` full passes.

        With ``max_steps`` the epochs follow from the steps (the last one may be partial), so
        ``--steps 300`` runs 300 steps even when the default 10 epochs hold fewer.

        Example:
            >>> by_steps, by_epochs = TrainConfig(max_steps=300), TrainConfig(epochs=3)
            >>> by_steps.planned_steps(17), by_epochs.planned_steps(17)
            (300, 51)
        """
        if self.max_steps is not None:
            return self.max_steps
        return self.epochs * steps_per_epoch

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device {self.device!r} must be auto, cpu, cuda or cuda:N")
        return self


def describe_settings_error(exc: ValidationError) -> str:
    """Pydantic's errors as one line: ``field: what is wrong`` for each invalid setting.

    Example:
        >>> try:
        ...     TrainConfig(epocs=2, lr=-1)
        ... except ValidationError as exc:
        ...     print(describe_settings_error(exc))
        lr: Input should be greater than 0; epocs: is not a known setting
    """
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "is not a known setting"
        elif err["type"] == "missing":
            message = "is required but missing"
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(" ".join(part.split()) for part in parts)


def load_run_config(path: str | Path) -> tuple[dict[str, Any], TrainConfig]:
    r"""Read a YAML file with optional ``model:`` and ``train:`` sections.

    Returns:
        The ``model`` section as a dict (for ``ModelConfig``) and the ``TrainConfig``.

    Raises:
        MedfleetError: Missing file, invalid YAML or an invalid field (named).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "run.yaml"
        >>> _ = p.write_text("model: {image_size: 32}\ntrain: {epochs: 3}\n")
        >>> model, train = load_run_config(p)
        >>> model["image_size"], train.epochs
        (32, 3)
    """
    path = Path(path)
    raw = read_yaml_mapping(
        path, "run config", expect="a mapping with 'model' and/or 'train' sections"
    )
    unknown = sorted(set(raw) - {"model", "train"})
    if unknown:
        raise MedfleetError(
            f"{path}: unknown section(s) {unknown} (fix: use 'model:' and 'train:' only)"
        )
    try:
        train = TrainConfig.model_validate(raw.get("train") or {})
    except ValidationError as exc:
        raise MedfleetError(
            f"{path}: section 'train' is invalid: {describe_settings_error(exc)} "
            "(fix: correct or remove those fields; docs/training.md lists them)"
        ) from exc
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise MedfleetError(f"{path}: section 'model' must be a mapping")
    return model, train
