"""Materialization: exact window replacement, idempotent reruns, and an online store equal to the
as-of-now projection of the offline store after any sequence of runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from helpers import events_repo, make_warehouse

from featureplane.engines.base import TransformationError
from featureplane.materialization import MaterializationError, ValidationFailed, materialize
from featureplane.online_stores.base import encode_key
from featureplane.repo.planning import apply_plan, plan_repository

VIEW = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Attribute, Float64, Int64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64), Attribute("n", Int64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), batch_schedule=timedelta(days=1), online=True)
    def amounts(events):
        return f"SELECT user_id, ts, amount, 1 AS n FROM {events}"
"""
DAY = timedelta(days=1)
D1 = datetime(2024, 1, 1)


def events_sql(rows: list[tuple[str, str, float]]) -> dict[str, str]:
    values = ", ".join(f"('{u}', TIMESTAMP '{t}', {a})" for u, t, a in rows)
    return {"raw.events": f"SELECT * FROM (VALUES {values}) AS t(user_id, ts, amount)"}


BASE_EVENTS = [
    ("u1", "2024-01-01 10:00:00", 1.0),
    ("u1", "2024-01-02 10:00:00", 2.0),
    ("u2", "2024-01-01 12:00:00", 7.0),
    ("u3", "2024-01-03 01:00:00", 3.0),
    ("u1", "2023-12-31 23:00:00", 99.0),  # before feature_start_time: never materialized
]


@pytest.fixture
def setup(tmp_path):
    repo = events_repo(tmp_path, VIEW, tables=events_sql(BASE_EVENTS))
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    return repo, runtime, runtime.registry.load("prod")


def offline_rows(runtime, state) -> list[tuple]:
    view = state.feature_view("amounts")
    table = runtime.offline_store.read(state.table_id("amounts"), view)
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def projection(rows: list[tuple]) -> dict[str, tuple]:
    """The as-of-now projection: the latest row per key."""
    latest: dict[str, tuple] = {}
    for row in sorted(rows, key=lambda r: r[1]):
        latest[row[0]] = row
    return latest


def assert_online_equals_offline(runtime, state) -> None:
    expected = projection(offline_rows(runtime, state))
    table_id = state.table_id("amounts")
    keys = ["u1", "u2", "u3", "u4"]
    values = runtime.online_store.read([(table_id, (k,)) for k in keys])
    for key, value in zip(keys, values, strict=True):
        if key not in expected:
            assert value is None, key
            continue
        row = expected[key]
        assert value is not None, key
        assert value.event_ts == int((row[1] - datetime(1970, 1, 1)).total_seconds() * 1_000_000)
        assert value.values == [row[2], row[3]]


def test_rows_land_in_their_window_only(setup):
    _, runtime, state = setup
    result = materialize(runtime, state, "amounts", D1, D1 + DAY)
    assert result.rows == 2 and result.partitions == 1
    assert [r[0] for r in offline_rows(runtime, state)] == ["u1", "u2"]
    assert_online_equals_offline(runtime, state)


def test_rerun_is_idempotent(setup):
    _, runtime, state = setup
    materialize(runtime, state, "amounts", D1, D1 + 3 * DAY)
    first = offline_rows(runtime, state)
    materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY)
    materialize(runtime, state, "amounts", D1, D1 + 3 * DAY)
    assert offline_rows(runtime, state) == first
    assert_online_equals_offline(runtime, state)


def test_out_of_order_backfill_never_overwrites_newer_online_values(setup):
    _, runtime, state = setup
    materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY)  # u1 = 2.0 (newest)
    materialize(runtime, state, "amounts", D1, D1 + DAY)  # older partition afterwards
    value = runtime.online_store.read([(state.table_id("amounts"), ("u1",))])[0]
    assert value.values == [2.0, 1]
    assert_online_equals_offline(runtime, state)


