"""AWS Lambda entry point: ``featureplane.serving.aws_lambda.handler``.

Accepts API Gateway REST API events (payload v1), HTTP API events (payload v2) and function URL events
(the v2 shape), and answers in the shape each expects, on the same core as ``featureplane serve``.

Configuration comes from the environment:

- ``FEATUREPLANE_CONFIG``: a featureplane.yaml bundled with the function (or on a mounted file system).
  Its ``serving.registry_snapshot`` must point at the serving snapshot, since the registry's database
  is out of reach from Lambda; ``${VAR}`` references in it are read from the environment.
- Otherwise, explicit variables (what the SAM template sets):
  ``FEATUREPLANE_REGISTRY_SNAPSHOT`` (required: ``s3://bucket/key`` or a path),
  ``FEATUREPLANE_DYNAMODB_TABLE_PREFIX`` (default ``featureplane_``),
  ``FEATUREPLANE_DYNAMODB_REGION`` (default ``AWS_REGION``), ``FEATUREPLANE_DYNAMODB_ENDPOINT_URL``,
  ``FEATUREPLANE_REGISTRY_REFRESH_SECONDS`` (default 30), ``FEATUREPLANE_MAX_BODY_BYTES``,
  ``FEATUREPLANE_PROJECT``, ``FEATUREPLANE_AUTH`` (default true: API keys from the snapshot are
  required; ``false`` when API Gateway or IAM authorizes callers instead).

Inside Lambda the service is built when the module is imported (the init phase): the snapshot is read,
every live workspace's snapshot is built and the DynamoDB client is created, so the first request pays
for none of it. If that fails, requests get a 503 naming the reason and initialisation is retried.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from typing import Any
from urllib.parse import urlencode

from featureplane.config import Config, ConfigError, load_config
from featureplane.errors import describe_value
from featureplane.registry.snapshot import config_from_lambda_environment
from featureplane.serving.protocol import Request, Response, error_response
from featureplane.serving.service import LookupService

log = logging.getLogger("featureplane.serving")

_service: LookupService | None = None
_init_error: str | None = None


class EventError(ValueError):
    """The event is not an HTTP event this handler understands."""


# -- configuration and initialisation --------------------------------------------------------------


def config_from_environment(environ: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if environ is None else environ)
    if env.get("FEATUREPLANE_CONFIG"):
        config = load_config(env["FEATUREPLANE_CONFIG"])
        if not (config.serving or {}).get("registry_snapshot"):
            raise ConfigError(
                f"{config.path}: serving.registry_snapshot is not set; a Lambda lookup service reads the "
                "serving snapshot that `featureplane apply` exports (s3://bucket/key or a path)"
            )
        return config
    return config_from_lambda_environment(env)


def init(environ: dict[str, str] | None = None) -> LookupService:
    """Build the lookup service: read the snapshot, build every live workspace's snapshot and create the
    online store's client. Called at import inside Lambda; idempotent."""
    global _service, _init_error
    if _service is not None:
        return _service
    from featureplane.serving.app import create_lookup_service

    service = create_lookup_service(config_from_environment(environ))
    source = service.snapshots.registry
    live = [n for n in getattr(source, "workspaces", []) if source.load(n).live]
    service.snapshots.preload(live)
    connect = getattr(service.online_store, "connect", None)
    if connect is not None:
        connect()
    _service, _init_error = service, None
    return service


def reset() -> None:
    """Forget the service (tests; a new configuration)."""
    global _service, _init_error
    if _service is not None:
        _service.snapshots.close()
        _service.online_store.close()
    _service, _init_error = None, None


def _get_service() -> LookupService:
    global _init_error
    if _service is None:
        try:
            return init()
        except Exception as exc:
            _init_error = f"{type(exc).__name__}: {exc}"
            raise
    return _service


# -- events ----------------------------------------------------------------------------------------


