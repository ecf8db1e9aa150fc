"""The online side of a materialization: the offline store's latest rows per key, written online.

The sync marker (the offline version the online store last matched) decides how much to compare; see
``featureplane.materialization.materialize``. A full sync that read every key's latest row also removes
the keys online that the offline store no longer holds (vanished keys; ``lifecycle.delete_vanished_keys``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from featureplane.compute.aggregation.online import lifetime_features, online_expiry_seconds
from featureplane.compute.aggregation.rollup import online_rows_sql, online_rows_view
from featureplane.compute.base import StagedResult, as_arrow
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.online_stores.base import EncodedRow, OnlineRow, encode_key

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime

Progress = Callable[[str], None]
Row = TypeVar("Row")
# A window holding every row: diffing two versions over it compares every key.
ALL_TIME = (datetime(1, 1, 1), datetime(9999, 12, 31))
EPOCH, US = datetime(1970, 1, 1), timedelta(microseconds=1)
SYNC_BATCH_ROWS = 50_000


@dataclass
class OnlineSync:
    """What an online sync did."""

    full_sync: bool
    written: int = 0
    deleted: int = 0


def online_rows(view: FeatureViewSpec, batch: pa.RecordBatch) -> Iterator[OnlineRow]:
    """Online rows from an Arrow batch of (join keys, timestamp, features)."""
    keys = [batch.column(k).to_pylist() for k in view.join_key_names]
    stamps = _stamps(view, batch)
    columns = [_online_column(f.type.name, batch.column(f.name).to_pylist()) for f in view.features]
    for i, stamp in enumerate(stamps):
        yield OnlineRow(tuple(k[i] for k in keys), stamp, [c[i] for c in columns])


def _stamps(view: FeatureViewSpec, batch: pa.RecordBatch) -> list[int]:
    import pyarrow as pa

    return batch.column(view.timestamp_field).cast(pa.timestamp("us")).cast(pa.int64()).to_pylist()


def _online_column(type_name: str, values: list[Any]) -> list[Any]:
    """Values as the online store holds them: timestamps as ISO-8601 UTC text, NaN as null."""
    if type_name == "timestamp":
        return [None if v is None else v.isoformat() + "Z" for v in values]
    if type_name == "float64":
        return [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    return values


def _tile_value(value: Any) -> Any:
    """A partial as an online tile holds it: times as microseconds since the epoch, NaN as null."""
    if isinstance(value, datetime):
        return (value - EPOCH) // US
    if isinstance(value, list):
        return [_tile_value(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def aggregate_online_rows(view: FeatureViewSpec, batches: Iterable[pa.RecordBatch]) -> Iterator[OnlineRow]:
    """Online rows of an aggregate view from ``online_rows_sql``'s rows (one per entity and stored
    tile, ordered by entity): the lifetime features' values, then the entity's tiles
    (``compute.aggregation.online``)."""
    layout = online_rows_view(view)
    lifetime = len(lifetime_features(view))
    key: tuple | None = None
    current: OnlineRow | None = None
    for batch in batches:
        keys = list(zip(*(batch.column(k).to_pylist() for k in view.join_key_names), strict=True))
        stamps = _stamps(view, batch)
        columns = [batch.column(f.name).to_pylist() for f in layout.features]
        values = [
            _online_column(f.type.name, c) for f, c in zip(layout.features[:lifetime], columns, strict=False)
        ]
        tiles = columns[lifetime:]
        for i, entity in enumerate(keys):
            if entity != key:
                if current is not None:
                    yield current
                key = entity
                current = OnlineRow(entity, stamps[i], [*(c[i] for c in values), []])
            if tiles and tiles[0][i] is not None:
                current.values[-1].append([_tile_value(c[i]) for c in tiles])  # type: ignore[union-attr]
    if current is not None:
        yield current


def _json_value(feature_type: str, column: str) -> str:
    """DuckDB SQL giving a value as the online store stores it (NaN as null, timestamps as ISO-8601 UTC)."""
    if feature_type == "float64":
        return f"CASE WHEN isnan({column}) THEN NULL ELSE {column} END"
    if feature_type == "timestamp":
        return (
            f"CASE WHEN microsecond({column}) % 1000000 = 0 THEN strftime({column}, '%Y-%m-%dT%H:%M:%SZ') "
            f"ELSE strftime({column}, '%Y-%m-%dT%H:%M:%S.%fZ') END"
        )
    return column


def encoded_rows(view: FeatureViewSpec, batch: pa.RecordBatch, con: Any) -> Iterator[EncodedRow]:
    """Rows in storage form, encoded column-wise by DuckDB rather than value by value in Python."""
    import pyarrow as pa

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    values = " || ',' || ".join(
        f"coalesce(to_json({_json_value(f.type.name, q(f.name))})::VARCHAR, 'null')" for f in view.features
    )
    con.register("__fp_batch", pa.Table.from_batches([batch]))
    encoded = con.sql(
        f"SELECT epoch_us({q(view.timestamp_field)}) AS ts, '[' || {values} || ']' AS v FROM __fp_batch"
    ).to_arrow_table()
    con.unregister("__fp_batch")
    keys = zip(*(batch.column(k).to_pylist() for k in view.join_key_names), strict=True)
    for key, stamp, blob in zip(
        keys, encoded.column("ts").to_pylist(), encoded.column("v").to_pylist(), strict=True
    ):
        yield EncodedRow(encode_key(key), stamp, blob.encode())


def _noting(rows: Iterable[Row], seen: set[str], key: Callable[[Row], str]) -> Iterator[Row]:
    """The rows, unchanged, each one's entity key added to ``seen`` as it passes."""
    for row in rows:
        seen.add(key(row))
        yield row


