"""The deployment engine: a real SuperLink and three SuperNodes on loopback, `flwr run`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"port {port} did not open")


def test_superlink_three_supernodes_flwr_run(fed_manifest, tiny_settings, tmp_path: Path) -> None:
    from medfleet.federated import FederatedConfig
    from medfleet.federated.job import FederatedJob
    from medfleet.train.run import load_trained

    model_config, train_config = tiny_settings
    out = tmp_path / "out"
    job = FederatedJob.create(
        fed_manifest,
        model_config,
        train_config,
        FederatedConfig(
            strategy="dual-lora",
            rounds=2,
            local_steps=1,
            blocks=[-1],
            min_fit=3,
            min_available=3,
            round_timeout=300,
        ),
        out,
    )
    job_file = job.save(tmp_path)
    home = tmp_path / "flwr_home"
    home.mkdir()
    link_port = _free_port()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "medfleet-local"\n\n'
        f'[superlink.medfleet-local]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n'
    )
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}"}
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> None:
        fh = (logs / f"{name}.log").open("w")
        procs.append(
            subprocess.Popen(
                args,
                cwd=tmp_path,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        start(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--port",
                str(link_port),
                "--database",
                str(tmp_path / "state.db"),
                "--disable-runtime-dependency-installation",
            ],
        )
        _wait_port(link_port, time.monotonic() + 90)
        for i, site in enumerate(fed_manifest.site_names):
            start(
                f"supernode_{site}",
                [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{link_port}",
                    "--port",
                    str(_free_port()),
                    "--node-config",
                    f'site="{site}" partition-id={i}',
                ],
            )
        run = subprocess.run(
            [
                str(BIN / "flwr"),
                "run",
                str(REPO),
                "medfleet-local",
                "--format",
                "json",
                "--run-config",
                f'job="{job_file}"',
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        result_file = out / "federated.json"
        deadline = time.monotonic() + 400
        status = None
        while time.monotonic() < deadline:
            if result_file.is_file():
                status = json.loads(result_file.read_text()).get("status")
                if status == "finished":
                    break
            time.sleep(2)
        log_text = "\n".join(p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))
        assert status == "finished", log_text
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    data = json.loads(result_file.read_text())
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    for record in data["rounds"]:
        assert set(record["clients"]) == set(fed_manifest.site_names)
        for client in record["clients"].values():
            assert client["status"] == "ok"
            assert client["bytes_sent"] > 0 and client["bytes_received"] > 0
        assert set(record["metrics"]) == set(fed_manifest.site_names)
    for site in fed_manifest.site_names:
        loaded = load_trained(out / "sites" / site, fed_manifest)
        assert loaded.tasks == ["lesion_cls"]
