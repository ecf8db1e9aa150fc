"""``get_features_in_range`` of stream views on the Delta offline store: the intervals in which each
value holds, where an event enters the windows (its time in continuous mode, the end of its interval
in time_interval mode) and where a tile leaves them, as for batch aggregate views."""

from __future__ import annotations

from datetime import timedelta

import pytest
from stream_views import T0, aggregate_view, latest_view, processor, record

M = timedelta(minutes=1)


def missing_as_none(value):
    return None if value is None or value != value else value


def ranges(proc, start, end) -> list[tuple]:
    frame = proc.event_log.store.features_in_range(proc.table_id, proc.view, start, end)
    assert list(frame.columns) == [
        "user_id",
        "ts",
        "amount_count_2m",
        "amount_sum_2m",
        "_valid_from",
        "_valid_to",
    ]
    return [
        (r["user_id"], r["_valid_from"], missing_as_none(r["_valid_to"]), r["amount_count_2m"], r["amount_sum_2m"])
        for r in frame.to_dict("records")
    ]  # fmt: skip


def two_minute_counts(tmp_path, mode: str):
    view = aggregate_view(windows=(2 * M,), mode=mode, functions=("count", "sum"))
    proc = processor(tmp_path, view, offline=True)
    events = [("u1", T0 + 30 * timedelta(seconds=1), 5), ("u1", T0 + M + timedelta(seconds=10), 7)]
    events += [("u2", T0 + 5 * M, 1)]
    proc.process([record("s", n, u, t, a) for n, (u, t, a) in enumerate(events)])
    return proc


def test_continuous_values_change_at_event_times_and_where_tiles_leave_the_windows(tmp_path):
    proc = two_minute_counts(tmp_path, "continuous")
    s = timedelta(seconds=1)
    assert ranges(proc, T0, T0 + 10 * M) == [
        ("u1", T0 + 30 * s, T0 + M + 10 * s, 1, 5),
        ("u1", T0 + M + 10 * s, T0 + 2 * M, 2, 12),  # the tile of [T0, T0 + 1m) leaves at T0 + 2m
        ("u1", T0 + 2 * M, T0 + 3 * M, 1, 7),
        ("u1", T0 + 3 * M, None, 0, 0),
        ("u2", T0 + 5 * M, T0 + 7 * M, 1, 1),  # an event on a tile boundary counts from its time
        ("u2", T0 + 7 * M, None, 0, 0),
    ]
    # Only the values that hold in [start, end): the one in force at start comes first, and the last
    # one has no end (it changes after the range), as for batch views.
    assert ranges(proc, T0 + M + 30 * s, T0 + 2 * M + 30 * s) == [
        ("u1", T0 + M + 10 * s, T0 + 2 * M, 2, 12),
        ("u1", T0 + 2 * M, None, 1, 7),
    ]


def test_time_interval_values_change_at_interval_ends(tmp_path):
    proc = two_minute_counts(tmp_path, "time_interval")
    assert ranges(proc, T0 - 5 * M, T0 + 10 * M) == [
        ("u1", T0 + M, T0 + 2 * M, 1, 5),
        ("u1", T0 + 2 * M, T0 + 3 * M, 2, 12),
        ("u1", T0 + 3 * M, T0 + 4 * M, 1, 7),
        ("u1", T0 + 4 * M, None, 0, 0),
        ("u2", T0 + 6 * M, T0 + 8 * M, 1, 1),
        ("u2", T0 + 8 * M, None, 0, 0),
    ]
    assert ranges(proc, T0 + 20 * M, T0 + 30 * M) == [
        ("u1", T0 + 4 * M, None, 0, 0),
        ("u2", T0 + 8 * M, None, 0, 0),
    ]
    assert ranges(proc, T0 - 5 * M, T0 + M) == []


@pytest.mark.parametrize("ttl", [None, timedelta(minutes=3)])
def test_a_plain_stream_views_rows_hold_until_the_next_event_or_their_ttl(tmp_path, ttl):
    view = latest_view(ttl, allowed_lateness=timedelta(days=1))
    proc = processor(tmp_path, view, "prod/last_payment/g1", offline=True)
    proc.process([record("s", 0, "u1", T0, 5, "a"), record("s", 1, "u1", T0 + 5 * M, 7, "b")])
    frame = proc.event_log.store.features_in_range(proc.table_id, proc.view, T0, T0 + 10 * M)
    expiry = (lambda t: t + ttl) if ttl else (lambda t: None)
    assert [
        (r["amount"], r["note"], r["_valid_from"], missing_as_none(r["_valid_to"]))
        for r in frame.to_dict("records")
    ] == [
        (5, "a", T0, expiry(T0) or T0 + 5 * M),
        (7, "b", T0 + 5 * M, expiry(T0 + 5 * M)),
    ]
