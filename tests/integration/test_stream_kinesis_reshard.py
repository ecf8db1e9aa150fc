"""Reading Kinesis as Kinesis allows (kinesalite, which models resharding): at most five GetRecords per second per shard, in
turns, a throttled shard waiting; and across a reshard, children after their parents, nothing skipped
even from ``LATEST``, the parents recorded as finished so that they stop holding tile retention back."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from helpers import events_repo

from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.streams.kinesis import MIN_GET_INTERVAL, THROTTLED_WAIT, KinesisSource
from featureplane.streams.runner import open_stream, run_stream
from featureplane.util.aws import client

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 9, 0)

VIEWS = """
    from datetime import timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Int64, KinesisConfig, StreamSource, stream_feature_view

    clicks = StreamSource(name="clicks", timestamp_field="ts", batch_config=events,
                          kinesis=KinesisConfig(stream_name="{stream}", region="us-east-1",
                                                endpoint_url="{endpoint}", initial_position="{initial}"))

    @stream_feature_view(source=clicks, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "count", timedelta(minutes=5)),
                                   Aggregate(Field("amount", Int64), "sum", timedelta(minutes=5))],
                         timestamp_field="ts", online=True, allowed_lateness=timedelta(minutes=30))
    def click_counts(record):
        return {{"user_id": record["user"], "ts": record["ts"], "amount": record["amount"]}}
"""


class Stream:
    def __init__(self, endpoint: str, shards: int) -> None:
        self.name = f"clicks-{random.randint(0, 10**9)}"
        self.kinesis = client("kinesis", region_name="us-east-1", endpoint_url=endpoint)
        self.kinesis.create_stream(StreamName=self.name, ShardCount=shards)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=self.name, WaiterConfig={"Delay": 0.1})
        self.expected: Counter = Counter()
        self.rng = random.Random(3)

    def put(self, count: int, start: datetime) -> None:
        entries = []
        for i in range(count):
            user = f"u{self.rng.randint(0, 7)}"
            amount = self.rng.randint(1, 50)
            ts = start + timedelta(seconds=i)
            data = {"user": user, "ts": ts.isoformat() + "Z", "amount": amount}
            entries.append({"Data": json.dumps(data).encode(), "PartitionKey": user})
            self.expected[(user, "n")] += 1
            self.expected[(user, "sum")] += amount
        self.kinesis.put_records(StreamName=self.name, Records=entries)

    def split(self, shard: str) -> None:
        description = self.kinesis.describe_stream(StreamName=self.name)["StreamDescription"]
        item = next(s for s in description["Shards"] if s["ShardId"] == shard)
        low = int(item["HashKeyRange"]["StartingHashKey"])
        high = int(item["HashKeyRange"]["EndingHashKey"])
        self.kinesis.split_shard(
            StreamName=self.name, ShardToSplit=shard, NewStartingHashKey=str((low + high) // 2)
        )
        self.kinesis.get_waiter("stream_exists").wait(StreamName=self.name, WaiterConfig={"Delay": 0.1})


def applied_repo(tmp_path, stream: Stream, endpoint: str, initial: str = "TRIM_HORIZON"):
    repo = events_repo(
        tmp_path / "repo", VIEWS.format(stream=stream.name, endpoint=endpoint, initial=initial)
    )
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
    return repo


def tile_totals(processor, users) -> Counter:
    got: Counter = Counter()
    for user in users:
        for tile in processor.store.tiles(processor.table_id, (user,)).values():
            got[(user, "n")] += tile["cols"]["amount"]["n"]
            got[(user, "sum")] += tile["cols"]["amount"]["sum"]
    return got


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingClient:
    """The real client, counting GetRecords calls per shard iterator's shard and able to refuse the
    next call as Kinesis does when a shard's read limit is exceeded."""

    def __init__(self, real) -> None:
        self.real = real
        self.calls = 0
        self.throttle_next = False

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_records(self, **kwargs):
        self.calls += 1
        if self.throttle_next:
            self.throttle_next = False
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}}
            raise ClientError(error, "GetRecords")
        return self.real.get_records(**kwargs)


