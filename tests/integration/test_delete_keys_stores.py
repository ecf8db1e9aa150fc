"""Deleting keys on the production stores' stand-ins: the DynamoDB online store (a DynamoDB-compatible
server, with throttling and unprocessed items injected; failures reported per key) and the Snowflake
offline store (fakesnow behind the real connector; key values travel as uploaded data, never as SQL
text). Vanished keys are removed by a full sync on DynamoDB too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aws_servers import FaultProxy, use_dynamodb
from helpers import events_repo
from materialization_scenarios import (
    D1,
    DAY,
    EVENTS,
    VIEW,
    assert_online_equals_offline,
    events_sql,
    offline_rows,
    snowflake_backend,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))  # the aggregate view of the unit tests
from test_delete_keys import AGGREGATE_VIEW

from featureplane.materialization.deletion import DeletionIncomplete, delete_keys
from featureplane.materialization.materialize import materialize
from featureplane.online_stores.base import OnlineRow, encode_key
from featureplane.repo.planning import apply_plan, plan_repository

pytestmark = pytest.mark.integration
RETRIES = ", retry_base_seconds: 0.002, retry_max_seconds: 0.05, max_attempts: 10"


@pytest.fixture
def proxy(dynalite):
    proxy = FaultProxy(dynalite, throttle=0.3, unprocessed=0.6, seed=5)
    yield proxy
    proxy.stop()


@pytest.fixture
def dynamo(tmp_path, proxy, table_prefix):
    repo = events_repo(tmp_path, VIEW, tables=events_sql(EVENTS))
    use_dynamodb(repo.config_path, proxy.url, table_prefix, extra=RETRIES)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    materialize(runtime, state, "amounts", D1, D1 + 3 * DAY)
    yield runtime, state
    runtime.close()


def online_keys(runtime, state) -> set[str]:
    return set(runtime.online_store.table_items(state.table_id("amounts")))


def test_dynamodb_deletes_survive_throttling_and_unprocessed_items(dynamo, proxy):
    runtime, state = dynamo
    many = [("u1",), ("u3",), *((f"nobody-{i}",) for i in range(120))]  # several batches of 25
    report = delete_keys(runtime, state, "amounts", many, chunk_size=50)
    assert report.online.keys == 122 and report.online.failed_keys == []
    assert report.offline.rows == 3
    assert online_keys(runtime, state) == {encode_key(("u2",))}
    assert proxy.counts["unprocessed_BatchWriteItem"] > 0 and proxy.counts["ThrottlingException"] > 0
    assert_online_equals_offline(runtime, state)


def test_dynamodb_keys_that_cannot_be_deleted_are_reported_and_a_rerun_finishes(dynamo, proxy):
    runtime, state = dynamo
    proxy.unprocessed, proxy.throttle = 0.0, 1.0  # every batch write throttled: no delete gets through
    proxy.throttled_operations = ("BatchWriteItem",)
    with pytest.raises(DeletionIncomplete, match=r"online: 2 key\(s\) \(\('u1',\), \('u3',\)\)") as caught:
        delete_keys(runtime, state, "amounts", [("u1",), ("u3",)])
    assert caught.value.report.online.failed_keys == [("u1",), ("u3",)]
    assert caught.value.report.offline.rows == 3  # offline went first and is done
    proxy.throttle = 0.0
    assert online_keys(runtime, state) == {encode_key((u,)) for u in ("u1", "u2", "u3")}
    report = delete_keys(runtime, state, "amounts", [("u1",), ("u3",)])
    assert report.offline.rows == 0 and report.online.failed_keys == []
    assert online_keys(runtime, state) == {encode_key(("u2",))}


def test_a_full_sync_removes_vanished_keys_from_dynamodb(dynamo, proxy):
    runtime, state = dynamo
    proxy.unprocessed, proxy.throttle = 0.0, 0.0
    table_id = state.table_id("amounts")
    runtime.online_store.write(table_id, [OnlineRow(("ghost",), 1, [1.0, 1])])
    runtime.online_store.set_sync_marker(table_id, None)
    result = materialize(runtime, state, "amounts", D1, D1 + DAY)
    assert result.online_full_sync is True and result.online_deleted == 1
    assert encode_key(("ghost",)) not in online_keys(runtime, state)
    assert online_keys(runtime, state) == {encode_key((u,)) for u in ("u1", "u2", "u3")}


@pytest.fixture
def snowflake(tmp_path, snowflake_server):
    backend = snowflake_backend(tmp_path, snowflake_server)
    backend.materialize(D1, D1 + 3 * DAY)
    yield backend
    backend.runtime.close()


def test_snowflake_deletes_with_bound_keys_and_the_online_sync_follows(snowflake):
    runtime, state = snowflake.runtime, snowflake.state
    client = runtime.offline_store.client
    client.history.clear()
    report = delete_keys(runtime, state, "amounts", [("u1",), ("o'brien",)])
    assert report.offline.rows == 2 and report.online.rows == 1
    statements = [s for s in client.history if not s.startswith("write_pandas")]
    assert any(s.startswith("DELETE FROM") for s in statements), statements
    assert not any("'u1'" in s or "brien" in s for s in statements), statements
    assert sorted({r[0] for r in offline_rows(runtime, state)}) == ["u2", "u3"]
    assert snowflake.read_online("u1") == [None]
    again = delete_keys(runtime, state, "amounts", [("u1",)])
    assert again.offline.rows == 0
    # The rerun of an old partition whose source still holds u1 brings it back, incrementally.
    result = snowflake.materialize(D1 + DAY, D1 + 2 * DAY)
    assert result.online_full_sync is False
    assert sorted({r[0] for r in offline_rows(runtime, state)}) == ["u1", "u2", "u3"]
    assert_online_equals_offline(runtime, state)


def test_snowflake_aggregate_tiles_go_and_the_partition_markers_stay(tmp_path, snowflake_server):
    from snowflake_helpers import snowflake_events_repo

    from featureplane.retrieval.workspace import Workspace

    repo = snowflake_events_repo(tmp_path, snowflake_server, AGGREGATE_VIEW, events_sql(EVENTS))
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        materialize(runtime, state, "totals", D1, D1 + 3 * DAY)
        view = Workspace(runtime, state).get_feature_view("totals")
        table_id = state.table_id("totals")
        before = view.get_online_features({"user_id": "u2"})
        report = view.delete_keys(["u1"])
        assert report["offline"]["rows"] == 2 and report["online"]["rows"] == 1
        tiles = runtime.offline_store.read(table_id, state.feature_view("totals"))
        assert sorted(set(tiles.column("user_id").to_pylist())) == ["u2", "u3"]
        assert runtime.online_store.read([(table_id, ("u1",))]) == [None]
        assert view.get_online_features({"user_id": "u2"}) == before
        result = materialize(runtime, state, "totals", D1 + 3 * DAY, D1 + 4 * DAY)
        assert result.online_full_sync is False  # the markers stayed and the marker moved on
        assert runtime.online_store.read([(table_id, ("u1",))]) == [None]


def test_a_feature_tables_ingested_rows_go_from_snowflake_too(tmp_path, snowflake_server):
    """A feature table's rows, ingested into the Snowflake offline store and the online store, are deleted
    from both; the other keys stay."""
    from datetime import datetime

    import pandas as pd
    from snowflake_helpers import snowflake_events_repo
    from test_delete_keys import TABLE_VIEW

    from featureplane.retrieval.workspace import Workspace

    repo = snowflake_events_repo(tmp_path, snowflake_server, TABLE_VIEW, events_sql(EVENTS))
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        view = Workspace(runtime, runtime.registry.load("prod")).get_feature_view("scores")
        view.ingest(
            pd.DataFrame(
                {
                    "user_id": ["u1", "u1", "o'brien", "u2"],
                    "ts": [datetime(2024, 1, 1, h) for h in (1, 2, 3, 4)],
                    "score": [1.0, 2.0, 4.0, 3.0],
                }
            )
        )
        client = runtime.offline_store.client
        client.history.clear()
        report = view.delete_keys(["u1", "o'brien"])
        assert report["offline"]["rows"] == 3 and report["online"]["rows"] == 2
        assert not any("brien" in s for s in client.history if not s.startswith("write_pandas"))
        assert view.get_online_features({"user_id": "u1"}) == {"scores.score": None}
        assert view.get_online_features({"user_id": "u2"}) == {"scores.score": 3.0}
        assert view.get_features_in_range(D1, D1 + DAY)["user_id"].tolist() == ["u2"]
        assert view.delete_keys(["u1"])["offline"]["rows"] == 0
