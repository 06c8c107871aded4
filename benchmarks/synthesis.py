"""Synthetic-data augmentation study on phantoms, and a smoke run on the Kvasir sample.

Phantoms: ``--task organ_lesion_seg`` (default; organ + lesion label masks, Dice) or
``nodule_det`` (bright nodules, dark cysts; detection rate at IoU >= 0.5) from 3 sites;
the last site is external. A tiny latent diffusion model with a mask ControlNet is
trained from scratch on the internal training rows (VAE stage, then UNet + ControlNet
trained jointly: on this CPU budget the joint stage learns the layout faster than the
staged recipe; ``--staged --ldm-steps N`` runs the staged one), synthetic pairs are sampled from
their layouts, and a ``vit-tiny`` model is trained with +0/10/20/50 % synthetic rows
(same steps and seed). Reported: the metric with 95 % bootstrap CIs on the internal test
rows and on the external site; FID (seeded random ``vit-tiny`` features) and MS-SSIM
diversity of the synthetic vs real training images.

Kvasir (``../shared/data/kvasir_seg_5``, 5 images, prepared by the ``kvasir_seg``
adapter): synth train + sample + a 2-step detector training on the synthetic manifest,
as a smoke test of real RGB data of another size.

Run ``python benchmarks/synthesis.py --help``; ``--quick`` is a short smoke run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_data import data_root


def phantom_study(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The augmentation study on phantoms plus quality figures."""
    import numpy as np

    from medfleet.data.io import read_image
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    from medfleet.synth.augment import StudySettings, run_augment_study
    from medfleet.synth.config import SampleConfig, SynthConfig
    from medfleet.synth.pairs import image_to_unit, resize_image
    from medfleet.synth.quality import quality_summary
    from medfleet.tables import read_table
    from medfleet.tasks import Manifest

    manifest = generate_phantoms(
        work / "phantoms", PhantomConfig(tasks=[args.task]), sites=3,
        cases_per_site=args.cases_per_site, size=args.size, seed=0,
    )  # fmt: skip
    synth = SynthConfig(
        image_size=32, vae_steps=args.vae_steps, ldm_steps=args.ldm_steps,
        controlnet_steps=args.controlnet_steps, freeze_ldm=not args.joint, lr=args.synth_lr,
        threads=1, seed=0,
    )  # fmt: skip
    settings = StudySettings(
        steps=args.det_steps, image_size=32, batch_size=8, threads=1, n_resamples=2000,
        score_threshold=0.3, backbone=args.backbone,
    )  # fmt: skip
    tic = time.perf_counter()
    summary = run_augment_study(
        manifest, args.task, work / "study", settings=settings, synth_config=synth,
        sample_config=SampleConfig(steps=args.sample_steps, guidance=2.0, seed=0),
        caption_template="{objects} at {site}", log=print,
    )  # fmt: skip
    summary["seconds"] = round(time.perf_counter() - tic, 1)
    data = Manifest.load(work / "study" / "data" / "manifest.yaml")
    rows = [r for r in read_table(data.table_path(args.task)) if r["split"] == "train"]
    real = np.stack([
        resize_image(image_to_unit(np.asarray(read_image(r["image"]).array), 1), 32)
        for r in rows
    ])  # fmt: skip
    syn_m = Manifest.load(work / "study" / "synthetic" / "manifest.yaml")
    syn_rows = read_table(syn_m.table_path(args.task))
    fake = np.stack([
        image_to_unit(np.asarray(read_image(syn_m.resolve(r["image"])).array), 1)
        for r in syn_rows
    ])  # fmt: skip
    summary["quality"] = quality_summary(real, fake, pairs=100)
    return summary


