"""Every third-party package that benchmark/ and tasks/ import is declared in pyproject.toml,
so a clean install (CI runs the README's test command on a fresh checkout) has it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests.conftest import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _optional(tree: ast.AST) -> set[int]:
    """ids of import nodes inside ``try: ... except ImportError`` (optional extras, e.g. triton on CUDA)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imported_top_level_modules() -> dict[str, str]:
    """Top-level module -> first file importing it unconditionally, over benchmark/ and tasks/ (absolute imports)."""
    found = {}
    for path in sorted([*(REPO_ROOT / "benchmark").rglob("*.py"), *(REPO_ROOT / "tasks").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        optional = _optional(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(REPO_ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    own = {"benchmark", "tasks"}
    providers = packages_distributions()
    missing = {}
    for module, where in imported_top_level_modules().items():
        if module in own or module in sys.stdlib_module_names:
            continue
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists, f"{module} (imported in {where}) is not installed"
        if not dists & declared:
            missing[module] = (sorted(dists), where)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
