"""Federated fine-tuning on phantoms with strong site shift and non-IID labels.

Arms, all on the same model, batch, learning rate and number of local optimiser steps
(:func:`medfleet.federated.study.run_study`; each site does ``rounds x local-steps`` steps,
centralised training the sum over sites):

* ``local-only``: each site trains alone on its own rows;
* ``centralised``: one model on the pooled rows (the upper reference);
* ``fedavg-full``: FedAvg, every weight travels (full fine-tuning);
* ``fedavg-lora``: LoRA-FedAvg on every block (frozen backbone; LoRA and heads travel);
* ``dual-lora``: DualLoRA on the last two blocks (the global LoRA travels; the local LoRA
  and the private heads stay at the site).

Data: ``lesion_cls`` phantoms (benign / malignant / normal) from 3 or 4 sites whose
acquisition differs strongly (gain, gamma, offset, speckle, noise, blur, pixel spacing) and
whose label distributions differ (each site dominated by one class: 70 % / 20 % / 10 %).

Reported: per-site balanced accuracy on each site's test split (a site is scored by the
model it would use), its mean over sites, the pooled value with its bootstrap interval,
and the bytes per round (both directions, all clients, measured on the serialized Flower
messages). Targets: DualLoRA's bytes per round <= 1 % of FedAvg-full's, and DualLoRA's
mean per-site balanced accuracy >= FedAvg-LoRA's.

Run ``python benchmarks/federated.py --help``; ``--quick`` uses the tiny test backbone and
fewer steps (a smoke run, not a benchmark).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

CLASS_MIX = ([0.7, 0.2, 0.1], [0.1, 0.7, 0.2], [0.2, 0.1, 0.7], [0.45, 0.1, 0.45])
"""Per-site class weights (benign, malignant, normal): non-IID labels."""

SHIFTS: tuple[dict[str, Any], ...] = (
    {"vendor": "Aurora", "gain": 0.75, "gamma": 1.4, "offset": 0.0, "speckle": 0.05,
     "noise": 0.01, "blur": 0.4, "spacing_scale": 0.85},
    {"vendor": "Borealis", "gain": 1.35, "gamma": 0.7, "offset": 0.05, "speckle": 0.35,
     "noise": 0.06, "blur": 1.0, "spacing_scale": 1.2},
    {"vendor": "Cirrus", "gain": 0.9, "gamma": 1.0, "offset": 0.2, "speckle": 0.15,
     "noise": 0.03, "blur": 1.8, "spacing_scale": 1.0},
    {"vendor": "Dune", "gain": 1.15, "gamma": 1.2, "offset": -0.1, "speckle": 0.25,
     "noise": 0.08, "blur": 0.7, "spacing_scale": 1.1},
)  # fmt: skip
"""Per-site acquisition: strong site shift."""


def make_phantoms(out: Path, sites: int, cases: int, size: int, seed: int) -> Path:
    """Write the shifted, non-IID ``lesion_cls`` phantoms; return the manifest path."""
    from medfleet.data.phantoms import PhantomConfig, SiteProfile, generate_phantoms
    from medfleet.data.phantoms.config import site_name

    profiles = [
        SiteProfile(name=site_name(i), class_weights=CLASS_MIX[i], **SHIFTS[i])
        for i in range(sites)
    ]
    config = PhantomConfig(name="federated-benchmark", sites=profiles, tasks=["lesion_cls"])
    return generate_phantoms(out, config, cases_per_site=cases, size=size, seed=seed)


def arms(rounds: int, local_steps: int, rank: int) -> list[tuple[str, dict[str, Any]]]:
    """The three federated arms as ``(name, FederatedConfig overrides)``."""
    return [
        ("fedavg-full", {"strategy": "fedavg", "blocks": None}),
        ("fedavg-lora", {"strategy": "lora", "blocks": None}),
        ("dual-lora", {"strategy": "dual-lora", "blocks": [-2, -1]}),
    ]


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """Per arm: per-site balanced accuracy, its mean, pooled value with CI, bytes per round."""
    sites = data["sites"]
    ba = {
        (r["arm"], r["site"]): r
        for r in data["metrics"]
        if r["metric"] == "balanced_accuracy" and r["task"] == "lesion_cls"
    }
    comm = {r["arm"]: r for r in data["communication_summary"]}
    rows = []
    for arm in [a["name"] for a in data["arms"]]:
        per_site = [ba[(arm, s)]["estimate"] for s in sites]
        values = [v for v in per_site if v is not None]
        pooled = ba[(arm, "pooled")]
        c = comm.get(arm)
        rows.append(
            {
                "arm": arm,
                "per_site": per_site,
                "mean_site": sum(values) / len(values) if values else None,
                "pooled": pooled["estimate"],
                "pooled_low": pooled["low"],
                "pooled_high": pooled["high"],
                "bytes_per_round": None if c is None else c["bytes_per_round"],
                "parameters_sent": None if c is None else c.get("exchanged_parameters"),
                "fraction_of_fedavg": None if c is None else c["fraction_of_fedavg"],
            }
        )
    by = {r["arm"]: r for r in rows}
    checks = {}
    if "dual-lora" in by and "fedavg-full" in by:
        share = by["dual-lora"]["bytes_per_round"] / by["fedavg-full"]["bytes_per_round"]
        checks["bytes_share"] = share
        checks["bytes_target_met"] = share <= 0.01
    if "dual-lora" in by and "fedavg-lora" in by:
        d, lo = by["dual-lora"]["mean_site"], by["fedavg-lora"]["mean_site"]
        checks["mean_site_ba_dual_lora"] = d
        checks["mean_site_ba_fedavg_lora"] = lo
        checks["accuracy_target_met"] = d is not None and lo is not None and d >= lo
    return {"sites": sites, "rows": rows, "checks": checks}


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _bytes(v: Any) -> str:
    if v is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v:.0f} B"


def markdown(summary: dict[str, Any], command: str, meta: dict[str, Any]) -> str:
    """The BENCHMARKS.md table."""
    sites = summary["sites"]
    head = ["arm", *[f"BA {s}" for s in sites], "BA mean of sites", "BA pooled [95% CI]",
            "parameters sent", "bytes / round", "share of FedAvg-full"]  # fmt: skip
    lines = [
        "```",
        command,
        "```",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in summary["rows"]:
        share = r["fraction_of_fedavg"]
        cells = [
            r["arm"],
            *[_f(v) for v in r["per_site"]],
            _f(r["mean_site"]),
            f"{_f(r['pooled'])} [{_f(r['pooled_low'])}, {_f(r['pooled_high'])}]",
            "-" if r["parameters_sent"] is None else f"{r['parameters_sent']:,}",
            _bytes(r["bytes_per_round"]),
            "-" if share is None else f"{100 * share:.3g}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    c = summary["checks"]
    lines += [
        "",
        f"Machine: {meta['machine']}; wall time {meta['wall_s']:.0f} s.",
    ]
    if "bytes_share" in c:
        lines.append(
            f"- DualLoRA bytes per round: {100 * c['bytes_share']:.3g}% of FedAvg-full "
            f"(target <= 1%): {'met' if c['bytes_target_met'] else 'NOT met'}."
        )
    if "accuracy_target_met" in c:
        lines.append(
            f"- Mean per-site balanced accuracy: DualLoRA {_f(c['mean_site_ba_dual_lora'])} vs "
            f"FedAvg-LoRA {_f(c['mean_site_ba_fedavg_lora'])} (target DualLoRA >= FedAvg-LoRA): "
            f"{'met' if c['accuracy_target_met'] else 'NOT met'}."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-federated"))
    parser.add_argument("--sites", type=int, default=3, choices=(3, 4))
    parser.add_argument("--cases-per-site", type=int, default=80)
    parser.add_argument("--size", type=int, default=32, help="phantom and model input size")
    parser.add_argument("--backbone", default="dinov3-vits16", help="random (config) init")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--local-steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--quick", action="store_true", help="tiny backbone, few steps")
    parser.add_argument(
        "--reuse", action="store_true", help="keep finished runs of the same settings in --out"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone, args.rounds, args.local_steps, args.cases_per_site = "vit-tiny", 2, 2, 20
        args.n_resamples = 200

    import torch

    torch.set_num_threads(1)
    from medfleet.federated import FederatedConfig
    from medfleet.federated.study import StudyOptions, run_study
    from medfleet.models import ModelConfig
    from medfleet.tasks import Manifest
    from medfleet.train.config import TrainConfig

    tic = time.perf_counter()
    path = make_phantoms(
        args.out / "phantoms", args.sites, args.cases_per_site, args.size, args.seed
    )
    manifest = Manifest.load(path)
    model = ModelConfig(backbone=args.backbone, image_size=args.size)
    train = TrainConfig(
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=1,
        tensorboard=False,
        checkpoint_every=0,
        device="cpu",
    )
    fed = FederatedConfig(
        rounds=args.rounds, local_steps=args.local_steps, rank=args.rank, seed=args.seed
    )
    result = run_study(
        manifest,
        model,
        train,
        fed,
        args.out / "study",
        StudyOptions(
            strategies=arms(args.rounds, args.local_steps, args.rank),
            n_resamples=args.n_resamples,
            reuse=args.reuse,
        ),
        log=lambda line: print(f"[{time.perf_counter() - tic:6.0f} s] {line}", flush=True),
    )
    wall = time.perf_counter() - tic
    summary = summarise(result.data)
    command = "python benchmarks/federated.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}, 1 thread",
        "wall_s": wall,
    }
    text = markdown(summary, command.strip(), meta)
    print(text)
    if args.markdown:
        from medfleet.utils.atomic import write_text_atomic

        write_text_atomic(args.markdown, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
