"""Materialization on the Snowflake path, beyond the scenarios every backend runs
(``tests/unit/test_materialization.py``): a window replaced in one transaction, one transformation
query per range, and feature rows that go from the engine to the offline store without passing through
Python."""

from __future__ import annotations

from datetime import datetime

import pytest
from materialization_scenarios import (
    D1,
    DAY,
    EVENTS,
    VIEW,
    Backend,
    assert_online_equals_offline,
    events_sql,
    offline_rows,
    snowflake_backend,
)
from snowflake_helpers import snowflake_events_repo

from featureplane.compute.snowflake.client import SnowflakeError
from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(tmp_path, snowflake_server) -> Backend:
    backend = snowflake_backend(tmp_path, snowflake_server)
    yield backend
    backend.runtime.close()


def sent(runtime) -> list[str]:
    return list(runtime.engine.client.history)


def test_a_write_killed_inside_its_transaction_leaves_the_previous_state(setup, monkeypatch):
    runtime, state = setup.runtime, setup.state
    materialize(runtime, state, "amounts", D1, D1 + 3 * DAY)
    before = offline_rows(runtime, state)
    client = runtime.offline_store.client
    execute = client.execute

    def die_before_commit(sql, params=None):
        if sql.startswith("INSERT INTO") and "TABLE_VERSIONS" in sql:
            raise SnowflakeError("connection lost")
        return execute(sql, params)

    monkeypatch.setattr(client, "execute", die_before_commit)
    with pytest.raises(SnowflakeError, match="connection lost"):
        materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY)
    monkeypatch.undo()
    statements = sent(runtime)
    delete = max(i for i, q in enumerate(statements) if q.startswith("DELETE FROM") and '"ts" >=' in q)
    assert "ROLLBACK" in statements[delete:]  # the window's rows had been deleted, then rolled back
    assert offline_rows(runtime, state) == before
    assert runtime.offline_store.version(state.table_id("amounts")) == 1
    assert materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY).offline_version == 2
    assert offline_rows(runtime, state) == before
    assert_online_equals_offline(runtime, state)


def test_a_range_is_one_transformation_query_and_rows_stay_in_snowflake(setup):
    runtime, state = setup.runtime, setup.state
    runtime.engine.client.history.clear()
    result = materialize(runtime, state, "amounts", D1, D1 + 3 * DAY)
    assert result.partitions == 3 and result.rows == 4
    statements = sent(runtime)
    # One query reads the source for all three partitions and stages the rows in Snowflake ...
    scans = [q for q in statements if "FROM raw.events WHERE" in q and not q.startswith("DESCRIBE")]
    assert len(scans) == 1 and scans[0].startswith('CREATE TEMPORARY TABLE "FP_STAGE_')
    assert "'2024-01-01 00:00:00'" in scans[0] and "'2024-01-04 00:00:00'" in scans[0]
    # ... and the store copies them there: no upload, no fetch of the staged rows.
    stage = scans[0].split()[3]
    assert not [q for q in statements if q.startswith("write_pandas")]
    assert [q for q in statements if q.startswith("INSERT INTO") and f"FROM {stage}" in q]
    assert not [q for q in statements if q.startswith(f"SELECT * FROM {stage}")]
    assert f"DROP TABLE IF EXISTS {stage}" in statements


def test_the_online_sync_pulls_only_the_latest_row_per_key_in_batches(setup):
    runtime, state = setup.runtime, setup.state
    many = [(f"u{i % 5}", f"2024-01-01 {h:02d}:{i:02d}:00", float(i)) for i in range(40) for h in (1, 9, 17)]
    setup.load_tables(events_sql(many))
    materialize(runtime, state, "amounts", D1, D1 + DAY)
    store, view = runtime.offline_store, state.feature_view("amounts")
    assert store.read(state.table_id("amounts"), view).num_rows == 120
    store.client.history.clear()
    changes = store.online_changes(state.table_id("amounts"), view, None, None, None, batch_size=2)
    assert not [q for q in store.client.history if "QUALIFY" in q]  # nothing runs until it is read
    batches = list(changes.upserts)
    (query,) = [q for q in store.client.history if "QUALIFY" in q]
    assert 'QUALIFY ROW_NUMBER() OVER (PARTITION BY t."user_id" ORDER BY t."ts" DESC' in query
    assert [b.num_rows for b in batches] == [2, 2, 1]
    rows = [r for b in batches for r in b.to_pylist()]
    assert [(r["user_id"], r["amount"]) for r in rows] == [(f"u{i}", float(35 + i)) for i in range(5)]


