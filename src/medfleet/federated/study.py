"""Federated study: local-only, centralised and federated strategies compared on the same cases.

:func:`run_study` trains, for one manifest with several sites:

* **local-only**: one model per site, on that site's rows only (``OUT/local/<site>/``);
* **centralised**: one model on the pooled rows of every site (``OUT/centralised/``), the
  upper reference that federated learning tries to reach without moving images;
* **each federated strategy** (``fedavg``, ``fedprox``, ``lora``, ``dual-lora``) with
  :func:`medfleet.federated.run_federated` (``OUT/federated/<strategy>/``).

Budget matching: every arm gets the same number of local optimiser steps on the same model
configuration, batch size and peak learning rate. A federated run of ``R`` rounds with
``L`` local steps per round gives each site ``R * L`` steps; local-only trains each site's
model for ``R * L`` steps and centralised trains for ``S * R * L`` steps (``S`` sites), the
total work of the federation. With ``local_epochs`` instead of ``local_steps``, ``L`` is the
site's batches per epoch times the epochs. Federated clients start each round's ``L`` steps
with a fresh optimiser and warm-up/cosine schedule; local-only and centralised runs use one
schedule over all their steps.

Every resulting model then predicts each site's test split with
:func:`medfleet.train.predict.predict_manifest` and is scored by the evaluation runner
(:func:`medfleet.train.predict.evaluate_predictions`); a site is always scored by the model
that site would use (its local model, the centralised model, or its copy of the federated model
with its private parts). :func:`medfleet.federated.study_cases.analyse_cases` turns the
per-case results into per-site and pooled metrics with bootstrap confidence intervals and paired
tests between arms on the same cases (Holm-adjusted): McNemar on correctness, DeLong on the AUC
of a binary task (multiclass: paired bootstrap of the macro one-vs-rest AUC), a paired
bootstrap of the balanced accuracy, and Wilcoxon on per-case Dice.

``OUT/study.json`` holds everything; :mod:`medfleet.federated.study_report` writes the CSV
tables and ``report.html``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfleet.errors import MedfleetError
from medfleet.federated.study_cases import TaskCases, analyse_cases, read_task_cases
from medfleet.federated.study_record import (
    communication_rows,
    communication_summary,
    curve_rows,
    read_federated,
)
from medfleet.models.files import has_model
from medfleet.tasks import Manifest, TaskType

if TYPE_CHECKING:
    from medfleet.federated.config import FederatedConfig
    from medfleet.models.config import ModelConfig
    from medfleet.tasks import TaskSpec
    from medfleet.train.config import TrainConfig

STUDY_FORMAT = "medfleet.federated.study/1"
"""Version string of ``study.json``."""

LOCAL = "local-only"
"""Name of the arm where each site trains alone."""

CENTRALISED = "centralised"
"""Name of the arm trained on the pooled rows of all sites."""

STUDY_TYPES = (TaskType.classification, TaskType.segmentation)
"""Task types the study scores with metrics, intervals and paired tests."""

LogCallback = Callable[[str], None]
FederatedRunner = Callable[..., Any]


# ----------------------------------------------------------------------------- site data


def site_rows(manifest: Manifest, site: str, task: str) -> list[dict[str, str]]:
    """Rows of ``task``'s table that belong to ``site`` (every split).

    Example:
        >>> import tempfile
        >>> from medfleet.data.phantoms import PhantomConfig, generate_phantoms
        >>> m = Manifest.load(generate_phantoms(tempfile.mkdtemp(),
        ...     PhantomConfig(tasks=["lesion_cls"]), sites=2, cases_per_site=3, size=32))
        >>> len(site_rows(m, "site_b", "lesion_cls"))
        3
    """
    from medfleet.tables import read_table

    path = manifest.table_path(task)
    if not path.is_file():
        raise MedfleetError(
            f"task {task!r}: table {path} not found (fix: check 'table' in the manifest)"
        )
    return [r for r in read_table(path) if (r.get("site") or "").strip() == site]


def _site_part(manifest: Manifest, site: str, folder: str | Path, tasks: Sequence[str]) -> Manifest:
    """``site``'s rows of ``tasks`` as a manifest (tables written under ``folder``).

    The filtering is the federated clients' own (:func:`medfleet.federated.site.site_manifest`),
    so local-only training sees exactly the rows the site trains on in a federated run.
    """
    from medfleet.federated.site import site_manifest

    kept = manifest.model_copy(update={"tasks": [manifest.task(t) for t in tasks]})
    kept.root = manifest.root
    part, _ = site_manifest(kept, site, Path(folder))
    part = part.model_copy(update={"sites": [s for s in manifest.sites if s.name == site]})
    part.root = manifest.root
    return part


def _split_rows(manifest: Manifest, tasks: Sequence[str], site: str, split: str) -> int:
    return sum(
        1
        for t in tasks
        for r in site_rows(manifest, site, t)
        if (r.get("split") or "").strip() == split
    )


# ----------------------------------------------------------------------------- budget


def matched_budget(
    fed_config: Any, train_rows: Mapping[str, int], batch_size: int
) -> dict[str, Any]:
    """Optimiser steps of each arm so that all arms do the same local work.

    Args:
        fed_config: The federated configuration (``rounds`` and ``local_steps`` or
            ``local_epochs``).
        train_rows: Training rows per site.
        batch_size: Images per batch.

    Returns:
        ``rounds``, ``steps_per_round`` and ``steps`` per site, ``centralised_steps`` (their
        sum) and ``rule`` (the matching rule in words).

    Example:
        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(rounds=3, local_steps=5)
        >>> b = matched_budget(cfg, {"a": 10, "b": 20}, 4)
        >>> b["steps"], b["centralised_steps"]
        ({'a': 15, 'b': 15}, 30)
        >>> cfg = SimpleNamespace(rounds=2, local_steps=None, local_epochs=1)
        >>> matched_budget(cfg, {"a": 10, "b": 20}, 4)["steps"]
        {'a': 6, 'b': 10}
    """
    rounds = int(fed_config.rounds)
    local_steps = getattr(fed_config, "local_steps", None)
    per_round: dict[str, int] = {}
    for site, n in train_rows.items():
        if local_steps:
            per_round[site] = int(local_steps)
        else:
            epochs = float(getattr(fed_config, "local_epochs", None) or 1)
            per_round[site] = max(1, math.ceil(epochs * math.ceil(max(n, 1) / batch_size)))
    steps = {site: rounds * k for site, k in per_round.items()}
    return {
        "rounds": rounds,
        "steps_per_round": per_round,
        "steps": steps,
        "centralised_steps": int(sum(steps.values())),
        "batch_size": int(batch_size),
        "rule": (
            "same model configuration, batch size and peak learning rate; each site does "
            "rounds x local steps optimiser steps in every federated strategy (a fresh "
            "optimiser and schedule each round) and in local-only training (one schedule); "
            "centralised training does the sum over sites (the federation's total work)"
        ),
    }


# ----------------------------------------------------------------------------- the study


@dataclass
class StudyResult:
    """What :func:`run_study` produced.

    Attributes:
        out: The study folder.
        data: The content of ``study.json``.
        files: Written files by role (``study_json``, ``metrics_csv``, ``report_html``...).
    """

    out: Path
    data: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def _train_config(train_config: Any, steps: int) -> Any:
    """The training settings with ``steps`` optimiser steps and no intermediate validation."""
    return train_config.model_copy(
        update={"max_steps": int(steps), "epochs": max(train_config.epochs, 10_000), "val_every": 0}
    )


def federated_arms(
    strategies: Sequence[str | tuple[str, Mapping[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """Federated arms as ``(name, FederatedConfig overrides)``.

    A plain strategy name is an arm of that name; ``(name, overrides)`` changes more fields
    (e.g. ``("dual-lora-2", {"strategy": "dual-lora", "blocks": [-2, -1]})``).

    Example:
        >>> federated_arms(["fedavg", ("dl2", {"strategy": "dual-lora", "blocks": [-2, -1]})])
        [('fedavg', {'strategy': 'fedavg'}), ('dl2', {'strategy': 'dual-lora', 'blocks': [-2, -1]})]
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for item in strategies:
        name, overrides = (item, {"strategy": item}) if isinstance(item, str) else item
        overrides = dict(overrides)
        overrides.setdefault("strategy", name)
        if name in (LOCAL, CENTRALISED) or name in {n for n, _ in out}:
            raise MedfleetError(
                f"arm name {name!r} is used twice or is reserved (fix: rename the arm)"
            )
        out.append((name, overrides))
    return out


