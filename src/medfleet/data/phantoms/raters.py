"""Simulated annotators: smooth random deformations of the true contours plus a rater bias.

For each foreground label the signed distance to the true boundary is computed
(negative inside, in in-plane pixels, half a pixel at the boundary pixels). A
rater's structure is where ``sdf < bias_px + jitter_px * field``, with
``field`` a Gaussian-smoothed unit-variance noise image (correlation length
``smoothness_px``), drawn afresh for every label and rater over a box around
the label reaching ``|bias| + 4 * jitter + 2`` pixels beyond it (farther out
nothing could change). The boundary thus
moves outwards by ``bias_px`` on average and wobbles smoothly around that.
A structure's region includes what is nested inside it (holes filled), and
structures are painted from the largest to the smallest true area, so a lesion
inside an organ stays on top and never gets a gap of background around it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medfleet.data.phantoms.config import RaterStyle
from medfleet.data.phantoms.shapes import bounding_box, smooth_field


def signed_distance(mask: np.ndarray, sampling: Sequence[float] | None = None) -> np.ndarray:
    """Signed distance to a mask's boundary: ``-(d - 0.5)`` inside, ``d - 0.5`` outside.

    ``d`` is the Euclidean distance (in units of ``sampling``) from a pixel centre to the
    nearest pixel centre of the other side.

    Example:
        >>> m = np.zeros((1, 5), bool); m[0, 1:4] = True
        >>> signed_distance(m).tolist()
        [[0.5, -0.5, -1.5, -0.5, 0.5]]
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf)
    if mask.all():
        return np.full(mask.shape, -np.inf)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    return np.where(mask, 0.5 - inside, outside - 0.5)


def rater_masks(
    truth: np.ndarray,
    raters: Sequence[RaterStyle],
    rng: np.random.Generator,
    smoothness_px: float = 5.0,
    spacing: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """One label map per rater, deformed from the true label map.

    Args:
        truth: Integer label map (0 = background).
        raters: Rater styles (bias and jitter in in-plane pixels).
        rng: Random generator of this case's raters.
        smoothness_px: Correlation length of the jitter, in in-plane pixels.
        spacing: Spacing per axis (mm); in 3D, distances and smoothing along the slice
            axis are expressed in in-plane pixels. Defaults to isotropic.

    Returns:
        One ``uint8`` label map per rater, same shape as ``truth``.

    Example:
        >>> from medfleet.data.phantoms.config import RaterStyle
        >>> truth = np.zeros((40, 40), np.uint8); truth[10:30, 10:30] = 1
        >>> style = RaterStyle(bias_px=2.0, jitter_px=0.0)
        >>> (big,) = rater_masks(truth, [style], np.random.default_rng(0))
        >>> int((big == 1).sum()) > int((truth == 1).sum())
        True
    """
    truth = np.asarray(truth)
    if spacing is None or truth.ndim == 2:
        sampling: tuple[float, ...] = (1.0,) * truth.ndim
    else:
        inplane = float(spacing[-1])
        sampling = tuple(float(s) / inplane for s in spacing)
    sigma = tuple(smoothness_px / s for s in sampling)
    # Beyond this distance (in-plane pixels) from the true boundary no rater changes anything
    # (the field would have to exceed 4 standard deviations), so work in a box around each label.
    reach = max((abs(r.bias_px) + 4.0 * r.jitter_px for r in raters), default=0.0) + 2.0
    labels = [int(v) for v in np.unique(truth) if v != 0]
    labels.sort(key=lambda v: (-int((truth == v).sum()), v))
    regions = []
    for v in labels:
        # A structure's own region includes the structures nested inside it (a lesion in an
        # organ), so shrinking the organ does not open a gap around the lesion.
        mask = ndimage.binary_fill_holes(truth == v)
        lower, upper = bounding_box(mask)
        box = tuple(
            slice(max(0, lo - math.ceil(reach / s)), min(n, hi + 1 + math.ceil(reach / s)))
            for lo, hi, s, n in zip(lower, upper, sampling, truth.shape, strict=True)
        )
        regions.append((v, box, signed_distance(mask[box], sampling)))
    out: list[np.ndarray] = []
    for style in raters:
        rater = np.zeros(truth.shape, dtype=np.uint8)
        for v, box, sdf in regions:
            field = smooth_field(sdf.shape, rng, sigma)
            rater[box][sdf < style.bias_px + style.jitter_px * field] = v
        out.append(rater)
    return out
