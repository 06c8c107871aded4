"""A small, fixed numpy scorer for phantom images, and a stack version of site acquisition.

The simulator needs a model whose outputs respond to acquisition the way a
real one does. :class:`PhantomScorer` is a multinomial logistic regression
on a handful of image features (:func:`image_features`: brightness,
contrast, lesion darkness, texture and edge energy), fitted with plain
numpy gradient descent. Any callable ``images (n, H, W) -> probabilities
(n, C)`` can take its place (e.g. the unified model's predict function).

:func:`acquire_stack` applies a phantom site's acquisition chain
(:func:`medfleet.data.phantoms.acquisition.acquire`: speckle, blur, display
curve, noise, clip) to a whole stack of 2-D images at once, each image with
its own random draws.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> imgs = rng.uniform(0.2, 0.6, size=(40, 16, 16))
    >>> labels = (imgs.mean(axis=(1, 2)) > 0.4).astype(int)
    >>> scorer = PhantomScorer(n_classes=2).fit(imgs, labels)
    >>> scorer(imgs).shape
    (40, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:  # a site profile is given by the simulator; scoring needs no phantoms
    from medfleet.data.phantoms.config import SiteProfile

Scorer = Callable[[np.ndarray], np.ndarray]
"""Any function from an image stack ``(n, H, W)`` to class probabilities ``(n, C)``."""

FEATURE_NAMES = (
    "mean",
    "std",
    "center_dark",
    "min_smooth",
    "edge_energy",
    "laplace_energy",
    "dark_fraction",
)
"""The features :func:`image_features` computes, in order."""


def image_features(images: np.ndarray) -> np.ndarray:
    """Per-image features of a stack ``(n, H, W)`` in [0, 1]: shape ``(n, len(FEATURE_NAMES))``.

    Example:
        >>> image_features(np.full((2, 8, 8), 0.5)).shape
        (2, 7)
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"images must be a stack (n, H, W), got shape {x.shape}")
    n, h, w = x.shape
    flat = x.reshape(n, -1)
    mean = flat.mean(axis=1)
    std = flat.std(axis=1)
    smooth = ndimage.gaussian_filter(x, sigma=(0, 1.5, 1.5), mode="nearest")
    ch, cw = slice(h // 4, h - h // 4), slice(w // 4, w - w // 4)
    center_dark = mean - smooth[:, ch, cw].reshape(n, -1).mean(axis=1)
    min_smooth = mean - smooth.reshape(n, -1).min(axis=1)
    gy, gx = np.gradient(smooth, axis=(1, 2))
    edge = np.sqrt(gx**2 + gy**2).reshape(n, -1).mean(axis=1)
    lap = ndimage.convolve(x, _LAPLACE_2D[None], mode="reflect")  # in-plane Laplacian
    lap_energy = (lap**2).reshape(n, -1).mean(axis=1)
    dark = (smooth < (mean - 1.0 * std)[:, None, None]).reshape(n, -1).mean(axis=1)
    return np.column_stack([mean, std, center_dark, min_smooth, edge, lap_energy, dark]).astype(
        np.float64
    )


_LAPLACE_2D = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax.

    Example:
        >>> softmax(np.zeros((1, 2))).tolist()
        [[0.5, 0.5]]
    """
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class PhantomScorer:
    """Multinomial logistic regression on :func:`image_features`, fitted with numpy.

    Args:
        n_classes: Number of classes.
        l2: L2 penalty on the weights.
        steps: Gradient-descent steps (full batch).
        lr: Learning rate.
    """

    def __init__(
        self, n_classes: int = 3, l2: float = 1e-3, steps: int = 500, lr: float = 0.5
    ) -> None:
        self.n_classes = n_classes
        self.l2 = l2
        self.steps = steps
        self.lr = lr
        self.mu: np.ndarray | None = None
        self.sd: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def fit(self, images: np.ndarray, labels: np.ndarray) -> PhantomScorer:
        """Fit on an image stack and integer labels ``0 .. n_classes - 1``; returns self."""
        feats = image_features(images)
        y = np.asarray(labels, dtype=np.int64)
        self.mu = feats.mean(axis=0)
        self.sd = feats.std(axis=0) + 1e-9
        z = (feats - self.mu) / self.sd
        onehot = np.eye(self.n_classes)[y]
        w = np.zeros((z.shape[1], self.n_classes))
        b = np.zeros(self.n_classes)
        for _ in range(self.steps):
            p = softmax(z @ w + b)
            grad = (p - onehot) / len(y)
            w -= self.lr * (z.T @ grad + self.l2 * w)
            b -= self.lr * grad.sum(axis=0)
        self.weights, self.bias = w, b
        return self

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` of an image stack."""
        if self.weights is None:
            raise RuntimeError("PhantomScorer is not fitted; call fit(images, labels) first")
        z = (image_features(images) - self.mu) / self.sd
        return softmax(z @ self.weights + self.bias)


def acquire_stack(clean: np.ndarray, site: SiteProfile, rng: np.random.Generator) -> np.ndarray:
    """Apply a site's acquisition chain to every image of a stack ``(n, H, W)``.

    The same chain as :func:`medfleet.data.phantoms.acquisition.acquire` (speckle,
    Gaussian blur in-plane, ``gain * x**gamma + offset``, additive noise, clip
    to [0, 1]), vectorised over the stack; each image gets its own noise.

    Example:
        >>> from medfleet.data.phantoms.config import SiteProfile
        >>> quiet = SiteProfile(name="s", speckle=0.0, noise=0.0, blur=0.0, gain=1.5)
        >>> float(acquire_stack(np.full((2, 8, 8), 0.5), quiet, np.random.default_rng(0)).mean())
        0.75
    """
    x = np.asarray(clean, dtype=np.float32)
    speckle_rng, noise_rng = rng.spawn(2)
    if site.speckle > 0:
        k = 1.0 / site.speckle**2
        x = x * (speckle_rng.standard_gamma(k, size=x.shape, dtype=np.float32) / np.float32(k))
    if site.blur > 0:
        x = ndimage.gaussian_filter(x, sigma=(0.0, site.blur, site.blur), mode="nearest")
    x = np.clip(x, 0.0, None)
    if site.gamma != 1.0:
        x = x ** np.float32(site.gamma)
    x = np.float32(site.gain) * x + np.float32(site.offset)
    if site.noise > 0:
        x += np.float32(site.noise) * noise_rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(x, 0.0, 1.0)
