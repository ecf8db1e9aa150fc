"""Import every Python file of a feature repository and collect the definitions it declares, then add
the feature views declared in the dbt project that featureplane.yaml names."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from featureplane.definitions.base import Definition, DefinitionError, collecting
from featureplane.repo.errors import Problem, RepositoryError

if TYPE_CHECKING:
    from featureplane.config import Config

SKIPPED_DIRS = {"__pycache__", "node_modules", "venv", "data", "target", "dbt_packages", "logs"}


@dataclass
class Repository:
    """The definitions of a feature repository, in the order they were declared."""

    root: Path
    definitions: list[Definition] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Definition]:
        return [d for d in self.definitions if d.kind == kind]


def python_files(root: Path, skip: set[Path] | None = None) -> list[Path]:
    found = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith((".", "_"))
            and d not in SKIPPED_DIRS
            and Path(directory, d).resolve() not in (skip or set())
        )
        for filename in sorted(filenames):
            if (
                filename.endswith(".py")
                and not filename.startswith(("test_", "."))
                and not filename.endswith("_test.py")
            ):
                found.append(Path(directory) / filename)
    return found


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _forget_modules(root: Path) -> None:
    prefix = str(root) + os.sep
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        if filename and os.path.abspath(filename).startswith(prefix):
            del sys.modules[name]


def load_repository(root: str | os.PathLike, config: Config | None = None) -> Repository:
    """Import the repository's files (with its root on ``sys.path``, so files can import each other)
    and collect every definition constructed. With a ``config``, DbtModel sources are resolved against
    its dbt project and the views declared in dbt are added. Raises RepositoryError naming each file
    (or dbt YAML file:line) that fails."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise RepositoryError([Problem("repository", "", str(root), "directory does not exist")])
    dbt_dir = config.resolve(config.dbt["project_dir"]) if config and config.dbt.get("project_dir") else None
    files = python_files(root, {dbt_dir} if dbt_dir else None)
    problems: list[Problem] = []
    _forget_modules(root)
    sys.path.insert(0, str(root))
    try:
        with collecting() as collected:
            for path in files:
                name = _module_name(root, path)
                if not name:
                    continue
                try:
                    importlib.import_module(name)
                except DefinitionError as exc:
                    problems.append(
                        Problem("", "", "", str(exc))
                    )  # the message names the object and file:line
                except Exception as exc:
                    problems.append(Problem("file", "", _error_location(exc, path), _describe(exc)))
    finally:
        sys.path.remove(str(root))
        _forget_modules(root)
    definitions = list(collected)
    if config is not None and not problems:
        from featureplane.repo.dbt_views import dbt_definitions

        problems += dbt_definitions(config, definitions)
    if problems:
        raise RepositoryError(problems)
    return Repository(root=root, definitions=definitions, files=files)


def _error_location(exc: BaseException, path: Path) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if os.path.abspath(frame.filename) == str(path):
            return f"{path}:{frame.lineno}"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{exc.filename or path}:{exc.lineno}"
    return str(path)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"syntax error: {exc.msg}"
    return f"importing failed: {type(exc).__name__}: {exc}"
