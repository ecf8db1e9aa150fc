"""The stream Lambda's offline side (moto's server for Kinesis, DynamoDB and S3): the handler stages
each chunk's applied events in S3 before its online commit, the load puts those committed online into
the view's Delta event log, and a training set over the view then equals the one `stream run` gives
over the same records; a crash between staging and the online commit, a retry over other chunks, a
redelivered stream and a load interrupted before it removed what it loaded all count every event once."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zipfile
from collections import Counter
from datetime import datetime, timedelta

import pytest
from aws_servers import AWS_ENV, use_dynamodb
from conftest import ROOT
from helpers import events_repo
from test_monitoring import Dagster
from test_stream_lambda import RETRIES, StormProxy, esm_event, put, run_shard, shard_records

from featureplane.offline_stores.event_log import Handover
from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.streams import aws_lambda
from featureplane.streams.offline import offline_event_log
from featureplane.streams.runner import run_stream
from featureplane.streams.staging import StagedEventLog, StagedHandover, StagingArea, staging_area
from featureplane.streams.staging_load import load_staged
from featureplane.util.aws import client

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 9, 0)
REGION = "us-east-1"

VIEWS = """
    from datetime import timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Int64, KinesisConfig, StreamSource, stream_feature_view

    clicks = StreamSource(name="clicks", timestamp_field="ts", batch_config=events,
                          kinesis=KinesisConfig(stream_name="{stream}", region="us-east-1",
                                                endpoint_url="{endpoint}"))

    @stream_feature_view(source=clicks, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "count", timedelta(minutes=5)),
                                   Aggregate(Field("amount", Int64), "sum", timedelta(minutes=5)),
                                   Aggregate(Field("amount", Int64), "max", timedelta(minutes=10))],
                         timestamp_field="ts", online=True, offline=True,
                         allowed_lateness=timedelta(hours=2))
    def click_counts(record):
        return {{"user_id": record["user"], "ts": record["ts"], "amount": record["amount"]}}
"""


@pytest.fixture
def proxy(moto_server):
    proxy = StormProxy(moto_server)
    yield proxy
    proxy.stop()


@pytest.fixture
def world(tmp_path, moto_server, proxy, table_prefix, monkeypatch):
    """A two-shard stream; the Lambda's repository (DynamoDB through a proxy that can fail, Delta
    offline, staging in a bucket of moto's S3), applied, with the function's environment pointing
    at it; and a second repository of the same views that `stream run` processes."""
    stream = f"clicks-{random.randint(0, 10**9)}"
    kinesis = client("kinesis", region_name=REGION, endpoint_url=moto_server)
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
    bucket = f"staging-{table_prefix.rstrip('_')}"
    client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(Bucket=bucket)
    views = VIEWS.format(stream=stream, endpoint=moto_server)
    staging = f"streams: {{staging: 's3://{bucket}/stage', staging_endpoint_url: '{moto_server}'}}\n"
    lam = events_repo(tmp_path / "lambda", views, config_extra=staging)
    use_dynamodb(
        lam.config_path, proxy.url, table_prefix, snapshot=str(tmp_path / "snapshot.json"), extra=RETRIES
    )
    reference = events_repo(tmp_path / "stream-run", views)
    for repo in (lam, reference):
        with repo.runtime() as runtime:
            runtime.registry.create_workspace("prod", live=True)
            apply_plan(runtime, plan_repository(runtime, "prod"))
    monkeypatch.setenv("FEATUREPLANE_CONFIG", str(lam.config_path))
    monkeypatch.setenv("FEATUREPLANE_STREAM_CHUNK_RECORDS", "7")
    aws_lambda.reset()
    with lam.runtime() as runtime:
        area = staging_area(runtime.config.streams)
        table_id = runtime.registry.load("prod").table_id("click_counts")
    yield kinesis, stream, lam, reference, area, table_id
    aws_lambda.reset()


def offline_events(repo, table_id: str):
    """The view's event log read as training sets read it (each event once), and its raw row count."""
    with repo.runtime() as runtime:
        view = runtime.registry.load("prod").definitions.feature_views["click_counts"]
        log = offline_event_log(runtime, table_id, view)
        events = log.events().to_pylist()
        table = runtime.offline_store._table(table_id)
        raw = 0 if table is None else table.to_pyarrow_dataset().count_rows()
    return events, raw


def training_set(repo, users):
    import pandas as pd

    from featureplane.retrieval.workspace import Workspace

    times = [T0 + timedelta(minutes=m, seconds=30) for m in range(-1, 24, 2)]
    spine = pd.DataFrame([{"user_id": u, "ts": t} for u in sorted(users) for t in times])
    with repo.runtime() as runtime:
        workspace = Workspace(runtime, runtime.registry.load("prod"))
        frame = workspace.get_feature_view("click_counts").get_historical_features(spine, "ts")
    return frame.sort_values(["user_id", "ts"]).reset_index(drop=True)


