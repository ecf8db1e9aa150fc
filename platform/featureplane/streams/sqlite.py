"""Stream state in the SQLite online store's file (its ``stream_tiles`` and ``stream_shards`` tables):
tiles and per-shard processing state beside the online rows, so that a batch's tiles, the entities'
rows and its shards' checkpoints and watermarks commit in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from featureplane.online_stores.base import encode_key, encode_values
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


class SQLiteStreamStore(StreamStore):
    def __init__(self, online: SQLiteOnlineStore) -> None:
        self.online = online
        self.db = online.db  # its schema has the stream tables
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
        applied = 0
        with self.db.transaction() as con:
            touched: set[str] = set()
            for (key, index), batch in events.items():
                entity = encode_key(key)
                touched.add(entity)
                found = con.execute(
                    "SELECT state FROM stream_tiles WHERE table_id = ? AND entity_key = ? AND tile = ?",
                    (table_id, entity, index),
                ).fetchone()
                tile, count = spec.apply(orjson.loads(found[0]) if found else None, batch)
                if count:
                    applied += count
                    con.execute(
                        "INSERT INTO stream_tiles (table_id, entity_key, tile, state) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (table_id, entity_key, tile) DO UPDATE SET state = excluded.state",
                        (table_id, entity, index, orjson.dumps(tile)),
                    )
            for entity in sorted(touched):
                if retain_from is not None:
                    con.execute(
                        "DELETE FROM stream_tiles WHERE table_id = ? AND entity_key = ? AND tile < ?",
                        (table_id, entity, retain_from),
                    )
                stored = con.execute(
                    "SELECT tile, state FROM stream_tiles WHERE table_id = ? AND entity_key = ? ORDER BY tile",
                    (table_id, entity),
                ).fetchall()
                tiles = [(index, orjson.loads(blob)) for index, blob in stored]
                rows = [spec.row(index, tile) for index, tile in tiles]
                latest = max((tile["ts"] for _, tile in tiles), default=0)
                con.execute(UPSERT, (table_id, entity, latest, encode_values([rows])))
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
