"""Semi-supervised segmentation: mean teacher and FixMatch-style pseudo-labels.

Rows of a segmentation task whose ``mask`` cell is empty are unlabelled. With
``TrainConfig.semi_supervised`` set, every training batch of such a task is joined by
``round(unlabelled_ratio * batch_size)`` images drawn from the task's training images
(the unlabelled rows, plus the labelled ones' images when ``semi_include_labelled``), from
a generator seeded by the run seed and the step (so a resumed run draws the same images).
Two views of each image share one geometric transform (the ``augment`` level of the run,
so pseudo-labels stay aligned with the student's pixels):

* **weak view**: the geometric transform only; the targets are predicted on it without
  gradients, in eval mode (no dropout);
* **strong view**: the same geometry plus strong intensity jitter (brightness, contrast,
  gamma, noise); the student learns on it. (A cut-out rectangle, filled with the image
  mean, looked like a dark lesion inside a bright organ and taught the student to miss
  lesions, so it is not used.) With ``cutmix`` > 0, that share of the strong views gets a
  rectangle pasted from another image of the batch (CutMix, as in CutMix-Seg and UniMatch),
  and the targets get the same rectangle from that image's targets, so the pasted region
  stays labelled by its own image: a strong, label-preserving perturbation for dense tasks.
* **feature-perturbed view** (``feature_dropout`` > 0, UniMatch's FP branch): the weak view
  again, with channel dropout on the backbone maps entering the student's head; it learns
  the targets of the weak view, and the unlabelled loss becomes the mean of the two
  branches' losses.

Both methods keep a teacher, an exponential moving average (EMA) of the student over every
parameter and buffer, ``theta_t <- d * theta_t + (1 - d) * theta_s`` after every optimiser
step with ``d = min(ema_decay, (k + 1) / (k + 10))`` at step ``k``. By default
(``semi_final="teacher"``) the teacher is the model a run keeps: validation, ``model.safetensors``
and prediction use it, as in the mean-teacher and FixMatch papers.

Methods:
* ``mean-teacher``: the teacher predicts the weak view; the loss is the squared difference
  of the softmax maps, summed over classes and averaged over valid pixels.
* ``fixmatch``: the student itself (without gradients) labels the weak view; pixels whose
  top probability reaches ``confidence_threshold`` supervise the strong view by
  cross-entropy, averaged over all valid pixels (UniMatch/FixMatch style).

The unlabelled loss is weighted by ``consistency_weight * ramp(step)`` with the sigmoid
ramp-up ``exp(-5 (1 - t)^2)`` over the first ``consistency_rampup`` of the steps; the
labelled loss is unchanged. Padding added by resizing (and pixels moved in from outside)
is left out. Other task types ignore unlabelled rows. The teacher's weights are part of
the training checkpoint.

Example:
    >>> [round(rampup_weight(s, 10), 3) for s in (0, 5, 10)]
    [0.007, 0.287, 1.0]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfleet.tasks import Manifest, TaskType
from medfleet.train.augment import (
    PRESETS,
    STRONG,
    AugmentSettings,
    CutMix,
    cutmix_boxes,
    intensity_jitter,
    sample_affines,
    warp_images,
    warp_labels,
)
from medfleet.train.datasets import TaskDataset, collate, is_labelled

METHODS = ("mean-teacher", "fixmatch")


def rampup_weight(step: int, rampup_steps: float) -> float:
    """Sigmoid ramp-up ``exp(-5 (1 - t)^2)``, ``t = step / rampup_steps`` clipped to 1.

    Example:
        >>> rampup_weight(3, 0)
        1.0
    """
    if rampup_steps <= 0:
        return 1.0
    t = min(1.0, max(0.0, step / rampup_steps))
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def step_generator(seed: int, step: int, index: int = 0, rank: int = 0) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, step, index, rank)``.

    Example:
        >>> a = torch.rand(1, generator=step_generator(0, 5)).item()
        >>> a == torch.rand(1, generator=step_generator(0, 5)).item()
        True
    """
    mixed = np.random.SeedSequence([int(seed), int(step), int(index), int(rank)])
    return torch.Generator().manual_seed(int(mixed.generate_state(1, dtype=np.uint64)[0] >> 1))


