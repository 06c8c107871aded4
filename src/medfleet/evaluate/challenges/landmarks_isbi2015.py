"""ISBI 2015 cephalometric landmark detection challenge: MRE and SDR.

Radial error of each landmark ``R = sqrt(dx^2 + dy^2)`` in mm, with the challenge's pixel
size of 0.1 mm (``pixel_mm``; ``use_table_spacing=true`` takes the ``spacing`` column of
``--gt`` / ``--meta`` instead); MRE = mean radial error +/- SD over all landmarks of all
images; SDR at z = 2, 2.5, 3 and 4 mm = fraction of landmarks with ``R <= z``. Per
landmark the MRE and SDR are reported too.

``--pred`` and ``--gt`` are landmark CSVs (``case_id, landmarks``) or folders in the
challenge's own layout (``AnnotationsByMD/400_senior/001.txt``: one ``x,y`` line per
landmark in pixels, the first ``n_landmarks`` lines read, the classification lines after
them ignored; the case id is the file name without ``.txt``).

Source: Wang et al., "A benchmark for comparison of dental radiography analysis algorithms",
Medical Image Analysis 31 (2016) 63-76 (ISBI 2015 grand challenge).
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

from medfleet.errors import InputFileError
from medfleet.evaluate.challenges._inputs import read_table
from medfleet.evaluate.challenges.base import Preset, PresetOption, PresetOutcome, PresetRun

__all__ = ["PRESET", "read_annotation_folder"]

RADII = (2.0, 2.5, 3.0, 4.0)
#: Landmarks per image in the challenge's annotation files.
N_LANDMARKS = 19


def read_annotation_folder(folder: Path, n_landmarks: int = N_LANDMARKS) -> dict[str, str]:
    r"""The landmarks of every ``NNN.txt`` of a folder in the challenge's annotation layout.

    Args:
        folder: A folder such as ``AnnotationsByMD/400_senior`` (or of predictions written
            the same way).
        n_landmarks: Lines of ``x,y`` read from the top of each file.

    Returns:
        Case id -> ``landmarks`` cell (``x,y;x,y;...`` in pixels), in file-name order.

    Raises:
        InputFileError: No ``.txt`` file, or a file with fewer than ``n_landmarks`` readable
            ``x,y`` lines (the message names the file and line).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "001.txt").write_text("835,996\n1473,1029\n1\n")
        >>> read_annotation_folder(d, n_landmarks=2)
        {'001': '835.0,996.0;1473.0,1029.0'}
    """
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
    if not files:
        raise InputFileError(
            f"{folder} holds no .txt landmark file (fix: a folder of NNN.txt files with one "
            "x,y line per landmark, or a CSV with case_id and landmarks)"
        )
    out: dict[str, str] = {}
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"{path} cannot be read as text: {exc}") from None
        points = []
        for number, line in enumerate(lines[:n_landmarks], start=1):
            parts = [t for t in line.replace(" ", ",").split(",") if t]
            try:
                x, y = (float(t) for t in parts)
            except ValueError:
                raise InputFileError(
                    f"{path} line {number}: {line.strip()!r} is not 'x,y' (fix: the first "
                    f"{n_landmarks} lines hold one landmark each)"
                ) from None
            points.append(f"{x!r},{y!r}")
        if len(points) < n_landmarks:
            raise InputFileError(
                f"{path} has {len(points)} landmark lines, not {n_landmarks} (fix: "
                "--preset-option n_landmarks=N, or complete the file)"
            )
        out[path.stem] = ";".join(points)
    return out


def _as_table(path: Path, n_landmarks: int, folder: Path) -> Path:
    """``path`` itself when it is a table; a folder of ``.txt`` files as a CSV in ``folder``."""
    if not path.is_dir():
        return path
    cells = read_annotation_folder(path, n_landmarks)
    table = folder / f"{len(list(folder.iterdir()))}.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "landmarks"])
        writer.writerows(cells.items())
    return table


def _run(run: PresetRun) -> PresetOutcome:
    from dataclasses import replace

    opts = run.options
    with tempfile.TemporaryDirectory(prefix="medfleet-isbi2015-") as tmp:
        folder = Path(tmp)
        pred = _as_table(Path(run.config.pred), opts["n_landmarks"], folder)
        gt = _as_table(Path(run.config.gt), opts["n_landmarks"], folder)
        return _score(replace(run, config=replace(run.config, pred=pred, gt=gt)))


def _score(run: PresetRun) -> PresetOutcome:
    from dataclasses import replace

    from medfleet.evaluate.runner.tables import score_table_task

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
        PresetOption(
            "n_landmarks",
            N_LANDMARKS,
            "Landmark lines read from each .txt file of a folder (the challenge's: 19).",
            "int",
        ),
    ),
    run=_run,
)
