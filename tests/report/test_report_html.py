"""Report building blocks, figures and the report.html of plain evaluation runs."""

from __future__ import annotations

import base64
import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfleet.evaluate.runner import EvaluationConfig, run_evaluation
from medfleet.evaluate.runner.report import higher_is_better, primary_metric
from medfleet.report import Figure, Report, Table, Text, render_html, write_report
from medfleet.report.plots import (
    bland_altman_panels,
    box_plots,
    reliability_diagram,
    subgroup_bar_panels,
)


def _images(html: str) -> list[Image.Image]:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in found]


def test_render_escapes_text_and_embeds_png(tmp_path: Path) -> None:
    report = Report("<script>x</script>", {"cases": 2})
    sec = report.section("A & B")
    sec.add(Text("note <b>"))
    sec.add(Table(["metric", "mean"], [["dice", 0.912345], ["hd", float("inf")], ["x", None]]))
    sec.add(Figure(box_plots([("dice", {"1": [0.9, 0.8, float("inf")]})]), "boxes"))
    path = write_report(report, tmp_path / "r.html")
    html = path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "A &amp; B" in html and "note &lt;b&gt;" in html
    assert "<td>0.9123</td>" in html and "<td>inf</td>" in html and "<td>-</td>" in html
    images = _images(html)
    assert len(images) == 1 and images[0].format == "PNG"
    assert "http" not in html.lower()  # nothing fetched from the network


def test_figures_are_valid_pngs() -> None:
    pngs = [
        reliability_diagram([0.55, 0.75, 0.95], [0.5, 0.8, 0.9], [3, 0, 10]),
        bland_altman_panels([("HC", [100, 120, 140], [101, 119, float("nan")])]),
        subgroup_bar_panels(
            [{"groups": ["a", "b"], "values": [0.8, float("nan")], "sizes": [4, 0], "title": "t"}]
        ),
    ]
    for png in pngs:
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size[0] > 100


def test_metric_direction_and_primary_metric() -> None:
    assert higher_is_better("dice") and higher_is_better("nsd_2mm") and higher_is_better("sdr_2")
    assert not higher_is_better("hd95") and not higher_is_better("abs_error")
    assert higher_is_better("crps", {"crps": True})
    summary = {"task_type": "regression", "metrics": {"all": {"error": {}, "abs_error": {}}}}
    assert primary_metric(summary) == "abs_error"


def _regression_run(tmp_path: Path) -> tuple[Path, list[float]]:
    truth = [10.0, 12.0, 9.0, 15.0, 11.0, 13.0]
    pred = [10.5, 11.0, 9.0, 18.0, 11.5, 12.0]
    sites = ["a", "a", "b", "b", "b", "c"]
    with open(tmp_path / "gt.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "value"])
        w.writerows([[f"c{i}", v] for i, v in enumerate(truth)])
    with open(tmp_path / "pred.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "value"])
        w.writerows([[f"c{i}", v] for i, v in enumerate(pred)])
    with open(tmp_path / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "site"])
        w.writerows([[f"c{i}", s] for i, s in enumerate(sites)])
    out = tmp_path / "out"
    run_evaluation(
        EvaluationConfig(
            "regression",
            tmp_path / "pred.csv",
            tmp_path / "gt.csv",
            out,
            meta=tmp_path / "meta.csv",
        )
    )
    return out, [abs(p - t) for p, t in zip(pred, truth, strict=True)]


def test_regression_report_sections(tmp_path: Path) -> None:
    from medfleet.evaluate.stats.bootstrap import bootstrap_ci

    out, errors = _regression_run(tmp_path)
    html = (out / "report.html").read_text()
    for title in (
        "Summary",
        "Distributions",
        "Subgroups",
        "Agreement (Bland-Altman)",
        "Worst cases",
        "Conventions",
    ):
        assert f"<h2>{title}" in html
    ci = bootstrap_ci(errors, n_resamples=2000, seed=0)
    assert f"[{ci.low:.4g}, {ci.high:.4g}]" in html
    worst = html[html.index("Worst cases") :]
    order = [worst.index(f"<td>c{i}</td>") for i in (3, 1, 5)]  # errors 3, 1, 1
    assert order == sorted(order)
    sub = html[html.index("<h2>Subgroups") : html.index("<h2>Agreement")]
    assert "<td>b</td><td>3</td>" in sub  # the site b group with its size
    assert len(_images(html)) == 3


def test_classification_report_has_a_reliability_diagram(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 20)
    p1 = np.clip(truth * 0.5 + rng.random(20) * 0.5, 0, 1)
    with open(tmp_path / "gt.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "label"])
        w.writerows([[f"c{i}", t] for i, t in enumerate(truth)])
    with open(tmp_path / "pred.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "prob_0", "prob_1"])
        w.writerows([[f"c{i}", 1 - p, p] for i, p in enumerate(p1)])
    result = run_evaluation(
        EvaluationConfig(
            "classification", tmp_path / "pred.csv", tmp_path / "gt.csv", tmp_path / "out"
        )
    )
    assert result.report_html == tmp_path / "out" / "report.html"
    html = result.report_html.read_text()
    assert "<h2>Calibration" in html and "Reliability diagram" in html


def test_report_can_be_switched_off(tmp_path: Path) -> None:
    out, _ = _regression_run(tmp_path)
    (out / "report.html").unlink()
    result = run_evaluation(
        EvaluationConfig(
            "regression", tmp_path / "pred.csv", tmp_path / "gt.csv", out, report=False
        )
    )
    assert result.report_html is None and not (out / "report.html").exists()


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_runs_still_render(tmp_path: Path, n: int) -> None:
    report = Report("tiny")
    values = [0.5] * n
    report.section("s").add(Figure(box_plots([("m", {"g": values})])))
    assert "<img" in render_html(report)
