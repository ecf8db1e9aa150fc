"""Stream views on the Snowflake offline store: their training values and ranges come from their
event log (``event_log_snowflake``), read once per identity (``deduped_events_sql``) as the Delta
store reads it, and rolled up in Snowflake by the same generated steps (``stream_rollup``) in
Snowflake's dialect, each step a temporary table of the session. Only the joined result (or the
ranges) leaves Snowflake."""

from __future__ import annotations

from typing import TYPE_CHECKING

from featureplane.compute.aggregation.dialects import SNOWFLAKE
from featureplane.compute.aggregation.stream_rollup import AT, Steps, stream_ranges_steps, stream_rollup_steps
from featureplane.compute.snowflake.client import SnowflakeClient, conform_arrow, quote
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.base import RetrievalPart
from featureplane.offline_stores.event_log import deduped_events_sql, plain_rows_sql
from featureplane.offline_stores.snowflake_sql import SPINE_TS, key_list, view_fields
from featureplane.types import Timestamp

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa


def logged_events(client: SnowflakeClient, log: str, view: FeatureViewSpec, temps: list[str]) -> str:
    """A temporary table of the events of ``log`` (the view's event log table) once each: join keys,
    event time, logged columns. Its name is added to ``temps``."""
    name = client.temporary_name("EVENTS")
    temps.append(name)
    client.execute(f"CREATE TEMPORARY TABLE {name} AS {deduped_events_sql(view, log)}")
    return name


def _run(client: SnowflakeClient, steps: Steps, temps: list[str]) -> None:
    for name, sql in steps:
        temps.append(name)
        client.execute(f"CREATE TEMPORARY TABLE {name} AS {sql}")


def stream_training_rows(
    client: SnowflakeClient, log: str, part: RetrievalPart, spine: str, temps: list[str]
) -> str:
    """What a stream view's part of a training set joins to the spine (``point_in_time_sql``): a
    plain view's rows, or an aggregate view's values at each distinct (entity, spine time), the time
    in microseconds as ``"__fp_at_us"``."""
    view = part.view
    events = logged_events(client, log, view, temps)
    if not view.is_aggregate:
        return f"({plain_rows_sql(view, events)})"
    at = SNOWFLAKE.epoch_us(f"s.{SPINE_TS}")
    points = f"(SELECT {key_list(view, 's.')}, {at} AS {quote(AT)} FROM {spine} AS s)"
    steps = stream_rollup_steps(
        view, events, points, part.features, client.temporary_name("STREAM"), SNOWFLAKE
    )
    _run(client, steps, temps)
    return steps[-1][0]


def stream_ranges(
    client: SnowflakeClient,
    events: str,
    view: FeatureViewSpec,
    start: datetime,
    end: datetime,
    temps: list[str],
) -> pa.Table:
    """``features_in_range`` of a stream aggregate view from its ``events`` (``logged_events``): its
    values where they change (``stream_ranges_steps``)."""
    *steps, (_, ranges) = stream_ranges_steps(
        view, events, start, end, client.temporary_name("RANGES"), SNOWFLAKE
    )
    _run(client, steps, temps)
    fields = [*view_fields(view), ("_valid_from", Timestamp), ("_valid_to", Timestamp)]
    return conform_arrow(client.fetch_arrow(ranges), fields)
