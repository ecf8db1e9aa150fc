"""Asset factories: every feature view of every workspace becomes a Dagster asset.

Live workspaces get partitioned, materializable assets keyed ``[workspace, view]``, partitioned by the
view's ``batch_schedule`` from its ``feature_start_time``, whose backfill policy runs a range of
partitions as one run (one query, one offline commit, one online update). Development workspaces get
asset specs that cannot be materialized: discoverable, with lineage. Feature services are specs
downstream of their views; data sources are specs upstream.
"""

import re
from datetime import datetime
from typing import TYPE_CHECKING

import dagster as dg

from dagster_project.quality import materialize_with_checks, quality_check_specs
from featureplane.config import Config, MonitoringSettings
from featureplane.definitions.specs import FeatureServiceSpec, FeatureViewSpec, SourceSpec, spec_hash
from featureplane.registry.base import WorkspaceState
from featureplane.util.dagster_instance import engine_pool

if TYPE_CHECKING:
    from featureplane.runtime import Runtime

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def partitions_for(view: FeatureViewSpec) -> dg.TimeWindowPartitionsDefinition:
    assert view.start is not None
    return time_partitions(view.start, view.batch_schedule_seconds or 0)


def time_partitions(start: datetime, seconds: int) -> dg.TimeWindowPartitionsDefinition:
    """Windows of ``seconds`` from ``start`` (UTC): the same definition for a view and for the dbt
    models it reads, so one run can build both for the same partitions."""
    if seconds == 86400:
        return dg.DailyPartitionsDefinition(start_date=start, fmt="%Y-%m-%d", timezone="UTC")
    if seconds == 3600:
        return dg.HourlyPartitionsDefinition(start_date=start, fmt="%Y-%m-%d-%H:%M", timezone="UTC")
    return dg.TimeWindowPartitionsDefinition(
        start=start, cron_schedule=f"0 */{seconds // 3600} * * *", fmt="%Y-%m-%d-%H:%M", timezone="UTC"
    )


def backfill_policy_for(view: FeatureViewSpec) -> dg.BackfillPolicy:
    if view.partitions_per_run:
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=view.partitions_per_run)
    return dg.BackfillPolicy.single_run()


def _owners(owner: str) -> list[str] | None:
    return [owner] if owner and (EMAIL.match(owner) or owner.startswith("team:")) else None


def _tags(tags: dict[str, str]) -> dict[str, str]:
    """Dagster tag keys and values allow a narrower alphabet than ours; keep the ones that fit."""
    ok = re.compile(r"^[A-Za-z0-9_.\-]{1,63}$")
    return {k: v for k, v in tags.items() if ok.match(k) and (v == "" or ok.match(v))}


def view_metadata(state: WorkspaceState, view: FeatureViewSpec) -> dict:
    columns = [dg.TableColumn(k.name, k.dtype, description="join key") for k in view.join_keys]
    if view.timestamp_field:  # realtime views have none
        columns.append(dg.TableColumn(view.timestamp_field, "timestamp", description="event time"))
    columns += [dg.TableColumn(f.name, f.dtype, description=f.kind) for f in view.features]
    return {
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "owner": view.owner,
        "entities": ", ".join(view.entities),
        "join_keys": ", ".join(view.join_key_names),
        "online": view.online,
        "offline": view.offline,
        "mode": view.transformation.mode if view.transformation else view.kind,
        "batch_schedule": str(view.schedule) if view.schedule else "",
        "ttl": str(view.ttl) if view.ttl else "none",
        "feature_start_time": view.feature_start_time or "",
        "table_id": state.table_id(view.name),
        "registry_version": state.version,
        "definition": view.location,
    }


def source_spec(source: SourceSpec) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=source.asset_key,
        description=source.description or f"Data source {source.name}",
        group_name="sources",
        metadata={
            "table": source.table or "",
            "path": source.path or "",
            "timestamp_field": source.timestamp_field or "",
        },
        kinds={"duckdb"} if source.table else {"parquet"} if source.path else set(),
        owners=_owners(source.owner),
    )


def view_spec(state: WorkspaceState, view: FeatureViewSpec) -> dg.AssetSpec:
    """A view that is never materialized (a development workspace's, or a realtime view): visible,
    with lineage."""
    sources = state.definitions.sources
    views = state.definitions.feature_views  # a realtime view reads other views
    return dg.AssetSpec(
        key=[state.name, view.name],
        deps=[
            sources[s].asset_key if s in sources else [state.name, s]
            for s in view.sources
            if s in sources or s in views
        ],
        description=(view.description or f"Feature view {view.name}")
        + (
            "\n\nRealtime: computed per request by the lookup service."
            if view.is_realtime
            else f"\n\nDevelopment workspace `{state.name}`: not materialized."
        ),
        group_name=state.name,
        metadata=view_metadata(state, view),
        kinds={"featureview"},
        owners=_owners(view.owner),
        tags=_tags(view.tags),
    )


def service_spec(state: WorkspaceState, service: FeatureServiceSpec) -> dg.AssetSpec:
    features = [f"{p.view}.{f}" for p in service.features for f in p.features]
    return dg.AssetSpec(
        key=[state.name, service.name],
        deps=[[state.name, p.view] for p in service.features],
        description=(service.description or f"Feature service {service.name}")
        + "\n\nFeatures: "
        + ", ".join(features),
        group_name=state.name,
        metadata={
            "features": "\n".join(features),
            "owner": service.owner,
            "online_serving": service.online_serving_enabled,
        },
        kinds={"featureservice"},
        owners=_owners(service.owner),
        tags=_tags(service.tags),
    )


