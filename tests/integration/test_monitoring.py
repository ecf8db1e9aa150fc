"""Monitoring through Dagster's real machinery: quality checks blocking bad partitions (the real
`dagster asset materialize` CLI), warn-only checks, profiles, freshness checks on their schedule's job,
training/serving drift from a real lookup server's sampled log, serving health observations, alerts
to a local HTTP receiver, a local SMTP server and a log file, and `featureplane status`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from conftest import post_json, run_dagster
from helpers import events_repo, make_warehouse

from featureplane.online_stores.base import OnlineRow

pytestmark = pytest.mark.integration

D1 = datetime(2024, 1, 1)
VIEW = dg.AssetKey(["prod", "amounts"])
VIEWS = """
    from datetime import datetime
    from base import events, user
    from featureplane import Attribute, Between, FeatureService, Float64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True,
                        expectations=[Between("amount", 0, 100),
                                      Between("amount", 0, 50, severity="warn", name="amount_usual")]FRESHNESS)
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    svc = FeatureService(name="svc", features=[amounts])
"""


def events_sql(rows: list[tuple]) -> dict[str, str]:
    values = ", ".join(f"({'NULL' if u is None else repr(u)}, TIMESTAMP '{t}', {a})" for u, t, a in rows)
    return {"raw.events": f"SELECT * FROM (VALUES {values}) AS t(user_id, ts, amount)"}


GOOD_DAY = [("u1", "2024-01-01 10:00:00", 5.0), ("u2", "2024-01-01 11:00:00", 70.0)]
BAD_DAY = [
    ("u1", "2024-01-02 10:00:00", 500.0),
    (None, "2024-01-02 12:00:00", 1.0),
    ("u3", "2024-01-02 13:00:00", 9.0),
]


def monitoring(receiver, smtp, extra: str = "") -> str:
    return f"""
monitoring:
  dagster_url: http://dagster.test
  serving_log: {{sample_rate: 1.0}}
  serving_stats: {{interval_seconds: 0.2}}
  drift: {{min_samples: 50}}
  alerts:
    - {{type: slack, webhook_url: "{receiver.url}/slack"}}
    - {{type: webhook, url: "{receiver.url}/hook"}}
    - {{type: email, host: 127.0.0.1, port: {smtp.port}, from: featureplane@example.com, to: [oncall@example.com]}}
    - {{type: log, path: alerts.log}}
{extra}"""


class Dagster:
    """The code location's definitions over a persistent instance, with sensor cursors kept between ticks."""

    def __init__(self, repo, home: Path) -> None:
        from dagster_project.definitions import build_definitions

        self.repo = repo
        self.defs = build_definitions(repo.config())
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.cursors: dict[str, str | None] = {}

    def reload(self) -> None:
        from dagster_project.definitions import build_definitions

        self.defs = build_definitions(self.repo.config())

    def materialize(self, key: dg.AssetKey, partition: str | None = None, until: str | None = None):
        tags = {}
        if until:
            tags = {
                "dagster/asset_partition_range_start": partition,
                "dagster/asset_partition_range_end": until,
            }
            partition = None
        return dg.materialize(
            [self.defs.resolve_assets_def(key)],
            instance=self.instance,
            partition_key=partition,
            tags=tags,
            raise_on_error=False,
        )

    def run_job(self, name: str):
        return self.defs.resolve_job_def(name).execute_in_process(
            instance=self.instance, raise_on_error=False
        )

    def tick(self, sensor: str):
        """One evaluation, as the daemon does it: the cursor carries over; asset events are recorded."""
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors.get(sensor), definitions=self.defs
        )
        data = self.defs.resolve_sensor_def(sensor).evaluate_tick(context)
        self.cursors[sensor] = data.cursor
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
        return data

    def latest_check(self, key: dg.AssetKey, name: str):
        records = self.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(key, name)]
        )
        record = records[dg.AssetCheckKey(key, name)]
        return record.event.dagster_event.event_specific_data


def stores(repo) -> tuple:
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    table_id = state.table_id("amounts")
    offline = runtime.offline_store.read(table_id, state.feature_view("amounts")).to_pylist()
    online = runtime.online_store.read([(table_id, (k,)) for k in ("u1", "u2", "u3")])
    result = runtime.offline_store.version(table_id), offline, online
    runtime.close()
    return result


def alerts(receiver, path: str) -> list[dict]:
    return [r["json"] for r in receiver.received if r["path"] == path]


