"""Ingest: PushSource and FeatureTable definitions, the ingest endpoint's validation (a bad record
rejects the whole request), event-time ordering online, the durable log folded exactly once into the
offline store, and ``FeatureViewHandle.ingest(df)``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pandas as pd
import pytest
from helpers import SERVING_VIEWS, click, events_repo, serving_repo

from featureplane.ingest.log import IngestLog, ingest_log_root, read_segment
from featureplane.ingest.offline import flush_ingest_log
from featureplane.repo.errors import RepositoryError
from featureplane.repo.loader import load_repository
from featureplane.repo.planning import plan_repository
from featureplane.repo.validation import compile_repository
from featureplane.retrieval.workspace import RetrievalError, get_workspace
from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request
from featureplane.serving.service import LookupService

INGEST = "/api/v1/ingest"


@pytest.fixture
def repo(tmp_path):
    return serving_repo(tmp_path / "repo")


@pytest.fixture
def service(repo) -> LookupService:
    service = create_lookup_service(repo.config())
    yield service
    service.snapshots.close()


def ingest(service: LookupService, records: dict, workspace: str = "prod", **extra) -> tuple[int, dict]:
    body = json.dumps({"workspaceName": workspace, "records": records, **extra}).encode()
    response = service.handle(Request("POST", INGEST, {}, body))
    return response.status, response.json()


def online(service: LookupService, user: str) -> dict:
    body = json.dumps(
        {
            "params": {
                "workspaceName": "prod",
                "featureServiceName": "svc",
                "joinKeyMap": {"user_id": user},
                "metadataOptions": {"includeNames": True},
            }
        }
    ).encode()
    answer = service.handle(Request("POST", "/api/v1/feature-service/get-features", {}, body)).json()
    names = [m["name"] for m in answer["metadata"]["features"]]
    return dict(zip(names, answer["result"]["features"], strict=True))


def logged_rows(repo) -> list:
    log = IngestLog(ingest_log_root(repo.config()))
    return [entry for segment in log.segments("prod") for _, entry in read_segment(segment)]


def offline_rows(repo, view: str) -> list[tuple]:
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        flush_ingest_log(runtime, state)
        table = runtime.offline_store.read(state.table_id(view), state.feature_view(view))
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


# -- definitions -----------------------------------------------------------------------------------


def compile_views(tmp_path, views: str):
    return compile_repository(load_repository(events_repo(tmp_path / "r", views).root))


PUSH = """
    from base import user, events
    from featureplane import Attribute, FeatureTable, Field, Float64, Int64, PushSource, String, Timestamp
