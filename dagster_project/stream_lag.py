"""Stream lag: every stream feature view of a live workspace gets an asset check ``stream_lag``, and the
sensor ``featureplane_stream_lag`` measures every view's lag each ``monitoring.stream_lag.
interval_seconds`` (60) on the daemon.

Each tick records, per view, an observation of its asset (events behind, the age of the oldest
unprocessed event, late and invalid counts, per shard details, and ``progress_seen_at``: the tick at
which the processor's committed state was last seen to change) and an evaluation of its check, which
fails when that age passes the view's bound (or the lag cannot be measured); the alert sensor turns a
failed evaluation into one ``stream_lag`` alert per incident. The sensor records these as events of
the instance rather than launching a run: a run a minute would cost seconds of CPU each time. The
check can also be executed from the UI or as the job ``<workspace>__stream_lag_checks``, which
measure the same way.
"""

import json
from typing import Any

import dagster as dg

from featureplane.config import Config, MonitoringSettings
from featureplane.monitoring.stream_lag import (
    STREAM_LAG,
    StreamLag,
    measure_workspace,
    stream_views,
    unknown_bounds,
)
from featureplane.registry.base import WorkspaceNotFound, WorkspaceState
from featureplane.runtime import Runtime

SENSOR_NAME = "featureplane_stream_lag"
PROGRESS = "progress_seen_at"
MAX_SHARDS_SHOWN = 50


def _metadata(lag: StreamLag, progress_seen_at: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"featureplane/kind": STREAM_LAG, **lag.metadata()}
    if progress_seen_at is not None:
        data[PROGRESS] = progress_seen_at
    shards = [s.to_json() for s in lag.shards[:MAX_SHARDS_SHOWN]]
    if shards:
        data["per_shard"] = shards
    return data


def observation(lag: StreamLag, progress_seen_at: str | None = None) -> dg.AssetObservation:
    return dg.AssetObservation(asset_key=[lag.workspace, lag.view], metadata=_metadata(lag, progress_seen_at))


def evaluation(lag: StreamLag, progress_seen_at: str | None = None) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey([lag.workspace, lag.view]),
        check_name=STREAM_LAG,
        passed=lag.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=lag.message(),
        metadata=_metadata(lag, progress_seen_at),
    )


def progress(previous: list | None, lag: StreamLag) -> list:
    """The sensor's memory of a view: ``[committed state digest, when it was first seen to change]``.
    The stores keep no commit time, so the processor's last progress is known to within a tick,
    and is ``unknown`` until the sensor has seen the state change once."""
    if lag.error:
        return previous or ["", "unknown"]
    if previous is None:
        return [lag.committed, "unknown"]
    if previous[0] != lag.committed:
        return [lag.committed, lag.measured_at.isoformat() + "Z"]
    return previous


def _measure(config: Config, settings: MonitoringSettings, watched: dict[str, set[str]]) -> list[StreamLag]:
    """The lag of the watched views (workspace -> view names) as the registry has them now."""
    found: list[StreamLag] = []
    with Runtime(config) as runtime:
        for workspace, views in sorted(watched.items()):
            try:
                state = runtime.registry.load(workspace)
            except WorkspaceNotFound:
                continue  # deleted since the code location loaded
            found += [lag for lag in measure_workspace(runtime, state, settings) if lag.view in views]
    return found


def _workspace_checks(
    config: Config, settings: MonitoringSettings, state: WorkspaceState
) -> dg.AssetChecksDefinition:
    workspace = state.name
    specs = [
        dg.AssetCheckSpec(
            STREAM_LAG,
            asset=[workspace, view.name],
            description=(
                "The oldest event the stream processor has not applied yet arrived at most "
                f"{settings.stream_lag_bound(workspace, view.name)} seconds ago."
            ),
            metadata={"max_lag_seconds": settings.stream_lag_bound(workspace, view.name)},
        )
        for view in stream_views(state)
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{workspace}__stream_lag",
        can_subset=True,
        description=f"Stream lag of the stream feature views of workspace {workspace}.",
    )
    def stream_lag_checks(context: dg.AssetCheckExecutionContext):
        selected = {k.asset_key.path[-1] for k in context.selected_asset_check_keys}
        for lag in _measure(config, settings, {workspace: selected}):
            context.op_execution_context.log_event(observation(lag))
            yield dg.AssetCheckResult(
                asset_key=[lag.workspace, lag.view],
                check_name=STREAM_LAG,
                passed=lag.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=lag.message(),
                metadata=_metadata(lag),
            )

    return stream_lag_checks


def stream_lag_definitions(
    config: Config, settings: MonitoringSettings, states: list[WorkspaceState]
) -> tuple[list, list, list]:
    """The ``stream_lag`` checks of every live workspace's stream views, a job per workspace that
    evaluates them on demand, and the sensor that evaluates them all: (checks, jobs, sensors)."""
    if not settings.stream_lag_enabled:
        return [], [], []
    watched = {s.name: {v.name for v in stream_views(s)} for s in states if stream_views(s)}
    if not watched:
        return [], [], []
    for problem in unknown_bounds(settings, states):
        dg.get_dagster_logger().warning(f"{config.path}: {problem}")
    checks = [
        _workspace_checks(config, settings, s)
        for s in sorted(states, key=lambda s: s.name)
        if s.name in watched
    ]
    jobs = [
        dg.define_asset_job(
            name=f"{workspace}__stream_lag_checks",
            selection=dg.AssetSelection.checks(check),
            description=f"Measure the stream lag of the stream feature views of workspace {workspace}.",
        )
        for workspace, check in zip(sorted(watched), checks, strict=True)
    ]

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=settings.stream_lag_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Measures the lag of every stream feature view and evaluates its stream_lag check.",
    )
    def stream_lag_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        seen = json.loads(context.cursor) if context.cursor else {}
        events: list = []
        for lag in _measure(config, settings, watched):
            if lag.error or not lag.passed:
                context.log.warning(lag.message())
            name = f"{lag.workspace}/{lag.view}"
            seen[name] = progress(seen.get(name), lag)
            events += [observation(lag, seen[name][1]), evaluation(lag, seen[name][1])]
        return dg.SensorResult(asset_events=events, cursor=json.dumps(seen, sort_keys=True))

    return checks, jobs, [stream_lag_sensor]
