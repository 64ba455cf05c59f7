"""The import direction between greendc's layers (docs/architecture.md), enforced.

    greendc.app                                   may import everything
    greendc.collector  greendc.exporters  greendc.dashboards  greendc.simulator
                                                  import the core, never each other
    greendc (the core)                            imports no layer above it

Every import statement is read from the source, including the lazy ones inside functions,
so a deferred ``from greendc.collector import ...`` in the core fails here as surely as a
top-level one. The retired top-level names (``collector``, ``exporters``, ...) may not be
imported at all: installed, greendc has one namespace.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LAYERS = ("collector", "exporters", "dashboards", "simulator")
#: Where each layer's source lives, by the package name it installs as.
SOURCES = {
    "greendc": REPO / "greendc",
    **{f"greendc.{layer}": REPO / layer for layer in LAYERS},
}
RETIRED_TOP_LEVEL = frozenset(LAYERS)


def layer_of(module: str) -> str:
    """``core``, ``app`` or the layer's short name, for a dotted module name in greendc."""
    parts = module.split(".")
    if parts[0] != "greendc":
        return "external"
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) > 1 and parts[1] == "app":
        return "app"
    return "core"


def allowed(importer: str, imported: str) -> bool:
    """Whether a module in layer ``importer`` may import one in layer ``imported``."""
    if imported in ("external", "core") or importer == "app":
        return True
    return importer == imported


def imports_of(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in ``source``, lazy ones included."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            # `from greendc import collector` imports the layer too
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Each import in ``source`` that breaks the layer rules, as 'module:line -> target'."""
    importer = layer_of(module)
    found: dict[int, str] = {}  # the first offence of each statement
    for line, target in imports_of(source, module, is_package):
        if line in found:
            continue
        if target.split(".")[0] in RETIRED_TOP_LEVEL:
            found[line] = f"{module}:{line} -> {target} (use greendc.{target})"
        elif not allowed(importer, layer_of(target)):
            found[line] = f"{module}:{line} -> {target} ({importer} may not import it)"
    return list(found.values())


def iter_modules() -> Iterator[tuple[str, Path]]:
    """Every module greendc installs, by its installed name, with its source file."""
    for package, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if rel.parts[0] in LAYERS and package == "greendc":
                continue  # the symlinks greendc/<layer> -> ../<layer> (mypy's view)
            parts = [package, *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


MODULES = list(iter_modules())


def test_every_layer_has_modules() -> None:
    layers = {layer_of(name) for name, _ in MODULES}
    assert layers == {"core", "app", *LAYERS}


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_module_imports_follow_the_layers(module: str, path: Path) -> None:
    assert violations(path.read_text(), module, path.name == "__init__.py") == []


def test_the_core_importing_a_layer_fails() -> None:
    """The checker itself catches an upward import, lazy or relative."""
    lazy = "def f():\n    from greendc.collector.agent import Agent\n"
    assert violations(lazy, "greendc.kpi") == [
        "greendc.kpi:2 -> greendc.collector.agent (core may not import it)"
    ]
    assert violations("from greendc import exporters\n", "greendc.kpi") == [
        "greendc.kpi:1 -> greendc.exporters (core may not import it)"
    ]
    assert violations("from .app import cli\n", "greendc.kpi") == [
        "greendc.kpi:1 -> greendc.app (core may not import it)"
    ]


def test_sibling_layers_and_retired_names_fail() -> None:
    assert violations("import greendc.simulator\n", "greendc.collector.agent") == [
        "greendc.collector.agent:1 -> greendc.simulator (collector may not import it)"
    ]
    assert violations("from collector.agent import Agent\n", "greendc.app.cli") == [
        "greendc.app.cli:1 -> collector.agent (use greendc.collector.agent)"
    ]
    assert violations("from ..report import x\n", "greendc.exporters.report.request") == []
    assert violations("from greendc.collector import Agent\n", "greendc.app.demo") == []