@pytest.fixture
def quality_repo(tmp_path, alert_receiver, smtp_server, monkeypatch):
    repo = events_repo(
        tmp_path / "repo",
        VIEWS.replace("FRESHNESS", ""),
        tables=events_sql(GOOD_DAY + BAD_DAY),
        config_extra=monitoring(alert_receiver, smtp_server),
    )
    monkeypatch.setenv("FEATUREPLANE_CONFIG", str(repo.config_path))
    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")
    return repo


def test_bad_data_is_blocked_with_the_right_check_failures_and_alerts_once(
    quality_repo, dagster_home, alert_receiver, smtp_server
):
    repo = quality_repo
    materialize = ["asset", "materialize", "-m", "dagster_project", "--select", "prod/amounts", "--partition"]
    run_dagster([*materialize, "2024-01-01"], repo, dagster_home)
    before = stores(repo)
    assert before[0] is not None and len(before[1]) == 2
    dagster = Dagster(repo, dagster_home)
    dagster.tick("featureplane_alerts")  # the first tick starts from now

    # A null key and an out-of-range amount on 2024-01-02: the real CLI run fails, nothing is written.
    out = run_dagster([*materialize, "2024-01-02"], repo, dagster_home, check=False)
    assert out.returncode != 0
    assert "blocking check(s) failed" in out.stdout + out.stderr
    assert stores(repo) == before
    assert dagster.instance.get_materialized_partitions(VIEW) == {"2024-01-01"}

    keys = dagster.latest_check(VIEW, "user_id_not_null")
    assert not keys.passed and keys.severity == dg.AssetCheckSeverity.ERROR
    assert keys.metadata["unexpected_count"].value == 1
    assert keys.metadata["bad_keys_sample"].value == [{"user_id": None, "ts": "2024-01-02T12:00:00"}]
    amount = dagster.latest_check(VIEW, "amount_between")
    assert not amount.passed and amount.metadata["unexpected_values_sample"].value == [500.0]
    assert amount.metadata["bad_keys_sample"].value[0]["user_id"] == "u1"
    usual = dagster.latest_check(VIEW, "amount_usual")
    assert not usual.passed and usual.severity == dg.AssetCheckSeverity.WARN
    for passing in ("timestamp_in_window", "unique_key_timestamp", "schema_matches_declaration"):
        assert dagster.latest_check(VIEW, passing).passed

    # One alert per failed error-severity check (not for the warning, not again for the run failure).
    dagster.tick("featureplane_alerts")
    hooks = alerts(alert_receiver, "/hook")
    assert sorted((a["event"], a["check"], a["partition"]) for a in hooks) == [
        ("quality", "amount_between", "2024-01-02"),
        ("quality", "user_id_not_null", "2024-01-02"),
    ]
    assert all(a["run_url"] == f"http://dagster.test/runs/{a['run_id']}" for a in hooks)
    assert len(alerts(alert_receiver, "/slack")) == 2 and len(smtp_server.messages) == 2
    assert len((repo.root / "alerts.log").read_text().splitlines()) == 2
    dagster.tick("featureplane_alerts")
    assert len(alert_receiver.received) == 4

    status = repo.cli(
        "status",
        "--workspace",
        "prod",
        "--profiles",
        env={"DAGSTER_HOME": str(dagster_home), "COLUMNS": "200"},
    )
    assert "prod/amounts" in status.stdout and "2024-01-01" in status.stdout and "STALE" in status.stdout
    assert "✗ user_id_not_null (error)" in status.stdout and "✗ amount_usual (warn)" in status.stdout
    assert "Profile of prod/amounts, partition 2024-01-01: 2 rows" in status.stdout
    report = json.loads(repo.cli("status", "--json", env={"DAGSTER_HOME": str(dagster_home)}).stdout)
    [view] = report["views"]
    assert view["failed_runs"] == 1 and view["last_partition"] == "2024-01-01"


