"""Stream state in the DynamoDB online store: each entity's tiles live in its online row's item.

An entity's item holds what lookups read (``ts``, ``v``: the tile rows the roll-up reads) and, beside
them, the tiles' full states (``tiles``, JSON by interval index, with each tile's per-shard positions)
and a version number (``ver``). Applying a batch to an entity is one conditional ``UpdateItem``: read
the item, apply the events its tiles do not hold yet, write it back if ``ver`` is unchanged (else read
again and retry). So updates are atomic per entity (and so per tile), processors of different shards
can write the same entities concurrently, and a redelivered record changes nothing. The processing
state (watermark, counts, checkpoints) is the item ``<table_id>|#stream``, written after the tiles: a
processor killed in between applies the batch again and its tiles skip what they hold. That item is
one per view: processors of several shards share the tiles safely, but not yet the state (a
per-shard state, for a Lambda per shard, is not built).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from featureplane.online_stores.dynamodb import DynamoDBOnlineStore
from featureplane.online_stores.dynamodb_access import PK, TS, VALUES, DynamoDBError, error_code
from featureplane.streams.store import StreamState, StreamStore, state_from_json, state_json
from featureplane.streams.tiles import Event, TileSpec

STATE_SUFFIX = "|#stream"
TILES, VERSION = "tiles", "ver"
MAX_CONFLICTS = 50


class DynamoDBStreamStore(StreamStore):
    def __init__(self, online: DynamoDBOnlineStore) -> None:
        self.online = online
        self._ready: set[str] = set()
        self.conflicts = 0  # updates retried because another writer changed the entity meanwhile

    def _table(self, table_id: str) -> str:
        table = self.online.table_name(table_id)
        if table not in self._ready:
            self.online.ensure_table(table)
            self._ready.add(table)
        return table

    def state(self, table_id: str) -> StreamState:
        item = self._get(table_id, table_id + STATE_SUFFIX)
        if item is None:
            return StreamState()
        return state_from_json(item["s"]["S"])

    def _get(self, table_id: str, pk: str) -> dict[str, Any] | None:
        response = self.online._call(
            "get_item", pk, TableName=self._table(table_id), Key={PK: {"S": pk}}, ConsistentRead=True
        )
        return response.get("Item")

    def _save_state(self, table_id: str, state: StreamState) -> None:
        blob = state_json(state).decode()
        self.online._call(
            "put_item",
            f"the stream state of {table_id}",
            TableName=self._table(table_id),
            Item={PK: {"S": table_id + STATE_SUFFIX}, "s": {"S": blob}},
        )

    def commit_tiles(
        self,
        table_id: str,
        spec: TileSpec,
        events: Mapping[tuple[tuple, int], list[Event]],
        state: StreamState,
        retain_from: int | None,
    ) -> int:
        by_entity: dict[tuple, dict[int, list[Event]]] = {}
        for (key, index), batch in events.items():
            by_entity.setdefault(key, {})[index] = batch
        applied = sum(
            self._update_entity(table_id, spec, key, tiles, retain_from) for key, tiles in by_entity.items()
        )
        self._save_state(table_id, state)
        return applied

    def _update_entity(
        self,
        table_id: str,
        spec: TileSpec,
        key: tuple,
        batches: dict[int, list[Event]],
        retain_from: int | None,
    ) -> int:
        pk = self.online.item_key(table_id, key)
        for _ in range(MAX_CONFLICTS):
            item = self._get(table_id, pk)
            version = int(item[VERSION]["N"]) if item and VERSION in item else None
            tiles = (
                {int(i): t for i, t in orjson.loads(item[TILES]["S"]).items()} if version is not None else {}
            )
            applied = 0
            for index, batch in batches.items():
                tiles[index], count = spec.apply(tiles.get(index), batch)
                applied += count
            if retain_from is not None:
                tiles = {i: t for i, t in tiles.items() if i >= retain_from}
            if not applied:
                return 0  # every event is already in the tiles
            ordered = sorted(tiles.items())
            rows = [spec.row(index, tile) for index, tile in ordered]
            latest = max(tile["ts"] for _, tile in ordered)
            condition = "attribute_not_exists(#ver)" if version is None else "#ver = :old"
            values: dict[str, Any] = {
                ":ts": {"N": str(latest)},
                ":v": {"S": orjson.dumps([rows]).decode()},
                ":tiles": {"S": orjson.dumps({str(i): t for i, t in ordered}).decode()},
                ":new": {"N": str((version or 0) + 1)},
            }
            if version is not None:
                values[":old"] = {"N": str(version)}
            try:
                self.online.client.update_item(
                    TableName=self._table(table_id),
                    Key={PK: {"S": pk}},
                    UpdateExpression="SET #ts = :ts, #v = :v, #tiles = :tiles, #ver = :new",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#ts": TS, "#v": VALUES, "#tiles": TILES, "#ver": VERSION},
                    ExpressionAttributeValues=values,
                )
            except Exception as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    self.conflicts += 1
                    continue  # another processor wrote this entity since the read: apply again
                raise
            return applied
        raise DynamoDBError(f"DynamoDB UpdateItem of {pk}: still conflicting after {MAX_CONFLICTS} attempts")

    def commit_rows(
        self,
        table_id: str,
        rows: Mapping[tuple, tuple[int, list[Any]]],
        state: StreamState,
        ttl_seconds: int | None,
    ) -> int:
        from featureplane.online_stores.base import OnlineRow

        self._table(table_id)
        written = self.online.write(
            table_id,
            [OnlineRow(key, ts, values) for key, (ts, values) in rows.items()],
            only_if_newer=True,
            ttl_seconds=ttl_seconds,
        )
        self._save_state(table_id, state)
        return written

    def tiles(self, table_id: str, key: tuple) -> dict[int, dict[str, Any]]:
        item = self._get(table_id, self.online.item_key(table_id, key))
        if not item or TILES not in item:
            return {}
        return {int(i): t for i, t in orjson.loads(item[TILES]["S"]).items()}
