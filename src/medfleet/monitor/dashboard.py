"""Dashboard page of the monitoring service: one chart per site, drawn server-side as SVG.

The page needs no JavaScript library and no network access: every chart is an inline SVG
built here, so it renders the same in a browser, in a headless browser and in an e-mail.
Each site gets a panel with its drift statistic per batch (x: batches in arrival order,
labelled with their timestamps), the severity bands and threshold lines, every batch as a
point coloured by its severity (hover for batch id, time, statistic and severity), a ring
around batches that raised an alert, and a badge with the latest severity. The alert list
follows the charts, newest first.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SEVERITIES: tuple[str, ...] = ("none", "mild", "moderate", "severe")
"""Severity levels, mildest first."""

SERIES_COLOUR = "#1f4e9c"
"""Colour of the statistic's line; used nowhere else on the page."""

SEVERITY_COLOURS: dict[str, str] = {
    "none": "#2e7d32",
    "mild": "#f9a825",
    "moderate": "#ef6c00",
    "severe": "#c62828",
}
"""Colour of a batch point and of a severity badge."""

BAND_COLOURS: dict[str, str] = {
    "none": "#f1f8f1",
    "mild": "#fffbe6",
    "moderate": "#fff2e0",
    "severe": "#fdecec",
}
"""Pale background of each severity zone of a chart."""

UNKNOWN_COLOUR = "#757575"

_WIDTH = 1120
_HEIGHT = 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 128, 16, 44


@dataclass(frozen=True)
class SeriesPoint:
    """One processed batch of a site, as the chart draws it.

    Attributes:
        batch_id: The batch's identifier.
        timestamp: When the batch was taken (text, shown on hover and on the axis).
        statistic: The drift statistic of the batch (None or NaN draws no point).
        severity: One of :data:`SEVERITIES` (other text draws grey).
        alert: Whether the batch raised an alert.
        thresholds: This batch's thresholds (``mild`` or ``drift``, ``moderate``,
            ``severe``); None uses the series' thresholds.
    """

    batch_id: str
    timestamp: str
    statistic: float | None
    severity: str
    alert: bool = False
    thresholds: Mapping[str, float] | None = None


@dataclass(frozen=True)
class SiteSeries:
    """A site's statistic over time with its severity thresholds.

    Attributes:
        site: Site name.
        points: Batches in arrival order.
        thresholds: Statistic value at which each severity starts, e.g.
            ``{"mild": 0.1, "moderate": 0.2, "severe": 0.35}`` (``drift`` is read as
            ``mild``); used for points without thresholds of their own.
        statistic_name: What the y axis shows.
        has_reference: Whether the site has a reference yet.
    """

    site: str
    points: Sequence[SeriesPoint] = ()
    thresholds: Mapping[str, float] = field(default_factory=dict)
    statistic_name: str = "drift statistic"
    has_reference: bool = True


@dataclass(frozen=True)
class AlertRow:
    """One alert of the alert list.

    Attributes:
        site: Site that raised it.
        batch_id: Batch that raised it.
        timestamp: When the batch was taken.
        severity: Its severity.
        message: What happened, in words.
    """

    site: str
    batch_id: str
    timestamp: str
    severity: str
    message: str = ""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float) -> str:
    """Short number for labels: 3 significant digits, no exponent for usual ranges."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.2e}"


def nice_ticks(upper: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``upper``.

    Args:
        upper: Largest value the axis must show (> 0).
        count: About how many intervals to make.

    Returns:
        Ticks ``0, step, 2*step, ...`` with a step of 1, 2, 2.5 or 5 times a power of ten,
        the last tick >= ``upper``.

    Example:
        >>> nice_ticks(0.37)
        [0.0, 0.1, 0.2, 0.3, 0.4]
        >>> nice_ticks(9.0, count=3)
        [0.0, 5.0, 10.0]
    """
    if not math.isfinite(upper) or upper <= 0:
        upper = 1.0
    raw = upper / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    n = math.ceil(upper / step - 1e-9)
    return [round(float(i * step), 12) for i in range(n + 1)]


