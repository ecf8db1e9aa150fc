"""``offline_retention``: declared per view (validated with file:line), enforced by one DELETE on the
Snowflake store and on Delta, the same rows on both; an aggregate view's retention must keep the tiles
its current values need, and lifetime aggregates refuse it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from helpers import events_repo
from snowflake_helpers import snowflake_events_repo

from featureplane.definitions.base import DefinitionError
from featureplane.materialization.maintenance import MaintenanceOptions, maintain_view
from featureplane.materialization.materialize import materialize
from featureplane.repo.errors import RepositoryError
from featureplane.repo.planning import apply_plan, load_definitions, plan_repository

pytestmark = pytest.mark.integration

VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Aggregate, Attribute, Float64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), offline_retention="2d")
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                        aggregation_interval=timedelta(hours=12), feature_start_time=datetime(2024, 1, 1),
                        features=[Aggregate("amount", "sum", "1d")], offline_retention="2d")
    def sums(events):
        return f"SELECT user_id, ts, amount FROM {events}"
"""
EVENTS = {
    "raw.events": "SELECT * FROM (VALUES "
    + ", ".join(
        f"('u{u}', TIMESTAMP '2024-01-0{d} {h:02d}:00:00', {d * 10.0 + u})"
        for d in range(1, 6)
        for u in (1, 2)
        for h in (6, 18)
    )
    + ") AS t(user_id, ts, amount)"
}
NOW = datetime(2024, 1, 6)
CUTOFF = NOW - timedelta(days=2)


def run(repo) -> dict[str, tuple[list, list]]:
    """Materialize both views, maintain them at NOW; each view's stored rows before and after."""
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    out = {}
    for name in ("amounts", "sums"):
        materialize(runtime, state, name, datetime(2024, 1, 1), datetime(2024, 1, 6))
        view, table_id = state.feature_view(name), state.table_id(name)
        before = rows(runtime, table_id, view)
        report = maintain_view(runtime, state, view, MaintenanceOptions(vacuum_retention_hours=0), NOW)
        after = rows(runtime, table_id, view)
        assert report.rows_deleted == len(before) - len(after) > 0
        out[name] = (before, after)
    runtime.close()
    return out


def rows(runtime, table_id: str, view) -> list[tuple]:
    table = runtime.offline_store.read(table_id, view)
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def test_retention_deletes_the_same_rows_on_delta_and_snowflake(tmp_path, snowflake_server):
    delta = run(events_repo(tmp_path / "delta", VIEWS, EVENTS))
    snowflake = run(snowflake_events_repo(tmp_path / "snowflake", snowflake_server, VIEWS, EVENTS))
    for name in ("amounts", "sums"):
        before, after = delta[name]
        assert after == [r for r in before if r[1] >= CUTOFF]  # rows (tiles) before the cutoff are gone
        assert [r[:2] for r in snowflake[name][1]] == [r[:2] for r in after]
    # The aggregate view keeps its partition markers: the online store still knows what is materialized.
    from deltalake import DeltaTable

    runtime = events_repo(tmp_path / "delta", VIEWS, EVENTS).runtime()
    state = runtime.registry.load("prod")
    stored = DeltaTable(str(runtime.offline_store.path(state.table_id("sums")))).to_pyarrow_table()
    runtime.close()
    markers = [
        t for u, t in zip(stored["user_id"].to_pylist(), stored["ts"].to_pylist(), strict=True) if u is None
    ]
    assert sorted(markers) == [datetime(2024, 1, d) for d in range(1, 6)]


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        (
            'features=[Aggregate("amount", "sum", "lifetime")], offline_retention="30d"',
            "offline_retention cannot apply to lifetime aggregates (amount_sum_lifetime)",
        ),
        (
            'features=[Aggregate("amount", "sum", "7d")], offline_retention="3d"',
            "offline_retention 3 days, 0:00:00 is shorter than the longest time_window",
        ),
    ],
)
def test_aggregate_retention_must_keep_what_current_values_need(tmp_path, declaration, message):
    views = f"""
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Aggregate, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
                        aggregation_interval=timedelta(hours=12), feature_start_time=datetime(2024, 1, 1),
                        {declaration})
    def sums(events):
        return f"SELECT user_id, ts, amount FROM {{events}}"
    """
    repo = events_repo(tmp_path, views)
    with pytest.raises(RepositoryError) as info:
        load_definitions(repo.runtime())
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1
    assert message in problems[0] and "views.py:6" in problems[0] and "sums" in problems[0]


@pytest.mark.parametrize(("value", "message"), [("-1d", "duration like"), ("0d", "must be positive")])
def test_a_bad_retention_names_the_view_and_its_line(tmp_path, value, message):
    views = f"""
    from datetime import datetime
    from base import events, user
    from featureplane import Attribute, Float64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), offline_retention="{value}")
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {{events}}"
    """
    repo = events_repo(tmp_path, views)
    with pytest.raises((RepositoryError, DefinitionError)) as info:
        load_definitions(repo.runtime())
    text = str(info.value)
    assert message in text and "offline_retention" in text and "views.py:6" in text


def test_maintenance_waits_for_a_run_writing_the_same_view(tmp_path):
    import threading

    from featureplane.materialization.materialize import view_lock
    from featureplane.util.locks import file_lock

    repo = events_repo(tmp_path, VIEWS, EVENTS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    materialize(runtime, state, "amounts", datetime(2024, 1, 1), datetime(2024, 1, 6))
    done: list = []
    view = state.feature_view("amounts")
    with file_lock(view_lock(runtime, state.table_id("amounts"))):  # as a materialization holds it
        worker = threading.Thread(target=lambda: done.append(maintain_view(runtime, state, view, now=NOW)))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and not done  # waiting, nothing deleted yet
        assert len(rows(runtime, state.table_id("amounts"), view)) == 20
    worker.join()
    assert done[0].rows_deleted == 12  # days 1-3 (before the cutoff, 2024-01-04)
    runtime.close()
