"""Settings of a synthesis model and of its training (pydantic; no torch import).

Example:
    >>> cfg = SynthConfig(image_size=32, prediction="v")
    >>> SynthConfig.model_validate(cfg.model_dump()) == cfg
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Prediction = Literal["epsilon", "v"]
Sampler = Literal["ddpm", "ddim"]


class SynthConfig(BaseModel):
    """Architecture and training of a latent diffusion model with a mask ControlNet.

    Attributes:
        image_size: Side of the square images the model makes (a multiple of the VAE's
            down-sampling factor times 4).
        channels: Image channels (1 grey, 3 RGB); a ``--base`` model whose VAE expects 3
            channels gets grey images replicated.
        base: Local Stable-Diffusion-style folder (``vae/``, ``unet/``, ``text_encoder/``,
            ``tokenizer/``); ``None`` builds the tiny configuration below from scratch.
        vae_channels: Block widths of the tiny VAE (one down-sampling per extra block).
        latent_channels: Latent channels of the tiny VAE.
        unet_channels: Block widths of the tiny UNet (first block plain, the rest with
            text cross-attention).
        text_dim: Width of the tiny text encoder (and the UNet's cross-attention).
        text_layers: Transformer layers of the tiny text encoder.
        max_words: Token length of a caption (with begin/end markers).
        conditioning_embedding: Channels of the ControlNet's mask encoder; its length minus
            one is the number of 2x down-samplings, which must match the VAE's factor.
        prediction: ``epsilon`` (noise) or ``v`` (velocity) parameterisation.
        train_timesteps: Diffusion steps of the noise schedule.
        vae_steps: Optimiser steps of the VAE stage (scratch only).
        ldm_steps: Steps of the latent diffusion stage (UNet + tiny text encoder).
        controlnet_steps: Steps of the ControlNet stage.
        freeze_ldm: Keep the UNet and text encoder frozen during the ControlNet stage (as in
            the published recipe); ``False`` trains them jointly with the ControlNet.
        batch_size: Images per step.
        lr: AdamW learning rate of the diffusion stages.
        vae_lr: Learning rate of the VAE stage.
        kl_weight: Weight of the VAE's KL term.
        caption_dropout: Probability of training on the empty caption (enables
            classifier-free guidance).
        seed: Seed of initialisation, batches and noise.
        threads: CPU threads of torch (``None``: torch's default).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
    """

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(default=32, ge=8)
    channels: int = Field(default=1, ge=1)
    base: Path | None = None
    vae_channels: tuple[int, ...] = (16, 32)
    latent_channels: int = Field(default=4, ge=1)
    unet_channels: tuple[int, ...] = (32, 64)
    text_dim: int = Field(default=32, ge=8)
    text_layers: int = Field(default=2, ge=1)
    max_words: int = Field(default=16, ge=4)
    conditioning_embedding: tuple[int, ...] = (8, 16)
    prediction: Prediction = "epsilon"
    train_timesteps: int = Field(default=1000, ge=10)
    vae_steps: int = Field(default=150, ge=0)
    ldm_steps: int = Field(default=300, ge=0)
    controlnet_steps: int = Field(default=300, ge=0)
    freeze_ldm: bool = True
    batch_size: int = Field(default=8, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    vae_lr: float = Field(default=2e-3, gt=0.0)
    kl_weight: float = Field(default=1e-6, ge=0.0)
    caption_dropout: float = Field(default=0.1, ge=0.0, le=1.0)
    seed: int = Field(default=0, ge=0)
    threads: int | None = Field(default=None, ge=1)
    device: str = "auto"

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        if self.base is None:
            factor = 2 ** (len(self.vae_channels) - 1)
            if len(self.conditioning_embedding) - 1 != len(self.vae_channels) - 1:
                raise ValueError(
                    f"conditioning_embedding has {len(self.conditioning_embedding)} entries but "
                    f"the VAE down-samples {factor}x: give {len(self.vae_channels)} entries"
                )
            step = factor * 2 ** (len(self.unet_channels) - 1)
            if self.image_size % step:
                raise ValueError(
                    f"image_size {self.image_size} must be a multiple of {step} "
                    "(VAE factor times UNet down-sampling)"
                )
        return self

    @property
    def vae_factor(self) -> int:
        """Pixels per latent cell of the tiny VAE (``2 ** (len(vae_channels) - 1)``)."""
        return 2 ** (len(self.vae_channels) - 1)


class SampleConfig(BaseModel):
    """How images are drawn from a trained model.

    Attributes:
        steps: Denoising steps.
        sampler: ``ddpm`` (ancestral) or ``ddim`` (deterministic with ``eta=0``).
        guidance: Classifier-free guidance scale (1: no guidance).
        controlnet_scale: Multiplier of the ControlNet residuals (0: ignore the mask).
        batch_size: Images per denoising batch.
        seed: Seed of the initial noise.

    Example:
        >>> SampleConfig(sampler="ddim", steps=20).guidance
        3.0
    """

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=50, ge=1)
    sampler: Sampler = "ddim"
    guidance: float = Field(default=3.0, ge=0.0)
    controlnet_scale: float = Field(default=1.0, ge=0.0)
    batch_size: int = Field(default=16, ge=1)
    seed: int = Field(default=0, ge=0)
