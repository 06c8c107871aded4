"""ISBI 2015 cephalometric landmark detection challenge: MRE and SDR.

Radial error of each landmark ``R = sqrt(dx^2 + dy^2)`` in mm, with the challenge's pixel
size of 0.1 mm (``pixel_mm``; ``use_table_spacing=true`` takes the ``spacing`` column of
``--gt`` / ``--meta`` instead); MRE = mean radial error +/- SD over all landmarks of all
images; SDR at z = 2, 2.5, 3 and 4 mm = fraction of landmarks with ``R <= z``. Per
landmark the MRE and SDR are reported too.

Source: Wang et al., "A benchmark for comparison of dental radiography analysis algorithms",
Medical Image Analysis 31 (2016) 63-76 (ISBI 2015 grand challenge).
"""

from __future__ import annotations

from typing import Any

from medfleet.evaluate.challenges._inputs import read_table
from medfleet.evaluate.challenges.base import Preset, PresetOption, PresetOutcome, PresetRun

__all__ = ["PRESET"]

RADII = (2.0, 2.5, 3.0, 4.0)


def _run(run: PresetRun) -> PresetOutcome:
    from dataclasses import replace

    from medfleet.evaluate.run_tables import score_table_task

    opts = run.options
    config = replace(
        run.config, radii=RADII, sdr_comparison=opts["comparison"], landmark_reference=None
    )
    meta_rows: dict[str, dict[str, Any]] = {k: dict(v) for k, v in run.meta_rows.items()}
    if not opts["use_table_spacing"]:
        gt = read_table(config.gt, ("landmarks",), "--gt")
        spacing = f"{opts['pixel_mm']!r},{opts['pixel_mm']!r}"
        for case_id in gt.rows:
            meta_rows.setdefault(case_id, {})["spacing"] = spacing
    scored, cases = score_table_task(config, meta_rows)
    dataset = dict(scored.dataset)
    components = {k: v for k, v in dataset.items() if k != "per_landmark"}
    subgroups = {
        "landmark": {
            "groups": {
                k: {"n": v["n_points"], **v} for k, v in dataset.get("per_landmark", {}).items()
            }
        }
    }
    for row in scored.rows:
        row["error_mm"] = row.pop("error")
    return PresetOutcome(
        rows=scored.rows,
        metrics=["error_mm"],
        score=dataset["mre"],
        score_name="MRE (mm, lower is better); SDR at 2/2.5/3/4 mm in the components",
        components=components,
        cases=cases,
        group_by=None,
        worst={"error_mm": config.landmark_penalty},
        subgroups=subgroups,
        conventions={
            **scored.conventions,
            "pixel_mm": "table spacing" if opts["use_table_spacing"] else opts["pixel_mm"],
        },
        warnings=list(scored.warnings),
        higher_is_better={"error_mm": False},
    )


PRESET = Preset(
    name="landmarks-isbi2015",
    title="ISBI 2015 cephalometric landmarks",
    source="Wang et al., Medical Image Analysis 31 (2016) 63-76",
    task_types=("landmarks",),
    summary="MRE +/- SD (mm) and SDR at 2, 2.5, 3, 4 mm, pixel size 0.1 mm",
    options=(
        PresetOption("pixel_mm", 0.1, "Pixel size in mm (the challenge's images: 0.1).", "float"),
        PresetOption(
            "use_table_spacing", False, "Use the spacing column of --gt/--meta instead.", "bool"
        ),
        PresetOption(
            "comparison", "<=", "SDR success test: <= (default) or <.", choices=("<=", "<")
        ),
    ),
    run=_run,
)
