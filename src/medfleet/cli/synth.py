"""``medfleet synth``: train a mask-conditioned diffusion model, sample pairs, check quality.

Verbs: ``train``, ``sample``, ``quality``, ``reader-kit``, ``reader-score``,
``augment-study`` (see docs/cli/synth.md). Torch and diffusers load inside the commands.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from medfleet.cli.common import (
    DEFAULT_N_RESAMPLES,
    FORMAT_OPTION,
    ManifestOption,
    NResamplesOption,
    OutputFormat,
    check_out_folder,
    fail,
    print_json,
    say,
)
from medfleet.cli.deprecated import renamed_options
from medfleet.cli.progress import progress_bar
from medfleet.cli.run_options import (
    BackboneOption,
    BatchSizeOption,
    ImageSizeOption,
    LrOption,
    RunDeviceOption,
    SeedOption,
    ThreadsOption,
    WeightsOption,
    check_device,
)

app = typer.Typer(
    help="Synthesis of image-annotation pairs (latent diffusion + mask ControlNet).",
    no_args_is_help=True,
)


class Prediction(enum.StrEnum):
    """What the network predicts."""

    epsilon = "epsilon"
    v = "v"


class Sampler(enum.StrEnum):
    """Denoising sampler."""

    ddpm = "ddpm"
    ddim = "ddim"


class Layout(enum.StrEnum):
    """Where condition masks come from."""

    from_manifest = "from-manifest"
    random = "random"


def _emit(fmt: OutputFormat, obj: dict[str, Any], lines: list[str]) -> None:
    if fmt is OutputFormat.json:
        print_json(obj)
    else:
        for line in lines:
            say(line)


def _synth_config(**values: Any) -> Any:
    from pydantic import ValidationError

    from medfleet.synth.config import SynthConfig

    try:
        return SynthConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        fail(f"invalid synthesis settings:\n{exc}", code=2)


@app.command("train")
def train(
    manifest: ManifestOption,
    task: Annotated[
        str,
        typer.Option(
            "--task", "-t", help="The detection or segmentation task whose train rows are learnt."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    base: Annotated[
        Path | None,
        typer.Option("--base", help="Local Stable-Diffusion-style folder to fine-tune."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            min=0,
            help="Optimiser steps of each of the LDM and ControlNet stages (0: skip them).",
        ),
    ] = None,
    vae_steps: Annotated[
        int | None,
        typer.Option("--vae-steps", min=0, help="Optimiser steps of the tiny VAE stage."),
    ] = None,
    image_size: ImageSizeOption = None,
    channels: Annotated[
        int | None,
        typer.Option("--channels", min=1, help="Image channels the model makes (1 grey, 3 RGB)."),
    ] = None,
    prediction: Annotated[
        Prediction,
        typer.Option(
            "--prediction", help="What the network predicts: epsilon (the noise) or v (velocity)."
        ),
    ] = Prediction.epsilon,
    joint: Annotated[
        bool, typer.Option("--joint", help="Train UNet and ControlNet together in stage 3.")
    ] = False,
    batch_size: BatchSizeOption = None,
    lr: LrOption = None,
    caption_column: Annotated[
        str | None, typer.Option("--caption-column", help="Table column with captions.")
    ] = None,
    caption_template: Annotated[
        str | None,
        typer.Option("--caption-template", help="e.g. '{objects} at {site}, {age_band}'."),
    ] = None,
    caption_dropout: Annotated[
        float | None,
        typer.Option(
            "--caption-dropout",
            min=0.0,
            max=1.0,
            help="Share of training steps on the empty caption (for classifier-free guidance).",
        ),
    ] = None,
    seed: SeedOption = 0,
    threads: ThreadsOption = None,
    device: RunDeviceOption = "auto",
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Train a latent diffusion model with a mask ControlNet on one task's train rows."""
    from medfleet.errors import MedfleetError
    from medfleet.synth.train import train_synth
    from medfleet.tasks import Manifest

    check_device(device)
    check_out_folder(out)
    config = _synth_config(
        base=base,
        ldm_steps=steps,
        controlnet_steps=steps,
        vae_steps=vae_steps,
        image_size=image_size,
        channels=channels,
        prediction=prediction.value,
        freeze_ldm=not joint,
        batch_size=batch_size,
        lr=lr,
        caption_dropout=caption_dropout,
        seed=seed,
        threads=threads,
        device=device,
    )
    text = fmt is OutputFormat.text
    try:
        m = Manifest.load(manifest)
        with progress_bar("synth train", enabled=text) as update:
            result = train_synth(
                m, task, out, config, caption_column=caption_column,
                caption_template=caption_template, progress=update,
            )  # fmt: skip
    except (MedfleetError, KeyError) as exc:
        fail(str(exc))
    info = {"model": str(out), **{k: result.info[k] for k in (
        "task_name", "train_cases", "train_seconds", "loss_last", "reconstruction")}}  # fmt: skip
    rec = result.info["reconstruction"]
    _emit(fmt, info, [
        f"model: {out} ({result.info['train_cases']} training pairs, "
        f"{result.info['train_seconds']} s)",
        f"VAE reconstruction ({rec['split']}): PSNR {rec['psnr_db']:.2f} dB, "
        f"MAE {rec['mae']:.4f}",
    ])  # fmt: skip


