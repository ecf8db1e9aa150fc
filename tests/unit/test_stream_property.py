"""Property: for any events, arrival order across shards, batch boundaries and redeliveries, the
online roll-up of a stream view at time t equals a brute-force aggregate of the events in its window,
and the late events are exactly those behind their own shard's watermark."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from aggregation_oracle import aggregate, mismatches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_views import ALL_FUNCTIONS, T0, aggregate_view, processor, record, us

from featureplane.compute.aggregation.online import OnlineRollup
from featureplane.types import Float64

MINUTE = timedelta(minutes=1)
FUNCTIONS = ("count", "sum", "mean", "min", "max")
SPAN_SECONDS = 40 * 60

event = st.tuples(
    st.sampled_from(["u1", "u2"]),
    st.integers(0, SPAN_SECONDS),
    st.one_of(st.none(), st.integers(-50, 50)),
)


@st.composite
def deliveries(draw, shards: int = 3):
    """Events spread over shards in arrival order, then delivered as batches that may start before
    the shard's last delivered record (a redelivery after a crash or a retried batch)."""
    events = draw(st.lists(event, min_size=1, max_size=40))
    order = draw(st.permutations(range(len(events))))
    by_shard: dict[str, list] = {}
    for i in order:
        shard = f"shard-{draw(st.integers(0, shards - 1))}"
        by_shard.setdefault(shard, []).append(events[i])
    delivered = {s: 0 for s in by_shard}
    batches = []
    while any(delivered[s] < len(r) for s, r in by_shard.items()):
        shard = draw(st.sampled_from(sorted(s for s in by_shard if delivered[s] < len(by_shard[s]))))
        start = draw(st.integers(0, delivered[shard]))  # back to any earlier record: a redelivery
        stop = draw(st.integers(delivered[shard] + 1, len(by_shard[shard])))
        batches.append([(shard, n, *by_shard[shard][n]) for n in range(start, stop)])
        delivered[shard] = stop
    return events, batches


def rows(events, dtype):
    cast = float if dtype == Float64 else int
    return [
        {"user_id": u, "ts": T0 + timedelta(seconds=s), "amount": None if a is None else cast(a)}
        for u, s, a in events
    ]


