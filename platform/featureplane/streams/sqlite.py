"""Stream state in the SQLite online store's file (its ``stream_tiles`` and ``stream_state`` tables):
tiles and processing state beside the online rows, so that a batch's tiles, the entities' rows, the
watermark and the checkpoints commit in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from featureplane.online_stores.base import encode_key, encode_values
from featureplane.online_stores.sqlite import UPSERT, UPSERT_IF_NEWER, SQLiteOnlineStore
from featureplane.streams.store import StreamState, StreamStore, state_from_json, state_json
from featureplane.streams.tiles import Event, TileSpec


class SQLiteStreamStore(StreamStore):
    def __init__(self, online: SQLiteOnlineStore) -> None:
        self.online = online
        self.db = online.db  # its schema has the stream tables

    def state(self, table_id: str) -> StreamState:
        row = (
            self.db.connection()
            .execute("SELECT state FROM stream_state WHERE table_id = ?", (table_id,))
            .fetchone()
        )
        if row is None:
            return StreamState()
        return state_from_json(row[0])

    def _save_state(self, con: Any, table_id: str, state: StreamState) -> None:
        blob = state_json(state)
        con.execute(
            "INSERT INTO stream_state (table_id, state) VALUES (?, ?) "
            "ON CONFLICT (table_id) DO UPDATE SET state = excluded.state",
            (table_id, blob),
        )

    def commit_tiles(
        self,
        table_id: str,
        spec: TileSpec,
        events: Mapping[tuple[tuple, int], list[Event]],
        state: StreamState,
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
            self._save_state(con, table_id, state)
        return applied

    def commit_rows(
        self,
        table_id: str,
        rows: Mapping[tuple, tuple[int, list[Any]]],
        state: StreamState,
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
            self._save_state(con, table_id, state)
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
