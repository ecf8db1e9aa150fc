"""Aggregate tile compaction: online, an entity's row holds only the tiles of its longest window, so
tile counts per key stay bounded by the windows however long the history; offline, ``offline_retention``
drops the tiles older than it (validation keeps it at least the longest window plus a partition). Lookups
and training rows inside the retention answer the same before and after, and rows whose tiles have
all left the windows are swept from the online store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from helpers import events_repo

from featureplane.compute.aggregation.online import OnlineRollup
from featureplane.materialization.maintenance import MaintenanceOptions, maintain_view
from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.retrieval.workspace import Workspace

pytestmark = pytest.mark.integration

D1 = datetime(2024, 1, 1)
DAYS = 30
INTERVAL = timedelta(hours=6)
LONGEST = timedelta(days=2)
RETENTION = timedelta(days=4)
USERS = ["u1", "u2", "u3", "early"]
VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Float64, batch_feature_view

    @batch_feature_view(
        sources=[events], entities=[user], mode="snowflake_sql", timestamp_field="ts",
        aggregation_interval=timedelta(hours=6), feature_start_time=datetime(2024, 1, 1), online=True,
        offline_retention="4d",
        features=[Aggregate(Field("amount", Float64), "sum", "2d"), Aggregate("amount", "count", "1d"),
                  Aggregate(Field("amount", Float64), "max", "12h"),
                  Aggregate(Field("amount", Float64), "stddev_pop", "2d")],
    )
    def spend(events):
        return f"SELECT user_id, ts, amount FROM {events}"
"""


def events_sql() -> str:
    """Events every 5 hours for 30 days; ``early`` stops after day 4."""
    rows = []
    moment = D1
    n = 0
    while moment < D1 + DAYS * timedelta(days=1):
        for i, user in enumerate(USERS):
            if user == "early" and moment >= D1 + timedelta(days=4):
                continue
            rows.append(
                f"('{user}', TIMESTAMP '{moment + timedelta(minutes=7 * i)}', {(n * 7 + i * 3) % 23 + 0.25})"
            )
        moment += timedelta(hours=5)
        n += 1
    return f"SELECT * FROM (VALUES {', '.join(rows)}) AS t(user_id, ts, amount)"


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def lookups(runtime, state, now: datetime) -> dict[str, list]:
    """What a lookup at ``now`` answers for each user (from the online store's rows)."""
    view, table_id = state.feature_view("spend"), state.table_id("spend")
    rows = runtime.online_store.read([(table_id, (u,)) for u in USERS])
    rollup = OnlineRollup(view)
    return {
        u: rollup.at(None if r is None else r.values, us(now))[1] for u, r in zip(USERS, rows, strict=True)
    }


def online_tiles(runtime, state) -> dict[str, int]:
    table_id = state.table_id("spend")
    rows = runtime.online_store.read([(table_id, (u,)) for u in USERS])
    return {u: len(r.values[-1]) for u, r in zip(USERS, rows, strict=True) if r is not None}


def offline_tiles(runtime, state) -> dict[str, int]:
    table = runtime.offline_store.read(state.table_id("spend"), state.feature_view("spend"))
    return pd.Series(table.column("user_id").to_pylist()).value_counts().to_dict()


def training(runtime, state, now: datetime) -> pd.DataFrame:
    """Training rows inside the retention that the windows can fill from retained tiles."""
    spine = pd.DataFrame(
        [{"user_id": u, "ts": now - timedelta(hours=h)} for u in USERS for h in (0, 5, 11, 24, 47)]
    )
    return Workspace(runtime, state).get_feature_view("spend").get_historical_features(spine)


def test_tile_counts_stay_bounded_and_values_do_not_change(tmp_path):
    repo = events_repo(tmp_path, VIEWS, {"raw.events": events_sql()})
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    bound = LONGEST // INTERVAL  # 8 tiles: the longest window
    most = 0
    for day in range(DAYS):  # a month of daily runs
        materialize(runtime, state, "spend", D1 + timedelta(days=day), D1 + timedelta(days=day + 1))
        counts = online_tiles(runtime, state)
        assert max(counts.values()) <= bound
        most = max(most, *counts.values())
    assert most == bound  # the bound is reached, never passed
    # Offline, the whole history is there until retention applies: ~4 tiles a day per user.
    history = offline_tiles(runtime, state)
    assert history["u1"] >= DAYS * 4 - 1

    now = D1 + timedelta(days=DAYS)
    looked_up, trained = lookups(runtime, state, now), training(runtime, state, now)
    report = maintain_view(
        runtime, state, state.feature_view("spend"), MaintenanceOptions(vacuum_retention_hours=0), now
    )
    kept = offline_tiles(runtime, state)
    assert max(kept.values()) <= RETENTION // INTERVAL  # bounded by the retention, not by history
    assert "early" not in kept  # its tiles are all older than the retention
    assert report.rows_deleted == sum(history.values()) - sum(kept.values())
    # Its online row's tiles have all left the windows: swept, and its lookup answers the same.
    assert report.online_rows_expired == 1
    assert set(online_tiles(runtime, state)) == {"u1", "u2", "u3"}
    assert lookups(runtime, state, now) == looked_up
    pd.testing.assert_frame_equal(training(runtime, state, now), trained)

    # A rerun of the last partition rolls up from the retained tiles: the same online values.
    materialize(runtime, state, "spend", now - timedelta(days=1), now)
    assert lookups(runtime, state, now) == looked_up
    assert max(online_tiles(runtime, state).values()) <= bound
    runtime.close()


def test_dynamodb_aggregate_rows_expire_when_their_tiles_leave_the_windows(tmp_path, dynalite, table_prefix):
    from aws_servers import use_dynamodb

    repo = events_repo(tmp_path, VIEWS, {"raw.events": events_sql()})
    use_dynamodb(repo.config_path, dynalite, table_prefix)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    state = runtime.registry.load("prod")
    end = D1 + timedelta(days=6)
    materialize(runtime, state, "spend", D1, end)
    online = runtime.online_store
    table_id = state.table_id("spend")
    item = online.client.get_item(
        TableName=online.table_name(table_id), Key={"pk": {"S": online.item_key(table_id, ("u1",))}}
    )["Item"]
    stamp = int(item["ts"]["N"]) // 1_000_000
    assert stamp == us(end) // 1_000_000  # the end of the latest materialized partition
    assert int(item["exp"]["N"]) == stamp + int(LONGEST.total_seconds())  # DynamoDB's TTL drops it then
    assert max(online_tiles(runtime, state).values()) <= LONGEST // INTERVAL
    # One run wrote every row at day 6: a sweep one longest window later removes them all (not a
    # second earlier), and lookups answer the same.
    later = end + LONGEST
    before = lookups(runtime, state, later)
    assert online.sweep_expired(table_id, LONGEST, later - timedelta(seconds=1)) == 0  # not yet
    assert online.sweep_expired(table_id, LONGEST, later) == len(USERS)
    assert lookups(runtime, state, later) == before
    runtime.close()
