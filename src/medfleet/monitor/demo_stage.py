"""The demo's monitoring stage: three sites' model outputs monitored, one site drifts.

:func:`medfleet.demo.default_stages` registers it with a scorer that wraps the model the
demo's ``train`` stage trained, so the monitor watches that model's own outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medfleet.utils.progress import ProgressCallback


class MonitorStage:
    """Three sites' output streams (site_c drifts): schemes evaluated, SQLite monitor run.

    The stage simulates the streams, scores the reference schemes, and runs the
    SQLite-backed monitor over the streams so ``monitor.sqlite`` holds a real history.

    Writes under ``out/monitor``: ``report.html``, ``table.csv``/``table.json``, the
    streams with ``streams/monitor.yaml``, and ``streams/monitor.sqlite``.
    """

    name = "monitor"
    description = "drift monitoring of three sites' outputs (one drifts)"

    def __init__(self, scorer_factory: Callable[[Any], Any] | None = None) -> None:
        """Create the stage.

        Args:
            scorer_factory: Called with the demo context; returns the model to monitor as a
                function ``images (n, H, W) -> probabilities (n, C)`` over the lesion
                classification phantoms, or None for the built-in numpy scorer.
        """
        self.scorer_factory = scorer_factory

    def run(self, ctx: Any, progress: ProgressCallback) -> dict[str, Any]:
        """Run the simulation and the monitor; return the quality table and the alerts."""
        from medfleet.monitor.config import MonitorConfig
        from medfleet.monitor.run import run_config
        from medfleet.monitor.simulate import SimulationConfig, SiteScenario, run_simulation

        quick = bool(getattr(ctx, "quick", False))
        cfg = SimulationConfig(
            sites=3,
            batches=12 if quick else 24,
            batch_size=100 if quick else 200,
            cases=60 if quick else 150,
            reference_size=300 if quick else 600,
            seed=int(getattr(ctx, "seed", 0)),
            scenarios=[
                # noise rather than gain: a model that normalises each image (z-score), like
                # the demo's unified model, is blind to a pure gain change by construction
                SiteScenario(
                    site="site_c", shift="noise", severity="severe", onset=6 if quick else 12
                )
            ],
            schemes=["site", "production", "adaptive", "centralised"],
        )
        out = ctx.out / "monitor"
        scorer = self.scorer_factory(ctx) if self.scorer_factory is not None else None
        result = run_simulation(cfg, out, scorer=scorer, progress=progress)
        monitor_cfg = MonitorConfig.load(result.files["monitor_config"])
        summary = run_config(monitor_cfg)
        drifted = "site_c"
        alerts = [
            {"site": r.site, "batch_id": r.batch_id, "severity": r.severity.value}
            for r in summary.reports
            if r.alert
        ]
        return {
            "scorer": "demo model" if scorer is not None else "built-in phantom scorer",
            "report": result.files["report"],
            "db": summary.db,
            "table": result.table(),
            "alerts": alerts,
            "drifted_site": drifted,
            "drift_detected": any(a["site"] == drifted for a in alerts),
            "false_alarm_sites": sorted({a["site"] for a in alerts} - {drifted}),
        }
