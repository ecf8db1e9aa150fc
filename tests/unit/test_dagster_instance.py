"""`featureplane dagster-instance`: the production dagster.yaml is one Dagster accepts, built from the
DSN without its password, with the limits asked for; bad settings are one clear error."""

from __future__ import annotations

import pytest
import yaml
from conftest import run_cli, write_config

from featureplane.util.dagster_instance import (
    InstanceLimits,
    InstanceSettingsError,
    instance_config,
    postgres_db,
)


def test_the_dsn_becomes_dagster_postgres_fields_and_params():
    block = postgres_db("postgresql://dagster@db.internal:6432/ops?sslmode=verify-full", "PGPW")
    assert block == {
        "username": "dagster",
        "hostname": "db.internal",
        "port": 6432,
        "db_name": "ops",
        "scheme": "postgresql+psycopg2",
        "password": {"env": "PGPW"},
        "params": {"sslmode": "verify-full"},
    }
    assert postgres_db("host=db user=u dbname=x", None, database="dagster")["db_name"] == "dagster"


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://u:secret@db/x", "must not contain the password"),
        ("host=db dbname=x password=secret", "must not contain the password"),
        ("host=db dbname=x", "names no user"),
        ("postgresql://u@db", "names no database"),
        ("postgresql://u@db/x?nonsense=1", "not a valid PostgreSQL DSN"),
    ],
)
def test_bad_dsns_are_refused_by_name(dsn, message):
    with pytest.raises(InstanceSettingsError, match=message):
        postgres_db(dsn, None)


def test_limits_are_the_instances_queue_pools_retries_and_monitoring():
    config = instance_config(
        "postgresql://u@db/x",
        "PW",
        limits=InstanceLimits(max_concurrent_runs=6, runs_per_backfill=3, runs_per_engine=2, run_retries=0),
    )
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    runs = config["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == 6
    assert runs["tag_concurrency_limits"] == [
        {"key": "dagster/backfill", "value": {"applyLimitPerUniqueValue": True}, "limit": 3}
    ]
    assert config["concurrency"]["pools"] == {"default_limit": 2, "granularity": "run"}
    assert config["run_retries"]["enabled"] is False
    assert config["run_monitoring"]["enabled"] is True
    with pytest.raises(InstanceSettingsError, match="runs-per-backfill"):
        instance_config(
            "postgresql://u@db/x", None, limits=InstanceLimits(max_concurrent_runs=1, runs_per_backfill=2)
        )
    with pytest.raises(InstanceSettingsError, match="runs-per-engine must be an integer >= 1"):
        instance_config("postgresql://u@db/x", None, limits=InstanceLimits(runs_per_engine=0))


def test_the_command_writes_the_file_from_the_registry_settings(tmp_path):
    config = write_config(tmp_path)
    text = config.read_text().replace(
        "registry: {type: sqlite, path: .featureplane/registry.db}",
        "registry: {type: postgres, dsn: 'postgresql://fp@db/fp', password_env: FP_DB_PASSWORD}",
    )
    config.write_text(text)
    out = tmp_path / "home" / "dagster.yaml"
    run_cli(
        "dagster-instance",
        "--config",
        str(tmp_path),
        "--database",
        "dagster",
        "-o",
        str(out),
        cwd=tmp_path,
        env={},
    )
    written = yaml.safe_load(out.read_text())["storage"]["postgres"]["postgres_db"]
    assert written["db_name"] == "dagster" and written["password"] == {"env": "FP_DB_PASSWORD"}


def test_the_command_refuses_a_registry_that_is_not_postgres(tmp_path):
    write_config(tmp_path)
    result = run_cli("dagster-instance", "--config", str(tmp_path), cwd=tmp_path, env={}, check=False)
    assert result.returncode == 1
    assert "registry.type is sqlite: give --dsn" in result.stderr
