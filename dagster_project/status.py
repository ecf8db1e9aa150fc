"""What ``featureplane status`` reports, read from the Dagster instance ($DAGSTER_HOME)."""

import time
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from dagster_project.drift import DRIFT_CHECK, drift_asset_key
from dagster_project.freshness import FRESHNESS
from dagster_project.stream_lag import PROGRESS
from featureplane.config import Config, MonitoringSettings
from featureplane.monitoring.expectations import resolve_expectations
from featureplane.monitoring.freshness import evaluate_freshness, expected_freshness
from featureplane.monitoring.profiles import ROW_COUNT as PROFILE_ROWS
from featureplane.monitoring.status import (
    CheckStatus,
    ServiceStatus,
    StatusReport,
    StreamStatus,
    ViewStatus,
)
from featureplane.monitoring.stream_lag import STREAM_LAG, measure_workspace, unknown_bounds
from featureplane.registry import open_registry
from featureplane.runtime import Runtime

FAILED_RUNS_DAYS = 7


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


def _check_status(record: Any) -> CheckStatus:
    evaluation = record.event.dagster_event.event_specific_data if record.event is not None else None
    if record.status.value == "PLANNED" or evaluation is None or not hasattr(evaluation, "passed"):
        return CheckStatus(record.key.name, None, "", _when(record.create_timestamp))
    return CheckStatus(
        name=record.key.name,
        passed=evaluation.passed,
        severity=evaluation.severity.value,
        at=_when(record.event.timestamp),
        description=evaluation.description or "",
    )


def latest_profile(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None) -> dict[str, Any]:
    """The profile of a partition: its materialization's metadata (single-partition runs) or its
    observation (range runs), whichever is newer."""
    if partition is None:
        return {}
    records_filter = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition])
    candidates = []
    for record in instance.fetch_materializations(records_filter, limit=1).records:
        candidates.append((record.timestamp, record.asset_materialization.metadata))
    for record in instance.fetch_observations(records_filter, limit=1).records:
        candidates.append((record.timestamp, record.asset_observation.metadata))
    for _, metadata in sorted(candidates, key=lambda c: c[0], reverse=True):
        if PROFILE_ROWS in metadata:
            return {k: v.value for k, v in metadata.items() if k == PROFILE_ROWS or "." in k}
    return {}


def collect_status(
    config: Config, workspace: str | None, instance: dg.DagsterInstance | None = None
) -> StatusReport:
    """Status of the live workspace ``workspace`` (every live workspace when None)."""
    instance = instance or dg.DagsterInstance.get()
    settings = MonitoringSettings.from_config(config)
    registry = open_registry(config)
    report = StatusReport(failed_runs_window_days=FAILED_RUNS_DAYS)
    names = [workspace] if workspace else [w.name for w in registry.list_workspaces() if w.live]
    failed = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(time.time() - FAILED_RUNS_DAYS * 86400, UTC),
        ),
        limit=1000,
    )
    storage = instance.event_log_storage
    states = [registry.load(name) for name in names]
    if settings.stream_lag_enabled:
        report.problems += unknown_bounds(settings, states) if workspace is None else []
        with Runtime(config) as runtime:
            for state in states:
                for lag in measure_workspace(runtime, state, settings):
                    key = dg.AssetCheckKey(dg.AssetKey([state.name, lag.view]), STREAM_LAG)
                    latest = storage.get_latest_asset_check_execution_by_key([key])
                    check = _check_status(latest[key]) if key in latest else None
                    observed = instance.fetch_observations(key.asset_key, limit=1).records
                    progress = observed[0].asset_observation.metadata.get(PROGRESS) if observed else None
                    report.streams.append(
                        StreamStatus(
                            lag=lag,
                            check=check,
                            progress_seen_at=progress.value if progress is not None else None,
                        )
                    )
    for state in states:
        name = state.name
        for view in sorted(state.definitions.feature_views.values(), key=lambda v: v.name):
            backfilled_stream = view.is_stream and view.offline  # its history is a partitioned asset
            if not (view.is_batch or backfilled_stream) or view.start is None:
                continue
            key = dg.AssetKey([name, view.name])
            partitions = instance.get_materialized_partitions(key)
            freshness = evaluate_freshness(view, partitions) if expected_freshness(view) else None
            quality = (
                settings.quality_enabled and view.is_batch
            )  # a stream backfill has no expectation checks
            check_names = [e.name for e in resolve_expectations(view)] if quality else []
            if freshness is not None:
                check_names.append(FRESHNESS)
            latest = storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(key, n) for n in check_names]
            )
            runs = [r for r in failed if key in (r.dagster_run.asset_selection or set())]
            last = max(runs, key=lambda r: r.update_timestamp, default=None)
            last_partition = max(partitions) if partitions else None
            report.views.append(
                ViewStatus(
                    workspace=name,
                    view=view.name,
                    last_partition=last_partition,
                    profile=latest_profile(instance, key, last_partition),
                    materialized_partitions=len(partitions),
                    freshness=freshness,
                    checks=[
                        _check_status(latest[k])
                        for k in sorted(latest, key=lambda k: check_names.index(k.name))
                    ],
                    failed_runs=len(runs),
                    last_failed_run=last.dagster_run.run_id if last is not None else None,
                    last_failure_at=last.update_timestamp.strftime("%Y-%m-%d %H:%M") if last else None,
                )
            )
        for service in sorted(state.definitions.feature_services.values(), key=lambda s: s.name):
            status = ServiceStatus(workspace=name, service=service.name)
            observations = instance.fetch_observations(dg.AssetKey([name, service.name]), limit=1).records
            if observations:
                observation = observations[0].asset_observation
                status.health = {k: v.value for k, v in observation.metadata.items()}
                status.health_at = _when(observations[0].timestamp)
            drift = storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(drift_asset_key(name, service.name), DRIFT_CHECK)]
            )
            if drift:
                status.drift = _check_status(next(iter(drift.values())))
            report.services.append(status)
    return report
