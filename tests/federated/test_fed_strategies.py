"""Strategies, key-wise averaging, local adapters, privacy, DP and faults (in-process engine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medfleet.errors import MedfleetError
from medfleet.federated import Fault, FederatedConfig, FederatedResult, run_federated
from medfleet.federated import params as P


def _inspector(log: list[dict]):
    """A Flower client mod that records every message entering and leaving a client."""

    def mod(msg, ctxt, call_next):
        reply = call_next(msg, ctxt)
        log.append({"site": ctxt.node_config.get("site"), "in": msg, "out": reply})
        return reply

    return mod


@pytest.fixture(scope="module")
def dual_run(fed_manifest, tmp_path_factory):
    from medfleet.models import ModelConfig
    from medfleet.train.config import TrainConfig

    log: list[dict] = []
    out = tmp_path_factory.mktemp("dual") / "out"
    result = run_federated(
        fed_manifest,
        ModelConfig(backbone="unet-small", image_size=32),
        TrainConfig(batch_size=4, threads=1, lr=1e-2),
        FederatedConfig(strategy="dual-lora", rounds=2, local_steps=2, blocks=[-2, -1]),
        out,
        client_mods=[_inspector(log)],
    )
    return result, log


# ----------------------------------------------------------------- pure parts


def test_keywise_average_weights_only_sites_holding_a_key() -> None:
    a = {"shared": np.array([1.0, 2.0]), "head_x": np.array([10.0])}
    b = {"shared": np.array([3.0, 6.0])}
    c = {"shared": np.array([0.0, 0.0]), "head_x": np.array([20.0])}
    avg = P.keywise_average([(a, 1.0), (b, 2.0), (c, 1.0)])
    # shared: (1*1 + 2*3 + 1*0) / 4 = 1.75 ; (2 + 12 + 0) / 4 = 3.5
    np.testing.assert_allclose(avg["shared"], [1.75, 3.5])
    # head_x only at a and c: (10 + 20) / 2
    np.testing.assert_allclose(avg["head_x"], [15.0])


def test_clip_update_bounds_the_norm() -> None:
    old = {"w": np.zeros(4)}
    new = {"w": np.array([3.0, 0.0, 4.0, 0.0])}
    clipped, norm = P.clip_update(new, old, 2.5)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(clipped["w"], [1.5, 0.0, 2.0, 0.0])
    same, _ = P.clip_update(new, old, 10.0)
    np.testing.assert_allclose(same["w"], new["w"])


def _build(fed_manifest, fed: FederatedConfig, backbone: str = "vit-tiny"):
    from medfleet.federated.job import FederatedJob
    from medfleet.federated.site import build_federated_model
    from medfleet.models import ModelConfig
    from medfleet.train.config import TrainConfig

    config = ModelConfig(backbone=backbone, image_size=32)
    job = FederatedJob.create(fed_manifest, config, TrainConfig(), fed, "/x")
    return build_federated_model(job, fed_manifest, None)


def test_exchange_keys_per_strategy(fed_manifest) -> None:
    full = _build(fed_manifest, FederatedConfig(strategy="fedavg"))
    keys = P.exchange_keys(full, FederatedConfig(strategy="fedavg"))
    assert keys == [n for n, _ in full.named_parameters()]
    fedbn = P.exchange_keys(full, FederatedConfig(strategy="fedavg", fedbn=True))
    norms = P.norm_parameter_names(full)
    assert norms and set(fedbn) == set(keys) - norms

    lora_cfg = FederatedConfig(strategy="lora", blocks=[-1])
    lora = _build(fed_manifest, lora_cfg)
    lora_keys = P.exchange_keys(lora, lora_cfg)
    assert lora_keys and all(".lora_" in k or k.startswith("heads.") for k in lora_keys)
    assert all("layer.3." in k for k in lora_keys if ".lora_" in k)  # last of 4 blocks only

    dual_cfg = FederatedConfig(strategy="dual-lora", blocks=[-2, -1])
    dual = _build(fed_manifest, dual_cfg)
    dual_keys = P.exchange_keys(dual, dual_cfg)
    assert dual_keys and all(".lora_" in k and ".global." in k for k in dual_keys)
    locals_ = [n for n, _ in dual.named_parameters() if P.is_local_adapter(n)]
    assert len(locals_) == len(dual_keys)
    shared = P.exchange_keys(
        dual, FederatedConfig(strategy="dual-lora", shared_heads=["lesion_cls"])
    )
    assert set(shared) - set(dual_keys) == {
        n for n, _ in dual.named_parameters() if n.startswith("heads.lesion_cls.")
    }

    blocks_cfg = FederatedConfig(strategy="fedavg", blocks=[-1])
    restricted = _build(fed_manifest, blocks_cfg)
    rkeys = P.exchange_keys(restricted, blocks_cfg)
    assert rkeys and all(k.startswith("heads.") or "layer.3." in k for k in rkeys)


def test_convolutional_dual_lora_exchanges_only_the_global_conv_adapters(fed_manifest) -> None:
    dual_cfg = FederatedConfig(strategy="dual-lora", blocks=[-1])
    dual = _build(fed_manifest, dual_cfg, backbone="unet-tiny")
    keys = P.exchange_keys(dual, dual_cfg)
    assert keys and all(".global." in k for k in keys)
    assert {k.split(".lora_")[0] for k in keys} == {
        "backbone.hf.stages.3.convs.conv_0.conv",
        "backbone.hf.stages.3.convs.conv_1.conv",
    }
    assert len([n for n, _ in dual.named_parameters() if P.is_local_adapter(n)]) == len(keys)

    fedbn = FederatedConfig(strategy="fedavg", fedbn=True)
    full = _build(fed_manifest, fedbn, backbone="unet-tiny")
    norms = P.norm_parameter_names(full)
    assert "backbone.hf.stages.0.conv_0.adn.N.weight" in norms  # instance norm stays local
    assert not norms & set(P.exchange_keys(full, fedbn))

    blocks_cfg = FederatedConfig(strategy="fedavg", blocks=[-1])
    restricted = _build(fed_manifest, blocks_cfg, backbone="unet-tiny")
    rkeys = P.exchange_keys(restricted, blocks_cfg)
    assert rkeys and all(k.startswith(("heads.", "backbone.hf.stages.3.")) for k in rkeys)


def test_secure_aggregation_is_not_offered() -> None:
    assert "secagg" not in FederatedConfig.model_fields
    # job files of earlier versions ("secagg": false) still load; asking for it is refused
    assert FederatedConfig.model_validate({"secagg": False}) == FederatedConfig()
    with pytest.raises(ValueError, match="secure aggregation is not offered"):
        FederatedConfig.model_validate({"secagg": True})


def test_dp_noise_needs_clipping() -> None:
    with pytest.raises(ValueError, match="dp_clip"):
        FederatedConfig(dp_noise=1.0)


# ------------------------------------------------------------ dual-lora run


def test_dual_lora_results_file_and_site_models(dual_run, fed_manifest) -> None:
    from medfleet.train.run import load_trained

    result, _ = dual_run
    data = json.loads((result.out / "federated.json").read_text())
    assert data["format"] == "medfleet.federated/1"
    assert data["strategy"] == "dual-lora" and data["status"] == "finished"
    assert data["sites"] == fed_manifest.site_names
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    for record in data["rounds"]:
        assert record["aggregated"] is True
        for site in fed_manifest.site_names:
            client = record["clients"][site]
            assert client["status"] == "ok" and client["error"] is None
            assert client["bytes_sent"] > 0 and client["bytes_received"] > 0
            assert client["num_examples"] > 0 and np.isfinite(client["train_loss"])
            metrics = record["metrics"][site]["lesion_cls"]
            assert "balanced_accuracy" in metrics
    assert set(data["bytes_per_round"]) == {"1", "2"}
    for site in fed_manifest.site_names:
        loaded = load_trained(result.out / "sites" / site, fed_manifest)
        assert loaded.tasks == ["lesion_cls"] and loaded.image_size == 32
        info = json.loads((result.out / "sites" / site / "training.json").read_text())
        assert info["federated"]["site"] == site


def test_bytes_are_measured_on_the_serialised_messages(dual_run) -> None:
    from medfleet.federated.accounting import message_bytes

    result, log = dual_run
    data = result.data
    for round_no in (1, 2):
        for site in data["sites"]:
            entries = [
                e
                for e in log
                if e["site"] == site and int(e["in"].content["config"]["server-round"]) == round_no
            ]
            sent = sum(message_bytes(e["out"]) for e in entries)
            received = sum(message_bytes(e["in"]) for e in entries)
            client = data["rounds"][round_no - 1]["clients"][site]
            assert client["bytes_sent"] == sent
            assert client["bytes_received"] == received


def test_messages_leaving_clients_hold_only_arrays_and_scalars(dual_run, fed_manifest) -> None:
    from medfleet.train.datasets import load_task_rows

    _result, log = dual_run
    assert log
    rows = load_task_rows(fed_manifest, "lesion_cls", ("train", "val", "test"))
    forbidden = (
        {r["case_id"] for r in rows} | {r["image"] for r in rows} | {r["label"] for r in rows}
    )
    # the run used the default backbone (a convolutional U-Net encoder)
    model = _build(
        fed_manifest, FederatedConfig(strategy="dual-lora", blocks=[-2, -1]), backbone="unet-small"
    )
    assert any(".stages." in n for n, _ in model.named_parameters() if ".lora_" in n)
    global_params = {n for n, _ in model.named_parameters() if ".lora_" in n and ".global." in n}
    for entry in log:
        reply = entry["out"]
        assert not reply.has_error()
        content = reply.content
        assert not content.config_records, "a client sent a ConfigRecord"
        for record in content.array_records.values():
            for key, array in record.items():
                assert key in global_params, f"{key} left the site"
                assert ".local." not in key
                assert np.asarray(array.numpy()).dtype == np.float32
        for record in content.metric_records.values():
            for key, value in record.items():
                assert isinstance(value, (int, float)), (key, value)
                assert key not in forbidden and not any(f in key for f in forbidden)
        assert set(content.keys()) <= {"arrays", "metrics"}


CASE_MARKER = "CASE_ZX81QK"
PATH_MARKER = "PATIENT_FOLDER_QW93"


@pytest.fixture(scope="module")
def corrupt_run(fed_phantoms, tmp_path_factory):
    """A federation in which one training image of site_b is corrupt (marked case and path)."""
    import csv
    import shutil

    from medfleet.models import ModelConfig
    from medfleet.tasks import Manifest
    from medfleet.train.config import TrainConfig

    data = tmp_path_factory.mktemp("marked") / "data"
    shutil.copytree(fed_phantoms.parent, data)
    table = data / "lesion_cls.csv"
    with table.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or []), list(reader)
    row = next(r for r in rows if r["site"] == "site_b" and r["split"] == "train")
    row["case_id"] = f"{CASE_MARKER}_001"
    image = data / PATH_MARKER / "scan_001.png"
    image.parent.mkdir()
    image.write_bytes(b"\x89PNG truncated")
    row["image"] = f"{PATH_MARKER}/scan_001.png"
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    log: list[dict] = []
    out = tmp_path_factory.mktemp("corrupt") / "out"
    try:
        run_federated(
            Manifest.load(data / fed_phantoms.name),
            ModelConfig(image_size=32),
            TrainConfig(batch_size=4, threads=1, lr=1e-3),
            FederatedConfig(strategy="lora", rounds=2, local_steps=1, blocks=[-1]),
            out,
            client_mods=[_inspector(log)],
        )
    except MedfleetError as exc:  # site_b never trains: the run fails, and says so
        assert "site_b" in str(exc) and "data/unreadable-image" in str(exc)
        assert CASE_MARKER not in str(exc) and PATH_MARKER not in str(exc)
    return FederatedResult.load(out), log, str(image.resolve())


def _wire_bytes(message) -> bytes:
    """Everything Flower puts on the wire for a message: the protobuf and every object."""
    from flwr.common.serde import message_to_proto
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    parts = [message_to_proto(message).SerializeToString()]
    parts += [obj.deflate() for obj in get_all_nested_objects(message).values()]
    return b"".join(parts)


def test_error_replies_carry_only_a_category_and_code(corrupt_run) -> None:
    from flwr.app import Error, Message

    from medfleet.federated.failures import SITE_FAILURES

    result, log, image = corrupt_run
    forbidden = [CASE_MARKER, PATH_MARKER, image, "Traceback", "DataError", "scan_001"]
    # the check can see text in an error reply (positive control)
    probe = Message(Error(code=2, reason=f"{CASE_MARKER} {image}"), reply_to=log[0]["in"])
    assert CASE_MARKER.encode() in _wire_bytes(probe) and image.encode() in _wire_bytes(probe)
    errors = [e for e in log if e["out"].has_error()]
    assert errors and all(e["site"] == "site_b" for e in errors)
    assert {e["in"].metadata.message_type for e in errors} == {"train"}
    for entry in log:
        wire = _wire_bytes(entry["out"])
        for text in forbidden:
            assert text.encode() not in wire, (text, entry["site"])
    for entry in errors:
        assert entry["out"].error.reason == "data/unreadable-image"
        assert entry["out"].error.reason in SITE_FAILURES
        assert not entry["out"].has_content()
    written = (result.out / "federated.json").read_text()
    for text in forbidden:
        assert text not in written, text
    for record in result.rounds:
        assert record["clients"]["site_b"]["status"] == "failed"
        assert record["clients"]["site_b"]["error"] == "data/unreadable-image"
    # the full text (case, path, traceback) stays at the site, in its own log
    site_log = (result.out / "sites" / "site_b" / "logs" / "errors.log").read_text()
    assert CASE_MARKER in site_log and image in site_log and "Traceback" in site_log


def test_local_adapter_stays_and_persists_across_restarts(dual_run, fed_manifest) -> None:
    from medfleet.federated.job import FederatedJob
    from medfleet.federated.site import SiteWorker, clear_workers

    result, _ = dual_run
    job = FederatedJob.load(result.out)
    states = {}
    from medfleet.models.files import SITE_STATE_FILE, SITE_STATE_KIND
    from medfleet.utils.tensorfile import read_tensor_file

    for site in fed_manifest.site_names:
        path = result.out / "sites" / site / SITE_STATE_FILE
        payload = read_tensor_file(path, (SITE_STATE_KIND,), what="site state", fix="-")
        assert payload["round"] == 2 and payload["site"] == site
        states[site] = {k: v for k, v in payload["state"].items() if P.is_local_adapter(k)}
        assert states[site]
        # lora_B starts at zero; training moved the local adapter
        assert any(float(v.abs().sum()) > 0 for k, v in states[site].items() if "lora_B" in k)
    a, b = (states[s] for s in fed_manifest.site_names[:2])
    assert any(not torch.equal(a[k], b[k]) for k in a), "local adapters should differ by site"
    clear_workers()
    site = fed_manifest.site_names[0]
    worker = SiteWorker(job, site, result.out / "sites" / site)
    assert worker.load_local() == 2
    reloaded = dict(worker.model.named_parameters())
    for key, value in states[site].items():
        assert torch.equal(reloaded[key].detach(), value)


# ------------------------------------------------------------ other strategies


def test_fedprox_survives_a_failing_site_and_it_rejoins(
    fed_manifest, tiny_settings, tmp_path: Path
) -> None:
    failing = fed_manifest.site_names[1]
    result = run_federated(
        fed_manifest,
        *tiny_settings,
        FederatedConfig(
            strategy="fedprox",
            mu=0.5,
            rounds=2,
            local_steps=1,
            min_fit=2,
            min_available=3,
            faults=[Fault(site=failing, round=1)],
        ),
        tmp_path / "out",
    )
    first, second = result.rounds
    assert first["clients"][failing]["status"] == "failed"
    assert first["clients"][failing]["error"] == "fault/injected"
    assert result.data["status"] == "degraded"
    assert first["aggregated"] is True
    others = [s for s in fed_manifest.site_names if s != failing]
    assert all(first["clients"][s]["status"] == "ok" for s in others)
    assert all(c["status"] == "ok" for c in second["clients"].values())
    assert result.data["config"]["mu"] == 0.5


def test_round_below_min_fit_keeps_the_global_weights(
    fed_manifest, tiny_settings, tmp_path: Path
) -> None:
    from medfleet.federated.job import FederatedJob
    from medfleet.federated.site import build_federated_model
    from medfleet.models import load_model
    from medfleet.models.files import MODEL_FILE

    sites = fed_manifest.site_names
    with pytest.raises(MedfleetError, match="round 1 was not aggregated") as info:
        run_federated(
            fed_manifest,
            *tiny_settings,
            FederatedConfig(
                strategy="lora",
                rounds=1,
                local_steps=1,
                min_fit=3,
                min_available=3,
                faults=[Fault(site=sites[0], round=1)],
            ),
            tmp_path / "out",
        )
    result = info.value.result  # type: ignore[attr-defined]
    assert result.data["status"] == "failed"
    record = result.rounds[0]
    assert record["aggregated"] is False and "min_fit=3" in record["note"]
    job = FederatedJob.load(result.out)
    initial = build_federated_model(job, fed_manifest, None)
    final = load_model(result.out / "global" / MODEL_FILE, fed_manifest)
    keys = P.exchange_keys(initial, job.federated)
    before, after = P.get_arrays(initial, keys), P.get_arrays(final, keys)
    for key in keys:
        np.testing.assert_array_equal(before[key], after[key])


def test_dp_clips_every_update_and_adds_noise(fed_manifest, tiny_settings, tmp_path: Path) -> None:
    from medfleet.federated.privacy import dp_epsilon

    log: list[dict] = []
    clip, noise = 0.01, 0.5
    result = run_federated(
        fed_manifest,
        *tiny_settings,
        FederatedConfig(strategy="lora", rounds=1, local_steps=2, dp_clip=clip, dp_noise=noise),
        tmp_path / "out",
        client_mods=[_inspector(log)],
    )
    trained = [e for e in log if e["in"].metadata.message_type == "train"]
    assert len(trained) == 3
    for entry in trained:
        sent = {k: v.numpy() for k, v in entry["out"].content["arrays"].items()}
        got = {k: v.numpy() for k, v in entry["in"].content["arrays"].items()}
        assert P.update_norm(sent, got) <= clip
        assert entry["out"].content["metrics"]["update-norm"] > clip  # clipping did act
    # every site holds every travelling key: std = noise multiplier * clip / 3 sites
    dp = result.rounds[0]["dp"]
    assert dp["weighting"] == "equal per site" and set(dp["noise_std_by_holders"]) == {"3"}
    assert dp["noise_std_by_holders"]["3"] == pytest.approx(noise * clip / 3)
    assert dp["replies_over_clip"] == 0  # the sites clipped (float32 included)
    privacy = result.data["privacy"]
    assert privacy["enabled"] is True and privacy["sampling_amplification"] is False
    assert privacy["epsilon"] == pytest.approx(dp_epsilon(noise, 1, 1e-5))


def test_fedprox_adds_the_proximal_term_to_the_client_loss(fed_manifest) -> None:
    from types import SimpleNamespace

    from medfleet.federated.site import SiteWorker

    cfg = FederatedConfig(strategy="lora", blocks=[-1])
    model = _build(fed_manifest, cfg)
    model.eval()
    keys = P.exchange_keys(model, cfg)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if n in keys}
    images, targets = torch.randn(2, 1, 32, 32), torch.tensor([0, 1])
    with torch.no_grad():
        out = model(images, "lesion_cls")
        base, _ = model.loss("lesion_cls", out, targets)
        name = keys[0]
        delta = torch.full_like(anchor[name], 0.1)
        dict(model.named_parameters())[name].add_(delta)
        holder = SimpleNamespace(model=model)
        SiteWorker._add_proximal_term(holder, anchor, mu=2.0)
        with_prox, _ = model.loss("lesion_cls", out, targets)
    # mu/2 * ||delta||^2 with mu = 2
    assert float(with_prox - base) == pytest.approx(float((delta**2).sum()), rel=1e-4)
    model.__dict__.pop("loss")
