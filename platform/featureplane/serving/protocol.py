"""The lookup API's wire shapes (Tecton's HTTP API v1): requests, responses, errors and their codes,
and a call on its way through the lookup service."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from featureplane.access.base import Identity

JSON_HEADERS = {"Content-Type": "application/json"}
GET_FEATURES_PATH = "/api/v1/feature-service/get-features"
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 3, 429: 8, 500: 13, 503: 14}
METADATA_OPTIONS = (
    "includeNames",
    "includeDataTypes",
    "includeEffectiveTimes",
    "includeSloInfo",
    "includeServingStatus",
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
STATUS = {True: "PRESENT", False: "MISSING_DATA"}
NO_OPTIONS = dict.fromkeys(METADATA_OPTIONS, False)
ERROR_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "throttled",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(slots=True)
class Response:
    """``headers`` defaults to the shared JSON_HEADERS: build a new dict to change them."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: JSON_HEADERS)

    def json(self) -> Any:
        return orjson.loads(self.body)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": message, "message": message, "code": GRPC_CODES.get(status, 2)})
    return Response(status, body, {**JSON_HEADERS, **(headers or {})})


def format_time_us(value: int) -> str:
    return (
        datetime.fromtimestamp(value / 1_000_000, UTC)
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(".000000Z", "Z")
    )


@dataclass(frozen=True)
class Route:
    endpoint: str
    handler: Callable[[Call], Any]
    permission: str
    envelope: bool = True  # the body is {"params": {...}}


@dataclass(slots=True)
class Call:
    """One API call on its way through the core; ``workspace``/``service`` label its metrics."""

    request: Request
    route: Route
    params: dict[str, Any]
    identity: Identity | None = None
    workspace: str = ""
    service: str = ""