def _severity_colour(severity: str) -> str:
    return SEVERITY_COLOURS.get(severity, UNKNOWN_COLOUR)


def _short_time(timestamp: str) -> str:
    """Axis label of a timestamp: drop the date's year and the seconds when ISO-like."""
    text = str(timestamp)
    if len(text) >= 16 and text[4] == "-" and text[10] in "T ":
        return f"{text[5:10]} {text[11:16]}"
    return text[:16]


def _level_thresholds(values: Mapping[str, float] | None) -> tuple[float | None, ...]:
    """Finite thresholds of mild, moderate and severe (``drift`` counts as ``mild``)."""
    values = dict(values or {})
    if "mild" not in values and "drift" in values:
        values["mild"] = values["drift"]
    out: list[float | None] = []
    for name in SEVERITIES[1:]:
        value = values.get(name)
        try:
            number = float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            number = math.nan
        out.append(number if math.isfinite(number) else None)
    return tuple(out)


def render_site_chart(series: SiteSeries) -> str:
    """SVG chart of one site's statistic over its batches.

    Thresholds are drawn per batch as step lines (they are recalibrated when an adaptive
    reference moves or the batch size changes), with the severity zones between them shaded.

    Args:
        series: The site's points and thresholds.

    Returns:
        An ``<svg>`` element as text (with ``data-site`` and ``data-points`` attributes).

    Example:
        >>> pts = [SeriesPoint("b1", "2025-01-01T00:00", 0.05, "none"),
        ...        SeriesPoint("b2", "2025-01-02T00:00", 0.40, "severe", alert=True)]
        >>> svg = render_site_chart(SiteSeries("site_a", pts, {"mild": 0.1, "severe": 0.3}))
        >>> svg.startswith("<svg") and 'data-points="2"' in svg and "polyline" in svg
        True
    """
    frame = _ChartFrame.of(series)
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{_WIDTH}" '
        f'height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'data-site="{_esc(series.site)}" data-points="{frame.n}" '
        f'aria-label="{_esc(series.statistic_name)} of site {_esc(series.site)} per batch">'
    ]
    parts += _severity_zones(frame)
    parts += _axes(frame, series.statistic_name)
    parts += _threshold_lines(frame)
    if frame.n == 0:
        message = "no batches yet" if series.has_reference else "no reference yet"
        parts.append(
            f'<text x="{_LEFT + frame.plot_w / 2:.1f}" y="{_TOP + frame.plot_h / 2:.1f}" '
            f'text-anchor="middle" font-size="16" fill="#757575" paint-order="stroke" '
            f'stroke="#ffffff" stroke-width="5">{message}</text>'
        )
    else:
        parts += _time_labels(frame)
        parts += _series_marks(frame, series.statistic_name)
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class _ChartFrame:
    """Where things go in one site's chart: the points, thresholds and the two scales.

    Attributes:
        points: The batches with a finite statistic, in arrival order.
        levels: Per x segment, the mild/moderate/severe thresholds (``None``: none).
        ticks: The y-axis ticks; the last one is the top of the scale.
        edges: The x edges of the segments: segment k runs from ``edges[k]`` to
            ``edges[k + 1]``, around point k.
    """

    points: list[SeriesPoint]
    levels: list[tuple[float | None, ...]]
    ticks: list[float]
    edges: list[float]
    plot_w: float = _WIDTH - _LEFT - _RIGHT
    plot_h: float = _HEIGHT - _TOP - _BOTTOM

    @classmethod
    def of(cls, series: SiteSeries) -> _ChartFrame:
        """The frame of a site's series."""
        points = [
            p for p in series.points if p.statistic is not None and math.isfinite(p.statistic)
        ]
        default = _level_thresholds(series.thresholds)
        levels = [_level_thresholds(p.thresholds) if p.thresholds else default for p in points] or [
            default
        ]
        finite = [v for row in levels for v in row if v is not None]
        top_value = max(
            [float(p.statistic) for p in points if p.statistic is not None] + finite + [1e-12]
        )
        frame = cls(points, levels, list(nice_ticks(top_value * 1.08)), [])
        # Segment k of the x axis belongs to point k: from the midpoint before it to the
        # one after.
        m = len(levels)
        edges = [float(_LEFT)]
        edges += [(frame.x_of(k) + frame.x_of(k + 1)) / 2 for k in range(m - 1)]
        edges.append(float(_LEFT + frame.plot_w))
        frame.edges.extend(edges)
        return frame

    @property
    def n(self) -> int:
        """Number of plotted batches."""
        return len(self.points)

    @property
    def y_max(self) -> float:
        """Top of the y scale."""
        return self.ticks[-1]

    def y_of(self, value: float) -> float:
        """The y pixel of a statistic (clipped to the scale)."""
        clipped = min(max(value, 0.0), self.y_max)
        return _TOP + self.plot_h * (1.0 - clipped / self.y_max)

    def x_of(self, i: int) -> float:
        """The x pixel of the i-th batch."""
        if self.n <= 1:
            return _LEFT + self.plot_w / 2
        return _LEFT + self.plot_w * i / (self.n - 1)


