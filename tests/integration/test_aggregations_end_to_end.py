"""The example's aggregate and realtime views on the real path: a range of partitions through the Dagster
CLI in one run, the lookup API over HTTP with a request context, the same values in a training set at
the moment of the request (docs/aggregations.md), and a failing realtime function answered with a JSON
500 while the server keeps serving."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from conftest import SMALL_DAYS, generate_small_data, post_json, run_dagster

pytestmark = pytest.mark.integration

GET_FEATURES = "/api/v1/feature-service/get-features"

FRAGILE = """
from feature_views.transactions import user_transaction_metrics
from featureplane import Attribute, FeatureService, Field, Float64, RequestSource, realtime_feature_view


@realtime_feature_view(
    sources=[RequestSource(schema=[Field("amount", Float64)]), user_transaction_metrics],
    features=[Attribute("share_of_month", Float64)],
)
def share_of_month(request, user_transaction_metrics):
    return {"share_of_month": request["amount"] / user_transaction_metrics["amount_sum_30d"]}


fragile = FeatureService(name="fragile", features=[share_of_month])
"""


def get_features(server, service: str, user: str, amount, **options) -> tuple[int, dict]:
    return post_json(
        server.url + GET_FEATURES,
        {
            "params": {
                "workspaceName": "prod",
                "featureServiceName": service,
                "joinKeyMap": {"user_id": user},
                "requestContextMap": {"amount": amount},
                "metadataOptions": {"includeNames": True, **options},
            }
        },
    )


def test_aggregates_and_realtime_views_served_over_http_match_the_training_set(
    applied_example, dagster_home, lookup_server
):
    repo = applied_example
    # Data that ends today, backfilled through yesterday, as a scheduler would have: the lookup (at
    # the real time of the request) then finds every window partly filled.
    today = datetime.now(UTC).date()
    generate_small_data(repo, end=today)
    first, last = today - timedelta(days=SMALL_DAYS), today - timedelta(days=1)
    out = run_dagster(
        [
            "asset",
            "materialize",
            "-m",
            "dagster_project",
            "--select",
            "prod/user_transaction_metrics",
            "--partition-range",
            f"{first}...{last}",
        ],
        repo,
        dagster_home,
    )
    log = out.stderr + out.stdout
    assert log.count("RUN_SUCCESS") == 1 and f"for {SMALL_DAYS} partition(s)" in log

    server = lookup_server(repo)
    users = ["user_3", "user_42", "nobody"]
    while True:  # all requests within one aggregation interval (an hour), so one instant answers them
        before = datetime.now(UTC).replace(tzinfo=None)
        answers = {}
        for user in users:
            status, body = get_features(server, "fraud_detection", user, 250.0, includeSloInfo=True)
            assert status == 200, body
            answers[user] = dict(
                zip(
                    [m["name"] for m in body["metadata"]["features"]], body["result"]["features"], strict=True
                )
            )
            assert body["metadata"]["sloInfo"]["realtimeComputeSeconds"] >= 0
        after = datetime.now(UTC).replace(tzinfo=None)
        if before.replace(minute=0, second=0, microsecond=0) == after.replace(
            minute=0, second=0, microsecond=0
        ):
            break

    import featureplane

    service = featureplane.get_workspace("prod", config=repo.config_path).get_feature_service(
        "fraud_detection"
    )
    spine = pd.DataFrame({"user_id": users, "ts": [pd.Timestamp(after)] * 3, "amount": [250.0] * 3})
    training = service.get_historical_features(spine, timestamp_key="ts")
    compared = [
        "user_transaction_metrics.amount_count_1h",
        "user_transaction_metrics.amount_count_7d",
        "user_transaction_metrics.amount_sum_30d",
        "user_transaction_metrics.amount_mean_30d",
        "user_transaction_metrics.amount_stddev_samp_30d",
        "transaction_amount_vs_history.amount_vs_30d_mean",
        "transaction_amount_vs_history.amount_zscore_30d",
        "transaction_amount_vs_history.is_unusually_large",
    ]
    for i, user in enumerate(users):
        row = training.iloc[i]
        for name in compared:
            online = answers[user][name]
            offline = row[name.replace(".", "__")]
            if offline is None or (isinstance(offline, float) and pd.isna(offline)):
                assert online is None, (user, name, online)
            elif "count" in name:
                assert online == str(offline), (user, name)
            elif isinstance(online, float):
                assert online == pytest.approx(float(offline), rel=1e-12), (user, name)
            else:
                assert online == offline, (user, name)
    assert int(answers["user_3"]["user_transaction_metrics.amount_count_30d"]) > 0
    assert int(answers["user_3"]["user_transaction_metrics.amount_count_7d"]) > 0
    # Today's partition has not ended: the last hour's window is empty, online and offline alike.
    assert answers["user_3"]["user_transaction_metrics.amount_count_1h"] == "0"
    assert answers["nobody"]["user_transaction_metrics.amount_count_30d"] == "0"

    # A realtime function that fails answers a JSON 500 naming the view; the server keeps serving.
    (repo.root / "fragile.py").write_text(FRAGILE)
    repo.cli("apply", "--yes")
    deadline = time.monotonic() + 30
    while (status := get_features(server, "fragile", "user_3", 10.0)[0]) == 404:
        assert time.monotonic() < deadline, "the new service was not picked up"
        time.sleep(0.2)
    assert status == 200
    status, body = get_features(server, "fragile", "nobody", 10.0)  # 30-day sum 0: division by zero
    assert status == 500
    assert body["message"].startswith("realtime feature view 'share_of_month' failed: ZeroDivisionError")
    status, body = get_features(server, "fragile", "user_3", "ten")
    assert status == 400 and "requestContextMap.amount must be a float64" in body["message"]
    assert get_features(server, "fraud_detection", "user_3", 250.0)[0] == 200
