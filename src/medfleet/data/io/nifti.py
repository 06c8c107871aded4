"""NIfTI-1/2 volumes (``.nii``, ``.nii.gz``) through nibabel.

Arrays keep nibabel's index order (i, j, k[, t]) with no transposition; spacing comes from
the header zooms and ``meta["affine"]`` holds the voxel-to-world matrix as a 4x4 list.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.io.common import (
    ImageWriteError,
    check_options,
    make_meta,
    require_file,
    wrap_errors,
)
from medfleet.data.io.image_data import ImageData, check_spacing
from medfleet.errors import ImageReadError
from medfleet.utils.atomic import atomic_open

SUFFIXES = (".nii", ".nii.gz")


def _load(path: Path) -> Any:
    import nibabel as nib

    require_file(path)
    with wrap_errors(path, "NIfTI file"):
        image = nib.load(str(path), mmap=False)
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageReadError(path, f"not a NIfTI image (nibabel read a {type(image).__name__})")
    return image


_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001}
# deflate expands at most ~1032-fold, so a .nii.gz of N bytes holds at most this many times N
_GZIP_MAX_RATIO = 1100


def _check_data_size(path: Path, image: Any) -> None:
    """Refuse a header that declares more voxel bytes than the file can hold.

    nibabel allocates the whole declared array before reading, so a corrupt shape or data
    type field would otherwise ask for gigabytes (or fail with a bare ``MemoryError``).
    """
    header = image.header
    shape = tuple(int(s) for s in image.shape)
    dtype = np.dtype(header.get_data_dtype())
    offset = int(getattr(image.dataobj, "offset", None) or header.get_data_offset())
    needed = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    gz = path.name.lower().endswith(".gz")
    limit = size * _GZIP_MAX_RATIO if gz else size
    if needed > limit:
        holds = (
            f"a gzip file of {size} bytes holds at most about {limit} bytes"
            if gz
            else f"the file holds {size} bytes"
        )
        raise ImageReadError(
            path,
            f"the file is truncated or its header is corrupt: the header declares shape "
            f"{shape} of {dtype} after {offset} header bytes ({needed} bytes in all), "
            f"but {holds}",
            "re-export the file",
        )


def _spacing(path: Path, header: Any, ndim: int, warnings: list[str]) -> tuple[float, ...]:
    # str() of a float32 is its shortest decimal form, so 0.8 stored as float32 reads as 0.8
    zooms = [float(str(np.float32(z))) for z in header.get_zooms()[:ndim]]
    zooms += [1.0] * (ndim - len(zooms))
    fixed = [z if math.isfinite(z) and z > 0 else 1.0 for z in zooms]
    if fixed != zooms:
        warnings.append(f"header zooms {zooms} hold non-positive values; used 1.0 for those axes")
    unit = header.get_xyzt_units()[0]
    factor = _TO_MM.get(unit, 1.0)  # "unknown" units are taken as mm, as other tools do
    if factor != 1.0:
        fixed[:3] = [float(str(np.float32(z))) * factor for z in fixed[:3]]
        warnings.append(f"header spatial unit is {unit}; spacing converted to mm (affine is not)")
    return tuple(fixed)


def read_nifti(path: Path, options: dict[str, str]) -> ImageData:
    """Read a NIfTI file with its spacing and affine.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        options: Reference options (none are supported).

    Returns:
        The volume; ``meta`` adds ``"affine"``, ``"qform_code"``, ``"sform_code"``,
        ``"xyzt_units"`` and, for 4D data, ``"time_axis"`` (3).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = write_nifti(pathlib.Path(tempfile.mkdtemp()) / "v.nii.gz",
        ...                 np.zeros((4, 5, 6), np.int16), (0.5, 0.5, 2.0))
        >>> img = read_nifti(p, {})
        >>> img.array.shape, img.spacing
        ((4, 5, 6), (0.5, 0.5, 2.0))
    """
    check_options(path, options, (), "NIfTI")
    image = _load(path)
    with wrap_errors(path, "NIfTI file"):
        _check_data_size(path, image)
        array = np.asarray(image.dataobj)
        header = image.header
        affine = np.asarray(image.affine, dtype=float).tolist()
        qform_code = int(header["qform_code"])
        sform_code = int(header["sform_code"])
        units = header.get_xyzt_units()
    channel_axis = None
    if array.dtype.names:  # RGB24 / RGBA32 stored as a structured dtype
        array = np.stack([array[name] for name in array.dtype.names[:3]], axis=-1)
        channel_axis = -1
    ndim = array.ndim - (channel_axis is not None)
    meta = make_meta(
        "nifti",
        path,
        channel_axis=channel_axis,
        spacing_source="header",
        affine=affine,
        qform_code=qform_code,
        sform_code=sform_code,
        xyzt_units=list(units),
    )
    if ndim >= 4:
        meta["time_axis"] = 3
    spacing = _spacing(path, header, ndim, meta["warnings"])
    return ImageData(array, spacing, meta)


def read_nifti_header(
    path: Path, options: dict[str, str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (spatial shape, spacing) from the NIfTI header without reading voxels.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = write_nifti(pathlib.Path(tempfile.mkdtemp()) / "v.nii",
        ...                 np.zeros((4, 5), np.uint8), (0.5, 2.0))
        >>> read_nifti_header(p, {})
        ((4, 5), (0.5, 2.0))
    """
    check_options(path, options, (), "NIfTI")
    image = _load(path)
    with wrap_errors(path, "NIfTI file"):
        shape = tuple(int(s) for s in image.shape)
        return shape, _spacing(path, image.header, len(shape), [])


