"""Stream state in the DynamoDB online store: each entity's tiles live in its online row's item.

An entity's item holds what lookups read (``ts``, ``v``: the tile rows the roll-up reads) and, beside
them, the tiles' full states (``tiles``, JSON by interval index, with each tile's per-shard positions)
and a version number (``ver``). Applying a batch to an entity is one conditional ``UpdateItem``: read
the item (a batch's entities are read with BatchGetItem, 100 a call), apply the events its tiles do
not hold yet, write it back if ``ver`` is unchanged (else read it again and retry). So updates are
atomic per entity (and so per tile), processors of different shards can write the same entities
concurrently, and a redelivered record changes nothing.

Each shard's processing state (checkpoint, watermark, refused counts) is its own item,
``<table_id>|#stream|<shard>``, written (a PutItem) after the tiles by the processor of that shard
only: a processor killed in between applies the batch again and its tiles skip what they hold.
A batch's entities are updated concurrently (the online store's pool of ``max_workers`` threads;
boto3 clients are thread-safe), and the shard states are written once every update has finished.
The item ``<table_id>|#stream`` lists the shards (a string set, extended with ``ADD``, which never
conflicts), so that the merged state is one GetItem and one BatchGetItem, without a scan.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import orjson

from featureplane.online_stores.dynamodb import DynamoDBOnlineStore
from featureplane.online_stores.dynamodb_access import PK, TS, VALUES, DynamoDBError, error_code
from featureplane.streams.store import (
    ShardState,
    StreamState,
    StreamStore,
    merged,
    shard_from_json,
    shard_json,
)
from featureplane.streams.tiles import Event, TileSpec

STATE_SUFFIX = "|#stream"
TILES, VERSION = "tiles", "ver"
SHARDS = "shards"
MAX_CONFLICTS = 50
MAX_BATCH_GET = 100


class DynamoDBStreamStore(StreamStore):
    def __init__(self, online: DynamoDBOnlineStore) -> None:
        self.online = online
        self._ready: set[str] = set()
        self._listed: dict[str, set[str]] = {}  # per view, the shards its index item is known to hold
        self.conflicts = 0  # updates retried because another writer changed the entity meanwhile
        self._lock = threading.Lock()

    def _table(self, table_id: str) -> str:
        table = self.online.table_name(table_id)
        if table not in self._ready:
            self.online.ensure_table(table)
            self._ready.add(table)
        return table

    def state(self, table_id: str) -> StreamState:
        index = self._get(table_id, table_id + STATE_SUFFIX)
        names = sorted(index[SHARDS]["SS"]) if index and SHARDS in index else []
        self._listed[table_id] = set(names)
        prefix = len(table_id + STATE_SUFFIX) + 1
        items = self._get_many(table_id, [self._shard_pk(table_id, n) for n in names])
        shards = {pk[prefix:]: shard_from_json(item["s"]["S"]) for pk, item in items.items()}
        return merged(dict(sorted(shards.items())))

    def _get_many(self, table_id: str, pks: list[str]) -> dict[str, dict[str, Any]]:
        """The items of ``pks`` that exist, by key: consistent BatchGetItems of ``MAX_BATCH_GET``
        keys, run concurrently, each retried for the keys DynamoDB left unprocessed."""
        table = self._table(table_id)

        def chunk(keys: list[str]) -> list[dict[str, Any]]:
            found = []
            wanted: dict[str, Any] = {table: {"Keys": [{PK: {"S": k}} for k in keys], "ConsistentRead": True}}
            while wanted:
                response = self.online._call("batch_get_item", f"items of {table_id}", RequestItems=wanted)
                found += response.get("Responses", {}).get(table, [])
                wanted = response.get("UnprocessedKeys") or {}
            return found

        chunks = [pks[first : first + MAX_BATCH_GET] for first in range(0, len(pks), MAX_BATCH_GET)]
        return {item[PK]["S"]: item for part in self.online._gather(chunk, chunks) for item in part}

    @staticmethod
    def _shard_pk(table_id: str, shard: str) -> str:
        return f"{table_id}{STATE_SUFFIX}|{shard}"

    def _get(self, table_id: str, pk: str) -> dict[str, Any] | None:
        response = self.online._call(
            "get_item", pk, TableName=self._table(table_id), Key={PK: {"S": pk}}, ConsistentRead=True
        )
        return response.get("Item")

    def _save_shards(self, table_id: str, shards: Mapping[str, ShardState]) -> None:
        table = self._table(table_id)
        new = sorted(set(shards) - self._listed.get(table_id, set()))
        if new:
            self.online._call(
                "update_item",
                f"the stream shards of {table_id}",
                TableName=table,
                Key={PK: {"S": table_id + STATE_SUFFIX}},
                UpdateExpression="ADD #shards :new",
                ExpressionAttributeNames={"#shards": SHARDS},
                ExpressionAttributeValues={":new": {"SS": new}},
            )
            self._listed.setdefault(table_id, set()).update(new)
        for shard, state in shards.items():
            self.online._call(
                "put_item",
                f"the stream state of {table_id} shard {shard}",
                TableName=table,
                Item={PK: {"S": self._shard_pk(table_id, shard)}, "s": {"S": shard_json(state).decode()}},
            )

    def commit_tiles(
        self,
        table_id: str,
        spec: TileSpec,
        events: Mapping[tuple[tuple, int], list[Event]],
        shards: Mapping[str, ShardState],
        retain_from: int | None,
    ) -> int:
        by_entity: dict[tuple, dict[int, list[Event]]] = {}
        for (key, index), batch in events.items():
            by_entity.setdefault(key, {})[index] = batch
        pks = {key: self.online.item_key(table_id, key) for key in by_entity}
        items = self._get_many(table_id, list(pks.values()))  # read first, 100 entities a call
        applied = sum(
            self.online._gather(
                lambda entity: self._update_entity(
                    table_id, spec, entity[0], entity[1], retain_from, items.get(pks[entity[0]])
                ),
                list(by_entity.items()),
            )
        )
        self._save_shards(table_id, shards)
        return applied

    def _update_entity(
        self,
        table_id: str,
        spec: TileSpec,
        key: tuple,
        batches: dict[int, list[Event]],
        retain_from: int | None,
        item: dict[str, Any] | None,
    ) -> int:
        """Apply ``batches`` to the entity's item as read (``item``; None: it has none), written back
        if no other writer changed it since, else read again and retried."""
        pk = self.online.item_key(table_id, key)
        for attempt in range(MAX_CONFLICTS):
            if attempt:
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
            latest, rows = spec.online_row(tiles)
            condition = "attribute_not_exists(#ver)" if version is None else "#ver = :old"
            values: dict[str, Any] = {
                ":ts": {"N": str(latest)},
                ":v": {"S": orjson.dumps([rows]).decode()},
                ":tiles": {"S": orjson.dumps({str(i): t for i, t in sorted(tiles.items())}).decode()},
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
                    with self._lock:
                        self.conflicts += 1
                    continue  # another processor wrote this entity since the read: apply again
                raise
            return applied
        raise DynamoDBError(f"DynamoDB UpdateItem of {pk}: still conflicting after {MAX_CONFLICTS} attempts")

    def commit_rows(
        self,
        table_id: str,
        rows: Mapping[tuple, tuple[int, list[Any]]],
        shards: Mapping[str, ShardState],
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
        self._save_shards(table_id, shards)
        return written

    def tiles(self, table_id: str, key: tuple) -> dict[int, dict[str, Any]]:
        item = self._get(table_id, self.online.item_key(table_id, key))
        if not item or TILES not in item:
            return {}
        return {int(i): t for i, t in orjson.loads(item[TILES]["S"]).items()}
