"""``medfleet monitor serve``: argument errors are clear and stop before any server starts.

A real server started through this command is exercised by test_service_restart.py.
"""

from __future__ import annotations

from pathlib import Path

from monitor_service_helpers import write_keys_and_config
from typer.testing import CliRunner

from medfleet.cli import app


def _serve(*args: str):
    return CliRunner().invoke(app, ["monitor", "serve", *args])


def test_help_lists_the_options() -> None:
    result = _serve("--help")
    assert result.exit_code == 0
    for option in ("--db", "--port", "--host", "--keys", "--config", "--refresh"):
        assert option in result.output


def test_without_db_or_config_it_says_what_to_give(tmp_path: Path) -> None:
    result = _serve("--port", "8765")
    assert result.exit_code == 2
    assert "give --db PATH" in result.output


def test_a_bad_key_file_is_named(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("site_a: short\n")
    result = _serve("--db", str(tmp_path / "m.sqlite"), "--keys", str(keys))
    assert result.exit_code == 1
    assert "keys.yaml" in result.output and "at least 16" in result.output
    assert not (tmp_path / "m.sqlite").exists()


def test_a_key_outside_the_configured_sites_is_refused(tmp_path: Path) -> None:
    keys, cfg = write_keys_and_config(tmp_path, sites=["site_a"])
    result = _serve("--config", str(cfg), "--db", str(tmp_path / "m.sqlite"), "--keys", str(keys))
    assert result.exit_code == 1
    assert "site_b" in result.output and "not in the monitor config" in result.output


def test_a_bad_config_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("scheme: sideways\n")
    result = _serve("--config", str(cfg))
    assert result.exit_code == 1
    assert "monitor.yaml" in result.output and "scheme" in result.output


def test_an_unknown_log_level_is_refused(tmp_path: Path) -> None:
    result = _serve("--db", str(tmp_path / "m.sqlite"), "--log-level", "loud")
    assert result.exit_code == 2
    assert "--log-level 'loud'" in result.output
