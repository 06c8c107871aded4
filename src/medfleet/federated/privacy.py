r"""Differential privacy of the global model: clipping, equal-weight noisy average, epsilon.

The mechanism (used when ``dp_clip`` is set and ``dp_noise`` > 0) is the Gaussian mechanism
on the *sum* of the sites' updates, per round:

1. each site clips its update ``Δ_i = w_i - w_global`` over **all** the weights it sends,
   jointly, to L2 norm ``C`` (:func:`medfleet.federated.params.clip_update`); the server
   clips every reply again (:func:`clip_to_norm`) so the bound holds whatever a site sent;
2. for each key ``k`` held by the ``n_k`` sites that answered, the server releases
   ``w_global,k + (Σ_i Δ_ik + N(0, (z C)^2 I)) / n_k`` (:func:`dp_average`): every site has
   the same weight ``1 / n_k`` and the noise standard deviation on the average is
   ``z C / n_k``, i.e. ``z`` times the most one site can move that key.

Adding or removing one site's whole contribution changes the vector of sums by at most ``C``
(its update is clipped jointly over every key), so each round is a Gaussian mechanism with
noise multiplier ``z``: ``rho = 1 / (2 z^2)``-zCDP. Over ``T`` rounds zCDP composes to
``rho = T / (2 z^2)``, which gives ``(epsilon, delta)``-DP with
``epsilon = rho + 2 sqrt(rho ln(1/delta))`` (Bun & Steinke 2016, Prop. 1.3): see
:func:`dp_epsilon`. The counts ``n_k`` (which sites answered, which tasks they have) are
treated as public. No amplification by sampling is claimed: every connected site takes part
in every round.

Example:
    >>> round(dp_epsilon(1.0, 1, 1e-5), 2)
    5.3
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

ACCOUNTING = "zCDP: rho = rounds / (2 z^2), epsilon = rho + 2 sqrt(rho ln(1/delta))"


def dp_enabled(config: Any) -> bool:
    """Whether a federated configuration asks for noise (clip set and noise > 0).

    Example:
        >>> from medfleet.federated.config import FederatedConfig
        >>> dp_enabled(FederatedConfig(dp_clip=1.0)), dp_enabled(FederatedConfig(dp_clip=1.0,
        ...                                                                      dp_noise=1.0))
        (False, True)
    """
    return config.dp_clip is not None and config.dp_noise > 0


def noise_rng() -> np.random.Generator:
    """A generator seeded from the operating system (DP noise must not be reproducible).

    Example:
        >>> isinstance(noise_rng(), np.random.Generator)
        True
    """
    return np.random.default_rng(secrets.randbits(128))


def clip_to_norm(
    arrays: dict[str, np.ndarray], reference: dict[str, np.ndarray], clip: float
) -> tuple[dict[str, np.ndarray], float]:
    """The update ``arrays - reference`` over the keys both hold, scaled to L2 norm <= ``clip``.

    Keys ``reference`` lacks are dropped (they would not be aggregated).

    Returns:
        The (float64) update and its norm before clipping.

    Example:
        >>> up, norm = clip_to_norm({"a": np.array([3.0, 4.0]), "x": np.ones(1)},
        ...                         {"a": np.zeros(2)}, 1.0)
        >>> sorted(up), [round(float(x), 6) for x in up["a"]], norm
        (['a'], [0.6, 0.8], 5.0)
    """
    update = {
        k: np.asarray(v, np.float64) - np.asarray(reference[k], np.float64)
        for k, v in arrays.items()
        if k in reference
    }
    norm = math.sqrt(sum(float(np.sum(u * u)) for u in update.values()))
    if norm > clip:
        scale = clip / norm
        update = {k: u * scale for k, u in update.items()}
    return update, norm


def dp_average(
    updates: Sequence[dict[str, np.ndarray]],
    noise_multiplier: float,
    clip: float,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Equal-weight average of clipped updates with Gaussian noise calibrated per key.

    Key ``k``, held by ``n_k`` of the updates, gets ``(Σ Δ_ik + N(0, (z C)^2)) / n_k``.

    Args:
        updates: One clipped update per site (L2 norm <= ``clip`` over all its keys).
        noise_multiplier: ``z``.
        clip: ``C``.
        rng: Source of the noise.

    Returns:
        The noisy average update per key (float64) and each key's noise standard deviation.

    Example:
        >>> avg, std = dp_average([{"a": np.ones(2), "h": np.ones(1)}, {"a": np.zeros(2)}],
        ...                       0.0, 1.0, np.random.default_rng(0))
        >>> avg["a"].tolist(), avg["h"].tolist(), std
        ([0.5, 0.5], [1.0], {'a': 0.0, 'h': 0.0})
    """
    sums: dict[str, np.ndarray] = {}
    holders: dict[str, int] = {}
    for update in updates:
        for key, value in update.items():
            value = np.asarray(value, np.float64)
            sums[key] = sums[key] + value if key in sums else value.copy()
            holders[key] = holders.get(key, 0) + 1
    sigma = float(noise_multiplier) * float(clip)
    out: dict[str, np.ndarray] = {}
    std: dict[str, float] = {}
    for key, total in sums.items():
        n = holders[key]
        if sigma > 0:
            total = total + rng.normal(0.0, sigma, size=total.shape)
        out[key] = total / n
        std[key] = sigma / n
    return out, std


