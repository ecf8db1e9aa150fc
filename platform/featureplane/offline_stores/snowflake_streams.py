"""Stream views on the Snowflake offline store: their training values and ranges come from their
event log (``event_log_snowflake``), read once per identity (``deduped_events_sql``) as the Delta
store reads it, and rolled up in Snowflake by the same generated steps (``stream_rollup``) in
Snowflake's dialect, each step a temporary table of the session. Only the joined result (or the
ranges) leaves Snowflake."""

from __future__ import annotations

from typing import TYPE_CHECKING

from featureplane.compute.aggregation.dialects import SNOWFLAKE
from featureplane.compute.aggregation.stream_rollup import AT, Steps, stream_ranges_steps, stream_rollup_steps
from featureplane.compute.snowflake.client import conform_arrow, quote
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.base import RetrievalPart, to_pandas
from featureplane.offline_stores.event_log import deduped_events_sql, log_table_view, plain_rows_sql
from featureplane.offline_stores.snowflake_sql import SPINE_TS, key_list, view_fields
from featureplane.types import Timestamp

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from featureplane.offline_stores.snowflake import SnowflakeOfflineStore


def logged_events(
    store: SnowflakeOfflineStore, table_id: str, view: FeatureViewSpec, temps: list[str]
) -> str:
    """A temporary table of the view's logged events, once each (join keys, event time, logged
    columns); its name is added to ``temps``."""
    name = store.client.temporary_name("EVENTS")
    temps.append(name)
    source = store._rows(table_id, log_table_view(view))
    store.client.execute(f"CREATE TEMPORARY TABLE {name} AS {deduped_events_sql(view, source)}")
    return name


def run_steps(store: SnowflakeOfflineStore, steps: Steps, temps: list[str]) -> None:
    for name, sql in steps:
        temps.append(name)
        store.client.execute(f"CREATE TEMPORARY TABLE {name} AS {sql}")


def stream_training_rows(
    store: SnowflakeOfflineStore, part: RetrievalPart, spine: str, temps: list[str]
) -> str:
    """What a stream view's part of a training set joins to the spine (``snowflake_sql.point_in_time_sql``):
    a plain view's rows, or an aggregate view's values at each distinct (entity, spine time), with
    ``"__fp_at_us"`` the time in microseconds."""
    view = part.view
    events = logged_events(store, part.table_id, view, temps)
    if not view.is_aggregate:
        return f"({plain_rows_sql(view, events)})"
    at = SNOWFLAKE.epoch_us(f"s.{SPINE_TS}")
    points = f"(SELECT {key_list(view, 's.')}, {at} AS {quote(AT)} FROM {spine} AS s)"
    prefix = store.client.temporary_name("STREAM")
    steps = stream_rollup_steps(view, events, points, part.features, prefix, SNOWFLAKE)
    run_steps(store, steps, temps)
    return steps[-1][0]


def stream_features_in_range(
    store: SnowflakeOfflineStore, table_id: str, view: FeatureViewSpec, start: datetime, end: datetime
) -> pd.DataFrame:
    """``features_in_range`` of a stream view: an aggregate view's values where they change
    (``stream_ranges_steps``), a plain view's rows as a plain view's."""
    temps: list[str] = []
    try:
        events = logged_events(store, table_id, view, temps)
        if not view.is_aggregate:
            return store._plain_ranges(f"({plain_rows_sql(view, events)})", view, start, end)
        *steps, (_, ranges) = stream_ranges_steps(
            view, events, start, end, store.client.temporary_name("RANGES"), SNOWFLAKE
        )
        run_steps(store, steps, temps)
        fields = [*view_fields(view), ("_valid_from", Timestamp), ("_valid_to", Timestamp)]
        return to_pandas(conform_arrow(store.client.fetch_arrow(ranges), fields))
    finally:
        for name in temps:
            store.client.drop_quietly(name)
