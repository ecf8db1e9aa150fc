"""Stream lag through Dagster's real machinery: a `featureplane stream run` process keeps a push stream
view caught up and its `stream_lag` check passes; the process is killed while records keep arriving
and the check fails, the alert sensor alerts once (webhook and log file), `featureplane status`
shows the view LAGGING; processing again closes the incident. The check also runs as a job."""

from __future__ import annotations

import json
import select
import subprocess
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from conftest import BIN
from stream_repo import payment, stream_repo

from featureplane.monitoring.stream_lag import measure_stream_lag
from featureplane.serving.app import create_lookup_service
from featureplane.serving.protocol import Request
from featureplane.streams.runner import run_stream

pytestmark = pytest.mark.integration
VIEW = dg.AssetKey(["prod", "payment_counts"])
OTHER = dg.AssetKey(["prod", "last_payment"])
BOUND_SECONDS = 2


class Dagster:
    """The code location's definitions over a persistent instance; sensors ticked as the daemon does."""

    def __init__(self, repo, home) -> None:
        from dagster_project.definitions import build_definitions

        self.defs = build_definitions(repo.config())
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.cursors: dict[str, str | None] = {}

    def tick(self, sensor: str):
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors.get(sensor), definitions=self.defs
        )
        data = self.defs.resolve_sensor_def(sensor).evaluate_tick(context)
        self.cursors[sensor] = data.cursor
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
        return data

    def latest_check(self, key: dg.AssetKey):
        check = dg.AssetCheckKey(key, "stream_lag")
        record = self.instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
        return record.event.dagster_event.event_specific_data

    def latest_observation(self, key: dg.AssetKey) -> dict:
        [record] = self.instance.fetch_observations(key, limit=1).records
        return {k: v.value for k, v in record.asset_observation.metadata.items()}


@pytest.fixture
def repo(tmp_path, alert_receiver, monkeypatch):
    repo = stream_repo(tmp_path / "repo")
    repo.set_config(
        "monitoring",
        dagster_url="http://dagster.test",
        stream_lag={"max_lag_seconds": 3600, "views": {"payment_counts": BOUND_SECONDS}},
        alerts=[
            {"type": "webhook", "url": f"{alert_receiver.url}/hook"},
            {"type": "log", "path": "alerts.log", "events": ["stream_lag"]},
        ],
    )
    monkeypatch.setenv("FEATUREPLANE_CONFIG", str(repo.config_path))
    return repo


def ingest(service, count: int) -> None:
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = json.dumps(
        {"workspaceName": "prod", "records": {"payments": [payment("u1", ts, i) for i in range(count)]}}
    ).encode()
    assert service.handle(Request("POST", "/api/v1/ingest", {}, body)).status == 200