def test_rerun_with_changed_source_data_repairs_online_including_deleted_keys(setup):
    repo, runtime, state = setup
    materialize(runtime, state, "amounts", D1, D1 + 3 * DAY)
    # Day 2's data is corrected: u1's event disappears, u4 appears.
    runtime.close()
    corrected = [e for e in BASE_EVENTS if e[1] != "2024-01-02 10:00:00"] + [
        ("u4", "2024-01-02 05:00:00", 4.0)
    ]
    make_warehouse(repo, events_sql(corrected))
    result = materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY)
    assert result.online_full_sync is False
    online = runtime.online_store.read(
        [(state.table_id("amounts"), ("u1",)), (state.table_id("amounts"), ("u4",))]
    )
    assert online[0].values == [1.0, 1]  # back to the older value
    assert online[1].values == [4.0, 1]
    assert_online_equals_offline(runtime, state)
    # A key whose only rows vanish is deleted online.
    runtime.close()
    make_warehouse(repo, events_sql([e for e in corrected if e[0] != "u3"]))
    result = materialize(runtime, state, "amounts", D1 + 2 * DAY, D1 + 3 * DAY)
    assert result.online_deleted == 1
    assert_online_equals_offline(runtime, state)


def test_a_crash_between_offline_and_online_is_repaired_by_a_rerun(setup, monkeypatch):
    _, runtime, state = setup
    materialize(runtime, state, "amounts", D1, D1 + DAY)
    online = runtime.online_store

    def crash(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr(online, "write_encoded", crash)
    with pytest.raises(OSError):
        materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY)
    monkeypatch.undo()
    # Offline has day 2, online does not; the marker shows the online store is behind.
    result = materialize(runtime, state, "amounts", D1 + DAY, D1 + 2 * DAY)
    assert result.online_full_sync is True
    assert_online_equals_offline(runtime, state)


def test_output_not_matching_the_declaration_writes_nothing(tmp_path):
    bad = VIEW.replace("1 AS n", "'one' AS n")
    repo = events_repo(tmp_path, bad, tables=events_sql(BASE_EVENTS))
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    from featureplane.registry.plan import build_plan
    from featureplane.repo.loader import load_repository
    from featureplane.repo.validation import compile_repository

    # Skip the plan-time schema check to reach the run-time one.
    defs = compile_repository(load_repository(repo.root))
    runtime.registry.apply(build_plan("prod", True, 0, runtime.registry.load("prod").definitions, defs))
    state = runtime.registry.load("prod")
    with pytest.raises(TransformationError, match=r"column 'n' is VARCHAR but is declared Int64"):
        materialize(runtime, state, "amounts", D1, D1 + DAY)
    assert runtime.offline_store.version(state.table_id("amounts")) is None


def test_null_join_keys_block_the_write(tmp_path):
    repo = events_repo(tmp_path, VIEW, tables=events_sql(BASE_EVENTS))
    make_warehouse(
        repo,
        {
            "raw.events": "SELECT * FROM (VALUES (CAST(NULL AS VARCHAR), TIMESTAMP '2024-01-01 10:00:00', 1.0)) AS t(user_id, ts, amount)"
        },
    )
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    with pytest.raises(ValidationFailed, match="null join key"):
        materialize(runtime, state, "amounts", D1, D1 + DAY)
    assert runtime.offline_store.version(state.table_id("amounts")) is None


def test_partial_partitions_and_development_workspaces_are_refused(setup):
    _, runtime, state = setup
    with pytest.raises(MaterializationError, match="whole number"):
        materialize(runtime, state, "amounts", D1, D1 + timedelta(hours=5))
    runtime.registry.create_workspace("dev", live=False)
    from featureplane.registry.plan import build_plan

    runtime.registry.apply(
        build_plan("dev", False, 0, runtime.registry.load("dev").definitions, state.definitions)
    )
    with pytest.raises(MaterializationError, match="development workspace"):
        materialize(runtime, runtime.registry.load("dev"), "amounts", D1, D1 + DAY)


def test_online_keys_are_canonical():
    assert encode_key(("u1",)) == '["u1"]'
    assert encode_key((5, "a")) == '[5,"a"]'
