"""The DynamoDB online store against a real DynamoDB-compatible server (dynalite) on 127.0.0.1: item
layout, TTL attributes, batch reads above 100 keys, sync markers, conditional ingest writes, and fault
injection (throttling, UnprocessedItems, UnprocessedKeys) through a proxy."""

from __future__ import annotations

import logging

import orjson
import pytest
from aws_servers import FaultProxy

from featureplane.online_stores import create_online_store
from featureplane.online_stores.base import OnlineRow
from featureplane.online_stores.dynamodb import DynamoDBError, DynamoDBOnlineStore, DynamoDBWriteError

pytestmark = pytest.mark.integration

TABLE = "prod/stats/g1"
OTHER = "prod/other/g1"
DAY_US = 86_400 * 1_000_000


def store_for(endpoint: str, prefix: str, **settings) -> DynamoDBOnlineStore:
    store = create_online_store(
        {
            "type": "dynamodb",
            "region": "us-east-1",
            "table_prefix": prefix,
            "endpoint_url": endpoint,
            **settings,
        }
    )
    assert isinstance(store, DynamoDBOnlineStore)
    return store


@pytest.fixture
def store(dynalite, table_prefix):
    store = store_for(dynalite, table_prefix)
    store.prepare([TABLE, OTHER])
    yield store
    store.close()


def rows(n: int, ts: int = 1_700_000_000_000_000, offset: float = 0.0) -> list[OnlineRow]:
    return [OnlineRow((f"user_{i}",), ts + i, [i + offset, f"label {i}", [i, i + 1]]) for i in range(n)]


def test_items_carry_the_event_time_and_a_ttl_attribute(store, table_prefix):
    written = store.write(TABLE, rows(3), ttl_seconds=86_400)
    assert written == 3
    store.write(OTHER, rows(2))  # no ttl: no expiry attribute
    item = store.client.get_item(
        TableName=table_prefix + "prod", Key={"pk": {"S": 'prod/stats/g1|["user_1"]'}}
    )["Item"]
    assert item["ts"] == {"N": str(1_700_000_000_000_001)}
    assert item["exp"] == {"N": str(1_700_000_000 + 86_400)}
    assert item["v"] == {"S": '[1.0,"label 1",[1,2]]'}
    other = store.client.get_item(
        TableName=table_prefix + "prod", Key={"pk": {"S": 'prod/other/g1|["user_1"]'}}
    )
    assert "exp" not in other["Item"]
    values = store.read([(TABLE, ("user_2",)), (OTHER, ("user_0",)), (TABLE, ("nobody",))])
    assert values[0].event_ts == 1_700_000_000_000_002 and values[0].values == [2.0, "label 2", [2, 3]]
    assert values[1].values == [0.0, "label 0", [0, 1]]
    assert values[2] is None


def test_sync_markers_deletes_and_drop(store):
    assert store.sync_marker(TABLE) is None
    store.set_sync_marker(TABLE, 7)
    store.set_sync_marker(OTHER, 3)
    assert (store.sync_marker(TABLE), store.sync_marker(OTHER)) == (7, 3)
    store.set_sync_marker(TABLE, None)
    assert store.sync_marker(TABLE) is None
    store.write(TABLE, rows(40))
    store.write(OTHER, rows(5))
    assert store.delete(TABLE, [("user_1",), ("user_2",)]) == 2
    assert store.read([(TABLE, ("user_1",)), (TABLE, ("user_3",))])[0] is None
    assert len(store.table_items(TABLE)) == 38
    store.drop(TABLE)
    assert store.table_items(TABLE) == {}
    assert len(store.table_items(OTHER)) == 5 and store.sync_marker(OTHER) == 3


def test_duplicate_keys_in_one_write_keep_the_last_row(store):
    batch = [OnlineRow(("u",), 1, [1]), OnlineRow(("v",), 1, [5]), OnlineRow(("u",), 2, [2])]
    store.write(TABLE, batch)
    assert store.read([(TABLE, ("u",))])[0].values == [2]


def test_reads_above_100_keys_are_split_into_parallel_batch_gets(dynalite, table_prefix):
    proxy = FaultProxy(dynalite)
    try:
        store = store_for(proxy.url, table_prefix)
        store.prepare([TABLE])
        store.write(TABLE, rows(250))
        proxy.calls.clear()
        keys = [(TABLE, (f"user_{i}",)) for i in range(250)] + [(TABLE, ("missing",)), (TABLE, ("user_5",))]
        values = store.read(keys)
        assert proxy.calls["BatchGetItem"] == 3  # 251 distinct keys: 100 + 100 + 51
        assert [v.values[0] if v else None for v in values] == [float(i) for i in range(250)] + [None, 5.0]
        proxy.calls.clear()
        assert store.read([(TABLE, ("user_1",)), (OTHER, ("user_1",))])[0].values[0] == 1.0
        assert proxy.calls == {"BatchGetItem": 1}  # several views of one entity: one round trip
        # In storage form (the lookup API's values-only path): the same items, one tuple per key,
        # rows not newer than a table's cutoff (its ttl) left out.
        proxy.calls.clear()
        keys = [(f"user_{i}",) for i in range(150)] + [("missing",)]
        encoded = store.read_encoded([TABLE, OTHER], keys)
        assert proxy.calls["BatchGetItem"] == 4  # 302 (table, key) pairs: 100 + 100 + 100 + 2
        assert encoded[3] == (b'[3.0,"label 3",[3,4]]', None)
        assert encoded[-1] == (None, None) and len(encoded) == 151
        assert [orjson.loads(row[0])[0] for row in encoded[:150]] == [float(i) for i in range(150)]
        recent = store.read_encoded([TABLE, OTHER], keys, [1_700_000_000_000_099, None])
        assert [row[0] is not None for row in recent[:150]] == [i > 99 for i in range(150)]
        store.close()
    finally:
        proxy.stop()


