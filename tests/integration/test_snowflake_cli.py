"""The Snowflake path from the command line and Dagster: the example repository is generated into
Snowflake, planned, applied and materialized; a backfill range is one Dagster run and one window write;
and the password (from the environment) never appears in any output, log or error."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest
from conftest import SNOWFLAKE_PASSWORD, copy_example_repo, free_port, run_dagster
from snowflake_helpers import snowflake_events_repo, use_snowflake

from featureplane.compute.snowflake.client import SnowflakeError
from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository

pytestmark = pytest.mark.integration


def no_secret(*outputs) -> None:
    for output in outputs:
        text = output.stdout + output.stderr
        assert SNOWFLAKE_PASSWORD not in text
        assert "Traceback" not in text


def test_the_example_on_snowflake_from_the_cli_and_dagster(tmp_path, snowflake_server, dagster_home):
    repo = copy_example_repo(tmp_path / "feature_repo", dbt=False)
    use_snowflake(repo, snowflake_server)
    outputs = [
        repo.cli("example", "generate", "--users", "40", "--days", "4", "--end", "2026-11-01"),
        repo.cli("workspace", "create", "prod", "--live"),
        plan := repo.cli("plan"),
        repo.cli("apply", "--yes"),
        done := repo.cli("materialize", "user_daily_spend", "--start", "2026-10-28", "--end", "2026-10-30"),
    ]
    assert "Snowflake" in outputs[0].stdout and "40 users" in outputs[0].stdout
    assert "user_daily_spend" in plan.stdout
    assert "Materialized 2 partition(s)" in done.stdout
    no_secret(*outputs)

    # A backfill range is one Dagster run, one transformation, one window write.
    out = run_dagster(
        [
            "asset",
            "materialize",
            "-m",
            "dagster_project",
            "--select",
            "prod/user_daily_spend,prod/user_profile",
            "--partition-range",
            "2026-10-28...2026-10-31",
        ],
        repo,
        dagster_home,
    )
    log = out.stderr + out.stdout
    assert log.count("RUN_SUCCESS") == 1 and "for 4 partition(s)" in log
    no_secret(out)
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        store = runtime.offline_store
        assert store.version(state.table_id("user_daily_spend")) == 2  # the CLI run, then the range
        assert store.version(state.table_id("user_profile")) == 1
        rows = store.read(state.table_id("user_daily_spend"), state.feature_view("user_daily_spend"))
        assert {t.date().isoformat() for t in rows.column("ts").to_pylist()} == {
            "2026-10-28",
            "2026-10-29",
            "2026-10-30",
            "2026-10-31",
        }
        online = runtime.online_store.read(
            [(state.table_id("user_profile"), (f"user_{i}",)) for i in range(40)]
        )
        assert all(v is not None for v in online)


def test_connection_failures_are_clear_and_secret_free(tmp_path, snowflake_server):
    repo = copy_example_repo(tmp_path / "feature_repo", dbt=False)
    use_snowflake(repo, snowflake_server)
    closed = free_port()
    text = repo.config_path.read_text().replace(f"port: {snowflake_server.port}", f"port: {closed}")
    repo.config_path.write_text(text.replace("network_timeout: 20, login_timeout: 20", "login_timeout: 2"))
    repo.cli("workspace", "create", "prod", "--live")
    out = repo.cli("plan", check=False)
    message = " ".join(out.stderr.split())
    assert out.returncode == 1
    assert "data source 'transactions': cannot read 'raw.transactions'" in message
    assert (
        "cannot connect to Snowflake (account featureplane-test, user featureplane, role FEATUREPLANE"
        in message
    )
    no_secret(out)


VIEW = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Attribute, Float64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), batch_schedule=timedelta(days=1), online=True)
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"
"""


def test_logs_and_errors_never_carry_the_password(tmp_path, snowflake_server, caplog):
    caplog.set_level(logging.DEBUG)
    tables = {"raw.events": "SELECT 'u1' AS user_id, TIMESTAMP '2024-01-01 10:00:00' AS ts, 1.5 AS amount"}
    repo = snowflake_events_repo(tmp_path, snowflake_server, VIEW, tables)
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        materialize(runtime, state, "amounts", datetime(2024, 1, 1), datetime(2024, 1, 2))
        # Even a statement that carries the secret fails without repeating it.
        with pytest.raises(SnowflakeError) as failure:
            runtime.engine.client.execute(f"SELECT CAST('{SNOWFLAKE_PASSWORD}' AS INTEGER)")
    assert "***" in str(failure.value) and SNOWFLAKE_PASSWORD not in str(failure.value)
    assert "snowflake: CREATE TEMPORARY TABLE" in caplog.text  # the SQL sent is logged at DEBUG ...
    records = [r.getMessage() for r in caplog.records if r.name.startswith("featureplane")]
    assert records and not [m for m in records if SNOWFLAKE_PASSWORD in m]  # ... never the password


def test_bad_settings_are_one_line_errors(tmp_path, snowflake_server):
    repo = copy_example_repo(tmp_path / "feature_repo", dbt=False)
    use_snowflake(repo, snowflake_server)
    repo.cli("workspace", "create", "prod", "--live")
    repo.config_path.write_text(repo.config_path.read_text().replace("  account: featureplane-test\n", ""))
    out = repo.cli("plan", check=False)
    assert out.returncode == 1
    assert "engine: a Snowflake connection needs an account" in " ".join(out.stderr.split())
    no_secret(out)
