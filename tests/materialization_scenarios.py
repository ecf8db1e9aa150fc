"""The repository and backends that materialization scenarios run on (``tests/unit/test_materialization.py``
runs every scenario on every backend; a backend's own module adds what only it can show)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from featureplane.materialization.materialize import MaterializationResult, materialize

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


def duckdb_backend(tmp_path) -> Backend:
    """DuckDB engine, Delta offline store, SQLite online store."""
    from helpers import events_repo, make_warehouse

    from featureplane.repo.planning import apply_plan, plan_repository

    repo = events_repo(tmp_path, VIEW, tables=events_sql(EVENTS))
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))

    def load_tables(tables: dict[str, str]) -> None:
        runtime.close()  # the warehouse file is rewritten; the runtime reopens it
        make_warehouse(repo, tables)

    return Backend(repo, runtime, runtime.registry.load("prod"), load_tables, text_type="VARCHAR")


def snowflake_backend(tmp_path, snowflake_server) -> Backend:
    """Snowflake engine and offline store (fakesnow behind the real connector), SQLite online store."""
    from snowflake_helpers import load_sql_tables, snowflake_events_repo

    from featureplane.repo.planning import apply_plan, plan_repository

    repo = snowflake_events_repo(tmp_path, snowflake_server, VIEW, events_sql(EVENTS))
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    return Backend(repo, runtime, state, lambda tables: load_sql_tables(repo, tables), text_type="TEXT")
