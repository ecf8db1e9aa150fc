"""Alert sinks (Slack-compatible and generic webhooks, SMTP email, a log file) and the monitoring
section of featureplane.yaml."""

from __future__ import annotations

import json

import pytest
from conftest import write_config

from featureplane.config import ConfigError, MonitoringSettings, load_config
from featureplane.monitoring.alerts import Alert, build_sinks, deliver

ALERT = Alert(
    event="freshness",
    workspace="prod",
    subject="user_daily_spend",
    reason="user_daily_spend is stale",
    incident="freshness:prod/user_daily_spend",
    partition="2026-10-25",
    check="freshness",
    run_id="abc123",
    run_url="http://dagster.example/runs/abc123",
)


def settings_for(tmp_path, alerts: str) -> MonitoringSettings:
    return MonitoringSettings.from_config(
        load_config(write_config(tmp_path, f"monitoring:\n  alerts:\n{alerts}"))
    )


def test_every_sink_receives_the_view_partition_reason_and_run_link(tmp_path, alert_receiver, smtp_server):
    settings = settings_for(
        tmp_path,
        f"""    - {{type: slack, webhook_url: "{alert_receiver.url}/slack"}}
    - {{type: webhook, url: "{alert_receiver.url}/hook", headers: {{X-Token: secret}}}}
    - {{type: email, host: 127.0.0.1, port: {smtp_server.port}, from: fp@example.com, to: oncall@example.com}}
    - {{type: log, path: alerts.log}}
""",
    )
    assert deliver(ALERT, build_sinks(settings)) == {}
    slack, hook = alert_receiver.received
    assert slack["path"] == "/slack" and "user_daily_spend" in slack["json"]["text"]
    assert "http://dagster.example/runs/abc123" in json.dumps(slack["json"]["blocks"])
    assert hook["headers"]["X-Token"] == "secret"
    assert {k: hook["json"][k] for k in ("event", "workspace", "subject", "partition", "run_url")} == {
        "event": "freshness",
        "workspace": "prod",
        "subject": "user_daily_spend",
        "partition": "2026-10-25",
        "run_url": "http://dagster.example/runs/abc123",
    }
    [mail] = smtp_server.messages
    assert (
        mail["Subject"].strip() == "[featureplane] Feature view is stale: prod/user_daily_spend (2026-10-25)"
    )
    assert mail["X-Envelope-To"] == "oncall@example.com"
    assert "Dagster run: http://dagster.example/runs/abc123" in mail.get_content()
    [line] = (tmp_path / "alerts.log").read_text().splitlines()
    assert json.loads(line)["incident"] == "freshness:prod/user_daily_spend"


def test_a_failing_sink_does_not_stop_the_others_and_events_filter(tmp_path, alert_receiver):
    settings = settings_for(
        tmp_path,
        f"""    - {{type: webhook, url: "http://127.0.0.1:9/unreachable"}}
    - {{type: webhook, url: "{alert_receiver.url}/drift-only", events: [drift]}}
    - {{type: webhook, url: "{alert_receiver.url}/all"}}
""",
    )
    sinks = build_sinks(settings)
    errors = deliver(ALERT, sinks)
    assert list(errors) == [0] and "cannot reach" in errors[0]
    assert alert_receiver.paths() == ["/all"]
    assert deliver(ALERT, sinks, only={2}) == {}  # a retry goes to the failed sinks only
    assert alert_receiver.paths() == ["/all", "/all"]


@pytest.mark.parametrize(
    "monitoring, message",
    [
        ("  alerts: [{type: pager}]", r"alerts\[0\]: expected a mapping with type one of slack"),
        ("  alerts: [{type: email, host: h, to: a@b.c}]", r"alerts\[0\] \(email\): missing from"),
        ("  alerts: [{type: log, path: x, events: [oops]}]", "unknown event"),
        ("  serving_log: {sample_rate: 2}", "sample_rate must be between 0 and 1"),
        ("  freshness: {cron: hourly}", "5-field cron"),
        ("  drift: {psi_threshold: high}", "psi_threshold must be a number"),
        ("  alert: []", "unknown key"),
    ],
)
def test_bad_monitoring_settings_name_what_and_where(tmp_path, monitoring, message):
    """Checked when the file loads, by every command (not first when a monitor starts)."""
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write_config(tmp_path, f"monitoring:\n{monitoring}\n"))
    assert "featureplane.yaml: monitoring" in str(info.value)
