"""Where the stream processor keeps a view's state: tiles (or latest rows), online rows, watermark
and checkpoints. One interface; one module per backend (``streams.sqlite``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from featureplane.streams.tiles import Event, TileSpec


@dataclass(frozen=True)
class StreamState:
    """A view's processing state: the latest event time applied (µs), how many records were refused
    as late or invalid so far, and per shard the sequence number of the last record processed."""

    watermark_us: int | None = None
    late: int = 0
    invalid: int = 0
    positions: dict[str, int] = field(default_factory=dict)


def state_json(state: StreamState) -> bytes:
    """The state as stored (positions as decimal text: Kinesis sequence numbers exceed 64 bits)."""
    return orjson.dumps(
        {
            "watermark_us": state.watermark_us,
            "late": state.late,
            "invalid": state.invalid,
            "positions": {shard: str(n) for shard, n in state.positions.items()},
        }
    )


def state_from_json(blob: bytes | str) -> StreamState:
    data = orjson.loads(blob)
    positions = {shard: int(n) for shard, n in data["positions"].items()}
    return StreamState(data["watermark_us"], data["late"], data["invalid"], positions)


class StreamStore(ABC):
    @abstractmethod
    def state(self, table_id: str) -> StreamState:
        """The committed state of the view stored as ``table_id`` (empty when never processed)."""

    @abstractmethod
    def commit_tiles(
        self,
        table_id: str,
        spec: TileSpec,
        events: Mapping[tuple[tuple, int], list[Event]],
        state: StreamState,
        retain_from: int | None,
    ) -> int:
        """Apply ``events`` (by entity key and interval index) to their tiles, rewrite the touched
        entities' online rows from their tiles from ``retain_from`` on (dropping older ones), and save
        ``state``, all at once. Returns the number of events the tiles did not hold yet."""

    @abstractmethod
    def commit_rows(
        self,
        table_id: str,
        rows: Mapping[tuple, tuple[int, list[Any]]],
        state: StreamState,
        ttl_seconds: int | None,
    ) -> int:
        """Write each entity's latest row unless the stored one is newer, and save ``state``, at once."""

    @abstractmethod
    def tiles(self, table_id: str, key: tuple) -> dict[int, dict[str, Any]]:
        """An entity's stored tiles by interval index (for inspection and tests)."""
