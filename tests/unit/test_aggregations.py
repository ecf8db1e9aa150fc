"""Time-window aggregations: declarations and their checks, tiles at materialization, and roll-ups that
are exact against a brute-force computation from the raw events, offline and online."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pandas as pd
import pytest
from aggregation_oracle import aggregate, mismatches, same
from helpers import events_repo, make_warehouse, rows_sql
from test_repo_validation import problems_of

from featureplane import Aggregate, Field, Int64, LifetimeWindow, String, last_n
from featureplane.definitions.base import DefinitionError
from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import Workspace

INTERVAL = timedelta(hours=2)
D1 = datetime(2024, 1, 1)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
COLUMNS = {
    "user_id": "VARCHAR",
    "ts": "TIMESTAMP",
    "amount": "DOUBLE",
    "merchant": "VARCHAR",
    "qty": "BIGINT",
}

STATS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Aggregate, Field, FeatureService, Int64, String, batch_feature_view, last_n

    @batch_feature_view(
        sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
        aggregation_interval=timedelta(hours=2), batch_schedule=timedelta(days=1),
        feature_start_time=datetime(2024, 1, 1), online=True,
        features=[
            Aggregate("amount", "count", "4h"), Aggregate("amount", "sum", "1d"), Aggregate("amount", "mean", "2d"),
            Aggregate("amount", "min", "1d"), Aggregate("amount", "max", "lifetime"),
            Aggregate("amount", "stddev_samp", "2d"), Aggregate("amount", "stddev_pop", "1d"),
            Aggregate("amount", "first", "1d"), Aggregate("amount", "last", "2d"), Aggregate("amount", last_n(3), "1d"),
            Aggregate("amount", last_n(2), "lifetime"),
            Aggregate(Field("merchant", String), "count_distinct", "2d"), Aggregate(Field("merchant", String), "last", "lifetime"),
            Aggregate("merchant", "count", "1d"),
            Aggregate(Field("qty", Int64), "sum", "6h"), Aggregate(Field("qty", Int64), "max", "2d"),
        ],
    )
    def stats(events):
        return f"SELECT user_id, ts, amount, merchant, qty FROM {events}"

    svc = FeatureService(name="svc", features=[stats])
"""


def random_events(seed: int, count: int, start: datetime, days: int, users: int = 4) -> list[dict]:
    """Events at minute resolution (so some share a timestamp), with nulls."""
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        events.append(
            {
                "user_id": f"u{rng.randrange(users)}",
                "ts": start + timedelta(minutes=rng.randrange(days * 24 * 60)),
                "amount": rng.choice([None, round(rng.uniform(1, 500), 2), float(rng.randrange(5))]),
                "merchant": rng.choice([None, "m1", "m2", "m3", "m4"]),
                "qty": rng.choice([None, rng.randrange(-5, 50)]),
            }
        )
    return events


def applied(tmp_path, views: str, events: list[dict]):
    repo = events_repo(tmp_path, views, tables={"raw.events": rows_sql(COLUMNS, events)})
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    return repo, runtime, runtime.registry.load("prod")


@pytest.fixture
def stats_setup(tmp_path):
    # Events from the day before feature_start_time (never materialized) to past the last partition.
    events = random_events(seed=11, count=400, start=D1 - DAY, days=7)
    repo, runtime, state = applied(tmp_path, STATS, events)
    materialize(runtime, state, "stats", D1, D1 + 2 * DAY)
    materialize(runtime, state, "stats", D1 + 2 * DAY, D1 + 5 * DAY)
    materialized = [e for e in events if D1 <= e["ts"] < D1 + 5 * DAY]
    return repo, runtime, state, materialized


# -- declarations --------------------------------------------------------------------------------


