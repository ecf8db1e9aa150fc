"""Validation with Great Expectations before anything is written, and per-partition profiles."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import events_repo

from featureplane.definitions.expectations import (
    Between,
    Expectation,
    MeanBetween,
    RowCountBetween,
    Unique,
    expectation_specs,
)
from featureplane.definitions.specs import FeatureSpec, FeatureViewSpec, FieldSpec
from featureplane.materialization.materialize import ValidationFailed, materialize
from featureplane.monitoring.profiles import PartitionProfiler, profile_partitions
from featureplane.monitoring.quality import GXValidator
from featureplane.repo.planning import apply_plan, plan_repository

D1 = datetime(2024, 1, 1)
DAY = timedelta(days=1)


def make_view(*expectations) -> FeatureViewSpec:
    return FeatureViewSpec(
        name="spend",
        kind="batch",
        entities=["user"],
        join_keys=[FieldSpec("user_id", "string")],
        sources=["events"],
        features=[
            FeatureSpec("amount", "float64"),
            FeatureSpec("n", "int64"),
            FeatureSpec("country", "string"),
        ],
        timestamp_field="ts",
        feature_start_time="2024-01-01T00:00:00",
        batch_schedule_seconds=86400,
        expectations=expectation_specs(list(expectations), "test"),
    )


def rows(*items: tuple) -> pa.Table:
    users, stamps, amounts, ns, countries = zip(*items, strict=True) if items else ([], [], [], [], [])
    return pa.table(
        {
            "user_id": pa.array(list(users), pa.string()),
            "ts": pa.array(list(stamps), pa.timestamp("us")),
            "amount": pa.array(list(amounts), pa.float64()),
            "n": pa.array(list(ns), pa.int64()),
            "country": pa.array(list(countries), pa.string()),
        }
    )


GOOD = [
    ("u1", D1 + timedelta(hours=1), 5.0, 1, "US"),
    ("u2", D1 + timedelta(hours=2), 7.0, 2, "FR"),
    ("u1", D1 + DAY + timedelta(hours=3), 9.0, 3, "US"),
]


@pytest.fixture(scope="module")
def validator() -> GXValidator:
    return GXValidator(sample_size=5)


def by_name(results) -> dict:
    return {r.name: r for r in results}


def test_clean_rows_pass_every_default_and_declared_expectation(validator):
    view = make_view(Between("amount", 0, 100), Unique("user_id"), RowCountBetween(1))
    results = by_name(validator(view, rows(*GOOD), D1, D1 + 2 * DAY))
    assert all(r.passed for r in results.values()), [r.summary() for r in results.values()]
    assert results["amount_between"].element_count == 3
    assert results["amount_between"].partitions == ["2024-01-01", "2024-01-02"]
    # Uniqueness is per partition: u1 appears on both days without failing.
    assert results["user_id_unique"].passed


def test_null_keys_and_out_of_range_values_fail_with_details(validator):
    view = make_view(Between("amount", 0, 100))
    bad = [*GOOD, (None, D1 + DAY + timedelta(hours=5), 5.0, 1, "US"), ("u3", D1 + DAY, 1e6, 1, "US")]
    results = by_name(validator(view, rows(*bad), D1, D1 + 2 * DAY))
    keys = results["user_id_not_null"]
    assert (keys.passed, keys.blocking, keys.unexpected_count, keys.failing_partitions) == (
        False,
        True,
        1,
        ["2024-01-02"],
    )
    assert keys.bad_keys == [{"user_id": None, "ts": "2024-01-02T05:00:00"}]
    amount = results["amount_between"]
    assert (amount.passed, amount.unexpected_count, amount.unexpected_values) == (False, 1, [1e6])
    assert amount.bad_keys[0]["user_id"] == "u3"
    meta = amount.metadata()
    assert meta["unexpected_percent"] == 20.0 and meta["failing_partitions"] == "2024-01-02"
    assert results["timestamp_in_window"].passed and results["schema_matches_declaration"].passed


def test_timestamps_outside_the_window_and_duplicates_fail(validator):
    view = make_view()
    bad = [*GOOD, ("u1", D1 + timedelta(hours=1), 6.0, 1, "US"), ("u9", D1 + 3 * DAY, 1.0, 1, "US")]
    results = by_name(validator(view, rows(*bad), D1, D1 + 2 * DAY))
    assert not results["timestamp_in_window"].passed
    assert results["timestamp_in_window"].unexpected_count == 1
    duplicates = results["unique_key_timestamp"]
    assert not duplicates.passed and duplicates.unexpected_count == 2


def test_aggregates_are_per_partition_and_skip_empty_ones(validator):
    view = make_view(MeanBetween("amount", 0, 6, severity="warn"), RowCountBetween(1))
    results = by_name(validator(view, rows(*GOOD), D1, D1 + 3 * DAY))  # the third day is empty
    mean = results["amount_mean_between"]
    assert (mean.passed, mean.blocking, mean.failing_partitions) == (False, False, ["2024-01-02"])
    assert mean.observed_value == {"2024-01-02": 9.0}
    count = results["row_count_between"]
    assert (count.passed, count.failing_partitions, count.observed_value) == (
        False,
        ["2024-01-03"],
        {"2024-01-03": 0},
    )


def test_schema_must_match_the_declaration(validator):
    view = make_view()
    table = rows(*GOOD).set_column(3, "n", pa.array([1.5, 2.5, 3.5], pa.float64()))
    result = by_name(validator(view, table, D1, D1 + 2 * DAY))["schema_matches_declaration"]
    assert not result.passed and "n is double, declared Int64" in result.observed_value


def test_an_invalid_expectation_is_a_failed_check_with_the_reason(validator):
    view = make_view(Expectation("expect_column_values_to_be_between", column="amount", min_value="low"))
    result = by_name(validator(view, rows(*GOOD), D1, D1 + DAY))["amount_be_between"]
    assert not result.passed and "invalid expectation" in result.error


def test_validation_writes_nothing_to_disk(validator, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    before = set(Path(tmp_path).rglob("*"))
    validator(make_view(Between("amount", 0, 1)), rows(*GOOD), D1, D1 + 2 * DAY)
    assert set(Path(tmp_path).rglob("*")) == before
    assert os.environ.get("GX_ANALYTICS_ENABLED", "False").lower() == "false"


def test_profiles_per_partition():
    view = make_view()
    table = rows(*GOOD, ("u3", D1 + timedelta(hours=4), None, None, None))
    profiles = profile_partitions(view, table, D1, D1 + 3 * DAY)
    assert list(profiles) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    first = profiles["2024-01-01"]
    assert first["dagster/row_count"] == 3
    assert first["amount.null_fraction"] == pytest.approx(1 / 3)
    assert (first["amount.min"], first["amount.max"], first["amount.mean"]) == (5.0, 7.0, 6.0)
    assert first["country.distinct_count"] == 2 and "country.mean" not in first
    assert profiles["2024-01-03"] == {
        "dagster/row_count": 0,
        "amount.null_fraction": 0.0,
        "n.null_fraction": 0.0,
        "country.null_fraction": 0.0,
    }


VIEW = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Attribute, Between, Float64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True,
                        expectations=[Between("amount", 0, 100, severity="SEVERITY")])
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"
"""
EVENTS = {
    "raw.events": "SELECT * FROM (VALUES ('u1', TIMESTAMP '2024-01-01 10:00:00', 5.0), "
    "('u2', TIMESTAMP '2024-01-02 11:00:00', 500.0), (NULL, TIMESTAMP '2024-01-02 12:00:00', 1.0)) "
    "AS t(user_id, ts, amount)"
}


