"""The offline side of stream feature views: their event log in a runtime's offline store, and the
batch backfill from the source's ``batch_config`` (``offline_stores.event_log`` explains both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.event_log import StreamEventLog

if TYPE_CHECKING:
    from featureplane.runtime import Runtime


def event_log_for(runtime: Runtime, table_id: str, view: FeatureViewSpec) -> StreamEventLog | None:
    """The view's event log in the runtime's offline store (None when the view is not offline). With
    ``streams.staging`` configured its hand-over state is the staging area's, which the stream Lambda
    shares (``streams.staging``)."""
    log = offline_event_log(runtime, table_id, view)
    if log is None:
        return None
    from featureplane.streams.staging import HandoverInStaging, staging_area

    area = staging_area(runtime.config.streams)
    return log if area is None else HandoverInStaging(log, area, table_id)


def offline_event_log(runtime: Runtime, table_id: str, view: FeatureViewSpec) -> StreamEventLog | None:
    """The view's event log in the runtime's offline store, as the store keeps it."""
    if not view.offline:
        return None
    from featureplane.offline_stores.delta import DeltaOfflineStore

    store = runtime.offline_store
    if isinstance(store, DeltaOfflineStore):
        from featureplane.offline_stores.event_log_delta import DeltaEventLog

        return DeltaEventLog(store, table_id, view)
    from featureplane.offline_stores.snowflake import SnowflakeOfflineStore

    if isinstance(store, SnowflakeOfflineStore):
        from featureplane.offline_stores.event_log_snowflake import SnowflakeEventLog

        return SnowflakeEventLog(store, table_id, view)
    raise ValueError(
        f"stream feature view {view.name!r}: the offline event log supports the Delta and Snowflake offline stores; this "
        f"configuration's offline store is {store.describe().get('type', type(store).__name__)} "
        "(set offline=False on the view to process it without one)"
    )
