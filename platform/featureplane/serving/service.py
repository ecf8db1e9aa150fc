"""The lookup service: a request (method, path, headers, body) in, a response out.

Both the local HTTP server (``featureplane serve``) and the AWS Lambda handler call ``handle``. Every
failure becomes a JSON error with the right status and a message a person can act on; nothing a client
sends produces a 500.

Endpoints (Tecton's HTTP API v1 shapes): ``get-features``, ``get-features-batch`` and ``metadata``
under ``/api/v1/feature-service/``, ``/api/v1/ingest``, ``/healthz`` and ``/metrics``. With a key
verifier, every ``/api/v1`` call needs ``Authorization: Tecton-key <key>`` (or ``Bearer <key>``): 401
without a valid key, checked before anything about workspaces is revealed; 403 when the key's roles do
not allow the endpoint on the requested workspace.

Its parts: ``protocol`` (the wire shapes), ``requests`` (parsing and validation), ``auth`` (API keys),
``resolve`` (from a call to the per-service ``plan``), ``assemble`` (vectors in the API's form).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from featureplane.access.roles import Permission
from featureplane.online_stores.base import OnlineStore, OnlineValue
from featureplane.serving.assemble import feature_metadata, feature_vectors, slo_info
from featureplane.serving.auth import RequestAuthenticator
from featureplane.serving.metrics import CONTENT_TYPE, ServingMetrics
from featureplane.serving.plan import ServicePlan
from featureplane.serving.protocol import (
    ERROR_REASONS,
    GET_FEATURES_PATH,
    NO_OPTIONS,
    STATUS,
    ApiError,
    Call,
    Request,
    Response,
    Route,
    error_response,
)
from featureplane.serving.realtime import ComputeError
from featureplane.serving.requests import (
    batch_keys,
    check_context,
    join_keys,
    parse_options,
    parse_params,
    plain_string_keys,
    well_formed_key,
)
from featureplane.serving.resolve import ServiceResolver
from featureplane.serving.snapshot import ServiceRead, SnapshotCache, now_us
from featureplane.types import api_type

if TYPE_CHECKING:
    from featureplane.access.verifier import KeyVerifier
    from featureplane.ingest.records import IngestTarget
    from featureplane.ingest.service import Ingestor

log = logging.getLogger("featureplane.serving")


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
        clock: Callable[[], int] = now_us,
    ) -> None:
        """``clock`` gives the request time in microseconds since the epoch (aggregate windows end
        at it; realtime views see it as ``context.request_timestamp``)."""
        self.clock = clock
        self.snapshots = snapshots
        self.online_store = online_store
        self.verifier = verifier
        self.ingestor = ingestor
        self.metrics = metrics or ServingMetrics()
        self.max_body_bytes = max_body_bytes
        self.max_batch_rows = max_batch_rows
        self.resolver = ServiceResolver(snapshots)
        self.auth = RequestAuthenticator(verifier) if verifier is not None else None
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
        if request.path != GET_FEATURES_PATH or request.method != "POST":
            return None
        started = time.perf_counter()
        body = request.body
        if len(body) > self.max_body_bytes:
            return None
        identity = None
        if self.auth is not None:
            identity = self.auth.known_identity(request)
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
        hit = self.resolver.resolved_plan(workspace, name)
        if hit is None:
            return None
        plan = hit[1]
        assemble = plan.assemble_json
        if assemble is None:
            return None
        if identity is not None and not identity.can(Permission.READ_FEATURES, workspace):
            return None
        key = well_formed_key(plan, join_key_map)
        if key is None:
            return None
        read_started = time.perf_counter()
        try:
            rows = self.online_store.read_encoded(plan.table_ids, [key], plan.fresh_after(self.clock()))  # type: ignore[arg-type]
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
                return self._health(), None, time.perf_counter() - started
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
            identity = self.auth.authenticate(request, route) if self.auth is not None else None
            if len(request.body) > self.max_body_bytes:
                raise ApiError(
                    413, f"request body is {len(request.body)} bytes; the limit is {self.max_body_bytes}"
                )
            call = Call(request, route, parse_params(request.body, route.envelope), identity)
            response = Response(200, orjson.dumps(route.handler(call)))
        except ApiError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
        except Exception:
            log.exception("lookup request failed")
            response = error_response(500, "internal error while serving the request; see the server log")
        seconds = time.perf_counter() - started
        self._observe(endpoint, call, response.status, seconds)
        return response, call, seconds

    def _health(self) -> Response:
        """200 once a live workspace's registry snapshot is loaded; 503 with the reason until then."""
        ready, reason, workspaces = self.snapshots.readiness()
        if ready:
            return Response(200, orjson.dumps({"status": "ok", "workspaces": workspaces}))
        return Response(503, orjson.dumps({"status": "unavailable", "reason": reason}))

    def _observe(self, endpoint: str, call: Call | None, status: int, seconds: float) -> None:
        workspace = call.workspace if call is not None else ""
        service = call.service if call is not None else ""
        reason = ERROR_REASONS.get(status, str(status)) if status >= 400 else None
        self.metrics.observe_request(endpoint, workspace, service, status, seconds, reason)

    def _read(self, plan: ServicePlan, keys: list[tuple], as_json: bool = False) -> tuple[list[Any], float]:
        """Every view's row for every key (entity-major), in one store round trip; with ``as_json``
        (for ``plan.assemble_json``), one ``read_encoded`` tuple per key, ttl applied."""
        started = time.perf_counter()
        try:
            if as_json:
                rows = self.online_store.read_encoded(plan.table_ids, keys, plan.fresh_after(self.clock()))  # type: ignore[arg-type]
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

    def _complete(
        self, plan: ServicePlan, rows: list[OnlineValue | None], contexts: list[Any]
    ) -> tuple[list[OnlineValue | None], float | None]:
        """Each entity's rows for every view of the service: the stored ones as read, realtime views
        computed from the request context, empty-window values for aggregates of unseen entities."""
        computed = plan.service.computed
        if computed is None:
            return rows, None
        width = len(plan.reads)
        now = self.clock()
        complete: list[OnlineValue | None] = []
        seconds: float | None = None
        try:
            for e, context in enumerate(contexts):
                entity, spent = computed.complete(rows[e * width : (e + 1) * width], context, now)
                complete += entity
                if spent is not None:
                    seconds = (seconds or 0.0) + spent
        except ComputeError as exc:
            raise ApiError(exc.status, exc.message) from None
        return complete, seconds

    # -- endpoints -------------------------------------------------------------------------------

    def _get_features(self, call: Call) -> dict[str, Any]:
        plan = self.resolver.resolve(call)
        params = call.params
        context = params.get("requestContextMap")
        if context is not None:
            check_context(context, "params")
        options = params.get("metadataOptions")
        if options is None and plan.service.computed is None:  # values only, all of them read
            key = join_keys(plan, params.get("joinKeyMap"))
            if plan.assemble_json is not None:
                rows, _ = self._read(plan, [key], as_json=True)
                return {"result": plan.assemble_json(rows)[0]}
            rows, _ = self._read(plan, [key])
            return {"result": plan.assemble(rows, self.clock())[0]}
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
        want = parse_options(options)
        plan = self.resolver.plan(service)
        key = join_keys(plan, join_key_map)
        rows, store_seconds = self._read(plan, [key])
        rows, compute_seconds = self._complete(plan, rows, [request_context_map])
        if want is NO_OPTIONS:  # the common case: values only
            return {"result": plan.assemble(rows, self.clock())[0]}
        detail = want["includeServingStatus"] or want["includeEffectiveTimes"]
        vectors, presents, row_times = feature_vectors(plan, rows, now_us(), detail)
        values = vectors[0]
        present = presents[0] if detail else []
        times = row_times[0] if detail else []
        answer: dict[str, Any] = {"result": {"features": values}}
        metadata: dict[str, Any] = {}
        statuses = [STATUS[p] for p in present] if want["includeServingStatus"] else None
        entries = feature_metadata(plan, want, statuses, times)
        if entries:
            metadata["features"] = entries
        if want["includeSloInfo"]:
            metadata["sloInfo"] = slo_info(started, store_seconds, compute_seconds)
        if metadata:
            answer["metadata"] = metadata
        return answer

    @staticmethod
    def _requests(plan: ServicePlan, keys: list[tuple]) -> list[tuple[str, tuple]]:
        """(table_id, view key) for every view of every entity, entity-major: one store round trip."""
        return [
            (table_id, key if index is None else tuple(key[i] for i in index))
            for key in keys
            for table_id, index in plan.reads
        ]

    def _get_features_batch(self, call: Call) -> dict[str, Any]:
        started = time.perf_counter()
        plan = self.resolver.resolve(call)
        service = plan.service
        options = parse_options(call.params.get("metadataOptions"))
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
        keys = plain_string_keys(data, single) if single is not None else None
        if keys is not None:
            contexts: list[Any] = [None] * len(keys)
        else:
            keys, contexts = batch_keys(plan, data)
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
                vectors, present, times = feature_vectors(plan, rows, now_us(), detail)
                results = [{"features": values} for values in vectors]
            else:
                results = plan.assemble(rows, self.clock())
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
        entries = feature_metadata(plan, options, statuses, latest)
        if entries:
            metadata["features"] = entries
        if options["includeSloInfo"]:
            metadata["batchSloInfo"] = slo_info(started, store_seconds, compute_seconds)
        if metadata:
            answer["metadata"] = metadata
        return answer

    def _metadata(self, call: Call) -> dict[str, Any]:
        service = self.resolver.service(call)
        return {
            "featureServiceType": "DEFAULT",
            "inputJoinKeys": [{"name": k, "dataType": api_type(t)} for k, t in service.join_keys],
            "inputRequestContextKeys": [
                {"name": k, "dataType": api_type(t)} for k, t in service.request_context
            ],
            "featureValues": self.resolver.plan(service).metadata,
        }

    def replay_ingest_log(self) -> int:
        """Write records that reached the ingest log but not the online store (their server died, or
        their online write failed) to the online store: see ``featureplane.ingest.replay``. Returns
        the rows written; 0 without a log."""
        if self.ingestor is None or self.ingestor.log is None:
            return 0
        from featureplane.ingest.replay import replay_ingest_log

        return replay_ingest_log(self.ingestor.log, self.ingestor.online_store, self._ingest_targets)

    def _ingest_targets(self, workspace: str) -> dict[str, IngestTarget] | None:
        """A workspace's feature tables by table id: none for a workspace since deleted or not live,
        None while its registry state cannot be read."""
        from featureplane.registry.base import WorkspaceNotFound

        try:
            snapshot = self.snapshots.get(workspace)
        except WorkspaceNotFound:
            return {}
        except Exception:
            log.warning("cannot read workspace %s to replay its ingest log", workspace, exc_info=True)
            return None
        if not snapshot.live:
            return {}
        return {t.table_id: t for endpoint in snapshot.ingest.values() for t in endpoint.targets}

    def _ingest(self, call: Call) -> dict[str, Any]:
        from featureplane.ingest.records import RecordError
        from featureplane.ingest.service import IngestUnavailable, TooManyRecords

        snapshot = self.resolver.workspace(call)
        if self.ingestor is None:
            raise ApiError(404, "this server does not accept ingest requests")
        dry_run = call.params.get("dryRun")
        if dry_run is not None and not isinstance(dry_run, bool):
            raise ApiError(400, "dryRun must be true or false")
        try:
            result = self.ingestor.ingest(
                snapshot.name,
                snapshot.ingest,
                call.params.get("records"),
                dry_run is True,
                body_bytes=len(call.request.body),
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