def _severity_zones(frame: _ChartFrame) -> list[str]:
    """Shaded severity zones: runs of segments with equal thresholds, one rectangle per zone."""
    parts: list[str] = []
    levels, m, y_max = frame.levels, len(frame.levels), frame.y_max
    run_start = 0
    for k in range(1, m + 1):
        if k < m and levels[k] == levels[run_start]:
            continue
        row = levels[run_start]
        if any(v is not None for v in row):
            x0, x1 = frame.edges[run_start], frame.edges[k]
            lower = 0.0
            for name, upper in zip(SEVERITIES, [*row, None], strict=True):
                if upper is None and name != "severe":
                    continue
                top = y_max if upper is None else min(upper, y_max)
                if top > lower:
                    y0, y1 = frame.y_of(top), frame.y_of(lower)
                    parts.append(
                        f'<rect class="band band-{name}" x="{x0:.1f}" y="{y0:.1f}" '
                        f'width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
                        f'fill="{BAND_COLOURS[name]}"/>'
                    )
                lower = max(lower, top)
        run_start = k
    return parts


def _axes(frame: _ChartFrame, statistic_name: str) -> list[str]:
    """Grid lines, y ticks, the two axes and the y-axis title."""
    plot_w, plot_h = frame.plot_w, frame.plot_h
    parts = []
    for tick in frame.ticks:
        y = frame.y_of(tick)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#e0e0e0" stroke-width="1"/>'
            f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#424242">{_fmt(tick)}</text>'
        )
    parts.append(
        f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot_h}" stroke="#616161"/>'
        f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{_TOP + plot_h}" y2="{_TOP + plot_h}" '
        'stroke="#616161"/>'
        f'<text x="14" y="{_TOP + plot_h / 2:.1f}" font-size="12" fill="#424242" '
        f'text-anchor="middle" transform="rotate(-90 14 {_TOP + plot_h / 2:.1f})">'
        f"{_esc(statistic_name)}</text>"
    )
    return parts


def _threshold_lines(frame: _ChartFrame) -> list[str]:
    """Threshold step lines, labelled at the right with the latest value."""
    parts = []
    levels, y_max = frame.levels, frame.y_max
    for j, name in enumerate(SEVERITIES[1:]):
        colour = _severity_colour(name)
        path: list[str] = []
        for k in range(len(levels)):
            value = levels[k][j]
            if value is None or value > y_max:
                if path:
                    parts.append(_threshold_line(name, colour, path))
                path = []
                continue
            y = frame.y_of(value)
            path.append(f"{frame.edges[k]:.1f},{y:.1f} {frame.edges[k + 1]:.1f},{y:.1f}")
        if path:
            parts.append(_threshold_line(name, colour, path))
        last = levels[-1][j]
        if last is not None and last <= y_max:
            label = "mild (drift)" if name == "mild" else name
            parts.append(
                f'<text x="{_LEFT + frame.plot_w + 8}" y="{frame.y_of(last) + 4:.1f}" '
                f'font-size="12" fill="{colour}">{label} ≥ {_fmt(last)}</text>'
            )
    return parts


