"""AWS Lambda entry point: ``featureplane.serving.aws_lambda.handler``.

Accepts API Gateway REST (payload v1), HTTP API (payload v2) and function URL events, and answers in
the shape each expects. The service is built once per container, at import (cold start).
"""

from __future__ import annotations

import base64
from typing import Any

from featureplane.serving.core import LookupService, Request, Response

_service: LookupService | None = None


def _get_service() -> LookupService:
    global _service
    if _service is None:
        from featureplane.config import load_config
        from featureplane.serving.app import create_lookup_service

        _service = create_lookup_service(load_config())
    return _service


def parse_event(event: dict[str, Any]) -> Request:
    if "requestContext" in event and "http" in event.get("requestContext", {}):  # HTTP API v2, function URL
        method = event["requestContext"]["http"]["method"]
        path = event.get("rawPath") or event["requestContext"]["http"].get("path", "/")
    else:  # REST API v1
        method = event.get("httpMethod", "GET")
        path = event.get("path") or "/"
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    return Request(method=method, path=path, headers=headers, body=raw)


def to_event_response(response: Response) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": response.headers,
        "body": response.body.decode(),
        "isBase64Encoded": False,
    }


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return to_event_response(_get_service().handle(parse_event(event)))
