"""Online equals offline on DynamoDB: after random sequences of partition runs, reruns, out-of-order
backfills and source corrections, the DynamoDB table holds exactly the latest offline row per key; and
ttl is enforced on reads (rows older than the view's ttl are MISSING_DATA while still stored)."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta

import pytest
from aws_servers import use_dynamodb
from helpers import events_repo, make_warehouse

from featureplane.materialization.materialize import materialize
from featureplane.online_stores.base import OnlineRow, encode_key
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.serving.protocol import Request
from featureplane.serving.service import LookupService
from featureplane.serving.snapshot import SnapshotCache

pytestmark = pytest.mark.integration

VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Attribute, Float64, Int64, FeatureService, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64), Attribute("n", Int64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), batch_schedule=timedelta(days=1), online=True,
                        ttl=timedelta(days=2))
    def amounts(events):
        return f"SELECT user_id, ts, amount, 1 AS n FROM {events}"

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("recent", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True, ttl=timedelta(hours=1))
    def recent(events):
        return f"SELECT user_id, ts, amount AS recent FROM {events}"

    svc = FeatureService(name="svc", features=[amounts, recent])
"""
D1 = datetime(2024, 1, 1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1)


def events_sql(rows: list[tuple[str, datetime, float]]) -> dict[str, str]:
    values = ", ".join(f"('{u}', TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}', {a})" for u, t, a in rows)
    return {"raw.events": f"SELECT * FROM (VALUES {values}) AS t(user_id, ts, amount)"}


def random_events(rng: random.Random) -> list[tuple[str, datetime, float]]:
    return [
        (
            f"u{rng.randrange(8)}",
            D1 + timedelta(minutes=rng.randrange(4 * 24 * 60)),
            float(rng.randrange(100)),
        )
        for _ in range(rng.randrange(1, 25))
    ]


@pytest.fixture
def dynamo_repo(tmp_path, dynalite, table_prefix):
    repo = events_repo(tmp_path, VIEWS, tables=events_sql([("u0", D1, 1.0)]))
    use_dynamodb(repo.config_path, dynalite, table_prefix)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    yield repo, runtime, runtime.registry.load("prod")
    runtime.close()


def assert_online_equals_offline(runtime, state, view: str = "amounts") -> None:
    spec = state.feature_view(view)
    table = runtime.offline_store.read(state.table_id(view), spec)
    latest: dict[str, tuple] = {}
    for row in sorted(
        zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True), key=lambda r: r[1]
    ):
        latest[encode_key((row[0],))] = row
    online = runtime.online_store.table_items(state.table_id(view))
    assert set(online) == set(latest)
    for key, row in latest.items():
        assert online[key].event_ts == int((row[1] - EPOCH).total_seconds() * 1_000_000), key
        assert online[key].values == list(row[2:]), key


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_online_equals_offline_after_random_runs_reruns_and_corrections(dynamo_repo, seed):
    repo, runtime, state = dynamo_repo
    rng = random.Random(seed)
    runtime.close()
    make_warehouse(repo, events_sql(random_events(rng)))
    for _ in range(6):
        if rng.random() < 0.3:  # the source is corrected: rows change, appear and disappear
            runtime.close()
            make_warehouse(repo, events_sql(random_events(rng)))
        first = rng.randrange(4)
        last = rng.randrange(first, 4)
        materialize(runtime, state, "amounts", D1 + first * DAY, D1 + (last + 1) * DAY)
        assert_online_equals_offline(runtime, state)


def test_expired_rows_are_missing_data_although_still_stored(dynamo_repo, table_prefix):
    _, runtime, state = dynamo_repo
    now_s = int(time.time())
    table_id = state.table_id("recent")
    store = runtime.online_store
    store.write(
        table_id,
        [
            OnlineRow(("fresh",), (now_s - 600) * 1_000_000, [1.5]),
            OnlineRow(("stale",), (now_s - 7200) * 1_000_000, [2.5]),
        ],
        ttl_seconds=3600,
    )
    item = store.client.get_item(TableName=table_prefix + "prod", Key={"pk": {"S": f'{table_id}|["stale"]'}})[
        "Item"
    ]
    assert int(item["exp"]["N"]) == now_s - 7200 + 3600  # DynamoDB may delete it from now on
    service = LookupService(SnapshotCache(runtime.registry, 0), store)
    statuses = {}
    for user in ("fresh", "stale"):
        body = service.handle(
            Request(
                "POST",
                "/api/v1/feature-service/get-features",
                {},
                (
                    '{"params": {"workspaceName": "prod", "featureServiceName": "svc", '
                    f'"joinKeyMap": {{"user_id": "{user}"}}, '
                    '"metadataOptions": {"includeServingStatus": true}}}'
                ).encode(),
            )
        ).json()
        statuses[user] = (body["result"]["features"][-1], body["metadata"]["features"][-1]["status"])
    assert statuses == {"fresh": (1.5, "PRESENT"), "stale": (None, "MISSING_DATA")}
    assert store.read([(table_id, ("stale",))])[0].values == [2.5]  # still stored, never served
