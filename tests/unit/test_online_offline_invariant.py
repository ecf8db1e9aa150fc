"""The invariant, on random data and random histories of runs: after every materialization the online
store equals the as-of-now projection of the offline store, for plain and aggregate views, and a
training set never uses an event from after its spine timestamp.

A history is a sequence of runs over windows of whole days, in any order, with reruns, gaps and
backfills of old partitions, corrections of the source data between runs, and runs that crash between
the offline commit and the online write. The expected state is computed from the raw events alone:
for each partition, the events it held when it was last written offline.

- Plain view ``latest``: one row per event; the projection is each entity's latest row.
- Aggregate view ``windows``: the online row holds each entity's tiles; a lookup at the end of the
  latest materialized partition or later (before the next run) rolls them up to the values the
  offline events give at that time, for entities with events in materialized partitions.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pandas as pd
import pytest
from aggregation_oracle import EPOCH, aggregate, same
from helpers import events_repo, make_warehouse, rows_sql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, load_definitions, plan_repository
from featureplane.retrieval.workspace import Workspace

D1 = datetime(2024, 1, 1)
DAY = timedelta(days=1)
DAYS = 6
INTERVAL = timedelta(hours=6)
USERS = ["u0", "u1", "u2", "u3"]
COLUMNS = {"user_id": "VARCHAR", "ts": "TIMESTAMP", "amount": "BIGINT", "merchant": "VARCHAR"}

VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Aggregate, Attribute, Field, Int64, String, batch_feature_view, last_n

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                        features=[Attribute("amount", Int64), Attribute("merchant", String)],
                        feature_start_time=datetime(2024, 1, 1), online=True)
    def latest(events):
        return f"SELECT user_id, ts, amount, merchant FROM {events}"

    @batch_feature_view(
        sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
        aggregation_interval=timedelta(hours=6), feature_start_time=datetime(2024, 1, 1), online=True,
        features=[
            Aggregate("amount", "count", "6h"), Aggregate(Field("amount", Int64), "sum", "1d"),
            Aggregate(Field("amount", Int64), "max", "2d"), Aggregate("amount", "mean", "lifetime"),
            Aggregate("amount", "stddev_pop", "2d"), Aggregate(Field("amount", Int64), last_n(2), "2d"),
            Aggregate(Field("merchant", String), "count_distinct", "1d"),
            Aggregate(Field("merchant", String), "last", "lifetime"),
        ],
    )
    def windows(events):
        return f"SELECT user_id, ts, amount, merchant FROM {events}"
"""


def event(day_offset: int):
    """An event within a day (``day_offset`` days from feature_start_time; -1 is never materialized)."""
    return st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(USERS),
            # Minute resolution: ties happen; so do events exactly on interval boundaries.
            "ts": st.integers(0, 24 * 60 - 1).map(lambda m: D1 + day_offset * DAY + timedelta(minutes=m)),
            "amount": st.one_of(st.none(), st.integers(-3, 40)),
            "merchant": st.one_of(st.none(), st.sampled_from(["m0", "m1", "m2"])),
        }
    )


day_events = st.integers(-1, DAYS).flatmap(lambda d: event(d))
window = st.integers(0, DAYS - 1).flatmap(
    lambda first: st.tuples(st.just(first), st.integers(first + 1, DAYS))
)
run = st.tuples(st.just("run"), window)
correction = st.integers(0, DAYS - 1).flatmap(lambda d: st.tuples(st.just(d), st.lists(event(d), max_size=4)))
# Mostly runs (consecutive complete runs take the incremental path), some crashes and corrections.
step = st.one_of(
    run, run, run, run, st.tuples(st.just("crash"), window), st.tuples(st.just("correct"), correction)
)


