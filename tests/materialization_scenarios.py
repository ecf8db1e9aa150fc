"""Materialization scenarios every engine and store pairing must pass, shared so they cannot drift:
exact window replacement, idempotent reruns, out-of-order backfills, corrected source data (including
keys that disappear), a crash between the offline and the online write, and output that does not
match its declaration. Each backend's test module runs them on its own repository (``Backend``) and
adds what only that backend can show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from featureplane.engines.base import TransformationError
from featureplane.materialization import MaterializationResult, ValidationFailed, materialize

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
EVENTS = [
    ("u1", "2024-01-01 10:00:00", 1.0),
    ("u1", "2024-01-02 10:00:00", 2.0),
    ("u2", "2024-01-01 12:00:00", 7.0),
    ("u3", "2024-01-03 01:00:00", 3.0),
    ("u1", "2023-12-31 23:00:00", 99.0),  # before feature_start_time: never materialized
]
NULL_KEY_EVENTS = {
    "raw.events": "SELECT * FROM (VALUES (CAST(NULL AS VARCHAR), TIMESTAMP '2024-01-01 10:00:00', 1.0)) "
    "AS t(user_id, ts, amount)"
}


def events_sql(rows: list[tuple[str, str, float]]) -> dict[str, str]:
    values = ", ".join(f"('{u}', TIMESTAMP '{t}', {a})" for u, t, a in rows)
    return {"raw.events": f"SELECT * FROM (VALUES {values}) AS t(user_id, ts, amount)"}


@dataclass
class Backend:
    """A repository with ``VIEW`` applied to the live workspace ``prod`` on one backend."""

    repo: Any
    runtime: Any
    state: Any
    load_tables: Callable[[dict[str, str]], None]  # replace source tables ({"raw.events": "SELECT ..."})
    text_type: str  # how the engine names a text column in its errors

    def materialize(self, start: datetime, end: datetime) -> MaterializationResult:
        return materialize(self.runtime, self.state, "amounts", start, end)

    def read_online(self, *users: str) -> list:
        return self.runtime.online_store.read([(self.state.table_id("amounts"), (u,)) for u in users])


def offline_rows(runtime, state) -> list[tuple]:
    table = runtime.offline_store.read(state.table_id("amounts"), state.feature_view("amounts"))
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def assert_online_equals_offline(runtime, state) -> None:
    """The online store holds the as-of-now projection of the offline store: the latest row per key."""
    latest: dict[str, tuple] = {}
    for row in sorted(offline_rows(runtime, state), key=lambda r: r[1]):
        latest[row[0]] = row
    keys = ["u1", "u2", "u3", "u4"]
    values = runtime.online_store.read([(state.table_id("amounts"), (k,)) for k in keys])
    for key, value in zip(keys, values, strict=True):
        if key not in latest:
            assert value is None, key
            continue
        row = latest[key]
        assert value is not None, key
        assert value.event_ts == int((row[1] - datetime(1970, 1, 1)).total_seconds() * 1_000_000)
        assert value.values == [row[2], row[3]]


def rows_land_in_their_window_only(b: Backend) -> MaterializationResult:
    result = b.materialize(D1, D1 + DAY)
    assert result.rows == 2 and result.partitions == 1
    assert offline_rows(b.runtime, b.state) == [
        ("u1", datetime(2024, 1, 1, 10), 1.0, 1),
        ("u2", datetime(2024, 1, 1, 12), 7.0, 1),
    ]
    assert_online_equals_offline(b.runtime, b.state)
    return result


def rerun_is_idempotent(b: Backend) -> MaterializationResult:
    b.materialize(D1, D1 + 3 * DAY)
    first = offline_rows(b.runtime, b.state)
    b.materialize(D1 + DAY, D1 + 2 * DAY)
    result = b.materialize(D1, D1 + 3 * DAY)
    assert offline_rows(b.runtime, b.state) == first
    assert_online_equals_offline(b.runtime, b.state)
    return result


def out_of_order_backfill_never_overwrites_newer_online_values(b: Backend) -> None:
    b.materialize(D1 + DAY, D1 + 2 * DAY)  # u1 = 2.0 (newest)
    b.materialize(D1, D1 + DAY)  # older partition afterwards
    assert b.read_online("u1")[0].values == [2.0, 1]
    assert_online_equals_offline(b.runtime, b.state)


def corrected_source_data_repairs_online_including_deleted_keys(b: Backend) -> MaterializationResult:
    """Returns the run over the corrected window (it must not need a full online sync)."""
    b.materialize(D1, D1 + 3 * DAY)
    # Day 2's data is corrected: u1's event disappears, u4 appears.
    corrected = [e for e in EVENTS if e[1] != "2024-01-02 10:00:00"] + [("u4", "2024-01-02 05:00:00", 4.0)]
    b.load_tables(events_sql(corrected))
    result = b.materialize(D1 + DAY, D1 + 2 * DAY)
    assert result.online_full_sync is False
    u1, u4 = b.read_online("u1", "u4")
    assert u1.values == [1.0, 1]  # back to the older value
    assert u4.values == [4.0, 1]
    assert_online_equals_offline(b.runtime, b.state)
    # A key whose only rows vanish is deleted online.
    b.load_tables(events_sql([e for e in corrected if e[0] != "u3"]))
    assert b.materialize(D1 + 2 * DAY, D1 + 3 * DAY).online_deleted == 1
    assert_online_equals_offline(b.runtime, b.state)
    return result


def crash_between_offline_and_online_is_repaired_by_a_rerun(b: Backend, monkeypatch) -> None:
    b.materialize(D1, D1 + DAY)

    def crash(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr(b.runtime.online_store, "write_encoded", crash)
    with pytest.raises(OSError):
        b.materialize(D1 + DAY, D1 + 2 * DAY)
    monkeypatch.undo()
    # Offline has day 2, online does not; the sync marker shows the online store is behind.
    assert b.materialize(D1 + DAY, D1 + 2 * DAY).online_full_sync is True
    assert_online_equals_offline(b.runtime, b.state)


def output_not_matching_the_declaration_writes_nothing(b: Backend) -> None:
    from featureplane.registry.plan import build_plan
    from featureplane.repo.loader import load_repository
    from featureplane.repo.validation import compile_repository

    views = b.repo.root / "views.py"
    views.write_text(views.read_text().replace("1 AS n", "'one' AS n"))
    # Skip the plan-time schema check to reach the run-time one.
    definitions = compile_repository(load_repository(b.repo.root))
    b.runtime.registry.apply(build_plan("prod", True, b.state.version, b.state.definitions, definitions))
    b.state = b.runtime.registry.load("prod")
    with pytest.raises(TransformationError, match=rf"column 'n' is {b.text_type} but is declared Int64"):
        b.materialize(D1, D1 + DAY)
    assert b.runtime.offline_store.version(b.state.table_id("amounts")) is None


def null_join_keys_block_the_write(b: Backend) -> None:
    b.load_tables(NULL_KEY_EVENTS)
    with pytest.raises(ValidationFailed, match="null join key"):
        b.materialize(D1, D1 + DAY)
    assert b.runtime.offline_store.version(b.state.table_id("amounts")) is None
