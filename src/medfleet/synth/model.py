"""The synthesis model: VAE, text encoder, UNet and mask ControlNet, saved as one folder.

A model folder holds one ``save_pretrained`` folder per diffusers / transformers
component and a ``medfleet_synth.json`` with everything else::

    vae/  unet/  controlnet/  text_encoder/  [tokenizer/ for a --base model]
    scheduler/            the noise schedule (DDPMScheduler config)
    medfleet_synth.json   config, task, condition channels, caption settings, vocabulary
    layouts.npz           the training layouts (masks, boxes, captions, sites) for sampling

The folder is written next to its destination and renamed into place, so a reader never
sees half a model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medfleet.errors import MedfleetError, one_line
from medfleet.synth.captions import WordVocab
from medfleet.synth.config import SynthConfig

FORMAT = "medfleet.synth/1"
META_FILE = "medfleet_synth.json"


@dataclass
class SynthModel:
    """A latent diffusion model with a ControlNet over mask channels.

    Attributes:
        vae: ``AutoencoderKL``.
        unet: ``UNet2DConditionModel`` with text cross-attention.
        controlnet: ``ControlNetModel`` reading the condition masks.
        text_encoder: ``CLIPTextModel``.
        tokenizer: :class:`WordVocab` (scratch) or a CLIP tokenizer (``--base``).
        scheduler_config: Config of the training noise schedule.
        config: The :class:`SynthConfig`.
        meta: Task spec, condition names, caption settings and training record.
    """

    vae: Any
    unet: Any
    controlnet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]
    config: SynthConfig
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def vae_channels(self) -> int:
        """Channels the VAE reads and writes."""
        return int(self.vae.config.in_channels)

    @property
    def scaling_factor(self) -> float:
        """Latent scaling of the VAE (latents are multiplied by it before diffusion)."""
        return float(self.vae.config.scaling_factor)

    @property
    def device(self) -> torch.device:
        """Device of the UNet."""
        return next(self.unet.parameters()).device

    def to(self, device: str | torch.device) -> SynthModel:
        """Move every network to ``device``."""
        for net in (self.vae, self.unet, self.controlnet, self.text_encoder):
            net.to(device)
        return self

    def eval(self) -> SynthModel:
        """Put every network in eval mode."""
        for net in (self.vae, self.unet, self.controlnet, self.text_encoder):
            net.eval()
        return self

    def token_ids(self, captions: list[str]) -> torch.Tensor:
        """Token ids ``(N, L)`` of captions with this model's tokenizer."""
        if isinstance(self.tokenizer, WordVocab):
            return torch.tensor(self.tokenizer.encode_batch(captions), dtype=torch.long)
        out = self.tokenizer(
            captions,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return out.input_ids

    def encode_text(self, captions: list[str]) -> torch.Tensor:
        """Text embeddings ``(N, L, D)`` for the UNet's cross-attention."""
        ids = self.token_ids(captions).to(self.device)
        return self.text_encoder(ids)[0]

    def to_vae_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images ``(N, C, S, S)`` to the VAE's [-1, 1] input (grey repeated to RGB)."""
        x = images * 2.0 - 1.0
        if x.shape[1] != self.vae_channels:
            x = x.repeat(1, self.vae_channels // x.shape[1], 1, 1)
        return x

    def from_vae_pixels(self, decoded: torch.Tensor) -> torch.Tensor:
        """The VAE's [-1, 1] output to [0, 1] images with the model's channels."""
        x = ((decoded.clamp(-1, 1) + 1.0) / 2.0).float()
        if x.shape[1] != self.config.channels and self.config.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        return x

    def save(self, out: str | Path, layouts: dict[str, Any] | None = None) -> Path:
        """Write the model folder atomically (temporary folder, then rename).

        Args:
            out: Destination folder (replaced when it exists).
            layouts: Arrays for ``layouts.npz`` (see :mod:`medfleet.synth.train`).
        """
        import numpy as np

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            self.vae.save_pretrained(tmp / "vae")
            self.unet.save_pretrained(tmp / "unet")
            self.controlnet.save_pretrained(tmp / "controlnet")
            self.text_encoder.save_pretrained(tmp / "text_encoder")
            if not isinstance(self.tokenizer, WordVocab):
                self.tokenizer.save_pretrained(tmp / "tokenizer")
            (tmp / "scheduler").mkdir()
            (tmp / "scheduler" / "scheduler_config.json").write_text(
                json.dumps(self.scheduler_config, indent=2, sort_keys=True, default=str)
            )
            meta = dict(self.meta)
            meta["format"] = FORMAT
            meta["config"] = self.config.model_dump(mode="json")
            if isinstance(self.tokenizer, WordVocab):
                meta["vocab"] = self.tokenizer.to_dict()
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            if layouts is not None:
                np.savez_compressed(tmp / "layouts.npz", **layouts)
            elif (out / "layouts.npz").is_file():
                shutil.copy2(out / "layouts.npz", tmp / "layouts.npz")
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
                old.rmdir()
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def scheduler_config_for(config: SynthConfig, base_config: dict[str, Any] | None) -> dict[str, Any]:
    """The training noise schedule: the base model's (with our prediction type) or a cosine one.

    Example:
        >>> scheduler_config_for(SynthConfig(prediction="v"), None)["prediction_type"]
        'v_prediction'
    """
    prediction = "v_prediction" if config.prediction == "v" else "epsilon"
    if base_config:
        keep = {k: v for k, v in base_config.items() if not k.startswith("_")}
        keep.update(prediction_type=prediction)
        return keep
    return {
        "num_train_timesteps": config.train_timesteps,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": prediction,
        "clip_sample": False,
    }


def build_scratch(config: SynthConfig, vocab: WordVocab, condition_channels: int) -> SynthModel:
    """Tiny randomly initialised networks (seeded by ``config.seed``).

    The VAE halves the side once per extra entry of ``vae_channels``; the UNet's first
    block is plain and the others attend to the text; the ControlNet is a copy of the
    UNet's encoder whose mask encoder has ``condition_channels`` inputs.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(config.seed)
    n_vae = len(config.vae_channels)
    groups = min(8, *config.vae_channels)
    vae = AutoencoderKL(
        in_channels=config.channels,
        out_channels=config.channels,
        down_block_types=("DownEncoderBlock2D",) * n_vae,
        up_block_types=("UpDecoderBlock2D",) * n_vae,
        block_out_channels=tuple(config.vae_channels),
        layers_per_block=1,
        latent_channels=config.latent_channels,
        norm_num_groups=groups,
        sample_size=config.image_size,
    )
    n_unet = len(config.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=config.image_size // config.vae_factor,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n_unet - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n_unet - 1) + ("UpBlock2D",),
        block_out_channels=tuple(config.unet_channels),
        layers_per_block=1,
        cross_attention_dim=config.text_dim,
        attention_head_dim=8,
        norm_num_groups=min(8, *config.unet_channels),
    )
    text_config = CLIPTextConfig(
        vocab_size=len(vocab.tokens),
        hidden_size=config.text_dim,
        intermediate_size=2 * config.text_dim,
        num_hidden_layers=config.text_layers,
        num_attention_heads=4,
        max_position_embeddings=vocab.max_words,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    text_encoder = CLIPTextModel(text_config)
    controlnet = ControlNetModel.from_unet(
        unet,
        conditioning_embedding_out_channels=tuple(config.conditioning_embedding),
        conditioning_channels=condition_channels,
    )
    wake_mask_encoder(controlnet)
    return SynthModel(
        vae, unet, controlnet, text_encoder, vocab, scheduler_config_for(config, None), config
    )


def wake_mask_encoder(controlnet: Any, std: float = 0.02) -> None:
    """Give the mask encoder's zero-initialised output convolution small random weights.

    ControlNet zero-initialises both the mask encoder's last convolution and the
    convolutions that add its residuals to the UNet; with both at zero the mask gets no
    gradient until the second has grown, which costs a tiny model most of a short run.
    Waking the first keeps the model's output unchanged at initialisation (the residual
    convolutions are still zero) while the mask signal flows from the first step.
    """
    conv = controlnet.controlnet_cond_embedding.conv_out
    with torch.no_grad():
        torch.nn.init.normal_(conv.weight, std=std)
        torch.nn.init.zeros_(conv.bias)


def build_from_base(config: SynthConfig, condition_channels: int) -> SynthModel:
    """Load a local Stable-Diffusion-style folder and add a fresh ControlNet (no download).

    Raises:
        MedfleetError: The folder lacks one of ``vae``, ``unet``, ``text_encoder``,
            ``tokenizer``.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    base = Path(config.base or "")
    missing = [p for p in ("vae", "unet", "text_encoder", "tokenizer") if not (base / p).is_dir()]
    if missing:
        raise MedfleetError(
            f"base model {base} lacks {missing} (fix: give a local Stable-Diffusion-style "
            "folder with vae/, unet/, text_encoder/ and tokenizer/; nothing is downloaded)"
        )
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae", local_files_only=True)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(
        base, subfolder="text_encoder", local_files_only=True
    )
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", local_files_only=True)
    base_sched = None
    sched_file = base / "scheduler" / "scheduler_config.json"
    if sched_file.is_file():
        base_sched = json.loads(sched_file.read_text())
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    embedding = (16, 32, 96, 256)[: factor.bit_length()]
    torch.manual_seed(config.seed)
    controlnet = ControlNetModel.from_unet(
        unet,
        conditioning_embedding_out_channels=embedding,
        conditioning_channels=condition_channels,
    )
    wake_mask_encoder(controlnet)
    return SynthModel(
        vae,
        unet,
        controlnet,
        text_encoder,
        tokenizer,
        scheduler_config_for(config, base_sched),
        config,
    )


