"""Fine-tuning from a local Stable-Diffusion-style folder (a tiny one written here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _write_base(folder: Path) -> None:
    """A tiny SD-layout folder: 3-channel VAE (4x down), UNet, CLIP text encoder, tokenizer."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4, norm_num_groups=8, scaling_factor=0.5,
    ).save_pretrained(folder / "vae")  # fmt: skip
    UNet2DConditionModel(
        in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
        attention_head_dim=8, norm_num_groups=8,
    ).save_pretrained(folder / "unet")  # fmt: skip
    words = ["nodule", "cyst", "at", "site", "a", "b", "1", "2", "3"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({f"{w}</w>": i + 2 for i, w in enumerate(words)})
    tok_dir = folder / "tokenizer"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=12
    )
    tokenizer.save_pretrained(tok_dir)
    CLIPTextModel(
        CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                       num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=12,
                       bos_token_id=0, eos_token_id=1, pad_token_id=1)
    ).save_pretrained(folder / "text_encoder")  # fmt: skip
    sched = {"_class_name": "DDPMScheduler", "num_train_timesteps": 100,
             "beta_schedule": "scaled_linear", "beta_start": 0.00085,
             "beta_end": 0.012}  # fmt: skip
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))


def test_fine_tune_from_local_base_freezes_what_the_recipe_freezes(tmp_path: Path):
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel

    from medfleet.data.phantoms import PhantomConfig, generate_phantoms
    from medfleet.synth.config import SampleConfig, SynthConfig
    from medfleet.synth.model import load_synth
    from medfleet.synth.sample import write_synthetic_set
    from medfleet.synth.train import train_synth
    from medfleet.tasks import Manifest

    base = tmp_path / "base"
    _write_base(base)
    path = generate_phantoms(
        tmp_path / "ph", PhantomConfig(tasks=["nodule_det"]), sites=1, cases_per_site=6, size=32
    )
    config = SynthConfig(
        base=base, image_size=16, ldm_steps=2, controlnet_steps=2, batch_size=2,
        prediction="v", threads=1,
    )  # fmt: skip
    result = train_synth(Manifest.load(path), "nodule_det", tmp_path / "model", config)
    model = load_synth(tmp_path / "model")
    assert model.scheduler_config["prediction_type"] == "v_prediction"
    assert model.scheduler_config["num_train_timesteps"] == 100  # the base's schedule
    assert (tmp_path / "model" / "tokenizer").is_dir() and "vocab" not in model.meta
    assert model.controlnet.config.conditioning_channels == 2  # cyst, nodule
    # VAE and text encoder are the base's, untouched; the UNet was fine-tuned
    vae = AutoencoderKL.from_pretrained(base / "vae")
    text = CLIPTextModel.from_pretrained(base / "text_encoder")
    for ours, theirs in ((model.vae, vae), (model.text_encoder, text)):
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert model.scaling_factor == 0.5
    assert np.isfinite(result.info["loss_last"]["controlnet"])
    out = write_synthetic_set(
        tmp_path / "model", tmp_path / "syn", 2, config=SampleConfig(steps=2, sampler="ddpm"),
        model=model,
    )  # fmt: skip
    assert out.is_file() and len(list((tmp_path / "syn" / "nodule_det" / "images").iterdir())) == 2
