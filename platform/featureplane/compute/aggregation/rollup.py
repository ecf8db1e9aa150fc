"""Roll-ups: feature values at points in time from a view's tiles, as one SQL query per retrieval."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from featureplane.compute.aggregation.dialects import DUCKDB, IDX, POINT, Dialect, column_sql, q
from featureplane.compute.aggregation.tiles import (
    NEEDS,
    aggregates,
    input_columns,
    interval_us,
    last_n_size,
    marker_condition,
    partial_name,
    partials,
    windows_in_intervals,
)
from featureplane.definitions.specs import FeatureSpec, FeatureViewSpec, FieldSpec
from featureplane.types import DataType


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


CUT = "__fp_cut"


def rollup_sql(
    view: FeatureViewSpec,
    tiles: str,
    points: str,
    features: Sequence[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> str:
    """Feature values at each point: a query over ``tiles`` (a relation holding the view's tile table)
    and ``points`` (a relation of the join keys and ``__fp_idx``, the interval index of the time, i.e.
    the end of the windows). Returns the join keys, ``__fp_idx`` and one column per feature.

    Only tiles whose partition had ended by the point count (``online.materialized_through``): a
    window ``k`` at index ``E`` rolls up the tiles of ``[E - k, C)`` where ``C`` is the end of the
    partitions complete at ``E``. Lifetime windows are the roll-up at ``C``. Finite windows are rolled
    up per entity and ``C``: each such group's stream holds its tiles of ``[C - K, C)`` (``K`` the
    longest window), so the work grows with the points' distinct (entity, partition) pairs times ``K``
    only where the schedule is longer than the interval."""
    names = list(features or [f.name for f in aggregates(view)])
    schedule = max(1, (view.batch_schedule_seconds or 0) // (view.aggregation_interval_seconds or 1))
    if schedule == 1:
        return _rollup_at_sql(view, tiles, points, names, dialect)
    keys = view.join_key_names
    cut = q(CUT)
    valid = " AND ".join([*(f"p.{q(k)} IS NOT NULL" for k in keys), f"p.{IDX} IS NOT NULL"])
    cut_of = f"{dialect.floor_div(f'p.{IDX}', schedule)} * {schedule}"
    spots = (
        f"(SELECT DISTINCT {_keys(view, 'p')}, p.{IDX}, {cut_of} AS {cut} FROM {points} AS p WHERE {valid})"
    )
    lifetime = [n for n in names if view.feature(n).window_seconds is None]
    finite = [n for n in names if n not in lifetime]
    parts, columns = [], {}
    if finite:
        span = max(_window(view.feature(n), view) or 0 for n in finite)
        grouped = dataclasses.replace(view, join_keys=[*view.join_keys, FieldSpec(CUT, "int64")])
        tile_index = dialect.floor_div(dialect.epoch_us(f"t.{q(view.timestamp_field)}"), interval_us(view))
        on = " AND ".join(f"t.{q(k)} = c.{q(k)}" for k in keys)
        grouped_tiles = (
            f"(SELECT t.*, c.{cut} FROM {tiles} AS t JOIN (SELECT DISTINCT {_keys(view)}, {cut} FROM {spots} "
            f"AS s) AS c ON {on} AND {tile_index} >= c.{cut} - {span} AND {tile_index} < c.{cut})"
        )
        grouped_points = f"(SELECT {_keys(view)}, {cut}, {IDX} FROM {spots} AS s)"
        sql = _rollup_at_sql(grouped, grouped_tiles, grouped_points, finite, dialect)
        parts.append(f" LEFT JOIN ({sql}) AS f ON {_on(view, 'p', 'f')} AND f.{IDX} = p.{IDX}")
        columns.update({n: "f" for n in finite})
    if lifetime:
        at_cut = f"(SELECT DISTINCT {_keys(view)}, {cut} AS {IDX} FROM {spots} AS s)"
        sql = _rollup_at_sql(view, tiles, at_cut, lifetime, dialect)
        parts.append(f" LEFT JOIN ({sql}) AS l ON {_on(view, 'p', 'l')} AND l.{IDX} = p.{cut}")
        columns.update({n: "l" for n in lifetime})
    select = ", ".join(f"{columns[n]}.{q(n)}" for n in names)
    return f"SELECT {_keys(view, 'p')}, p.{IDX}, {select} FROM {spots} AS p{''.join(parts)}"


def _on(view: FeatureViewSpec, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in view.join_key_names)


def _rollup_at_sql(
    view: FeatureViewSpec,
    tiles: str,
    points: str,
    features: Sequence[str] | None = None,
    dialect: Dialect = DUCKDB,
) -> str:
    """Feature values at each point from every tile before it (``rollup_sql`` without the
    partitions' cut-off)."""
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
        f" LEFT JOIN {cte} ON "
        + " AND ".join(f"w.{column_sql(k)} = {cte}.{column_sql(k)}" for k in [*keys, IDX])
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
            + " AND ".join(f"p.{column_sql(k)} = {cte}_f{i}.{column_sql(k)}" for k in [*key_names, IDX])
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


def online_rows_view(view: FeatureViewSpec) -> FeatureViewSpec:
    """The columns of ``online_rows_sql``: join keys, timestamp, the lifetime features, then the tile
    index and the tile's partials."""
    lifetime = [f for f in aggregates(view) if f.window_seconds is None]
    tiles = [FeatureSpec(name=IDX, dtype="int64")] if max_finite_window(view) else []
    if tiles:
        tiles += [FeatureSpec(name=partial_name(c, p), dtype=str(t)) for c, p, t in partials(view)]
    return dataclasses.replace(view, features=[*lifetime, *tiles], ttl_seconds=None)


def online_rows_sql(
    view: FeatureViewSpec, tiles: str, keys: str | None, index: int, dialect: Dialect = DUCKDB
) -> str:
    """What the online store holds as of interval ``index`` (the end of the latest materialized
    partition) for the entities of relation ``keys`` (all when None) that have tiles: each entity's
    lifetime features at ``index`` and one row per tile of ``[index - K, index)`` (``K`` the longest
    finite window; one row with a null tile index when it has none), ordered by entity and tile.
    Lookups roll the finite windows up from these tiles (``online.OnlineRollup``)."""
    entities = f"SELECT DISTINCT {_keys(view, 't')} FROM {tiles} AS t"
    if keys is not None:
        entities += dialect.semi_join(keys, "k", "t", view.join_key_names)
    entities += f" WHERE NOT ({marker_condition(view, 't')})"
    step = interval_us(view)
    select = [
        _keys(view, "e"),
        f"{dialect.timestamp_us(f'{int(index)} * {step}')} AS {q(view.timestamp_field)}",
    ]
    joins = ""
    lifetime = [f.name for f in aggregates(view) if f.window_seconds is None]
    if lifetime:
        points = f"(SELECT {_keys(view, 'e')}, CAST({int(index)} AS BIGINT) AS {IDX} FROM ({entities}) AS e)"
        joins += (
            f" LEFT JOIN ({rollup_sql(view, tiles, points, lifetime, dialect)}) AS l ON {_on(view, 'e', 'l')}"
        )
        select += [f"l.{q(n)}" for n in lifetime]
    span = max_finite_window(view)
    order = ""
    if span:
        tile_index = dialect.floor_div(dialect.epoch_us(f"t.{q(view.timestamp_field)}"), step)
        columns = [q(partial_name(c, p)) for c, p, _ in partials(view)]
        window = (
            f"SELECT {_keys(view, 't')}, {tile_index} AS {IDX}{''.join(', t.' + c for c in columns)} "
            f"FROM {tiles} AS t WHERE NOT ({marker_condition(view, 't')}) "
            f"AND {tile_index} >= {int(index) - span} AND {tile_index} < {int(index)}"
        )
        joins += f" LEFT JOIN ({window}) AS w ON {_on(view, 'e', 'w')}"
        select += [f"w.{IDX}", *(f"w.{c}" for c in columns)]
        order = f", w.{IDX}"
    return f"SELECT {', '.join(select)} FROM ({entities}) AS e{joins} ORDER BY {_keys(view, 'e')}{order}"


def changed_keys_sql(
    view: FeatureViewSpec, relations: Sequence[str], start_us: int | None, dialect: Dialect = DUCKDB
) -> str:
    """Entities with tiles at or after ``start_us`` (anywhere when None) in any of the relations: the
    only ones whose values can differ between two versions of the table or two materialized times."""
    since = "" if start_us is None else f" AND {dialect.epoch_us(q(view.timestamp_field))} >= {start_us}"
    parts = [f"SELECT {_keys(view)} FROM {r} WHERE NOT ({marker_condition(view)}){since}" for r in relations]
    return f"SELECT DISTINCT {_keys(view)} FROM ({' UNION ALL '.join(parts)}) AS c"


def features_in_range_sql(
    view: FeatureViewSpec, tiles: str, start: datetime, end: datetime, dialect: Dialect = DUCKDB
) -> str:
    """Each entity's values with the interval in which they hold (``_valid_from``, ``_valid_to``),
    for values that hold at some time in ``[start, end)``.

    A value can change only where a tile enters its windows (the end of its partition) or leaves one; the
    roll-up runs at those times, from the last change at or before ``start`` up to ``end``, and
    consecutive equal values are merged."""
    step = interval_us(view)
    epoch = datetime(1970, 1, 1)
    first = (int((start - epoch).total_seconds() * 1_000_000)) // step
    last = -(-int((end - epoch).total_seconds() * 1_000_000) // step)  # intervals starting before end
    offsets = sorted({0, *(k for k in windows_in_intervals(view) if k is not None)})
    tile_index = dialect.floor_div(dialect.epoch_us(q(view.timestamp_field)), step)
    tile_rows = f"(SELECT {_keys(view)}, {tile_index} AS __fp_tile FROM {tiles} WHERE NOT ({marker_condition(view)})) AS t"
    changes = (
        f"SELECT {_keys(view, 't')}, t.__fp_tile + 1 + o.o AS {IDX} FROM {tile_rows} "
        f"CROSS JOIN (VALUES {', '.join(f'({o})' for o in offsets)}) AS o(o)"
    )
    schedule = max(1, (view.batch_schedule_seconds or 0) // (view.aggregation_interval_seconds or 1))
    if schedule > 1:  # a tile enters its windows when its partition has ended
        changes += (
            f" UNION ALL SELECT {_keys(view, 't')}, "
            f"({dialect.floor_div('t.__fp_tile', schedule)} + 1) * {schedule} AS {IDX} FROM {tile_rows}"
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
    values = features_at_sql(view, tiles, points, names, dialect)
    ctes = [f"__fp_changes AS ({changes})", f"__fp_since AS ({since})"]
    return merged_ranges_sql(view, values, names, start, end, dialect, ctes)


def merged_ranges_sql(
    view: FeatureViewSpec,
    values: str,
    names: Sequence[str],
    start: datetime,
    end: datetime,
    dialect: Dialect = DUCKDB,
    ctes: Sequence[str] = (),
) -> str:
    """``features_in_range_sql``'s ranges from ``values`` (join keys, the time each value holds from,
    the features; it may read ``ctes``): consecutive equal values merged, those holding in the range."""
    ts = q(view.timestamp_field)
    keys = _keys(view)
    previous = f"OVER (PARTITION BY {keys} ORDER BY {ts})"
    floats = [n for n in names if view.feature(n).dtype in ("float64", "float32")]
    exact = [n for n in names if n not in floats]
    changes_of = [f"row_number() {previous} = 1"]
    if exact and dialect.structs:
        state = dialect.struct(**{f"f{i}": q(n) for i, n in enumerate(exact)})
        changes_of.append(f"lag({state}) {previous} IS DISTINCT FROM {state}")
    else:
        changes_of += [f"lag({q(n)}) {previous} IS DISTINCT FROM {q(n)}" for n in exact]
    # Floating-point values rolled up from the same tiles over different frames may differ in the last
    # bits: equal within a relative 1e-12 is the same value, so both dialects merge the same rows.
    for n in floats:
        before = f"lag({q(n)}) {previous}"
        changes_of.append(
            f"NOT ({before} IS NOT DISTINCT FROM {q(n)} OR "
            f"abs({before} - {q(n)}) <= 1e-12 * greatest(abs({before}), abs({q(n)})))"
        )
    changed = " OR ".join(changes_of)
    with_clause = ", ".join([*ctes, f"__fp_values AS ({values})"])
    return (
        f"WITH {with_clause}, "
        f"__fp_kept AS (SELECT * FROM (SELECT *, {changed} AS __fp_changed FROM __fp_values) AS __fp_c "
        f"WHERE __fp_changed) "
        f"SELECT * FROM (SELECT {keys}, {ts}, {', '.join(q(n) for n in names)}, {ts} AS _valid_from, "
        f"lead({ts}) {previous} AS _valid_to FROM __fp_kept) AS __fp_r "
        f"WHERE _valid_from < {dialect.literal_time(end)} "
        f"AND (_valid_to IS NULL OR _valid_to > {dialect.literal_time(start)}) "
        f"ORDER BY {keys}, _valid_from"
    )
