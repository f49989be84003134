"""pyproject.toml declares exactly the packages the code imports: runtime code's in ``dependencies``, tests' in the
``dev`` extra, benchmarks' in the ``bench`` extra; nothing declared goes unused."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCAL = {"core", "collectors", "analytics", "dashboard", "simulator", "wattline", "tests"}
SKIP_DIRS = {".venv", "venv", "node_modules", "build", "dist", ".git", "test-artifacts"}
#: Used through configuration or as commands rather than imports: pytest plugins named in [tool.pytest.ini_options],
#: the linter and the type checker.
USED_WITHOUT_IMPORT = {"pytest-timeout", "pytest-asyncio", "ruff", "mypy"}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, set[str]]:
    """{"dependencies" | extra name: {normalised distribution names}} from pyproject.toml."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"dependencies": project.get("dependencies", []), **project.get("optional-dependencies", {})}
    return {group: {normal(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]) for req in reqs} for group, reqs in groups.items()}


def python_files() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        found.extend(Path(folder) / f for f in files if f.endswith(".py"))
    return found


@functools.cache
def imports_by_tier() -> dict[str, dict[str, set[str]]]:
    """{"runtime" | "tests" | "bench": {top-level module: {files}}} for third-party imports in the tree."""
    tiers: dict[str, dict[str, set[str]]] = {"runtime": {}, "tests": {}, "bench": {}}
    for path in python_files():
        rel = path.relative_to(REPO)
        if rel.parts[:2] == ("tests", "benchmarks"):
            tier = "bench"
        elif "tests" in rel.parts or rel.name == "conftest.py":
            tier = "tests"
        else:
            tier = "runtime"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in LOCAL and top not in sys.stdlib_module_names and top not in ("tomli",):
                    tiers[tier].setdefault(top, set()).add(str(rel))
    return tiers


@functools.cache
def _packages() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    return {normal(d) for d in _packages().get(module, [])}


def test_every_imported_package_is_declared_in_its_tier():
    groups = declared()
    allowed = {
        "runtime": groups["dependencies"],
        "tests": groups["dependencies"] | groups.get("dev", set()),
        "bench": groups["dependencies"] | groups.get("dev", set()) | groups.get("bench", set()),
    }
    where = {"runtime": "dependencies", "tests": "the dev extra", "bench": "the bench extra"}
    problems = []
    for tier, modules in imports_by_tier().items():
        for module, files in sorted(modules.items()):
            dists = distributions_of(module) or {normal(module)}  # not installed (e.g. the bench extra in CI)
            if not dists & allowed[tier]:
                problems.append(f"{module} (imported in {min(files)}) comes from {min(dists)}, which is not "
                                f"declared in {where[tier]} of pyproject.toml")
    assert not problems, "\n".join(problems)


def test_nothing_declared_is_unused():
    used = set()
    for modules in imports_by_tier().values():
        for module in modules:
            used |= distributions_of(module) or {normal(module)}
    unused = {group: sorted(dists - used - USED_WITHOUT_IMPORT) for group, dists in declared().items()}
    assert not any(unused.values()), f"declared in pyproject.toml but imported nowhere: {unused}"
