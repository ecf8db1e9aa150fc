"""Alerts: one sensor turns Dagster's event log into alerts to the sinks in featureplane.yaml.

It reads, after its cursor, failed runs of this code location's feature views and featureplane's
asset check evaluations, and alerts on: run failures (except those caused by blocking quality checks,
which alert as quality incidents, with the run's link), failed error-severity quality checks, freshness
breaches, stream lag breaches and drift breaches. An incident alerts once: the cursor remembers open
incidents (a quality check per partition; freshness, stream lag and drift per asset) until a later
evaluation of the same check passes.
Deliveries that fail are retried on the next ticks, to the failed sinks only.
"""

import json
from typing import Any

import dagster as dg

from dagster_project.quality import DATA_QUALITY
from featureplane.config import MonitoringSettings
from featureplane.monitoring.alerts import Alert, build_sinks, deliver

SENSOR_NAME = "featureplane_alerts"
MAX_ATTEMPTS = 5
MAX_OPEN = 1000
BATCH = 500
DRIFT_SUFFIX = "_serving_drift"
COMPLETED = ("SUCCEEDED", "FAILED")


def _meta(metadata: dict[str, Any], key: str) -> Any:
    value = metadata.get(key)
    return getattr(value, "value", value)


def _run_partition(run: Any) -> str | None:
    if run is None:
        return None
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    first, last = (
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )
    if first and last:
        return first if first == last else f"{first}...{last}"
    return None


class AlertState:
    """The sensor's cursor: the last execution seen per check, where it is among failed runs, open
    incidents and deliveries to retry."""

    def __init__(self, raw: str | None) -> None:
        data = json.loads(raw) if raw else {}
        self.started: bool = bool(data)
        self.checks: dict[str, int] = data.get("checks", {})
        self.runs_cursor: str | None = data.get("runs_cursor")
        self.open: dict[str, str] = data.get("open", {})
        self.pending: list[dict[str, Any]] = data.get("pending", [])

    def dumps(self) -> str:
        return json.dumps(
            {
                "checks": self.checks,
                "runs_cursor": self.runs_cursor,
                "open": self.open,
                "pending": self.pending,
            }
        )


def check_keys(assets: list[Any], asset_checks: list[Any]) -> list[dg.AssetCheckKey]:
    """Every asset check of the code location's assets and check definitions."""
    keys: set[dg.AssetCheckKey] = set()
    for definition in [*assets, *asset_checks]:
        keys |= set(getattr(definition, "check_keys", ()) or ())
    return sorted(keys, key=_check_id)


def _check_id(key: dg.AssetCheckKey) -> str:
    return f"{key.asset_key.to_user_string()}:{key.name}"


def new_evaluations(instance: Any, check_keys: list[dg.AssetCheckKey], state: AlertState) -> list[Any]:
    """Completed check executions newer than the cursor, oldest first; the cursor moves past them.
    On the first tick, the cursor only moves: history is not news."""
    storage = instance.event_log_storage
    found = []
    for key, latest in storage.get_latest_asset_check_execution_by_key(check_keys).items():
        seen = state.checks.get(_check_id(key), 0)
        if latest.id <= seen:
            continue
        history = storage.get_asset_check_execution_history(key, limit=BATCH) if state.started else [latest]
        done = [r for r in history if r.id > seen and r.status.value in COMPLETED and r.event is not None]
        if done:
            state.checks[_check_id(key)] = max(r.id for r in done)
        if state.started:
            found += done
    return sorted(found, key=lambda r: r.id)


def check_alert(settings: MonitoringSettings, record: Any, run: Any) -> tuple[str, Alert | None, bool]:
    """(incident, alert, passed) for one completed check execution; alert is None when nothing to send."""
    evaluation = record.event.dagster_event.event_specific_data
    metadata = dict(evaluation.metadata)
    kind = _meta(metadata, "featureplane/kind")
    path = evaluation.asset_key.path
    workspace, name = path[0], path[-1]
    asset = "/".join(path)
    run_id = record.run_id
    if kind == "quality":
        span = _meta(metadata, "partitions") or _run_partition(run) or ""
        incident = f"quality:{asset}:{evaluation.check_name}:{span}"
        partition = _meta(metadata, "failing_partitions") or span or None
        wanted = evaluation.severity == dg.AssetCheckSeverity.ERROR
    elif kind == "freshness":
        incident = f"freshness:{asset}"
        partition = _meta(metadata, "last_materialized_partition")
        wanted = True
    elif kind == "stream_lag":
        incident = f"stream_lag:{asset}"
        partition = None
        wanted = True
    elif kind == "drift":
        incident = f"drift:{asset}"
        partition = _run_partition(run)
        name = name.removesuffix(DRIFT_SUFFIX)
        wanted = True
    else:
        return "", None, True
    if evaluation.passed or not wanted:
        return incident, None, evaluation.passed
    details = {k: _meta(metadata, k) for k in metadata if not k.startswith("featureplane/")}
    alert = Alert(
        event=kind,
        workspace=workspace,
        subject=name,
        asset=asset,
        reason=evaluation.description or f"check {evaluation.check_name} failed",
        incident=incident,
        partition=partition if partition not in ("none", "") else None,
        check=evaluation.check_name,
        run_id=run_id or None,  # none for evaluations recorded by a sensor
        run_url=f"{settings.dagster_url}/runs/{run_id}" if run_id else None,
        details={k: v for k, v in details.items() if isinstance(v, str | int | float | bool | list | dict)},
    )
    return incident, alert, False


