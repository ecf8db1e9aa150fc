"""The layout's rules, checked on the source (docs/architecture.md explains them).

Every import counts: at the top of a module, inside a function (imported lazily) and under
``TYPE_CHECKING``. A rule that only held at run time would let the layout drift.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "platform" / "featureplane"

# What each package of the platform may import besides the foundation (docs/architecture.md has the
# same table, and a test keeps the two equal). None: any package.
FOUNDATION = {"types", "config", "errors", "util"}
ALLOWED: dict[str, set[str] | None] = {
    "types": {"config", "errors"},
    "config": {"types", "errors", "util"},
    "errors": {"types", "config"},
    "util": {"errors"},
    "definitions": set(),
    "dbt": set(),
    "compute": {"definitions", "dbt"},
    "offline_stores": {"definitions", "compute"},
    "online_stores": {"definitions"},
    "registry": {"definitions"},
    "access": {"registry"},
    "runtime": {"registry", "compute", "offline_stores", "online_stores"},
    "materialization": {
        "definitions",
        "compute",
        "offline_stores",
        "online_stores",
        "registry",
        "runtime",
        "ingest",
    },
    "ingest": {"definitions", "offline_stores", "online_stores", "registry", "runtime"},
    "serving": {"definitions", "compute", "online_stores", "registry", "access", "ingest"},
    "streams": {"definitions", "compute", "offline_stores", "online_stores", "registry", "runtime", "ingest"},
    "retrieval": {
        "definitions",
        "compute",
        "offline_stores",
        "online_stores",
        "registry",
        "runtime",
        "materialization",
        "ingest",
        "serving",
    },
    "monitoring": {
        "definitions",
        "compute",
        "offline_stores",
        "online_stores",
        "registry",
        "runtime",
        "materialization",
        "serving",
        "ingest",
        "streams",
    },
    "repo": {
        "definitions",
        "dbt",
        "compute",
        "registry",
        "access",
        "runtime",
        "materialization",
        "monitoring",
    },
    "examples": {"compute"},
    "server": {"definitions", "registry", "access", "runtime", "materialization", "repo"},
    "cli": None,
}
TOP_LEVEL_MODULES = {"__init__.py", "config.py", "types.py", "errors.py"}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _module_graph() -> dict[str, dict[str, int]]:
    """Each platform module -> the platform modules it imports, with the line of the first import.

    ``from featureplane.a import b`` is an edge to ``featureplane.a.b`` when that is a module, else to
    ``featureplane.a``. Importing ``featureplane.a.b`` also runs ``featureplane.a``'s ``__init__``, which
    is not counted: package faces stay cheap and import their parts lazily."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                if target in modules and target != name:
                    graph[name].setdefault(target, node.lineno)
    return graph


def _imported_top_levels(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_among_the_platforms_modules():
    cycles = _cycles(_module_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_platform_never_imports_dagster_or_the_code_location():
    offenders = []
    for path in _modules().values():
        for target, line in _imported_top_levels(path):
            top = target.split(".")[0]
            if top in ("dagster", "dagster_project", "dagster_dbt"):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not offenders, "\n".join(offenders)


def test_each_package_imports_only_what_the_layout_allows():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert set(ALLOWED) >= packages, "a new package needs its row in ALLOWED (and in docs/architecture.md)"
    modules = _modules()
    wrong = []
    for name, targets in _module_graph().items():
        source = _package(name)
        if not source or ALLOWED.get(source) is None:
            continue
        allowed = (
            ALLOWED[source]
            if source in ("types", "config", "errors", "util")
            else ALLOWED[source] | FOUNDATION
        )
        for target, line in targets.items():
            package = _package(target)
            if package and package != source and package not in allowed:
                wrong.append(f"{modules[name].relative_to(ROOT)}:{line}: {source} may not import {target}")
    assert not wrong, "\n".join(wrong)


def test_top_level_holds_only_the_package_face_config_types_and_errors():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_LEVEL_MODULES)
    assert not loose, f"modules at the top of platform/featureplane/ belong in a package: {loose}"


def test_no_platform_module_is_over_600_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these by job: {long}"


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []


def test_the_architecture_guide_states_the_same_rules():
    """Each row of docs/architecture.md's table "Where each concern lives" names what ALLOWED says."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z_]+)(?:/|\.py)`", cells[0])
        allowed = None if cells[2] == "any" else set(re.findall(r"`([a-z_]+)`", cells[2]))
        for name in names:
            rows[name] = allowed
    for package, allowed in ALLOWED.items():
        if package in ("types", "config", "errors"):
            continue  # one row for the three, importing each other
        assert package in rows, f"docs/architecture.md has no row for {package}/"
        assert rows[package] == allowed, (
            f"docs/architecture.md: {package}/ may import {allowed}, not {rows[package]}"
        )
