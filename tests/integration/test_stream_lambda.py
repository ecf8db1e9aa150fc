"""The stream Lambda handler on Kinesis event-source-mapping batches (moto's server for Kinesis,
dynalite for DynamoDB: moto's conditional writes are not atomic when two handlers write at once):
records really put to and read back from a two-shard stream, both shards' handlers at
once writing the same entities, DynamoDB failing mid-batch (a conditional-check storm, shard states
that cannot be saved), and every record counted once after the retries that batchItemFailures asks for."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from datetime import datetime, timedelta

import pytest
from aws_servers import AWS_ENV, FaultProxy, use_dynamodb
from conftest import ROOT
from helpers import events_repo

from featureplane.repo.planning import apply_plan, plan_repository
from featureplane.streams import aws_lambda
from featureplane.util.aws import client

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 9, 0)
REGION = "us-east-1"
RETRIES = ", retry_base_seconds: 0.002, retry_max_seconds: 0.05, max_attempts: 4"

VIEWS = """
    from datetime import timedelta
    from base import events, user
    from featureplane import Aggregate, Field, Int64, KinesisConfig, StreamSource, stream_feature_view

    clicks = StreamSource(name="clicks", timestamp_field="ts", batch_config=events,
                          kinesis=KinesisConfig(stream_name="{stream}", region="us-east-1"))

    @stream_feature_view(source=clicks, entities=[user], aggregation_interval=timedelta(minutes=1),
                         features=[Aggregate(Field("amount", Int64), "count", timedelta(minutes=5)),
                                   Aggregate(Field("amount", Int64), "sum", timedelta(minutes=5))],
                         timestamp_field="ts", online=True, allowed_lateness=timedelta(hours=2))
    def click_counts(record):
        return {{"user_id": record["user"], "ts": record["ts"], "amount": record["amount"]}}
"""


class StormProxy(FaultProxy):
    """Forwards to DynamoDB, except that every tile UpdateItem fails its condition (as when other
    writers keep winning) while ``storm`` is on or while the count of UpdateItem calls is in
    ``storm_calls``, and every ``put_every``-th PutItem (a shard state, saved after its tiles) is
    refused."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.storm = False
        self.storm_calls = range(0)
        self.put_every = 0
        self.injected: Counter[str] = Counter()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        operation = headers.get("X-Amz-Target", "").split(".")[-1]
        code = None
        with self._lock:
            self.calls[operation] += 1
            storm = self.storm or self.calls[operation] in self.storm_calls
            if storm and operation == "UpdateItem" and b"#ver" in body:
                code = "ConditionalCheckFailedException"
            elif self.put_every and operation == "PutItem" and self.calls[operation] % self.put_every == 0:
                code = "AccessDeniedException"
            if code:
                self.injected[code] += 1
        if code is None:
            return super().handle(headers, body)
        payload = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"})
        return 400, self._json_headers(payload.encode()), payload.encode()


@pytest.fixture
def proxy(dynalite):
    proxy = StormProxy(dynalite)
    yield proxy
    proxy.stop()


@pytest.fixture
def setup(tmp_path, moto_server, proxy, table_prefix, monkeypatch):
    """A two-shard stream, a repository whose stream view reads it (applied, snapshot exported), and
    the function's environment pointing at that configuration."""
    stream = f"clicks-{random.randint(0, 10**9)}"
    kinesis = client("kinesis", region_name=REGION, endpoint_url=moto_server)
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
    repo = events_repo(tmp_path / "repo", VIEWS.format(stream=stream))
    use_dynamodb(
        repo.config_path, proxy.url, table_prefix, snapshot=str(tmp_path / "snapshot.json"), extra=RETRIES
    )
    with repo.runtime() as runtime:
        runtime.registry.create_workspace("prod", live=True)
        apply_plan(runtime, plan_repository(runtime, "prod"))
    monkeypatch.setenv("FEATUREPLANE_CONFIG", str(repo.config_path))
    monkeypatch.setenv("FEATUREPLANE_STREAM_CHUNK_RECORDS", "7")
    aws_lambda.reset()
    yield kinesis, stream, repo
    aws_lambda.reset()


