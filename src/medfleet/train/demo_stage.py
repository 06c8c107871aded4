"""The demo's training stage: a tiny unified MoE model on the phantoms, predicted and scored.

Uses what earlier stages left in the :class:`medfleet.demo.DemoContext` (the phantom
manifest) and writes under ``OUT/train/``: the run (``unified/``), the test predictions
(``unified/predictions/``) and their evaluation (``unified/evaluation/<task>/``), and each
task's trivial baseline fitted on the training split (:mod:`medfleet.train.baselines`):
its test predictions (``baseline/predictions/``) and their evaluation
(``baseline/evaluation/<task>/``), scored by the same code as the model.
"""

from __future__ import annotations

from typing import Any

from medfleet.models.files import MODEL_FILE
from medfleet.utils.progress import ProgressCallback


class TrainStage:
    """Train a unified Mixture-of-Experts model on every phantom task, predict, evaluate.

    The model is the default recipe (``unet-small`` backbone, ``strong`` augmentation)
    with MoE after its two coarsest stages. ``--quick`` trains it at 48 pixels for 12
    epochs (about half a minute on two CPU cores); the full demo uses 64 pixels and 20
    epochs (a few minutes). Validation metrics are recorded every few epochs in
    ``unified/metrics.csv``.

    Each task's test metrics are set against a trivial baseline fitted on the training
    split (majority class, training mean, mean shape, pixel-wise majority mask, mean box):
    ``baseline`` in the result holds, per task, the model's and the baseline's headline
    value, the direction and the difference (positive: the model is better).
    """

    name = "train"
    description = "train a unified MoE model (default recipe), predict and score the test split"

    def run(self, ctx: Any, progress: ProgressCallback) -> dict[str, Any]:
        """Train, predict the test split and score it; return metrics, costs and paths."""
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            from medfleet.errors import MedfleetError

            raise MedfleetError(
                "the train stage needs PyTorch (fix: pip install 'medfleet[train]', or run "
                "medfleet demo --stages phantoms,validate,summary,monitor)"
            )
        from medfleet.models import ModelConfig, MoEConfig
        from medfleet.tasks import Manifest
        from medfleet.train.config import TrainConfig
        from medfleet.train.paradigms import headline
        from medfleet.train.predict import evaluate_predictions, predict_manifest
        from medfleet.train.run import train_model

        if ctx.manifest is None:
            raise RuntimeError("the phantoms stage must run before the train stage")
        manifest = Manifest.load(ctx.manifest)
        # the default backbone and augmentation, at a size a CPU demo affords
        model_config = ModelConfig(
            image_size=48 if ctx.quick else 64,
            moe=MoEConfig(blocks=[-2, -1], num_experts=4, top_k=2),
        )
        train_config = TrainConfig(
            epochs=12 if ctx.quick else 20,
            batch_size=8,
            lr=1e-3,
            warmup_fraction=0.1,
            seed=ctx.seed,
            checkpoint_every=0,
            val_every=4 if ctx.quick else 5,
            device="cpu",
            threads=1,
        )
        run_dir = ctx.out / "train" / "unified"
        trained = train_model(manifest, model_config, train_config, run_dir, progress=progress)
        prediction = predict_manifest(
            trained.model,
            manifest,
            run_dir / "predictions",
            split="test",
            image_size=model_config.image_size,
            normalisation=train_config.normalisation,
        )
        evaluation = evaluate_predictions(
            manifest, prediction, run_dir / "evaluation", report=not ctx.quick
        )
        test = {task: headline(r["summary"]) for task, r in evaluation.items()}
        baseline_test, baseline = _baselines(manifest, evaluation, test, ctx.out / "train")
        usage = _expert_usage(trained.model)
        return {
            "run": str(run_dir),
            "model": str(run_dir / MODEL_FILE),
            "backbone": model_config.backbone,
            "image_size": model_config.image_size,
            "parameters": trained.info["parameters"],
            "steps": trained.result.steps,
            "train_seconds": round(trained.result.train_seconds, 3),
            "validation": trained.result.val_metrics,
            "test": test,
            "inference_ms_per_image": {
                task: round(1000 * info["runtime_s_mean"], 3)
                for task, info in prediction.tasks.items()
            },
            "expert_usage": usage,
            "baseline_test": baseline_test,
            "baseline": baseline,
        }


def _baselines(
    manifest: Any, evaluation: dict[str, Any], test: dict[str, Any], out: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, predict and score each evaluated task's trivial baseline; compare with ``test``.

    Returns:
        The baselines' headline test values and, per task, the model-versus-baseline entry
        of :func:`medfleet.train.baselines.baseline_summary`.
    """
    from medfleet.tasks import TaskType
    from medfleet.train.baselines import baseline_summary, predict_baselines
    from medfleet.train.paradigms import headline
    from medfleet.train.predict import evaluate_predictions
    from medfleet.utils.jsonsafe import json_safe

    folder = out / "baseline"
    run, fitted = predict_baselines(manifest, folder / "predictions", tasks=list(evaluation))
    scored = evaluate_predictions(manifest, run, folder / "evaluation", report=False)
    baseline_test = {task: headline(r["summary"]) for task, r in scored.items()}
    entries: dict[str, Any] = {}
    for task, values in baseline_test.items():
        spec = manifest.task(task)
        unit = spec.unit if spec.type is TaskType.regression else None
        if spec.type is TaskType.landmarks:
            unit = evaluation[task]["summary"].get("dataset", {}).get("unit")
        entries[task] = baseline_summary(
            spec.type,
            fitted[task].kind,
            test[task],
            values,
            description=fitted[task].description,
            unit=unit,
        )
    return json_safe(baseline_test), json_safe(entries)


def _expert_usage(model: Any) -> Any:
    usage = getattr(model, "expert_usage", None)
    if not callable(usage):
        return None
    from medfleet.utils.jsonsafe import json_safe

    return json_safe(_plain(usage()))


def _plain(value: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
