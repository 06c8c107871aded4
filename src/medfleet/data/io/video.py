"""Video clips through PyAV (``.avi``, ``.mp4``, ``.mov``, ``.mkv``).

``#frame=N`` reads frame N (0-based, in presentation order) as a 2D image: ``(H, W)`` when the
stream's pixel format is grey, else ``(H, W, 3)`` RGB. Without it the whole clip is read as
``(frames, H, W[, 3])``. Spacing is 1.0 per pixel and per frame (videos carry no physical
size); ``meta`` holds ``"n_frames"``, ``"fps"``, ``"codec"`` and ``"pix_fmt"``.

One frame is found by listing packet timestamps (demuxing, no decoding), seeking to the
key frame before it and decoding from there; when timestamps are missing or the seek lands
wrong, the clip is decoded from the start instead.
"""

from __future__ import annotations

import functools
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

SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")
# MP4/MOV edit lists can legitimately hide a frame or two of what the header counts.
EDIT_LIST_SLACK = 2


def _open(path: Path) -> Any:
    import av

    require_file(path)
    with wrap_errors(path, "video"):
        container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise ImageReadError(path, "the file holds no video stream", "point at a video file")
    return container


def _grey_format(stream: Any) -> str | None:
    """Give the ndarray format for grey streams (``gray``/``gray16le``); None for colour streams."""
    pix_fmt = str(stream.codec_context.pix_fmt or "")
    if not pix_fmt.startswith(("gray", "ya")):
        return None
    digits = "".join(ch for ch in pix_fmt if ch.isdigit())
    return "gray16le" if digits and int(digits) > 8 else "gray"


def _pixels(frame: Any, grey_format: str | None) -> np.ndarray:
    return np.asarray(frame.to_ndarray(format=grey_format or "rgb24"))


def _fps(stream: Any) -> float | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else None


@functools.lru_cache(maxsize=64)
def _presentation_pts(path: str, size: int, mtime_ns: int) -> tuple[int, ...] | None:
    """Sorted packet timestamps of the first video stream; None when any is missing.

    ``size`` and ``mtime_ns`` key the cache so a rewritten file is scanned again.
    """
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stamps = []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                return None
            stamps.append(int(packet.pts))
    return tuple(sorted(stamps))


def _timestamps(path: Path) -> tuple[int, ...] | None:
    stat = path.stat()
    return _presentation_pts(str(path), stat.st_size, stat.st_mtime_ns)


