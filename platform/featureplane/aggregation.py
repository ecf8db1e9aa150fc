"""Time-window aggregations: partial aggregates (tiles) at materialization, roll-ups at retrieval.

An aggregate feature view stores, per entity and per ``aggregation_interval``, one *tile* holding the
partial aggregates of its events (count, sum, the sum of squared deviations, min, max, first and last
values, the last n values with their times, the distinct values). A tile is computed once, when its
partition is materialized; a rerun of a partition replaces exactly that partition's tiles.

A feature value at time ``t`` rolls up the tiles of ``[T - window, T)`` where ``T`` is ``t`` aligned
down to the interval. Every roll-up is one query over the tile table and a relation of *points*
(join keys and the interval index ``T / interval``): training sets use the spine's points, the online
store the latest materialized time, ``get_features_in_range`` the times at which a value can change.
Points are merged into each entity's stream of tiles and every window is a SQL window frame over it,
so the work grows with the number of tiles and points, not with their product.

Each materialized partition also writes one *marker* row (null join keys, the partition's start as its
timestamp). Markers say which partitions are materialized: the online store holds the values as of the
end of the latest one.

All SQL is generated here, through ``Dialect``, so another warehouse needs only its own spellings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from featureplane.specs import FeatureSpec, FeatureViewSpec
from featureplane.types import Array, DataType, Float64, Int64, Timestamp, parse_type, to_sql

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.engines.base import StagedResult

IDX = "__fp_idx"
POINT = "__fp_point"

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


def q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _name(column: str) -> str:
    """A column as the generated SQL names it: user columns quoted, its own (``__fp_idx``) unquoted
    everywhere, so that Snowflake, which folds unquoted names to upper case, sees one name."""
    return column if column == IDX else q(column)


class Dialect:
    """The SQL spellings the generator needs. This is DuckDB's; ``SnowflakeDialect`` is Snowflake's."""

    name = "duckdb"
    # DuckDB features the generator uses when it can: named windows (``WINDOW w AS (...)``), structs
    # ordered field by field (first/last values with their times), ``UNION ALL BY NAME``.
    named_windows = True
    structs = True
    union_by_name = True

    def epoch_us(self, expr: str) -> str:
        return f"epoch_us({expr})"

    def timestamp_us(self, expr: str) -> str:
        return f"make_timestamp(CAST({expr} AS BIGINT))"

    def floor_div(self, expr: str, n: int) -> str:
        """Integer division rounding towards minus infinity (for times before 1970 too)."""
        return f"(({expr}) - ((({expr}) % {n}) + {n}) % {n}) // {n}"

    def struct(self, **fields: str) -> str:
        return "{" + ", ".join(f"'{k}': {v}" for k, v in fields.items()) + "}"

    def lambda_(self, arg: str, body: str) -> str:
        return f"lambda {arg}: {body}"

    def type_sql(self, dtype: DataType) -> str:
        return to_sql(dtype)

    def div(self, a: str, b: str) -> str:
        """``a / b`` as a double (DuckDB's ``/`` always is one)."""
        return f"{a} / {b}"

    def semi_join(self, relation: str, alias: str, left: str, keys: Sequence[str]) -> str:
        """Keep the rows of ``left`` (an alias) whose keys are in ``relation`` (without duplicates)."""
        return f" SEMI JOIN {relation} AS {alias} USING ({', '.join(q(k) for k in keys)})"

    def literal_time(self, value: datetime) -> str:
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"

    def first_last(self, function: str, value: str) -> str:
        """The first or last non-null ``value`` of a window frame over a stream ordered by index."""
        pick = "arg_min" if function == "first" else "arg_max"
        return f"{pick}({value}, CASE WHEN {value} IS NOT NULL THEN {IDX} END)"


class SnowflakeDialect(Dialect):
    """Snowflake's spellings: ``DATE_PART(EPOCH_MICROSECOND, ...)`` and ``TO_TIMESTAMP_NTZ(..., 6)`` for
    times as microseconds, ``MOD`` and an exact division for the floor division, window frames written
    out in each ``OVER`` (Snowflake has no ``WINDOW`` clause), ``FIRST_VALUE``/``LAST_VALUE ... IGNORE
    NULLS`` for first/last values over a frame, a tile's first/last values found through a window over
    its events (no struct ordering), and joins against distinct keys for semi joins."""

    name = "snowflake"
    named_windows = False
    structs = False
    union_by_name = False

    def epoch_us(self, expr: str) -> str:
        return f"DATE_PART(EPOCH_MICROSECOND, {expr})"

    def timestamp_us(self, expr: str) -> str:
        return f"TO_TIMESTAMP_NTZ(CAST({expr} AS BIGINT), 6)"

    def floor_div(self, expr: str, n: int) -> str:
        # The numerator is an exact multiple of n, so the division is exact in NUMBER (and in doubles).
        return f"CAST((({expr}) - MOD(MOD(({expr}), {n}) + {n}, {n})) / {n} AS BIGINT)"

    def struct(self, **fields: str) -> str:
        return "OBJECT_CONSTRUCT_KEEP_NULL(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"

    def lambda_(self, arg: str, body: str) -> str:
        return f"{arg} -> {body}"

    def type_sql(self, dtype: DataType) -> str:
        if dtype.is_array:
            return "ARRAY"
        return {"timestamp": "TIMESTAMP_NTZ(6)", "float64": "FLOAT"}.get(dtype.name, to_sql(dtype))

    def div(self, a: str, b: str) -> str:
        return f"CAST({a} AS DOUBLE) / {b}"

    def semi_join(self, relation: str, alias: str, left: str, keys: Sequence[str]) -> str:
        on = " AND ".join(f"{left}.{q(k)} = {alias}.{q(k)}" for k in keys)
        columns = ", ".join(q(k) for k in keys)
        return f" JOIN (SELECT DISTINCT {columns} FROM {relation}) AS {alias} ON {on}"

    def literal_time(self, value: datetime) -> str:
        return f"CAST('{value.isoformat(sep=' ')}' AS TIMESTAMP_NTZ(6))"

    def first_last(self, function: str, value: str) -> str:
        pick = "FIRST_VALUE" if function == "first" else "LAST_VALUE"
        return f"{pick}({value} IGNORE NULLS)"


DUCKDB = Dialect()
SNOWFLAKE = SnowflakeDialect()


# -- what a view stores --------------------------------------------------------------------------


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


def tile_sql(view: FeatureViewSpec, rows_sql: str, dialect: Dialect = DUCKDB) -> str:
    """Tiles from the view's conformed rows (join keys, timestamp, input columns): one row per entity
    and interval that has events, stamped with the interval's start."""
    if not dialect.structs:
        return _tile_sql_without_structs(view, rows_sql, dialect)
    keys = [q(k) for k in view.join_key_names]
    ts = q(view.timestamp_field)
    step = interval_us(view)
    inner, outer = [], []
    for column, partial, dtype in partials(view):
        name = q(partial_name(column, partial))
        c = q(column)
        present = f"FILTER (WHERE {c} IS NOT NULL)"
        pair = dialect.struct(t=ts, v=c)
        if partial == "n":
            inner.append(f"count({c}) AS {name}")
        elif partial == "sum":
            inner.append(f"CAST(sum({c}) AS {to_sql(dtype)}) AS {name}")
        elif partial == "m2":
            inner.append(f"CAST(var_pop({c}) * count({c}) AS DOUBLE) AS {name}")
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
    return (
        f"SELECT {', '.join(keys)}, {dialect.timestamp_us(f'{IDX} * {step}')} AS {ts}, {', '.join(outer)} "
        f"FROM (SELECT {', '.join(keys)}, {IDX}, {', '.join(inner)} "
        f"FROM (SELECT *, {index} AS {IDX} FROM ({rows_sql}) AS __fp_rows) AS __fp_indexed "
        f"GROUP BY {', '.join(keys)}, {IDX}) AS __fp_tiles "
        f"ORDER BY {', '.join(keys)}, {ts}"
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
        + " AND ".join(f"t.{_name(k)} = __fp_array{i}.{_name(k)}" for k in [*key_names, IDX])
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

    from featureplane.engines.base import StagedResult

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


# -- roll-ups ------------------------------------------------------------------------------------


@dataclass
class _Frames:
    """Window frames over the merged stream, one per distinct window, and the window aggregates
    computed over them (each computed once however many features use it)."""

    view: FeatureViewSpec
    dialect: Dialect = DUCKDB
    columns: dict[str, str] = dataclasses.field(default_factory=dict)  # expression -> alias
    used: dict[int | None, None] = dataclasses.field(default_factory=dict)

    @staticmethod
    def frame(k: int | None) -> str:
        return "__fp_life" if k is None else f"__fp_w{k}"

    def spec(self, k: int | None) -> str:
        keys = ", ".join(q(c) for c in self.view.join_key_names)
        start = "UNBOUNDED PRECEDING" if k is None else f"{k} PRECEDING"
        return f"PARTITION BY {keys} ORDER BY {IDX} RANGE BETWEEN {start} AND 1 PRECEDING"

    def clauses(self) -> str:
        if not self.dialect.named_windows:
            return ""
        return ", ".join(f"{self.frame(k)} AS ({self.spec(k)})" for k in self.used)

    def over(self, expression: str, k: int | None, alias: str | None = None) -> str:
        """The alias of ``expression`` over window ``k`` (in intervals; None: lifetime)."""
        self.used[k] = None
        frame = self.frame(k) if self.dialect.named_windows else f"({self.spec(k)})"
        key = f"{expression} OVER {frame}"
        if key not in self.columns:
            self.columns[key] = alias or f"__fp_a{len(self.columns)}"
        return self.columns[key]

    def select(self) -> str:
        return "".join(f", {expression} AS {q(alias)}" for expression, alias in self.columns.items())


def _window(feature: FeatureSpec, view: FeatureViewSpec) -> int | None:
    if feature.window_seconds is None:
        return None
    return feature.window_seconds // (view.aggregation_interval_seconds or 1)


def rollup_sql(
    view: FeatureViewSpec,
    tiles: str,
    points: str,
    features: Sequence[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> str:
    """Feature values at each point: a query over ``tiles`` (a relation holding the view's tile table)
    and ``points`` (a relation of the join keys and ``__fp_idx``, the interval index of the time, i.e.
    the end of the windows). Returns the join keys, ``__fp_idx`` and one column per feature."""
    wanted = [view.feature(name) for name in (features or [f.name for f in aggregates(view)])]
    keys = view.join_key_names
    key_list = ", ".join(q(k) for k in keys)
    t_keys = ", ".join("t." + q(k) for k in keys)
    step = interval_us(view)
    needed = {(f.column or f.name, p) for f in wanted for p in NEEDS[f.function]}
    columns = [(c, p) for c, p, _ in partials(view) if (c, p) in needed]
    spans = [_window(f, view) for f in wanted]
    finite = [k for k in spans if k is not None]
    bounds = f"t.{IDX} < (SELECT max({IDX}) FROM __fp_points)"
    if None not in spans and finite:
        bounds += f" AND t.{IDX} >= (SELECT min({IDX}) FROM __fp_points) - {max(finite)}"

    # Per tile, the parts that windows sum up. For the standard deviation: sums and squared deviations
    # shifted by the entity's mean, so that a large mean does not cancel out the precision.
    stream_columns = [
        f"t.{q(partial_name(c, p))}" for c, p in columns if p not in ("lastn", "lastn_ts", "distinct")
    ]
    stddev_columns = list(
        dict.fromkeys(f.column or f.name for f in wanted if f.function.startswith("stddev"))
    )
    entity = "__fp_entity" if dialect.named_windows else f"(PARTITION BY {t_keys})"
    for c in stddev_columns:
        n, s, m2 = (q(partial_name(c, p)) for p in ("n", "sum", "m2"))
        mean = dialect.div(f"t.{s}", f"t.{n}")
        entity_mean = dialect.div(f"sum(t.{s}) OVER {entity}", f"sum(t.{n}) OVER {entity}")
        delta = f"({mean} - {entity_mean})"
        stream_columns.append(f"CASE WHEN t.{n} > 0 THEN t.{n} * {delta} END AS {q('__fp_shifted_' + c)}")
        stream_columns.append(
            f"CASE WHEN t.{n} > 0 THEN t.{m2} + t.{n} * {delta} * {delta} END AS {q('__fp_squares_' + c)}"
        )
    named_entity = stddev_columns and dialect.named_windows
    entity_window = f" WINDOW __fp_entity AS (PARTITION BY {t_keys})" if named_entity else ""
    # Without UNION BY NAME, point rows spell out a null for every tile column.
    point_nulls = "" if dialect.union_by_name else "".join(f", NULL AS {_alias(c)}" for c in stream_columns)
    ctes = [
        f"__fp_points AS (SELECT DISTINCT {key_list}, {IDX} FROM {points} AS p "
        f"WHERE {' AND '.join(f'p.{q(k)} IS NOT NULL' for k in keys)} AND p.{IDX} IS NOT NULL)",
        f"__fp_tiles AS (SELECT {t_keys}, "
        f"{dialect.floor_div(dialect.epoch_us('t.' + q(view.timestamp_field)), step)} AS {IDX}"
        + "".join(f", t.{q(partial_name(c, p))}" for c, p in columns)
        + f" FROM {tiles} AS t{dialect.semi_join('__fp_points', 'k', 't', keys)} "
        f"WHERE NOT ({marker_condition(view, 't')}))",
        f"__fp_stream AS (SELECT {key_list}, {IDX}, TRUE AS {POINT}{point_nulls} FROM __fp_points "
        f"UNION ALL {'BY NAME ' if dialect.union_by_name else ''}SELECT {t_keys}, t.{IDX}, FALSE AS {POINT}"
        + "".join(f", {c}" for c in stream_columns)
        + f" FROM __fp_tiles AS t WHERE {bounds}{entity_window})",
    ]

    frames = _Frames(view, dialect)
    finals: dict[str, str] = {}
    distinct_features: dict[str, list[FeatureSpec]] = {}
    last_n_features: dict[str, list[FeatureSpec]] = {}
    for feature in wanted:
        c = feature.column or feature.name
        k = _window(feature, view)

        def over(expression: str, k: int | None = k) -> str:
            return "w." + q(frames.over(expression, k))

        def part(p: str, c: str = c) -> str:
            return q(partial_name(c, p))

        function = feature.function
        if function == "count":
            count = over(f"sum({part('n')})")
            finals[feature.name] = f"COALESCE({count}, 0)"
        elif function == "sum":
            total = over(f"sum({part('sum')})")
            finals[feature.name] = f"COALESCE(CAST({total} AS {dialect.type_sql(feature.type)}), 0)"
        elif function == "mean":
            total, count = over(f"sum({part('sum')})"), over(f"sum({part('n')})")
            finals[feature.name] = f"CAST({total} AS DOUBLE) / NULLIF({count}, 0)"
        elif function in ("stddev_pop", "stddev_samp"):
            count = over(f"sum({part('n')})")
            shifted = over(f"sum({q('__fp_shifted_' + c)})")
            squares = over(f"sum({q('__fp_squares_' + c)})")
            m2 = f"greatest({squares} - {shifted} * {shifted} / {count}, 0)"
            if function == "stddev_pop":
                finals[feature.name] = f"CASE WHEN {count} > 0 THEN sqrt({m2} / {count}) END"
            else:
                finals[feature.name] = f"CASE WHEN {count} > 1 THEN sqrt({m2} / ({count} - 1)) END"
        elif function in ("min", "max"):
            finals[feature.name] = over(f"{function}({part(function)})")
        elif function in ("first", "last"):
            finals[feature.name] = over(dialect.first_last(function, part(function)))
        elif function == "count_distinct":
            distinct_features.setdefault(c, []).append(feature)
        elif function == "last_n":
            last_n_features.setdefault(c, []).append(feature)

    joins = []
    for i, (c, group) in enumerate(distinct_features.items()):
        cte = f"__fp_distinct{i}"
        distinct = _distinct_cte if dialect.named_windows else _distinct_cte_by_changes
        sql, aliases = distinct(view, cte, c, group, bounds, dialect)
        ctes.append(sql)
        joins.append(cte)
        finals.update({name: f"{cte}.{q(alias)}" for name, alias in aliases.items()})
    for i, (c, group) in enumerate(last_n_features.items()):
        cte = f"__fp_lastn{i}"
        last_n = _last_n_ctes if dialect.structs else _last_n_ctes_by_rank
        ctes += last_n(view, cte, c, group, dialect)
        joins.append(cte)
        finals.update({f.name: f"{cte}.{q(f.name)}" for f in group})
    clauses = frames.clauses()
    ctes.append(
        f"__fp_windows AS (SELECT {key_list}, {IDX}, {POINT}{frames.select()} FROM __fp_stream"
        + (f" WINDOW {clauses}" if clauses else "")
        + ")"
    )
    select = [f"w.{q(k)}" for k in keys] + [f"w.{IDX}"]
    select += [f"CAST({finals[f.name]} AS {dialect.type_sql(f.type)}) AS {q(f.name)}" for f in wanted]
    join_sql = "".join(
        f" LEFT JOIN {cte} ON " + " AND ".join(f"w.{_name(k)} = {cte}.{_name(k)}" for k in [*keys, IDX])
        for cte in joins
    )
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM __fp_windows AS w{join_sql} WHERE w.{POINT}"
    )


def _alias(column: str) -> str:
    """The name a stream column expression (``t."x"`` or ``... AS "x"``) gets."""
    return column.rsplit(" AS ", 1)[1] if " AS " in column else column.split(".", 1)[1]


def _distinct_cte(
    view: FeatureViewSpec, cte: str, column: str, group: list[FeatureSpec], bounds: str, dialect: Dialect
) -> tuple[str, dict[str, str]]:
    """Exact distinct counts: the tiles' distinct values as rows, counted distinct over each frame."""
    keys = ", ".join(q(k) for k in view.join_key_names)
    frames = _Frames(view)
    aliases = {f.name: frames.over("count(DISTINCT __fp_value)", _window(f, view)) for f in group}
    values = q(partial_name(column, "distinct"))
    sql = (
        f"{cte} AS (SELECT * FROM (SELECT {keys}, {IDX}, {POINT}{frames.select()} FROM ("
        f"SELECT {keys}, {IDX}, TRUE AS {POINT}, NULL AS __fp_value FROM __fp_points UNION ALL "
        f"SELECT {', '.join('t.' + q(k) for k in view.join_key_names)}, t.{IDX}, FALSE, unnest(t.{values}) "
        f"FROM __fp_tiles AS t WHERE {bounds}) WINDOW {frames.clauses()}) WHERE {POINT})"
    )
    return sql, aliases


def _distinct_cte_by_changes(
    view: FeatureViewSpec, cte: str, column: str, group: list[FeatureSpec], bounds: str, dialect: Dialect
) -> tuple[str, dict[str, str]]:
    """Exact distinct counts without a windowed ``COUNT(DISTINCT)`` (Snowflake has none): each
    occurrence of a value in a tile counts from the next interval until the window has passed it or the
    value occurs again, so a running sum of +1/-1 changes per entity gives the count at every point."""
    key_names = view.join_key_names
    keys = ", ".join(q(k) for k in key_names)
    values = q(partial_name(column, "distinct"))
    windows = list(dict.fromkeys(_window(f, view) for f in group))
    names = {k: q(f"__fp_d{i}") for i, k in enumerate(windows)}
    ctes = [
        f"{cte}_values AS (SELECT {', '.join('t.' + q(k) for k in key_names)}, t.{IDX}, v.value AS __fp_value "
        f"FROM __fp_tiles AS t, LATERAL FLATTEN(input => t.{values}) AS v WHERE {bounds})"
    ]
    changes = []
    for k, name in names.items():

        def deltas(value: int, name: str = name) -> str:
            return "".join(f", {value if other == name else 0} AS {other}" for other in names.values())

        if k is None:  # a value counts from its first occurrence on
            changes.append(
                f"SELECT {keys}, min({IDX}) + 1 AS __fp_at{deltas(1)} FROM {cte}_values GROUP BY {keys}, __fp_value"
            )
            continue
        following = f"lead({IDX}) OVER (PARTITION BY {keys}, __fp_value ORDER BY {IDX})"
        ends = f"SELECT *, least({IDX} + {k}, COALESCE({following}, {IDX} + {k})) + 1 AS __fp_end FROM {cte}_values"
        changes.append(
            f"SELECT {keys}, {IDX} + 1 AS __fp_at{deltas(1)} FROM {cte}_values UNION ALL "
            f"SELECT {keys}, __fp_end{deltas(-1)} FROM ({ends}) AS __fp_ends"
        )
    zeros = "".join(f", 0 AS {name}" for name in names.values())
    running = "".join(
        f", sum({name}) OVER (PARTITION BY {keys} ORDER BY __fp_at "
        f"RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {name}"
        for name in names.values()
    )
    ctes.append(
        f"{cte} AS (SELECT {keys}, __fp_at AS {IDX}{''.join(', ' + n for n in names.values())} FROM ("
        f"SELECT {keys}, __fp_at, {POINT}{running} FROM (SELECT {keys}, {IDX} AS __fp_at, TRUE AS {POINT}{zeros} "
        f"FROM __fp_points UNION ALL SELECT {keys}, __fp_at, FALSE{''.join(', ' + n for n in names.values())} FROM ("
        + " UNION ALL ".join(changes)
        + f") AS __fp_changes) AS __fp_stream) AS __fp_counted WHERE {POINT})"
    )
    return ", ".join(ctes), {f.name: f"__fp_d{windows.index(_window(f, view))}" for f in group}


def _last_n_ctes_by_rank(
    view: FeatureViewSpec, cte: str, column: str, group: list[FeatureSpec], dialect: Dialect
) -> list[str]:
    """The last n values before each point without list functions (Snowflake): the tiles with values
    are numbered per entity, each point finds the number of the latest one before it, the values of
    the last n such tiles are joined as rows, and each feature keeps the latest ones inside its window
    (ordered by time, then value, as the tiles are)."""
    key_names = view.join_key_names
    keys = ", ".join(q(k) for k in key_names)
    n = last_n_size(view, column)
    values, stamps = q(partial_name(column, "lastn")), q(partial_name(column, "lastn_ts"))
    step = interval_us(view)
    element = dialect.type_sql(_element(view, column))
    on = " AND ".join(f"m.{q(k)} = r.{q(k)}" for k in key_names)
    ctes = [
        f"{cte}_tiles AS (SELECT {keys}, {IDX}, {values}, {stamps}, row_number() OVER (PARTITION BY {keys} "
        f"ORDER BY {IDX}) AS __fp_seq FROM __fp_tiles WHERE ARRAY_SIZE({values}) > 0)",
        f"{cte}_match AS (SELECT {keys}, {IDX}, __fp_match FROM (SELECT {keys}, {IDX}, {POINT}, "
        f"max(__fp_seq) OVER (PARTITION BY {keys} ORDER BY {IDX}, {POINT} DESC ROWS BETWEEN UNBOUNDED PRECEDING "
        f"AND CURRENT ROW) AS __fp_match FROM (SELECT {keys}, {IDX}, TRUE AS {POINT}, NULL AS __fp_seq "
        f"FROM __fp_points UNION ALL SELECT {keys}, {IDX}, FALSE, __fp_seq FROM {cte}_tiles) AS __fp_s) AS __fp_m "
        f"WHERE {POINT} AND __fp_match IS NOT NULL)",
        f"{cte}_flat AS (SELECT {', '.join('r.' + q(k) for k in key_names)}, r.__fp_seq, "
        f"CAST(v.value AS {element}) AS __fp_v, CAST(GET(r.{stamps}, v.index) AS BIGINT) AS __fp_t "
        f"FROM {cte}_tiles AS r, LATERAL FLATTEN(input => r.{values}) AS v)",
        f"{cte}_events AS (SELECT {', '.join('m.' + q(k) for k in key_names)}, m.{IDX}, r.__fp_v, r.__fp_t "
        f"FROM {cte}_match AS m JOIN {cte}_flat AS r ON {on} "
        f"AND r.__fp_seq > m.__fp_match - {n} AND r.__fp_seq <= m.__fp_match)",
    ]
    selects, joins = [], []
    for i, feature in enumerate(group):
        k = _window(feature, view)
        name = q(feature.name)
        kept = "" if k is None else f" WHERE __fp_t >= ({IDX} - {k}) * {step}"
        ranked = (
            f"SELECT *, row_number() OVER (PARTITION BY {keys}, {IDX} ORDER BY __fp_t DESC, __fp_v DESC) "
            f"AS __fp_rank FROM {cte}_events{kept}"
        )
        ctes.append(
            f"{cte}_f{i} AS (SELECT {keys}, {IDX}, ARRAY_AGG(__fp_v) WITHIN GROUP (ORDER BY __fp_t, __fp_v) "
            f"AS {name} FROM ({ranked}) AS __fp_r WHERE __fp_rank <= {int(feature.params['n'])} "
            f"GROUP BY {keys}, {IDX})"
        )
        selects.append(f"COALESCE({cte}_f{i}.{name}, ARRAY_CONSTRUCT()) AS {name}")
        joins.append(
            f" LEFT JOIN {cte}_f{i} ON "
            + " AND ".join(f"p.{_name(k)} = {cte}_f{i}.{_name(k)}" for k in [*key_names, IDX])
        )
    ctes.append(
        f"{cte} AS (SELECT {', '.join('p.' + q(k) for k in key_names)}, p.{IDX}, {', '.join(selects)} "
        f"FROM __fp_points AS p{''.join(joins)})"
    )
    return ctes


def _element(view: FeatureViewSpec, column: str) -> DataType:
    return input_columns(view)[column]


def _last_n_ctes(
    view: FeatureViewSpec, cte: str, column: str, group: list[FeatureSpec], dialect: Dialect
) -> list[str]:
    """The last n values before each point: per tile, the last n values up to and including it (the
    last n tiles that have values hold them); each point takes those of the latest tile before it and
    keeps the ones inside each window."""
    keys = view.join_key_names
    key_list = ", ".join(q(k) for k in keys)
    n = last_n_size(view, column)
    values, stamps = q(partial_name(column, "lastn")), q(partial_name(column, "lastn_ts"))
    pair = dialect.struct(t=f"{stamps}[i + 1]", v=f"{values}[i + 1]")
    pairs = f"list_transform(range(len({values})), {dialect.lambda_('i', pair)})"
    step = interval_us(view)
    selects = []
    for feature in group:
        k = _window(feature, view)
        kept = "p.__fp_recent"
        if k is not None:
            start = dialect.timestamp_us(f"(p.{IDX} - {k}) * {step}")
            kept = f"list_filter({kept}, {dialect.lambda_('x', f'x.t >= {start}')})"
        size = int(feature.params["n"])
        picked = f"list_transform(list_slice({kept}, -{size}, -1), {dialect.lambda_('x', 'x.v')})"
        selects.append(f"COALESCE({picked}, []) AS {q(feature.name)}")
    recent = (
        f"{cte}_tiles AS (SELECT {key_list}, {IDX}, list_slice(list_sort(flatten(list({pairs}) OVER ("
        f"PARTITION BY {key_list} ORDER BY {IDX} ROWS BETWEEN {n - 1} PRECEDING AND CURRENT ROW))), -{n}, -1) "
        f"AS __fp_recent FROM __fp_tiles WHERE len({values}) > 0)"
    )
    on = " AND ".join(f"p.{q(k)} = r.{q(k)}" for k in keys)
    join = (
        f"{cte} AS (SELECT {', '.join('p.' + q(k) for k in keys)}, p.{IDX}, {', '.join(selects)} FROM ("
        f"SELECT {', '.join('p.' + q(k) for k in keys)}, p.{IDX}, r.__fp_recent FROM __fp_points AS p "
        f"ASOF LEFT JOIN {cte}_tiles AS r ON {on} AND p.{IDX} > r.{IDX}) AS p)"
    )
    return [recent, join]


# -- what the offline store runs -----------------------------------------------------------------


def _keys(view: FeatureViewSpec, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + q(k) for k in view.join_key_names)


def max_finite_window(view: FeatureViewSpec) -> int:
    """The longest finite window, in intervals (0 when there is none)."""
    return max((k for k in windows_in_intervals(view) if k is not None), default=0)


def features_at_sql(
    view: FeatureViewSpec,
    tiles: str,
    points: str,
    features: Sequence[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> str:
    """Like ``rollup_sql`` but with the timestamp (the end of the windows) instead of the index."""
    names = list(features or [f.name for f in aggregates(view)])
    stamp = dialect.timestamp_us(f"r.{IDX} * {interval_us(view)}")
    return (
        f"SELECT {_keys(view, 'r')}, {stamp} AS {q(view.timestamp_field)}, "
        f"{', '.join('r.' + q(n) for n in names)} FROM ({rollup_sql(view, tiles, points, names, dialect)}) AS r"
    )


def projection_sql(
    view: FeatureViewSpec, tiles: str, keys: str | None, index: int, dialect: Dialect = DUCKDB
) -> str:
    """The online projection: every entity's values as of interval ``index`` (the end of the latest
    materialized partition), for the entities of relation ``keys`` (all when None) that have tiles."""
    entities = f"SELECT DISTINCT {_keys(view, 't')} FROM {tiles} AS t"
    if keys is not None:
        entities += dialect.semi_join(keys, "k", "t", view.join_key_names)
    entities += f" WHERE NOT ({marker_condition(view, 't')})"
    points = f"(SELECT {_keys(view, 'e')}, CAST({index} AS BIGINT) AS {IDX} FROM ({entities}) AS e)"
    return features_at_sql(view, tiles, points, dialect=dialect)


def changed_keys_sql(
    view: FeatureViewSpec, relations: Sequence[str], start_us: int | None, dialect: Dialect = DUCKDB
) -> str:
    """Entities with tiles at or after ``start_us`` (anywhere when None) in any of the relations: the
    only ones whose values can differ between two versions of the table or two materialized times."""
    since = "" if start_us is None else f" AND {dialect.epoch_us(q(view.timestamp_field))} >= {start_us}"
    parts = [f"SELECT {_keys(view)} FROM {r} WHERE NOT ({marker_condition(view)}){since}" for r in relations]
    return f"SELECT DISTINCT {_keys(view)} FROM ({' UNION ALL '.join(parts)}) AS c"


def changes_sql(view: FeatureViewSpec, after: str, before: str) -> tuple[str, str]:
    """(upserts, deletes) between two projections: rows of ``after`` that are new or whose values
    differ, and the keys of ``before`` that are gone."""
    on = " AND ".join(f"a.{q(k)} = b.{q(k)}" for k in view.join_key_names)
    differs = " OR ".join(f"a.{q(f.name)} IS DISTINCT FROM b.{q(f.name)}" for f in aggregates(view))
    missing = f"b.{q(view.join_key_names[0])} IS NULL"
    upserts = (
        f"SELECT a.* FROM {after} AS a LEFT JOIN {before} AS b ON {on} WHERE {missing} OR {differs} "
        f"ORDER BY {_keys(view, 'a')}"
    )
    deletes = f"SELECT {_keys(view, 'b')} FROM {before} AS b ANTI JOIN {after} AS a ON {on} ORDER BY {_keys(view, 'b')}"
    return upserts, deletes


def features_in_range_sql(
    view: FeatureViewSpec, tiles: str, start: datetime, end: datetime, dialect: Dialect = DUCKDB
) -> str:
    """Each entity's values with the interval in which they hold (``_valid_from``, ``_valid_to``),
    for values that hold at some time in ``[start, end)``.

    A value can change only where a tile enters a window (the end of its interval) or leaves one; the
    roll-up runs at those times, from the last change at or before ``start`` up to ``end``, and
    consecutive equal values are merged."""
    step = interval_us(view)
    epoch = datetime(1970, 1, 1)
    first = (int((start - epoch).total_seconds() * 1_000_000)) // step
    last = -(-int((end - epoch).total_seconds() * 1_000_000) // step)  # intervals starting before end
    offsets = sorted({0, *(k for k in windows_in_intervals(view) if k is not None)})
    tile_index = dialect.floor_div(dialect.epoch_us(q(view.timestamp_field)), step)
    changes = (
        f"SELECT {_keys(view, 't')}, t.__fp_tile + 1 + o.o AS {IDX} FROM "
        f"(SELECT {_keys(view)}, {tile_index} AS __fp_tile FROM {tiles} WHERE NOT ({marker_condition(view)})) AS t "
        f"CROSS JOIN (VALUES {', '.join(f'({o})' for o in offsets)}) AS o(o)"
    )
    since = (
        f"SELECT {_keys(view)}, max({IDX}) AS __fp_since FROM __fp_changes WHERE {IDX} <= {first} "
        f"GROUP BY {_keys(view)}"
    )
    on = " AND ".join(f"c.{q(k)} = s.{q(k)}" for k in view.join_key_names)
    points = (
        f"(SELECT c.* FROM __fp_changes AS c LEFT JOIN __fp_since AS s ON {on} "
        f"WHERE c.{IDX} < {last} AND c.{IDX} >= COALESCE(s.__fp_since, {first}))"
    )
    names = [f.name for f in aggregates(view)]
    ts = q(view.timestamp_field)
    keys = _keys(view)
    previous = f"OVER (PARTITION BY {keys} ORDER BY {ts})"
    if dialect.structs:
        state = dialect.struct(**{f"f{i}": q(n) for i, n in enumerate(names)})
        changed = f"lag({state}) {previous} IS DISTINCT FROM {state}"
    else:
        changed = f"row_number() {previous} = 1" + "".join(
            f" OR lag({q(n)}) {previous} IS DISTINCT FROM {q(n)}" for n in names
        )
    return (
        f"WITH __fp_changes AS ({changes}), __fp_since AS ({since}), "
        f"__fp_values AS ({features_at_sql(view, tiles, points, names, dialect)}), "
        f"__fp_kept AS (SELECT * FROM (SELECT *, {changed} AS __fp_changed FROM __fp_values) AS __fp_c "
        f"WHERE __fp_changed) "
        f"SELECT * FROM (SELECT {keys}, {ts}, {', '.join(q(n) for n in names)}, {ts} AS _valid_from, "
        f"lead({ts}) {previous} AS _valid_to FROM __fp_kept) AS __fp_r "
        f"WHERE _valid_from < {dialect.literal_time(end)} "
        f"AND (_valid_to IS NULL OR _valid_to > {dialect.literal_time(start)}) "
        f"ORDER BY {keys}, _valid_from"
    )
