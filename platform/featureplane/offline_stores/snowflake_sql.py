"""The SQL of the Snowflake offline store: table names, column lists, and the point-in-time joins
(ASOF JOIN, or window functions over the union of spine and feature rows) it runs in Snowflake."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import TYPE_CHECKING

from featureplane.compute.aggregation.dialects import IDX, SNOWFLAKE
from featureplane.compute.aggregation.stream_rollup import AT
from featureplane.compute.aggregation.tiles import (
    interval_us,
    storage_view,
)
from featureplane.compute.snowflake.client import (
    literal_time,
    quote,
)
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.base import RetrievalPart
from featureplane.types import DataType, Timestamp

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


ROW = quote("__fp_row")
SPINE_TS = quote("__fp_spine_ts")
FEATURE_TS = quote("__fp_ts")
VERSION = quote("_fp_version")
JOIN_METHODS = ("asof", "window")
KEEP_CHANGES = 16  # versions of touched keys kept for incremental online syncs


def table_name(table_id: str, prefix: str = "FP_") -> str:
    """A safe, deterministic Snowflake name for ``<ws>/<view>/g<generation>`` (readable, and unique
    through a hash of the exact id)."""
    readable = "__".join(re.sub(r"[^A-Z0-9_]", "_", part.upper()) for part in table_id.split("/"))
    digest = hashlib.sha256(table_id.encode()).hexdigest()[:8].upper()
    return f"{prefix}{readable[:200]}_{digest}"


def view_fields(view: FeatureViewSpec) -> list[tuple[str, DataType]]:
    """Join keys, timestamp and features: a plain view's rows, an aggregate view's values."""
    fields = [(k.name, k.type) for k in view.join_keys]
    fields.append((view.timestamp_field, Timestamp))
    return fields + [(f.name, f.type) for f in view.features]


def store_fields(view: FeatureViewSpec) -> list[tuple[str, DataType]]:
    """What the view's table holds: its rows, or its tiles for an aggregate view."""
    return view_fields(storage_view(view))


def key_list(view: FeatureViewSpec, alias: str = "") -> str:
    return ", ".join(f"{alias}{quote(k)}" for k in view.join_key_names)


def keys_equal(view: FeatureViewSpec, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in view.join_key_names)


def window_conditions(column: str, start: datetime | None, end: datetime | None) -> list[str]:
    conditions = []
    if start is not None:
        conditions.append(f"{column} >= {literal_time(start)}")
    if end is not None:
        conditions.append(f"{column} < {literal_time(end)}")
    return conditions


def where_clause(conditions: list[str]) -> str:
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def latest_order(view: FeatureViewSpec, alias: str = "") -> str:
    """Which row is a key's latest: the newest timestamp, ties broken by the features (as on Delta)."""
    order = [f"{alias}{quote(view.timestamp_field)} DESC"]
    order += [f"{alias}{quote(f.name)} DESC NULLS LAST" for f in view.features if not f.type.is_array]
    return ", ".join(order)


# -- point-in-time joins ---------------------------------------------------------------------------
#
# Each part (one view's features) is a list of CTEs ending in one named ``<alias>`` with the spine's row
# number, the features and the matched row's timestamp; the final query left-joins them to the spine.
# Aggregate views' parts join the spine to their roll-up at the spine's points (``aggregate_part``).

Ctes = list[tuple[str, str]]


def asof_part(view: FeatureViewSpec, features: list[str], relation: str, spine: str, alias: str) -> Ctes:
    """For each spine row, the view's latest row at or before the spine timestamp: Snowflake's ASOF
    JOIN (left rows without a match keep nulls)."""
    columns = ", ".join(quote(c) for c in [*view.join_key_names, *features])
    picked = ", ".join(f"p.{quote(f)}" for f in features)
    return [
        (
            alias,
            f"SELECT s.{ROW}, {picked}, p.{FEATURE_TS} FROM {spine} AS s "
            f"ASOF JOIN (SELECT {columns}, {quote(view.timestamp_field)} AS {FEATURE_TS} FROM {relation}) AS p "
            f"MATCH_CONDITION (s.{SPINE_TS} >= p.{FEATURE_TS}) ON {keys_equal(view, 's', 'p')}",
        )
    ]


def window_part(view: FeatureViewSpec, features: list[str], relation: str, spine: str, alias: str) -> Ctes:
    """The same rows as ``asof_part`` in standard SQL: feature rows are numbered per key in time order,
    spine and feature rows are merged into one stream per key (features first on equal timestamps), and
    a running maximum gives each spine row the number of its latest feature row."""
    keys = key_list(view)
    ts = quote(view.timestamp_field)
    columns = ", ".join(quote(c) for c in [*view.join_key_names, *features])
    ties = [f"{quote(f.name)} ASC NULLS FIRST" for f in view.features if not f.type.is_array]
    numbered, matched = f"{alias}_numbered", f"{alias}_matched"
    return [
        (
            numbered,
            f"SELECT {columns}, {ts} AS {FEATURE_TS}, ROW_NUMBER() OVER (PARTITION BY {keys} "
            f"ORDER BY {', '.join([f'{ts} ASC', *ties])}) AS __fp_seq FROM {relation}",
        ),
        (
            matched,
            f"SELECT __fp_row, {keys}, __fp_side, MAX(__fp_seq) OVER (PARTITION BY {keys} "
            "ORDER BY __fp_t, __fp_side ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __fp_match "
            f"FROM (SELECT {keys}, {SPINE_TS} AS __fp_t, 1 AS __fp_side, {ROW} AS __fp_row, "
            f"NULL AS __fp_seq FROM {spine} "
            f"UNION ALL SELECT {keys}, {FEATURE_TS}, 0, NULL, __fp_seq FROM {numbered})",
        ),
        (
            alias,
            f"SELECT m.__fp_row AS {ROW}, {', '.join(f'f.{quote(c)}' for c in features)}, f.{FEATURE_TS} "
            f"FROM {matched} AS m LEFT JOIN {numbered} AS f "
            f"ON {keys_equal(view, 'm', 'f')} AND f.__fp_seq = m.__fp_match WHERE m.__fp_side = 1",
        ),
    ]


