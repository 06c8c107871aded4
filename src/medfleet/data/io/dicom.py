"""Single DICOM files through pydicom: 2D images, multi-frame stacks and colour images.

A single-frame file gives ``(rows, cols)``, a multi-frame file ``(frames, rows, cols)``,
colour adds a trailing axis of 3. ``PixelSpacing`` gives (row, col) spacing; the frame axis
takes its spacing from per-frame positions, ``GridFrameOffsetVector``,
``SpacingBetweenSlices`` or ``SliceThickness``, in that order. A modality rescale
(``RescaleSlope``/``RescaleIntercept``) that is not the identity is applied and the result is
float32. Patient-identifying tags are never copied into ``meta``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.io.common import (
    check_index,
    check_options,
    int_option,
    make_meta,
    require_file,
    wrap_errors,
)
from medfleet.data.io.image_data import ImageData
from medfleet.errors import ImageReadError

SUFFIXES = (".dcm", ".dicom")
DICOMDIR_UID = "1.2.840.10008.1.3.10"
DECODER_FIX = (
    "install a decoder for this transfer syntax (e.g. pip install pylibjpeg pylibjpeg-libjpeg "
    "pylibjpeg-openjpeg) or decompress the file (e.g. gdcmconv --raw)"
)


def is_dicom_file(path: Path) -> bool:
    """Return True when ``path`` starts with the DICOM preamble (``DICM`` at byte 128).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
        >>> _ = p.write_bytes(bytes(128) + b"DICM")
        >>> is_dicom_file(p)
        True
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dcmread(path: Path, *, header_only: bool) -> Any:
    """Read a DICOM dataset, naming the file in any error.

    Files without the preamble are accepted when their suffix is ``.dcm``/``.dicom``.
    pydicom converts element values lazily, on first access, so a mangled value (an unknown
    VR, a bad length) fails only where a tag is read: every reader reads its tags inside
    :func:`~medfleet.data.io.common.wrap_errors`, which names the file.
    """
    import pydicom

    require_file(path)
    force = path.suffix.lower() in SUFFIXES
    with wrap_errors(path, "DICOM file"):
        ds = pydicom.dcmread(str(path), stop_before_pixels=header_only, force=force)
        meta = getattr(ds, "file_meta", None)
        if (
            meta is not None
            and "TransferSyntaxUID" not in meta
            and hasattr(ds, "original_encoding")
        ):
            implicit, little = ds.original_encoding
            if implicit is not None:
                uid = (
                    "1.2.840.10008.1.2"
                    if implicit
                    else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
                )
                meta.TransferSyntaxUID = uid
    return ds


def is_image_dataset(ds: Any) -> bool:
    """True when the dataset describes pixels (has Rows and Columns and is no DICOMDIR)."""
    sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    return sop != DICOMDIR_UID and "Rows" in ds and "Columns" in ds


def _first_item(ds: Any, *keywords: str) -> Any:
    """Follow nested sequences, taking the first item of each; None when any is missing."""
    node = ds
    for keyword in keywords:
        seq = getattr(node, keyword, None)
        if not seq:
            return None
        node = seq[0]
    return node


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _attr(ds: Any, keyword: str, group: str) -> Any:
    """A tag from the top level, else the shared, else the first per-frame functional group."""
    if keyword in ds and ds[keyword].value not in (None, ""):
        return ds[keyword].value
    for top in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        item = _first_item(ds, top, group)
        if item is not None and keyword in item and item[keyword].value not in (None, ""):
            return item[keyword].value
    return None


