"""Where the stream processor keeps a view's state: tiles (or latest rows), online rows, and per shard
its processing state (checkpoint, watermark, refused counts). One interface; one module per backend
(``streams.sqlite``, ``streams.dynamodb``).

The processing state is kept per shard, and a batch commits only the states of the shards its records
came from: processors of different shards (a Lambda per Kinesis shard) never write the same state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from featureplane.streams.tiles import Event, TileSpec


@dataclass(frozen=True)
class ShardState:
    """One shard's processing state: the sequence number of its last record processed, the latest
    event time applied from it (µs, its watermark), how many of its records were refused, and whether
    it is *finished*: read to its end, never to deliver a record again (a sealed ingest log segment
    consumed, a closed Kinesis shard after a reshard)."""

    position: int
    watermark_us: int | None = None
    late: int = 0
    invalid: int = 0
    finished: bool = False


@dataclass(frozen=True)
class StreamState:
    """A view's processing state merged over its shards: the latest event time applied from any shard
    (µs), the refused counts summed, per shard the sequence number of the last record processed
    (``positions``), and each shard's own state (``shards``)."""

    watermark_us: int | None = None
    late: int = 0
    invalid: int = 0
    positions: dict[str, int] = field(default_factory=dict)
    shards: dict[str, ShardState] = field(default_factory=dict)

    @property
    def slowest_watermark_us(self) -> int | None:
        """The lowest watermark of the unfinished shards that have applied a record (None when none
        has): a finished shard can update no tile, so it holds no retention back."""
        marks = [
            s.watermark_us for s in self.shards.values() if s.watermark_us is not None and not s.finished
        ]
        return min(marks) if marks else None


def merged(shards: Mapping[str, ShardState]) -> StreamState:
    marks = [s.watermark_us for s in shards.values() if s.watermark_us is not None]
    return StreamState(
        watermark_us=max(marks) if marks else None,
        late=sum(s.late for s in shards.values()),
        invalid=sum(s.invalid for s in shards.values()),
        positions={name: s.position for name, s in shards.items()},
        shards=dict(shards),
    )


def shard_json(state: ShardState) -> bytes:
    """A shard's state as stored (the position as decimal text: Kinesis sequence numbers exceed 64 bits)."""
    data = {
        "position": str(state.position),
        "watermark_us": state.watermark_us,
        "late": state.late,
        "invalid": state.invalid,
    }
    if state.finished:
        data["finished"] = True
    return orjson.dumps(data)


def shard_from_json(blob: bytes | str) -> ShardState:
    data = orjson.loads(blob)
    return ShardState(
        int(data["position"]),
        data["watermark_us"],
        data["late"],
        data["invalid"],
        data.get("finished", False),
    )


class StreamStore(ABC):
    @abstractmethod
    def state(self, table_id: str) -> StreamState:
        """The committed state of the view stored as ``table_id``, merged over its shards (empty when
        never processed)."""

    @abstractmethod
    def commit_tiles(
        self,
        table_id: str,
        spec: TileSpec,
        events: Mapping[tuple[tuple, int], list[Event]],
        shards: Mapping[str, ShardState],
        retain_from: int | None,
    ) -> int:
        """Apply ``events`` (by entity key and interval index) to their tiles, rewrite the touched
        entities' online rows from their tiles from ``retain_from`` on (dropping older ones), and save
        the states of the batch's ``shards`` (only those), all at once. Returns the number of events the
        tiles did not hold yet."""

    @abstractmethod
    def commit_rows(
        self,
        table_id: str,
        rows: Mapping[tuple, tuple[int, list[Any]]],
        shards: Mapping[str, ShardState],
        ttl_seconds: int | None,
    ) -> int:
        """Write each entity's latest row unless the stored one is newer, and save the states of the
        batch's ``shards``, at once."""

    @abstractmethod
    def tiles(self, table_id: str, key: tuple) -> dict[int, dict[str, Any]]:
        """An entity's stored tiles by interval index (for inspection and tests)."""