def test_each_shard_is_read_at_most_five_times_a_second_and_a_throttled_shard_waits(
    tmp_path, kinesalite_server
):
    stream = Stream(kinesalite_server, shards=3)
    repo = applied_repo(tmp_path, stream, kinesalite_server)
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        spec = state.definitions.sources["clicks"]
    counting = CountingClient(client("kinesis", region_name="us-east-1", endpoint_url=kinesalite_server))
    clock = Clock()
    source = KinesisSource(spec, client=counting, clock=clock)

    source.read({}, 100)
    assert counting.calls == 3  # every shard once
    source.read({}, 100)
    clock.now += MIN_GET_INTERVAL / 2
    source.read({}, 100)
    assert counting.calls == 3  # none is due again yet, however often the processor polls
    clock.now += MIN_GET_INTERVAL / 2
    counting.throttle_next = True
    source.read({}, 100)
    assert counting.calls == 6  # one refused, the others read
    clock.now += MIN_GET_INTERVAL
    source.read({}, 100)
    assert counting.calls == 8  # the throttled shard waits
    clock.now += THROTTLED_WAIT
    source.read({}, 100)
    assert counting.calls == 11
    assert source.caught_up

    stream.put(40, T0)
    clock.now += MIN_GET_INTERVAL
    records = source.read({}, 10)
    assert len(records) == 10 and not source.caught_up  # a full answer: more may be waiting


def test_across_a_reshard_children_follow_their_parents_and_nothing_is_lost(tmp_path, kinesalite_server):
    stream = Stream(kinesalite_server, shards=1)
    repo = applied_repo(tmp_path, stream, kinesalite_server)
    stream.put(60, T0)
    parent = stream.kinesis.list_shards(StreamName=stream.name)["Shards"][0]["ShardId"]
    stream.split(parent)
    stream.put(60, T0 + timedelta(minutes=2))
    with repo.runtime() as runtime:
        processor, source = open_stream(runtime, "prod", "click_counts")
        seen: list[str] = []
        positions: dict[str, int] = {}
        while True:
            records = source.read(positions, 25)
            for record in records:
                positions[record.shard] = record.sequence
                seen.append(record.shard)
            if not records and source.caught_up:
                break
        assert seen.index(next(s for s in seen if s != parent)) > max(
            i for i, s in enumerate(seen) if s == parent
        ), "a child shard was read before its parent was read to its end"
        assert parent in source.finished and len(set(seen)) == 3

        totals = run_stream(runtime, "prod", "click_counts", once=True, batch_size=25)
        assert totals.applied == 120 and totals.late == 0
        state = processor.state()
        assert state.shards[parent].finished
        assert not any(s.finished for name, s in state.shards.items() if name != parent)
        assert tile_totals(processor, {u for u, _ in stream.expected}) == stream.expected


def test_a_reshard_after_the_processor_started_at_latest_skips_nothing(tmp_path, kinesalite_server):
    stream = Stream(kinesalite_server, shards=1)
    repo = applied_repo(tmp_path, stream, kinesalite_server, initial="LATEST")
    with repo.runtime() as runtime:
        processor, source = open_stream(runtime, "prod", "click_counts")

        def drain() -> None:
            time.sleep(MIN_GET_INTERVAL)  # every shard due again: the records put since are read
            while True:
                records = source.read(processor.state().positions, 50)
                if records:
                    processor.process(records)
                elif source.caught_up:
                    return

        drain()  # nothing yet: the shard's iterator now stands at the newest record
        stream.put(30, T0)
        drain()
        parent = stream.kinesis.list_shards(StreamName=stream.name)["Shards"][0]["ShardId"]
        stream.split(parent)
        stream.put(30, T0 + timedelta(minutes=1))  # into the children, before they are first read
        drain()
        processor.finish_shards(sorted(source.finished))
        assert tile_totals(processor, {u for u, _ in stream.expected}) == stream.expected
        assert processor.state().shards[parent].finished
