"""Phantom configuration as data: sites and their acquisition, subgroups, raters, splits.

Everything that shapes a phantom data set apart from the call arguments
(``sites``, ``cases_per_site``, ``dim``, ``seed``, ``size``) lives in a
:class:`PhantomConfig`. It serialises to JSON/YAML and is written into the
manifest's ``metadata.config``, so a data set always says how it was made.

Intensities are in full-scale units (0 = black, 1 = white) before the image is
quantised to 8 bits. Lengths of rater jitter are in (in-plane) pixels.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]

AGE_BANDS: tuple[str, ...] = ("18-39", "40-59", "60+")
"""Default age bands, youngest first (the band index is the ``age_level``)."""

DENSITIES: tuple[str, ...] = ("A", "B", "C", "D")
"""Default tissue density categories (BI-RADS-like), least dense first."""

SEXES: tuple[str, ...] = ("F", "M")
"""Values of the ``sex`` column (no effect on appearance: a negative control)."""


def site_name(index: int) -> str:
    """Name of site ``index`` (0-based): ``site_a``, ..., ``site_z``, ``site_aa``, ...

    Example:
        >>> [site_name(i) for i in (0, 1, 25, 26, 27)]
        ['site_a', 'site_b', 'site_z', 'site_aa', 'site_ab']
    """
    if index < 0:
        raise ValueError(f"site index must be >= 0, got {index}")
    letters = ""
    n = index + 1
    while n > 0:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return f"site_{letters}"


class SiteProfile(BaseModel):
    """One site's acquisition: how its scanner turns clean anatomy into pixels.

    The chain, in order (see :func:`medfleet.data.phantoms.acquisition.acquire`):
    multiplicative speckle, Gaussian point-spread blur, ``gain * x**gamma + offset``,
    additive Gaussian noise, clipping to [0, 1].

    Attributes:
        name: Site name (``site_a`` ...).
        vendor: Scanner vendor, written to the ``vendor`` column and the manifest.
        gain: Multiplicative brightness (> 1 brighter).
        offset: Added brightness after gain, full-scale units.
        gamma: Contrast curve exponent (< 1 brightens mid-tones, > 1 darkens).
        speckle: Standard deviation of the unit-mean multiplicative speckle (gamma distributed).
        noise: Standard deviation of additive Gaussian noise, full-scale units.
        blur: Sigma of the Gaussian point-spread function, in-plane pixels.
        spacing_scale: Pixel spacing relative to the task's nominal spacing (resolution and
            field-of-view shift: > 1 means coarser pixels and smaller-looking anatomy).
        slice_scale: Slice spacing relative to the nominal slice spacing (3D only).
        density_weights: Probabilities of the density categories at this site (population shift);
            ``None`` uses the config-wide weights.
        class_weights: Probabilities of the classification classes at this site (label shift);
            ``None`` uses the config-wide weights.

    Example:
        >>> SiteProfile(name="site_a", vendor="Aurora", gain=1.2).gain
        1.2
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    vendor: str = "generic"
    gain: Positive = 1.0
    offset: float = Field(default=0.0, ge=-0.5, le=0.5)
    gamma: Positive = 1.0
    speckle: NonNegative = 0.1
    noise: NonNegative = 0.02
    blur: NonNegative = 0.6
    spacing_scale: float = Field(default=1.0, ge=0.8, le=1.25)
    slice_scale: float = Field(default=1.0, ge=0.8, le=1.25)
    density_weights: list[NonNegative] | None = None
    class_weights: list[NonNegative] | None = None

    @field_validator("speckle")
    @classmethod
    def _speckle_range(cls, value: float) -> float:
        if value > 1.0:
            raise ValueError("speckle is a relative standard deviation; use a value in [0, 1]")
        return value


class SubgroupEffects(BaseModel):
    """How subject metadata changes appearance (all effects are additive per category step).

    The ``density_level`` is the index of the density category (A=0 ... D=3) and the
    ``age_level`` the index of the age band (youngest = 0). Set a field to 0 to switch
    its effect off; all zero means subgroups carry no signal at all.

    Attributes:
        density_brightness: Background mean increase per density step (full scale).
        density_texture: Background texture standard deviation increase per density step.
        density_contrast: Fractional reduction of structure contrast per density step.
        age_contrast: Fractional reduction of structure contrast per age band step.

    Example:
        >>> SubgroupEffects.none().density_brightness
        0.0
    """

    model_config = ConfigDict(extra="forbid")

    density_brightness: NonNegative = 0.04
    density_texture: NonNegative = 0.015
    density_contrast: float = Field(default=0.08, ge=0.0, le=0.3)
    age_contrast: float = Field(default=0.06, ge=0.0, le=0.45)

    @classmethod
    def none(cls) -> SubgroupEffects:
        """Effects all switched off."""
        return cls(
            density_brightness=0.0, density_texture=0.0, density_contrast=0.0, age_contrast=0.0
        )


