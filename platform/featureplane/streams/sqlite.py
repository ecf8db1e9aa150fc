"""Stream state in the SQLite online store's file (its ``stream_tiles`` and ``stream_shards`` tables):
tiles and per-shard processing state beside the online rows, so that a batch's tiles, the entities'
rows and its shards' checkpoints and watermarks commit in one transaction."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import orjson

from featureplane.online_stores.base import encode_key, encode_keys, encode_values
from featureplane.online_stores.sqlite import UPSERT, UPSERT_IF_NEWER, SQLiteOnlineStore
from featureplane.streams.store import (
    ShardState,
    StreamState,
    StreamStore,
    merged,
    shard_from_json,
    shard_json,
)
from featureplane.streams.tiles import Event, TileSpec

CACHE_KIB = 64 * 1024
CHECKPOINT_PAGES = 10_000


class SQLiteStreamStore(StreamStore):
    def __init__(self, online: SQLiteOnlineStore) -> None:
        self.online = online
        self.db = online.db  # its schema has the stream tables
        self._tuned: dict[int, Any] = {}  # per thread, its connection once tuned (``_tune``)
        self._upgrade()

    def _upgrade(self) -> None:
        """Move a file's per-view states (the earlier ``stream_state`` table) to per-shard states:
        each shard keeps its checkpoint and gets the view's watermark (what its events were judged
        against so far); the counts go to the view's first shard, so the merged view is unchanged."""
        con = self.db.connection()
        if not con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stream_state'"
        ).fetchone():
            return
        with self.db.transaction() as con:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'stream_state'").fetchone():
                return  # upgraded meanwhile by another process
            for table_id, blob in con.execute("SELECT table_id, state FROM stream_state").fetchall():
                old = orjson.loads(blob)
                shards = {}
                for i, (shard, position) in enumerate(sorted(old["positions"].items())):
                    first = i == 0
                    shards[shard] = ShardState(
                        int(position),
                        old["watermark_us"],
                        old["late"] if first else 0,
                        old["invalid"] if first else 0,
                    )
                self._save_shards(con, table_id, shards)
            con.execute("DROP TABLE stream_state")

    def _tune(self) -> None:
        """Settings of this thread's connection for the processor's batches, which rewrite entities
        all over the file: a page cache that holds the stream tables, and checkpoints (copying the
        WAL into the file, with an fsync) every ``CHECKPOINT_PAGES`` rather than every 1,000 pages
        written, so a page rewritten by several batches is copied once. Neither changes what a
        commit guarantees (WAL, ``synchronous = NORMAL``)."""
        con = self.db.connection()
        if con is not self._tuned.get(threading.get_ident()):
            con.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            con.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
            self._tuned[threading.get_ident()] = con

    def state(self, table_id: str) -> StreamState:
        rows = (
            self.db.connection()
            .execute("SELECT shard, state FROM stream_shards WHERE table_id = ?", (table_id,))
            .fetchall()
        )
        return merged({shard: shard_from_json(blob) for shard, blob in rows})

    def _save_shards(self, con: Any, table_id: str, shards: Mapping[str, ShardState]) -> None:
        con.executemany(
            "INSERT INTO stream_shards (table_id, shard, state) VALUES (?, ?, ?) "
            "ON CONFLICT (table_id, shard) DO UPDATE SET state = excluded.state",
            [(table_id, shard, shard_json(state)) for shard, state in shards.items()],
        )

    def commit_tiles(
        self,
        table_id: str,
        spec: TileSpec,
        events: Mapping[tuple[tuple, int], list[Event]],
        shards: Mapping[str, ShardState],
        retain_from: int | None,
    ) -> int:
        by_entity: dict[str, dict[int, list[Event]]] = {}
        for entity, ((_, index), batch) in zip(
            encode_keys([key for key, _ in events]), events.items(), strict=True
        ):
            by_entity.setdefault(entity, {})[index] = batch
        applied = 0
        written: list[tuple[str, str, int, bytes]] = []
        expired: list[tuple[str, str, int]] = []
        online: list[tuple[str, str, int, bytes]] = []
        self._tune()
        with self.db.transaction() as con:
            stored = _read_tiles(con, table_id, list(by_entity))
            for entity, batches in by_entity.items():
                tiles = stored.get(entity, {})
                for index, batch in batches.items():
                    tile, count = spec.apply(tiles.get(index), batch)
                    if count:
                        applied += count
                        tiles[index] = tile
                        if retain_from is None or index >= retain_from:
                            written.append((table_id, entity, index, orjson.dumps(tile)))
                if retain_from is not None:
                    for index in [i for i in tiles if i < retain_from]:
                        del tiles[index]
                        expired.append((table_id, entity, index))
                latest, rows = spec.online_row(tiles)
                online.append((table_id, entity, latest, encode_values([rows])))
            # A tile created below retention is never inserted; deleting a key that is not there is a no-op.
            con.executemany(
                "DELETE FROM stream_tiles WHERE table_id = ? AND entity_key = ? AND tile = ?", expired
            )
            con.executemany(
                "INSERT INTO stream_tiles (table_id, entity_key, tile, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (table_id, entity_key, tile) DO UPDATE SET state = excluded.state",
                written,
            )
            con.executemany(UPSERT, online)
            self._save_shards(con, table_id, shards)
        return applied

    def commit_rows(
        self,
        table_id: str,
        rows: Mapping[tuple, tuple[int, list[Any]]],
        shards: Mapping[str, ShardState],
        ttl_seconds: int | None,
    ) -> int:
        with self.db.transaction() as con:
            before = con.total_changes
            con.executemany(
                UPSERT_IF_NEWER,
                [
                    (table_id, encode_key(key), ts, encode_values(values))
                    for key, (ts, values) in rows.items()
                ],
            )
            written = con.total_changes - before
            self._save_shards(con, table_id, shards)
        return written

    def tiles(self, table_id: str, key: tuple) -> dict[int, dict[str, Any]]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT tile, state FROM stream_tiles WHERE table_id = ? AND entity_key = ?",
                (table_id, encode_key(key)),
            )
            .fetchall()
        )
        return {index: orjson.loads(blob) for index, blob in rows}


READ_CHUNK = 5000  # entities per statement reading their tiles

_READ_TILES = (
    "SELECT o.entity_key, o.tile, o.state FROM json_each(?) AS wanted "
    "CROSS JOIN stream_tiles AS o ON o.table_id = ? AND o.entity_key = wanted.value"
)


def _read_tiles(con: Any, table_id: str, entities: list[str]) -> dict[str, dict[int, dict[str, Any]]]:
    """The stored tiles of ``entities`` by entity and interval index, a statement per chunk of them.

    The entity keys go in as one JSON array, so the statement is the same for any number of them
    (prepared once); CROSS JOIN makes each key one primary-key search. All the states found are
    parsed at once, which beats a parse per tile."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for first in range(0, len(entities), READ_CHUNK):
        wanted = orjson.dumps(entities[first : first + READ_CHUNK])
        found = con.execute(_READ_TILES, (wanted, table_id)).fetchall()
        if not found:
            continue
        states = orjson.loads(b"[" + b",".join([row[2] for row in found]) + b"]")
        for (entity, index, _), state in zip(found, states, strict=True):
            tiles = out.get(entity)
            if tiles is None:
                tiles = out[entity] = {}
            tiles[index] = state
    return out
