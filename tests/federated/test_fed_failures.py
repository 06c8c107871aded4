"""Failing sites: codes instead of text, a corrupt site state, stale models, run status."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from medfleet.errors import MedfleetError
from medfleet.federated import Fault, FederatedConfig, FederatedResult, run_federated
from medfleet.models.files import MODEL_FILE, SITE_STATE_FILE


def test_flower_error_numbers_match_flower() -> None:
    from flwr.common.constant import ErrorCode

    from medfleet.federated.failures import _FLOWER_ERRORS, CLIENT_APP_RAISED_EXCEPTION

    assert ErrorCode.CLIENT_APP_RAISED_EXCEPTION == CLIENT_APP_RAISED_EXCEPTION
    assert _FLOWER_ERRORS[ErrorCode.NODE_UNAVAILABLE] == "network/node-unavailable"
    assert _FLOWER_ERRORS[ErrorCode.LOAD_CLIENT_APP_EXCEPTION] == "flower/load-client-app"
    assert _FLOWER_ERRORS[ErrorCode.CLIENT_APP_CRASHED] == "flower/client-app-crashed"
    assert _FLOWER_ERRORS[ErrorCode.MOD_FAILED_PRECONDITION] == "flower/mod-failed"


def test_exceptions_map_to_codes() -> None:
    import errno

    from medfleet.errors import ImageReadError, ManifestError
    from medfleet.federated.failures import (
        FAILURE_CODES,
        SITE_FAILURES,
        InjectedFault,
        SiteConfigError,
        SiteStateError,
        classify,
    )
    from medfleet.train.datasets import DataError

    def chained(outer: Exception, inner: Exception) -> Exception:
        try:
            try:
                raise inner
            except Exception as exc:
                raise outer from exc
        except Exception as exc:
            return exc

    cases = {
        chained(DataError("case 'c1': cannot read"), ImageReadError("/x.png", "bad")): (
            "data/unreadable-image"
        ),
        DataError("label 'q' is not a class"): "data/invalid",
        ManifestError("table has no column"): "data/invalid",
        chained(SiteStateError("cannot read local.pt"), RuntimeError("zip")): "state/corrupt",
        SiteConfigError("no site"): "config/unknown-site",
        InjectedFault("drill"): "fault/injected",
        MemoryError(): "resource/out-of-memory",
        OSError(errno.ENOSPC, "No space left"): "resource/disk-full",
        ZeroDivisionError("x"): "internal/error",
        MedfleetError("anything else"): "internal/error",
    }
    for exc, code in cases.items():
        assert classify(exc) == code, exc
        assert code in SITE_FAILURES
    assert set(SITE_FAILURES) <= set(FAILURE_CODES)
    assert all(code.count("/") == 1 for code in FAILURE_CODES)


def test_server_never_records_free_text() -> None:
    from flwr.app import Error

    from medfleet.federated.failures import failure_code

    assert failure_code(Error(code=2, reason="state/corrupt")) == "state/corrupt"
    leaky = "<class 'DataError'>:<'case PATIENT_1: cannot read /srv/site/PATIENT_1.png'>"
    assert failure_code(Error(code=2, reason=leaky)) == "internal/error"
    assert failure_code(Error(code=0, reason=leaky)) == "flower/error"
    assert failure_code(Error(code=5, reason=None)) == "network/node-unavailable"


def _message(message_type: str, content=None):
    from flwr.app import ConfigRecord, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    records = content or RecordDict({"config": ConfigRecord({"server-round": 1})})
    return Message(records, dst_node_id=5, message_type=message_type)


@pytest.mark.parametrize("message_type", ["query", "train", "evaluate"])
def test_client_app_answers_an_unknown_site_with_a_code_and_never_raises(
    fed_manifest, tiny_settings, tmp_path: Path, message_type: str, caplog
) -> None:
    """The ClientApp returns the error reply itself, so no Flower runtime adds text to it."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, RecordDict

    from medfleet.federated.client_app import make_client_app
    from medfleet.federated.job import FederatedJob

    job = FederatedJob.create(fed_manifest, *tiny_settings, FederatedConfig(), tmp_path)
    app = make_client_app(job)
    content = RecordDict(
        {
            "config": ConfigRecord({"server-round": 1}),
            "arrays": ArrayRecord({"w": Array(__import__("numpy").zeros(2, "f4"))}),
        }
    )
    context = Context(
        run_id=1,
        node_id=5,
        node_config={"site": "site_PATIENT_ZZ"},
        state=RecordDict(),
        run_config={},
    )
    with caplog.at_level(logging.ERROR, logger="medfleet.federated.site"):
        reply = app(_message(message_type, content), context)
    assert reply.has_error()
    assert reply.error.reason == "config/unknown-site"
    assert "site_PATIENT_ZZ" in caplog.text  # logged at the site, not sent


