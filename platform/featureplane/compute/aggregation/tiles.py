"""What an aggregate view stores: tiles of partial aggregates per entity and interval, and partition
markers saying which partitions are materialized."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from featureplane.compute.aggregation.dialects import DUCKDB, IDX, Dialect, column_sql, q
from featureplane.definitions.specs import FeatureSpec, FeatureViewSpec
from featureplane.types import Array, DataType, Float64, Int64, Timestamp, parse_type, to_sql

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.compute.base import StagedResult


# Tile columns ("partials") that each function needs from its input column.
NEEDS = {
    "count": ("n",),
    "sum": ("sum",),
    "mean": ("n", "sum"),
    "stddev_samp": ("n", "sum", "m2"),
    "stddev_pop": ("n", "sum", "m2"),
    "min": ("min",),
    "max": ("max",),
    "first": ("first",),
    "last": ("last",),
    "last_n": ("lastn", "lastn_ts"),
    "count_distinct": ("distinct",),
}
PARTIAL_ORDER = ("n", "sum", "m2", "min", "max", "first", "last", "lastn", "lastn_ts", "distinct")


def aggregates(view: FeatureViewSpec) -> list[FeatureSpec]:
    return [f for f in view.features if f.kind == "aggregate"]


def interval_us(view: FeatureViewSpec) -> int:
    assert view.aggregation_interval_seconds, f"feature view {view.name!r} has no aggregation_interval"
    return view.aggregation_interval_seconds * 1_000_000


def input_type(feature: FeatureSpec) -> DataType:
    return parse_type(feature.params.get("input_type", "float64"))


def input_columns(view: FeatureViewSpec) -> dict[str, DataType]:
    """The transformation output columns the aggregates read, with their declared types."""
    columns: dict[str, DataType] = {}
    for feature in aggregates(view):
        columns.setdefault(feature.column or feature.name, input_type(feature))
    return columns


def typed_input_columns(view: FeatureViewSpec) -> dict[str, DataType]:
    """The input columns whose values are stored (all but those only counted), with their types."""
    counted_only = {
        c
        for c in input_columns(view)
        if all(f.function == "count" for f in aggregates(view) if (f.column or f.name) == c)
    }
    return {c: t for c, t in input_columns(view).items() if c not in counted_only}


def declared_inputs(
    view: FeatureViewSpec, wanted: list[tuple[str, DataType | None]]
) -> list[tuple[str, DataType | None]]:
    """``wanted`` (a transformation's output columns) and the aggregate view's input columns not in it:
    cast to their declared types, except those that are only counted (None, any type)."""
    typed = typed_input_columns(view)
    selected = {name.lower() for name, _ in wanted}
    return [*wanted, *((c, typed.get(c)) for c in input_columns(view) if c.lower() not in selected)]


def last_n_size(view: FeatureViewSpec, column: str) -> int:
    return max(
        (int(f.params["n"]) for f in aggregates(view) if f.function == "last_n" and f.column == column),
        default=0,
    )


def partial_name(column: str, partial: str) -> str:
    return f"{column}__{partial}"


def partials(view: FeatureViewSpec) -> list[tuple[str, str, DataType]]:
    """The tile table's value columns: (column, partial, type), in a stable order."""
    wanted: dict[str, set[str]] = {}
    for feature in aggregates(view):
        wanted.setdefault(feature.column or feature.name, set()).update(NEEDS[feature.function])
    out = []
    for column, dtype in input_columns(view).items():
        for partial in PARTIAL_ORDER:
            if partial in wanted[column]:
                out.append((column, partial, _partial_type(partial, dtype)))
    return out


def _partial_type(partial: str, dtype: DataType) -> DataType:
    if partial == "n":
        return Int64
    if partial == "sum":
        return Int64 if dtype == Int64 else Float64
    if partial == "m2":
        return Float64
    if partial == "lastn_ts":
        return Array(Timestamp)
    if partial in ("lastn", "distinct"):
        return Array(dtype)
    return dtype


def tile_view(view: FeatureViewSpec) -> FeatureViewSpec:
    """The spec of the stored tile table: join keys, the tile start as the timestamp, partials."""
    features = [
        FeatureSpec(name=partial_name(c, p), dtype=str(t), column=partial_name(c, p))
        for c, p, t in partials(view)
    ]
    return dataclasses.replace(view, features=features, ttl_seconds=None)


def storage_view(view: FeatureViewSpec) -> FeatureViewSpec:
    """What a view's offline table holds: its rows, or its tiles for an aggregate view."""
    return tile_view(view) if view.is_aggregate else view


def default_value(feature: FeatureSpec) -> object:
    """The value of an aggregate over an empty window."""
    if feature.function in ("count", "count_distinct", "sum"):
        return 0
    if feature.function == "last_n":
        return []
    return None


def windows_in_intervals(view: FeatureViewSpec) -> list[int | None]:
    """Each distinct window as a number of intervals (None: lifetime)."""
    interval = view.aggregation_interval_seconds or 1
    out: list[int | None] = []
    for feature in aggregates(view):
        k = None if feature.window_seconds is None else feature.window_seconds // interval
        if k not in out:
            out.append(k)
    return out


# -- tiles ---------------------------------------------------------------------------------------


def tile_sql(
    view: FeatureViewSpec, rows_sql: str, dialect: Dialect = DUCKDB, *, time_order: bool = False
) -> str:
    """Tiles from the view's conformed rows (join keys, timestamp, input columns): one row per entity
    and interval that has events, stamped with the interval's start, sorted by entity and time (with
    ``time_order``, by time alone; only with structs).

    Floating-point sums are compensated (``fsum``) and squared deviations are taken from the tile's
    mean (two passes), so a tile's partials do not depend on how threads split its rows or on the
    order of the source's files: identical reruns write identical tiles."""
    if not dialect.structs:
        return _tile_sql_without_structs(view, rows_sql, dialect)
    keys = [q(k) for k in view.join_key_names]
    ts = q(view.timestamp_field)
    step = interval_us(view)
    inner, outer, means = [], [], []
    tile = f"PARTITION BY {', '.join(keys)}, {IDX}"
    for column, partial, dtype in partials(view):
        name = q(partial_name(column, partial))
        c = q(column)
        present = f"FILTER (WHERE {c} IS NOT NULL)"
        pair = dialect.struct(t=ts, v=c)
        if partial == "n":
            inner.append(f"count({c}) AS {name}")
        elif partial == "sum":
            total = f"sum({c})" if dtype == Int64 else f"fsum({c})"  # integer sums are exact in any order
            inner.append(f"CAST({total} AS {to_sql(dtype)}) AS {name}")
        elif partial == "m2":
            mean = q("__fp_mean_" + column)
            means.append(f"fsum({c}) OVER ({tile}) / count({c}) OVER ({tile}) AS {mean}")
            inner.append(f"CAST(fsum(({c} - {mean}) * ({c} - {mean})) AS DOUBLE) AS {name}")
        elif partial in ("min", "max"):
            inner.append(f"{partial}({c}) AS {name}")
        elif partial == "first":
            inner.append(f"min({pair}) {present} AS {q('__first_' + column)}")
            outer.append(f"{q('__first_' + column)}.v AS {name}")
        elif partial == "last":
            inner.append(f"max({pair}) {present} AS {q('__last_' + column)}")
            outer.append(f"{q('__last_' + column)}.v AS {name}")
        elif partial == "lastn":
            n = last_n_size(view, column)
            inner.append(
                f"list_slice(list({pair} ORDER BY {ts}, {c}) {present}, -{n}, -1) AS {q('__ln_' + column)}"
            )
            outer.append(f"list_transform({q('__ln_' + column)}, {dialect.lambda_('x', 'x.v')}) AS {name}")
        elif partial == "lastn_ts":
            outer.append(f"list_transform({q('__ln_' + column)}, {dialect.lambda_('x', 'x.t')}) AS {name}")
        elif partial == "distinct":
            inner.append(f"list_sort(list(DISTINCT {c}) {present}) AS {name}")
        if partial not in ("first", "last", "lastn", "lastn_ts"):
            outer.append(name)
    index = dialect.floor_div(dialect.epoch_us(ts), step)
    indexed = f"SELECT *, {index} AS {IDX} FROM ({rows_sql}) AS __fp_rows"
    if means:
        indexed = f"SELECT *, {', '.join(means)} FROM ({indexed}) AS __fp_unmeaned"
    return (
        f"SELECT {', '.join(keys)}, {dialect.timestamp_us(f'{IDX} * {step}')} AS {ts}, {', '.join(outer)} "
        f"FROM (SELECT {', '.join(keys)}, {IDX}, {', '.join(inner)} "
        f"FROM ({indexed}) AS __fp_indexed "
        f"GROUP BY {', '.join(keys)}, {IDX}) AS __fp_tiles "
        f"ORDER BY {ts if time_order else ', '.join([*keys, ts])}"
    )


def _tile_sql_without_structs(view: FeatureViewSpec, rows_sql: str, dialect: Dialect) -> str:
    """The same tiles for a warehouse without ordered structs or filtered aggregates (Snowflake): a
    tile's first and last values are those at the earliest and latest time of its non-null values
    (ties broken by the smallest and largest value, as struct ordering does); arrays (the last n values
    with their times in microseconds, the distinct values) are aggregated over the non-null values
    only, in their own grouped query, and joined to the tiles."""
    key_names = view.join_key_names
    keys = ", ".join(q(k) for k in key_names)
    ts = q(view.timestamp_field)
    step = interval_us(view)
    index = dialect.floor_div(dialect.epoch_us(ts), step)
    by_tile = f"PARTITION BY {keys}, {index}"
    extra, inner, outer, arrays = [], [], [], []
    for column, partial, dtype in partials(view):
        name = q(partial_name(column, partial))
        c = q(column)
        if partial == "n":
            inner.append(f"count({c}) AS {name}")
        elif partial == "sum":
            inner.append(f"CAST(sum({c}) AS {dialect.type_sql(dtype)}) AS {name}")
        elif partial == "m2":
            inner.append(f"CAST(var_pop({c}) * count({c}) AS DOUBLE) AS {name}")
        elif partial in ("min", "max"):
            inner.append(f"{partial}({c}) AS {name}")
        elif partial in ("first", "last"):
            pick = "min" if partial == "first" else "max"
            at = q(f"__{partial}_ts_{column}")
            extra.append(f"{pick}(CASE WHEN {c} IS NOT NULL THEN {ts} END) OVER ({by_tile}) AS {at}")
            inner.append(f"{pick}(CASE WHEN {ts} = {at} THEN {c} END) AS {name}")
        elif partial in ("lastn", "distinct"):
            alias = f"__fp_array{len(arrays)}"
            if partial == "lastn":
                n = last_n_size(view, column)
                stamps = q(partial_name(column, "lastn_ts"))
                ranked = (
                    f"SELECT *, row_number() OVER (PARTITION BY {keys}, {IDX} ORDER BY {ts} DESC, {c} DESC) "
                    f"AS __fp_rank FROM __fp_indexed WHERE {c} IS NOT NULL"
                )
                arrays.append(
                    f"{alias} AS (SELECT {keys}, {IDX}, "
                    f"ARRAY_AGG({c}) WITHIN GROUP (ORDER BY {ts}, {c}) AS {name}, "
                    f"ARRAY_AGG({dialect.epoch_us(ts)}) WITHIN GROUP (ORDER BY {ts}, {c}) AS {stamps} "
                    f"FROM ({ranked}) AS __fp_ranked WHERE __fp_rank <= {n} GROUP BY {keys}, {IDX})"
                )
                outer += [f"{alias}.{name}", f"{alias}.{stamps}"]
            else:
                arrays.append(
                    f"{alias} AS (SELECT {keys}, {IDX}, ARRAY_AGG(DISTINCT {c}) WITHIN GROUP (ORDER BY {c}) "
                    f"AS {name} FROM __fp_indexed WHERE {c} IS NOT NULL GROUP BY {keys}, {IDX})"
                )
                outer.append(f"{alias}.{name}")
            continue
        if partial != "lastn_ts":
            outer.append(f"t.{name}")
    joins = "".join(
        f" LEFT JOIN __fp_array{i} ON "
        + " AND ".join(f"t.{column_sql(k)} = __fp_array{i}.{column_sql(k)}" for k in [*key_names, IDX])
        for i in range(len(arrays))
    )
    ctes = [
        f"__fp_indexed AS (SELECT *, {index} AS {IDX}{''.join(', ' + e for e in extra)} "
        f"FROM ({rows_sql}) AS __fp_rows)",
        f"__fp_tiles AS (SELECT {keys}, {IDX}{''.join(', ' + e for e in inner)} FROM __fp_indexed "
        f"GROUP BY {keys}, {IDX})",
        *arrays,
    ]
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join('t.' + q(k) for k in key_names)}, "
        f"{dialect.timestamp_us(f't.{IDX} * {step}')} AS {ts}, {', '.join(outer)} FROM __fp_tiles AS t{joins} "
        f"ORDER BY {', '.join('t.' + q(k) for k in key_names)}, {ts}"
    )