def totals(events) -> Counter:
    got: Counter = Counter()
    for row in events:
        got[(row["user_id"], "n")] += 1
        got[(row["user_id"], "sum")] += row["amount"]
    return got


def test_staged_events_loaded_give_the_training_set_of_stream_run_over_the_same_records(world):
    import pandas as pd

    kinesis, stream, lam, reference, area, table_id = world
    expected: Counter = Counter()
    put(kinesis, stream, random.Random(21), 120, expected)
    kinesis.put_record(StreamName=stream, Data=b"not json", PartitionKey="bad")
    arn, by_shard = shard_records(kinesis, stream)
    for shard, records in by_shard.items():
        run_shard(arn, shard, records, batch_size=25, log=[])

    staged = area.list_events(table_id)
    assert {s.shard for s in staged} == set(by_shard) and len(staged) >= 120 // 7
    assert offline_events(lam, table_id) == ([], 0)  # nothing offline until the load
    out = lam.cli("stream", "load-staged", "-w", "prod")
    assert "prod/click_counts: 120 staged event(s) loaded from" in out.stdout, out.stdout + out.stderr
    assert area.list_events(table_id) == []
    events, raw = offline_events(lam, table_id)
    assert totals(events) == expected and raw == 120

    with reference.runtime() as runtime:
        totals_run = run_stream(runtime, "prod", "click_counts", once=True)
    assert totals_run.applied == 120 and totals_run.invalid == 1
    key = lambda row: tuple(row.values())  # noqa: E731
    assert sorted(offline_events(reference, table_id)[0], key=key) == sorted(events, key=key)

    users = {u for u, _ in expected}
    ours, theirs = training_set(lam, users), training_set(reference, users)
    pd.testing.assert_frame_equal(ours, theirs)
    assert ours["click_counts__amount_count_5m"].sum() > 0 and len(ours) == len(users) * 13


def test_a_crash_before_the_online_commit_a_retry_over_other_chunks_and_a_redelivery_count_once(
    world, proxy, monkeypatch, dagster_home
):
    kinesis, stream, lam, _, area, table_id = world
    expected: Counter = Counter()
    put(kinesis, stream, random.Random(5), 70, expected)
    arn, by_shard = shard_records(kinesis, stream)
    shard, records = max(by_shard.items(), key=lambda item: len(item[1]))
    assert len(records) > 20
    function = aws_lambda.init()
    (processor,) = function.processors(arn)
    assert isinstance(processor.event_log, StagedEventLog)
    assert aws_lambda.handler(esm_event(arn, shard, records[:7])) == {"batchItemFailures": []}

    # Chunk two is staged, then DynamoDB refuses its tiles: the invocation dies before the commit.
    proxy.storm = True
    answer = aws_lambda.handler(esm_event(arn, shard, records))
    proxy.storm = False
    assert answer == {"batchItemFailures": [{"itemIdentifier": records[7]["SequenceNumber"]}]}
    staged = area.list_events(table_id)
    assert [(s.first, s.last) for s in staged] == [
        (int(records[0]["SequenceNumber"]), int(records[6]["SequenceNumber"])),
        (int(records[7]["SequenceNumber"]), int(records[13]["SequenceNumber"])),
    ]
    # What a retry re-applies: the crashed chunk's events, found by listing after the checkpoint.
    crashed = {(shard, int(r["SequenceNumber"])) for r in records[7:14]}
    assert processor.event_log.logged_after(processor.state().positions) == crashed
    assert processor.event_log.logged_after({}) == crashed | {
        (shard, int(r["SequenceNumber"])) for r in records[:7]
    }
    with lam.runtime() as runtime:  # only what is committed online is loaded
        view = runtime.registry.load("prod").definitions.feature_views["click_counts"]
        first = load_staged(runtime, table_id, view)
    assert (first.objects_loaded, first.events_loaded, first.objects_pending) == (1, 7, 1)

    # The retry runs in chunks of 5 (another invocation's setting): it stages other objects than
    # the crashed attempt, which re-applies the events it had staged.
    function.chunk = 5
    assert aws_lambda.handler(esm_event(arn, shard, records[7:])) == {"batchItemFailures": []}
    for other, rest in by_shard.items():
        if other != shard:
            assert aws_lambda.handler(esm_event(arn, other, rest)) == {"batchItemFailures": []}
    before = len(area.list_events(table_id))
    for other, rest in by_shard.items():  # the whole stream delivered again: nothing new is staged
        assert aws_lambda.handler(esm_event(arn, other, rest)) == {"batchItemFailures": []}
    assert len(area.list_events(table_id)) == before

    online: Counter = Counter()
    for user in {u for u, _ in expected}:
        for tile in processor.store.tiles(table_id, (user,)).values():
            online[(user, "n")] += tile["cols"]["amount"]["n"]
            online[(user, "sum")] += tile["cols"]["amount"]["sum"]
    assert online == expected

    # The load dies after its commit, before it removed the objects; the next load (the daily
    # maintenance job's) appends them again.
    with lam.runtime() as runtime:
        view = runtime.registry.load("prod").definitions.feature_views["click_counts"]

        def lost(self, keys):
            raise OSError("connection reset while removing the loaded objects")

        with monkeypatch.context() as patch:
            patch.setattr(StagingArea, "delete", lost)
            with pytest.raises(OSError, match="connection reset"):
                load_staged(runtime, table_id, view)
    dagster = Dagster(lam, dagster_home)
    result = dagster.defs.resolve_job_def("offline_maintenance_prod").execute_in_process(
        instance=dagster.instance, run_config={"ops": {"maintain_prod": {"config": {}}}}
    )
    (observed,) = [e.event_specific_data.asset_observation for e in result.get_asset_observation_events()]
    metadata = {k: v.value for k, v in observed.metadata.items()}
    assert (metadata["staged_events_loaded"], metadata["staged_objects_pending"]) == (70, 0)
    assert observed.description.startswith("click_counts: 70 staged event(s) loaded from")
    assert area.list_events(table_id) == []
    events, raw = offline_events(lam, table_id)
    assert totals(events) == expected
    assert raw == 7 + 2 * 70  # the crashed chunk's events, and the interrupted load's: readers keep each once


