"""Static report figures as PNG bytes (matplotlib, Agg canvas; no pyplot, no global state).

Each public function returns the PNG of one figure; the ``*_panels`` variants draw several
panels into one figure (one render instead of many, which keeps reports fast).
Non-finite values are left out of the plotted data and counted in the labels, so an
infinite distance never breaks a figure. :func:`outline_gallery_figure` returns the
matplotlib figure itself (for inspection); :func:`outline_gallery` its PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "bland_altman_panels",
    "bland_altman_plot",
    "box_plot",
    "box_plots",
    "outline_gallery",
    "outline_gallery_figure",
    "reliability_diagram",
    "subgroup_bar_panels",
    "subgroup_bars",
]

_DPI = 72
_PANEL = (4.2, 3.0)
_COLUMNS = 3


def _render(draws: Sequence[Callable[[Any], None]], panel: tuple[float, float] = _PANEL) -> bytes:
    """Draw each function into its own panel of a grid and return the PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(1, len(draws))
    cols = min(_COLUMNS, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows), dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.2, top=0.88, wspace=0.3, hspace=0.6)
    for i, draw in enumerate(draws):
        draw(fig.add_subplot(rows, cols, i + 1))
    return _png(fig)


def _png(fig: Any, dpi: int = _DPI) -> bytes:
    """The PNG bytes of a figure (fast compression: report figures are small)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _finite(values: Sequence[float]) -> tuple[np.ndarray, int]:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    ok = np.isfinite(arr)
    return arr[ok], int((~ok & ~np.isnan(arr)).sum())


def _draw_box(ax: Any, groups: Mapping[str, Sequence[float]], title: str, ylabel: str) -> None:
    data, labels = [], []
    for name, values in groups.items():
        finite, n_inf = _finite(values)
        data.append(finite if finite.size else np.array([np.nan]))
        labels.append(f"{name}\nn={finite.size}" + (f", {n_inf} inf" if n_inf else ""))
    if data:
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", alpha=0.3)


def box_plot(groups: Mapping[str, Sequence[float]], title: str = "", ylabel: str = "") -> bytes:
    """One box per group (finite values; the count of infinite ones in the label).

    Example:
        >>> png = box_plot({"label 1": [0.8, 0.9, float("inf")], "label 2": [0.5]}, "dice")
        >>> png[1:4] == b"PNG"
        True
    """
    return _render([lambda ax: _draw_box(ax, groups, title, ylabel)])


def box_plots(panels: Sequence[tuple[str, Mapping[str, Sequence[float]]]]) -> bytes:
    """Several box plots (``(title, groups)`` each) in one figure.

    Example:
        >>> box_plots([("dice", {"1": [0.9, 0.8]}), ("hd", {"1": [1.0, 2.0]})])[1:4] == b"PNG"
        True
    """
    return _render([lambda ax, t=t, g=g: _draw_box(ax, g, t, "") for t, g in panels])


def _draw_bars(
    ax: Any,
    groups: Sequence[str],
    values: Sequence[float],
    sizes: Sequence[int],
    title: str,
    ylabel: str,
    errors: Sequence[tuple[float, float]] | None = None,
) -> None:
    x = np.arange(len(groups))
    heights = np.array([float(v) if math.isfinite(float(v)) else np.nan for v in values])
    ax.bar(x, np.nan_to_num(heights), color="#6a8fc7")
    if errors is not None:
        lo = np.array([h - e[0] for h, e in zip(heights, errors, strict=True)])
        hi = np.array([e[1] - h for h, e in zip(heights, errors, strict=True)])
        ax.errorbar(x, heights, yerr=np.abs(np.vstack([lo, hi])), fmt="none", color="k", capsize=3)
    for xi, h, n in zip(x, heights, sizes, strict=True):
        label = f"n={n}" if math.isfinite(h) else f"n={n}\nundefined"
        ax.text(xi, h if math.isfinite(h) else 0.0, label, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [str(g) for g in groups], fontsize=7, rotation=25 if len(groups) > 5 else 0)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", alpha=0.3)


def subgroup_bars(
    groups: Sequence[str],
    values: Sequence[float],
    sizes: Sequence[int],
    title: str = "",
    ylabel: str = "",
    errors: Sequence[tuple[float, float]] | None = None,
) -> bytes:
    """One bar per subgroup with its size written on it (and optional (low, high) intervals).

    Example:
        >>> subgroup_bars(["a", "b"], [0.8, 0.6], [10, 3], "dice by site")[1:4] == b"PNG"
        True
    """
    return _render([lambda ax: _draw_bars(ax, groups, values, sizes, title, ylabel, errors)])


def subgroup_bar_panels(panels: Sequence[Mapping[str, Any]]) -> bytes:
    """Several subgroup bar charts in one figure.

    Each panel is a mapping with ``groups``, ``values``, ``sizes`` and optional ``title``,
    ``ylabel`` and ``errors``.

    Example:
        >>> subgroup_bar_panels([{"groups": ["a"], "values": [1.0], "sizes": [2]}])[1:4] == b"PNG"
        True
    """
    return _render(
        [
            lambda ax, p=p: _draw_bars(
                ax,
                p["groups"],
                p["values"],
                p["sizes"],
                p.get("title", ""),
                p.get("ylabel", ""),
                p.get("errors"),
            )
            for p in panels
        ]
    )


def reliability_diagram(
    confidence: Sequence[float],
    accuracy: Sequence[float],
    count: Sequence[float],
    title: str = "Reliability diagram",
) -> bytes:
    """Accuracy against mean confidence per bin, the diagonal, and the bin sizes as faint bars.

    Example:
        >>> reliability_diagram([0.55, 0.95], [0.5, 0.9], [10, 30])[1:4] == b"PNG"
        True
    """
    conf = np.asarray(confidence, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    cnt = np.asarray(count, dtype=float)
    ok = (cnt > 0) & np.isfinite(conf) & np.isfinite(acc)

    def curve(ax: Any) -> None:
        if ok.any():  # sample share per bin as faint bars along the bottom (a quarter high)
            share = cnt[ok] / cnt[ok].max()
            ax.bar(
                conf[ok],
                0.25 * share,
                width=0.02,
                color="#6a8fc7",
                alpha=0.5,
                label="samples per bin (relative)",
            )
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
        ax.plot(conf[ok], acc[ok], "o-", color="#c0392b", ms=4, label="observed")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)

    return _render([curve], (5.0, 4.0))


def _draw_ba(
    ax: Any, reference: Sequence[float], measured: Sequence[float], title: str, unit: str
) -> None:
    ref = np.asarray(reference, dtype=float)
    mea = np.asarray(measured, dtype=float)
    ok = np.isfinite(ref) & np.isfinite(mea)
    mean = (ref[ok] + mea[ok]) / 2.0
    diff = mea[ok] - ref[ok]
    ax.scatter(mean, diff, s=10, color="#2c3e50")
    if diff.size:
        bias = float(diff.mean())
        sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
        ax.axhline(bias, color="#c0392b", lw=1, label=f"bias {bias:.3g}")
        for k in (-1.96, 1.96):
            ax.axhline(bias + k * sd, color="#c0392b", lw=1, ls="--")
        ax.legend(fontsize=7)
    dropped = int((~ok).sum())
    ax.set_title(title + (f" ({dropped} without a value)" if dropped else ""), fontsize=9)
    ax.set_xlabel(f"mean of reference and prediction {unit}".strip(), fontsize=8)
    ax.set_ylabel(f"prediction - reference {unit}".strip(), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def bland_altman_plot(
    reference: Sequence[float], measured: Sequence[float], title: str = "", unit: str = ""
) -> bytes:
    """Difference (measured - reference) against the mean of the two, bias and 95 % limits.

    Pairs with a non-finite value are left out (their count is in the title).

    Example:
        >>> bland_altman_plot([10, 12, 14], [11, 12, 13.5], "HC", "mm")[1:4] == b"PNG"
        True
    """
    return _render([lambda ax: _draw_ba(ax, reference, measured, title, unit)])


def bland_altman_panels(panels: Sequence[tuple[str, Sequence[float], Sequence[float]]]) -> bytes:
    """Several Bland-Altman plots (``(title, reference, measured)`` each) in one figure.

    Example:
        >>> bland_altman_panels([("a", [1, 2], [1, 3])])[1:4] == b"PNG"
        True
    """
    return _render([lambda ax, p=p: _draw_ba(ax, p[1], p[2], p[0], "") for p in panels])


#: Outline colours (Okabe-Ito sky blue and orange: told apart with colour-vision deficiency).
REFERENCE_COLOUR = "#56B4E9"
PREDICTION_COLOUR = "#E69F00"
_BACKGROUND = "#404040"
_GALLERY_PANEL = (3.0, 3.3)
_GALLERY_COLUMNS = 4
_GALLERY_DPI = 90


def _shrink(array: np.ndarray, max_side: int) -> np.ndarray:
    """Nearest-neighbour downsampling of a 2D array so its longer side is at most ``max_side``."""
    h, w = array.shape
    factor = max(h, w) / max(1, int(max_side))
    if factor <= 1:
        return array
    rows = np.minimum(((np.arange(max(1, round(h / factor))) + 0.5) * factor).astype(int), h - 1)
    cols = np.minimum(((np.arange(max(1, round(w / factor))) + 0.5) * factor).astype(int), w - 1)
    return array[np.ix_(rows, cols)]


def _draw_outlines(
    ax: Any, mask: np.ndarray, labels: Sequence[int], colour: str, width: float
) -> None:
    """One contour per label at the border of its pixels (the union when ``labels`` is empty)."""
    h, w = mask.shape
    x, y = np.arange(-1, w + 1), np.arange(-1, h + 1)
    for label in labels or [None]:
        binary = mask > 0 if label is None else mask == label
        if not binary.any():
            continue
        # zero padding closes the outline of a region that touches the image border
        padded = np.pad(binary.astype(np.uint8), 1)
        ax.contour(x, y, padded, levels=[0.5], colors=[colour], linewidths=width)


def _draw_outline_panel(ax: Any, panel: Mapping[str, Any], max_side: int, max_labels: int) -> None:
    reference = _shrink(np.asarray(panel["reference"]), max_side)
    prediction = _shrink(np.asarray(panel["prediction"]), max_side)
    if prediction.shape != reference.shape:
        raise ValueError(
            f"panel {panel.get('title', '')!r}: prediction shape {prediction.shape} differs "
            f"from the reference shape {reference.shape}"
        )
    h, w = reference.shape
    image = panel.get("image")
    if image is not None:
        grey = _shrink(np.asarray(image, dtype=np.float64), max_side)
        finite = grey[np.isfinite(grey)]
        lo, hi = np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0)
        ax.imshow(
            grey, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest"
        )
    else:
        ax.set_facecolor(_BACKGROUND)
    found = sorted({int(v) for v in np.unique(reference)} | {int(v) for v in np.unique(prediction)})
    labels = [v for v in found if v != 0]
    per_label = labels if len(labels) <= max_labels else []
    # the reference wider and below: where the prediction matches it, both stay visible
    _draw_outlines(ax, reference, per_label, REFERENCE_COLOUR, 2.4)
    _draw_outlines(ax, prediction, per_label, PREDICTION_COLOUR, 1.2)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(str(panel.get("title", "")), fontsize=8)
    if panel.get("note"):
        ax.set_xlabel(str(panel["note"]), fontsize=7, color="#a04000")


def outline_gallery_figure(
    panels: Sequence[Mapping[str, Any]],
    *,
    max_side: int = 512,
    max_labels: int = 6,
    columns: int = _GALLERY_COLUMNS,
) -> Any:
    """Reference and prediction outlines over each case's image: the matplotlib figure.

    Each panel draws the image in grey (when given; otherwise a neutral dark background),
    the reference outline(s) in :data:`REFERENCE_COLOUR` (wider, below) and the prediction
    outline(s) in :data:`PREDICTION_COLOUR`, one outline per foreground label, or the
    outline of their union when a panel has more than ``max_labels`` labels. A legend above
    the panels says which colour is which. Arrays larger than ``max_side`` pixels on a side are
    downsampled (nearest neighbour) before drawing.

    Args:
        panels: One mapping per panel: ``reference`` and ``prediction`` (2D label maps of
            one shape), optional ``image`` (2D array of that shape, or ``None``), ``title``
            and ``note`` (a short line under the panel).
        max_side: Longest side, in pixels, drawn.
        max_labels: Most labels outlined one by one.
        columns: Panels per row.

    Returns:
        A :class:`matplotlib.figure.Figure` on an Agg canvas (no pyplot state).

    Raises:
        ValueError: A panel whose prediction and reference shapes differ.

    Example:
        >>> ref = np.zeros((20, 20), int); ref[5:15, 5:15] = 1
        >>> pred = np.zeros((20, 20), int); pred[8:18, 8:18] = 1
        >>> fig = outline_gallery_figure([{"reference": ref, "prediction": pred,
        ...                                "image": np.random.rand(20, 20), "title": "a"}])
        >>> len(fig.axes[0].images), len(fig.axes[0].collections)
        (1, 2)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    n = max(1, len(panels))
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    width, height = _GALLERY_PANEL
    fig = Figure(figsize=(width * cols, height * rows + 0.4), dpi=_GALLERY_DPI)
    FigureCanvasAgg(fig)
    top = 1 - 0.4 / (height * rows + 0.4)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.06 / rows, top=top - 0.06 / rows)
    fig.subplots_adjust(wspace=0.08, hspace=0.35)
    for i, panel in enumerate(panels):
        _draw_outline_panel(fig.add_subplot(rows, cols, i + 1), panel, max_side, max_labels)
    handles = [
        Line2D([], [], color=REFERENCE_COLOUR, lw=2.4, label="reference"),
        Line2D([], [], color=PREDICTION_COLOUR, lw=1.2, label="prediction"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=2, fontsize=8, frameon=False)
    return fig


def outline_gallery(
    panels: Sequence[Mapping[str, Any]],
    *,
    max_side: int = 512,
    max_labels: int = 6,
    columns: int = _GALLERY_COLUMNS,
) -> bytes:
    """The PNG of :func:`outline_gallery_figure` (same arguments).

    Example:
        >>> ref = np.zeros((8, 8), int); ref[2:6, 2:6] = 1
        >>> outline_gallery([{"reference": ref, "prediction": ref, "title": "a"}])[1:4]
        b'PNG'
    """
    fig = outline_gallery_figure(panels, max_side=max_side, max_labels=max_labels, columns=columns)
    return _png(fig, _GALLERY_DPI)