def test_a_duckdb_engine_can_write_to_a_snowflake_offline_store(tmp_path, snowflake_server):
    """Engines and stores combine: rows computed on DuckDB are uploaded with write_pandas."""
    from conftest import SNOWFLAKE_PASSWORD_ENV
    from helpers import events_repo

    repo = events_repo(tmp_path, VIEW, tables=events_sql(EVENTS))
    config = repo.config_path.read_text().replace(
        "offline_store: {type: delta, path: .featureplane/offline}",
        "offline_store: {type: snowflake, account: featureplane-test, user: featureplane, "
        f"password: '${{{SNOWFLAKE_PASSWORD_ENV}}}', database: {snowflake_server.database()}, schema: FEATURES, "
        f"host: 127.0.0.1, port: {snowflake_server.port}, protocol: http, point_in_time_join: window}}",
    )
    repo.config_path.write_text(config)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    try:
        assert runtime.engine.name == "duckdb"
        materialize(runtime, state, "amounts", D1, D1 + 3 * DAY)
        assert [q for q in runtime.offline_store.client.history if q.startswith("write_pandas")]
        assert len(offline_rows(runtime, state)) == 4
        assert_online_equals_offline(runtime, state)
    finally:
        runtime.close()


def test_pushed_rows_are_appended_with_their_watermarks_in_one_transaction(setup, monkeypatch):
    """Rows pushed through the ingest API land in the offline store with write_pandas, together with
    how far each ingest log segment was folded, so a fold applies exactly once."""
    import pyarrow as pa

    runtime, state = setup.runtime, setup.state
    store, view, table_id = runtime.offline_store, state.feature_view("amounts"), state.table_id("amounts")
    materialize(runtime, state, "amounts", D1, D1 + DAY)
    pushed = pa.table(
        {
            "user_id": ["u1", "u9"],
            "ts": pa.array([datetime(2024, 1, 5, 8), datetime(2024, 1, 5, 9)], pa.timestamp("us")),
            "amount": [11.0, 12.0],
            "n": [1, 1],
        }
    )
    assert store.ingest_watermarks(table_id, ["seg-1", "seg-2"]) == {"seg-1": 0, "seg-2": 0}
    store.client.history.clear()
    version = store.append_ingested(table_id, view, pushed, {"seg-1": 4096})
    assert version == 2 and [q for q in store.client.history if q.startswith("write_pandas")]
    assert store.ingest_watermarks(table_id, ["seg-1", "seg-2"]) == {"seg-1": 4096, "seg-2": 0}
    assert ("u9", datetime(2024, 1, 5, 9), 12.0, 1) in offline_rows(runtime, state)
    changes = store.online_changes(table_id, view, 1, None, None)
    assert sorted(r["user_id"] for b in changes.upserts for r in b.to_pylist()) == ["u1", "u9"]

    # A failure before COMMIT keeps neither the rows nor the watermark.
    execute = store.client.execute

    def die_before_commit(sql, params=None):
        if sql.startswith("INSERT INTO") and "INGEST_WATERMARKS" in sql:
            raise SnowflakeError("connection lost")
        return execute(sql, params)

    monkeypatch.setattr(store.client, "execute", die_before_commit)
    with pytest.raises(SnowflakeError):
        store.append_ingested(table_id, view, pushed, {"seg-1": 8192})
    monkeypatch.undo()
    assert store.ingest_watermarks(table_id, ["seg-1"]) == {"seg-1": 4096}
    assert len(offline_rows(runtime, state)) == 4 and store.version(table_id) == 2


def test_engine_and_store_share_one_session_that_closes_with_the_runtime(tmp_path, snowflake_server):
    repo = snowflake_events_repo(tmp_path, snowflake_server, VIEW, events_sql(EVENTS))
    runtime = repo.runtime()
    assert runtime.engine.client is runtime.offline_store.client
    connection = runtime.engine.client.connection
    runtime.close()
    assert connection.is_closed()
