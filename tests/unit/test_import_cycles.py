"""The portal's and the shared package's modules import each other without a
circle: the layers (cloudstate <- accounts, cloud services <- API and pages)
stay layers. Read from the source: imports at the top of a module count,
imports inside a function or under TYPE_CHECKING do not (they run later)."""

from __future__ import annotations

import ast
from pathlib import Path

from cloudstate.config import REPO_ROOT

PACKAGES = ("portal", "cloudstate")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            if {"migrations", "static"} & set(path.parts):
                continue
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imported_at_load(path: Path, known: set[str]) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(sub, ast.Import):
                names |= {alias.name for alias in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                # "from portal.cloud import store" imports the module portal.cloud.store.
                names |= {sub.module, *(f"{sub.module}.{a.name}" for a in sub.names)}
    return names & known


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_the_finder_sees_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_portal_or_cloudstate_imports_itself_round_a_circle() -> None:
    modules = _modules()
    assert "portal.cloud.changes" in modules and "portal.live.janitor" in modules
    graph = {name: _imported_at_load(path, set(modules)) for name, path in modules.items()}
    assert "portal.live.hub" in graph["portal.live.janitor"]  # the finder reads imports
    assert _circles(graph) == []