def _text(value: Any, what: str, default: str = "") -> str:
    """A string field of the event (numbers as written); EventError naming it for anything else."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise EventError(f"the event's {what} must be a string, got {describe_value(value)}")


def _headers(event: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    single = event.get("headers") or {}
    multi = event.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise EventError("the event's headers must be an object of names to values")
    for key, value in single.items():
        if value is not None:
            name = _text(key, "header name")
            headers[name.lower()] = _text(value, f"header {name[:40]}")
    for key, values in multi.items():
        if isinstance(values, list) and values:
            name = _text(key, "header name")
            headers[name.lower()] = ",".join(_text(v, f"header {name[:40]}") for v in values)
    return headers


def _v1_query(event: dict[str, Any]) -> str:
    multi = event.get("multiValueQueryStringParameters")
    if isinstance(multi, dict) and multi:
        pairs = []
        for key, values in multi.items():
            name = _text(key, "query parameter name")
            if values is not None and not isinstance(values, list):
                raise EventError(f"the event's query parameter {name[:40]} must be a list of strings")
            pairs += [(name, _text(v, f"query parameter {name[:40]}")) for v in values or ()]
        return urlencode(pairs)
    single = event.get("queryStringParameters")
    if isinstance(single, dict) and single:
        pairs = []
        for key, value in single.items():
            name = _text(key, "query parameter name")
            pairs.append((name, _text(value, f"query parameter {name[:40]}")))
        return urlencode(pairs)
    return ""


def parse_event(event: Any) -> Request:
    """The request in an API Gateway REST (v1), HTTP API (v2) or function URL event."""
    if not isinstance(event, dict):
        raise EventError("the event is not a JSON object")
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    if isinstance(http, dict):  # HTTP API payload v2, function URLs
        method = _text(http.get("method"), "requestContext.http.method") or "GET"
        path = _text(event.get("rawPath"), "rawPath") or _text(http.get("path"), "requestContext.http.path")
        path = path or "/"
        stage = _text(context.get("stage"), "requestContext.stage")  # type: ignore[union-attr]
        # An HTTP API's named stage is part of rawPath; the routes are not.
        if stage and stage != "$default" and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
            path = path[len(stage) + 1 :] or "/"
        query = _text(event.get("rawQueryString"), "rawQueryString")
    elif "httpMethod" in event:  # REST API payload v1 (path excludes the stage)
        method = _text(event["httpMethod"], "httpMethod")
        path = _text(event.get("path"), "path") or "/"
        query = _v1_query(event)
    else:
        raise EventError(
            "unsupported event: expected an API Gateway REST API, HTTP API or function URL request"
        )
    body = event.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise EventError(f"the event's body must be a string, got {describe_value(body)}")
    elif event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("the event's body is marked base64-encoded but is not valid base64") from None
    else:
        raw = body.encode("utf-8", "surrogatepass")
    return Request(
        method=method.upper(),
        path=f"{path}?{query}" if query else path,
        headers=_headers(event),
        body=raw,
    )


def to_event_response(response: Response) -> dict[str, Any]:
    """A Lambda proxy response, understood by REST APIs, HTTP APIs and function URLs alike."""
    try:
        return {
            "statusCode": response.status,
            "headers": dict(response.headers),
            "body": response.body.decode("utf-8"),
            "isBase64Encoded": False,
        }
    except UnicodeDecodeError:
        return {
            "statusCode": response.status,
            "headers": dict(response.headers),
            "body": base64.b64encode(response.body).decode(),
            "isBase64Encoded": True,
        }


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The Lambda function. Always answers with an HTTP response; never raises."""
    try:
        request = parse_event(event)
    except EventError as exc:
        return to_event_response(error_response(400, str(exc)))
    except Exception:
        log.exception("reading the event failed")
        return to_event_response(error_response(500, "internal error while reading the event; see the log"))
    try:
        service = _get_service()
    except Exception:
        log.exception("the lookup service could not start")
        return to_event_response(
            error_response(503, f"the lookup service is not initialised: {_init_error}; see the function log")
        )
    try:
        return to_event_response(service.handle(request))
    except Exception:
        log.exception("lookup request failed")
        return to_event_response(error_response(500, "internal error while serving the request; see the log"))


def _in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or os.environ.get("FEATUREPLANE_LAMBDA_INIT"))


if _in_lambda():
    logging.getLogger("featureplane").setLevel(os.environ.get("FEATUREPLANE_LOG_LEVEL", "INFO"))
    try:
        init()
    except Exception as _exc:  # answer requests with a 503 that says why, and retry on the next one
        _init_error = f"{type(_exc).__name__}: {_exc}"
        log.exception("featureplane lookup service initialisation failed")
