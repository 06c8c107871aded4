"""HDF5 datasets through h5py (``.h5``, ``.hdf5``).

``#dataset=NAME`` picks a dataset (a path such as ``group/images`` works; it may be left out
when the file holds exactly one dataset); ``#index=N`` reads only item N along axis 0. A
dataset attribute ``spacing`` gives the spacing: either one value per axis of what is read,
or one per axis of the whole dataset when ``index`` drops axis 0. Otherwise spacing is 1.0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.io.common import (
    check_options,
    int_option,
    item_shape,
    make_meta,
    require_file,
    wrap_errors,
)
from medfleet.data.io.image_data import ImageData, check_spacing
from medfleet.errors import ImageReadError

SUFFIXES = (".h5", ".hdf5")
_LISTED = 20


def _dataset_names(handle: Any) -> list[str]:
    import h5py

    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            names.append(name)

    handle.visititems(visit)
    return sorted(names)


def _dataset(path: Path, handle: Any, name: str | None) -> Any:
    import h5py

    if name is not None:
        obj = handle.get(name)
        if isinstance(obj, h5py.Dataset):
            return obj
    names = _dataset_names(handle)
    listed = ", ".join(names[:_LISTED]) + (
        f", ... ({len(names)} in all)" if len(names) > _LISTED else ""
    )
    if name is None:
        if len(names) == 1:
            return handle[names[0]]
        raise ImageReadError(
            path,
            f"the file holds {len(names)} datasets ({listed or 'none'}); say which one",
            f"append '#dataset={names[0] if names else 'NAME'}' to the reference",
        )
    what = "a group, not a dataset" if name in handle else "not in the file"
    raise ImageReadError(
        path,
        f"dataset {name!r} is {what}; available datasets: {listed or 'none'}",
        "use one of the available names in '#dataset=...'",
    )


def _spacing(path: Path, dataset: Any, ndim: int, indexed: bool) -> tuple[tuple[float, ...], str]:
    if "spacing" not in dataset.attrs:
        return (1.0,) * ndim, "default"
    values = np.asarray(dataset.attrs["spacing"], dtype=float).reshape(-1)
    if indexed and len(values) == ndim + 1:
        values = values[1:]
    checked = check_spacing(values, ndim)
    if isinstance(checked, str):
        raise ImageReadError(
            path,
            f"dataset {dataset.name!r} has an unusable 'spacing' attribute: {checked}",
            "store one positive value per axis of the dataset in its 'spacing' attribute",
        )
    return checked, "attribute"


def _shape(path: Path, dataset: Any, index: int | None) -> tuple[int, ...]:
    shape = tuple(int(s) for s in dataset.shape or ())
    shape = item_shape(
        path, shape, index, f"'index' needs an array with axes; {dataset.name!r} is a scalar"
    )
    if not shape:
        raise ImageReadError(path, f"dataset {dataset.name!r} is a scalar, not an image")
    if dataset.dtype.kind not in "biuf":
        raise ImageReadError(
            path, f"dataset {dataset.name!r} has non-numeric dtype {dataset.dtype}"
        )
    return shape


def read_hdf5(path: Path, options: dict[str, str]) -> ImageData:
    """Read a dataset (or one item of it) from an HDF5 file.

    Example:
        >>> import tempfile, pathlib, h5py, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.h5"
        >>> with h5py.File(p, "w") as f:
        ...     f.create_dataset("img", data=np.zeros((3, 4, 5))).attrs["spacing"] = [2.0, 0.5, 0.5]
        >>> img = read_hdf5(p, {"dataset": "img", "index": "1"})
        >>> img.array.shape, img.spacing
        ((4, 5), (0.5, 0.5))
    """
    import h5py

    check_options(path, options, ("dataset", "index"), "HDF5")
    index = int_option(path, options, "index")
    require_file(path)
    with wrap_errors(path, "HDF5 file"), h5py.File(path, "r") as handle:
        dataset = _dataset(path, handle, options.get("dataset"))
        shape = _shape(path, dataset, index)
        array = np.asarray(dataset[index] if index is not None else dataset[()])
        spacing, source = _spacing(path, dataset, len(shape), index is not None)
        name = dataset.name.lstrip("/")
    extra: dict[str, Any] = {"dataset": name}
    if index is not None:
        extra["index"] = index
    return ImageData(array, spacing, make_meta("hdf5", path, spacing_source=source, **extra))


def read_hdf5_header(
    path: Path, options: dict[str, str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (shape, spacing) of an HDF5 dataset without reading its values."""
    import h5py

    check_options(path, options, ("dataset", "index"), "HDF5")
    index = int_option(path, options, "index")
    require_file(path)
    with wrap_errors(path, "HDF5 file"), h5py.File(path, "r") as handle:
        dataset = _dataset(path, handle, options.get("dataset"))
        shape = _shape(path, dataset, index)
        spacing, _ = _spacing(path, dataset, len(shape), index is not None)
    return shape, spacing
