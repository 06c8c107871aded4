"""Cases per minute of ``medfleet evaluate`` on 3-label 3D segmentations, by worker count.

Writes N synthetic 3D cases (three nested labels, anisotropic spacing, NIfTI) with
perturbed predictions, then runs the evaluation runner (overlap + HD, HD95, ASSD, MASD,
NSD for every label) with 1 and 2 worker processes and prints cases per minute.

    python benchmarks/evaluate_throughput.py --cases 24 --shape 96,160,160
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from medfleet.data.io import write_nifti
from medfleet.evaluate import EvaluationConfig, run_evaluation


def make_case(
    rng: np.random.Generator, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A 3-label reference (organ, lesion, core) and a prediction with a shifted, noisy border."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    centre = np.array(shape) / 2 + rng.normal(0, 3, 3)
    radii = np.array(shape) * rng.uniform(0.25, 0.35, 3)
    d = (
        ((z - centre[0]) / radii[0]) ** 2
        + ((y - centre[1]) / radii[1]) ** 2
        + ((x - centre[2]) / radii[2]) ** 2
    )
    gt = np.zeros(shape, np.uint8)
    gt[d <= 1.0] = 1
    gt[d <= 0.35] = 2
    gt[d <= 0.1] = 3
    shift = rng.integers(-2, 3, 3)
    pred = np.roll(gt, tuple(int(s) for s in shift), axis=(0, 1, 2))
    noise = ndimage.binary_dilation(rng.random(shape) < 0.002, iterations=1)
    pred[noise & (pred == 0)] = 1
    return gt, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--shape", default="96,160,160", help="z,y,x voxels")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    spacing = (2.5, 0.8, 0.8)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.cases):
            gt, pred = make_case(rng, shape)  # type: ignore[arg-type]
            write_nifti(root / "gt" / f"case{i:03d}.nii.gz", gt, spacing)
            write_nifti(root / "pred" / f"case{i:03d}.nii.gz", pred, spacing)
        command = "python benchmarks/evaluate_throughput.py"
        print(f"command: {command} --cases {args.cases} --shape {args.shape}")
        print(f"{args.cases} cases of {shape} voxels, spacing {spacing} mm, labels 1-3")
        print("| workers | seconds | cases per minute |")
        print("|---:|---:|---:|")
        for workers in (int(w) for w in args.workers.split(",")):
            config = EvaluationConfig(
                task_type="segmentation",
                pred=root / "pred",
                gt=root / "gt",
                out=root / f"out{workers}",
                workers=workers,
                report=False,
            )
            start = time.perf_counter()
            result = run_evaluation(config)
            seconds = time.perf_counter() - start
            assert len({r["case_id"] for r in result.rows}) == args.cases
            print(f"| {workers} | {seconds:.1f} | {60 * args.cases / seconds:.0f} |")


if __name__ == "__main__":
    main()