def unlabelled_dataset(
    manifest: Manifest, task: str, image_size: int, include_labelled: bool = False, **kwargs: Any
) -> TaskDataset | None:
    """The unlabelled training rows of a segmentation task, or ``None`` when it has none.

    With ``include_labelled`` the labelled training rows join them (their images only), as
    long as the task has at least one unlabelled row.

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["organ_lesion_seg"]),
        ...                          sites=1, cases_per_site=3, size=32)
        >>> unlabelled_dataset(Manifest.load(path), "organ_lesion_seg", 32) is None
        True
    """
    spec = manifest.task(task)
    if spec.type is not TaskType.segmentation or spec.dim != 2:
        return None
    ds = TaskDataset(manifest, spec, ("train",), image_size, labelled_only=False, **kwargs)
    if all(is_labelled(spec, r) for r in ds.rows):
        return None
    if not include_labelled:
        ds.rows = [r for r in ds.rows if not is_labelled(spec, r)]
    return ds


def drop_labels(
    manifest: Manifest, task: str, keep_fraction: float, seed: int = 0, split: str = "train"
) -> dict[str, int]:
    """Empty the target cell of all but ``keep_fraction`` of a split's rows, in place.

    The task's table is rewritten atomically (the other splits and columns are kept);
    at least one row keeps its label. Use it on a copy of a data set to simulate scarce
    labels.

    Returns:
        ``{"labelled": n, "unlabelled": m}`` of the split afterwards.

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> path = generate_phantoms(tempfile.mkdtemp(), PhantomConfig(tasks=["organ_lesion_seg"]),
        ...                          sites=1, cases_per_site=12, size=32)
        >>> m = Manifest.load(path)
        >>> counts = drop_labels(m, "organ_lesion_seg", 0.1)
        >>> counts["labelled"], counts["labelled"] + counts["unlabelled"] > 1
        (1, True)
    """
    from medfleet.tables import read_table, write_table
    from medfleet.train.datasets import target_column

    spec = manifest.task(task)
    path = manifest.table_path(spec)
    rows = read_table(path)
    column = target_column(spec)
    chosen = [i for i, r in enumerate(rows) if r.get("split") == split and is_labelled(spec, r)]
    keep = max(1, round(keep_fraction * len(chosen)))
    rng = np.random.default_rng(seed)
    kept = set(rng.permutation(chosen)[:keep].tolist()) if chosen else set()
    for i in chosen:
        if i not in kept:
            rows[i][column] = ""
    columns = list(rows[0]) if rows else None
    write_table(path, rows, columns=columns)
    return {"labelled": len(kept), "unlabelled": len(chosen) - len(kept)}


@dataclass(frozen=True)
class UnlabelledViews:
    """The views of one unlabelled batch.

    Attributes:
        weak: ``(B, C, S, S)`` images the targets are predicted on.
        strong: ``(B, C, S, S)`` images the student learns on.
        valid: ``(B, S, S)`` strong-view pixels that count (0) or are left out (-1).
        weak_valid: The same for the weak view.
        warp: The strong view's own geometric transforms (``strong_geometric``), or ``None``.
        mix: The CutMix rectangles applied to the strong view (``cutmix``), or ``None``.
    """

    weak: torch.Tensor
    strong: torch.Tensor
    valid: torch.Tensor
    weak_valid: torch.Tensor
    warp: list[Any] | None = None
    mix: CutMix | None = None

    def to_strong(self, probs: torch.Tensor) -> torch.Tensor:
        """Move weak-view probabilities ``(B, K, S, S)`` onto the strong view's pixels.

        The strong view's own warp moves them (bilinear, renormalised: border pixels mix
        in the zero padding), then its CutMix rectangles mix them.
        """
        if self.warp is not None:
            moved = warp_images(probs, self.warp)
            probs = moved / moved.sum(dim=1, keepdim=True).clamp_min(1e-6)
        if self.mix is not None:
            probs = self.mix.apply(probs)
        return probs