class History:
    """One workspace, the warehouse's events, and what each partition held when last written offline."""

    def __init__(self, repo, runtime, definitions, name: str, events: list[dict]) -> None:
        self.repo, self.runtime = repo, runtime
        self.events = events
        self.written: dict[int, list[dict]] = {}  # day -> its events when last written offline
        self.behind = False  # a crash left the online store behind the offline store
        self._load(events)
        runtime.registry.create_workspace(name, live=True)
        apply_plan(runtime, plan_repository(runtime, name, definitions))
        self.state = runtime.registry.load(name)

    def _load(self, events: list[dict]) -> None:
        self.runtime.close()  # the engine holds the warehouse open read-only
        make_warehouse(self.repo, {"raw.events": rows_sql(COLUMNS, events)})

    def run(self, first: int, last: int, crash: bool = False) -> None:
        start, end = D1 + first * DAY, D1 + last * DAY
        online = self.runtime.online_store
        crashed = False
        for view in ("latest", "windows"):
            originals = online.write, online.delete
            if crash:

                def fail(*args, **kwargs):
                    raise OSError("killed between the offline commit and the online write")

                online.write = online.delete = fail
            try:
                materialize(self.runtime, self.state, view, start, end)
            except OSError:
                crashed = True
            finally:
                online.write, online.delete = originals
        for day in range(first, last):
            self.written[day] = [e for e in self.events if D1 + day * DAY <= e["ts"] < D1 + (day + 1) * DAY]
        self.behind = crashed  # a complete run repairs what an earlier crash left behind

    def correct(self, day: int, replacement: list[dict]) -> None:
        lo, hi = D1 + day * DAY, D1 + (day + 1) * DAY
        self.events = [e for e in self.events if not lo <= e["ts"] < hi] + replacement
        self._load(self.events)

    @property
    def offline_events(self) -> list[dict]:
        return [e for day in sorted(self.written) for e in self.written[day]]

    def check_online(self) -> None:
        events = self.offline_events
        users = sorted({e["user_id"] for e in events})
        online = self.runtime.online_store
        # Plain view: each entity's latest row (ties at one time: the stored order decides, so compare
        # against every row that could be it).
        rows = online.read([(self.state.table_id("latest"), (u,)) for u in USERS])
        for user, row in zip(USERS, rows, strict=True):
            mine = [e for e in events if e["user_id"] == user]
            if not mine:
                assert row is None, (user, row)
                continue
            newest = max(e["ts"] for e in mine)
            candidates = [[e["amount"], e["merchant"]] for e in mine if e["ts"] == newest]
            assert row is not None and row.event_ts == (newest - EPOCH) // timedelta(microseconds=1)
            assert row.values in candidates, (user, row.values, candidates)
        # Aggregate view: a lookup at the end of the latest materialized partition, and later ones
        # before the next run, roll the stored tiles up to what the offline events give then.
        from featureplane.compute.aggregation.online import OnlineRollup

        end = D1 + (max(self.written) + 1) * DAY
        view = self.state.feature_view("windows")
        rollup = OnlineRollup(view)
        rows = online.read([(self.state.table_id("windows"), (u,)) for u in USERS])
        for user, row in zip(USERS, rows, strict=True):
            if user not in users:
                assert row is None, (user, row)
                continue
            assert row is not None, user
            assert row.event_ts <= (end - EPOCH) // timedelta(microseconds=1)
            for now in (end, end + timedelta(hours=7, minutes=3), end + DAY + timedelta(hours=13)):
                _, values = rollup.at(row.values, (now - EPOCH) // timedelta(microseconds=1))
                for feature, value in zip(view.features, values, strict=True):
                    expected = aggregate(feature, events, user, now, INTERVAL, DAY)
                    assert same(expected, value), (user, now, feature.name, expected, value)

    def check_training(self) -> None:
        """Spine rows at and around every materialized event and boundary: values equal the brute
        force over events up to the spine time only (nothing later leaks in)."""
        events = self.offline_events
        times = sorted(
            {t for e in events for t in (e["ts"] - timedelta(microseconds=1), e["ts"])}
            | {D1 + k * INTERVAL for k in range(DAYS * 4 + 1)}
        )
        spine = pd.DataFrame(list(itertools.product(USERS, times)), columns=["user_id", "ts"])
        ws = Workspace(self.runtime, self.state)
        plain = ws.get_feature_view("latest").get_historical_features(spine, "ts")
        for row in plain.to_dict("records"):
            seen = [e for e in events if e["user_id"] == row["user_id"] and e["ts"] <= row["ts"]]
            got = tuple(None if pd.isna(v) else v for v in (row["latest__amount"], row["latest__merchant"]))
            if not seen:
                assert got == (None, None), row
                continue
            newest = max(e["ts"] for e in seen)
            candidates = [(e["amount"], e["merchant"]) for e in seen if e["ts"] == newest]
            assert got in candidates, (row, candidates)
        view = self.state.feature_view("windows")
        windowed = ws.get_feature_view("windows").get_historical_features(spine, "ts")
        for row in windowed.to_dict("records"):
            for feature in view.features:
                expected = aggregate(feature, events, row["user_id"], row["ts"], INTERVAL, DAY)
                assert same(expected, row[f"windows__{feature.name}"]), (
                    row["user_id"],
                    row["ts"],
                    feature.name,
                )


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    repo = events_repo(
        tmp_path_factory.mktemp("invariant"), VIEWS, tables={"raw.events": rows_sql(COLUMNS, [])}
    )
    runtime = repo.runtime()
    definitions = load_definitions(runtime)
    yield repo, runtime, definitions, itertools.count()
    runtime.close()


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(events=st.lists(day_events, min_size=4, max_size=30), steps=st.lists(step, min_size=2, max_size=8))
def test_online_equals_the_offline_projection_after_any_history(shared, events, steps):
    repo, runtime, definitions, counter = shared
    history = History(repo, runtime, definitions, f"w{next(counter)}", events)
    for kind, argument in steps:
        if kind == "correct":
            history.correct(*argument)
            continue
        history.run(*argument, crash=kind == "crash")
        if not history.behind:
            history.check_online()
    history.run(0, 1)  # any later run repairs whatever a crash left behind
    history.check_online()
    history.check_training()


def test_windows_move_online_as_later_partitions_are_materialized(shared):
    repo, runtime, definitions, counter = shared
    events = [{"user_id": "u0", "ts": D1 + timedelta(hours=20), "amount": 3, "merchant": "m1"}]
    history = History(repo, runtime, definitions, f"w{next(counter)}", events)
    history.run(0, 1)
    history.check_online()
    history.run(1, 2)  # no events: u0's event leaves the 6h and 1d windows
    history.check_online()
    history.run(4, 5)  # a gap, then an out-of-order backfill
    history.run(2, 3)
    history.check_online()


def test_a_crash_after_a_correction_is_repaired_including_vanished_entities(shared):
    repo, runtime, definitions, counter = shared
    events = [
        {"user_id": "u0", "ts": D1 + timedelta(hours=1), "amount": 3, "merchant": "m1"},
        {"user_id": "u1", "ts": D1 + timedelta(hours=2), "amount": 4, "merchant": "m2"},
    ]
    history = History(repo, runtime, definitions, f"w{next(counter)}", events)
    history.run(0, 2)
    history.correct(0, [events[0]])  # u1's only event is withdrawn
    history.run(0, 1, crash=True)
    assert history.behind
    history.run(1, 2)  # a run of another partition repairs the online store, deleting u1
    history.check_online()
