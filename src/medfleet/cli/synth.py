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
    FORMAT_OPTION,
    OutputFormat,
    check_out_folder,
    fail,
    print_json,
    say,
)
from medfleet.cli.progress import progress_bar

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
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="The manifest YAML.")],
    task: Annotated[str, typer.Option("--task", "-t", help="Detection or segmentation task.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    base: Annotated[
        Path | None,
        typer.Option("--base", help="Local Stable-Diffusion-style folder to fine-tune."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", min=0, help="Steps of the LDM and ControlNet stages.")
    ] = None,
    vae_steps: Annotated[
        int | None, typer.Option("--vae-steps", min=0, help="Steps of the tiny VAE stage.")
    ] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", min=8)] = None,
    channels: Annotated[int | None, typer.Option("--channels", min=1)] = None,
    prediction: Annotated[Prediction, typer.Option("--prediction")] = Prediction.epsilon,
    joint: Annotated[
        bool, typer.Option("--joint", help="Train UNet and ControlNet together in stage 3.")
    ] = False,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    caption_column: Annotated[
        str | None, typer.Option("--caption-column", help="Table column with captions.")
    ] = None,
    caption_template: Annotated[
        str | None,
        typer.Option("--caption-template", help="e.g. '{objects} at {site}, {age_band}'."),
    ] = None,
    caption_dropout: Annotated[float | None, typer.Option("--caption-dropout")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Train a latent diffusion model with a mask ControlNet on one task's train rows."""
    from medfleet.errors import MedfleetError
    from medfleet.synth.train import train_synth
    from medfleet.tasks import Manifest

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


@app.command("sample")
def sample(
    model: Annotated[Path, typer.Option("--model", help="Folder of 'synth train'.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Pairs to generate.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (manifest + table).")],
    layout: Annotated[Layout, typer.Option("--layout")] = Layout.from_manifest,
    captions: Annotated[
        Path | None, typer.Option("--captions", help="Text file, one caption per line.")
    ] = None,
    guidance: Annotated[float, typer.Option("--guidance", min=0.0)] = 3.0,
    controlnet_scale: Annotated[float, typer.Option("--controlnet-scale", min=0.0)] = 1.0,
    sampler: Annotated[Sampler, typer.Option("--sampler")] = Sampler.ddim,
    steps: Annotated[int, typer.Option("--steps", min=1)] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Generate image-annotation pairs and write a manifest that 'medfleet train' reads."""
    import torch

    from medfleet.errors import MedfleetError
    from medfleet.synth.config import SampleConfig
    from medfleet.synth.sample import read_captions, write_synthetic_set

    check_out_folder(out)
    if threads:
        torch.set_num_threads(threads)
    config = SampleConfig(
        steps=steps, sampler=sampler.value, guidance=guidance,
        controlnet_scale=controlnet_scale, batch_size=batch_size, seed=seed,
    )  # fmt: skip
    try:
        lines = read_captions(captions) if captions else None
        with progress_bar("synth sample", enabled=fmt is OutputFormat.text) as update:
            path = write_synthetic_set(
                model, out, n, layout=layout.value, captions=lines, config=config,  # type: ignore[arg-type]
                progress=update,
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


@app.command("quality")
def quality(
    real: Annotated[Path, typer.Option("--real", help="Manifest of the real images.")],
    synthetic: Annotated[Path, typer.Option("--synthetic", help="Manifest from 'synth sample'.")],
    task: Annotated[str | None, typer.Option("--task", help="Task of the real manifest.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Real split (default all).")] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="Common side (default: synthetic).")
    ] = None,
    backbone: Annotated[str, typer.Option("--backbone")] = "vit-tiny",
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Local backbone weights.")
    ] = None,
    feature_net: Annotated[
        Path | None, typer.Option("--feature-net", help="Local TorchScript (e.g. Inception).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=2)] = 500,
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
        real_paths, _ = _images_of(real, task or syn_spec.name, split)
        from medfleet.data.io import read_image

        side = size or int(read_image(syn_paths[0]).array.shape[0])
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


@app.command("reader-kit")
def reader_kit(
    real: Annotated[Path, typer.Option("--real", help="Manifest of the real images.")],
    synthetic: Annotated[Path, typer.Option("--synthetic", help="Manifest from 'synth sample'.")],
    out: Annotated[Path, typer.Option("--out", help="Kit folder.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Images of each kind.")] = 20,
    task: Annotated[str | None, typer.Option("--task")] = None,
    split: Annotated[str | None, typer.Option("--split")] = "test",
    readers: Annotated[str, typer.Option("--readers", help="Comma-separated names.")] = "reader1",
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
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
        real_paths, _ = _images_of(real, task or syn_spec.name, split)
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
    """Accuracy (Wilson CI, test against chance), sensitivity, confidence; per reader."""
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


@app.command("augment-study")
def augment_study(
    manifest: Annotated[Path, typer.Option("--manifest", "-m")],
    task: Annotated[str, typer.Option("--task", "-t")],
    out: Annotated[Path, typer.Option("--out")],
    fractions: Annotated[str, typer.Option("--fractions")] = "0,0.1,0.2,0.5",
    external_site: Annotated[str | None, typer.Option("--external-site")] = None,
    synth_model: Annotated[
        Path | None, typer.Option("--synth-model", help="Reuse a trained synthesis model.")
    ] = None,
    synth_steps: Annotated[int, typer.Option("--synth-steps", min=0)] = 300,
    vae_steps: Annotated[int, typer.Option("--vae-steps", min=0)] = 150,
    synth_image_size: Annotated[int, typer.Option("--synth-image-size", min=8)] = 32,
    synth_lr: Annotated[float, typer.Option("--synth-lr")] = 1e-3,
    joint: Annotated[
        bool, typer.Option("--joint", help="Train UNet and ControlNet together in stage 3.")
    ] = False,
    sample_steps: Annotated[int, typer.Option("--sample-steps", min=1)] = 30,
    guidance: Annotated[float, typer.Option("--guidance", min=0.0)] = 2.0,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Downstream training steps.")] = 200,
    image_size: Annotated[int, typer.Option("--image-size", min=8)] = 32,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    score_threshold: Annotated[float, typer.Option("--score-threshold")] = 0.3,
    n_resamples: Annotated[int, typer.Option("--n-resamples", min=10)] = 1000,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Train with +0/10/20/50% synthetic pairs; detection rate or Dice, internal vs external."""
    from medfleet.errors import MedfleetError
    from medfleet.synth.augment import StudySettings, run_augment_study
    from medfleet.synth.config import SampleConfig

    check_out_folder(out)
    try:
        fr = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError:
        fail(f"--fractions {fractions!r} must be comma-separated numbers", code=2)
    settings = StudySettings(
        fractions=fr, external_site=external_site, steps=steps, image_size=image_size,
        batch_size=batch_size, score_threshold=score_threshold, n_resamples=n_resamples,
        seed=seed, threads=threads,
    )  # fmt: skip
    synth_config = _synth_config(
        image_size=synth_image_size, ldm_steps=synth_steps, controlnet_steps=synth_steps,
        vae_steps=vae_steps, seed=seed, threads=threads, lr=synth_lr, freeze_ldm=not joint,
    )  # fmt: skip
    text = fmt is OutputFormat.text
    try:
        summary = run_augment_study(
            manifest, task, out, settings=settings, synth_config=synth_config,
            sample_config=SampleConfig(steps=sample_steps, guidance=guidance, seed=seed),
            synth_model=synth_model,
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
