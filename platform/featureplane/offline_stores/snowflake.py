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
as the local stand-in the tests use; their SQL is in ``snowflake_sql``). Only the joined result is
fetched.

An aggregate view's table holds its tiles and partition markers (see ``featureplane.compute.aggregation``); every
read of it is a roll-up that runs in Snowflake, in the SQL the aggregation module generates in
Snowflake's dialect: at the spine's points for training data (into a temporary table joined to the
spine), at the end of the latest materialized partition for the online store (only for the entities a
write can have changed), and at the times values change for ``get_features_in_range``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.compute.aggregation.dialects import SNOWFLAKE
from featureplane.compute.aggregation.rollup import (
    changed_keys_sql,
    features_in_range_sql,
    max_finite_window,
    online_rows_sql,
    online_rows_view,
    rollup_sql,
)
from featureplane.compute.aggregation.tiles import (
    interval_us,
    latest_materialized_sql,
    marker_condition,
)
from featureplane.compute.base import StagedResult, as_arrow
from featureplane.compute.snowflake.client import (
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
from featureplane.compute.snowflake.engine import SnowflakeStagedResult
from featureplane.config import ConfigError
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.base import OfflineStore, OnlineChanges, RetrievalPart, ties_order, to_pandas
from featureplane.offline_stores.event_log import log_table_view, plain_rows_sql
from featureplane.offline_stores.snowflake_sql import (
    JOIN_METHODS,
    KEEP_CHANGES,
    VERSION,
    aggregate_points,
    key_list,
    keys_equal,
    latest_order,
    point_in_time_sql,
    spine_table,
    store_fields,
    table_name,
    view_fields,
    where_clause,
    window_conditions,
)
from featureplane.offline_stores.snowflake_streams import logged_events, stream_ranges, stream_training_rows
from featureplane.types import DataType, Int64, Timestamp

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from featureplane.compute.base import Engine
    from featureplane.config import Config


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

    def accepts_staged_from(self, engine: Engine) -> bool:
        from featureplane.compute.snowflake.engine import SnowflakeEngine

        return isinstance(engine, SnowflakeEngine) and engine.settings == self.settings

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
        target, keys, this = self.relation(table_id), key_list(view), literal_string(table_id)
        columns = ", ".join(quote(n) for n, _ in fields)
        in_window = where_clause(window_conditions(quote(view.timestamp_field), *window)) if window else ""
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

    def delete_keys(self, table_id: str, view: FeatureViewSpec, keys: pa.Table) -> int:
        """One transaction: DELETE the rows joined to the keys (uploaded with write_pandas, so values are
        bound data, never SQL text), record them as touched by a new version (the online sync then
        sees them gone). Marker rows have null keys and join nothing."""
        if keys.num_rows == 0 or self.version(table_id) is None:
            return 0
        self._create(table_id, view)
        client = self.client
        source = client.upload(
            conform_arrow(keys, [(k.name, k.type) for k in view.join_keys]), client.temporary_name("DELETE")
        )
        target, names, this = self.relation(table_id), key_list(view), literal_string(table_id)
        matched = f"EXISTS (SELECT 1 FROM {source} AS k WHERE {keys_equal(view, 't', 'k')})"
        try:
            with client.transaction():
                (count,) = client.fetchall(f"SELECT COUNT(*) FROM {target} AS t WHERE {matched}")[0]
                if not count:
                    return 0
                client.execute(f"DELETE FROM {target} t USING {source} k WHERE {keys_equal(view, 't', 'k')}")
                (version,) = client.fetchall(
                    f"SELECT COALESCE(MAX({quote('version')}), 0) + 1 FROM {self._versions} "
                    f"WHERE {quote('table_id')} = {this}"
                )[0]
                version = int(version)
                client.execute(
                    f"INSERT INTO {self._changes(table_id)} ({names}, {VERSION}) "
                    f"SELECT {names}, {version} FROM {source}"
                )
                client.execute(
                    f"INSERT INTO {self._versions} SELECT {this}, {version}, NULL, NULL, 0, "
                    "CAST(CONVERT_TIMEZONE('UTC', CURRENT_TIMESTAMP()) AS TIMESTAMP_NTZ(6))"
                )
        finally:
            client.drop_quietly(source)
        return int(count)

    def drop(self, table_id: str) -> None:
        self._prepare()
        self.client.execute(f"DROP TABLE IF EXISTS {self.relation(table_id)}")
        self.client.execute(f"DROP TABLE IF EXISTS {self._changes(table_id)}")
        for metadata in (self._versions, self._watermarks):
            self.client.execute(
                f"DELETE FROM {metadata} WHERE {quote('table_id')} = {literal_string(table_id)}"
            )
        self._ready.discard(table_id)

    def delete_before(self, table_id: str, view: FeatureViewSpec, cutoff: datetime) -> int:
        """``offline_retention``: one DELETE of the rows before ``cutoff`` (an aggregate view keeps
        its partition markers). Compaction and vacuum have no equivalent to run: Snowflake
        re-clusters micro-partitions itself and keeps deleted data only for the table's
        time-travel retention (``DATA_RETENTION_TIME_IN_DAYS``)."""
        self._create(table_id, view)
        conditions = [f"{quote(view.timestamp_field)} < {literal_time(cutoff)}"]
        if view.is_aggregate:
            conditions.append(f"{quote(view.join_key_names[0])} IS NOT NULL")
        target = self.relation(table_id)
        with self.client.transaction():
            (count,) = self.client.fetchall(f"SELECT COUNT(*) FROM {target}{where_clause(conditions)}")[0]
            self.client.execute(f"DELETE FROM {target}{where_clause(conditions)}")
        return int(count)

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
        conditions = window_conditions(quote(view.timestamp_field), start, end)
        if view.is_aggregate:
            conditions.insert(0, f"NOT ({marker_condition(view)})")
        sql = f"SELECT {columns} FROM {self._rows(table_id, view)} AS t{where_clause(conditions)} ORDER BY {order}"
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
        keys = key_list(view)
        latest = f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {key_list(view, 't.')} ORDER BY {latest_order(view, 't.')}) = 1"
        current = self.version(table_id)
        if current is None:
            return OnlineChanges(upserts=iter(()), deletes=[])
        relation = self.relation(table_id)
        if before_version is None or before_version < current - KEEP_CHANGES:
            sql = f"SELECT {columns} FROM {relation} AS t {latest} ORDER BY {key_list(view, 't.')}"
            return OnlineChanges(upserts=self._batches(sql, fields, batch_size), deletes=[], complete=True)
        touched = (
            f"(SELECT DISTINCT {keys} FROM {self._changes(table_id)} WHERE {VERSION} > {int(before_version)})"
        )
        sql = (
            f"SELECT {columns} FROM {relation} AS t JOIN {touched} AS c ON {keys_equal(view, 't', 'c')} "
            f"{latest} ORDER BY {key_list(view, 't.')}"
        )
        gone = self.client.fetchall(
            f"SELECT {key_list(view, 'c.')} FROM {touched} AS c WHERE NOT EXISTS "
            f"(SELECT 1 FROM {relation} AS t WHERE {keys_equal(view, 't', 'c')}) ORDER BY {key_list(view, 'c.')}"
        )
        return OnlineChanges(upserts=self._batches(sql, fields, batch_size), deletes=[tuple(r) for r in gone])

    def _aggregate_online_changes(
        self, table_id: str, view: FeatureViewSpec, before_version: int | None, batch_size: int
    ) -> OnlineChanges:
        """Online rows as of the end of the latest materialized partition (``online_rows_sql``). The
        entities whose rows can differ from those the online store holds at ``before_version`` are the
        keys the writes since touched (written or removed tiles) and, when the end moved, those with
        tiles inside the longest window before the previous end (they enter or leave the stored
        window). Only their rows are computed and fetched, in Arrow batches; candidates without tiles
        left are deletes. Without a usable ``before_version``, every entity's rows."""
        dialect = SNOWFLAKE
        current = self.version(table_id)
        if current is None:
            return OnlineChanges(upserts=iter(()), deletes=[])
        relation = self.relation(table_id)
        (after,) = self.client.fetchall(latest_materialized_sql(view, relation, dialect))[0]
        if after is None:
            return OnlineChanges(upserts=iter(()), deletes=[])
        rows_fields = view_fields(online_rows_view(view))
        if before_version is None or before_version < current - KEEP_CHANGES:
            sql = online_rows_sql(view, relation, None, int(after), dialect)
            return OnlineChanges(
                upserts=self._batches(sql, rows_fields, batch_size), deletes=[], complete=True
            )
        (before_end,) = self.client.fetchall(
            f"SELECT MAX({quote('window_end')}) FROM {self._versions} WHERE {quote('table_id')} = "
            f"{literal_string(table_id)} AND {quote('version')} <= {int(before_version)}"
        )[0]
        keys = key_list(view)
        touched = (
            f"SELECT {keys}, TRUE AS __fp_touched FROM {self._changes(table_id)} "
            f"WHERE {VERSION} > {int(before_version)}"
        )
        parts = [touched]
        step = interval_us(view)
        before = None if before_end is None else _epoch_us(before_end) // step
        if before != int(after):
            since = None if before is None else (before - max_finite_window(view)) * step
            moved = changed_keys_sql(view, [relation], since, dialect)
            parts.append(f"SELECT {keys}, {'TRUE' if before is None else 'FALSE'} FROM ({moved}) AS m")
        candidates = quote(self.client.temporary_name("CANDIDATES"))
        not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in view.join_key_names)
        self.client.execute(
            f"CREATE TEMPORARY TABLE {candidates} AS SELECT {keys}, BOOLOR_AGG(__fp_touched) AS __fp_touched "
            f"FROM ({' UNION ALL '.join(parts)}) AS c WHERE {not_null} GROUP BY {keys}"
        )
        gone = self.client.fetchall(
            f"SELECT {key_list(view, 'c.')} FROM {candidates} AS c WHERE NOT EXISTS (SELECT 1 FROM {relation} "
            f"AS t WHERE {keys_equal(view, 't', 'c')}) ORDER BY {key_list(view, 'c.')}"
        )
        sql = online_rows_sql(view, relation, candidates, int(after), dialect)
        return OnlineChanges(
            upserts=self._batches(sql, rows_fields, batch_size, drop=candidates),
            deletes=[tuple(r) for r in gone],
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
                if part.view.is_stream:
                    log = self._rows(part.table_id, log_table_view(part.view))
                    sources.append((part, stream_training_rows(self.client, log, part, relation, uploaded)))
                    continue
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
                    rollup = rollup_sql(part.view, rows, points, part.features, SNOWFLAKE)
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
        if view.is_stream:  # from its event log
            temps: list[str] = []
            try:
                events = logged_events(self.client, self._rows(table_id, log_table_view(view)), view, temps)
                if not view.is_aggregate:
                    return self._plain_ranges(f"({plain_rows_sql(view, events)})", view, start, end)
                return to_pandas(stream_ranges(self.client, events, view, start, end, temps))
            finally:
                for name in temps:
                    self.client.drop_quietly(name)
        if view.is_aggregate:
            sql = features_in_range_sql(view, self._rows(table_id, view), start, end, SNOWFLAKE)
            fields = [*view_fields(view), ("_valid_from", Timestamp), ("_valid_to", Timestamp)]
            return to_pandas(conform_arrow(self.client.fetch_arrow(sql), fields))
        return self._plain_ranges(self._rows(table_id, view), view, start, end)

    def _plain_ranges(self, rows: str, view: FeatureViewSpec, start: datetime, end: datetime) -> pd.DataFrame:
        """A plain view's ``features_in_range`` over ``rows`` (join keys, timestamp, features)."""
        fields = store_fields(view)
        ts = quote(view.timestamp_field)
        ties = ties_order(view, quote)
        next_ts = f"LEAD({ts}) OVER (PARTITION BY {key_list(view)} ORDER BY {ts}{ties})"
        if view.ttl_seconds:
            expiry = f"DATEADD(second, {int(view.ttl_seconds)}, {ts})"
            valid_to = f"CASE WHEN {next_ts} IS NULL OR {next_ts} > {expiry} THEN {expiry} ELSE {next_ts} END"
        else:
            valid_to = next_ts
        columns = ", ".join(quote(n) for n, _ in fields)
        sql = (
            f"SELECT * FROM (SELECT {columns}, {ts} AS {quote('_valid_from')}, {valid_to} AS {quote('_valid_to')} "
            f"FROM {rows} AS t) WHERE {quote('_valid_from')} < {literal_time(end)} "
            f"AND ({quote('_valid_to')} IS NULL OR {quote('_valid_to')} > {literal_time(start)}) "
            f"ORDER BY {key_list(view)}, {quote('_valid_from')}{ties}"
        )
        fields += [("_valid_from", Timestamp), ("_valid_to", Timestamp)]
        return to_pandas(conform_arrow(self.client.fetch_arrow(sql), fields))


def _epoch_us(value: datetime) -> int:
    from datetime import timedelta

    return (value - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def _times_as_microseconds(tiles: pa.Table) -> pa.Table:
    """Tiles computed elsewhere (the DuckDB engine) keep the times of their last values as microseconds
    since 1970, as tiles computed in Snowflake do (``SnowflakeDialect``)."""
    import pyarrow as pa

    for i, field in enumerate(tiles.schema):
        if pa.types.is_list(field.type) and pa.types.is_timestamp(field.type.value_type):
            column = tiles.column(i).cast(pa.list_(pa.timestamp("us"))).cast(pa.list_(pa.int64()))
            tiles = tiles.set_column(i, pa.field(field.name, column.type), column)
    return tiles