def _default_runner() -> FederatedRunner:
    try:
        from medfleet.federated import run_federated
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MedfleetError(
            f"the federated engine is unavailable ({exc}) "
            "(fix: pip install -e '.[fl]' to install Flower)"
        ) from exc
    return run_federated


@dataclass(frozen=True)
class StudyOptions:
    """What a federated study compares and how it scores them.

    Attributes:
        strategies: Federated arms: strategy names, or ``(name, overrides)`` pairs that
            change more fields of the federated configuration (see :func:`federated_arms`).
        include_local: Train each site alone.
        include_centralised: Train on the pooled sites.
        tasks: Tasks to study (default: every classification and segmentation task).
        positive_class: Task -> positive class (binary metrics, DeLong).
        split: The split scored (``test``).
        n_resamples: Bootstrap resamples.
        confidence: Interval coverage and the significance level ``1 - confidence``.
        report: Also write the CSV tables and ``report.html``.
        reuse: Keep a run already in the study folder when it finished with the same
            settings (``training.json`` / ``federated.json``), instead of training it again.

    Example:
        >>> StudyOptions(strategies=["fedavg"], include_local=False).n_resamples
        1000
    """

    strategies: Sequence[str | tuple[str, Mapping[str, Any]]] = ("fedavg", "lora", "dual-lora")
    include_local: bool = True
    include_centralised: bool = True
    tasks: Sequence[str] | None = None
    positive_class: Mapping[str, str] | None = None
    split: str = "test"
    n_resamples: int = 1000
    confidence: float = 0.95
    report: bool = True
    reuse: bool = False


