"""The stream processing core on the SQLite online store: tiles per interval, idempotent batches,
late events refused and reported, latest rows, and the lookup's roll-up of the windows ending now."""

from __future__ import annotations

from datetime import timedelta

from aggregation_oracle import aggregate, mismatches
from stream_views import T0, aggregate_view, latest_view, processor, record, us

from featureplane.compute.aggregation.online import OnlineRollup

MINUTE = timedelta(minutes=1)


def lookup(proc, user_id: str, now):
    """The values a lookup at ``now`` answers, by feature name (the serving path's roll-up)."""
    (row,) = proc.store.online.read([(proc.table_id, (user_id,))])
    effective, values = OnlineRollup(proc.view).at(None if row is None else row.values, us(now))
    return effective, dict(zip(proc.view.feature_names, values, strict=True))


def test_each_event_counts_at_once_in_the_windows_ending_now(tmp_path):
    proc = processor(tmp_path, aggregate_view())
    events = [("u1", T0 + timedelta(seconds=s), a) for s, a in [(5, 10), (70, 20), (130, 30), (400, 5)]]
    result = proc.process([record("s1", i, u, t, a) for i, (u, t, a) in enumerate(events)])
    assert (result.applied, result.duplicates, result.late, result.invalid) == (4, 0, 0, 0)
    now = T0 + timedelta(seconds=401)
    effective, got = lookup(proc, "u1", now)
    assert effective == us(now)  # continuous mode: the values are as of the request
    assert got["amount_count_5m"] == 2 and got["amount_sum_5m"] == 35  # 12:02:10 and 12:06:40
    assert (
        got["amount_count_15m"] == 4 and got["amount_max_15m"] == 30 and got["amount_last_n_2_15m"] == [30, 5]
    )
    rows = [{"user_id": u, "ts": t, "amount": a} for u, t, a in events]
    expected = {f.name: aggregate(f, rows, "u1", now + MINUTE, MINUTE) for f in proc.view.features}
    assert not mismatches(proc.view.features, expected, got)
    assert lookup(proc, "nobody", now)[1]["amount_count_5m"] == 0
    # One tile per interval with events, holding each shard's position.
    tiles = proc.store.tiles(proc.table_id, ("u1",))
    assert sorted(tiles) == [us(T0 + m * MINUTE) // 60_000_000 for m in (0, 1, 2, 6)]
    assert tiles[min(tiles)]["pos"] == {"s1": "0"}


def test_time_interval_mode_counts_an_interval_once_it_has_ended(tmp_path):
    proc = processor(tmp_path, aggregate_view(mode="time_interval"))
    proc.process([record("s1", 1, "u1", T0 + timedelta(seconds=10), 7)])
    assert lookup(proc, "u1", T0 + timedelta(seconds=30))[1]["amount_count_5m"] == 0
    effective, got = lookup(proc, "u1", T0 + timedelta(seconds=61))
    assert got["amount_count_5m"] == 1 and effective == us(T0 + MINUTE)


def test_a_batch_processed_again_and_a_redelivered_range_count_once(tmp_path):
    proc = processor(tmp_path, aggregate_view())
    batch = [record("s1", i, "u1", T0 + i * timedelta(seconds=20), 1) for i in range(6)]
    proc.process(batch[:4])
    again = proc.process(batch)  # a redelivery from the start: four already processed
    assert (again.applied, again.duplicates) == (2, 4)
    assert proc.process(batch).duplicates == 6
    # The same positions on another shard are other records.
    proc.process([record("s2", 0, "u1", T0, 1)])
    got = lookup(proc, "u1", T0 + 2 * MINUTE)[1]
    assert got["amount_count_5m"] == 7 and got["amount_sum_15m"] == 7
    assert proc.state().positions == {"s1": 5, "s2": 0}


def test_a_tile_skips_records_it_already_holds_even_without_the_checkpoint(tmp_path):
    # A store that commits tile by tile (DynamoDB) can hold a record whose checkpoint was not saved.
    proc = processor(tmp_path, aggregate_view())
    proc.process([record("s1", 1, "u1", T0, 4), record("s1", 2, "u1", T0 + MINUTE, 6)])
    proc.store.db.connection().execute("DELETE FROM stream_shards")
    assert proc.process([record("s1", 1, "u1", T0, 4), record("s1", 2, "u1", T0 + MINUTE, 6)]).applied == 2
    got = lookup(proc, "u1", T0 + 2 * MINUTE)[1]
    assert got["amount_count_5m"] == 2 and got["amount_sum_5m"] == 10


def test_late_events_are_counted_and_reported_not_applied(tmp_path):
    proc = processor(tmp_path, aggregate_view(lateness=timedelta(minutes=2)))
    result = proc.process(
        [
            record("s1", 1, "u1", T0 + 10 * MINUTE, 1),
            record("s1", 2, "u1", T0 + 8 * MINUTE, 2),  # within the allowed lateness: applied
            record("s1", 3, "u1", T0 + 7 * MINUTE, 4),  # three minutes behind: late
        ]
    )
    assert (result.applied, result.late) == (2, 1)
    assert "record s1:3: late: event time 2026-01-05T12:07:00" in result.problems[0]
    assert "allowed_lateness 0:02:00" in result.problems[0]
    assert lookup(proc, "u1", T0 + 11 * MINUTE)[1]["amount_sum_5m"] == 3
    assert proc.process([record("s1", 4, "u1", T0, 8)]).late == 1
    assert proc.state().late == 2 and proc.state().watermark_us == us(T0 + 10 * MINUTE)


def test_dropped_and_invalid_records_are_reported_and_the_rest_applied(tmp_path):
    proc = processor(tmp_path, aggregate_view())
    result = proc.process(
        [
            record("s1", 1, "u1", T0, 5, note="test"),  # the transformation drops it
            record("s1", 2, "u1", T0, "five"),
            record("s1", 3, None, T0, 5),
            record("s1", 4, "u1", "not a time", 5),
            record("s1", 5, "u1", T0, 5),
        ]
    )
    assert (result.applied, result.dropped, result.invalid) == (1, 1, 3)
    assert result.problems == [
        "record s1:2: column 'amount' must be an integer, got 'five'",
        "record s1:3: the row has no join key 'user_id'",
        "record s1:4: ts 'not a time' is not an ISO-8601 time",
    ]
    assert proc.state().invalid == 3 and proc.state().positions == {"s1": 5}


def test_old_tiles_leave_the_online_row_once_no_window_can_reach_them(tmp_path):
    proc = processor(tmp_path, aggregate_view(lateness=timedelta(minutes=1)))
    proc.process([record("s1", 1, "u1", T0, 1)])
    proc.process([record("s1", 2, "u1", T0 + 30 * MINUTE, 1)])
    assert list(proc.store.tiles(proc.table_id, ("u1",))) == [us(T0 + 30 * MINUTE) // 60_000_000]
    (row,) = proc.store.online.read([(proc.table_id, ("u1",))])
    assert len(row.values[0]) == 1


def test_a_plain_stream_view_keeps_the_latest_row_per_key(tmp_path):
    proc = processor(tmp_path, latest_view(), "prod/last_payment/g1")
    proc.process(
        [
            record("s1", 1, "u1", T0 + MINUTE, 5, "b"),
            record("s1", 2, "u1", T0, 9, "a"),  # older: does not replace the newer row
            record("s1", 3, "u2", T0, 3, "c"),
        ]
    )
    read = proc.store.online.read([(proc.table_id, ("u1",)), (proc.table_id, ("u2",))])
    assert [(r.event_ts, r.values) for r in read] == [(us(T0 + MINUTE), [5, "b"]), (us(T0), [3, "c"])]
    proc.process([record("s1", 4, "u1", T0 + 2 * MINUTE, 6, "d")])
    assert proc.store.online.read([(proc.table_id, ("u1",))])[0].values == [6, "d"]


def test_dropping_a_views_table_drops_its_tiles_and_checkpoints(tmp_path):
    proc = processor(tmp_path, aggregate_view())
    proc.process([record("s1", 1, "u1", T0, 1)])
    proc.store.online.drop(proc.table_id)
    assert proc.store.tiles(proc.table_id, ("u1",)) == {} and proc.state().positions == {}
    assert proc.store.online.read([(proc.table_id, ("u1",))]) == [None]


def test_deleting_a_key_removes_its_tiles_and_later_events_start_from_nothing(tmp_path):
    """delete_keys on a stream view (the online store's delete) takes the key's tiles with its row, so the
    next event does not bring back what was counted before; other keys keep theirs."""
    proc = processor(tmp_path, aggregate_view())
    proc.process(
        [record("s1", i, u, T0 + timedelta(seconds=i), 10) for i, u in enumerate(["u1", "u1", "u2"])]
    )
    assert proc.store.online.delete(proc.table_id, [("u1",)]) == 1
    assert proc.store.tiles(proc.table_id, ("u1",)) == {}
    now = T0 + timedelta(seconds=30)
    assert lookup(proc, "u1", now)[1]["amount_count_5m"] == 0
    assert lookup(proc, "u2", now)[1]["amount_count_5m"] == 1
    proc.process([record("s1", 3, "u1", T0 + timedelta(seconds=20), 5)])
    assert (
        lookup(proc, "u1", now)[1]["amount_count_5m"] == 1
        and lookup(proc, "u1", now)[1]["amount_sum_5m"] == 5
    )
