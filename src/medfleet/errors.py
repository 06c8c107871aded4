"""Exception types shared across medfleet.

Every error names what is wrong (file, case, row, column or field) and, where
possible, what would fix it.
"""

from __future__ import annotations


class MedfleetError(Exception):
    """Base class for all errors raised deliberately by medfleet."""


class FileError(MedfleetError):
    """Base of errors about one file: ``cannot <action> <path>: <reason> (fix: <fix>)``.

    Attributes:
        path: The file, as a string.
        reason: What is wrong with it.
        fix: What would fix it, if known.
    """

    action = "use"

    def __init__(self, path: object, reason: str, fix: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        message = f"cannot {self.action} {self.path}: {reason}"
        if fix:
            message += f" (fix: {fix})"
        super().__init__(message)


class ImageReadError(FileError, OSError):
    """An image, volume or video frame could not be read.

    Example:
        >>> err = ImageReadError("scan.nii.gz", "file is truncated")
        >>> str(err)
        'cannot read scan.nii.gz: file is truncated'
    """

    action = "read"


class InputError(MedfleetError, ValueError):
    """Something a user gave is malformed: a manifest, an input file or table, an option.

    The base of :class:`ManifestError`, :class:`InputFileError` and :class:`OptionError`;
    catch it to refuse any bad input alike.
    """


class ManifestError(InputError):
    """A manifest or task table is malformed in a way that stops loading it."""


class InputFileError(InputError):
    """An input file, folder or table of a run is unusable.

    For example a missing column, an unreadable cell, a duplicated case, or a folder
    without the expected files.

    Example:
        >>> str(InputFileError("--pred preds.csv lacks column(s) ['score']"))
        "--pred preds.csv lacks column(s) ['score']"
    """


class OptionError(InputError):
    """An option value is invalid.

    A command-line setting, a ``--preset-option`` or a run setting given in Python.

    Example:
        >>> isinstance(OptionError("--percentile must be in [0, 100]"), InputError)
        True
    """


def one_line(exc: BaseException, limit: int = 200) -> str:
    r"""A one-line description of ``exc`` for an error message (first problem only).

    Pydantic validation errors give the field and the problem; other exceptions the first
    line of their text, cut to ``limit`` characters.

    Example:
        >>> one_line(ValueError("bad value\nmore detail"))
        'bad value'
    """
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "value"
            text = f"{where}: {first.get('msg', '')}"
        except Exception:
            text = str(exc)
    else:
        text = str(exc) or type(exc).__name__
    line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
