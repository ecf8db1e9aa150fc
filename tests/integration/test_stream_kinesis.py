"""A stream view over a Kinesis stream (moto's server): `featureplane stream run` reads every shard
from its checkpoint; killed with SIGKILL repeatedly and restarted, it counts every record once."""

from __future__ import annotations

import json
import random
import select
import signal
import subprocess
from collections import Counter
from datetime import datetime, timedelta

import pytest
from conftest import BIN
from helpers import events_repo

from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.streams.runner import open_stream
from featureplane.util.aws import client

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 9, 0)

VIEWS = """
    from datetime import timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Int64, KinesisConfig, StreamSource, stream_feature_view

    clicks = StreamSource(name="clicks", timestamp_field="ts", batch_config=events,
                          kinesis=KinesisConfig(stream_name="{stream}", region="us-east-1",
                                                endpoint_url="{endpoint}"))

    @stream_feature_view(source=clicks, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "count", timedelta(minutes=5)),
                                   Aggregate(Field("amount", Int64), "sum", timedelta(minutes=5))],
                         timestamp_field="ts", online=True, allowed_lateness=timedelta(hours=2))
    def click_counts(record):
        return {{"user_id": record["user"], "ts": record["ts"], "amount": record["amount"]}}
"""


def test_kinesis_shards_are_processed_from_their_checkpoints_across_kill_9(tmp_path, moto_server):
    rng = random.Random(5)
    stream = f"clicks-{rng.randint(0, 10**6)}"
    kinesis = client("kinesis", region_name="us-east-1", endpoint_url=moto_server)
    kinesis.create_stream(StreamName=stream, ShardCount=3)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
    repo = events_repo(tmp_path / "repo", VIEWS.format(stream=stream, endpoint=moto_server))
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
    expected: Counter = Counter()

    def put(count: int) -> None:
        entries = []
        for _ in range(count):
            user = f"u{rng.randint(0, 5)}"
            ts = T0 + timedelta(seconds=rng.randint(0, 1200))
            amount = rng.randint(1, 50)
            data = {"user": user, "ts": ts.isoformat() + "Z", "amount": amount}
            entries.append({"Data": json.dumps(data).encode(), "PartitionKey": user})
            expected[(user, "n")] += 1
            expected[(user, "sum")] += amount
        for first in range(0, len(entries), 500):
            kinesis.put_records(StreamName=stream, Records=entries[first : first + 500])

    kinesis.put_record(StreamName=stream, Data=b"not json", PartitionKey="x")
    put(400)
    for _ in range(4):
        process = subprocess.Popen(
            [
                str(BIN / "featureplane"),
                "stream",
                "run",
                "-w",
                "prod",
                "--view",
                "click_counts",
                "--batch-size",
                "9",
            ],
            cwd=repo.root,
            env=repo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready and process.stdout.readline().startswith("prod/click_counts: "), process.stderr.read()
        put(50)
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = repo.cli("stream", "run", "-w", "prod", "--view", "click_counts", "--once")
    assert "0 late" in final.stdout

    with repo.runtime() as runtime:
        processor, source = open_stream(runtime, "prod", "click_counts")
        state = processor.state()
        assert state.invalid == 1  # the record that is not JSON, reported once, by its own shard
        assert sorted(s.invalid for s in state.shards.values()) == [0, 0, 1]
        assert set(state.positions) == set(source.shards()) and len(state.positions) == 3
        got: Counter = Counter()
        for user in {u for u, _ in expected}:
            for tile in processor.store.tiles(processor.table_id, (user,)).values():
                got[(user, "n")] += tile["cols"]["amount"]["n"]
                got[(user, "sum")] += tile["cols"]["amount"]["sum"]
    assert got == expected and sum(v for (_, k), v in expected.items() if k == "n") == 600
