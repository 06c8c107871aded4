"""The unified multi-task model: one backbone, optional MoE and adapters, one head per task.

Example:
    >>> from medfleet.tasks import Manifest, Site, TaskSpec
    >>> m = Manifest(name="doc", sites=[Site(name="a")], tasks=[
    ...     TaskSpec(name="cls", type="classification", table="c.csv", classes=["a", "b"])])
    >>> model = build_model(m, ModelConfig(image_size=32))
    >>> out = model(torch.zeros(2, 1, 32, 32), "cls")
    >>> tuple(out["logits"].shape)
    (2, 2)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medfleet.errors import MedfleetError
from medfleet.models import adapters as adapter_ops
from medfleet.models.backbones import (
    Backbone,
    BackboneFeatures,
    FeatureLayout,
    normalise_block_indices,
)
from medfleet.models.config import FreezePolicy, ModelConfig
from medfleet.models.heads import (
    ClassificationHead,
    DetectionHead,
    RegressionHead,
    SegmentationHead,
    TaskHead,
    TaskOutput,
    build_head,
)
from medfleet.models.heads.landmarks import LandmarkHead, LandmarkSpaceView, space_spec
from medfleet.models.moe import MoEMLP, TaskRouter
from medfleet.models.volumes import VolumeHead, flatten_volumes
from medfleet.models.weights import KeyMapping, load_backbone
from medfleet.tasks import Manifest, TaskSpec, TaskType

GROUPS: tuple[str, ...] = ("backbone", "heads", "moe", "adapters")
"""Parameter groups reported by ``parameter_groups`` and ``count_parameters``."""


def head_key(task: str) -> str:
    """Module key of a task's head (task names may contain dots, module keys may not).

    Example:
        >>> head_key("fetal.hc")
        'fetal__hc'
    """
    return task.replace(".", "__")


def space_key(space: str) -> str:
    """Module key of a shared landmark space's head.

    Example:
        >>> space_key("ceph.v1")
        'landmark_space__ceph__v1'
    """
    return "landmark_space__" + head_key(space)


def landmark_space_heads(
    specs: list[TaskSpec], config: ModelConfig, layout: FeatureLayout
) -> dict[str, LandmarkHead]:
    """One :class:`LandmarkHead` per shared landmark space of ``config.landmark_spaces``.

    Only the landmark tasks among ``specs`` count; a space's channels are the union of
    their landmark names.

    Raises:
        MedfleetError: A space given to a task that is not a landmark task, or a space
            whose key collides with a task's head.

    Example:
        >>> a = TaskSpec(name="a", type="landmarks", table="a.csv", landmarks=["p", "q"])
        >>> b = TaskSpec(name="b", type="landmarks", table="b.csv", landmarks=["q", "r"])
        >>> cfg = ModelConfig(landmark_spaces={"a": "s", "b": "s"})
        >>> landmark_space_heads([a, b], cfg, FeatureLayout((16,), (8,), 16))["s"].names
        ['p', 'q', 'r']
    """
    members: dict[str, list[TaskSpec]] = {}
    for spec in specs:
        space = config.landmark_spaces.get(spec.name)
        if space is None:
            continue
        if spec.type is not TaskType.landmarks:
            raise MedfleetError(
                f"landmark_spaces maps task {spec.name!r} to space {space!r} but it is a "
                f"{spec.type.value} task (fix: list landmark tasks only)"
            )
        members.setdefault(space, []).append(spec)
    keys = {head_key(s.name) for s in specs}
    out = {}
    for space, group in members.items():
        if space_key(space) in keys:
            raise MedfleetError(
                f"landmark space {space!r} collides with a task's head name (fix: rename the space)"
            )
        out[space] = LandmarkHead(space_spec(space, group), layout, config.heads)
    return out


def task_fingerprint(spec: TaskSpec) -> dict[str, Any]:
    """The parts of a task specification that shape its head.

    Example:
        >>> spec = TaskSpec(name="c", type="classification", table="c.csv", classes=["a", "b"])
        >>> task_fingerprint(spec)["classes"]
        ['a', 'b']
    """
    return {
        "name": spec.name,
        "type": spec.type.value,
        "dim": spec.dim,
        "channels": spec.channels,
        "labels": {str(k): v for k, v in sorted((spec.labels or {}).items())},
        "classes": list(spec.classes or []),
        "landmarks": list(spec.landmarks or []),
        "unit": spec.unit,
    }


def drop_feature_channels(
    features: BackboneFeatures, p: float, last: int | None = None
) -> BackboneFeatures:
    """Channel dropout (``p``) on the block maps of the last ``last`` images (all: ``None``).

    Example:
        >>> maps = [torch.ones(3, 8, 2, 2)]
        >>> f = BackboneFeatures(maps, torch.ones(3, 8), torch.ones(3, 4, 8), (2, 2), 4,
        ...                      (8, 8), torch.ones(3, 1, 8, 8))
        >>> out = drop_feature_channels(f, 0.5, last=1).maps[0]
        >>> bool((out[:2] == 1).all()), sorted(set(out[2].flatten().tolist())) <= [0.0, 2.0]
        (True, True)
    """
    n = features.maps[0].shape[0]
    start = 0 if last is None else max(0, n - int(last))
    maps = []
    for m in features.maps:
        dropped = F.dropout2d(m[start:], p, training=True)
        maps.append(dropped if start == 0 else torch.cat([m[:start], dropped]))
    return dataclasses.replace(features, maps=maps)


class UnifiedModel(nn.Module):
    """A shared backbone with one head per task (build it with :func:`build_model`).

    Attributes:
        config: The model configuration.
        specs: Task specifications by name, in head order.
        backbone: The ViT or CNN (its MoE blocks and adapters live inside it).
        router: Task embeddings and MoE blocks, or ``None`` for a dense model.
        heads: One head per task.
        manifest_name: Name of the manifest the model was built for.
    """

    def __init__(
        self,
        config: ModelConfig,
        specs: list[TaskSpec],
        backbone: Backbone,
        router: TaskRouter | None,
        manifest_name: str = "",
    ) -> None:
        super().__init__()
        self.config = config
        self.specs: dict[str, TaskSpec] = {s.name: s for s in specs}
        self.manifest_name = manifest_name
        self.backbone = backbone
        self.router = router
        options = config.heads
        heads: dict[str, nn.Module] = {}
        layout = backbone.layout
        shared = landmark_space_heads(specs, config, layout)
        for spec in specs:
            space = config.landmark_spaces.get(spec.name)
            if spec.type is TaskType.landmarks and space is not None:
                heads[space_key(space)] = shared[space]
                heads[head_key(spec.name)] = LandmarkSpaceView(spec, shared[space])
                continue
            head = build_head(spec, layout, options, backbone.in_channels)
            heads[head_key(spec.name)] = VolumeHead(head, options) if spec.dim == 3 else head
        self.heads = nn.ModuleDict(heads)
        n_blocks = len(router.blocks) if router is not None else 0
        n_experts = config.moe.num_experts if config.moe is not None else 0
        self.register_buffer(
            "expert_counts",
            torch.zeros(len(specs), n_blocks, n_experts, dtype=torch.float64),
            persistent=True,
        )
        self._last_aux: torch.Tensor | None = None
        self.checkpoint_extra: dict[str, Any] = {}

    # ------------------------------------------------------------------ tasks
    @property
    def tasks(self) -> list[str]:
        """Task names in head order."""
        return list(self.specs)

    def task_spec(self, task: str) -> TaskSpec:
        """The specification of ``task``.

        Raises:
            MedfleetError: Naming the model's tasks when ``task`` has no head.
        """
        try:
            return self.specs[task]
        except KeyError:
            raise MedfleetError(
                f"the model has no head for task {task!r}; its tasks: {self.tasks} "
                "(fix: build the model with this task or pick one of these)"
            ) from None

    def head(self, task: str) -> TaskHead:
        """The (2D) head of ``task`` (the inner head for volume tasks)."""
        self.task_spec(task)
        module = self.heads[head_key(task)]
        return module.inner if isinstance(module, VolumeHead) else module  # type: ignore[return-value]

    def task_fingerprints(self) -> dict[str, dict[str, Any]]:
        """Head-shaping parts of each task's specification."""
        return {name: task_fingerprint(spec) for name, spec in self.specs.items()}

    def check_manifest(self, manifest: Manifest) -> None:
        """Check that ``manifest`` declares this model's tasks with the same heads.

        Raises:
            MedfleetError: Naming each missing or mismatching task and what differs.
        """
        problems = []
        for name, fp in self.task_fingerprints().items():
            try:
                other = task_fingerprint(manifest.task(name))
            except KeyError:
                problems.append(f"task {name!r} is not in manifest {manifest.name!r}")
                continue
            diffs = [k for k in fp if fp[k] != other[k]]
            if diffs:
                detail = "; ".join(f"{k}: model {fp[k]!r} vs manifest {other[k]!r}" for k in diffs)
                problems.append(f"task {name!r} differs ({detail})")
        if problems:
            raise MedfleetError(
                f"checkpoint (built for manifest {self.manifest_name!r}) does not fit manifest "
                f"{manifest.name!r}:\n  - "
                + "\n  - ".join(problems)
                + "\n  fix: use the manifest the model was trained on, or train a new model"
            )

    # ---------------------------------------------------------------- forward
    def _check_images(self, spec: TaskSpec, images: torch.Tensor) -> None:
        channels = images.shape[1]
        if channels not in (spec.channels, self.backbone.in_channels):
            raise MedfleetError(
                f"task {spec.name!r} declares {spec.channels} channel(s) but its images have "
                f"{channels} (fix: give every image of this task {spec.channels} channel(s) "
                "or correct 'channels' in the manifest)"
            )
        if not torch.is_floating_point(images):
            raise MedfleetError(
                f"task {spec.name!r}: images must be a normalised float tensor, got {images.dtype}"
            )

    def forward(
        self,
        images: torch.Tensor,
        task: str,
        feature_dropout: float = 0.0,
        dropout_last: int | None = None,
    ) -> TaskOutput:
        """Run the backbone and the head of ``task``.

        Args:
            images: ``(B, C, H, W)`` normalised images, or ``(B, S, C, H, W)`` for 3D tasks.
            task: The task whose head to run (and whose embedding conditions the MoE).
            feature_dropout: Channel dropout on the block maps handed to the head, applied
                even in eval mode (the feature perturbation of UniMatch); 0: none.
            dropout_last: Only the last ``dropout_last`` images of the batch get the
                feature dropout (``None``: all of them).

        Returns:
            The head's outputs (see the module documentation of each head).
        """
        spec = self.task_spec(task)
        module = self.heads[head_key(task)]
        if spec.dim == 3:
            flat, batch, slices = flatten_volumes(images)
        else:
            if images.ndim != 4:
                raise MedfleetError(
                    f"task {task!r}: images must be (batch, channels, height, width); got shape "
                    f"{tuple(images.shape)}"
                    + (
                        " (a 3D task in a 2D manifest entry? set dim: 3)"
                        if images.ndim == 5
                        else ""
                    )
                )
            flat, batch, slices = images, images.shape[0], 1
        self._check_images(spec, flat)
        if self.router is not None:
            self.router.set_task(task)
        features = self.backbone(flat)
        if feature_dropout > 0:
            features = drop_feature_channels(features, feature_dropout, dropout_last)
        if isinstance(module, VolumeHead):
            out = module(features, batch, slices)
        else:
            out = module(features)
        if not isinstance(out, TaskOutput):
            out = TaskOutput(out)
        out.meta.setdefault("task", task)
        self._record_routing(task)
        return out

    def _record_routing(self, task: str) -> None:
        if self.router is None:
            self._last_aux = None
            return
        self._last_aux = self.router.aux_loss()
        counts = self.router.last_counts()
        if counts is not None:
            with torch.no_grad():
                self.expert_counts[self.tasks.index(task)] += counts.to(self.expert_counts)

    # ------------------------------------------------------------ loss/decode
    def loss(
        self, task: str, out: dict[str, torch.Tensor], targets: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The task's loss and its components (the MoE balance loss is separate: ``aux_loss``).

        Targets: segmentation ``LongTensor[B, H, W]`` class indices (``-1`` unlabelled, see
        :meth:`encode_mask`); classification ``LongTensor[B]``; detection a list of
        ``{"boxes": FloatTensor[n, 4], "labels": LongTensor[n]}``; regression
        ``FloatTensor[B]`` in the task's unit; landmarks ``FloatTensor[B, L, 2]`` pixel
        ``x, y`` with NaN for missing points.
        """
        return self.head(task).loss(out, targets)

    def decode(self, task: str, out: dict[str, torch.Tensor]) -> list[Any]:
        """Per-sample numpy predictions (see each head's ``decode``)."""
        return self.head(task).decode(out)

    def aux_loss(self) -> torch.Tensor:
        """MoE load-balancing loss of the last forward, times ``moe.aux_loss_weight``.

        Add it to the task loss; it is 0 for a dense model.
        """
        if self._last_aux is None or self.config.moe is None:
            return self.expert_counts.new_zeros((), dtype=torch.float32)
        return self._last_aux * self.config.moe.aux_loss_weight

    # ------------------------------------------------------------ task state
    def encode_mask(
        self, task: str, mask: np.ndarray, ignore_value: int | None = None
    ) -> np.ndarray:
        """Map a mask of label values to class indices (``ignore_value`` -> -1)."""
        head = self.head(task)
        if not isinstance(head, SegmentationHead):
            raise MedfleetError(f"task {task!r} is not a segmentation task")
        return head.encode_mask(mask, ignore_value)

    def encode_label(self, task: str, label: str | None) -> int:
        """Index of a class name (classification) or box class name (detection)."""
        head = self.head(task)
        if not isinstance(head, (ClassificationHead, DetectionHead)):
            raise MedfleetError(f"task {task!r} has no classes")
        return head.encode_label(label)  # type: ignore[arg-type]

    def set_target_stats(self, task: str, mean: float, std: float) -> None:
        """Normalisation of a regression task's target (stored with the model)."""
        head = self.head(task)
        if not isinstance(head, RegressionHead):
            raise MedfleetError(f"task {task!r} is not a regression task")
        head.set_target_stats(mean, std)

    def set_class_weights(self, task: str, weights: Any) -> None:
        """Cross-entropy class weights of a classification or segmentation task."""
        head = self.head(task)
        if not isinstance(head, (ClassificationHead, SegmentationHead)):
            raise MedfleetError(f"task {task!r} has no class weights")
        head.set_class_weights(weights)

    # ------------------------------------------------------------------ MoE
    def expert_usage(self) -> dict[str, np.ndarray]:
        """Routing slots per task as ``(n_moe_blocks, E)`` counts (normalise rows for shares)."""
        counts = self.expert_counts.detach().cpu().numpy()
        return {task: counts[i].copy() for i, task in enumerate(self.tasks)}

    def reset_expert_usage(self) -> None:
        """Zero the accumulated routing statistics."""
        self.expert_counts.zero_()

    @property
    def moe_blocks(self) -> list[int]:
        """Indices of the blocks with experts."""
        return list(self.router.block_indices) if self.router is not None else []

    # -------------------------------------------------------------- adapters
    def global_adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of the global LoRA adapter only (what federated rounds exchange)."""
        return adapter_ops.global_adapter_state_dict(self.backbone)

    def load_global_adapter_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Replace the global LoRA adapter's weights."""
        adapter_ops.load_global_adapter_state_dict(self.backbone, state_dict)

    # ------------------------------------------------------------ parameters
    def parameter_group_names(self) -> dict[str, str]:
        """Parameter name -> group (``backbone``, ``heads``, ``moe``, ``adapters``)."""
        moe_ids: set[int] = set()
        for module in self.modules():
            if isinstance(module, (MoEMLP, TaskRouter)):
                moe_ids.update(id(p) for p in module.parameters())
        groups = {}
        for name, param in self.named_parameters():
            if adapter_ops.is_adapter_parameter(name):
                groups[name] = "adapters"
            elif name.startswith("heads."):
                groups[name] = "heads"
            elif id(param) in moe_ids:
                groups[name] = "moe"
            else:
                groups[name] = "backbone"
        return groups

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group (e.g. for per-group learning rates)."""
        groups: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
        named = dict(self.named_parameters())
        for name, group in self.parameter_group_names().items():
            if named[name].requires_grad:
                groups[group].append(named[name])
        return groups

    def count_parameters(self) -> dict[str, int]:
        """Parameter counts: ``total``, ``trainable`` and per group (all parameters)."""
        named = dict(self.named_parameters())
        counts = {"total": 0, "trainable": 0, **{g: 0 for g in GROUPS}}
        for name, group in self.parameter_group_names().items():
            n = named[name].numel()
            counts["total"] += n
            counts[group] += n
            if named[name].requires_grad:
                counts["trainable"] += n
        return counts

    def apply_freeze_policy(self, policy: FreezePolicy | None = None) -> None:
        """Set which parameters train (default: the configured policy)."""
        policy = policy or self.config.freeze
        if policy in ("adapters", "adapters+moe") and self.config.adapter.kind == "none":
            raise MedfleetError(f"freeze={policy!r} needs adapters but the model has none")
        adapter_ops.apply_freeze_policy(
            self.named_parameters(), policy, self.parameter_group_names()
        )

    # ----------------------------------------------------------- persistence
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Save atomically (configuration, task specs and fingerprints, weights, usage)."""
        from medfleet.models.checkpoint import save_model

        return save_model(self, path, extra=extra)


def _infer_channels(specs: list[TaskSpec]) -> int:
    counts = sorted({s.channels for s in specs})
    if len(counts) == 1:
        return counts[0]
    if len(counts) == 2 and counts[0] == 1:
        return counts[1]
    by_count = {c: [s.name for s in specs if s.channels == c] for c in counts}
    raise MedfleetError(
        f"tasks have mixed channel counts {by_count}; one backbone takes one count "
        "(grey images are repeated to it) (fix: set ModelConfig.in_channels, train these tasks "
        "in separate models, or convert the images)"
    )


def build_model(
    manifest: Manifest,
    config: ModelConfig,
    tasks: list[str] | None = None,
    key_map: KeyMapping | None = None,
    backbone_config: dict[str, Any] | None = None,
) -> UnifiedModel:
    """Build the unified model for (some of) a manifest's tasks.

    Args:
        manifest: The manifest whose task specifications shape the heads.
        config: Model configuration.
        tasks: Task names (default: all tasks of the manifest, in manifest order).
        key_map: A key-mapping function for a weights file (overrides ``config.key_map``).
        backbone_config: A stored transformers configuration of the backbone (used when
            rebuilding a checkpoint; the weights are then random until loaded).

    Raises:
        MedfleetError: For unknown tasks, unsupported 3D task types, mixed channel
            counts, missing or mismatching weights, bad block indices.
    """
    names = list(tasks) if tasks is not None else [t.name for t in manifest.tasks]
    if not names:
        raise MedfleetError("no tasks given (fix: name at least one task of the manifest)")
    specs = []
    for name in names:
        try:
            specs.append(manifest.task(name))
        except KeyError as exc:
            raise MedfleetError(str(exc.args[0])) from None
    for spec in specs:
        if spec.dim == 3 and spec.type in (TaskType.detection, TaskType.landmarks):
            raise MedfleetError(
                f"task {spec.name!r}: 3D {spec.type.value} is not supported "
                "(fix: use dim: 2 with one row per slice)"
            )
    in_channels = config.in_channels or _infer_channels(specs)
    if config.in_channels is not None:
        bad = {s.name: s.channels for s in specs if s.channels not in (1, config.in_channels)}
        if bad:
            raise MedfleetError(
                f"tasks {bad} have channel counts that in_channels={config.in_channels} cannot "
                "take (only equal counts or grey images fit) (fix: change in_channels)"
            )
    backbone = load_backbone(
        config.backbone,
        in_channels,
        config.image_size,
        config.feature_blocks,
        weights=config.weights,
        allow_download=config.allow_download,
        key_map=key_map if key_map is not None else config.key_map,
        hf_config=backbone_config,
    )
    if config.image_size < backbone.min_input_size:
        raise MedfleetError(
            f"image_size {config.image_size} is too small for backbone {config.backbone!r}: "
            f"it needs inputs of at least {backbone.min_input_size} pixels (fix: raise "
            "image_size or pick a backbone with fewer stages)"
        )
    router = None
    if config.moe is not None:
        blocks = normalise_block_indices(config.moe.blocks, backbone.num_blocks, "moe.blocks")
        router = TaskRouter(names, config.moe)
        backbone.attach_moe(router, blocks)
    adapter_ops.inject_adapters(backbone, config.adapter)
    model = UnifiedModel(config, specs, backbone, router, manifest_name=manifest.name)
    model.apply_freeze_policy()
    return model
