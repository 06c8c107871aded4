"""Surface-metric benchmark: medfleet against MONAI, MedPy and surface-distance, side by side.

Every tool scores the same synthetic 3D pairs in one process and computes
HD, HD95, ASSD and NSD (tolerance 1 mm) in its own convention; medfleet is timed
in the matching convention for each comparison, and the values are compared:

* MONAI (``compute_hausdorff_distance``, with ``percentile=95``,
  ``compute_average_surface_distance(symmetric=True)``, ``compute_surface_dice``)
  <-> medfleet ``surface="border", percentile_method="max-directed"``;
* MedPy (``hd``, ``hd95``, ``assd``; it has no NSD)
  <-> medfleet ``surface="border", percentile_method="pooled"``;
* surface-distance (``compute_surface_distances`` once, then
  ``compute_robust_hausdorff``, the pooled area-weighted mean, and
  ``compute_surface_dice_at_tolerance``)
  <-> medfleet ``surface="corner-area", percentile_method="area-weighted"``.

Times are the median of ``--repeats`` runs (after a warm-up on a tiny case).
Peak memory is measured for each tool in a fresh child process: the rise of the
resident set size (VmHWM after resetting it, minus VmRSS before the call), which
counts numpy, scipy and torch allocations alike.

Run ``python benchmarks/surface_metrics.py --help`` for the options;
``--quick`` uses quarter-size volumes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.evaluate.metrics.surface import surface_metrics
from medfleet.utils.atomic import write_text_atomic

NSD_TAU = 1.0
METRIC_KEYS = ("hd", "hd95", "assd", "nsd")


@dataclass(frozen=True)
class CaseSpec:
    """A synthetic organ pair: ellipsoid with a smooth random surface, prediction perturbed."""

    name: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    radii: tuple[float, float, float]
    strays: int = 0
    labels: int = 1
    description: str = ""
    pred_shift: tuple[float, float, float] = (1.0, -2.0, 1.5)
    pred_scale: float = 1.02
    pred_same_texture: bool = False


CASES: dict[str, CaseSpec] = {
    "anisotropic": CaseSpec(
        "anisotropic",
        (160, 256, 256),
        (2.5, 0.9, 0.9),
        (40.0, 70.0, 60.0),
        description="160x256x256 voxels (z, y, x), spacing 2.5 x 0.9 x 0.9 mm, one organ",
    ),
    "large": CaseSpec(
        "large",
        (300, 512, 512),
        (1.5, 0.8, 0.8),
        (110.0, 190.0, 170.0),
        description="300x512x512 voxels, spacing 1.5 x 0.8 x 0.8 mm, a large organ",
    ),
    "speckle": CaseSpec(
        "speckle",
        (160, 256, 256),
        (2.5, 0.9, 0.9),
        (40.0, 70.0, 60.0),
        strays=400,
        description="as anisotropic, plus 400 stray voxels and 6 small blobs far from the organ",
    ),
    "close": CaseSpec(
        "close",
        (160, 256, 256),
        (2.5, 0.9, 0.9),
        (40.0, 70.0, 60.0),
        description="as anisotropic, but a close prediction (same surface texture, shifted by "
        "0.3-0.6 voxel, scaled by 1.005)",
        pred_shift=(0.3, -0.6, 0.4),
        pred_scale=1.005,
        pred_same_texture=True,
    ),
}


def _quick(spec: CaseSpec) -> CaseSpec:
    return replace(
        spec,
        shape=tuple(max(16, n // 2) for n in spec.shape),
        radii=tuple(r / 2 for r in spec.radii),
        strays=spec.strays // 2,
        description=spec.description + " (quick: half size per axis)",
    )


def _implicit(
    spec: CaseSpec, rng: np.random.Generator, center_shift: np.ndarray, scale: float
) -> np.ndarray:
    """Boolean mask of ``|x / r| - 1 + smooth noise < 0``, built slab by slab in float32."""
    shape = spec.shape
    center = np.array(shape, dtype=np.float64) / 2 + center_shift
    radii = np.array(spec.radii) * scale
    waves = [
        (rng.normal(size=3) * 0.06, rng.uniform(0, 2 * np.pi), rng.uniform(0.02, 0.05))
        for _ in range(6)
    ]
    mask = np.zeros(shape, dtype=bool)
    y = ((np.arange(shape[1]) - center[1]) / radii[1]).astype(np.float32)[None, :, None]
    x = ((np.arange(shape[2]) - center[2]) / radii[2]).astype(np.float32)[None, None, :]
    yy_raw = np.arange(shape[1], dtype=np.float32)[None, :, None]
    xx_raw = np.arange(shape[2], dtype=np.float32)[None, None, :]
    step = 16
    for z0 in range(0, shape[0], step):
        zr = np.arange(z0, min(z0 + step, shape[0]), dtype=np.float32)[:, None, None]
        z = (zr - np.float32(center[0])) / np.float32(radii[0])
        f = np.sqrt(z * z + y * y + x * x) - np.float32(1.0)
        for k, phase, amp in waves:
            f += np.float32(amp) * np.sin(
                np.float32(k[0]) * zr
                + np.float32(k[1]) * yy_raw
                + np.float32(k[2]) * xx_raw
                + np.float32(phase)
            )
        mask[z0 : z0 + step] = f < 0
    return mask


def build_case(spec: CaseSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (pred, gt) boolean volumes for ``spec``."""
    gt = _implicit(spec, np.random.default_rng(seed), np.zeros(3), 1.0)
    texture_seed = seed if spec.pred_same_texture else seed + 1
    pred = _implicit(
        spec, np.random.default_rng(texture_seed), np.array(spec.pred_shift), spec.pred_scale
    )
    if spec.strays:
        stray_rng = np.random.default_rng(seed + 2)
        far = _far_from(gt, spec)
        pred.flat[stray_rng.choice(far, size=spec.strays, replace=False)] = True
        for _ in range(6):  # small blobs near the volume corners
            corner = [int(stray_rng.choice([2, n - 6])) for n in spec.shape]
            pred[
                corner[0] : corner[0] + 3, corner[1] : corner[1] + 3, corner[2] : corner[2] + 3
            ] = True
    return pred, gt


