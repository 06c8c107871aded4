"""Helpers shared by the format modules: error wrapping, reference options, metadata."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from medfleet.errors import FileError, ImageReadError, MedfleetError

CORRUPT_FIX = "check that the file is complete and of the type its suffix says; re-export it"


class ImageWriteError(FileError, ValueError):
    """An array cannot be written to the requested image file.

    Example:
        >>> str(ImageWriteError("mask.png", "float values outside [0, 255]", "cast to uint16"))
        'cannot write mask.png: float values outside [0, 255] (fix: cast to uint16)'
    """

    action = "write"


@contextlib.contextmanager
def wrap_errors(path: Path | str, what: str, fix: str = CORRUPT_FIX) -> Iterator[None]:
    """Turn any library exception raised inside the block into an :class:`ImageReadError`.

    The original exception is chained (``raise ... from``) so its traceback is kept. A
    ``MemoryError`` is wrapped too: inside a reader it comes from a header that declares more
    data than memory holds (often a corrupt size field) or from the library's own allocation
    failure (FFmpeg's ``ENOMEM`` on a mangled box size), and either way the file is named.

    Args:
        path: File being read; named in the error.
        what: Short description such as ``"NIfTI file"``.
        fix: Suggested fix for the message.

    Example:
        >>> try:
        ...     with wrap_errors("a.png", "PNG image"):
        ...         raise OSError("image file is truncated")
        ... except ImageReadError as err:
        ...     print(err.reason)
        PNG image is unreadable (OSError: image file is truncated)
    """
    try:
        yield
    except MedfleetError:
        raise
    except MemoryError as exc:
        detail = " ".join(str(exc).split()) or "no detail"
        raise ImageReadError(
            path,
            f"{what} needs more memory than is available ({type(exc).__name__}: {detail})",
            "check that the file is complete and its header's sizes are right; "
            "on a machine with enough memory, close other programs",
        ) from exc
    except Exception as exc:
        detail = " ".join(str(exc).split()) or "no detail"
        raise ImageReadError(
            path, f"{what} is unreadable ({type(exc).__name__}: {detail})", fix
        ) from exc


def require_file(path: Path) -> None:
    """Raise :class:`ImageReadError` unless ``path`` is an existing regular file.

    Example:
        >>> try:
        ...     require_file(Path("/no/such/scan.nii.gz"))
        ... except ImageReadError as err:
        ...     print(err.path, "|", err.reason)
        /no/such/scan.nii.gz | file not found
    """
    if path.is_file():
        return
    if path.exists():
        raise ImageReadError(path, "not a regular file", "point at an image file")
    raise ImageReadError(
        path, "file not found", "check the path and the working directory it is relative to"
    )


def check_options(path: Path, options: dict[str, str], allowed: Iterable[str], kind: str) -> None:
    """Refuse reference options (``#key=value``) that ``kind`` files do not understand.

    Example:
        >>> try:
        ...     check_options(Path("a.nii.gz"), {"frame": "2"}, (), "NIfTI")
        ... except ImageReadError as err:
        ...     print(err.reason)
        option 'frame' is not supported for NIfTI files (supported: none)
    """
    allowed = tuple(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        supported = ", ".join(allowed) if allowed else "none"
        raise ImageReadError(
            path,
            f"option {names} is not supported for {kind} files (supported: {supported})",
            f"remove '#{unknown[0]}=...' from the reference",
        )


def int_option(path: Path, options: dict[str, str], key: str) -> int | None:
    """Return the non-negative integer option ``key``, ``None`` when absent.

    Example:
        >>> int_option(Path("v.mp4"), {"frame": "12"}, "frame")
        12
    """
    if key not in options:
        return None
    text = options[key]
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ImageReadError(
            path, f"{key}={text!r} is not a non-negative integer", f"write e.g. '#{key}=0'"
        )
    return value


def check_index(path: Path, index: int, count: int, what: str, fix: str | None = None) -> None:
    """Raise :class:`ImageReadError` unless ``0 <= index < count``.

    Example:
        >>> try:
        ...     check_index(Path("v.mp4"), 30, 30, "frame")
        ... except ImageReadError as err:
        ...     print(err.reason)
        frame 30 is out of range: it holds 30 frames (0-29)
    """
    if 0 <= index < count:
        return
    if count == 0:
        raise ImageReadError(path, f"{what} {index} requested but it holds no {what}s", fix)
    raise ImageReadError(
        path,
        f"{what} {index} is out of range: it holds {count} {what}s (0-{count - 1})",
        fix or f"use a {what} between 0 and {count - 1}",
    )


def item_shape(
    path: Path, shape: tuple[int, ...], index: int | None, scalar_reason: str
) -> tuple[int, ...]:
    """The shape read by ``#index=N``: ``shape`` without axis 0, after checking ``N``.

    ``shape`` is returned unchanged when ``index`` is None; ``scalar_reason`` is the
    error reason for an index into a scalar.

    Example:
        >>> item_shape(Path("a.npy"), (7, 3, 4), 2, "scalar")
        (3, 4)
    """
    if index is None:
        return shape
    if not shape:
        raise ImageReadError(path, scalar_reason)
    check_index(
        path, index, shape[0], "item", f"use an index between 0 and {shape[0] - 1} along axis 0"
    )
    return shape[1:]


def make_meta(
    kind: str,
    path: Path,
    *,
    channel_axis: int | None = None,
    spacing_source: str = "default",
    **extra: Any,
) -> dict[str, Any]:
    """Build the metadata dict every reader returns.

    Example:
        >>> m = make_meta("png", Path("a.png"))
        >>> m["format"], m["channel_axis"], m["spacing_source"], m["warnings"]
        ('png', None, 'default', [])
    """
    meta: dict[str, Any] = {
        "format": kind,
        "path": str(path),
        "channel_axis": channel_axis,
        "spacing_source": spacing_source,
        "warnings": [],
    }
    meta.update(extra)
    return meta
