"""Train a synthesis model on the image-annotation pairs of one task.

Stages (each skipped when its step count is 0):

1. **VAE** (scratch only): reconstruction (L1 + MSE) with a small KL term; then the
   latent scaling factor is set to ``1 / std`` of the training latents.
2. **LDM**: the UNet (and the tiny text encoder) learn to denoise latents given the
   caption; captions are dropped with probability ``caption_dropout`` for classifier-free
   guidance. A ``--base`` model keeps its text encoder and VAE frozen.
3. **ControlNet**: a copy of the UNet's encoder reads the condition masks; with
   ``freeze_ldm`` (the published recipe) only the ControlNet learns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medfleet.errors import MedfleetError
from medfleet.synth.captions import WordVocab, make_caption
from medfleet.synth.config import SynthConfig
from medfleet.synth.model import SynthModel, build_from_base, build_scratch
from medfleet.synth.pairs import Pair, condition_names, load_pair
from medfleet.tables import format_boxes
from medfleet.tasks import Manifest, TaskType
from medfleet.train.datasets import load_task_rows

LogFn = Callable[[str], None]


@dataclass
class SynthTrainResult:
    """What :func:`train_synth` did.

    Attributes:
        model: The trained model (eval mode).
        out: Its folder.
        info: The training record stored in the model's JSON.
    """

    model: SynthModel
    out: Path
    info: dict[str, Any]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Example:
        >>> resolve_device("cpu").type
        'cpu'
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_pairs(
    manifest: Manifest,
    task: str,
    config: SynthConfig,
    splits: Sequence[str] = ("train",),
    *,
    sites: Sequence[str] | None = None,
) -> list[Pair]:
    """Pairs of a task's rows in ``splits`` (optionally only ``sites``) on the model grid.

    Raises:
        MedfleetError: No row is left.
    """
    spec = manifest.task(task)
    condition_names(spec)
    rows = load_task_rows(manifest, spec, splits)
    if sites is not None:
        rows = [r for r in rows if r.get("site") in set(sites)]
    if not rows:
        raise MedfleetError(
            f"task {task!r}: no labelled rows in split(s) {list(splits)}"
            + (f" of sites {list(sites)}" if sites is not None else "")
            + " (fix: check the table's split and site columns)"
        )
    return [load_pair(manifest, spec, r, config.image_size, config.channels) for r in rows]


def train_synth(
    manifest: Manifest,
    task: str,
    out: str | Path,
    config: SynthConfig | None = None,
    *,
    caption_column: str | None = None,
    caption_template: str | None = None,
    sites: Sequence[str] | None = None,
    log: LogFn | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SynthTrainResult:
    """Train a synthesis model on the ``train`` rows of ``task`` and save it to ``out``.

    Args:
        manifest: The manifest.
        task: A detection or segmentation task.
        out: Model folder (written atomically).
        config: Architecture and training settings.
        caption_column: Table column holding the captions.
        caption_template: Template over the row's columns (see
            :func:`medfleet.synth.captions.make_caption`).
        sites: Use only these sites' rows (e.g. to keep an external site unseen).
        log: Receives one line per stage.
        progress: Called as ``progress(step, total)`` over all stages.

    Returns:
        The model, its folder and the training record.
    """
    config = config or SynthConfig()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    spec = manifest.task(task)
    names = condition_names(spec)
    pairs = load_pairs(manifest, task, config, ("train",), sites=sites)
    captions = [
        make_caption(spec, p.row, column=caption_column, template=caption_template) for p in pairs
    ]
    try:
        val_pairs = load_pairs(manifest, task, config, ("val",), sites=sites)
    except MedfleetError:
        val_pairs = []
    if config.base is None:
        model = build_scratch(config, WordVocab.build(captions, config.max_words), len(names))
    else:
        model = build_from_base(config, len(names))
    model.to(device)
    images = torch.from_numpy(np.stack([p.image for p in pairs])).float()  # type: ignore[misc]
    conds = torch.from_numpy(np.stack([p.condition for p in pairs])).float()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    total = (config.vae_steps if config.base is None else 0) + config.ldm_steps
    total += config.controlnet_steps
    state = {"done": 0}
    history: dict[str, list[float]] = {}
    tic = time.perf_counter()

    def tick() -> None:
        state["done"] += 1
        if progress is not None:
            progress(state["done"], total)

    def say(line: str) -> None:
        if log is not None:
            log(line)

    if config.base is None and config.vae_steps:
        history["vae"] = _train_vae(model, images, config, rng, device, tick)
        say(f"vae: {config.vae_steps} steps, last loss {history['vae'][-1]:.4f}")
    latents_mean, latents_std = _latent_stats(model, images, device)
    if config.base is None:
        scale = 1.0 / max(float(latents_mean.std()), 1e-6)
        model.vae.register_to_config(scaling_factor=scale)
    if config.ldm_steps:
        history["ldm"] = _train_diffusion(
            model, latents_mean, latents_std, conds, captions, config, rng, device, tick,
            controlnet=False,
        )  # fmt: skip
        say(f"ldm: {config.ldm_steps} steps, last loss {history['ldm'][-1]:.4f}")
    if config.controlnet_steps:
        history["controlnet"] = _train_diffusion(
            model, latents_mean, latents_std, conds, captions, config, rng, device, tick,
            controlnet=True,
        )  # fmt: skip
        say(f"controlnet: {config.controlnet_steps} steps, last loss "
            f"{history['controlnet'][-1]:.4f}")  # fmt: skip
    model.eval()
    recon = reconstruction_quality(model, val_pairs or pairs)
    info = {
        "task": spec.model_dump(mode="json", exclude_none=True),
        "task_name": spec.name,
        "manifest": {"name": manifest.name, "path": str(manifest.root or "")},
        "condition_names": names,
        "condition_kind": "boxes" if spec.type is TaskType.detection else "mask",
        "label_values": spec.foreground_labels,
        "caption_column": caption_column,
        "caption_template": caption_template,
        "sites": sorted({p.site for p in pairs}),
        "train_cases": len(pairs),
        "train_seconds": round(time.perf_counter() - tic, 2),
        "loss_last": {k: float(np.mean(v[-10:])) for k, v in history.items() if v},
        "reconstruction": {**recon, "split": "val" if val_pairs else "train"},
    }
    model.meta.update(info)
    layouts = {
        "conditions": np.stack([p.condition for p in pairs]).astype(np.uint8),
        "captions": np.array(captions),
        "sites": np.array([p.site for p in pairs]),
        "case_ids": np.array([p.case_id for p in pairs]),
        "boxes": np.array([format_boxes(p.boxes) for p in pairs]),
    }
    model.save(out, layouts)
    say(f"saved {out}")
    return SynthTrainResult(model, Path(out), info)


def _batches(n: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(n, size=min(batch, n), replace=n < batch)


def _train_vae(
    model: SynthModel,
    images: torch.Tensor,
    config: SynthConfig,
    rng: np.random.Generator,
    device: torch.device,
    tick: Callable[[], None],
) -> list[float]:
    vae = model.vae
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    losses = []
    for _ in range(config.vae_steps):
        idx = _batches(len(images), config.batch_size, rng)
        x = model.to_vae_pixels(images[idx].to(device))
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        loss = loss + config.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        tick()
    vae.eval()
    return losses


@torch.no_grad()
def _latent_stats(
    model: SynthModel, images: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for start in range(0, len(images), 16):
        dist = model.vae.encode(model.to_vae_pixels(images[start : start + 16].to(device)))
        means.append(dist.latent_dist.mean.cpu())
        stds.append(dist.latent_dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def _train_diffusion(
    model: SynthModel,
    latents_mean: torch.Tensor,
    latents_std: torch.Tensor,
    conds: torch.Tensor,
    captions: list[str],
    config: SynthConfig,
    rng: np.random.Generator,
    device: torch.device,
    tick: Callable[[], None],
    *,
    controlnet: bool,
) -> list[float]:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(model.scheduler_config)
    scratch = config.base is None
    trainable: list[torch.nn.Module] = []
    if controlnet:
        trainable.append(model.controlnet)
        if not config.freeze_ldm:
            trainable += [model.unet] + ([model.text_encoder] if scratch else [])
    else:
        trainable += [model.unet] + ([model.text_encoder] if scratch else [])
    for net in (model.vae, model.unet, model.controlnet, model.text_encoder):
        net.requires_grad_(any(net is t for t in trainable))
        net.train(any(net is t for t in trainable))
    params = [p for net in trainable for p in net.parameters()]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    losses = []
    steps = config.controlnet_steps if controlnet else config.ldm_steps
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warmup)
            * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        ),
    )
    n_train = scheduler.config.num_train_timesteps
    for _ in range(steps):
        idx = _batches(len(latents_mean), config.batch_size, rng)
        mean, std = latents_mean[idx].to(device), latents_std[idx].to(device)
        latents = (mean + std * torch.randn_like(std)) * model.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, n_train, (len(idx),), device=device)
        noisy = scheduler.add_noise(latents, noise, t)
        texts = ["" if rng.random() < config.caption_dropout else captions[i] for i in idx.tolist()]
        hidden = model.encode_text(texts)
        kwargs: dict[str, Any] = {}
        if controlnet:
            down, mid = model.controlnet(
                noisy,
                t,
                encoder_hidden_states=hidden,
                controlnet_cond=conds[idx].to(device),
                return_dict=False,
            )
            kwargs = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        pred = model.unet(noisy, t, encoder_hidden_states=hidden, **kwargs).sample
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, t)
        else:
            target = noise
        loss = F.mse_loss(pred.float(), target.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        tick()
    for net in (model.vae, model.unet, model.controlnet, model.text_encoder):
        net.requires_grad_(False)
        net.eval()
    return losses


@torch.no_grad()
def reconstruction_quality(model: SynthModel, pairs: Sequence[Pair]) -> dict[str, float]:
    """PSNR (dB, data range 1) and MAE of VAE reconstructions of the pairs' images."""
    from medfleet.synth.quality import mae, psnr

    if not pairs:
        return {"psnr_db": float("nan"), "mae": float("nan"), "n": 0}
    images = torch.from_numpy(np.stack([p.image for p in pairs])).float()  # type: ignore[misc]
    outs = []
    for start in range(0, len(images), 16):
        x = model.to_vae_pixels(images[start : start + 16].to(model.device))
        z = model.vae.encode(x).latent_dist.mean
        outs.append(model.from_vae_pixels(model.vae.decode(z).sample).cpu())
    recon = torch.cat(outs).numpy()
    truth = images.numpy()
    return {
        "psnr_db": float(np.mean([psnr(a, b) for a, b in zip(recon, truth, strict=True)])),
        "mae": float(np.mean([mae(a, b) for a, b in zip(recon, truth, strict=True)])),
        "n": len(pairs),
    }
