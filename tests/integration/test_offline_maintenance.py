"""Offline maintenance through the real Dagster job ``offline_maintenance_<workspace>``: after many
small commits it compacts each view's Delta table, vacuums the replaced files, enforces
``offline_retention`` and sweeps expired online rows, reporting files and bytes before/after as asset
observations; training sets within the retention and lookups answer as before, and the next
materialization's online update stays incremental."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import pandas as pd
import pytest
from helpers import events_repo
from test_monitoring import Dagster

from featureplane.offline_stores.base import TableStats

pytestmark = pytest.mark.integration

D1 = datetime(2024, 1, 1)
DAYS = 12
AS_OF = D1 + timedelta(days=DAYS)  # the job measures retention and expiry from here
VIEWS = """
    from datetime import datetime
    from base import events, user
    from featureplane import Attribute, FeatureService, Float64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True, ttl="4d",
                        offline_retention="6d")
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1))
    def history(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    svc = FeatureService(name="svc", features=[amounts, history])
"""


def events_sql() -> str:
    """Every user has events on days 0-11, except ``gone`` (days 0-3 only) and ``quiet`` (0-6)."""
    rows = []
    for day in range(DAYS):
        for n, user in enumerate(["u1", "u2", "u3", "gone", "quiet"]):
            if (user == "gone" and day > 3) or (user == "quiet" and day > 6):
                continue
            for hour in (3, 15):
                ts = D1 + timedelta(days=day, hours=hour, minutes=n)
                rows.append(f"('{user}', TIMESTAMP '{ts}', {day * 10 + n + hour / 100})")
    return f"SELECT * FROM (VALUES {', '.join(rows)}) AS t(user_id, ts, amount)"


@pytest.fixture
def applied(tmp_path, dagster_home):
    repo = events_repo(tmp_path, VIEWS, {"raw.events": events_sql()})
    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")
    return repo, Dagster(repo, dagster_home)


@pytest.fixture
def maintained(applied):
    repo, dagster = applied
    for day in range(DAYS):  # one run, one small commit per view per day
        partition = (D1 + timedelta(days=day)).strftime("%Y-%m-%d")
        for view in ("amounts", "history"):
            assert dagster.materialize(dg.AssetKey(["prod", view]), partition).success
    return repo, dagster


def stats(repo, view: str) -> TableStats:
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    found = runtime.offline_store.table_stats(state.table_id(view))
    runtime.close()
    assert found is not None
    return found


def offline_rows(repo, view: str) -> list[tuple]:
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    table = runtime.offline_store.read(state.table_id(view), state.feature_view(view))
    runtime.close()
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def training(repo) -> pd.DataFrame:
    """Spine rows inside the retention (after its cutoff plus the ttl), for every user."""
    from featureplane.retrieval.workspace import Workspace

    spine = pd.DataFrame(
        [
            {"user_id": u, "ts": AS_OF - timedelta(hours=h)}
            for u in ["u1", "u2", "u3", "gone", "quiet", "nobody"]
            for h in (1, 13, 30, 47)
        ]
    )
    runtime = repo.runtime()
    try:
        workspace = Workspace(runtime, runtime.registry.load("prod"))
        return workspace.get_feature_service("svc").get_historical_features(spine)
    finally:
        runtime.close()


def online_keys(repo, view: str) -> set[str]:
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    con = runtime.online_store._con()
    keys = {
        r[0]
        for r in con.execute(
            "SELECT entity_key FROM online_features WHERE table_id = ?", (state.table_id(view),)
        )
    }
    runtime.close()
    return keys


def run_maintenance(dagster, **config):
    config = {"as_of": AS_OF.isoformat(), "vacuum_retention_hours": 0, **config}
    return dagster.defs.resolve_job_def("offline_maintenance_prod").execute_in_process(
        instance=dagster.instance, run_config={"ops": {"maintain_prod": {"config": config}}}
    )


def test_the_job_compacts_vacuums_enforces_retention_and_reports_observations(maintained):
    repo, dagster = maintained
    before = {v: stats(repo, v) for v in ("amounts", "history")}
    assert before["amounts"].files >= DAYS and before["history"].files >= DAYS  # a file per commit
    amounts_before, history_before = offline_rows(repo, "amounts"), offline_rows(repo, "history")
    trained_before = training(repo)
    assert online_keys(repo, "amounts") == {'["u1"]', '["u2"]', '["u3"]', '["gone"]', '["quiet"]'}

    # A dry run changes nothing and says what vacuum would delete (nothing yet: no file is unused).
    dry = run_maintenance(dagster, dry_run=True)
    assert dry.success
    assert offline_rows(repo, "amounts") == amounts_before
    assert {v: stats(repo, v) for v in ("amounts", "history")} == before

    result = run_maintenance(dagster)
    assert result.success
    observed = {
        tuple(e.asset_key.path): e.event_specific_data.asset_observation.metadata
        for e in result.get_asset_observation_events()
    }
    assert set(observed) == {("prod", "amounts"), ("prod", "history")}
    for view in ("amounts", "history"):
        meta = {k: v.value for k, v in observed[("prod", view)].items()}
        after = stats(repo, view)
        assert meta["files_before"] == before[view].files and meta["bytes_before"] == before[view].bytes
        assert meta["files_after"] == after.files and meta["bytes_after"] == after.bytes
        assert after.files < before[view].files / 2  # a file or so per partition bucket
        assert meta["vacuumed_files"] >= before[view].files  # the small files, now unused, are gone
        assert meta["dry_run"] is False

    # history has no retention: every row is kept, unchanged.
    assert offline_rows(repo, "history") == history_before
    # amounts keeps 6 days: rows before the cutoff are deleted, the others are unchanged.
    cutoff = AS_OF - timedelta(days=6)
    assert offline_rows(repo, "amounts") == [r for r in amounts_before if r[1] >= cutoff]
    amounts_meta = {k: v.value for k, v in observed[("prod", "amounts")].items()}
    assert amounts_meta["offline_rows_deleted"] == len(amounts_before) - len(offline_rows(repo, "amounts"))
    # Online: rows older than the ttl (4 days: 'gone' and 'quiet') are swept; lookups answer the same.
    assert online_keys(repo, "amounts") == {'["u1"]', '["u2"]', '["u3"]'}
    assert amounts_meta["online_rows_expired"] == 2
    pd.testing.assert_frame_equal(training(repo), trained_before)

    # The online store still matches the offline table: the next run's update is incremental.
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    table_id = state.table_id("amounts")
    assert runtime.online_store.sync_marker(table_id) == runtime.offline_store.version(table_id)
    runtime.close()
    materialized = dagster.materialize(dg.AssetKey(["prod", "amounts"]), "2024-01-12")
    assert materialized.success
    logs = "\n".join(e.message for e in dagster.instance.all_logs(materialized.run_id) if e.message)
    assert "online store updated (changed keys)" in logs


def test_the_job_and_its_daily_schedule_are_defined_per_live_workspace(applied):
    _, dagster = applied
    job = dagster.defs.resolve_job_def("offline_maintenance_prod")
    assert job.tags.get("featureplane/kind") == "maintenance"
    schedule = dagster.defs.resolve_schedule_def("offline_maintenance_prod_daily")
    assert schedule.cron_schedule == "0 3 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    bad = dagster.defs.resolve_job_def("offline_maintenance_prod").execute_in_process(
        instance=dagster.instance,
        run_config={"ops": {"maintain_prod": {"config": {"as_of": "yesterday"}}}},
        raise_on_error=False,
    )
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    assert "as_of must be an ISO-8601 time" in str(failure.event_specific_data.error)
