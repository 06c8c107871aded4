"""Sample image-annotation pairs from a trained model and write them as a task table.

``write_synthetic_set`` writes a folder that ``medfleet train`` reads directly::

    OUT/manifest.yaml            one task (the model's), its sites plus ``synthetic``
    OUT/<task>.csv               base columns, target, caption, synthetic=1, source, source_case
    OUT/<task>/images/*.png      the generated images (8-bit)
    OUT/<task>/mask/*.png        segmentation: the label maps they were conditioned on
    OUT/sampling.json            model, settings and counts

Detection rows carry the boxes of the conditioning layout (on the image grid).
Synthetic rows are marked by ``synthetic = 1`` and ``source = synth:<model folder>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medfleet.data.io import write_png
from medfleet.errors import MedfleetError
from medfleet.synth.config import SampleConfig
from medfleet.synth.model import SynthModel, load_layouts
from medfleet.synth.pairs import Pair, labels_from_condition, random_layout
from medfleet.tables import format_boxes, parse_boxes, write_table
from medfleet.tasks import Manifest, Site, TaskSpec, TaskType
from medfleet.utils.atomic import write_json_atomic

Layout = Literal["from-manifest", "random"]
SYNTHETIC_SITE = "synthetic"


def make_scheduler(model: SynthModel, sampler: str) -> Any:
    """A DDPM or DDIM scheduler with the model's training noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if sampler == "ddim":
        return DDIMScheduler.from_config(model.scheduler_config, set_alpha_to_one=False)
    if sampler == "ddpm":
        return DDPMScheduler.from_config(model.scheduler_config)
    raise MedfleetError(f"sampler {sampler!r} is not 'ddpm' or 'ddim'")