@dataclass
class _Study:
    """A study's inputs once checked: its folder, tasks, sites, per-site parts and budget."""

    out: Path
    manifest: Manifest
    model_config: ModelConfig
    train_config: TrainConfig
    fed_config: FederatedConfig
    options: StudyOptions
    say: LogCallback
    names: list[str]
    specs: dict[str, TaskSpec]
    sites: list[str]
    parts: dict[str, Manifest]
    pooled: Manifest
    budget: dict[str, Any]
    plans: list[tuple[str, dict[str, Any]]]
    runs: dict[str, dict[str, Path]] = field(default_factory=dict)
    arms: list[dict[str, Any]] = field(default_factory=list)
    federated: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_study(
    manifest: Manifest,
    model_config: ModelConfig,
    train_config: TrainConfig,
    fed_config: FederatedConfig,
    out: str | Path,
    options: StudyOptions | None = None,
    *,
    log: LogCallback | None = None,
    federated_runner: FederatedRunner | None = None,
) -> StudyResult:
    """Train local-only, centralised and federated models on the same budget and compare them.

    Args:
        manifest: A manifest with several sites.
        model_config: The model, the same for every arm; federated strategies set their
            adapters from ``fed_config``.
        train_config: Training settings.
        fed_config: The federated settings; its ``strategy`` is replaced by each of
            ``options.strategies``.
        out: The study folder.
        options: What to compare and how to score it (default :class:`StudyOptions`).
        log: Called with one line per stage.
        federated_runner: Replaces :func:`medfleet.federated.run_federated` (same
            signature), e.g. to study runs made elsewhere.

    Returns:
        The study record (also ``OUT/study.json``) and the written files.

    Raises:
        MedfleetError: Fewer than two sites with data, no task to study, an unknown task,
            or a failure of a training or evaluation stage (named).
    """
    options = options or StudyOptions()
    study = _prepare(manifest, model_config, train_config, fed_config, Path(out), options, log)
    if options.include_local:
        _train_local(study)
    if options.include_centralised:
        _train_centralised(study)
    if study.plans:
        _run_federated_arms(study, study.plans, federated_runner or _default_runner())
    return _score_and_write(study)