def _far_from(gt: np.ndarray, spec: CaseSpec) -> np.ndarray:
    """Flat indices of voxels outside the organ's bounding box enlarged by 10 voxels."""
    nz = [np.flatnonzero(gt.any(axis=tuple(j for j in range(3) if j != i))) for i in range(3)]
    lo = [max(0, int(a[0]) - 10) for a in nz]
    hi = [min(n, int(a[-1]) + 11) for a, n in zip(nz, spec.shape, strict=True)]
    outside = np.ones(spec.shape, dtype=bool)
    outside[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = False
    return np.flatnonzero(outside)


# ---------------------------------------------------------------- tools


def run_medfleet(pred, gt, spacing, surface: str, percentile_method: str) -> dict[str, float]:
    r = surface_metrics(
        pred,
        gt,
        spacing,
        labels=[1],
        metrics=("hd", "hd95", "assd", "nsd"),
        nsd_tolerances=(NSD_TAU,),
        surface=surface,
        percentile_method=percentile_method,
    )
    return {
        "hd": r.value("hd", 1),
        "hd95": r.value("hd95", 1),
        "assd": r.value("assd", 1),
        "nsd": r.value(f"nsd_{NSD_TAU:g}mm", 1),
    }


def prepare_monai(pred, gt):
    import torch

    return torch.from_numpy(pred[None, None]), torch.from_numpy(gt[None, None])


def run_monai(inputs, spacing) -> dict[str, float]:
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    p, g = inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(p, g, include_background=True, spacing=spacing)
        hd95 = compute_hausdorff_distance(
            p, g, include_background=True, percentile=95, spacing=spacing
        )
        assd = compute_average_surface_distance(
            p, g, include_background=True, symmetric=True, spacing=spacing
        )
        nsd = compute_surface_dice(p, g, [NSD_TAU], include_background=True, spacing=spacing)
    return {"hd": hd.item(), "hd95": hd95.item(), "assd": assd.item(), "nsd": nsd.item()}


def run_medpy(pred, gt, spacing) -> dict[str, float]:
    from medpy.metric import binary

    return {
        "hd": float(binary.hd(pred, gt, spacing)),
        "hd95": float(binary.hd95(pred, gt, spacing)),
        "assd": float(binary.assd(pred, gt, spacing)),
        "nsd": math.nan,
    }


def run_deepmind(pred, gt, spacing) -> dict[str, float]:
    import surface_distance as sd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = sd.compute_surface_distances(gt, pred, spacing)
        areas = np.concatenate([d["surfel_areas_gt"], d["surfel_areas_pred"]])
        dists = np.concatenate([d["distances_gt_to_pred"], d["distances_pred_to_gt"]])
        return {
            "hd": float(sd.compute_robust_hausdorff(d, 100)),
            "hd95": float(sd.compute_robust_hausdorff(d, 95)),
            "assd": float(np.sum(areas * dists) / np.sum(areas)),
            "nsd": float(sd.compute_surface_dice_at_tolerance(d, NSD_TAU)),
        }


@dataclass(frozen=True)
class Tool:
    name: str
    convention: str
    medfleet_surface: str
    medfleet_percentile: str
    slow: bool


TOOLS: dict[str, Tool] = {
    "monai": Tool("MONAI", "border, max-directed", "border", "max-directed", slow=False),
    "medpy": Tool("MedPy", "border, pooled", "border", "pooled", slow=True),
    "deepmind": Tool(
        "surface-distance", "corner-area, area-weighted", "corner-area", "area-weighted", slow=True
    ),
}


def tool_call(
    tool: str, pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]
) -> Callable[[], dict[str, float]]:
    """A zero-argument callable that runs ``tool`` on the prepared inputs."""
    if tool == "monai":
        inputs = prepare_monai(pred, gt)
        return lambda: run_monai(inputs, spacing)
    if tool == "medpy":
        return lambda: run_medpy(pred, gt, spacing)
    if tool == "deepmind":
        return lambda: run_deepmind(pred, gt, spacing)
    if tool.startswith("medfleet:"):
        _, surface, method = tool.split(":")
        return lambda: run_medfleet(pred, gt, spacing, surface, method)
    raise ValueError(tool)


