"""Data maintenance: one job per live workspace, ``offline_maintenance_<workspace>``, on a daily
schedule and runnable from the UI (its launchpad takes ``z_order``, ``vacuum_retention_hours`` and
``dry_run``).

First, with ``streams.staging`` set, it loads the events the stream Lambda staged into the stream
views' event logs (``featureplane.streams.staging_load``). Then for each feature view and feature
table it enforces ``offline_retention``, compacts and vacuums the offline table and sweeps expired
online rows (``featureplane.materialization.maintenance``), and records what it found and did as an
asset observation on the view's asset: staged events loaded, files and bytes before and after, rows
deleted, files vacuumed, online rows expired.
"""

import dagster as dg

from featureplane.config import Config
from featureplane.materialization.maintenance import DEFAULT_VACUUM_HOURS
from featureplane.registry.base import WorkspaceState

MAINTENANCE_CRON = "0 3 * * *"


class MaintenanceConfig(dg.Config):
    z_order: bool = True
    vacuum_retention_hours: int = DEFAULT_VACUUM_HOURS
    dry_run: bool = False
    as_of: str = ""  # ISO-8601 time retention and expiry are measured from (default: now)


def maintenance_job_name(workspace: str) -> str:
    return f"offline_maintenance_{workspace}"


def maintenance_definitions(project: Config, state: WorkspaceState) -> tuple[list, list]:
    """The workspace's maintenance job and its daily schedule (none for development workspaces)."""
    views = [
        v.name for v in state.definitions.feature_views.values() if v.kind in ("batch", "table", "stream")
    ]
    if not state.live or not views:
        return [], []
    workspace = state.name

    @dg.op(
        name=f"maintain_{workspace}",
        description=f"Retention, compaction and vacuum of the offline tables of workspace {workspace}, "
        "and the sweep of its expired online rows.",
    )
    def maintain(context: dg.OpExecutionContext, config: MaintenanceConfig) -> None:
        from featureplane.definitions.specs import parse_time
        from featureplane.materialization.maintenance import MaintenanceOptions, maintain_workspace
        from featureplane.runtime import Runtime

        options = MaintenanceOptions(
            z_order=config.z_order,
            vacuum_retention_hours=config.vacuum_retention_hours,
            dry_run=config.dry_run,
        )
        try:
            now = parse_time(config.as_of) if config.as_of else None
        except ValueError:
            raise dg.Failure(f"as_of must be an ISO-8601 time, got {config.as_of!r}") from None
        with Runtime(project) as runtime:
            current = runtime.registry.load(workspace)
            loads = {}
            if not options.dry_run:
                from featureplane.streams.staging_load import load_workspace

                for load in load_workspace(runtime, current):
                    context.log.info(load.summary())
                    loads[load.view] = load
            reports = maintain_workspace(runtime, current, options, now, say=context.log.info)
        for report in reports:
            metadata = report.metadata()
            load = loads.get(report.view)
            if load is not None:
                metadata |= {
                    "staged_events_loaded": load.events_loaded,
                    "staged_objects_pending": load.objects_pending,
                }
            context.log_event(
                dg.AssetObservation(
                    asset_key=dg.AssetKey([workspace, report.view]),
                    description=(load.summary() + "; " if load else "") + report.summary(),
                    metadata=metadata,
                )
            )

    @dg.job(
        name=maintenance_job_name(workspace),
        description=f"Maintain the stored data of workspace {workspace}: offline retention, compaction "
        "(Z-ordered by join keys), vacuum, and online expiry.",
        tags={"featureplane/kind": "maintenance"},
    )
    def maintenance_job() -> None:
        maintain()

    schedule = dg.ScheduleDefinition(
        name=f"{maintenance_job_name(workspace)}_daily",
        job=maintenance_job,
        cron_schedule=MAINTENANCE_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return [maintenance_job], [schedule]
