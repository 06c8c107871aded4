"""The layering of ``docs/architecture.md``, enforced on every import in ``src/medfleet``.

Every ``import`` counts, those inside functions too: a deferred import is still a
dependency. Each package may import only the packages listed for it in ``ALLOWED``; the
packages that must stay light never import torch or the deep-learning packages.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "medfleet"

#: The packages every layer may use: errors, small helpers, table formats, task specs.
CORE = {"errors", "utils", "tables", "tasks", "geometry"}
#: Package -> the medfleet packages it may import (besides itself), lowest layer first.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "utils": {"errors"},
    "geometry": {"errors"},
    "tables": {"errors", "utils"},
    "tasks": {"errors", "utils", "tables"},
    "report": CORE,
    "data": CORE,
    "evaluate": CORE | {"data", "report"},
    "monitor": CORE | {"data", "report", "evaluate"},
    "models": CORE,
    "train": CORE | {"data", "report", "evaluate", "models"},
    "federated": CORE | {"data", "report", "evaluate", "models", "train"},
    "synth": CORE | {"data", "report", "evaluate", "models", "train"},
    "demo": CORE | {"data", "report", "evaluate", "monitor", "models", "train", "federated"},
    "cli": CORE
    | {"data", "report", "evaluate", "monitor", "models", "train", "federated", "synth", "demo"},
    "__main__": {"cli"},
}
#: Packages that never import a deep-learning library, not even inside a function.
NO_DEEP_LEARNING = {"errors", "geometry", "tables", "report", "evaluate", "monitor"}
DEEP_LEARNING = {"torch", "transformers", "peft", "diffusers", "monai", "flwr"}
#: Single edges the layering would allow but the design rules out.
FORBIDDEN_MODULES = {
    "evaluate": ("medfleet.data.phantoms",),
    "monitor": ("medfleet.data.phantoms",),
}
#: Where a monitor module may use the phantom generator: the simulator that makes phantom
#: streams (its purpose), never the scoring or service code.
FORBIDDEN_EXCEPT = {"monitor/simulate.py", "monitor/demo_stage.py"}


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "medfleet" or len(parts) < 2 or parts[1] == "__version__":
        return None  # not medfleet, or the version string every layer may read
    return parts[1].removesuffix(".py")


def _type_checking(node: ast.AST) -> bool:
    """Whether ``node`` is ``if TYPE_CHECKING:`` (imports for annotations only)."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node``, except the bodies of ``if TYPE_CHECKING:`` blocks."""
    for child in ast.iter_child_nodes(node):
        if _type_checking(child):
            yield from (n for branch in child.orelse for n in [branch, *_walk(branch)])
            continue
        yield child
        yield from _walk(child)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every absolute import in a file, nested ones included.

    Imports under ``if TYPE_CHECKING:`` serve annotations only and are not counted.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _files() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        package = rel.parts[0].removesuffix(".py")
        if package == "__init__":
            continue
        out.append((package, path))
    return out


def test_every_package_has_a_rule() -> None:
    packages = {package for package, _ in _files()}
    assert packages <= set(ALLOWED), f"add a rule for {sorted(packages - set(ALLOWED))}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_lower_layers(package: str) -> None:
    wrong = []
    for owner, path in _files():
        if owner != package:
            continue
        rel = path.relative_to(SRC).as_posix()
        for line, module in _imports(path):
            target = _package(module)
            if target is not None and target != package and target not in ALLOWED[package]:
                wrong.append(f"{rel}:{line} imports {module}")
            if package in NO_DEEP_LEARNING and module.split(".")[0] in DEEP_LEARNING:
                wrong.append(f"{rel}:{line} imports {module} (a deep-learning package)")
            for forbidden in FORBIDDEN_MODULES.get(package, ()):
                if module.startswith(forbidden) and rel not in FORBIDDEN_EXCEPT:
                    wrong.append(f"{rel}:{line} imports {module}")
    assert not wrong, "\n".join(sorted(set(wrong)))