def with_markers(
    view: FeatureViewSpec, tiles: pa.Table | StagedResult, partitions: Sequence[tuple[datetime, datetime]]
) -> pa.Table | StagedResult:
    """The tiles plus one marker row per materialized partition (null join keys, the partition's start
    as the timestamp), written in the same commit so the table says which partitions it covers. Tiles
    staged where the engine ran get their markers there."""
    import pyarrow as pa

    from featureplane.compute.base import StagedResult

    if isinstance(tiles, StagedResult):
        return tiles.with_markers(view, list(partitions))

    markers = pa.Table.from_pylist(
        [{view.timestamp_field: start} for start, _ in partitions], schema=tiles.schema
    )
    return pa.concat_tables([tiles, markers])


def marker_condition(view: FeatureViewSpec, alias: str = "") -> str:
    """True on marker rows (which have null join keys)."""
    prefix = f"{alias}." if alias else ""
    return f"{prefix}{q(view.join_key_names[0])} IS NULL"


def latest_materialized_sql(view: FeatureViewSpec, tiles: str, dialect: Dialect = DUCKDB) -> str:
    """The end of the latest materialized partition, as an interval index (NULL when none)."""
    ts = q(view.timestamp_field)
    step = interval_us(view)
    schedule = (view.batch_schedule_seconds or 0) * 1_000_000
    return (
        f"SELECT {dialect.floor_div(f'max({dialect.epoch_us(ts)}) + {schedule}', step)} AS {IDX} "
        f"FROM {tiles} WHERE {marker_condition(view)}"
    )
