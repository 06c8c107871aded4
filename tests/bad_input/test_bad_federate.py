"""Bad input to ``medfleet federate`` and ``medfleet federate-study``: named cases.

Every case is refused cleanly (one ``error:`` line naming the option, file, site or code;
exit 2 for a usage error, 1 otherwise), leaves nothing half-written, and never shows a
traceback. The cases that run a federation use three tiny phantom sites (``vit-tiny``,
32 pixels, one round, one local step) on the in-process engine.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.bad_input.harness import (
    assert_nothing_half_written,
    assert_refused,
    assert_usage_error,
    run_cli,
)

from medfleet.models.files import MODEL_FILE, SITE_STATE_FILE

TINY = [
    "--backbone",
    "vit-tiny",
    "--image-size",
    "32",
    "--batch-size",
    "4",
    "--rounds",
    "1",
    "--local-steps",
    "1",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    """Three classification sites, 8 cases each, 32 pixels; returns the folder."""
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    path = generate_phantoms(
        tmp_path_factory.mktemp("bad_fed"),
        PhantomConfig(tasks=["lesion_cls"]),
        sites=3,
        cases_per_site=8,
        size=32,
        seed=0,
    )
    return path.parent


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every case runs torch on one thread."""


@dataclass
class Case:
    """A named bad input: how to build it, what to run, what the refusal names."""

    build: Callable[[Path, Path], list[str]]
    names: tuple[str, ...]
    usage: bool = False
    check: Callable[[Path, str], None] | None = None


def _data(phantoms: Path, tmp: Path) -> Path:
    """A private copy of the phantoms (cases may change it); returns its manifest."""
    data = tmp / "data"
    shutil.copytree(phantoms, data)
    return data / "manifest.yaml"


