"""Stream benchmark: freshness, processor throughput and lookup latency of stream feature views.

    .venv/bin/python benchmarks/stream/run.py            # a few minutes; prints the tables
    .venv/bin/python benchmarks/stream/run.py --write    # and puts them in benchmarks/README.md

One run, arms side by side (``benchmarks/README.md`` describes them):

- **freshness**: ``featureplane serve`` (API keys on) and ``featureplane stream run`` in continuous mode
  as processes; one event at a time through ``POST /api/v1/ingest``, then ``get-features`` until the
  example's ``user_transaction_counts_5m`` counts it. Time from the ingest acknowledgement to the first
  answer holding the event; p50/p99. Run at the processor's default poll interval and at a short one,
  which shows how much of it is the poll, and at the short one for the same view with ``offline=False``,
  which shows how much is the event log's append.
- **throughput**: a backlog of events pushed through the ingest API, then the processor (``run_stream``,
  in this process) applying it (to the ``offline=False`` view, as Feast's push writes online only; once
  more to the example's view, event log included) to the SQLite online store and to dynalite (the DynamoDB-compatible
  server the tests use), timed per phase; Feast's ``push`` of the same events as rows into its SQLite
  online store, in its own virtualenv, as the anchor.
- **lookup**: ``get-features`` of a stream aggregate view against a batch aggregate view with the same
  features (count, sum, count_distinct over one day, hourly tiles) for the same users, same server.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
from arms import (
    FRESH_ONLINE_VIEW,
    FRESH_VIEW,
    ROOT,
    SOURCE,
    WORK,
    feast_push,
    freshness,
    lookup,
    lookup_latency,
    profile_shares,
    push_http,
    say,
    throughput,
    tiles_per_entity,
)
from common import save_results
from report import README, report, write_readme

BENCH_VIEWS = """
from datetime import datetime, timedelta

from data_sources import transactions, transactions_stream
from entities import user
from feature_views.streams import user_transaction_counts_5m

from featureplane import Aggregate, FeatureService, Field, Float64, StreamFeatureView, String, batch_feature_view

FEATURES = [
    Aggregate(Field("amount", Float64), "count", timedelta(days=1)),
    Aggregate(Field("amount", Float64), "sum", timedelta(days=1)),
    Aggregate(Field("merchant_id", String), "count_distinct", timedelta(days=1)),
]

stream_counts_1d = StreamFeatureView(
    name="stream_counts_1d", source=transactions_stream, entities=[user], aggregation_interval=timedelta(hours=1),
    features=FEATURES, allowed_lateness=timedelta(days=1), online=True,
)


@batch_feature_view(
    sources=[transactions], entities=[user], mode="snowflake_sql", aggregation_interval=timedelta(hours=1),
    features=FEATURES, timestamp_field="ts", feature_start_time=datetime.fromisoformat("{start}"),
    batch_schedule=timedelta(days=1), online=True, offline=True,
)
def batch_counts_1d(transactions):
    return f"SELECT user_id, ts, amount, merchant_id FROM {transactions}"


# The example's view with offline=False: its online commit alone, as Feast's push to the online store.
user_transaction_counts_5m_online = StreamFeatureView(
    name="user_transaction_counts_5m_online", source=transactions_stream, entities=[user],
    aggregation_interval=timedelta(minutes=1), features=user_transaction_counts_5m.features,
    stream_processing_mode="continuous", allowed_lateness=timedelta(minutes=5), online=True, offline=False,
)

