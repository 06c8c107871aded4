"""Static report figures as PNG bytes (matplotlib, Agg canvas; no pyplot, no global state).

Each public function returns the PNG of one figure; the ``*_panels`` variants draw several
panels into one figure (one render instead of many, which keeps reports fast).
Non-finite values are left out of the plotted data and counted in the labels, so an
infinite distance never breaks a figure.
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, pil_kwargs={"compress_level": 1})
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
