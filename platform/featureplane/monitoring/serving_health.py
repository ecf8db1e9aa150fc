"""Serving health from the stats files lookup servers write: request rate, error rates and latency
percentiles per feature service over the interval since the previous reading.

Each server process keeps cumulative counters and a latency histogram (see
``featureplane.serving.monitor``); a reader keeps the counters it saw last (a cursor) and reports the
difference, so several processes, restarts and readers that run late all add up correctly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STALE_AFTER_SECONDS = 7 * 86400


@dataclass
class ServiceHealth:
    workspace: str
    service: str
    requests: int
    errors: int
    client_errors: int
    window_seconds: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.window_seconds if self.window_seconds > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def client_error_rate(self) -> float:
        return self.client_errors / self.requests if self.requests else 0.0

    def metadata(self) -> dict[str, float | int]:
        data: dict[str, float | int] = {
            "requests": self.requests,
            "requests_per_second": round(self.requests_per_second, 4),
            "error_rate": round(self.error_rate, 6),
            "client_error_rate": round(self.client_error_rate, 6),
            "errors": self.errors,
            "client_errors": self.client_errors,
            "window_seconds": round(self.window_seconds, 3),
        }
        for name in ("p50_ms", "p95_ms", "p99_ms", "mean_ms"):
            value = getattr(self, name)
            if value is not None:
                data[f"latency_{name}"] = round(value, 3)
        return data


def read_stats(path: str | Path, now: float | None = None) -> list[dict[str, Any]]:
    """Every server process's latest stats file under ``path`` (unreadable and very old ones skipped)."""
    now = now or time.time()
    files = []
    directory = Path(path)
    if not directory.is_dir():
        return []
    for item in sorted(directory.glob("*.json")):
        try:
            data = json.loads(item.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and now - float(data.get("updated_at", 0)) < STALE_AFTER_SECONDS:
            files.append(data)
    return files


def percentile(buckets: list[int], bounds: list[float], q: float) -> float | None:
    """The q-quantile of a histogram (linear within a bucket, as Prometheus' histogram_quantile)."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if seen + count >= rank and count > 0:
            if i >= len(bounds):
                return float(bounds[-1])
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - seen) / count
        seen += count
    return float(bounds[-1])


def _zero(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "client_errors": 0,
        "latency_ms_sum": 0.0,
        "latency_buckets": [0] * len(entry.get("latency_buckets", [])),
    }


def health_since(
    files: list[dict[str, Any]], cursor: dict[str, Any] | None, now: float | None = None
) -> tuple[list[ServiceHealth], dict[str, Any]]:
    """Per-service health since the cursor's reading, and the new cursor."""
    now = now or time.time()
    cursor = cursor or {}
    seen = cursor.get("processes", {})
    since = cursor.get("at")
    totals: dict[str, dict[str, Any]] = {}
    bounds: list[float] = []
    new_processes: dict[str, Any] = {}
    for data in files:
        process = str(data.get("process"))
        started = data.get("started_at")
        previous = seen.get(process, {})
        restarted = previous.get("started_at") != started
        services = data.get("services", {})
        new_processes[process] = {"started_at": started, "services": services}
        bounds = data.get("buckets_ms") or bounds
        for key, entry in services.items():
            before = _zero(entry) if restarted else previous.get("services", {}).get(key, _zero(entry))
            total = totals.setdefault(
                key, {"workspace": entry["workspace"], "service": entry["service"], **_zero(entry)}
            )
            for field in ("requests", "errors", "client_errors", "latency_ms_sum"):
                total[field] += max(entry.get(field, 0) - before.get(field, 0), 0)
            now_buckets, old_buckets = entry.get("latency_buckets", []), before.get("latency_buckets", [])
            for i, count in enumerate(now_buckets):
                old = old_buckets[i] if i < len(old_buckets) else 0
                total["latency_buckets"][i] += max(count - old, 0)
    earliest = min((float(d.get("started_at") or now) for d in files), default=now)
    window = now - (float(since) if since is not None else earliest)
    health = []
    for total in totals.values():
        if total["requests"] <= 0:
            continue
        buckets = total["latency_buckets"]
        health.append(
            ServiceHealth(
                workspace=total["workspace"],
                service=total["service"],
                requests=total["requests"],
                errors=total["errors"],
                client_errors=total["client_errors"],
                window_seconds=max(window, 0.001),
                p50_ms=percentile(buckets, bounds, 0.50),
                p95_ms=percentile(buckets, bounds, 0.95),
                p99_ms=percentile(buckets, bounds, 0.99),
                mean_ms=total["latency_ms_sum"] / total["requests"],
            )
        )
    return health, {"at": now, "processes": new_processes}
