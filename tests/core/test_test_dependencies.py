"""Every package of the ``test`` extra imports: a missing oracle fails here, it never skips.

The oracle tests import their reference implementations (MedPy, scikit-learn, MONAI,
SimpleITK, pycocotools, ...) directly. This test names the package when one is not
installed, so a broken environment reads as one clear failure, not as a pile of import errors
or, worse, as skipped checks.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
_SELF = re.compile(r"^medfleet\[(?P<extras>[^\]]+)\]$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_extra_requirements() -> list[str]:
    """Distribution names of the ``test`` extra, with the medfleet extras it pulls in."""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    names: list[str] = []
    pending, seen = ["test"], set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in extras[extra]:
            nested = _SELF.match(requirement.replace(" ", ""))
            if nested:
                pending.extend(e.strip() for e in nested["extras"].split(","))
                continue
            match = _NAME.match(requirement)
            assert match, requirement
            if match[0] not in names:
                names.append(match[0])
    return names


test_extra_requirements.__test__ = False  # a helper, not a test


@cache
def _modules_by_distribution() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            found.setdefault(_canonical(dist), []).append(module)
    return found


def _import_name(dist: str) -> str:
    """The top-level module of an installed distribution (``scikit-learn`` -> ``sklearn``)."""
    modules = sorted(m for m in _modules_by_distribution().get(_canonical(dist), []))
    public = [m for m in modules if not m.startswith("_")]
    for module in public:
        if _canonical(module) == _canonical(dist):
            return module
    if not public:
        raise AssertionError(f"{dist} installs no importable top-level module")
    # e.g. scikit-learn -> sklearn: the shortest public module is the package itself
    return min(public, key=len)


def test_the_test_extra_holds_the_oracles() -> None:
    names = {_canonical(n) for n in test_extra_requirements()}
    for oracle in ("medpy", "scikit-learn", "simpleitk", "pycocotools", "surface-distance"):
        assert oracle in names, f"{oracle} is used as an oracle but not in the test extra"


@pytest.mark.parametrize("dist", test_extra_requirements())
def test_package_of_the_test_extra_imports(dist: str) -> None:
    try:
        distribution(dist)
    except PackageNotFoundError:
        pytest.fail(
            f"{dist} is named in pyproject.toml's test extra but is not installed "
            "(fix: pip install -e '.[test]')"
        )
    module = _import_name(dist)
    try:
        importlib.import_module(module)
    except Exception as exc:
        pytest.fail(f"{dist} is installed but 'import {module}' fails: {exc!r}")