def test_throttling_and_unprocessed_items_never_lose_a_write_or_a_read(dynalite, table_prefix):
    proxy = FaultProxy(dynalite, throttle=0.3, unprocessed=0.6, seed=11)
    try:
        store = store_for(proxy.url, table_prefix, retry_base_seconds=0.002, retry_max_seconds=0.05)
        store.prepare([TABLE])
        assert store.write(TABLE, rows(700), ttl_seconds=3600) == 700
        assert store.delete(TABLE, [(f"user_{i}",) for i in range(0, 700, 7)]) == 100
        store.set_sync_marker(TABLE, 42)
        values = store.read([(TABLE, (f"user_{i}",)) for i in range(700)])
        for i, value in enumerate(values):
            if i % 7 == 0:
                assert value is None, i
            else:
                assert value is not None and value.values[0] == float(i), i
        assert store.sync_marker(TABLE) == 42
        # Every kind of fault was injected, and the server holds exactly what was written.
        for fault in (
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
            "unprocessed_BatchWriteItem",
            "unprocessed_BatchGetItem",
        ):
            assert proxy.counts[fault] > 0, (fault, proxy.counts)
        direct = store_for(dynalite, table_prefix)
        assert len(direct.table_items(TABLE)) == 600
        store.close()
    finally:
        proxy.stop()


def test_a_write_that_cannot_finish_names_what_was_not_written(dynalite, table_prefix):
    proxy = FaultProxy(dynalite, unprocessed=1.0)
    try:
        store = store_for(proxy.url, table_prefix, max_attempts=3, retry_base_seconds=0.001)
        store.prepare([TABLE])
        proxy.unprocessed, proxy.throttle = 0.0, 1.0  # every call throttled from now on
        with pytest.raises(DynamoDBWriteError) as caught:
            store.write(TABLE, rows(30))
        message = str(caught.value)
        assert f"DynamoDB table {table_prefix}prod" in message and "not written after 3 attempts" in message
        assert 'prod/stats/g1|["user_' in message
        assert len(caught.value.keys) == 30  # nothing silently dropped: all 30 are reported
    finally:
        proxy.stop()


def test_only_if_newer_writes_never_replace_a_newer_event(dynalite, table_prefix):
    proxy = FaultProxy(dynalite, throttle=0.3, seed=3)
    try:
        store = store_for(proxy.url, table_prefix, retry_base_seconds=0.001)
        store.prepare([TABLE])
        assert store.write(TABLE, [OnlineRow(("u",), 100, ["new"])], only_if_newer=True) == 1
        assert store.write(TABLE, [OnlineRow(("u",), 50, ["old"])], only_if_newer=True) == 0
        assert store.write(TABLE, [OnlineRow(("u",), 100, ["new"])], only_if_newer=True) == 0  # unchanged
        assert store.read([(TABLE, ("u",))])[0] == (100, ["new"])
        # In one call, the newest of several rows for a key wins whatever the order.
        batch = [OnlineRow(("v",), 300, ["c"]), OnlineRow(("v",), 100, ["a"]), OnlineRow(("u",), 200, ["b"])]
        assert store.write(TABLE, batch, only_if_newer=True) == 2
        assert store.read([(TABLE, ("u",)), (TABLE, ("v",))]) == [(200, ["b"]), (300, ["c"])]
        assert proxy.counts["throttled"] > 0
    finally:
        proxy.stop()


def test_prepare_creates_the_table_and_enables_ttl(moto_server, dynalite, table_prefix, caplog):
    store = store_for(moto_server, table_prefix)
    store.prepare([TABLE, OTHER, "staging/stats/g3"])
    tables = store.client.list_tables()["TableNames"]
    assert {table_prefix + "prod", table_prefix + "staging"} <= set(tables)
    ttl = store.client.describe_time_to_live(TableName=table_prefix + "prod")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}
    store.prepare([TABLE])  # idempotent
    # dynalite has no TTL: prepare still succeeds and says so; reads enforce ttl regardless.
    with caplog.at_level(logging.WARNING, logger="featureplane.online_stores.dynamodb"):
        store_for(dynalite, table_prefix).prepare([TABLE])
    assert "could not enable TTL" in caplog.text


def test_a_table_with_another_key_schema_is_refused(dynalite, table_prefix):
    store = store_for(dynalite, table_prefix)
    store.client.create_table(
        TableName=table_prefix + "prod",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(DynamoDBError, match=r"choose another online_store\.table_prefix"):
        store.prepare([TABLE])


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match="unknown setting"):
        create_online_store({"type": "dynamodb", "tabel_prefix": "x"})


def test_a_missing_table_says_how_to_create_it(dynalite, table_prefix):
    store = store_for(dynalite, table_prefix)
    with pytest.raises(DynamoDBWriteError, match=r"does not exist: `featureplane apply`"):
        store.write("nowhere/stats/g1", rows(2))
    with pytest.raises(DynamoDBError, match=r"does not exist: `featureplane apply`"):
        store.sync_marker("nowhere/stats/g1")
