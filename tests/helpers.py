"""Small builders used across tests: tiny repositories over hand-made warehouse tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Repo, write_repo

ENTITY_AND_SOURCE = """
    from featureplane import BatchSource, Entity, Field, String

    user = Entity(name="user", join_keys=[Field("user_id", String)])
    events = BatchSource(name="events", table="raw.events", timestamp_field="ts")
"""


def make_warehouse(repo: Repo, tables: dict[str, str]) -> None:
    """Create warehouse tables from SQL (``{"raw.events": "SELECT ..."}``)."""
    from featureplane.compute.duckdb import connect_warehouse

    path = repo.config().warehouse_path
    path.parent.mkdir(parents=True, exist_ok=True)
    con = connect_warehouse(path, read_only=False)
    try:
        for name, sql in tables.items():
            schema = name.split(".")[0]
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}").fetchall()
            con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}").fetchall()
    finally:
        con.close()


def events_repo(
    root: Path,
    views: str,
    tables: dict[str, str] | None = None,
    extra_files: dict[str, str] | None = None,
    config_extra: str = "",
) -> Repo:
    """A repository with entity ``user``, source ``events`` (raw.events) and the given views file."""
    config = write_repo(
        root, {"base.py": ENTITY_AND_SOURCE, "views.py": views, **(extra_files or {})}, config_extra
    )
    repo = Repo(root, config)
    make_warehouse(
        repo,
        tables
        or {
            "raw.events": "SELECT * FROM (VALUES ('u1', TIMESTAMP '2024-01-01 10:00:00', 5.0), "
            "('u1', TIMESTAMP '2024-01-02 11:00:00', 7.0), ('u2', TIMESTAMP '2024-01-01 12:00:00', 1.5)) "
            "AS t(user_id, ts, amount)"
        },
    )
    return repo


# One online view over ``events`` and a service ``svc`` reading it (u1's latest amount is 7.0).
AMOUNTS_SERVICE = """
    from datetime import datetime
    from base import events, user
    from featureplane import Attribute, Float64, FeatureService, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True)
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    svc = FeatureService(name="svc", features=[amounts])
"""


SERVING_VIEWS = """
    from datetime import datetime
    from base import events, user
    from featureplane import (Array, Attribute, Bool, FeatureService, FeatureTable, Field, Float64, Int64,
                              PushSource, String, Timestamp, batch_feature_view)

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True)
    def spend(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    clicks = PushSource(name="clicks", timestamp_field="ts", schema=[
        Field("user_id", String), Field("ts", Timestamp), Field("score", Float64), Field("count", Int64),
        Field("tags", Array(String)), Field("seen", Timestamp), Field("page", String)])
    scores = FeatureTable(name="scores", entities=[user], source=clicks, timestamp_field="ts",
                          features=[Attribute("score", Float64), Attribute("count", Int64),
                                    Attribute("tags", Array(String)), Attribute("seen", Timestamp)],
                          online=True, offline=True)
    profile = FeatureTable(name="profile", entities=[user], timestamp_field="updated",
                           features=[Attribute("tier", String), Attribute("vip", Bool)], online=True,
                           offline=False)
    svc = FeatureService(name="svc", features=[spend, scores, profile])
"""


def serving_repo(root: Path, **serving) -> Repo:
    """The events repository with a batch view ``spend`` (materialized for 2024-01-01..03), a push
    source ``clicks`` feeding the FeatureTable ``scores``, a FeatureTable ``profile`` and a service
    ``svc`` over all three, applied to live workspaces ``prod`` and ``staging`` and development ``dev``.
    ``serving`` settings go to featureplane.yaml (e.g. ``auth=True``)."""
    from datetime import datetime

    from featureplane.materialization.materialize import materialize
    from featureplane.repo.planning import apply_plan, plan_repository

    repo = events_repo(root, SERVING_VIEWS)
    with repo.runtime() as runtime:
        for name, live in (("prod", True), ("staging", True), ("dev", False)):
            runtime.registry.create_workspace(name, live=live)
            apply_plan(runtime, plan_repository(runtime, name))
        state = runtime.registry.load("prod")
        materialize(runtime, state, "spend", datetime(2024, 1, 1), datetime(2024, 1, 3))
    if serving:
        repo.set_config("serving", **serving)
    return repo


def click(user: str, ts: str, score: float | None = None, **more) -> dict:
    """One ingest record for the ``clicks`` push source."""
    record = {"user_id": user, "ts": ts, **more}
    if score is not None:
        record["score"] = score
    return {"record": record}


def rows_sql(columns: dict[str, str], rows: list[dict]) -> str:
    """A SELECT of literal rows, typed by ``columns`` (name -> SQL type), for ``make_warehouse``."""
    from datetime import datetime

    def literal(value, sql_type: str) -> str:
        if value is None:
            return f"CAST(NULL AS {sql_type})"
        if isinstance(value, datetime):
            return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        return f"CAST({value!r} AS {sql_type})"

    if not rows:
        empty = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items())
        return f"SELECT {empty} WHERE FALSE"
    values = ", ".join("(" + ", ".join(literal(row[c], t) for c, t in columns.items()) + ")" for row in rows)
    return f"SELECT * FROM (VALUES {values}) AS t({', '.join(columns)})"


def floats_close(actual, expected, rel: float = 1e-12) -> bool:
    """Equal, with floats (also inside lists, tuples and dicts) equal to ``rel`` relative.

    For comparing engines: a float sum is exact only up to the order of its terms, and neither
    Snowflake nor DuckDB promises the same order as the other."""
    if isinstance(expected, float) and isinstance(actual, float):
        return actual == pytest.approx(expected, rel=rel, abs=1e-9)
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        return len(actual) == len(expected) and all(
            floats_close(a, e, rel) for a, e in zip(actual, expected, strict=True)
        )
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(
            floats_close(actual[k], expected[k], rel) for k in expected
        )
    return actual == expected