def _stale_model(site_dir: Path) -> None:
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / MODEL_FILE).write_bytes(b"a model of an earlier run")
    (site_dir / "model.pt").write_bytes(b"a legacy model of an earlier run")
    (site_dir / "training.json").write_text('{"stale": true}')


def _no_model(site_dir: Path) -> bool:
    return not any((site_dir / n).exists() for n in (MODEL_FILE, "model.pt", "training.json"))


def test_corrupt_site_state_fails_the_run_names_the_site_and_retires_stale_models(
    fed_manifest, tiny_settings, tmp_path: Path, caplog
) -> None:
    out = tmp_path / "out"
    bad = out / "sites" / "site_a"
    state = bad / SITE_STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_bytes(b"the local state of an earlier run")
    for site in fed_manifest.site_names:
        _stale_model(out / "sites" / site)
    _stale_model(out / "global")

    def corrupt_after_round_one(done: int, total: int) -> None:
        if done == 1:
            assert state.is_file()  # this run's state, written in round 1
            state.write_bytes(b"\x00garbage, not a tensor file")

    with (
        caplog.at_level(logging.ERROR, logger="medfleet.federated.site"),
        pytest.raises(MedfleetError) as info,
    ):
        run_federated(
            fed_manifest,
            *tiny_settings,
            FederatedConfig(strategy="lora", rounds=3, local_steps=1, blocks=[-1]),
            out,
            progress=corrupt_after_round_one,
        )
    # the earlier run's state was set aside, not used
    assert (bad / "previous" / SITE_STATE_FILE).read_bytes() == b"the local state of an earlier run"
    message = str(info.value)
    assert "\n" not in message
    assert "site_a" in message and "state/corrupt" in message and "2, 3" in message
    assert "site_b" not in message and "site_c" not in message
    # the site's own log names the file; the run record does not
    assert str(state) in caplog.text
    site_log = (bad / "logs" / "errors.log").read_text()
    assert str(state) in site_log and "Traceback" in site_log
    data = json.loads((out / "federated.json").read_text())
    assert data["status"] == "failed"
    assert state.name not in json.dumps(data)
    assert data["rounds"][0]["clients"]["site_a"]["status"] == "ok"
    for record in data["rounds"][1:]:
        assert record["clients"]["site_a"] == {
            **record["clients"]["site_a"],
            "status": "failed",
            "error": "state/corrupt",
        }
        assert record["clients"]["site_b"]["status"] == "ok"
    status = data["site_status"]
    assert status["site_a"]["status"] == "failed" and status["site_a"]["model"] is False
    assert status["site_a"]["failed_rounds"] == {"2": "state/corrupt", "3": "state/corrupt"}
    assert status["site_b"]["status"] == "ok" and status["site_b"]["model"] is True
    # no stale model looks current: site_a has none, the others have this run's
    assert _no_model(bad)
    assert (bad / "previous" / MODEL_FILE).read_bytes() == b"a model of an earlier run"
    assert (bad / "previous" / "model.pt").is_file()
    for site in ("site_b", "site_c"):
        info_file = json.loads((out / "sites" / site / "training.json").read_text())
        assert info_file["federated"]["site"] == site
    result = FederatedResult.load(out)
    assert set(result.site_dirs) == {"site_b", "site_c"}
    assert (out / "global" / MODEL_FILE).read_bytes() != b"a model of an earlier run"
    assert not (out / "global" / "model.pt").exists()