def _prepare(
    manifest: Manifest,
    model_config: ModelConfig,
    train_config: TrainConfig,
    fed_config: FederatedConfig,
    out: Path,
    options: StudyOptions,
    log: LogCallback | None,
) -> _Study:
    """Check the study's inputs, split the manifest per site and match the budgets."""
    out.mkdir(parents=True, exist_ok=True)
    names = _study_tasks(manifest, options.tasks)
    specs = {n: manifest.task(n) for n in names}
    sites = [s for s in manifest.site_names if any(site_rows(manifest, s, t) for t in names)]
    if len(sites) < 2:
        raise MedfleetError(
            f"manifest {manifest.name!r} has data from {len(sites)} site(s) in task(s) {names}; "
            "a federated study needs at least two (fix: check the 'site' column)"
        )
    if not (options.strategies or options.include_local or options.include_centralised):
        raise MedfleetError(
            "nothing to compare (fix: give strategies or include local/centralised)"
        )
    plans = federated_arms(options.strategies)  # checked before anything is written
    parts = {s: _site_part(manifest, s, out / "data" / s, names) for s in sites}
    pooled = manifest.model_copy(  # the studied tasks and the sites that have their data
        update={
            "tasks": [specs[n] for n in names],
            "sites": [s for s in manifest.sites if s.name in sites],
        }
    )
    pooled.root = manifest.root
    train_rows = {s: _split_rows(parts[s], names, s, "train") for s in sites}
    budget = matched_budget(fed_config, train_rows, int(train_config.batch_size))
    return _Study(
        out,
        manifest,
        model_config,
        train_config,
        fed_config,
        options,
        log or (lambda _line: None),
        names,
        specs,
        sites,
        parts,
        pooled,
        budget,
        plans,
    )


def _train_local(study: _Study) -> None:
    """The local-only arm: each site trains alone for its share of the budget."""
    from medfleet.train.run import train_model

    study.runs[LOCAL] = {}
    for s in study.sites:
        folder = study.out / "local" / s
        steps = study.budget["steps"][s]
        config = _train_config(study.train_config, steps)
        study.runs[LOCAL][s] = folder
        if study.options.reuse and _trained(folder, study.model_config, config, study.names):
            study.say(f"local-only: reusing {folder}")
            continue
        study.say(f"local-only: training {s} for {steps} steps")
        _stage(
            f"local-only training of site {s}",
            lambda s=s, folder=folder, config=config: train_model(
                study.parts[s], study.model_config, config, folder, tasks=study.names
            ),
        )
    study.arms.append({"name": LOCAL, "kind": "local", "steps": study.budget["steps"]})


def _train_centralised(study: _Study) -> None:
    """The centralised arm: one model on the pooled sites, on the matched budget."""
    from medfleet.train.run import train_model

    steps = study.budget["centralised_steps"]
    folder = study.out / "centralised"
    config = _train_config(study.train_config, steps)
    if study.options.reuse and _trained(folder, study.model_config, config, study.names):
        study.say(f"centralised: reusing {folder}")
    else:
        study.say(f"centralised: training on {len(study.sites)} pooled sites for {steps} steps")
        _stage(
            "centralised training",
            lambda: train_model(
                study.pooled, study.model_config, config, folder, tasks=study.names
            ),
        )
    study.runs[CENTRALISED] = dict.fromkeys(study.sites, folder)
    study.arms.append({"name": CENTRALISED, "kind": "centralised", "steps": steps})