def _storable(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        info = np.iinfo(np.int32)
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            return array.astype(np.int32)
        return array
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind not in "iufc":
        raise ImageWriteError(
            path, f"dtype {array.dtype} cannot be stored in NIfTI", "cast to a number type"
        )
    return array


def write_nifti(
    path: str | Path,
    array: np.ndarray,
    spacing: Sequence[float],
    affine: np.ndarray | Sequence[Sequence[float]] | None = None,
    *,
    compresslevel: int = 1,
) -> Path:
    """Write ``array`` as NIfTI-1, atomically and with reproducible bytes.

    ``.nii.gz`` output is gzip-compressed with a zero timestamp and no embedded file name,
    so identical inputs give byte-identical files. Booleans are stored as uint8, 64-bit
    integers as int32 when their values fit, float16 as float32.

    Args:
        path: Destination ending in ``.nii`` or ``.nii.gz``.
        array: Voxels in (i, j, k[, t]) order.
        spacing: One positive value per array axis (mm, then seconds for a time axis).
        affine: 4x4 voxel-to-world matrix; defaults to ``diag(spacing[:3], 1)``. Its column
            lengths must match ``spacing``.
        compresslevel: gzip level for ``.nii.gz`` (1 is fast; 9 is small).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ImageWriteError: When the suffix, spacing, affine or dtype is unusable.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> a = write_nifti(d / "a.nii.gz", np.ones((2, 3, 4), np.float32), (1.0, 1.0, 3.0))
        >>> b = write_nifti(d / "b.nii.gz", np.ones((2, 3, 4), np.float32), (1.0, 1.0, 3.0))
        >>> a.read_bytes() == b.read_bytes()
        True
    """
    import nibabel as nib

    path = Path(path)
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise ImageWriteError(path, "a NIfTI file name must end in .nii or .nii.gz", "rename it")
    data = _storable(path, np.asarray(array))
    if not 1 <= data.ndim <= 7:
        raise ImageWriteError(path, f"NIfTI holds 1 to 7 axes, the array has {data.ndim}")
    checked = check_spacing(spacing, data.ndim)
    if isinstance(checked, str):
        raise ImageWriteError(path, checked, "pass one positive spacing value per array axis")
    spatial = list(checked[:3]) + [1.0] * (3 - min(3, data.ndim))
    if affine is None:
        matrix = np.diag([*spatial, 1.0])
    else:
        matrix = np.asarray(affine, dtype=float)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise ImageWriteError(
                path, f"affine must be a finite 4x4 matrix, got shape {matrix.shape}"
            )
        if not np.allclose(matrix[3], [0, 0, 0, 1]):
            raise ImageWriteError(path, f"affine's last row must be [0, 0, 0, 1], got {matrix[3]}")
        lengths = np.linalg.norm(matrix[:3, :3], axis=0)
        n = min(3, data.ndim)
        if not np.allclose(lengths[:n], spatial[:n], rtol=1e-4, atol=1e-6):
            raise ImageWriteError(
                path,
                f"affine column lengths {lengths[:n].round(6).tolist()} disagree with spacing "
                f"{list(checked[:n])}",
                "pass the spacing the affine implies, or no affine",
            )
    image = nib.Nifti1Image(data, matrix, dtype=data.dtype)
    image.set_qform(matrix, code=1)
    image.set_sform(matrix, code=1)
    image.header.set_zooms(checked)
    image.header.set_xyzt_units("mm", "sec")
    with atomic_open(path, "wb") as fh:
        if name.endswith(".gz"):
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=fh, compresslevel=compresslevel, mtime=0
            ) as gz:
                image.to_stream(gz)
        else:
            image.to_stream(fh)
    return path