def spine_index(view: FeatureViewSpec, alias: str = "s") -> str:
    """The interval index of the spine's timestamp: where an aggregate view's windows end."""
    dialect = SNOWFLAKE
    return dialect.floor_div(dialect.epoch_us(f"{alias}.{SPINE_TS}"), interval_us(view))


def aggregate_points(view: FeatureViewSpec, spine: str) -> str:
    return f"(SELECT {key_list(view, 's.')}, {spine_index(view)} AS {IDX} FROM {spine} AS s)"


def aggregate_part(view: FeatureViewSpec, features: list[str], relation: str, spine: str, alias: str) -> Ctes:
    """For each spine row, the aggregates at its point: ``relation`` holds the roll-up at every
    distinct (entity, interval index) of the spine."""
    picked = ", ".join(f"v.{quote(f)}" for f in features)
    return [
        (
            alias,
            f"SELECT s.{ROW}, {picked}, NULL AS {FEATURE_TS} FROM {spine} AS s JOIN {relation} AS v "
            f"ON {keys_equal(view, 's', 'v')} AND v.{IDX} = {spine_index(view)}",
        )
    ]


def stream_aggregate_part(
    view: FeatureViewSpec, features: list[str], relation: str, spine: str, alias: str
) -> Ctes:
    """For each spine row, a stream view's aggregates at its time: ``relation`` holds them at every
    distinct (entity, time in microseconds, ``"__fp_at_us"``) of the spine (``snowflake_streams``)."""
    picked = ", ".join(f"v.{quote(f)}" for f in features)
    at = SNOWFLAKE.epoch_us(f"s.{SPINE_TS}")
    return [
        (
            alias,
            f"SELECT s.{ROW}, {picked}, NULL AS {FEATURE_TS} FROM {spine} AS s JOIN {relation} AS v "
            f"ON {keys_equal(view, 's', 'v')} AND v.{quote(AT)} = {at}",
        )
    ]


PART_BUILDERS = {"asof": asof_part, "window": window_part}


def point_in_time_sql(
    parts: list[tuple[RetrievalPart, str]], spine: str, method: str, prefix_features: bool = True
) -> str:
    """The training-set query: the spine's row number and each part's features (``<view>__<feature>``),
    point-in-time correct and within each view's ttl, in spine order. ``parts`` pairs each
    RetrievalPart with the relation holding its rows."""
    ctes: Ctes = []
    selects, joins = [], []
    for i, (part, relation) in enumerate(parts):
        alias = f"__fp_part_{i}"
        view = part.view
        if view.is_aggregate:
            builder = stream_aggregate_part if view.is_stream else aggregate_part
        else:
            builder = PART_BUILDERS[method]
        ctes += builder(view, part.features, relation, spine, alias)
        joins.append(f"LEFT JOIN {alias} ON {alias}.{ROW} = s.{ROW}")
        for feature in part.features:
            value = f"{alias}.{quote(feature)}"
            if view.ttl_seconds and not view.is_aggregate:
                value = (
                    f"CASE WHEN {alias}.{FEATURE_TS} > DATEADD(second, {-int(view.ttl_seconds)}, s.{SPINE_TS}) "
                    f"THEN {value} END"
                )
            out = f"{view.name}__{feature}" if prefix_features else feature
            selects.append(f"{value} AS {quote(out)}")
    with_clause = ("WITH " + ", ".join(f"{name} AS ({sql})" for name, sql in ctes) + " ") if ctes else ""
    return f"{with_clause}SELECT s.{ROW}, {', '.join(selects)} FROM {spine} AS s {' '.join(joins)} ORDER BY s.{ROW}"


def spine_table(spine: pd.DataFrame, timestamp_key: str, keys: dict[str, DataType]) -> pa.Table:
    """The spine as uploaded: its row number, its timestamp in naive UTC, and the join keys typed as the
    entities declare them."""
    import pandas as pd
    import pyarrow as pa

    from featureplane.types import to_arrow

    stamps = pd.to_datetime(spine[timestamp_key])
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    columns = {
        "__fp_row": pa.array(range(len(spine)), pa.int64()),
        "__fp_spine_ts": pa.array(stamps.astype("datetime64[us]"), pa.timestamp("us")),
    }
    for name, dtype in keys.items():
        values = spine[name].astype(object).where(spine[name].notna(), None)
        columns[name] = pa.array(values).cast(to_arrow(dtype))
    return pa.table(columns)
