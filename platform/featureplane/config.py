"""``featureplane.yaml``: which registry, engine and stores a repository uses, and how it is monitored.

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


# -- the monitoring section ---------------------------------------------------------------------
# ```yaml
# monitoring:
#   dagster_url: http://127.0.0.1:3000     # links in alerts
#   quality: {enabled: true, bad_key_sample: 10, profile_observations: 31}
#   freshness: {cron: "0 * * * *"}          # when freshness checks run
#   serving_log: {sample_rate: 0.1, path: .featureplane/monitoring/served}   # or sink: "pkg.mod:Sink"
#   serving_stats: {path: .featureplane/monitoring/serving_stats, interval_seconds: 10}
#   drift: {psi_threshold: 0.2, min_samples: 100, bins: 10}
#   alerts:
#     - {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
#     - {type: webhook, url: "https://ops.example.com/hooks/features", headers: {X-Token: "${TOKEN}"}}
#     - {type: email, host: smtp.example.com, port: 587, starttls: true, from: fp@example.com, to: [oncall@example.com]}
#     - {type: log, path: .featureplane/alerts.log}
# ```

EVENTS = ("run_failure", "quality", "freshness", "drift")
SINK_TYPES = {
    "slack": ("webhook_url",),
    "webhook": ("url",),
    "email": ("host", "from", "to"),
    "log": ("path",),
}
_MONITORING_KEYS = {
    "dagster_url",
    "quality",
    "freshness",
    "serving_log",
    "serving_stats",
    "drift",
    "alerts",
}


@dataclass
class AlertSinkSettings:
    type: str
    options: dict[str, Any]
    events: tuple[str, ...] = EVENTS

    @property
    def label(self) -> str:
        target = self.options.get("url") or self.options.get("path") or self.options.get("to") or ""
        if self.type == "slack":
            target = "webhook"
        return f"{self.type}({target})"


@dataclass
class MonitoringSettings:
    dagster_url: str = "http://127.0.0.1:3000"
    quality_enabled: bool = True
    bad_key_sample: int = 10
    # A range run records one profile observation for each of its last N partitions (Dagster writes every
    # event on its own: a year's backfill with one per partition spends more on them than on the data).
    profile_observations: int = 31
    freshness_cron: str = "0 * * * *"
    serving_log_enabled: bool = True
    sample_rate: float = 0.1
    serving_log_path: Path = Path(".featureplane/monitoring/served")
    serving_log_sink: str | None = None
    serving_log_options: dict[str, Any] = field(default_factory=dict)
    queue_size: int = 10_000
    serving_stats_enabled: bool = True
    serving_stats_path: Path = Path(".featureplane/monitoring/serving_stats")
    stats_interval_seconds: float = 10.0
    psi_threshold: float = 0.2
    drift_min_samples: int = 100
    drift_bins: int = 10
    alerts: list[AlertSinkSettings] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Config | None) -> MonitoringSettings:
        """Settings from a loaded config (defaults when ``config`` is None); ConfigError on bad values."""
        raw = dict(config.monitoring) if config is not None else {}
        where = f"{config.path}: monitoring" if config is not None else "monitoring"
        raw.pop("enabled", None)
        unknown = set(raw) - _MONITORING_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_MONITORING_KEYS))})"
            )
        data_dir = config.data_dir if config is not None else Path(".featureplane").resolve()
        resolve = config.resolve if config is not None else (lambda p: Path(p).resolve())
        s = cls(
            serving_log_path=data_dir / "monitoring" / "served",
            serving_stats_path=data_dir / "monitoring" / "serving_stats",
        )
        s.dagster_url = str(raw.get("dagster_url", s.dagster_url)).rstrip("/")

        quality = _section(raw, "quality", where)
        s.quality_enabled = _bool(quality.get("enabled", True), f"{where}.quality.enabled")
        s.bad_key_sample = _int(
            quality.get("bad_key_sample", s.bad_key_sample), f"{where}.quality.bad_key_sample", 0
        )
        s.profile_observations = _int(
            quality.get("profile_observations", s.profile_observations),
            f"{where}.quality.profile_observations",
            0,
        )

        freshness = _section(raw, "freshness", where)
        s.freshness_cron = str(freshness.get("cron", s.freshness_cron))
        if len(s.freshness_cron.split()) != 5:
            raise ConfigError(
                f"{where}.freshness.cron must be a 5-field cron expression, got {s.freshness_cron!r}"
            )

        log = _section(raw, "serving_log", where)
        s.serving_log_enabled = _bool(log.get("enabled", True), f"{where}.serving_log.enabled")
        s.sample_rate = _float(
            log.get("sample_rate", s.sample_rate), f"{where}.serving_log.sample_rate", 0, 1
        )
        if "path" in log:
            s.serving_log_path = resolve(log["path"])
        s.serving_log_sink = log.get("sink")
        if s.serving_log_sink is not None and ":" not in str(s.serving_log_sink):
            raise ConfigError(
                f"{where}.serving_log.sink must name a class as 'package.module:ClassName', got {s.serving_log_sink!r}"
            )
        s.serving_log_options = dict(_section(log, "options", f"{where}.serving_log"))
        s.queue_size = _int(log.get("queue_size", s.queue_size), f"{where}.serving_log.queue_size", 1)

        stats = _section(raw, "serving_stats", where)
        s.serving_stats_enabled = _bool(stats.get("enabled", True), f"{where}.serving_stats.enabled")
        if "path" in stats:
            s.serving_stats_path = resolve(stats["path"])
        s.stats_interval_seconds = _float(
            stats.get("interval_seconds", s.stats_interval_seconds),
            f"{where}.serving_stats.interval_seconds",
            0.05,
        )

        drift = _section(raw, "drift", where)
        s.psi_threshold = _float(
            drift.get("psi_threshold", s.psi_threshold), f"{where}.drift.psi_threshold", 0
        )
        s.drift_min_samples = _int(
            drift.get("min_samples", s.drift_min_samples), f"{where}.drift.min_samples", 1
        )
        s.drift_bins = _int(drift.get("bins", s.drift_bins), f"{where}.drift.bins", 2)

        alerts = raw.get("alerts") or []
        if not isinstance(alerts, list):
            raise ConfigError(
                f"{where}.alerts must be a list of sinks, e.g. [{{type: slack, webhook_url: ...}}]"
            )
        for i, item in enumerate(alerts):
            s.alerts.append(_sink(item, f"{where}.alerts[{i}]", resolve))
        return s


def _sink(item: Any, where: str, resolve: Any) -> AlertSinkSettings:
    if not isinstance(item, dict) or item.get("type") not in SINK_TYPES:
        raise ConfigError(
            f"{where}: expected a mapping with type one of {', '.join(SINK_TYPES)}, got {item!r}"
        )
    options = {k: v for k, v in item.items() if k not in ("type", "events")}
    missing = [k for k in SINK_TYPES[item["type"]] if not options.get(k)]
    if missing:
        raise ConfigError(f"{where} ({item['type']}): missing {', '.join(missing)}")
    events = item.get("events") or list(EVENTS)
    if isinstance(events, str):
        events = [events]
    bad = [e for e in events if e not in EVENTS]
    if bad:
        raise ConfigError(f"{where}: unknown event(s) {', '.join(bad)}; choose from {', '.join(EVENTS)}")
    if item["type"] == "email":
        if isinstance(options["to"], str):
            options["to"] = [options["to"]]
        options["port"] = _int(options.get("port", 25), f"{where}.port", 1)
    if item["type"] == "log":
        options["path"] = resolve(options["path"])
    return AlertSinkSettings(type=item["type"], options=options, events=tuple(events))


def _section(raw: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if isinstance(value, bool):
        value = {"enabled": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{name} must be a mapping")
    return value


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{where} must be true or false, got {value!r}")


def _float(value: Any, where: str, low: float, high: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{where} must be {bounds}, got {value!r}")
    return number


def _int(value: Any, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where} must be an integer of at least {low}, got {value!r}")
    return value
