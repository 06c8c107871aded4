"""Quality of synthetic images: FID, MS-SSIM diversity, PSNR and MAE.

* **FID** is the Frechet distance between Gaussians fitted to image features. Features
  come from the project's own ViT backbones (:func:`backbone_features`: class token and
  mean patch token, from a deterministic random initialisation or from local weights),
  or from a TorchScript Inception network given as a local file
  (:func:`torchscript_features`); nothing is downloaded. FIDs computed with different
  feature extractors are not comparable with each other or with published values.
* **MS-SSIM** follows Wang, Simoncelli and Bovik (2003): an 11-pixel Gaussian window
  (sigma 1.5), ``K1 = 0.01``, ``K2 = 0.03``, 2x average pooling between scales and the
  five published scale weights; small images use as many scales as fit (weights
  renormalised). **Diversity** is the mean MS-SSIM over random pairs of generated images
  (lower is more diverse). This NumPy code stays rather than
  ``monai.metrics.MultiScaleSSIMMetric``, which gives the same values to about 5e-6 where
  both apply (``tests/synth/test_synth_units.py`` compares them): MONAI computes in float32,
  averages the channels' contrast terms before combining the scales (here each channel's
  MS-SSIM is averaged), and its size check (``(scales - 1) ** 2`` instead of
  ``2 ** (scales - 1)`` times the window) refuses the 4 scales of an 88-98 pixel image;
  ``import monai`` also takes about 5 s and brings in torch, which this function does not
  need.
* **PSNR/MAE** score VAE reconstructions (images in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg

from medfleet.errors import MedfleetError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Scale weights of MS-SSIM (Wang et al. 2003)."""


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images).

    Example:
        >>> round(psnr(np.zeros(4), np.full(4, 0.1)), 6)
        20.0
    """
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error.

    Example:
        >>> mae(np.array([0.0, 1.0]), np.array([0.5, 0.5]))
        0.5
    """
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians.

    Example:
        >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)), 6)
        4.0
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets ``(N, D)`` (sample means, unbiased covariances).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(500, 3))
        >>> fid_from_features(x, x)
        0.0
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise MedfleetError("FID needs at least two images per set (fix: generate more)")
    return max(
        0.0,
        frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)),
    )


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    from scipy.signal import convolve2d

    return convolve2d(convolve2d(image, window[None, :], "valid"), window[:, None], "valid")


