"""Writing and reading models and training checkpoints: medfleet's tensor files vs torch.save.

medfleet writes models, training checkpoints and site states as safetensors with a JSON
header (:mod:`medfleet.utils.tensorfile`), so that opening one never runs code. The peer a
user would otherwise pick is ``torch.save`` + ``torch.load(weights_only=True)``; plain
``safetensors.torch.save_file``/``load_file`` is the floor (tensors only, no structure).

Same payloads, same run: a model state dict of a given size and, for a training checkpoint,
that model plus AdamW's two moment buffers, step counters and random states. Each
operation is timed ``--repeats`` times (median), files on the same disk, page cache warm.

Run ``python benchmarks/checkpoint_io.py`` (``--params 86e6`` is a ViT-B; ``--quick``:
a few seconds).
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from medfleet.utils.tensorfile import read_tensor_file, write_tensor_file


def model_state(params: int, width: int = 768, seed: int = 0) -> dict[str, torch.Tensor]:
    """A ViT-like state dict: ``width x width`` weight matrices and biases up to ``params``."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    total, block = 0, 0
    while total < params:
        for name, shape in (
            ("qkv", (3 * width, width)),
            ("proj", (width, width)),
            ("fc1", (4 * width, width)),
            ("fc2", (width, 4 * width)),
        ):
            state[f"blocks.{block}.{name}.weight"] = torch.randn(shape, generator=generator)
            state[f"blocks.{block}.{name}.bias"] = torch.zeros(shape[0])
            total += shape[0] * shape[1] + shape[0]
        block += 1
    return state


def checkpoint(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A training checkpoint around ``state``: AdamW moments, counters, random states."""
    random.seed(0)
    np.random.seed(0)
    keys = list(state)
    return {
        "format": "benchmark",
        "step": 1000,
        "model": state,
        "optimizer": {
            "state": {
                i: {
                    "step": torch.tensor(1000.0),
                    "exp_avg": torch.zeros_like(state[k]),
                    "exp_avg_sq": torch.zeros_like(state[k]),
                }
                for i, k in enumerate(keys)
            },
            "param_groups": [{"params": list(range(len(keys))), "lr": 1e-4, "betas": (0.9, 0.999)}],
        },
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        },
        "history": [{"step": s, "loss": 1.0 / (s + 1)} for s in range(100)],
    }


def _rng_as_tensors(payload: dict[str, Any]) -> dict[str, Any]:
    """torch.load(weights_only=True) refuses NumPy's random state: store it as torch.save must."""
    rng = dict(payload["rng"])
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    rng["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    return {**payload, "rng": rng}


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def measure(payload: dict[str, Any], folder: Path, repeats: int, flat: bool) -> list[dict]:
    """Rows of (tool, write s, read s, file MB) for one payload."""
    rows = []
    medfleet_file = folder / "m.safetensors"
    torch_file = folder / "m.pt"
    plain_file = folder / "plain.safetensors"
    torch_payload = _rng_as_tensors(payload) if "rng" in payload else payload

    def torch_save() -> None:
        buffer = io.BytesIO()
        torch.save(torch_payload, buffer)
        torch_file.write_bytes(buffer.getvalue())

    def torch_read() -> Any:
        with open(torch_file, "rb") as fh:
            return torch.load(fh, map_location="cpu", weights_only=True)

    def plain_read() -> Any:
        # load_file maps the file lazily; touch every tensor so its bytes are really read
        tensors = load_file(str(plain_file))
        return [t.clone() for t in tensors.values()]

    cases = [
        (
            "medfleet tensor file",
            lambda: write_tensor_file(medfleet_file, payload, "bench"),
            lambda: read_tensor_file(medfleet_file, ("bench",)),
            medfleet_file,
        ),
        ("torch.save / load(weights_only=True)", torch_save, torch_read, torch_file),
    ]
    if flat:
        cases.append(
            (
                "safetensors save_file / load_file (tensors only)",
                lambda: save_file(payload, str(plain_file)),
                plain_read,
                plain_file,
            )
        )
    for name, write, read, path in cases:
        write_s = timed(write, repeats)
        read_s = timed(read, repeats)
        rows.append(
            {"tool": name, "write_s": write_s, "read_s": read_s, "mb": path.stat().st_size / 1e6}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=86e6, help="model parameters")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2M parameters, 2 repeats")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.params, args.repeats = 2e6, 2
    torch.set_num_threads(args.threads)
    state = model_state(int(args.params))
    n = sum(t.numel() for t in state.values())
    print(f"model: {n / 1e6:.1f} M parameters ({len(state)} tensors); repeats {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, payload, flat in (
            ("model", state, True),
            ("training checkpoint", checkpoint(state), False),
        ):
            rows = measure(payload, Path(tmp), args.repeats, flat)
            base = rows[1]
            print(f"\n{label}")
            print("| tool | write s | read s | MB | write vs torch | read vs torch |")
            print("|---|---|---|---|---|---|")
            for row in rows:
                print(
                    f"| {row['tool']} | {row['write_s']:.3f} | {row['read_s']:.3f} | "
                    f"{row['mb']:.0f} | {row['write_s'] / base['write_s']:.2f}x | "
                    f"{row['read_s'] / base['read_s']:.2f}x |"
                )


if __name__ == "__main__":
    main()
