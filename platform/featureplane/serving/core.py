"""The lookup API's one core: a request (method, path, headers, body) in, a response out.

Both the local HTTP server (``featureplane serve``) and the AWS Lambda handler call ``handle``. Every
failure becomes a JSON error with the right status and a message a person can act on; nothing a client
sends produces a 500.

Endpoints (Tecton's HTTP API v1 shapes): ``get-features``, ``get-features-batch`` and ``metadata``
under ``/api/v1/feature-service/``, ``/api/v1/ingest``, ``/healthz`` and ``/metrics``. With a key
verifier, every ``/api/v1`` call needs ``Authorization: Tecton-key <key>`` (or ``Bearer <key>``): 401
without a valid key, checked before anything about workspaces is revealed; 403 when the key's roles do
not allow the endpoint on the requested workspace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import TYPE_CHECKING, Any

import orjson

from featureplane.access.roles import Permission
from featureplane.online_stores.base import OnlineStore, OnlineValue
from featureplane.registry.base import WorkspaceNotFound
from featureplane.serving.metrics import CONTENT_TYPE, ServingMetrics
from featureplane.serving.realtime import ComputeError
from featureplane.serving.snapshot import ServiceRead, SnapshotCache, WorkspaceSnapshot, now_us
from featureplane.types import DataType, api_type

if TYPE_CHECKING:
    from featureplane.access.base import Identity
    from featureplane.access.verifier import KeyVerifier
    from featureplane.ingest.service import Ingestor

log = logging.getLogger("featureplane.serving")

JSON_HEADERS = {"Content-Type": "application/json"}
_GET_FEATURES = "/api/v1/feature-service/get-features"
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


def _camel(key: str) -> str:
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_VERBATIM = frozenset(("joinKeyMap", "requestContextMap", "record", "records"))


def _camel_case_only(value: dict) -> bool:
    """Whether ``normalise_keys`` would leave ``value`` as it is: no key to rename at any depth it
    looks at. One pass without building anything (the common case: clients send camelCase)."""
    for key, item in value.items():
        if type(key) is not str or "_" in key:
            return False
        if key in _VERBATIM:
            continue
        kind = type(item)
        if kind is dict:
            if not _camel_case_only(item):
                return False
        elif kind is list and key == "requestData":
            for row in item:
                if type(row) is dict and ("join_key_map" in row or "request_context_map" in row):
                    return False
        elif kind is not str and isinstance(item, dict):
            return False
    return True


def normalise_keys(value: Any, depth: int = 0) -> Any:
    """Accept snake_case spellings of the API's camelCase keys (not inside key maps or records).
    Returns ``value`` itself when nothing needs renaming (the common case)."""
    if not isinstance(value, dict):
        return value
    if type(value) is dict and _camel_case_only(value):
        return value
    out: dict[Any, Any] | None = None
    for position, (key, item) in enumerate(value.items()):
        name = _camel(key) if isinstance(key, str) else key
        if name in ("joinKeyMap", "requestContextMap", "record", "records"):
            new = item
        elif name == "requestData" and isinstance(item, list):
            rows = [
                normalise_keys(row, depth + 1)
                if isinstance(row, dict) and ("join_key_map" in row or "request_context_map" in row)
                else row
                for row in item
            ]
            new = item if all(a is b for a, b in zip(rows, item, strict=True)) else rows
        elif isinstance(item, dict):
            new = normalise_keys(item, depth + 1)
        else:
            new = item
        if out is None and (name != key or new is not item):
            out = dict(list(value.items())[:position])
        if out is not None:
            out[name] = new
    return value if out is None else out


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
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value)
            except ValueError:
                pass
        if number is None or not INT64_MIN <= number <= INT64_MAX:
            raise ApiError(
                400, f"join key {name!r} must be an int64 (a number or a numeric string), got {value!r:.80}"
            )
        return number
    if dtype.name == "string":
        if isinstance(value, str):
            return value
        raise ApiError(400, f"join key {name!r} must be a string, got {value!r:.80}")
    raise ApiError(400, f"join key {name!r} has unsupported type {dtype}")


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


@dataclass
class _ViewPlan:
    ttl_us: int | None
    width: int  # how many of the view's features the service reads
    extract: Callable[[list[Any]], list[Any]]  # stored values -> the service's values, API-encoded


def _extractor(
    features: tuple[tuple[str, int, DataType], ...], stored: int
) -> Callable[[list[Any]], list[Any]]:
    """A function from a view's stored values to the service's selection of them in the API's form
    (int64 as strings). It is compiled once per registry snapshot from the positions alone, so that a
    batch spends one call per row and view on it."""
    text = _value_list(features, stored)
    if text == "s[:]":
        return _same
    return eval(f"lambda s: {text}")  # the text holds integer positions only


def _same(values: list[Any]) -> list[Any]:
    return values


def _value_list(features: tuple[tuple[str, int, DataType], ...], stored: int) -> str:
    """Python text of a list of a view's selected values, API-encoded, from its stored values ``s``."""
    parts = []
    for _, index, dtype in features:
        value = f"s[{index}]"
        if dtype.name == "int64":
            value = f"(None if {value} is None else str({value}))"
        elif dtype.is_array and dtype.element.name == "int64":  # type: ignore[union-attr]
            value = f"(None if {value} is None else [None if x is None else str(x) for x in {value}])"
        parts.append(value)
    if parts == [f"s[{i}]" for i in range(stored)]:
        return "s[:]"
    return f"[{', '.join(parts)}]"


