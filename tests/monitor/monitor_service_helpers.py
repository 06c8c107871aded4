"""Helpers shared by the monitoring service tests: keys, outputs, free ports, live servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from medfleet.monitor.config import MonitorConfig

KEYS = {"site_a": "key-of-site-a-0123456789", "site_b": "key-of-site-b-0123456789"}
SITES = tuple(KEYS)


def headers(site: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[site]}


def config(**overrides: Any) -> MonitorConfig:
    """Site-specific references, KS on probabilities, a quick calibration."""
    settings: dict[str, Any] = {
        "sites": list(SITES),
        "scheme": "site",
        "tests": ["ks", "chi2"],
        "thresholds": {"bootstrap": 60, "shift_bootstrap": 10},
    }
    settings.update(overrides)
    return MonitorConfig(**settings)


def reference_outputs(seed: int, n: int = 600) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    prob = rng.beta(2.0, 5.0, n)
    return {"prob": prob.tolist(), "pred_class": (prob > 0.5).astype(int).tolist()}


def post_references(client: Any, prefix: str = "", **options: Any) -> None:
    """Post each site's reference (``reference_outputs(seed=i)``) with its key; assert 201.

    ``client`` is a TestClient or an httpx client (``prefix``: the server's URL for plain
    ``httpx``).
    """
    for i, site in enumerate(KEYS):
        r = client.post(
            f"{prefix}/sites/{site}/reference",
            json={"outputs": reference_outputs(seed=i)},
            headers=headers(site),
            **options,
        )
        assert r.status_code == 201, r.text


def batch_outputs(seed: int, shift: float = 0.0, n: int = 150) -> dict[str, list[float]]:
    """Beta(2 + shift, 5) probabilities: shift 0 is the reference's distribution."""
    rng = np.random.default_rng(seed)
    prob = rng.beta(2.0 + shift, 5.0, n)
    return {"prob": prob.tolist(), "pred_class": (prob > 0.5).astype(int).tolist()}


def batch_body(batch_id: str, seed: int, shift: float = 0.0, day: int = 1) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "timestamp": f"2025-03-{day:02d}T10:00:00+00:00",
        "outputs": batch_outputs(seed, shift),
    }


def write_keys_and_config(folder: Path, **overrides: Any) -> tuple[Path, Path]:
    keys = folder / "keys.yaml"
    keys.write_text(yaml.safe_dump(KEYS))
    cfg = config(**overrides).dump(folder / "monitor.yaml")
    return keys, cfg


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"server exited with {proc.returncode}:\n{out}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"server at {url} did not answer /healthz within {timeout} s")


def start_server(db: Path | str, keys: Path, cfg: Path, port: int) -> subprocess.Popen:
    """``medfleet monitor serve`` in a child process, answering on 127.0.0.1:port.

    A database URL travels in ``MEDFLEET_MONITOR_DB`` (as a deployment would pass one with a
    password), a SQLite path as ``--db``.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if "://" in str(db):
        env["MEDFLEET_MONITOR_DB"] = str(db)
        where = []
    else:
        env.pop("MEDFLEET_MONITOR_DB", None)
        where = ["--db", str(db)]
    cmd = [
        sys.executable,
        "-m",
        "medfleet",
        "monitor",
        "serve",
        *where,
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--keys",
        str(keys),
        "--config",
        str(cfg),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    wait_healthy(f"http://127.0.0.1:{port}", proc)
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
    if proc.stdout:
        proc.stdout.close()


@contextlib.contextmanager
def threaded_server(app: Any, port: int) -> Iterator[str]:
    """Serve ``app`` with Uvicorn in a background thread; yield its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout=30.0)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
