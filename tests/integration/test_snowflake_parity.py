"""Parity: the example repository gives the same features on DuckDB and on the Snowflake path.

One dataset is generated into the DuckDB warehouse and copied to a database on the Snowflake stand-in
(fakesnow behind the real connector). The example repository, plus a snowpark-mode view, is applied and
materialized on both: DuckDB engine + Delta offline store (the snowpark view in Snowpark's local testing
mode), and Snowflake engine + Snowflake offline store (the snowpark view compiled by Snowpark to SQL that
runs in the stand-in), and the aggregate view ``user_transaction_metrics`` (hourly tiles, rolled up in
Snowflake). The offline tables, the online stores, the training sets (of the views and of the services,
including ``fraud_detection`` with its aggregate, realtime and stream views; the stream view's history
is backfilled from ``raw.transactions`` into its event log on both sides) and the feature ranges must be
identical.

The stand-in cannot run Snowflake's ``ASOF JOIN ... MATCH_CONDITION``, so the Snowflake store runs here
with ``point_in_time_join: window``; the ASOF query is asserted as SQL (and shown to be rejected by the
stand-in, so this test notices the day it is not) in ``test_asof_join_sql_is_what_snowflake_gets``.

The part of the example built on dbt models (``feature_repo/dbt_features/``) is left out on both sides:
on Snowflake those models are built by dbt's Snowflake adapter in the account, which the stand-in does
not replace; the views over them are ordinary ``snowflake_sql`` views, covered by the rest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest
from conftest import SMALL_END, SMALL_USERS, Repo, copy_example_repo, generate_small_data
from helpers import floats_close
from snowflake_helpers import copy_sources, use_snowflake

from featureplane.materialization.materialize import materialize
from featureplane.offline_stores.base import RetrievalPart
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import Workspace
from featureplane.streams.backfill import backfill_stream_view

pytestmark = pytest.mark.integration

SNOWPARK_VIEW = '''
from datetime import timedelta

from data_sources import transactions
from entities import user
from feature_views.transactions import FEATURE_START, user_daily_spend
from feature_views.users import user_profile

from featureplane import Attribute, FeatureService, Float64, Int64, batch_feature_view


@batch_feature_view(
    sources=[transactions],
    entities=[user],
    mode="snowpark",
    features=[
        Attribute("largest_amount", Float64),
        Attribute("mean_amount", Float64),
        Attribute("transactions", Int64),
    ],
    timestamp_field="ts",
    feature_start_time=FEATURE_START,
    batch_schedule=timedelta(days=1),
    ttl=timedelta(days=3),
    online=True,
)
def user_daily_merchants(transactions):
    """Each user's merchants and amounts per day, with Snowpark's DataFrame API."""
    from snowflake.snowpark import functions as F

    return (
        transactions.with_column("day", F.date_trunc("day", F.col("ts")))
        .group_by("user_id", "day")
        .agg(
            F.max("amount").alias("largest_amount"),
            F.avg("amount").alias("mean_amount"),
            F.count("*").alias("transactions"),
        )
        .select(
            "user_id",
            F.dateadd("microsecond", F.lit(-1), F.dateadd("day", F.lit(1), F.col("day"))).alias("ts"),
            "largest_amount",
            "mean_amount",
            "transactions",
        )
    )


fraud_detection_full = FeatureService(
    name="fraud_detection_full",
    features=[user_daily_spend, user_profile, user_daily_merchants[["transactions", "mean_amount"]]],
)

fraud_detection_batch = FeatureService(
    name="fraud_detection_batch",
    features=[user_daily_spend, user_profile[["age", "country", "credit_limit"]]],
)
'''
VIEWS = ("user_daily_spend", "user_profile", "user_daily_merchants", "user_transaction_metrics")
LAST = datetime.combine(SMALL_END, datetime.min.time())
# Days materialized per view: Snowpark's local testing evaluates each group in Python (~1 s per day of
# the small dataset), so the snowpark view covers fewer days.
DAYS = {"user_daily_spend": 12, "user_profile": 12, "user_daily_merchants": 3, "user_transaction_metrics": 12}
# fraud_detection's stream view, backfilled from raw.transactions on both sides (its event log).
STREAM_VIEW = "user_transaction_counts_5m"
# Local testing computes AVG in pandas, summing in another order than a SQL engine; Snowflake does not
# promise bit-identical float aggregates across runs either. Features of the snowpark view are compared
# to 1e-12 relative; everything else must be bit-identical.
SNOWPARK_RTOL = 1e-12
# The aggregate view's float tiles are summed by DuckDB with compensated summation (independent of row
# order) and by Snowflake's SUM (in parallel, in no promised order); its values add doubles over window
# frames in an order neither engine promises. So its float tiles and values, and the realtime features
# computed from them, are compared to 1e-12 relative; counts and integer values exactly.
AGGREGATE_RTOL = 1e-12
APPROXIMATE = {"user_daily_merchants": SNOWPARK_RTOL, "user_transaction_metrics": AGGREGATE_RTOL}


class Side:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.runtime = repo.runtime()
        self.runtime.registry.create_workspace("prod", live=True)
        apply_plan(self.runtime, plan_repository(self.runtime, "prod"))
        self.state = self.runtime.registry.load("prod")
        self.workspace = Workspace(self.runtime, self.state)

    def materialize(self, view: str, start: datetime, end: datetime):
        return materialize(self.runtime, self.state, view, start, end)

    def backfill(self, view: str, start: datetime, end: datetime):
        return backfill_stream_view(self.runtime, self.state, view, start, end)

    def offline(self, view: str) -> pa.Table:
        spec = self.state.feature_view(view)
        return self.runtime.offline_store.read(self.state.table_id(view), spec)

    def online(self, view: str) -> list:
        table_id = self.state.table_id(view)
        return self.runtime.online_store.read([(table_id, (f"user_{i}",)) for i in range(SMALL_USERS + 5)])


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory, snowflake_server) -> tuple[Side, Side]:
    root = tmp_path_factory.mktemp("parity")
    duck_repo = copy_example_repo(root / "duckdb", dbt=False)
    snow_repo = copy_example_repo(root / "snowflake", dbt=False)
    for repo in (duck_repo, snow_repo):
        (repo.root / "feature_views" / "merchants.py").write_text(SNOWPARK_VIEW)
    generate_small_data(duck_repo)
    use_snowflake(snow_repo, snowflake_server)
    copy_sources(duck_repo, snow_repo, ["raw.transactions", "raw.users"])
    duck, snow = Side(duck_repo), Side(snow_repo)
    for view, days in DAYS.items():
        # DuckDB materializes day by day, Snowflake the whole range in one query: same rows either way.
        first = LAST - timedelta(days=days)
        for day in range(days):
            duck.materialize(view, first + timedelta(days=day), first + timedelta(days=day + 1))
        if view == "user_transaction_metrics":
            # An entity's online effective time is the end of the partition at which its values last
            # changed, which depends on how the partitions were chunked: chunk them alike (this also
            # runs the incremental online sync as the windows' end moves, day by day; the range query
            # is covered by test_snowflake_aggregations).
            for day in range(days):
                snow.materialize(view, first + timedelta(days=day), first + timedelta(days=day + 1))
            continue
        snow.materialize(view, first, LAST)
    first = LAST - timedelta(days=12)
    assert (
        duck.backfill(STREAM_VIEW, first, LAST).events == snow.backfill(STREAM_VIEW, first, LAST).events > 0
    )
    yield duck, snow
    duck.runtime.close()
    snow.runtime.close()


def test_the_engines_are_what_the_test_says(sides):
    duck, snow = sides
    assert (duck.runtime.engine.name, type(duck.runtime.offline_store).__name__) == (
        "duckdb",
        "DeltaOfflineStore",
    )
    assert (snow.runtime.engine.name, type(snow.runtime.offline_store).__name__) == (
        "snowflake",
        "SnowflakeOfflineStore",
    )


@pytest.mark.parametrize("view", VIEWS)
def test_materialized_features_are_identical(sides, view):
    duck, snow = sides
    expected, actual = duck.offline(view), snow.offline(view)
    assert expected.num_rows > 100
    assert actual.schema == expected.schema
    if view == "user_daily_merchants":
        pd.testing.assert_frame_equal(actual.to_pandas(), expected.to_pandas(), rtol=SNOWPARK_RTOL)
    elif view in APPROXIMATE:  # the aggregate view's tiles
        assert floats_close(actual.to_pylist(), expected.to_pylist(), APPROXIMATE[view]), _first_difference(
            expected, actual
        )
    else:
        assert actual.equals(expected), _first_difference(expected, actual)


@pytest.mark.parametrize("view", VIEWS)
def test_online_stores_are_identical(sides, view):
    duck, snow = sides
    expected, actual = duck.online(view), snow.online(view)
    assert sum(v is not None for v in expected) > 50
    if view == "user_transaction_metrics":
        # An entity's effective time is the partition end at which a sync last found its values
        # changed; a sync compares doubles summed in two queries, so a last-bit difference can count as
        # a change on one side and not on the other. The times must be partition ends of the
        # materialized days (and most agree); the values must agree to the tolerance.
        ends = {
            int((LAST - timedelta(days=d) - datetime(1970, 1, 1)).total_seconds()) * 10**6 for d in range(12)
        }
        assert {v.event_ts for v in actual if v} <= ends
        same = sum(a.event_ts == e.event_ts for a, e in zip(actual, expected, strict=True) if a and e)
        assert same >= 0.9 * sum(v is not None for v in expected)
    elif view in APPROXIMATE:
        assert [v and v.event_ts for v in actual] == [v and v.event_ts for v in expected]
    if view in APPROXIMATE:
        assert [v is None for v in actual] == [v is None for v in expected]
        for a, e in zip(actual, expected, strict=True):
            if e is not None:
                assert len(a.values) == len(e.values)
                assert floats_close(list(a.values), list(e.values), APPROXIMATE[view]), (a, e)
    else:
        assert actual == expected


def spine() -> pd.DataFrame:
    """Every user at several times, including exact feature timestamps and unknown users."""
    times = [LAST - timedelta(days=d, hours=h) for d in range(0, 12, 2) for h in (0, 7)]
    times.append(LAST - timedelta(days=3, microseconds=1))
    rows = [
        (f"user_{u}", t, u % 2, round(5.0 + (u * 37 + i * 11) % 400, 2))
        for u in range(0, SMALL_USERS + 3, 3)
        for i, t in enumerate(times)
    ]
    # ``amount`` is the request data of fraud_detection's realtime view.
    return pd.DataFrame(rows, columns=["user_id", "ts", "label", "amount"]).sample(frac=1.0, random_state=3)


@pytest.mark.parametrize("service", ["fraud_detection_batch", "fraud_detection_full", "fraud_detection"])
def test_training_sets_are_identical(sides, service):
    duck, snow = sides
    expected = duck.workspace.get_feature_service(service).get_historical_features(spine(), "ts")
    actual = snow.workspace.get_feature_service(service).get_historical_features(spine(), "ts")
    assert expected.notna().sum().min() > 0
    if service == "fraud_detection":
        assert {
            "user_transaction_metrics__amount_count_30d",
            "transaction_amount_vs_history__amount_zscore_30d",
            f"{STREAM_VIEW}__amount_count_5m",
        } <= set(expected.columns)
        assert expected[f"{STREAM_VIEW}__amount_count_5m"].max() > 0  # the backfilled history counts
    exact = service == "fraud_detection_batch"
    rtol = {"fraud_detection_full": SNOWPARK_RTOL, "fraud_detection": AGGREGATE_RTOL}.get(service, 0)
    pd.testing.assert_frame_equal(actual, expected, check_exact=exact, rtol=rtol)


@pytest.mark.parametrize("view", VIEWS)
def test_view_training_sets_and_ranges_are_identical(sides, view):
    duck, snow = sides
    exact = view not in APPROXIMATE
    tolerance = {"check_exact": exact, "rtol": APPROXIMATE.get(view, 0)}
    expected = duck.workspace.get_feature_view(view).get_historical_features(spine(), "ts")
    actual = snow.workspace.get_feature_view(view).get_historical_features(spine(), "ts")
    assert expected.iloc[:, -1].notna().sum() > 10
    pd.testing.assert_frame_equal(actual, expected, **tolerance)
    window = (LAST - timedelta(days=5), LAST - timedelta(days=2))
    expected = duck.workspace.get_feature_view(view).get_features_in_range(*window)
    actual = snow.workspace.get_feature_view(view).get_features_in_range(*window)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(actual, expected, **tolerance)


def test_reruns_and_other_chunkings_change_nothing(sides):
    duck, snow = sides
    before = snow.offline("user_daily_spend")
    first = LAST - timedelta(days=12)
    for day in (3, 4):
        snow.materialize("user_daily_spend", first + timedelta(days=day), first + timedelta(days=day + 1))
    snow.materialize("user_daily_spend", first, first + timedelta(days=6))
    assert snow.offline("user_daily_spend").equals(before)
    assert snow.online("user_daily_spend") == duck.online("user_daily_spend")


def _first_difference(expected: pa.Table, actual: pa.Table) -> str:
    if expected.num_rows != actual.num_rows:
        return f"{expected.num_rows} rows on DuckDB, {actual.num_rows} on Snowflake"
    for name in expected.column_names:
        a, b = expected.column(name).to_pylist(), actual.column(name).to_pylist()
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return f"column {name!r}, row {i}: DuckDB {x!r}, Snowflake {y!r}"
    return "schemas differ"


def test_asof_join_sql_is_what_snowflake_gets(sides):
    """With ``point_in_time_join: asof`` (the default), training data comes from Snowflake's ASOF JOIN.

    The stand-in cannot parse ``ASOF JOIN ... MATCH_CONDITION`` (asserted below, so this test notices
    when it can), so instead of running it there the test asserts the SQL that was sent, then runs that
    exact statement on DuckDB, mechanically rewritten to DuckDB's ASOF LEFT JOIN, over the same stored
    rows and spine, and gets the training set DuckDB and the window formulation give."""
    import dataclasses

    import duckdb
    import sqlglot
    from sqlglot import exp

    from featureplane.compute.snowflake.client import SnowflakeError
    from featureplane.offline_stores.snowflake import SnowflakeOfflineStore
    from featureplane.offline_stores.snowflake_sql import spine_table, table_name

    duck, snow = sides
    config = snow.repo.config()
    config = dataclasses.replace(config, offline_store={**config.offline_store, "point_in_time_join": "asof"})
    store = SnowflakeOfflineStore(config)
    parts = [
        RetrievalPart(snow.state.feature_view(p.view), snow.state.table_id(p.view), p.features)
        for p in snow.state.feature_service("fraud_detection_batch").features
    ]
    try:
        with pytest.raises(SnowflakeError, match="MATCH_CONDITION"):
            store.get_historical_features(spine(), "ts", parts)
        sent = next(q for q in reversed(store.client.history) if "ASOF JOIN" in q)
        relations = [store.relation(part.table_id) for part in parts]
    finally:
        store.close()

    spend, profile = (part.view for part in parts)
    assert (
        'ASOF JOIN (SELECT "user_id", "spend", "transaction_count", "max_amount", "distinct_merchants", '
        f'"night_share", "ts" AS "__fp_ts" FROM {relations[0]}) AS p '
        'MATCH_CONDITION (s."__fp_spine_ts" >= p."__fp_ts") ON s."user_id" = p."user_id"'
    ) in sent
    assert (
        'ASOF JOIN (SELECT "user_id", "age", "country", "credit_limit", "updated_at" AS "__fp_ts" '
        f'FROM {relations[1]}) AS p MATCH_CONDITION (s."__fp_spine_ts" >= p."__fp_ts")'
    ) in sent
    assert sent.count("ASOF JOIN") == 2 and sent.count("LEFT JOIN __fp_part_") == 2
    # user_daily_spend has a one-day ttl; user_profile has none.
    assert 'CASE WHEN __fp_part_0."__fp_ts" > DATEADD(second, -86400, s."__fp_spine_ts")' in sent
    assert '__fp_part_1."__fp_ts" >' not in sent
    assert sent.endswith('ORDER BY s."__fp_row"')

    # The same statement, as DuckDB spells an ASOF join that keeps unmatched spine rows.
    statement = sqlglot.parse_one(sent, read="snowflake")
    for table in statement.find_all(exp.Table):
        table.set("catalog", None)  # the test database's name
    for join in statement.find_all(exp.Join):
        if join.args.get("match_condition") is not None:
            join.set("on", exp.and_(join.args["match_condition"], join.args["on"]))
            join.set("match_condition", None)
            join.set("side", "LEFT")
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'").fetchall()
    con.execute("CREATE SCHEMA FEATURES").fetchall()
    for view in (spend, profile):
        con.register("stored", snow.offline(view.name))
        name = table_name(snow.state.table_id(view.name))
        con.execute(f'CREATE TABLE FEATURES."{name}" AS SELECT * FROM stored').fetchall()
    spine_name = next(t.name for t in statement.find_all(exp.Table) if t.name.startswith("FP_SPINE_"))
    con.register("uploaded", spine_table(spine(), "ts", {"user_id": spend.join_keys[0].type}))
    con.execute(f'CREATE TABLE "{spine_name}" AS SELECT * FROM uploaded').fetchall()
    asof = con.sql(statement.sql(dialect="duckdb")).df().drop(columns="__fp_row")
    expected = duck.workspace.get_feature_service("fraud_detection_batch").get_historical_features(
        spine(), "ts"
    )
    expected = expected.drop(columns=["user_id", "ts", "label", "amount"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(asof, expected, check_dtype=False, check_exact=True)
