"""``featureplane dagster-instance``: the production Dagster instance's ``dagster.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featureplane.cli.common import ConfigOption, config_from, err, fail
from featureplane.util.dagster_instance import (
    InstanceLimits,
    InstanceSettingsError,
    instance_config,
    instance_yaml,
)

_LIMITS = InstanceLimits()


def dagster_instance(
    dsn: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL DSN without the password (default: registry.dsn of featureplane.yaml)."
        ),
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable Dagster reads the password from (default: registry.password_env)."
        ),
    ] = None,
    database: Annotated[
        str | None, typer.Option(help="Database for Dagster's storage (default: the DSN's).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (e.g. $DAGSTER_HOME/dagster.yaml), not stdout."),
    ] = None,
    max_concurrent_runs: Annotated[int, typer.Option(help="Runs at once.")] = _LIMITS.max_concurrent_runs,
    runs_per_backfill: Annotated[
        int, typer.Option(help="Runs at once of any one backfill.")
    ] = _LIMITS.runs_per_backfill,
    runs_per_engine: Annotated[
        int, typer.Option(help="Feature view runs at once per engine (pool featureplane/<engine>).")
    ] = _LIMITS.runs_per_engine,
    run_retries: Annotated[
        int, typer.Option(help="Retries of a run whose worker died (0: none).")
    ] = _LIMITS.run_retries,
    max_runtime_seconds: Annotated[
        int, typer.Option(help="Run monitoring cancels runs running longer.")
    ] = _LIMITS.max_runtime_seconds,
    config: ConfigOption = None,
) -> None:
    """Write a production dagster.yaml: storage on PostgreSQL, queued runs with limits, retries, monitoring."""
    if dsn is None:
        registry = config_from(config).registry
        if registry.type != "postgres":
            raise fail(
                f"registry.type is {registry.type}: give --dsn (Dagster's storage needs PostgreSQL), or put the "
                "registry on PostgreSQL"
            )
        dsn, password_env = registry.dsn, password_env or registry.password_env
    limits = InstanceLimits(
        max_concurrent_runs=max_concurrent_runs,
        runs_per_backfill=runs_per_backfill,
        runs_per_engine=runs_per_engine,
        run_retries=run_retries,
        max_runtime_seconds=max_runtime_seconds,
    )
    try:
        text = instance_yaml(instance_config(dsn, password_env, database=database, limits=limits))
    except InstanceSettingsError as exc:
        raise fail(str(exc)) from None
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    err.print(f"wrote {output}")
