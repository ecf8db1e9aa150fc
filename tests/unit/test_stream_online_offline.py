"""Property: online == offline for stream views. For random events, arrival orders across shards,
batch boundaries, redeliveries and crashes between the offline append and the online commit (the
processor restarted), the value a lookup returns at time t equals the training value the event log
gives for a spine row at t, for every aggregation function, in both processing modes, and for plain
views (the latest row at or before t within the ttl)."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_views import ALL_FUNCTIONS, T0, aggregate_view, event_log, latest_view, processor, record, us

from featureplane import Int64
from featureplane.compute.aggregation.online import OnlineRollup
from featureplane.offline_stores.base import RetrievalPart
from featureplane.streams.processor import StreamProcessor

USERS = ("u1", "u2")
SPAN_SECONDS = 30 * 60


class Crash(BaseException):
    pass


class CrashingCommit:
    """The store of a processor that dies after appending a batch offline, before committing it."""

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def commit_tiles(self, *args, **kwargs):
        raise Crash()

    commit_rows = commit_tiles


@st.composite
def history(draw, shards: int = 3, unique_times: bool = False):
    """Events in stages ending at lookup times: each stage's events arrive (spread over shards, in
    any order, batched with redeliveries and crashes) before the lookup at the stage's end."""
    cuts = sorted(draw(st.lists(st.integers(0, SPAN_SECONDS), min_size=1, max_size=4, unique=True)))
    events = draw(
        st.lists(
            st.tuples(
                st.sampled_from(USERS),
                st.one_of(st.integers(0, SPAN_SECONDS + 300), st.sampled_from(cuts)),  # some at a lookup
                st.one_of(st.none(), st.integers(-20, 20)),
            ),
            min_size=1,
            max_size=30,
            unique_by=(lambda e: (e[0], e[1])) if unique_times else None,
        )
    )
    stages = []
    bounds = [-1, *cuts, SPAN_SECONDS + 301]
    sequences = dict.fromkeys(range(shards), 0)
    for low, high in itertools.pairwise(bounds):
        chosen = [e for e in events if low < e[1] <= high]
        order = draw(st.permutations(range(len(chosen))))
        by_shard: dict[str, list] = {}
        for i in order:
            shard = draw(st.integers(0, shards - 1))
            sequences[shard] += 1
            by_shard.setdefault(f"shard-{shard}", []).append((sequences[shard], *chosen[i]))
        batches = []
        delivered = dict.fromkeys(by_shard, 0)
        while any(delivered[s] < len(r) for s, r in by_shard.items()):
            shard = draw(st.sampled_from(sorted(s for s in by_shard if delivered[s] < len(by_shard[s]))))
            start = draw(st.integers(0, delivered[shard]))
            stop = draw(st.integers(delivered[shard] + 1, len(by_shard[shard])))
            crash = draw(st.booleans())
            batches.append((crash, [(shard, *r) for r in by_shard[shard][start:stop]]))
            delivered[shard] = stop
        stages.append((high, batches))
    return stages


def run(tmp_path, view, stages, lookup):
    """Feed the stages to the processor (restarting it after each crash), calling ``lookup`` at the
    end of every stage but the last; returns the processor and the looked-up values."""
    proc = processor(tmp_path, view, offline=True)
    seen, applied = {}, 0
    for end, batches in stages:
        for crash, batch in batches:
            records = [record(shard, n, u, T0 + timedelta(seconds=s), a) for shard, n, u, s, a in batch]
            if crash:
                store = proc.store
                proc.store = CrashingCommit(store)
                try:
                    proc.process(records)
                except Crash:
                    pass
                proc = StreamProcessor(
                    proc.view,
                    proc.table_id,
                    store,
                    transform=proc.transform,
                    event_log=event_log(tmp_path, proc.view, proc.table_id),
                )
            result = proc.process(records)
            assert result.invalid == 0  # late: only those before the hand-over (the backfill's)
            applied += result.applied
        if end <= SPAN_SECONDS:
            seen[end] = lookup(proc, T0 + timedelta(seconds=end))
    return proc, seen, applied


