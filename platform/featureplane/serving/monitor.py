"""Serving monitoring: request metrics and a sample of served feature vectors, off the request path.

``LookupService.handle`` hands every request to ``ServingMonitor.observe``, which times it, counts it
under its workspace and feature service (requests, client errors, server errors, a latency histogram)
and, for a configurable sample of successful lookups, puts the request and response on a bounded
queue. A background thread turns queued items into records of the served feature vectors and writes
them to a ``FeatureLogSink`` (JSON lines under ``monitoring.serving_log.path`` by default; any class
named by ``monitoring.serving_log.sink`` in production), and writes the metrics to a small stats file
that the Dagster code location reads. A full queue drops the sample and counts the drop: monitoring never
slows or fails a request.

Standard library and orjson only: this runs inside the lookup service (and its Lambda handler).
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import random
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from featureplane.monitoring.settings import MonitoringSettings

if TYPE_CHECKING:
    from featureplane.config import Config
    from featureplane.serving.core import Call, LookupService, Request, Response

log = logging.getLogger("featureplane.serving")

# Upper bounds (milliseconds) of the latency histogram's buckets; the last bucket is unbounded.
LATENCY_BUCKETS_MS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
FEATURE_ENDPOINTS = {
    "/api/v1/feature-service/get-features": "get-features",
    "/api/v1/feature-service/get-features-batch": "get-features-batch",
    "/api/v1/feature-service/metadata": "metadata",
}
SAMPLED_ENDPOINTS = ("get-features", "get-features-batch")
DRAIN_SECONDS = 0.2  # how often queued samples are written
_FEATURE_ENDPOINT_NAMES = frozenset(FEATURE_ENDPOINTS.values())


class FeatureLogSink:
    """Where sampled served feature vectors go. Subclass it for production (a stream, a bucket)."""

    def write(self, records: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JsonlSink(FeatureLogSink):
    """``<path>/<workspace>/<feature service>/<YYYY-MM-DD>.jsonl``, one served vector per line (UTC day)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def file_for(self, workspace: str, service: str, day: str) -> Path:
        return self.path / workspace / service / f"{day}.jsonl"

    def write(self, records: list[dict[str, Any]]) -> None:
        groups: dict[tuple[str, str, str], list[bytes]] = {}  # one path per file, not per record
        for record in records:
            group = (record["workspace"], record["service"], record["served_at"][:10])
            lines = groups.get(group)
            if lines is None:
                lines = groups[group] = []
            lines.append(orjson.dumps(record))
        for (workspace, service, day), lines in groups.items():
            target = self.file_for(workspace, service, day)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "ab") as out:
                out.write(b"\n".join(lines) + b"\n")


class ServingStats:
    """Cumulative request counters and latency histograms per (workspace, feature service)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, dict[str, Any]] = {}
        self.started_at = time.time()

    def record(self, workspace: str, service: str, status: int, seconds: float) -> None:
        ms = seconds * 1000.0
        bucket = bisect_left(LATENCY_BUCKETS_MS, ms)  # the first bound at or above it; past all: the last
        key = f"{workspace}/{service}"
        with self._lock:
            entry = self._services.get(key)
            if entry is None:
                entry = self._services[key] = {
                    "workspace": workspace,
                    "service": service,
                    "requests": 0,
                    "errors": 0,
                    "client_errors": 0,
                    "latency_ms_sum": 0.0,
                    "latency_buckets": [0] * (len(LATENCY_BUCKETS_MS) + 1),
                }
            entry["requests"] += 1
            if status >= 500:
                entry["errors"] += 1
            elif status >= 400:
                entry["client_errors"] += 1
            entry["latency_ms_sum"] += ms
            entry["latency_buckets"][bucket] += 1

    def snapshot(self, process: str, dropped: int) -> dict[str, Any]:
        with self._lock:
            services = {
                k: {**v, "latency_buckets": list(v["latency_buckets"])} for k, v in self._services.items()
            }
        return {
            "process": process,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "buckets_ms": list(LATENCY_BUCKETS_MS),
            "dropped_samples": dropped,
            "services": services,
        }


def _labels(request: Request) -> tuple[str, str, str] | None:
    """The workspace, feature service and endpoint of a feature-service request."""
    endpoint = FEATURE_ENDPOINTS.get(request.path.split("?", 1)[0].rstrip("/"))
    if endpoint is None or not request.body:
        return None
    try:
        params = orjson.loads(request.body).get("params") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(params, dict):
        return None
    workspace = params.get("workspaceName", params.get("workspace_name"))
    service = params.get("featureServiceName", params.get("feature_service_name"))
    if isinstance(workspace, str) and isinstance(service, str):
        return workspace, service, endpoint
    return None


def _call_labels(call: Call) -> tuple[str, str, str] | None:
    """``_labels`` from a parsed call: its parameters are the body's, snake_case spellings renamed."""
    endpoint = call.route.endpoint
    if endpoint not in _FEATURE_ENDPOINT_NAMES:
        return None
    params = call.params
    workspace = params.get("workspaceName")
    service = params.get("featureServiceName")
    if type(workspace) is str and type(service) is str:
        return workspace, service, endpoint
    return None


