"""``featureplane.yaml``: which registry, engine and stores a repository uses, and how it is served and
monitored. docs/configuration.md describes every key.

Found by ``--config``, then ``$FEATUREPLANE_CONFIG``, then ``./featureplane.yaml``, then
``./feature_repo/featureplane.yaml``. Relative paths are relative to the file's directory, which is also
the feature repository's root. ``${VAR}`` and ``${VAR:-default}`` are read from the environment, so
secrets stay out of the file. The whole file is checked once, when it is loaded, by every command: a
misspelled key, a wrong type or an unsupported backend is one clear error naming the file and the key.
Standard library only: the lookup service loads it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from featureplane.util.alert_settings import (
    AlertSinkSettings,
    parse_alert_sinks,
    parse_cron,
    parse_lag_bounds,
)
from featureplane.util.lifecycle_settings import LifecycleSettings
from featureplane.util.settings import Section, SettingsError, parse_section, setting
from featureplane.util.stream_settings import StreamSettings

CONFIG_FILE = "featureplane.yaml"
ENV_CONFIG = "FEATUREPLANE_CONFIG"
ENV_WORKSPACE = "FEATUREPLANE_WORKSPACE"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    pass


# -- registry ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class SQLiteRegistrySettings(Section):
    doc = "The registry and access store in one SQLite file (one machine)."
    type: Literal["sqlite"] = "sqlite"
    path: Path | None = setting(None, doc="the database file (default <data_dir>/registry.db)")


@dataclass(frozen=True, kw_only=True, repr=False)
class PostgresRegistrySettings(Section):
    doc = "The registry and access store in PostgreSQL (a team)."
    type: Literal["postgres"] = "postgres"
    dsn: str = setting(doc="libpq connection string or URL, without the password (one there is refused)")
    password_env: str | None = setting(None, doc="environment variable holding the password (else libpq's)")
    pool_min_size: int = setting(1, minimum=0, doc="connections kept open")
    pool_max_size: int = setting(10, minimum=1, doc="connections at most")
    connect_timeout_seconds: float = setting(10.0, minimum=0, doc="how long to wait for a connection")


@dataclass(frozen=True, kw_only=True, repr=False)
class RemoteRegistrySettings(Section):
    doc = "The registry and access store behind a featureplane server."
    type: Literal["remote"] = "remote"
    url: str = setting(doc="the server's URL, e.g. https://features.example.com")
    token_file: Path | None = setting(
        None, doc="where `featureplane login` keeps the token (default ~/.featureplane/tokens.json)"
    )
    timeout_seconds: float = setting(30.0, minimum=0, doc="per request")


# -- Snowflake connections (engine and offline store) -----------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class SnowflakeConnection(Section):
    account: str | None = setting(None, doc="the account identifier")
    user: str | None = setting(None, doc="the user (not needed with authenticator: oauth)")
    role: str | None = setting(None, doc="the role to use")
    warehouse: str | None = setting(None, doc="the virtual warehouse that runs queries")
    database: str | None = setting(None, doc="the default database")
    schema: str | None = setting(None, doc="the default schema")
    authenticator: str | None = setting(None, doc="snowflake (default), externalbrowser, oauth, ...")
    private_key_file: str | None = setting(None, doc="a PEM key file for key-pair authentication")
    host: str | None = setting(None, doc="a host other than the account's (private link, a stand-in)")
    port: int | None = setting(None, doc="with host")
    protocol: str | None = setting(None, doc="https (default) or http, with host")
    login_timeout: float | None = setting(None, doc="seconds")
    network_timeout: float | None = setting(None, doc="seconds")
    password: str | None = setting(None, secret=True, doc='e.g. "${SNOWFLAKE_PASSWORD}"')
    private_key: str | None = setting(None, secret=True, doc="a PEM key, inline")
    private_key_file_pwd: str | None = setting(None, secret=True, doc="the key file's passphrase")
    private_key_passphrase: str | None = setting(None, secret=True, doc="the inline key's passphrase")
    token: str | None = setting(None, secret=True, doc="an OAuth token")
    passcode: str | None = setting(None, secret=True, doc="an MFA passcode")
    query_tag: str | None = setting(None, doc="tags every query (default featureplane)")
    session_parameters: dict[str, Any] = setting({}, doc="Snowflake session parameters")
    connect_args: dict[str, Any] = setting({}, doc="more snowflake.connector.connect() arguments")


# -- engine -----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class DuckDBEngineSettings(Section):
    doc = "DuckDB on this machine."
    type: Literal["duckdb"] = "duckdb"
    warehouse: Path | None = setting(
        None, doc="the DuckDB file sources live in (default <data_dir>/warehouse.duckdb)"
    )
    memory_limit: str | None = setting(None, doc="e.g. 1GB: past it DuckDB spills to temp_directory")
    threads: int | None = setting(None, minimum=1, doc="DuckDB's threads (default: one per core)")
    temp_directory: Path | None = setting(None, doc="where DuckDB spills (default <data_dir>/tmp/duckdb)")
    lock_timeout_seconds: float = setting(120.0, minimum=0, doc="how long a writer waits for the warehouse")


@dataclass(frozen=True, kw_only=True, repr=False)
class SnowflakeEngineSettings(SnowflakeConnection):
    doc = "Snowflake (SQL and Snowpark views run in the warehouse)."
    type: Literal["snowflake"] = "snowflake"
    dbt_schema: str | None = setting(None, doc="the schema dbt builds models in, when not the connection's")


# -- stores -----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class DeltaOfflineSettings(Section):
    doc = "A Delta Lake table per feature view on local disk."
    type: Literal["delta"] = "delta"
    path: Path | None = setting(None, doc="the tables' root (default <data_dir>/offline)")
    ingest_log: Path | None = setting(None, doc="the durable ingest log (default <data_dir>/ingest_log)")


@dataclass(frozen=True, kw_only=True, repr=False)
class SnowflakeOfflineSettings(SnowflakeConnection):
    doc = "Snowflake tables (the engine's connection unless an account is given here)."
    type: Literal["snowflake"] = "snowflake"
    point_in_time_join: Literal["asof", "window"] = setting("asof", doc="how training joins run")
    table_prefix: str = setting("FP_", doc="prefix of featureplane's tables")
    ingest_log: Path | None = setting(None, doc="the durable ingest log (default <data_dir>/ingest_log)")


@dataclass(frozen=True, kw_only=True, repr=False)
class SQLiteOnlineSettings(Section):
    doc = "One SQLite file on this machine."
    type: Literal["sqlite"] = "sqlite"
    path: Path | None = setting(None, doc="the database file (default <data_dir>/online.db)")


@dataclass(frozen=True, kw_only=True, repr=False)
class DynamoDBOnlineSettings(Section):
    doc = "Amazon DynamoDB, one table per workspace."
    type: Literal["dynamodb"] = "dynamodb"
    region: str | None = setting(None, doc="default: the AWS SDK's")
    table_prefix: str = setting("featureplane_", doc="a table per workspace: <prefix><workspace>")
    endpoint_url: str | None = setting(None, doc="a DynamoDB-compatible server")
    billing_mode: Literal["PAY_PER_REQUEST", "PROVISIONED"] = setting(
        "PAY_PER_REQUEST", doc="of tables apply creates"
    )
    read_capacity: int = setting(5, minimum=1, doc="with PROVISIONED")
    write_capacity: int = setting(5, minimum=1, doc="with PROVISIONED")
    consistent_reads: bool = setting(False, doc="strongly consistent lookups (twice the read cost)")
    max_workers: int = setting(8, minimum=1, doc="parallel calls")
    max_attempts: int = setting(12, minimum=1, doc="attempts without progress before giving up")
    retry_base_seconds: float = setting(0.025, minimum=0, doc="first backoff (exponential, full jitter)")
    retry_max_seconds: float = setting(2.0, minimum=0, doc="longest backoff")
    connect_timeout: float = setting(2.0, minimum=0, doc="seconds per call")
    read_timeout: float = setting(5.0, minimum=0, doc="seconds per call")


BACKENDS: dict[str, dict[str, type[Section]]] = {
    "registry": {
        "sqlite": SQLiteRegistrySettings,
        "postgres": PostgresRegistrySettings,
        "remote": RemoteRegistrySettings,
    },
    "engine": {"duckdb": DuckDBEngineSettings, "snowflake": SnowflakeEngineSettings},
    "offline_store": {"delta": DeltaOfflineSettings, "snowflake": SnowflakeOfflineSettings},
    "online_store": {"sqlite": SQLiteOnlineSettings, "dynamodb": DynamoDBOnlineSettings},
}


# -- serving, auth, dbt -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class ServingSettings(Section):
    doc = "The lookup and ingest API (`featureplane serve`, AWS Lambda)."
    registry_refresh_seconds: float = setting(
        5.0, minimum=0, doc="how soon an apply or a key revocation takes effect"
    )
    auth: bool = setting(True, doc="API keys required; false only for local use")
    max_batch_rows: int = setting(500, minimum=1, doc="rows per get-features-batch request")
    max_ingest_records: int = setting(10_000, minimum=1, doc="records per ingest request")
    max_body_bytes: int = setting(1_000_000, minimum=1, doc="request body size")
    max_connections: int = setting(
        512,
        minimum=1,
        doc="open connections to `featureplane serve` (one thread each); more are answered 503 and closed",
    )
    request_timeout_seconds: float = setting(
        10.0,
        minimum=0.1,
        doc="how long a client may take to send a request (and read its answer) once it started one",
    )
    idle_timeout_seconds: float = setting(
        75.0, minimum=0.1, doc="how long a kept-alive connection may wait for its next request"
    )
    registry_snapshot: str | None = setting(
        None, doc="where apply exports the serving snapshot (a path or s3://bucket/key); Lambda reads it"
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class AuthSettings(Section):
    doc = "Roles checked on CLI actions and materializations (one machine; a team uses the server)."
    enabled: bool = setting(False, doc="check the caller's role on workspace actions")


@dataclass(frozen=True, kw_only=True, repr=False)
class ServerSettings(Section):
    doc = "The account server (`featureplane server`, docs/team.md): sign-in and sessions."
    session_ttl_seconds: float = setting(43_200.0, minimum=1, doc="how long a sign-in lasts (12 hours)")
    login_attempts_per_user: int = setting(5, minimum=1, doc="failed sign-ins of one user per window")
    login_attempts_per_address: int = setting(20, minimum=1, doc="failed sign-ins of one address per window")
    login_window_seconds: float = setting(300.0, minimum=1, doc="the window of the two limits above")
    max_body_bytes: int = setting(10_000_000, minimum=1, doc="request body size (plans carry definitions)")


@dataclass(frozen=True, kw_only=True, repr=False)
class DbtSettings(Section):
    doc = "The dbt project upstream of the feature views."
    project_dir: Path | None = setting(None, doc="the directory holding dbt_project.yml (required)")
    profiles_dir: Path | None = setting(None, doc="default: project_dir")
    target: str | None = setting(None, doc="the profile's target (default: its default)")


# -- monitoring -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class QualitySettings(Section):
    enabled: bool = setting(True, doc="validate every materialized window with Great Expectations")
    bad_key_sample: int = setting(10, minimum=0, doc="failing keys shown per check")
    profile_observations: int = setting(
        31, minimum=0, doc="profiles recorded per range run (its last partitions)"
    )
    chunk_rows: int = setting(
        1_000_000,
        minimum=1,
        doc="staged rows (an aggregate view's tiles) validated and profiled at once, in whole partitions",
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class FreshnessSettings(Section):
    cron: str = setting("0 * * * *", parse=parse_cron, doc="when the freshness checks run")


@dataclass(frozen=True, kw_only=True, repr=False)
class StreamLagSettings(Section):
    enabled: bool = setting(True, doc="measure and check the lag of every live stream feature view")
    interval_seconds: int = setting(60, minimum=10, doc="how often the stream lag sensor measures")
    max_lag_seconds: int = setting(
        300, minimum=1, doc="a stream view lags when its oldest unprocessed event is older than this"
    )
    views: dict[str, int] = setting(
        {}, parse=parse_lag_bounds, doc="bounds of single views: 'view' or 'workspace/view' to seconds"
    )
    max_records_per_shard: int = setting(
        10_000, minimum=1, doc="records counted per shard and measurement (beyond: 'at least')"
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class ServingLogSettings(Section):
    enabled: bool = setting(True, doc="log sampled served vectors (for drift)")
    sample_rate: float = setting(0.1, minimum=0, maximum=1, doc="share of served vectors logged")
    path: Path | None = setting(None, doc="default <data_dir>/monitoring/served")
    sink: str | None = setting(None, doc="a custom sink class, 'package.module:ClassName'")
    options: dict[str, Any] = setting({}, doc="the custom sink's arguments")
    queue_size: int = setting(
        10_000, minimum=1, doc="vectors waiting to be written; more are dropped and counted"
    )


@dataclass(frozen=True, kw_only=True, repr=False)
class ServingStatsSettings(Section):
    enabled: bool = setting(True, doc="write the lookup service's counters for the serving-health sensor")
    path: Path | None = setting(None, doc="default <data_dir>/monitoring/serving_stats")
    interval_seconds: float = setting(10.0, minimum=0.05, doc="how often")


@dataclass(frozen=True, kw_only=True, repr=False)
class DriftSettings(Section):
    psi_threshold: float = setting(
        0.2, minimum=0, doc="a feature drifts above this population stability index"
    )
    min_samples: int = setting(100, minimum=1, doc="served vectors needed before drift is judged")
    bins: int = setting(10, minimum=2, doc="histogram bins per feature")


@dataclass(frozen=True, kw_only=True, repr=False)
class MonitoringSection(Section):
    doc = "Data quality, freshness, drift, serving health and alerts (docs/monitoring.md)."
    enabled: bool = setting(True, doc="accepted for symmetry; each part has its own enabled")
    dagster_url: str = setting("http://127.0.0.1:3000", doc="alerts link to runs here")
    quality: QualitySettings = field(default_factory=QualitySettings)
    freshness: FreshnessSettings = field(default_factory=FreshnessSettings)
    stream_lag: StreamLagSettings = field(default_factory=StreamLagSettings)
    serving_log: ServingLogSettings = field(default_factory=ServingLogSettings)
    serving_stats: ServingStatsSettings = field(default_factory=ServingStatsSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    alerts: list[AlertSinkSettings] = setting([], parse=parse_alert_sinks, doc="where alerts go")


SECTIONS: dict[str, type[Section]] = {
    "serving": ServingSettings,
    "monitoring": MonitoringSection,
    "auth": AuthSettings,
    "server": ServerSettings,
    "dbt": DbtSettings,
    "lifecycle": LifecycleSettings,
    "streams": StreamSettings,
}
_DEFAULT_TYPES = {
    "registry": "sqlite",
    "engine": "duckdb",
    "offline_store": "delta",
    "online_store": "sqlite",
}
TOP_LEVEL = ("project", "data_dir", *BACKENDS, *SECTIONS)


# -- the file ---------------------------------------------------------------------------------------


@dataclass
class Config:
    path: Path
    project: str
    data_dir: Path
    registry: Any = field(default_factory=SQLiteRegistrySettings)
    engine: Any = field(default_factory=DuckDBEngineSettings)
    offline_store: Any = field(default_factory=DeltaOfflineSettings)
    online_store: Any = field(default_factory=SQLiteOnlineSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    monitoring: MonitoringSection = field(default_factory=MonitoringSection)
    auth: AuthSettings = field(default_factory=AuthSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    dbt: DbtSettings = field(default_factory=DbtSettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    streams: StreamSettings = field(default_factory=StreamSettings)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        sections = ", ".join(f"{name}={getattr(self, name)!r}" for name in (*BACKENDS, "serving", "auth"))
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
        return getattr(self.registry, "path", None) or self.data_dir / "registry.db"

    @property
    def warehouse_path(self) -> Path:
        return getattr(self.engine, "warehouse", None) or self.data_dir / "warehouse.duckdb"

    @property
    def offline_path(self) -> Path:
        return getattr(self.offline_store, "path", None) or self.data_dir / "offline"

    @property
    def online_path(self) -> Path:
        return getattr(self.online_store, "path", None) or self.data_dir / "online.db"

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


def load_config(explicit: str | os.PathLike | None = None) -> Config:
    import yaml

    path = find_config_path(explicit)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise ConfigError(f"{path}: not valid YAML: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return config_from_mapping(raw, path)


class _Context:
    """What path settings resolve against while a file is checked."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (self.root / path).resolve()