@torch.no_grad()
def generate(
    model: SynthModel,
    conditions: np.ndarray,
    captions: Sequence[str],
    config: SampleConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Images ``(N, C, S, S)`` in [0, 1] for condition masks ``(N, K, S, S)`` and captions.

    The initial noise of image ``i`` depends only on ``config.seed`` and ``i``, so the same
    seed with different masks isolates the effect of the mask (DDIM is then fully
    deterministic). Classifier-free guidance mixes the empty-caption prediction ``u`` and
    the captioned one ``c`` as ``u + guidance * (c - u)``; the ControlNet residuals are
    multiplied by ``controlnet_scale``.
    """
    config = config or SampleConfig()
    conds = torch.as_tensor(np.asarray(conditions, np.float32))
    if len(conds) != len(captions):
        raise MedfleetError(f"{len(conds)} condition masks but {len(captions)} captions")
    device = model.device
    side = model.config.image_size // (2 ** (len(model.vae.config.block_out_channels) - 1))
    shape = (int(model.vae.config.latent_channels), side, side)
    out = []
    n = len(conds)
    guided = config.guidance != 1.0
    for start in range(0, n, config.batch_size):
        stop = min(n, start + config.batch_size)
        noise = [
            torch.randn(shape, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + i))
            for i in range(start, stop)
        ]
        latents = torch.stack(noise).to(device)
        scheduler = make_scheduler(model, config.sampler)
        scheduler.set_timesteps(config.steps)
        latents = latents * scheduler.init_noise_sigma
        cond = conds[start:stop].to(device)
        text = model.encode_text(list(captions[start:stop]))
        if guided:
            text = torch.cat([model.encode_text([""] * (stop - start)), text])
            cond = torch.cat([cond, cond])
        step_gen = torch.Generator().manual_seed(config.seed * 7919 + start)
        for t in scheduler.timesteps:
            x = torch.cat([latents, latents]) if guided else latents
            x = scheduler.scale_model_input(x, t)
            down, mid = model.controlnet(
                x,
                t,
                encoder_hidden_states=text,
                controlnet_cond=cond,
                conditioning_scale=config.controlnet_scale,
                return_dict=False,
            )
            pred = model.unet(
                x,
                t,
                encoder_hidden_states=text,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
            if guided:
                uncond, conditioned = pred.chunk(2)
                pred = uncond + config.guidance * (conditioned - uncond)
            kwargs = {"generator": step_gen} if config.sampler == "ddpm" else {"eta": 0.0}
            latents = scheduler.step(pred, t, latents, **kwargs).prev_sample
        decoded = model.vae.decode(latents / model.scaling_factor).sample
        out.append(model.from_vae_pixels(decoded).cpu().numpy())
        if progress is not None:
            progress(stop, n)
    return np.concatenate(out).astype(np.float32)


def model_spec(model: SynthModel) -> TaskSpec:
    """The task the model was trained on (from its JSON)."""
    return TaskSpec.model_validate(model.meta["task"])


def plan_layouts(
    model: SynthModel,
    model_dir: str | Path,
    n: int,
    layout: Layout = "from-manifest",
    captions: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, list[list[Any]], list[str], list[str], list[str]]:
    """Condition masks, boxes, captions, sites and source cases of ``n`` samples.

    ``from-manifest`` cycles through the training layouts in a seeded random order (with
    their own captions); ``random`` draws new layouts (see
    :func:`medfleet.synth.pairs.random_layout`) with captions of random training rows.
    ``captions`` (e.g. lines of ``--captions FILE``) replace the captions, cycled.
    """
    saved = load_layouts(model_dir)
    spec = model_spec(model)
    size = model.config.image_size
    rng = np.random.default_rng(seed)
    count = len(saved["case_ids"])
    examples = [
        Pair(
            str(saved["case_ids"][i]),
            str(saved["sites"][i]),
            None,
            saved["conditions"][i].astype(np.float32),
            parse_boxes(str(saved["boxes"][i])),
            {},
        )
        for i in range(count)
    ]
    order = np.concatenate([rng.permutation(count) for _ in range(n // max(count, 1) + 1)])[:n]
    conds, boxes, caps, sites, sources = [], [], [], [], []
    for k, i in enumerate(order.tolist()):
        if layout == "from-manifest":
            conds.append(examples[i].condition)
            boxes.append(examples[i].boxes)
            sources.append(examples[i].case_id)
        elif layout == "random":
            cond, placed = random_layout(spec, examples, size, rng)
            conds.append(cond)
            boxes.append(placed)
            sources.append("")
        else:
            raise MedfleetError(f"layout {layout!r} is not 'from-manifest' or 'random'")
        caps.append(captions[k % len(captions)] if captions else str(saved["captions"][i]))
        sites.append(SYNTHETIC_SITE if captions else examples[i].site)
    return np.stack(conds), boxes, caps, sites, sources


def write_synthetic_set(
    model_dir: str | Path,
    out: str | Path,
    n: int,
    *,
    layout: Layout = "from-manifest",
    captions: Sequence[str] | None = None,
    config: SampleConfig | None = None,
    model: SynthModel | None = None,
    prefix: str = "syn",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate ``n`` pairs and write images, masks/boxes, table and manifest to ``out``.

    Args:
        model_dir: The model folder (``medfleet synth train --out``).
        out: Output folder (created; files inside are replaced).
        n: Number of pairs.
        layout: ``from-manifest`` or ``random``.
        captions: Captions to use instead of the training ones (cycled).
        config: Sampling settings.
        model: The loaded model (loaded from ``model_dir`` when ``None``).
        prefix: Case id prefix.
        progress: ``progress(done, n)``.

    Returns:
        Path of the written ``manifest.yaml``.
    """
    from medfleet.synth.model import load_synth

    if n < 1:
        raise MedfleetError(f"n must be at least 1, got {n}")
    config = config or SampleConfig()
    model = model or load_synth(model_dir)
    spec = model_spec(model)
    out = Path(out)
    conds, boxes, caps, sites, sources = plan_layouts(
        model, model_dir, n, layout, captions, config.seed
    )
    images = generate(model, conds, caps, config, progress=progress)
    rows = []
    values = list(model.meta.get("label_values") or spec.foreground_labels)
    for i in range(n):
        case = f"{prefix}_{i:05d}"
        pixels = np.clip(np.round(images[i] * 255.0), 0, 255).astype(np.uint8)
        pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
        image_rel = f"{spec.name}/images/{case}.png"
        write_png(out / image_rel, pixels)
        row: dict[str, Any] = {
            "case_id": case,
            "image": image_rel,
            "site": sites[i],
            "split": "train",
            "subject": case,
        }
        if spec.type is TaskType.detection:
            row["boxes"] = format_boxes(boxes[i])
        else:
            mask_rel = f"{spec.name}/mask/{case}.png"
            write_png(out / mask_rel, labels_from_condition(conds[i], values), label=True)
            row["mask"] = mask_rel
        row.update(
            caption=caps[i],
            synthetic=1,
            source=f"synth:{Path(model_dir).name}",
            source_case=sources[i],
        )
        rows.append(row)
    write_table(out / f"{spec.name}.csv", rows)
    site_names = sorted(set(sites))
    task = spec.model_copy(update={"table": Path(f"{spec.name}.csv"), "raters": 0})
    manifest = Manifest(
        name=f"{spec.name}-synthetic",
        description=f"synthetic pairs from {Path(model_dir).name}",
        sites=[Site(name=s) for s in site_names],
        tasks=[task],
        metadata={"synthetic": True, "model": str(Path(model_dir).resolve())},
    )
    path = manifest.save(out / "manifest.yaml")
    write_json_atomic(
        out / "sampling.json",
        {
            "model": str(Path(model_dir).resolve()),
            "n": n,
            "layout": layout,
            "captions": "file" if captions else "training",
            "sample_config": config.model_dump(mode="json"),
        },
    )
    return path


def read_captions(path: str | Path) -> list[str]:
    r"""Non-empty lines of a captions file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.txt"
        >>> _ = p.write_text("1 nodule at site_a\n\n2 cyst\n")
        >>> read_captions(p)
        ['1 nodule at site_a', '2 cyst']
    """
    file = Path(path)
    if not file.is_file():
        raise MedfleetError(f"captions file {file} not found (fix: one caption per line)")
    lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise MedfleetError(f"captions file {file} is empty (fix: one caption per line)")
    return lines