def valid_region(samples: list[Any], size: int) -> torch.Tensor:
    """``(B, S, S)`` label map: 0 inside each image's resized area, ``-1`` on the padding."""
    out = torch.full((len(samples), size, size), -1, dtype=torch.long)
    for i, s in enumerate(samples):
        h, w = s.geometry.resized
        out[i, :h, :w] = 0
    return out


def class_balanced_mean(
    values: torch.Tensor, classes: torch.Tensor, weight: torch.Tensor, n_classes: int
) -> torch.Tensor:
    """Per-class mean of ``values`` (pixels weighted by ``weight``), then mean over classes.

    Only classes that occur count, so a small class weighs as much as the background.

    Example:
        >>> v = torch.tensor([1.0, 1.0, 1.0, 4.0])
        >>> c = torch.tensor([0, 0, 0, 1])
        >>> class_balanced_mean(v, c, torch.ones(4), 2).item()  # (1 + 4) / 2
        2.5
    """
    v, c, w = values.reshape(-1), classes.reshape(-1), weight.reshape(-1)
    total = torch.zeros(n_classes, dtype=v.dtype, device=v.device).index_add_(0, c, v * w)
    count = torch.zeros(n_classes, dtype=v.dtype, device=v.device).index_add_(0, c, w)
    present = count > 0
    if not bool(present.any()):
        return (v * w).sum()  # zero, with a graph
    return (total[present] / count[present]).mean()