"""


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "src = PushSource(name='src', timestamp_field='ts', schema=[Field('user_id', String)])",
            "timestamp_field 'ts' must be one of the schema's fields (user_id)",
        ),
        (
            "src = PushSource(name='src', timestamp_field='ts', schema=[Field('ts', String)])",
            "timestamp_field 'ts' is String, not Timestamp",
        ),
        (
            "src = PushSource(name='src', timestamp_field='ts', schema=[Field('ts', Timestamp), Field('ts', Timestamp)])",
            "field(s) declared twice: ts",
        ),
        (
            "src = PushSource(name='src', timestamp_field='ts', schema=[Field('user_id', String), Field('ts', Timestamp)])\n"
            "t = FeatureTable(name='t', entities=[user], source=src, timestamp_field='ts', features=[Attribute('x', Float64)])",
            "push source 'src' has no field 'x' (it has user_id, ts)",
        ),
        (
            "src = PushSource(name='src', timestamp_field='ts', schema=[Field('user_id', String), Field('ts', Timestamp), Field('x', String)])\n"
            "t = FeatureTable(name='t', entities=[user], source=src, timestamp_field='ts', features=[Attribute('x', Int64)])",
            "field 'x' is String in push source 'src' but Int64 here",
        ),
        (
            "t = FeatureTable(name='t', entities=[user], source=events, timestamp_field='ts', features=[Attribute('x', Int64)])",
            "source must be a PushSource, got BatchSource('events')",
        ),
        (
            "t = FeatureTable(name='t', entities=[user], timestamp_field='ts', features=[Attribute('x', Int64)])\n"
            "src = PushSource(name='t', timestamp_field='ts', schema=[Field('ts', Timestamp)])",
            "a PushSource is also named 't'",
        ),
    ],
)
def test_push_sources_and_feature_tables_are_validated_where_they_are_written(tmp_path, body, fragment):
    with pytest.raises((RepositoryError, ValueError)) as info:
        compile_views(tmp_path, PUSH + "\n    " + body.replace("\n", "\n    "))
    assert fragment in str(info.value)
    assert "views.py:" in str(info.value)


def test_a_batch_view_cannot_read_a_push_source(tmp_path):
    views = (
        PUSH
        + """
    from datetime import datetime
    from featureplane import batch_feature_view
    src = PushSource(name='src', timestamp_field='ts', schema=[Field('user_id', String), Field('ts', Timestamp)])

    @batch_feature_view(sources=[src], entities=[user], mode="snowflake_sql", features=[Attribute("n", Int64)],
                        timestamp_field="ts", feature_start_time=datetime(2024, 1, 1))
    def bad(src):
        return f"SELECT user_id, ts, 1 AS n FROM {src}"
    """
    )
    with pytest.raises(RepositoryError, match="source 'src' is a PushSource"):
        compile_views(tmp_path, views)


def test_plan_recreates_a_feature_table_only_when_what_it_stores_changes(repo):
    views = repo.root / "views.py"
    # A new field in the push source, unused by the table: the table keeps its data.
    views.write_text(
        views.read_text().replace('Field("page", String)', 'Field("page", String), Field("ref", String)')
    )
    with repo.runtime() as runtime:
        plan = plan_repository(runtime, "prod")
        assert {(c.kind, c.name, c.action) for c in plan.changes} == {("data_source", "clicks", "update")}
        views.write_text(
            views.read_text().replace(
                'Attribute("vip", Bool)', 'Attribute("vip", Bool), Attribute("age", Int64)'
            )
        )
        plan = plan_repository(runtime, "prod")
    (change,) = [c for c in plan.changes if c.name == "profile"]
    assert change.action == "recreate" and "the ingested data is discarded" in change.reasons


# -- the ingest endpoint ---------------------------------------------------------------------------


def test_records_fan_out_from_a_push_source_and_go_straight_to_a_table(repo, service):
    status, body = ingest(
        service,
        {
            "clicks": [
                click(
                    "u1",
                    "2099-01-01T00:00:00Z",
                    0.5,
                    count="7",
                    tags=["a", None],
                    seen="2024-02-03T04:05:06+01:00",
                    page="home",
                )
            ],
            "profile": [
                {"record": {"user_id": "u1", "updated": "2024-01-01T00:00:00Z", "tier": "gold", "vip": True}}
            ],
        },
    )
    assert status == 200
    assert body["workspaceName"] == "prod" and body["dryRun"] is False
    metrics = {m["featureViewName"]: m for m in body["ingestMetrics"]["featureViewIngestMetrics"]}
    assert (
        metrics["scores"]["onlineRecordIngestCount"] == "1"
        and metrics["scores"]["offlineRecordIngestCount"] == "1"
    )
    # profile is online only: nothing of it goes offline.
    assert (
        metrics["profile"]["onlineRecordIngestCount"] == "1"
        and metrics["profile"]["offlineRecordIngestCount"] == "0"
    )
    assert online(service, "u1") == {
        "spend.amount": 7.0,
        "scores.score": 0.5,
        "scores.count": "7",
        "scores.tags": ["a", None],
        "scores.seen": "2024-02-03T03:05:06Z",
        "profile.tier": "gold",
        "profile.vip": True,
    }
    # The request is logged whole (profile too), so that a replay after a crash applies all of it;
    # only scores is folded into the offline store.
    assert [list(e["tables"]) for e in logged_rows(repo)] == [["prod/scores/g1", "prod/profile/g1"]]
    assert [r[0] for r in offline_rows(repo, "scores")] == ["u1"]


@pytest.mark.parametrize(
    ("records", "fragment"),
    [
        (
            {
                "clicks": [
                    click("u1", "2099-01-01T00:00:00Z", 1.0),
                    click("u2", "2099-01-01T00:00:00Z", "high"),
                ]
            },
            "records.clicks[1]: field 'score': expected a float64 (a number), got 'high'",
        ),
        (
            {
                "clicks": [
                    click("u1", "2099-01-01T00:00:00Z", 1.0),
                    {"record": {"ts": "2099-01-01T00:00:00Z"}},
                ]
            },
            "records.clicks[1]: field 'user_id' is required (string)",
        ),
        (
            {"clicks": [click("u1", "2099-01-01T00:00:00Z", 1.0, colour="red")]},
            "records.clicks[0]: unknown field 'colour'",
        ),
        (
            {"clicks": [click("u1", "yesterday", 1.0)]},
            "records.clicks[0]: field 'ts': expected an ISO-8601 timestamp",
        ),
        (
            {"clicks": [click("u1", "2099-01-01T00:00:00Z", count="12x")]},
            "records.clicks[0]: field 'count': expected an int64",
        ),
        (
            {"clicks": [click("u1", "2099-01-01T00:00:00Z", count=2**63)]},
            "records.clicks[0]: field 'count': 9223372036854775808 is outside the int64 range",
        ),
        (
            {"clicks": [click("u1", "2099-01-01T00:00:00Z", tags="a,b")]},
            "records.clicks[0]: field 'tags': expected a list of string",
        ),
        (
            {"clicks": [click("u1", "2099-01-01T00:00:00Z", tags=[1])]},
            "records.clicks[0]: field 'tags': expected a string, got 1",
        ),
        (
            {"profile": [{"record": {"user_id": "u1", "updated": "2024-01-01T00:00:00Z", "vip": "yes"}}]},
            "records.profile[0]: field 'vip': expected true or false",
        ),
        (
            {"clicks": [{"user_id": "u1"}]},
            'records.clicks[0] must be an object of the form {"record": {...}}',
        ),
        ({"clicks": {"record": {}}}, "records.clicks must be a list"),
        (
            {"spend": []},
            "'spend' is not a push source or feature table of workspace 'prod' (known: clicks, profile, scores)",
        ),
        ({}, "records must be an object"),
    ],
)
def test_a_bad_record_rejects_the_whole_request(repo, service, records, fragment):
    status, body = ingest(service, records)
    assert status == 400
    assert fragment in body["message"]
    assert online(service, "u1")["scores.score"] is None
    assert logged_rows(repo) == []


def test_request_level_errors(service):
    assert ingest(service, {"clicks": []}, dryRun="yes")[1]["message"] == "dryRun must be true or false"
    status, body = ingest(service, {"clicks": []}, workspace="dev")
    assert status == 404 and "development workspace" in body["message"]
    assert ingest(service, {"clicks": []}, workspace="nope")[0] == 404
    response = service.handle(Request("POST", INGEST, {}, b'{"params": {}}'))
    assert response.status == 400 and "workspaceName is required" in response.json()["message"]
    service.ingestor.max_records = 2
    status, body = ingest(service, {"clicks": [click("u1", "2099-01-01T00:00:00Z", 1.0)] * 3})
    assert status == 413 and "3 records; the limit is 2" in body["message"]


def test_dry_run_validates_and_writes_nothing(repo, service):
    status, body = ingest(service, {"clicks": [click("u1", "2099-01-01T00:00:00Z", 1.0)]}, dry_run=True)
    assert status == 200 and body["dryRun"] is True
    (metric,) = body["ingestMetrics"]["featureViewIngestMetrics"]
    assert metric["recordCount"] == "1" and metric["onlineRecordIngestCount"] == "0"
    assert online(service, "u1")["scores.score"] is None and logged_rows(repo) == []
    assert ingest(service, {"clicks": [click("u1", "bad", 1.0)]}, dryRun=True)[0] == 400


def test_an_older_event_never_overwrites_a_newer_one_online(repo, service):
    assert ingest(service, {"clicks": [click("u1", "2099-01-02T00:00:00Z", 2.0)]})[0] == 200
    status, body = ingest(service, {"clicks": [click("u1", "2099-01-01T00:00:00Z", 1.0)]})
    assert status == 200
    (metric,) = body["ingestMetrics"]["featureViewIngestMetrics"]
    assert metric["onlineRecordIngestCount"] == "0" and metric["offlineRecordIngestCount"] == "1"
    assert online(service, "u1")["scores.score"] == 2.0
    # Within one request too, whatever the order: the newest event wins.
    ingest(
        service,
        {"clicks": [click("u2", "2099-01-05T00:00:00Z", 5.0), click("u2", "2099-01-03T00:00:00Z", 3.0)]},
    )
    assert online(service, "u2")["scores.score"] == 5.0
    ingest(service, {"clicks": [click("u2", "2099-01-06T00:00:00Z", 6.0)]})
    assert online(service, "u2")["scores.score"] == 6.0
    # The offline store keeps every event.
    assert [(r[0], r[2]) for r in offline_rows(repo, "scores")] == [
        ("u1", 1.0),
        ("u1", 2.0),
        ("u2", 3.0),
        ("u2", 5.0),
        ("u2", 6.0),
    ]


# -- the offline store -----------------------------------------------------------------------------


def test_ingested_records_reach_training_sets(repo, service):
    ingest(
        service,
        {"clicks": [click("u1", "2024-01-01T00:00:00Z", 1.0), click("u1", "2024-01-03T00:00:00Z", 3.0)]},
    )
    ingest(
        service,
        {"scores": [{"record": {"user_id": "u2", "ts": "2024-01-02T00:00:00Z", "score": 2.0, "count": 5}}]},
    )
    spine = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "ts": pd.to_datetime(["2023-12-31", "2024-01-02", "2024-01-04", "2024-01-02"]),
        }
    )
    ws = get_workspace("prod", config=repo.config_path)
    training = ws.get_feature_view("scores").get_historical_features(spine, timestamp_key="ts")
    assert pd.isna(training["scores__score"].iloc[0])
    assert training["scores__score"].tolist()[1:] == [1.0, 3.0, 2.0]
    assert training["scores__count"].iloc[3] == 5


def test_folding_is_exactly_once_even_when_a_fold_fails(repo, service, monkeypatch):
    ingest(service, {"clicks": [click("u1", "2024-01-01T00:00:00Z", 1.0)]})
    ingest(service, {"clicks": [click("u2", "2024-01-01T00:00:00Z", 2.0)]})
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        store = type(runtime.offline_store)

        def crash(*args, **kwargs):
            raise OSError("disk went away")

        monkeypatch.setattr(store, "append_ingested", crash)
        with pytest.raises(OSError):
            flush_ingest_log(runtime, state)
        monkeypatch.undo()
        assert flush_ingest_log(runtime, state) == {"scores": 2}
        assert flush_ingest_log(runtime, state) == {"scores": 0}
    ingest(service, {"clicks": [click("u3", "2024-01-01T00:00:00Z", 3.0)]})
    assert [r[0] for r in offline_rows(repo, "scores")] == ["u1", "u2", "u3"]
    assert [r[0] for r in offline_rows(repo, "scores")] == ["u1", "u2", "u3"]


def test_sealed_segments_are_removed_once_folded(repo, service):
    ingest(service, {"clicks": [click("u1", "2024-01-01T00:00:00Z", 1.0)]})
    segments = IngestLog(ingest_log_root(repo.config())).segments("prod")
    assert len(segments) == 1
    offline_rows(repo, "scores")
    assert segments[0].exists()  # the server still appends to it
    service.ingestor.log.close()
    offline_rows(repo, "scores")
    assert not segments[0].exists()
    assert [r[0] for r in offline_rows(repo, "scores")] == ["u1"]


def test_a_torn_tail_is_ignored(repo, service):
    ingest(service, {"clicks": [click("u1", "2024-01-01T00:00:00Z", 1.0)]})
    (segment,) = IngestLog(ingest_log_root(repo.config())).segments("prod")
    with open(segment, "ab") as handle:
        handle.write(b'0000beef {"tables": {"prod/scores/g1": [["u9"')  # a crash mid-append
    assert [r[0] for r in offline_rows(repo, "scores")] == ["u1"]


# -- replaying the log into the online store -------------------------------------------------------


def test_a_failed_online_write_is_replayed_so_the_request_is_in_both_stores(repo, service, monkeypatch):
    """The log append succeeds and the online write fails: the client gets a 503 and may never retry.
    The records are offline already; the replay brings them online, and only then may a fold remove
    the segment."""
    from featureplane.ingest.log import is_online

    store = type(service.online_store)
    real_write = store.write

    def fail(self, *args, **kwargs):
        raise OSError("online store went away")

    monkeypatch.setattr(store, "write", fail)
    records = {
        "clicks": [click("u1", "2099-01-01T00:00:00Z", 1.0)],
        "profile": [{"record": {"user_id": "u1", "updated": "2099-01-01T00:00:00Z", "tier": "gold"}}],
    }
    status, body = ingest(service, records)
    assert status == 503 and "retry the request" in body["message"]
    monkeypatch.setattr(store, "write", real_write)
    (segment,) = IngestLog(ingest_log_root(repo.config())).segments("prod")
    assert not is_online(segment)  # sealed by the failure, without an online marker
    assert online(service, "u1")["scores.score"] is None
    assert [r[0] for r in offline_rows(repo, "scores")] == ["u1"]  # offline only: not for long
    assert segment.exists(), "a fold removed a segment whose rows are not online"

    assert service.replay_ingest_log() == 2  # scores and the online-only profile: the whole request
    assert online(service, "u1")["scores.score"] == 1.0 and online(service, "u1")["profile.tier"] == "gold"
    assert is_online(segment) and service.replay_ingest_log() == 0
    offline_rows(repo, "scores")
    assert not segment.exists()
    # The service appends to a new segment of its own.
    assert ingest(service, {"clicks": [click("u2", "2099-01-01T00:00:00Z", 2.0)]})[0] == 200
    assert online(service, "u2")["scores.score"] == 2.0


def test_a_replay_is_idempotent_and_never_overwrites_a_newer_event(repo, service):
    ingest(service, {"clicks": [click("u1", "2099-01-01T00:00:00Z", 1.0)]})
    service.ingestor.log.close()
    (old,) = IngestLog(ingest_log_root(repo.config())).segments("prod")
    from featureplane.ingest.log import online_marker

    online_marker(old).unlink()  # as if its server had died before the online write
    ingest(service, {"clicks": [click("u1", "2099-01-02T00:00:00Z", 2.0)]})  # a newer event, online
    assert service.replay_ingest_log() == 1
    assert service.replay_ingest_log() == 0
    assert online(service, "u1")["scores.score"] == 2.0


def test_a_new_lookup_service_replays_what_a_dead_one_left(repo, service):
    """A process killed between its log append and its online write leaves a sealed segment without
    a marker: starting a lookup service replays it before the first lookup."""
    with repo.runtime() as runtime:
        table_id = runtime.registry.load("prod").table_id("scores")
    code = (
        "import os, signal, sys\n"
        "from featureplane.ingest.log import IngestLog\n"
        "IngestLog(sys.argv[1]).append('prod', {sys.argv[2]: [['u7', 4070908800000000, 7.0, None, None, None]]})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = str(ingest_log_root(repo.config()))
    killed = subprocess.run([sys.executable, "-c", code, root, table_id], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert online(service, "u7")["scores.score"] is None
    fresh = create_lookup_service(repo.config())
    try:
        assert online(fresh, "u7")["scores.score"] == 7.0
    finally:
        fresh.snapshots.close()


# -- the SDK ---------------------------------------------------------------------------------------


def test_feature_table_ingest_from_a_dataframe(repo):
    ws = get_workspace("prod", config=repo.config_path)
    table = ws.get_feature_view("scores")
    df = pd.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "ts": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-01"]),
            "score": [2.0, 1.0, float("nan")],
            "count": [1, 2, 3],
            "tags": [["x"], [], None],
            "seen": pd.to_datetime(["2024-01-01 10:00", None, None]),
        }
    )
    assert table.ingest(df) == {"records": 3, "online": 2, "offline": 3}
    assert table.get_online_features({"user_id": "a"}) == {
        "scores.score": 2.0,
        "scores.count": 1,
        "scores.tags": ["x"],
        "scores.seen": "2024-01-01T10:00:00Z",
    }
    assert table.get_online_features({"user_id": "b"})["scores.score"] is None
    rows = table.get_features_in_range(datetime(2023, 1, 1), datetime(2025, 1, 1))
    assert rows["user_id"].tolist() == ["a", "a", "b"] and rows["seen"].iloc[1] == pd.Timestamp(
        "2024-01-01 10:00"
    )
    with pytest.raises(
        RetrievalError, match=r"records.scores\[1\]: field 'score': expected a float64.*nothing was written"
    ):
        table.ingest(df.assign(score=[1.0, "x", 2.0]))
    with pytest.raises(RetrievalError, match="only FeatureTables take ingested rows"):
        ws.get_feature_view("spend").ingest(df)
    assert len(table.get_features_in_range(datetime(2023, 1, 1), datetime(2025, 1, 1))) == 3


def test_views_file_is_valid_python(tmp_path):
    compile_views(tmp_path, SERVING_VIEWS)


def test_ingest_and_key_checks_in_the_lookup_service_load_no_heavy_libraries(repo):
    """The server's ingest path (records, log, online write) and key verification use the standard
    library and orjson only, like the lookup path."""
    repo.set_config("serving", auth=True)
    code = f"""
