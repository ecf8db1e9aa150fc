"""Training/serving drift: a daily asset per feature service of a live workspace.

``<workspace>/<service>_serving_drift`` compares the feature vectors the lookup service logged on a day
with the offline values valid that day (PSI per feature), attaches the comparison as a markdown table
and numeric ``psi/<feature>`` metadata, and records the check ``psi_below_threshold``. Its partitions
include the current day (drift so far today); a schedule evaluates each finished day after midnight.
"""

from datetime import UTC, timedelta

import dagster as dg

from featureplane.config import Config, MonitoringSettings
from featureplane.definitions.specs import FeatureServiceSpec
from featureplane.registry.base import WorkspaceState

DRIFT_CHECK = "psi_below_threshold"


def drift_asset_key(workspace: str, service: str) -> dg.AssetKey:
    return dg.AssetKey([workspace, f"{service}_serving_drift"])


def _partitions(state: WorkspaceState, service: FeatureServiceSpec) -> dg.DailyPartitionsDefinition | None:
    views = state.definitions.feature_views
    starts = [views[p.view].start for p in service.features if p.view in views and views[p.view].start]
    if not starts:
        return None
    first = min(starts)  # type: ignore[type-var]
    return dg.DailyPartitionsDefinition(
        start_date=first.strftime("%Y-%m-%d"), fmt="%Y-%m-%d", timezone="UTC", end_offset=1
    )


def drift_asset(
    config: Config, settings: MonitoringSettings, state: WorkspaceState, service: FeatureServiceSpec
) -> dg.AssetsDefinition | None:
    partitions = _partitions(state, service)
    if partitions is None or not state.live or not service.online_serving_enabled:
        return None
    workspace, name = state.name, service.name
    key = drift_asset_key(workspace, name)

    @dg.asset(
        key=key,
        deps=[[workspace, name]],
        partitions_def=partitions,
        group_name=workspace,
        kinds={"featureservice"},
        description=(
            f"Training/serving drift of feature service {name}: the day's served feature vectors against the "
            f"offline values valid that day (population stability index per feature; threshold "
            f"{settings.psi_threshold})."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                DRIFT_CHECK,
                asset=key,
                description=f"Every compared feature's PSI is at most {settings.psi_threshold}.",
            )
        ],
    )
    def serving_drift(context: dg.AssetExecutionContext):
        from featureplane.monitoring.drift import compute_drift
        from featureplane.runtime import Runtime

        window = context.partition_time_window
        start = window.start.astimezone(UTC).replace(tzinfo=None)
        end = window.end.astimezone(UTC).replace(tzinfo=None)
        with Runtime(config) as runtime:
            report = compute_drift(runtime, runtime.registry.load(workspace), name, start, end, settings)
        context.log.info(report.summary())
        metadata = report.metadata()
        yield dg.MaterializeResult(metadata={**metadata, "psi_table": dg.MetadataValue.md(report.markdown())})
        yield dg.AssetCheckResult(
            check_name=DRIFT_CHECK,
            passed=report.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=report.summary(),
            metadata={**metadata, "psi_table": dg.MetadataValue.md(report.markdown())},
        )

    return serving_drift


def drift_definitions(
    config: Config, settings: MonitoringSettings, state: WorkspaceState
) -> tuple[list, list, list]:
    assets = [
        a
        for s in state.definitions.feature_services.values()
        if (a := drift_asset(config, settings, state, s))
    ]
    if not assets:
        return [], [], []
    by_partitions: dict[str, list[dg.AssetsDefinition]] = {}
    for asset in assets:
        by_partitions.setdefault(asset.partitions_def.start.strftime("%Y_%m_%d"), []).append(asset)  # type: ignore[union-attr]
    jobs, schedules = [], []
    for start, group in sorted(by_partitions.items()):
        job = dg.define_asset_job(
            name=f"{state.name}__serving_drift__from_{start}",
            selection=dg.AssetSelection.assets(*group),
            partitions_def=group[0].partitions_def,
            description=f"Training/serving drift of the feature services of workspace {state.name}.",
        )

        @dg.schedule(
            name=f"{state.name}__serving_drift__from_{start}_daily",
            job=job,
            cron_schedule="30 0 * * *",
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
        def previous_day(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
            day = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
            return dg.RunRequest(run_key=day, partition_key=day)

        jobs.append(job)
        schedules.append(previous_day)
    return assets, jobs, schedules
