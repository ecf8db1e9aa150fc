"""The ``monitoring`` section of featureplane.yaml, checked and with defaults filled in.

```yaml
monitoring:
  dagster_url: http://127.0.0.1:3000     # links in alerts
  quality: {enabled: true, bad_key_sample: 10, profile_observations: 31}
  freshness: {cron: "0 * * * *"}          # when freshness checks run
  serving_log: {sample_rate: 0.1, path: .featureplane/monitoring/served}   # or sink: "pkg.mod:Sink"
  serving_stats: {path: .featureplane/monitoring/serving_stats, interval_seconds: 10}
  drift: {psi_threshold: 0.2, min_samples: 100, bins: 10}
  alerts:
    - {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
    - {type: webhook, url: "https://ops.example.com/hooks/features", headers: {X-Token: "${TOKEN}"}}
    - {type: email, host: smtp.example.com, port: 587, starttls: true, from: fp@example.com, to: [oncall@example.com]}
    - {type: log, path: .featureplane/alerts.log}
```

Standard library only: the lookup service reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.config import ConfigError

if TYPE_CHECKING:
    from featureplane.config import Config

EVENTS = ("run_failure", "quality", "freshness", "drift")
SINK_TYPES = {
    "slack": ("webhook_url",),
    "webhook": ("url",),
    "email": ("host", "from", "to"),
    "log": ("path",),
}
_SECTIONS = {
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
        unknown = set(raw) - _SECTIONS
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_SECTIONS))})"
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
