"""The production offline store: one Snowflake table per feature view generation.

Layout, all in the configured database and schema:

- ``<prefix><WS>__<VIEW>__G<N>_<HASH>``: the feature rows (join keys, timestamp, features), columns named
  exactly as the features (quoted identifiers).
- ``..._CHANGES``: the join keys each write touched (removed or written rows), by version, so the online
  store is updated for exactly those keys; only the last few versions are kept.
- ``<prefix>TABLE_VERSIONS``: one row per committed write (table, version, window, rows).
- ``<prefix>INGEST_WATERMARKS``: how much of each ingest log segment a table holds (pushed rows are
  appended with their watermarks in one transaction).

A window replace is one transaction: DELETE the window, INSERT the new rows (from the engine's staged
table when the engine runs in the same session, otherwise uploaded with ``write_pandas``), record the
touched keys and the new version. Reruns are idempotent; a killed write commits nothing.

Training data is computed in Snowflake: the spine is uploaded with ``write_pandas`` and the point-in-time
join runs there, as an ASOF JOIN (``point_in_time_join: asof``, the default) or as window functions over
the union of spine and feature rows (``point_in_time_join: window``, for engines without ASOF JOIN, such
as the local stand-in the tests use). Only the joined result is fetched.

An aggregate view's table holds its tiles and partition markers (see ``featureplane.aggregation``); every
read of it is a roll-up that runs in Snowflake, in the SQL the aggregation module generates in
Snowflake's dialect: at the spine's points for training data (into a temporary table joined to the
spine), at the end of the latest materialized partition for the online store (only for the entities a
write can have changed), and at the times values change for ``get_features_in_range``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane import aggregation
from featureplane.config import ConfigError
from featureplane.engines.base import StagedResult, as_arrow
from featureplane.engines.snowflake import SnowflakeStagedResult
from featureplane.offline_stores.base import OfflineStore, OnlineChanges, RetrievalPart, to_pandas
from featureplane.snowflake_client import (
    SnowflakeError,
    SnowflakeSettings,
    UsesSnowflake,
    conform_arrow,
    literal_string,
    literal_time,
    quote,
    sql_type,
    user_identifier,
)
from featureplane.specs import FeatureViewSpec
from featureplane.types import DataType, Int64, Timestamp

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from featureplane.config import Config

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
    return view_fields(aggregation.storage_view(view))


def _keys(view: FeatureViewSpec, alias: str = "") -> str:
    return ", ".join(f"{alias}{quote(k)}" for k in view.join_key_names)


def _keys_equal(view: FeatureViewSpec, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in view.join_key_names)


def _window(column: str, start: datetime | None, end: datetime | None) -> list[str]:
    conditions = []
    if start is not None:
        conditions.append(f"{column} >= {literal_time(start)}")
    if end is not None:
        conditions.append(f"{column} < {literal_time(end)}")
    return conditions


def _where(conditions: list[str]) -> str:
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
            f"MATCH_CONDITION (s.{SPINE_TS} >= p.{FEATURE_TS}) ON {_keys_equal(view, 's', 'p')}",
        )
    ]


def window_part(view: FeatureViewSpec, features: list[str], relation: str, spine: str, alias: str) -> Ctes:
    """The same rows as ``asof_part`` in standard SQL: feature rows are numbered per key in time order,
    spine and feature rows are merged into one stream per key (features first on equal timestamps), and
    a running maximum gives each spine row the number of its latest feature row."""
    keys = _keys(view)
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
            f"ON {_keys_equal(view, 'm', 'f')} AND f.__fp_seq = m.__fp_match WHERE m.__fp_side = 1",
        ),
    ]


def spine_index(view: FeatureViewSpec, alias: str = "s") -> str:
    """The interval index of the spine's timestamp: where an aggregate view's windows end."""
    dialect = aggregation.SNOWFLAKE
    return dialect.floor_div(dialect.epoch_us(f"{alias}.{SPINE_TS}"), aggregation.interval_us(view))


def aggregate_points(view: FeatureViewSpec, spine: str) -> str:
    return f"(SELECT {_keys(view, 's.')}, {spine_index(view)} AS {aggregation.IDX} FROM {spine} AS s)"


def aggregate_part(view: FeatureViewSpec, features: list[str], relation: str, spine: str, alias: str) -> Ctes:
    """For each spine row, the aggregates at its point: ``relation`` holds the roll-up at every
    distinct (entity, interval index) of the spine."""
    picked = ", ".join(f"v.{quote(f)}" for f in features)
    return [
        (
            alias,
            f"SELECT s.{ROW}, {picked}, NULL AS {FEATURE_TS} FROM {spine} AS s JOIN {relation} AS v "
            f"ON {_keys_equal(view, 's', 'v')} AND v.{aggregation.IDX} = {spine_index(view)}",
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
        builder = aggregate_part if view.is_aggregate else PART_BUILDERS[method]
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


# -- the store -------------------------------------------------------------------------------------


class SnowflakeOfflineStore(UsesSnowflake, OfflineStore):
    def __init__(self, config: Config) -> None:
        section = config.offline_store
        where = f"{config.path}: offline_store"
        try:
            if "account" in section:
                self.settings = SnowflakeSettings.from_section(section, where)
            elif config.engine.get("type") == "snowflake":
                # The engine's connection: one session, so staged results are copied in place.
                self.settings = SnowflakeSettings.from_section(config.engine, f"{config.path}: engine")
            else:
                raise SnowflakeError(
                    f"{where}: a Snowflake offline store needs connection settings (account, user, ...) "
                    "unless the engine is Snowflake too"
                )
        except SnowflakeError as exc:
            raise ConfigError(str(exc)) from None
        method = section.get("point_in_time_join", "asof")
        if method not in JOIN_METHODS:
            raise ConfigError(
                f"{where}: point_in_time_join must be one of {', '.join(JOIN_METHODS)}, got {method!r}"
            )
        self.method = method
        self.prefix = str(section.get("table_prefix", "FP_"))
        database = section.get("database") or self.settings.get("database")
        schema = section.get("schema") or self.settings.get("schema")
        # Where the tables live: database.schema (without a schema, the session's current schema).
        self.location = ".".join(user_identifier(str(p)) for p in (database, schema) if p) if schema else ""
        self._prepared = False
        self._ready: set[str] = set()

    def __repr__(self) -> str:
        return f"SnowflakeOfflineStore({self.location or 'default schema'}, {self.settings!r})"

    def close(self) -> None:
        self.release()

    def describe(self) -> dict[str, Any]:
        return {"type": "snowflake", "location": self.location, **self.settings.describe()}

    def _name(self, name: str) -> str:
        return f"{self.location}.{quote(name)}" if self.location else quote(name)

    def relation(self, table_id: str) -> str:
        return self._name(table_name(table_id, self.prefix))

    def _changes(self, table_id: str) -> str:
        return self._name(table_name(table_id, self.prefix) + "_CHANGES")

    @property
    def _versions(self) -> str:
        return self._name(f"{self.prefix}TABLE_VERSIONS")

    @property
    def _watermarks(self) -> str:
        return self._name(f"{self.prefix}INGEST_WATERMARKS")

    def _prepare(self) -> None:
        if self._prepared:
            return
        if self.location:
            try:
                self.client.execute(f"CREATE SCHEMA IF NOT EXISTS {self.location}")
            except SnowflakeError:
                pass  # no privilege to create it; it must exist already (the next statement says so)
        self.client.execute(
            f"CREATE TABLE IF NOT EXISTS {self._versions} ({quote('table_id')} VARCHAR, "
            f"{quote('version')} NUMBER(38,0), {quote('window_start')} TIMESTAMP_NTZ(6), "
            f"{quote('window_end')} TIMESTAMP_NTZ(6), {quote('rows')} NUMBER(38,0), "
            f"{quote('written_at')} TIMESTAMP_NTZ(6))"
        )
        self.client.execute(
            f"CREATE TABLE IF NOT EXISTS {self._watermarks} ({quote('table_id')} VARCHAR, "
            f"{quote('segment')} VARCHAR, {quote('bytes')} NUMBER(38,0))"
        )
        self._prepared = True

    def _create(self, table_id: str, view: FeatureViewSpec) -> None:
        if table_id in self._ready:
            return
        self._prepare()
        columns = ", ".join(f"{quote(n)} {sql_type(t)}" for n, t in store_fields(view))
        keys = ", ".join(f"{quote(k.name)} {sql_type(k.type)}" for k in view.join_keys)
        self.client.execute(f"CREATE TABLE IF NOT EXISTS {self.relation(table_id)} ({columns})")
        self.client.execute(
            f"CREATE TABLE IF NOT EXISTS {self._changes(table_id)} ({keys}, {VERSION} NUMBER(38,0))"
        )
        self._ready.add(table_id)

    def version(self, table_id: str) -> int | None:
        self._prepare()
        (value,) = self.client.fetchall(
            f"SELECT MAX({quote('version')}) FROM {self._versions} WHERE {quote('table_id')} = {literal_string(table_id)}"
        )[0]
        return None if value is None else int(value)

    # -- writes ----------------------------------------------------------------------------------

    def write_window(
        self,
        table_id: str,
        view: FeatureViewSpec,
        start: datetime,
        end: datetime,
        data: pa.Table | StagedResult,
    ) -> int:
        return self._commit(table_id, view, data, (start, end), {})

    def ingest_watermarks(self, table_id: str, segments: list[str]) -> dict[str, int]:
        """How many bytes of each ingest log segment are already in the table (0 when none are)."""
        marks = dict.fromkeys(segments, 0)
        if segments:
            self._prepare()
            names = ", ".join(literal_string(s) for s in segments)
            rows = self.client.fetchall(
                f"SELECT {quote('segment')}, {quote('bytes')} FROM {self._watermarks} "
                f"WHERE {quote('table_id')} = {literal_string(table_id)} AND {quote('segment')} IN ({names})"
            )
            marks.update({segment: int(value) for segment, value in rows})
        return marks

    def append_ingested(
        self, table_id: str, view: FeatureViewSpec, data: pa.Table, watermarks: dict[str, int]
    ) -> int:
        """Append pushed rows (uploaded with write_pandas) and advance the segments' watermarks in the
        same transaction, so each part of the ingest log lands exactly once."""
        return self._commit(table_id, view, data, None, watermarks)

    def _commit(
        self,
        table_id: str,
        view: FeatureViewSpec,
        data: pa.Table | StagedResult,
        window: tuple[datetime, datetime] | None,
        watermarks: dict[str, int],
    ) -> int:
        """One transaction: replace ``window`` (or append), record the touched keys and a new version,
        advance ingest watermarks. Returns the version."""
        self._create(table_id, view)
        client = self.client
        fields = store_fields(view)
        if isinstance(data, SnowflakeStagedResult) and data.client is client:
            source = data.relation
        else:
            rows = conform_arrow(as_arrow(data), fields)
            if view.is_aggregate:
                rows = _times_as_microseconds(rows)
            source = client.upload(rows, client.temporary_name("WRITE"))
        touched = quote(client.temporary_name("KEYS"))
        keys_ddl = ", ".join(f"{quote(k.name)} {sql_type(k.type)}" for k in view.join_keys)
        client.execute(f"CREATE TEMPORARY TABLE {touched} ({keys_ddl})")
        target, keys, this = self.relation(table_id), _keys(view), literal_string(table_id)
        columns = ", ".join(quote(n) for n, _ in fields)
        in_window = _where(_window(quote(view.timestamp_field), *window)) if window else ""
        try:
            with client.transaction():
                if window:
                    client.execute(f"INSERT INTO {touched} SELECT DISTINCT {keys} FROM {target}{in_window}")
                    # DELETE takes the table's write lock: writers of this view serialise from here on.
                    client.execute(f"DELETE FROM {target}{in_window}")
                client.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {source}{in_window}")
                (version,) = client.fetchall(
                    f"SELECT COALESCE(MAX({quote('version')}), 0) + 1 FROM {self._versions} "
                    f"WHERE {quote('table_id')} = {this}"
                )[0]
                version = int(version)
                client.execute(
                    f"INSERT INTO {self._changes(table_id)} ({keys}, {VERSION}) SELECT {keys}, {version} FROM "
                    f"(SELECT {keys} FROM {touched} UNION SELECT {keys} FROM {source}{in_window})"
                )
                client.execute(
                    f"DELETE FROM {self._changes(table_id)} WHERE {VERSION} <= {version - KEEP_CHANGES}"
                )
                (rows,) = client.fetchall(f"SELECT COUNT(*) FROM {source}{in_window}")[0]
                bounds = [literal_time(t) for t in window] if window else ["NULL", "NULL"]
                client.execute(
                    f"INSERT INTO {self._versions} SELECT {this}, {version}, {bounds[0]}, {bounds[1]}, "
                    f"{int(rows)}, CAST(CONVERT_TIMEZONE('UTC', CURRENT_TIMESTAMP()) AS TIMESTAMP_NTZ(6))"
                )
                for segment, value in sorted(watermarks.items()):
                    where = f"{quote('table_id')} = {this} AND {quote('segment')} = {literal_string(segment)}"
                    client.execute(f"DELETE FROM {self._watermarks} WHERE {where}")
                    client.execute(
                        f"INSERT INTO {self._watermarks} SELECT {this}, {literal_string(segment)}, {int(value)}"
                    )
        finally:
            client.drop_quietly(touched)
            client.drop_quietly(source)
        return version

    def drop(self, table_id: str) -> None:
        self._prepare()
        self.client.execute(f"DROP TABLE IF EXISTS {self.relation(table_id)}")
        self.client.execute(f"DROP TABLE IF EXISTS {self._changes(table_id)}")
        for metadata in (self._versions, self._watermarks):
            self.client.execute(
                f"DELETE FROM {metadata} WHERE {quote('table_id')} = {literal_string(table_id)}"
            )
        self._ready.discard(table_id)

    # -- reads -----------------------------------------------------------------------------------

    def _rows(self, table_id: str, view: FeatureViewSpec) -> str:
        """The view's stored rows (an aggregate view's tiles and markers), or an empty relation of the
        right shape if nothing was written."""
        if self.version(table_id) is not None:
            return self.relation(table_id)
        nulls = ", ".join(f"CAST(NULL AS {sql_type(t)}) AS {quote(n)}" for n, t in store_fields(view))
        return f"(SELECT {nulls} WHERE 1 = 0)"

    def read(
        self, table_id: str, view: FeatureViewSpec, start: datetime | None = None, end: datetime | None = None
    ) -> pa.Table:
        """The stored rows (an aggregate view's tiles, without its partition markers)."""
        fields = store_fields(view)
        columns = ", ".join(quote(n) for n, _ in fields)
        order = ", ".join(quote(n) for n in [*view.join_key_names, view.timestamp_field])
        conditions = _window(quote(view.timestamp_field), start, end)
        if view.is_aggregate:
            conditions.insert(0, f"NOT ({aggregation.marker_condition(view)})")
        sql = f"SELECT {columns} FROM {self._rows(table_id, view)} AS t{_where(conditions)} ORDER BY {order}"
        return conform_arrow(self.client.fetch_arrow(sql), fields)

    def online_changes(
        self,
        table_id: str,
        view: FeatureViewSpec,
        before_version: int | None,
        start: datetime | None,
        end: datetime | None,
        batch_size: int = 50_000,
    ) -> OnlineChanges:
        """Latest rows per key, deduplicated in Snowflake and streamed in Arrow batches: only one row
        per key leaves Snowflake, and only a few result chunks are in memory at a time.

        With ``before_version``, the keys are those the writes after it touched (removed or written);
        keys left without rows are deletes. Without it, every key."""
        if view.is_aggregate:
            return self._aggregate_online_changes(table_id, view, before_version, batch_size)
        fields = store_fields(view)
        columns = ", ".join(f"t.{quote(n)}" for n, _ in fields)
        keys = _keys(view)
        latest = f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {_keys(view, 't.')} ORDER BY {latest_order(view, 't.')}) = 1"
        current = self.version(table_id)
        if current is None:
            return OnlineChanges(upserts=iter(()), deletes=[])
        relation = self.relation(table_id)
        if before_version is None or before_version < current - KEEP_CHANGES:
            sql = f"SELECT {columns} FROM {relation} AS t {latest} ORDER BY {_keys(view, 't.')}"
            return OnlineChanges(upserts=self._batches(sql, fields, batch_size), deletes=[])
        touched = (
            f"(SELECT DISTINCT {keys} FROM {self._changes(table_id)} WHERE {VERSION} > {int(before_version)})"
        )
        sql = (
            f"SELECT {columns} FROM {relation} AS t JOIN {touched} AS c ON {_keys_equal(view, 't', 'c')} "
            f"{latest} ORDER BY {_keys(view, 't.')}"
        )
        gone = self.client.fetchall(
            f"SELECT {_keys(view, 'c.')} FROM {touched} AS c WHERE NOT EXISTS "
            f"(SELECT 1 FROM {relation} AS t WHERE {_keys_equal(view, 't', 'c')}) ORDER BY {_keys(view, 'c.')}"
        )
        return OnlineChanges(upserts=self._batches(sql, fields, batch_size), deletes=[tuple(r) for r in gone])

    def _aggregate_online_changes(
        self, table_id: str, view: FeatureViewSpec, before_version: int | None, batch_size: int
    ) -> OnlineChanges:
        """Aggregates are current as of the end of the latest materialized partition. The entities whose
        values can differ from those the online store holds at ``before_version`` are the keys the
        writes since touched (written or removed tiles) and, when the end moved, those with tiles inside
        the longest window before the previous end (old events leave windows as the end moves). Only
        their current values are computed and fetched, in Arrow batches; candidates without tiles left
        are deletes. Without a usable ``before_version``, every entity's values."""
        dialect = aggregation.SNOWFLAKE
        current = self.version(table_id)
        if current is None:
            return OnlineChanges(upserts=iter(()), deletes=[])
        relation = self.relation(table_id)
        (after,) = self.client.fetchall(aggregation.latest_materialized_sql(view, relation, dialect))[0]
        if after is None:
            return OnlineChanges(upserts=iter(()), deletes=[])
        fields = view_fields(view)
        if before_version is None or before_version < current - KEEP_CHANGES:
            sql = aggregation.projection_sql(view, relation, None, int(after), dialect)
            sql += f" ORDER BY {_keys(view, 'r.')}"
            return OnlineChanges(upserts=self._batches(sql, fields, batch_size), deletes=[])
        (before_end,) = self.client.fetchall(
            f"SELECT MAX({quote('window_end')}) FROM {self._versions} WHERE {quote('table_id')} = "
            f"{literal_string(table_id)} AND {quote('version')} <= {int(before_version)}"
        )[0]
        keys = _keys(view)
        touched = (
            f"SELECT {keys}, TRUE AS __fp_touched FROM {self._changes(table_id)} "
            f"WHERE {VERSION} > {int(before_version)}"
        )
        parts = [touched]
        step = aggregation.interval_us(view)
        before = None if before_end is None else _epoch_us(before_end) // step
        if before != int(after):
            since = None if before is None else (before - aggregation.max_finite_window(view)) * step
            moved = aggregation.changed_keys_sql(view, [relation], since, dialect)
            parts.append(f"SELECT {keys}, {'TRUE' if before is None else 'FALSE'} FROM ({moved}) AS m")
        candidates = quote(self.client.temporary_name("CANDIDATES"))
        not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in view.join_key_names)
        self.client.execute(
            f"CREATE TEMPORARY TABLE {candidates} AS SELECT {keys}, BOOLOR_AGG(__fp_touched) AS __fp_touched "
            f"FROM ({' UNION ALL '.join(parts)}) AS c WHERE {not_null} GROUP BY {keys}"
        )
        gone = self.client.fetchall(
            f"SELECT {_keys(view, 'c.')} FROM {candidates} AS c WHERE NOT EXISTS (SELECT 1 FROM {relation} "
            f"AS t WHERE {_keys_equal(view, 't', 'c')}) ORDER BY {_keys(view, 'c.')}"
        )
        # Entities whose tiles were rewritten are written again; the others (their tiles unchanged, only
        # the end moved) only when their values now differ from those at the previous end.
        now = aggregation.projection_sql(view, relation, candidates, int(after), dialect)
        sql = f"SELECT a.* FROM ({now}) AS a JOIN {candidates} AS c ON {_keys_equal(view, 'a', 'c')}"
        if before is not None:
            then = aggregation.projection_sql(view, relation, candidates, before, dialect)
            differs = " OR ".join(
                f"a.{quote(f.name)} IS DISTINCT FROM b.{quote(f.name)}" for f in view.features
            )
            sql += (
                f" LEFT JOIN ({then}) AS b ON {_keys_equal(view, 'a', 'b')} "
                f"WHERE c.__fp_touched OR b.{quote(view.join_key_names[0])} IS NULL OR {differs}"
            )
        sql += f" ORDER BY {_keys(view, 'a.')}"
        return OnlineChanges(
            upserts=self._batches(sql, fields, batch_size, drop=candidates), deletes=[tuple(r) for r in gone]
        )

    def _batches(
        self, sql: str, fields: list[tuple[str, DataType]], batch_size: int, drop: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        try:
            for chunk in self.client.fetch_arrow_batches(sql):
                yield from conform_arrow(chunk, fields).to_batches(max_chunksize=batch_size)
        finally:
            if drop is not None:
                self.client.drop_quietly(drop)

    # -- training data ---------------------------------------------------------------------------

    def _upload_spine(self, spine: pd.DataFrame, timestamp_key: str, parts: list[RetrievalPart]) -> str:
        table = spine_table(spine, timestamp_key, {k.name: k.type for p in parts for k in p.view.join_keys})
        return self.client.upload(table, self.client.temporary_name("SPINE"))

    def get_historical_features(
        self,
        spine: pd.DataFrame,
        timestamp_key: str,
        parts: list[RetrievalPart],
        *,
        prefix_features: bool = True,
    ) -> pd.DataFrame:
        import pandas as pd

        relation = self._upload_spine(spine, timestamp_key, parts)
        uploaded: list[str] = []
        try:
            sources = []
            for part in parts:
                if part.data is None:
                    rows = self._rows(part.table_id, part.view)
                else:
                    # Rows computed from the sources (from_source=True) are joined where the spine is.
                    rows = self.client.upload(as_arrow(part.data), self.client.temporary_name("ROWS"))
                    uploaded.append(rows)
                if part.view.is_aggregate:
                    # The roll-up at the spine's distinct points, kept in Snowflake for the join.
                    values = quote(self.client.temporary_name("ROLLUP"))
                    points = aggregate_points(part.view, relation)
                    rollup = aggregation.rollup_sql(
                        part.view, rows, points, part.features, aggregation.SNOWFLAKE
                    )
                    self.client.execute(f"CREATE TEMPORARY TABLE {values} AS {rollup}")
                    uploaded.append(values)
                    rows = values
                sources.append((part, rows))
            sql = point_in_time_sql(sources, relation, self.method, prefix_features)
            fields: list[tuple[str, DataType]] = [("__fp_row", Int64)]
            for part in parts:
                fields += [
                    (f"{part.view.name}__{f}" if prefix_features else f, part.view.feature(f).type)
                    for f in part.features
                ]
            table = conform_arrow(self.client.fetch_arrow(sql), fields)
        finally:
            for name in (relation, *uploaded):
                self.client.drop_quietly(name)
        features = to_pandas(table.drop_columns(["__fp_row"]))
        result = pd.concat([spine.reset_index(drop=True), features], axis=1)
        result.index = spine.index
        return result

    def features_in_range(
        self, table_id: str, view: FeatureViewSpec, start: datetime, end: datetime
    ) -> pd.DataFrame:
        if view.is_aggregate:
            sql = aggregation.features_in_range_sql(
                view, self._rows(table_id, view), start, end, aggregation.SNOWFLAKE
            )
            fields = [*view_fields(view), ("_valid_from", Timestamp), ("_valid_to", Timestamp)]
            return to_pandas(conform_arrow(self.client.fetch_arrow(sql), fields))
        fields = store_fields(view)
        ts = quote(view.timestamp_field)
        next_ts = f"LEAD({ts}) OVER (PARTITION BY {_keys(view)} ORDER BY {ts})"
        if view.ttl_seconds:
            expiry = f"DATEADD(second, {int(view.ttl_seconds)}, {ts})"
            valid_to = f"CASE WHEN {next_ts} IS NULL OR {next_ts} > {expiry} THEN {expiry} ELSE {next_ts} END"
        else:
            valid_to = next_ts
        columns = ", ".join(quote(n) for n, _ in fields)
        sql = (
            f"SELECT * FROM (SELECT {columns}, {ts} AS {quote('_valid_from')}, {valid_to} AS {quote('_valid_to')} "
            f"FROM {self._rows(table_id, view)} AS t) WHERE {quote('_valid_from')} < {literal_time(end)} "
            f"AND ({quote('_valid_to')} IS NULL OR {quote('_valid_to')} > {literal_time(start)}) "
            f"ORDER BY {_keys(view)}, {quote('_valid_from')}"
        )
        fields += [("_valid_from", Timestamp), ("_valid_to", Timestamp)]
        return to_pandas(conform_arrow(self.client.fetch_arrow(sql), fields))


def _epoch_us(value: datetime) -> int:
    from datetime import timedelta

    return (value - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def _times_as_microseconds(tiles: pa.Table) -> pa.Table:
    """Tiles computed elsewhere (the DuckDB engine) keep the times of their last values as microseconds
    since 1970, as tiles computed in Snowflake do (``aggregation.SnowflakeDialect``)."""
    import pyarrow as pa

    for i, field in enumerate(tiles.schema):
        if pa.types.is_list(field.type) and pa.types.is_timestamp(field.type.value_type):
            column = tiles.column(i).cast(pa.list_(pa.timestamp("us"))).cast(pa.list_(pa.int64()))
            tiles = tiles.set_column(i, pa.field(field.name, column.type), column)
    return tiles
