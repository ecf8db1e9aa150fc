"""Stream lag of a push stream view over a real ingest log and the SQLite stream store: events
behind and the age of the oldest unprocessed event per segment, while the processor is partly behind,
caught up, and stopped while records keep arriving; counting is bounded per shard."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from stream_repo import payment, stream_repo

from featureplane.config import ConfigError, MonitoringSettings, load_config
from featureplane.ingest.log import IngestLog, encode_entry, ingest_log_root
from featureplane.ingest.records import stream_table_id
from featureplane.monitoring.stream_lag import measure_stream_lag, measure_workspace, unknown_bounds
from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request
from featureplane.streams.runner import open_stream, run_stream

BOUND = timedelta(minutes=5)


@pytest.fixture
def repo(tmp_path):
    return stream_repo(tmp_path / "repo")


@pytest.fixture
def service(repo):
    service = create_lookup_service(repo.config())
    yield service
    service.snapshots.close()


def ingest(service, count: int, user: str = "u1") -> None:
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    records = [payment(user, ts, i + 1) for i in range(count)]
    body = json.dumps({"workspaceName": "prod", "records": {"payments": records}}).encode()
    response = service.handle(Request("POST", "/api/v1/ingest", {}, body))
    assert response.status == 200, response.json()


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def lag(repo, view: str = "payment_counts", at: datetime | None = None, **kwargs):
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        return measure_stream_lag(runtime, state, state.feature_view(view), BOUND, now=at, **kwargs)


def process(repo, view: str, limit: int) -> int:
    """One batch of about ``limit`` records, as `stream run` reads them (whole request lines)."""
    with repo.runtime() as runtime:
        processor, source = open_stream(runtime, "prod", view)
        return processor.process(source.read(processor.state().positions, limit)).applied


def test_lag_while_behind_caught_up_and_stopped(repo, service):
    before = now()
    empty = lag(repo)
    assert (empty.behind, empty.shards, empty.passed, empty.age) == (0, [], True, timedelta(0))

    ingest(service, 3)
    first_arrival = now()
    ingest(service, 4)
    ingest(service, 5)
    behind = lag(repo)
    assert behind.behind == 12 and behind.exact and behind.passed
    [shard] = behind.shards
    assert shard.position is None and shard.last_processed is None
    assert before <= shard.oldest_unprocessed <= first_arrival
    assert shard.bytes_behind > 0

    assert process(repo, "payment_counts", 3) == 3  # the first request's line only
    partly = lag(repo)
    assert partly.behind == 9 and partly.shards[0].position is not None
    assert partly.shards[0].last_processed <= partly.shards[0].oldest_unprocessed
    assert partly.oldest_unprocessed > behind.oldest_unprocessed
    # The same state seen ten minutes later: the oldest waiting event is older than the bound.
    later = lag(repo, at=partly.oldest_unprocessed + BOUND + timedelta(seconds=1))
    assert (later.passed, later.verdict) == (False, "LAGGING") and "LAGGING" in later.message()
    assert later.metadata()["oldest_unprocessed_age_seconds"] == 301.0
    # The other view of the same source has its own checkpoints.
    assert lag(repo, "last_payment").behind == 12

    with repo.runtime() as runtime:
        run_stream(runtime, "prod", "payment_counts", once=True)
    caught_up = lag(repo, at=now() + timedelta(hours=1))
    assert (caught_up.behind, caught_up.age, caught_up.passed) == (0, timedelta(0), True)
    assert "caught up" in caught_up.message()
    assert caught_up.watermark is not None and caught_up.last_processed is not None

    # Stopped while records keep arriving: passes while the oldest is young, fails once it is old.
    ingest(service, 2)
    stopped = lag(repo)
    assert stopped.behind == 2 and stopped.passed
    assert not lag(repo, at=stopped.oldest_unprocessed + BOUND + timedelta(seconds=1)).passed


def test_late_and_invalid_counts_come_from_the_committed_state(repo, service):
    old = (datetime.now(UTC) - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ingest(service, 2)
    body = json.dumps({"workspaceName": "prod", "records": {"payments": [payment("u2", old, 1)]}}).encode()
    assert service.handle(Request("POST", "/api/v1/ingest", {}, body)).status == 200
    with repo.runtime() as runtime:
        totals = run_stream(runtime, "prod", "payment_counts", once=True)
    measured = lag(repo)
    assert (measured.late, measured.invalid) == (totals.late, totals.invalid) == (1, 0)
    assert measured.metadata()["late"] == 1


def test_counting_is_bounded_per_shard(repo, service):
    for _ in range(4):
        ingest(service, 5)
    bounded = lag(repo, max_records=7)
    assert bounded.behind >= 7 and not bounded.exact and bounded.behind_text().endswith("+")
    assert lag(repo, max_records=1000).behind == 20


def test_lines_without_an_arrival_time_count_from_their_segment_creation(repo, service):
    """Lines appended before they carried ``received_us``: the age errs long, never short."""
    ingest(service, 1)
    config = repo.config()
    log = IngestLog(ingest_log_root(config))
    [segment] = log.segments("prod")
    table = stream_table_id("prod", "payments")
    old_line = encode_entry({table: [[0, "u3", 0, 9, "m1"]]})
    with open(segment, "ab") as out:
        out.write(old_line)
    created = datetime.fromtimestamp(int(segment.name.split("-")[0]) / 1e9, UTC).replace(tzinfo=None)
    measured = lag(repo)
    assert measured.behind == 2
    assert abs(measured.oldest_unprocessed - created) < timedelta(milliseconds=1)


def test_bounds_per_view_and_their_validation(repo, tmp_path):
    repo.set_config("monitoring", stream_lag={"max_lag_seconds": 120, "views": {"prod/last_payment": 30}})
    settings = MonitoringSettings.from_config(repo.config())
    assert settings.stream_lag_bound("prod", "last_payment") == 30
    assert settings.stream_lag_bound("prod", "payment_counts") == 120
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        measured = {m.view: m for m in measure_workspace(runtime, state, settings)}
        assert unknown_bounds(settings, [state]) == []
    assert set(measured) == {"last_payment", "payment_counts"}
    assert measured["last_payment"].bound == timedelta(seconds=30)

    repo.set_config("monitoring", stream_lag={"views": {"prod/nope": 30}})
    with repo.runtime() as runtime:
        assert unknown_bounds(
            MonitoringSettings.from_config(repo.config()), [runtime.registry.load("prod")]
        ) == ["monitoring.stream_lag.views.prod/nope names no stream feature view of a live workspace"]
    repo.set_config("monitoring", stream_lag={"views": {"clicks": -5, "a b": 1}, "interval_seconds": 1})
    with pytest.raises(ConfigError) as error:
        load_config(repo.config_path)
    text = str(error.value)
    assert (
        "monitoring.stream_lag.views.clicks must be a whole number of seconds of at least 1, got -5" in text
    )
    assert "monitoring.stream_lag.views.a b: expected a feature view name or 'workspace/view'" in text
    assert "monitoring.stream_lag.interval_seconds must be at least 10, got 1" in text


def test_an_unmeasurable_view_fails_with_the_reason(repo, service):
    ingest(service, 1)
    with repo.runtime() as runtime:
        table_id = runtime.registry.load("prod").table_id("payment_counts")
        with runtime.online_store.db.transaction() as con:  # a state that cannot be read
            con.execute(
                "INSERT INTO stream_shards (table_id, shard, state) VALUES (?, ?, ?)", (table_id, "x", b"{")
            )
    measured = lag(repo)
    assert not measured.passed and measured.verdict == "ERROR"
    assert "could not be measured: JSONDecodeError" in measured.message()
