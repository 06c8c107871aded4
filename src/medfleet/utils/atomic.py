"""Atomic file writing: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, and an interrupted write leaves the
previous version (or nothing) in place. :func:`write_json_atomic` writes strict JSON
under medfleet's one encoding of non-finite numbers (:mod:`medfleet.utils.jsonsafe`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from medfleet.utils.jsonsafe import json_safe


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask is process-wide, not thread-safe


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Use this when a library insists on writing to a file name itself
    (nibabel, Pillow, h5py). The temporary file keeps the target's suffix(es)
    so format detection by extension still works.

    Args:
        path: Final destination.
        suffix: Suffix for the temporary file; defaults to the target's suffixes.

    Yields:
        The temporary path to write to.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_path(d / "a.txt") as tmp:
        ...     _ = tmp.write_text("hello")
        >>> (d / "a.txt").read_text()
        'hello'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the permissions a plain open() would give it
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8", **kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` only when the block succeeds.

    Args:
        path: Final destination.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: Text encoding (ignored for binary mode).
        **kwargs: Passed to :func:`open` (e.g. ``newline=""`` for CSV).

    Yields:
        An open file object.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_open(d / "b.txt") as fh:
        ...     _ = fh.write("x")
        >>> (d / "b.txt").read_text()
        'x'
    """
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_text_atomic(pathlib.Path(tempfile.mkdtemp()) / "c.txt", "hi")
        >>> p.read_text()
        'hi'
    """
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json_atomic(
    path: str | os.PathLike[str], obj: Any, indent: int | None = 2, sort_keys: bool = True
) -> Path:
    """Serialise ``obj`` as strict JSON (trailing newline) and write it atomically.

    Values go through :func:`medfleet.utils.jsonsafe.json_safe` first, so every JSON
    artefact follows the one policy: NaN -> ``null``, ``±inf`` -> ``"inf"`` / ``"-inf"``,
    numpy values -> Python values, paths -> text, keys -> text; no ``NaN`` or ``Infinity``
    token is ever written. Objects JSON has no form for are written as their ``str()``.
    Keys are sorted unless ``sort_keys`` is False (then insertion order is kept).

    Example:
        >>> import tempfile, pathlib, json
        >>> p = write_json_atomic(pathlib.Path(tempfile.mkdtemp()) / "d.json", {"a": 1})
        >>> json.loads(p.read_text())
        {'a': 1}
        >>> p = write_json_atomic(p, {"hd": float("inf"), "dice": float("nan")}, indent=None)
        >>> p.read_text().strip()
        '{"dice": null, "hd": "inf"}'
    """
    text = json.dumps(
        json_safe(obj), indent=indent, sort_keys=sort_keys, default=str, allow_nan=False
    )
    return write_text_atomic(path, text + "\n")


def file_in_the_way(folder: str | os.PathLike[str]) -> Path | None:
    """The existing file that stops ``folder`` from being (or becoming) a folder, else None.

    That is ``folder`` itself when it is a file, or the first of its parents that is one.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.csv").write_text("x")
        >>> file_in_the_way(d / "a.csv" / "out") == d / "a.csv", file_in_the_way(d / "new")
        (True, None)
    """
    path = Path(folder)
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return None
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def require_folder_path(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """``folder`` as a path, when no existing file stops it from being a folder.

    Checked before any work, so that a run does not fail only when it writes its first result.

    Raises:
        MedfleetError: Naming the folder and the file in the way.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
        >>> _ = f.write_text("x")
        >>> try:
        ...     require_folder_path(f)
        ... except Exception as exc:
        ...     print(str(exc).split(": ")[1].split(" (")[0])
        it is an existing file
    """
    from medfleet.errors import MedfleetError

    path = Path(folder)
    blocker = file_in_the_way(path)
    if blocker is not None:
        where = "it is an existing file" if blocker == path else f"{blocker} is an existing file"
        raise MedfleetError(
            f"{what} {path} cannot be created: {where} (fix: give a folder path, or move "
            f"{blocker} away)"
        )
    return path
