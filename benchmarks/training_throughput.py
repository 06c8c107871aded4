"""Training throughput of the unified model: dense vs MoE vs LoRA vs DualLoRA on CPU.

Every variant uses the same backbone, input size, batch and task (a
classification head; the heads are identical across variants), and runs
full training steps: forward, loss (+ MoE balance loss), backward, AdamW step.

Each measurement runs in a fresh child process (spawned), so variants do not
share allocator state: it builds the model, runs ``--warmup`` steps, then
times ``--steps`` steps; images/s is ``batch * steps / time``. Peak memory is
the resident set size: its high-water mark over the timed steps (VmHWM,
reset before them) and its rise above the resident size after warm-up (the
activations and gradients of a step). Variants run round-robin for
``--repeats`` rounds and the median is reported, which damps the noise of a
shared machine.

Variants:

* ``dense``: plain fine-tuning;
* ``moe``: MoE in the last ``--moe-blocks`` blocks, ``E=4`` experts, top-2,
  router sees task embedding + token, experts at half width (compute-matched);
* ``moe-task``: as ``moe`` but routing by task only (all tokens of a task
  share their experts);
* ``lora``: LoRA (r=8) on q/v of every block, backbone frozen;
* ``dual-lora``: global + local LoRA on the same modules, backbone frozen.

The MoE overhead over dense comes from a paired run: all variants built in one
process and stepped in turn, the median over rounds of ``t(dense) / t(variant)``
(a shared machine's load drifts between processes but hardly within a round);
the target is below 20 %.

Run ``python benchmarks/training_throughput.py --help``; ``--quick`` uses the
tiny test backbone.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS = ("dense", "moe", "moe-task", "lora", "dual-lora")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def variant_config(variant: str, args: argparse.Namespace) -> Any:
    from medfleet.models import AdapterConfig, ModelConfig, MoEConfig

    base: dict[str, Any] = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "in_channels": 1,
    }
    blocks = list(range(-args.moe_blocks, 0))
    if variant == "moe":
        base["moe"] = MoEConfig(blocks=blocks, num_experts=4, top_k=2)
    elif variant == "moe-task":
        base["moe"] = MoEConfig(blocks=blocks, num_experts=4, top_k=2, token_routing=False)
    elif variant == "lora":
        base["adapter"] = AdapterConfig(kind="lora", rank=8, alpha=16)
        base["freeze"] = "adapters"
    elif variant == "dual-lora":
        base["adapter"] = AdapterConfig(kind="dual-lora", rank=8, alpha=16)
        base["freeze"] = "adapters"
    return ModelConfig(**base)


def make_step(variant: str, args: argparse.Namespace) -> Any:
    """Build a variant's model and optimizer; return a function running training step ``i``."""
    import torch

    from medfleet.models import build_model
    from medfleet.tasks import Manifest, Site, TaskSpec

    torch.manual_seed(0)
    manifest = Manifest(
        name="bench",
        sites=[Site(name="a")],
        tasks=[
            TaskSpec(name="cls", type="classification", table="c.csv", classes=["a", "b"]),
            TaskSpec(name="cls2", type="classification", table="d.csv", classes=["c", "d"]),
        ],
    )
    model = build_model(manifest, variant_config(variant, args))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randn(args.batch, 1, args.image_size, args.image_size)
    y = torch.randint(0, 2, (args.batch,))

    def step(i: int) -> None:
        task = "cls" if i % 2 == 0 else "cls2"
        out = model(x, task)
        loss, _ = model.loss(task, out, y)
        loss = loss + model.aux_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step.model = model  # type: ignore[attr-defined]
    return step


def _child(variant: str, args: argparse.Namespace, queue: Any) -> None:
    try:
        import torch

        torch.set_num_threads(args.threads)
        baseline = _status_kb("VmRSS")  # after imports, before the model exists
        step = make_step(variant, args)
        model = step.model
        for i in range(args.warmup):
            step(i)
        before = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        times = []
        for i in range(args.steps):
            start = time.perf_counter()
            step(i)
            times.append(time.perf_counter() - start)
        peak = _status_kb("VmHWM")
        counts = model.count_parameters()
        queue.put(
            {
                "ips": args.batch / statistics.median(times),
                "ips_best": args.batch / min(times),
                "peak_mb": peak / 1024.0,
                "rise_mb": max(0, peak - before) / 1024.0,
                "model_mb": max(0, peak - baseline) / 1024.0,
                "total": counts["total"],
                "trainable": counts["trainable"],
            }
        )
    except Exception as err:  # report, never hang the parent
        queue.put({"error": f"{type(err).__name__}: {err}"})