def pixel_spacing(ds: Any) -> tuple[tuple[float, float] | None, str]:
    """In-plane (row, col) spacing in mm and where it came from (None when absent).

    Uses ``PixelSpacing`` (also inside enhanced-DICOM functional groups), then
    ``ImagerPixelSpacing`` (projection radiography, at the detector), then ultrasound
    region calibration (``PhysicalDeltaY``/``PhysicalDeltaX`` in cm).
    """
    for keyword, source in (
        ("PixelSpacing", "PixelSpacing"),
        ("ImagerPixelSpacing", "ImagerPixelSpacing"),
    ):
        value = _attr(ds, keyword, "PixelMeasuresSequence")
        if value is not None and len(value) == 2:
            row, col = _number(value[0]), _number(value[1])
            if row and col and row > 0 and col > 0:
                return (row, col), source
    for region in getattr(ds, "SequenceOfUltrasoundRegions", None) or []:
        units_x = getattr(region, "PhysicalUnitsXDirection", None)
        units_y = getattr(region, "PhysicalUnitsYDirection", None)
        dx, dy = (
            _number(getattr(region, "PhysicalDeltaX", None)),
            _number(getattr(region, "PhysicalDeltaY", None)),
        )
        if units_x == 3 and units_y == 3 and dx and dy and dx > 0 and dy > 0:  # 3 = cm
            return (abs(dy) * 10.0, abs(dx) * 10.0), "SequenceOfUltrasoundRegions"
    return None, "default"


def slice_spacing(ds: Any) -> tuple[float | None, str]:
    """Spacing between frames of a multi-frame file (None when the file does not say)."""
    positions = _frame_positions(ds)
    if positions is not None and len(positions) > 1:
        diffs = np.abs(np.diff(positions))
        if np.all(diffs > 0):
            return float(np.median(diffs)), "ImagePositionPatient"
    offsets = getattr(ds, "GridFrameOffsetVector", None)
    if offsets is not None and len(offsets) > 1:
        diffs = np.abs(np.diff(np.asarray([float(v) for v in offsets])))
        if np.all(diffs > 0):
            return float(np.median(diffs)), "GridFrameOffsetVector"
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _number(_attr(ds, keyword, "PixelMeasuresSequence"))
        if value is not None and value > 0:
            return value, keyword
    return None, "default"


def slice_normal(orientation: Any) -> np.ndarray | None:
    """Unit normal of a slice from ``ImageOrientationPatient`` (None when unusable)."""
    try:
        values = np.asarray([float(v) for v in orientation], dtype=float)
    except (TypeError, ValueError):
        return None
    if values.shape != (6,):
        return None
    normal = np.cross(values[:3], values[3:])
    length = np.linalg.norm(normal)
    return normal / length if length > 1e-6 else None


def _frame_positions(ds: Any) -> np.ndarray | None:
    """Per-frame positions along the slice normal for enhanced multi-frame files."""
    frames = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    orientation = _attr(ds, "ImageOrientationPatient", "PlaneOrientationSequence")
    normal = slice_normal(orientation) if orientation is not None else None
    if not frames or normal is None:
        return None
    positions = []
    for item in frames:
        plane = _first_item(item, "PlanePositionSequence")
        if plane is None or "ImagePositionPatient" not in plane:
            return None
        positions.append(float(np.dot([float(v) for v in plane.ImagePositionPatient], normal)))
    return np.asarray(positions)


def rescale_of(ds: Any) -> tuple[float, float]:
    """(slope, intercept) of the modality rescale; (1, 0) when absent."""
    slope = _number(_attr(ds, "RescaleSlope", "PixelValueTransformationSequence"))
    intercept = _number(_attr(ds, "RescaleIntercept", "PixelValueTransformationSequence"))
    return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)


def _per_frame_rescale(ds: Any, n_frames: int) -> list[tuple[float, float]] | None:
    frames = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if not frames or len(frames) != n_frames:
        return None
    pairs = []
    for item in frames:
        transform = _first_item(item, "PixelValueTransformationSequence")
        if transform is None:
            return None
        slope = _number(getattr(transform, "RescaleSlope", None))
        intercept = _number(getattr(transform, "RescaleIntercept", None))
        pairs.append((1.0 if slope is None else slope, 0.0 if intercept is None else intercept))
    return pairs


