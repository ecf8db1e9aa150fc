"""Freshness checks: every monitored view of a live workspace gets an asset check ``freshness``,
evaluated by a schedule (``monitoring.freshness.cron``, hourly by default).

The check reads the Dagster instance for the view's materialized partitions and fails when the
newest one ends longer ago than the view's expected freshness (twice its batch_schedule unless
``expected_feature_freshness`` says otherwise). It measures the data's time, not the time of the last
run, so backfilling old partitions does not hide a stuck schedule.
"""

import dagster as dg

from featureplane.config import MonitoringSettings
from featureplane.monitoring.freshness import evaluate_freshness, expected_freshness
from featureplane.registry.base import WorkspaceState

FRESHNESS = "freshness"


def freshness_definitions(settings: MonitoringSettings, state: WorkspaceState) -> tuple[list, list, list]:
    views = {
        view.name: view
        for view in state.definitions.feature_views.values()
        if expected_freshness(view) is not None
    }
    if not state.live or not views:
        return [], [], []
    workspace = state.name
    specs = [
        dg.AssetCheckSpec(
            FRESHNESS,
            asset=[workspace, name],
            description=f"The newest materialized partition ends at most {expected_freshness(view)} ago.",
            metadata={"expected_freshness_hours": expected_freshness(view).total_seconds() / 3600},  # type: ignore[union-attr]
        )
        for name, view in sorted(views.items())
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{workspace}__freshness",
        can_subset=True,
        description=f"Freshness of the feature views of workspace {workspace}.",
    )
    def freshness_checks(context: dg.AssetCheckExecutionContext):
        for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.path):
            view = views[check_key.asset_key.path[-1]]
            partitions = context.instance.get_materialized_partitions(check_key.asset_key)
            result = evaluate_freshness(view, partitions)
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=FRESHNESS,
                passed=result.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=result.message,
                metadata={"featureplane/kind": FRESHNESS, **result.metadata()},
            )

    job = dg.define_asset_job(
        name=f"{workspace}__freshness_checks",
        selection=dg.AssetSelection.checks(freshness_checks),
        description=f"Evaluate the freshness of the feature views of workspace {workspace}.",
    )
    schedule = dg.ScheduleDefinition(
        name=f"{workspace}__freshness_checks_schedule",
        job=job,
        cron_schedule=settings.freshness_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return [freshness_checks], [job], [schedule]