def test_the_hand_over_lives_in_the_staging_area_for_the_backfill_and_the_lambda(world):
    _, _, lam, _, area, table_id = world
    lam_log = StagedEventLog(area, table_id, None)  # type: ignore[arg-type]
    with lam.runtime() as runtime:
        from featureplane.streams.offline import event_log_for

        view = runtime.registry.load("prod").definitions.feature_views["click_counts"]
        platform = event_log_for(runtime, table_id, view)
        assert platform.handover().boundary_us is None
        assert platform.reserve_backfill(0, 3_600_000_000) == 3_600_000_000
        # The Lambda proposes a boundary inside the backfilled history: the boundary is its end.
        assert lam_log.claim_boundary(60_000_000) == 3_600_000_000
        assert platform.reserve_backfill(3_600_000_000, 7_200_000_000) == 3_600_000_000
        assert platform.claim_boundary(9_000_000_000) == 3_600_000_000
        # The Delta table's own hand-over file was never written: one home for the state.
        assert offline_event_log(runtime, table_id, view).handover().boundary_us is None

    # A writer whose read is stale loses the conditional PUT and takes the state in force.
    other = StagedHandover(area, "prod/raced/g0")
    racer = StagedHandover(area, "prod/raced/g0")
    steps = []

    def slow(current):
        if not steps:
            other.claim_boundary(111)  # wins between this writer's read and its write
        steps.append(current)
        return current if current.boundary_us is not None else Handover(222, None)

    assert racer.change(slow).boundary_us == 111 and len(steps) == 2
    body = json.loads(area.get(area.handover_key("prod/raced/g0"))[0])  # type: ignore[index]
    assert body == {"boundary_us": 111, "backfilled_through_us": None}


INVOKE = """
import json, sys
from featureplane.streams.aws_lambda import handler
answer = handler(json.load(open(sys.argv[1])), None)
heavy = sorted(m for m in ("pandas", "pyarrow", "numpy", "duckdb", "deltalake", "snowflake") if m in sys.modules)
print(json.dumps({"answer": answer, "heavy": heavy}))
"""


