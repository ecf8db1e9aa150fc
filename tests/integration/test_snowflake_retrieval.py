"""Training data from the Snowflake offline store: point-in-time correct, computed in Snowflake (only the
joined result is fetched), with the same answers the Delta store gives; and pandas and snowpark views on
the Snowflake engine."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from snowflake_helpers import snowflake_events_repo

from featureplane.compute.base import TransformationError
from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import Workspace

pytestmark = pytest.mark.integration

VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Attribute, Float64, FeatureService, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), batch_schedule=timedelta(days=1),
                        ttl=timedelta(days=1), online=True)
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    @batch_feature_view(sources=[events], entities=[user], mode="pandas",
                        features=[Attribute("amount_x10", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), batch_schedule=timedelta(days=1))
    def scaled(events):
        out = events[["user_id", "ts"]].copy()
        out["amount_x10"] = events["amount"] * 10
        return out

    @batch_feature_view(sources=[events], entities=[user], mode="snowpark",
                        features=[Attribute("amount_plus_1", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), batch_schedule=timedelta(days=1))
    def shifted(events, context):
        from snowflake.snowpark import functions as F

        return events.select("user_id", "ts", (F.col("amount") + 1).alias("amount_plus_1"))

    svc = FeatureService(name="svc", features=[amounts, scaled, shifted])
"""
T = datetime(2024, 1, 2, 10, 0, 0)
EVENTS = {
    "raw.events": "SELECT * FROM (VALUES "
    "('u1', TIMESTAMP '2024-01-01 10:00:00', 1.0), "
    "('u1', TIMESTAMP '2024-01-02 10:00:00', 2.0), "
    "('u2', TIMESTAMP '2024-01-01 12:00:00', 7.0)) AS t(user_id, ts, amount)"
}
US = timedelta(microseconds=1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, snowflake_server) -> Workspace:
    repo = snowflake_events_repo(tmp_path_factory.mktemp("retrieval"), snowflake_server, VIEWS, EVENTS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    for view in ("amounts", "scaled", "shifted"):
        materialize(runtime, state, view, datetime(2024, 1, 1), datetime(2024, 1, 4))
    yield Workspace(runtime, state)
    runtime.close()


def test_a_value_that_changes_at_t(workspace):
    spine = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u1", "u2", "nobody"],
            "ts": [
                T - US,
                T,
                T + timedelta(days=1) - US,
                T + timedelta(days=1),
                datetime(2024, 1, 1, 9),
                T,
                T,
            ],
            "label": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    client = workspace.runtime.offline_store.client
    client.history.clear()
    out = workspace.get_feature_view("amounts").get_historical_features(spine, timestamp_key="ts")
    assert list(out.columns) == ["user_id", "ts", "label", "amounts__amount"]
    values = [None if pd.isna(v) else v for v in out["amounts__amount"]]
    # t-1us: old value; t: new value; within ttl: new value; at t+ttl: expired; before any event: none;
    # u2's event is 22 hours old at T, inside its ttl; unknown key: none.
    assert values == [1.0, 2.0, 2.0, None, None, 7.0, None]
    assert list(out["label"]) == [1, 2, 3, 4, 5, 6, 7]
    # The spine went up with write_pandas; the join ran in Snowflake; one query fetched the result.
    statements = list(client.history)
    assert [q for q in statements if q.startswith('write_pandas "FP_SPINE_')]
    (joined,) = [q for q in statements if "FP_PROD__AMOUNTS__G1" in q]
    assert joined.startswith("WITH __fp_part_0_numbered AS") and '"amounts__amount"' in joined


def test_spine_order_index_and_columns_are_kept(workspace):
    spine = pd.DataFrame(
        {"ts": [T, T - US, T], "user_id": ["u1", "u1", "u2"], "extra": ["a", "b", "c"]}, index=[10, 5, 7]
    )
    out = workspace.get_feature_service("svc").get_historical_features(spine, timestamp_key="ts")
    assert list(out.index) == [10, 5, 7]
    assert list(out.columns) == [
        "ts",
        "user_id",
        "extra",
        "amounts__amount",
        "scaled__amount_x10",
        "shifted__amount_plus_1",
    ]
    assert out["amounts__amount"].tolist()[:2] == [2.0, 1.0]
    assert out["scaled__amount_x10"].tolist() == [20.0, 10.0, 70.0]  # no ttl: u2's old value stays
    assert out["shifted__amount_plus_1"].tolist() == [3.0, 2.0, 8.0]


def test_timezone_aware_spines_are_compared_in_utc(workspace):
    spine = pd.DataFrame(
        {
            "user_id": ["u1", "u1"],
            "ts": pd.to_datetime([T - US, T]).tz_localize("UTC").tz_convert("US/Eastern"),
        }
    )
    out = workspace.get_feature_view("amounts").get_historical_features(spine, timestamp_key="ts")
    assert out["amounts__amount"].tolist() == [1.0, 2.0]


def test_an_empty_spine_gives_an_empty_training_set(workspace):
    spine = pd.DataFrame({"user_id": pd.Series([], dtype=str), "ts": pd.Series([], dtype="datetime64[us]")})
    out = workspace.get_feature_service("svc").get_historical_features(spine, timestamp_key="ts")
    assert len(out) == 0 and "amounts__amount" in out.columns


def test_features_in_range_gives_validity_intervals(workspace):
    rows = workspace.get_feature_view("amounts").get_features_in_range(
        datetime(2024, 1, 2), datetime(2024, 1, 3)
    )
    u1 = rows[rows.user_id == "u1"]
    assert u1["_valid_from"].tolist() == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-02 10:00")]
    assert u1["_valid_to"].tolist() == [pd.Timestamp("2024-01-02 10:00"), pd.Timestamp("2024-01-03 10:00")]
    assert rows[rows.user_id == "u2"]["_valid_to"].tolist() == [pd.Timestamp("2024-01-02 12:00")]
    # Without a ttl the last row stays valid: no end.
    scaled = workspace.get_feature_view("scaled").get_features_in_range(
        datetime(2024, 1, 2), datetime(2024, 1, 3)
    )
    assert scaled[scaled.user_id == "u2"]["_valid_to"].isna().all()


def test_a_view_never_materialized_reads_as_empty(workspace):
    runtime, state = workspace.runtime, workspace.state
    view = state.feature_view("amounts")
    assert runtime.offline_store.read("prod/amounts/g99", view).num_rows == 0
    assert runtime.offline_store.version("prod/amounts/g99") is None


def test_snowpark_views_run_as_sql_in_snowflake(workspace):
    client = workspace.runtime.engine.client
    client.history.clear()
    state = workspace.state
    rows = workspace.runtime.engine.run_transformation(
        state.feature_view("shifted"), state.definitions.sources, datetime(2024, 1, 1), datetime(2024, 1, 3)
    )
    assert rows.column("amount_plus_1").to_pylist() == [2.0, 3.0, 8.0]
    (query,) = [q for q in client.history if '"AMOUNT_PLUS_1"' in q and not q.startswith("DESCRIBE")]
    assert '("AMOUNT" + 1' in query and "FROM raw.events WHERE" in query


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return events.to_pandas()", r"must return a Snowpark DataFrame, got DataFrame"),
        ("raise ValueError('no')", r"shifted\(\) raised ValueError\('no'\)"),
    ],
)
def test_snowpark_mistakes_are_named(workspace, body, message):
    import dataclasses

    state = workspace.state
    view = state.feature_view("shifted")
    python = view.transformation.python.split("from snowflake")[0] + body
    view = dataclasses.replace(view, transformation=dataclasses.replace(view.transformation, python=python))
    with pytest.raises(TransformationError, match=message):
        workspace.runtime.engine.run_transformation(
            view, state.definitions.sources, datetime(2024, 1, 1), datetime(2024, 1, 2)
        )


def test_training_data_from_the_sources_matches_the_materialized_data(workspace):
    """``from_source=True`` (what development workspaces use) computes the views on the Snowflake engine
    and joins them in Snowflake, giving the training set the materialized offline store gives."""
    spine = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u1"], "ts": [T - US, T, datetime(2024, 1, 3), datetime(2024, 1, 1)]}
    )
    service = workspace.get_feature_service("svc")
    pd.testing.assert_frame_equal(
        service.get_historical_features(spine, from_source=True), service.get_historical_features(spine)
    )
