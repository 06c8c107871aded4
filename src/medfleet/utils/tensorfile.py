"""The one reader and writer of medfleet's model, checkpoint and state files.

Files that travel between sites (a trained model, a training checkpoint, a site's federated
state) must never be able to run code when they are opened. medfleet therefore writes them
as `safetensors <https://huggingface.co/docs/safetensors>`_ files: the tensors as raw bytes,
and everything else (configuration, task specifications, step counters, random states) as
JSON in the file's header. Reading such a file parses a length, a JSON document and byte
ranges; no unpickling takes place anywhere.

A nested payload (dicts, lists, tuples, numbers, strings, ``None``, tensors, NumPy arrays and
scalars) is split into a JSON *skeleton*, in which every tensor is replaced by a reference
``{"__tensor__": "<key>"}``, and a flat ``{key: tensor}`` mapping. Non-string dict keys
(an optimizer's parameter indices) and tuples (Python's random state) keep their type.

Files of earlier medfleet versions (``torch.save`` pickles, ``.pt``) are still read, through
:func:`read_legacy_torch_file`: ``torch.load(weights_only=True)`` with no extra safe globals,
so only tensors, containers and primitive values are accepted; a pickle that names any other
Python object is refused before anything is built from it.

Every failure is a :class:`TensorFileError` naming the file, what is wrong and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medfleet.errors import FileError
from medfleet.utils.atomic import atomic_path

METADATA_KEY = "medfleet"
"""Header metadata entry holding the JSON skeleton of a medfleet tensor file."""
SAFETENSORS_SUFFIX = ".safetensors"
"""File suffix of the tensor files medfleet writes."""
_TENSOR = "__tensor__"
_NDARRAY = "__ndarray__"
_TUPLE = "__tuple__"
_ITEMS = "__items__"
_FLOAT = "__float__"
_MARKERS = (_TENSOR, _NDARRAY, _TUPLE, _ITEMS, _FLOAT)

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


class TensorFileError(FileError):
    """A model, checkpoint or state file is missing, corrupt, foreign or unsafe.

    Example:
        >>> str(TensorFileError("run/model.safetensors", "file is empty (0 bytes)"))
        'cannot read run/model.safetensors: file is empty (0 bytes)'
    """

    action = "read"


# --------------------------------------------------------------------------- encoding
def _encode(value: Any, tensors: dict[str, Any], path: str) -> Any:
    """JSON skeleton of ``value``; tensors go into ``tensors`` under a key from ``path``."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return {_TENSOR: _store(tensors, path, value)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{path}: object arrays cannot be stored")
        stored = torch.from_numpy(np.ascontiguousarray(value))
        return {_NDARRAY: _store(tensors, path, stored), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return _encode(value.item(), tensors, path)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not any(k in _MARKERS for k in value):
            return {k: _encode(v, tensors, f"{path}/{k}") for k, v in value.items()}
        return {
            _ITEMS: [
                [_encode(k, tensors, f"{path}/key"), _encode(v, tensors, f"{path}/{k}")]
                for k, v in value.items()
            ]
        }
    raise TypeError(f"{path}: a {type(value).__name__} cannot be stored in a tensor file")


class _Tensors(dict):
    """The flat ``{key: tensor}`` mapping being written, and the memory it already holds."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()


def _store(tensors: dict[str, Any], path: str, tensor: Any) -> str:
    key = path.lstrip("/") or "tensor"
    if key in tensors:
        n = 1
        while f"{key}#{n}" in tensors:
            n += 1
        key = f"{key}#{n}"
    # safetensors refuses tensors that share memory: a tensor is copied only when its memory
    # is shared with one already stored or holds more than the tensor (a view)
    stored = tensor.detach().to("cpu").contiguous()
    storage = stored.untyped_storage()
    seen = tensors.seen if isinstance(tensors, _Tensors) else set()
    if storage.data_ptr() in seen or storage.nbytes() != stored.nbytes:
        stored = stored.clone()
        storage = stored.untyped_storage()
    seen.add(storage.data_ptr())
    tensors[key] = stored
    return key


def _decode(node: Any, tensors: dict[str, Any], source: Path) -> Any:
    """Inverse of :func:`_encode`; a dangling reference raises :class:`TensorFileError`."""
    if isinstance(node, list):
        return [_decode(v, tensors, source) for v in node]
    if not isinstance(node, dict):
        return node
    if _TENSOR in node:
        return _tensor(node[_TENSOR], tensors, source)
    if _NDARRAY in node:
        import numpy as np

        array = _tensor(node[_NDARRAY], tensors, source).numpy()
        dtype = np.dtype(str(node.get("dtype", array.dtype.str)))
        if dtype.kind not in "biufc":
            raise TensorFileError(source, f"names a non-numeric array type {dtype}", _CORRUPT_FIX)
        return array.astype(dtype, copy=False)
    if _FLOAT in node:
        return float(node[_FLOAT])
    if _TUPLE in node:
        return tuple(_decode(v, tensors, source) for v in node[_TUPLE])
    if _ITEMS in node:
        return {
            _hashable(_decode(k, tensors, source)): _decode(v, tensors, source)
            for k, v in node[_ITEMS]
        }
    return {k: _decode(v, tensors, source) for k, v in node.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _tensor(key: Any, tensors: dict[str, Any], source: Path) -> Any:
    if not isinstance(key, str) or key not in tensors:
        raise TensorFileError(
            source, f"its header refers to a tensor {key!r} the file does not hold", _CORRUPT_FIX
        )
    return tensors[key]


_CORRUPT_FIX = "the file is damaged; copy it again or use the previous file"


# --------------------------------------------------------------------------- writing
def write_tensor_file(path: str | Path, payload: dict[str, Any], kind: str) -> Path:
    """Write ``payload`` as a medfleet tensor file of ``kind``, atomically.

    Args:
        path: Destination (``.safetensors`` by convention).
        payload: Nested dicts/lists/tuples of tensors, NumPy arrays, numbers, strings and None.
        kind: What the file holds (``unified-model``, ``training-checkpoint``, ...); the reader
            checks it.

    Returns:
        The path written.

    Raises:
        TypeError: When the payload holds a value that cannot be stored (a defect of the caller).

    Example:
        >>> import tempfile, pathlib, torch
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.safetensors"
        >>> _ = write_tensor_file(p, {"step": 3, "w": torch.ones(2), "rng": (1, None)}, "demo")
        >>> back = read_tensor_file(p, kinds=("demo",))
        >>> back["step"], back["w"].tolist(), back["rng"]
        (3, [1.0, 1.0], (1, None))
    """
    from safetensors.torch import save_file

    tensors = _Tensors()
    skeleton = _encode(payload, tensors, "")
    header = json.dumps({"kind": kind, "payload": skeleton}, allow_nan=False, sort_keys=False)
    path = Path(path)
    with atomic_path(path, suffix=".tmp") as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: header})
    return path


# --------------------------------------------------------------------------- reading
def read_tensor_file(
    path: str | Path, kinds: Iterable[str], *, what: str | None = None, fix: str | None = None
) -> dict[str, Any]:
    """Read a medfleet tensor file whose kind is one of ``kinds``; no code runs.

    A ``torch.save`` file of an earlier medfleet is read with
    :func:`read_legacy_torch_file`; its payload must then carry a ``format`` matching
    ``kinds`` only through the caller's own check.

    Args:
        path: The file.
        kinds: Accepted kinds.
        what: How to call the file in messages (default: the first kind).
        fix: What the user should do when the file is of another kind.

    Returns:
        The payload, with ``"__kind__"`` set to the file's kind (``"legacy"`` for a pickle).

    Raises:
        TensorFileError: Missing, empty, truncated, corrupt, foreign or unsafe file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.safetensors"
        >>> _ = p.write_bytes(b"")
        >>> try:
        ...     read_tensor_file(p, kinds=("unified-model",))
        ... except TensorFileError as err:
        ...     print(err.reason)
        file is empty (0 bytes), probably an interrupted copy
    """
    kinds = tuple(kinds)
    what = what or kinds[0]
    path = Path(path)
    head = _head(path)
    if _is_torch_file(path, head):
        payload = read_legacy_torch_file(path)
        if not isinstance(payload, dict):
            raise TensorFileError(path, f"holds a {type(payload).__name__}, not a {what}", fix)
        return {**payload, "__kind__": "legacy"}
    header = _safetensors_header(path, head)
    kind = header.get("kind")
    if kind not in kinds:
        shown = str(kind)[:40] if kind else "unknown"
        raise TensorFileError(path, f"is a medfleet {shown} file, not a {what}", fix)
    tensors = _load_tensors(path)
    try:
        payload = _decode(header.get("payload"), tensors, path)
    except (ValueError, TypeError, KeyError, RecursionError):
        raise TensorFileError(path, "has a damaged medfleet header", _CORRUPT_FIX) from None
    if not isinstance(payload, dict):
        raise TensorFileError(path, "its header holds no payload", _CORRUPT_FIX)
    return {**payload, "__kind__": kind}


def tensor_file_kind(path: str | Path) -> str | None:
    """The kind of a medfleet tensor file, ``"legacy"`` for a torch pickle, else None.

    Reads only the header; never raises for a file that exists but is not medfleet's.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "n.txt"
        >>> _ = p.write_text("hello")
        >>> tensor_file_kind(p) is None
        True
    """
    path = Path(path)
    try:
        head = _head(path)
        if _is_torch_file(path, head):
            return "legacy"
        kind = _safetensors_header(path, head).get("kind")
    except TensorFileError:
        return None
    return str(kind) if kind else None


def _is_torch_file(path: Path, head: bytes) -> bool:
    """Whether the file is a ``torch.save`` file (zip archive or bare pickle), by content.

    A safetensors file starts with its header length (8 bytes, little-endian) followed by
    ``{``; that is checked first, since the length's first byte may be anything, 0x80 too.
    """
    if len(head) == 8:
        length = int.from_bytes(head, "little")
        if 0 < length <= path.stat().st_size - 8:
            with open(path, "rb") as fh:
                fh.seek(8)
                if fh.read(1) == b"{":
                    return False
    if head.startswith(_ZIP_MAGIC):
        return True
    return len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= 5


def _head(path: Path) -> bytes:
    if not path.exists():
        raise TensorFileError(path, "file not found", "check the path")
    if not path.is_file():
        raise TensorFileError(path, "is a folder, not a file", "give the file inside it")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise TensorFileError(
            path, exc.strerror or type(exc).__name__, "check its permissions"
        ) from None
    if not head:
        raise TensorFileError(
            path, "file is empty (0 bytes), probably an interrupted copy", "copy it again"
        )
    return head


def _safetensors_header(path: Path, head: bytes) -> dict[str, Any]:
    """The medfleet header of a safetensors file, checked for size and JSON syntax."""
    size = path.stat().st_size
    length = int.from_bytes(head.ljust(8, b"\0"), "little") if len(head) == 8 else -1
    if length <= 0 or length > min(size - 8, 100 * 1024 * 1024):
        raise TensorFileError(
            path,
            "is neither a medfleet tensor file (safetensors) nor a torch file, or it is truncated",
            "give a file written by medfleet; if it was, copy it again",
        )
    with open(path, "rb") as fh:
        fh.seek(8)
        raw = fh.read(length)
    try:
        header = json.loads(raw)
        metadata = header.get("__metadata__") or {}
        inner = metadata.get(METADATA_KEY)
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        raise TensorFileError(path, "has a damaged header", _CORRUPT_FIX) from None
    if inner is None:
        raise TensorFileError(
            path,
            "is a safetensors file without medfleet's header (plain weights, not a model, "
            "checkpoint or state file)",
            "plain weights are given with --weights; otherwise give a file written by medfleet",
        )
    try:
        parsed = json.loads(inner)
    except (ValueError, TypeError, RecursionError):
        raise TensorFileError(path, "has a damaged medfleet header", _CORRUPT_FIX) from None
    if not isinstance(parsed, dict):
        raise TensorFileError(path, "has a damaged medfleet header", _CORRUPT_FIX)
    return parsed


def _load_tensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        # copied out of the mapping: a file changed in place later cannot crash the process
        return {k: v.clone() for k, v in load_file(str(path), device="cpu").items()}
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TensorFileError(path, f"is truncated or corrupt ({reason})", _CORRUPT_FIX) from None


def read_legacy_torch_file(path: str | Path) -> Any:
    """Read a ``torch.save`` file without running code (``weights_only=True``, no extra globals).

    Only tensors, dicts, lists, tuples, numbers, strings and ``None`` are accepted. A pickle
    that names any other Python object (a class, a function such as ``os.system``) is refused
    before anything is built from it.

    Raises:
        TensorFileError: Missing, empty, truncated or corrupt file, or one that would run code.

    Example:
        >>> import tempfile, pathlib, torch
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.pt"
        >>> torch.save({"w": torch.zeros(1)}, p)
        >>> read_legacy_torch_file(p)["w"].tolist()
        [0.0]
    """
    import pickle

    import torch

    path = Path(path)
    _head(path)
    try:
        with open(path, "rb") as fh:  # a file object: torch picks no reader by the file's name
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "Unsupported global" in text:
            raise TensorFileError(
                path,
                "holds pickled Python objects that would run code when loaded; refused",
                "use only files written by medfleet, or re-save plain weights as .safetensors",
            ) from None
        raise TensorFileError(path, "is truncated or corrupt (bad pickle)", _CORRUPT_FIX) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TensorFileError(
            path, f"is truncated or corrupt ({type(exc).__name__}: {reason[:160]})", _CORRUPT_FIX
        ) from None