def materializable_view(config: Config, state: WorkspaceState, view: FeatureViewSpec) -> dg.AssetsDefinition:
    """A live workspace's batch view as a partitioned asset running featureplane's materialization."""
    workspace, name = state.name, view.name
    expected_hash = spec_hash(view)
    generation = state.generations.get(name, 0)
    sources = state.definitions.sources
    settings = MonitoringSettings.from_config(config)

    @dg.asset(
        key=[workspace, name],
        deps=[sources[s].asset_key for s in view.sources if s in sources],
        partitions_def=partitions_for(view),
        backfill_policy=backfill_policy_for(view),
        description=view.description or f"Feature view {name}",
        group_name=workspace,
        metadata=view_metadata(state, view),
        code_version=f"g{generation}-{expected_hash}",
        kinds={"featureview", config.engine.get("type", "duckdb"), config.offline_store.get("type", "delta")},
        owners=_owners(view.owner),
        tags=_tags(view.tags),
        check_specs=quality_check_specs(settings, dg.AssetKey([workspace, name]), view),
        # The engine's pool: a production instance limits how many views materialize on it at once.
        pool=engine_pool(config.engine.get("type", "duckdb")),
    )
    def feature_view_asset(context: dg.AssetExecutionContext):
        from featureplane.runtime import Runtime

        start, end = _authorized_window(context, config, workspace, name)
        with Runtime(config) as runtime:
            current = _unchanged_state(runtime, workspace, name, expected_hash, generation)
            keys = context.partition_keys
            context.log.info(
                f"materializing {workspace}/{name} for {len(keys)} partition(s): {keys[0]} .. {keys[-1]}"
            )
            yield from materialize_with_checks(context, runtime, current, name, start, end)

    return feature_view_asset


def stream_backfill_view(config: Config, state: WorkspaceState, view: FeatureViewSpec) -> dg.AssetsDefinition:
    """A live workspace's stream view as a partitioned asset: a partition's run backfills its window
    from the source's ``batch_config`` up to the hand-over boundary (``streams.backfill``); the
    stream processor owns the intervals from there on."""
    workspace, name = state.name, view.name
    expected_hash = spec_hash(view)
    generation = state.generations.get(name, 0)
    sources = state.definitions.sources
    history = sources[view.sources[0]].batch_source if view.sources[0] in sources else None

    @dg.asset(
        key=[workspace, name],
        deps=[sources[s].asset_key for s in [*view.sources, history] if s in sources],
        partitions_def=partitions_for(view),
        backfill_policy=backfill_policy_for(view),
        description=(view.description or f"Feature view {name}")
        + "\n\nStream: partitions backfill history from the batch source up to the hand-over; "
        "the stream processor applies the rest.",
        group_name=workspace,
        metadata=view_metadata(state, view),
        code_version=f"g{generation}-{expected_hash}",
        kinds={"featureview", "stream", config.offline_store.get("type", "delta")},
        owners=_owners(view.owner),
        tags=_tags(view.tags),
        pool=engine_pool(config.engine.get("type", "duckdb")),
    )
    def stream_view_asset(context: dg.AssetExecutionContext):
        from featureplane.errors import FeatureplaneError
        from featureplane.materialization.materialize import view_lock
        from featureplane.runtime import Runtime
        from featureplane.streams.backfill import backfill_stream_view
        from featureplane.util.locks import file_lock

        start, end = _authorized_window(context, config, workspace, name)
        with Runtime(config) as runtime:
            current = _unchanged_state(runtime, workspace, name, expected_hash, generation)
            try:
                with file_lock(view_lock(runtime, current.table_id(name))):
                    result = backfill_stream_view(runtime, current, name, start, end, context.log.info)
            except FeatureplaneError as exc:
                raise dg.Failure(str(exc)) from None
            context.log.info(
                f"backfilled {workspace}/{name} [{start} .. {result.written_until}): {result.events} event(s)"
            )
            return dg.MaterializeResult(metadata=result.metadata())

    return stream_view_asset


def _authorized_window(
    context: dg.AssetExecutionContext, config: Config, workspace: str, name: str
) -> tuple[datetime, datetime]:
    """The run's partition window (naive UTC), once the run's principal may materialize the view:
    with auth on, $FEATUREPLANE_API_KEY or its user needs operator."""
    from featureplane.access.authorize import AccessDenied, authorize

    try:
        authorize(config, workspace, "materialize", f"materialize {workspace}/{name}")
    except AccessDenied as exc:
        raise dg.Failure(str(exc)) from None
    window = context.partition_time_window
    return _naive_utc(window.start), _naive_utc(window.end)


def _unchanged_state(
    runtime: "Runtime", workspace: str, name: str, expected_hash: str, generation: int
) -> WorkspaceState:
    """The workspace's registry state, if the view is still the one this code location was built for."""
    current = runtime.registry.load(workspace)
    spec = current.definitions.feature_views.get(name)
    if spec is None or spec_hash(spec) != expected_hash or current.generations.get(name) != generation:
        raise dg.Failure(
            f"feature view {workspace}/{name} changed in the registry (now at version {current.version}) "
            "since this code location was loaded; reload the code location and run again"
        )
    return current


def _naive_utc(value: datetime) -> datetime:
    from datetime import UTC

    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
