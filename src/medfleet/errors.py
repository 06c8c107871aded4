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


class ManifestError(MedfleetError, ValueError):
    """A manifest or task table is malformed in a way that stops loading it."""