def _time_labels(frame: _ChartFrame) -> list[str]:
    """X tick labels: about eight timestamps spread over the batches, and the axis title."""
    n, plot_h = frame.n, frame.plot_h
    step = max(1, math.ceil(n / 8))
    label_idx = sorted({*range(0, n, step), n - 1})
    if len(label_idx) > 1 and label_idx[-1] - label_idx[-2] < step / 2:
        label_idx.pop(-2)
    parts = []
    for i in label_idx:
        x = frame.x_of(i)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP + plot_h}" '
            f'y2="{_TOP + plot_h + 5}" stroke="#616161"/>'
            f'<text x="{x:.1f}" y="{_TOP + plot_h + 19}" text-anchor="middle" '
            f'font-size="11" fill="#424242">{_esc(_short_time(frame.points[i].timestamp))}</text>'
        )
    parts.append(
        f'<text x="{_LEFT + frame.plot_w / 2:.1f}" y="{_HEIGHT - 6}" text-anchor="middle" '
        f'font-size="12" fill="#424242">batch ({n} in arrival order)</text>'
    )
    return parts


def _series_marks(frame: _ChartFrame, statistic_name: str) -> list[str]:
    """The statistic's line and one dot per batch (ringed when it alerted), with tooltips."""
    points, n = frame.points, frame.n
    coords = " ".join(
        f"{frame.x_of(i):.1f},{frame.y_of(float(p.statistic or 0.0)):.1f}"
        for i, p in enumerate(points)
    )
    parts = [
        f'<polyline class="series" points="{coords}" fill="none" '
        f'stroke="{SERIES_COLOUR}" stroke-width="2.5" stroke-linejoin="round"/>'
    ]
    radius = 5.0 if n <= 60 else 3.5 if n <= 150 else 2.5
    for i, p in enumerate(points):
        x, y = frame.x_of(i), frame.y_of(float(p.statistic or 0.0))
        tip = (
            f"{p.batch_id} · {p.timestamp}\n{statistic_name} = "
            f"{_fmt(p.statistic)} · {p.severity}{' · ALERT' if p.alert else ''}"
        )
        if p.alert:
            parts.append(
                f'<circle class="alert-ring" cx="{x:.1f}" cy="{y:.1f}" '
                f'r="{radius + 4:.1f}" fill="none" stroke="#b71c1c" stroke-width="2"/>'
            )
        parts.append(
            f'<circle class="point severity-{_esc(p.severity)}" cx="{x:.1f}" '
            f'cy="{y:.1f}" r="{radius:.1f}" fill="{_severity_colour(p.severity)}" '
            f'stroke="#ffffff" stroke-width="1"><title>{_esc(tip)}</title></circle>'
        )
    return parts


def _threshold_line(name: str, colour: str, path: list[str]) -> str:
    return (
        f'<polyline class="threshold threshold-{name}" points="{" ".join(path)}" fill="none" '
        f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="6 4"/>'
    )


def _legend() -> str:
    dots = "".join(
        f'<span class="key"><span class="dot" style="background:{SEVERITY_COLOURS[name]}">'
        f"</span>{name}</span>"
        for name in SEVERITIES
    )
    return (
        '<div class="legend">'
        f'<span class="key"><span class="swatch" style="background:{SERIES_COLOUR}"></span>'
        "statistic</span>"
        f'{dots}<span class="key">point: batch severity (worst output)</span>'
        '<span class="key"><span class="ring"></span>alert</span>'
        '<span class="key">dashed: severity thresholds</span></div>'
    )


_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 16px 24px; color: #212121;
       background: #ffffff; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
