"""2D raster images through Pillow: PNG, JPEG, TIFF, BMP; and deterministic PNG writing.

Grey images give ``(H, W)``, colour ``(H, W, 3)`` (alpha is dropped, palettes are expanded:
to grey when the palette is grey, else to RGB). 16-bit grey stays uint16, 32-bit float TIFF
stays float32, bilevel images give uint8 0/1; Pillow reduces 16-bit colour PNGs to 8 bits.
Spacing is (row, col) in mm from a TIFF resolution (inch or cm units) or a PNG ``pHYs``
chunk in metres; otherwise (1.0, 1.0). Multi-page TIFFs whose pages share one size become a
``(pages, H, W[, 3])`` stack; ``#frame=N`` picks one page.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from medfleet.data.io.common import (
    ImageWriteError,
    check_index,
    check_options,
    int_option,
    make_meta,
    require_file,
    wrap_errors,
)
from medfleet.data.io.image_data import ImageData
from medfleet.utils.atomic import atomic_open

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_TIFF_UNIT_MM = {2: 25.4, 3: 10.0}  # ResolutionUnit: 2 = inch, 3 = centimetre
_GREY_MODES = ("L", "I;16", "I;16L", "I;16B", "I;16N", "I", "F", "1")


def _open(path: Path) -> Any:
    from PIL import Image

    require_file(path)
    with wrap_errors(path, "image"):
        return Image.open(path)


def _kind(image: Any) -> str:
    return str(image.format or "image").lower()


def _physical_spacing(image: Any) -> tuple[tuple[float, float] | None, str]:
    """(row, col) spacing in mm when the file records a physical resolution."""
    kind = _kind(image)
    if kind == "tiff":
        tags = getattr(image, "tag_v2", {})
        x_res, y_res = tags.get(282), tags.get(283)
        factor = _TIFF_UNIT_MM.get(int(tags.get(296, 2)))
        try:
            x, y = float(x_res), float(y_res)
        except (TypeError, ValueError, ZeroDivisionError):
            return None, "default"
        if factor is None or not (x > 0 and y > 0) or not np.isfinite([x, y]).all():
            return None, "default"
        return (factor / y, factor / x), "tiff_resolution"
    if kind == "png" and "dpi" in image.info:  # Pillow reports pHYs in metres as dots per inch
        try:
            dpi_x, dpi_y = (float(v) for v in image.info["dpi"])
        except (TypeError, ValueError):
            return None, "default"
        per_metre_x, per_metre_y = round(dpi_x / 0.0254), round(dpi_y / 0.0254)
        if per_metre_x > 0 and per_metre_y > 0:
            return (1000.0 / per_metre_y, 1000.0 / per_metre_x), "png_phys"
    return None, "default"


def _grey_palette(image: Any) -> bool:
    palette = image.getpalette()
    if not palette:
        return True
    entries = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    return bool(np.all(entries[:, 0] == entries[:, 1]) and np.all(entries[:, 1] == entries[:, 2]))


def _pixels(image: Any) -> np.ndarray:
    """Decode the current frame of ``image`` into a grey or RGB array."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=bool).astype(np.uint8)
    if mode in ("P", "PA"):
        image = image.convert("L" if _grey_palette(image) else "RGB")
    elif mode in ("LA", "La"):
        image = image.convert("L")
    elif mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    elif mode == "I":
        array = np.asarray(image)
        if _kind(image) == "png" and array.size and array.min() >= 0 and array.max() <= 65535:
            return array.astype(np.uint16)
        return array
    elif mode not in ("L", "F", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image)


def _frames(image: Any) -> int:
    return int(getattr(image, "n_frames", 1) or 1)


def _page_sizes(image: Any) -> list[tuple[tuple[int, int], str]]:
    sizes = []
    for i in range(_frames(image)):
        image.seek(i)
        sizes.append((image.size, image.mode))
    image.seek(0)
    return sizes


def read_raster(path: Path, options: dict[str, str]) -> ImageData:
    """Read a PNG, JPEG, TIFF or BMP image.

    Args:
        path: Image file.
        options: Reference options; ``frame`` (page of a multi-page TIFF) is supported.

    Returns:
        The image; ``meta`` adds ``"mode"`` (Pillow's mode on disk), ``"n_frames"`` and, for
        JPEG/BMP files that state one, ``"dpi"`` (not used for spacing: such values are
        usually screen defaults).

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = write_png(pathlib.Path(tempfile.mkdtemp()) / "g.png", np.eye(3, dtype=np.uint8))
        >>> img = read_raster(p, {})
        >>> img.array.tolist(), img.spacing, img.meta["channel_axis"]
        ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], (1.0, 1.0), None)
    """
    check_options(path, options, ("frame",), "2D image")
    frame = int_option(path, options, "frame")
    with _open(path) as image, wrap_errors(path, f"{_kind(image).upper()} image"):
        kind = _kind(image)
        n_frames = _frames(image)
        in_plane, source = _physical_spacing(image)
        meta = make_meta(kind, path, spacing_source=source, mode=image.mode, n_frames=n_frames)
        if kind in ("jpeg", "bmp") and "dpi" in image.info:
            meta["dpi"] = [float(v) for v in image.info["dpi"]]
        if frame is not None:
            check_index(path, frame, n_frames, "frame")
            image.seek(frame)
            meta["frame"] = frame
            pages = [_pixels(image)]
        elif n_frames > 1 and len(set(_page_sizes(image))) == 1:
            pages = []
            for i in range(n_frames):
                image.seek(i)
                pages.append(_pixels(image))
        else:
            pages = [_pixels(image)]
            if n_frames > 1:
                meta["warnings"].append(
                    f"the file holds {n_frames} pages of different sizes; read page 0 "
                    "(pick another with '#frame=N')"
                )
    colour = pages[0].ndim == 3
    array = pages[0] if len(pages) == 1 else np.stack(pages)
    meta["channel_axis"] = -1 if colour else None
    plane = in_plane or (1.0, 1.0)
    spacing = plane if len(pages) == 1 else (1.0, *plane)
    return ImageData(array, spacing, meta)