def _rows(table: Path) -> tuple[list[str], list[dict[str, str]]]:
    with table.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write_rows(table: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def federate(manifest: Path | str, out: Path, *extra: str) -> list[str]:
    return [
        "federate",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--engine",
        "inprocess",
        *TINY,
        *extra,
    ]


def study(manifest: Path | str, out: Path, *extra: str) -> list[str]:
    return [
        "federate-study",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--n-resamples",
        "10",
        *TINY,
        *extra,
    ]


# ------------------------------------------------------------------- builders


def _usage(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda phantoms, tmp: federate(phantoms / "manifest.yaml", tmp / "out", *extra)


def _study_usage(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda phantoms, tmp: study(phantoms / "manifest.yaml", tmp / "out", *extra)


def _missing_manifest(phantoms: Path, tmp: Path) -> list[str]:
    return federate(tmp / "no_such_manifest.yaml", tmp / "out")


def _study_missing_manifest(phantoms: Path, tmp: Path) -> list[str]:
    return study(tmp / "no_such_manifest.yaml", tmp / "out", "--strategies", "fedavg")


def _out_is_a_file(phantoms: Path, tmp: Path) -> list[str]:
    (tmp / "out_file").write_text("keep me\n")
    return federate(phantoms / "manifest.yaml", tmp / "out_file")


def _study_out_is_a_file(phantoms: Path, tmp: Path) -> list[str]:
    (tmp / "out_file").write_text("keep me\n")
    return study(phantoms / "manifest.yaml", tmp / "out_file", "--strategies", "fedavg")


def _undeclared_site(phantoms: Path, tmp: Path) -> list[str]:
    manifest = _data(phantoms, tmp)
    table = manifest.parent / "lesion_cls.csv"
    fields, rows = _rows(table)
    rows[0]["site"] = "site_unknown"
    _write_rows(table, fields, rows)
    return federate(manifest, tmp / "out")


def _site_without_rows(phantoms: Path, tmp: Path) -> list[str]:
    manifest = _data(phantoms, tmp)
    table = manifest.parent / "lesion_cls.csv"
    fields, rows = _rows(table)
    _write_rows(table, fields, [r for r in rows if r["site"] != "site_c"])
    return federate(manifest, tmp / "out")


def _corrupt_state(phantoms: Path, tmp: Path) -> list[str]:
    # an earlier run's state file is set aside at the start of a run; a folder where the
    # state file belongs cannot be, and makes every round of the site fail
    state = tmp / "out" / "sites" / "site_a" / SITE_STATE_FILE
    state.mkdir(parents=True)
    (state.parent.parent / MODEL_FILE).write_bytes(b"an earlier run's model")
    return federate(phantoms / "manifest.yaml", tmp / "out")


def _corrupt_image(phantoms: Path, tmp: Path) -> list[str]:
    manifest = _data(phantoms, tmp)
    _, rows = _rows(manifest.parent / "lesion_cls.csv")
    row = next(r for r in rows if r["site"] == "site_b" and r["split"] == "train")
    (manifest.parent / row["image"]).write_bytes(b"\x89PNG\r\n cut short")
    return federate(manifest, tmp / "out")


# -------------------------------------------------------------------- checks


def _nothing_written(tmp: Path, line: str) -> None:
    assert not (tmp / "out").exists()


def _file_kept(tmp: Path, line: str) -> None:
    assert (tmp / "out_file").read_text() == "keep me\n"


def _run_failed(site: str, model: bool) -> Callable[[Path, str], None]:
    """The run is recorded as failed; ``site`` failed and has (or has not) this run's model."""

    def check(tmp: Path, line: str) -> None:
        data = json.loads((tmp / "out" / "federated.json").read_text())
        assert data["status"] == "failed"
        assert data["site_status"][site]["status"] == "failed"
        assert data["site_status"][site]["model"] is model
        site_dir = tmp / "out" / "sites" / site
        assert (site_dir / MODEL_FILE).exists() is model
        assert not (site_dir / "model.pt").exists()
        assert "Traceback" not in json.dumps(data)

    return check


def _no_case_text(tmp: Path, line: str) -> None:
    # site_b never trained (a training image is corrupt); it still validated and wrote
    # this run's model (the global weights and its local parts)
    _run_failed("site_b", model=True)(tmp, line)
    assert "cls_site_b" not in line and ".png" not in line


CASES: dict[str, Case] = {
    "dp-clip-zero": Case(_usage("--dp-clip", "0"), ("--dp-clip",), usage=True),
    "dp-clip-negative": Case(_usage("--dp-clip", "-1.5"), ("--dp-clip",), usage=True),
    "dp-noise-negative": Case(
        _usage("--dp-clip", "1", "--dp-noise", "-0.5"), ("--dp-noise",), usage=True
    ),
    "dp-noise-without-clip": Case(_usage("--dp-noise", "1.0"), ("--dp-clip",), usage=True),
    "dp-delta-one": Case(
        _usage("--dp-clip", "1", "--dp-noise", "1", "--dp-delta", "1"), ("--dp-delta",), True
    ),
    "unknown-strategy": Case(_usage("--strategy", "fedsgd"), ("--strategy",), usage=True),
    "rounds-zero": Case(_usage("--rounds", "0"), ("--rounds",), usage=True),
    "blocks-not-numbers": Case(_usage("--blocks", "last,first"), ("--blocks",), usage=True),
    "secagg-is-gone": Case(_usage("--secagg"), ("--secagg",), usage=True),
    "missing-manifest": Case(_missing_manifest, ("no_such_manifest.yaml",), check=_nothing_written),
    "out-is-a-file": Case(_out_is_a_file, ("out_file",), usage=True, check=_file_kept),
    "min-available-above-sites": Case(
        _usage("--min-available", "5"), ("--min-available",), check=_nothing_written
    ),
    "undeclared-site-in-table": Case(
        _undeclared_site, ("site_unknown", "lesion_cls.csv"), check=_nothing_written
    ),
    "site-without-rows": Case(_site_without_rows, ("site_c",), check=_nothing_written),
    "corrupt-site-state": Case(
        _corrupt_state, ("site_a", "state/corrupt"), check=_run_failed("site_a", model=False)
    ),
    "corrupt-image-at-a-site": Case(
        _corrupt_image, ("site_b", "data/unreadable-image"), check=_no_case_text
    ),
    "study-unknown-strategy": Case(
        _study_usage("--strategies", "fedavg,fedsgd"), ("fedsgd",), usage=True
    ),
    "study-rounds-zero": Case(_study_usage("--rounds", "0"), ("--rounds",), usage=True),
    "study-positive-label-without-task": Case(
        _study_usage("--positive-label", "malignant"), ("--positive-label",), usage=True
    ),
    "study-missing-manifest": Case(
        _study_missing_manifest, ("no_such_manifest.yaml",), check=_nothing_written
    ),
    "study-out-is-a-file": Case(_study_out_is_a_file, ("out_file",), usage=True, check=_file_kept),
    "study-unknown-task": Case(
        _study_usage("--strategies", "fedavg", "--tasks", "no_such_task"), ("no_such_task",)
    ),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_bad_federate_input(name: str, phantoms: Path, tmp_path: Path) -> None:
    case = CASES[name]
    outcome = run_cli(case.build(phantoms, tmp_path))
    if case.usage:
        assert_usage_error(outcome, *case.names)
        line = outcome.stderr
    else:
        line = assert_refused(outcome, *case.names, code=1)
    assert_nothing_half_written(tmp_path)
    if case.check is not None:
        case.check(tmp_path, line)
