"""The embedded offline store: one Delta Lake table per feature view on local disk.

Tables are partitioned by time buckets (``_partition``: the month, yyyymm, for views scheduled daily or
slower; the day, yyyymmdd, for views scheduled more often), so a window replace rewrites only the files
of the buckets it touches and a year's backfill writes a dozen partitions rather than hundreds. Each
window replace is one Delta commit (``overwrite`` with a predicate). Reads go through Arrow into DuckDB,
which also runs the point-in-time join (ASOF JOIN).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.compute.aggregation.dialects import DUCKDB, IDX
from featureplane.compute.aggregation.rollup import (
    changed_keys_sql,
    features_in_range_sql,
    max_finite_window,
    online_rows_sql,
    rollup_sql,
)
from featureplane.compute.aggregation.tiles import (
    interval_us,
    latest_materialized_sql,
    marker_condition,
    storage_view,
)
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.base import (
    OfflineStore,
    OnlineChanges,
    RetrievalPart,
    TableStats,
    latest_row_clause,
    ties_order,
    to_pandas,
)
from featureplane.offline_stores.delta_partitions import (
    PARTITION_COLUMN,
    bucket,
    create_table_streamed,
    partitioned_reader,
    writer_properties,
)
from featureplane.offline_stores.delta_partitions import with_partition as with_partition
from featureplane.offline_stores.delta_streams import stream_aggregate_join, stream_ranges
from featureplane.offline_stores.event_log import (
    deduped_events_sql,
    event_schema,
    handover_path,
    plain_rows_sql,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    from featureplane.compute.base import StagedResult
    from featureplane.config import Config

ROW_COLUMN = "__fp_row"
SPINE_TS = "__fp_spine_ts"


def q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def ts_literal(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def _duck(settings: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    import duckdb

    from featureplane.compute.duckdb import apply_duckdb_settings

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'").fetchall()
    apply_duckdb_settings(con, settings or {})
    return con


class DeltaOfflineStore(OfflineStore):
    def __init__(self, config: Config | None = None, path: str | Path | None = None) -> None:
        self.root = Path(path) if path is not None else config.offline_path  # type: ignore[union-attr]
        # The DuckDB engine's limits (engine.memory_limit, engine.threads) bound this store's queries too.
        self.duckdb_settings: dict[str, str] = {}
        if config is not None and config.engine.get("type", "duckdb") == "duckdb":
            from featureplane.compute.duckdb import duckdb_settings

            self.duckdb_settings = duckdb_settings(config)

    def path(self, table_id: str) -> Path:
        return self.root / table_id

    def _table(self, table_id: str, version: int | None = None) -> Any:
        from deltalake import DeltaTable

        path = self.path(table_id)
        if not DeltaTable.is_deltatable(str(path)):
            return None
        return DeltaTable(str(path), version=version) if version is not None else DeltaTable(str(path))

    def version(self, table_id: str) -> int | None:
        table = self._table(table_id)
        return None if table is None else table.version()

    def describe(self) -> dict[str, Any]:
        return {"type": "delta", "path": str(self.root)}

    # -- writes ----------------------------------------------------------------------------------

    def write_window(
        self,
        table_id: str,
        view: FeatureViewSpec,
        start: datetime,
        end: datetime,
        data: pa.Table | StagedResult,
    ) -> int:
        """Staged rows (``StagedResult``) are written as they stream out of the stage, never held whole."""
        from deltalake import write_deltalake

        from featureplane.compute.base import StagedResult

        ts = view.timestamp_field
        path = self.path(table_id)
        if self._table(table_id) is None and isinstance(data, StagedResult):
            create_table_streamed(path, partitioned_reader(data, view))
        elif self._table(table_id) is None:
            path.mkdir(parents=True, exist_ok=True)
            write_deltalake(
                str(path),
                partitioned_reader(data, view),
                mode="overwrite",
                partition_by=[PARTITION_COLUMN],
                writer_properties=writer_properties(),
            )
        else:
            first, last = bucket(view, start), bucket(view, end - timedelta(microseconds=1))
            predicate = (
                f"{PARTITION_COLUMN} >= {first} AND {PARTITION_COLUMN} <= {last} "
                f"AND {ts} >= '{start.isoformat()}' AND {ts} < '{end.isoformat()}'"
            )
            # As a stream of batches: the writer then holds a file's worth of rows, not a second copy.
            write_deltalake(
                str(path),
                partitioned_reader(data, view),
                mode="overwrite",
                predicate=predicate,
                partition_by=[PARTITION_COLUMN],
                writer_properties=writer_properties(),
            )
        return self._table(table_id).version()

    def ingest_watermarks(self, table_id: str, segments: list[str]) -> dict[str, int]:
        table = self._table(table_id)
        if table is None:
            return dict.fromkeys(segments, 0)
        return {s: table.transaction_version(_ingest_app_id(s)) or 0 for s in segments}

    def append_ingested(
        self, table_id: str, view: FeatureViewSpec, data: pa.Table, watermarks: dict[str, int]
    ) -> int:
        from deltalake import CommitProperties, Transaction, write_deltalake

        path = self.path(table_id)
        path.mkdir(parents=True, exist_ok=True)
        write_deltalake(
            str(path),
            with_partition(data, view),
            mode="append",
            partition_by=[PARTITION_COLUMN],
            commit_properties=CommitProperties(
                app_transactions=[Transaction(_ingest_app_id(s), v) for s, v in sorted(watermarks.items())]
            ),
        )
        return self._table(table_id).version()

    def delete_keys(self, table_id: str, view: FeatureViewSpec, keys: pa.Table) -> int:
        """One MERGE ... WHEN MATCHED DELETE with the keys as its source: the values travel as Arrow
        data, never as text in a predicate. Marker rows (null keys) match no key."""
        table = self._table(table_id)
        if table is None or keys.num_rows == 0:
            return 0
        on = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in view.join_key_names)
        metrics = (
            table.merge(keys, on, source_alias="s", target_alias="t", streamed_exec=False)
            .when_matched_delete()
            .execute()
        )
        return int(metrics.get("num_target_rows_deleted", 0))

    # -- maintenance (featureplane.offline_stores.delta_maintenance) -----------------------------

    def table_stats(self, table_id: str) -> TableStats | None:
        from featureplane.offline_stores import delta_maintenance

        table = self._table(table_id)
        return None if table is None else delta_maintenance.table_stats(table)

    def compact(self, table_id: str, view: FeatureViewSpec, *, z_order: bool = False) -> dict[str, Any]:
        from featureplane.offline_stores import delta_maintenance

        table = self._table(table_id)
        return {} if table is None else delta_maintenance.compact(table, view, z_order=z_order)

    def vacuum(self, table_id: str, *, retention_hours: int, dry_run: bool = False) -> list[str]:
        from featureplane.offline_stores import delta_maintenance

        table = self._table(table_id)
        if table is None:
            return []
        return delta_maintenance.vacuum(table, retention_hours=retention_hours, dry_run=dry_run)

    def delete_before(self, table_id: str, view: FeatureViewSpec, cutoff: datetime) -> int:
        from featureplane.offline_stores import delta_maintenance

        table = self._table(table_id)
        if table is None:
            return 0
        return delta_maintenance.delete_before(table, view, cutoff, bucket(view, cutoff))

    def drop(self, table_id: str) -> None:
        import shutil

        shutil.rmtree(self.path(table_id), ignore_errors=True)
        handover = handover_path(self.path(table_id))  # a stream view's hand-over state
        handover.unlink(missing_ok=True)
        handover.with_suffix(".lock").unlink(missing_ok=True)

    def drop_workspace(self, workspace: str, table_ids: list[str]) -> None:
        import shutil

        shutil.rmtree(self.root / workspace, ignore_errors=True)

    # -- reads -----------------------------------------------------------------------------------

    def _register(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        table_id: str,
        view: FeatureViewSpec,
        version: int | None = None,
    ) -> bool:
        """Expose the table to DuckDB as ``name`` (an empty relation of the right shape if absent)."""
        table = self._table(table_id, version)
        if table is None:
            con.register(name, self._empty(storage_view(view)))
            return False
        con.register(name, table.to_pyarrow_dataset())
        return True

    @staticmethod
    def _empty(view: FeatureViewSpec) -> pa.Table:
        import pyarrow as pa

        from featureplane.types import Timestamp, to_arrow

        fields = [pa.field(k.name, to_arrow(k.type)) for k in view.join_keys]
        fields.append(pa.field(view.timestamp_field, to_arrow(Timestamp)))
        fields += [pa.field(f.name, to_arrow(f.type)) for f in view.features]
        return pa.Table.from_pylist([], schema=pa.schema(fields))

    def columns(self, view: FeatureViewSpec) -> list[str]:
        stored = storage_view(view)
        return [*stored.join_key_names, stored.timestamp_field, *stored.feature_names]

    def read(
        self, table_id: str, view: FeatureViewSpec, start: datetime | None = None, end: datetime | None = None
    ) -> pa.Table:
        """The stored rows (an aggregate view's tiles, without its partition markers)."""
        con = _duck(self.duckdb_settings)
        self._register(con, "t", table_id, view)
        ts = q(view.timestamp_field)
        where = [f"NOT ({marker_condition(view)})"] if view.is_aggregate else []
        if start is not None:
            where.append(f"{ts} >= {ts_literal(start)}")
        if end is not None:
            where.append(f"{ts} < {ts_literal(end)}")
        sql = f"SELECT {', '.join(q(c) for c in self.columns(view))} FROM t"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join(q(c) for c in [*view.join_key_names, view.timestamp_field])
        return con.sql(sql).to_arrow_table()

    def online_changes(
        self,
        table_id: str,
        view: FeatureViewSpec,
        before_version: int | None,
        start: datetime | None,
        end: datetime | None,
        batch_size: int = 50_000,
    ) -> OnlineChanges:
        """Latest rows that changed because ``[start, end)`` was replaced, reading only that window in
        both versions and the buckets after it; the whole table only for a full sync.

        A key's latest row is unchanged if it has a row after the window. Otherwise its new latest row is
        its latest row in the new window, or, if the window lost all its rows, its latest row before the
        window (or none: the key is deleted)."""
        con = _duck(self.duckdb_settings)
        if view.is_aggregate:
            return self._aggregate_online_changes(con, table_id, view, before_version, start, batch_size)
        self._register(con, "after_t", table_id, view)
        keys = ", ".join(q(k) for k in view.join_key_names)
        columns = ", ".join(q(c) for c in self.columns(view))
        latest = self._latest_clause(view)
        if before_version is None or start is None or end is None:
            sql = f"SELECT {columns} FROM after_t {latest} ORDER BY {keys}"
            return OnlineChanges(upserts=_batches(con, sql, batch_size), deletes=[], complete=True)
        self._register(con, "before_t", table_id, view, before_version)
        ts = q(view.timestamp_field)
        first, last = bucket(view, start), bucket(view, end - timedelta(microseconds=1))
        in_window = f"{PARTITION_COLUMN} BETWEEN {first} AND {last} AND {ts} >= {ts_literal(start)} AND {ts} < {ts_literal(end)}"
        after_window = f"{PARTITION_COLUMN} >= {bucket(view, end)} AND {ts} >= {ts_literal(end)}"
        con.execute(
            f"CREATE TEMP TABLE later AS SELECT DISTINCT {keys} FROM after_t WHERE {after_window}"
        ).fetchall()
        for name, source in (("new_w", "after_t"), ("old_w", "before_t")):
            con.execute(
                f"CREATE TEMP TABLE {name} AS SELECT {columns} FROM {source} WHERE {in_window} "
                f"AND NOT EXISTS (SELECT 1 FROM later WHERE {_match('later', source, view)}) {latest}"
            ).fetchall()
        # Keys whose window rows all disappeared fall back to their latest row before the window.
        con.execute(
            f"CREATE TEMP TABLE lost AS SELECT {keys} FROM old_w ANTI JOIN new_w USING ({keys})"
        ).fetchall()
        con.execute(
            f"CREATE TEMP TABLE fallback AS SELECT {columns} FROM after_t SEMI JOIN lost USING ({keys}) "
            f"WHERE {PARTITION_COLUMN} <= {first} AND {ts} < {ts_literal(start)} {latest}"
        ).fetchall()
        deletes = con.sql(
            f"SELECT {keys} FROM lost ANTI JOIN fallback USING ({keys}) ORDER BY {keys}"
        ).fetchall()
        differs = " OR ".join(
            f"n.{q(c)} IS DISTINCT FROM o.{q(c)}" for c in [view.timestamp_field, *view.feature_names]
        )
        join_on = " AND ".join(f"n.{q(k)} = o.{q(k)}" for k in view.join_key_names)
        missing = " AND ".join(f"o.{q(k)} IS NULL" for k in view.join_key_names)
        sql = (
            f"SELECT {', '.join('n.' + q(c) for c in self.columns(view))} FROM new_w AS n LEFT JOIN old_w AS o "
            f"ON {join_on} WHERE ({missing}) OR {differs} "
            f"UNION ALL SELECT {columns} FROM fallback ORDER BY {keys}"
        )
        return OnlineChanges(upserts=_batches(con, sql, batch_size), deletes=[tuple(r) for r in deletes])

    @staticmethod
    def _latest_clause(view: FeatureViewSpec) -> str:
        return latest_row_clause(view, q)

    def _aggregate_online_changes(
        self,
        con: duckdb.DuckDBPyConnection,
        table_id: str,
        view: FeatureViewSpec,
        before_version: int | None,
        start: datetime | None,
        batch_size: int,
    ) -> OnlineChanges:
        """Online rows as of the end of the latest materialized partition (``online_rows_sql``). An
        entity's row can differ from the one written at the previous version only if its tiles in the
        rewritten window changed or, when the end moved, if it has tiles inside the longest window
        before the previous end (they enter or leave the stored window): only those are written."""
        self._register(con, "after_t", table_id, view)
        after = _latest(con, view, "after_t")
        before = None
        if before_version is not None:
            self._register(con, "before_t", table_id, view, before_version)
            before = _latest(con, view, "before_t")
        if after is None:
            con.close()
            return OnlineChanges(upserts=iter(()), deletes=[], complete=True)
        if before is None:
            sql = online_rows_sql(view, "after_t", None, after)
            return OnlineChanges(upserts=_batches(con, sql, batch_size), deletes=[], complete=True)
        step = interval_us(view)
        since = None
        if start is not None:
            since = min((min(before, after) - max_finite_window(view)) * step, _epoch_us(start))
        con.execute(
            "CREATE TEMP TABLE __fp_candidates AS " + changed_keys_sql(view, ["after_t", "before_t"], since)
        ).fetchall()
        gone = con.sql(
            f"SELECT {_keys_of(view, 'c')} FROM __fp_candidates AS c ANTI JOIN (SELECT * FROM after_t "
            f"WHERE NOT ({marker_condition(view)})) AS t ON {_match('c', 't', view)}"
        ).fetchall()
        sql = online_rows_sql(view, "after_t", "__fp_candidates", after)
        return OnlineChanges(upserts=_batches(con, sql, batch_size), deletes=[tuple(r) for r in gone])

    # -- training data ---------------------------------------------------------------------------

    def get_historical_features(
        self,
        spine: pd.DataFrame,
        timestamp_key: str,
        parts: list[RetrievalPart],
        *,
        prefix_features: bool = True,
    ) -> pd.DataFrame:
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        from featureplane.types import to_sql

        con = _duck(self.duckdb_settings)
        needed_keys = {k.name: k for part in parts for k in part.view.join_keys}
        spine_table = pa.Table.from_pandas(spine[[timestamp_key, *needed_keys]], preserve_index=False)
        # Row numbers from numpy: pa.array(range(n)) walks n Python integers (a third of a second per
        # million rows).
        spine_table = spine_table.append_column(
            ROW_COLUMN, pa.array(np.arange(spine_table.num_rows, dtype=np.int64))
        )
        con.register("spine_in", spine_table)
        key_columns = ", ".join(
            f"CAST({q(name)} AS {to_sql(key.type)}) AS {q(name)}" for name, key in needed_keys.items()
        )
        # Aggregate parts read the spine twice (their points, then the join): copy it once for them.
        kind = "TABLE" if any(part.view.is_aggregate for part in parts) else "VIEW"
        con.execute(
            f"CREATE TEMP {kind} spine AS SELECT {ROW_COLUMN}, CAST({q(timestamp_key)} AS TIMESTAMP) AS {SPINE_TS}"
            f"{', ' if key_columns else ''}{key_columns} FROM spine_in"
        ).fetchall()
        selects, joins = [], []
        for i, part in enumerate(parts):
            alias, relation = f"p{i}", f"view_{i}"
            view = part.view
            if view.is_stream:
                relation = self._register_events(con, relation, part)
                if not view.is_aggregate:
                    con.execute(
                        f"CREATE TEMP VIEW {alias}_rows AS {plain_rows_sql(view, relation)}"
                    ).fetchall()
                    relation = f"{alias}_rows"
            elif part.data is not None:
                con.register(relation, part.data)
            else:
                self._register(con, relation, part.table_id, part.view)
            if view.is_stream and view.is_aggregate:
                joins.append(stream_aggregate_join(con, part, relation, alias, SPINE_TS))
                selects += [
                    f"{alias}.{q(f)} AS {q(f'{view.name}__{f}' if prefix_features else f)}"
                    for f in part.features
                ]
                continue
            if view.is_aggregate:
                joins.append(_aggregate_join(con, part, relation, alias))
                selects += [
                    f"{alias}.{q(f)} AS {q(f'{view.name}__{f}' if prefix_features else f)}"
                    for f in part.features
                ]
                continue
            fts = q(view.timestamp_field)
            cols = ", ".join(q(c) for c in view.join_key_names)
            cols += "".join(f", {q(f)}" for f in part.features)
            on = " AND ".join(f"s.{q(k)} = {alias}.{q(k)}" for k in view.join_key_names)
            joins.append(
                f"ASOF LEFT JOIN (SELECT {cols}, {fts} AS __fp_ts FROM {relation}) AS {alias} "
                f"ON {on} AND s.{SPINE_TS} >= {alias}.__fp_ts"
            )
            for feature in part.features:
                out = f"{view.name}__{feature}" if prefix_features else feature
                value = f"{alias}.{q(feature)}"
                if view.ttl_seconds:
                    value = (
                        f"CASE WHEN {alias}.__fp_ts > s.{SPINE_TS} - INTERVAL {int(view.ttl_seconds)} SECOND "
                        f"THEN {value} END"
                    )
                selects.append(f"{value} AS {q(out)}")
        sql = f"SELECT s.{ROW_COLUMN}, {', '.join(selects)} FROM spine AS s {' '.join(joins)}"
        features = to_pandas(_in_spine_order(con.sql(sql).to_arrow_table()))
        result = pd.concat([spine.reset_index(drop=True), features], axis=1)
        result.index = spine.index
        return result

    def _register_events(self, con: duckdb.DuckDBPyConnection, name: str, part: RetrievalPart) -> str:
        """A stream view's logged events, once each, as relation ``<name>_events``."""
        table = self._table(part.table_id)
        if table is None:
            con.register(name, event_schema(part.view).empty_table())
        else:
            con.register(name, table.to_pyarrow_dataset())
        con.execute(f"CREATE TEMP VIEW {name}_events AS {deduped_events_sql(part.view, name)}").fetchall()
        return f"{name}_events"

    def features_in_range(
        self, table_id: str, view: FeatureViewSpec, start: datetime, end: datetime
    ) -> pd.DataFrame:
        con = _duck(self.duckdb_settings)
        if view.is_stream:  # from its event log
            events = self._register_events(con, "log", RetrievalPart(view, table_id, view.feature_names))
            if view.is_aggregate:
                return stream_ranges(con, events, view, start, end)
            con.execute(f"CREATE TEMP VIEW t AS {plain_rows_sql(view, events)}").fetchall()
            return self._plain_ranges(con, "t", view, start, end)
        self._register(con, "t", table_id, view)
        if view.is_aggregate:
            return to_pandas(con.sql(features_in_range_sql(view, "t", start, end)).to_arrow_table())
        return self._plain_ranges(con, "t", view, start, end)

    def _plain_ranges(
        self, con: duckdb.DuckDBPyConnection, rows: str, view: FeatureViewSpec, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """A plain view's ``features_in_range`` over ``rows`` (join keys, timestamp, features)."""
        keys = ", ".join(q(k) for k in view.join_key_names)
        ts = q(view.timestamp_field)
        ties = ties_order(view, q)
        next_ts = f"lead({ts}) OVER (PARTITION BY {keys} ORDER BY {ts}{ties})"
        if view.ttl_seconds:
            expiry = f"{ts} + INTERVAL {int(view.ttl_seconds)} SECOND"
            valid_to = f"CASE WHEN {next_ts} IS NULL OR {next_ts} > {expiry} THEN {expiry} ELSE {next_ts} END"
        else:
            valid_to = next_ts
        columns = ", ".join(q(c) for c in self.columns(view))
        sql = (
            f"SELECT * FROM (SELECT {columns}, {ts} AS _valid_from, {valid_to} AS _valid_to FROM {rows}) "
            f"WHERE _valid_from < {ts_literal(end)} AND (_valid_to IS NULL OR _valid_to > {ts_literal(start)}) "
            f"ORDER BY {keys}, _valid_from{ties}"
        )
        return to_pandas(con.sql(sql).to_arrow_table())


def _ingest_app_id(segment: str) -> str:
    """The Delta transaction id that records how far an ingest log segment was folded."""
    return f"featureplane-ingest/{segment}"


def _keys_of(view: FeatureViewSpec, alias: str) -> str:
    return ", ".join(f"{alias}.{q(k)}" for k in view.join_key_names)


def _match(left: str, right: str, view: FeatureViewSpec) -> str:
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in view.join_key_names)


def _in_spine_order(table: pa.Table) -> pa.Table:
    """The joined rows back in spine order. Row numbers are a permutation of 0..n-1, so scattering
    positions by row number (linear) replaces a sort of the whole result."""
    import numpy as np

    rows = table.column(ROW_COLUMN).to_numpy()
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = np.arange(len(rows), dtype=np.int64)
    return table.drop_columns([ROW_COLUMN]).take(order)


def _epoch_us(value: datetime) -> int:
    return int((value - datetime(1970, 1, 1)) / timedelta(microseconds=1))


def _latest(con: duckdb.DuckDBPyConnection, view: FeatureViewSpec, relation: str) -> int | None:
    """The end of the latest materialized partition of an aggregate view, as an interval index."""
    return con.sql(latest_materialized_sql(view, relation)).fetchall()[0][0]


def _aggregate_join(con: duckdb.DuckDBPyConnection, part: RetrievalPart, relation: str, alias: str) -> str:
    """Roll the view's tiles up at every distinct (entity, interval) of the spine; the join clause."""
    view = part.view
    dialect = DUCKDB
    index = dialect.floor_div(dialect.epoch_us(f"s.{SPINE_TS}"), interval_us(view))
    keys = ", ".join(f"s.{q(k)}" for k in view.join_key_names)
    points = f"(SELECT {keys}, {index} AS {IDX} FROM spine AS s)"
    con.execute(
        f"CREATE TEMP TABLE {alias}_values AS {rollup_sql(view, relation, points, part.features)}"
    ).fetchall()
    on = " AND ".join(f"s.{q(k)} = {alias}.{q(k)}" for k in view.join_key_names)
    return f"LEFT JOIN {alias}_values AS {alias} ON {on} AND {alias}.{IDX} = {index}"


def _is_array(view: FeatureViewSpec, feature: str) -> bool:
    return view.feature(feature).type.is_array


def _batches(con: duckdb.DuckDBPyConnection, sql: str, batch_size: int) -> Iterator[pa.RecordBatch]:
    reader = con.sql(sql).to_arrow_reader(batch_size)
    try:
        yield from reader
    finally:
        con.close()
