"""Hostile inputs for the lookup and ingest API, shared by the fuzz tests of the HTTP server and the
Lambda handler: values nested far past any limit, oversized keys and records, and request bodies that
put each of them where a client's value goes.

Values are JSON text, not Python objects: a body nested 1,100 levels deep cannot be built with a JSON
encoder (they refuse, as orjson does past 1,024 levels), and the servers must see exactly those bytes.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from featureplane.errors import MAX_JSON_DEPTH, MAX_KEY_BYTES, MAX_RECORD_BYTES

HOLE = '"__HOSTILE__"'


def nested(depth: int, shape: str = "object", leaf: str = "1") -> str:
    """JSON text nesting ``depth`` levels: ``{"a": {"a": ... leaf}}``, ``[[[... leaf]]]``, or objects
    and lists taking turns (``mixed``)."""
    opens, closes = [], []
    for level in range(depth):
        as_list = shape == "list" or (shape == "mixed" and level % 2)
        opens.append("[" if as_list else '{"a":')
        closes.append("]" if as_list else "}")
    return "".join(opens) + leaf + "".join(reversed(closes))


def text(value: object) -> str:
    return json.dumps(value)


# name -> (JSON text, what the answer must say). Each is refused with a 4xx wherever it is put.
DEEP = {
    "object_1000": nested(1000),
    "list_1000": nested(1000, "list"),
    "mixed_1000": nested(1000, "mixed"),
    "object_past_limit": nested(MAX_JSON_DEPTH + 1),
    "object_past_parser": nested(1100),  # past orjson's own limit too
}
OVERSIZED = {
    "long_key": text("k" * (MAX_KEY_BYTES + 1)),
    "wide_key": text("\u00e9" * (MAX_KEY_BYTES // 2 + 1)),  # few characters, many bytes
    "huge_integer": "9" * 5000,
    "long_string": text("x" * 200_000),
}
HOSTILE = {**DEEP, **OVERSIZED}

# Request bodies (path, JSON text with one HOLE) covering every field a client's value reaches.
_GET = {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}
_RECORD = {"user_id": "u1", "ts": "2024-01-05T00:00:00Z", "score": 0.5}


def _body(path: str, payload: dict) -> tuple[str, str]:
    body = text(payload)
    assert HOLE in body
    return path, body


def _with(base: dict, **fields: object) -> dict:
    return {**base, **fields}


GET_FEATURES = "/api/v1/feature-service/get-features"
BATCH = "/api/v1/feature-service/get-features-batch"
METADATA = "/api/v1/feature-service/metadata"
INGEST = "/api/v1/ingest"
H = "__HOSTILE__"
PLACES = {
    "get-features joinKeyMap.user_id": _body(
        GET_FEATURES, {"params": _with(_GET, joinKeyMap={"user_id": H})}
    ),
    "get-features joinKeyMap": _body(GET_FEATURES, {"params": _with(_GET, joinKeyMap=H)}),
    "get-features join key name": _body(
        GET_FEATURES, {"params": _with(_GET, joinKeyMap={"user_id": "u1", "x": H})}
    ),
    "get-features requestContextMap": _body(GET_FEATURES, {"params": _with(_GET, requestContextMap=H)}),
    "get-features metadataOptions": _body(GET_FEATURES, {"params": _with(_GET, metadataOptions=H)}),
    "get-features workspaceName": _body(GET_FEATURES, {"params": _with(_GET, workspaceName=H)}),
    "get-features featureServiceName": _body(GET_FEATURES, {"params": _with(_GET, featureServiceName=H)}),
    "get-features unknown param": _body(GET_FEATURES, {"params": _with(_GET, extra=H)}),
    "get-features snake_case": _body(
        GET_FEATURES,
        {"params": {"workspace_name": "prod", "feature_service_name": "svc", "join_key_map": {"user_id": H}}},
    ),
    "get-features params": _body(GET_FEATURES, {"params": H}),
    "batch joinKeyMap.user_id": _body(
        BATCH,
        {
            "params": {
                "workspaceName": "prod",
                "featureServiceName": "svc",
                "requestData": [{"joinKeyMap": {"user_id": "u1"}}, {"joinKeyMap": {"user_id": H}}],
            }
        },
    ),
    "batch requestData": _body(
        BATCH, {"params": {"workspaceName": "prod", "featureServiceName": "svc", "requestData": H}}
    ),
    "batch row": _body(
        BATCH, {"params": {"workspaceName": "prod", "featureServiceName": "svc", "requestData": [H]}}
    ),
    "metadata featureServiceName": _body(
        METADATA, {"params": {"workspaceName": "prod", "featureServiceName": H}}
    ),
    "metadata workspaceName": _body(METADATA, {"params": {"workspaceName": H, "featureServiceName": "svc"}}),
    "ingest record.user_id": _body(
        INGEST, {"workspaceName": "prod", "records": {"clicks": [{"record": _with(_RECORD, user_id=H)}]}}
    ),
    "ingest record.score": _body(
        INGEST, {"workspaceName": "prod", "records": {"clicks": [{"record": _with(_RECORD, score=H)}]}}
    ),
    "ingest record.tags": _body(
        INGEST, {"workspaceName": "prod", "records": {"clicks": [{"record": _with(_RECORD, tags=H)}]}}
    ),
    "ingest record field name": _body(
        INGEST, {"workspaceName": "prod", "records": {"clicks": [{"record": _with(_RECORD, extra=H)}]}}
    ),
    "ingest record": _body(INGEST, {"workspaceName": "prod", "records": {"clicks": [{"record": H}]}}),
    "ingest records": _body(INGEST, {"workspaceName": "prod", "records": H}),
    "ingest dryRun": _body(INGEST, {"workspaceName": "prod", "records": {"clicks": []}, "dryRun": H}),
}


def put(place: str, value: str) -> tuple[str, bytes]:
    """The path and body of ``PLACES[place]`` with ``value`` (JSON text) in its hole. A value that is
    a string goes in as a key too where the hole is an object key (``join key name``, ``field name``)."""
    path, body = PLACES[place]
    if place.endswith("name") and "{" not in value and "[" not in value:
        name = value if value.startswith('"') else text(value)
        body = body.replace(f'"x": {HOLE}', f'{name}: "v"').replace(f'"extra": {HOLE}', f"{name}: 1")
    return path, body.replace(HOLE, value).encode()


def big_record(size: int = MAX_RECORD_BYTES + 1024) -> tuple[str, bytes]:
    """An ingest request whose one record is over the record limit (its tags list) but whose body is
    within the body limit."""
    tags = ["t" * 1000] * (size // 1000 + 1)
    record = _with(_RECORD, tags=tags)
    return INGEST, text({"workspaceName": "prod", "records": {"clicks": [{"record": record}]}}).encode()


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[str, bytes, int]:
    """A request with a nested value of random depth and shape (or an oversized one) in a random
    place, and the depth it nests to (0 for an oversized value)."""
    place = draw(st.sampled_from(sorted(PLACES)))
    if draw(st.booleans()):
        depth = draw(st.integers(1, 3 * MAX_JSON_DEPTH) | st.integers(1000, 1200))
        shape = draw(st.sampled_from(["object", "list", "mixed"]))
        leaf = draw(st.sampled_from(["1", '"u1"', "null", "[]", "{}", "true"]))
        return (*put(place, nested(depth, shape, leaf)), depth)
    return (*put(place, draw(st.sampled_from(sorted(OVERSIZED.values())))), 0)


def check_refused(status: int, body: bytes) -> str:
    """The one-line message of a 4xx answer in the API's error shape."""
    assert 400 <= status < 500, (status, body[:300])
    answer = json.loads(body)
    message = answer["message"]
    assert "\n" not in message and len(message) < 1000, message[:1200]
    return message