def test_default_names_types_and_aliases():
    specs = [
        Aggregate("amount", "sum", timedelta(days=7)).spec(),
        Aggregate("amount", "count", "1h").spec(),
        Aggregate(Field("qty", Int64), "sum", "30d").spec(),
        Aggregate("amount", "stddev", "30d").spec(),
        Aggregate(Field("merchant", String), last_n(3), "1d").spec(),
        Aggregate("amount", "last_n(2)", LifetimeWindow()).spec(),
        Aggregate("amount", "max", "lifetime", name="biggest").spec(),
        Aggregate(Field("merchant", String), "count_distinct", "90m").spec(),
    ]
    assert [(s.name, s.dtype) for s in specs] == [
        ("amount_sum_7d", "float64"),
        ("amount_count_1h", "int64"),
        ("qty_sum_30d", "int64"),
        ("amount_stddev_samp_30d", "float64"),
        ("merchant_last_n_3_1d", "array<string>"),
        ("amount_last_n_2_lifetime", "array<float64>"),
        ("biggest", "float64"),
        ("merchant_count_distinct_90m", "int64"),
    ]
    assert specs[0].window_seconds == 7 * 86400 and specs[5].window_seconds is None
    assert specs[4].params == {"input_type": "string", "n": 3}


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: Aggregate("amount", "median", "1d"), "unknown aggregation function 'median'"),
        (lambda: Aggregate("amount", "last_n", "1d"), "last_n needs a count"),
        (lambda: Aggregate("amount", last_n(0), "1d"), "last_n needs a count"),
        (lambda: Aggregate("amount", "sum(3)", "1d"), "sum takes no argument"),
        (lambda: Aggregate(Field("merchant", String), "sum", "1d"), "needs a numeric column"),
        (lambda: Aggregate("amount", "sum", "0h"), "time_window must be a positive"),
        (lambda: Aggregate("amount", "sum", "a week"), "time_window must be a timedelta"),
    ],
)
def test_bad_aggregates_are_refused_where_they_are_written(call, fragment):
    with pytest.raises(DefinitionError, match=r"test_aggregations\.py:\d+") as info:
        call()
    assert fragment in str(info.value)


def view_with(features: str, **options: str) -> str:
    settings = {
        "aggregation_interval": "timedelta(hours=1)",
        "batch_schedule": "timedelta(days=1)",
        **options,
    }
    arguments = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    return f"""
        from datetime import datetime, timedelta
        from base import events, user
        from featureplane import Aggregate, Attribute, Field, Float64, String, batch_feature_view

        @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                            feature_start_time=datetime(2024, 1, 1), features=[{features}], {arguments})
        def agg(events):
            return f"SELECT user_id, ts, amount, 'x' AS label FROM {{events}}"
    """


@pytest.mark.parametrize(
    ("features", "options", "fragment"),
    [
        (
            'Aggregate("amount", "sum", "90m")',
            {},
            "time_window 1:30:00 is not a multiple of aggregation_interval 1:00:00",
        ),
        (
            'Aggregate("amount", "sum", "1d")',
            {"aggregation_interval": "timedelta(hours=5)"},
            "does not divide batch_schedule",
        ),
        ('Aggregate("amount", "sum", "1d")', {"aggregation_interval": None}, "need an aggregation_interval"),
        ('Attribute("amount", Float64)', {}, "aggregation_interval is set but no feature is an Aggregate"),
        (
            'Aggregate("amount", "sum", "1d"), Attribute("amount", Float64)',
            {},
            "mixes Attribute features (amount)",
        ),
        ('Aggregate("amount", "sum", "1d")', {"ttl": "timedelta(days=1)"}, "ttl does not apply to Aggregate"),
        (
            'Aggregate("price", "sum", "1d")',
            {},
            "column 'price' (aggregated by price_sum_1d) is missing from the output",
        ),
        (
            'Aggregate("label", "max", "1d")',
            {},
            "column 'label' (aggregated by label_max_1d) is String in the output but is read as Float64",
        ),
    ],
)
def test_validation_names_the_view_and_its_line(tmp_path, features, options, fragment):
    problems = problems_of(events_repo(tmp_path, view_with(features, **options)))
    assert any(fragment in p for p in problems), problems
    assert all("views.py:6" in p and "'agg'" in p for p in problems), problems


def test_counting_a_column_of_any_type_needs_no_declared_type(tmp_path):
    repo = events_repo(tmp_path, view_with('Aggregate("label", "count", "1d")'))
    from featureplane.repo.planning import load_definitions

    view = load_definitions(repo.runtime()).feature_views["agg"]
    assert view.feature_names == ["label_count_1d"]


# -- offline: exact against brute force ----------------------------------------------------------


def spine_times(rng: random.Random, count: int) -> list[datetime]:
    """Random times plus interval boundaries and their neighbours (where off-by-one errors live)."""
    times = [D1 - DAY + timedelta(seconds=rng.randrange(8 * 86400)) for _ in range(count)]
    for hours in range(0, 7 * 24, 5):
        boundary = D1 + timedelta(hours=hours)
        times += [boundary - US, boundary, boundary + US]
    return times


