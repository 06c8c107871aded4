"""Re-exports of a package that load their submodule on first use (PEP 562).

A package's ``__init__`` that re-exports names of heavy submodules declares them once, as
``name -> submodule``, and gets the module ``__getattr__`` and ``__dir__`` that import a
submodule only when one of its names is used::

    _EXPORTS = {"bootstrap_ci": "bootstrap", "holm": "hypothesis"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package with lazy re-exports.

    Args:
        package: The package's ``__name__``.
        exports: Re-exported name -> submodule (relative to ``package``) that defines it.

    Returns:
        ``(__getattr__, __dir__)``; a name, once loaded, is cached in the package.

    Example:
        >>> getattr_, dir_ = lazy_exports("medfleet.utils", {"json_safe": "jsonsafe"})
        >>> getattr_("json_safe")(float("nan")) is None, "json_safe" in dir_()
        (True, True)
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
