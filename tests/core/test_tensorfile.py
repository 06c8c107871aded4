"""The one reader of model, checkpoint and state files: round trips, and nothing ever runs."""

from __future__ import annotations

import json
import math
import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from medfleet.errors import MedfleetError
from medfleet.utils.tensorfile import (
    TensorFileError,
    read_legacy_torch_file,
    read_tensor_file,
    tensor_file_kind,
    write_tensor_file,
)


class _RunsCode:
    """Unpickling this calls ``os.system``: what a crafted checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_pickle(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file that runs ``touch marker`` under ``weights_only=False``."""
    torch.save({"format": "medfleet-unified-model", "payload": _RunsCode(marker)}, path)
    return path


def test_the_crafted_file_does_run_code_with_a_plain_torch_load(tmp_path):
    """The oracle: the crafted file is a real attack, so refusing it means something."""
    marker = tmp_path / "ran"
    torch.load(crafted_pickle(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "last.safetensors", "local.pt"])
def test_a_crafted_pickle_is_refused_without_side_effects(tmp_path, name):
    marker = tmp_path / "ran"
    path = crafted_pickle(tmp_path / name, marker)
    with pytest.raises(TensorFileError, match="would run code when loaded; refused") as info:
        read_tensor_file(path, ("unified-model",))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TensorFileError, match="refused"):
        read_legacy_torch_file(path)
    assert not marker.exists()


def test_round_trip_keeps_types_the_trainer_needs(tmp_path):
    random.seed(3)
    np.random.seed(4)
    optimizer_like = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2)}},
        "param_groups": [{"params": [0], "betas": (0.9, 0.999), "lr": 1e-3, "foreach": None}],
    }
    payload = {
        "step": 7,
        "loss": float("nan"),
        "best": float("-inf"),
        "optimizer": optimizer_like,
        "rng": {"python": random.getstate(), "numpy": np.random.get_state()},
        "history": [{"metric": "dice", "value": np.float64(0.5)}],
        "nested": {"__tuple__": "a key that looks like a marker"},
        "bool": torch.tensor([True, False]),
        "half": torch.arange(4, dtype=torch.bfloat16).reshape(2, 2).t(),  # not contiguous
    }
    path = write_tensor_file(tmp_path / "s.safetensors", payload, "training-checkpoint")
    back = read_tensor_file(path, ("training-checkpoint",))
    assert back["__kind__"] == "training-checkpoint"
    assert back["step"] == 7 and math.isnan(back["loss"]) and back["best"] == -math.inf
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert list(back["optimizer"]["state"]) == [0]  # integer keys stay integers
    torch.testing.assert_close(back["optimizer"]["state"][0]["exp_avg"], torch.ones(2, 2))
    random.setstate(back["rng"]["python"])
    np.random.set_state(back["rng"]["numpy"])
    assert (random.random(), np.random.rand()) == _draws(3, 4)
    assert back["history"][0]["value"] == 0.5 and type(back["history"][0]["value"]) is float
    assert back["nested"] == {"__tuple__": "a key that looks like a marker"}
    assert back["bool"].tolist() == [True, False]
    assert torch.equal(back["half"], payload["half"])


def _draws(python_seed: int, numpy_seed: int) -> tuple[float, float]:
    random.seed(python_seed)
    np.random.seed(numpy_seed)
    return random.random(), np.random.rand()


def test_shared_tensors_are_stored(tmp_path):
    weight = torch.randn(3, 3)
    payload = {"a": weight, "b": weight, "view": weight[0]}
    back = read_tensor_file(write_tensor_file(tmp_path / "t.safetensors", payload, "k"), ("k",))
    assert all(torch.equal(back[k], payload[k]) for k in payload)


def test_writing_a_python_object_fails_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="cannot be stored"):
        write_tensor_file(tmp_path / "x.safetensors", {"f": print}, "k")
    assert list(tmp_path.iterdir()) == []


def _valid(tmp_path: Path) -> Path:
    return write_tensor_file(tmp_path / "ok.safetensors", {"w": torch.ones(64)}, "unified-model")


def test_truncated_file_names_the_file(tmp_path):
    path = _valid(tmp_path)
    data = path.read_bytes()
    for cut in (4, 40, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(TensorFileError, match="truncated") as info:
            read_tensor_file(path, ("unified-model",))
        assert str(path) in str(info.value) and "fix:" in str(info.value)


def test_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(TensorFileError, match=r"empty\.safetensors: file is empty"):
        read_tensor_file(empty, ("unified-model",))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(TensorFileError, match=r"garbage\.safetensors"):
        read_tensor_file(garbage, ("unified-model",))
    with pytest.raises(TensorFileError, match="is a folder"):
        read_tensor_file(tmp_path, ("unified-model",))


def test_plain_safetensors_weights_are_named_as_such(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(TensorFileError, match="without medfleet's header"):
        read_tensor_file(path, ("unified-model",))


def test_a_file_of_another_kind_is_refused_with_its_kind(tmp_path):
    path = write_tensor_file(tmp_path / "s.safetensors", {"x": 1}, "site-state")
    with pytest.raises(
        TensorFileError, match="is a medfleet site-state file, not a medfleet model"
    ):
        read_tensor_file(path, ("unified-model",), what="medfleet model")
    assert tensor_file_kind(path) == "site-state"


def _with_header(path: Path, inner: str) -> Path:
    header = json.dumps({"__metadata__": {"medfleet": inner}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_damaged_or_hostile_headers_are_clean_errors(tmp_path):
    cases = {
        "dangling": json.dumps({"kind": "k", "payload": {"w": {"__tensor__": "missing"}}}),
        "not-json": "{",
        "deep": '{"kind": "k", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "object-dtype": json.dumps(
            {"kind": "k", "payload": {"a": {"__ndarray__": "a", "dtype": "|O"}}}
        ),
        "bad-items": json.dumps({"kind": "k", "payload": {"__items__": [[1, 2, 3]]}}),
    }
    for name, inner in cases.items():
        path = _with_header(tmp_path / f"{name}.safetensors", inner)
        with pytest.raises(MedfleetError) as info:
            read_tensor_file(path, ("k",))
        assert str(path) in str(info.value), name


def test_legacy_torch_files_of_tensors_still_load(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": "f", "state_dict": {"w": torch.ones(2)}, "n": (1, 2)}, path)
    back = read_tensor_file(path, ("unified-model",))
    assert back["__kind__"] == "legacy" and back["n"] == (1, 2)
    assert tensor_file_kind(path) == "legacy"


def test_a_header_length_starting_with_the_pickle_byte_is_still_safetensors(tmp_path):
    """The first byte of a safetensors file is its header length's low byte: 0x80 happens."""
    for pad in range(256):
        path = write_tensor_file(tmp_path / "m.safetensors", {"pad": "x" * pad}, "k")
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no header length ending in 0x80 found")
    assert tensor_file_kind(path) == "k"
    assert read_tensor_file(path, ("k",))["pad"] == "x" * pad
