"""Serving monitoring: request metrics and a sample of served feature vectors, off the request path.

``LookupService.handle`` hands every answered request to ``ServingMonitor.record``, which puts a
configurable sample of successful lookups (request and response) on a bounded queue. A background
thread turns queued items into records of the served feature vectors and writes them to a
``FeatureLogSink`` (JSON lines under ``monitoring.serving_log.path`` by default; any class named by
``monitoring.serving_log.sink`` in production), and writes the service's request metrics (the same
counters ``GET /metrics`` exports: requests, client and server errors, a latency histogram per
workspace and feature service) to a small stats file that the Dagster code location reads. A full
queue drops the sample and counts the drop: monitoring never slows or fails a request.

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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from featureplane.config import MonitoringSettings

if TYPE_CHECKING:
    from featureplane.config import Config
    from featureplane.serving.protocol import Request, Response
    from featureplane.serving.service import LookupService

log = logging.getLogger("featureplane.serving")

SAMPLED_ENDPOINTS = ("get-features", "get-features-batch")
DRAIN_SECONDS = 0.2  # how often queued samples are written


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
            groups.setdefault(group, []).append(orjson.dumps(record))
        for (workspace, service, day), lines in groups.items():
            target = self.file_for(workspace, service, day)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "ab") as out:
                out.write(b"\n".join(lines) + b"\n")


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

    def record(
        self, request: Request, response: Response, endpoint: str, workspace: str, service: str
    ) -> None:
        """Maybe sample an answered request (its counts are already in the service's metrics), labelled
        with the workspace and feature service the core resolved."""
        rate = self.sample_rate
        if rate <= 0 or response.status != 200 or endpoint not in SAMPLED_ENDPOINTS:
            return
        if rate < 1 and random.random() >= rate:
            return
        try:
            self._queue.put_nowait(
                (self.clock(), (workspace, service, endpoint), request.body, response.body)
            )
        except queue.Full:
            self.dropped += 1

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
        """The served feature vectors of one sampled request (a batch answers one per row). Batches
        make this the monitor's main cost, so rows are built with comprehensions, not per-row calls."""
        workspace, service_name, _ = labels
        snapshot = self.service.snapshots.get(workspace)
        service = snapshot.services[service_name]
        names = service.feature_names
        int64 = [i for i, t in enumerate(service.feature_types) if t.name == "int64"]
        params = orjson.loads(body)["params"]
        result = orjson.loads(answer)["result"]
        if isinstance(result, dict):
            join_keys = [params.get("joinKeyMap", params.get("join_key_map")) or {}]
            vectors = [result.get("features") or []]
        else:  # a batch answer: one result per requestData row
            requests = params.get("requestData", params.get("request_data")) or []
            try:
                join_keys = [row["joinKeyMap"] for row in requests]
            except (KeyError, TypeError):
                join_keys = [
                    (r or {}).get("joinKeyMap", (r or {}).get("join_key_map")) or {} for r in requests
                ]
            vectors = [(f or {}).get("features") or [] for f in result]
        for i in int64:  # int64 values are served as strings: back to numbers
            for values in vectors:
                if i < len(values) and type(values[i]) is str:
                    values[i] = int(values[i])
        stamp = datetime.fromtimestamp(served_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        common = {
            "served_at": stamp,
            "workspace": workspace,
            "service": service_name,
            "registry_version": snapshot.version,
        }
        return [
            {**common, "join_keys": keys, "features": dict(zip(names, values, strict=False))}
            for keys, values in zip(join_keys, vectors, strict=False)
        ]

    def stats(self) -> dict[str, Any]:
        """The stats file's document: this process's cumulative per-service request metrics."""
        metrics = self.service.metrics
        return {
            "process": self.process,
            "started_at": metrics.started_at,
            "updated_at": time.time(),
            "buckets_ms": [bound * 1000.0 for bound in metrics.latency.buckets],
            "dropped_samples": self.dropped,
            "services": metrics.service_stats(),
        }

    def write_stats(self) -> None:
        if self.stats_path is None:
            return
        target = self.stats_path / f"{self.process}.json"
        try:
            with self._stats_lock:
                self.stats_path.mkdir(parents=True, exist_ok=True)
                temporary = target.with_suffix(".tmp")
                temporary.write_bytes(orjson.dumps(self.stats()))
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