def put(kinesis, stream: str, rng: random.Random, count: int, expected: Counter) -> None:
    entries = []
    for _ in range(count):
        user = f"u{rng.randint(0, 3)}"
        ts = T0 + timedelta(seconds=rng.randint(0, 1200))
        amount = rng.randint(1, 50)
        data = {"user": user, "ts": ts.isoformat() + "Z", "amount": amount}
        # Random partition keys: every user's records land on both shards.
        entries.append({"Data": json.dumps(data).encode(), "PartitionKey": f"k{rng.randint(0, 10**6)}"})
        expected[(user, "n")] += 1
        expected[(user, "sum")] += amount
    for first in range(0, len(entries), 500):
        kinesis.put_records(StreamName=stream, Records=entries[first : first + 500])


def shard_records(kinesis, stream: str) -> tuple[str, dict[str, list[dict]]]:
    """Every record of each shard, read back from Kinesis, and the stream's ARN."""
    arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    out = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records: list[dict] = []
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            records += response["Records"]
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
        out[shard["ShardId"]] = records
    return arn, out


def esm_event(arn: str, shard: str, records: list[dict]) -> dict:
    """The event a Kinesis event source mapping hands the function for these records of a shard."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/featureplane-stream",
                "awsRegion": REGION,
                "eventSourceARN": arn,
            }
            for r in records
        ]
    }


def run_shard(arn: str, shard: str, records: list[dict], batch_size: int, log: list) -> None:
    """What the event source mapping does for one shard: batches in order; on a batchItemFailure,
    the next batch starts at the reported record."""
    at = 0
    for _ in range(10_000):
        if at >= len(records):
            return
        batch = records[at : at + batch_size]
        answer = aws_lambda.handler(esm_event(arn, shard, batch))
        failures = answer["batchItemFailures"]
        if not failures:
            at += len(batch)
            continue
        sequence = failures[0]["itemIdentifier"]
        index = [r["SequenceNumber"] for r in batch].index(sequence)  # a record of this batch
        log.append((shard, at + index))
        at += index
    raise AssertionError(f"{shard} did not finish")


def tiles_total(function, table_id: str, users) -> Counter:
    got: Counter = Counter()
    for user in users:
        for tile in function.store.tiles(table_id, (user,)).values():
            got[(user, "n")] += tile["cols"]["amount"]["n"]
            got[(user, "sum")] += tile["cols"]["amount"]["sum"]
    return got


def test_two_shards_handlers_at_once_with_failures_mid_batch_count_every_record_once(setup, proxy):
    kinesis, stream, _ = setup
    rng = random.Random(11)
    expected: Counter = Counter()
    put(kinesis, stream, rng, 100, expected)
    for bad in (b"not json", b"[1, 2]", json.dumps({"user": None, "ts": "2026-03-01T09:00:00Z"}).encode()):
        kinesis.put_record(StreamName=stream, Data=bad, PartitionKey=f"bad-{bad[:3]!r}")
    put(kinesis, stream, rng, 100, expected)
    arn, by_shard = shard_records(kinesis, stream)
    assert len(by_shard) == 2 and all(len(r) > 40 for r in by_shard.values())
    assert sum(len(r) for r in by_shard.values()) == 203

    # DynamoDB misbehaves while the handlers run: a conditional-check storm long enough to exhaust
    # the retries of a few updates, and shard states that cannot be saved after their tiles were.
    retried: list = []
    errors: list = []
    start = proxy.calls["UpdateItem"]
    proxy.storm_calls = range(start + 40, start + 200)
    proxy.put_every = 5

    def shard_thread(shard: str) -> None:
        try:
            run_shard(arn, shard, by_shard[shard], batch_size=25, log=retried)
        except Exception as exc:  # reported below
            errors.append(exc)

    function = aws_lambda.init()
    threads = [threading.Thread(target=shard_thread, args=(s,)) for s in by_shard]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    proxy.storm_calls = range(0)
    proxy.put_every = 0
    assert not errors, errors
    storm, refused = (
        proxy.injected["ConditionalCheckFailedException"],
        proxy.injected["AccessDeniedException"],
    )
    print("retried from:", retried, "injected:", dict(proxy.injected))
    assert storm >= 100 and refused > 0
    assert len(retried) >= 2, retried  # batchItemFailures were reported and retried from there

    (processor,) = function.processors(arn)
    state = processor.state()
    assert state.positions == {s: int(r[-1]["SequenceNumber"]) for s, r in by_shard.items()}
    assert state.invalid == 3 and state.late == 0  # the malformed records, each counted once
    assert tiles_total(function, processor.table_id, {u for u, _ in expected}) == expected
    assert processor.store.conflicts > 0 or proxy.injected["ConditionalCheckFailedException"] > 0

    # The whole stream delivered again (an event source mapping re-created at TRIM_HORIZON): nothing changes.
    for shard, records in by_shard.items():
        assert aws_lambda.handler(esm_event(arn, shard, records)) == {"batchItemFailures": []}
    assert tiles_total(function, processor.table_id, {u for u, _ in expected}) == expected
    assert processor.state().invalid == 3


def test_a_failure_reports_the_first_record_not_committed_and_the_retry_ends_exact(setup, proxy):
    kinesis, stream, _ = setup
    expected: Counter = Counter()
    put(kinesis, stream, random.Random(3), 60, expected)
    arn, by_shard = shard_records(kinesis, stream)
    shard, records = max(by_shard.items(), key=lambda item: len(item[1]))
    function = aws_lambda.init()
    function.processors(arn)  # resolved before the storm
    assert len(records) > 14
    ok = aws_lambda.handler(esm_event(arn, shard, records[:7]))  # the first chunk commits
    assert ok == {"batchItemFailures": []}
    proxy.storm = True
    answer = aws_lambda.handler(esm_event(arn, shard, records))
    proxy.storm = False
    # Chunk one was committed before: the first uncommitted record is the one after it.
    assert answer == {"batchItemFailures": [{"itemIdentifier": records[7]["SequenceNumber"]}]}
    assert aws_lambda.handler(esm_event(arn, shard, records[7:])) == {"batchItemFailures": []}
    for other, rest in by_shard.items():
        if other != shard:
            assert aws_lambda.handler(esm_event(arn, other, rest)) == {"batchItemFailures": []}
    (processor,) = function.processors(arn)
    assert tiles_total(function, processor.table_id, {u for u, _ in expected}) == expected


class Context:
    """The part of Lambda's context object the handler reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_running_out_of_time_stops_at_a_chunk_and_reports_it(setup):
    kinesis, stream, _ = setup
    put(kinesis, stream, random.Random(4), 40, Counter())
    arn, by_shard = shard_records(kinesis, stream)
    shard, records = max(by_shard.items(), key=lambda item: len(item[1]))
    event = esm_event(arn, shard, records)
    batch = aws_lambda.parse_event(event)
    failed = aws_lambda.process_batch(aws_lambda.init(), batch, Context(1_000))
    assert failed == 7  # the first chunk always runs; the second would start with a second left
    (processor,) = aws_lambda.init().processors(arn)
    assert processor.state().positions == {shard: int(records[6]["SequenceNumber"])}


