"""get-features-batch in Tecton's v1 shape (one online-store round trip for all rows, a row limit) and
the Prometheus metrics endpoint (parsed with the reference parser)."""

from __future__ import annotations

import json

import pytest
from helpers import click, serving_repo
from prometheus_client.parser import text_string_to_metric_families

from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request
from featureplane.serving.service import LookupService

GET = "/api/v1/feature-service/get-features"
BATCH = "/api/v1/feature-service/get-features-batch"
ALL_METADATA = {
    "includeNames": True,
    "includeDataTypes": True,
    "includeEffectiveTimes": True,
    "includeServingStatus": True,
    "includeSloInfo": True,
}


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> LookupService:
    repo = serving_repo(tmp_path_factory.mktemp("batch") / "repo")
    service = create_lookup_service(repo.config())
    status, _ = post(
        service,
        "/api/v1/ingest",
        {
            "workspaceName": "prod",
            "records": {
                "clicks": [
                    click("u1", "2099-01-01T00:00:00Z", 0.5, count=3),
                    click("u2", "2099-01-02T00:00:00Z", 2.0),
                ],
                "profile": [{"record": {"user_id": "u1", "updated": "2024-01-01T00:00:00Z", "tier": "gold"}}],
            },
        },
    )
    assert status == 200
    yield service
    service.snapshots.close()


def post(service: LookupService, path: str, payload: dict | bytes):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = service.handle(Request("POST", path, {}, body))
    return response.status, response.json()


def batch(service, rows: list, **params):
    payload = {"workspaceName": "prod", "featureServiceName": "svc", "requestData": rows, **params}
    return post(service, BATCH, {"params": payload})


def test_batch_answers_one_result_per_row_in_tecton_shape(service):
    rows = [{"joinKeyMap": {"user_id": u}} for u in ("u1", "nobody", "u2")]
    status, body = batch(service, rows, metadataOptions=ALL_METADATA)
    assert status == 200
    assert [r["features"] for r in body["result"]] == [
        [7.0, 0.5, "3", None, None, "gold", None],
        [None] * 7,
        [1.5, 2.0, None, None, None, None, None],
    ]
    meta = body["metadata"]["features"]
    assert [m["name"] for m in meta] == [
        "spend.amount",
        "scores.score",
        "scores.count",
        "scores.tags",
        "scores.seen",
        "profile.tier",
        "profile.vip",
    ]
    assert meta[2]["dataType"] == {"type": "int64"}
    assert meta[3]["dataType"] == {"type": "array", "elementType": {"type": "string"}}
    # One status per row, as Tecton's batch metadata has it; the effective time is the latest one.
    assert meta[1]["status"] == ["PRESENT", "MISSING_DATA", "PRESENT"]
    assert meta[1]["effectiveTime"] == "2099-01-02T00:00:00Z"
    slo = body["metadata"]["batchSloInfo"]
    assert slo["sloEligible"] is True and slo["serverTimeSeconds"] >= slo["storeMaxLatency"] > 0


def test_batch_rows_equal_single_lookups(service):
    users = ["u1", "u2", "u3", "nobody"]
    _, body = batch(service, [{"joinKeyMap": {"user_id": u}, "requestContextMap": {}} for u in users])
    for user, result in zip(users, body["result"], strict=True):
        _, single = post(
            service,
            GET,
            {
                "params": {
                    "workspaceName": "prod",
                    "featureServiceName": "svc",
                    "joinKeyMap": {"user_id": user},
                }
            },
        )
        assert single["result"]["features"] == result["features"]
    assert "metadata" not in body


def test_all_rows_are_read_in_one_online_store_round_trip(service, monkeypatch):
    calls = []
    store = service.online_store
    read, read_entities, read_encoded = store.read, store.read_entities, store.read_encoded
    monkeypatch.setattr(store, "read", lambda requests: calls.append(len(requests)) or read(requests))
    monkeypatch.setattr(  # views keyed by the whole join key are read by naming each key once
        store,
        "read_entities",
        lambda tables, keys: calls.append(len(tables) * len(keys)) or read_entities(tables, keys),
    )
    monkeypatch.setattr(  # and values-only answers read them in storage form
        store,
        "read_encoded",
        lambda tables, keys, fresh_after: (
            calls.append(len(tables) * len(keys)) or read_encoded(tables, keys, fresh_after)
        ),
    )
    rows = [{"joinKeyMap": {"user_id": f"u{i}"}} for i in range(250)]
    status, body = batch(service, rows)
    assert status == 200 and len(body["result"]) == 250
    assert calls == [250 * 3]  # 250 rows x 3 views, one call
    status, detailed = batch(service, rows, metadataOptions={"includeServingStatus": True})
    assert status == 200 and calls == [250 * 3, 250 * 3]
    assert [r["features"] for r in detailed["result"]] == [r["features"] for r in body["result"]]


