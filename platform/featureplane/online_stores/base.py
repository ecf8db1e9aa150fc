"""The online store interface.

Rows are addressed by ``table_id`` (``<workspace>/<view>/g<generation>``) and the entity's join-key
values. Each row holds the event timestamp (microseconds since the epoch, UTC) and the view's feature
values in declared order. A lookup of any number of (table, key) pairs is one round trip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson


class OnlineRow(NamedTuple):
    key: tuple
    event_ts: int
    values: Sequence[Any]


class OnlineValue(NamedTuple):
    event_ts: int
    values: list[Any]


class EncodedRow(NamedTuple):
    """A row already in storage form: ``encode_key`` text, event time (µs), ``encode_values`` JSON."""

    entity_key: str
    event_ts: int
    blob: bytes


def encode_key(key: Sequence[Any]) -> str:
    """The canonical text of a join-key tuple, identical on the write and read paths."""
    return orjson.dumps(key if isinstance(key, tuple | list) else list(key)).decode()


def encode_keys(keys: Sequence[tuple]) -> list[str]:
    """``encode_key`` of each key. Keys of one plain string each (no quote, backslash or control
    character, so that JSON writes them as they are) are written directly rather than one by one."""
    try:
        joined = "".join([value for (value,) in keys])
    except (TypeError, ValueError):  # not all keys are one string
        return [encode_key(k) for k in keys]
    if '"' in joined or "\\" in joined or not joined.isprintable():
        return [encode_key(k) for k in keys]
    return ['["' + value + '"]' for (value,) in keys]


def expiry_cutoff_us(ttl: int | timedelta, now: datetime | None = None) -> int:
    """The event time (µs since the epoch) at or before which a row is expired at ``now`` (naive UTC or
    aware; the current time when None): the same cutoff reads apply (a row is served only when its
    event time is after ``now - ttl``)."""
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if seconds is None or seconds <= 0:
        raise ValueError(f"an expiry sweep needs a positive ttl, got {ttl!r}")
    moment = now or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1) - int(seconds * 1_000_000)


def encode_values(values: Sequence[Any]) -> bytes:
    return orjson.dumps(list(values))


def decode_values(blob: bytes) -> list[Any]:
    return orjson.loads(blob)


class OnlineStore(ABC):
    @abstractmethod
    def write(
        self,
        table_id: str,
        rows: Iterable[OnlineRow],
        *,
        only_if_newer: bool = False,
        ttl_seconds: int | None = None,
    ) -> int:
        """Upsert rows; return how many were written. With ``only_if_newer`` a row never replaces one with
        a later event timestamp (ingest); without it, rows are set as given (materialization, which writes
        the offline store's exact latest values). Unchanged rows are not rewritten where the store can
        tell cheaply. ``ttl_seconds`` is the view's ttl: stores that expire rows by themselves (DynamoDB
        TTL) use it; reads enforce ttl either way."""

    def write_encoded(self, table_id: str, rows: Iterable[EncodedRow]) -> int:
        """Set rows given in storage form (the bulk path of materialization). Stores that keep the
        JSON text as it is override this to skip decoding."""
        return self.write(
            table_id,
            (OnlineRow(tuple(orjson.loads(r.entity_key)), r.event_ts, decode_values(r.blob)) for r in rows),
        )

    @abstractmethod
    def delete(self, table_id: str, keys: Iterable[tuple]) -> int: ...

    def entity_keys(self, table_id: str) -> Iterator[str]:
        """Every entity key (``encode_key`` text) of ``table_id``: a full scan, for removing vanished
        keys after a full sync."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")

    @abstractmethod
    def sweep_expired(self, table_id: str, ttl: int | timedelta, now: datetime | None = None) -> int:
        """Delete the rows of ``table_id`` whose event time is at or before ``now - ttl`` (rows that
        reads no longer serve); return how many were deleted. A row written meanwhile with a later
        event time is kept."""

    def row_count(self, table_id: str) -> int | None:
        """How many rows ``table_id`` holds, where the store can count them cheaply (None otherwise)."""
        return None

    @abstractmethod
    def read(self, requests: Sequence[tuple[str, tuple]]) -> list[OnlineValue | None]:
        """Values for each (table_id, key), in request order; None where there is no row."""

    def read_entities(self, table_ids: Sequence[str], keys: Sequence[tuple]) -> list[OnlineValue | None]:
        """Each table's row for each key, entity-major (the first key's tables in order, then the next
        key's): ``read`` of those pairs. A lookup's views keyed by its whole join key read this way;
        stores override it where naming every pair costs more than naming the keys once."""
        return self.read([(table_id, key) for key in keys for table_id in table_ids])

    def read_encoded(
        self,
        table_ids: Sequence[str],
        keys: Sequence[tuple],
        fresh_after: Sequence[int | None] | None = None,
    ) -> list[tuple[bytes | None, ...]]:
        """Each key's rows of ``table_ids`` in storage form: one tuple per key holding each table's
        ``encode_values`` JSON in order, None where there is no row or where the row's event time is
        not after ``fresh_after[i]`` (the table's ttl cutoff; None: no cutoff). The lookup API's
        values-only path reads this way and decodes all rows in one pass; stores that keep the JSON
        as stored override it to skip decoding and encoding again."""
        rows = self.read_entities(table_ids, keys)
        cutoffs = list(fresh_after or [None] * len(table_ids))
        width = len(table_ids)
        return [
            tuple(
                None
                if row is None or (cutoff is not None and row.event_ts <= cutoff)
                else encode_values(row.values)
                for row, cutoff in zip(rows[first : first + width], cutoffs, strict=True)
            )
            for first in range(0, len(rows), width)
        ]

    @abstractmethod
    def sync_marker(self, table_id: str) -> int | None:
        """The offline table version the online rows of ``table_id`` were last synced to."""

    @abstractmethod
    def set_sync_marker(self, table_id: str, version: int | None) -> None: ...

    @abstractmethod
    def drop(self, table_id: str) -> None:
        """Delete every row of a table (old generations, deleted views and workspaces)."""

    def drop_workspace(self, workspace: str, table_ids: Iterable[str]) -> None:
        """Delete all rows of a workspace (every generation where the backend can find them)."""
        for table_id in table_ids:
            self.drop(table_id)

    def prepare(self, table_ids: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """Create what the tables need before they are written (DynamoDB tables at apply)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> dict[str, Any]:
        return {}