def test_events_it_cannot_read_are_refused_with_the_reason_and_malformed_data_is_invalid(setup):
    kinesis, stream, _ = setup
    kinesis.put_record(
        StreamName=stream, Data=b'{"user": "u1", "ts": "yesterday", "amount": 1}', PartitionKey="a"
    )
    arn, by_shard = shard_records(kinesis, stream)
    shard, records = next((s, r) for s, r in by_shard.items() if r)
    event = esm_event(arn, shard, records)
    event["Records"].append(json.loads(json.dumps(event["Records"][0])))
    event["Records"][1]["kinesis"]["data"] = "%%% not base64"
    event["Records"][1]["kinesis"]["sequenceNumber"] = str(int(records[0]["SequenceNumber"]) + 1)
    assert aws_lambda.handler(event) == {"batchItemFailures": []}
    (processor,) = aws_lambda.init().processors(arn)
    assert processor.state().invalid == 2 and processor.state().shards[shard].invalid == 2

    with pytest.raises(aws_lambda.EventError, match="has no Records list"):
        aws_lambda.handler({"Records": None})
    with pytest.raises(aws_lambda.EventError, match=r"Records\[0\] is not a Kinesis record"):
        aws_lambda.handler({"Records": [{"eventSource": "aws:sqs"}]})
    broken = json.loads(json.dumps(event))
    del broken["Records"][1]["kinesis"]["sequenceNumber"]
    with pytest.raises(aws_lambda.EventError, match=r"Records\[1\] has no kinesis.sequenceNumber"):
        aws_lambda.handler(broken)
    # A stream no view reads: nothing to do, and nothing to retry.
    other = esm_event(arn.replace(stream, "elsewhere"), shard, records)
    assert aws_lambda.handler(other) == {"batchItemFailures": []}


