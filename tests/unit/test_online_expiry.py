"""Online expiry: rows past their view's ttl are removed, not only hidden at read time. SQLite is swept
(``sweep_expired``); DynamoDB items carry an ``exp`` attribute for the table's TTL and can be swept too.
Under a steady stream of new keys the online store's size stays bounded by the ttl."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from store_backends import view

from featureplane.compute.aggregation.online import online_expiry_seconds
from featureplane.definitions.specs import FeatureSpec
from featureplane.online_stores import create_online_store
from featureplane.online_stores.base import OnlineRow, expiry_cutoff_us
from featureplane.online_stores.sqlite import SQLiteOnlineStore

TABLE = "prod/recent/g1"
OTHER = "prod/other/g1"
START = datetime(2026, 1, 1)
DAY = timedelta(days=1)
TTL = timedelta(days=3)
PER_DAY = 200


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def day_rows(day: int) -> list[OnlineRow]:
    """A day's new keys (no key comes back), stamped through the day."""
    moment = START + day * DAY
    return [
        OnlineRow((f"d{day}_u{i}",), us(moment + timedelta(seconds=60 + 300 * i)), [float(i), f"day {day}"])
        for i in range(PER_DAY)
    ]


def served(store, keys: list[tuple], now: datetime) -> list:
    """What a lookup at ``now`` serves for ``keys`` (rows within the ttl only)."""
    return store.read_encoded([TABLE], keys, [expiry_cutoff_us(TTL, now)])


def test_sqlite_size_stays_bounded_under_a_stream_of_new_keys(tmp_path):
    store = SQLiteOnlineStore(tmp_path / "online.db")
    sizes = []
    for day in range(40):
        store.write(TABLE, day_rows(day), ttl_seconds=int(TTL.total_seconds()))
        now = START + (day + 1) * DAY
        store.sweep_expired(TABLE, TTL, now)
        sizes.append(store.row_count(TABLE))
    # Without the sweep the table would hold 40 days of keys; with it, the ttl's worth (3 days).
    assert max(sizes) == 3 * PER_DAY
    assert sizes[-1] == 3 * PER_DAY
    assert store.row_count(TABLE) < 40 * PER_DAY / 10
    store.close()


def test_a_sweep_removes_exactly_what_reads_no_longer_serve(tmp_path):
    store = SQLiteOnlineStore(tmp_path / "online.db")
    for day in range(6):
        store.write(TABLE, day_rows(day))
    store.write(OTHER, day_rows(0))
    keys = [r.key for day in range(6) for r in day_rows(day)]
    now = START + 5 * DAY + timedelta(hours=7)
    before = served(store, keys, now)
    deleted = store.sweep_expired(TABLE, int(TTL.total_seconds()), now)
    after = served(store, keys, now)
    assert after == before  # lookups answer the same
    assert deleted == sum(1 for row in before if row == (None,))
    # Every remaining row is served; another table is untouched; a second sweep finds nothing.
    assert store.row_count(TABLE) == sum(1 for row in after if row != (None,))
    assert store.row_count(OTHER) == PER_DAY
    assert store.sweep_expired(TABLE, TTL, now) == 0
    store.close()


def test_a_sweep_keeps_a_row_refreshed_with_a_later_event(tmp_path):
    store = SQLiteOnlineStore(tmp_path / "online.db")
    store.write(
        TABLE, [OnlineRow(("old",), us(START), [1.0, "a"]), OnlineRow(("new",), us(START), [2.0, "b"])]
    )
    store.write(TABLE, [OnlineRow(("new",), us(START + 4 * DAY), [3.0, "c"])])
    assert store.sweep_expired(TABLE, TTL, START + 4 * DAY) == 1
    assert store.read([(TABLE, ("old",)), (TABLE, ("new",))])[1].values == [3.0, "c"]
    assert store.read([(TABLE, ("old",))]) == [None]
    store.close()


@pytest.mark.parametrize("ttl", [0, -5, timedelta(0), None])
def test_a_sweep_needs_a_positive_ttl(tmp_path, ttl):
    store = SQLiteOnlineStore(tmp_path / "online.db")
    with pytest.raises(ValueError, match="positive ttl"):
        store.sweep_expired(TABLE, ttl, START)  # type: ignore[arg-type]
    store.close()


def test_how_long_online_rows_matter_per_kind_of_view():
    assert online_expiry_seconds(view(ttl_seconds=7200)) == 7200
    assert online_expiry_seconds(view()) is None
    windowed = replace(
        view(),
        features=[
            FeatureSpec(
                "n_7d", "int64", kind="aggregate", column="amount", function="count", window_seconds=7 * 86400
            ),
            FeatureSpec(
                "n_1d", "int64", kind="aggregate", column="amount", function="count", window_seconds=86400
            ),
        ],
        aggregation_interval_seconds=3600,
    )
    assert online_expiry_seconds(windowed) == 7 * 86400  # the longest window: then every tile is out
    lifetime = replace(
        view(),
        features=[FeatureSpec("n", "int64", kind="aggregate", column="amount", function="count")],
        aggregation_interval_seconds=3600,
    )
    assert online_expiry_seconds(lifetime) is None  # lifetime values never expire


@pytest.mark.integration
def test_dynamodb_items_expire_by_ttl_and_by_sweep(dynalite, table_prefix):
    store = create_online_store(
        {"type": "dynamodb", "region": "us-east-1", "table_prefix": table_prefix, "endpoint_url": dynalite}
    )
    store.prepare([TABLE])
    ttl = int(TTL.total_seconds())
    for day in range(5):
        store.write(TABLE, day_rows(day)[:30], ttl_seconds=ttl)
    store.write(TABLE, [OnlineRow(("kept",), us(START), [0.0, "x"])], only_if_newer=True, ttl_seconds=ttl)
    store.write(
        TABLE, [OnlineRow(("kept",), us(START + 4 * DAY), [9.0, "y"])], only_if_newer=True, ttl_seconds=ttl
    )
    item = store.client.get_item(
        TableName=table_prefix + "prod", Key={"pk": {"S": store.item_key(TABLE, ("d2_u0",))}}
    )["Item"]
    assert (
        int(item["exp"]["N"])
        == (START + 2 * DAY + timedelta(seconds=60) + TTL - datetime(1970, 1, 1)).total_seconds()
    )
    now = START + 5 * DAY
    keys = [r.key for day in range(5) for r in day_rows(day)[:30]] + [("kept",)]
    before = served(store, keys, now)
    deleted = store.sweep_expired(TABLE, TTL, now)
    assert deleted == 2 * 30  # days 0 and 1 (their events are all at least 3 days old)
    assert served(store, keys, now) == before
    assert set(store.table_items(TABLE)) == {f'["d{d}_u{i}"]' for d in (2, 3, 4) for i in range(30)} | {
        '["kept"]'
    }
    assert store.sweep_expired(TABLE, TTL, now) == 0
    store.close()
