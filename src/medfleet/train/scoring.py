"""A trained model's classification head as a plain ``images -> probabilities`` function.

Drift monitoring and other consumers that know nothing of torch take any callable
``images (n, H, W) -> probabilities (n, C)``; :func:`classification_scorer` wraps a
trained model with exactly the preprocessing it was trained with (channels,
per-image normalisation, aspect-preserving resize and padding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import numpy as np
import torch

from medfleet.train.datasets import Normalisation, prepare_pixels
from medfleet.train.geometry import Geometry


def classification_scorer(
    model: torch.nn.Module,
    task: str,
    image_size: int,
    *,
    normalisation: str = "zscore",
    channels: int = 1,
    batch_size: int = 64,
) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap ``model``'s classification head for ``task`` as ``images -> probabilities``.

    Args:
        model: A trained unified model (``model(images, task)["logits"]``).
        task: A classification task the model serves.
        image_size: The model's input size.
        normalisation: The intensity normalisation used in training.
        channels: Input channels the model expects (grey images are repeated).
        batch_size: Images per forward pass.

    Returns:
        A function from an image stack ``(n, H, W)`` to class probabilities ``(n, C)``.

    Example:
        >>> from medfleet.models import ModelConfig, build_model
        >>> from medfleet.tasks import Manifest, Site, TaskSpec
        >>> m = Manifest(name="m", sites=[Site(name="a")], tasks=[TaskSpec(
        ...     name="c", type="classification", table="c.csv", classes=["x", "y"])])
        >>> model = build_model(m, ModelConfig(backbone="vit-tiny", image_size=32))
        >>> score = classification_scorer(model, "c", 32)
        >>> score(np.random.default_rng(0).random((3, 40, 40))).shape
        (3, 2)
    """
    if normalisation not in get_args(Normalisation):
        raise ValueError(f"unknown normalisation {normalisation!r}")

    def score(images: np.ndarray) -> np.ndarray:
        stack = np.asarray(images, dtype=np.float32)
        if stack.ndim != 3:
            raise ValueError(f"images must be a stack (n, H, W), got shape {stack.shape}")
        geometry = Geometry.fit(stack.shape[1:], image_size)
        was_training = model.training
        model.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(stack), batch_size):
                    chunk = stack[start : start + batch_size]
                    pixels = [np.repeat(img[None], channels, axis=0) for img in chunk]
                    batch = torch.stack(
                        [prepare_pixels(p, geometry, normalisation) for p in pixels]  # type: ignore[arg-type]
                    )
                    logits = model(batch, task)["logits"]
                    out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        finally:
            model.train(was_training)
        return np.concatenate(out, axis=0).astype(np.float64)

    return score
