"""The example repository on DynamoDB: `featureplane apply` creates the table and exports the serving
snapshot, the real Dagster CLI materializes into DynamoDB, and `featureplane serve` answers over HTTP
from the snapshot and DynamoDB, one BatchGetItem per lookup."""

from __future__ import annotations

import json

import pytest
from aws_servers import FaultProxy, use_dynamodb
from conftest import post_json, run_dagster

from featureplane.online_stores.base import encode_key

pytestmark = pytest.mark.integration

GET_FEATURES = "/api/v1/feature-service/get-features"


def latest_offline(runtime, state, view: str) -> dict[str, tuple]:
    table = runtime.offline_store.read(state.table_id(view), state.feature_view(view))
    rows = sorted(
        zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True), key=lambda r: r[1]
    )
    return {row[0]: row for row in rows}


def test_example_applied_materialized_by_dagster_and_served_from_dynamodb(
    example_repo, dynalite, table_prefix, dagster_home, lookup_server
):
    repo = example_repo
    proxy = FaultProxy(dynalite)  # no faults: it counts the calls the lookup service makes
    try:
        use_dynamodb(repo.config_path, proxy.url, table_prefix, snapshot=".featureplane/serving.json")
        repo.cli("workspace", "create", "prod", "--live")
        out = repo.cli("apply", "--yes")
        assert "Applied" in out.stdout
        document = json.loads((repo.root / ".featureplane" / "serving.json").read_text())
        assert document["workspaces"]["prod"]["version"] == 1
        assert proxy.calls["CreateTable"] == 1

        run_dagster(
            [
                "asset", "materialize", "-m", "dagster_project",
                "--select", "prod/user_daily_spend,prod/user_profile",
                "--partition-range", "2026-10-22...2026-10-31",
            ],
            repo,
            dagster_home,
        )  # fmt: skip
        assert proxy.calls["BatchWriteItem"] > 0

        # Online equals offline: DynamoDB holds exactly the latest offline row per user.
        runtime = repo.runtime()
        state = runtime.registry.load("prod")
        for view in ("user_daily_spend", "user_profile"):
            latest = latest_offline(runtime, state, view)
            online = runtime.online_store.table_items(state.table_id(view))
            assert set(online) == {encode_key((user,)) for user in latest}
            for user, row in latest.items():
                assert online[encode_key((user,))].values == [
                    v.isoformat() + "Z" if hasattr(v, "isoformat") else v for v in row[2:]
                ]
        profile = latest_offline(runtime, state, "user_profile")
        runtime.close()

        server = lookup_server(repo)
        proxy.calls.clear()
        status, body = post_json(
            server.url + GET_FEATURES,
            {
                "params": {
                    "workspaceName": "prod",
                    "featureServiceName": "fraud_detection",
                    "joinKeyMap": {"user_id": "user_3"},
                    "requestContextMap": {"amount": 250.0},
                    "metadataOptions": {"includeNames": True, "includeServingStatus": True},
                }
            },
        )
        assert status == 200, body
        assert proxy.calls == {"BatchGetItem": 1}  # every stored view of the service in one round trip
        answer = {
            m["name"]: (v, m["status"])
            for v, m in zip(body["result"]["features"], body["metadata"]["features"], strict=True)
        }
        assert [answer[f"user_profile.{f}"][0] for f in ("age", "country", "credit_limit")] == [
            str(profile["user_3"][2]), profile["user_3"][3], profile["user_3"][4],
        ]  # fmt: skip
        assert {answer[f"user_profile.{f}"][1] for f in ("age", "country", "credit_limit")} == {"PRESENT"}
        # The daily spend rows are from 2026-10 and their ttl is one day: expired, so MISSING_DATA.
        assert {s for n, (_, s) in answer.items() if n.startswith("user_daily_spend.")} == {"MISSING_DATA"}

        status, body = post_json(
            server.url + GET_FEATURES,
            {
                "params": {
                    "workspaceName": "staging",
                    "featureServiceName": "x",
                    "joinKeyMap": {"user_id": "u"},
                }
            },
        )
        assert status == 404 and "staging" in body["message"]
    finally:
        proxy.stop()