def online_values(proc, at) -> dict:
    rollup = OnlineRollup(proc.view)
    out = {}
    for user in USERS:
        (row,) = proc.store.online.read([(proc.table_id, (user,))])
        _, values = rollup.at(None if row is None else row.values, us(at))
        out[user] = dict(zip(proc.view.feature_names, values, strict=True))
    return out


def training(proc, seen) -> pd.DataFrame:
    spine = pd.DataFrame([{"user_id": u, "ts": T0 + timedelta(seconds=end)} for end in seen for u in USERS])
    part = RetrievalPart(view=proc.view, table_id=proc.table_id, features=proc.view.feature_names)
    return proc.event_log.store.get_historical_features(spine, "ts", [part], prefix_features=False)


def plain(value):
    if hasattr(value, "tolist"):
        value = value.tolist()
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def same(online, offline) -> bool:
    if isinstance(online, float) and offline is not None:
        return math.isclose(online, offline, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(online, list) and isinstance(offline, list):
        return len(online) == len(offline) and all(map(same, online, offline))
    return online == offline


def assert_online_equals_offline(proc, seen) -> None:
    frame = training(proc, seen)
    for _, row in frame.iterrows():
        at = int((row["ts"] - T0).total_seconds())
        online = seen[at][row["user_id"]]
        for name in proc.view.feature_names:
            assert same(online[name], plain(row[name])), (row["user_id"], at, name, online[name], row[name])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stages=history(), mode=st.sampled_from(["continuous", "time_interval"]), dtype=st.booleans())
def test_the_lookup_at_t_equals_the_training_value_at_t_for_every_aggregation_function(
    tmp_path_factory, stages, mode, dtype
):
    from featureplane.types import Float64

    view = aggregate_view(
        windows=(timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=20)),
        mode=mode,
        functions=ALL_FUNCTIONS,
        dtype=Float64 if dtype else Int64,
    )
    if dtype:  # float amounts
        stages = [
            (
                end,
                [
                    (c, [(s, n, u, t, None if a is None else a / 4) for s, n, u, t, a in b])
                    for c, b in batches
                ],
            )
            for end, batches in stages
        ]
    proc, seen, applied = run(tmp_path_factory.mktemp("stream"), view, stages, online_values)
    assert_online_equals_offline(proc, seen)
    assert proc.event_log.events().num_rows == applied  # every applied record once, despite crashes


def online_rows(proc, at) -> dict:
    """A plain view's lookup at ``at``: the entity's latest row, unless older than the ttl."""
    out = {}
    for user in USERS:
        (row,) = proc.store.online.read([(proc.table_id, (user,))])
        fresh = row is not None and (
            proc.view.ttl_seconds is None or row.event_ts > us(at) - proc.view.ttl_seconds * 1_000_000
        )
        out[user] = dict(zip(proc.view.feature_names, row.values if fresh else [None, None], strict=True))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stages=history(unique_times=True), ttl_minutes=st.one_of(st.none(), st.integers(1, 20)))
def test_a_plain_stream_views_lookup_equals_its_latest_row_at_or_before_t(
    tmp_path_factory, stages, ttl_minutes
):
    # One event per user and time: which of two rows at the same time is the latest is unspecified.
    view = latest_view(
        None if ttl_minutes is None else timedelta(minutes=ttl_minutes), allowed_lateness=timedelta(days=1)
    )
    proc, seen, applied = run(tmp_path_factory.mktemp("stream"), view, stages, online_rows)
    assert proc.event_log.events().num_rows == applied
    if seen:
        assert_online_equals_offline(proc, seen)


WINDOW_SECONDS = 600  # the backfill's partitions in these tests