def test_training_values_are_exact_against_brute_force(stats_setup):
    _, runtime, state, events = stats_setup
    view = state.feature_view("stats")
    rng = random.Random(5)
    times = spine_times(rng, 150)
    users = [rng.choice(["u0", "u1", "u2", "u3", "nobody"]) for _ in times]
    spine = pd.DataFrame({"user_id": users, "ts": times, "label": range(len(times))})
    out = Workspace(runtime, state).get_feature_view("stats").get_historical_features(spine, "ts")
    assert list(out["label"]) == list(range(len(times)))  # the spine's rows, in order
    problems = []
    for row in out.to_dict("records"):
        expected = {
            f.name: aggregate(f, events, row["user_id"], row["ts"], INTERVAL, DAY) for f in view.features
        }
        got = {f.name: row[f"stats__{f.name}"] for f in view.features}
        problems += [
            f"{row['user_id']} at {row['ts']}: {m}" for m in mismatches(view.features, expected, got)
        ]
    assert not problems, "\n".join(problems[:20])


def test_training_sets_mix_plain_and_aggregate_views_and_keep_types(stats_setup):
    _, runtime, state, _ = stats_setup
    spine = pd.DataFrame({"user_id": ["u1", "nobody"], "ts": [D1 + 3 * DAY, D1 + 3 * DAY]})
    out = Workspace(runtime, state).get_feature_service("svc").get_historical_features(spine, "ts")
    # Empty windows: 0 for counts and sums, an empty list for last_n, null otherwise.
    nobody = out.iloc[1]
    assert nobody["stats__amount_count_4h"] == 0 and nobody["stats__qty_sum_6h"] == 0
    assert list(nobody["stats__amount_last_n_3_1d"]) == [] and pd.isna(nobody["stats__amount_mean_2d"])
    assert str(out["stats__amount_count_4h"].dtype) == "Int64"  # integers stay integers (nullable)


def test_features_in_range_give_each_value_with_the_interval_it_holds(stats_setup):
    _, runtime, state, events = stats_setup
    view = state.feature_view("stats")
    start, end = D1 + DAY + timedelta(hours=3), D1 + 3 * DAY
    rows = Workspace(runtime, state).get_feature_view("stats").get_features_in_range(start, end)
    assert {"_valid_from", "_valid_to"} <= set(rows.columns)
    rng = random.Random(3)
    for user, group in rows.groupby("user_id"):
        group = group.sort_values("_valid_from")
        # Consecutive intervals meet and the values change at each boundary.
        assert (group["_valid_to"].iloc[:-1].values == group["_valid_from"].iloc[1:].values).all()
        assert group["_valid_from"].iloc[0] <= start and group["_valid_from"].iloc[-1] < end
        for row in group.to_dict("records"):
            stop = row["_valid_to"] if not pd.isna(row["_valid_to"]) else end
            for t in (
                row["_valid_from"],
                stop - US,
                row["_valid_from"] + (stop - row["_valid_from"]) * rng.random(),
            ):
                t = pd.Timestamp(t).to_pydatetime()
                for feature in view.features:
                    expected = aggregate(feature, events, user, t, INTERVAL, DAY)
                    assert same(expected, row[feature.name]), (
                        user,
                        t,
                        feature.name,
                        expected,
                        row[feature.name],
                    )


# -- materialization -----------------------------------------------------------------------------


