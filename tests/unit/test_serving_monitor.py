"""Serving monitoring: metrics and a sample of served vectors, written off the request path."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime

import pytest
from helpers import events_repo

from featureplane.materialization.materialize import materialize
from featureplane.monitoring.serving_health import health_since, percentile, read_stats
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.serving.monitor import FeatureLogSink, JsonlSink, ServingMonitor
from featureplane.serving.protocol import Request
from featureplane.serving.service import LookupService
from featureplane.serving.snapshot import SnapshotCache

VIEWS = """
    from datetime import datetime
    from base import events, user
    from featureplane import Attribute, FeatureService, Float64, Int64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64), Attribute("n", Int64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True)
    def spend(events):
        return f"SELECT user_id, ts, amount, 2 AS n FROM {events}"

    svc = FeatureService(name="svc", features=[spend])
"""
GET = "/api/v1/feature-service/get-features"


@pytest.fixture
def service(tmp_path) -> LookupService:
    repo = events_repo(tmp_path, VIEWS)
    runtime = repo.runtime()
    runtime.registry.create_workspace("prod", live=True)
    apply_plan(runtime, plan_repository(runtime, "prod"))
    materialize(runtime, runtime.registry.load("prod"), "spend", datetime(2024, 1, 1), datetime(2024, 1, 3))
    return LookupService(SnapshotCache(runtime.registry, 0), runtime.online_store)


def lookup(service: LookupService, user: str, workspace: str = "prod", name: str = "svc") -> int:
    params = {"workspaceName": workspace, "featureServiceName": name, "joinKeyMap": {"user_id": user}}
    return service.handle(Request("POST", GET, {}, json.dumps({"params": params}).encode())).status


def test_requests_are_counted_and_sampled_vectors_logged(service, tmp_path):
    monitor = ServingMonitor(
        service,
        sample_rate=1.0,
        sink=JsonlSink(tmp_path / "served"),
        stats_path=tmp_path / "stats",
        stats_interval=60,
    )
    service.monitor = monitor
    assert [lookup(service, u) for u in ("u1", "u2", "nobody")] == [200, 200, 200]
    assert lookup(service, "u1", name="missing") == 404
    bad_key = {"workspaceName": "prod", "featureServiceName": "svc", "joinKeyMap": {"user_id": 5}}
    assert service.handle(Request("POST", GET, {}, json.dumps({"params": bad_key}).encode())).status == 400
    assert service.handle(Request("GET", "/healthz", {}, b"")).status == 200  # not a feature request
    monitor.flush()

    [day] = list((tmp_path / "served" / "prod" / "svc").iterdir())
    records = [json.loads(line) for line in day.read_text().splitlines()]
    assert day.name == f"{records[0]['served_at'][:10]}.jsonl"
    assert [(r["join_keys"], r["features"]) for r in records] == [
        ({"user_id": "u1"}, {"spend.amount": 7.0, "spend.n": 2}),  # int64 back to a number
        ({"user_id": "u2"}, {"spend.amount": 1.5, "spend.n": 2}),
        ({"user_id": "nobody"}, {"spend.amount": None, "spend.n": None}),
    ]
    [stats] = read_stats(tmp_path / "stats")
    assert stats["services"]["prod/svc"]["requests"] == 4
    assert stats["services"]["prod/svc"]["client_errors"] == 1
    assert "prod/missing" not in stats["services"]  # client-chosen names never become labels
    # The same counters as GET /metrics.
    metrics = service.handle(Request("GET", "/metrics", {}, b"")).body.decode()
    assert (
        'featureplane_requests_total{endpoint="get-features",workspace="prod",service="svc",status="200"} 3'
        in metrics
    )
    health, _ = health_since([stats], None)
    svc = next(h for h in health if h.service == "svc")
    assert svc.requests == 4 and svc.error_rate == 0.0 and 0 < svc.p50_ms <= svc.p99_ms
    monitor.close()


def test_sampled_batches_log_one_vector_per_row(service, tmp_path):
    service.monitor = ServingMonitor(
        service, sample_rate=1.0, sink=JsonlSink(tmp_path / "served"), stats_interval=60
    )
    rows = [{"joinKeyMap": {"user_id": "u1"}}, {"joinKeyMap": {"user_id": "nobody"}}]
    params = {"workspaceName": "prod", "featureServiceName": "svc", "requestData": rows}
    batch = "/api/v1/feature-service/get-features-batch"
    assert service.handle(Request("POST", batch, {}, json.dumps({"params": params}).encode())).status == 200
    params["requestData"] = [{"join_key_map": {"user_id": "u2"}}]  # snake_case rows are accepted too
    assert service.handle(Request("POST", batch, {}, json.dumps({"params": params}).encode())).status == 200
    service.monitor.flush()
    [day] = list((tmp_path / "served" / "prod" / "svc").iterdir())
    records = [json.loads(line) for line in day.read_text().splitlines()]
    assert [(r["join_keys"], r["features"]) for r in records] == [
        ({"user_id": "u1"}, {"spend.amount": 7.0, "spend.n": 2}),
        ({"user_id": "nobody"}, {"spend.amount": None, "spend.n": None}),
        ({"user_id": "u2"}, {"spend.amount": 1.5, "spend.n": 2}),
    ]
    assert {r["registry_version"] for r in records} == {1} and records[0]["served_at"][:10] == day.stem
    service.monitor.close()


def test_only_the_configured_share_is_sampled(service, tmp_path):
    random.seed(3)
    sink = JsonlSink(tmp_path / "served")
    service.monitor = ServingMonitor(service, sample_rate=0.2, sink=sink, stats_interval=60)
    for _ in range(500):
        lookup(service, "u1")
    service.monitor.flush()
    assert 60 <= service.monitor.logged <= 140
    service.monitor.close()


class BlockedSink(FeatureLogSink):
    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, records):
        self.release.wait(10)


class BrokenSink(FeatureLogSink):
    def write(self, records):
        raise OSError("disk full")


def test_a_stuck_or_broken_sink_never_slows_or_fails_requests(service):
    stuck = BlockedSink()
    service.monitor = ServingMonitor(service, sample_rate=1.0, sink=stuck, queue_size=2, stats_interval=60)
    started = time.perf_counter()
    assert all(lookup(service, "u1") == 200 for _ in range(50))
    elapsed = time.perf_counter() - started
    assert service.monitor.dropped >= 45  # the queue holds two; the writer holds one batch
    stuck.release.set()
    service.monitor.close()
    assert elapsed < 10  # never waited for the stuck writer (its wait is 10 s)

    service.monitor = ServingMonitor(service, sample_rate=1.0, sink=BrokenSink(), stats_interval=60)
    assert all(lookup(service, "u2") == 200 for _ in range(5))
    service.monitor.flush()
    assert service.monitor.dropped == 5 and service.monitor.logged == 0
    service.monitor.close()


def stats_file(process: str, started: float, requests: int, errors: int, buckets: list[int]) -> dict:
    return {
        "process": process,
        "started_at": started,
        "updated_at": time.time(),
        "buckets_ms": [1, 10, 100],
        "services": {
            "prod/svc": {
                "workspace": "prod",
                "service": "svc",
                "requests": requests,
                "errors": errors,
                "client_errors": 0,
                "latency_ms_sum": 5.0 * requests,
                "latency_buckets": buckets,
            }
        },
    }


def test_health_is_the_difference_since_the_last_reading_across_processes_and_restarts():
    first = [stats_file("a", 100.0, 10, 0, [5, 5, 0, 0]), stats_file("b", 100.0, 10, 1, [0, 10, 0, 0])]
    [health], cursor = health_since(first, None, now=120.0)
    assert (health.requests, health.errors, health.window_seconds) == (20, 1, 20.0)
    assert health.requests_per_second == 1.0 and health.error_rate == 0.05
    # Process a served 30 more (mostly slow); b restarted and served 4 since.
    later = [stats_file("a", 100.0, 40, 0, [5, 5, 20, 10]), stats_file("b", 150.0, 4, 0, [4, 0, 0, 0])]
    [health], _ = health_since(later, cursor, now=180.0)
    assert (health.requests, health.window_seconds) == (34, 60.0)
    assert health.p99_ms == 100.0  # the unbounded bucket reports the last bound
    assert health.p50_ms == pytest.approx(10 + 90 * (17 - 4) / 20)  # rank 17 of 34, 4 below 10 ms


def test_percentiles_interpolate_within_buckets():
    assert percentile([0, 10, 0], [1, 2], 0.5) == pytest.approx(1.5)
    assert percentile([0, 0, 0], [1, 2], 0.5) is None


def test_on_lambda_local_files_are_off_unless_their_paths_are_set(service, tmp_path, monkeypatch):
    from conftest import write_config

    from featureplane.config import load_config
    from featureplane.serving.monitor import attach_monitor

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "featureplane-lookup")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    assert attach_monitor(service, load_config(write_config(tmp_path / "a"))) is None
    stats = tmp_path / "stats"
    config = load_config(write_config(tmp_path / "b", f"monitoring: {{serving_stats: {{path: {stats}}}}}\n"))
    monitor = attach_monitor(service, config)
    assert monitor is not None and monitor.sink is None and monitor.stats_path == stats
    monitor.close()
