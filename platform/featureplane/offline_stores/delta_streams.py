"""Stream views on the Delta offline store: their training values and ranges, rolled up in DuckDB
from the event log's events (``DeltaOfflineStore._register_events``) by the steps
``stream_rollup`` generates, each a temporary table of the connection."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from featureplane.compute.aggregation.dialects import DUCKDB, q
from featureplane.compute.aggregation.stream_rollup import AT, stream_ranges_steps, stream_rollup_steps
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.base import RetrievalPart, to_pandas

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


def stream_aggregate_join(
    con: duckdb.DuckDBPyConnection, part: RetrievalPart, events: str, alias: str, spine_ts: str
) -> str:
    """Roll a stream view's events up at every distinct (entity, time) of the spine (relation
    ``spine``, its time in column ``spine_ts``); the join clause."""
    view = part.view
    at = DUCKDB.epoch_us(f"s.{spine_ts}")
    keys = ", ".join(f"s.{q(k)}" for k in view.join_key_names)
    points = f"(SELECT {keys}, {at} AS {q(AT)} FROM spine AS s)"
    for name, sql in stream_rollup_steps(view, events, points, part.features, alias):
        con.execute(f"CREATE TEMP TABLE {name} AS {sql}").fetchall()
    on = " AND ".join(f"s.{q(k)} = {alias}.{q(k)}" for k in view.join_key_names)
    return f"LEFT JOIN {alias}_values AS {alias} ON {on} AND {alias}.{q(AT)} = {at}"


def stream_ranges(
    con: duckdb.DuckDBPyConnection, events: str, view: FeatureViewSpec, start: datetime, end: datetime
) -> pd.DataFrame:
    """``features_in_range`` of a stream aggregate view: its values where they change
    (``stream_ranges_steps``)."""
    *steps, (_, ranges) = stream_ranges_steps(view, events, start, end, "__fp_r")
    for name, sql in steps:
        con.execute(f"CREATE TEMP TABLE {name} AS {sql}").fetchall()
    return to_pandas(con.sql(ranges).to_arrow_table())
