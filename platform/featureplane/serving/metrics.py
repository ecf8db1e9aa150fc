"""Serving metrics in the Prometheus text exposition format (version 0.0.4), standard library only.

Label values come from the server's own vocabulary (endpoint names, resolved workspace and service
names, status codes), never from raw client input, so a client cannot create unbounded series.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Upper bounds (seconds) of the request latency histogram's buckets, fine below 10 ms where lookups are.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
FEATURE_ENDPOINTS = frozenset(("get-features", "get-features-batch", "metadata"))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(
        self, name: str, help: str, labels: Sequence[str], lock: threading.Lock | None = None
    ) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._lock = lock or threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), lock: threading.Lock | None = None
    ) -> None:
        super().__init__(name, help, labels, lock)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def add_locked(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """``inc`` for a caller already holding this metric's lock."""
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
        lock: threading.Lock | None = None,
    ) -> None:
        super().__init__(name, help, labels, lock)
        self.buckets = tuple(sorted(buckets))
        # per label set: [count per bucket (non-cumulative, last is +Inf), sum]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            self.observe_locked(value, labels)

    def observe_locked(self, value: float, labels: tuple[str, ...]) -> None:
        """``observe`` for a caller already holding this metric's lock."""
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect_left(self.buckets, value)] += 1
        series[1][0] += value

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return sum(series[0]) if series else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        lines = self.header()
        for labels, (counts, total) in items:
            cumulative = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                bucket_labels = _labels(self.label_names, labels, 'le="' + le + '"')
                lines.append(f"{self.name}_bucket{bucket_labels} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, labels)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, labels)} {cumulative}")
        return lines


class ServingMetrics:
    """The lookup service's metrics: requests, latencies, online-store calls, errors and ingest.

    One set of counters with two readers: ``render`` for Prometheus (``GET /metrics``) and
    ``service_stats`` for the serving monitor's stats file, which Dagster's serving-health sensor reads.
    """

    def __init__(self) -> None:
        self.started_at = time.time()
        self._lock = threading.Lock()  # requests and latency are updated together, under one lock
        self.requests = Counter(
            "featureplane_requests_total",
            "Requests answered, by endpoint, workspace, feature service and HTTP status.",
            ("endpoint", "workspace", "service", "status"),
            lock=self._lock,
        )
        self.latency = Histogram(
            "featureplane_request_duration_seconds",
            "Time to answer a request inside the server, by endpoint, workspace and feature service.",
            ("endpoint", "workspace", "service"),
            lock=self._lock,
        )
        self.store_latency = Histogram(
            "featureplane_online_store_duration_seconds",
            "Time spent in one online-store call, by operation (read, write).",
            ("operation",),
            lock=self._lock,
        )
        self.errors = Counter(
            "featureplane_errors_total",
            "Requests that failed, by endpoint and reason.",
            ("endpoint", "reason"),
        )
        self.store_errors = Counter(
            "featureplane_online_store_errors_total",
            "Online-store calls that raised, by operation.",
            ("operation",),
        )
        self.batch_rows = Histogram(
            "featureplane_batch_rows",
            "Rows per get-features-batch request.",
            ("service",),
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
        )
        self.ingested = Counter(
            "featureplane_ingested_records_total",
            "Records accepted by the ingest endpoint, by workspace, feature view and store.",
            ("workspace", "feature_view", "store"),
        )
        self._all: list[_Metric] = [
            self.requests,
            self.latency,
            self.store_latency,
            self.errors,
            self.store_errors,
            self.batch_rows,
            self.ingested,
        ]

    def observe_request(
        self, endpoint: str, workspace: str, service: str, status: int, seconds: float, error: str | None
    ) -> None:
        """Count a request and its latency (and its error reason, if any) under one lock."""
        key = (endpoint, workspace, service, str(status))
        with self._lock:
            self.requests.add_locked(key)
            self.latency.observe_locked(seconds, key[:3])
        if error is not None:
            self.errors.inc(endpoint, error)

    def observe_lookup(
        self, endpoint: str, workspace: str, service: str, seconds: float, read_seconds: float
    ) -> None:
        """A lookup answered 200 with one online-store read: ``observe_request`` and the read's
        latency, under one lock (the lookup API's fast path)."""
        key = (endpoint, workspace, service, "200")
        with self._lock:
            self.requests.add_locked(key)
            self.latency.observe_locked(seconds, key[:3])
            self.store_latency.observe_locked(read_seconds, ("read",))

    def service_stats(self) -> dict[str, dict[str, Any]]:
        """Cumulative feature-service request counts and latency buckets per ``workspace/service``
        (requests the server resolved to a service), for the serving monitor's stats file."""
        with self._lock:
            counts = list(self.requests._values.items())
            series = [(k, list(c), s[0]) for k, (c, s) in self.latency._series.items()]
        services: dict[str, dict[str, Any]] = {}

        def entry(workspace: str, service: str) -> dict[str, Any]:
            key = f"{workspace}/{service}"
            if key not in services:
                services[key] = {
                    "workspace": workspace,
                    "service": service,
                    "requests": 0,
                    "errors": 0,
                    "client_errors": 0,
                    "latency_ms_sum": 0.0,
                    "latency_buckets": [0] * (len(self.latency.buckets) + 1),
                }
            return services[key]

        for (endpoint, workspace, service, status), count in counts:
            if endpoint in FEATURE_ENDPOINTS and workspace and service:
                stats = entry(workspace, service)
                stats["requests"] += int(count)
                if int(status) >= 500:
                    stats["errors"] += int(count)
                elif int(status) >= 400:
                    stats["client_errors"] += int(count)
        for (endpoint, workspace, service), buckets, total in series:
            if endpoint in FEATURE_ENDPOINTS and workspace and service:
                stats = entry(workspace, service)
                stats["latency_ms_sum"] += total * 1000.0
                stats["latency_buckets"] = [
                    a + b for a, b in zip(stats["latency_buckets"], buckets, strict=True)
                ]
        return services

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self._all:
            lines += metric.render()  # type: ignore[attr-defined]
        return ("\n".join(lines) + "\n").encode()