def test_the_built_zip_stages_events_in_a_boto3_only_virtualenv_and_holds_no_offline_store(
    world, tmp_path, table_prefix, moto_server
):
    kinesis, stream, _, _, area, table_id = world
    out = tmp_path / "featureplane-stream.zip"
    build = [
        sys.executable,
        str(ROOT / "deploy" / "lambda" / "build.py"),
        "--function",
        "stream",
        "--out",
        str(out),
    ]
    subprocess.run(build, check=True)
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "task")
    assert {"featureplane/streams/staging.py", "featureplane/offline_stores/event_log.py"} <= names
    for absent in ("featureplane/offline_stores/delta", "featureplane/offline_stores/snowflake",
                   "featureplane/offline_stores/event_log_", "featureplane/streams/staging_load",
                   "featureplane/runtime/", "deltalake/", "pyarrow/", "snowflake/"):  # fmt: skip
        assert not any(n.startswith(absent) for n in names), absent
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
         "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"), "boto3"],
        check=True,
    )  # fmt: skip
    put(kinesis, stream, random.Random(8), 30, Counter())
    arn, by_shard = shard_records(kinesis, stream)
    shard, records = max(by_shard.items(), key=lambda item: len(item[1]))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(esm_event(arn, shard, records)))
    env = {
        **AWS_ENV,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path / "task"),
        "AWS_LAMBDA_FUNCTION_NAME": "featureplane-stream",
        "FEATUREPLANE_STREAM_CHECK_MAPPINGS": "false",
        "FEATUREPLANE_REGISTRY_SNAPSHOT": str(tmp_path / "snapshot.json"),
        "FEATUREPLANE_DYNAMODB_TABLE_PREFIX": table_prefix,
        "FEATUREPLANE_DYNAMODB_ENDPOINT_URL": moto_server,
        "FEATUREPLANE_STREAM_STAGING": area.uri,
        "FEATUREPLANE_STREAM_STAGING_ENDPOINT_URL": moto_server,
    }
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", INVOKE, str(event)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer == {"answer": {"batchItemFailures": []}, "heavy": []}
    staged = area.list_events(table_id)
    assert sum(len(area.read_events(table_id, s)[0]) for s in staged) == len(records)
    assert {s.shard for s in staged} == {shard}


def test_a_view_without_staging_is_processed_online_with_a_warning(world, monkeypatch, caplog):
    kinesis, stream, lam, _, _, _ = world
    lam.set_config("streams", staging=None)
    monkeypatch.delenv("FEATUREPLANE_STREAM_STAGING", raising=False)
    aws_lambda.reset()
    arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    with caplog.at_level("WARNING", logger="featureplane.streams"):
        (processor,) = aws_lambda.init().processors(arn)
    assert processor.event_log is None
    assert "no staging location is set (FEATUREPLANE_STREAM_STAGING or streams.staging)" in caplog.text


SNOWFLAKE_VIEWS = """
    from datetime import timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Int64, KinesisConfig, StreamSource, stream_feature_view

    clicks = StreamSource(name="clicks", timestamp_field="ts", batch_config=events,
                          kinesis=KinesisConfig(stream_name="clicks", region="us-east-1"))

    @stream_feature_view(source=clicks, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "sum", timedelta(hours=1))],
                         online=True, offline=True, allowed_lateness=timedelta(hours=1))
    def click_sums(record):
        return record
"""


def test_staged_events_load_into_the_snowflake_event_log_in_one_transaction(
    tmp_path, snowflake_server, moto_server, table_prefix
):
    from snowflake_helpers import snowflake_events_repo

    from featureplane.streams.processor import StreamProcessor, StreamRecord

    bucket = f"staging-sf-{table_prefix.rstrip('_')}"
    client("s3", region_name=REGION, endpoint_url=moto_server).create_bucket(Bucket=bucket)
    history = "SELECT * FROM (VALUES ('u1', TIMESTAMP '2024-01-01 10:00:00', 1)) AS t(user_id, ts, amount)"
    repo = snowflake_events_repo(
        tmp_path / "repo", snowflake_server, SNOWFLAKE_VIEWS, {"raw.events": history}
    )
    repo.set_config("streams", staging=f"s3://{bucket}/stage", staging_endpoint_url=moto_server)
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
        state = runtime.registry.load("prod")
        view, table_id = state.definitions.feature_views["click_sums"], state.table_id("click_sums")
        area = staging_area(runtime.config.streams)
        from featureplane.streams.runner import stream_store

        # The Lambda's processor: the view's events staged, its tiles in the runtime's online store.
        staged_log = StagedEventLog(area, table_id, view)
        processor = StreamProcessor(view, table_id, stream_store(runtime), event_log=staged_log)
        records = [
            StreamRecord(shard, n, {"user_id": user, "ts": f"2024-01-02T00:{n:02d}:00", "amount": n})
            for shard, user in (("shardId-0", "u1"), ("shardId-1", "u2"))
            for n in range(1, 7)
        ]
        for start in range(0, len(records), 3):
            processor.process(records[start : start + 3])
        assert len(area.list_events(table_id)) == 4
        loaded = load_staged(runtime, table_id, view)
        assert (loaded.objects_loaded, loaded.events_loaded) == (4, 12)
        log = offline_event_log(runtime, table_id, view)
        assert type(log).__name__ == "SnowflakeEventLog"
        events = log.events().to_pylist()
        versions = runtime.offline_store.version(table_id)
    assert sorted((e["user_id"], e["amount"]) for e in events) == sorted(
        (r.data["user_id"], r.data["amount"]) for r in records
    )
    assert versions == 1  # the four objects in one commit
