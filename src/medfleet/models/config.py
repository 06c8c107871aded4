"""Configuration of the unified multi-task model (pydantic; no torch import).

A :class:`ModelConfig` names the backbone, the optional task-conditioned
Mixture-of-Experts, the adapters, the freezing policy and the heads' options.
It round-trips through YAML and JSON, and is stored inside every checkpoint.

Example:
    >>> cfg = ModelConfig(backbone="vit-tiny", image_size=64, in_channels=1,
    ...                   moe=MoEConfig(blocks=[2, 3], num_experts=4, top_k=2))
    >>> ModelConfig.from_yaml(cfg.to_yaml()) == cfg
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medfleet.errors import MedfleetError
from medfleet.utils.atomic import write_text_atomic

FreezePolicy = Literal["none", "backbone", "adapters", "adapters+moe"]
"""What stays trainable: ``none`` (full fine-tune), ``backbone`` (heads only),
``adapters`` (LoRA adapters + heads), ``adapters+moe`` (adapters, MoE + heads)."""

AdapterKind = Literal["none", "lora", "dual-lora"]
"""``lora``: one adapter; ``dual-lora``: a global and a local adapter active together."""


class MoEConfig(BaseModel):
    """Task-conditioned Mixture-of-Experts in selected transformer blocks or CNN stages.

    Attributes:
        blocks: Indices of the blocks whose MLP becomes experts, or of the CNN stages
            followed by a residual MLP of experts (negative counts from the end).
        num_experts: Experts per MoE block (``E``).
        top_k: Experts each token is routed to.
        task_conditioned: The router sees a learned task embedding.
        token_routing: The router also sees the token (per-token routing); when False the
            routing depends on the task only, so every token of a task uses the same experts.
        task_embed_dim: Size of the learned task embedding.
        expert_hidden_ratio: Hidden width of an expert relative to the dense MLP; ``None``
            means ``1 / top_k`` so that the active compute per token matches the dense MLP.
            ``1.0`` copies the dense MLP into every expert (sparse upcycling).
        aux_loss_weight: Weight of the load-balancing loss returned by ``model.aux_loss()``.

    Example:
        >>> MoEConfig(blocks=[-1], num_experts=4, top_k=2).top_k
        2
    """

    model_config = ConfigDict(extra="forbid")

    blocks: list[int] = Field(default_factory=lambda: [-2, -1])
    num_experts: int = Field(default=4, ge=2)
    top_k: int = Field(default=2, ge=1)
    task_conditioned: bool = True
    token_routing: bool = True
    task_embed_dim: int = Field(default=32, ge=1)
    expert_hidden_ratio: float | None = Field(default=None, gt=0.0, le=1.0)
    aux_loss_weight: float = Field(default=0.01, ge=0.0)

    @model_validator(mode="after")
    def _consistent(self) -> MoEConfig:
        if self.top_k > self.num_experts:
            raise ValueError(
                f"moe.top_k ({self.top_k}) exceeds moe.num_experts ({self.num_experts})"
            )
        if not self.blocks:
            raise ValueError("moe.blocks is empty: name at least one block (e.g. [-1])")
        if not self.task_conditioned and not self.token_routing:
            raise ValueError(
                "the router needs an input: set moe.task_conditioned or moe.token_routing"
            )
        return self

    @property
    def hidden_ratio(self) -> float:
        """The effective expert width relative to the dense MLP."""
        return self.expert_hidden_ratio if self.expert_hidden_ratio else 1.0 / self.top_k


class AdapterConfig(BaseModel):
    """LoRA adapters injected through PEFT.

    Attributes:
        kind: ``none``, ``lora`` (one adapter named ``global``) or ``dual-lora`` (adapters
            ``global`` and ``local`` active together: ``W = W0 + B_g A_g + B_l A_l``).
        rank: LoRA rank ``r``.
        alpha: LoRA alpha (the update is scaled by ``alpha / rank``).
        dropout: Dropout on the adapter input.
        targets: Names of the modules to adapt inside each chosen block or stage: linear
            layers of a ViT (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``fc1``/``fc2``
            (DINOv2), ``up_proj``/``down_proj`` (DINOv3)), a ConvNeXt's
            ``pointwise_conv1``/``pointwise_conv2``, a U-Net encoder's ``conv`` (its 3x3
            convolutions). ``None``: ``q_proj`` and ``v_proj`` on a ViT, both pointwise
            layers on a ConvNeXt, every ``conv`` on a U-Net encoder.
        blocks: Block (ViT) or stage (CNN) indices to adapt (negative counts from the end);
            ``None`` means all.

    Example:
        >>> AdapterConfig(kind="dual-lora", rank=4, alpha=8).scaling
        2.0
    """

    model_config = ConfigDict(extra="forbid")

    kind: AdapterKind = "none"
    rank: int = Field(default=4, ge=1)
    alpha: float = Field(default=8.0, gt=0.0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    targets: list[str] | None = None
    blocks: list[int] | None = None

    @property
    def scaling(self) -> float:
        """The LoRA scale ``alpha / rank``."""
        return self.alpha / self.rank

    @property
    def adapter_names(self) -> list[str]:
        """PEFT adapter names that this configuration injects."""
        return {"none": [], "lora": ["global"], "dual-lora": ["global", "local"]}[self.kind]


class HeadConfig(BaseModel):
    """Options of the task heads and their losses.

    Attributes:
        decoder_dim: Channels of the multi-scale decoder of dense heads.
        hidden_dim: Hidden width of the classification/regression MLP.
        dropout: Dropout before the classification/regression output layer.
        dice_weight: Weight of the Dice term of the segmentation loss.
        ce_weight: Weight of the cross-entropy term of the segmentation loss.
        regression_loss: ``l1``, ``mse`` or ``smooth_l1`` on the normalised target.
        landmark_sigma: Gaussian sigma of landmark heatmaps, in heatmap cells (1/4 pixel grid).
        det_l1_weight: Weight of the L1 box term (coordinates divided by the image size).
        det_giou_weight: Weight of the generalised-IoU box term.
        det_obj_weight: Weight of the objectness (focal) term.
        det_cls_weight: Weight of the box-class cross-entropy term.
        det_score_threshold: Minimum score (probability) of a decoded box.
        det_nms_iou: IoU above which a lower-scoring decoded box is suppressed.
        det_max_boxes: Maximum boxes decoded per image.
        volume_pool_dim: Hidden size of the attention pooling across slices (volumes).

    Example:
        >>> HeadConfig().regression_loss
        'l1'
    """

    model_config = ConfigDict(extra="forbid")

    decoder_dim: int = Field(default=64, ge=8)
    hidden_dim: int = Field(default=128, ge=8)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    dice_weight: float = Field(default=1.0, ge=0.0)
    ce_weight: float = Field(default=1.0, ge=0.0)
    regression_loss: Literal["l1", "mse", "smooth_l1"] = "l1"
    landmark_sigma: float = Field(default=1.5, gt=0.0)
    det_l1_weight: float = Field(default=5.0, ge=0.0)
    det_giou_weight: float = Field(default=2.0, ge=0.0)
    det_obj_weight: float = Field(default=1.0, ge=0.0)
    det_cls_weight: float = Field(default=1.0, ge=0.0)
    det_score_threshold: float = Field(default=0.05, ge=0.0, le=1.0)
    det_nms_iou: float = Field(default=0.5, gt=0.0, le=1.0)
    det_max_boxes: int = Field(default=20, ge=1)
    volume_pool_dim: int = Field(default=64, ge=4)


class ModelConfig(BaseModel):
    """Everything needed to rebuild a unified model (apart from the tasks).

    Attributes:
        backbone: Registry name (see ``medfleet.models.backbone_names()``).
        image_size: Nominal input side in pixels (inputs of other sizes also work).
        in_channels: Channels of the first convolution; ``None`` takes them from the tasks.
        moe: Mixture-of-Experts settings, or ``None`` for a dense model.
        adapter: LoRA / DualLoRA settings.
        freeze: Freezing policy (see :data:`FreezePolicy`).
        feature_blocks: Blocks (ViT: 1 to 4) or stages (CNN) whose outputs feed the dense
            heads, shallow to deep; ``None`` picks 4 evenly spaced ViT blocks ending at the
            last, or every stage of a CNN.
        weights: Local pretrained weights: a directory saved by transformers
            (``config.json`` + weights) or one file (``.safetensors``, ``.pt``, ``.pth``,
            ``.bin``).
        key_map: Name of a registered key mapping applied to a weights file
            (``medfleet.models.register_key_mapping``); ``None`` means transformers' names
            (common wrapper prefixes are stripped).
        allow_download: Allow fetching the registry's hub weights when ``weights`` is None.
        heads: Head and loss options.
        slices: Slices per volume of the model input for ``dim: 3`` tasks (the slice axis
            is resampled to this count; predictions are mapped back to the volume's grid).
        landmark_spaces: Landmark task -> name of a shared landmark space. Tasks of one space
            share one heatmap head whose channels are the union of their landmark names
            (first-seen order); each task is trained on its own points (the others are
            masked out of the loss) and decodes only its own points.

    Example:
        >>> ModelConfig().backbone
        'unet-small'
    """

    model_config = ConfigDict(extra="forbid")

    backbone: str = "unet-small"
    image_size: int = Field(default=128, ge=8)
    in_channels: int | None = Field(default=None, ge=1)
    moe: MoEConfig | None = None
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    freeze: FreezePolicy = "none"
    feature_blocks: list[int] | None = None
    weights: Path | None = None
    key_map: str | None = None
    allow_download: bool = False
    heads: HeadConfig = Field(default_factory=HeadConfig)
    slices: int = Field(default=16, ge=1)
    landmark_spaces: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.feature_blocks is not None and not self.feature_blocks:
            raise ValueError("feature_blocks is empty; give block indices or leave it out")
        if self.freeze in ("adapters", "adapters+moe") and self.adapter.kind == "none":
            raise ValueError(
                f"freeze={self.freeze!r} trains adapters but adapter.kind is 'none' "
                "(fix: set adapter.kind to 'lora' or 'dual-lora', or freeze='backbone')"
            )
        if self.freeze == "adapters+moe" and self.moe is None:
            raise ValueError(
                "freeze='adapters+moe' trains the MoE blocks but moe is not configured "
                "(fix: add a moe section or use freeze='adapters')"
            )
        return self

    def to_yaml(self) -> str:
        """Serialise to YAML text."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def to_json(self) -> str:
        """Serialise to JSON text."""
        return json.dumps(self.model_dump(mode="json"), indent=2)

    @classmethod
    def from_yaml(cls, text: str) -> ModelConfig:
        """Parse YAML (or JSON) text."""
        return cls.model_validate(yaml.safe_load(text) or {})

    def save(self, path: str | Path) -> Path:
        """Write the configuration atomically (``.json`` as JSON, otherwise YAML)."""
        path = Path(path)
        text = self.to_json() + "\n" if path.suffix == ".json" else self.to_yaml()
        return write_text_atomic(path, text)

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        """Read a configuration written by :meth:`save` (YAML or JSON).

        Raises:
            MedfleetError: When the file is missing or not a valid model configuration.
        """
        path = Path(path)
        if not path.is_file():
            raise MedfleetError(f"{path}: model configuration not found (fix: check the path)")
        try:
            return cls.from_yaml(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, ValueError) as exc:
            raise MedfleetError(f"{path}: not a valid model configuration: {exc}") from exc
