"""Start-up of the ``medfleet`` CLI: ``--help``, ``evaluate --help`` and a small ``evaluate``.

Times, as separate processes with the same virtual environment, the median wall time of

* ``medfleet --help``,
* ``medfleet evaluate --help``,
* ``medfleet evaluate`` on N synthetic 3D segmentation cases (two nested labels, written as
  ``.nii.gz`` with nibabel; default six cases of 120x200x200 voxels), with its default
  report.html and with ``--no-report``,

and splits each into the Python interpreter's own start-up (``python -c pass``), the imports
(the top-level entries of ``-X importtime``, summed) and, for ``evaluate``, the scoring
(``run_evaluation`` on the same cases in one process, timed after a first call has imported
everything it needs); what is left is argument parsing, printing and exit.

With ``--baseline REV`` the same runs are made for a git revision checked out with
``git worktree add`` into a temporary folder (``PYTHONPATH=<worktree>/src``; the worktree is
removed afterwards), so both columns come from one session on one machine.

    python benchmarks/cli_startup.py --baseline 4473ed4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
LABELS = (
    "medfleet --help",
    "medfleet evaluate --help",
    "medfleet evaluate",
    "medfleet evaluate --no-report",
)

SCORE_IN_PROCESS = """
import json, sys, time
from pathlib import Path
from medfleet.evaluate.runner import EvaluationConfig, run_evaluation
root, repeats, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def run(i):
    config = EvaluationConfig(task_type="segmentation", pred=root / "pred", gt=root / "gt",
                              out=root / f"{mode}{i}", report=mode == "report")
    start = time.perf_counter()
    run_evaluation(config)
    return time.perf_counter() - start
run(0)  # imports whatever scoring and the report need
print(json.dumps([run(i + 1) for i in range(repeats)]))
"""


def write_cases(root: Path, cases: int, shape: tuple[int, int, int], seed: int = 0) -> None:
    """Reference and predicted masks (ellipsoid organ with a core, shifted prediction)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    for i in range(cases):
        centre = np.array(shape) / 2 + rng.normal(0, 3, 3)
        radii = np.array(shape) * rng.uniform(0.25, 0.35, 3)
        d = sum(((axis - c) / r) ** 2 for axis, c, r in zip((z, y, x), centre, radii, strict=True))
        gt = np.zeros(shape, np.uint8)
        gt[d <= 1.0] = 1
        gt[d <= 0.3] = 2
        shift = tuple(int(s) for s in rng.integers(-2, 3, 3))
        pred = np.roll(gt, shift, axis=(0, 1, 2))
        for name, mask in (("gt", gt), ("pred", pred)):
            (root / name).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(mask, affine), root / name / f"case{i:03d}.nii.gz")


def wall(command: Sequence[str], env: dict[str, str]) -> float:
    """Seconds one run of ``command`` takes (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def import_seconds(command: Sequence[str], env: dict[str, str]) -> float:
    """Seconds of imports in one run (sum of the top-level ``-X importtime`` entries)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *command[1:]],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    total = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        if not name[1:].startswith(" "):  # top level: one space after the bar
            total += int(cumulative)
    return total / 1e6


def median_of(repeats: int, run: Callable[[], float]) -> float:
    """Median of ``repeats`` calls of ``run``."""
    return statistics.median(run() for _ in range(repeats))


def measure(src: Path, data: Path, repeats: int) -> dict[str, dict[str, float]]:
    """Every figure for the medfleet whose sources are in ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    found = subprocess.run(
        [sys.executable, "-c", "import medfleet; print(medfleet.__file__)"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"PYTHONPATH={src} does not take effect: medfleet comes from {found}")
    script = Path(sys.executable).with_name("medfleet")
    medfleet = [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m"]
    if not script.is_file():
        medfleet.append("medfleet")
    startup = median_of(repeats, lambda: wall([sys.executable, "-c", "pass"], env))
    outs = iter(range(10**6))

    def evaluate() -> list[str]:
        out = data / f"cli{next(outs)}"
        task = ["--task-type", "segmentation", "--pred", str(data / "pred"), "--gt"]
        return [*medfleet, "evaluate", *task, str(data / "gt"), "--out", str(out)]

    commands = {
        "medfleet --help": lambda: [*medfleet, "--help"],
        "medfleet evaluate --help": lambda: [*medfleet, "evaluate", "--help"],
        "medfleet evaluate": evaluate,
        "medfleet evaluate --no-report": lambda: [*evaluate(), "--no-report"],
    }
    figures: dict[str, dict[str, float]] = {}
    for label, make in commands.items():
        figures[label] = {
            "wall": median_of(repeats, lambda make=make: wall(make(), env)),
            "startup": startup,
            "imports": median_of(repeats, lambda make=make: import_seconds(make(), env)),
        }
    for label, mode in (
        ("medfleet evaluate", "report"),
        ("medfleet evaluate --no-report", "plain"),
    ):
        scored = subprocess.run(
            [sys.executable, "-c", SCORE_IN_PROCESS, str(data), str(repeats), mode],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        figures[label]["scoring"] = statistics.median(json.loads(scored.stdout))
    return figures


def baseline_tree(revision: str, into: Path) -> Path:
    """Check ``revision`` out into ``into`` as a detached git worktree."""
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(into), revision],
        check=True,
    )
    return into


def remove_tree(path: Path) -> None:
    """Remove a worktree made by :func:`baseline_tree` (and its git bookkeeping)."""
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False
    )
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)


def main() -> None:
    """Measure, then print one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--shape", default="120,200,200", help="z,y,x voxels")
    parser.add_argument("--baseline", help="git revision to compare with (e.g. 4473ed4)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory(prefix="medfleet-startup-") as tmp:
        root = Path(tmp)
        data = root / "cases"
        write_cases(data, args.cases, shape)  # type: ignore[arg-type]
        targets = {"working tree": REPO / "src"}
        tree = None
        try:
            if args.baseline:
                tree = baseline_tree(args.baseline, root / "baseline")
                targets = {args.baseline: tree / "src", **targets}
            results = {name: measure(src, data, args.repeats) for name, src in targets.items()}
        finally:
            if tree is not None:
                remove_tree(tree)
    command = "python benchmarks/cli_startup.py" + (
        f" --baseline {args.baseline}" if args.baseline else ""
    )
    print(f"command: {command} (repeats {args.repeats})")
    print(f"evaluate: {args.cases} cases of {shape} voxels, labels 1-2")
    print("| command | tree | wall s | python start-up s | imports s | scoring s | rest s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label in LABELS:
        for name, figures in results.items():
            f = figures[label]
            scoring = f.get("scoring", 0.0)
            rest = f["wall"] - f["startup"] - f["imports"] - scoring
            shown = f"{scoring:.2f}" if "scoring" in f else "-"
            print(
                f"| `{label}` | {name} | {f['wall']:.2f} | {f['startup']:.2f} | "
                f"{f['imports']:.2f} | {shown} | {rest:.2f} |"
            )


if __name__ == "__main__":
    main()