def _decode_linear(path: Path, index: int | None) -> tuple[np.ndarray | None, int]:
    """Decode from the start; return (frame ``index`` or None, frames decoded)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        grey = _grey_format(stream)
        count = 0
        for frame in container.decode(stream):
            if count == index:
                return _pixels(frame, grey), count + 1
            count += 1
    return None, count


def _decode_seeking(
    container: Any, stream: Any, target: int, grey: str | None
) -> np.ndarray | None:
    container.seek(target, stream=stream, backward=True, any_frame=False)
    for frame in container.decode(stream):
        if frame.pts is None or frame.pts > target:
            return None
        if frame.pts == target:
            return _pixels(frame, grey)
    return None


def _stream_meta(path: Path, stream: Any, **extra: Any) -> dict[str, Any]:
    return make_meta(
        "video",
        path,
        fps=_fps(stream),
        codec=str(stream.codec_context.name),
        pix_fmt=str(stream.codec_context.pix_fmt),
        **extra,
    )


def read_video(path: Path, options: dict[str, str]) -> ImageData:
    """Read one frame (``#frame=N``) or the whole clip of a video.

    Args:
        path: Video file.
        options: Reference options; ``frame`` is supported.

    Returns:
        A frame ``(H, W[, 3])`` with ``meta["frame"]``, or the clip ``(frames, H, W[, 3])``
        with ``meta["time_axis"] = 0``; both carry ``meta["n_frames"]`` and ``meta["fps"]``.

    Raises:
        ImageReadError: When the file cannot be decoded or the frame is out of range.

    Example:
        >>> import tempfile, pathlib, av, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.mkv"
        >>> with av.open(str(p), "w") as c:
        ...     s = c.add_stream("ffv1", rate=5)
        ...     s.width, s.height, s.pix_fmt = 8, 6, "gray"
        ...     for i in range(4):
        ...         f = av.VideoFrame.from_ndarray(np.full((6, 8), 10 * i, np.uint8), format="gray")
        ...         c.mux(s.encode(f))
        ...     c.mux(s.encode())
        >>> img = read_video(p, {"frame": "2"})
        >>> img.array.shape, int(img.array[0, 0]), img.meta["n_frames"]
        ((6, 8), 20, 4)
    """
    check_options(path, options, ("frame",), "video")
    index = int_option(path, options, "frame")
    if index is None:
        return _read_clip(path)
    with _open(path) as container, wrap_errors(path, "video"):
        stream = container.streams.video[0]
        grey = _grey_format(stream)
        meta = _stream_meta(path, stream, frame=index)
        declared = int(stream.frames or 0)
        stamps = _timestamps(path)
        array = None
        if stamps is not None:
            check_index(path, index, len(stamps), "frame")
            array = _decode_seeking(container, stream, stamps[index], grey)
    n_frames = len(stamps) if stamps is not None else (declared or None)
    if array is None:  # no timestamps, or the seek did not land on the frame
        with wrap_errors(path, "video"):
            array, count = _decode_linear(path, index)
        if array is None:  # decoded to the end without reaching the frame
            check_index(path, index, count, "frame")
    meta["n_frames"] = n_frames
    meta["channel_axis"] = None if array.ndim == 2 else -1
    return ImageData(array, (1.0, 1.0), meta)


def _read_clip(path: Path) -> ImageData:
    with _open(path) as container, wrap_errors(path, "video"):
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        grey = _grey_format(stream)
        meta = _stream_meta(path, stream, time_axis=0)
        frames = [_pixels(frame, grey) for frame in container.decode(stream)]
        declared = int(stream.frames or 0)
        slack = EDIT_LIST_SLACK if "mp4" in str(container.format.name) else 0
    if not frames:
        raise ImageReadError(
            path, "the video stream holds no decodable frames", "re-encode the video"
        )
    if declared and len(frames) != declared:
        message = f"the header declares {declared} frames but {len(frames)} were decoded"
        if len(frames) < declared - slack:
            raise ImageReadError(
                path, f"{message}: the file looks truncated", "re-export the video"
            )
        meta["warnings"].append(message)
    sizes = sorted({f.shape for f in frames})
    if len(sizes) > 1:
        raise ImageReadError(
            path,
            f"the video's frames have different sizes {sizes}; a clip needs one size",
            "re-encode the video, or read single frames with '#frame=N'",
        )
    clip = np.stack(frames)
    meta.update(n_frames=len(frames), channel_axis=None if clip.ndim == 3 else -1)
    return ImageData(clip, (1.0, 1.0, 1.0), meta)


def read_video_header(
    path: Path, options: dict[str, str]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Return (spatial shape, spacing) from the stream header and packet timestamps.

    A frame reference gives ``(H, W)`` (the frame number is checked against the count);
    a clip gives ``(frames, H, W)``.
    """
    check_options(path, options, ("frame",), "video")
    index = int_option(path, options, "frame")
    with _open(path) as container, wrap_errors(path, "video"):
        stream = container.streams.video[0]
        height, width = int(stream.codec_context.height), int(stream.codec_context.width)
        stamps = _timestamps(path)
        count = len(stamps) if stamps is not None else int(stream.frames or 0)
    if not count:
        with wrap_errors(path, "video"):
            _, count = _decode_linear(path, None)
    if index is not None:
        check_index(path, index, count, "frame")
        return (height, width), (1.0, 1.0)
    return (count, height, width), (1.0, 1.0, 1.0)
