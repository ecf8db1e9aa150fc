"""The offline event log of stream views: what it holds, exactly once across a crash between the
offline append and the online commit, the hand-over boundary, and compaction by maintenance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from stream_views import T0, aggregate_view, event_log, latest_view, processor, record, us

from featureplane.streams.processor import StreamProcessor

KINESIS_SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898  # > 2**64


def amounts(log) -> list[tuple]:
    table = log.events()
    return sorted(zip(*(table[c].to_pylist() for c in ("user_id", "ts", "amount")), strict=True))


def test_applied_events_are_logged_and_dropped_invalid_and_late_ones_are_not(tmp_path):
    view = aggregate_view(lateness=timedelta(minutes=5))
    proc = processor(tmp_path, view, offline=True)
    result = proc.process(
        [
            record("s1", 1, "u1", T0 + timedelta(minutes=10), 5),
            record("s1", 2, "u1", T0 + timedelta(minutes=11), 6, note="test"),  # dropped
            record("s1", 3, "u2", T0 + timedelta(minutes=11), "six"),  # invalid
            record("s1", 4, "u2", T0, 7),  # late
            record("s2", KINESIS_SEQUENCE, "u2", T0 + timedelta(minutes=12), 8),
        ]
    )
    assert (result.applied, result.dropped, result.invalid, result.late) == (2, 1, 1, 1)
    assert amounts(proc.event_log) == [
        ("u1", T0 + timedelta(minutes=10), 5),
        ("u2", T0 + timedelta(minutes=12), 8),
    ]
    raw = proc.event_log.store._table(proc.table_id).to_pyarrow_table()
    assert sorted(raw["_sequence"].to_pylist()) == sorted(["1", str(KINESIS_SEQUENCE)])
    assert raw["_processed_at"].null_count == 0


class CrashingCommit:
    """A store whose next online commit fails: the process dies between the offline append and the
    online commit."""

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def commit_tiles(self, *args, **kwargs):
        raise SystemExit("killed before the online commit")

    commit_rows = commit_tiles


@pytest.mark.parametrize("make_view", [aggregate_view, latest_view])
def test_a_crash_between_the_offline_append_and_the_online_commit_counts_every_event_once(
    tmp_path, make_view
):
    view = make_view()
    table_id = "prod/payment_stats/g1"
    first = [record("s1", n, f"u{n % 2}", T0 + timedelta(minutes=n), n) for n in range(1, 6)]
    second = [record("s1", n, f"u{n % 2}", T0 + timedelta(minutes=n), n) for n in range(6, 9)]
    proc = processor(tmp_path, view, table_id, offline=True)
    proc.process(first)
    proc.store = CrashingCommit(proc.store)
    with pytest.raises(SystemExit):
        proc.process(second)
    assert len(proc.event_log.store._table(table_id).to_pyarrow_table()) == 8  # appended, not committed

    restarted = StreamProcessor(
        proc.view,
        table_id,
        proc.store.store,
        transform=proc.transform,
        event_log=event_log(tmp_path, proc.view, table_id),
    )
    assert restarted.state().positions == {"s1": 5}  # the online checkpoint did not move
    result = restarted.process(first[2:] + second)  # redelivered from an earlier position
    assert (result.duplicates, result.applied) == (3, 3)
    logged = amounts(restarted.event_log)
    assert logged == sorted((f"u{n % 2}", T0 + timedelta(minutes=n), n) for n in range(1, 9))
    raw = restarted.event_log.store._table(table_id).to_pyarrow_table()
    assert len(raw) == 11  # the duplicates stay in the files; reads keep one per identity
    if view.spec().is_aggregate:
        tiles = restarted.store.tiles(table_id, ("u0",))
        assert sum(t["cols"]["amount"]["n"] for t in tiles.values()) == 4


def test_the_first_applied_event_fixes_the_hand_over_and_the_backfill_then_stops_there(tmp_path):
    view = aggregate_view(lateness=timedelta(minutes=5))
    proc = processor(tmp_path, view, offline=True)
    proc.process([record("s1", 1, "u1", T0 + timedelta(minutes=10, seconds=30), 5)])
    boundary = us(T0 + timedelta(minutes=5))  # 12:10:30 minus 5 minutes of lateness, aligned down
    assert proc.event_log.handover().boundary_us == boundary
    assert proc.event_log.claim_boundary(0) == boundary  # fixed once
    assert proc.event_log.reserve_backfill(0, boundary + 60_000_000) == boundary


def test_the_boundary_is_never_before_the_backfilled_history_and_the_stream_refuses_what_is_before(tmp_path):
    view = aggregate_view(lateness=timedelta(hours=1))
    proc = processor(tmp_path, view, offline=True)
    end = us(T0 + timedelta(minutes=30))
    assert proc.event_log.reserve_backfill(0, end) == end
    result = proc.process(
        [
            record("s1", 1, "u1", T0 + timedelta(minutes=40), 5),
            record("s1", 2, "u1", T0 + timedelta(minutes=29), 6),  # the backfill's
            record("s1", 3, "u1", T0 + timedelta(minutes=30), 7),
        ]
    )
    assert (result.applied, result.late) == (2, 1)
    assert "before the hand-over" in result.problems[0]
    assert proc.event_log.handover().boundary_us == end  # after the first event minus the lateness
    assert [a for _, _, a in amounts(proc.event_log)] == [7, 5]

    other = processor(tmp_path / "other", view, offline=True)
    assert other.event_log.reserve_backfill(0, end) == end
    other.process([record("s1", 1, "u1", T0 + timedelta(hours=2), 5)])  # long after the backfill's end
    assert other.event_log.handover().boundary_us == us(T0 + timedelta(hours=1))


def test_maintenance_compacts_the_small_appends(tmp_path):
    view = aggregate_view()
    proc = processor(tmp_path, view, offline=True)
    for n in range(1, 6):
        proc.process([record("s1", n, "u1", T0 + timedelta(minutes=n), n)])
    store = proc.event_log.store
    before = store.table_stats(proc.table_id)
    assert before.files == 5
    store.compact(proc.table_id, proc.view, z_order=True)
    assert store.table_stats(proc.table_id).files == 1
    assert [a for _, _, a in amounts(proc.event_log)] == [1, 2, 3, 4, 5]


def test_events_logged_by_a_dead_attempt_are_applied_once_on_redelivery(tmp_path):
    view = aggregate_view(lateness=timedelta(minutes=5))
    table_id = "prod/payment_stats/g1"
    early = record("a", 1, "u1", T0, 1)
    later = record("b", 1, "u1", T0 + timedelta(minutes=10), 2)
    proc = processor(tmp_path, view, table_id, offline=True)
    proc.store = CrashingCommit(proc.store)
    with pytest.raises(SystemExit):
        proc.process([early, later])  # both applied, logged, then the process dies
    restarted = StreamProcessor(
        proc.view,
        table_id,
        proc.store.store,
        transform=proc.transform,
        event_log=event_log(tmp_path, proc.view, table_id),
    )
    result = restarted.process([later, early])  # redelivered, shards interleaved the other way
    assert (result.applied, result.late) == (2, 0)
    assert [a for _, _, a in amounts(restarted.event_log)] == [1, 2]
    tiles = restarted.store.tiles(table_id, ("u1",))
    assert sum(t["cols"]["amount"]["n"] for t in tiles.values()) == 2
    again = restarted.process([record("b", 2, "u1", T0, 3)])  # in sync again: late for its shard as usual
    assert again.late == 1


def test_a_dead_attempts_logged_tail_is_applied_again_after_a_shorter_retry(tmp_path):
    """The retry delivers the dead attempt's records in smaller batches: its logged events after the
    first retried batch are still applied as logged, though retention has moved past them since."""
    view = aggregate_view(lateness=timedelta(minutes=5))
    table_id = "prod/payment_stats/g1"
    invalid = record("a", 1, None, T0, 1)  # no join key: refused, not logged
    first_event = record("a", 2, "u1", T0, 2)  # the shard's first event: judged against retention
    proc = processor(tmp_path, view, table_id, offline=True)
    proc.store = CrashingCommit(proc.store)
    with pytest.raises(SystemExit):
        proc.process([invalid, first_event])
    restarted = StreamProcessor(
        proc.view,
        table_id,
        proc.store.store,
        transform=proc.transform,
        event_log=event_log(tmp_path, proc.view, table_id),
    )
    assert restarted.process([record("b", 1, "u1", T0 + timedelta(hours=5), 3)]).applied == 1
    assert restarted.process([invalid]).invalid == 1
    result = restarted.process([first_event])
    assert (result.applied, result.late) == (1, 0)
    assert restarted.state().late == 0
    assert [a for _, _, a in amounts(restarted.event_log)] == [2, 3]
