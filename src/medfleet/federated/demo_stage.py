"""The demo's federated stage: DualLoRA across the three phantom sites, two rounds.

Writes under ``OUT/federated/``: ``federated.json`` (per round and site: status, bytes each
way, training loss, validation metrics) and each site's personalised model in
``sites/<site>/``. When Flower is not installed the stage reports itself skipped.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from medfleet.utils.progress import ProgressCallback


class FederatedStage:
    """DualLoRA federated fine-tuning of the phantom lesion classifier over three sites.

    The default backbone (``unet-small``) at 32 pixels, LoRA on the convolutions of its
    last two stages, two rounds of six local steps (two with ``--quick``), on Flower's
    in-process engine: seconds on two CPU cores. The backbone starts from random weights,
    so the adapters alone have little to adapt: the stage shows the protocol (what
    travels, bytes per round, per-site models), not a trained classifier.
    """

    name = "federated"
    description = "federated DualLoRA fine-tuning across the three sites (Flower)"

    def run(self, ctx: Any, progress: ProgressCallback) -> dict[str, Any]:
        """Run the federated job; return bytes per round, per-site metrics and model paths."""
        missing = [m for m in ("flwr", "torch") if importlib.util.find_spec(m) is None]
        if missing:
            return {
                "skipped": True,
                "reason": f'{", ".join(missing)} not installed (fix: pip install -e ".[train,fl]")',
            }
        from medfleet.federated import FederatedConfig, run_federated
        from medfleet.models import ModelConfig
        from medfleet.tasks import Manifest
        from medfleet.train.config import TrainConfig

        if ctx.manifest is None:
            raise RuntimeError("the phantoms stage must run before the federated stage")
        full = Manifest.load(ctx.manifest)
        task = "lesion_cls"
        manifest = full.model_copy(update={"tasks": [full.task(task)]})
        manifest.root = full.root
        fed = FederatedConfig(
            strategy="dual-lora",
            rounds=2,
            local_steps=2 if ctx.quick else 6,
            blocks=[-2, -1],
            min_fit=2,
            min_available=len(manifest.sites),
            seed=ctx.seed,
        )
        result = run_federated(
            manifest,
            ModelConfig(image_size=32),
            TrainConfig(batch_size=8, lr=1e-3, seed=ctx.seed, device="cpu", threads=1),
            fed,
            ctx.out / "federated",
            progress,
        )
        last = result.rounds[-1]
        return {
            "out": str(result.out),
            "strategy": fed.strategy,
            "rounds": fed.rounds,
            "sites": result.sites,
            "bytes_per_round": result.bytes_per_round,
            "exchanged_parameters": result.data.get("exchanged_parameters"),
            "failures": {
                str(r["round"]): sorted(s for s, c in r["clients"].items() if c["status"] != "ok")
                for r in result.rounds
            },
            "balanced_accuracy": {
                site: metrics.get(task, {}).get("balanced_accuracy")
                for site, metrics in last["metrics"].items()
            },
            "site_models": {s: str(p) for s, p in result.site_dirs.items()},
        }
