"""NumPy ``.npy`` files and ``.npz`` archives.

Every axis counts as spatial with spacing 1.0 (arrays carry no physical size). ``#key=NAME``
picks an array of an ``.npz`` (needed unless the archive holds exactly one); ``#index=N``
picks item N along axis 0 and reads only that item's bytes when the layout allows it.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from medfleet.data.io.common import (
    check_options,
    int_option,
    item_shape,
    make_meta,
    require_file,
    wrap_errors,
)
from medfleet.data.io.image_data import ImageData
from medfleet.errors import ImageReadError


def _image(path: Path, kind: str, array: np.ndarray, **extra: Any) -> ImageData:
    if array.ndim == 0:
        raise ImageReadError(path, "the array is a scalar, not an image", "store at least 1 axis")
    return ImageData(array, (1.0,) * array.ndim, make_meta(kind, path, **extra))


_SCALAR_INDEX = "'index' needs an array with at least one axis, this one is a scalar"


def read_npy(path: Path, options: dict[str, str]) -> ImageData:
    """Read a ``.npy`` file (``#index=N`` reads one item through a memory map).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
        >>> np.save(p, np.arange(12).reshape(3, 4))
        >>> read_npy(p, {"index": "2"}).array.tolist()
        [8, 9, 10, 11]
    """
    check_options(path, options, ("index",), "NumPy .npy")
    index = int_option(path, options, "index")
    require_file(path)
    with wrap_errors(path, "NumPy .npy file"):
        with open(path, "rb") as fh:
            shape, _, dtype = _read_npy_header(fh)
            data_start = fh.tell()
        _check_npy_size(path, shape, dtype, path.stat().st_size - data_start)
        if index is None:
            array = np.load(path, allow_pickle=False)
        else:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            item_shape(path, mapped.shape, index, _SCALAR_INDEX)
            array = np.array(mapped[index])
            del mapped
    extra = {} if index is None else {"index": index}
    return _image(path, "npy", array, **extra)


def read_npy_header(
    path: Path, options: dict[str, str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (shape, spacing) of a ``.npy`` file from its header."""
    check_options(path, options, ("index",), "NumPy .npy")
    index = int_option(path, options, "index")
    require_file(path)
    with wrap_errors(path, "NumPy .npy file"), open(path, "rb") as fh:
        shape, _, _ = _read_npy_header(fh)
    return _header_shape(path, shape, index)


def _read_npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    raise ValueError(f"unsupported .npy format version {version}")


def _check_npy_size(path: Path, shape: tuple[int, ...], dtype: np.dtype, available: int) -> None:
    """Refuse a header whose shape needs more bytes than follow it (before allocating them)."""
    if dtype.hasobject:
        return  # refused by np.load(allow_pickle=False) with its own message
    needed = math.prod(shape) * dtype.itemsize
    if needed > available:
        raise ImageReadError(
            path,
            f"the array is truncated or its header is corrupt: the header declares shape "
            f"{tuple(shape)} of {dtype} ({needed} bytes) but {max(available, 0)} bytes of "
            "data follow it",
            "save the array again",
        )


def _header_shape(
    path: Path, shape: tuple[int, ...], index: int | None
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    shape = item_shape(path, shape, index, _SCALAR_INDEX)
    if not shape:
        raise ImageReadError(path, "the array is a scalar, not an image", "store at least 1 axis")
    return tuple(int(s) for s in shape), (1.0,) * len(shape)


def _member(path: Path, archive: zipfile.ZipFile, key: str | None) -> tuple[str, str]:
    members = {n[:-4] if n.endswith(".npy") else n: n for n in archive.namelist()}
    names = sorted(members)
    if key is None:
        if len(members) == 1:
            return names[0], members[names[0]]
        example = names[0] if names else "NAME"
        raise ImageReadError(
            path,
            f"the archive holds {len(names)} arrays ({', '.join(names) or 'none'}); say which one",
            f"append '#key={example}' to the reference",
        )
    if key not in members:
        raise ImageReadError(
            path,
            f"no array named {key!r}; available: {', '.join(names) or 'none'}",
            "use one of the available names in '#key=...'",
        )
    return key, members[key]


def read_npz(path: Path, options: dict[str, str]) -> ImageData:
    """Read one array of an ``.npz`` archive, or one item of it with ``#index=N``.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
        >>> np.savez(p, images=np.arange(8).reshape(2, 2, 2), labels=np.array([0, 1]))
        >>> img = read_npz(p, {"key": "images", "index": "1"})
        >>> img.array.tolist(), img.meta["key"], img.spacing
        ([[4, 5], [6, 7]], 'images', (1.0, 1.0))
    """
    check_options(path, options, ("key", "index"), "NumPy .npz")
    index = int_option(path, options, "index")
    require_file(path)
    with wrap_errors(path, "NumPy .npz archive"), zipfile.ZipFile(path) as archive:
        key, name = _member(path, archive, options.get("key"))
        with archive.open(name) as fh:
            shape, fortran, dtype = _read_npy_header(fh)
            data_start = fh.tell()
        _check_npy_size(path, shape, dtype, archive.getinfo(name).file_size - data_start)
        item = item_shape(path, shape, index, _SCALAR_INDEX)
        if index is None or fortran or dtype.hasobject:
            with archive.open(name) as fh:
                array = np.lib.format.read_array(fh, allow_pickle=False)
            if index is not None:
                array = np.array(array[index])
        else:
            item_bytes = int(np.prod(item, dtype=np.int64)) * dtype.itemsize
            with archive.open(name) as fh:
                fh.seek(data_start + index * item_bytes)
                raw = fh.read(item_bytes)
            if len(raw) != item_bytes:
                raise ImageReadError(path, f"array {key!r} is truncated", "re-create the archive")
            array = np.frombuffer(raw, dtype=dtype).reshape(item).copy()
    extra: dict[str, Any] = {"key": key}
    if index is not None:
        extra["index"] = index
    return _image(path, "npz", array, **extra)


def read_npz_header(
    path: Path, options: dict[str, str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (shape, spacing) of one array of an ``.npz`` archive from its header."""
    check_options(path, options, ("key", "index"), "NumPy .npz")
    index = int_option(path, options, "index")
    require_file(path)
    with wrap_errors(path, "NumPy .npz archive"), zipfile.ZipFile(path) as archive:
        _, name = _member(path, archive, options.get("key"))
        with archive.open(name) as fh:
            shape, _, _ = _read_npy_header(fh)
    return _header_shape(path, shape, index)