def _assembler(views: list[tuple[int | None, tuple[tuple[str, int, DataType], ...], int]]) -> Callable:
    """``assemble(rows, now)``: every entity's feature vector from its rows (``rows`` holds each
    entity's views in order; a row counts if present and within its view's ttl at ``now``), each as
    ``{"features": [...]}``. Compiled once per service from the views' positions, types and ttls, so
    that an entity costs one pass of straight-line code rather than a call per view."""
    lines = ["def assemble(rows, now):"]
    for v, (ttl_us, _, _) in enumerate(views):
        if ttl_us is not None:
            lines.append(f"    o{v} = now - {int(ttl_us)}")
    lines += ["    out = []", "    append = out.append", f"    for e in range(0, len(rows), {len(views)}):"]
    for v, (ttl_us, features, stored) in enumerate(views):
        fresh = "r is not None" if ttl_us is None else f"r is not None and r[0] > o{v}"
        assign = "x =" if v == 0 else "x +="
        lines += [
            f"        r = rows[e + {v}]",  # an OnlineValue: (event time, stored values)
            f"        if {fresh}:",
            "            s = r[1]",
            f"            {assign} {_value_list(features, stored)}",
            "        else:",
            f"            {assign} {[None] * len(features)!r}",
        ]
    lines += ['        append({"features": x})', "    return out"]
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # the text holds integer positions and ttls only
    return namespace["assemble"]


def _json_assembler(views: list[tuple[tuple[str, int, DataType], ...]], stored: list[int]) -> Callable:
    """``assemble(rows)``: every entity's feature vector from ``OnlineStore.read_encoded`` rows (one
    tuple per entity of each view's values JSON, None where missing or past its ttl), each as
    ``{"features": [...]}``. All rows' JSON is decoded in one pass, then each entity costs one pass of
    straight-line code compiled once per service."""
    width = len(views)
    blobs = ", ".join(f"r[{v}] or NULL" for v in range(width))
    lines = [
        "def assemble(rows):",
        f"    values = loads(b'[' + b','.join([b for r in rows for b in ({blobs},)]) + b']')",
        "    out = []",
        "    append = out.append",
        f"    for e in range(0, len(values), {width}):",
    ]
    for v, features in enumerate(views):
        assign = "x =" if v == 0 else "x +="
        lines += [
            f"        s = values[e + {v}]",
            "        if s is not None:",
            f"            {assign} {_value_list(features, stored[v])}",
            "        else:",
            f"            {assign} {[None] * len(features)!r}",
        ]
    lines += ['        append({"features": x})', "    return out"]
    namespace: dict[str, Any] = {"loads": orjson.loads, "NULL": b"null"}
    exec("\n".join(lines), namespace)  # the text holds integer positions only
    return namespace["assemble"]


@dataclass
class _ServicePlan:
    """Per-service structures computed once per registry snapshot rather than per request."""

    service: ServiceRead
    metadata: list[dict[str, Any]]
    views: list[_ViewPlan]
    key_names: tuple[str, ...]
    key_types: tuple[type, ...]  # the Python type a well-formed join key value has
    reads: list[tuple[str, tuple[int, ...] | None]]  # (table_id, key positions; None: the whole key)
    table_ids: tuple[str, ...] | None  # when every read takes the whole key: read_entities
    assemble: Callable[[list[OnlineValue | None], int], list[dict[str, list[Any]]]]
    # Values only, every view stored and keyed by the whole key: read_encoded rows, and each view's
    # ttl for reading them (None: the service cannot be read this way).
    assemble_json: Callable[[list[tuple]], list[dict[str, list[Any]]]] | None
    ttls: tuple[int | None, ...]

    def fresh_after(self, now: int) -> list[int | None]:
        """Each view's oldest event time still within its ttl at ``now`` (exclusive)."""
        return [None if ttl is None else now - ttl for ttl in self.ttls]


def _well_formed_key(plan: _ServicePlan, join_key_map: Any) -> tuple | None:
    """The join key in the service's key order when ``join_key_map`` names exactly the service's
    keys, each with a value of its type as is; None otherwise (``_join_keys`` then coerces numeric
    strings or says what is wrong)."""
    if type(join_key_map) is not dict or len(join_key_map) != len(plan.key_names):
        return None
    key = []
    for name, kind in zip(plan.key_names, plan.key_types, strict=True):
        value = join_key_map.get(name)
        if type(value) is not kind or (kind is int and not INT64_MIN <= value <= INT64_MAX):
            return None
        key.append(value)
    return tuple(key)


