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

The query is a list of steps (``Steps``), each a name and a statement that may read the earlier
ones: each store runs them as temporary tables, in its own dialect (DuckDB, Snowflake), so no
statement nests another's ``WITH`` and the whole tiles are built once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from featureplane.compute.aggregation.dialects import DUCKDB, IDX, Dialect, q
from featureplane.compute.aggregation.online import longest_window
from featureplane.compute.aggregation.rollup import merged_ranges_sql, rollup_sql
from featureplane.compute.aggregation.tiles import aggregates, interval_us, partial_name, partials, tile_sql
from featureplane.definitions.specs import FeatureViewSpec, FieldSpec

AT = "__fp_at_us"  # a point's time in microseconds (quoted everywhere: it is also a grouping key)
Steps = list[tuple[str, str]]


def stream_rollup_steps(
    view: FeatureViewSpec,
    events: str,
    points: str,
    features: Sequence[str],
    prefix: str,
    dialect: Dialect = DUCKDB,
) -> Steps:
    """Feature values at each point: ``events`` is a relation of the view's events (join keys, event
    time, input columns), ``points`` one of join keys and ``"__fp_at_us"``. The last step holds the
    join keys, ``"__fp_at_us"`` and one column per feature, one row per distinct non-null point;
    the steps are named ``<prefix>_...``."""
    step = interval_us(view)
    view = dataclasses.replace(view, batch_schedule_seconds=None)  # a tile counts once processed
    keys = view.join_key_names
    at = q(AT)
    key_list = ", ".join(f"p.{q(k)}" for k in keys)
    distinct, tiles = f"{prefix}_points", f"{prefix}_tiles"
    steps = [
        (
            distinct,
            f"SELECT DISTINCT {key_list}, p.{at} FROM {points} AS p WHERE "
            + " AND ".join(f"p.{q(k)} IS NOT NULL" for k in [*keys, AT]),
        ),
        (tiles, tile_sql(view, _events_needed(view, events, distinct, dialect), dialect)),
    ]
    index = dialect.floor_div(f"p.{at}", step)
    select = ", ".join(f"r.{q(f)}" for f in features)
    if view.stream_processing_mode != "continuous":
        at_index = f"(SELECT {key_list}, p.{at}, {index} AS {IDX} FROM {distinct} AS p)"
        on = " AND ".join(f"r.{q(k)} = p.{q(k)}" for k in keys)
        steps.append((f"{prefix}_rolled", rollup_sql(view, tiles, at_index, features, dialect)))
        steps.append(
            (
                f"{prefix}_values",
                f"SELECT {key_list}, p.{at}, {select} FROM {at_index} AS p "
                f"JOIN {prefix}_rolled AS r ON {on} AND r.{IDX} = p.{IDX}",
            )
        )
        return steps
    grouped = dataclasses.replace(view, join_keys=[*view.join_keys, FieldSpec(AT, "int64")])
    on = " AND ".join(f"e.{q(k)} = p.{q(k)}" for k in keys)
    ts = q(view.timestamp_field)
    partial_rows = (
        f"SELECT e.*, p.{at} FROM {events} AS e JOIN {distinct} AS p ON {on} "
        f"AND {dialect.epoch_us(f'e.{ts}')} >= {index} * {step} AND {dialect.epoch_us(f'e.{ts}')} <= p.{at}"
    )
    columns = [ts, *(q(partial_name(c, p)) for c, p, _ in partials(view))]
    tile_index = dialect.floor_div(dialect.epoch_us(f"e.{ts}"), step)
    span = longest_window(view)
    whole = (
        f"SELECT {', '.join(f'e.{q(k)}' for k in keys)}, p.{at}, {', '.join(f'e.{c}' for c in columns)} "
        f"FROM {tiles} AS e JOIN {distinct} AS p ON {on} "
        f"AND {tile_index} > {index} - {span} AND {tile_index} < {index}"
    )
    partial = f"{prefix}_partial"
    steps.append((partial, tile_sql(grouped, partial_rows, dialect)))
    own = ", ".join(q(k) for k in [*keys, AT, view.timestamp_field])
    rest = "".join(f", {c}" for c in columns[1:])
    steps.append((f"{prefix}_window", f"SELECT {own}{rest} FROM {partial} UNION ALL {whole}"))
    at_next = f"(SELECT {key_list}, p.{at}, {index} + 1 AS {IDX} FROM {distinct} AS p)"
    steps.append((f"{prefix}_rolled", rollup_sql(grouped, f"{prefix}_window", at_next, features, dialect)))
    steps.append(
        (
            f"{prefix}_values",
            f"SELECT {', '.join(f'r.{q(k)}' for k in keys)}, r.{at}, {select} FROM {prefix}_rolled AS r",
        )
    )
    return steps


