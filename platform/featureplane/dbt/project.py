"""The dbt project named in featureplane.yaml, how dbt is run on it, and its manifest kept current.

``dbt parse`` takes several seconds, so the manifest is re-parsed only when the project's files change:
a fingerprint of their contents is stored next to ``target/manifest.json``. Because the fingerprint is
made of contents (not paths or times), a copied or freshly cloned project that already holds its
parsed manifest is current as well. ``make setup`` parses the example project once.

dbt reads the warehouse path from ``$FEATUREPLANE_WAREHOUSE`` (see ``dbt/profiles.yml``); every dbt
command featureplane runs gets it from featureplane.yaml, so dbt writes the warehouse the engine reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from featureplane.util.locks import file_lock

if TYPE_CHECKING:
    from featureplane.config import Config
    from featureplane.dbt.manifest import Manifest

ENV_WAREHOUSE = "FEATUREPLANE_WAREHOUSE"
FINGERPRINT_FILE = "featureplane_manifest.fingerprint"
CONFIG_KEYS = {"project_dir", "profiles_dir", "target"}
_PROJECT_SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".md", ".py", ".jinja")
_SKIPPED_DIRS = {"target", "dbt_packages", "logs"}
_LOG_PREFIX = re.compile(r"^\S*\d\d:\d\d:\d\d\s+")


class DbtError(RuntimeError):
    """The dbt project is misconfigured or dbt failed; the message carries dbt's own explanation."""


@dataclass(frozen=True)
class DbtProject:
    """A dbt project as featureplane runs it."""

    project_dir: Path
    profiles_dir: Path
    target: str | None = None
    warehouse: Path | None = None

    @property
    def target_path(self) -> Path:
        return self.project_dir / "target"

    @property
    def manifest_path(self) -> Path:
        return self.target_path / "manifest.json"

    def env_overrides(self) -> dict[str, str]:
        """What a dbt command's environment needs: telemetry off, the warehouse featureplane reads."""
        env = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1"}
        if self.warehouse is not None:
            env[ENV_WAREHOUSE] = str(self.warehouse)
        return env

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.env_overrides(), "DBT_USE_COLORS": "False"}

    def command(self, *args: str) -> list[str]:
        """``dbt <args>`` for this project, its profiles and target."""
        command = [dbt_executable(), *args, "--project-dir", str(self.project_dir)]
        command += ["--profiles-dir", str(self.profiles_dir)]
        if self.target:
            command += ["--target", self.target]
        return command

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """Run a dbt command; DbtError with dbt's error lines if it fails."""
        try:
            result = subprocess.run(
                self.command(*args),
                cwd=self.project_dir,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DbtError(f"could not run dbt {' '.join(args)} in {self.project_dir}: {exc}") from exc
        if result.returncode != 0:
            raise DbtError(
                f"dbt {' '.join(args)} failed in {self.project_dir}:\n"
                + _error_text(result.stdout + result.stderr)
            )
        return result


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if found is None:
        raise DbtError("the dbt command is not installed (pip install dbt-core dbt-duckdb)")
    return found


def dbt_project(config: Config) -> DbtProject | None:
    """The project of featureplane.yaml's ``dbt:`` section, or None when there is none."""
    section = config.dbt
    if not section:
        return None
    unknown = set(section) - CONFIG_KEYS
    if unknown:
        raise DbtError(
            f"{config.path}: unknown key(s) {', '.join(sorted(unknown))} in dbt: "
            f"(known: {', '.join(sorted(CONFIG_KEYS))}; e.g. dbt: {{project_dir: ../dbt}})"
        )
    if "project_dir" not in section:
        raise DbtError(f"{config.path}: dbt: needs project_dir (the directory holding dbt_project.yml)")
    project_dir = config.resolve(section["project_dir"])
    if not (project_dir / "dbt_project.yml").is_file():
        raise DbtError(f"{config.path}: dbt.project_dir {project_dir} has no dbt_project.yml")
    profiles_dir = config.resolve(section["profiles_dir"]) if section.get("profiles_dir") else project_dir
    is_duckdb = config.engine.get("type", "duckdb") == "duckdb"
    return DbtProject(
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=section.get("target") or None,
        warehouse=config.warehouse_path if is_duckdb else None,
    )


def project_files(project: DbtProject) -> list[Path]:
    found = []
    for directory, dirnames, filenames in os.walk(project.project_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIPPED_DIRS)
        found += [Path(directory) / f for f in sorted(filenames) if f.endswith(_PROJECT_SUFFIXES)]
    profiles = project.profiles_dir / "profiles.yml"
    if profiles.is_file() and profiles not in found:
        found.append(profiles)
    return found


def fingerprint(project: DbtProject) -> str:
    """A hash of everything that shapes the manifest: the project's files, the target, dbt's version."""
    digest = hashlib.sha256()
    digest.update(f"{metadata.version('dbt-core')}\0{project.target or ''}\0".encode())
    for path in project_files(project):
        relative = os.path.relpath(path, project.project_dir)
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def prepare_manifest(project: DbtProject, *, force: bool = False) -> Path:
    """Make ``target/manifest.json`` current, running ``dbt parse`` only if the project changed."""
    stamp = project.target_path / FINGERPRINT_FILE
    with file_lock(project.target_path / ".featureplane-parse.lock"):
        current = fingerprint(project)
        if not force and project.manifest_path.is_file() and _read(stamp) == current:
            return project.manifest_path
        stamp.unlink(missing_ok=True)
        project.run("parse", "--quiet")
        if not project.manifest_path.is_file():
            raise DbtError(f"dbt parse wrote no manifest at {project.manifest_path}")
        stamp.write_text(current)
    return project.manifest_path


_MANIFESTS: dict[tuple[str, int, int], Manifest] = {}


def load_manifest(project: DbtProject) -> Manifest:
    """The project's current manifest (parsed if needed; read once per process per version)."""
    from featureplane.dbt.manifest import Manifest

    path = prepare_manifest(project)
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _MANIFESTS:
        _MANIFESTS.clear()
        _MANIFESTS[key] = Manifest(json.loads(path.read_text()), project.project_dir)
    return _MANIFESTS[key]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _error_text(output: str) -> str:
    """dbt's output without timestamps and the lines that only say it ran."""
    lines = [_LOG_PREFIX.sub("", line).rstrip() for line in output.splitlines()]
    noise = ("Running with dbt=", "Registered adapter:", "Performance info:", "Encountered an error:")
    kept = [line for line in lines if line.strip() and not line.strip().startswith(noise)]
    return "\n".join("  " + line for line in kept[-40:]) or "  (dbt printed nothing)"
