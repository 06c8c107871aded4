"""Image references: a file path plus optional ``#key=value&key=value`` options."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

from medfleet.errors import ImageReadError


def parse_image_ref(ref: str | os.PathLike[str]) -> tuple[Path, dict[str, str]]:
    """Split an image reference into its file path and its options.

    The path ends at the first ``#``; what follows is ``key=value`` pairs joined by ``&``.
    Values are percent-decoded, so ``%26`` stands for a literal ``&``.

    Args:
        ref: A path, optionally followed by ``#`` and options, e.g. ``"clip.mp4#frame=12"``.

    Returns:
        ``(path, options)``; options is empty when the reference has no ``#``.

    Raises:
        ImageReadError: When the options are malformed or repeat a key.

    Example:
        >>> parse_image_ref("video.mp4#frame=12")
        (PosixPath('video.mp4'), {'frame': '12'})
        >>> parse_image_ref("x.npz#key=train_images&index=5")
        (PosixPath('x.npz'), {'key': 'train_images', 'index': '5'})
        >>> parse_image_ref("scan.nii.gz")
        (PosixPath('scan.nii.gz'), {})
    """
    text = os.fspath(ref)
    if "#" not in text:
        return Path(text), {}
    base, _, fragment = text.partition("#")
    if not base:
        raise ImageReadError(
            text, "the reference has no file path before '#'", "write PATH#key=value"
        )
    options: dict[str, str] = {}
    for part in fragment.split("&"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ImageReadError(
                base,
                f"malformed reference option {part!r} in {text!r}",
                "write options as key=value joined by '&', e.g. images.npz#key=train&index=3",
            )
        if key in options:
            raise ImageReadError(base, f"reference option {key!r} is given twice in {text!r}")
        options[key] = unquote(value.strip())
    return Path(base), options