def _plain_string_keys(data: list[Any], name: str) -> list[tuple] | None:
    """The keys of batch rows that are all ``{"joinKeyMap": {name: "<string>"}}`` and nothing else
    (the common shape, for a service keyed by one string), checked in a few passes over the rows;
    None when any row differs, for the row-by-row checks to report it."""
    try:
        values = [row["joinKeyMap"][name] for row in data]
    except (TypeError, KeyError, IndexError):
        return None
    if any(len(row) != 1 or len(row["joinKeyMap"]) != 1 for row in data):
        return None
    try:
        "".join(values)  # all strings
    except TypeError:
        return None
    return [(value,) for value in values]


class LookupService:
    """Resolves feature services from cached registry snapshots and reads the online store."""

    def __init__(
        self,
        snapshots: SnapshotCache,
        online_store: OnlineStore,
        *,
        verifier: KeyVerifier | None = None,
        ingestor: Ingestor | None = None,
        metrics: ServingMetrics | None = None,
        max_body_bytes: int = 1_000_000,
        max_batch_rows: int = 500,
    ) -> None:
        self.snapshots = snapshots
        self.online_store = online_store
        self.verifier = verifier
        self.ingestor = ingestor
        self.metrics = metrics or ServingMetrics()
        self.max_body_bytes = max_body_bytes
        self.max_batch_rows = max_batch_rows
        self._plans: dict[int, _ServicePlan] = {}
        self._resolved: dict[tuple[str, str], tuple[WorkspaceSnapshot, _ServicePlan]] = {}
        self._verified: dict[str, tuple[Identity, float]] = {}  # Authorization header -> (identity, until)
        self.monitor: Any = None  # featureplane.serving.monitor.ServingMonitor, when monitoring is on
        read = Permission.READ_FEATURES
        self.routes: dict[tuple[str, str], Route] = {
            ("POST", "/api/v1/feature-service/get-features"): Route("get-features", self._get_features, read),
            ("POST", "/api/v1/feature-service/get-features-batch"): Route(
                "get-features-batch", self._get_features_batch, read
            ),
            ("POST", "/api/v1/feature-service/metadata"): Route("metadata", self._metadata, read),
            ("POST", "/api/v1/ingest"): Route("ingest", self._ingest, Permission.INGEST, envelope=False),
        }
        self._paths = {path for _, path in self.routes}

    # -- entry point -----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        fast = self._get_features_fast(request)
        if fast is not None:
            response, workspace, service = fast
            endpoint = "get-features"
        else:
            response, call, _ = self._handle(request)
            if call is None:
                return response
            endpoint, workspace, service = call.route.endpoint, call.workspace, call.service
        monitor = self.monitor
        if monitor is not None:  # it samples served vectors, labelled as the core resolved them
            monitor.record(request, response, endpoint, workspace, service)
        return response

    def _get_features_fast(self, request: Request) -> tuple[Response, str, str] | None:
        """The common call answered in the fewest steps: get-features for values only, with an API key
        already verified, of a service already resolved in the snapshot being served, every view
        stored and keyed by the whole join key, and a well-formed join key. Anything else (or any
        failure) returns None for ``_handle``, which checks everything and names what is wrong; both
        give the same answer. Lookups are latency-bound, and most of a lookup's time in Python is
        the steps this skips: routing, envelopes, renaming snake_case keys, per-call objects."""
        if request.path != _GET_FEATURES or request.method != "POST":
            return None
        started = time.perf_counter()
        body = request.body
        if len(body) > self.max_body_bytes:
            return None
        identity = None
        if self.verifier is not None:
            identity = self._known_identity(request)
            if identity is None:
                return None
        try:
            params = orjson.loads(body)["params"]
        except Exception:
            return None
        if type(params) is not dict:
            return None
        workspace = params.get("workspaceName")
        name = params.get("featureServiceName")
        join_key_map = params.get("joinKeyMap")
        if type(workspace) is not str or type(name) is not str or type(join_key_map) is not dict:
            return None
        if len(params) != 3 and (len(params) != 4 or type(params.get("allowPartialResults")) is not bool):
            return None
        hit = self._resolved_plan(workspace, name)
        if hit is None:
            return None
        plan = hit[1]
        assemble = plan.assemble_json
        if assemble is None:
            return None
        if identity is not None and not identity.can(Permission.READ_FEATURES, workspace):
            return None
        key = _well_formed_key(plan, join_key_map)
        if key is None:
            return None
        read_started = time.perf_counter()
        try:
            rows = self.online_store.read_encoded(plan.table_ids, [key], plan.fresh_after(now_us()))  # type: ignore[arg-type]
        except Exception:
            return None  # _handle reads again and answers (and counts) the failure
        read_seconds = time.perf_counter() - read_started
        answer = orjson.dumps({"result": assemble(rows)[0]})
        workspace, service = hit[0].name, plan.service.name
        seconds = time.perf_counter() - started
        self.metrics.observe_lookup("get-features", workspace, service, seconds, read_seconds)
        return Response(200, answer), workspace, service

    def _handle(self, request: Request) -> tuple[Response, Call | None, float]:
        """The response, the call as far as it was parsed, and the seconds spent on it."""
        started = time.perf_counter()
        call: Call | None = None
        endpoint = "other"
        try:
            path = request.path
            if "?" in path or path.endswith("/"):
                path = path.split("?", 1)[0].rstrip("/") or "/"
            method = request.method.upper()
            if method == "HEAD":  # answered as GET; the HTTP layer leaves the body out
                method = "GET"
            if method == "GET" and path == "/healthz":
                return Response(200, b'{"status":"ok"}'), None, time.perf_counter() - started
            if method == "GET" and path == "/metrics":
                response = Response(200, self.metrics.render(), {"Content-Type": CONTENT_TYPE})
                return response, None, time.perf_counter() - started
            route = self.routes.get((method, path))
            if route is None:
                if path in self._paths:
                    raise ApiError(
                        405, f"{request.method:.20} is not allowed on {path}; use POST", {"Allow": "POST"}
                    )
                raise ApiError(404, f"no endpoint {request.method:.20} {path:.200}")
            endpoint = route.endpoint
            identity = self._authenticate(request, route) if self.verifier is not None else None
            if len(request.body) > self.max_body_bytes:
                raise ApiError(
                    413, f"request body is {len(request.body)} bytes; the limit is {self.max_body_bytes}"
                )
            call = Call(request, route, self._params(request.body, route.envelope), identity)
            response = Response(200, orjson.dumps(route.handler(call)))
        except ApiError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
        except Exception:
            log.exception("lookup request failed")
            response = error_response(500, "internal error while serving the request; see the server log")
        seconds = time.perf_counter() - started
        self._observe(endpoint, call, response.status, seconds)
        return response, call, seconds

    def _observe(self, endpoint: str, call: Call | None, status: int, seconds: float) -> None:
        workspace = call.workspace if call is not None else ""
        service = call.service if call is not None else ""
        reason = ERROR_REASONS.get(status, str(status)) if status >= 400 else None
        self.metrics.observe_request(endpoint, workspace, service, status, seconds, reason)

    @staticmethod
    def _params(body: bytes, envelope: bool) -> dict[str, Any]:
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        if not envelope:
            if not isinstance(payload, dict):
                raise ApiError(400, "request body must be a JSON object")
            return normalise_keys(payload)
        if not isinstance(payload, dict) or not isinstance(payload.get("params"), dict):
            raise ApiError(400, 'request body must be a JSON object of the form {"params": {...}}')
        return normalise_keys(payload["params"])

    # -- access ----------------------------------------------------------------------------------

    def _authenticate(self, request: Request, route: Route) -> Identity:
        identity = self._known_identity(request)
        if identity is None:
            headers = request.headers
            identity = self._verify(headers.get("authorization") or headers.get("Authorization"))
        if not identity.can(route.permission):
            raise ApiError(403, f"{identity.describe()} may not call {route.endpoint}")
        return identity

    def _known_identity(self, request: Request) -> Identity | None:
        """The identity of an ``Authorization`` header verified before and not yet due for checking
        again (see ``_verify``); None otherwise."""
        headers = request.headers
        header = headers.get("authorization") or headers.get("Authorization")
        known = self._verified.get(header) if header else None
        return known[0] if known is not None and known[1] > time.monotonic() else None

    def _verify(self, header: str | None) -> Identity:
        """The identity of a valid ``Authorization`` header; remembered for as long as the verifier
        remembers its key, so that a request with a known header skips parsing and verifying it."""
        challenge = {"WWW-Authenticate": 'Tecton-key realm="featureplane"'}
        if not header:
            raise ApiError(
                401,
                "missing API key: send the header 'Authorization: Tecton-key <key>' (or 'Bearer <key>'); "
                "create a key with `featureplane api-key create`",
                challenge,
            )
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() not in ("tecton-key", "bearer") or not key:
            raise ApiError(
                401, "the Authorization header must be 'Tecton-key <key>' or 'Bearer <key>'", challenge
            )
        try:
            identity, until = self.verifier.verify_until(key)  # type: ignore[union-attr]
        except Exception:
            log.exception("verifying an API key failed")
            raise ApiError(
                503, "cannot verify API keys right now (the registry is unavailable); retry"
            ) from None
        if identity is None:
            raise ApiError(401, "invalid or revoked API key", challenge)
        if len(self._verified) >= 10_000:  # bounded: made-up keys are never remembered, but be safe
            self._verified.clear()
        self._verified[header] = (identity, until)
        return identity

    # -- resolution ------------------------------------------------------------------------------

    def _workspace(self, call: Call) -> WorkspaceSnapshot:
        name = call.params.get("workspaceName")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "workspaceName is required (a string)")
        identity = call.identity
        if identity is not None and not identity.can(call.route.permission, name):
            raise ApiError(
                403, f"{identity.describe()} may not call {call.route.endpoint} on workspace {name!r:.130}"
            )
        try:
            snapshot = self.snapshots.get(name)
        except WorkspaceNotFound:
            raise ApiError(404, f"workspace {name!r:.130} not found") from None
        if not snapshot.live:
            raise ApiError(
                404,
                f"workspace {name!r} is a development workspace: it does not serve or ingest features; "
                "apply to a live workspace to serve",
            )
        call.workspace = snapshot.name
        return snapshot

    def _service(self, call: Call) -> ServiceRead:
        snapshot = self._workspace(call)
        name = call.params.get("featureServiceName")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "params.featureServiceName is required (a string)")
        service = snapshot.services.get(name)
        if service is None:
            known = ", ".join(sorted(snapshot.services)) or "none"
            raise ApiError(
                404,
                f"feature service {name!r:.130} not found in workspace {snapshot.name!r} (services: {known})",
            )
        call.service = service.name
        partial = call.params.get("allowPartialResults")
        if partial is not None and not isinstance(partial, bool):
            raise ApiError(400, "params.allowPartialResults must be true or false")
        if not service.online_serving_enabled:
            raise ApiError(400, f"feature service {name!r} has online serving disabled")
        return service

    def _resolve(self, call: Call) -> _ServicePlan:
        """``_plan(_service(call))``, remembered per (workspace, service) for as long as the workspace's
        snapshot is the one being served: a repeated call checks only what depends on the caller."""
        params = call.params
        workspace = params.get("workspaceName")
        name = params.get("featureServiceName")
        if type(workspace) is str and type(name) is str:
            hit = self._resolved_plan(workspace, name)
            if hit is not None:
                identity = call.identity
                partial = params.get("allowPartialResults")
                if (identity is None or identity.can(call.route.permission, workspace)) and (
                    partial is None or type(partial) is bool
                ):
                    call.workspace = hit[0].name
                    call.service = hit[1].service.name
                    return hit[1]
        service = self._service(call)  # every check, and its error when one fails
        plan = self._plan(service)
        snapshot = self.snapshots.cached(call.workspace)
        if snapshot is not None and snapshot.services.get(service.name) is service:
            if len(self._resolved) > 1000:
                self._resolved.clear()
            self._resolved[(workspace, name)] = (snapshot, plan)  # type: ignore[index]
        return plan

    def _resolved_plan(self, workspace: str, name: str) -> tuple[WorkspaceSnapshot, _ServicePlan] | None:
        """The snapshot and plan ``_resolve`` remembered for (workspace, service), while that snapshot
        is still the one being served."""
        hit = self._resolved.get((workspace, name))
        return hit if hit is not None and self.snapshots.cached(workspace) is hit[0] else None

    def _plan(self, service: ServiceRead) -> _ServicePlan:
        plan = self._plans.get(id(service))
        if plan is not None and plan.service is service:
            return plan
        metadata = [
            {"name": name, "dataType": api_type(dtype)}
            for name, dtype in zip(service.feature_names, service.feature_types, strict=True)
        ]
        views = [
            _ViewPlan(v.ttl_us, len(v.features), _extractor(v.features, len(v.spec.features)))
            for v in service.views
        ]
        key_types = tuple(int if t.name == "int64" else str for _, t in service.join_keys)
        positions = {name: i for i, (name, _) in enumerate(service.join_keys)}
        whole_key = tuple(range(len(service.join_keys)))
        reads = []
        for view in service.reads:  # the views stored online; realtime views are computed
            index = tuple(positions[k] for k in view.join_keys)
            reads.append((view.table_id, None if index == whole_key else index))
        names = tuple(k for k, _ in service.join_keys)
        table_ids = tuple(t for t, _ in reads) if all(i is None for _, i in reads) else None
        layout = [(v.ttl_us, v.features, len(v.spec.features)) for v in service.views]
        as_json = None
        if table_ids is not None and service.computed is None:
            as_json = _json_assembler(
                [v.features for v in service.views], [len(v.spec.features) for v in service.views]
            )
        plan = _ServicePlan(
            service,
            metadata,
            views,
            names,
            key_types,
            reads,
            table_ids,
            _assembler(layout),
            as_json,
            tuple(v.ttl_us for v in service.views),
        )
        if len(self._plans) > 1000:
            self._plans.clear()
        self._plans[id(service)] = plan
        return plan

    def _join_keys(self, plan: _ServicePlan, join_key_map: Any, where: str = "params") -> tuple:
        """The join-key values in the service's key order (checked and coerced)."""
        key = _well_formed_key(plan, join_key_map)
        if key is not None:
            return key
        service = plan.service
        if not isinstance(join_key_map, dict):
            raise ApiError(400, f"{where}.joinKeyMap is required: an object of join key names to values")
        expected = service.join_keys
        if len(join_key_map) != len(expected) or any(k not in join_key_map for k, _ in expected):
            names = {k for k, _ in expected}
            described = ", ".join(f"{k} ({t})" for k, t in expected)
            unknown = sorted(str(k) for k in join_key_map if k not in names)
            if unknown:
                raise ApiError(
                    400,
                    f"{where}: unknown join key(s) {', '.join(unknown):.200} for feature service "
                    f"{service.name!r}; expected {described}",
                )
        missing = [k for k, _ in expected if join_key_map.get(k) is None]
        if missing:
            raise ApiError(
                400,
                f"{where}: missing join key(s) {', '.join(missing)} for feature service {service.name!r} "
                f"(expected {', '.join(f'{k} ({t})' for k, t in expected)})",
            )
        try:
            return tuple(coerce_key(k, join_key_map[k], t) for k, t in expected)
        except ApiError as exc:
            raise ApiError(400, f"{where}: {exc.message}") from None

    def _read(self, plan: _ServicePlan, keys: list[tuple], as_json: bool = False) -> tuple[list[Any], float]:
        """Every view's row for every key (entity-major), in one store round trip; with ``as_json``
        (for ``plan.assemble_json``), one ``read_encoded`` tuple per key, ttl applied."""
        started = time.perf_counter()
        try:
            if as_json:
                rows = self.online_store.read_encoded(plan.table_ids, keys, plan.fresh_after(now_us()))  # type: ignore[arg-type]
            elif plan.table_ids is not None:
                rows = self.online_store.read_entities(plan.table_ids, keys)
            else:
                rows = self.online_store.read(self._requests(plan, keys))
        except Exception as exc:
            self.metrics.store_errors.inc("read")
            log.exception("online store read failed")
            raise ApiError(503, f"the online store is unavailable ({type(exc).__name__}); retry") from None
        seconds = time.perf_counter() - started
        self.metrics.store_latency.observe(seconds, "read")
        return rows, seconds

    @staticmethod
    def _complete(
        plan: _ServicePlan, rows: list[OnlineValue | None], contexts: list[Any]
    ) -> tuple[list[OnlineValue | None], float | None]:
        """Each entity's rows for every view of the service: the stored ones as read, realtime views
        computed from the request context, empty-window values for aggregates of unseen entities."""
        computed = plan.service.computed
        if computed is None:
            return rows, None
        width = len(plan.reads)
        complete: list[OnlineValue | None] = []
        seconds: float | None = None
        try:
            for e, context in enumerate(contexts):
                entity, spent = computed.complete(rows[e * width : (e + 1) * width], context)
                complete += entity
                if spent is not None:
                    seconds = (seconds or 0.0) + spent
        except ComputeError as exc:
            raise ApiError(exc.status, exc.message) from None
        return complete, seconds

    # -- endpoints -------------------------------------------------------------------------------

    @staticmethod
    def _options(options: Any) -> dict[str, bool]:
        if options is None:
            return NO_OPTIONS
        if not isinstance(options, dict):
            raise ApiError(400, "params.metadataOptions must be an object")
        for name in METADATA_OPTIONS:
            if options.get(name) is not None and not isinstance(options[name], bool):
                raise ApiError(400, f"params.metadataOptions.{name} must be true or false")
        return {name: options.get(name) is True for name in METADATA_OPTIONS}

    @staticmethod
    def _feature_metadata(
        plan: _ServicePlan, want: dict[str, bool], statuses: list[Any] | None, times: list[int | None]
    ) -> list[dict[str, Any]] | None:
        """``metadata.features``: the requested fields of each feature. A status is a string for one
        entity and a list (one per row) for a batch."""
        if not (
            want["includeNames"]
            or want["includeDataTypes"]
            or want["includeEffectiveTimes"]
            or want["includeServingStatus"]
        ):
            return None
        entries = []
        for i, base in enumerate(plan.metadata):
            entry: dict[str, Any] = {}
            if want["includeNames"]:
                entry["name"] = base["name"]
            if want["includeDataTypes"]:
                entry["dataType"] = base["dataType"]
            if want["includeEffectiveTimes"] and times[i] is not None:
                entry["effectiveTime"] = format_time_us(times[i])  # type: ignore[arg-type]
            if statuses is not None:
                entry["status"] = statuses[i]
            entries.append(entry)
        return entries if any(entries) else None

    @staticmethod
    def _check_context(value: Any, where: str) -> None:
        if value is not None and not isinstance(value, dict):
            raise ApiError(400, f"{where}.requestContextMap must be an object")

    def _get_features(self, call: Call) -> dict[str, Any]:
        plan = self._resolve(call)
        params = call.params
        context = params.get("requestContextMap")
        if context is not None:
            self._check_context(context, "params")
        options = params.get("metadataOptions")
        if options is None and plan.service.computed is None:  # values only, all of them read
            key = self._join_keys(plan, params.get("joinKeyMap"))
            if plan.assemble_json is not None:
                rows, _ = self._read(plan, [key], as_json=True)
                return {"result": plan.assemble_json(rows)[0]}
            rows, _ = self._read(plan, [key])
            return {"result": plan.assemble(rows, now_us())[0]}
        return self.read_features(plan.service, params.get("joinKeyMap"), options, context)

    def read_features(
        self,
        service: ServiceRead,
        join_key_map: Any,
        options: dict[str, Any] | None,
        request_context_map: Any = None,
    ) -> dict[str, Any]:
        """The get-features answer for one entity of a resolved service."""
        started = time.perf_counter()
        want = self._options(options)
        plan = self._plan(service)
        key = self._join_keys(plan, join_key_map)
        rows, store_seconds = self._read(plan, [key])
        rows, compute_seconds = self._complete(plan, rows, [request_context_map])
        if want is NO_OPTIONS:  # the common case: values only
            return {"result": plan.assemble(rows, now_us())[0]}
        detail = want["includeServingStatus"] or want["includeEffectiveTimes"]
        vectors, presents, row_times = self._vectors(plan, rows, now_us(), detail)
        values = vectors[0]
        present = presents[0] if detail else []
        times = row_times[0] if detail else []
        answer: dict[str, Any] = {"result": {"features": values}}
        metadata: dict[str, Any] = {}
        statuses = [STATUS[p] for p in present] if want["includeServingStatus"] else None
        entries = self._feature_metadata(plan, want, statuses, times)
        if entries:
            metadata["features"] = entries
        if want["includeSloInfo"]:
            metadata["sloInfo"] = self._slo(started, store_seconds, compute_seconds)
        if metadata:
            answer["metadata"] = metadata
        return answer

    @staticmethod
    def _requests(plan: _ServicePlan, keys: list[tuple]) -> list[tuple[str, tuple]]:
        """(table_id, view key) for every view of every entity, entity-major: one store round trip."""
        return [
            (table_id, key if index is None else tuple(key[i] for i in index))
            for key in keys
            for table_id, index in plan.reads
        ]

    @staticmethod
    def _vectors(
        plan: _ServicePlan, rows: list[OnlineValue | None], now: int, detail: bool
    ) -> tuple[list[list[Any]], list[list[bool]], list[list[int | None]]]:
        """Each entity's feature values (``rows`` holds each entity's views in order) and, with
        ``detail``, per feature whether it is present and its event time. Works view by view over
        all entities (comprehensions rather than a loop per value): batches are dominated by it."""
        width = len(plan.views)
        if len(rows) == width and not detail:  # one entity: no per-view columns needed
            values: list[Any] = []
            for view, row in zip(plan.views, rows, strict=True):
                if row is not None and (view.ttl_us is None or now - row.event_ts < view.ttl_us):
                    values += view.extract(row.values)
                else:
                    values += [None] * view.width
            return [values], [], []
        columns: list[list[list[Any]]] = []
        fresh_columns: list[list[bool]] = []
        for v, view in enumerate(plan.views):
            part = rows[v::width]
            oldest = -1 << 62 if view.ttl_us is None else now - view.ttl_us
            fresh = [r is not None and r.event_ts > oldest for r in part]
            nones = [None] * view.width
            extract = view.extract
            columns.append([extract(r.values) if f else nones for r, f in zip(part, fresh, strict=True)])  # type: ignore[union-attr]
            fresh_columns.append(fresh)
        if width == 1:
            vectors = [list(values) for values in columns[0]]
        elif width == 2:
            vectors = [a + b for a, b in zip(columns[0], columns[1], strict=True)]
        else:
            vectors = [list(chain.from_iterable(parts)) for parts in zip(*columns, strict=True)]
        if not detail:
            return vectors, [], []
        present: list[list[bool]] = []
        times: list[list[int | None]] = []
        for e in range(len(vectors)):
            row_present: list[bool] = []
            row_times: list[int | None] = []
            for v, view in enumerate(plan.views):
                fresh = fresh_columns[v][e]
                row_present += [fresh] * view.width
                row_times += [rows[e * width + v].event_ts if fresh else None] * view.width  # type: ignore[union-attr]
            present.append(row_present)
            times.append(row_times)
        return vectors, present, times

    @staticmethod
    def _slo(started: float, store_seconds: float, compute_seconds: float | None = None) -> dict[str, Any]:
        server = time.perf_counter() - started
        slo = {
            "sloEligible": True,
            "sloServerTimeSeconds": round(server, 6),
            "serverTimeSeconds": round(server, 6),
            "storeMaxLatency": round(store_seconds, 6),
        }
        if compute_seconds is not None:  # realtime feature views' functions
            slo["realtimeComputeSeconds"] = round(compute_seconds, 6)
        return slo

    def _get_features_batch(self, call: Call) -> dict[str, Any]:
        started = time.perf_counter()
        plan = self._resolve(call)
        service = plan.service
        options = self._options(call.params.get("metadataOptions"))
        data = call.params.get("requestData")
        if not isinstance(data, list) or not data:
            raise ApiError(
                400, 'params.requestData is required: a non-empty list of {"joinKeyMap": {...}} objects'
            )
        if len(data) > self.max_batch_rows:
            raise ApiError(
                413,
                f"params.requestData has {len(data)} rows; the limit is {self.max_batch_rows} per request "
                "(serving.max_batch_rows)",
            )
        single = plan.key_names[0] if len(plan.key_names) == 1 and plan.key_types[0] is str else None
        keys = _plain_string_keys(data, single) if single is not None else None
        if keys is not None:
            contexts: list[Any] = [None] * len(keys)
        else:
            keys, contexts = self._batch_keys(plan, data)
        self.metrics.batch_rows.observe(len(keys), service.name)
        detail = options["includeServingStatus"] or options["includeEffectiveTimes"]
        compute_seconds = None
        if not detail and plan.assemble_json is not None:  # values only, all of them stored
            rows, store_seconds = self._read(plan, keys, as_json=True)
            results = plan.assemble_json(rows)
        else:
            rows, store_seconds = self._read(plan, keys)
            rows, compute_seconds = self._complete(plan, rows, contexts)
            if detail:
                vectors, present, times = self._vectors(plan, rows, now_us(), detail)
                results = [{"features": values} for values in vectors]
            else:
                results = plan.assemble(rows, now_us())
        latest: list[int | None] = [None] * len(plan.metadata)
        for row_times in times if detail else ():
            for i, t in enumerate(row_times):
                if t is not None and (latest[i] is None or t > latest[i]):  # type: ignore[operator]
                    latest[i] = t
        answer: dict[str, Any] = {"result": results}
        metadata: dict[str, Any] = {}
        statuses = (
            [[STATUS[row[i]] for row in present] for i in range(len(plan.metadata))]
            if options["includeServingStatus"]
            else None
        )
        entries = self._feature_metadata(plan, options, statuses, latest)
        if entries:
            metadata["features"] = entries
        if options["includeSloInfo"]:
            metadata["batchSloInfo"] = self._slo(started, store_seconds, compute_seconds)
        if metadata:
            answer["metadata"] = metadata
        return answer

    def _batch_keys(self, plan: _ServicePlan, data: list[Any]) -> tuple[list[tuple], list[Any]]:
        """Each requestData row's join-key values (checked and coerced) and request context."""
        keys: list[tuple] = []
        contexts: list[Any] = []
        for i, row in enumerate(data):
            where = f"params.requestData[{i}]"
            if type(row) is not dict:
                raise ApiError(400, f"{where} must be an object with a joinKeyMap")
            context = row.get("requestContextMap")
            self._check_context(context, where)
            contexts.append(context)
            keys.append(self._join_keys(plan, row.get("joinKeyMap"), where))
        return keys, contexts

    def _metadata(self, call: Call) -> dict[str, Any]:
        service = self._service(call)
        return {
            "featureServiceType": "DEFAULT",
            "inputJoinKeys": [{"name": k, "dataType": api_type(t)} for k, t in service.join_keys],
            "inputRequestContextKeys": [
                {"name": k, "dataType": api_type(t)} for k, t in service.request_context
            ],
            "featureValues": self._plan(service).metadata,
        }

    def _ingest(self, call: Call) -> dict[str, Any]:
        from featureplane.ingest.records import RecordError
        from featureplane.ingest.service import IngestUnavailable, TooManyRecords

        snapshot = self._workspace(call)
        if self.ingestor is None:
            raise ApiError(404, "this server does not accept ingest requests")
        dry_run = call.params.get("dryRun")
        if dry_run is not None and not isinstance(dry_run, bool):
            raise ApiError(400, "dryRun must be true or false")
        try:
            result = self.ingestor.ingest(
                snapshot.name, snapshot.ingest, call.params.get("records"), dry_run is True
            )
        except RecordError as exc:
            raise ApiError(400, str(exc)) from None
        except TooManyRecords as exc:
            raise ApiError(413, str(exc)) from None
        except IngestUnavailable as exc:
            self.metrics.store_errors.inc("write")
            raise ApiError(503, str(exc)) from None
        if not dry_run:
            for count in result.counts.values():
                self.metrics.ingested.inc(snapshot.name, count.view, "online", amount=count.online)
                self.metrics.ingested.inc(snapshot.name, count.view, "offline", amount=count.offline)
        return result.to_api()
