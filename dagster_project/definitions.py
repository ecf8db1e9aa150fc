"""The code location's Definitions, built from the featureplane registry each time it loads, and from
the dbt project that featureplane.yaml names."""

from __future__ import annotations

from collections import defaultdict

import dagster as dg

from dagster_project.alerts import alerts_sensor, check_keys
from dagster_project.dbt_definitions import DbtDefinitions
from dagster_project.drift import drift_definitions
from dagster_project.feature_views import (
    materializable_view,
    partitions_for,
    service_spec,
    source_spec,
    stream_backfill_view,
    view_spec,
)
from dagster_project.freshness import freshness_definitions
from dagster_project.maintenance import maintenance_definitions
from dagster_project.serving_health import serving_health_sensor
from dagster_project.stream_lag import stream_lag_definitions
from featureplane.config import Config, MonitoringSettings, load_config
from featureplane.registry import open_registry


def build_definitions(config: Config | None = None) -> dg.Definitions:
    config = config or load_config()
    settings = MonitoringSettings.from_config(config)
    registry = open_registry(config)
    dbt = _dbt_definitions(config)
    assets: list = list(dbt.assets)
    schedules: list = []
    jobs: list = []
    asset_checks: list = []
    served: set[tuple[str, str]] = set()
    view_keys: set[dg.AssetKey] = set()
    sources: dict[tuple[str, ...], dg.AssetSpec] = {}
    states = []
    for info in registry.list_workspaces():
        state = registry.load(info.name)
        states.append(state)
        for source in state.definitions.sources.values():
            sources.setdefault(tuple(source.asset_key), source_spec(source))
        by_partitions: dict[tuple, list] = defaultdict(list)
        for view in state.definitions.feature_views.values():
            if info.live and view.is_batch and view.start is not None:
                assets.append(materializable_view(config, state, view))
                view_keys.add(dg.AssetKey([info.name, view.name]))
                by_partitions[(view.batch_schedule_seconds, view.feature_start_time)].append(view)
            elif info.live and view.is_stream and view.offline and view.start is not None:
                assets.append(stream_backfill_view(config, state, view))  # launched as a backfill
                view_keys.add(dg.AssetKey([info.name, view.name]))
            else:
                assets.append(view_spec(state, view))
        for service in state.definitions.feature_services.values():
            assets.append(service_spec(state, service))
            if info.live:
                served.add((info.name, service.name))
        checks, check_jobs, check_schedules = freshness_definitions(settings, state)
        drift_assets, drift_jobs, drift_schedules = drift_definitions(config, settings, state)
        maintenance_jobs, maintenance_schedules = maintenance_definitions(config, state)
        asset_checks += checks
        assets += drift_assets
        jobs += check_jobs + drift_jobs + maintenance_jobs
        schedules += check_schedules + drift_schedules + maintenance_schedules
        for (seconds, start), views in sorted(
            by_partitions.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or "")
        ):
            label = "daily" if seconds == 86400 else f"every_{seconds // 3600}h"
            partitions_def = partitions_for(views[0])
            job = dg.define_asset_job(
                name=f"{info.name}__{label}__from_{start[:10].replace('-', '_')}",
                selection=[dg.AssetKey([info.name, v.name]) for v in views]
                + _dbt_models_of(views, state, dbt, partitions_def),
                partitions_def=partitions_def,
                description=f"Materialize the {label} feature views of workspace {info.name}"
                " (and the dbt models they read that share their partitions).",
            )
            jobs.append(job)
            schedules.append(
                dg.build_schedule_from_partitioned_job(job, default_status=dg.DefaultScheduleStatus.RUNNING)
            )
    stream_checks, stream_jobs, stream_sensors = stream_lag_definitions(config, settings, states)
    asset_checks += stream_checks
    jobs += stream_jobs
    for spec in dbt.source_specs:
        sources.setdefault(tuple(spec.key.path), spec)
    known = {tuple(a.key.path) for a in assets if isinstance(a, dg.AssetSpec)} | dbt.keys
    assets += [spec for key, spec in sources.items() if key not in known]
    return dg.Definitions(
        assets=assets,
        asset_checks=asset_checks,
        jobs=jobs,
        schedules=schedules,
        resources=dbt.resources,
        sensors=[
            alerts_sensor(settings, view_keys, check_keys(assets, asset_checks)),
            serving_health_sensor(settings, served),
            *stream_sensors,
        ],
        executor=dg.in_process_executor,
    )


def _dbt_definitions(config: Config) -> DbtDefinitions:
    """The dbt project's assets; dagster-dbt is imported only when featureplane.yaml names a project."""
    from featureplane.dbt import dbt_project

    if dbt_project(config) is None:
        return DbtDefinitions()
    from dagster_project.dbt_assets import build_dbt_definitions

    return build_dbt_definitions(config)


def _dbt_models_of(views: list, state, dbt: DbtDefinitions, partitions_def) -> list[dg.AssetKey]:
    """The partitioned dbt models the views read (directly or upstream), when they share the views'
    partitions: the schedule then builds each day's models before the views that read them."""
    sources = state.definitions.sources
    models = []
    for view in views:
        for name in view.sources:
            model = sources[name].dbt_model if name in sources else None
            models += dbt.upstream_models(model) if model else []
    keys = dict.fromkeys((m,) for m in models)
    return [dg.AssetKey(list(k)) for k in keys if dbt.partitions.get(k) == partitions_def]
