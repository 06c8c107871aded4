"""Which weights travel, and how they are averaged (torch, no flwr).

A site's model keeps three kinds of weights:

* **travelling** weights (:func:`exchange_keys`): trained at the site, sent to the server and
  replaced by the server's average at the next round;
* **local** weights: trained at the site and never sent (DualLoRA's local adapter, private
  heads, normalisation layers under FedBN); they persist in the site's state folder;
* **frozen** weights: identical everywhere (same seed or same pretrained file).

Averages are key-wise: a key is averaged over the sites that sent it, weighted by their
training examples, so task heads that only some sites have are averaged among those sites
(with differential privacy the weights are equal instead: :mod:`medfleet.federated.privacy`).

Example:
    >>> import numpy as np
    >>> avg = keywise_average([({"w": np.ones(2), "h": np.zeros(1)}, 1.0),
    ...                        ({"w": np.zeros(2)}, 3.0)])
    >>> avg["w"].tolist(), avg["h"].tolist()
    ([0.25, 0.25], [0.0])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medfleet.federated.config import FederatedConfig
from medfleet.models.adapters import LOCAL_ADAPTER
from medfleet.models.backbones import normalise_block_indices

NORM_TYPES = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def norm_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters of normalisation layers (kept local under FedBN).

    Example:
        >>> sorted(norm_parameter_names(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))))
        ['1.bias', '1.weight']
    """
    names: set[str] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            for param_name, _ in module.named_parameters(recurse=False):
                names.add(f"{module_name}.{param_name}" if module_name else param_name)
    return names


def restrict_to_blocks(model: Any, blocks: Sequence[int]) -> None:
    """Freeze every backbone parameter outside the chosen transformer blocks or CNN stages.

    The heads (and adapters, which only exist in chosen blocks) keep their setting.
    """
    backbone = model.backbone
    chosen = normalise_block_indices(list(blocks), backbone.num_blocks, "blocks")
    keep = {id(p) for i in chosen for m in backbone.block_modules(i) for p in m.parameters()}
    groups = model.parameter_group_names()
    for name, param in model.named_parameters():
        if groups.get(name) in ("backbone", "moe") and id(param) not in keep:
            param.requires_grad_(False)


def is_local_adapter(name: str) -> bool:
    """Whether a parameter belongs to DualLoRA's local adapter.

    Example:
        >>> is_local_adapter("x.q_proj.lora_A.local.weight")
        True
    """
    return f".{LOCAL_ADAPTER}." in name and (".lora_" in name)


def head_task(model: Any, name: str) -> str | None:
    """The task whose head owns parameter ``name`` (``None`` outside the heads)."""
    if not name.startswith("heads."):
        return None
    key = name.split(".", 2)[1]
    for task in model.tasks:
        if task.replace(".", "__") == key:
            return task
    return None


def exchange_keys(model: Any, config: FederatedConfig) -> list[str]:
    """Names of the trainable parameters that travel to the server, in model order.

    Local adapters, private heads and (under FedBN) normalisation layers stay at the site;
    frozen weights never travel.
    """
    norms = norm_parameter_names(model) if config.fedbn else set()
    keys = []
    for name, param in model.named_parameters():
        if not param.requires_grad or name in norms or is_local_adapter(name):
            continue
        task = head_task(model, name)
        if task is not None and not config.heads_shared(task):
            continue
        keys.append(name)
    return keys


def get_arrays(model: nn.Module, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """Copies of the named parameters as float32 numpy arrays."""
    params = dict(model.named_parameters())
    return {k: params[k].detach().cpu().float().numpy().copy() for k in keys}


def set_arrays(model: nn.Module, arrays: dict[str, np.ndarray]) -> list[str]:
    """Load arrays into the parameters of the same name; return the names loaded.

    Keys the model lacks (heads of tasks this site does not have) are skipped.
    """
    params = dict(model.named_parameters())
    loaded = []
    with torch.no_grad():
        for key, value in arrays.items():
            if key in params:
                target = params[key]
                target.copy_(torch.as_tensor(np.asarray(value)).to(target))
                loaded.append(key)
    return loaded


def keywise_average(
    contributions: Sequence[tuple[dict[str, np.ndarray], float]],
) -> dict[str, np.ndarray]:
    """Average each key over the contributions that hold it, weighted by their weight.

    Args:
        contributions: ``(arrays, weight)`` per site (weight: training examples).

    Returns:
        One array per key seen in any contribution.
    """
    sums: dict[str, np.ndarray] = {}
    totals: dict[str, float] = {}
    for arrays, weight in contributions:
        w = float(weight)
        for key, value in arrays.items():
            value = np.asarray(value, dtype=np.float64)
            if key in sums:
                sums[key] = sums[key] + w * value
            else:
                sums[key] = w * value
            totals[key] = totals.get(key, 0.0) + w
    out = {}
    for key, total in totals.items():
        if total <= 0:
            continue
        out[key] = (sums[key] / total).astype(np.float32)
    return out


def update_norm(new: dict[str, np.ndarray], old: dict[str, np.ndarray]) -> float:
    """L2 norm of ``new - old`` over the keys both hold.

    Example:
        >>> update_norm({"a": np.array([3.0])}, {"a": np.array([0.0])})
        3.0
    """
    total = 0.0
    for key, value in new.items():
        if key in old:
            total += float(np.sum((np.asarray(value, np.float64) - old[key]) ** 2))
    return float(np.sqrt(total))


def clip_update(
    new: dict[str, np.ndarray], old: dict[str, np.ndarray], clip: float
) -> tuple[dict[str, np.ndarray], float]:
    """Scale the update ``new - old`` down to L2 norm ``clip`` (DP clipping), jointly over keys.

    The norm is taken over every key that travels, together; a key without a value in
    ``old`` has no update to clip and is left out (it must not travel). The float32 arrays
    returned are checked: the update they actually carry (``out - old``, computed in float64
    from the float32 values) has norm at most ``clip``, rounding included (when rounding
    alone would exceed it, the update sent is zero).

    Returns:
        The clipped float32 arrays and the norm before clipping.

    Example:
        >>> out, norm = clip_update({"a": np.array([3.0, 4.0]), "b": np.ones(1)},
        ...                         {"a": np.zeros(2)}, 1.0)
        >>> norm, sorted(out), [round(float(x), 2) for x in out["a"]]
        (5.0, ['a'], [0.6, 0.8])
    """
    base = {k: np.asarray(old[k], dtype=np.float32) for k in new if k in old}
    delta = {k: np.asarray(new[k], np.float64) - base[k].astype(np.float64) for k in base}
    norm = math.sqrt(sum(float(np.sum(d * d)) for d in delta.values()))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    for _ in range(20):
        out = {k: (base[k] + scale * delta[k]).astype(np.float32) for k in base}
        sent = _norm_between(out, base)
        if sent <= clip:
            return out, norm
        scale *= (clip / sent) * (1.0 - 1e-6)
    return {k: v.copy() for k, v in base.items()}, norm


def _norm_between(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return math.sqrt(
        sum(float(np.sum((a[k].astype(np.float64) - b[k].astype(np.float64)) ** 2)) for k in a)
    )
