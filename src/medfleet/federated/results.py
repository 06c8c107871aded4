"""The record of a federated run: ``federated.json`` and :class:`FederatedResult`.

``federated.json``::

    {"format": "medfleet.federated/1", "strategy": ..., "config": {...}, "sites": [...],
     "rounds": [{"round": r,
                 "clients": {site: {"status": "ok" | "failed", "error": str | None,
                                    "bytes_sent": int, "bytes_received": int,
                                    "num_examples": int, "train_loss": float}},
                 "metrics": {site: {task: {metric: value}}},
                 "aggregated": bool}],
     "bytes_per_round": {"<round>": {"sent": int, "received": int, "total": int}},
     "status": "running" | "finished"}

``bytes_sent`` is what the site sent to the server in the round (training and evaluation
replies), ``bytes_received`` what it received; both are serialised Flower message sizes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfleet.errors import MedfleetError
from medfleet.models.files import has_model
from medfleet.utils.atomic import write_json_atomic

RESULT_FORMAT = "medfleet.federated/1"
RESULT_FILE = "federated.json"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def empty_client() -> dict[str, Any]:
    """A client's record before anything happened in the round.

    Example:
        >>> empty_client()["status"]
        'failed'
    """
    return {
        "status": "failed",
        "error": "not sampled",
        "bytes_sent": 0,
        "bytes_received": 0,
        "num_examples": 0,
        "train_loss": None,
    }


def bytes_per_round(rounds: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Total bytes sent and received by the sites in each round.

    Example:
        >>> bytes_per_round([{"round": 1, "clients": {"a": {"bytes_sent": 2,
        ...                   "bytes_received": 5}}}])
        {'1': {'sent': 2, 'received': 5, 'total': 7}}
    """
    out = {}
    for record in rounds:
        sent = sum(int(c.get("bytes_sent", 0)) for c in record["clients"].values())
        received = sum(int(c.get("bytes_received", 0)) for c in record["clients"].values())
        out[str(record["round"])] = {"sent": sent, "received": received, "total": sent + received}
    return out


def write_results(
    out: Path,
    strategy: str,
    config: dict[str, Any],
    sites: list[str],
    rounds: list[dict[str, Any]],
    status: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out/federated.json`` atomically."""
    payload = {
        "format": RESULT_FORMAT,
        "strategy": strategy,
        "config": config,
        "sites": sites,
        "rounds": rounds,
        "bytes_per_round": bytes_per_round(rounds),
        "status": status,
        **(extra or {}),
    }
    return write_json_atomic(Path(out) / RESULT_FILE, _finite(payload))


@dataclass
class FederatedResult:
    """What a federated run produced.

    Attributes:
        out: The run folder.
        strategy: The strategy.
        sites: Site names.
        rounds: Per-round records (see the module documentation).
        bytes_per_round: Bytes sent/received by all sites per round.
        site_dirs: Site name -> run folder of its personalised model.
        global_dir: Run folder of the final global model (heads and weights that travel,
            none of the local parts), or ``None``.
        data: The whole ``federated.json``.
    """

    out: Path
    strategy: str
    sites: list[str]
    rounds: list[dict[str, Any]]
    bytes_per_round: dict[str, dict[str, int]]
    site_dirs: dict[str, Path] = field(default_factory=dict)
    global_dir: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, out: str | Path) -> FederatedResult:
        """Read a run folder's ``federated.json``.

        Raises:
            MedfleetError: When the file is missing or of another format.
        """
        out = Path(out)
        path = out / RESULT_FILE
        if not path.is_file():
            raise MedfleetError(f"{path} not found (fix: run 'medfleet federate' first)")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != RESULT_FORMAT:
            raise MedfleetError(f"{path} is not a medfleet federated result")
        site_dirs = {s: out / "sites" / s for s in data["sites"] if has_model(out / "sites" / s)}
        global_dir = out / "global" if has_model(out / "global") else None
        return cls(
            out=out,
            strategy=data["strategy"],
            sites=list(data["sites"]),
            rounds=list(data["rounds"]),
            bytes_per_round=dict(data["bytes_per_round"]),
            site_dirs=site_dirs,
            global_dir=global_dir,
            data=data,
        )

    def summary(self) -> dict[str, Any]:
        """A compact JSON-able summary (for ``--format json``)."""
        failures = {
            str(r["round"]): sorted(s for s, c in r["clients"].items() if c["status"] != "ok")
            for r in self.rounds
        }
        return {
            "out": str(self.out),
            "strategy": self.strategy,
            "sites": self.sites,
            "rounds": len(self.rounds),
            "bytes_per_round": self.bytes_per_round,
            "failures": failures,
            "site_models": {s: str(p) for s, p in self.site_dirs.items()},
            "global_model": None if self.global_dir is None else str(self.global_dir),
            "last_metrics": self.rounds[-1]["metrics"] if self.rounds else {},
        }
