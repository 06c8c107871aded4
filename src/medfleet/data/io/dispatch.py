"""Choose the reader for an image reference from its suffix (or DICOM preamble / folder)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from medfleet.data.io import arrays, dicom, dicom_series, hdf5, nifti, raster, video
from medfleet.data.io.common import check_options
from medfleet.data.io.image_data import ImageData, check_spacing
from medfleet.data.io.refs import parse_image_ref
from medfleet.errors import ImageReadError

Reader = Callable[[Path, dict[str, str]], ImageData]
HeaderReader = Callable[[Path, dict[str, str]], tuple[tuple[int, ...], tuple[float, ...]]]

_BY_SUFFIX: dict[str, str] = {
    **dict.fromkeys(nifti.SUFFIXES, "nifti"),
    **dict.fromkeys(dicom.SUFFIXES, "dicom"),
    **dict.fromkeys(raster.SUFFIXES, "raster"),
    **dict.fromkeys(video.SUFFIXES, "video"),
    **dict.fromkeys(hdf5.SUFFIXES, "hdf5"),
    ".npy": "npy",
    ".npz": "npz",
}


def _series(path: Path, options: dict[str, str]) -> ImageData:
    check_options(path, options, (), "DICOM series")
    return dicom_series.read_dicom_series(path)


_READERS: dict[str, tuple[Reader, HeaderReader]] = {
    "nifti": (nifti.read_nifti, nifti.read_nifti_header),
    "dicom": (dicom.read_dicom_file, dicom.read_dicom_file_header),
    "dicom_series": (_series, dicom_series.read_dicom_series_header),
    "raster": (raster.read_raster, raster.read_raster_header),
    "video": (video.read_video, video.read_video_header),
    "hdf5": (hdf5.read_hdf5, hdf5.read_hdf5_header),
    "npy": (arrays.read_npy, arrays.read_npy_header),
    "npz": (arrays.read_npz, arrays.read_npz_header),
}

SUPPORTED = ", ".join(sorted({*_BY_SUFFIX, "a DICOM series folder", "DICOM files without suffix"}))


def detect_format(path: Path) -> str:
    """Name of the reader for ``path``: by suffix, by ``DICM`` preamble, or folder -> series.

    Example:
        >>> detect_format(Path("scan.NII.GZ"))
        'nifti'
    """
    if path.is_dir():
        return "dicom_series"
    if path.name.lower().endswith(".nii.gz"):
        return "nifti"
    kind = _BY_SUFFIX.get(path.suffix.lower())
    if kind is not None:
        return kind
    if not path.exists():
        raise ImageReadError(
            path, "file not found", "check the path and the working directory it is relative to"
        )
    if path.is_file() and dicom.is_dicom_file(path):
        return "dicom"
    suffix = path.suffix or "(no suffix, and no DICOM preamble)"
    raise ImageReadError(path, f"unknown image format {suffix}", f"use one of: {SUPPORTED}")


def read_image(ref: str | os.PathLike[str], *, spacing: Sequence[float] | None = None) -> ImageData:
    """Read any supported image, volume, array, video frame or DICOM series.

    Args:
        ref: Path with optional options after ``#``: ``clip.mp4#frame=12``,
            ``data.npz#key=train_images&index=5``, ``data.h5#dataset=img&index=3``. A folder
            is read as a DICOM series.
        spacing: Overrides the file's spacing (mm per spatial axis, e.g. from a manifest).

    Returns:
        The image with its spacing and metadata (``meta["ref"]`` holds ``ref``).

    Raises:
        ImageReadError: For a missing, unknown, corrupt or truncated file, a bad option or
            a bad ``spacing``; the message names the file.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
        >>> np.savez(p, images=np.zeros((5, 3, 4)))
        >>> img = read_image(f"{p}#index=2", spacing=(0.5, 0.5))
        >>> img.array.shape, img.spacing, img.meta["spacing_source"]
        ((3, 4), (0.5, 0.5), 'override')
    """
    path, options = parse_image_ref(ref)
    reader, _ = _READERS[detect_format(path)]
    image = reader(path, options)
    image.meta["ref"] = os.fspath(ref)
    if spacing is None:
        return image
    checked = check_spacing(spacing, image.ndim_spatial)
    if isinstance(checked, str):
        raise ImageReadError(
            path,
            f"spacing override rejected: {checked}",
            f"give {image.ndim_spatial} finite positive values (mm per spatial axis)",
        )
    meta = {**image.meta, "spacing_source": "override", "file_spacing": image.spacing}
    return replace(image, spacing=checked, meta=meta)


def read_header(ref: str | os.PathLike[str]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (spatial shape, spacing) as cheaply as the format allows, without decoding pixels.

    Args:
        ref: Same references as :func:`read_image`.

    Returns:
        Shape of the spatial axes (a colour channel is left out) and the file's spacing.

    Raises:
        ImageReadError: As :func:`read_image`.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
        >>> np.save(p, np.zeros((2, 6, 7)))
        >>> read_header(f"{p}#index=1")
        ((6, 7), (1.0, 1.0))
    """
    path, options = parse_image_ref(ref)
    _, header = _READERS[detect_format(path)]
    return header(path, options)