def test_stream_views_can_be_chosen_and_a_name_that_is_not_one_is_refused(setup, monkeypatch):
    monkeypatch.setenv("FEATUREPLANE_STREAM_VIEWS", "prod/click_counts")
    kinesis, stream, _ = setup
    arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    assert [p.view.name for p in aws_lambda.init().processors(arn)] == ["click_counts"]
    aws_lambda.reset()
    monkeypatch.setenv("FEATUREPLANE_STREAM_VIEWS", "prod/click_counts,prod")
    with pytest.raises(ValueError, match="FEATUREPLANE_STREAM_VIEWS: 'prod' is not workspace/view"):
        aws_lambda.init()


def test_the_stream_handler_imports_nothing_heavy():
    code = (
        "import sys\n"
        "import featureplane.streams.aws_lambda\n"
        "heavy = ['pandas', 'pyarrow', 'numpy', 'duckdb', 'dagster', 'dbt', 'great_expectations',\n"
        "         'snowflake', 'deltalake', 'sqlglot', 'boto3', 'botocore', 'featureplane.runtime']\n"
        "print(','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_LAMBDA_FUNCTION_NAME", "FEATUREPLANE_LAMBDA_INIT")
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == ""


INVOKE = """
import json, sys
from featureplane.streams.aws_lambda import handler, init
answer = handler(json.load(open(sys.argv[1])), None)
state = init().store.state(init().processors(json.load(open(sys.argv[1]))["Records"][0]["eventSourceARN"])[0].table_id)
heavy = sorted(m for m in ("pandas", "pyarrow", "numpy", "duckdb", "dagster") if m in sys.modules)
files = sorted(m.__file__ for n, m in list(sys.modules.items()) if n.startswith("featureplane"))
print(json.dumps({"answer": answer, "positions": state.positions, "invalid": state.invalid, "heavy": heavy,
                  "featureplane": files}))
"""


