"""Bad-input corpus for ``medfleet monitor run`` and ``medfleet monitor serve``.

Each case writes one bad input (config, output table, key file, database) into a folder with
a good configuration, runs one command and checks a clean refusal: non-zero exit, one
``error:`` line naming the thing, no traceback, no secret echoed, and nothing stored: no
report in the store, no temporary leftovers. ``serve`` cases fail before any server starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tests.bad_input.harness import (
    assert_nothing_half_written,
    assert_refused,
    assert_usage_error,
    run_cli,
)

from medfleet.monitor.batches import MAX_CLASS_LABEL
from medfleet.monitor.store import SQLiteStore

SECRET = "Vx3m0cQy5b7l2Qd0p8Yb1nY4uZ6rW9tKc2hJ5sE8aF0"
DB_PASSWORD = "pw-that-must-not-show-0123"
CONFIG = (
    "sites: [a, b]\nscheme: site\ntests: [ks, chi2]\n"
    "thresholds: {bootstrap: 20, shift_bootstrap: 5}\n"
    "references: {'*': refs.csv}\ninput: {paths: [outputs.csv], batch_freq: 1D}\n"
    "db: monitor.sqlite\n"
)


def _write_good(folder: Path) -> None:
    rng = np.random.default_rng(0)
    refs = ["site,prob,pred_class"]
    for site in ("a", "b"):
        refs += [f"{site},{x:.5f},{int(x > 0.5)}" for x in rng.beta(2, 5, 200)]
    (folder / "refs.csv").write_text("\n".join(refs) + "\n")
    rows = ["site,time,prob,pred_class"]
    for day in (1, 2):
        for site in ("a", "b"):
            for h, x in enumerate(rng.beta(2, 5, 60)):
                rows.append(f"{site},2024-03-0{day}T{h % 24:02d}:00,{x:.5f},{int(x > 0.5)}")
    (folder / "outputs.csv").write_text("\n".join(rows) + "\n")
    (folder / "monitor.yaml").write_text(CONFIG)


def _edit_outputs(edit: Callable[[list[list[str]]], None]) -> Callable[[Path], None]:
    """Rewrite outputs.csv through ``edit`` on its rows (header first)."""

    def apply(folder: Path) -> None:
        path = folder / "outputs.csv"
        rows = [line.split(",") for line in path.read_text().splitlines()]
        edit(rows)
        path.write_text("\n".join(",".join(r) for r in rows) + "\n")

    return apply


def _cell(row: int, column: str, value: str) -> Callable[[Path], None]:
    def edit(rows: list[list[str]]) -> None:
        rows[row][rows[0].index(column)] = value

    return _edit_outputs(edit)


def _drop(column: str) -> Callable[[Path], None]:
    def edit(rows: list[list[str]]) -> None:
        i = rows[0].index(column)
        for r in rows:
            del r[i]

    return _edit_outputs(edit)


def _booleans(rows: list[list[str]]) -> None:
    i = rows[0].index("prob")
    for n, r in enumerate(rows[1:]):
        r[i] = "True" if n % 2 else "False"


def _write(name: str, text: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / name).write_text(text)

    return apply


# (id, edit of the good folder, command after "medfleet monitor", names in the error line)
RUN = ["run", "--config", "{dir}/monitor.yaml"]
RUN_CASES = [
    ("config-missing", lambda d: (d / "monitor.yaml").unlink(), RUN, ["monitor.yaml"]),
    (
        "config-yaml-syntax-error",
        _write("monitor.yaml", "sites: [a, b\nscheme: site\n"),
        RUN,
        ["monitor.yaml"],
    ),
    (
        "config-unknown-scheme",
        _write("monitor.yaml", CONFIG.replace("scheme: site", "scheme: sideways")),
        RUN,
        ["monitor.yaml", "scheme"],
    ),
    ("nan-probability", _cell(5, "prob", "nan"), RUN, ["'prob'", "NaN"]),
    ("probability-above-1", _cell(3, "prob", "1.7"), RUN, ["'prob'", "outside [0, 1]"]),
    ("boolean-probabilities", _edit_outputs(_booleans), RUN, ["'prob'", "true/false"]),
    ("text-probability", _cell(2, "prob", "high"), RUN, ["'prob'", "text"]),
    (
        "class-label-1e30",
        _cell(4, "pred_class", "1e30"),
        RUN,
        ["'pred_class'", f"[0, {MAX_CLASS_LABEL}]", "1e+30"],
    ),
    ("class-label-negative", _cell(4, "pred_class", "-2"), RUN, ["'pred_class'", "[0, "]),
    ("class-label-fraction", _cell(4, "pred_class", "0.5"), RUN, ["'pred_class'", "whole"]),
    ("missing-output", _drop("pred_class"), RUN, ["'pred_class'", "missing"]),
    ("unreadable-time", _cell(1, "time", "yesterday"), RUN, ["'time'"]),
    (
        "unknown-site",
        _cell(1, "site", "zz"),
        RUN,
        ["'zz'", "unknown site"],
    ),
    ("input-file-missing", lambda d: (d / "outputs.csv").unlink(), RUN, ["outputs.csv"]),
    (
        "unsupported-database-url",
        None,
        [*RUN, "--db", f"mysql://medfleet:{DB_PASSWORD}@127.0.0.1/monitor"],
        ["mysql", "medfleet:***@"],
    ),
    (
        "unreachable-postgres",
        None,
        [*RUN, "--db", f"postgresql+psycopg://medfleet:{DB_PASSWORD}@127.0.0.1:1/monitor"],
        ["cannot open monitor store", "medfleet:***@127.0.0.1:1"],
    ),
    (
        "sqlite-url-without-path",
        None,
        [*RUN, "--db", "sqlite://"],
        ["sqlite://", "sqlite:///"],
    ),
]


def _format(args: list[str], folder: Path) -> list[str]:
    return [a.replace("{dir}", str(folder)) for a in args]


def _stored_reports(folder: Path) -> int:
    db = folder / "monitor.sqlite"
    if not db.exists():
        return 0
    store = SQLiteStore(db)
    try:
        return store.count_reports()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("edit", "args", "names"), [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES]
)
def test_monitor_run_refuses(tmp_path: Path, edit, args: list[str], names: list[str]) -> None:
    _write_good(tmp_path)
    if edit is not None:
        edit(tmp_path)
    outcome = run_cli(["monitor", *_format(args, tmp_path)])
    line = assert_refused(outcome, *names)
    assert DB_PASSWORD not in outcome.stdout + outcome.stderr, line
    assert _stored_reports(tmp_path) == 0
    assert_nothing_half_written(
        tmp_path,
        allowed={
            "refs.csv",
            "outputs.csv",
            "monitor.yaml",
            "monitor.sqlite",
            "monitor.sqlite-wal",
            "monitor.sqlite-shm",
        },
    )


def test_good_folder_runs(tmp_path: Path) -> None:
    """The corpus' starting point is good: each case above breaks one thing."""
    _write_good(tmp_path)
    outcome = run_cli(["monitor", "run", "--config", str(tmp_path / "monitor.yaml")])
    assert outcome.exit_code == 0, outcome.describe()
    assert _stored_reports(tmp_path) == 4


