"""Read a YAML settings file that must hold a mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from medfleet.errors import MedfleetError


def read_yaml_mapping(
    path: str | Path,
    what: str,
    *,
    error: type[Exception] = MedfleetError,
    expect: str = "a mapping of settings",
) -> dict[str, Any]:
    r"""Return the mapping in the YAML file ``path``; an empty file gives ``{}``.

    Args:
        path: The file.
        what: What the file is, for messages (e.g. ``"monitor config"``).
        error: The exception type raised.
        expect: What the top level must be, for the message when it is not a mapping.

    Raises:
        error: The file is missing, is not valid YAML, or does not hold a mapping.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.yaml"
        >>> _ = p.write_text("seed: 3\n")
        >>> read_yaml_mapping(p, "settings")
        {'seed': 3}
        >>> _ = p.write_text("- 1\n")
        >>> read_yaml_mapping(p, "settings")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        medfleet.errors.MedfleetError: settings .../s.yaml must be a mapping of settings
    """
    p = Path(path)
    if not p.is_file():
        raise error(f"{what} {p} does not exist (fix: check the path)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise error(f"{what} {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{what} {p} must be {expect}")
    return data
