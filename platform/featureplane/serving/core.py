"""The lookup API's one core: a request (method, path, headers, body) in, a response out.

Both the local HTTP server (``featureplane serve``) and the AWS Lambda handler call ``handle``. Every
failure becomes a JSON error with the right status and a message a person can act on; nothing a client
sends produces a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from featureplane.online_stores.base import OnlineStore, OnlineValue
from featureplane.registry.base import WorkspaceNotFound
from featureplane.serving.realtime import ComputeError
from featureplane.serving.snapshot import ServiceRead, SnapshotCache, WorkspaceSnapshot, now_us
from featureplane.types import DataType, api_type

log = logging.getLogger("featureplane.serving")

JSON_HEADERS = {"Content-Type": "application/json"}
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 3, 429: 8, 500: 13, 503: 14}
METADATA_OPTIONS = (
    "includeNames",
    "includeDataTypes",
    "includeEffectiveTimes",
    "includeSloInfo",
    "includeServingStatus",
)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))

    def json(self) -> Any:
        return orjson.loads(self.body)


def error_response(status: int, message: str) -> Response:
    return Response(
        status, orjson.dumps({"error": message, "message": message, "code": GRPC_CODES.get(status, 2)})
    )


def _camel(key: str) -> str:
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalise_keys(value: Any, depth: int = 0) -> Any:
    """Accept snake_case spellings of the API's camelCase keys (not inside key maps)."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = _camel(key) if isinstance(key, str) else key
        if name in ("joinKeyMap", "requestContextMap", "record", "records"):
            out[name] = item
        elif name == "requestData" and isinstance(item, list):
            out[name] = [normalise_keys(row, depth + 1) for row in item]
        else:
            out[name] = normalise_keys(item, depth + 1)
    return out


def format_time_us(value: int) -> str:
    return (
        datetime.fromtimestamp(value / 1_000_000, UTC)
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(".000000Z", "Z")
    )


def encode_value(value: Any, dtype: DataType) -> Any:
    """A stored value in the API's JSON form: int64 as strings, as Tecton answers."""
    if value is None:
        return None
    if dtype.name == "int64":
        return str(value)
    if dtype.is_array:
        return [encode_value(v, dtype.element) for v in value]  # type: ignore[arg-type]
    return value


def coerce_key(name: str, value: Any, dtype: DataType) -> Any:
    if dtype.name == "int64":
        if isinstance(value, bool):
            raise ApiError(
                400, f"join key {name!r} must be an int64 (a number or a numeric string), got {value!r}"
            )
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ApiError(
            400, f"join key {name!r} must be an int64 (a number or a numeric string), got {value!r}"
        )
    if dtype.name == "string":
        if isinstance(value, str):
            return value
        raise ApiError(400, f"join key {name!r} must be a string, got {value!r}")
    raise ApiError(400, f"join key {name!r} has unsupported type {dtype}")


