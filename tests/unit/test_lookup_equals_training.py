"""Online == offline at every moment: the lookup API's answer at a random request time equals
``get_historical_features`` for a spine row at that same time, for plain, aggregate and realtime views
in one feature service, under random aggregation intervals and batch schedules, histories of runs in
any order (reruns, gaps, late and out-of-order backfills) and request times between and across
materializations (docs/aggregations.md).

The online store at a request time holds what the runs before it wrote: runs only cover partitions
that had ended by then, as a scheduler's would.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta

import pandas as pd
import pytest
from helpers import events_repo, make_warehouse, rows_sql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, load_definitions, plan_repository
from featureplane.retrieval.workspace import Workspace
from featureplane.serving.service import LookupService
from featureplane.serving.snapshot import SnapshotCache

D1 = datetime(2024, 1, 1)
EPOCH = datetime(1970, 1, 1)
US = timedelta(microseconds=1)
DAYS = 5
USERS = ["u0", "u1", "u2"]
COLUMNS = {"user_id": "VARCHAR", "ts": "TIMESTAMP", "amount": "BIGINT", "merchant": "VARCHAR"}
# (aggregation_interval, batch_schedule) in hours: schedules longer than, and equal to, the interval.
CADENCES = [(1, 24), (2, 6), (3, 3), (4, 12)]

VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import (Aggregate, Attribute, Bool, FeatureService, Field, Float64, Int64, String,
                              batch_feature_view, last_n, realtime_feature_view)

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                        features=[Attribute("amount", Int64), Attribute("merchant", String)],
                        batch_schedule=timedelta(hours=SCHEDULE), feature_start_time=datetime(2024, 1, 1),
                        online=True)
    def latest(events):
        return f"SELECT user_id, ts, amount, merchant FROM {events}"

    @batch_feature_view(
        sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
        aggregation_interval=timedelta(hours=INTERVAL), batch_schedule=timedelta(hours=SCHEDULE),
        feature_start_time=datetime(2024, 1, 1), online=True,
        features=[
            Aggregate("amount", "count", timedelta(hours=INTERVAL)), Aggregate(Field("amount", Int64), "sum", "1d"),
            Aggregate("amount", "mean", "2d"), Aggregate("amount", "stddev_samp", "1d"),
            Aggregate(Field("amount", Int64), "min", "12h"), Aggregate(Field("amount", Int64), "max", "lifetime"),
            Aggregate(Field("amount", Int64), last_n(2), "1d"), Aggregate(Field("merchant", String), "count_distinct", "2d"),
            Aggregate(Field("merchant", String), "first", "1d"), Aggregate(Field("merchant", String), "last", "lifetime"),
            Aggregate("amount", "stddev_pop", "lifetime"),
        ],
    )
    def windows(events):
        return f"SELECT user_id, ts, amount, merchant FROM {events}"

    @realtime_feature_view(sources=[windows, latest], mode="python",
                           features=[Attribute("busy", Bool), Attribute("share", Float64)])
    def scored(windows, latest, context):
        day = windows["amount_sum_1d"] or 0
        return {
            "busy": windows["amount_count_INTERVALh"] >= 2,
            "share": (latest["amount"] or 0) / day if day else None,
        }

    svc = FeatureService(name="svc", features=[latest, windows, scored])
"""


def event(hours: int):
    return st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(USERS),
            # Minute resolution within the history; ties and events on boundaries happen.
            "ts": st.integers(0, hours * 60 - 1).map(lambda m: D1 + timedelta(minutes=m)),
            "amount": st.one_of(st.none(), st.integers(-3, 40)),
            "merchant": st.one_of(st.none(), st.sampled_from(["m0", "m1", "m2"])),
        }
    )


@st.composite
def histories(draw):
    """A cadence, events, runs over ranges of partitions (any order, reruns, gaps) and a request time
    at or after the end of every run (between materializations, or long after)."""
    cadence = draw(st.sampled_from(range(len(CADENCES))))
    schedule = CADENCES[cadence][1]
    partitions = DAYS * 24 // schedule
    events = draw(st.lists(event(DAYS * 24), min_size=1, max_size=25))
    runs = draw(
        st.lists(
            st.integers(0, partitions - 1).flatmap(
                lambda a: st.tuples(st.just(a), st.integers(a + 1, min(partitions, a + 24 // schedule + 2)))
            ),
            min_size=1,
            max_size=3,
        )
    )
    last_end = D1 + max(b for _, b in runs) * timedelta(hours=schedule)
    later = draw(st.integers(0, 3 * 24 * 60 * 60 * 1_000_000))  # up to three days later, in µs
    return cadence, events, runs, last_end + timedelta(microseconds=later)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    out = []
    for interval, schedule in CADENCES:
        views = VIEWS.replace("INTERVAL", str(interval)).replace("SCHEDULE", str(schedule))
        repo = events_repo(
            tmp_path_factory.mktemp(f"cadence{interval}x{schedule}"),
            views,
            tables={"raw.events": rows_sql(COLUMNS, [])},
        )
        runtime = repo.runtime()
        out.append((repo, runtime, load_definitions(runtime), schedule))
    yield out, itertools.count()
    for _, runtime, _, _ in out:
        runtime.close()


def _normal(value):
    """A value from either side in one comparable form (API int64 strings, pandas NA and arrays)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool):
        return value
    return value


def _same(a, b) -> bool:
    a, b = _normal(a), _normal(b)
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(history=histories())
def test_the_lookup_equals_the_training_set_at_the_same_instant(repos, history):
    (setups, counter), (cadence, events, runs, now) = repos, history
    repo, runtime, definitions, schedule = setups[cadence]
    runtime.close()  # the engine holds the warehouse open read-only
    make_warehouse(repo, {"raw.events": rows_sql(COLUMNS, events)})
    name = f"w{next(counter)}"
    runtime.registry.create_workspace(name, live=True)
    apply_plan(runtime, plan_repository(runtime, name, definitions))
    state = runtime.registry.load(name)
    step = timedelta(hours=schedule)
    for first, last in runs:
        for view in ("latest", "windows"):
            materialize(runtime, state, view, D1 + first * step, D1 + last * step)

    clock = (now - EPOCH) // US
    service = LookupService(SnapshotCache(runtime.registry, 0), runtime.online_store, clock=lambda: clock)
    snapshot = service.snapshots.get(name)
    users = [*USERS, "nobody"]
    spine = pd.DataFrame({"user_id": users, "ts": [now] * len(users)})
    offline = Workspace(runtime, state).get_feature_service("svc").get_historical_features(spine, "ts")
    options = {"includeNames": True, "includeEffectiveTimes": True}
    for user, row in zip(users, offline.to_dict("records"), strict=True):
        answer = service.read_features(snapshot.services["svc"], {"user_id": user}, options)
        names = [m["name"] for m in answer["metadata"]["features"]]
        for feature, value in zip(names, answer["result"]["features"], strict=True):
            column = feature.replace(".", "__")
            assert _same(value, row[column]), (user, now, feature, value, row[column])
        # Aggregates of known and unknown entities alike end at the request time aligned down.
        interval = timedelta(hours=CADENCES[cadence][0])
        end = EPOCH + (now - EPOCH) // interval * interval
        times = {
            m["effectiveTime"] for m in answer["metadata"]["features"] if m["name"].startswith("windows.")
        }
        assert times == {end.strftime("%Y-%m-%dT%H:%M:%SZ")}, (user, now, times)