def staged_latest_rows(
    runtime: Runtime, view: FeatureViewSpec, rows: pa.Table | StagedResult
) -> pa.Table | Iterator[pa.RecordBatch]:
    """What a full sync would read back from the offline store once ``rows`` are its only rows (each
    key's latest row, same columns and tie-break; for an aggregate view, ``online_rows_sql``'s rows
    from the tiles and their partition markers): computed from the rows in memory, or for rows staged
    in DuckDB, a stream of batches computed there when it is read."""
    local = rows.local_duckdb() if isinstance(rows, StagedResult) else None
    if local is not None:
        con, relation = local
        return _batches(con, _latest_sql(view, con, relation))
    import duckdb

    from featureplane.compute.duckdb import apply_duckdb_settings, duckdb_settings

    con = duckdb.connect()
    try:
        apply_duckdb_settings(con, duckdb_settings(runtime.config))
        con.execute("SET TimeZone='UTC'").fetchall()
        con.register("__fp_written", as_arrow(rows))
        return con.sql(_latest_sql(view, con, "__fp_written")).to_arrow_table()
    finally:
        con.close()


def _latest_sql(view: FeatureViewSpec, con: Any, relation: str) -> str:
    from featureplane.compute.aggregation.tiles import latest_materialized_sql
    from featureplane.compute.duckdb import quote
    from featureplane.offline_stores.base import latest_row_clause

    if view.is_aggregate:
        after = con.sql(latest_materialized_sql(view, relation)).fetchall()[0][0]
        return online_rows_sql(view, relation, None, after)
    columns = ", ".join(quote(c) for c in [*view.join_key_names, view.timestamp_field, *view.feature_names])
    keys = ", ".join(quote(k) for k in view.join_key_names)
    return f"SELECT {columns} FROM {relation} {latest_row_clause(view, quote)} ORDER BY {keys}"


def _batches(con: Any, sql: str) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` a batch at a time, run when first read."""
    yield from con.sql(sql).to_arrow_reader(SYNC_BATCH_ROWS)


def sync_online(
    runtime: Runtime,
    state: WorkspaceState,
    view: FeatureViewSpec,
    before: int | None,
    start: datetime | None,
    end: datetime | None,
    offline_version: int | None,
    say: Progress,
    staged_latest: pa.Table | Iterator[pa.RecordBatch] | None = None,
) -> OnlineSync:
    """Bring the online store to the offline store's latest rows: only keys changed since ``before``
    when the online store's sync marker says it matched ``before``, otherwise every key.

    ``staged_latest``: on a first backfill (no offline table before it, no sync marker), every key's
    latest row of the rows just written (``staged_latest_rows``), so the table is not read back."""
    online = runtime.online_store
    table_id = state.table_id(view.name)
    marker = online.sync_marker(table_id)
    incremental = before is not None and marker == before
    result = OnlineSync(full_sync=not incremental)
    if staged_latest is not None and before is None and marker is None:
        from featureplane.offline_stores.base import OnlineChanges

        upserts = (
            staged_latest
            if isinstance(staged_latest, Iterator)
            else staged_latest.to_batches(SYNC_BATCH_ROWS)
        )
        changes = OnlineChanges(upserts=iter(upserts), deletes=[], complete=True)
    elif incremental:
        changes = runtime.offline_store.online_changes(table_id, view, before, start, end)
    else:
        # Compare every key with the version the online store last matched (the marker), if readable.
        try:
            changes = runtime.offline_store.online_changes(table_id, view, marker, *ALL_TIME)
        except Exception:
            if marker is None:
                raise
            changes = runtime.offline_store.online_changes(table_id, view, None, None, None)
    import duckdb

    # A full read names every key the offline store holds: any other key online has vanished.
    sweep = changes.complete and runtime.config.lifecycle.delete_vanished_keys
    present: set[str] = set()
    if view.is_aggregate:
        rows: Iterable[OnlineRow] = aggregate_online_rows(view, changes.upserts)
        if sweep:
            rows = _noting(rows, present, lambda row: encode_key(row.key))
        result.written += online.write(table_id, rows, ttl_seconds=online_expiry_seconds(view))
    else:
        con = duckdb.connect()
        for batch in changes.upserts:
            encoded: Iterable[EncodedRow] = encoded_rows(view, batch, con)
            if sweep:
                encoded = _noting(encoded, present, lambda row: row.entity_key)
            result.written += online.write_encoded(table_id, encoded, ttl_seconds=view.ttl_seconds)
        con.close()
    if changes.deletes:
        result.deleted = online.delete(table_id, changes.deletes)
    if sweep:
        vanished = [tuple(orjson.loads(k)) for k in online.entity_keys(table_id) if k not in present]
        if vanished:
            result.deleted += online.delete(table_id, vanished)
    online.set_sync_marker(table_id, offline_version)
    mode = "changed keys" if incremental else "full sync"
    say(
        f"{state.name}/{view.name}: online store updated ({mode}): {result.written:,} written, "
        f"{result.deleted:,} deleted"
    )
    return result
