"""The lookup core in Tecton's HTTP API v1 shape, and the Lambda handler over the same core."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from datetime import datetime

import pytest
from helpers import events_repo

from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.serving.aws_lambda import parse_event, to_event_response
from featureplane.serving.protocol import Request
from featureplane.serving.service import LookupService
from featureplane.serving.snapshot import SnapshotCache

VIEWS = """
    from datetime import datetime, timedelta
    from base import events, user
    from featureplane import Array, Attribute, Bool, Float64, Int64, String, Timestamp, FeatureService, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64), Attribute("n", Int64), Attribute("flag", Bool),
                                  Attribute("label", String), Attribute("seen", Timestamp), Attribute("xs", Array(Int64))],
                        timestamp_field="ts", feature_start_time=datetime(2024, 1, 1), online=True)
    def stats(events):
        return f"SELECT user_id, ts, amount, 3 AS n, amount > 2 AS flag, 'x' AS label, ts AS seen, [1, 2] AS xs FROM {events}"

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("recent", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True, ttl=timedelta(days=1))
    def short_lived(events):
        return f"SELECT user_id, ts, amount AS recent FROM {events}"

    svc = FeatureService(name="svc", features=[stats[["amount", "n", "flag", "label", "seen", "xs"]], short_lived])
"""
OPTIONS = {
    k: True for k in ("includeNames", "includeDataTypes", "includeEffectiveTimes", "includeServingStatus")
}


@pytest.fixture
def service(tmp_path) -> LookupService:
    repo = events_repo(tmp_path, VIEWS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    runtime.registry.create_workspace("dev", live=False)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    apply_plan(runtime, plan_repository(runtime, "dev"))
    from featureplane.materialization.materialize import materialize

    state = runtime.registry.load("prod")
    for view in ("stats", "short_lived"):
        materialize(runtime, state, view, datetime(2024, 1, 1), datetime(2024, 1, 3))
    return LookupService(SnapshotCache(runtime.registry, 0), runtime.online_store)


def call(
    service: LookupService,
    path: str,
    params: dict | None = None,
    method: str = "POST",
    body: bytes | None = None,
):
    payload = body if body is not None else json.dumps({"params": params}).encode()
    response = service.handle(Request(method, path, {}, payload))
    return response.status, response.json()


def test_get_features_answers_in_tecton_shape(service):
    status, body = call(
        service,
        "/api/v1/feature-service/get-features",
        {
            "workspaceName": "prod",
            "featureServiceName": "svc",
            "joinKeyMap": {"user_id": "u1"},
            "metadataOptions": OPTIONS,
        },
    )
    assert status == 200
    # int64 values are strings; arrays of int64 too; timestamps ISO-8601 in UTC.
    assert body["result"]["features"] == [7.0, "3", True, "x", "2024-01-02T11:00:00Z", ["1", "2"], None]
    meta = body["metadata"]["features"]
    assert [m["name"] for m in meta] == [
        "stats.amount",
        "stats.n",
        "stats.flag",
        "stats.label",
        "stats.seen",
        "stats.xs",
        "short_lived.recent",
    ]
    assert meta[1]["dataType"] == {"type": "int64"}
    assert meta[5]["dataType"] == {"type": "array", "elementType": {"type": "int64"}}
    assert meta[0]["status"] == "PRESENT" and meta[0]["effectiveTime"] == "2024-01-02T11:00:00Z"
    # The short-lived view's row is older than its ttl: MISSING_DATA even though it is stored.
    assert meta[6]["status"] == "MISSING_DATA" and "effectiveTime" not in meta[6]


def test_snake_case_keys_and_no_metadata(service):
    status, body = call(
        service,
        "/api/v1/feature-service/get-features",
        {"workspace_name": "prod", "feature_service_name": "svc", "join_key_map": {"user_id": "nobody"}},
    )
    assert status == 200
    assert body == {"result": {"features": [None] * 7}}


def test_slo_info_is_reported_when_asked(service):
    _, body = call(
        service,
        "/api/v1/feature-service/get-features",
        {
            "workspaceName": "prod",
            "featureServiceName": "svc",
            "joinKeyMap": {"user_id": "u1"},
            "metadataOptions": {"includeSloInfo": True},
        },
    )
    slo = body["metadata"]["sloInfo"]
    assert slo["sloEligible"] is True and slo["serverTimeSeconds"] >= slo["storeMaxLatency"] >= 0


def test_metadata_endpoint(service):
    status, body = call(
        service, "/api/v1/feature-service/metadata", {"workspaceName": "prod", "featureServiceName": "svc"}
    )
    assert status == 200
    assert body["inputJoinKeys"] == [{"name": "user_id", "dataType": {"type": "string"}}]
    assert body["featureValues"][0] == {"name": "stats.amount", "dataType": {"type": "float64"}}
    assert len(body["featureValues"]) == 7


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        (
            {"workspaceName": "nope", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}},
            404,
            "workspace 'nope' not found",
        ),
        (
            {"workspaceName": "dev", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}},
            404,
            "development workspace",
        ),
        (
            {"workspaceName": "prod", "featureServiceName": "nope", "joinKeyMap": {"user_id": "u1"}},
            404,
            "services: svc",
        ),
        (
            {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {}},
            400,
            "missing join key(s) user_id",
        ),
        (
            {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": 5}},
            400,
            "must be a string",
        ),
        (
            {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"uid": "u1"}},
            400,
            "unknown join key(s) uid",
        ),
        ({"workspaceName": "prod", "featureServiceName": "svc"}, 400, "joinKeyMap is required"),
        ({"featureServiceName": "svc"}, 400, "workspaceName is required"),
    ],
)
def test_bad_requests_get_clear_errors(service, params, status, fragment):
    got, body = call(service, "/api/v1/feature-service/get-features", params)
    assert got == status
    assert fragment in body["message"] and body["error"] == body["message"]


def test_malformed_bodies_and_routes(service):
    assert call(service, "/api/v1/feature-service/get-features", body=b"{nope")[0] == 400
    assert call(service, "/api/v1/feature-service/get-features", body=b"[1]")[0] == 400
    assert call(service, "/api/v1/feature-service/get-features", body=b"")[0] == 400
    assert call(service, "/api/v1/nothing", {})[0] == 404
    assert call(service, "/api/v1/feature-service/get-features", {}, method="GET")[0] == 405
    assert call(service, "/healthz", method="GET", body=b"") == (
        200,
        {"status": "ok", "workspaces": ["prod"]},
    )
    big = b'{"params": {"x": "' + b"a" * 2_000_000 + b'"}}'
    assert call(service, "/api/v1/feature-service/get-features", body=big)[0] == 413


GET = "/api/v1/feature-service/get-features"
COMMON = {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}


@pytest.mark.parametrize(
    ("body", "fast"),
    [
        ({"params": COMMON}, True),
        ({"params": {**COMMON, "joinKeyMap": {"user_id": "nobody"}}}, True),
        ({"params": {**COMMON, "allowPartialResults": False}}, True),
        ({"params": {**COMMON, "allowPartialResults": "no"}}, False),
        ({"params": {**COMMON, "metadataOptions": OPTIONS}}, False),
        ({"params": {**COMMON, "metadataOptions": None}}, False),
        ({"params": {**COMMON, "requestContextMap": {}}}, False),
        ({"params": {**COMMON, "joinKeyMap": {"user_id": 5}}}, False),
        ({"params": {**COMMON, "joinKeyMap": {"user_id": "u1", "other": "x"}}}, False),
        ({"params": {**COMMON, "joinKeyMap": {}}}, False),
        ({"params": {**COMMON, "joinKeyMap": ["u1"]}}, False),
        ({"params": {**COMMON, "featureServiceName": "nope"}}, False),
        ({"params": {**COMMON, "featureServiceName": ["svc"]}}, False),
        ({"params": {**COMMON, "workspaceName": "dev"}}, False),
        (
            {
                "params": {
                    "workspace_name": "prod",
                    "feature_service_name": "svc",
                    "join_key_map": {"user_id": "u1"},
                }
            },
            False,
        ),
        ({"params": [COMMON]}, False),
        ({"params": COMMON, "extra": 1}, True),
        (b"[not json", False),
    ],
)
def test_the_common_call_takes_a_fast_path_that_answers_what_the_general_path_does(service, body, fast):
    request = Request("POST", GET, {}, body if isinstance(body, bytes) else json.dumps(body).encode())
    service.handle(Request("POST", GET, {}, json.dumps({"params": COMMON}).encode()))  # resolves svc
    answer = service._get_features_fast(request)
    general, _, _ = service._handle(request)
    assert (answer is not None) == fast
    if answer is not None:
        assert answer[0].status == general.status == 200 and answer[0].body == general.body
        assert answer[1:] == ("prod", "svc")
    assert service.handle(request).body == general.body


def test_the_fast_path_counts_requests_and_leaves_store_failures_to_the_general_path(service):
    request = Request("POST", GET, {}, json.dumps({"params": COMMON}).encode())
    for _ in range(3):
        assert service.handle(request).status == 200
    assert service.metrics.requests.value("get-features", "prod", "svc", "200") == 3
    assert service.metrics.store_latency.count("read") == 3

    def broken(table_ids, keys):
        raise OSError("disk I/O error")

    service.online_store.read_encoded = broken
    assert service._get_features_fast(request) is None
    response = service.handle(request)
    assert response.status == 503 and "online store is unavailable" in response.json()["message"]
    assert service.metrics.store_errors.value("read") == 1


def test_snapshots_pick_up_a_new_apply_without_restarting(tmp_path):
    repo = events_repo(tmp_path, VIEWS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    cache = SnapshotCache(runtime.registry, refresh_seconds=0.1)
    service = LookupService(cache, runtime.online_store)
    params = {"workspaceName": "prod", "featureServiceName": "svc2", "joinKeyMap": {"user_id": "u1"}}
    assert call(service, "/api/v1/feature-service/get-features", params)[0] == 404
    (repo.root / "more.py").write_text(
        "from views import stats\nfrom featureplane import FeatureService\nsvc2 = FeatureService(name='svc2', features=[stats])\n"
    )
    apply_plan(runtime, plan_repository(runtime, "prod"))
    deadline = time.monotonic() + 5
    while call(service, "/api/v1/feature-service/get-features", params)[0] != 200:
        assert time.monotonic() < deadline, "the new service was not picked up"
        time.sleep(0.05)
    cache.close()


@pytest.mark.parametrize("kind", ["rest_v1", "http_v2", "function_url"])
def test_lambda_events_of_each_kind(service, kind):
    body = json.dumps(
        {"params": {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}}
    )
    if kind == "rest_v1":
        event = {
            "httpMethod": "POST",
            "path": "/api/v1/feature-service/get-features",
            "headers": {"Content-Type": "application/json"},
            "body": body,
            "isBase64Encoded": False,
            "requestContext": {"stage": "prod"},
        }
    else:
        event = {
            "version": "2.0",
            "rawPath": "/api/v1/feature-service/get-features",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": "/api/v1/feature-service/get-features"}},
            "body": base64.b64encode(body.encode()).decode(),
            "isBase64Encoded": True,
        }
        if kind == "function_url":
            event["requestContext"]["domainName"] = "abc.lambda-url.us-east-1.on.aws"
    response = to_event_response(service.handle(parse_event(event)))
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["result"]["features"][0] == 7.0


def test_the_lookup_path_imports_no_heavy_libraries():
    code = (
        "import sys\n"
        "import featureplane.serving.service, featureplane.serving.aws_lambda, featureplane.serving.http_server\n"
        "import featureplane.serving.app, featureplane.online_stores.sqlite, featureplane.registry.sqlite\n"
        "heavy = ['pandas', 'pyarrow', 'numpy', 'duckdb', 'dagster', 'dbt', 'great_expectations',\n"
        "         'snowflake', 'deltalake', 'sqlglot']\n"
        # the SDK's definitions (the lookup path reads only their serialised specs)
        "heavy += ['featureplane.definitions.' + m for m in ('base', 'entity', 'sources', 'features',\n"
        "          'feature_view', 'feature_service', 'realtime', 'expectations')]\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