@pytest.mark.parametrize(
    ("rows", "status", "fragment"),
    [
        ([], 400, "requestData is required"),
        ("u1", 400, "requestData is required"),
        ([{"joinKeyMap": {"user_id": "u1"}}, 5], 400, "params.requestData[1] must be an object"),
        (
            [{"joinKeyMap": {"user_id": "u1"}}, {"joinKeyMap": {}}],
            400,
            "params.requestData[1]: missing join key(s) user_id",
        ),
        ([{"joinKeyMap": {"user_id": 7}}], 400, "params.requestData[0]: join key 'user_id' must be a string"),
        ([{"joinKeyMap": {"user_id": "u1", "x": 1}}], 400, "params.requestData[0]: unknown join key(s) x"),
        (
            [{"joinKeyMap": {"user_id": "u1"}, "requestContextMap": []}],
            400,
            "requestContextMap must be an object",
        ),
        ([{"joinKeyMap": {"user_id": "u"}}] * 501, 413, "has 501 rows; the limit is 500"),
    ],
)
def test_bad_batches_get_clear_errors(service, rows, status, fragment):
    got, body = batch(service, rows)
    assert got == status
    assert fragment in body["message"]


def test_the_row_limit_is_configurable(tmp_path):
    repo = serving_repo(tmp_path / "repo", max_batch_rows=2)
    service = create_lookup_service(repo.config())
    try:
        assert batch(service, [{"joinKeyMap": {"user_id": "u"}}] * 2)[0] == 200
        status, body = batch(service, [{"joinKeyMap": {"user_id": "u"}}] * 3)
        assert status == 413 and "the limit is 2" in body["message"]
    finally:
        service.snapshots.close()


def test_metrics_parse_and_count_requests_latency_store_calls_and_errors(service):
    batch(service, [{"joinKeyMap": {"user_id": "u1"}}])
    post(
        service,
        GET,
        {"params": {"workspaceName": "prod", "featureServiceName": 'no"such\nservice', "joinKeyMap": {}}},
    )
    post(service, GET, b"{not json")
    response = service.handle(Request("GET", "/metrics", {}, b""))
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}

    def values(family: str, sample: str, *labels: str) -> dict:
        return {
            tuple(s.labels[label] for label in labels): s.value
            for s in families[family].samples
            if s.name == sample
        }

    # Counters are named without their _total suffix by the parser.
    requests = values(
        "featureplane_requests", "featureplane_requests_total", "endpoint", "workspace", "service", "status"
    )
    assert requests[("get-features-batch", "prod", "svc", "200")] >= 1
    assert requests[("ingest", "prod", "", "200")] == 1
    # A service that does not exist is counted without its (client-chosen) name.
    assert requests[("get-features", "prod", "", "404")] == 1
    assert requests[("get-features", "", "", "400")] >= 1
    assert families["featureplane_request_duration_seconds"].type == "histogram"
    buckets = [
        s
        for s in families["featureplane_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["endpoint"] == "get-features-batch"
    ]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 1
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)
    store = values(
        "featureplane_online_store_duration_seconds",
        "featureplane_online_store_duration_seconds_count",
        "operation",
    )
    assert store[("read",)] >= 1 and store[("write",)] >= 1
    errors = values("featureplane_errors", "featureplane_errors_total", "endpoint", "reason")
    assert errors[("get-features", "not_found")] == 1 and errors[("get-features", "bad_request")] >= 1
    ingested = values(
        "featureplane_ingested_records", "featureplane_ingested_records_total", "feature_view", "store"
    )
    assert ingested[("scores", "offline")] == 2 and ingested[("profile", "online")] == 1