def _events_needed(view: FeatureViewSpec, events: str, points: str, dialect: Dialect) -> str:
    """The events of the points' entities that any of their windows can hold: from the start of the
    longest window before the earliest point up to the latest point."""
    step, span = interval_us(view), longest_window(view)
    stamp = dialect.epoch_us(f"e.{q(view.timestamp_field)}")
    bounds = f"(SELECT min({q(AT)}) AS __fp_lo, max({q(AT)}) AS __fp_hi FROM {points})"
    return (
        f"SELECT e.* FROM {events} AS e{dialect.semi_join(points, 'k', 'e', view.join_key_names)} "
        f"JOIN {bounds} AS b ON {stamp} >= ({dialect.floor_div('b.__fp_lo', step)} - {span}) * {step} "
        f"AND {stamp} <= b.__fp_hi"
    )


def stream_ranges_steps(
    view: FeatureViewSpec, events: str, start: datetime, end: datetime, prefix: str, dialect: Dialect = DUCKDB
) -> Steps:
    """Each entity's values with the interval in which they hold (``_valid_from``, ``_valid_to``), for
    values that hold at some time in ``[start, end)``, as ``rollup.features_in_range_sql`` gives them
    for batch views. A stream view's values change where an event enters its windows (at its event
    time in continuous mode, at the end of its interval in time_interval mode) and where a tile leaves
    one; the roll-up runs at those times, from the last change at or before ``start`` up to ``end``,
    and consecutive equal values are merged."""
    step = interval_us(view)
    epoch = datetime(1970, 1, 1)
    first = int((start - epoch).total_seconds() * 1_000_000)
    last = int((end - epoch).total_seconds() * 1_000_000)
    keys = ", ".join(q(k) for k in view.join_key_names)
    ts, at = q(view.timestamp_field), q(AT)
    stamp = dialect.epoch_us(ts)
    tile = dialect.floor_div(stamp, step)
    windows = sorted({f.window_seconds // (view.aggregation_interval_seconds or 1) for f in aggregates(view)})
    if view.stream_processing_mode == "continuous":
        entering = [f"SELECT {keys}, {stamp} AS {at} FROM {events}"]
        offsets = windows
    else:
        entering = []
        offsets = sorted({1, *(k + 1 for k in windows)})
    leaving = [f"SELECT {keys}, ({tile} + {o}) * {step} AS {at} FROM {events}" for o in offsets]
    changes, points = f"{prefix}_changes", f"{prefix}_at"
    on = " AND ".join(f"c.{q(k)} = s.{q(k)}" for k in view.join_key_names)
    since = f"SELECT {keys}, max({at}) AS __fp_since FROM {changes} WHERE {at} <= {first} GROUP BY {keys}"
    steps = [
        (changes, f"SELECT DISTINCT {keys}, {at} FROM ({' UNION ALL '.join([*entering, *leaving])}) AS c"),
        (
            points,
            f"SELECT c.* FROM {changes} AS c LEFT JOIN ({since}) AS s ON {on} "
            f"WHERE c.{at} < {last} AND c.{at} >= COALESCE(s.__fp_since, {first})",
        ),
    ]
    names = [f.name for f in aggregates(view)]
    steps += stream_rollup_steps(view, events, points, names, prefix, dialect)
    values = (
        f"SELECT {keys}, {dialect.timestamp_us(at)} AS {ts}, {', '.join(q(n) for n in names)} "
        f"FROM {prefix}_values"
    )
    steps.append((f"{prefix}_ranges", merged_ranges_sql(view, values, names, start, end, dialect)))
    return steps