fresh = FeatureService(name="fresh", features=[user_transaction_counts_5m])
fresh_online = FeatureService(name="fresh_online", features=[user_transaction_counts_5m_online])
stream_lookup = FeatureService(name="stream_lookup", features=[stream_counts_1d])
batch_lookup = FeatureService(name="batch_lookup", features=[batch_counts_1d])
"""


# -- repositories ----------------------------------------------------------------------------------


def write_repo(path: Path, start: datetime, online: str, auth: bool = True) -> Path:
    """The example's entity, sources and stream view, plus the benchmark's pair of aggregate views."""
    (path / "feature_views").mkdir(parents=True)
    for name in ("entities.py", "data_sources.py", "feature_views/streams.py"):
        shutil.copy(ROOT / "feature_repo" / name, path / name)
    (path / "bench_views.py").write_text(BENCH_VIEWS.replace("{start}", start.isoformat()))
    (path / "featureplane.yaml").write_text(
        "project: stream_benchmark\ndata_dir: .featureplane\n"
        f"online_store: {online}\nserving: {{registry_refresh_seconds: 5, auth: {str(auth).lower()}}}\n"
    )
    return path / "featureplane.yaml"


def apply(config_path: Path) -> None:
    from featureplane.config import load_config
    from featureplane.repo.planning import apply_plan, plan_repository
    from featureplane.runtime import Runtime

    with Runtime(load_config(config_path)) as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))


def make_events(count: int, users: int, end: datetime, seed: int = 11) -> list[dict]:
    """``count`` payments of ``users`` card holders, in event-time order, over the minutes before ``end``."""
    rng = random.Random(seed)
    first = end - timedelta(minutes=3)
    step = (end - first) / count
    return [
        {
            "transaction_id": f"bench_{i}",
            "user_id": f"user_{rng.randrange(users)}",
            "merchant_id": f"merchant_{int(rng.paretovariate(1.1)) % 2000}",
            "amount": round(rng.lognormvariate(3.4, 0.8), 2),
            "ts": (first + step * i).isoformat().replace("+00:00", "Z"),
        }
        for i in range(count)
    ]


def push_in_process(config_path: Path, events: list[dict], per_request: int) -> float:
    """Push ``events`` through the ingest API's handler in this process; seconds taken."""
    from featureplane.config import load_config
    from featureplane.serving.app import create_lookup_service
    from featureplane.serving.protocol import Request

    service = create_lookup_service(load_config(config_path))
    started = time.perf_counter()
    try:
        for i in range(0, len(events), per_request):
            records = [{"record": e} for e in events[i : i + per_request]]
            body = orjson.dumps({"workspaceName": "prod", "records": {SOURCE: records}})
            response = service.handle(Request("POST", "/api/v1/ingest", {}, body))
            if response.status != 200:
                raise SystemExit(f"ingest failed: {response.status} {response.body[:500]!r}")
        return time.perf_counter() - started
    finally:
        service.ingestor.log.close()
        service.snapshots.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000, help="events processed into the SQLite store")
    parser.add_argument("--dynamodb-events", type=int, default=20_000, help="events processed into dynalite")
    parser.add_argument(
        "--profile-events", type=int, default=20_000, help="events of the profiled SQLite run"
    )
    parser.add_argument("--batch-sizes", default="1000,10000", help="comma-separated processor batch sizes")
    parser.add_argument("--samples", type=int, default=300, help="freshness samples per poll interval")
    parser.add_argument("--lookup-seconds", type=float, default=3.0)
    parser.add_argument("--lookup-rounds", type=int, default=3)
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--skip-dynamodb", action="store_true")
    parser.add_argument("--write", action="store_true", help="put the tables into benchmarks/README.md")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    from featureplane.access import create_api_key
    from featureplane.config import load_config
    from featureplane.examples.fraud_data import DatasetSize, generate
    from featureplane.materialization.materialize import materialize
    from featureplane.runtime import Runtime

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=2)
    config_path = write_repo(WORK / "repo", start, "{type: sqlite, path: .featureplane/online.db}")
    config = load_config(config_path)
    say(
        f"generating 2 days of transactions for {args.users:,} users, applying, materializing batch_counts_1d ..."
    )
    generate(config.warehouse_path, size=DatasetSize(users=args.users, days=2), end=today.date())
    apply(config_path)
    with Runtime(config) as runtime:
        materialize(runtime, runtime.registry.load("prod"), "batch_counts_1d", start, today)
    key = create_api_key(config, "prod", "admin", "stream benchmark")
    users = [f"user_{i}" for i in range(args.users)]
    events = make_events(args.events, args.users, datetime.now(UTC))
    results: dict = {"throughput": {}}

    featureplane = str(Path(sys.executable).parent / "featureplane")
    server = lookup.start(
        "featureplane", [featureplane, "serve", "--port", "{port}", "--config", str(config_path)], WORK
    )
    try:
        results["freshness"] = []
        for view, service, poll in (
            (FRESH_VIEW, "fresh", 0.05),
            (FRESH_VIEW, "fresh", 0.005),
            (FRESH_ONLINE_VIEW, "fresh_online", 0.005),
        ):
            say(
                f"freshness of {view}: {args.samples} events one at a time, processor polling every "
                f"{poll * 1000:g} ms ..."
            )
            arm = freshness(config_path, server.port, key, args.samples, poll, view, service)
            results["freshness"].append(arm.row())
            say(f"  {results['freshness'][-1]}")
        say(
            f"pushing {len(events):,} events through the ingest API, processing them into stream_counts_1d ..."
        )
        pushed = push_http(server.port, key, events, 1000)
        results["ingest_events_per_second"] = len(events) / pushed
        throughput(config_path, "stream_counts_1d", batch_sizes[0])
        results["tiles"], both = tiles_per_entity(config_path, users)
        results["lookup_users"] = len(both)
        say(
            f"lookups: stream_counts_1d against batch_counts_1d for {len(both):,} users {results['tiles']} ..."
        )
        results["lookup"] = lookup_latency(server.port, key, both, args.lookup_seconds, args.lookup_rounds)
        say(f"  {results['lookup']}")
    finally:
        server.stop()

    sqlite = "{type: sqlite, path: .featureplane/online.db}"
    for batch_size in batch_sizes:
        name = f"SQLite, batches of {batch_size:,}"
        results["throughput"][name] = backlog_arm(f"sqlite_{batch_size}", sqlite, events, start, batch_size)
    name = f"SQLite, batches of {batch_sizes[0]:,}, offline=True (the example's view: event log appended too)"
    results["throughput"][name] = backlog_arm(
        "sqlite_event_log", sqlite, events, start, batch_sizes[0], view=FRESH_VIEW
    )
    say(f"profiling the processor over {args.profile_events:,} events in batches of {batch_sizes[0]:,} ...")
    profiled = backlog_arm(
        "sqlite_profiled", sqlite, events[: args.profile_events], start, batch_sizes[0], profile=True
    )
    results["sqlite_profile"] = profiled["profile"]
    say(f"  {results['sqlite_profile']}")
    if not args.skip_dynamodb:
        results["throughput"][f"DynamoDB (dynalite), batches of {batch_sizes[0]:,}"] = dynamodb_arm(
            events[: args.dynamodb_events], start, batch_sizes[0]
        )
    if not args.skip_feast:
        say(f"Feast: pushing the same {len(events):,} events into its SQLite online store ...")
        results["feast"] = feast_push(events, batch_sizes)
        say(f"  {results['feast']}")
    results["meta"] = {
        "date": date.today().isoformat(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "users": args.users,
        "events": args.events,
        "batch_sizes": batch_sizes,
        "samples": args.samples,
        "profile_events": args.profile_events,
        "lookup_seconds": args.lookup_seconds,
        "lookup_rounds": args.lookup_rounds,
        "feast_version": lookup.FEAST_VERSION,
        "load_average": os.getloadavg(),
    }
    table = report(results)
    print(table)
    save_results("stream", results)
    if args.write:
        write_readme(table)
        say(f"wrote the tables into {README.relative_to(ROOT)}")


def backlog_arm(
    name: str,
    online: str,
    events: list[dict],
    start: datetime,
    batch_size: int,
    profile: bool = False,
    view: str = FRESH_ONLINE_VIEW,
) -> dict:
    """A fresh repository on ``online``: the events pushed through the ingest API, then processed into
    ``view`` (with ``profile``, under cProfile, adding the shares of the time by where it goes)."""
    from featureplane.config import load_config

    config_path = write_repo(WORK / f"repo_{name}", start, online, auth=False)
    warehouse = load_config(config_path).warehouse_path
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(load_config(WORK / "repo" / "featureplane.yaml").warehouse_path, warehouse)
    apply(config_path)
    say(f"{name}: pushing {len(events):,} events, then processing them in batches of {batch_size:,} ...")
    push_in_process(config_path, events, 1000)
    if profile:
        out: dict = {}
        shares = profile_shares(lambda: out.update(throughput(config_path, view, batch_size)))
        return {**out, "profile": shares}
    result = throughput(config_path, view, batch_size)
    say(f"  {result}")
    return result


def dynamodb_arm(events: list[dict], start: datetime, batch_size: int) -> dict:
    """``backlog_arm`` on dynalite, the DynamoDB-compatible server the tests use."""
    from aws_servers import AWS_ENV, start_dynalite

    os.environ.update(AWS_ENV)
    dynalite = start_dynalite(WORK)
    try:
        endpoint = f"http://127.0.0.1:{dynalite.port}"
        online = f"{{type: dynamodb, region: us-east-1, table_prefix: bench_, endpoint_url: '{endpoint}'}}"
        return backlog_arm("dynamodb", online, events, start, batch_size)
    finally:
        dynalite.stop()


if __name__ == "__main__":
    main()
