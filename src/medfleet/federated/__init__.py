"""Federated fine-tuning on Flower: sites train the unified model on their own rows.

:func:`run_federated` runs a job on one machine (in process or on Flower's Ray simulation
engine); :mod:`medfleet.federated.app` declares the ClientApp and ServerApp that
``flwr run`` starts on a SuperLink with one SuperNode per site (see docs/federated.md).
This package imports neither torch nor Flower until a run starts.

Example:
    >>> from medfleet.federated import FederatedConfig
    >>> FederatedConfig(strategy="dual-lora", rounds=2).strategy
    'dual-lora'
"""

from __future__ import annotations

from typing import Any

from medfleet.federated.config import STRATEGIES, Fault, FederatedConfig, StrategyName

__all__ = [
    "STRATEGIES",
    "Fault",
    "FederatedConfig",
    "FederatedResult",
    "StrategyName",
    "run_federated",
]


def __getattr__(name: str) -> Any:
    if name == "run_federated":
        from medfleet.federated.simulation import run_federated

        return run_federated
    if name == "FederatedResult":
        from medfleet.federated.results import FederatedResult

        return FederatedResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