def run_failure_alert(settings: MonitoringSettings, instance: Any, record: Any, assets: set) -> Alert | None:
    """An alert for a failed run of this code location's feature views, unless the failure was a blocked
    write (those alert through their failed quality checks)."""
    run_id = record.event_log_entry.run_id
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    selected = set(run.asset_selection or []) or {
        planned.event_log_entry.dagster_event.asset_key
        for planned in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ).records
    }
    selected &= assets
    if not selected:
        return None
    reasons = []
    for step in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        failure = step.event_log_entry.dagster_event.step_failure_data
        user = failure.user_failure_data
        if user is not None and _meta(dict(user.metadata), "featureplane/reason") == DATA_QUALITY:
            return None
        error = failure.error
        while error is not None and error.cause is not None:  # the user's error, not Dagster's wrapper
            error = error.cause
        message = (user.description if user is not None else None) or (error.message if error else "")
        reasons.append(message.strip().splitlines()[0] if message.strip() else "step failed")
    key = sorted(selected, key=lambda k: k.path)[0]
    subjects = sorted("/".join(k.path[1:]) for k in selected)
    return Alert(
        event="run_failure",
        workspace=key.path[0],
        subject=", ".join(subjects),
        asset=", ".join("/".join(k.path) for k in sorted(selected, key=lambda k: k.path)),
        reason="; ".join(reasons) or record.event_log_entry.message or "the run failed",
        incident=f"run:{run_id}",
        partition=_run_partition(run),
        run_id=run_id,
        run_url=f"{settings.dagster_url}/runs/{run_id}",
        details={"job": run.job_name},
    )


def alerts_sensor(
    settings: MonitoringSettings, assets: set[dg.AssetKey], check_keys: list[dg.AssetCheckKey]
) -> dg.SensorDefinition:
    """``assets`` are the feature view assets whose failed runs alert; ``check_keys`` the checks watched."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on failed runs, failed error-severity quality checks, stale views, lagging "
        "stream views and drift.",
    )
    def featureplane_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        sinks = build_sinks(settings)
        state = AlertState(context.cursor)
        instance = context.instance
        evaluations = new_evaluations(instance, check_keys, state)
        if not state.started:  # start from now: history is not news
            runs = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=1)
            state.runs_cursor = runs.cursor if runs.records else None
            state.started = True
            return dg.SensorResult(cursor=state.dumps())
        outgoing: list[tuple[Alert, list[int] | None]] = [
            (Alert(**{k: v for k, v in item["alert"].items() if k != "title"}), item["sinks"])
            for item in state.pending
        ]
        attempts = {item["alert"]["incident"]: item["attempts"] for item in state.pending}

        runs = instance.fetch_run_status_changes(
            dg.DagsterEventType.RUN_FAILURE, limit=BATCH, cursor=state.runs_cursor, ascending=True
        )
        for record in runs.records:
            alert = run_failure_alert(settings, instance, record, assets)
            if alert is not None:
                outgoing.append((alert, None))
        if runs.records:
            state.runs_cursor = runs.cursor

        for record in evaluations:
            incident, alert, passed = check_alert(settings, record, instance.get_run_by_id(record.run_id))
            if not incident:
                continue
            if passed:
                state.open.pop(incident, None)
            elif alert is not None and incident not in state.open:
                state.open[incident] = alert.at
                outgoing.append((alert, None))

        if (
            len(state.open) > MAX_OPEN
        ):  # incidents never evaluated again (e.g. a partition later rebuilt in a range)
            state.open = dict(sorted(state.open.items(), key=lambda item: item[1])[-MAX_OPEN:])
        state.pending = []
        for alert, only in outgoing:
            errors = deliver(alert, sinks, set(only) if only is not None else None)
            context.log.info(f"alert {alert.incident}: {alert.title}")
            tries = attempts.get(alert.incident, 0) + 1
            if errors and tries < MAX_ATTEMPTS:
                state.pending.append({"alert": alert.to_json(), "sinks": sorted(errors), "attempts": tries})
            elif errors:
                context.log.error(f"giving up on alert {alert.incident} to {len(errors)} sink(s)")
        return dg.SensorResult(cursor=state.dumps())

    return featureplane_alerts
