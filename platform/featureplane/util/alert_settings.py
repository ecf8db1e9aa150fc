"""The alert sinks of ``featureplane.yaml``'s ``monitoring`` section, its cron expressions and stream
lag bounds: where alerts go and which events each sink receives. Standard library only, as config is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featureplane.util.settings import SettingsError

EVENTS = ("run_failure", "quality", "freshness", "stream_lag", "drift")
SINK_TYPES = {  # each sink's required options, then its optional ones
    "slack": (("webhook_url",), ()),
    "webhook": (("url",), ("headers",)),
    "email": (("host", "from", "to"), ("port", "starttls", "ssl", "username", "password")),
    "log": (("path",), ()),
}


@dataclass
class AlertSinkSettings:
    type: str
    options: dict[str, Any]
    events: tuple[str, ...] = EVENTS

    @property
    def label(self) -> str:
        target = self.options.get("url") or self.options.get("path") or self.options.get("to") or ""
        if self.type == "slack":
            target = "webhook"
        return f"{self.type}({target})"


def parse_alert_sinks(value: Any, where: str, context: Any) -> list[AlertSinkSettings]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SettingsError([f"{where} must be a list of sinks, e.g. [{{type: slack, webhook_url: ...}}]"])
    problems: list[str] = []
    sinks = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(item, dict) or item.get("type") not in SINK_TYPES:
            kind = item.get("type") if isinstance(item, dict) else None
            problems.append(
                f"{here}: expected a mapping with type one of {', '.join(SINK_TYPES)}, got {kind!r:.60}"
            )
            continue
        required, optional = SINK_TYPES[item["type"]]
        options = {k: v for k, v in item.items() if k not in ("type", "events")}
        for key in sorted(set(options) - set(required) - set(optional)):
            problems.append(
                f"{here}.{key}: unknown key for a {item['type']} sink (known: {', '.join(required + optional)})"
            )
        missing = [k for k in required if not options.get(k)]
        if missing:
            problems.append(f"{here} ({item['type']}): missing {', '.join(missing)}")
        events = item.get("events") or list(EVENTS)
        events = [events] if isinstance(events, str) else events
        bad = [str(e) for e in events if e not in EVENTS] if isinstance(events, list) else ["?"]
        if bad:
            problems.append(f"{here}: unknown event(s) {', '.join(bad)}; choose from {', '.join(EVENTS)}")
        if item["type"] == "email" and not missing:
            if isinstance(options["to"], str):
                options["to"] = [options["to"]]
            port = options.get("port", 25)
            if isinstance(port, bool) or not isinstance(port, int) or port < 1:
                problems.append(f"{here}.port must be an integer of at least 1, got {port!r:.40}")
            options["port"] = port
        if item["type"] == "log" and not missing:
            resolve = getattr(context, "resolve", Path)
            options["path"] = resolve(options["path"])
        if not problems:
            sinks.append(AlertSinkSettings(type=item["type"], options=options, events=tuple(events)))
    if problems:
        raise SettingsError(problems)
    return sinks


def parse_cron(value: Any, where: str, context: Any) -> str:
    if not isinstance(value, str) or len(value.split()) != 5:
        raise SettingsError([f"{where} must be a 5-field cron expression, got {value!r:.60}"])
    return value


_VIEW_NAME = re.compile(r"^(?:[A-Za-z0-9_.-]+/)?[A-Za-z_][A-Za-z0-9_]*$")


def parse_lag_bounds(value: Any, where: str, context: Any) -> dict[str, int]:
    """``{view or workspace/view: seconds}``, each a positive whole number of seconds."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SettingsError(
            [f"{where} must be a mapping of stream feature views to seconds, e.g. {{clicks: 60}}"]
        )
    problems, bounds = [], {}
    for name, seconds in value.items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not _VIEW_NAME.match(name):
            problems.append(f"{here}: expected a feature view name or 'workspace/view', got {name!r:.60}")
            continue
        if isinstance(seconds, str) and seconds.strip().isdigit():
            seconds = int(seconds.strip())
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            problems.append(f"{here} must be a whole number of seconds of at least 1, got {seconds!r:.40}")
            continue
        bounds[name] = seconds
    if problems:
        raise SettingsError(problems)
    return bounds