def config_from_mapping(raw: Any, path: Path) -> Config:
    """A Config from the file's content, every key checked (ConfigError lists each problem on a line)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw = _expand(raw, str(path))
    context = _Context(path.parent)
    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL:
            from difflib import get_close_matches

            close = get_close_matches(str(key), TOP_LEVEL, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(TOP_LEVEL)})"
            problems.append(f"{key}: unknown key{hint}")
    sections: dict[str, Any] = {}
    for name in (*BACKENDS, *SECTIONS):
        value = raw.get(name)
        if isinstance(value, bool):
            value = {"enabled": value}
        elif isinstance(value, str):
            value = {"type": value}
        try:
            if name in BACKENDS:
                value = {} if value is None else value
                if not isinstance(value, dict):
                    problems.append(f"{name} must be a mapping, got {type(value).__name__}")
                    continue
                value = {"type": _DEFAULT_TYPES[name], **value}
                models = BACKENDS[name]
                if value["type"] not in models:
                    problems.append(
                        f"{name}.type: {value['type']!r:.60} is not supported (choose {' or '.join(models)})"
                    )
                    continue
                model = models[value["type"]]
            else:
                model = SECTIONS[name]
            sections[name] = parse_section(model, value, name, context)
        except SettingsError as exc:
            problems.extend(exc.problems)
    if "dbt" in sections and sections["dbt"] and sections["dbt"].project_dir is None:
        problems.append("dbt.project_dir is required: the directory holding dbt_project.yml")
    project = raw.get("project", path.parent.name)
    if not isinstance(project, str) or not project:
        problems.append(f"project must be a non-empty string, got {project!r:.60}")
    data_dir = raw.get("data_dir", ".featureplane")
    if not isinstance(data_dir, str) or not data_dir:
        problems.append(f"data_dir must be a path, got {data_dir!r:.60}")
        data_dir = ".featureplane"
    if problems:
        raise ConfigError("\n".join(f"{path}: {p}" for p in problems))
    return Config(path=path, project=str(project), data_dir=context.resolve(data_dir), raw=raw, **sections)


# -- monitoring, as its readers use it --------------------------------------------------------------


@dataclass
class MonitoringSettings:
    """The ``monitoring`` section, flat, with paths defaulted under the data directory."""

    dagster_url: str = "http://127.0.0.1:3000"
    quality_enabled: bool = True
    bad_key_sample: int = 10
    # A range run records one profile observation for each of its last N partitions (Dagster writes every
    # event on its own: a year's backfill with one per partition spends more on them than on the data).
    profile_observations: int = 31
    # Staged rows are validated and profiled a group of whole partitions of about this many at a time.
    quality_chunk_rows: int = 1_000_000
    freshness_cron: str = "0 * * * *"
    stream_lag_enabled: bool = True
    stream_lag_interval_seconds: int = 60
    stream_lag_seconds: int = 300
    stream_lag_views: dict[str, int] = field(default_factory=dict)
    stream_lag_max_records: int = 10_000
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

    def stream_lag_bound(self, workspace: str, view: str) -> int:
        """The lag bound of a stream view, in seconds: ``workspace/view``, then ``view``, then the default."""
        views = self.stream_lag_views
        return views.get(f"{workspace}/{view}", views.get(view, self.stream_lag_seconds))

    @classmethod
    def from_config(cls, config: Config | None) -> MonitoringSettings:
        """Settings from a loaded config (checked when it was loaded); defaults when ``config`` is None."""
        m = config.monitoring if config is not None else MonitoringSection()
        data_dir = config.data_dir if config is not None else Path(".featureplane").resolve()
        log, stats = m.serving_log, m.serving_stats
        if log.sink is not None and ":" not in log.sink:
            raise ConfigError(
                f"{getattr(config, 'path', 'featureplane.yaml')}: monitoring.serving_log.sink must name a class "
                f"as 'package.module:ClassName', got {log.sink!r:.80}"
            )
        return cls(
            dagster_url=m.dagster_url.rstrip("/"),
            quality_enabled=m.quality.enabled,
            bad_key_sample=m.quality.bad_key_sample,
            profile_observations=m.quality.profile_observations,
            quality_chunk_rows=m.quality.chunk_rows,
            freshness_cron=m.freshness.cron,
            stream_lag_enabled=m.stream_lag.enabled,
            stream_lag_interval_seconds=m.stream_lag.interval_seconds,
            stream_lag_seconds=m.stream_lag.max_lag_seconds,
            stream_lag_views=dict(m.stream_lag.views),
            stream_lag_max_records=m.stream_lag.max_records_per_shard,
            serving_log_enabled=log.enabled,
            sample_rate=log.sample_rate,
            serving_log_path=log.path or data_dir / "monitoring" / "served",
            serving_log_sink=log.sink,
            serving_log_options=dict(log.options),
            queue_size=log.queue_size,
            serving_stats_enabled=stats.enabled,
            serving_stats_path=stats.path or data_dir / "monitoring" / "serving_stats",
            stats_interval_seconds=stats.interval_seconds,
            psi_threshold=m.drift.psi_threshold,
            drift_min_samples=m.drift.min_samples,
            drift_bins=m.drift.bins,
            alerts=list(m.alerts),
        )
