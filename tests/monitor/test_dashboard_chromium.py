"""The dashboard served over HTTP renders its charts in headless Chromium (screenshot check).

One site is stable, the other drifts in its last batches. In the screenshot the statistic's
line must cross most of the width of both charts; the drifting site's line must climb at
the right while the stable one stays flat; the drifting site's severe points (red) must sit
at the right of its chart and its 'none' points (green) at the left. A page whose sites have
no batches yet must show no line at all, so the check can tell a drawn chart from an empty
one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from monitor_service_helpers import (
    KEYS,
    batch_body,
    config,
    free_port,
    headers,
    post_references,
    threaded_server,
)
from PIL import Image

from medfleet.monitor.dashboard import SERIES_COLOUR, SEVERITY_COLOURS
from medfleet.monitor.service import ServiceSettings, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
)


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)


def _mask(image: np.ndarray, hex_colour: str, tolerance: float = 40.0) -> np.ndarray:
    return np.linalg.norm(image - _rgb(hex_colour), axis=2) < tolerance


def _screenshot(url: str, tmp: Path) -> np.ndarray:
    png = tmp / "dashboard.png"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        f"--screenshot={png}",
        "--window-size=1200,800",
        url,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert png.is_file(), f"no screenshot; chromium said:\n{result.stderr[-2000:]}"
    with Image.open(png) as img:
        return np.asarray(img.convert("RGB"), dtype=float)


def _chart_lines(series: np.ndarray, min_width: int = 600) -> list[tuple[slice, slice]]:
    """Row/column boxes of the line drawings: runs of rows holding series pixels, wide ones."""
    rows = np.flatnonzero(series.any(axis=1))
    boxes = []
    if rows.size == 0:
        return boxes
    groups = np.split(rows, np.flatnonzero(np.diff(rows) > 30) + 1)
    for group in groups:
        block = series[group[0] : group[-1] + 1]
        cols = np.flatnonzero(block.any(axis=0))
        if cols[-1] - cols[0] >= min_width:
            # A margin of 10 px takes in the points drawn over the line's ends.
            top, bottom = max(group[0] - 10, 0), group[-1] + 11
            boxes.append((slice(top, bottom), slice(cols[0], cols[-1] + 1)))
    return boxes


def _mean_row(mask: np.ndarray, box: tuple[slice, slice], lo: float, hi: float) -> float:
    rows, cols = box
    part = mask[rows, cols]
    width = part.shape[1]
    ys, _ = np.nonzero(part[:, int(lo * width) : int(hi * width)])
    assert ys.size > 0
    return float(ys.mean())


def _count(mask: np.ndarray, box: tuple[slice, slice], lo: float, hi: float) -> int:
    rows, cols = box
    part = mask[rows, cols]
    width = part.shape[1]
    return int(part[:, int(lo * width) : int(hi * width)].sum())


def test_dashboard_renders_each_sites_chart_in_chromium(tmp_path: Path) -> None:
    app = create_app(
        tmp_path / "monitor.sqlite", config(), KEYS, ServiceSettings(refresh_seconds=0)
    )
    with threaded_server(app, free_port()) as url, httpx.Client(base_url=url, timeout=30) as http:
        post_references(http)
        severities = []
        for i in range(12):
            for site in KEYS:
                shift = 4.0 if site == "site_b" and i >= 8 else 0.0
                body = batch_body(f"b{i:02d}", seed=20 * i + len(site), shift=shift, day=i + 1)
                r = http.post(f"/sites/{site}/batches", json=body, headers=headers(site))
                assert r.status_code == 201, r.text
                if site == "site_b":
                    severities.append(r.json()["severity"])
        assert severities[8:] == ["severe"] * 4
        image = _screenshot(f"{url}/", tmp_path)

    series = _mask(image, SERIES_COLOUR)
    boxes = _chart_lines(series)
    assert len(boxes) == 2, f"expected the lines of 2 charts, found {len(boxes)}"
    stable, drifting = boxes  # sites in name order: site_a, then site_b
    for rows, cols in boxes:
        assert cols.stop - cols.start > 0.6 * image.shape[1]
        assert series[rows, cols].sum() > 500
    # Screen y grows downwards: the drifting line ends far above where it started.
    assert _mean_row(series, drifting, 0.0, 0.5) - _mean_row(series, drifting, 0.9, 1.0) > 50
    assert abs(_mean_row(series, stable, 0.0, 0.5) - _mean_row(series, stable, 0.9, 1.0)) < 40
    red = _mask(image, SEVERITY_COLOURS["severe"])
    green = _mask(image, SEVERITY_COLOURS["none"])
    # Severe threshold line is red across the whole width; the severe points add on the right.
    assert _count(red, drifting, 0.7, 1.0) > _count(red, drifting, 0.0, 0.3) + 100
    assert _count(green, drifting, 0.0, 0.5) > 5 * max(_count(green, drifting, 0.75, 1.0), 10)


def test_a_page_without_batches_draws_no_line(tmp_path: Path) -> None:
    app = create_app(
        tmp_path / "monitor.sqlite", config(), KEYS, ServiceSettings(refresh_seconds=0)
    )
    with threaded_server(app, free_port()) as url:
        post_references(httpx, url, timeout=30)
        image = _screenshot(f"{url}/", tmp_path)
    assert _chart_lines(_mask(image, SERIES_COLOUR)) == []
    # The empty charts are there: their axes and 'no batches yet' text are drawn in grey.
    assert _mask(image, "#616161", 10).sum() > 300