def _run_federated_arms(
    study: _Study, plans: list[tuple[str, dict[str, Any]]], runner: FederatedRunner
) -> None:
    """Each federated arm: run (or reuse) it and check every site got its model."""
    for arm, overrides in plans:
        config = study.fed_config.model_copy(update=dict(overrides))
        config = type(config).model_validate(config.model_dump())
        folder = study.out / "federated" / arm
        if study.options.reuse and _federated_done(folder, config, study.train_config):
            study.say(f"federated: reusing {folder}")
        else:
            study.say(f"federated: {arm} ({config.strategy}), {config.rounds} rounds")
            _stage(
                f"federated run {arm!r}",
                lambda config=config, folder=folder: runner(
                    study.pooled, study.model_config, study.train_config, config, folder
                ),
            )
        record = read_federated(folder)
        study.federated[arm] = record
        missing = [s for s in study.sites if not has_model(folder / "sites" / s)]
        if missing:
            raise MedfleetError(
                f"federated run {arm!r} in {folder} has no model for site(s) {missing} "
                "(fix: check federated.json for failed clients and rerun)"
            )
        study.runs[arm] = {s: folder / "sites" / s for s in study.sites}
        study.arms.append(
            {
                "name": arm,
                "kind": "federated",
                "strategy": config.strategy,
                "steps": study.budget["steps"],
                "config": config.model_dump(mode="json"),
            }
        )


def _score_and_write(study: _Study) -> StudyResult:
    """Score every arm per site, analyse, and write ``study.json`` (and the report)."""
    from medfleet.utils.atomic import write_json_atomic
    from medfleet.utils.jsonsafe import json_safe

    options, out, federated = study.options, study.out, study.federated
    study.say(
        f"scoring {len(study.runs)} arm(s) on the {options.split} split of {len(study.sites)} sites"
    )
    cases = _score_arms(
        study.manifest, study.parts, study.runs, study.specs, options.split, out / "evaluation"
    )
    analysis = analyse_cases(
        study.specs,
        cases,
        positive_class=options.positive_class,
        n_resamples=options.n_resamples,
        confidence=options.confidence,
    )
    strategy_of = {a["name"]: a.get("strategy") for a in study.arms}
    comm = [r for a, rec in federated.items() for r in communication_rows(a, rec, strategy_of[a])]
    data: dict[str, Any] = {
        "format": STUDY_FORMAT,
        "manifest": study.manifest.name,
        "sites": study.sites,
        "tasks": {n: study.specs[n].type.value for n in study.names},
        "split": options.split,
        "arms": study.arms,
        "budget": study.budget,
        "model_config": study.model_config.model_dump(mode="json"),
        "train_config": study.train_config.model_dump(mode="json"),
        "federated_config": study.fed_config.model_dump(mode="json"),
        "bootstrap": {
            "n_resamples": options.n_resamples,
            "confidence": options.confidence,
            "seed": 0,
        },
        "runs": {a: {s: str(p) for s, p in by_site.items()} for a, by_site in study.runs.items()},
        "metrics": analysis["metrics"],
        "tests": analysis["tests"],
        "communication": comm,
        "communication_summary": [
            {**r, "exchanged_parameters": federated[r["arm"]].get("exchanged_parameters")}
            for r in communication_summary(comm)
        ],
        "bytes_per_round": {s: rec.get("bytes_per_round") for s, rec in federated.items()},
        "curves": [r for s, rec in federated.items() for r in curve_rows(s, rec)],
        "failures": [
            {"arm": s, "round": rnd.get("round"), "site": site, "error": c.get("error")}
            for s, rec in federated.items()
            for rnd in rec.get("rounds", [])
            for site, c in (rnd.get("clients") or {}).items()
            if c.get("status") not in (None, "ok")
        ],
    }
    data = json_safe(data)
    files = {"study_json": write_json_atomic(out / "study.json", data)}
    if options.report:
        from medfleet.federated.study_report import write_study_report

        files.update(write_study_report(data, out))
    study.say(f"study written to {out}")
    return StudyResult(out, data, files)