def test_tiles_are_computed_once_and_a_rerun_recomputes_only_its_day(stats_setup):
    _, runtime, state, events = stats_setup
    table_id, view = state.table_id("stats"), state.feature_view("stats")
    tiles = runtime.offline_store.read(table_id, view).to_pylist()
    intervals = {(e["user_id"], e["ts"].replace(hour=e["ts"].hour // 2 * 2, minute=0)) for e in events}
    assert len(tiles) == len(intervals)  # one tile per entity and interval with events, nothing twice
    day = (D1 + 2 * DAY, D1 + 3 * DAY)
    result = materialize(runtime, state, "stats", *day)
    # The rerun computed that day's tiles only, and the table holds the same tiles as before.
    assert result.rows == len([i for i in intervals if day[0] <= i[1] < day[1]])
    assert runtime.offline_store.read(table_id, view).to_pylist() == tiles


# -- online --------------------------------------------------------------------------------------

SEVEN_DAYS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Aggregate, FeatureService, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                        aggregation_interval=timedelta(hours=1), feature_start_time=datetime(2024, 1, 1), online=True,
                        features=[Aggregate("amount", "count", "7d"), Aggregate("amount", "sum", "lifetime")])
    def spend(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    svc = FeatureService(name="svc", features=[spend])
"""


def online_values(runtime, state, view: str, users: list[str], at: datetime | None = None) -> dict:
    """Each user's online values as a lookup at ``at`` rolls them up (default: at the end of the
    latest materialized partition, the row's time), with the windows' end; None without a row."""
    from featureplane.compute.aggregation.online import OnlineRollup

    rollup = OnlineRollup(state.feature_view(view))
    rows = runtime.online_store.read([(state.table_id(view), (u,)) for u in users])
    return {
        u: None if r is None else rollup.at(r.values, r.event_ts if at is None else us(at))
        for u, r in zip(users, rows, strict=True)
    }


def us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1)) // US


def test_online_windows_move_with_the_latest_partition_even_without_new_events(tmp_path):
    events = [
        {"user_id": "u1", "ts": D1 + timedelta(hours=10), "amount": 5.0, "merchant": None, "qty": None},
        {
            "user_id": "u2",
            "ts": D1 + 8 * DAY + timedelta(hours=1),
            "amount": 1.0,
            "merchant": None,
            "qty": None,
        },
    ]
    _, runtime, state = applied(tmp_path, SEVEN_DAYS, events)
    materialize(runtime, state, "spend", D1, D1 + 2 * DAY)
    assert online_values(runtime, state, "spend", ["u1", "u2"]) == {
        "u1": (us(D1 + 2 * DAY), [1, 5.0]),
        "u2": None,
    }
    # Eight more days: u1 has no transactions in them; its 7-day count drops to 0 as its event leaves the
    # window, while the lifetime sum stays. The row says as of when: the end of the latest partition.
    result = materialize(runtime, state, "spend", D1 + 2 * DAY, D1 + 10 * DAY)
    assert result.online_full_sync is False
    assert online_values(runtime, state, "spend", ["u1", "u2"]) == {
        "u1": (us(D1 + 10 * DAY), [0, 5.0]),
        "u2": (us(D1 + 10 * DAY), [1, 1.0]),
    }
    # Backfilling an old, empty partition changes nothing: the values are already current.
    result = materialize(runtime, state, "spend", D1 + DAY, D1 + 2 * DAY)
    assert result.online_written == 0 and result.online_deleted == 0


def test_lookups_of_entities_without_events_get_empty_windows(tmp_path):
    from featureplane.serving.service import LookupService
    from featureplane.serving.snapshot import SnapshotCache

    events = [{"user_id": "u1", "ts": D1 + timedelta(hours=10), "amount": 5.0, "merchant": None, "qty": None}]
    _, runtime, state = applied(tmp_path, SEVEN_DAYS, events)
    materialize(runtime, state, "spend", D1, D1 + DAY)
    # A lookup at noon the next day: the 7-day window still holds u1's event of the first day.
    service = LookupService(
        SnapshotCache(runtime.registry, 0), runtime.online_store, clock=lambda: us(D1 + DAY + 12 * HOUR)
    )
    snapshot = service.snapshots.get("prod")
    options = {"includeServingStatus": True, "includeEffectiveTimes": True}
    known = service.read_features(snapshot.services["svc"], {"user_id": "u1"}, options)
    unknown = service.read_features(snapshot.services["svc"], {"user_id": "nobody"}, options)
    assert known["result"]["features"] == ["1", 5.0]
    # As in a training set: no events means a count of 0 and a sum of 0.
    assert unknown["result"]["features"] == ["0", 0.0]
    assert [m["status"] for m in unknown["metadata"]["features"]] == ["PRESENT", "PRESENT"]
    # Known and unknown entities alike: the windows end at the request time aligned to the interval.
    for answer in (known, unknown):
        assert {m["effectiveTime"] for m in answer["metadata"]["features"]} == {"2024-01-02T12:00:00Z"}
    spine = pd.DataFrame({"user_id": ["nobody"], "ts": [D1 + DAY]})
    out = Workspace(runtime, state).get_feature_view("spend").get_historical_features(spine, "ts")
    assert out["spend__amount_count_7d"].tolist() == [0] and out["spend__amount_sum_lifetime"].tolist() == [
        0.0
    ]


def test_corrected_source_data_is_repaired_online_including_vanished_entities(tmp_path):
    first = [
        {"user_id": "u1", "ts": D1 + timedelta(hours=1), "amount": 5.0, "merchant": None, "qty": None},
        {"user_id": "u2", "ts": D1 + timedelta(hours=2), "amount": 2.0, "merchant": None, "qty": None},
    ]
    repo, runtime, state = applied(tmp_path, SEVEN_DAYS, first)
    materialize(runtime, state, "spend", D1, D1 + 2 * DAY)
    runtime.close()
    corrected = [{**first[0], "amount": 6.0}]  # u1's amount fixed, u2's event withdrawn
    make_warehouse(repo, {"raw.events": rows_sql(COLUMNS, corrected)})
    result = materialize(runtime, state, "spend", D1, D1 + DAY)
    assert result.online_deleted == 1
    assert online_values(runtime, state, "spend", ["u1", "u2"]) == {
        "u1": (us(D1 + 2 * DAY), [1, 6.0]),
        "u2": None,
    }


def test_tiles_are_identical_however_threads_and_files_order_the_rows(stats_setup):
    """Float sums and squared deviations do not depend on the order rows arrive in: reruns of one
    range (other thread counts, other file orders) write the same tiles to the last bit."""
    import duckdb

    from featureplane.compute.aggregation.tiles import tile_sql

    _, _, state, _ = stats_setup
    view = state.feature_view("stats")
    rng = random.Random(5)
    rows = [
        (
            f"u{rng.randrange(50)}",
            D1 + timedelta(seconds=rng.randrange(86400)),
            rng.uniform(-1, 1) * 10 ** rng.randrange(9),
        )
        for _ in range(60_000)
    ]
    results = []
    for threads in (1, 2, 4, 1, 2, 4):
        rng.shuffle(rows)
        con = duckdb.connect()
        con.execute(f"SET threads = {threads}")
        con.execute(
            "CREATE TABLE raw (user_id VARCHAR, ts TIMESTAMP, amount DOUBLE, merchant VARCHAR, qty BIGINT)"
        )
        con.executemany("INSERT INTO raw VALUES (?, ?, ?, NULL, 1)", rows)
        results.append(con.execute(tile_sql(view, "SELECT * FROM raw")).fetchall())
        con.close()
    assert all(r == results[0] for r in results[1:])
    assert len(results[0]) > 500


def test_a_first_backfill_writes_online_from_its_tiles_as_a_full_sync_would(tmp_path, monkeypatch):
    """No offline table and no sync marker: the online rows come from the tiles just computed (the
    offline store is not read back), and equal what a full sync from the offline store writes."""
    from featureplane.materialization.online_sync import sync_online

    rng = random.Random(7)
    _, runtime, state = applied(tmp_path, SEVEN_DAYS, random_events(7, 300, D1, 12, users=5))
    users = [f"u{i}" for i in range(6)]

    def no_read_back(*args, **kwargs):
        raise AssertionError("the first backfill read the offline store back")

    monkeypatch.setattr(runtime.offline_store, "online_changes", no_read_back)
    result = materialize(runtime, state, "spend", D1, D1 + 12 * DAY)
    monkeypatch.undo()
    assert result.online_full_sync is True and result.online_written == 5
    staged = runtime.online_store.read([(state.table_id("spend"), (u,)) for u in users])
    at = D1 + 12 * DAY - timedelta(hours=rng.randrange(1, 48))
    looked_up = online_values(runtime, state, "spend", users, at)
    # The same rows as a full sync that reads every key back from the offline store.
    table_id = state.table_id("spend")
    runtime.online_store.delete(table_id, [(u,) for u in users])
    runtime.online_store.set_sync_marker(table_id, None)
    view = state.feature_view("spend")
    version = runtime.offline_store.version(table_id)
    synced = sync_online(runtime, state, view, None, None, None, version, lambda message: None)
    assert synced.full_sync is True and synced.written == 5
    assert runtime.online_store.read([(table_id, (u,)) for u in users]) == staged
    assert online_values(runtime, state, "spend", users, at) == looked_up
