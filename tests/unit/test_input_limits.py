"""Client values in error messages and the limits on them: ``describe_value`` is bounded for any
value (huge, or nested past the interpreter's stack), ``nesting_exceeds`` checks any depth without
recursion, and the lookup service refuses over-limit keys and records with a 400 naming the field."""

from __future__ import annotations

import json

import orjson
import pytest
from helpers import click, serving_repo
from hostile import nested

from featureplane.errors import MAX_JSON_DEPTH, MAX_KEY_BYTES, describe_value, nesting_exceeds
from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request


def _deep(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("high", "'high'"),
        (7, "7"),
        (2.5, "2.5"),
        (True, "true"),
        (None, "null"),
        ([1, 2], "a list of 2 items"),
        ([], "a list with no items"),
        ({"a": 1}, "an object of 1 key"),
        pytest.param(_deep(100_000), "an object of 1 key", id="deep-object"),
        pytest.param(10**5000, "an integer of 16610 bits", id="huge-integer"),
        (object(), "a value of type object"),
    ],
)
def test_describe_value_is_short_for_anything(value, expected):
    assert describe_value(value) == expected


def test_describe_value_previews_long_strings():
    text = describe_value("x" * 1_000_000)
    assert text.startswith("'xxx") and text.endswith("... (a string of 1000000 characters)")
    assert len(text) < 120


def test_nesting_exceeds_any_depth_without_recursion():
    assert nesting_exceeds({"a": [1, {"b": 2}]}) is None
    assert nesting_exceeds(_deep(MAX_JSON_DEPTH - 1)) is None
    assert nesting_exceeds(_deep(MAX_JSON_DEPTH + 1)) == ".a.a.a.a..."
    assert nesting_exceeds({"params": {"rows": [1, {"k": _deep(200_000)}]}}) == ".params.rows[1].k..."
    assert nesting_exceeds(orjson.loads(nested(1000, "list"))) == "[0][0][0][0]..."


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    repo = serving_repo(tmp_path_factory.mktemp("limits") / "repo")
    service = create_lookup_service(repo.config())
    yield service
    service.snapshots.close()


def _post(service, path: str, payload: dict) -> tuple[int, str]:
    response = service.handle(Request("POST", path, {}, json.dumps(payload).encode()))
    return response.status, response.json().get("message", "")


def test_join_keys_at_the_limit_are_served_and_over_it_refused(service):
    path = "/api/v1/feature-service/get-features"
    for value, status in (("k" * MAX_KEY_BYTES, 200), ("\u20ac" * (MAX_KEY_BYTES // 3), 200)):
        params = {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": value}}
        assert _post(service, path, {"params": params})[0] == status
    params = {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": "\u20ac" * 342}}
    status, message = _post(service, path, {"params": params})
    assert (
        status == 400
        and message == "params: join key 'user_id' is 1026 bytes long; the limit is 1024 bytes (UTF-8)"
    )
    rows = [{"joinKeyMap": {"user_id": "u1"}}, {"joinKeyMap": {"user_id": "k" * 2000}}]
    params = {"workspaceName": "prod", "featureServiceName": "svc", "requestData": rows}
    status, message = _post(service, "/api/v1/feature-service/get-features-batch", {"params": params})
    assert status == 400 and message.startswith("params.requestData[1]: join key 'user_id' is 2000 bytes")


def test_ingest_refuses_an_oversized_key_or_record_and_writes_nothing(service):
    records = [click("u-ok", "2024-01-05T00:00:00Z", 1.0), click("k" * 1025, "2024-01-05T00:00:00Z", 1.0)]
    status, message = _post(
        service, "/api/v1/ingest", {"workspaceName": "prod", "records": {"clicks": records}}
    )
    assert status == 400 and message.startswith("records.clicks[1]: join key 'user_id' is 1025 bytes")
    records = [click("u-ok", "2024-01-05T00:00:00Z", 1.0, tags=["t" * 1000] * 400)]
    status, message = _post(
        service, "/api/v1/ingest", {"workspaceName": "prod", "records": {"clicks": records}}
    )
    assert (
        status == 400 and "records.clicks[0]: the record is" in message and "the limit is 393216" in message
    )
    assert service.ingestor.log is not None and not service.ingestor.log.segments("prod")
