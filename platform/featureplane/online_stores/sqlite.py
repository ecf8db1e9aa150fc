"""The embedded online store: one SQLite file in WAL mode (readers never wait for writers).

All views share one table keyed by (table_id, entity_key), so a feature-service lookup across several
views is one SELECT. Writes run in one transaction per batch with a prepared statement, and skip rows
whose timestamp and values are unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from featureplane.online_stores.base import (
    EncodedRow,
    OnlineRow,
    OnlineStore,
    OnlineValue,
    encode_key,
    encode_keys,
    encode_values,
    expiry_cutoff_us,
)
from featureplane.util.localdb import ThreadLocalSQLite

SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    table_id TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    event_ts INTEGER NOT NULL,
    features BLOB NOT NULL,
    PRIMARY KEY (table_id, entity_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online_sync (
    table_id TEXT PRIMARY KEY,
    offline_version INTEGER
);
CREATE TABLE IF NOT EXISTS stream_tiles (
    table_id TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    tile INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (table_id, entity_key, tile)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_shards (
    table_id TEXT NOT NULL,
    shard TEXT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (table_id, shard)
) WITHOUT ROWID;
"""
# Every table keyed by table_id: dropping a view's table drops its rows in each. ``stream_*`` hold the
# stream processor's tiles and per-shard checkpoints (featureplane.streams.sqlite), beside the rows they feed.
TABLES = ("online_features", "online_sync", "stream_tiles", "stream_shards")

_INSERT = (
    "INSERT INTO online_features (table_id, entity_key, event_ts, features) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (table_id, entity_key) DO UPDATE SET event_ts = excluded.event_ts, features = excluded.features "
)
_CHANGED = (
    "(online_features.event_ts IS NOT excluded.event_ts OR online_features.features IS NOT excluded.features)"
)
UPSERT = _INSERT + "WHERE " + _CHANGED
UPSERT_IF_NEWER = _INSERT + "WHERE excluded.event_ts >= online_features.event_ts AND " + _CHANGED

BATCH = 20_000
MAX_READ_PARAMS = 30000
MAX_JOINED_TABLES = 60


@lru_cache(maxsize=256)
def _read_sql(count: int) -> str:
    """One statement reading ``count`` (table_id, entity_key) pairs, answering each row's position.

    The numbered pairs drive one primary-key search each (CROSS JOIN fixes the loop order);
    ``WHERE (table_id, entity_key) IN (VALUES ...)`` would scan the whole table instead."""
    pairs = ",".join(f"({n}, ?, ?)" for n in range(count))
    return (
        f"WITH wanted(n, t, k) AS (VALUES {pairs}) SELECT wanted.n, o.event_ts, o.features FROM wanted "
        "CROSS JOIN online_features AS o ON o.table_id = wanted.t AND o.entity_key = wanted.k"
    )


@lru_cache(maxsize=256)
def _read_rows_sql(cutoffs: tuple[bool, ...], count: int, times: bool = False) -> str:
    """One statement answering one row per key, in key order: for each table, its event time (with
    ``times``) and its values, NULLs where it has no row or (for a table with a cutoff, its
    parameter) the row is not newer than the cutoff. Parameters: the keys, then the cutoffs given,
    then the table ids. A LEFT JOIN per table is one primary-key search each, and the answer needs no
    placing; ttl is applied in SQLite, which costs less than answering event times."""
    keys = ",".join(f"({n}, ?)" for n in range(count))
    columns = ", ".join(
        (f"o{v}.event_ts, " if times else "")
        + (f"CASE WHEN o{v}.event_ts > ? THEN o{v}.features END" if cut else f"o{v}.features")
        for v, cut in enumerate(cutoffs)
    )
    joins = " ".join(
        f"LEFT JOIN online_features AS o{v} ON o{v}.table_id = ? AND o{v}.entity_key = wanted.k"
        for v in range(len(cutoffs))
    )
    order = " ORDER BY wanted.n" if count > 1 else ""  # one row: nothing to order
    return f"WITH wanted(n, k) AS (VALUES {keys}) SELECT {columns} FROM wanted {joins}{order}"