def read_raster_header(
    path: Path, options: dict[str, str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (spatial shape, spacing) of a 2D image without decoding its pixels.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> p = write_png(pathlib.Path(tempfile.mkdtemp()) / "g.png", np.zeros((4, 7), np.uint8))
        >>> read_raster_header(p, {})
        ((4, 7), (1.0, 1.0))
    """
    check_options(path, options, ("frame",), "2D image")
    frame = int_option(path, options, "frame")
    with _open(path) as image, wrap_errors(path, f"{_kind(image).upper()} image"):
        in_plane, _ = _physical_spacing(image)
        plane = in_plane or (1.0, 1.0)
        n_frames = _frames(image)
        if frame is not None:
            check_index(path, frame, n_frames, "frame")
            image.seek(frame)
        elif n_frames > 1 and len(set(_page_sizes(image))) == 1:
            width, height = image.size
            return (n_frames, height, width), (1.0, *plane)
        width, height = image.size
        return (height, width), plane


def _to_storable(path: Path, array: np.ndarray, label: bool) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ImageWriteError(
            path,
            f"expected a (H, W) grey or (H, W, 3) RGB array, got shape {array.shape}",
            "write one 2D slice at a time; drop an alpha channel",
        )
    if array.size == 0:
        raise ImageWriteError(path, f"the array is empty (shape {array.shape})")
    colour = array.ndim == 3
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype == np.uint8 or (array.dtype == np.uint16 and not colour):
        return array
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ImageWriteError(
                path, "the array holds NaN or infinite values", "replace them first"
            )
        low, high = float(array.min()), float(array.max())
        if label and not np.all(array == np.round(array)):
            raise ImageWriteError(
                path,
                "a label image must hold whole numbers; the float array has fractional values",
                "round or threshold the labels before writing",
            )
        if low < 0 or high > 255:
            raise ImageWriteError(
                path,
                f"float values span [{low:g}, {high:g}], outside [0, 255]",
                "scale to [0, 255], or cast whole numbers up to 65535 to uint16 for a 16-bit PNG",
            )
        return np.round(array).astype(np.uint8)
    if array.dtype.kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high <= 255:
            return array.astype(np.uint8)
        if low >= 0 and high <= 65535 and not colour:
            return array.astype(np.uint16)
        limit = "255 for RGB" if colour else "65535"
        raise ImageWriteError(
            path,
            f"integer values span [{low}, {high}], outside 0-{limit}",
            "rescale or clip the values, or write NIfTI for wider ranges",
        )
    raise ImageWriteError(
        path, f"dtype {array.dtype} cannot be written as PNG", "cast to uint8 or uint16"
    )


def write_png(path: str | Path, array: np.ndarray, *, label: bool = False) -> Path:
    """Write a grey (uint8/uint16) or RGB (uint8) PNG atomically, with reproducible bytes.

    Booleans become uint8 0/1; other integer arrays become uint8 when their values fit in
    0-255, else uint16 (grey only) when they fit in 0-65535. Float arrays must lie in
    [0, 255] and are rounded to uint8 (scale [0, 1] images first); with ``label=True`` they
    must also hold whole numbers.

    Args:
        path: Destination ``.png`` file.
        array: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` array.
        label: The array is a label map, so fractional values are an error.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ImageWriteError: For a wrong shape, out-of-range values or non-integral labels.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> mask = np.zeros((4, 4), bool); mask[1:3, 1:3] = True
        >>> write_png(d / "a.png", mask).read_bytes() == write_png(d / "b.png", mask).read_bytes()
        True
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ImageWriteError(path, "the file name must end in .png", "rename it")
    data = np.ascontiguousarray(_to_storable(path, np.asarray(array), label))
    if data.dtype == np.uint16:
        image = Image.frombytes(
            "I;16", (data.shape[1], data.shape[0]), data.astype("<u2").tobytes()
        )
    else:
        image = Image.fromarray(data)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6, optimize=False)
    with atomic_open(path, "wb") as fh:
        fh.write(buffer.getvalue())
    return path