def load_synth(path: str | Path, device: str | torch.device = "cpu") -> SynthModel:
    """Load a model folder written by :meth:`SynthModel.save` (eval mode).

    Raises:
        MedfleetError: The folder or one of its parts is missing or of another format.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextModel

    path = Path(path)
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise MedfleetError(
            f"{path} is not a synthesis model folder: {META_FILE} missing "
            "(fix: give the --out folder of 'medfleet synth train')"
        )
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise MedfleetError(f"{meta_file}: format {meta.get('format')!r}, expected {FORMAT!r}")
    config = SynthConfig.model_validate(meta["config"])
    # weights only from safetensors files in the folder itself: no pickle, no download
    safe = {"local_files_only": True, "use_safetensors": True}
    try:
        vae = AutoencoderKL.from_pretrained(path / "vae", **safe)
        unet = UNet2DConditionModel.from_pretrained(path / "unet", **safe)
        controlnet = ControlNetModel.from_pretrained(path / "controlnet", **safe)
        text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", **safe)
    except (OSError, ValueError) as exc:
        raise MedfleetError(
            f"cannot load synthesis model {path}: {one_line(exc)} "
            "(fix: give the --out folder of 'medfleet synth train', copied whole)"
        ) from None
    if "vocab" in meta:
        tokenizer: Any = WordVocab.from_dict(meta["vocab"])
    else:
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    scheduler_config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    model = SynthModel(
        vae, unet, controlnet, text_encoder, tokenizer, scheduler_config, config, meta
    )
    return model.to(device).eval()


def load_layouts(path: str | Path) -> dict[str, Any]:
    """The training layouts saved with a model (``layouts.npz``) as a dict of arrays."""
    import numpy as np

    file = Path(path) / "layouts.npz"
    if not file.is_file():
        raise MedfleetError(f"{file} missing (fix: retrain; the model folder is incomplete)")
    with np.load(file, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