def test_the_built_stream_zip_processes_a_batch_in_a_boto3_only_virtualenv(
    setup, tmp_path, table_prefix, moto_server, dynalite
):
    kinesis, stream, _ = setup
    out = tmp_path / "featureplane-stream.zip"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "lambda" / "build.py"),
            "--function",
            "stream",
            "--out",
            str(out),
        ],
        check=True,
    )
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        task = tmp_path / "task"
        archive.extractall(task)
    assert {
        "featureplane/streams/aws_lambda.py",
        "featureplane/streams/dynamodb.py",
        "orjson/__init__.py",
    } <= names
    # The processor imports the event log's interface (standard library only), never a backend.
    for absent in ("featureplane/compute/duckdb.py", "featureplane/offline_stores/delta", "featureplane/runtime/",
                   "featureplane/offline_stores/snowflake", "featureplane/offline_stores/event_log_",
                   "featureplane/serving/", "boto3/", "pandas/"):  # fmt: skip
        assert not any(n.startswith(absent) for n in names), absent
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
         "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"), "boto3"],
        check=True,
    )  # fmt: skip
    expected: Counter = Counter()
    put(kinesis, stream, random.Random(8), 30, expected)
    kinesis.put_record(StreamName=stream, Data=b"not json", PartitionKey="bad")
    arn, by_shard = shard_records(kinesis, stream)
    shard, records = max(by_shard.items(), key=lambda item: len(item[1]))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(esm_event(arn, shard, records)))
    env = {
        **AWS_ENV,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(task),
        "AWS_LAMBDA_FUNCTION_NAME": "featureplane-stream",
        "FEATUREPLANE_REGISTRY_SNAPSHOT": str(tmp_path / "snapshot.json"),
        "FEATUREPLANE_DYNAMODB_TABLE_PREFIX": table_prefix,
        "FEATUREPLANE_DYNAMODB_ENDPOINT_URL": dynalite,
        "AWS_ENDPOINT_URL_LAMBDA": moto_server,  # where it checks its event source mappings
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
    assert answer["answer"] == {"batchItemFailures": []}
    assert answer["positions"] == {shard: int(records[-1]["SequenceNumber"])}
    assert answer["invalid"] == sum(1 for r in records if r["Data"] == b"not json")
    assert answer["heavy"] == [] and all(f.startswith(str(task)) for f in answer["featureplane"])


def test_the_sam_template_runs_this_handler_one_batch_per_shard_at_a_time():
    import yaml

    class CloudFormationLoader(yaml.SafeLoader):
        pass

    CloudFormationLoader.add_multi_constructor(
        "!", lambda loader, tag, node: f"{tag} {getattr(node, 'value', '')}"
    )
    template = yaml.load(
        (ROOT / "deploy" / "lambda" / "stream-template.yaml").read_text(), Loader=CloudFormationLoader
    )
    function = template["Resources"]["StreamFunction"]["Properties"]
    module, _, name = function["Handler"].rpartition(".")
    assert module == aws_lambda.__name__ and callable(getattr(aws_lambda, name))
    assert function["CodeUri"] == "../../build/lambda/featureplane-stream.zip"
    assert set(function["Environment"]["Variables"]) <= set(aws_lambda.__doc__.split("``")[1::2]) | {
        "FEATUREPLANE_REGISTRY_SNAPSHOT",
        "FEATUREPLANE_DYNAMODB_TABLE_PREFIX",
    }
    mapping = function["Events"]["Records"]["Properties"]
    assert mapping["ParallelizationFactor"] == 1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumRetryAttempts"] == -1


def test_a_mapping_with_a_parallelization_factor_above_one_is_refused(setup, moto_server, monkeypatch):
    import io

    kinesis, stream, _ = setup
    arn = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["StreamARN"]
    iam = client("iam", region_name=REGION, endpoint_url=moto_server)
    role = iam.create_role(
        RoleName=f"stream-{stream}",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]  # fmt: skip
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return {}\n")
    functions = client("lambda", region_name=REGION, endpoint_url=moto_server)
    name = f"featureplane-stream-{stream}"
    functions.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="index.handler",
                              Code={"ZipFile": code.getvalue()})  # fmt: skip
    mapping = functions.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON", ParallelizationFactor=3
    )
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", moto_server)
    put(kinesis, stream, random.Random(6), 10, Counter())
    _, by_shard = shard_records(kinesis, stream)
    shard, records = max(by_shard.items(), key=lambda item: len(item[1]))
    with pytest.raises(ValueError, match=r"has ParallelizationFactor 3; it must be 1"):
        aws_lambda.handler(esm_event(arn, shard, records))
    # Nothing was processed: the shard has no state.
    assert aws_lambda.init().store.state("prod/click_counts/g1").positions == {}
    functions.update_event_source_mapping(UUID=mapping["UUID"], ParallelizationFactor=1)
    aws_lambda.reset()
    assert aws_lambda.handler(esm_event(arn, shard, records)) == {"batchItemFailures": []}
    assert aws_lambda.init().store.state("prod/click_counts/g1").positions == {
        shard: int(records[-1]["SequenceNumber"])
    }