def kvasir_smoke(work: Path, root: Path | None) -> dict[str, Any]:
    """Synth train + sample + detector training on the 5-image Kvasir sample."""
    from medfleet.data.validate import validate_manifest
    from medfleet.models import ModelConfig
    from medfleet.synth.config import SampleConfig, SynthConfig
    from medfleet.synth.sample import write_synthetic_set
    from medfleet.synth.train import train_synth
    from medfleet.tasks import Manifest
    from medfleet.train.config import TrainConfig
    from medfleet.train.run import train_model

    if root is None or not (root / "kvasir_seg_5").is_dir():
        return {"skipped": "kvasir_seg_5 not found"}
    tic = time.perf_counter()
    import shutil

    from medfleet.data.catalog import prepare_dataset

    shutil.rmtree(work / "kvasir", ignore_errors=True)
    path = prepare_dataset("kvasir_seg", root / "kvasir_seg_5", work / "kvasir", seed=0)
    manifest = Manifest.load(path)
    spec = next(t for t in manifest.tasks if t.type.value == "detection")
    config = SynthConfig(
        image_size=32, channels=3, vae_steps=60, ldm_steps=40, controlnet_steps=40,
        batch_size=4, threads=1, seed=0,
    )  # fmt: skip
    result = train_synth(manifest, spec.name, work / "kvasir_model", config)
    out = write_synthetic_set(
        work / "kvasir_model", work / "kvasir_synthetic", 6,
        config=SampleConfig(steps=20, guidance=2.0),
    )  # fmt: skip
    report = validate_manifest(out)
    trained = train_model(
        Manifest.load(out), ModelConfig(image_size=32),
        TrainConfig(max_steps=2, batch_size=2, val_every=0, tensorboard=False, threads=1,
                    device="cpu"),
        work / "kvasir_det", tasks=[spec.name],
    )  # fmt: skip
    return {
        "train_cases": result.info["train_cases"],
        "reconstruction": result.info["reconstruction"],
        "synthetic_manifest_valid": report.ok,
        "downstream_steps": trained.result.steps,
        "seconds": round(time.perf_counter() - tic, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "medfleet_bench_synthesis"
    )
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--task", default="organ_lesion_seg", help="phantom task")
    parser.add_argument("--cases-per-site", type=int, default=40)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--vae-steps", type=int, default=150)
    parser.add_argument("--ldm-steps", type=int, default=0, help="LDM stage steps")
    parser.add_argument("--controlnet-steps", type=int, default=400)
    parser.add_argument(
        "--staged",
        dest="joint",
        action="store_false",
        help="freeze the LDM in the ControlNet stage (default: train them jointly)",
    )
    parser.add_argument("--synth-lr", type=float, default=5e-3)
    parser.add_argument("--sample-steps", type=int, default=25)
    parser.add_argument("--det-steps", type=int, default=150)
    parser.add_argument(
        "--backbone",
        default="vit-tiny",
        help="downstream models' backbone (vit-tiny: the recorded rows; unet-small: the default)",
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.cases_per_site, args.vae_steps, args.controlnet_steps = 8, 5, 5
        args.sample_steps, args.det_steps = 2, 2
    import torch

    torch.set_num_threads(1)
    tic = time.perf_counter()
    results = {
        "command": "python benchmarks/synthesis.py " + shlex.join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread, "
        f"Python {platform.python_version()}, torch {torch.__version__}",
        "phantoms": phantom_study(args.work, args),
        "kvasir": kvasir_smoke(args.work, data_root(args.data)),
    }
    results["total_seconds"] = round(time.perf_counter() - tic, 1)
    print(json.dumps({k: v for k, v in results.items() if k != "phantoms"}, indent=2,
                     default=str))  # fmt: skip
    for r in results["phantoms"]["results"]:
        print(f"+{100 * r['fraction']:.0f}% {r['group']}: {r['estimate']:.3f} "
              f"[{r['low']:.3f}, {r['high']:.3f}] n={r['n']}")  # fmt: skip
    print("quality", json.dumps(results["phantoms"]["quality"], indent=1))
    if args.json:
        from medfleet.utils.atomic import write_text_atomic

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
