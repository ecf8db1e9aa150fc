"""Stream lag measurement cost: measuring a push stream view's lag vs one poll of its processor.

    .venv/bin/python benchmarks/stream_lag.py [--backlog 10000] [--repeat 15]

A throwaway repository with one push stream view; records go through the lookup service's ingest
endpoint (100 per request) into the real ingest log, and the view's state is in the SQLite online
store. For each situation the arms run interleaved, ``--repeat`` times each:

- ``poll``: what the processor does every 50 ms while it runs: read the committed state and
  ``read`` up to 1,000 records after the checkpoints (the floor);
- ``measure``: ``measure_stream_lag`` of the view, as the sensor runs it every minute.

- ``sensor tick``: one evaluation of the Dagster sensor ``featureplane_stream_lag`` (opening the
  registry and stores, measuring, building the observation and the check evaluation; recording them
  in the instance is left out).

Situations: *caught up* (every record processed), *behind* (``--backlog`` records waiting) and
*far behind* (ten times that, past the 10,000 records counted per shard). Results are medians;
ratios are to ``poll`` of the same situation. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

CONFIG = """\
project: bench
data_dir: .featureplane
online_store: {type: sqlite, path: .featureplane/online.db}
serving: {auth: false}
monitoring: {serving_stats: {enabled: false}, serving_log: {enabled: false}}
"""
FILES = {
    "base.py": """
        from featureplane import BatchSource, Entity, Field, String
        user = Entity(name="user", join_keys=[Field("user_id", String)])
        events = BatchSource(name="events", table="raw.events", timestamp_field="ts")
    """,
    "views.py": """
        from datetime import timedelta
        from base import events, user
        from featureplane import Aggregate, Field, Int64, StreamSource, String, Timestamp, stream_feature_view

        payments = StreamSource(name="payments", timestamp_field="ts", batch_config=events,
                                push_schema=[Field("user_id", String), Field("ts", Timestamp),
                                             Field("amount", Int64)])

        @stream_feature_view(source=payments, entities=[user], aggregation_interval=timedelta(minutes=1),
                             features=[Aggregate(Field("amount", Int64), "sum", timedelta(hours=1))],
                             online=True, allowed_lateness=timedelta(hours=2))
        def payment_sums(record):
            return record
    """,
}
PER_REQUEST = 100


def setup(root: Path):
    from featureplane.compute.duckdb import connect_warehouse
    from featureplane.config import load_config
    from featureplane.repo.planning import apply_plan, plan_repository
    from featureplane.runtime import Runtime

    (root / "featureplane.yaml").write_text(CONFIG)
    for name, text in FILES.items():
        (root / name).write_text(textwrap.dedent(text))
    config = load_config(root / "featureplane.yaml")
    config.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = connect_warehouse(config.warehouse_path, read_only=False)
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.events (user_id VARCHAR, ts TIMESTAMP, amount BIGINT)")
    con.close()
    with Runtime(config) as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
    return config


def ingest(service, count: int) -> None:
    from featureplane.serving.protocol import Request

    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for first in range(0, count, PER_REQUEST):
        records = [
            {"record": {"user_id": f"u{(first + i) % 500}", "ts": ts, "amount": i}}
            for i in range(min(PER_REQUEST, count - first))
        ]
        body = json.dumps({"workspaceName": "prod", "records": {"payments": records}}).encode()
        assert service.handle(Request("POST", "/api/v1/ingest", {}, body)).status == 200


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run_situation(config, defs, repeat: int) -> dict[str, float]:
    import dagster as dg

    from featureplane.monitoring.stream_lag import measure_stream_lag
    from featureplane.runtime import Runtime
    from featureplane.streams.runner import open_stream

    sensor = defs.resolve_sensor_def("featureplane_stream_lag")
    times: dict[str, list[float]] = {"poll": [], "measure": [], "tick": []}
    with Runtime(config) as runtime:
        state = runtime.registry.load("prod")
        view = state.feature_view("payment_sums")
        processor, source = open_stream(runtime, "prod", "payment_sums")
        behind = measure_stream_lag(runtime, state, view, timedelta(minutes=5)).behind_text()
        for _ in range(repeat):
            start = time.perf_counter()
            source.read(processor.state().positions, 1000)
            times["poll"].append(time.perf_counter() - start)
            start = time.perf_counter()
            measure_stream_lag(runtime, state, view, timedelta(minutes=5))
            times["measure"].append(time.perf_counter() - start)
            with dg.instance_for_test() as instance:
                context = dg.build_sensor_context(instance=instance, definitions=defs)
                start = time.perf_counter()
                sensor.evaluate_tick(context)
                times["tick"].append(time.perf_counter() - start)
    return {"behind": behind, **{arm: median_ms(t) for arm, t in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    from dagster_project.definitions import build_definitions
    from featureplane.runtime import Runtime
    from featureplane.serving.app import create_lookup_service
    from featureplane.streams.runner import run_stream

    with tempfile.TemporaryDirectory(prefix="stream-lag-") as tmp:
        config = setup(Path(tmp))
        defs = build_definitions(config)
        service = create_lookup_service(config)
        rows = []
        ingest(service, args.backlog)
        with Runtime(config) as runtime:
            run_stream(runtime, "prod", "payment_sums", once=True)
        rows.append(("caught up", run_situation(config, defs, args.repeat)))
        ingest(service, args.backlog)
        rows.append(("behind", run_situation(config, defs, args.repeat)))
        ingest(service, 9 * args.backlog)
        rows.append(("far behind", run_situation(config, defs, args.repeat)))
        service.snapshots.close()

    print(
        "| situation | events behind | poll median (ms) | measure median (ms) | sensor tick median (ms) "
        "| measure vs poll | tick vs poll |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        print(
            f"| {name} | {r['behind']} | {r['poll']:.2f} | {r['measure']:.2f} | {r['tick']:.2f} "
            f"| {r['measure'] / r['poll']:.2f}x | {r['tick'] / r['poll']:.2f}x |"
        )


if __name__ == "__main__":
    main()
