"""Point-in-time correctness of training data: nothing from after the spine timestamp, ttl respected."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from helpers import events_repo

from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import RetrievalError, Workspace

VIEW = """
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

    svc = FeatureService(name="svc", features=[amounts, scaled])
"""
T = datetime(2024, 1, 2, 10, 0, 0)
EVENTS = {
    "raw.events": "SELECT * FROM (VALUES "
    "('u1', TIMESTAMP '2024-01-01 10:00:00', 1.0), "
    "('u1', TIMESTAMP '2024-01-02 10:00:00', 2.0), "
    "('u2', TIMESTAMP '2024-01-01 12:00:00', 7.0)) AS t(user_id, ts, amount)"
}
US = timedelta(microseconds=1)


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    repo = events_repo(tmp_path, VIEW, tables=EVENTS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    for view in ("amounts", "scaled"):
        materialize(runtime, state, view, datetime(2024, 1, 1), datetime(2024, 1, 4))
    return Workspace(runtime, state)


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
    out = workspace.get_feature_view("amounts").get_historical_features(spine, timestamp_key="ts")
    assert list(out.columns) == ["user_id", "ts", "label", "amounts__amount"]
    values = [None if pd.isna(v) else v for v in out["amounts__amount"]]
    # t-1us: old value; t: new value; within ttl: new value; at t+ttl: expired; before any event: none;
    # u2's event is 22 hours old at T, inside its ttl; unknown key: none.
    assert values == [1.0, 2.0, 2.0, None, None, 7.0, None]
    assert list(out["label"]) == [1, 2, 3, 4, 5, 6, 7]


def test_spine_order_index_and_columns_are_kept(workspace):
    spine = pd.DataFrame(
        {"ts": [T, T - US, T], "user_id": ["u1", "u1", "u2"], "extra": ["a", "b", "c"]}, index=[10, 5, 7]
    )
    out = workspace.get_feature_service("svc").get_historical_features(spine, timestamp_key="ts")
    assert list(out.index) == [10, 5, 7]
    assert list(out.columns) == ["ts", "user_id", "extra", "amounts__amount", "scaled__amount_x10"]
    assert out["amounts__amount"].tolist()[:2] == [2.0, 1.0]
    assert out["scaled__amount_x10"].tolist() == [20.0, 10.0, 70.0]  # no ttl: u2's old value stays


def test_timezone_aware_spines_are_compared_in_utc(workspace):
    spine = pd.DataFrame(
        {
            "user_id": ["u1", "u1"],
            "ts": pd.to_datetime([T - US, T]).tz_localize("UTC").tz_convert("US/Eastern"),
        }
    )
    out = workspace.get_feature_view("amounts").get_historical_features(spine, timestamp_key="ts")
    assert out["amounts__amount"].tolist() == [1.0, 2.0]


def test_missing_spine_columns_are_named(workspace):
    with pytest.raises(RetrievalError, match=r"missing column\(s\) user_id"):
        workspace.get_feature_service("svc").get_historical_features(
            pd.DataFrame({"ts": [T]}), timestamp_key="ts"
        )


def test_features_in_range_gives_validity_intervals(workspace):
    rows = workspace.get_feature_view("amounts").get_features_in_range(
        datetime(2024, 1, 2), datetime(2024, 1, 3)
    )
    u1 = rows[rows.user_id == "u1"]
    assert u1["_valid_from"].tolist() == [pd.Timestamp("2024-01-01 10:00"), pd.Timestamp("2024-01-02 10:00")]
    # The first row is valid until the next one; the second until its ttl ends.
    assert u1["_valid_to"].tolist() == [pd.Timestamp("2024-01-02 10:00"), pd.Timestamp("2024-01-03 10:00")]
    assert rows[rows.user_id == "u2"]["_valid_to"].tolist() == [pd.Timestamp("2024-01-02 12:00")]


def test_online_features_from_the_sdk(workspace):
    # The ttl is relative to now, so 2024's data has expired online.
    assert workspace.get_feature_view("amounts").get_online_features({"user_id": "u1"}) == {
        "amounts.amount": None
    }
    with pytest.raises(RetrievalError, match="missing join key"):
        workspace.get_feature_service("svc").get_online_features({})
