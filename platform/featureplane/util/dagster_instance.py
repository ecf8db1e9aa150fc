"""The production Dagster instance (``dagster.yaml``) featureplane recommends, as data.

Runs, the event log and schedules live in PostgreSQL (dagster-postgres) with the password read by
Dagster from an environment variable. Runs are queued (QueuedRunCoordinator) under limits a backfill
cannot get around: a cap on concurrent runs, a cap on the runs of any one backfill, and one concurrency
pool per engine (each materializable view's asset names ``featureplane/<engine>``), so a backfill of many
views cannot flood the warehouse. Runs whose worker dies (not those whose step fails: a failed check or a
bad query fails the same way again) are retried, and run monitoring notices workers that hang or vanish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featureplane.errors import FeatureplaneError
from featureplane.util.postgres import dsn_has_password


class InstanceSettingsError(FeatureplaneError):
    """A setting of the generated instance that cannot work."""


ENGINE_POOL_PREFIX = "featureplane/"
# The libpq parameters dagster-postgres takes as fields of postgres_db; every other one goes in params.
_FIELDS = {"user": "username", "host": "hostname", "port": "port", "dbname": "db_name"}


def engine_pool(engine_type: str) -> str:
    """The concurrency pool of the views an engine materializes (e.g. ``featureplane/snowflake``)."""
    return f"{ENGINE_POOL_PREFIX}{engine_type}"


@dataclass(frozen=True)
class InstanceLimits:
    max_concurrent_runs: int = 10
    runs_per_backfill: int = 2
    runs_per_engine: int = 4
    run_retries: int = 2
    start_timeout_seconds: int = 180
    max_runtime_seconds: int = 6 * 3600

    def check(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < (0 if name == "run_retries" else 1):
                minimum = 0 if name == "run_retries" else 1
                raise InstanceSettingsError(
                    f"{name.replace('_', '-')} must be an integer >= {minimum}, not {value!r}"
                )
        if self.runs_per_backfill > self.max_concurrent_runs:
            raise InstanceSettingsError(
                f"runs-per-backfill ({self.runs_per_backfill}) cannot exceed max-concurrent-runs "
                f"({self.max_concurrent_runs})"
            )


def postgres_db(dsn: str, password_env: str | None, database: str | None = None) -> dict[str, Any]:
    """dagster-postgres's ``postgres_db`` block for a libpq DSN (URL or ``key=value``), without the
    password, which Dagster reads from ``password_env`` when it starts."""
    from psycopg.conninfo import conninfo_to_dict

    if dsn_has_password(dsn):
        raise InstanceSettingsError(
            "the DSN must not contain the password: name the environment variable holding it with --password-env"
        )
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except Exception as exc:
        raise InstanceSettingsError(f"not a valid PostgreSQL DSN: {str(exc).splitlines()[0]}") from None
    if database:
        params["dbname"] = database
    missing = [
        flag
        for key, flag in (("user", "user"), ("host", "host"), ("dbname", "database"))
        if not params.get(key)
    ]
    if missing:
        raise InstanceSettingsError(
            f"the DSN names no {' and no '.join(missing)} (Dagster's storage needs {'it' if len(missing) == 1 else 'them'})"
        )
    block: dict[str, Any] = {
        _FIELDS[k]: (int(v) if k == "port" else v) for k, v in params.items() if k in _FIELDS
    }
    # dagster-postgres is built on psycopg2; SQLAlchemy 2.1 would pick psycopg 3 for "postgresql", on
    # which Dagster's storage loses its connections.
    block["scheme"] = "postgresql+psycopg2"
    if password_env:
        block["password"] = {"env": password_env}
    extra = {k: v for k, v in params.items() if k not in _FIELDS}
    if extra:
        block["params"] = extra
    return block


def instance_config(
    dsn: str, password_env: str | None, *, database: str | None = None, limits: InstanceLimits | None = None
) -> dict[str, Any]:
    """The whole ``dagster.yaml`` as a dict."""
    limits = limits or InstanceLimits()
    limits.check()
    return {
        "telemetry": {"enabled": False},
        "storage": {"postgres": {"postgres_db": postgres_db(dsn, password_env, database)}},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
        },
        "concurrency": {
            "runs": {
                "max_concurrent_runs": limits.max_concurrent_runs,
                "tag_concurrency_limits": [
                    {
                        "key": "dagster/backfill",
                        "value": {"applyLimitPerUniqueValue": True},
                        "limit": limits.runs_per_backfill,
                    }
                ],
            },
            # granularity run: a run waits in the queue while its engine's pool is full, instead of
            # holding a run slot while its step waits.
            "pools": {"default_limit": limits.runs_per_engine, "granularity": "run"},
        },
        "run_retries": {
            "enabled": limits.run_retries > 0,
            "max_retries": limits.run_retries,
            "retry_on_asset_or_op_failure": False,
        },
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": limits.start_timeout_seconds,
            "max_runtime_seconds": limits.max_runtime_seconds,
            "poll_interval_seconds": 60,
        },
    }


def instance_yaml(config: dict[str, Any]) -> str:
    import yaml

    header = (
        "# Dagster instance for featureplane in production (featureplane dagster-instance; docs/deploy.md).\n"
        "# Runs, the event log and schedules in PostgreSQL; queued runs with limits; retries; monitoring.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)
