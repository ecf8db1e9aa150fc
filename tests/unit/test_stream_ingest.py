"""Push stream sources through the ingest API: records are logged durably, `stream run` applies them
to the stream views' online state per ingest log segment, and the lookup API serves the windows
ending now."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from stream_repo import payment, stream_repo

from featureplane.ingest.log import IngestLog, ingest_log_root
from featureplane.ingest.offline import flush_ingest_log
from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request
from featureplane.streams.runner import run_stream


@pytest.fixture
def repo(tmp_path):
    return stream_repo(tmp_path / "repo")


@pytest.fixture
def service(repo):
    service = create_lookup_service(repo.config())
    yield service
    service.snapshots.close()


def ingest(service, records: list[dict]) -> tuple[int, dict]:
    body = json.dumps({"workspaceName": "prod", "records": {"payments": records}}).encode()
    response = service.handle(Request("POST", "/api/v1/ingest", {}, body))
    return response.status, response.json()


def lookup(service, user: str) -> dict:
    body = json.dumps(
        {
            "params": {
                "workspaceName": "prod",
                "featureServiceName": "fraud",
                "joinKeyMap": {"user_id": user},
                "metadataOptions": {"includeNames": True},
            }
        }
    ).encode()
    answer = service.handle(Request("POST", "/api/v1/feature-service/get-features", {}, body)).json()
    names = [m["name"] for m in answer["metadata"]["features"]]
    return dict(zip(names, answer["result"]["features"], strict=True))


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_pushed_records_reach_the_lookup_after_stream_run(repo, service):
    status, answer = ingest(
        service,
        [
            payment("u1", ago(30), 5, "m1"),
            payment("u1", ago(20), 7, "m2"),
            payment("u1", ago(10), 1, "test"),  # dropped by payment_counts' transformation
            payment("u2", ago(5), 3),
        ],
    )
    assert status == 200, answer
    assert lookup(service, "u1")["payment_counts.amount_count_5m"] == "0"  # not processed yet
    with repo.runtime() as runtime:
        totals = run_stream(runtime, "prod", "payment_counts", once=True)
        assert (totals.applied, totals.dropped) == (3, 1)
        assert run_stream(runtime, "prod", "last_payment", once=True).applied == 4
        assert run_stream(runtime, "prod", "payment_counts", once=True).applied == 0  # nothing new
    got = lookup(service, "u1")
    assert got["payment_counts.amount_count_5m"] == "2"
    assert got["payment_counts.amount_sum_1h"] == "12"
    assert got["payment_counts.merchant_count_distinct_1h"] == "2"
    assert got["last_payment.amount"] == "1" and got["last_payment.merchant"] == "test"
    assert lookup(service, "u2")["payment_counts.amount_count_5m"] == "1"


def test_a_bad_record_rejects_the_request_and_nothing_is_logged(repo, service):
    status, answer = ingest(
        service, [payment("u1", ago(1), 5), {"record": {"user_id": "u1", "ts": ago(1), "amount": "x"}}]
    )
    assert status == 400 and "records.payments[1]: field 'amount'" in answer["message"]
    log = IngestLog(ingest_log_root(repo.config()))
    assert not log.segments("prod")


def test_a_segment_is_removed_only_once_every_stream_view_consumed_it(repo, service):
    assert ingest(service, [payment("u1", ago(1), 5)])[0] == 200
    service.ingestor.log.close()  # seal the segment, as a server does when it stops
    log = IngestLog(ingest_log_root(repo.config()))
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        run_stream(runtime, "prod", "payment_counts", once=True)
        flush_ingest_log(runtime, state)
        assert len(log.segments("prod")) == 1  # last_payment has not read it yet
        run_stream(runtime, "prod", "last_payment", once=True)
        flush_ingest_log(runtime, state)
        assert log.segments("prod") == []
        assert list(log.directory("prod").iterdir()) == []


def test_stream_run_names_what_it_cannot_process(repo):
    from featureplane.errors import FeatureplaneError

    with repo.runtime() as runtime:
        with pytest.raises(
            FeatureplaneError, match=r"no stream feature view 'nope'.*last_payment, payment_counts"
        ):
            run_stream(runtime, "prod", "nope", once=True)
        runtime.registry.create_workspace("dev", live=False)
        from featureplane.repo.planning import apply_plan, plan_repository

        apply_plan(runtime, plan_repository(runtime, "dev"))
        with pytest.raises(FeatureplaneError, match="'dev' is a development workspace"):
            run_stream(runtime, "dev", "payment_counts", once=True)
    out = repo.cli("stream", "run", "-w", "prod", "--view", "nope", "--once", check=False)
    assert out.returncode == 1 and "no stream feature view 'nope'" in out.stderr


def test_a_feature_services_training_set_reads_its_stream_views_event_logs(repo, service):
    import pandas as pd

    from featureplane.retrieval.workspace import Workspace

    records = [payment("u1", ago(30), 5, "m1"), payment("u1", ago(20), 7, "m2"), payment("u2", ago(5), 3)]
    assert ingest(service, records)[0] == 200
    with repo.runtime() as runtime:
        for view in ("payment_counts", "last_payment"):
            run_stream(runtime, "prod", view, once=True)
        now = datetime.now(UTC).replace(tzinfo=None)
        online = {user: lookup(service, user) for user in ("u1", "u2", "u3")}
        spine = pd.DataFrame(
            {"user_id": ["u1", "u2", "u3", "u1"], "ts": [now, now, now, now - timedelta(hours=2)]}
        )
        workspace = Workspace(runtime, runtime.registry.load("prod"))
        training = workspace.get_feature_service("fraud").get_historical_features(spine, "ts")
    for i, user in enumerate(("u1", "u2", "u3")):
        row = training.iloc[i]
        for name, value in online[user].items():
            column = name.replace(".", "__")
            expected = None if value is None else value
            got = row[column]
            got = None if pd.isna(got) else str(got)
            assert got == expected, (user, name, got, expected)
    before = training.iloc[3]  # two hours ago: before every event
    assert before["payment_counts__amount_count_5m"] == 0 and pd.isna(before["last_payment__amount"])