def test_a_site_failing_one_round_degrades_the_run_without_failing_it(
    fed_manifest, tiny_settings, tmp_path: Path
) -> None:
    site = fed_manifest.site_names[2]
    result = run_federated(
        fed_manifest,
        *tiny_settings,
        FederatedConfig(
            strategy="lora",
            rounds=2,
            local_steps=1,
            blocks=[-1],
            faults=[Fault(site=site, round=1)],
        ),
        tmp_path / "out",
    )
    assert result.data["status"] == "degraded"
    status = result.data["site_status"][site]
    assert status == {
        **status,
        "status": "degraded",
        "ok_rounds": [2],
        "failed_rounds": {"1": "fault/injected"},
        "model": True,
    }
    assert result.summary()["status"] == "degraded"


def test_a_site_failing_the_final_evaluation_has_no_model_and_fails_the_run(
    fed_manifest, tiny_settings, tmp_path: Path
) -> None:
    site = fed_manifest.site_names[0]
    out = tmp_path / "out"
    _stale_model(out / "sites" / site)
    with pytest.raises(MedfleetError, match=f"{site}.*no model.*fault/injected"):
        run_federated(
            fed_manifest,
            *tiny_settings,
            FederatedConfig(
                strategy="lora",
                rounds=1,
                local_steps=1,
                blocks=[-1],
                faults=[Fault(site=site, round=1, phase="evaluate")],
            ),
            out,
        )
    data = json.loads((out / "federated.json").read_text())
    assert data["status"] == "failed"
    assert data["rounds"][0]["clients"][site]["eval_error"] == "fault/injected"
    assert data["site_status"][site]["model"] is False
    assert _no_model(out / "sites" / site)


def test_the_deployed_server_app_ends_a_failed_run_with_an_error(
    fed_manifest, tiny_settings, tmp_path: Path
) -> None:
    """With ``flwr run`` the ServerApp raises on a failed run, so Flower reports it failed."""
    from flwr.app import Context, RecordDict

    from medfleet.federated.client_app import make_client_app
    from medfleet.federated.job import FederatedJob
    from medfleet.federated.local_grid import LocalGrid
    from medfleet.federated.server_app import make_server_app

    fed = FederatedConfig(
        strategy="lora",
        rounds=1,
        local_steps=1,
        blocks=[-1],
        faults=[Fault(site="site_b", round=1)],
    )
    job = FederatedJob.create(fed_manifest, *tiny_settings, fed, tmp_path / "out")
    nodes = {1000 + i: {"site": s} for i, s in enumerate(fed_manifest.site_names)}
    grid = LocalGrid(make_client_app(job), nodes)
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    with pytest.raises(MedfleetError, match=r"site_b failed in round 1 \(fault/injected\)"):
        make_server_app(job)(grid, context)
    assert json.loads((tmp_path / "out" / "federated.json").read_text())["status"] == "failed"


def test_a_rerun_in_the_same_folder_and_process_starts_from_nothing_of_the_first(
    fed_manifest, tiny_settings, tmp_path: Path
) -> None:
    """Neither an earlier run's local state file nor a worker cached in memory carries over."""
    from medfleet.utils.tensorfile import read_tensor_file

    config = FederatedConfig(strategy="dual-lora", rounds=1, local_steps=2, blocks=[-1])

    def site_weights() -> dict:
        path = tmp_path / "out" / "sites" / "site_a" / MODEL_FILE
        return read_tensor_file(path, ("unified-model",))["state_dict"]

    run_federated(fed_manifest, *tiny_settings, config, tmp_path / "out")
    first = site_weights()
    run_federated(fed_manifest, *tiny_settings, config, tmp_path / "out")
    second = site_weights()
    assert first.keys() == second.keys()
    differing = [k for k in first if not (first[k] == second[k]).all()]
    assert differing == []