def _trained(folder: Path, model_config: Any, train_config: Any, tasks: Sequence[str]) -> bool:
    """Whether ``folder`` holds a finished training run with exactly these settings."""
    path = folder / "training.json"
    if not has_model(folder) or not path.is_file():
        return False
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        info.get("tasks") == list(tasks)
        and info.get("model_config") == model_config.model_dump(mode="json")
        and info.get("train_config") == train_config.model_dump(mode="json")
    )


def _federated_done(folder: Path, fed_config: Any, train_config: Any) -> bool:
    """Whether ``folder`` holds a finished federated run with these settings."""
    try:
        record = read_federated(folder)
    except MedfleetError:
        return False
    return (
        record.get("status") == "finished"
        and record.get("config") == fed_config.model_dump(mode="json")
        and record.get("train") in (None, train_config.model_dump(mode="json"))
    )


def _study_tasks(manifest: Manifest, tasks: Sequence[str] | None) -> list[str]:
    named = manifest.select_tasks(tasks)
    chosen = [t for t in named if manifest.task(t).type in STUDY_TYPES]
    if not chosen:
        raise MedfleetError(
            f"no classification or segmentation task to study in {named} "
            "(fix: choose such tasks with --tasks)"
        )
    return chosen


def _stage(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except MedfleetError as exc:
        raise MedfleetError(f"{what} failed: {exc}") from exc


def _score_arms(
    manifest: Manifest,
    parts: Mapping[str, Manifest],
    runs: Mapping[str, Mapping[str, Path]],
    specs: Mapping[str, Any],
    split: str,
    out: Path,
) -> dict[str, dict[str, TaskCases]]:
    """Predict and score each site's split with each arm's model for that site."""
    import torch

    from medfleet.train.predict import evaluate_predictions, predict_manifest
    from medfleet.train.run import load_trained

    by_task: dict[str, dict[str, list[TaskCases]]] = {t: {} for t in specs}
    for arm, by_site in runs.items():
        loaded: dict[Path, Any] = {}
        for site, folder in by_site.items():
            part = parts[site]
            present = [t for t in specs if _split_rows(part, [t], site, split)]
            if not present:
                continue
            if folder not in loaded:
                loaded[folder] = _stage(
                    f"loading the {arm} model of site {site}",
                    lambda folder=folder: load_trained(folder, manifest),
                )
            model = loaded[folder]
            target = out / arm / site
            run = _stage(
                f"predicting site {site} with the {arm} model",
                lambda model=model, part=part, target=target, present=present: predict_manifest(
                    model.model,
                    part,
                    target,
                    split=split,
                    tasks=present,
                    image_size=model.image_size,
                    normalisation=model.normalisation,
                    device=torch.device("cpu"),
                ),
            )
            scored = _stage(
                f"scoring site {site} with the {arm} model",
                lambda part=part, run=run: evaluate_predictions(part, run, report=False),
            )
            for task, info in scored.items():
                tc = read_task_cases(specs[task], info["cases_csv"], site)
                by_task[task].setdefault(arm, []).append(tc)
        loaded.clear()
    return {
        task: {arm: TaskCases.concat(parts_) for arm, parts_ in arms.items()}
        for task, arms in by_task.items()
    }


__all__ = [
    "CENTRALISED",
    "LOCAL",
    "STUDY_FORMAT",
    "StudyResult",
    "federated_arms",
    "matched_budget",
    "run_study",
    "site_rows",
]