def tags_of_interest(ds: Any) -> dict[str, Any]:
    """Non-identifying tags worth carrying along (modality, vendor, UIDs, geometry)."""

    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        return None if value in (None, "") else str(value)

    def floats(keyword: str, group: str) -> list[float] | None:
        value = _attr(ds, keyword, group)
        if value is None:
            return None
        try:
            return [float(v) for v in value]
        except (TypeError, ValueError):
            return None

    transfer = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    manufacturer = text("Manufacturer")
    return {
        "modality": text("Modality"),
        "manufacturer": manufacturer,
        "vendor": manufacturer,
        "manufacturer_model": text("ManufacturerModelName"),
        "station_name": text("StationName"),
        "institution_name": text("InstitutionName"),
        "body_part": text("BodyPartExamined"),
        "series_description": text("SeriesDescription"),
        "series_uid": text("SeriesInstanceUID"),
        "study_uid": text("StudyInstanceUID"),
        "sop_instance_uid": text("SOPInstanceUID"),
        "sop_class_uid": text("SOPClassUID"),
        "instance_number": _number(ds.get("InstanceNumber")),
        "photometric": text("PhotometricInterpretation"),
        "transfer_syntax": None if transfer is None else str(transfer),
        "bits_stored": _number(ds.get("BitsStored")),
        "magnetic_field_strength": _number(ds.get("MagneticFieldStrength")),
        "image_position": floats("ImagePositionPatient", "PlanePositionSequence"),
        "image_orientation": floats("ImageOrientationPatient", "PlaneOrientationSequence"),
    }


def decode_pixels(path: Path, ds: Any, frame: int | None = None) -> np.ndarray:
    """Decode pixels (one frame when ``frame`` is given), colour-converted to RGB."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(
            path, "DICOM file holds no pixel data", "point at an image file of the series"
        )
    try:
        if frame is not None:
            try:
                from pydicom.pixels import pixel_array
            except ImportError:  # pydicom < 3
                array = ds.pixel_array
                array = array[frame] if int(ds.get("NumberOfFrames", 1) or 1) > 1 else array
            else:
                array = pixel_array(ds, index=frame)
        else:
            array = ds.pixel_array
    except RuntimeError as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise ImageReadError(
            path, f"cannot decode pixel data ({name}): {' '.join(str(exc).split())}", DECODER_FIX
        ) from exc
    except Exception as exc:
        raise ImageReadError(
            path,
            f"DICOM pixel data is unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})",
            "check that the file is complete; re-export it",
        ) from exc
    photometric = str(ds.get("PhotometricInterpretation", ""))
    with wrap_errors(path, "DICOM colour data"):
        if photometric == "PALETTE COLOR":
            try:
                from pydicom.pixels import apply_color_lut
            except ImportError:  # pydicom < 3
                from pydicom.pixel_data_handlers.util import apply_color_lut
            array = apply_color_lut(array, ds)
        elif photometric.startswith("YBR") and int(ds.get("SamplesPerPixel", 1)) == 3:
            import pydicom

            if int(pydicom.__version__.split(".")[0]) < 3:  # pydicom 3 converts by itself
                from pydicom.pixel_data_handlers.util import convert_color_space

                array = convert_color_space(array, photometric, "RGB")
    return np.asarray(array)


def geometry(
    path: Path, ds: Any, frame: int | None
) -> tuple[tuple[int, ...], tuple[float, ...], dict[str, Any]]:
    """Spatial shape, spacing and geometry metadata of a single DICOM file."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = (
        int(ds.get("SamplesPerPixel", 1) or 1) > 1
        or ds.get("PhotometricInterpretation") == "PALETTE COLOR"
    )
    in_plane, plane_source = pixel_spacing(ds)
    warnings: list[str] = []
    if in_plane is None:
        in_plane = (1.0, 1.0)
        warnings.append("no PixelSpacing in the file; used 1.0 mm")
    extra: dict[str, Any] = {"n_frames": n_frames, "channel_axis": -1 if colour else None}
    if n_frames > 1 and frame is None:
        between, source = slice_spacing(ds)
        if between is None:
            between = 1.0
            warnings.append("no frame spacing in the file; used 1.0 for the frame axis")
        frame_time = _number(ds.get("FrameTime"))
        if frame_time is not None:
            extra["frame_time_ms"] = frame_time
        return (
            (n_frames, rows, cols),
            (between, *in_plane),
            {
                **extra,
                "spacing_source": f"{source}+{plane_source}",
                "warnings": warnings,
            },
        )
    if frame is not None:
        check_index(path, frame, n_frames, "frame")
        extra["frame"] = frame
    return (rows, cols), in_plane, {**extra, "spacing_source": plane_source, "warnings": warnings}


