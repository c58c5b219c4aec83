"""The three parts keep their borders: the portal and the node agent share only
cloudstate, and cloudstate needs neither. Every import counts here, at the top of
a module or inside a function: a lazy import across the border is still one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cloudstate.config import REPO_ROOT

FORBIDDEN = {
    "cloudstate": {"portal", "nodeagent"},
    "portal": {"nodeagent"},
    "nodeagent": {"portal"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_part_imports_nothing_across_its_border(package: str) -> None:
    crossings = [
        f"{path.relative_to(REPO_ROOT)} imports {other}"
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        for other in sorted(_imported_packages(path) & FORBIDDEN[package])
    ]
    assert not crossings, crossings


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n"
                      "    from portal.cloud import instances\n"
                      "    import nodeagent.agent\n")
    assert _imported_packages(module) == {"portal", "nodeagent"}
