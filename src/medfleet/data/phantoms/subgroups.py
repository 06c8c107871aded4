"""Subject metadata (age band, density, sex) and its effect on appearance.

Every subject draws an age band, a tissue density category and a sex once; all
images of the subject share them. Their effects (see
:class:`~medfleet.data.phantoms.config.SubgroupEffects`) are:

- tissue background mean ``0.30 + density_brightness * density_level``;
- background texture (smoothed noise, sigma 2 px) of standard deviation
  ``0.03 + density_texture * density_level``;
- structure contrast multiplied by
  ``max(0, 1 - density_contrast * density_level - age_contrast * age_level)``;
- sex has no effect (a negative control for subgroup analyses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medfleet.data.phantoms.config import (
    SEXES,
    PhantomConfig,
    SiteProfile,
    SubgroupEffects,
    normalised,
)
from medfleet.data.phantoms.shapes import smooth_field

BACKGROUND_MEAN = 0.30
"""Background mean of the least dense tissue (full-scale units)."""

TEXTURE_STD = 0.03
"""Background texture standard deviation of the least dense tissue."""

TEXTURE_SIGMA_PX = 2.0
"""Correlation length (Gaussian sigma, pixels) of the background texture."""


@dataclass(frozen=True)
class SubjectAttributes:
    """One subject's metadata.

    Example:
        >>> SubjectAttributes("40-59", 1, "C", 2, "F").columns()
        {'age_band': '40-59', 'density': 'C', 'sex': 'F'}
    """

    age_band: str
    age_level: int
    density: str
    density_level: int
    sex: str

    def columns(self) -> dict[str, str]:
        """The table columns this subject contributes."""
        return {"age_band": self.age_band, "density": self.density, "sex": self.sex}


def draw_subject(
    rng: np.random.Generator, config: PhantomConfig, site: SiteProfile
) -> SubjectAttributes:
    """Draw one subject's metadata (the site's density weights override the config's).

    Example:
        >>> from medfleet.data.phantoms.config import PhantomConfig
        >>> cfg = PhantomConfig.default(1)
        >>> draw_subject(np.random.default_rng(0), cfg, cfg.sites[0]).density in cfg.densities
        True
    """
    age_level = int(rng.choice(len(config.age_bands), p=normalised(config.age_weights)))
    weights = site.density_weights if site.density_weights is not None else config.density_weights
    density_level = int(rng.choice(len(config.densities), p=normalised(weights)))
    sex = SEXES[int(rng.integers(len(SEXES)))]
    return SubjectAttributes(
        age_band=config.age_bands[age_level],
        age_level=age_level,
        density=config.densities[density_level],
        density_level=density_level,
        sex=sex,
    )


def tissue_background(
    shape: tuple[int, ...],
    attrs: SubjectAttributes,
    effects: SubgroupEffects,
    rng: np.random.Generator,
    sigma: float | tuple[float, ...] = TEXTURE_SIGMA_PX,
) -> np.ndarray:
    """Clean textured tissue background of one image, before structures are painted.

    Example:
        >>> from medfleet.data.phantoms.config import SubgroupEffects
        >>> a = SubjectAttributes("18-39", 0, "A", 0, "F")
        >>> bg = tissue_background((64, 64), a, SubgroupEffects(), np.random.default_rng(0))
        >>> round(float(bg.mean()), 6), round(float(bg.std()), 6)
        (0.3, 0.03)
    """
    mean = BACKGROUND_MEAN + effects.density_brightness * attrs.density_level
    std = TEXTURE_STD + effects.density_texture * attrs.density_level
    return mean + std * smooth_field(shape, rng, sigma)


def contrast_factor(attrs: SubjectAttributes, effects: SubgroupEffects) -> float:
    """Multiplier of every structure's contrast for this subject.

    Example:
        >>> from medfleet.data.phantoms.config import SubgroupEffects
        >>> round(contrast_factor(SubjectAttributes("60+", 2, "D", 3, "M"), SubgroupEffects()), 6)
        0.64
    """
    factor = (
        1.0
        - effects.density_contrast * attrs.density_level
        - effects.age_contrast * attrs.age_level
    )
    return max(0.0, factor)