def consistency_loss(
    logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    valid: torch.Tensor,
    class_balanced: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean-teacher loss: squared softmax difference, summed over classes, mean over valid pixels.

    Args:
        logits: Student logits ``(B, K, H, W)``.
        teacher_probs: Teacher probabilities ``(B, K, H, W)``.
        valid: ``(B, H, W)``, ``-1`` where pixels are left out.
        class_balanced: Average per class of the teacher's argmax, then over classes.

    Example:
        >>> logits = torch.zeros(1, 2, 1, 2)             # student: 0.5 / 0.5
        >>> probs = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
        >>> consistency_loss(logits, probs, torch.tensor([[[0, 0]]]))[0].item()
        0.25
    """
    mask = (valid >= 0).to(torch.float32)
    diff = ((logits.float().softmax(dim=1) - teacher_probs) ** 2).sum(dim=1)
    if class_balanced:
        k = teacher_probs.shape[1]
        loss = class_balanced_mean(diff, teacher_probs.argmax(dim=1), mask, k)
    else:
        loss = (diff * mask).sum() / mask.sum().clamp_min(1.0)
    return loss, {"consistency": float(loss.detach())}


def pseudo_label_loss(
    logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    valid: torch.Tensor,
    threshold: float,
    class_balanced: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """FixMatch loss: cross-entropy to confident argmax pseudo-labels, mean over valid pixels.

    Example:
        >>> logits = torch.zeros(1, 2, 1, 2)
        >>> probs = torch.tensor([[[[0.95, 0.6]], [[0.05, 0.4]]]])
        >>> loss, parts = pseudo_label_loss(logits, probs, torch.tensor([[[0, 0]]]), 0.9)
        >>> round(loss.item(), 4), parts["confident_share"]    # log(2) / 2
        (0.3466, 0.5)
    """
    mask = (valid >= 0).to(torch.float32)
    n_valid = mask.sum().clamp_min(1.0)
    confidence, pseudo = teacher_probs.max(dim=1)
    keep = (confidence >= threshold).to(torch.float32) * mask
    ce = F.cross_entropy(logits.float(), pseudo, reduction="none")
    if class_balanced:  # per pseudo-class mean over confident pixels, times their share
        share = keep.sum() / n_valid
        loss = class_balanced_mean(ce, pseudo, keep, teacher_probs.shape[1]) * share
    else:
        loss = (ce * keep).sum() / n_valid
    return loss, {
        "pseudo_label": float(loss.detach()),
        "confident_share": float(keep.sum() / n_valid),
    }


class SemiSupervision:
    """The unlabelled part of a training step (built by the trainer).

    Args:
        model: The student (the unwrapped model).
        manifest: The manifest.
        tasks: Tasks being trained.
        config: The :class:`~medfleet.train.config.TrainConfig` (``semi_supervised`` set).
        image_size: Model input size.
        geometric: Geometric augmentation shared by both views.
        total_steps: Planned optimiser steps (for the ramp-up).
        dataset_options: Keyword arguments of :class:`TaskDataset` (normalisation, cache...).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        manifest: Manifest,
        tasks: list[str],
        config: Any,
        image_size: int,
        geometric: AugmentSettings,
        total_steps: int,
        dataset_options: dict[str, Any],
    ) -> None:
        if config.semi_supervised not in METHODS:
            raise ValueError(f"semi_supervised must be one of {METHODS}")
        self.method = config.semi_supervised
        self.config = config
        self.image_size = image_size
        self.geometric = AugmentSettings(
            flip=geometric.flip, scale=geometric.scale, translate=geometric.translate
        )
        self.total_steps = total_steps
        k = float(config.strong_scale)
        self.strong = AugmentSettings(
            brightness=k * STRONG.brightness,
            contrast=k * STRONG.contrast,
            gamma=k * STRONG.gamma,
            noise=k * STRONG.noise,
        )
        self.datasets: dict[str, TaskDataset] = {}
        for task in tasks:
            ds = unlabelled_dataset(
                manifest, task, image_size, config.semi_include_labelled, **dataset_options
            )
            if ds is not None:
                self.datasets[task] = ds
        self.teacher = copy.deepcopy(model)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()

    @property
    def tasks(self) -> list[str]:
        """Tasks with unlabelled rows."""
        return list(self.datasets)

    def check(self) -> None:
        """Read every unlabelled sample once (errors before training starts)."""
        for ds in self.datasets.values():
            ds.check()

    def weight(self, step: int) -> float:
        """Unlabelled-loss weight at optimiser step ``step`` (0-based)."""
        ramp = rampup_weight(step, self.config.consistency_rampup * self.total_steps)
        return self.config.consistency_weight * ramp

    def views(self, task: str, batch_size: int, generator: torch.Generator) -> UnlabelledViews:
        """Draw unlabelled images of ``task`` and make their weak and strong views."""
        ds = self.datasets[task]
        n = max(1, round(self.config.unlabelled_ratio * batch_size))
        order = torch.randperm(len(ds), generator=generator).tolist()
        picks = [order[i % len(order)] for i in range(n)]
        samples = [ds[j] for j in picks]
        images = collate(ds.spec, samples).images
        valid = valid_region(samples, images.shape[-1])
        affines = sample_affines(n, images.shape[-1], self.geometric, generator)
        weak = warp_images(images, affines)
        valid = weak_valid = warp_labels(valid, affines)
        extra = None
        strong = weak
        if self.config.strong_geometric:
            extra = sample_affines(n, images.shape[-1], PRESETS["standard"], generator)
            strong = warp_images(weak, extra)
            valid = warp_labels(valid, extra)
        strong = intensity_jitter(strong, self.strong, generator)
        mix = cutmix_boxes(n, images.shape[-1], self.config.cutmix, generator)
        if mix is not None:
            strong, valid = mix.apply(strong), mix.apply(valid)
        return UnlabelledViews(weak, strong, valid, weak_valid, extra, mix)

    @torch.no_grad()
    def weak_targets(
        self, task: str, views: UnlabelledViews, student: torch.nn.Module
    ) -> torch.Tensor:
        """Targets ``(B, K, S, S)`` on the weak view's pixels.

        The EMA teacher (mean teacher) or the student (FixMatch) predicts the weak view in
        eval mode.
        """
        teacher = self.teacher if self.method == "mean-teacher" else student
        was_training = teacher.training
        teacher.eval()
        device = next(teacher.parameters()).device
        try:
            logits = teacher(views.weak.to(device), task)["logits"].float()
        finally:
            teacher.train(was_training)
        return logits.softmax(dim=1)

    def targets(self, task: str, views: UnlabelledViews, student: torch.nn.Module) -> torch.Tensor:
        """Targets ``(B, K, S, S)`` on the strong view's pixels.

        :meth:`weak_targets`, moved by :meth:`UnlabelledViews.to_strong`.
        """
        return views.to_strong(self.weak_targets(task, views, student))

    def unlabelled_loss(
        self,
        task: str,
        views: UnlabelledViews,
        student: torch.nn.Module,
        forward: Callable[[torch.Tensor, float, int | None], Any],
    ) -> tuple[torch.Tensor, Any]:
        """Unweighted unlabelled loss and the student's output on ``labelled + unlabelled``.

        Args:
            task: The task.
            views: The unlabelled views (:meth:`views`).
            student: The unwrapped student (FixMatch's labeller).
            forward: ``forward(images, feature_dropout, dropout_last)`` runs the (possibly
                DDP-wrapped) student on the labelled images followed by ``images``.

        Returns:
            ``(loss, out)``: ``out`` holds the labelled images' outputs first.
        """
        weak_probs = self.weak_targets(task, views, student)
        p = float(self.config.feature_dropout)
        n = views.strong.shape[0]
        targets = views.to_strong(weak_probs)
        if p <= 0:
            out = forward(views.strong, 0.0, None)
            logits = out["logits"]
            return self.loss(logits[-n:], targets, views.valid.to(logits.device))[0], out
        out = forward(torch.cat([views.strong, views.weak]), p, n)
        logits = out["logits"]
        strong, _ = self.loss(logits[-2 * n : -n], targets, views.valid.to(logits.device))
        perturbed, _ = self.loss(logits[-n:], weak_probs, views.weak_valid.to(logits.device))
        return 0.5 * (strong + perturbed), out

    def loss(
        self, logits: torch.Tensor, teacher_probs: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Unweighted unlabelled loss of the student's strong-view logits."""
        balanced = self.config.semi_class_balanced
        if self.method == "mean-teacher":
            return consistency_loss(logits, teacher_probs, valid, balanced)
        threshold = self.config.confidence_threshold
        return pseudo_label_loss(logits, teacher_probs, valid, threshold, balanced)

    @torch.no_grad()
    def update_teacher(self, student: torch.nn.Module, step: int) -> None:
        """EMA update of the teacher (every parameter and buffer) after optimiser step ``step``."""
        decay = min(self.config.ema_decay, (step + 1) / (step + 10))
        t_state = self.teacher.state_dict()
        for name, value in student.state_dict().items():
            target = t_state[name]
            if torch.is_floating_point(target):
                target.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                target.copy_(value)

    def final_model(self, student: torch.nn.Module) -> torch.nn.Module:
        """The model a run keeps: the EMA teacher or the student (``config.semi_final``)."""
        return self.teacher if self.config.semi_final == "teacher" else student

    def state_dict(self) -> dict[str, Any]:
        """The teacher's weights and which model is final."""
        return {
            "method": self.method,
            "final": self.config.semi_final,
            "teacher": self.teacher.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if state.get("teacher") is not None:
            self.teacher.load_state_dict(state["teacher"])


__all__ = [
    "METHODS",
    "SemiSupervision",
    "UnlabelledViews",
    "class_balanced_mean",
    "consistency_loss",
    "drop_labels",
    "pseudo_label_loss",
    "rampup_weight",
    "step_generator",
    "unlabelled_dataset",
    "valid_region",
]