def behind(repo) -> int:
    with repo.runtime() as runtime:
        state = runtime.registry.load("prod")
        return measure_stream_lag(runtime, state, state.feature_view("payment_counts"), timedelta(1)).behind


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_check_passes_then_fails_when_the_processor_stops_and_alerts_once(
    repo, dagster_home, alert_receiver
):
    service = create_lookup_service(repo.config())
    dagster = Dagster(repo, dagster_home)
    sensor = dagster.defs.resolve_sensor_def("featureplane_stream_lag")
    assert sensor.minimum_interval_seconds == 60
    dagster.tick("featureplane_alerts")  # the alert sensor starts from now
    dagster.tick("featureplane_stream_lag")  # nothing processed yet: the processor's progress is unknown
    assert dagster.latest_observation(VIEW)["progress_seen_at"] == "unknown"

    processor = subprocess.Popen(
        [str(BIN / "featureplane"), "stream", "run", "-w", "prod", "--view", "payment_counts"],
        cwd=repo.root,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ingest(service, 3)
        ready, _, _ = select.select([processor.stdout], [], [], 120)
        assert ready and processor.stdout.readline().startswith("prod/payment_counts: ")
        wait_until(lambda: behind(repo) == 0, "the processor to catch up")
        time.sleep(BOUND_SECONDS + 0.5)  # caught up: however long nothing arrives, it does not lag
        dagster.tick("featureplane_stream_lag")
        check = dagster.latest_check(VIEW)
        assert check.passed and "caught up" in check.description
        observed = dagster.latest_observation(VIEW)
        assert (observed["events_behind"], observed["shards"], observed["late"]) == (0, 1, 0)
        assert observed["last_processed"] != "unknown" and observed["watermark"] != "none"
        progressed = observed["progress_seen_at"]  # this tick saw the committed state change
        assert progressed.endswith("Z") and progressed[:19] == observed["measured_at"][:19]
        # last_payment has no processor running: 3 events wait, well within its bound of an hour
        assert dagster.latest_check(OTHER).passed
        assert dagster.latest_observation(OTHER)["events_behind"] == 3
    finally:
        processor.kill()
        processor.wait()

    ingest(service, 4)
    time.sleep(BOUND_SECONDS + 0.5)
    for _ in range(2):  # two ticks, one incident, one alert
        dagster.tick("featureplane_stream_lag")
        dagster.tick("featureplane_alerts")
    check = dagster.latest_check(VIEW)
    assert not check.passed and "LAGGING" in check.description
    assert check.metadata["progress_seen_at"].value == progressed  # no commit since: it is stuck
    assert check.metadata["events_behind"].value == 4
    assert check.metadata["oldest_unprocessed_age_seconds"].value > BOUND_SECONDS
    assert check.metadata["per_shard"].value[0]["events_behind"] == 4
    hooks = [r["json"] for r in alert_receiver.received if r["path"] == "/hook"]
    [alert] = hooks
    assert (alert["event"], alert["subject"], alert["asset"]) == (
        "stream_lag",
        "payment_counts",
        "prod/payment_counts",
    )
    assert alert["check"] == "stream_lag" and alert["run_url"] is None
    assert "4 event(s) wait" in alert["reason"] and alert["details"]["max_lag_seconds"] == BOUND_SECONDS
    assert alert["title"] == "[featureplane] Stream feature view is lagging: prod/payment_counts"
    logged = [json.loads(line) for line in (repo.root / "alerts.log").read_text().splitlines()]
    assert [a["incident"] for a in logged] == ["stream_lag:prod/payment_counts"]

    env = {"DAGSTER_HOME": str(dagster_home), "COLUMNS": "200"}
    text = repo.cli("status", env=env).stdout
    assert "Stream feature views" in text
    line = next(x for x in text.splitlines() if x.startswith("prod/payment_counts"))
    assert " 4 " in line and "LAGGING" in line and "0 / 0" in line
    assert "OK" in next(x for x in text.splitlines() if x.startswith("prod/last_payment"))
    report = json.loads(repo.cli("status", "--json", env=env).stdout)
    streams = {s["view"]: s for s in report["streams"]}
    assert (
        streams["payment_counts"]["status"] == "LAGGING" and streams["payment_counts"]["events_behind"] == 4
    )
    assert streams["payment_counts"]["check"]["passed"] is False
    assert streams["last_payment"]["status"] == "OK" and streams["last_payment"]["events_behind"] == 7
    assert len(streams["payment_counts"]["per_shard"]) == 1
    assert streams["payment_counts"]["progress_seen_at"] == progressed

    # Processing again closes the incident; a later lag is a new incident and alerts again.
    with repo.runtime() as runtime:
        run_stream(runtime, "prod", "payment_counts", once=True)
    dagster.tick("featureplane_stream_lag")
    dagster.tick("featureplane_alerts")
    assert dagster.latest_check(VIEW).passed
    ingest(service, 1)
    time.sleep(BOUND_SECONDS + 0.5)
    dagster.tick("featureplane_stream_lag")
    dagster.tick("featureplane_alerts")
    assert len([r for r in alert_receiver.received if r["path"] == "/hook"]) == 2
    service.snapshots.close()


def test_the_check_executes_as_a_job_and_records_an_observation(repo, dagster_home, alert_receiver):
    dagster = Dagster(repo, dagster_home)
    checks = dagster.defs.resolve_asset_graph().asset_check_keys
    assert {dg.AssetCheckKey(VIEW, "stream_lag"), dg.AssetCheckKey(OTHER, "stream_lag")} <= set(checks)
    dagster.tick("featureplane_alerts")
    service = create_lookup_service(repo.config())
    ingest(service, 2)
    service.snapshots.close()
    time.sleep(BOUND_SECONDS + 0.5)
    job = dagster.defs.resolve_job_def("prod__stream_lag_checks")
    result = job.execute_in_process(instance=dagster.instance, raise_on_error=False)
    assert result.success
    evaluations = {e.asset_key: e for e in result.get_asset_check_evaluations()}
    assert not evaluations[VIEW].passed and evaluations[OTHER].passed
    assert evaluations[VIEW].metadata["events_behind"].value == 2
    assert dagster.latest_observation(VIEW)["events_behind"] == 2
    dagster.tick("featureplane_alerts")
    [alert] = [r["json"] for r in alert_receiver.received if r["path"] == "/hook"]
    assert (
        alert["subject"] == "payment_counts"
        and alert["run_url"] == f"http://dagster.test/runs/{result.run_id}"
    )