# ---------------------------------------------------------------- measurement


def _interleaved_times(
    first: Callable[[], dict[str, float]],
    second: Callable[[], dict[str, float]] | None,
    repeats_first: int,
    repeats_second: int,
) -> tuple[float, dict[str, float], float, dict[str, float]]:
    """Median times of two calls run alternately, so load changes hit both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    values: list[dict[str, float]] = [{}, {}]
    for i in range(max(repeats_first, repeats_second if second else 0)):
        for j, (fn, n) in enumerate(((first, repeats_first), (second, repeats_second))):
            if fn is None or i >= n:
                continue
            gc.collect()
            t0 = time.perf_counter()
            values[j] = fn()
            times[j].append(time.perf_counter() - t0)
    medians = [statistics.median(t) if t else math.nan for t in times]
    return medians[0], values[0], medians[1], values[1]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release_free_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _memory_probe(spec: CaseSpec, tool: str, seed: int, queue: Any) -> None:
    """Child process: peak RSS rise (MB) of one call of ``tool`` on the case."""
    try:
        warm_pred, warm_gt = build_case(_tiny(spec), seed)
        tool_call(tool, warm_pred, warm_gt, spec.spacing)()  # import and initialise lazily
        pred, gt = build_case(spec, seed)
        fn = tool_call(tool, pred, gt, spec.spacing)
        _release_free_memory()
        before = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        fn()
        peak = _status_kb("VmHWM")
        queue.put(max(0, peak - before) / 1024.0)
    except Exception as err:  # report, never hang the parent
        queue.put(f"error: {err}")


def _tiny(spec: CaseSpec) -> CaseSpec:
    return replace(spec, shape=(24, 24, 24), radii=(6.0, 7.0, 8.0), strays=0)


def measure_memory(spec: CaseSpec, tool: str, seed: int, timeout: float) -> float | str:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_probe, args=(spec, tool, seed, queue))
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        result = "timeout"
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
    return result


# ---------------------------------------------------------------- report


def _fmt(v: float, digits: int = 4) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", default="anisotropic,large,speckle,close", help=f"comma list of {list(CASES)}"
    )
    parser.add_argument("--tools", default="monai,medpy,deepmind", help="peers, comma list")
    parser.add_argument("--quick", action="store_true", help="half-size volumes, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument(
        "--slow-repeats", type=int, default=1, help="timed runs for MedPy, DeepMind"
    )
    parser.add_argument(
        "--medpy-max-voxels",
        type=float,
        default=float("inf"),
        help="skip MedPy on cases larger than this many voxels",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--memory-timeout", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown here")
    args = parser.parse_args(argv)

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    repeats = 1 if args.quick else args.repeats
    specs = [CASES[c] if not args.quick else _quick(CASES[c]) for c in args.cases.split(",")]
    tools = [t for t in args.tools.split(",") if t]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    header = [
        f"command: {command}",
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average at start {load[0]:.2f}, Python {platform.python_version()}",
        f"timing: median of {repeats} run(s) (MedPy, surface-distance: {args.slow_repeats}); "
        f"NSD tolerance {NSD_TAU:g} mm",
    ]
    print("\n".join(header), flush=True)

    # Warm-up: import every tool and run it once on a tiny case.
    tiny = _tiny(specs[0])
    tp, tg = build_case(tiny, args.seed)
    for t in [*tools, "medfleet:border:max-directed"]:
        tool_call(t, tp, tg, tiny.spacing)()

    rows: list[dict[str, Any]] = []
    for spec in specs:
        pred, gt = build_case(spec, args.seed)
        n_vox = int(np.prod(spec.shape))
        print(
            f"\n== {spec.name}: {spec.description}; gt {int(gt.sum())} voxels, "
            f"pred {int(pred.sum())} voxels",
            flush=True,
        )
        mem_cache: dict[str, float | str] = {}
        for t in tools:
            tool = TOOLS[t]
            mf_key = f"medfleet:{tool.medfleet_surface}:{tool.medfleet_percentile}"
            skip_peer = t == "medpy" and n_vox > args.medpy_max_voxels
            if skip_peer:
                print(f"   {tool.name}: skipped (--medpy-max-voxels {args.medpy_max_voxels:g})")
            mf_time, mf_values, peer_time, peer_values = _interleaved_times(
                tool_call(mf_key, pred, gt, spec.spacing),
                None if skip_peer else tool_call(t, pred, gt, spec.spacing),
                repeats,
                args.slow_repeats if tool.slow else repeats,
            )
            if skip_peer:
                peer_values = dict.fromkeys(METRIC_KEYS, math.nan)
            diffs = [
                abs(peer_values[k] - mf_values[k])
                for k in ("hd", "hd95", "assd")
                if not math.isnan(peer_values[k])
            ]
            nsd_diff = abs(peer_values["nsd"] - mf_values["nsd"])
            if not args.no_memory:
                if mf_key not in mem_cache:
                    mem_cache[mf_key] = measure_memory(spec, mf_key, args.seed, args.memory_timeout)
                if not math.isnan(peer_time):
                    mem_cache[t] = measure_memory(spec, t, args.seed, args.memory_timeout)
            row = {
                "case": spec.name,
                "peer": tool.name,
                "convention": tool.convention,
                "medfleet_s": mf_time,
                "peer_s": peer_time,
                "ratio": peer_time / mf_time,
                "medfleet_mb": mem_cache.get(mf_key, math.nan),
                "peer_mb": mem_cache.get(t, math.nan),
                "values": peer_values,
                "medfleet_values": mf_values,
                "max_diff_mm": max(diffs) if diffs else math.nan,
                "nsd_diff": nsd_diff,
            }
            rows.append(row)
            print(
                f"   vs {tool.name:16s} [{tool.convention}]: medfleet {mf_time:8.3f} s, "
                f"{tool.name} {_fmt(peer_time, 3)} s, ratio {_fmt(row['ratio'], 1)}x; "
                f"memory medfleet {_fmt(row['medfleet_mb'], 0)} MB, "
                f"{tool.name} {_fmt(row['peer_mb'], 0)} MB; "
                f"max |diff| {_fmt(row['max_diff_mm'], 6)} mm, NSD |diff| {_fmt(nsd_diff, 6)}",
                flush=True,
            )
            print(
                "      values (hd, hd95, assd, nsd): medfleet "
                + ", ".join(_fmt(mf_values[k]) for k in METRIC_KEYS)
                + f"; {tool.name} "
                + ", ".join(_fmt(peer_values[k]) for k in METRIC_KEYS),
                flush=True,
            )
        del pred, gt
        gc.collect()

    table = render_markdown(rows, header, specs)
    print("\n" + table)
    if args.markdown:
        write_text_atomic(args.markdown, table + "\n")
        print(f"wrote {args.markdown}")
    return 0


def render_markdown(rows: list[dict[str, Any]], header: list[str], specs: list[CaseSpec]) -> str:
    lines = ["```", *header, "```", "", "Cases:", ""]
    lines += [f"- `{s.name}`: {s.description}" for s in specs]
    lines += [
        "",
        "| case | peer (convention) | medfleet s | peer s | peer / medfleet | "
        "medfleet MB | peer MB | HD | HD95 | ASSD | NSD@1mm | max abs diff mm | NSD abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r["medfleet_values"]
        lines.append(
            f"| {r['case']} | {r['peer']} ({r['convention']}) | {_fmt(r['medfleet_s'], 3)} | "
            f"{_fmt(r['peer_s'], 3)} | {_fmt(r['ratio'], 1)}x | {_fmt(r['medfleet_mb'], 0)} | "
            f"{_fmt(r['peer_mb'], 0)} | {_fmt(v['hd'], 3)} | {_fmt(v['hd95'], 3)} | "
            f"{_fmt(v['assd'], 3)} | {_fmt(v['nsd'], 4)} | {_fmt(r['max_diff_mm'], 6)} | "
            f"{_fmt(r['nsd_diff'], 6)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