import json, sys
from featureplane.access import create_api_key
from featureplane.config import load_config
from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request
config = load_config({str(repo.config_path)!r})
key = create_api_key(config, "prod", "admin")
service = create_lookup_service(config)
body = json.dumps({{"workspaceName": "prod", "records": {{"clicks": [
    {{"record": {{"user_id": "u1", "ts": "2024-01-05T00:00:00Z", "score": 1.0, "seen": "2024-01-01T00:00:00Z"}}}}]}}}})
response = service.handle(Request("POST", "/api/v1/ingest", {{"authorization": "Bearer " + key}}, body.encode()))
assert response.status == 200, response.body
heavy = ["pandas", "pyarrow", "numpy", "duckdb", "deltalake", "dagster", "dbt", "sqlglot", "great_expectations", "snowflake"]
print(",".join(m for m in heavy if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_on_lambda_offline_records_need_an_explicit_durable_log(repo, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "featureplane-lookup")
    service = create_lookup_service(repo.config())
    try:
        status, body = ingest(service, {"clicks": [click("u1", "2024-01-01T00:00:00Z", 1.0)]})
        assert status == 503 and "offline_store.ingest_log" in body["message"] and "EFS" in body["message"]
        profile = {
            "profile": [{"record": {"user_id": "u1", "updated": "2024-01-01T00:00:00Z", "tier": "gold"}}]
        }
        assert ingest(service, profile)[0] == 200  # online-only tables need no log
    finally:
        service.snapshots.close()
    repo.set_config("offline_store", ingest_log=str(repo.root / "durable_log"))
    service = create_lookup_service(repo.config())
    try:
        assert ingest(service, {"clicks": [click("u1", "2024-01-01T00:00:00Z", 1.0)]})[0] == 200
        assert IngestLog(repo.root / "durable_log").segments("prod")
    finally:
        service.snapshots.close()
