"""A DICOM series stored as one file per slice in a folder, stacked into a volume.

Slices are ordered by ``ImagePositionPatient`` projected on the slice normal (the cross
product of the two ``ImageOrientationPatient`` direction cosines), falling back to
``InstanceNumber``. The volume is ``(slices, rows, cols)`` with spacing
``(slice spacing, row spacing, col spacing)``; the slice spacing is the median distance
between neighbouring positions. Uneven gaps (more than 1 % from the median) are reported in
``meta["warnings"]``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.io.common import make_meta, wrap_errors
from medfleet.data.io.dicom import (
    SUFFIXES,
    dcmread,
    decode_pixels,
    is_dicom_file,
    is_image_dataset,
    pixel_spacing,
    read_dicom_file,
    read_dicom_file_header,
    rescale_of,
    slice_normal,
    tags_of_interest,
)
from medfleet.data.io.image_data import ImageData
from medfleet.errors import ImageReadError

SERIES_FIX = "point at a folder that holds the files of exactly one series"
UNEVEN_TOLERANCE = 0.01


@dataclass
class SeriesPlan:
    """Sorted slices of one series and the geometry derived from their headers."""

    directory: Path
    files: list[Path]
    headers: list[Any]
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    multiframe_file: Path | None = None  # set when the folder holds one multi-frame file


def _dicom_files(directory: Path) -> tuple[list[tuple[Path, Any]], list[str]]:
    found: list[tuple[Path, Any]] = []
    skipped: list[str] = []
    for path in sorted(
        p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
    ):
        if path.suffix.lower() not in SUFFIXES and not is_dicom_file(path):
            skipped.append(path.name)
            continue
        ds = dcmread(path, header_only=True)
        if is_image_dataset(ds):
            found.append((path, ds))
        else:
            skipped.append(path.name)
    return found, skipped


def _one_series(directory: Path, found: list[tuple[Path, Any]]) -> None:
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for _, ds in found)
    if len(series) <= 1:
        return
    described = []
    for uid, count in sorted(series.items()):
        example = next(ds for _, ds in found if str(ds.get("SeriesInstanceUID", "")) == uid)
        label = str(example.get("SeriesDescription", "") or "").strip()
        described.append(
            f"{uid or '(no SeriesInstanceUID)'} ({count} files{', ' + label if label else ''})"
        )
    raise ImageReadError(
        directory, f"the folder mixes {len(series)} series: " + "; ".join(described), SERIES_FIX
    )


def _positions(headers: list[Any]) -> tuple[np.ndarray, np.ndarray, list[float]] | None:
    """(positions along the normal, normal, orientation) when every slice has them."""
    orientations = [h.get("ImageOrientationPatient") for h in headers]
    positions = [h.get("ImagePositionPatient") for h in headers]
    if any(o is None or len(o) != 6 for o in orientations) or any(
        p is None or len(p) != 3 for p in positions
    ):
        return None
    first = [float(v) for v in orientations[0]]
    normal = slice_normal(first)
    if normal is None:
        return None
    for o in orientations[1:]:
        if not np.allclose([float(v) for v in o], first, atol=1e-3):
            return None
    projected = np.asarray([float(np.dot([float(v) for v in p], normal)) for p in positions])
    return projected, normal, first


def _order(
    directory: Path, found: list[tuple[Path, Any]], meta: dict[str, Any], warnings: list[str]
) -> tuple[np.ndarray, np.ndarray, str]:
    """Slice order, gaps between sorted positions (empty without positions), order source."""
    headers = [ds for _, ds in found]
    geometry = _positions(headers)
    if geometry is None:
        numbers = [h.get("InstanceNumber") for h in headers]
        if all(n is not None for n in numbers):
            order, source = np.argsort([int(n) for n in numbers], kind="stable"), "InstanceNumber"
        else:
            order, source = np.arange(len(found)), "file name"
        warnings.append(
            "slices lack consistent ImagePositionPatient/ImageOrientationPatient; "
            f"ordered by {source}"
        )
        return order, np.asarray([]), source
    projected, normal, orientation = geometry
    order = np.argsort(projected, kind="stable")
    positions = projected[order]
    gaps = np.diff(positions)
    if len(gaps) and np.any(gaps < 1e-4):
        i = int(np.argmin(gaps))
        a, b = found[order[i]][0].name, found[order[i + 1]][0].name
        raise ImageReadError(
            directory,
            f"{a} and {b} lie at the same slice position ({positions[i]:.4f} mm); the "
            "series seems to hold several time points, echoes or acquisitions",
            "split the files into one folder per time point/echo, or read files one by one",
        )
    meta.update(
        slice_positions=[float(p) for p in positions],
        slice_normal=[float(v) for v in normal],
        image_orientation=orientation,
    )
    return order, gaps, "ImagePositionPatient"


def _slice_gap(first: Any, gaps: np.ndarray, n: int, warnings: list[str]) -> tuple[float, str]:
    """Slice spacing: median gap between positions, else the tags of the first slice."""
    if len(gaps):
        median = float(np.median(gaps))
        if float(np.max(np.abs(gaps - median))) > UNEVEN_TOLERANCE * median:
            warnings.append(
                f"uneven slice spacing: gaps range {float(gaps.min()):.4f}-"
                f"{float(gaps.max()):.4f} mm; used the median {median:.4f} mm"
            )
        return median, "ImagePositionPatient"
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = first.get(keyword)
        if value not in (None, "") and float(value) > 0:
            return float(value), keyword
    if n > 1:
        warnings.append("no slice spacing in the headers; used 1.0 mm")
    return 1.0, "default"


def _check_layout(directory: Path, found: list[tuple[Path, Any]]) -> None:
    _one_series(directory, found)
    sizes = Counter((int(ds.Rows), int(ds.Columns)) for _, ds in found)
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c} ({n} files)" for (r, c), n in sorted(sizes.items()))
        raise ImageReadError(directory, f"slices have different sizes: {listed}", SERIES_FIX)
    multi = [p.name for p, ds in found if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi and len(found) > 1:
        raise ImageReadError(
            directory,
            f"the series holds multi-frame files ({', '.join(multi[:5])})",
            "read each multi-frame file on its own with read_image(file)",
        )


def plan_series(directory: str | Path) -> SeriesPlan:
    """Scan the headers of a series folder: order the slices and derive the geometry.

    Args:
        directory: Folder with the files of one series.

    Returns:
        The plan; pixels are not read.

    Raises:
        ImageReadError: When the folder holds no DICOM images, several series, slices of
            different sizes, several multi-frame files or several slices at one position.
    """
    directory = Path(directory)
    if not directory.is_dir():
        what = "folder not found" if not directory.exists() else "not a folder"
        raise ImageReadError(directory, what, SERIES_FIX)
    found, skipped = _dicom_files(directory)
    if not found:
        raise ImageReadError(directory, "no DICOM image files in the folder", SERIES_FIX)
    _check_layout(directory, found)
    path, ds = found[0]
    if len(found) == 1 and int(ds.get("NumberOfFrames", 1) or 1) > 1:
        shape, spacing = read_dicom_file_header(path, {})  # one enhanced multi-frame file
        return SeriesPlan(directory, [path], [ds], shape, spacing, multiframe_file=path)
    warnings: list[str] = []
    meta: dict[str, Any] = {}
    order, gaps, order_source = _order(directory, found, meta, warnings)
    files = [found[i][0] for i in order]
    headers = [found[i][1] for i in order]
    first = headers[0]
    between, slice_source = _slice_gap(first, gaps, len(files), warnings)
    in_plane, plane_source = pixel_spacing(first)
    if in_plane is None:
        in_plane = (1.0, 1.0)
        warnings.append("no PixelSpacing in the headers; used 1.0 mm")
    others = {pixel_spacing(h)[0] for h in headers[1:]} - {in_plane, None}
    if others:
        warnings.append(
            f"PixelSpacing differs between slices {sorted(others)}; used the first slice's"
        )
    if "image_orientation" in meta:
        orient = np.asarray(meta["image_orientation"], dtype=float)
        origin = np.asarray([float(v) for v in first.ImagePositionPatient])
        affine = np.eye(4)
        affine[:3, 0] = np.asarray(meta["slice_normal"]) * between
        affine[:3, 1] = orient[3:] * in_plane[0]
        affine[:3, 2] = orient[:3] * in_plane[1]
        affine[:3, 3] = origin
        meta.update(affine_lps=affine.tolist(), origin=origin.tolist())
    meta.update(
        files=[p.name for p in files],
        n_slices=len(files),
        order_source=order_source,
        spacing_source=f"{slice_source}+{plane_source}",
        skipped_files=skipped,
        warnings=warnings,
    )
    shape = (len(files), int(first.Rows), int(first.Columns))
    spacing = (between, float(in_plane[0]), float(in_plane[1]))
    return SeriesPlan(directory, files, headers, shape, spacing, meta)


def read_dicom_series(directory: str | Path) -> ImageData:
    """Read all slices of one DICOM series in a folder as a ``(slices, rows, cols)`` volume.

    Non-DICOM files (no ``.dcm`` suffix and no ``DICM`` preamble) and DICOMDIR files are
    skipped. When any slice has a rescale other than the identity, each slice is rescaled by
    its own slope/intercept and the volume is float32.

    Args:
        directory: Folder with the files of exactly one series.

    Returns:
        The volume; ``meta`` adds ``"files"`` (sorted names), ``"slice_positions"``,
        ``"affine_lps"`` (voxel index (slice, row, col) to patient LPS mm), ``"origin"``,
        ``"order_source"``, ``"rescaled"`` and the tags of the first slice (modality,
        manufacturer, series uid, ...).

    Raises:
        ImageReadError: See :func:`plan_series`; also for unreadable pixel data.

    Example:
        >>> import tempfile, pathlib
        >>> try:
        ...     read_dicom_series(pathlib.Path(tempfile.mkdtemp()))
        ... except ImageReadError as err:
        ...     print(err.reason)
        no DICOM image files in the folder
    """
    plan = _plan(directory)
    if plan.multiframe_file is not None:
        image = read_dicom_file(plan.multiframe_file, {})
        image.meta.update(format="dicom_series", series_path=str(plan.directory))
        return image
    with wrap_errors(plan.directory, "DICOM series"):
        return _read_planned(plan)


def _plan(directory: str | Path) -> SeriesPlan:
    """:func:`plan_series`, with an unusable header value reported against the folder."""
    with wrap_errors(directory, "DICOM series", SERIES_FIX):
        return plan_series(directory)


def _read_planned(plan: SeriesPlan) -> ImageData:
    volume: np.ndarray | None = None
    rescales = [rescale_of(h) for h in plan.headers]
    rescaled = any(pair != (1.0, 0.0) for pair in rescales)
    channel_axis = None
    for i, path in enumerate(plan.files):
        ds = dcmread(path, header_only=False)
        pixels = decode_pixels(path, ds)
        if pixels.shape[:2] != plan.shape[1:]:
            raise ImageReadError(
                path, f"decoded pixels have shape {pixels.shape}, expected {plan.shape[1:]}"
            )
        if volume is None:
            channel_axis = -1 if pixels.ndim == 3 else None
            dtype = np.float32 if rescaled and channel_axis is None else pixels.dtype
            volume = np.empty((plan.shape[0], *pixels.shape), dtype=dtype)
        elif pixels.shape != volume.shape[1:]:
            raise ImageReadError(
                path, f"pixels of shape {pixels.shape} differ from {volume.shape[1:]}", SERIES_FIX
            )
        if rescaled and channel_axis is None:
            slope, intercept = rescales[i]
            volume[i] = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        else:
            volume[i] = pixels
    assert volume is not None
    meta = make_meta(
        "dicom_series",
        plan.directory,
        channel_axis=channel_axis,
        **tags_of_interest(plan.headers[0]),
    )
    meta.update(plan.meta)
    meta.update(rescaled=rescaled and channel_axis is None)
    if meta["rescaled"]:
        meta["rescale_slope"], meta["rescale_intercept"] = rescales[0]
    return ImageData(volume, plan.spacing, meta)


def read_dicom_series_header(
    directory: Path, options: dict[str, str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (shape, spacing) of a series folder from the headers alone."""
    from medfleet.data.io.common import check_options

    check_options(directory, options, (), "DICOM series")
    plan = _plan(directory)
    return plan.shape, plan.spacing