class RaterStyle(BaseModel):
    """One simulated annotator: a systematic boundary offset plus smooth random jitter.

    Attributes:
        bias_px: Signed boundary offset in pixels (> 0 draws every structure larger).
        jitter_px: Standard deviation of the smooth random boundary displacement, pixels.

    Example:
        >>> RaterStyle(bias_px=0.8).jitter_px
        0.8
    """

    model_config = ConfigDict(extra="forbid")

    bias_px: float = Field(default=0.0, ge=-3.0, le=3.0)
    jitter_px: float = Field(default=0.8, ge=0.0, le=4.0)


def _default_raters() -> list[RaterStyle]:
    return [
        RaterStyle(bias_px=0.8, jitter_px=0.7),
        RaterStyle(bias_px=0.0, jitter_px=0.7),
        RaterStyle(bias_px=-0.5, jitter_px=1.0),
    ]


# Acquisition presets cycled over sites; sites beyond the list get deterministic variations.
_PRESETS: tuple[dict[str, float | str], ...] = (
    {"vendor": "Aurora", "gain": 1.00, "gamma": 1.00, "speckle": 0.12, "noise": 0.02, "blur": 0.6,
     "spacing_scale": 1.00, "slice_scale": 1.00},
    {"vendor": "Borealis", "gain": 1.20, "gamma": 0.85, "speckle": 0.25, "noise": 0.04, "blur": 1.0,
     "spacing_scale": 1.15, "slice_scale": 1.20},
    {"vendor": "Cirrus", "gain": 0.85, "gamma": 1.25, "speckle": 0.06, "noise": 0.01, "blur": 1.5,
     "spacing_scale": 0.85, "slice_scale": 0.85},
    {"vendor": "Aurora", "gain": 1.10, "gamma": 1.10, "speckle": 0.18, "noise": 0.03, "blur": 0.4,
     "spacing_scale": 0.95, "slice_scale": 1.10},
    {"vendor": "Dune", "gain": 0.95, "gamma": 0.90, "speckle": 0.10, "noise": 0.05, "blur": 0.8,
     "spacing_scale": 1.10, "slice_scale": 0.90},
    {"vendor": "Borealis", "gain": 1.30, "gamma": 1.05, "speckle": 0.30, "noise": 0.02, "blur": 1.2,
     "spacing_scale": 0.90, "slice_scale": 1.15},
)  # fmt: skip


def default_site(index: int) -> SiteProfile:
    """The built-in acquisition profile of site ``index`` (0-based).

    The first six sites use fixed presets; later ones vary a preset with a
    deterministic generator keyed by the index (independent of the data seed).

    Example:
        >>> default_site(1).vendor, default_site(1).gain
        ('Borealis', 1.2)
    """
    preset = dict(_PRESETS[index % len(_PRESETS)])
    if index >= len(_PRESETS):
        rng = np.random.default_rng(np.random.SeedSequence([0x5173, index]))
        for key in ("gain", "gamma"):
            preset[key] = round(float(preset[key]) * float(rng.uniform(0.9, 1.1)), 3)
        for key in ("speckle", "noise", "blur"):
            preset[key] = round(float(preset[key]) * float(rng.uniform(0.7, 1.3)), 3)
        for key in ("spacing_scale", "slice_scale"):
            preset[key] = round(
                float(np.clip(float(preset[key]) * rng.uniform(0.93, 1.07), 0.8, 1.25)), 3
            )
    return SiteProfile(name=site_name(index), **preset)  # type: ignore[arg-type]


