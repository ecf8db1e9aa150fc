"""The whole path on the embedded defaults: apply the example repository, materialize it through the
real Dagster CLI, query the real HTTP server on 127.0.0.1, and build a training set."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from conftest import post_json, run_dagster

pytestmark = pytest.mark.integration

GET_FEATURES = "/api/v1/feature-service/get-features"


def offline_snapshot(repo, view: str) -> list[tuple]:
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    table = runtime.offline_store.read(state.table_id(view), state.feature_view(view))
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def test_dagster_cli_partition_and_range_then_serve_and_train(applied_example, dagster_home, lookup_server):
    repo = applied_example
    # One partition through the real CLI.
    out = run_dagster(
        [
            "asset",
            "materialize",
            "-m",
            "dagster_project",
            "--select",
            "prod/user_daily_spend",
            "--partition",
            "2026-10-25",
        ],
        repo,
        dagster_home,
    )
    assert "RUN_SUCCESS" in out.stderr + out.stdout
    one_day = offline_snapshot(repo, "user_daily_spend")
    assert one_day and {r[1].date().isoformat() for r in one_day} == {"2026-10-25"}

    # A range of partitions as one run (backfill policy: single run), for both views.
    out = run_dagster(
        [
            "asset",
            "materialize",
            "-m",
            "dagster_project",
            "--select",
            "prod/user_daily_spend,prod/user_profile",
            "--partition-range",
            "2026-08-01...2026-10-31",
        ],
        repo,
        dagster_home,
    )
    log = out.stderr + out.stdout
    assert log.count("RUN_SUCCESS") == 1
    assert "for 92 partition(s)" in log
    full = offline_snapshot(repo, "user_daily_spend")
    assert len({r[1].date() for r in full}) == 10  # the ten days of data

    # Rerunning a partition changes nothing.
    run_dagster(
        [
            "asset",
            "materialize",
            "-m",
            "dagster_project",
            "--select",
            "prod/user_daily_spend",
            "--partition",
            "2026-10-25",
        ],
        repo,
        dagster_home,
    )
    assert offline_snapshot(repo, "user_daily_spend") == full

    # The lookup API over HTTP.
    server = lookup_server(repo)
    profile = {r[0]: r for r in offline_snapshot(repo, "user_profile")}
    status, body = post_json(
        server.url + GET_FEATURES,
        {
            "params": {
                "workspaceName": "prod",
                "featureServiceName": "fraud_detection",
                "joinKeyMap": {"user_id": "user_3"},
                "requestContextMap": {"amount": 42.5},
                "metadataOptions": {"includeNames": True, "includeServingStatus": True},
            }
        },
    )
    assert status == 200
    names = [m["name"] for m in body["metadata"]["features"]]
    assert names[5:8] == ["user_profile.age", "user_profile.country", "user_profile.credit_limit"]
    values = body["result"]["features"]
    assert values[5:8] == [str(profile["user_3"][2]), profile["user_3"][3], profile["user_3"][4]]
    # The daily spend rows are from 2026-10 and their ttl is one day: expired by now. The aggregates
    # (not materialized here) are empty windows and the realtime view is computed: both present.
    statuses = [m["status"] for m in body["metadata"]["features"]]
    assert statuses[:5] == ["MISSING_DATA"] * 5 and set(statuses[5:]) == {"PRESENT"}

    status, body = post_json(
        server.url + GET_FEATURES,
        {"params": {"workspaceName": "prod", "featureServiceName": "fraud_detection", "joinKeyMap": {}}},
    )
    assert status == 400 and "user_id" in body["message"]
    status, body = post_json(
        server.url + GET_FEATURES,
        {
            "params": {
                "workspaceName": "staging",
                "featureServiceName": "fraud_detection",
                "joinKeyMap": {"user_id": "u"},
            }
        },
    )
    assert status == 404 and "staging" in body["message"]

    # A point-in-time training set from the same data.
    import featureplane

    service = featureplane.get_workspace("prod", config=repo.config_path).get_feature_service(
        "fraud_detection"
    )
    day = next(r for r in full if r[0] == "user_3")
    spine = pd.DataFrame(
        {
            "user_id": ["user_3", "user_3"],
            "ts": [day[1], day[1] - pd.Timedelta(microseconds=1)],
            "amount": [42.5, 42.5],  # the realtime view's request field
        }
    )
    training = service.get_historical_features(spine, timestamp_key="ts")
    assert training["user_daily_spend__spend"].iloc[0] == pytest.approx(day[2])
    assert training["user_daily_spend__spend"].iloc[1] != training["user_daily_spend__spend"].iloc[0]


def test_code_location_builds_assets_for_live_and_development_workspaces(applied_example):
    import dagster as dg

    from dagster_project.definitions import build_definitions

    repo = applied_example
    repo.cli("workspace", "create", "dev")
    repo.cli("apply", "--yes", "--workspace", "dev")
    defs = build_definitions(repo.config())
    graph = defs.resolve_asset_graph()
    live = graph.get(dg.AssetKey(["prod", "user_daily_spend"]))
    dev = graph.get(dg.AssetKey(["dev", "user_daily_spend"]))
    service = graph.get(dg.AssetKey(["prod", "fraud_detection"]))
    assert live.is_materializable and live.partitions_def is not None
    assert live.partitions_def.get_partition_keys(datetime(2026, 8, 4))[:3] == [
        "2026-08-01",
        "2026-08-02",
        "2026-08-03",
    ]
    assert live.backfill_policy == dg.BackfillPolicy.single_run()
    assert dg.AssetKey(["raw", "transactions"]) in live.parent_keys
    assert not dev.is_materializable
    assert set(service.parent_keys) == {
        dg.AssetKey(["prod", "user_daily_spend"]),
        dg.AssetKey(["prod", "user_profile"]),
        dg.AssetKey(["prod", "user_transaction_metrics"]),
        dg.AssetKey(["prod", "transaction_amount_vs_history"]),
        dg.AssetKey(["prod", "user_transaction_counts_5m"]),
    }
    # The realtime view is computed per request: visible with lineage, never materialized.
    realtime = graph.get(dg.AssetKey(["prod", "transaction_amount_vs_history"]))
    assert not realtime.is_materializable
    assert set(realtime.parent_keys) == {dg.AssetKey(["prod", "user_transaction_metrics"])}
    # The stream view's history is a partitioned asset too, launched as a backfill (no schedule below).
    stream = graph.get(dg.AssetKey(["prod", "user_transaction_counts_5m"]))
    assert stream.is_materializable and stream.partitions_def == live.partitions_def
    assert dg.AssetKey(["raw", "transactions"]) in stream.parent_keys
    assert live.metadata["owner"] == "fraud-team@example.com"
    assert sorted(s.name for s in defs.schedules) == [
        "offline_maintenance_prod_daily",
        "prod__daily__from_2026_08_01_schedule",
        "prod__freshness_checks_schedule",
        "prod__serving_drift__from_2026_08_01_daily",
    ]
