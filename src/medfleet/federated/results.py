"""The record of a federated run: ``federated.json`` and :class:`FederatedResult`.

``federated.json``::

    {"format": "medfleet.federated/1", "strategy": ..., "config": {...}, "sites": [...],
     "rounds": [{"round": r, "sampled": [site, ...],
                 "clients": {site: {"status": "ok" | "failed", "error": code | None,
                                    "eval_error": code (when evaluation failed),
                                    "model": true (the site wrote its model, last round),
                                    "bytes_sent": int, "bytes_received": int,
                                    "num_examples": int, "train_loss": float}},
                 "metrics": {site: {task: {metric: value}}},
                 "aggregated": bool, "dp": {...} (with --dp-clip)}],
     "bytes_per_round": {"<round>": {"sent": int, "received": int, "total": int}},
     "privacy": {...}, "site_status": {site: {...}}, "problems": [str, ...],
     "status": "running" | "finished" | "degraded" | "failed"}

``bytes_sent`` is what the site sent to the server in the round (training and evaluation
replies), ``bytes_received`` what it received; both are serialised Flower message sizes.
``error`` and ``eval_error`` are codes of :data:`medfleet.federated.failures.FAILURE_CODES`
(``state/corrupt``, ``data/unreadable-image``, ``network/no-reply``, ...), never a site's
error text. :func:`run_outcome` sets ``status`` and ``site_status``.

Numbers follow medfleet's one JSON policy (:mod:`medfleet.utils.jsonsafe`): a NaN is
``null`` and an infinite value ``"inf"`` / ``"-inf"`` (an unbounded metric such as a
Hausdorff distance, or an infinite ``privacy.epsilon``), never ``NaN`` / ``Infinity``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfleet.errors import MedfleetError
from medfleet.models.files import has_model
from medfleet.utils.atomic import write_json_atomic

RESULT_FORMAT = "medfleet.federated/1"
RESULT_FILE = "federated.json"


def empty_client() -> dict[str, Any]:
    """A client's record before anything happened in the round.

    Example:
        >>> empty_client()["error"]
        'server/not-sampled'
    """
    return {
        "status": "failed",
        "error": "server/not-sampled",
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


def _rounds_text(rounds: list[int]) -> str:
    return ("round " if len(rounds) == 1 else "rounds ") + ", ".join(str(r) for r in rounds)


def run_outcome(
    rounds: list[dict[str, Any]], sites: list[str], planned_rounds: int
) -> tuple[str, dict[str, dict[str, Any]], list[str]]:
    """The run's status, each site's status and one line per problem.

    The rule (docs/federated.md, "Faults"):

    * a site's ``status`` is ``not-sampled`` when no round sampled it; ``failed`` when it
      never trained successfully in a round that sampled it, or wrote no model in the last
      round; ``degraded`` when it failed some rounds or evaluations but trained in at least
      one and wrote its model; ``ok`` otherwise;
    * the run is ``failed`` when any sampled site failed or the last round did not aggregate
      (the global weights are not this run's last round's); ``degraded`` when anything else
      went wrong (a failed round, a failed evaluation, a site never sampled); else
      ``finished``.

    Example:
        >>> ok = {"status": "ok", "error": None, "model": True}
        >>> bad = {"status": "failed", "error": "state/corrupt"}
        >>> rounds = [{"round": 1, "sampled": ["a", "b"], "aggregated": True,
        ...            "clients": {"a": ok, "b": bad}}]
        >>> status, sites, problems = run_outcome(rounds, ["a", "b"], 1)
        >>> status, sites["b"]["status"], problems
        ('failed', 'failed', ['b failed in round 1 (state/corrupt) and has no model'])
    """
    names = list(sites)
    for record in rounds:
        for name in list(record.get("sampled", [])) + list(record.get("clients", {})):
            if name not in names:
                names.append(name)
    out: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    last = rounds[-1] if rounds else None
    for name in names:
        sampled = [r["round"] for r in rounds if name in r.get("sampled", [])]
        clients = {r["round"]: r.get("clients", {}).get(name, {}) for r in rounds}
        ok_rounds = [r for r in sampled if clients[r].get("status") == "ok"]
        failed = {
            r: str(clients[r].get("error") or "network/no-reply")
            for r in sampled
            if clients[r].get("status") != "ok"
        }
        eval_errors = {r: str(c["eval_error"]) for r, c in clients.items() if c.get("eval_error")}
        model = bool(last is not None and clients[last["round"]].get("model"))
        if not sampled:
            status = "not-sampled"
        elif not ok_rounds or not model:
            status = "failed"
        elif failed or eval_errors:
            status = "degraded"
        else:
            status = "ok"
        out[name] = {
            "status": status,
            "sampled_rounds": sampled,
            "ok_rounds": ok_rounds,
            "failed_rounds": {str(r): code for r, code in failed.items()},
            "eval_errors": {str(r): code for r, code in eval_errors.items()},
            "model": model,
        }
        if status == "ok" or (status == "not-sampled" and name not in sites):
            continue
        parts = []
        by_code: dict[str, list[int]] = {}
        for r, code in failed.items():
            by_code.setdefault(code, []).append(r)
        if by_code:
            parts.append(
                f"{name} failed in "
                + ", ".join(f"{_rounds_text(rs)} ({code})" for code, rs in by_code.items())
            )
        if status == "not-sampled":
            parts.append(f"{name} was never sampled (not connected)")
        elif not model:
            final_error = eval_errors.get(last["round"]) if last is not None else None
            text = "has no model" + (
                f" (evaluate round {last['round']}: {final_error})" if final_error else ""
            )
            parts.append(f"and {text}" if parts else f"{name} {text}")
        elif eval_errors and not by_code:
            parts.append(
                f"{name} failed evaluation in "
                + ", ".join(f"round {r} ({c})" for r, c in eval_errors.items())
            )
        problems.append(" ".join(parts))
    not_aggregated = last is not None and not last.get("aggregated")
    if not_aggregated:
        problems.append(
            f"round {last['round']} was not aggregated ({last.get('note', 'no reply')})"
        )
    if len(rounds) < planned_rounds:
        problems.append(f"only {len(rounds)} of {planned_rounds} rounds ran")
    if (
        any(v["status"] == "failed" for v in out.values())
        or not_aggregated
        or len(rounds) < planned_rounds
    ):
        return "failed", out, problems
    if problems or any(v["status"] != "ok" for v in out.values()):
        return "degraded", out, problems
    return "finished", out, problems


def write_results(
    out: Path,
    strategy: str,
    config: dict[str, Any],
    sites: list[str],
    rounds: list[dict[str, Any]],
    status: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out/federated.json`` atomically (numbers under the one JSON policy).

    NaN is written as ``null`` and ``±inf`` as ``"inf"`` / ``"-inf"``
    (:mod:`medfleet.utils.jsonsafe`, applied by
    :func:`~medfleet.utils.atomic.write_json_atomic`).

    Example:
        >>> import json, math, tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> rnd = {"round": 1, "clients": {"a": {"train_loss": math.nan}},
        ...        "metrics": {"a": {"t": {"hd": math.inf}}}}
        >>> path = write_results(out, "fedavg", {}, ["a"], [rnd], "finished")
        >>> rnd = json.loads(path.read_text())["rounds"][0]
        >>> rnd["clients"]["a"]["train_loss"], rnd["metrics"]["a"]["t"]["hd"]
        (None, 'inf')
    """
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
    return write_json_atomic(Path(out) / RESULT_FILE, payload)


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
        status = data.get("site_status") or {}
        site_dirs = {
            s: out / "sites" / s
            for s in data["sites"]
            if has_model(out / "sites" / s) and status.get(s, {}).get("model", True)
        }
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

    @property
    def site_status(self) -> dict[str, dict[str, Any]]:
        """Per-site status of the run (``federated.json``'s ``site_status``)."""
        return dict(self.data.get("site_status") or {})

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
            "status": self.data.get("status"),
            "site_status": {s: v.get("status") for s, v in self.site_status.items()},
            "problems": list(self.data.get("problems") or []),
            "site_models": {s: str(p) for s, p in self.site_dirs.items()},
            "global_model": None if self.global_dir is None else str(self.global_dir),
            "last_metrics": self.rounds[-1]["metrics"] if self.rounds else {},
        }