def zcdp_rho(noise_multiplier: float, rounds: int) -> float:
    """The zCDP ``rho`` of ``rounds`` Gaussian mechanisms of multiplier ``z``: ``rounds/(2z^2)``.

    Example:
        >>> zcdp_rho(2.0, 4)
        0.5
    """
    if noise_multiplier <= 0:
        return math.inf
    return rounds / (2.0 * noise_multiplier**2)


def dp_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Epsilon of ``rounds`` rounds at noise multiplier ``z`` for a given ``delta``.

    ``rho = rounds / (2 z^2)``, ``epsilon = rho + 2 sqrt(rho ln(1/delta))``: a site-level
    guarantee (adding or removing one site's whole data), without sampling amplification.

    Raises:
        ValueError: When ``delta`` is not in (0, 1) or ``rounds`` is negative.

    Example:
        >>> round(dp_epsilon(1.3, 10, 1e-5), 2), dp_epsilon(0.0, 10, 1e-5)
        (14.63, inf)
    """
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    rho = zcdp_rho(noise_multiplier, rounds)
    if math.isinf(rho):
        return math.inf
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def privacy_record(config: Any) -> dict[str, Any]:
    """What ``federated.json`` records under ``privacy`` for a federated configuration.

    Example:
        >>> from medfleet.federated.config import FederatedConfig
        >>> r = privacy_record(FederatedConfig(rounds=10, dp_clip=1.0, dp_noise=1.3))
        >>> r["enabled"], round(r["epsilon"], 2), r["sampling_amplification"]
        (True, 14.63, False)
        >>> privacy_record(FederatedConfig())["enabled"]
        False
    """
    if not dp_enabled(config):
        note = (
            "clipping without noise gives no differential privacy guarantee"
            if config.dp_clip is not None
            else "no differential privacy"
        )
        return {"enabled": False, "clip": config.dp_clip, "epsilon": None, "note": note}
    rounds = int(config.rounds)
    return {
        "enabled": True,
        "mechanism": "Gaussian, per round, on the sum of site updates clipped jointly to C; "
        "equal weight per site; noise std z*C/n_k on the average of a key held by n_k sites",
        "unit": "site (adding or removing one site's whole contribution)",
        "clip": float(config.dp_clip),
        "noise_multiplier": float(config.dp_noise),
        "rounds": rounds,
        "delta": float(config.dp_delta),
        "rho": zcdp_rho(config.dp_noise, rounds),
        "epsilon": dp_epsilon(config.dp_noise, rounds, config.dp_delta),
        "accounting": ACCOUNTING,
        "sampling_amplification": False,
        "covers": "the global weights sent after each round; not the per-site metrics "
        "(num-examples, train-loss, update-norm, validation metrics) nor the models kept "
        "at each site",
    }
