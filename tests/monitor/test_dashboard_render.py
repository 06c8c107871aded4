"""The dashboard's SVG charts: geometry against the data, colours, thresholds, escaping."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medfleet.monitor.dashboard import (
    SERIES_COLOUR,
    SEVERITY_COLOURS,
    AlertRow,
    SeriesPoint,
    SiteSeries,
    nice_ticks,
    render_dashboard,
    render_site_chart,
)
from medfleet.monitor.records import BatchReport
from medfleet.monitor.service import site_series
from medfleet.monitor.severity import Severity

NS = {"svg": "http://www.w3.org/2000/svg"}
THRESHOLDS = {"drift": 0.3, "moderate": 0.5, "severe": 0.7}


def _svg(series: SiteSeries) -> ET.Element:
    return ET.fromstring(render_site_chart(series))


def _pairs(points_attr: str) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in p.split(",")) for p in points_attr.split()]


@given(st.floats(min_value=1e-6, max_value=1e6), st.integers(min_value=2, max_value=8))
def test_ticks_start_at_zero_cover_the_value_and_use_round_steps(upper: float, count: int) -> None:
    ticks = nice_ticks(upper, count)
    assert ticks[0] == 0.0
    assert ticks[-1] >= upper * (1 - 1e-9)
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 2.5, 5, 10)) < 1e-6
    assert len(ticks) - 1 <= 2.5 * count + 1


def test_points_sit_where_the_statistic_says() -> None:
    stats_ = [0.1, 0.2, 0.4, 0.8]
    points = [
        SeriesPoint(f"b{i}", f"2025-01-0{i + 1}T00:00:00", s, "none") for i, s in enumerate(stats_)
    ]
    svg = _svg(SiteSeries("a", points, THRESHOLDS, "ks statistic"))
    assert svg.get("data-points") == "4"
    line = svg.find("svg:polyline[@class='series']", NS)
    assert line is not None and line.get("stroke") == SERIES_COLOUR
    xy = _pairs(line.get("points"))
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    # Equal x steps for batches in arrival order; y linear in the statistic, larger is higher.
    steps = [b - a for a, b in itertools.pairwise(xs)]
    assert max(steps) - min(steps) < 0.2 and min(steps) > 0
    slope = (ys[1] - ys[0]) / (stats_[1] - stats_[0])
    assert slope < 0
    for s, y in zip(stats_, ys, strict=True):
        assert y == pytest.approx(ys[0] + slope * (s - stats_[0]), abs=0.15)
    # The 'moderate' threshold line lies at 0.5 on the same scale.
    moderate = svg.find("svg:polyline[@class='threshold threshold-moderate']", NS)
    y_mod = {y for _, y in _pairs(moderate.get("points"))}
    assert len(y_mod) == 1
    assert y_mod.pop() == pytest.approx(ys[0] + slope * (0.5 - stats_[0]), abs=0.15)
    circles = svg.findall("svg:circle[@class='point severity-none']", NS)
    assert [(float(c.get("cx")), float(c.get("cy"))) for c in circles] == xy


def test_severity_colours_alert_rings_and_tooltips() -> None:
    points = [
        SeriesPoint("b0", "t0", 0.1, "none"),
        SeriesPoint("b1", "t1", 0.4, "mild"),
        SeriesPoint("b2", "t2", 0.6, "moderate", alert=True),
        SeriesPoint("b3", "t3", 0.9, "severe", alert=True),
        SeriesPoint("b4", "t4", None, "none"),  # warm-up: no statistic, no point
        SeriesPoint("b5", "t5", float("nan"), "none"),
    ]
    svg = _svg(SiteSeries("a", points, THRESHOLDS))
    assert svg.get("data-points") == "4"
    fills = [c.get("fill") for c in svg.findall("svg:circle", NS) if "point" in c.get("class")]
    assert fills == [SEVERITY_COLOURS[s] for s in ("none", "mild", "moderate", "severe")]
    assert len(svg.findall("svg:circle[@class='alert-ring']", NS)) == 2
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert "b3 · t3" in titles[-1] and "severe" in titles[-1] and "ALERT" in titles[-1]


def test_thresholds_that_change_are_drawn_as_steps_with_zones() -> None:
    points = [
        SeriesPoint("b0", "t0", 0.1, "none", thresholds={"drift": 0.2, "moderate": 0.4}),
        SeriesPoint("b1", "t1", 0.1, "none", thresholds={"drift": 0.3, "moderate": 0.4}),
    ]
    svg = _svg(SiteSeries("a", points))
    mild = svg.find("svg:polyline[@class='threshold threshold-mild']", NS)
    ys = [y for _, y in _pairs(mild.get("points"))]
    assert len(set(ys)) == 2 and ys[0] > ys[-1]  # the later threshold is higher
    moderate = svg.find("svg:polyline[@class='threshold threshold-moderate']", NS)
    assert len({y for _, y in _pairs(moderate.get("points"))}) == 1
    bands = [r.get("class") for r in svg.findall("svg:rect", NS)]
    assert bands.count("band band-none") == 2 and bands.count("band band-mild") == 2
    assert svg.find("svg:polyline[@class='threshold threshold-severe']", NS) is None


def test_empty_site_says_why_and_draws_no_series() -> None:
    assert "no batches yet" in render_site_chart(SiteSeries("a", [], THRESHOLDS))
    chart = render_site_chart(SiteSeries("a", [], {}, has_reference=False))
    assert "no reference yet" in chart and "series" not in chart


def test_page_escapes_names_and_lists_alerts_newest_first() -> None:
    evil = "<script>alert(1)</script>"
    page = render_dashboard(
        [SiteSeries("site_a", [SeriesPoint(evil, "t", 0.2, "mild", alert=True)])],
        [
            AlertRow("site_a", "b9", "2025-01-09", "severe", evil),
            AlertRow("site_a", "b2", "2025-01-02", "mild", "first"),
        ],
        refresh_seconds=15,
    )
    assert evil not in page and "&lt;script&gt;" in page
    assert page.index("b9") < page.index("b2")
    assert "location.reload" in page and "15000" in page
    assert "<script>" in page  # only the refresh script
    assert page.count("<script>") == 1


def test_site_series_reads_reports() -> None:
    common = {"site": "a", "n": 10, "scheme": "site", "test": "ks", "p_value": 0.5}
    reports = [
        BatchReport(
            batch_id="w", timestamp="t0", statistic=None, severity=Severity.none,
            drift=False, alert=False, status="warmup", **common,
        ),
        BatchReport(
            batch_id="b", timestamp="t1", statistic=0.3, severity=Severity.moderate,
            drift=True, alert=True, lead="prob", thresholds=THRESHOLDS, **common,
        ),
    ]  # fmt: skip
    series = site_series("a", reports)
    assert series.statistic_name == "ks statistic of prob"
    assert [(p.batch_id, p.statistic, p.severity, p.alert) for p in series.points] == [
        ("w", None, "none", False),
        ("b", 0.3, "moderate", True),
    ]
    assert _svg(series).get("data-points") == "1"