class PhantomConfig(BaseModel):
    """Everything that shapes a phantom data set besides the call arguments.

    Attributes:
        name: Data set name written into the manifest.
        sites: Site profiles; ``None`` takes :func:`default_site` for the ``sites`` count
            given to :func:`~medfleet.data.phantoms.generate_phantoms`. When set, these
            sites are used as they are and the ``sites`` argument is ignored.
        subgroups: Subgroup effects on appearance.
        age_bands: Age band names, youngest first.
        age_weights: Probabilities of the age bands.
        densities: Density category names, least dense first.
        density_weights: Probabilities of the density categories (sites may override).
        class_weights: Probabilities of the classification classes
            (``benign, malignant, normal``; sites may override).
        raters: Simulated annotators of every segmentation task (empty: no rater columns).
        rater_smoothness_px: Correlation length (Gaussian sigma, pixels) of rater jitter.
        split_fractions: Target case fractions of ``train, val, test`` (by subject).
        repeat_weights: Probabilities that a subject has 1, 2, 3, ... images.
        tasks: Names of the tasks to generate (``None``: every task of the dimension).

    Example:
        >>> cfg = PhantomConfig.default(sites=2)
        >>> [s.name for s in cfg.sites]
        ['site_a', 'site_b']
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "phantoms"
    sites: list[SiteProfile] | None = None
    subgroups: SubgroupEffects = Field(default_factory=SubgroupEffects)
    age_bands: list[str] = Field(default_factory=lambda: list(AGE_BANDS), min_length=1)
    age_weights: list[NonNegative] = Field(default_factory=lambda: [0.3, 0.45, 0.25])
    densities: list[str] = Field(default_factory=lambda: list(DENSITIES), min_length=1)
    density_weights: list[NonNegative] = Field(default_factory=lambda: [0.1, 0.4, 0.4, 0.1])
    class_weights: list[NonNegative] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    raters: list[RaterStyle] = Field(default_factory=_default_raters)
    rater_smoothness_px: float = Field(default=5.0, ge=0.5, le=50.0)
    split_fractions: tuple[NonNegative, NonNegative, NonNegative] = (0.6, 0.2, 0.2)
    repeat_weights: list[NonNegative] = Field(default_factory=lambda: [0.6, 0.3, 0.1], min_length=1)
    tasks: list[str] | None = None

    @classmethod
    def default(cls, sites: int = 3) -> PhantomConfig:
        """The default configuration with ``sites`` built-in site profiles."""
        if sites < 1:
            raise ValueError(f"sites must be at least 1, got {sites}")
        return cls(sites=[default_site(i) for i in range(sites)])

    def with_sites(self, sites: int) -> PhantomConfig:
        """This config with its site list filled in (unchanged when already set)."""
        if self.sites is not None:
            return self
        if sites < 1:
            raise ValueError(f"sites must be at least 1, got {sites}")
        return self.model_copy(update={"sites": [default_site(i) for i in range(sites)]})

    @model_validator(mode="after")
    def _consistent(self) -> PhantomConfig:
        pairs = (
            ("age_weights", self.age_weights, "age_bands", len(self.age_bands)),
            ("density_weights", self.density_weights, "densities", len(self.densities)),
            ("class_weights", self.class_weights, "classes (benign, malignant, normal)", 3),
        )
        for field, weights, what, n in pairs:
            _check_weights(field, weights, what, n)
        if self.sites is not None:
            if not self.sites:
                raise ValueError("'sites' is empty: give at least one site, or None for defaults")
            names = [s.name for s in self.sites]
            if len(set(names)) != len(names):
                raise ValueError(f"site names must be unique, got {names}")
            for site in self.sites:
                if site.density_weights is not None:
                    _check_weights(
                        f"sites[{site.name}].density_weights",
                        site.density_weights,
                        "densities",
                        len(self.densities),
                    )
                if site.class_weights is not None:
                    _check_weights(
                        f"sites[{site.name}].class_weights", site.class_weights, "classes", 3
                    )
        if sum(self.split_fractions) <= 0:
            raise ValueError("split_fractions must not all be zero (e.g. [0.6, 0.2, 0.2])")
        if sum(self.repeat_weights) <= 0:
            raise ValueError("repeat_weights must not all be zero (e.g. [0.6, 0.3, 0.1])")
        return self


def _check_weights(field: str, weights: list[float], what: str, n: int) -> None:
    if len(weights) != n:
        raise ValueError(f"'{field}' has {len(weights)} values but there are {n} {what}")
    if sum(weights) <= 0:
        raise ValueError(f"'{field}' must not be all zero")


def normalised(weights: list[float]) -> np.ndarray:
    """Weights as probabilities summing to 1.

    Example:
        >>> normalised([1, 3]).tolist()
        [0.25, 0.75]
    """
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()