def check(proc, events, dtype, times, mode: str) -> None:
    rollup = OnlineRollup(proc.view)
    raw = rows(events, dtype)
    for user_id in ("u1", "u2"):
        (row,) = proc.store.online.read([(proc.table_id, (user_id,))])
        for t in times:
            _, values = rollup.at(None if row is None else row.values, us(t))
            got = dict(zip(proc.view.feature_names, values, strict=True))
            # Continuous: the window's last interval is the one holding t; time_interval: it ends at t.
            at = t + MINUTE if mode == "continuous" else t
            expected = {f.name: aggregate(f, raw, user_id, at, MINUTE) for f in proc.view.features}
            assert not mismatches(proc.view.features, expected, got), (
                user_id,
                t,
                mismatches(proc.view.features, expected, got),
            )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=deliveries(),
    dtype=st.sampled_from(["int", "float"]),
    mode=st.sampled_from(["continuous", "time_interval"]),
    offsets=st.lists(st.integers(-60, SPAN_SECONDS + 20 * 60), min_size=1, max_size=6),
)
def test_online_rollup_equals_brute_force_for_any_arrival_order_and_redelivery(
    tmp_path_factory, data, dtype, mode, offsets
):
    from featureplane.types import Int64

    events, batches = data
    column_type = Float64 if dtype == "float" else Int64
    view = aggregate_view(
        windows=(timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30)),
        mode=mode,
        functions=FUNCTIONS,
        dtype=column_type,
    )
    proc = processor(tmp_path_factory.mktemp("stream"), view)
    applied = 0
    for batch in batches:
        records = [
            record(
                shard,
                n,
                u,
                T0 + timedelta(seconds=s),
                None if a is None else (float(a) if dtype == "float" else a),
            )
            for shard, n, u, s, a in batch
        ]
        result = proc.process(records)
        assert result.late == 0 and result.invalid == 0
        applied += result.applied
    assert applied == len(events)  # every record counted exactly once
    times = [T0 + timedelta(seconds=o) for o in offsets]
    check(proc, events, column_type, times, mode)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=deliveries(),
    lateness_minutes=st.integers(0, 10),
    after=st.lists(st.integers(0, 40 * 60), min_size=1, max_size=4),
)
def test_late_events_are_exactly_those_behind_the_watermark_and_the_rest_roll_up(
    tmp_path_factory, data, lateness_minutes, after
):
    from featureplane.types import Int64

    _, batches = data
    lateness = timedelta(minutes=lateness_minutes)
    view = aggregate_view(
        windows=(timedelta(minutes=5), timedelta(minutes=15)), functions=FUNCTIONS, lateness=lateness
    )
    proc = processor(tmp_path_factory.mktemp("stream"), view)
    seen: set[tuple[str, int]] = set()
    accepted, late = [], Counter()
    marks: dict[str, int] = {}  # the oracle's watermark per shard (seconds after T0)
    longest = 15 * 60
    dropped = None  # the highest retention floor reached (an interval index): tiles before it are gone
    for batch in batches:
        proc.process([record(shard, n, u, T0 + timedelta(seconds=s), a) for shard, n, u, s, a in batch])
        # Tiles before the slowest shard's watermark minus the lateness and the longest window may be
        # dropped already (as of the batch's start): no event can write a tile before them, whatever its shard.
        floor = (min(marks.values()) - lateness.total_seconds() - longest) // 60 if marks else None
        for shard, n, u, s, a in batch:  # the oracle: first deliveries, each shard in its own order
            if (shard, n) in seen:
                continue
            seen.add((shard, n))
            mark = marks.get(shard)
            if mark is not None and s < mark - lateness.total_seconds():
                late[shard] += 1
                continue
            if floor is not None and s // 60 < floor:
                late[shard] += 1
                continue
            marks[shard] = s if mark is None else max(mark, s)
            accepted.append((u, s, a))
        after_batch = (min(marks.values()) - lateness.total_seconds() - longest) // 60 if marks else None
        if after_batch is not None:
            dropped = after_batch if dropped is None else max(dropped, after_batch)
    state = proc.state()
    assert state.late == late.total()
    assert {name: shard.late for name, shard in state.shards.items() if shard.late} == dict(late)
    assert state.watermark_us == us(T0 + timedelta(seconds=max(marks.values())))
    assert {name: shard.watermark_us for name, shard in state.shards.items()} == {
        name: None if name not in marks else us(T0 + timedelta(seconds=marks[name])) for name in state.shards
    }
    latest = max(s for _, s, _ in accepted)
    times = [T0 + timedelta(seconds=latest + a) for a in after]  # lookups after the latest event
    # Retention waits for the slowest shard: windows ending after its watermark minus the allowed
    # lateness still find every tile they need, even when other shards are far ahead. Retention only
    # moves forward: a shard whose first records arrive once others have moved it on lowers the
    # slowest watermark, but the tiles dropped before stay dropped, so windows must also start after
    # the highest floor reached.
    slowest = min(marks.values()) - lateness.total_seconds()
    slowest = max(slowest, dropped * 60 + longest)
    times += [T0 + timedelta(seconds=slowest + a) for a in after]
    check(proc, accepted, Int64, times, "continuous")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=deliveries(), offsets=st.lists(st.integers(-60, SPAN_SECONDS + 20 * 60), min_size=1, max_size=4))
def test_every_aggregation_function_rolls_up_like_brute_force(tmp_path_factory, data, offsets):
    from featureplane.types import Int64

    events, batches = data
    view = aggregate_view(windows=(timedelta(minutes=2), timedelta(minutes=20)), functions=ALL_FUNCTIONS)
    proc = processor(tmp_path_factory.mktemp("stream"), view)
    for batch in batches:
        proc.process([record(shard, n, u, T0 + timedelta(seconds=s), a) for shard, n, u, s, a in batch])
    check(proc, events, Int64, [T0 + timedelta(seconds=o) for o in offsets], "continuous")