def live_repo(tmp_path, severity: str):
    repo = events_repo(tmp_path, VIEW.replace("SEVERITY", severity), tables=EVENTS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    return runtime, runtime.registry.load("prod")


def stores(runtime, state) -> tuple:
    table_id = state.table_id("amounts")
    offline = runtime.offline_store.read(table_id, state.feature_view("amounts")).to_pylist()
    online = runtime.online_store.read([(table_id, (k,)) for k in ("u1", "u2")])
    return runtime.offline_store.version(table_id), offline, online


def test_a_blocked_partition_leaves_both_stores_unchanged(tmp_path, validator):
    runtime, state = live_repo(tmp_path, "error")
    materialize(runtime, state, "amounts", D1, D1 + DAY, validators=[validator])
    before = stores(runtime, state)
    profiler = PartitionProfiler()
    with pytest.raises(ValidationFailed, match="2 blocking check") as info:
        materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY, validators=[validator, profiler])
    failed = sorted(r.name for r in info.value.results if not r.passed)
    assert failed == ["amount_between", "user_id_not_null"]
    assert stores(runtime, state) == before
    assert profiler.profiles["2024-01-02"]["amount.max"] == 500.0  # the bad data's profile is known


def test_warn_only_failures_still_write(tmp_path, validator):
    runtime, state = live_repo(tmp_path, "warn")
    bad = pa.table({"user_id": ["u2"], "ts": pa.array([D1 + DAY], pa.timestamp("us")), "amount": [500.0]})
    runtime.engine.materialization_rows = lambda *a: bad  # type: ignore[method-assign]  # no null key this time
    result = materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY, validators=[validator])
    warned = [r for r in result.checks if not r.passed]
    assert [(r.name, r.blocking) for r in warned] == [("amount_between", False)]
    _, offline, online = stores(runtime, state)
    assert offline == [{"user_id": "u2", "ts": D1 + DAY, "amount": 500.0}]
    assert online[1].values == [500.0]


def test_featureplane_materialize_validates_too(tmp_path):
    repo = events_repo(tmp_path, VIEW.replace("SEVERITY", "error"), tables=EVENTS)
    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")
    out = repo.cli("materialize", "amounts", "--start", "2024-01-02", "--end", "2024-01-03", check=False)
    assert out.returncode == 1
    assert "2 blocking check(s) failed" in out.stderr and "nothing was written" in out.stderr
    assert "- user_id_not_null FAILED (error); 1 unexpected of 2 rows" in out.stderr
    runtime = repo.runtime()
    assert runtime.offline_store.version(runtime.registry.load("prod").table_id("amounts")) is None