# ---------------------------------------------------------------- monitor serve


def _keys(text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "keys.yaml"
        path.write_text(text)
        return path

    return make


GOOD_KEYS = f"a: {SECRET}\nb: key-of-site-b-0123456789\n"

# (id, key file text or None, extra args, names in the error line)
SERVE_CASES = [
    (
        "key-file-yaml-error-hides-the-key",
        f'a: "{SECRET}\nb: key-of-site-b-0123456789\n',
        [],
        ["keys.yaml", "line 1, column 4", "not shown"],
    ),
    (
        "key-file-colon-in-key",
        f"b: key-of-site-b-0123456789\na: {SECRET}: x\n",
        [],
        ["keys.yaml", "line 2, column"],
    ),
    ("key-too-short", "a: short\n", [], ["keys.yaml", "'a'", "at least 16"]),
    ("key-shared-by-two-sites", f"a: {SECRET}\nb: {SECRET}\n", [], ["share one key"]),
    (
        "key-for-unconfigured-site",
        f"{GOOD_KEYS}c: key-of-site-c-0123456789\n",
        [],
        ["site(s) c have a key", "not in the monitor config"],
    ),
    ("database-is-a-folder", GOOD_KEYS, ["--db", "{dir}"], ["cannot open monitor store"]),
    (
        "database-not-sqlite",
        GOOD_KEYS,
        ["--db", "{dir}/refs.csv"],
        ["cannot open monitor store", "refs.csv"],
    ),
    (
        "unreachable-postgres",
        GOOD_KEYS,
        ["--db", f"postgresql+psycopg://medfleet:{DB_PASSWORD}@127.0.0.1:1/monitor"],
        ["medfleet:***@127.0.0.1:1"],
    ),
    (
        "postgres-driver-not-psycopg",
        GOOD_KEYS,
        ["--db", f"postgresql+asyncpg://medfleet:{DB_PASSWORD}@127.0.0.1/monitor"],
        ["asyncpg", "postgresql+psycopg://"],
    ),
]


@pytest.mark.parametrize(
    ("keys", "extra", "names"), [c[1:] for c in SERVE_CASES], ids=[c[0] for c in SERVE_CASES]
)
def test_monitor_serve_refuses_before_serving(
    tmp_path: Path, keys: str, extra: list[str], names: list[str]
) -> None:
    _write_good(tmp_path)
    key_file = _keys(keys)(tmp_path)
    refs_before = (tmp_path / "refs.csv").read_bytes()
    args = ["monitor", "serve", "--config", str(tmp_path / "monitor.yaml")]
    # An address no machine has: a case that wrongly got past the checks could not serve.
    args += ["--keys", str(key_file), "--host", "256.256.256.256", *_format(extra, tmp_path)]
    outcome = run_cli(args)
    line = assert_refused(outcome, *names)
    everything = outcome.stdout + outcome.stderr
    for secret in (SECRET, SECRET[:10], DB_PASSWORD):
        assert secret not in everything, line
    assert (tmp_path / "refs.csv").read_bytes() == refs_before
    assert _stored_reports(tmp_path) == 0
    assert_nothing_half_written(tmp_path)


def test_monitor_serve_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    outcome = run_cli(["monitor", "serve", "--db", str(tmp_path / "m.sqlite"), "--log-level", "x"])
    assert_usage_error(outcome, "--log-level 'x'")
    assert not (tmp_path / "m.sqlite").exists()


def test_the_corpus_is_large_enough() -> None:
    assert len(RUN_CASES) + len(SERVE_CASES) >= 20
