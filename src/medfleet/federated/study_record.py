"""Reading a federated run's ``federated.json`` into the study's tables.

Bytes per round per client and direction (:func:`communication_rows`,
:func:`communication_summary`) and per-site validation metrics per round for the learning
curves (:func:`curve_rows`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.errors import MedfleetError
from medfleet.evaluate.runner.cases import cell_float


def read_federated(path: str | Path) -> dict[str, Any]:
    """Read ``federated.json`` (a file or the run folder holding it).

    Raises:
        MedfleetError: Missing or unreadable file, or not the federated format.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "federated.json"
    if not path.is_file():
        raise MedfleetError(f"{path} not found (fix: give the folder of a federated run)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MedfleetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith(
        "medfleet.federated/"
    ):
        raise MedfleetError(f"{path} is not a federated run record (format medfleet.federated/N)")
    return data


def communication_rows(
    arm: str, record: Mapping[str, Any], strategy: str | None = None
) -> list[dict[str, Any]]:
    """Bytes per round of one federated arm, summed over clients (both directions).

    ``bytes_sent`` is what the clients sent to the server (uploads), ``bytes_received``
    what they received (downloads), both measured on the serialized messages.

    Example:
        >>> rec = {"rounds": [{"round": 1, "clients": {
        ...     "a": {"status": "ok", "bytes_sent": 10, "bytes_received": 30},
        ...     "b": {"status": "failed", "bytes_sent": 0, "bytes_received": 30}}}]}
        >>> r = communication_rows("lora", rec)[0]
        >>> r["bytes_sent"], r["bytes_received"], r["bytes_total"], r["clients_ok"]
        (10, 60, 70, 1)
    """
    strategy = strategy or str((record.get("config") or {}).get("strategy") or arm)
    rows = []
    for rnd in record.get("rounds", []):
        clients = rnd.get("clients", {}) or {}
        sent = sum(int(c.get("bytes_sent") or 0) for c in clients.values())
        received = sum(int(c.get("bytes_received") or 0) for c in clients.values())
        ok = sum(1 for c in clients.values() if c.get("status") == "ok")
        rows.append(
            {
                "arm": arm,
                "strategy": strategy,
                "round": int(rnd.get("round", len(rows) + 1)),
                "clients": len(clients),
                "clients_ok": ok,
                "bytes_sent": sent,
                "bytes_received": received,
                "bytes_total": sent + received,
                "bytes_sent_per_client": sent / ok if ok else math.nan,
            }
        )
    return rows


def communication_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean bytes per round per arm, and each arm's share of the FedAvg arm's.

    The reference is the arm named ``fedavg``, else the first arm with strategy ``fedavg``.

    Example:
        >>> rows = [{"arm": "fedavg", "strategy": "fedavg", "bytes_total": 1000,
        ...          "bytes_sent": 400},
        ...         {"arm": "lora", "strategy": "lora", "bytes_total": 10, "bytes_sent": 4}]
        >>> [(r["arm"], r["fraction_of_fedavg"]) for r in communication_summary(rows)]
        [('fedavg', 1.0), ('lora', 0.01)]
    """
    arms: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        arms.setdefault(str(r.get("arm", r.get("strategy"))), []).append(r)
    out = []
    for name, items in arms.items():
        out.append(
            {
                "arm": name,
                "strategy": str(items[0].get("strategy", name)),
                "rounds": len(items),
                "bytes_per_round": float(np.mean([r["bytes_total"] for r in items])),
                "bytes_sent_per_round": float(np.mean([r["bytes_sent"] for r in items])),
            }
        )
    reference = next((r for r in out if r["arm"] == "fedavg"), None) or next(
        (r for r in out if r["strategy"] == "fedavg"), None
    )
    for r in out:
        r["fraction_of_fedavg"] = (
            r["bytes_per_round"] / reference["bytes_per_round"]
            if reference and reference["bytes_per_round"]
            else math.nan
        )
    return out


def curve_rows(arm: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Learning curves: one row per round, site, task and metric, plus the site mean.

    Rows come from the per-round ``metrics`` (site -> task -> metric -> value) and the
    clients' ``train_loss`` (task ``train``, metric ``loss``); ``site`` ``mean`` is the
    unweighted mean over the sites that reported the metric that round.

    Example:
        >>> rec = {"rounds": [{"round": 1, "clients": {"a": {"train_loss": 1.0},
        ...     "b": {"train_loss": 3.0}}, "metrics": {"a": {"t": {"auc": 0.6}},
        ...     "b": {"t": {"auc": 0.8}}}}]}
        >>> [(r["site"], r["metric"], r["value"]) for r in curve_rows("fedavg", rec)
        ...  if r["site"] == "mean"]
        [('mean', 'loss', 2.0), ('mean', 'auc', 0.7)]
    """
    rows: list[dict[str, Any]] = []
    for rnd in record.get("rounds", []):
        number = int(rnd.get("round", 0))
        values: dict[tuple[str, str], dict[str, float]] = {}
        for site, client in (rnd.get("clients") or {}).items():
            loss = cell_float(client.get("train_loss"))
            if math.isfinite(loss):
                values.setdefault(("train", "loss"), {})[site] = loss
        for site, tasks in (rnd.get("metrics") or {}).items():
            for task, metrics in (tasks or {}).items():
                if not isinstance(metrics, Mapping):
                    continue
                for metric, value in metrics.items():
                    v = cell_float(value)
                    if math.isfinite(v):
                        values.setdefault((task, metric), {})[site] = v
        for (task, metric), by_site in values.items():
            for site, v in sorted(by_site.items()):
                rows.append(
                    {
                        "arm": arm,
                        "round": number,
                        "site": site,
                        "task": task,
                        "metric": metric,
                        "value": v,
                    }
                )
            rows.append(
                {
                    "arm": arm,
                    "round": number,
                    "site": "mean",
                    "task": task,
                    "metric": metric,
                    "value": float(np.mean(list(by_site.values()))),
                }
            )
    return rows
