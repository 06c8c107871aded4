"""Plot of the per-task expert usage of a MoE model (matplotlib, written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.utils.atomic import atomic_path


def usage_shares(usage: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn routing counts ``(blocks, E)`` into per-block shares (rows sum to 1; 0 if unused).

    Example:
        >>> usage_shares({"t": np.array([[1.0, 3.0], [0.0, 0.0]])})["t"].tolist()
        [[0.25, 0.75], [0.0, 0.0]]
    """
    shares = {}
    for task, counts in usage.items():
        counts = np.asarray(counts, dtype=np.float64)
        totals = counts.sum(axis=-1, keepdims=True)
        shares[task] = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return shares


def plot_expert_usage(
    usage: dict[str, np.ndarray], path: str | Path, blocks: list[int] | None = None
) -> Path:
    """Heatmaps of expert shares per task (one panel per MoE block), saved as an image.

    Args:
        usage: ``model.expert_usage()``.
        path: Output file (``.png``, ``.svg``, ``.pdf``).
        blocks: Block indices for the panel titles (``model.moe_blocks``).

    Raises:
        MedfleetError: When the model has no MoE blocks.

    Example:
        >>> import tempfile
        >>> out = plot_expert_usage({"a": np.ones((1, 4)), "b": np.eye(4)[:1]},
        ...                         Path(tempfile.mkdtemp()) / "usage.png")
        >>> out.stat().st_size > 0
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(usage)
    shares = usage_shares(usage)
    if not tasks or shares[tasks[0]].size == 0:
        raise MedfleetError("the model has no MoE blocks: there is no expert usage to plot")
    n_blocks, n_experts = shares[tasks[0]].shape
    blocks = blocks or list(range(n_blocks))
    fig, axes = plt.subplots(
        1,
        n_blocks,
        figsize=(1.2 + 0.6 * n_experts * n_blocks, 0.8 + 0.4 * len(tasks)),
        squeeze=False,
    )
    for b, ax in enumerate(axes[0]):
        grid = np.stack([shares[t][b] for t in tasks])
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_title(f"block {blocks[b]}")
        ax.set_xticks(range(n_experts))
        ax.set_xlabel("expert")
        ax.set_yticks(range(len(tasks)))
        ax.set_yticklabels(tasks if b == 0 else [""] * len(tasks))
    fig.colorbar(image, ax=list(axes[0]), label="share of routing slots")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