def _place(found: list[OnlineValue | None], first: int, rows: list[tuple[int, int, bytes]]) -> None:
    """Decode the rows (position, event time, values) into ``found`` from position ``first`` on."""
    make, loads = OnlineValue, orjson.loads
    if len(rows) <= 8:
        for n, event_ts, blob in rows:
            found[first + n] = make(event_ts, loads(blob))
        return
    # One parse for all rows' values beats a parse per row in large lookups.
    decoded = loads(b"[" + b",".join([row[2] for row in rows]) + b"]")
    for (n, event_ts, _), values in zip(rows, decoded, strict=True):
        found[first + n] = make(event_ts, values)


class SQLiteOnlineStore(OnlineStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = ThreadLocalSQLite(self.path, SCHEMA, pragmas=["synchronous = NORMAL"])

    def describe(self) -> dict[str, Any]:
        return {"type": "sqlite", "path": str(self.path)}

    def _con(self) -> sqlite3.Connection:
        return self.db.connection()

    def close(self) -> None:
        self.db.close()

    def write(
        self,
        table_id: str,
        rows: Iterable[OnlineRow],
        *,
        only_if_newer: bool = False,
        ttl_seconds: int | None = None,
    ) -> int:
        encoded = ((table_id, encode_key(r.key), int(r.event_ts), encode_values(r.values)) for r in rows)
        return self._upsert(UPSERT_IF_NEWER if only_if_newer else UPSERT, encoded)

    def write_encoded(
        self, table_id: str, rows: Iterable[EncodedRow], *, ttl_seconds: int | None = None
    ) -> int:
        return self._upsert(UPSERT, ((table_id, r.entity_key, r.event_ts, r.blob) for r in rows))

    def _upsert(self, statement: str, params: Iterable[tuple]) -> int:
        """Prepared upserts, one transaction per batch of rows (ttl is enforced when reading)."""
        con = self._con()
        written = 0
        iterator = iter(params)
        while True:
            chunk = list(islice(iterator, BATCH))
            if not chunk:
                break
            with self.db.transaction():
                before = con.total_changes
                con.executemany(statement, chunk)
                written += con.total_changes - before
        return written

    def delete(self, table_id: str, keys: Iterable[tuple]) -> int:
        con = self._con()
        params = [(table_id, encode_key(k)) for k in keys]
        if not params:
            return 0
        with self.db.transaction():
            before = con.total_changes
            con.executemany("DELETE FROM online_features WHERE table_id = ? AND entity_key = ?", params)
            deleted = con.total_changes - before
            # A stream view's tiles feed its rows: a deleted key loses them too (in the same transaction).
            con.executemany("DELETE FROM stream_tiles WHERE table_id = ? AND entity_key = ?", params)
            return deleted

    def sweep_expired(self, table_id: str, ttl: int | timedelta, now: datetime | None = None) -> int:
        """Expired rows deleted a batch per transaction, so readers and writers never wait long."""
        cutoff = expiry_cutoff_us(ttl, now)
        con = self._con()
        deleted = 0
        while True:
            with self.db.transaction():
                before = con.total_changes
                con.execute(
                    "DELETE FROM online_features WHERE table_id = ? AND entity_key IN (SELECT entity_key "
                    "FROM online_features WHERE table_id = ? AND event_ts <= ? LIMIT ?)",
                    (table_id, table_id, cutoff, BATCH),
                )
                changed = con.total_changes - before
            deleted += changed
            if changed < BATCH:
                return deleted

    def row_count(self, table_id: str) -> int:
        (count,) = (
            self._con()
            .execute("SELECT count(*) FROM online_features WHERE table_id = ?", (table_id,))
            .fetchone()
        )
        return int(count)

    def read(self, requests: Sequence[tuple[str, tuple]]) -> list[OnlineValue | None]:
        if not requests:
            return []
        con = self._con()
        found: list[OnlineValue | None] = [None] * len(requests)
        step = MAX_READ_PARAMS // 2
        for first in range(0, len(requests), step):
            chunk = requests[first : first + step]
            params: list[str] = []
            last_key: tuple | None = None
            text = ""
            for table_id, key in chunk:
                if key is not last_key:  # a lookup names an entity's key once per view, in a row
                    last_key, text = key, encode_key(key)
                params += (table_id, text)
            _place(found, first, con.execute(_read_sql(len(chunk)), params).fetchall())
        return found

    def read_entities(self, table_ids: Sequence[str], keys: Sequence[tuple]) -> list[OnlineValue | None]:
        width = len(table_ids)
        if width > MAX_JOINED_TABLES:  # SQLite joins at most 64 tables in one statement
            return super().read_entities(table_ids, keys)
        if not keys or not width:
            return []
        found: list[OnlineValue | None] = [None] * (len(keys) * width)
        rows = self._read_rows(table_ids, keys, None, times=True)
        present = [
            (e * width + v, row[2 * v], row[2 * v + 1])
            for e, row in enumerate(rows)
            for v in range(width)
            if row[2 * v] is not None
        ]
        _place(found, 0, present)
        return found

    def read_encoded(
        self,
        table_ids: Sequence[str],
        keys: Sequence[tuple],
        fresh_after: Sequence[int | None] | None = None,
    ) -> list[tuple[bytes | None, ...]]:
        if len(table_ids) > MAX_JOINED_TABLES:
            return super().read_encoded(table_ids, keys, fresh_after)
        if not keys or not table_ids:
            return [()] * len(keys)
        return self._read_rows(table_ids, keys, fresh_after)

    def _read_rows(
        self,
        table_ids: Sequence[str],
        keys: Sequence[tuple],
        fresh_after: Sequence[int | None] | None,
        times: bool = False,
    ) -> list[tuple]:
        """``_read_rows_sql``'s answer for ``keys``, in as few statements as the parameter limit allows."""
        width = len(table_ids)
        if fresh_after:
            cutoffs = [c for c in fresh_after if c is not None]
            shape = tuple([c is not None for c in fresh_after])
        else:
            cutoffs, shape = [], (False,) * width
        con = self._con()
        texts = encode_keys(keys)
        step = MAX_READ_PARAMS - 2 * width
        if len(texts) <= step:
            sql = _read_rows_sql(shape, len(texts), times)
            return con.execute(sql, [*texts, *cutoffs, *table_ids]).fetchall()
        rows: list[tuple] = []
        for first in range(0, len(texts), step):
            chunk = texts[first : first + step]
            sql = _read_rows_sql(shape, len(chunk), times)
            rows += con.execute(sql, [*chunk, *cutoffs, *table_ids]).fetchall()
        return rows

    def entity_keys(self, table_id: str) -> Iterator[str]:
        cursor = self._con().execute("SELECT entity_key FROM online_features WHERE table_id = ?", (table_id,))
        rows = cursor.fetchall()  # a list: deletes of these keys may follow on the same connection
        return (key for (key,) in rows)

    def sync_marker(self, table_id: str) -> int | None:
        row = (
            self._con()
            .execute("SELECT offline_version FROM online_sync WHERE table_id = ?", (table_id,))
            .fetchone()
        )
        return None if row is None else row[0]

    def set_sync_marker(self, table_id: str, version: int | None) -> None:
        con = self._con()
        if version is None:
            con.execute("DELETE FROM online_sync WHERE table_id = ?", (table_id,))
        else:
            con.execute(
                "INSERT INTO online_sync (table_id, offline_version) VALUES (?, ?) "
                "ON CONFLICT (table_id) DO UPDATE SET offline_version = excluded.offline_version",
                (table_id, version),
            )

    def drop(self, table_id: str) -> None:
        with self.db.transaction() as con:
            for table in TABLES:
                con.execute(f"DELETE FROM {table} WHERE table_id = ?", (table_id,))

    def drop_workspace(self, workspace: str, table_ids: Iterable[str]) -> None:
        prefix = workspace + "/"
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES:
                con.execute(f"DELETE FROM {table} WHERE substr(table_id, 1, ?) = ?", (len(prefix), prefix))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def table_ids(self) -> list[str]:
        return [r[0] for r in self._con().execute("SELECT DISTINCT table_id FROM online_features")]