@app.command("sample", cls=renamed_options({"--steps": "--sample-steps"}))
def sample(
    model: Annotated[Path, typer.Option("--model", help="Model folder of 'synth train'.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Pairs to generate.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (manifest + table).")],
    layout: Annotated[
        Layout,
        typer.Option(
            "--layout",
            help="Condition masks: from-manifest (the training layouts) or random (drawn anew).",
        ),
    ] = Layout.from_manifest,
    captions: Annotated[
        Path | None, typer.Option("--captions", help="Text file, one caption per line.")
    ] = None,
    guidance: Annotated[
        float,
        typer.Option("--guidance", min=0.0, help="Classifier-free guidance scale (1: none)."),
    ] = 3.0,
    controlnet_scale: Annotated[
        float,
        typer.Option(
            "--controlnet-scale",
            min=0.0,
            help="Multiplier of the mask ControlNet's residuals (0: ignore the mask).",
        ),
    ] = 1.0,
    sampler: Annotated[
        Sampler,
        typer.Option(
            "--sampler", help="ddim (deterministic) or ddpm (ancestral) denoising sampler."
        ),
    ] = Sampler.ddim,
    sample_steps: Annotated[
        int, typer.Option("--sample-steps", min=1, help="Denoising steps of each pair.")
    ] = 50,
    batch_size: BatchSizeOption = 16,
    seed: SeedOption = 0,
    threads: ThreadsOption = None,
    device: RunDeviceOption = "auto",
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Generate image-annotation pairs and write a manifest that 'medfleet train' reads."""
    check_device(device)
    import torch

    from medfleet.errors import MedfleetError
    from medfleet.synth.config import SampleConfig
    from medfleet.synth.model import load_synth
    from medfleet.synth.sample import read_captions, write_synthetic_set
    from medfleet.train.trainer import resolve_device

    check_out_folder(out)
    if threads:
        torch.set_num_threads(threads)
    config = SampleConfig(
        steps=sample_steps, sampler=sampler.value, guidance=guidance,
        controlnet_scale=controlnet_scale, batch_size=batch_size, seed=seed,
    )  # fmt: skip
    try:
        lines = read_captions(captions) if captions else None
        loaded = load_synth(model, device=resolve_device(device))
        with progress_bar("synth sample", enabled=fmt is OutputFormat.text) as update:
            path = write_synthetic_set(
                model, out, n, layout=layout.value, captions=lines, config=config,  # type: ignore[arg-type]
                model=loaded, progress=update,
            )  # fmt: skip
    except MedfleetError as exc:
        fail(str(exc))
    _emit(fmt, {"manifest": str(path), "n": n}, [f"wrote {n} pairs; manifest: {path}"])


def _images_of(manifest: Path, task: str | None, split: str | None) -> tuple[list[Path], Any]:
    from medfleet.tables import read_table
    from medfleet.tasks import Manifest

    m = Manifest.load(manifest)
    spec = m.task(task) if task else m.tasks[0]
    rows = read_table(m.table_path(spec))
    if split:
        rows = [r for r in rows if r.get("split") == split]
    return [m.resolve(r["image"]) for r in rows], spec


def _load_unit(paths: list[Path], size: int, channels: int) -> Any:
    import numpy as np

    from medfleet.data.io import read_image
    from medfleet.synth.pairs import image_to_unit, resize_image

    return np.stack(
        [resize_image(image_to_unit(np.asarray(read_image(p).array), channels), size)
         for p in paths]
    )  # fmt: skip


_REAL_MANIFEST = typer.Option("--manifest", "-m", help="Manifest of the real images.")
_SYNTHETIC = typer.Option("--synthetic", help="Manifest written by 'synth sample'.")
_RENAMED_REAL = {"--real": "--manifest"}


@app.command("quality", cls=renamed_options({**_RENAMED_REAL, "--size": "--image-size"}))
def quality(
    manifest: Annotated[Path, _REAL_MANIFEST],
    synthetic: Annotated[Path, _SYNTHETIC],
    task: Annotated[
        str | None,
        typer.Option(
            "--task", "-t", help="Task of the real manifest (default: the synthetic set's)."
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Split of the real images (default: all).")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            min=8,
            help="Side both sets are resized to, the input size of the feature network "
            "(default: the synthetic images' side).",
        ),
    ] = None,
    backbone: BackboneOption = "vit-tiny",
    weights: WeightsOption = None,
    feature_net: Annotated[
        Path | None, typer.Option("--feature-net", help="Local TorchScript (e.g. Inception).")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=2, help="At most this many images of each set.")
    ] = 500,
    out: Annotated[Path | None, typer.Option("--out", help="Write quality.json here.")] = None,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """FID (project backbone features; TorchScript features if given) and MS-SSIM diversity."""
    from medfleet.errors import MedfleetError
    from medfleet.synth.quality import quality_summary
    from medfleet.utils.atomic import write_json_atomic

    check_out_folder(out)
    try:
        syn_paths, syn_spec = _images_of(synthetic, None, None)
        real_paths, _ = _images_of(manifest, task or syn_spec.name, split)
        from medfleet.data.io import read_image

        side = image_size or int(read_image(syn_paths[0]).array.shape[0])
        channels = syn_spec.channels
        result = quality_summary(
            _load_unit(real_paths[:limit], side, channels),
            _load_unit(syn_paths[:limit], side, channels),
            backbone=backbone, weights=weights, feature_file=feature_net,
        )  # fmt: skip
    except (MedfleetError, KeyError) as exc:
        fail(str(exc))
    if out:
        write_json_atomic(out / "quality.json", result)
    _emit(fmt, result, [f"{k}: {v}" for k, v in result.items()])


@app.command("reader-kit", cls=renamed_options(_RENAMED_REAL))
def reader_kit(
    manifest: Annotated[Path, _REAL_MANIFEST],
    synthetic: Annotated[Path, _SYNTHETIC],
    out: Annotated[Path, typer.Option("--out", help="Kit folder.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Images of each kind.")] = 20,
    task: Annotated[
        str | None,
        typer.Option(
            "--task", "-t", help="Task of the real manifest (default: the synthetic set's)."
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Split of the real images.")
    ] = "test",
    readers: Annotated[str, typer.Option("--readers", help="Comma-separated names.")] = "reader1",
    seed: SeedOption = 0,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Write a shuffled real/synthetic set, a hidden key and a scoring sheet."""
    import numpy as np

    from medfleet.data.io import read_image
    from medfleet.errors import MedfleetError
    from medfleet.synth.reader import make_reader_kit

    check_out_folder(out)
    try:
        syn_paths, syn_spec = _images_of(synthetic, None, None)
        real_paths, _ = _images_of(manifest, task or syn_spec.name, split)
        rng = np.random.default_rng(seed)
        pick = lambda paths: [paths[i] for i in sorted(rng.permutation(len(paths))[:n])]  # noqa: E731
        side = int(read_image(syn_paths[0]).array.shape[0])
        info = make_reader_kit(
            pick(real_paths), pick(syn_paths), out, size=side, channels=syn_spec.channels,
            readers=[r.strip() for r in readers.split(",") if r.strip()], seed=seed,
        )  # fmt: skip
    except (MedfleetError, KeyError) as exc:
        fail(str(exc))
    _emit(fmt, info, [f"kit: {out} ({info['n_images']} images); key in {out / 'key'}"])


@app.command("reader-score")
def reader_score(
    key: Annotated[Path, typer.Option("--key", help="key/key.csv of the kit.")],
    sheets: Annotated[list[Path], typer.Argument(help="Filled scoring sheets.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write reader_study.json here.")] = None,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Accuracy (Wilson CI, test against chance), sensitivity, confidence; per reader.

    SHEETS: the scoring sheets the readers filled in, scored against the kit's --key.
    """
    from medfleet.errors import MedfleetError
    from medfleet.synth.reader import score_readers
    from medfleet.utils.atomic import write_json_atomic

    check_out_folder(out)
    try:
        result = score_readers(key, sheets)
    except MedfleetError as exc:
        fail(str(exc))
    if out:
        write_json_atomic(out / "reader_study.json", result)
    lines = []
    for name, s in [("overall", result["overall"]), *result["readers"].items()]:
        lines.append(
            f"{name}: accuracy {s['accuracy']:.3f} [{s['accuracy_low']:.3f}, "
            f"{s['accuracy_high']:.3f}] (n={s['n']}, p vs chance {s['p_value_vs_chance']:.3g}), "
            f"confidence correct {s['confidence_correct']:.2f} / wrong {s['confidence_wrong']:.2f}"
        )
    _emit(fmt, result, lines)


@app.command("augment-study", cls=renamed_options({"--synth-model": "--model"}))
def augment_study(
    manifest: ManifestOption,
    task: Annotated[
        str,
        typer.Option("--task", "-t", help="The detection or segmentation task of the study."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Study folder.")],
    fractions: Annotated[
        str,
        typer.Option(
            "--fractions",
            help="Synthetic pairs added, as comma-separated fractions of the internal "
            "training rows.",
        ),
    ] = "0,0.1,0.2,0.5",
    external_site: Annotated[
        str | None,
        typer.Option(
            "--external-site", help="Site held out for external testing (default: the last)."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Synthesis model folder of 'synth train' to reuse instead of training one.",
        ),
    ] = None,
    synth_steps: Annotated[
        int,
        typer.Option(
            "--synth-steps",
            min=0,
            help="The synthesis model's optimiser steps of each of its LDM and ControlNet "
            "stages ('synth train --steps').",
        ),
    ] = 300,
    vae_steps: Annotated[
        int,
        typer.Option("--vae-steps", min=0, help="Optimiser steps of the tiny VAE stage."),
    ] = 150,
    synth_image_size: Annotated[
        int,
        typer.Option(
            "--synth-image-size",
            min=8,
            help="The synthesis model's input size in pixels ('synth train --image-size').",
        ),
    ] = 32,
    synth_lr: Annotated[
        float,
        typer.Option(
            "--synth-lr", help="The synthesis model's learning rate ('synth train --lr')."
        ),
    ] = 1e-3,
    joint: Annotated[
        bool, typer.Option("--joint", help="Train UNet and ControlNet together in stage 3.")
    ] = False,
    sample_steps: Annotated[
        int, typer.Option("--sample-steps", min=1, help="Denoising steps of each pair.")
    ] = 30,
    guidance: Annotated[
        float,
        typer.Option("--guidance", min=0.0, help="Classifier-free guidance scale (1: none)."),
    ] = 2.0,
    steps: Annotated[
        int,
        typer.Option("--steps", min=1, help="Optimiser steps of each downstream model."),
    ] = 200,
    image_size: Annotated[
        int,
        typer.Option("--image-size", min=8, help="Input size of the downstream models in pixels."),
    ] = 32,
    batch_size: BatchSizeOption = 8,
    backbone: BackboneOption = None,
    score_threshold: Annotated[
        float,
        typer.Option(
            "--score-threshold", help="Minimum score of a counted detection (detection tasks)."
        ),
    ] = 0.3,
    n_resamples: NResamplesOption = DEFAULT_N_RESAMPLES,
    seed: SeedOption = 0,
    threads: ThreadsOption = None,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="Where the synthesis model trains: auto (CUDA when available), cpu, cuda or "
            "cuda:N (sampling and the downstream models run on the CPU).",
        ),
    ] = "auto",
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Train with +0/10/20/50% synthetic pairs; detection rate or Dice, internal vs external."""
    from medfleet.errors import MedfleetError
    from medfleet.synth.augment import StudySettings, run_augment_study
    from medfleet.synth.config import SampleConfig

    check_device(device)
    check_out_folder(out)
    try:
        fr = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError:
        fail(f"--fractions {fractions!r} must be comma-separated numbers", code=2)
    settings = StudySettings(
        fractions=fr, external_site=external_site, steps=steps, image_size=image_size,
        batch_size=batch_size, score_threshold=score_threshold, n_resamples=n_resamples,
        seed=seed, threads=threads,
        **({"backbone": backbone} if backbone is not None else {}),
    )  # fmt: skip
    synth_config = _synth_config(
        image_size=synth_image_size, ldm_steps=synth_steps, controlnet_steps=synth_steps,
        vae_steps=vae_steps, seed=seed, threads=threads, lr=synth_lr, freeze_ldm=not joint,
        device=device,
    )  # fmt: skip
    text = fmt is OutputFormat.text
    try:
        summary = run_augment_study(
            manifest, task, out, settings=settings, synth_config=synth_config,
            sample_config=SampleConfig(steps=sample_steps, guidance=guidance, seed=seed),
            synth_model=model,
            log=say if text else None,
        )  # fmt: skip
    except (MedfleetError, KeyError) as exc:
        fail(str(exc))
    lines = [
        f"+{100 * r['fraction']:.0f}% {r['group']}: {r['metric']} {r['estimate']:.3f} "
        f"[{r['low']:.3f}, {r['high']:.3f}] (n={r['n']})"
        for r in summary["results"]
    ] + [f"report: {out / 'report.html'}"]
    _emit(fmt, summary, lines)
