"""Training values of stream aggregate views: the point-in-time roll-up of their logged events.

A stream view's offline table is its event log (``offline_stores.event_log``), so a training row's
values are computed from the same events the online tiles hold, with the same code as batch views:
``tiles.tile_sql`` builds the tiles, ``rollup.rollup_sql`` rolls them up. The windows end where a
lookup's do (``online.OnlineRollup``):

- ``time_interval``: at ``t`` aligned down to the interval: the tiles of ``[T - window, T)``;
- ``continuous``: the window covers the interval holding ``t`` and the ones before it, and that last
  interval holds only the events at or before ``t``. Per distinct (entity, ``t``) the roll-up reads
  the entity's whole tiles of the window's earlier intervals and one *partial* tile built from its
  events of ``[T, t]``, grouped by ``t`` as an extra key (as ``rollup_sql`` groups by partition).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from featureplane.compute.aggregation.dialects import DUCKDB, IDX, Dialect, q
from featureplane.compute.aggregation.online import longest_window
from featureplane.compute.aggregation.rollup import rollup_sql
from featureplane.compute.aggregation.tiles import interval_us, tile_sql
from featureplane.definitions.specs import FeatureViewSpec, FieldSpec

AT = "__fp_at_us"  # a point's time in microseconds


def stream_rollup_sql(
    view: FeatureViewSpec,
    events: str,
    points: str,
    features: Sequence[str],
    dialect: Dialect = DUCKDB,
) -> str:
    """Feature values at each point: ``events`` is a relation of the view's events (join keys, event
    time, input columns), ``points`` one of join keys and ``__fp_at_us``. Returns the join keys,
    ``__fp_at_us`` and one column per feature."""
    step = interval_us(view)
    view = dataclasses.replace(view, batch_schedule_seconds=None)  # a tile counts once processed
    keys = view.join_key_names
    key_list = ", ".join(f"p.{q(k)}" for k in keys)
    distinct = (
        f"(SELECT DISTINCT {key_list}, p.{AT} FROM {points} AS p WHERE "
        + " AND ".join(f"p.{q(k)} IS NOT NULL" for k in [*keys, AT])
        + ")"
    )
    index = dialect.floor_div(f"p.{AT}", step)
    rows = f"SELECT * FROM {events}"
    if view.stream_processing_mode != "continuous":
        at_index = f"(SELECT {key_list}, p.{AT}, {index} AS {IDX} FROM {distinct} AS p)"
        rolled = rollup_sql(view, f"({tile_sql(view, rows, dialect)})", at_index, features, dialect)
        on = " AND ".join(f"r.{q(k)} = p.{q(k)}" for k in keys)
        select = ", ".join(f"r.{q(f)}" for f in features)
        return (
            f"SELECT {key_list}, p.{AT}, {select} FROM {at_index} AS p "
            f"JOIN ({rolled}) AS r ON {on} AND r.{IDX} = p.{IDX}"
        )
    grouped = dataclasses.replace(view, join_keys=[*view.join_keys, FieldSpec(AT, "int64")])
    on = " AND ".join(f"e.{q(k)} = p.{q(k)}" for k in keys)
    ts = dialect.epoch_us(f"e.{q(view.timestamp_field)}")
    partial_rows = (
        f"SELECT e.*, p.{AT} FROM {events} AS e JOIN {distinct} AS p ON {on} "
        f"AND {ts} >= {index} * {step} AND {ts} <= p.{AT}"
    )
    span = longest_window(view)
    tile_index = dialect.floor_div(dialect.epoch_us(f"e.{q(view.timestamp_field)}"), step)
    whole = (
        f"SELECT e.*, p.{AT} FROM ({tile_sql(view, rows, dialect)}) AS e JOIN {distinct} AS p ON {on} "
        f"AND {tile_index} > {index} - {span} AND {tile_index} < {index}"
    )
    tiles = f"(SELECT * FROM ({tile_sql(grouped, partial_rows, dialect)}) UNION ALL BY NAME {whole})"
    at_next = f"(SELECT {key_list}, p.{AT}, {index} + 1 AS {IDX} FROM {distinct} AS p)"
    rolled = rollup_sql(grouped, tiles, at_next, features, dialect)
    select = ", ".join(f"r.{q(f)}" for f in features)
    return f"SELECT {', '.join(f'r.{q(k)}' for k in keys)}, r.{AT}, {select} FROM ({rolled}) AS r"
