"""Stream lag on the AWS path: a view over a Kinesis stream (moto's server): per shard, the records
after the checkpoint and the ApproximateArrivalTimestamp of the first, while the processor is partly
behind, caught up, and stopped while records arrive; counting stops at the per-shard budget. And a
push stream view whose state is in DynamoDB (dynalite)."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aws_servers import use_dynamodb
from helpers import events_repo
from stream_repo import payment, stream_repo

from featureplane.monitoring.stream_lag import measure_stream_lag
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.streams.runner import open_stream, run_stream
from featureplane.util.aws import client

pytestmark = pytest.mark.integration
BOUND = timedelta(minutes=5)

VIEWS = """
    from datetime import timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Int64, KinesisConfig, StreamSource, stream_feature_view

    clicks = StreamSource(name="clicks", timestamp_field="ts", batch_config=events,
                          kinesis=KinesisConfig(stream_name="{stream}", region="us-east-1",
                                                endpoint_url="{endpoint}"))

    @stream_feature_view(source=clicks, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "count", timedelta(minutes=5))],
                         timestamp_field="ts", online=True, allowed_lateness=timedelta(hours=2))
    def click_counts(record):
        return {{"user_id": record["user"], "ts": record["ts"], "amount": record["amount"]}}
"""


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@pytest.fixture
def kinesis_repo(tmp_path, moto_server):
    stream = f"clicks-{random.Random().randint(0, 10**9)}"
    kinesis = client("kinesis", region_name="us-east-1", endpoint_url=moto_server)
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
    repo = events_repo(tmp_path / "repo", VIEWS.format(stream=stream, endpoint=moto_server))
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
    return repo, kinesis, stream


def put(kinesis, stream: str, count: int, per_shard: Counter) -> None:
    ts = now().isoformat() + "Z"
    entries = [
        {"Data": json.dumps({"user": f"u{i}", "ts": ts, "amount": i}).encode(), "PartitionKey": f"u{i}"}
        for i in range(count)
    ]
    answer = kinesis.put_records(StreamName=stream, Records=entries)
    per_shard.update(r["ShardId"] for r in answer["Records"])


def lag(repo, at: datetime | None = None, **kwargs):
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        return measure_stream_lag(runtime, state, state.feature_view("click_counts"), BOUND, now=at, **kwargs)


def test_kinesis_lag_per_shard_while_behind_caught_up_and_stopped(kinesis_repo):
    repo, kinesis, stream = kinesis_repo
    empty = lag(repo)
    assert len(empty.shards) == 2 and empty.behind == 0 and empty.exact and empty.passed

    per_shard: Counter = Counter()
    before = now()
    put(kinesis, stream, 40, per_shard)
    after = now()
    assert len(per_shard) == 2  # both shards hold records
    measured = lag(repo)
    assert {s.shard: s.behind for s in measured.shards} == dict(per_shard)
    assert measured.exact and measured.source == "kinesis"
    for shard in measured.shards:
        assert before - timedelta(seconds=1) <= shard.oldest_unprocessed <= after + timedelta(seconds=1)
        assert shard.millis_behind_latest == 0 and shard.position is None

    # One batch: the processor reads the first shard only (10 of its records).
    with repo.runtime() as runtime:
        processor, source = open_stream(runtime, "prod", "click_counts")
        applied = processor.process(source.read(processor.state().positions, 10)).applied
    assert applied == 10
    partly = {s.shard: s for s in lag(repo).shards}
    done = [s for s in partly.values() if s.position is not None]
    assert len(done) == 1 and done[0].behind == per_shard[done[0].shard] - 10
    assert done[0].last_processed is not None
    waiting = [s for s in partly.values() if s.position is None]
    assert waiting[0].behind == per_shard[waiting[0].shard]

    bounded = lag(repo, max_records=3)
    assert not bounded.exact and all(s.behind >= 3 for s in bounded.shards)
    assert bounded.behind_text().endswith("+")

    with repo.runtime() as runtime:
        run_stream(runtime, "prod", "click_counts", once=True)
    caught_up = lag(repo, at=now() + timedelta(hours=1))
    assert caught_up.behind == 0 and caught_up.exact and caught_up.passed
    assert all(s.last_processed is not None for s in caught_up.shards)

    # Stopped while records arrive (one not JSON: counted invalid once processed).
    kinesis.put_record(StreamName=stream, Data=b"not json", PartitionKey="x")
    put(kinesis, stream, 5, Counter())
    stopped = lag(repo)
    assert stopped.behind == 6 and stopped.passed
    assert not lag(repo, at=stopped.oldest_unprocessed + BOUND + timedelta(seconds=1)).passed
    with repo.runtime() as runtime:
        run_stream(runtime, "prod", "click_counts", once=True)
    final = lag(repo)
    assert (final.behind, final.invalid, final.passed) == (0, 1, True)


def test_kinesis_reads_per_shard_stop_after_a_few_calls(kinesis_repo, monkeypatch):
    from featureplane.monitoring import stream_lag

    repo, kinesis, stream = kinesis_repo
    per_shard: Counter = Counter()
    put(kinesis, stream, 40, per_shard)
    monkeypatch.setattr(stream_lag, "MAX_GET", 4)  # three calls of 4 records read 12 of each shard's
    measured = lag(repo)
    assert [s.behind for s in measured.shards] == [12, 12] and not measured.exact
    assert all(s.millis_behind_latest is not None for s in measured.shards)
    monkeypatch.setattr(stream_lag, "MAX_GET", 1000)
    assert {s.shard: s.behind for s in lag(repo).shards} == dict(per_shard)


def test_a_missing_stream_fails_the_measurement_with_its_reason(kinesis_repo):
    repo, kinesis, stream = kinesis_repo
    kinesis.delete_stream(StreamName=stream)
    measured = lag(repo)
    assert measured.verdict == "ERROR" and not measured.passed
    assert "ResourceNotFoundException" in measured.message()


def test_push_stream_lag_with_the_state_in_dynamodb(tmp_path, dynalite, table_prefix):
    from featureplane.serving.app import create_lookup_service
    from featureplane.serving.protocol import Request

    repo = stream_repo(tmp_path / "repo")
    use_dynamodb(repo.config_path, dynalite, table_prefix)
    service = create_lookup_service(repo.config())
    ts = now().isoformat() + "Z"
    for count in (3, 4):
        records = [payment("u1", ts, i) for i in range(count)]
        body = json.dumps({"workspaceName": "prod", "records": {"payments": records}}).encode()
        assert service.handle(Request("POST", "/api/v1/ingest", {}, body)).status == 200
    service.snapshots.close()
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        view = state.feature_view("payment_counts")
        assert measure_stream_lag(runtime, state, view, BOUND).behind == 7
        processor, source = open_stream(runtime, "prod", "payment_counts")
        assert type(processor.store).__name__ == "DynamoDBStreamStore"
        assert processor.process(source.read(processor.state().positions, 3)).applied == 3
        partly = measure_stream_lag(runtime, state, view, BOUND)
        assert partly.behind == 4 and partly.shards[0].last_processed is not None
        run_stream(runtime, "prod", "payment_counts", once=True)
        assert measure_stream_lag(runtime, state, view, BOUND).behind == 0