@st.composite
def interleavings(draw):
    """A complete history of events; the stream delivers those from a random start on, in random
    order and batches; backfills of random partitions (some twice) run before, between and after
    the stream's batches."""
    events = draw(
        st.lists(
            st.tuples(st.sampled_from(USERS), st.integers(0, 3599), st.integers(-20, 20)),
            min_size=1,
            max_size=30,
            unique_by=lambda e: e[:2],
        )
    )
    stream_start = draw(st.integers(0, 3600))
    delivered = [e for e in events if e[1] >= stream_start]
    order = draw(st.permutations(delivered))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    batches = [
        [("shard-0", n + 1, *order[n]) for n in range(a, b)]
        for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)
        if b > a
    ]
    windows = draw(st.lists(st.integers(0, 5), max_size=8))
    ops: list = [("stream", b) for b in batches]  # in delivery order; backfills anywhere between
    for w in windows:
        ops.insert(draw(st.integers(0, len(ops))), ("backfill", w))
    return events, stream_start, ops


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=interleavings(), mode=st.sampled_from(["continuous", "time_interval"]))
def test_backfills_interleaved_with_the_stream_count_each_event_once_online_and_offline(
    tmp_path_factory, data, mode
):
    from featureplane.streams.backfill import backfill_window

    events, stream_start, ops = data
    view = aggregate_view(
        windows=(timedelta(minutes=1), timedelta(minutes=10)),
        mode=mode,
        functions=("count", "sum", "last", "count_distinct"),
    )
    proc = processor(tmp_path_factory.mktemp("stream"), view, offline=True)

    def history(start, end):
        return [
            {"user_id": u, "ts": T0 + timedelta(seconds=s), "amount": a, "note": ""}
            for u, s, a in events
            if start <= T0 + timedelta(seconds=s) < end
        ]

    for kind, op in ops:
        if kind == "stream":
            result = proc.process([record(sh, n, u, T0 + timedelta(seconds=s), a) for sh, n, u, s, a in op])
            assert result.invalid == 0
        else:
            start = T0 + timedelta(seconds=op * WINDOW_SECONDS)
            backfill_window(
                proc, proc.event_log, history, start, start + timedelta(seconds=WINDOW_SECONDS), "h"
            )
    boundary = proc.event_log.handover().boundary_us
    logged = sorted(proc.event_log.events().to_pylist(), key=lambda r: (r["user_id"], r["ts"]))
    # Exactly once: the history before the boundary (where a backfill covered it) and the stream's
    # events from the boundary on, nothing else, nothing twice.
    backfilled = {
        w
        for kind, w in ops
        if kind == "backfill" and (boundary is None or us(T0) + w * WINDOW_SECONDS * 10**6 < boundary)
    }
    expected = [
        {"user_id": u, "ts": T0 + timedelta(seconds=s), "amount": a}
        for u, s, a in events
        if (
            (boundary is None or us(T0 + timedelta(seconds=s)) < boundary)
            and s // WINDOW_SECONDS in backfilled
        )
        or (boundary is not None and us(T0 + timedelta(seconds=s)) >= boundary and s >= stream_start)
    ]
    assert logged == sorted(expected, key=lambda r: (r["user_id"], r["ts"]))
    if boundary is None:
        return
    # Online == offline after the hand-over, where the tiles of both sides meet in the windows.
    times = [T0 + timedelta(microseconds=boundary - us(T0) + k * 60_000_000 - 1) for k in range(1, 15)]
    seen = {int((t - T0).total_seconds()): online_values(proc, t) for t in times}
    spine = pd.DataFrame([{"user_id": u, "ts": t} for t in times for u in USERS])
    part = RetrievalPart(view=proc.view, table_id=proc.table_id, features=proc.view.feature_names)
    frame = proc.event_log.store.get_historical_features(spine, "ts", [part], prefix_features=False)
    for _, row in frame.iterrows():
        online = seen[int((row["ts"] - T0).total_seconds())][row["user_id"]]
        for name in proc.view.feature_names:
            assert same(online[name], plain(row[name])), (
                row["user_id"],
                row["ts"],
                name,
                online[name],
                row[name],
            )