def _child_paired(args: argparse.Namespace, queue: Any) -> None:
    """All variants in one process, one step each in turn: ratios immune to machine drift."""
    try:
        import torch

        torch.set_num_threads(args.threads)
        steps = {v: make_step(v, args) for v in args.variants}
        for step in steps.values():
            for i in range(args.warmup):
                step(i)
        ratios: dict[str, list[float]] = {v: [] for v in steps}
        for i in range(args.paired_rounds):
            times = {}
            for v, step in steps.items():
                start = time.perf_counter()
                step(i)
                times[v] = time.perf_counter() - start
            for v in steps:
                ratios[v].append(times["dense"] / times[v])
        queue.put({v: statistics.median(r) for v, r in ratios.items()})
    except Exception as err:  # report, never hang the parent
        queue.put({"error": f"{type(err).__name__}: {err}"})


def _in_child(target: Any, args: argparse.Namespace, *leading: Any) -> dict[str, Any]:
    """Run ``target(*leading, args, queue)`` in a spawned process; return what it queued."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*leading, args, queue))
    proc.start()
    try:
        result = queue.get(timeout=args.timeout)
    except Exception:
        result = {"error": f"no result within {args.timeout} s"}
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
    return result


def _child_unified(args: argparse.Namespace, queue: Any) -> None:
    """Parameters and inference time: one unified model vs one model per task."""
    try:
        import torch

        from medfleet.models import ModelConfig, build_model
        from medfleet.tasks import Manifest, Site, TaskSpec

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        tasks = [
            TaskSpec(name="seg", type="segmentation", table="s.csv", labels={0: "bg", 1: "fg"}),
            TaskSpec(name="cls", type="classification", table="c.csv", classes=["a", "b"]),
            TaskSpec(name="det", type="detection", table="d.csv"),
            TaskSpec(name="reg", type="regression", table="r.csv", unit="mm"),
            TaskSpec(name="lm", type="landmarks", table="l.csv", landmarks=["p", "q"]),
        ]
        manifest = Manifest(name="bench", sites=[Site(name="a")], tasks=tasks)
        config = ModelConfig(backbone=args.backbone, image_size=args.image_size, in_channels=1)
        unified = build_model(manifest, config).eval()
        specific = {t.name: build_model(manifest, config, tasks=[t.name]).eval() for t in tasks}
        x = torch.randn(args.batch, 1, args.image_size, args.image_size)

        def best_time(run: Any) -> float:
            run()
            times = []
            for _ in range(max(3, args.steps)):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            return min(times)

        with torch.no_grad():
            t_unified = best_time(lambda: [unified(x, t.name) for t in tasks])
            t_specific = best_time(lambda: [m(x, name) for name, m in specific.items()])
        queue.put(
            {
                "tasks": len(tasks),
                "unified_params": unified.count_parameters()["total"],
                "specific_params": sum(m.count_parameters()["total"] for m in specific.values()),
                "unified_ms": 1000 * t_unified / args.batch,
                "specific_ms": 1000 * t_specific / args.batch,
            }
        )
    except Exception as err:  # report, never hang the parent
        queue.put({"error": f"{type(err).__name__}: {err}"})


def measure_unified(args: argparse.Namespace) -> dict[str, Any]:
    return _in_child(_child_unified, args)


def unified_lines(u: dict[str, Any]) -> list[str]:
    if "error" in u:
        return ["## Unified vs task-specific", "", f"error: {u['error']}", ""]
    n = u["tasks"]
    return [
        f"## One unified model vs {n} task-specific models",
        "",
        "Same backbone, one task of each type (segmentation, classification, detection, "
        "regression, landmarks); inference = one forward per task, eval mode, best of "
        "several runs, per image.",
        "",
        "| | parameters | inference, all tasks (ms/image) |",
        "|---|---:|---:|",
        f"| unified (1 backbone, {n} heads) | {u['unified_params']:,} | {u['unified_ms']:.1f} |",
        f"| {n} task-specific models | {u['specific_params']:,} | {u['specific_ms']:.1f} |",
        "",
        f"The unified model holds {u['unified_params'] / u['specific_params']:.0%} of the "
        "parameters; inference costs one backbone pass per task either way (the task "
        "conditions the backbone when MoE is on), so the time is about equal.",
        "",
    ]


def measure(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    result = _in_child(_child, args, variant)
    if "error" in result:  # one retry: a shared machine can disturb a child's start-up
        result = _in_child(_child, args, variant)
    return result


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    for round_index in range(args.repeats):
        for variant in args.variants:
            result = measure(variant, args)
            runs[variant].append(result)
            shown = (
                result["error"]
                if "error" in result
                else f"{result['ips']:.1f} img/s (best step {result['ips_best']:.1f}), "
                f"peak {result['peak_mb']:.0f} MB"
            )
            print(f"round {round_index + 1}/{args.repeats} {variant:10s} {shown}", flush=True)
    summary: dict[str, dict[str, Any]] = {}
    for variant, results in runs.items():
        good = [r for r in results if "error" not in r]
        if not good:
            summary[variant] = {"error": results[-1]["error"]}
            continue
        summary[variant] = {
            "ips": statistics.median(r["ips"] for r in good),
            "ips_all": [r["ips"] for r in good],
            "ips_best": max(r["ips_best"] for r in good),
            "peak_mb": statistics.median(r["peak_mb"] for r in good),
            "rise_mb": statistics.median(r["rise_mb"] for r in good),
            "model_mb": statistics.median(r["model_mb"] for r in good),
            "total": good[0]["total"],
            "trainable": good[0]["trainable"],
        }
    return summary


def report(
    summary: dict[str, dict[str, Any]], paired: dict[str, Any], args: argparse.Namespace
) -> str:
    import torch

    lines = [
        "# Training throughput: dense vs MoE vs LoRA vs DualLoRA (CPU)",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in sys.argv)}`",
        "",
        f"Backbone `{args.backbone}`, input {args.image_size}x{args.image_size} grey, batch "
        f"{args.batch}, classification heads (two tasks, alternating), AdamW; "
        f"{args.steps} timed steps after {args.warmup} warm-up steps, median of "
        f"{args.repeats} rounds, each run in a fresh process; torch threads {args.threads}. "
        f"MoE: last {args.moe_blocks} blocks, 4 experts, top-2, experts at half width.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "| variant | images/s (median step) | images/s (best step) | throughput vs dense (paired) "
        "| peak RSS (MB) | training memory (MB) | step rise (MB) | parameters | trainable |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, s in summary.items():
        if "error" in s:
            lines.append(f"| {variant} | error: {s['error']} | | | | | | | |")
            continue
        rel = f"{paired[variant] - 1:+.1%}" if variant in paired else "n/a"
        lines.append(
            f"| {variant} | {s['ips']:.1f} | {s['ips_best']:.1f} | {rel} "
            f"| {s['peak_mb']:.0f} | {s['model_mb']:.0f} "
            f"| {s['rise_mb']:.0f} | {s['total']:,} | {s['trainable']:,} |"
        )
    lines += [
        "",
        "Images/s from the median step time of each run (median over rounds) and from the "
        "fastest step over all rounds. Paired vs dense: all variants built in one process and "
        f"stepped in turn for {args.paired_rounds} rounds; the median over rounds of "
        "t(dense) / t(variant) - 1. A shared machine's load drifts between runs, but "
        "hardly within one round, so the overhead verdict uses the paired figure. "
        "Peak RSS: high-water mark of the process over the timed steps. Training memory: that "
        "peak minus the resident size before the model was built (weights, gradients, optimizer "
        "state, activations). Step rise: the peak above the resident size after warm-up.",
        "",
    ]
    if "error" in paired:
        lines.append(f"- paired measurement failed: {paired['error']}")
    for variant in ("moe", "moe-task"):
        if variant in paired and "error" not in paired:
            overhead = 1 - paired[variant]
            verdict = "within" if overhead < 0.20 else "ABOVE"
            lines.append(
                f"- `{variant}` overhead over dense (paired): {overhead:.1%} "
                f"({verdict} the 20 % target)."
            )
    lines.append(
        "- Per-round images/s (the spread shows the machine's noise): "
        + "; ".join(
            f"{v}: " + ", ".join(f"{x:.1f}" for x in s.get("ips_all", []))
            for v, s in summary.items()
        )
    )
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="dinov3-vits16")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--moe-blocks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paired-rounds", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the report as Markdown here"
    )
    parser.add_argument(
        "--skip-unified", action="store_true", help="skip unified vs task-specific models"
    )
    parser.add_argument("--quick", action="store_true", help="tiny backbone, 64 px, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone, args.image_size, args.repeats, args.moe_blocks = "vit-tiny", 64, 2, 2
    return args


def main(argv: list[str] | None = None) -> None:
    from medfleet.utils.atomic import write_text_atomic

    args = parse_args(argv)
    summary = run(args)
    paired = _in_child(_child_paired, args) if "dense" in args.variants else {}
    print("paired:", paired, flush=True)
    text = report(summary, paired, args)
    if not args.skip_unified:
        text += "\n" + "\n".join(unified_lines(measure_unified(args)))
    if args.out is not None:
        write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