class LookupService:
    """Resolves feature services from cached registry snapshots and reads the online store."""

    def __init__(
        self,
        snapshots: SnapshotCache,
        online_store: OnlineStore,
        *,
        authorize: Callable[[Request, str, str], None] | None = None,
        max_body_bytes: int = 1_000_000,
    ) -> None:
        self.snapshots = snapshots
        self.online_store = online_store
        self.authorize = authorize
        self.max_body_bytes = max_body_bytes
        self.routes: dict[tuple[str, str], Callable[[Request, dict[str, Any]], Any]] = {
            ("POST", "/api/v1/feature-service/get-features"): self._get_features,
            ("POST", "/api/v1/feature-service/metadata"): self._metadata,
        }

    # -- entry point -----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        try:
            path = request.path.split("?", 1)[0].rstrip("/") or "/"
            if request.method == "GET" and path == "/healthz":
                return Response(200, b'{"status":"ok"}')
            route = self.routes.get((request.method.upper(), path))
            if route is None:
                if any(p == path for _, p in self.routes):
                    raise ApiError(405, f"{request.method} is not allowed on {path}; use POST")
                raise ApiError(404, f"no endpoint {request.method} {path}")
            if len(request.body) > self.max_body_bytes:
                raise ApiError(
                    413, f"request body is {len(request.body)} bytes; the limit is {self.max_body_bytes}"
                )
            params = self._params(request.body)
            return Response(200, orjson.dumps(route(request, params)))
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        except Exception:
            log.exception("lookup request failed")
            return error_response(500, "internal error while serving the request; see the server log")

    @staticmethod
    def _params(body: bytes) -> dict[str, Any]:
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("params"), dict):
            raise ApiError(400, 'request body must be a JSON object of the form {"params": {...}}')
        return normalise_keys(payload["params"])

    # -- resolution ------------------------------------------------------------------------------

    def _workspace(self, params: dict[str, Any]) -> WorkspaceSnapshot:
        name = params.get("workspaceName")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "params.workspaceName is required (a string)")
        try:
            snapshot = self.snapshots.get(name)
        except WorkspaceNotFound:
            raise ApiError(404, f"workspace {name!r} not found") from None
        if not snapshot.live:
            raise ApiError(
                404,
                f"workspace {name!r} is a development workspace: it does not serve features; "
                "apply to a live workspace to serve",
            )
        return snapshot

    def _service(
        self, request: Request, params: dict[str, Any], endpoint: str
    ) -> tuple[WorkspaceSnapshot, ServiceRead]:
        snapshot = self._workspace(params)
        if self.authorize is not None:
            self.authorize(request, snapshot.name, endpoint)
        name = params.get("featureServiceName")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "params.featureServiceName is required (a string)")
        service = snapshot.services.get(name)
        if service is None:
            known = ", ".join(sorted(snapshot.services)) or "none"
            raise ApiError(
                404, f"feature service {name!r} not found in workspace {snapshot.name!r} (services: {known})"
            )
        if not service.online_serving_enabled:
            raise ApiError(400, f"feature service {name!r} has online serving disabled")
        return snapshot, service

    def _join_keys(self, service: ServiceRead, join_key_map: Any) -> dict[str, Any]:
        if not isinstance(join_key_map, dict):
            raise ApiError(400, "params.joinKeyMap is required: an object of join key names to values")
        expected = dict(service.join_keys)
        unknown = sorted(set(join_key_map) - set(expected))
        if unknown:
            raise ApiError(
                400,
                f"unknown join key(s) {', '.join(unknown)} for feature service {service.name!r}; "
                f"expected {', '.join(f'{k} ({t})' for k, t in expected.items())}",
            )
        missing = [k for k in expected if join_key_map.get(k) is None]
        if missing:
            raise ApiError(
                400,
                f"missing join key(s) {', '.join(missing)} for feature service {service.name!r} "
                f"(expected {', '.join(f'{k} ({t})' for k, t in expected.items())})",
            )
        return {k: coerce_key(k, join_key_map[k], t) for k, t in expected.items()}

    # -- endpoints -------------------------------------------------------------------------------

    def _get_features(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _, service = self._service(request, params, "get-features")
        options = params.get("metadataOptions") or {}
        if not isinstance(options, dict):
            raise ApiError(400, "params.metadataOptions must be an object")
        return self.read_features(service, params.get("joinKeyMap"), options, params.get("requestContextMap"))

    def read_features(
        self,
        service: ServiceRead,
        join_key_map: Any,
        options: dict[str, Any],
        request_context_map: Any = None,
    ) -> dict[str, Any]:
        """The get-features answer for one entity of a resolved service."""
        started = time.perf_counter()
        keys = self._join_keys(service, join_key_map)
        rows = self.online_store.read(
            [(v.table_id, tuple(keys[k] for k in v.join_keys)) for v in service.reads]
        )
        store_seconds = time.perf_counter() - started
        compute_seconds = None
        if service.computed is not None:  # realtime views, aggregates of entities without events
            try:
                rows, compute_seconds = service.computed.complete(rows, request_context_map)
            except ComputeError as exc:
                raise ApiError(exc.status, exc.message) from None
        return self._answer(service, rows, options, started, store_seconds, compute_seconds)

    def _answer(
        self,
        service: ServiceRead,
        rows: list[OnlineValue | None],
        options: dict[str, Any],
        started: float,
        store_seconds: float,
        compute_seconds: float | None = None,
    ) -> dict[str, Any]:
        now = now_us()
        values: list[Any] = []
        meta: list[dict[str, Any]] = []
        want = {name: bool(options.get(name)) for name in METADATA_OPTIONS}
        for view, row in zip(service.views, rows, strict=True):
            fresh = row is not None and (view.ttl_us is None or now - row.event_ts < view.ttl_us)
            for feature, index, dtype in view.features:
                value = encode_value(row.values[index], dtype) if fresh else None  # type: ignore[union-attr]
                values.append(value)
                if not any(want.values()):
                    continue
                entry: dict[str, Any] = {}
                if want["includeNames"]:
                    entry["name"] = f"{view.name}.{feature}"
                if want["includeDataTypes"]:
                    entry["dataType"] = api_type(dtype)
                if want["includeEffectiveTimes"] and fresh:
                    entry["effectiveTime"] = format_time_us(row.event_ts)  # type: ignore[union-attr]
                if want["includeServingStatus"]:
                    entry["status"] = "PRESENT" if fresh else "MISSING_DATA"
                meta.append(entry)
        answer: dict[str, Any] = {"result": {"features": values}}
        metadata: dict[str, Any] = {}
        if meta and any(meta):
            metadata["features"] = meta
        if want["includeSloInfo"]:
            server = time.perf_counter() - started
            metadata["sloInfo"] = {
                "sloEligible": True,
                "sloServerTimeSeconds": round(server, 6),
                "serverTimeSeconds": round(server, 6),
                "storeMaxLatency": round(store_seconds, 6),
            }
            if compute_seconds is not None:
                metadata["sloInfo"]["realtimeComputeSeconds"] = round(compute_seconds, 6)
        if metadata:
            answer["metadata"] = metadata
        return answer

    def _metadata(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _, service = self._service(request, params, "metadata")
        return {
            "featureServiceType": "DEFAULT",
            "inputJoinKeys": [{"name": k, "dataType": api_type(t)} for k, t in service.join_keys],
            "inputRequestContextKeys": [
                {"name": k, "dataType": api_type(t)} for k, t in service.request_context
            ],
            "featureValues": [
                {"name": name, "dataType": api_type(dtype)}
                for name, dtype in zip(service.feature_names, service.feature_types, strict=True)
            ],
        }
