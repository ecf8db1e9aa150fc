"""Per-shard processing state on SQLite: each shard has its own checkpoint, watermark and refused
counts, a batch commits only its shards' states, and tile retention waits for the slowest shard."""

from __future__ import annotations

from datetime import timedelta

from stream_views import T0, aggregate_view, processor, record, us

from featureplane.online_stores.sqlite import SQLiteOnlineStore
from featureplane.streams.processor import StreamProcessor
from featureplane.streams.sqlite import SQLiteStreamStore
from featureplane.streams.store import ShardState

MINUTE = timedelta(minutes=1)


def tile_index(t) -> int:
    return us(t) // 60_000_000


def test_lateness_is_judged_against_the_records_own_shard(tmp_path):
    proc = processor(tmp_path, aggregate_view(lateness=timedelta(minutes=2)))
    proc.process([record("s1", 1, "u1", T0 + 10 * MINUTE, 1)])
    # s2 is behind s1 by far more than the allowed lateness, but on its own it is in order.
    result = proc.process([record("s2", 1, "u1", T0, 2), record("s2", 2, "u1", T0 - 3 * MINUTE, 4)])
    assert (result.applied, result.late) == (1, 1)
    assert "before the latest event of its shard, 2026-01-05T12:00:00" in result.problems[0]
    state = proc.state()
    assert state.shards == {
        "s1": ShardState(1, us(T0 + 10 * MINUTE), 0, 0),
        "s2": ShardState(2, us(T0), 1, 0),
    }
    assert (state.watermark_us, state.late, state.positions) == (us(T0 + 10 * MINUTE), 1, {"s1": 1, "s2": 2})


def test_a_batch_writes_only_its_own_shards_state(tmp_path):
    online = SQLiteOnlineStore(tmp_path / "online.db")
    view = aggregate_view().spec()
    table_id = "prod/payment_stats/g1"
    first = StreamProcessor(view, table_id, SQLiteStreamStore(online))
    second = StreamProcessor(view, table_id, SQLiteStreamStore(online))
    first.process([record("s1", 3, "u1", T0, 1)])
    second.process([record("s2", 7, "u1", T0, "bad")])
    first.process([record("s1", 4, "u1", T0 + MINUTE, 1)])
    rows = online.db.connection().execute("SELECT shard FROM stream_shards ORDER BY shard").fetchall()
    assert [r[0] for r in rows] == ["s1", "s2"]
    state = second.state()
    assert state.positions == {"s1": 4, "s2": 7} and state.invalid == 1
    assert state.shards["s2"].watermark_us is None
    assert second.process([record("s1", 4, "u1", T0 + MINUTE, 1)]).duplicates == 1


def test_tiles_a_lagging_shard_can_still_update_are_kept_until_it_catches_up(tmp_path):
    proc = processor(tmp_path, aggregate_view(lateness=timedelta(minutes=1)))  # windows 5m and 15m
    proc.process([record("slow", 1, "u1", T0, 1)])
    proc.process([record("fast", 1, "u1", T0 + 60 * MINUTE, 1)])
    # The slow shard is an hour behind: its tiles stay, and it adds to them exactly.
    assert tile_index(T0) in proc.store.tiles(proc.table_id, ("u1",))
    assert proc.process([record("slow", 2, "u1", T0 + timedelta(seconds=30), 5)]).applied == 1
    tile = proc.store.tiles(proc.table_id, ("u1",))[tile_index(T0)]
    assert tile["cols"]["amount"]["n"] == 2 and tile["cols"]["amount"]["sum"] == 6
    # Once it has caught up, tiles no shard can update and no window reads are dropped.
    proc.process([record("slow", 3, "u1", T0 + 59 * MINUTE, 1)])
    kept = proc.store.tiles(proc.table_id, ("u1",))
    assert sorted(kept) == [tile_index(T0 + 59 * MINUTE), tile_index(T0 + 60 * MINUTE)]


def test_a_new_shards_records_before_retention_are_late_not_half_tiles(tmp_path):
    proc = processor(tmp_path, aggregate_view(lateness=timedelta(minutes=1)))
    proc.process([record("s1", 1, "u1", T0, 1), record("s1", 2, "u1", T0 + 60 * MINUTE, 1)])
    assert list(proc.store.tiles(proc.table_id, ("u1",))) == [tile_index(T0 + 60 * MINUTE)]
    result = proc.process([record("s2", 1, "u1", T0 + timedelta(seconds=5), 1)])
    assert (result.applied, result.late) == (0, 1)
    assert "past retention (before 2026-01-05T12:44:00, set by the slowest shard)" in result.problems[0]
    assert list(proc.store.tiles(proc.table_id, ("u1",))) == [tile_index(T0 + 60 * MINUTE)]
    # Within retention, a new shard's first record is applied.
    assert proc.process([record("s2", 2, "u1", T0 + 50 * MINUTE, 1)]).applied == 1


def test_a_file_with_per_view_states_is_upgraded_to_per_shard_states(tmp_path):
    import orjson

    online = SQLiteOnlineStore(tmp_path / "online.db")
    old = {"watermark_us": us(T0), "late": 2, "invalid": 3, "positions": {"s2": "9", "s1": "40"}}
    with online.db.transaction() as con:
        con.execute("CREATE TABLE stream_state (table_id TEXT PRIMARY KEY, state BLOB NOT NULL)")
        con.execute("INSERT INTO stream_state VALUES (?, ?)", ("prod/payment_stats/g1", orjson.dumps(old)))
    store = SQLiteStreamStore(online)
    state = store.state("prod/payment_stats/g1")
    assert (state.positions, state.watermark_us, state.late, state.invalid) == (
        {"s1": 40, "s2": 9},
        us(T0),
        2,
        3,
    )
    assert state.shards["s2"] == ShardState(9, us(T0), 0, 0)
    tables = {
        r[0] for r in online.db.connection().execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert "stream_state" not in tables
    proc = StreamProcessor(aggregate_view().spec(), "prod/payment_stats/g1", SQLiteStreamStore(online))
    assert proc.process([record("s1", 40, "u1", T0, 1), record("s1", 41, "u1", T0, 1)]).duplicates == 1