def test_warn_only_failures_still_write_and_profiles_are_plotted_per_partition(quality_repo, dagster_home):
    repo = quality_repo
    dagster = Dagster(repo, dagster_home)
    result = dagster.materialize(VIEW, "2024-01-01")  # u2 spent 70: above "usual", within range
    assert result.success
    usual = dagster.latest_check(VIEW, "amount_usual")
    assert not usual.passed and usual.severity == dg.AssetCheckSeverity.WARN
    assert len(stores(repo)[1]) == 2
    [materialization] = result.asset_materializations_for_node("prod__amounts")
    profile = {
        k: v.value for k, v in materialization.metadata.items() if k.startswith(("amount.", "dagster/row"))
    }
    assert profile == {
        "dagster/row_count": 2,
        "amount.null_fraction": 0.0,
        "amount.distinct_count": 2,
        "amount.min": 5.0,
        "amount.max": 70.0,
        "amount.mean": 37.5,
    }

    # A range run records one profile observation per partition.
    make_warehouse(repo, events_sql([*GOOD_DAY, ("u1", "2024-01-03 10:00:00", 8.0)]))
    result = dagster.materialize(VIEW, "2024-01-01", until="2024-01-03")
    assert result.success
    observations = [
        e.event_specific_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert [(o.partition, o.metadata["dagster/row_count"].value) for o in observations] == [
        ("2024-01-01", 2),
        ("2024-01-02", 0),
        ("2024-01-03", 1),
    ]

    # ... for its last monitoring.quality.profile_observations partitions, saying so.
    for limit, observed in ((2, ["2024-01-02", "2024-01-03"]), (0, [])):
        quality = (repo.config().monitoring or {}).get("quality") or {}
        repo.set_config("monitoring", quality={**quality, "profile_observations": limit})
        result = Dagster(repo, dagster_home).materialize(VIEW, "2024-01-01", until="2024-01-03")
        assert result.success
        partitions = [
            e.event_specific_data.asset_observation.partition
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        ]
        assert partitions == observed
        materializations = result.asset_materializations_for_node("prod__amounts")  # one per partition
        notes = {m.metadata["profiled_partitions_observed"].value for m in materializations}
        assert len(materializations) == 3 and notes == {f"last {limit} of 3"}


def test_a_stale_view_fails_its_freshness_check_and_alerts_once(
    quality_repo, dagster_home, alert_receiver, smtp_server
):
    repo = quality_repo
    dagster = Dagster(repo, dagster_home)
    schedule = dagster.defs.resolve_schedule_def("prod__freshness_checks_schedule")
    assert (schedule.cron_schedule, schedule.job_name) == ("0 * * * *", "prod__freshness_checks")
    assert dagster.materialize(VIEW, "2024-01-01").success
    dagster.tick("featureplane_alerts")

    for _ in range(2):  # the schedule fires twice: one incident, one alert
        assert dagster.run_job("prod__freshness_checks").success
        dagster.tick("featureplane_alerts")
    check = dagster.latest_check(VIEW, "freshness")
    assert not check.passed and check.metadata["last_materialized_partition"].value == "2024-01-01"
    assert check.metadata["expected_freshness_hours"].value == 48.0
    [alert] = alerts(alert_receiver, "/hook")
    assert (alert["event"], alert["subject"], alert["partition"]) == ("freshness", "amounts", "2024-01-01")
    assert "amounts is stale" in alert["reason"]
    assert len(smtp_server.messages) == 1 and len(alerts(alert_receiver, "/slack")) == 1

    # A looser expected freshness closes the incident; tightening it again opens a new one.
    views = repo.root / "views.py"
    original = views.read_text()
    views.write_text(
        original.replace(
            'name="amount_usual")]', 'name="amount_usual")], expected_feature_freshness="100000d"'
        )
    )
    repo.cli("apply", "--yes")
    dagster.reload()
    assert dagster.run_job("prod__freshness_checks").success
    dagster.tick("featureplane_alerts")
    assert dagster.latest_check(VIEW, "freshness").passed
    views.write_text(original)
    repo.cli("apply", "--yes")
    dagster.reload()
    dagster.run_job("prod__freshness_checks")
    dagster.tick("featureplane_alerts")
    assert len(alerts(alert_receiver, "/hook")) == 2


def test_a_failed_run_alerts_once_with_its_reason_and_link(
    quality_repo, dagster_home, alert_receiver, smtp_server
):
    repo = quality_repo
    dagster = Dagster(repo, dagster_home)
    dagster.tick("featureplane_alerts")
    from featureplane.compute.duckdb import connect_warehouse

    con = connect_warehouse(repo.config().warehouse_path, read_only=False)
    con.execute("DROP TABLE raw.events").fetchall()
    con.close()
    assert not dagster.materialize(VIEW, "2024-01-01").success
    alert_receiver.status = 503  # the webhooks are down: email and the log file still get the alert
    dagster.tick("featureplane_alerts")
    assert len(smtp_server.messages) == 1 and len(alert_receiver.received) == 2
    alert_receiver.status = 200  # back up: the next tick retries the webhooks only
    dagster.tick("featureplane_alerts")
    dagster.tick("featureplane_alerts")
    assert len(smtp_server.messages) == 1 and len(alert_receiver.received) == 4
    assert len((repo.root / "alerts.log").read_text().splitlines()) == 1
    [alert] = alerts(alert_receiver, "/hook")[1:]
    assert (alert["event"], alert["subject"], alert["partition"]) == ("run_failure", "amounts", "2024-01-01")
    assert "events does not exist" in alert["reason"] and alert["run_url"].startswith(
        "http://dagster.test/runs/"
    )


SERVED_VIEWS = """
    from datetime import datetime
    from base import events, user
    from featureplane import Attribute, FeatureService, Float64, batch_feature_view

    @batch_feature_view(sources=[events], entities=[user], mode="snowflake_sql",
                        features=[Attribute("amount", Float64)], timestamp_field="ts",
                        feature_start_time=datetime(2024, 1, 1), online=True)
    def amounts(events):
        return f"SELECT user_id, ts, amount FROM {events}"

    svc = FeatureService(name="svc", features=[amounts])
"""
USERS = 300


def test_serving_drift_health_and_status_from_a_real_lookup_server(
    tmp_path, dagster_home, lookup_server, alert_receiver, smtp_server, monkeypatch
):
    repo = events_repo(
        tmp_path / "repo",
        SERVED_VIEWS,
        tables={
            "raw.events": f"SELECT 'u' || i AS user_id, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (i) MINUTE AS ts, "
            f"CAST(i % 60 AS DOUBLE) AS amount FROM range({USERS}) t(i)"
        },
        config_extra=monitoring(alert_receiver, smtp_server),
    )
    monkeypatch.setenv("FEATUREPLANE_CONFIG", str(repo.config_path))
    repo.cli("workspace", "create", "prod", "--live")
    repo.cli("apply", "--yes")
    dagster = Dagster(repo, dagster_home)
    assert dagster.materialize(VIEW, "2024-01-01").success
    drift = dg.AssetKey(["prod", "svc_serving_drift"])
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    served_dir = repo.config().data_dir / "monitoring" / "served" / "prod" / "svc"
    dagster.tick("featureplane_alerts")
    dagster.tick("featureplane_serving_health")

    def serve_everyone() -> None:
        server = lookup_server(repo)
        for i in range(USERS):
            status, _ = post_json(
                server.url + "/api/v1/feature-service/get-features",
                {
                    "params": {
                        "workspaceName": "prod",
                        "featureServiceName": "svc",
                        "joinKeyMap": {"user_id": f"u{i}"},
                    }
                },
            )
            assert status == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            logged = sum(len(p.read_text().splitlines()) for p in served_dir.glob("*.jsonl"))
            if logged >= USERS:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # one more stats interval
        server.stop()

    # Served values are the offline values of the day: no drift.
    serve_everyone()
    result = dagster.materialize(drift, today)
    assert result.success
    check = dagster.latest_check(drift, "psi_below_threshold")
    assert check.passed and check.metadata["served_vectors"].value == USERS
    [materialization] = result.asset_materializations_for_node("prod__svc_serving_drift")
    assert "| amounts.amount | float64 | 300 | 300 |" in materialization.metadata["psi_table"].value

    # Serving health: an observation of the feature service with rate, errors and latency.
    data = dagster.tick("featureplane_serving_health")
    [observation] = data.asset_events
    assert observation.asset_key == dg.AssetKey(["prod", "svc"])
    assert observation.metadata["requests"].value == USERS
    assert observation.metadata["error_rate"].value == 0.0
    assert 0 < observation.metadata["latency_p50_ms"].value <= observation.metadata["latency_p99_ms"].value

    # The online store is corrupted (a skewed pipeline): served values drift from the offline ones.
    runtime = repo.runtime()
    state = runtime.registry.load("prod")
    table_id = state.table_id("amounts")
    current = runtime.online_store.read([(table_id, (f"u{i}",)) for i in range(USERS)])
    runtime.online_store.write(
        table_id, [OnlineRow((f"u{i}",), v.event_ts, [v.values[0] * 3 + 40]) for i, v in enumerate(current)]
    )
    runtime.close()
    for path in served_dir.glob("*.jsonl"):
        path.unlink()
    serve_everyone()
    assert dagster.materialize(drift, today).success
    check = dagster.latest_check(drift, "psi_below_threshold")
    assert not check.passed and check.metadata["drifted_features"].value == "amounts.amount"
    assert check.metadata["psi/amounts.amount"].value > 0.2
    dagster.tick("featureplane_alerts")
    dagster.tick("featureplane_alerts")
    [alert] = [a for a in alerts(alert_receiver, "/hook") if a["event"] == "drift"]
    assert (alert["subject"], alert["partition"]) == ("svc", today)

    status = repo.cli("status", env={"DAGSTER_HOME": str(dagster_home), "COLUMNS": "200"})
    assert "prod/svc" in status.stdout and "DRIFT" in status.stdout
    report = json.loads(repo.cli("status", "--json", env={"DAGSTER_HOME": str(dagster_home)}).stdout)
    [service] = report["services"]
    assert service["health"]["requests"] == USERS and service["drift"]["passed"] is False
