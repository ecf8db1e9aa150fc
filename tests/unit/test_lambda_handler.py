"""The Lambda handler: API Gateway REST (v1), HTTP API (v2) and function URL events, base64 bodies,
header casing, query strings and stages, configuration from the environment, and errors that are
always HTTP answers (never an exception out of the handler), 4xx for hostile events and bodies."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import datetime

import pytest
from conftest import ROOT
from helpers import AMOUNTS_SERVICE, events_repo
from hostile import DEEP, HOSTILE, OVERSIZED, PLACES, check_refused, hostile_requests, put
from hypothesis import HealthCheck, given, settings

from featureplane.config import ConfigError
from featureplane.errors import MAX_JSON_DEPTH
from featureplane.materialization.materialize import materialize
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.serving import aws_lambda
from featureplane.serving.aws_lambda import config_from_environment, handler, parse_event
from featureplane.serving.service import LookupService
from featureplane.serving.snapshot import SnapshotCache

PATH = "/api/v1/feature-service/get-features"
BODY = json.dumps(
    {"params": {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": "u1"}}}
)


def rest_v1(body: str | None = BODY, **extra) -> dict:
    return {
        "resource": "/{proxy+}",
        "path": PATH,
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "X-Trace": "a"},
        "multiValueHeaders": {"Content-Type": ["application/json"], "X-Trace": ["a", "b"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "requestContext": {"stage": "prod", "path": "/prod" + PATH, "httpMethod": "POST"},
        "body": body,
        "isBase64Encoded": False,
        **extra,
    }


def http_v2(body: str | None = BODY, stage: str = "$default", raw_path: str = PATH, **extra) -> dict:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "authorization": "Bearer k"},
        "requestContext": {
            "stage": stage,
            "http": {"method": "POST", "path": raw_path, "sourceIp": "1.2.3.4"},
        },
        "body": base64.b64encode(body.encode()).decode() if body is not None else None,
        "isBase64Encoded": body is not None,
        **extra,
    }


@pytest.fixture
def service(tmp_path, monkeypatch):
    repo = events_repo(tmp_path, AMOUNTS_SERVICE)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    materialize(runtime, runtime.registry.load("prod"), "amounts", datetime(2024, 1, 1), datetime(2024, 1, 3))
    service = LookupService(SnapshotCache(runtime.registry, 0), runtime.online_store)
    monkeypatch.setattr(aws_lambda, "_service", service)
    return service


def test_rest_v1_headers_are_lowercased_and_multi_values_joined():
    request = parse_event(rest_v1(multiValueQueryStringParameters={"a": ["1", "2"], "b": ["x y"]}))
    assert request.method == "POST"
    assert request.path == PATH + "?a=1&a=2&b=x+y"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-trace"] == "a,b"
    assert request.body == BODY.encode()


def test_http_api_v2_stage_is_stripped_and_query_kept():
    request = parse_event(http_v2(stage="live", raw_path="/live" + PATH, rawQueryString="x=1"))
    assert request.path == PATH + "?x=1"
    assert request.headers["authorization"] == "Bearer k"
    assert json.loads(request.body) == json.loads(BODY)
    # The default stage is not part of the path (function URLs have no stage at all).
    assert parse_event(http_v2()).path == PATH


@pytest.mark.parametrize("kind", ["rest_v1", "rest_v1_base64", "http_v2", "http_v2_stage", "function_url"])
def test_each_kind_of_event_gets_features(service, kind):
    event = {
        "rest_v1": lambda: rest_v1(),
        "rest_v1_base64": lambda: rest_v1(base64.b64encode(BODY.encode()).decode(), isBase64Encoded=True),
        "http_v2": lambda: http_v2(),
        "http_v2_stage": lambda: http_v2(stage="prod", raw_path="/prod" + PATH),
        "function_url": lambda: http_v2(
            requestContext={
                "domainName": "x.lambda-url.us-east-1.on.aws",
                "http": {"method": "POST", "path": PATH},
            }
        ),
    }[kind]()
    response = handler(event, None)
    assert response["statusCode"] == 200, response
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["isBase64Encoded"] is False
    assert json.loads(response["body"]) == {"result": {"features": [7.0]}}


@pytest.mark.parametrize(
    ("event", "status", "fragment"),
    [
        ("not an object", 400, "not a JSON object"),
        ({"source": "aws.events", "detail": {}}, 400, "unsupported event"),
        ({**http_v2(), "body": "%%%not base64", "isBase64Encoded": True}, 400, "not valid base64"),
        (http_v2(body=None), 400, "request body must be a JSON object"),
        (rest_v1(body="{"), 400, "not valid JSON"),
        ({**rest_v1(), "httpMethod": "GET"}, 405, "use POST"),
        ({**rest_v1(), "path": "/nope"}, 404, "no endpoint"),
        (
            {**http_v2(raw_path="/healthz"), "headers": None, "requestContext": {"http": {"method": "GET"}}},
            200,
            None,
        ),
    ],
)
def test_bad_events_get_http_errors_not_exceptions(service, event, status, fragment):
    response = handler(event, None)
    assert response["statusCode"] == status
    body = json.loads(response["body"])
    if fragment:
        assert fragment in body["message"]


def test_an_uninitialised_function_answers_503_with_the_reason(monkeypatch):
    monkeypatch.setattr(aws_lambda, "_service", None)
    monkeypatch.delenv("FEATUREPLANE_CONFIG", raising=False)
    monkeypatch.delenv("FEATUREPLANE_REGISTRY_SNAPSHOT", raising=False)
    response = handler(http_v2(), None)
    assert response["statusCode"] == 503
    assert "FEATUREPLANE_REGISTRY_SNAPSHOT" in json.loads(response["body"])["message"]


def test_configuration_from_environment_variables(tmp_path):
    config = config_from_environment(
        {
            "FEATUREPLANE_REGISTRY_SNAPSHOT": "s3://bucket/fp/serving.json",
            "FEATUREPLANE_DYNAMODB_TABLE_PREFIX": "fp_prod_",
            "AWS_REGION": "eu-west-1",
            "FEATUREPLANE_REGISTRY_REFRESH_SECONDS": "15",
        }
    )
    assert config.online_store.as_dict() == {
        "type": "dynamodb",
        "region": "eu-west-1",
        "table_prefix": "fp_prod_",
    }
    assert config.serving.as_dict() == {
        "registry_snapshot": "s3://bucket/fp/serving.json",
        "registry_refresh_seconds": 15.0,
    }
    with pytest.raises(ConfigError, match="FEATUREPLANE_REGISTRY_REFRESH_SECONDS must be a number"):
        config_from_environment(
            {"FEATUREPLANE_REGISTRY_SNAPSHOT": "x", "FEATUREPLANE_REGISTRY_REFRESH_SECONDS": "soon"}
        )
    (tmp_path / "featureplane.yaml").write_text("project: p\nonline_store: {type: dynamodb}\n")
    with pytest.raises(ConfigError, match=r"serving\.registry_snapshot is not set"):
        config_from_environment({"FEATUREPLANE_CONFIG": str(tmp_path / "featureplane.yaml")})


def test_the_lambda_path_imports_nothing_heavy_and_creates_no_client_at_import():
    code = (
        "import sys\n"
        "import featureplane.serving.aws_lambda, featureplane.serving.app\n"
        "import featureplane.online_stores.dynamodb, featureplane.registry.snapshot\n"
        "heavy = ['pandas', 'pyarrow', 'numpy', 'duckdb', 'dagster', 'dbt', 'great_expectations',\n"
        "         'snowflake', 'deltalake', 'sqlglot', 'boto3', 'botocore']\n"
        "print(','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_LAMBDA_FUNCTION_NAME", "FEATUREPLANE_LAMBDA_INIT")
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == ""


def test_the_sam_template_runs_this_handler_with_the_variables_it_reads():
    import yaml

    class CloudFormationLoader(yaml.SafeLoader):
        pass

    CloudFormationLoader.add_multi_constructor(
        "!", lambda loader, tag, node: f"{tag} {getattr(node, 'value', '')}"
    )
    template = yaml.load(
        (ROOT / "deploy" / "lambda" / "template.yaml").read_text(), Loader=CloudFormationLoader
    )
    function = template["Resources"]["LookupFunction"]["Properties"]
    module, _, name = function["Handler"].rpartition(".")
    assert module == aws_lambda.__name__ and callable(getattr(aws_lambda, name))
    assert function["Runtime"] == "python3.11"
    assert function["CodeUri"] == "../../build/lambda/featureplane-lookup.zip"
    variables = set(function["Environment"]["Variables"])
    assert variables == {
        "FEATUREPLANE_REGISTRY_SNAPSHOT",
        "FEATUREPLANE_DYNAMODB_TABLE_PREFIX",
        "FEATUREPLANE_REGISTRY_REFRESH_SECONDS",
    }
    config = config_from_environment(dict(zip(sorted(variables), ["fp_", "7", "s3://b/k"], strict=True)))
    assert config.online_store["table_prefix"] == "fp_"
    assert config.serving.as_dict() == {"registry_snapshot": "s3://b/k", "registry_refresh_seconds": 7.0}
    statements = function["Policies"][0]["Statement"]
    actions = {a for s in statements if isinstance(s, dict) for a in s["Action"]}
    assert {"dynamodb:BatchGetItem", "s3:GetObject"} <= actions
    assert function["FunctionUrlConfig"] and function["Events"]["LookupApi"]["Type"] == "HttpApi"


# -- hostile events: nesting and sizes, in the body and in the event itself -----------------------


def _answer(event) -> tuple[int, str]:
    response = handler(event, None)
    return response["statusCode"], check_refused(response["statusCode"], response["body"].encode())


@pytest.mark.parametrize("value", sorted(HOSTILE))
@pytest.mark.parametrize("place", sorted(p for p in PLACES if not p.startswith("ingest")))
def test_deep_and_oversized_bodies_get_a_4xx(service, place, value):
    path, body = put(place, HOSTILE[value])
    event = http_v2(body=body.decode(), raw_path=path)
    response = handler(event, None)
    if value in OVERSIZED and place == "get-features unknown param" and value != "huge_integer":
        assert response["statusCode"] == 200
        return
    status, message = _answer(event)
    if value in DEEP:
        assert status == 400 and f"more than {MAX_JSON_DEPTH} levels deep" in message, message


def _deep(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda e: e["headers"].update({"x-deep": _deep(2000)}), "header x-deep must be a string"),
        (lambda e: e.update({"headers": [_deep(2000)]}), "headers must be an object"),
        (lambda e: e.update({"rawPath": _deep(2000)}), "rawPath must be a string, got an object of 1 key"),
        (lambda e: e["requestContext"]["http"].update({"method": [_deep(2000)]}), "method must be a string"),
        (lambda e: e.update({"rawQueryString": _deep(2000)}), "rawQueryString must be a string"),
        (lambda e: e.update({"body": _deep(2000)}), "body must be a string, got an object of 1 key"),
        (lambda e: e["requestContext"].update({"stage": "s" * 100_000}), None),
    ],
)
def test_deep_values_in_the_event_itself_get_a_400(service, change, fragment):
    event = http_v2()
    change(event)
    response = handler(event, None)
    if fragment is None:
        assert response["statusCode"] == 200
        return
    status, message = _answer(event)
    assert status == 400 and fragment in message, message


def test_rest_v1_query_parameters_must_be_strings(service):
    event = rest_v1(multiValueQueryStringParameters={"a": [_deep(2000)]})
    status, message = _answer(event)
    assert status == 400 and "query parameter a must be a string" in message
    event = rest_v1(queryStringParameters={"a": _deep(2000)})
    assert _answer(event)[0] == 400


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile=hostile_requests())
def test_random_nesting_in_an_event_body_never_gets_a_server_error(service, hostile):
    path, body, depth = hostile
    response = handler(http_v2(body=body.decode(), raw_path=path), None)
    assert response["statusCode"] < 500, response["body"][:300]
    if depth > MAX_JSON_DEPTH:
        assert "levels deep" in json.loads(response["body"])["message"]
