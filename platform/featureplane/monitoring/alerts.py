"""Alerts and the sinks that deliver them: Slack-compatible webhooks, generic webhooks, email over SMTP
and a log file, as configured under ``monitoring.alerts`` in featureplane.yaml.

The Dagster code location's sensors decide when something is an incident (a failed run, a failed
error-severity check, a stale view, a lagging stream view, drift) and make sure each incident alerts once; this module only
formats and delivers.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from featureplane.config import AlertSinkSettings, MonitoringSettings

log = logging.getLogger("featureplane.monitoring")

TIMEOUT_SECONDS = 10.0
EVENT_LABEL = {
    "run_failure": "Run failed",
    "quality": "Data quality check failed",
    "freshness": "Feature view is stale",
    "stream_lag": "Stream feature view is lagging",
    "drift": "Training/serving drift",
}


@dataclass
class Alert:
    """One incident: what happened, where, and where to look."""

    event: str
    workspace: str
    subject: str  # the feature view or feature service
    reason: str
    incident: str  # what makes two alerts the same incident (for de-duplication)
    asset: str = ""
    partition: str | None = None
    check: str | None = None
    run_id: str | None = None
    run_url: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def title(self) -> str:
        label = EVENT_LABEL.get(self.event, self.event)
        where = f"{self.workspace}/{self.subject}"
        return f"[featureplane] {label}: {where}" + (f" ({self.partition})" if self.partition else "")

    def lines(self) -> list[str]:
        lines = [self.reason, f"workspace: {self.workspace}", f"feature view/service: {self.subject}"]
        if self.partition:
            lines.append(f"partition: {self.partition}")
        if self.check:
            lines.append(f"check: {self.check}")
        if self.run_url:
            lines.append(f"Dagster run: {self.run_url}")
        elif self.run_id:
            lines.append(f"Dagster run: {self.run_id}")
        return lines

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["title"] = self.title
        return data


class AlertSink:
    events: tuple[str, ...] = ()
    label: str = "sink"

    def send(self, alert: Alert) -> None:
        raise NotImplementedError


def _post_json(url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{url} answered {exc.code}: {exc.read()[:200]!r}") from None
    except OSError as exc:
        raise RuntimeError(f"cannot reach {url}: {exc}") from None


class SlackSink(AlertSink):
    """An incoming webhook that takes Slack's message shape (Slack, Mattermost, Rocket.Chat, ...)."""

    def __init__(self, webhook_url: str, **_: Any) -> None:
        self.url = webhook_url

    def send(self, alert: Alert) -> None:
        body = "\n".join(alert.lines()[1:])
        link = f"\n<{alert.run_url}|Open the run in Dagster>" if alert.run_url else ""
        _post_json(
            self.url,
            {
                "text": f"{alert.title}: {alert.reason}",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
                    {
                        "type": "section",
                        "text": {"type": "mrkdwn", "text": f"*{alert.reason}*\n{body}{link}"},
                    },
                ],
            },
        )


class WebhookSink(AlertSink):
    """Any HTTP endpoint: the alert as a JSON object."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **_: Any) -> None:
        self.url = url
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}

    def send(self, alert: Alert) -> None:
        _post_json(self.url, alert.to_json(), self.headers)


class EmailSink(AlertSink):
    """Email over SMTP (plain, STARTTLS or SSL; login when a username is set)."""

    def __init__(
        self,
        host: str,
        to: list[str],
        port: int = 25,
        starttls: bool = False,
        ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        **options: Any,
    ) -> None:
        self.host, self.port, self.to = host, port, to
        self.sender = options["from"]
        self.starttls, self.use_ssl = starttls, ssl
        self.username, self.password = username, password

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = alert.title
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message.set_content(
            "\n".join(alert.lines()) + "\n\n" + json.dumps(alert.details, indent=2, default=str)
        )
        context = ssl.create_default_context()
        try:
            if self.use_ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=TIMEOUT_SECONDS, context=context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_SECONDS)
            with client:
                if self.starttls:
                    client.starttls(context=context)
                if self.username:
                    client.login(self.username, self.password or "")
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise RuntimeError(f"cannot send email through {self.host}:{self.port}: {exc}") from None


class LogFileSink(AlertSink):
    """One JSON line per alert, appended to a file."""

    def __init__(self, path: str | Path, **_: Any) -> None:
        self.path = Path(path)

    def send(self, alert: Alert) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as out:
            out.write(json.dumps(alert.to_json(), default=str) + "\n")


SINKS = {"slack": SlackSink, "webhook": WebhookSink, "email": EmailSink, "log": LogFileSink}


def build_sink(settings: AlertSinkSettings) -> AlertSink:
    sink = SINKS[settings.type](**settings.options)
    sink.events = settings.events
    sink.label = settings.label
    return sink


def build_sinks(settings: MonitoringSettings) -> list[AlertSink]:
    return [build_sink(s) for s in settings.alerts]


def deliver(alert: Alert, sinks: list[AlertSink], only: set[int] | None = None) -> dict[int, str]:
    """Send to every sink (of ``only``, by index, when given) that takes the alert's event; returns the
    errors by sink index."""
    errors = {}
    for i, sink in enumerate(sinks):
        if alert.event not in sink.events or (only is not None and i not in only):
            continue
        try:
            sink.send(alert)
        except Exception as exc:
            log.warning("alert to %s failed: %s", sink.label, exc)
            errors[i] = str(exc)
    return errors