def _open_image(
    path: Path, options: dict[str, str], *, header_only: bool
) -> tuple[Any, int | None]:
    """Check the reference options and read an image dataset; return it and the ``frame``."""
    check_options(path, options, ("frame",), "DICOM")
    frame = int_option(path, options, "frame")
    ds = dcmread(path, header_only=header_only)
    with wrap_errors(path, "DICOM file"):
        image = is_image_dataset(ds)
    if not image:
        raise ImageReadError(
            path, "DICOM file holds no image (no Rows/Columns)", "point at an image file"
        )
    return ds, frame


def read_dicom_file(path: Path, options: dict[str, str]) -> ImageData:
    """Read one DICOM file; ``#frame=N`` picks one frame of a multi-frame file.

    Args:
        path: DICOM file (any suffix; files without ``.dcm`` need the ``DICM`` preamble).
        options: Reference options; ``frame`` is supported.

    Returns:
        The image; ``meta`` holds the tags of :func:`tags_of_interest`, ``"n_frames"``,
        ``"rescale_slope"``, ``"rescale_intercept"`` and ``"rescaled"``.

    Example:
        >>> from pydicom.data import get_testdata_file
        >>> img = read_dicom_file(Path(get_testdata_file("CT_small.dcm", download=False)), {})
        >>> img.array.shape, img.spacing, img.meta["modality"], str(img.array.dtype)
        ((128, 128), (0.661468, 0.661468), 'CT', 'float32')
    """
    ds, frame = _open_image(path, options, header_only=False)
    with wrap_errors(path, "DICOM file"):
        return _dicom_image(path, ds, frame)


def _dicom_image(path: Path, ds: Any, frame: int | None) -> ImageData:
    shape, spacing, geo = geometry(path, ds, frame)
    array = decode_pixels(path, ds, frame)
    n_frames = geo["n_frames"]
    slope, intercept = rescale_of(ds)
    colour = geo["channel_axis"] is not None
    rescaled = False
    if not colour:
        per_frame = _per_frame_rescale(ds, n_frames) if n_frames > 1 else None
        if per_frame is not None and len(set(per_frame)) > 1:
            if frame is not None:
                slope, intercept = per_frame[frame]
                array = array.astype(np.float32) * np.float32(slope) + np.float32(intercept)
            else:
                out = np.empty(array.shape, np.float32)
                for i, (s, b) in enumerate(per_frame):
                    out[i] = array[i].astype(np.float32) * np.float32(s) + np.float32(b)
                array = out
            rescaled = True
        elif (slope, intercept) != (1.0, 0.0):
            array = array.astype(np.float32) * np.float32(slope) + np.float32(intercept)
            rescaled = True
    expected = shape + ((3,) if colour else ())
    if array.shape != expected:
        raise ImageReadError(
            path,
            f"decoded pixels have shape {array.shape}, header says {expected}",
            "check that the file is complete; re-export it",
        )
    meta = make_meta("dicom", path, **tags_of_interest(ds))
    meta.update(geo)
    meta.update(rescale_slope=slope, rescale_intercept=intercept, rescaled=rescaled)
    return ImageData(array, spacing, meta)


def read_dicom_file_header(
    path: Path, options: dict[str, str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (spatial shape, spacing) of a DICOM file without reading its pixels.

    Example:
        >>> from pydicom.data import get_testdata_file
        >>> read_dicom_file_header(Path(get_testdata_file("MR_small.dcm", download=False)), {})
        ((64, 64), (0.3125, 0.3125))
    """
    ds, frame = _open_image(path, options, header_only=True)
    with wrap_errors(path, "DICOM file"):
        shape, spacing, _ = geometry(path, ds, frame)
    return shape, spacing