.meta { color: #616161; font-size: 13px; margin-bottom: 10px; }
.panel { border: 1px solid #e0e0e0; border-radius: 6px; padding: 6px 10px 2px 10px;
         margin-bottom: 10px; width: 1120px; }
.panel h2 { font-size: 15px; margin: 2px 0 2px 0; display: flex; gap: 12px;
            align-items: center; }
.badge { color: #ffffff; border-radius: 10px; padding: 1px 9px; font-size: 12px; }
.counts { color: #616161; font-weight: normal; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; width: 1140px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eeeeee; }
th { background: #fafafa; }
h2.section { font-size: 16px; margin: 14px 0 6px 0; }
.legend { font-size: 12px; color: #424242; margin-bottom: 10px; display: flex; gap: 14px;
          flex-wrap: wrap; align-items: center; }
.key { display: inline-flex; align-items: center; gap: 4px; }
.dot { width: 10px; height: 10px; border-radius: 5px; display: inline-block; }
.swatch { width: 18px; height: 3px; display: inline-block; }
.ring { width: 10px; height: 10px; border-radius: 7px; border: 2px solid #b71c1c;
        display: inline-block; }
"""


def render_dashboard(
    sites: Sequence[SiteSeries],
    alerts: Sequence[AlertRow] = (),
    *,
    title: str = "medfleet drift monitor",
    generated_at: str = "",
    refresh_seconds: int = 0,
    max_alerts: int = 100,
) -> str:
    """Whole dashboard page: a chart per site, then the alert list (newest first).

    Args:
        sites: One series per site, in display order.
        alerts: Alerts, newest first; the first ``max_alerts`` are listed.
        title: Page heading.
        generated_at: Time the page was built (shown under the heading).
        refresh_seconds: Reload the page after this many seconds (0: never).
        max_alerts: Longest alert list shown.

    Returns:
        A complete HTML document.

    Example:
        >>> page = render_dashboard([SiteSeries("site_a")], [])
        >>> "<!DOCTYPE html>" in page and 'data-site="site_a"' in page
        True
    """
    body: list[str] = [
        f"<h1>{_esc(title)}</h1>",
        f'<div class="meta">{len(sites)} site(s) · {len(alerts)} alert(s)'
        + (f" · generated {_esc(generated_at)}" if generated_at else "")
        + (f" · refreshes every {refresh_seconds} s" if refresh_seconds > 0 else "")
        + "</div>",
        _legend(),
    ]
    if not sites:
        body.append('<p class="meta">No sites yet: configure API keys and post a reference.</p>')
    for series in sites:
        latest = series.points[-1].severity if series.points else "—"
        colour = _severity_colour(latest) if series.points else UNKNOWN_COLOUR
        n_alerts = sum(1 for p in series.points if p.alert)
        body.append(
            f'<section class="panel" id="site-{_esc(series.site)}">'
            f"<h2>{_esc(series.site)}"
            f'<span class="badge" style="background:{colour}">latest: {_esc(latest)}</span>'
            f'<span class="counts">{len(series.points)} batch(es) · {n_alerts} alert(s)'
            f"{'' if series.has_reference else ' · no reference'}</span></h2>"
            f"{render_site_chart(series)}</section>"
        )
    body.append('<h2 class="section">Alerts</h2>')
    if alerts:
        rows = "".join(
            f"<tr><td>{_esc(a.timestamp)}</td><td>{_esc(a.site)}</td><td>{_esc(a.batch_id)}</td>"
            f'<td><span class="badge" style="background:{_severity_colour(a.severity)}">'
            f"{_esc(a.severity)}</span></td><td>{_esc(a.message)}</td></tr>"
            for a in list(alerts)[:max_alerts]
        )
        body.append(
            '<table id="alerts"><thead><tr><th>time</th><th>site</th><th>batch</th>'
            f"<th>severity</th><th>message</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        body.append('<p class="meta" id="alerts">No alerts.</p>')
    refresh = (
        f"<script>setTimeout(function () {{ location.reload(); }}, {refresh_seconds * 1000});"
        "</script>"
        if refresh_seconds > 0
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}{refresh}</body></html>\n"
    )
