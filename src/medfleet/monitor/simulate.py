"""Simulated multi-site output streams with known drift, and the evaluation of every scheme.

The simulation, step by step:

1. **Images.** Clean lesion-classification phantoms (benign / malignant /
   normal; :mod:`medfleet.data.phantoms`) are generated once. Their train
   split fits the scorer; the held-out (val + test) images are the
   population every site samples from.
2. **Sites.** Each site acquires images with its phantom acquisition profile
   (:func:`~medfleet.data.phantoms.config.default_site`: gain, contrast curve,
   speckle, noise, blur), with fresh noise for every draw, so sites differ the
   way scanners do.
3. **Model.** A scorer - by default :class:`~medfleet.monitor.scorer.PhantomScorer`,
   any callable ``images -> probabilities`` - turns each batch into outputs
   ``prob`` ``(n, 3)`` and ``pred_class``.
4. **Drift.** A site may drift from batch ``onset``: an acquisition shift
   (``gain`` brighter, ``contrast`` flattened towards the mean, extra ``noise``,
   extra ``blur``) or a prior shift (``prior``: the label mix moves towards
   malignant), abrupt or gradual (linear ramp over ``ramp`` batches).
5. **Known severity.** A drift's size is its effect on the model's outputs:
   the largest, over probability columns, Wasserstein distance between the
   logits of drifted and undrifted outputs divided by the undrifted logits'
   standard deviation (a pure location shift of ``d`` SD scores ``d``). The
   simulator finds the injection magnitude giving the target effect (mild
   0.3, moderate 0.72, severe 1.5) by bisection on the site's own population.
   A batch's true severity is the band of its effect: none < 0.2 <= mild <
   0.5 <= moderate < 1.0 <= severe; batches of a gradual ramp with an effect
   between 0 and 0.2 are ambiguous and left out of the scores.
6. **Evaluation.** Every scheme (site, global, production, adaptive window,
   adaptive exponential, and the centralised baseline that pools all sites'
   batches per time step) processes the same streams. Per scheme: batch-level
   detection precision / recall / F1, severity F1 (macro over mild / moderate /
   severe), mean detection delay in batches, missed drifts, and false alarms
   per 100 stable batches.

Example:
    >>> cfg = SimulationConfig(sites=2, batches=6, batch_size=50, cases=60, size=32,
    ...     scenarios=[SiteScenario(site="site_b", shift="gain", severity="severe", onset=3)],
    ...     schemes=["site"], reference_size=200)
    >>> import tempfile
    >>> result = run_simulation(cfg, tempfile.mkdtemp())  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medfleet.monitor.batches import OutputBatch
from medfleet.monitor.config import InputConfig, MonitorConfig
from medfleet.monitor.scorer import PhantomScorer, Scorer, acquire_stack
from medfleet.monitor.severity import Severity, logit, stable_seed
from medfleet.utils.atomic import atomic_open, write_json_atomic
from medfleet.utils.jsonsafe import json_safe
from medfleet.utils.progress import ProgressCallback

SHIFTS = ("gain", "contrast", "noise", "blur", "prior")
"""Drift types the simulator injects."""

SUMMARY_COLUMNS = (
    "scheme",
    "precision",
    "recall",
    "f1",
    "severity_f1",
    "delay_batches",
    "missed",
    "false_alarms_per_100",
    "beats_centralised",
)
"""Columns of the per-scheme quality table (CLI, report.html, benchmark), in order."""

EFFECT_TARGETS = {"mild": 0.3, "moderate": 0.72, "severe": 1.5}
"""Target output effect (equivalent SD shift) per severity level."""

SEVERITY_BANDS = (0.2, 0.5, 1.0)
"""Effect where mild, moderate and severe start."""

MAX_MAGNITUDE = {"gain": 1.5, "contrast": 4.0, "noise": 0.4, "blur": 5.0, "prior": 1.0}
"""Largest injection magnitude searched per drift type."""

ALL_SCHEMES = ("site", "global", "production", "adaptive", "adaptive_exp", "centralised")
"""Schemes the simulator can evaluate."""

CLASS_NAMES = ("benign", "malignant", "normal")
CENTRAL = "all_sites"


class SiteScenario(BaseModel):
    """One site's drift.

    Attributes:
        site: Site name (``site_a`` ...).
        shift: ``gain``, ``contrast``, ``noise``, ``blur``, ``prior`` or ``none``.
        severity: Target severity.
        onset: First drifted batch (0-based).
        pattern: ``abrupt`` or ``gradual``.
        ramp: Batches over which a gradual drift reaches its full size.
    """

    model_config = ConfigDict(extra="forbid")

    site: str
    shift: Literal["none", "gain", "contrast", "noise", "blur", "prior"] = "none"
    severity: Literal["mild", "moderate", "severe"] = "moderate"
    onset: int = Field(20, ge=0)
    pattern: Literal["abrupt", "gradual"] = "abrupt"
    ramp: int = Field(8, ge=1)


def default_scenarios() -> list[SiteScenario]:
    """The default six-site scenario: one stable site, five drifts of every type and size.

    Example:
        >>> [s.shift for s in default_scenarios()]
        ['none', 'gain', 'noise', 'blur', 'prior', 'contrast']
    """
    return [
        SiteScenario(site="site_a", shift="none"),
        SiteScenario(site="site_b", shift="gain", severity="moderate", onset=15),
        SiteScenario(site="site_c", shift="noise", severity="severe", onset=20),
        SiteScenario(
            site="site_d", shift="blur", severity="severe", onset=12, pattern="gradual", ramp=10
        ),
        SiteScenario(site="site_e", shift="prior", severity="moderate", onset=18),
        SiteScenario(site="site_f", shift="contrast", severity="mild", onset=25),
    ]


class SimulationConfig(BaseModel):
    """Size and scenario of a simulation (defaults: the benchmark's default simulation).

    Attributes:
        sites: Number of sites (phantom site profiles ``site_a`` ...).
        batches: Batches per site.
        batch_size: Outputs per batch.
        cases: Clean phantom images generated (train split fits the scorer).
        size: Image side in pixels.
        reference_size: Reference outputs per site (held-out images, fresh acquisition).
        seed: Random seed.
        scenarios: Drift per site (sites without one are stable).
        schemes: Schemes to evaluate.
        tests: Monitor tests (first applicable decides; see MonitorConfig).
        alpha: Family-wise level per batch.
        warmup: Warm-up batches of production-only and adaptive schemes.
        window: Adaptive window (batches).
        decay: Adaptive exponential decay.
    """

    model_config = ConfigDict(extra="forbid")

    sites: int = Field(6, ge=1, le=26)
    batches: int = Field(40, ge=2)
    batch_size: int = Field(200, ge=10)
    cases: int = Field(400, ge=20)
    size: int = Field(32, ge=32)
    reference_size: int = Field(1000, ge=20)
    seed: int = 0
    scenarios: list[SiteScenario] = Field(default_factory=default_scenarios)
    schemes: list[str] = Field(default_factory=lambda: list(ALL_SCHEMES))
    tests: list[str] = Field(default_factory=lambda: ["ks", "chi2"])
    alpha: float = 0.05
    warmup: int = Field(3, ge=0)
    window: int = Field(8, ge=1)
    decay: float = Field(0.3, gt=0, le=1)

    def site_names(self) -> list[str]:
        """The simulated sites' names."""
        from medfleet.data.phantoms.config import site_name

        return [site_name(i) for i in range(self.sites)]

    def monitor_config(self, scheme: str, sites: list[str]) -> MonitorConfig:
        """The monitor configuration of one scheme (``centralised`` runs the ``site`` scheme)."""
        name = {"adaptive_exp": "adaptive", "centralised": "site"}.get(scheme, scheme)
        mode = "exponential" if scheme == "adaptive_exp" else "window"
        return MonitorConfig(
            sites=sites,
            scheme=name,
            tests=self.tests,
            alpha=self.alpha,
            outputs={"prob": "probability", "pred_class": "label"},
            adaptive={
                "mode": mode,
                "window": self.window,
                "decay": self.decay,
                "warmup": self.warmup,
                "initial": "global",
            },
            production={"batches": self.warmup},
            thresholds={"seed": self.seed},
        )


def quick_config(seed: int = 0) -> SimulationConfig:
    """A small simulation that runs in seconds: 3 sites, 12 batches, two drifts.

    Example:
        >>> quick_config().sites
        3
    """
    return SimulationConfig(
        sites=3,
        batches=12,
        batch_size=100,
        cases=80,
        reference_size=300,
        seed=seed,
        scenarios=[
            SiteScenario(site="site_b", shift="gain", severity="severe", onset=6),
            SiteScenario(
                site="site_c",
                shift="noise",
                severity="moderate",
                onset=5,
                pattern="gradual",
                ramp=3,
            ),
        ],
    )


# ----------------------------------------------------------------------------- images


@dataclass
class ImagePool:
    """Clean phantom images with labels and splits."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray

    def part(self, *splits: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of the given splits."""
        keep = np.isin(self.split, splits)
        return self.images[keep], self.labels[keep]


def phantom_pool(out: Path, cases: int, size: int, seed: int) -> ImagePool:
    """Generate (or reuse) clean lesion-classification phantoms under ``out`` and load them.

    The phantoms are acquired by a noise-free profile (no speckle, noise or blur),
    so site acquisition can be applied afresh to every draw.
    """
    from medfleet.data.io import read_image
    from medfleet.data.phantoms import PhantomConfig, SiteProfile, generate_phantoms
    from medfleet.tables import read_table
    from medfleet.tasks import Manifest

    manifest_path = out / "manifest.yaml"
    meta_ok = False
    if manifest_path.is_file():
        meta = Manifest.load(manifest_path).metadata
        meta_ok = (meta.get("seed"), meta.get("size"), meta.get("cases_per_site")) == (
            seed,
            size,
            cases,
        )
    if not meta_ok:
        cfg = PhantomConfig(
            tasks=["lesion_cls"],
            sites=[SiteProfile(name="clean", speckle=0.0, noise=0.0, blur=0.0)],
            split_fractions=(0.4, 0.3, 0.3),
        )
        generate_phantoms(out, cfg, cases_per_site=cases, size=size, seed=seed)
    manifest = Manifest.load(manifest_path)
    spec = next(t for t in manifest.tasks if t.name == "lesion_cls")
    rows = read_table(manifest.table_path(spec))
    images = np.stack(
        [read_image(manifest.resolve(r["image"])).array.astype(np.float64) / 255.0 for r in rows]
    )
    labels = np.array([CLASS_NAMES.index(r["label"]) for r in rows])
    split = np.array([r["split"] for r in rows])
    return ImagePool(images, labels, split)


# ----------------------------------------------------------------------------- drift


def drifted_profile(profile: Any, shift: str, magnitude: float) -> Any:
    """A site profile with an acquisition shift of ``magnitude`` applied.

    ``gain``: gain x (1 + m). ``contrast``: the display curve is flattened by
    c = 1 / (1 + m) around mid-grey 0.35 (gain x c, offset + (1 - c) 0.35 x gain).
    ``noise`` and ``blur``: m is added in quadrature. ``prior`` leaves the profile.

    Example:
        >>> from medfleet.data.phantoms.config import default_site
        >>> drifted_profile(default_site(0), "gain", 0.5).gain
        1.5
    """
    p = profile
    if shift == "gain":
        return p.model_copy(update={"gain": p.gain * (1 + magnitude)})
    if shift == "contrast":
        c = 1.0 / (1.0 + magnitude)
        offset = float(np.clip(p.offset + (1 - c) * 0.35 * p.gain, -0.5, 0.5))
        return p.model_copy(update={"gain": p.gain * c, "offset": offset})
    if shift == "noise":
        return p.model_copy(update={"noise": math.hypot(p.noise, magnitude)})
    if shift == "blur":
        return p.model_copy(update={"blur": math.hypot(p.blur, magnitude)})
    return p


def class_weights(labels: np.ndarray, shift: str, magnitude: float) -> np.ndarray:
    """Sampling weight per pool image: uniform, or (``prior``) moving the mix towards malignant.

    The label mix becomes ``(1 - m) * pool mix + m * all-malignant``.

    Example:
        >>> w = class_weights(np.array([0, 1, 2, 1]), "prior", 0.5)
        >>> round(float(w[np.array([0, 1, 2, 1]) == 1].sum()), 3)
        0.75
    """
    n = labels.size
    if shift != "prior" or magnitude <= 0:
        return np.full(n, 1.0 / n)
    classes, counts = np.unique(labels, return_counts=True)
    base = dict(zip(classes.tolist(), (counts / n).tolist(), strict=True))
    target = {c: (1.0 if c == 1 else 0.0) for c in base}
    m = min(magnitude, 1.0)
    mix = {c: (1 - m) * base[c] + m * target[c] for c in base}
    w = np.array([mix[int(c)] / (base[int(c)] * n) for c in labels])
    return w / w.sum()


def weighted_w1(a: np.ndarray, wa: np.ndarray, b: np.ndarray, wb: np.ndarray) -> float:
    """Wasserstein-1 distance between two weighted samples.

    Example:
        >>> weighted_w1(np.array([0.0, 1.0]), np.ones(2) / 2, np.array([1.0, 2.0]), np.ones(2) / 2)
        1.0
    """
    values = np.concatenate([a, b])
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    weights = np.concatenate([wa / wa.sum(), -wb / wb.sum()])[order]
    diff = np.cumsum(weights)[:-1]
    return float(np.sum(np.abs(diff) * np.diff(sorted_values)))


def output_effect(
    ref_probs: np.ndarray,
    probs: np.ndarray,
    ref_weights: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> float:
    """Drift effect: max over probability columns of W1(logits) / SD(reference logits).

    Example:
        >>> from medfleet.monitor.severity import sigmoid
        >>> z = np.random.default_rng(0).normal(size=(2000, 1))
        >>> round(output_effect(sigmoid(z), sigmoid(z + 0.5)), 2)
        0.5
    """
    r = np.atleast_2d(np.asarray(ref_probs, dtype=np.float64).T).T
    c = np.atleast_2d(np.asarray(probs, dtype=np.float64).T).T
    wr = np.full(r.shape[0], 1.0 / r.shape[0]) if ref_weights is None else ref_weights
    wc = np.full(c.shape[0], 1.0 / c.shape[0]) if weights is None else weights
    best = 0.0
    for j in range(r.shape[1]):
        lr, lc = logit(r[:, j]), logit(c[:, j])
        mean = np.sum(wr * lr) / wr.sum()
        sd = math.sqrt(np.sum(wr * (lr - mean) ** 2) / wr.sum())
        if sd > 1e-12:
            best = max(best, weighted_w1(lr, wr, lc, wc) / sd)
    return best


def severity_of_effect(effect: float) -> Severity:
    """True severity band of an effect.

    Example:
        >>> [severity_of_effect(e).value for e in (0.1, 0.3, 0.7, 1.5)]
        ['none', 'mild', 'moderate', 'severe']
    """
    mild, moderate, severe = SEVERITY_BANDS
    if effect >= severe:
        return Severity.severe
    if effect >= moderate:
        return Severity.moderate
    if effect >= mild:
        return Severity.mild
    return Severity.none


class _SitePopulation:
    """A site's population of outputs under a given drift magnitude (for effect sizes)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        profile: Any,
        scorer: Scorer,
        seed: int,
        draws: int = 2,
    ) -> None:
        self.images = np.concatenate([images] * draws)
        self.labels = np.concatenate([labels] * draws)
        self.profile = profile
        self.scorer = scorer
        self.seed = seed
        self.base = self.outputs("none", 0.0)
        self.base_w = np.full(self.labels.size, 1.0 / self.labels.size)

    def outputs(self, shift: str, magnitude: float) -> np.ndarray:
        prof = drifted_profile(self.profile, shift, magnitude)
        # Common random numbers: the same noise draws for every magnitude.
        acquired = acquire_stack(self.images, prof, np.random.default_rng(self.seed))
        return np.asarray(self.scorer(acquired))

    def effect(self, shift: str, magnitude: float) -> float:
        if shift == "prior":
            w = class_weights(self.labels, "prior", magnitude)
            return output_effect(self.base, self.base, self.base_w, w)
        return output_effect(self.base, self.outputs(shift, magnitude))

    def magnitude_for(self, shift: str, target: float, iterations: int = 9) -> tuple[float, float]:
        """Bisection for the magnitude whose effect is ``target`` (or the largest searched)."""
        hi = MAX_MAGNITUDE[shift]
        e_hi = self.effect(shift, hi)
        if e_hi <= target:
            return hi, e_hi
        lo = 0.0
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            if self.effect(shift, mid) < target:
                lo = mid
            else:
                hi = mid
        mag = 0.5 * (lo + hi)
        return mag, self.effect(shift, mag)


# ----------------------------------------------------------------------------- streams


@dataclass
class Streams:
    """Simulated outputs and their truth.

    Attributes:
        sites: Site names.
        references: Per site, reference outputs (``prob``, ``pred_class``).
        steps: Per time step, one batch per site.
        effects: Per site, the true effect of every batch.
        truth: Per site, true severity per batch (``none`` .. ``severe``) or ``ambiguous``.
        scenarios: Per site, its scenario with the injected magnitude and reached effect.
    """

    sites: list[str]
    references: dict[str, dict[str, np.ndarray]]
    steps: list[list[OutputBatch]]
    effects: dict[str, list[float]]
    truth: dict[str, list[str]]
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)


def _outputs(probs: np.ndarray) -> dict[str, np.ndarray]:
    return {"prob": probs, "pred_class": probs.argmax(axis=1)}


def fit_default_scorer(pool: ImagePool, sites: list[Any], seed: int) -> PhantomScorer:
    """Fit :class:`PhantomScorer` on the train split, each image acquired by a random site."""
    images, labels = pool.part("train")
    rng = np.random.default_rng(stable_seed(seed, "scorer"))
    which = rng.integers(0, len(sites), size=labels.size)
    acquired = np.empty_like(images)
    for k, profile in enumerate(sites):
        idx = np.flatnonzero(which == k)
        if idx.size:
            acquired[idx] = acquire_stack(images[idx], profile, rng)
    return PhantomScorer(n_classes=len(CLASS_NAMES)).fit(acquired, labels)


def build_streams(
    config: SimulationConfig,
    pool: ImagePool,
    scorer: Scorer,
    progress: ProgressCallback | None = None,
) -> Streams:
    """Simulate every site's reference and batch stream, with known drift."""
    from medfleet.data.phantoms.config import default_site

    names = config.site_names()
    profiles = {name: default_site(i) for i, name in enumerate(names)}
    scen = {s.site: s for s in config.scenarios if s.site in profiles}
    held_images, held_labels = pool.part("val", "test")
    if held_labels.size == 0:
        raise ValueError("the phantom pool has no held-out images; raise cases")
    references: dict[str, dict[str, np.ndarray]] = {}
    schedules: dict[str, list[float]] = {}
    effects: dict[str, list[float]] = {}
    truth: dict[str, list[str]] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in names:
        profile = profiles[name]
        rng = np.random.default_rng(stable_seed(config.seed, name, "reference"))
        idx = rng.integers(0, held_labels.size, size=config.reference_size)
        references[name] = _outputs(
            np.asarray(scorer(acquire_stack(held_images[idx], profile, rng)))
        )
        s = scen.get(name)
        mags = [0.0] * config.batches
        effs = [0.0] * config.batches
        if s is not None and s.shift != "none":
            population = _SitePopulation(
                held_images,
                held_labels,
                profile,
                scorer,
                stable_seed(config.seed, name, "population"),
            )
            full, reached = population.magnitude_for(s.shift, EFFECT_TARGETS[s.severity])
            for t in range(s.onset, config.batches):
                frac = 1.0 if s.pattern == "abrupt" else min(1.0, (t - s.onset + 1) / s.ramp)
                mags[t] = full * frac
                effs[t] = reached if frac == 1.0 else population.effect(s.shift, mags[t])
            info[name] = {**s.model_dump(), "magnitude": full, "effect": reached}
        else:
            info[name] = {"site": name, "shift": "none"}
        schedules[name] = mags
        effects[name] = effs
        labels = []
        for t, e in enumerate(effs):
            sev = severity_of_effect(e)
            if sev is Severity.none and e > 0:
                labels.append("ambiguous")
            else:
                labels.append(sev.value)
            del t
        truth[name] = labels
    steps: list[list[OutputBatch]] = []
    total = config.batches * len(names)
    done = 0
    for t in range(config.batches):
        row = []
        for name in names:
            s = scen.get(name)
            shift = s.shift if s is not None else "none"
            mag = schedules[name][t]
            rng = np.random.default_rng(stable_seed(config.seed, name, "batch", t))
            weights = class_weights(held_labels, shift, mag)
            idx = rng.choice(held_labels.size, size=config.batch_size, p=weights)
            profile = drifted_profile(profiles[name], shift, mag)
            probs = np.asarray(scorer(acquire_stack(held_images[idx], profile, rng)))
            stamp = 1_704_067_200 + t * 86_400  # 2024-01-01 + t days
            row.append(OutputBatch(name, f"t{t:03d}", stamp, _outputs(probs)))
            done += 1
            if progress is not None:
                progress(done, total)
        steps.append(row)
    return Streams(names, references, steps, effects, truth, info)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class SchemeResult:
    """One scheme's predictions and scores.

    Attributes:
        scheme: Scheme name.
        metrics: Detection precision / recall / F1, severity F1, delay, missed, false alarms.
        predictions: Per site, per batch: (drift, severity, statistic).
    """

    scheme: str
    metrics: dict[str, float | int | None]
    predictions: dict[str, list[tuple[bool, str, float | None]]]


def _pooled_batch(batches: list[OutputBatch]) -> OutputBatch:
    outputs = {k: np.concatenate([b.outputs[k] for b in batches]) for k in batches[0].outputs}
    return OutputBatch(CENTRAL, batches[0].batch_id, batches[0].timestamp, outputs)


def run_scheme(
    config: SimulationConfig,
    streams: Streams,
    scheme: str,
    progress: ProgressCallback | None = None,
) -> dict[str, list[tuple[bool, str, float | None]]]:
    """Process the streams with one scheme; per site, per batch: (drift, severity, statistic)."""
    from medfleet.monitor.agent import Coordinator
    from medfleet.monitor.references import concat_outputs
    from medfleet.monitor.store import MemoryStore

    preds: dict[str, list[tuple[bool, str, float | None]]] = {s: [] for s in streams.sites}
    total = len(streams.steps)
    if scheme == "centralised":
        coord = Coordinator(config.monitor_config(scheme, [CENTRAL]), MemoryStore())
        coord.set_reference(CENTRAL, concat_outputs([streams.references[s] for s in streams.sites]))
        for t, row in enumerate(streams.steps):
            r = coord.process(_pooled_batch(row))
            for s in streams.sites:
                preds[s].append((r.drift, r.severity.value, r.statistic))
            if progress is not None:
                progress(t + 1, total)
        return preds
    coord = Coordinator(config.monitor_config(scheme, streams.sites), MemoryStore())
    for s in streams.sites:
        coord.set_reference(s, streams.references[s])
    for t, row in enumerate(streams.steps):
        for b in row:
            r = coord.process(b)
            preds[b.site].append((r.drift, r.severity.value, r.statistic))
        if progress is not None:
            progress(t + 1, total)
    return preds


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score_predictions(
    streams: Streams, predictions: Mapping[str, list[tuple[bool, str, float | None]]]
) -> dict[str, float | int | None]:
    """Batch-level detection and severity scores of one scheme's predictions.

    Detection: a batch is positive when its true severity is mild or worse;
    ambiguous batches are skipped. Severity F1: macro F1 over mild, moderate
    and severe across all scored batches (a stable batch predicted mild is a
    false positive of mild; a drifted batch predicted none a false negative).
    Delay: batches from onset to the first flagged batch, averaged over drifted
    sites that were detected; ``missed`` counts drifted sites never flagged.
    """
    tp = fp = fn = stable = 0
    levels = ("mild", "moderate", "severe")
    counts = {lv: [0, 0, 0] for lv in levels}  # tp, fp, fn
    delays: list[int] = []
    missed = 0
    for site in streams.sites:
        truth = streams.truth[site]
        preds = predictions[site]
        onset = next((t for t, v in enumerate(truth) if v not in ("none",)), None)
        for label, (drift, sev, _) in zip(truth, preds, strict=True):
            if label == "ambiguous":
                continue
            positive = label != "none"
            if positive and drift:
                tp += 1
            elif positive:
                fn += 1
            elif drift:
                fp += 1
            if not positive:
                stable += 1
            for lv in levels:
                if label == lv and sev == lv:
                    counts[lv][0] += 1
                elif sev == lv:
                    counts[lv][1] += 1
                elif label == lv:
                    counts[lv][2] += 1
        if onset is not None:
            first = next((t for t in range(onset, len(preds)) if preds[t][0]), None)
            if first is None:
                missed += 1
            else:
                delays.append(first - onset)
    precision, recall, f1 = _f1(tp, fp, fn)
    present = [lv for lv in levels if counts[lv][0] + counts[lv][2] > 0]
    sev_f1 = float(np.mean([_f1(*counts[lv])[2] for lv in present])) if present else None
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "severity_f1": None if sev_f1 is None else round(sev_f1, 4),
        "delay_batches": round(float(np.mean(delays)), 2) if delays else None,
        "missed": missed,
        "false_alarms_per_100": round(100.0 * fp / stable, 2) if stable else None,
        "stable_batches": stable,
        "drifted_batches": tp + fn,
    }


# ----------------------------------------------------------------------------- runner


@dataclass
class SimulationResult:
    """Everything a simulation produced.

    Attributes:
        config: The simulation settings.
        streams: The simulated streams.
        schemes: Per scheme, its result.
        files: Paths written, by role.
    """

    config: SimulationConfig
    streams: Streams
    schemes: dict[str, SchemeResult]
    files: dict[str, str] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per scheme: its scores and whether it beats the centralised baseline (F1)."""
        base = self.schemes.get("centralised")
        rows = []
        for name, res in self.schemes.items():
            row: dict[str, Any] = {"scheme": name, **res.metrics}
            if base is not None and name != "centralised":
                row["beats_centralised"] = bool(res.metrics["f1"] > base.metrics["f1"])
            rows.append(row)
        return rows


def run_simulation(
    config: SimulationConfig,
    out: str | Path,
    *,
    scorer: Scorer | None = None,
    progress: ProgressCallback | None = None,
    write: bool = True,
) -> SimulationResult:
    """Simulate streams, run every configured scheme, score them and write the results.

    Args:
        config: Simulation settings.
        out: Output folder: ``phantoms/`` (clean images, reused when present),
            ``streams/outputs.csv`` and ``streams/references.csv`` (with
            ``streams/monitor.yaml``, ready for ``medfleet monitor run``),
            ``predictions.csv``, ``table.csv``, ``table.json`` and ``report.html``.
        scorer: Images -> probabilities; default: :class:`PhantomScorer` fitted on the
            phantoms' train split.
        progress: ``(done, total)`` callback over stream batches and scheme batches.
        write: Write the files (False: compute only).

    Returns:
        The result; :meth:`SimulationResult.table` is the quality table.
    """
    from medfleet.data.phantoms.config import default_site

    unknown = [s for s in config.schemes if s not in ALL_SCHEMES]
    if unknown:
        raise ValueError(f"unknown scheme(s) {unknown}; choose from {', '.join(ALL_SCHEMES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool = phantom_pool(out / "phantoms", config.cases, config.size, config.seed)
    if scorer is None:
        scorer = fit_default_scorer(
            pool, [default_site(i) for i in range(config.sites)], config.seed
        )
    n_stream = config.batches * config.sites
    total = n_stream + config.batches * len(config.schemes)

    def stream_progress(done: int, _total: int) -> None:
        if progress is not None:
            progress(done, total)

    streams = build_streams(config, pool, scorer, stream_progress)
    results: dict[str, SchemeResult] = {}
    for k, scheme in enumerate(config.schemes):
        offset = n_stream + k * config.batches

        def scheme_progress(done: int, _total: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + done, total)

        preds = run_scheme(config, streams, scheme, scheme_progress)
        results[scheme] = SchemeResult(scheme, score_predictions(streams, preds), preds)
    result = SimulationResult(config, streams, results)
    if write:
        result.files = write_results(result, out)
    return result


def write_results(result: SimulationResult, out: Path) -> dict[str, str]:
    """Write streams, predictions, the quality table (CSV, JSON) and report.html."""
    files: dict[str, str] = {}
    streams = result.streams
    sdir = out / "streams"
    files["outputs"] = str(_write_stream_csv(sdir / "outputs.csv", streams))
    files["references"] = str(_write_reference_csv(sdir / "references.csv", streams))
    cfg = result.config.monitor_config("adaptive", streams.sites).model_copy(
        update={
            "references": {"*": Path("references.csv")},
            "input": InputConfig(paths=[Path("outputs.csv")], batch_column="batch_id"),
            "db": Path("monitor.sqlite"),
        }
    )
    files["monitor_config"] = str(cfg.dump(sdir / "monitor.yaml"))
    with atomic_open(out / "predictions.csv", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["scheme", "site", "batch", "truth", "effect", "drift", "severity", "statistic"]
        )
        for name, res in result.schemes.items():
            for site in streams.sites:
                for t, (drift, sev, stat) in enumerate(res.predictions[site]):
                    writer.writerow(
                        [
                            name,
                            site,
                            t,
                            streams.truth[site][t],
                            round(streams.effects[site][t], 4),
                            int(drift),
                            sev,
                            "" if stat is None else round(stat, 5),
                        ]
                    )
    files["predictions"] = str(out / "predictions.csv")
    table = result.table()
    # table.csv adds the batch counts before the comparison with centralised.
    columns = [*SUMMARY_COLUMNS[:-1], "stable_batches", "drifted_batches", SUMMARY_COLUMNS[-1]]
    with atomic_open(out / "table.csv", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in table:
            writer.writerow({c: row.get(c, "") for c in columns})
    files["table_csv"] = str(out / "table.csv")
    write_json_atomic(
        out / "table.json",
        {
            "table": table,
            "config": result.config.model_dump(mode="json"),
            "scenarios": streams.scenarios,
            "severity_bands": dict(
                zip(("mild", "moderate", "severe"), SEVERITY_BANDS, strict=True)
            ),
            "effect_targets": EFFECT_TARGETS,
        },
        sort_keys=False,
    )
    files["table_json"] = str(out / "table.json")
    from medfleet.monitor.sim_report import write_simulation_report

    files["report"] = str(write_simulation_report(result, out / "report.html"))
    return files


def _write_stream_csv(path: Path, streams: Streams) -> Path:
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["site", "time", "batch_id", "prob_0", "prob_1", "prob_2", "pred_class"])
        for row in streams.steps:
            for b in row:
                probs, cls = b.outputs["prob"], b.outputs["pred_class"]
                for i in range(b.n):
                    writer.writerow(
                        [
                            b.site,
                            b.timestamp,
                            b.batch_id,
                            *(f"{v:.6f}" for v in probs[i]),
                            int(cls[i]),
                        ]
                    )
    return path


def _write_reference_csv(path: Path, streams: Streams) -> Path:
    with atomic_open(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["site", "prob_0", "prob_1", "prob_2", "pred_class"])
        for site in streams.sites:
            ref = streams.references[site]
            for i in range(ref["prob"].shape[0]):
                writer.writerow(
                    [site, *(f"{v:.6f}" for v in ref["prob"][i]), int(ref["pred_class"][i])]
                )
    return path


def summary_json(result: SimulationResult) -> dict[str, Any]:
    """JSON-ready summary for the CLI: the table, files and scenarios.

    Numbers follow the one JSON policy (:func:`medfleet.utils.jsonsafe.json_safe`: NaN ->
    None, ``±inf`` -> ``"inf"`` / ``"-inf"``); other objects become their text.
    """
    data = {"table": result.table(), "files": result.files, "scenarios": result.streams.scenarios}
    return json.loads(json.dumps(json_safe(data), default=str, allow_nan=False))
