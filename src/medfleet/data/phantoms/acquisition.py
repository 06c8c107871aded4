"""Site acquisition: turn a clean phantom into what a site's scanner would record.

The chain is, in order:

1. speckle: multiply by unit-mean gamma-distributed noise of standard deviation ``speckle``;
2. point-spread blur: Gaussian of sigma ``blur`` in-plane pixels (in 3D scaled to the
   slice spacing along the slice axis), which also sets the speckle grain size;
3. display curve: ``gain * x**gamma + offset``;
4. electronic noise: add Gaussian noise of standard deviation ``noise``;
5. clip to [0, 1].

Resolution shift is part of the geometry (each site's pixel spacing is
``nominal * spacing_scale``), not of this chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medfleet.data.phantoms.config import SiteProfile


def acquire(
    clean: np.ndarray,
    site: SiteProfile,
    rng: np.random.Generator,
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Apply a site's acquisition chain to a clean image in [0, 1].

    Args:
        clean: Clean image or volume, values in [0, 1].
        site: The site's acquisition profile.
        rng: Random generator of this case's acquisition (speckle and noise draw
            from independent child streams, so switching one off leaves the other).
        spacing: Spacing per array axis (mm); in 3D it scales the blur along the
            slice axis to the same physical width as in-plane. Defaults to isotropic.

    Returns:
        The acquired image as float64 in [0, 1].

    Example:
        >>> from medfleet.data.phantoms.config import SiteProfile
        >>> flat = np.full((32, 32), 0.5)
        >>> quiet = SiteProfile(name="s", speckle=0.0, noise=0.0, blur=0.0, gain=1.5)
        >>> float(acquire(flat, quiet, np.random.default_rng(0)).mean())
        0.75
    """
    speckle_rng, noise_rng = rng.spawn(2)
    x = np.asarray(clean, dtype=np.float64)
    if site.speckle > 0:
        shape_k = 1.0 / (site.speckle**2)
        x = x * speckle_rng.gamma(shape_k, 1.0 / shape_k, size=x.shape)
    if site.blur > 0:
        x = ndimage.gaussian_filter(x, blur_sigmas(x.ndim, site.blur, spacing), mode="nearest")
    x = site.gain * np.clip(x, 0.0, None) ** site.gamma + site.offset
    if site.noise > 0:
        x = x + site.noise * noise_rng.standard_normal(x.shape)
    return np.clip(x, 0.0, 1.0)


def blur_sigmas(ndim: int, blur: float, spacing: Sequence[float] | None) -> tuple[float, ...]:
    """Per-axis Gaussian sigmas (pixels) for an in-plane blur of ``blur`` pixels.

    Example:
        >>> blur_sigmas(3, 1.0, (3.0, 0.75, 0.75))
        (0.25, 1.0, 1.0)
    """
    if spacing is None or ndim == 2:
        return (float(blur),) * ndim
    inplane = float(spacing[-1])
    return tuple(float(blur) * inplane / float(s) for s in spacing)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise an image in [0, 1] to 8 bits (round half to even).

    Example:
        >>> to_uint8(np.array([0.0, 0.5, 1.0])).tolist()
        [0, 128, 255]
    """
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def high_frequency_energy(image: np.ndarray) -> float:
    """Mean squared Laplacian of an image (in its own units): a texture/noise/sharpness statistic.

    Higher for noisier or sharper images, lower for blurred ones.

    Example:
        >>> flat = np.zeros((16, 16))
        >>> high_frequency_energy(flat)
        0.0
    """
    lap = ndimage.laplace(np.asarray(image, dtype=np.float64), mode="reflect")
    return float(np.mean(lap * lap))
