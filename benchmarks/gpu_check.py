"""One prepared GPU check: mixed-precision training steps and throughput of the backbones.

For each backbone (default: the default ``unet-small``, DINOv3 ConvNeXt-T, DINOv3 ViT-S/16
and ViT-B/16 and DINOv2 ViT-S/14 and ViT-B/14 configurations from
:func:`medfleet.models.backbone_names`, randomly initialised: nothing is downloaded) and
each precision (``fp32`` and ``amp``), the script builds the unified model with a
segmentation and a classification head, runs ``--warmup`` full training steps (forward,
loss, backward, AdamW step) on random data and times ``--steps`` more. ``amp`` is bf16
autocast when the device supports it, else fp16 autocast with a ``GradScaler``; the check
fails when a loss is not finite.

Reported per row: seconds per step, images per second, peak CUDA memory allocated
(``torch.cuda.max_memory_allocated``; on CPU the process's peak resident size) and the
final loss. Prints JSON, then a markdown table.

Usage::

    python benchmarks/gpu_check.py                      # CUDA device, ~2-4 min on one GPU
    python benchmarks/gpu_check.py --device cpu --steps 2 --warmup 1 --image-size 64 \\
        --batch-size 2 --backbones dinov3-vits16         # smoke run without a GPU

Without a CUDA device (and without ``--device cpu``) it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import shlex
import sys
import time
from typing import Any

DEFAULT_BACKBONES = (
    "unet-small",
    "dinov3-convnext-tiny",
    "dinov3-vits16",
    "dinov3-vitb16",
    "dinov2-vits14",
    "dinov2-vitb14",
)
SEG, CLS = "gpu_check_seg", "gpu_check_cls"


def synthetic_manifest() -> Any:
    """A two-task manifest (no tables needed: the data are random tensors)."""
    from medfleet.tasks import Manifest, Site, TaskSpec

    return Manifest(
        name="gpu_check",
        sites=[Site(name="synthetic")],
        tasks=[
            TaskSpec(name=SEG, type="segmentation", table="s.csv", labels={0: "bg", 1: "fg"}),
            TaskSpec(name=CLS, type="classification", table="c.csv", classes=["a", "b", "c"]),
        ],
    )


def amp_dtype(device: Any, precision: str) -> Any:
    """Autocast dtype of a precision on a device (``None``: float32)."""
    import torch

    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "bf16" or (precision == "amp" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16
    return torch.bfloat16  # CPU autocast supports bf16 only


def measure(backbone: str, precision: str, args: argparse.Namespace, device: Any) -> dict:
    """Build one model and time its training steps."""
    import torch

    from medfleet.models import ModelConfig, build_model

    torch.manual_seed(0)
    manifest = synthetic_manifest()
    config = ModelConfig(backbone=backbone, image_size=args.image_size, in_channels=3)
    model = build_model(manifest, config, tasks=[SEG, CLS]).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = amp_dtype(device, precision)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16 and device.type == "cuda")
    b, s = args.batch_size, args.image_size
    images = torch.randn(b, 3, s, s, device=device)
    masks = torch.randint(0, 2, (b, s, s), device=device)
    labels = torch.randint(0, 3, (b,), device=device)

    def step(i: int) -> float:
        task, target = (SEG, masks) if i % 2 == 0 else (CLS, labels)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(images, task)
            loss, _ = model.loss(task, out, target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for i in range(args.warmup):
        step(i)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses = []
    tic = time.perf_counter()
    for i in range(args.steps):
        losses.append(step(i))
    sync()
    elapsed = time.perf_counter() - tic
    if not all(math.isfinite(v) for v in losses):
        raise SystemExit(f"{backbone} {precision}: a training loss is not finite: {losses}")
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "backbone": backbone,
        "precision": precision if dtype is None else f"{precision} ({str(dtype)[6:]})",
        "grad_scaler": bool(scaler.is_enabled()),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "s_per_step": round(elapsed / args.steps, 4),
        "images_per_s": round(args.batch_size * args.steps / elapsed, 1),
        "peak_memory_mb": round(peak_mb, 1),
        "peak_memory_kind": "cuda allocated" if device.type == "cuda" else "process RSS",
        "last_loss": round(losses[-1], 4),
    }
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def markdown(result: dict[str, Any]) -> str:
    """The rows as a markdown table."""
    lines = [
        f"Device: {result['device_name']}; batch {result['batch_size']}, "
        f"{result['image_size']} px, {result['steps']} timed steps.",
        "",
        "| backbone | precision | params (M) | s/step | images/s | peak memory (MB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['backbone']} | {r['precision']} | {r['parameters_m']} | {r['s_per_step']} "
            f"| {r['images_per_s']} | {r['peak_memory_mb']} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (smoke)")
    parser.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "amp"],
                        choices=["fp32", "amp", "bf16", "fp16"])  # fmt: skip
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (cpu only)")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every backbone x precision; print JSON and markdown. Returns the exit status."""
    args = parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is available (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}); run it on a machine "
            "with a GPU, or pass --device cpu --steps 2 for a smoke run",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    else:
        name = (
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    rows = [
        measure(backbone, precision, args, device)
        for backbone in args.backbones
        for precision in args.precisions
    ]
    result = {
        "device_name": name,
        "torch": torch.__version__,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "rows": rows,
        "command": "python benchmarks/gpu_check.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    text = json.dumps(result, indent=2)
    print(text)
    print(markdown(result))
    if args.json:
        from medfleet.utils.atomic import write_text_atomic

        write_text_atomic(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