def _ssim_parts(a: np.ndarray, b: np.ndarray, data_range: float) -> tuple[float, float]:
    window = _gaussian_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _filter(a, window), _filter(b, window)
    saa = _filter(a * a, window) - mu_a**2
    sbb = _filter(b * b, window) - mu_b**2
    sab = _filter(a * b, window) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Multi-scale SSIM of two images ``(H, W)`` or ``(C, H, W)`` (channels averaged).

    Uses ``min(5, 1 + floor(log2(min(H, W) / 11)))`` scales.

    Example:
        >>> img = np.random.default_rng(0).random((32, 32))
        >>> round(ms_ssim(img, img), 6)
        1.0
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise MedfleetError(f"MS-SSIM needs images of one shape, got {a.shape} and {b.shape}")
    if a.ndim == 3:
        return float(np.mean([ms_ssim(x, y, data_range) for x, y in zip(a, b, strict=True)]))
    side = min(a.shape)
    if side < 11:
        raise MedfleetError(f"MS-SSIM needs images of at least 11 pixels, got {a.shape}")
    scales = int(min(5, 1 + np.floor(np.log2(side / 11))))
    weights = np.array(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    values = []
    for level in range(scales):
        ssim, cs = _ssim_parts(a, b, data_range)
        values.append(ssim if level == scales - 1 else cs)
        if level < scales - 1:
            h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
            a = a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
            b = b[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    values_arr = np.maximum(np.array(values), 0.0)
    return float(np.prod(values_arr**weights))


def diversity(images: Sequence[np.ndarray], pairs: int = 100, seed: int = 0) -> float:
    """Mean MS-SSIM over random pairs of distinct images (lower = more diverse).

    Example:
        >>> same = [np.ones((16, 16))] * 3
        >>> diversity(same, pairs=5)
        1.0
    """
    n = len(images)
    if n < 2:
        raise MedfleetError("diversity needs at least two images")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(pairs):
        i, j = rng.choice(n, size=2, replace=False)
        scores.append(ms_ssim(images[int(i)], images[int(j)]))
    return float(np.mean(scores))


def backbone_features(
    images: np.ndarray,
    backbone: str = "vit-tiny",
    *,
    image_size: int | None = None,
    weights: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> np.ndarray:
    """Features ``(N, 2D)`` (class token, mean patch token) of a medfleet ViT backbone.

    Images ``(N, C, H, W)`` in [0, 1] are z-scored per image, as in training. Without
    ``weights`` the backbone is randomly initialised from ``seed`` (a fixed random
    projection: comparable across runs with the same seed and backbone only).

    Example:
        >>> feats = backbone_features(np.random.default_rng(0).random((2, 1, 32, 32)))
        >>> feats.shape
        (2, 128)
    """
    import torch

    from medfleet.models.backbones import build_backbone

    arr = np.asarray(images, np.float32)
    size = int(image_size or arr.shape[-1])
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = build_backbone(backbone, in_channels=arr.shape[1], image_size=size)
    finally:
        torch.random.set_rng_state(state)
    if weights is not None:
        from medfleet.models.weights import load_state_dict_into, read_state_dict

        load_state_dict_into(net, read_state_dict(Path(weights)), str(weights), None)
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(arr), batch_size):
            x = torch.from_numpy(arr[start : start + batch_size])
            mean = x.mean(dim=(2, 3), keepdim=True)
            std = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
            feats = net((x - mean) / std)
            out.append(torch.cat([feats.cls, feats.tokens.mean(1)], dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def torchscript_features(images: np.ndarray, model_file: str | Path) -> np.ndarray:
    """Features from a local TorchScript network (e.g. an exported Inception-v3 pool layer).

    The network receives ``(N, 3, H, W)`` float images in [0, 1] (grey repeated) and must
    return ``(N, D)`` features; resizing, if it needs any, is its own business.

    Raises:
        MedfleetError: The file is missing or not TorchScript.
    """
    import torch

    path = Path(model_file)
    if not path.is_file():
        raise MedfleetError(f"feature network {path} not found (fix: give a local file)")
    try:
        net = torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as exc:
        raise MedfleetError(f"{path} is not a TorchScript file: {exc}") from exc
    x = torch.from_numpy(np.asarray(images, np.float32))
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    with torch.no_grad():
        feats = net(x)
    return np.asarray(feats.reshape(len(x), -1).numpy(), np.float64)


def quality_summary(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    backbone: str = "vit-tiny",
    weights: str | Path | None = None,
    feature_file: str | Path | None = None,
    pairs: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """FID (backbone, and TorchScript features when given) and MS-SSIM diversity of both sets.

    Args:
        real: ``(N, C, H, W)`` real images in [0, 1].
        synthetic: ``(M, C, H, W)`` synthetic images in [0, 1], same size.
        backbone: medfleet backbone for the features.
        weights: Local weights of that backbone.
        feature_file: Optional TorchScript feature network (e.g. Inception).
        pairs: Pairs for the diversity estimate.
        seed: Seed of the random backbone and of the pairs.
    """
    out: dict[str, Any] = {
        "n_real": len(real),
        "n_synthetic": len(synthetic),
        "feature_backbone": backbone,
        "feature_weights": str(weights) if weights else "random (seeded)",
    }
    fa = backbone_features(real, backbone, weights=weights, seed=seed)
    fb = backbone_features(synthetic, backbone, weights=weights, seed=seed)
    out["fid_backbone"] = fid_from_features(fa, fb)
    half = len(fa) // 2
    if half >= 2:
        out["fid_backbone_real_halves"] = fid_from_features(fa[:half], fa[half:])
    if feature_file is not None:
        out["fid_torchscript"] = fid_from_features(
            torchscript_features(real, feature_file), torchscript_features(synthetic, feature_file)
        )
    out["ms_ssim_real"] = diversity(list(real), pairs, seed)
    out["ms_ssim_synthetic"] = diversity(list(synthetic), pairs, seed)
    return out