class ServingMonitor:
    """Metrics and sampled feature logging for one LookupService (see the module docstring)."""

    def __init__(
        self,
        service: LookupService,
        *,
        sample_rate: float = 0.1,
        sink: FeatureLogSink | None = None,
        stats_path: str | os.PathLike | None = None,
        stats_interval: float = 10.0,
        queue_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.sample_rate = sample_rate if sink is not None else 0.0
        self.sink = sink
        self.stats = ServingStats()
        self.stats_path = Path(stats_path) if stats_path else None
        self.stats_interval = stats_interval
        self.clock = clock
        self.process = f"{socket.gethostname()}-{os.getpid()}"
        self.dropped = 0
        self.logged = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="featureplane-serving-monitor", daemon=True)
        self._thread.start()

    # -- the request path ------------------------------------------------------------------------

    def observe(self, request: Request, handler: Callable[[Request], Response]) -> Response:
        started = time.perf_counter()
        response = handler(request)
        self.record(request, None, response, time.perf_counter() - started)
        return response

    def record(self, request: Request, call: Call | None, response: Response, elapsed: float) -> None:
        """Count an answered request (and maybe sample it). ``call`` is the core's parsed call when it
        got that far: its parameters label the request without parsing the body again."""
        try:
            labels = _labels(request) if call is None else _call_labels(call)
            if labels is not None:
                self.stats.record(labels[0], labels[1], response.status, elapsed)
                if (
                    response.status == 200
                    and labels[2] in SAMPLED_ENDPOINTS
                    and self.sample_rate > 0
                    and (self.sample_rate >= 1 or random.random() < self.sample_rate)
                ):
                    self._queue.put_nowait((self.clock(), labels, request.body, response.body))
        except queue.Full:
            self.dropped += 1
        except Exception:  # monitoring must never fail a request
            log.debug("serving monitor failed to record a request", exc_info=True)

    # -- the background thread -------------------------------------------------------------------

    def _run(self) -> None:
        # Samples are drained every DRAIN_SECONDS rather than as each arrives: a thread woken for every
        # sample competes with the request threads for the interpreter at every tenth request.
        next_stats = time.monotonic() + self.stats_interval
        while not self._stop.is_set():
            self._stop.wait(max(0.0, min(DRAIN_SECONDS, next_stats - time.monotonic())))
            items = []
            try:
                while len(items) < 10_000:
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            if items:
                self._write_samples(items)
                for _ in items:
                    self._queue.task_done()
            if time.monotonic() >= next_stats:
                self.write_stats()
                next_stats = time.monotonic() + self.stats_interval

    def _write_samples(self, items: list[tuple]) -> None:
        records = []
        for served_at, labels, body, answer in items:
            try:
                records += self._records(served_at, labels, body, answer)
            except Exception:
                log.debug("could not decode a served feature vector", exc_info=True)
        if not records or self.sink is None:
            return
        try:
            self.sink.write(records)
            self.logged += len(records)
        except Exception as exc:
            self.dropped += len(records)
            log.warning("feature logging sink failed, %d served vector(s) dropped: %s", len(records), exc)

    def _records(
        self, served_at: float, labels: tuple[str, str, str], body: bytes, answer: bytes
    ) -> list[dict]:
        workspace, service_name, _ = labels
        snapshot = self.service.snapshots.get(workspace)
        service = snapshot.services[service_name]
        names = service.feature_names
        int64 = [n for n, t in zip(names, service.feature_types, strict=True) if t.name == "int64"]
        params = orjson.loads(body)["params"]
        result = orjson.loads(answer)["result"]
        if isinstance(result, dict):
            rows = [
                (params.get("joinKeyMap", params.get("join_key_map")) or {}, result.get("features") or [])
            ]
        else:  # a batch answer: one result per requestData row
            requests = params.get("requestData", params.get("request_data")) or []
            rows = [
                (
                    (r or {}).get("joinKeyMap", (r or {}).get("join_key_map")) or {},
                    (f or {}).get("features") or [],
                )
                for r, f in zip(requests, result, strict=False)
            ]
        stamp = datetime.fromtimestamp(served_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        records = []
        for join_keys, values in rows:
            features = dict(zip(names, values, strict=False))
            for name in int64:  # int64 values are served as strings: back to numbers
                value = features.get(name)
                if isinstance(value, str):
                    features[name] = int(value)
            records.append(
                {
                    "served_at": stamp,
                    "workspace": workspace,
                    "service": service_name,
                    "registry_version": snapshot.version,
                    "join_keys": join_keys,
                    "features": features,
                }
            )
        return records

    def write_stats(self) -> None:
        if self.stats_path is None:
            return
        target = self.stats_path / f"{self.process}.json"
        try:
            with self._stats_lock:
                self.stats_path.mkdir(parents=True, exist_ok=True)
                temporary = target.with_suffix(".tmp")
                temporary.write_bytes(orjson.dumps(self.stats.snapshot(self.process, self.dropped)))
                os.replace(temporary, target)
        except OSError as exc:
            log.warning("could not write serving stats to %s: %s", self.stats_path, exc)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued samples are written, then write the stats file (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        self.write_stats()

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._thread.join(timeout=5)
        if self.sink is not None:
            self.sink.close()


def load_sink(settings: MonitoringSettings) -> FeatureLogSink | None:
    """The sink named in featureplane.yaml: a class ``package.module:Name`` or the JSON-lines default."""
    if not settings.serving_log_enabled or settings.sample_rate <= 0:
        return None
    if settings.serving_log_sink:
        module, _, name = str(settings.serving_log_sink).partition(":")
        cls = getattr(importlib.import_module(module), name)
        return cls(**settings.serving_log_options)
    return JsonlSink(settings.serving_log_path)


def attach_monitor(service: LookupService, config: Config) -> ServingMonitor | None:
    """Turn on serving monitoring for ``service`` as featureplane.yaml's ``monitoring`` section says.

    On AWS Lambda (no lasting local disk) the local files are off unless their paths are set: only a
    sink class named in the configuration logs served vectors there."""
    settings = MonitoringSettings.from_config(config)
    sink = load_sink(settings)
    stats = settings.serving_stats_enabled
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        raw = config.monitoring or {}
        if isinstance(sink, JsonlSink) and "path" not in (raw.get("serving_log") or {}):
            sink = None
        stats = stats and "path" in (raw.get("serving_stats") or {})
    if sink is None and not stats:
        return None
    service.monitor = ServingMonitor(
        service,
        sample_rate=settings.sample_rate,
        sink=sink,
        stats_path=settings.serving_stats_path if stats else None,
        stats_interval=settings.stats_interval_seconds,
        queue_size=settings.queue_size,
    )
    return service.monitor
