"""Settings of a federated run (pydantic; no torch or flwr import).

Example:
    >>> cfg = FederatedConfig(strategy="dual-lora", rounds=2, blocks=[-2, -1])
    >>> cfg.heads_shared("lesion_cls")
    False
    >>> FederatedConfig.model_validate(cfg.model_dump()) == cfg
    True
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

StrategyName = Literal["fedavg", "fedprox", "lora", "dual-lora"]
"""``fedavg``: all trainable weights travel, averaged by examples; ``fedprox``: the same with
a proximal term ``mu/2 ||w - w_global||^2`` in each client's loss; ``lora``: the backbone is
frozen, LoRA weights (and shared heads) travel; ``dual-lora``: a global and a local LoRA are
trained at each site, only the global one (and shared heads) travels."""

STRATEGIES: tuple[str, ...] = ("fedavg", "fedprox", "lora", "dual-lora")

FaultKind = Literal["raise", "timeout"]


class Fault(BaseModel):
    """A fault injected at one site in one round (drills and tests).

    Attributes:
        site: The site that fails.
        round: The round (1-based) in which it fails.
        kind: ``raise`` (the client raises) or ``timeout`` (it answers after the round's
            deadline).
        phase: ``train`` or ``evaluate``.

    Example:
        >>> Fault(site="site_a", round=1).kind
        'raise'
    """

    model_config = ConfigDict(extra="forbid")

    site: str
    round: int = Field(ge=1)
    kind: FaultKind = "raise"
    phase: Literal["train", "evaluate"] = "train"


class FederatedConfig(BaseModel):
    """How a federated run proceeds.

    Attributes:
        strategy: See :data:`StrategyName`.
        rounds: Federated rounds.
        local_steps: Optimiser steps per client and round (overrides ``local_epochs``).
        local_epochs: Passes over the site's training rows per round.
        mu: FedProx proximal weight (``fedprox`` only).
        blocks: Transformer blocks to adapt (negative counts from the end); LoRA strategies
            put their adapters there, full strategies train only these blocks (plus heads).
            ``None``: all blocks.
        rank: LoRA rank of ``lora`` and ``dual-lora``.
        fedbn: Keep normalisation layers local (they never travel).
        shared_heads: Tasks whose heads travel and are averaged; ``None`` takes the
            strategy's default (every head for ``fedavg``, ``fedprox`` and ``lora``; none
            for ``dual-lora``, whose heads stay private at each site). ``["*"]``: all.
        min_fit: Successful training replies a round needs to aggregate.
        min_available: Connected sites required before a round starts.
        round_timeout: Seconds a round waits for replies.
        dp_clip: Clip each site's update (all travelling weights jointly) to this L2 norm
            (``None``: no clipping).
        dp_noise: Gaussian noise multiplier ``z`` (needs ``dp_clip``): with ``z > 0`` the
            server averages the sites with equal weights and adds noise of standard
            deviation ``z * dp_clip / n_k`` to each key held by ``n_k`` sites
            (:mod:`medfleet.federated.privacy`).
        dp_delta: The ``delta`` of the (epsilon, delta) guarantee the run records.
        seed: Seed of initialisation (local training takes ``TrainConfig.seed``).
        faults: Injected faults (drills).

    Example:
        >>> FederatedConfig(strategy="fedprox", mu=0.1).mu
        0.1
    """

    model_config = ConfigDict(extra="forbid")

    strategy: StrategyName = "fedavg"
    rounds: int = Field(default=3, ge=1)
    local_steps: int | None = Field(default=None, ge=1)
    local_epochs: int = Field(default=1, ge=1)
    mu: float = Field(default=0.01, ge=0.0)
    blocks: list[int] | None = None
    rank: int = Field(default=4, ge=1)
    fedbn: bool = False
    shared_heads: list[str] | None = None
    min_fit: int = Field(default=1, ge=1)
    min_available: int = Field(default=1, ge=1)
    round_timeout: float = Field(default=3600.0, gt=0.0)
    dp_clip: float | None = Field(default=None, gt=0.0)
    dp_noise: float = Field(default=0.0, ge=0.0)
    dp_delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0)
    faults: list[Fault] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_secagg(cls, data: Any) -> Any:
        # job files of earlier versions hold "secagg": false; secure aggregation itself is
        # not offered (docs/federated.md says why)
        if isinstance(data, dict) and "secagg" in data:
            data = dict(data)
            if data.pop("secagg"):
                raise ValueError(
                    "secure aggregation is not offered by medfleet (see docs/federated.md, "
                    "'Secure aggregation') (fix: remove 'secagg')"
                )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> FederatedConfig:
        if self.dp_noise > 0 and self.dp_clip is None:
            raise ValueError(
                "dp_noise needs dp_clip: the noise is scaled by the clipping norm "
                "(fix: also set dp_clip, e.g. 1.0)"
            )
        if self.min_fit > self.min_available:
            raise ValueError(
                f"min_fit ({self.min_fit}) exceeds min_available ({self.min_available}) "
                "(fix: raise min_available or lower min_fit)"
            )
        return self

    @property
    def uses_lora(self) -> bool:
        """Whether the strategy trains LoRA adapters on a frozen backbone."""
        return self.strategy in ("lora", "dual-lora")

    def heads_shared(self, task: str) -> bool:
        """Whether the head of ``task`` travels and is averaged."""
        if self.shared_heads is None:
            return self.strategy != "dual-lora"
        return "*" in self.shared_heads or task in self.shared_heads
