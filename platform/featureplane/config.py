"""``featureplane.yaml``: which registry, engine and stores a repository uses.

Found by ``--config``, then ``$FEATUREPLANE_CONFIG``, then ``./featureplane.yaml``, then
``./feature_repo/featureplane.yaml``. Relative paths are relative to the file's directory, which is also
the feature repository's root. ``${VAR}`` and ``${VAR:-default}`` are read from the environment, so
secrets stay out of the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "featureplane.yaml"
ENV_CONFIG = "FEATUREPLANE_CONFIG"
ENV_WORKSPACE = "FEATUREPLANE_WORKSPACE"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Settings whose values are secrets (passwords, key passphrases, tokens): shown as *** in reprs.
_SECRET_WORDS = ("password", "passphrase", "pwd", "private_key", "token", "secret", "passcode")


def redacted(value: Any) -> Any:
    """``value`` (a config section) with every secret setting replaced by ``***``."""
    if isinstance(value, dict):
        return {
            k: "***" if any(w in str(k).lower() for w in _SECRET_WORDS) and v else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


class ConfigError(ValueError):
    pass


@dataclass
class Config:
    path: Path
    project: str
    data_dir: Path
    registry: dict[str, Any]
    engine: dict[str, Any]
    offline_store: dict[str, Any]
    online_store: dict[str, Any]
    serving: dict[str, Any] = field(default_factory=dict)
    monitoring: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)
    dbt: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        sections = ", ".join(
            f"{name}={redacted(getattr(self, name))!r}"
            for name in (
                "registry",
                "engine",
                "offline_store",
                "online_store",
                "serving",
                "monitoring",
                "auth",
            )
        )
        return f"Config(path={str(self.path)!r}, project={self.project!r}, {sections})"

    @property
    def root(self) -> Path:
        """The feature repository's root: the directory holding featureplane.yaml."""
        return self.path.parent

    def resolve(self, value: str | os.PathLike) -> Path:
        path = Path(os.path.expanduser(str(value)))
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def registry_path(self) -> Path:
        return self.resolve(self.registry.get("path", self.data_dir / "registry.db"))

    @property
    def warehouse_path(self) -> Path:
        return self.resolve(self.engine.get("warehouse", self.data_dir / "warehouse.duckdb"))

    @property
    def offline_path(self) -> Path:
        return self.resolve(self.offline_store.get("path", self.data_dir / "offline"))

    @property
    def online_path(self) -> Path:
        return self.resolve(self.online_store.get("path", self.data_dir / "online.db"))

    @property
    def state_path(self) -> Path:
        """Local, per-checkout state such as the selected workspace."""
        return self.data_dir / "state.json"


def find_config_path(explicit: str | os.PathLike | None = None) -> Path:
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get(ENV_CONFIG):
        candidates.append(Path(os.environ[ENV_CONFIG]))
    else:
        candidates += [Path.cwd() / CONFIG_FILE, Path.cwd() / "feature_repo" / CONFIG_FILE]
    for candidate in candidates:
        if candidate.is_dir():
            candidate = candidate / CONFIG_FILE
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"no {CONFIG_FILE} found (looked at {tried}); run from the feature repository, pass --config, "
        f"or set {ENV_CONFIG}"
    )


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set")

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    return value


_SECTIONS = ("registry", "engine", "offline_store", "online_store", "serving", "monitoring", "auth", "dbt")
_DEFAULT_TYPES = {
    "registry": "sqlite",
    "engine": "duckdb",
    "offline_store": "delta",
    "online_store": "sqlite",
}


def load_config(explicit: str | os.PathLike | None = None) -> Config:
    import yaml

    path = find_config_path(explicit)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(raw) - {"project", "data_dir", *_SECTIONS}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    raw = _expand(raw, str(path))
    sections: dict[str, dict[str, Any]] = {}
    for name in _SECTIONS:
        section = raw.get(name) or {}
        if isinstance(section, bool):
            section = {"enabled": section}
        if isinstance(section, str):
            section = {"type": section}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: {name} must be a mapping")
        if name in _DEFAULT_TYPES:
            section.setdefault("type", _DEFAULT_TYPES[name])
        sections[name] = section
    root = path.parent
    data_dir = Path(raw.get("data_dir", ".featureplane"))
    data_dir = data_dir if data_dir.is_absolute() else (root / data_dir).resolve()
    return Config(
        path=path,
        project=str(raw.get("project", root.name)),
        data_dir=data_dir,
        raw=raw,
        **sections,
    )
