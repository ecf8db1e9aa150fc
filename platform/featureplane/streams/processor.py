"""The stream processing core: a batch of records in, the view's online state updated, a report out.

Every source adapter (the ingest log, Kinesis shards, a Lambda's event batch) hands ``process`` a
batch of ``StreamRecord`` s, each with its identity: a ``shard`` (a Kinesis shard, an ingest log
segment) and a ``sequence`` number that increases within the shard. Records of a shard arrive in
sequence order; a redelivery repeats records from some earlier position on. For each record the
processor

1. skips it if its shard's checkpoint is already past it (a record seen twice counts once);
2. applies the view's transformation (None drops the record);
3. checks the join keys and the event time, and refuses (counts and reports) records without them;
4. refuses, counts and reports events older than the watermark (the latest event time processed
   so far) minus ``allowed_lateness``: they are *late*;
5. adds the event to its entity's tile of its interval (aggregate views) or keeps it as the entity's
   row if it is the latest (plain views).

The store then writes the touched tiles, the entities' online rows, the watermark and the shards'
checkpoints (``streams.store``): on SQLite in one transaction, so a batch is applied entirely or not
at all. Each tile also remembers the highest sequence number per shard it holds, so a store that
cannot commit a batch at once (DynamoDB: one conditional UpdateItem per entity, then the checkpoints)
stays exact as well. Processing is deterministic given the committed state and the records, so a
batch applied again after a crash makes the same decisions (late or not) as the first time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from featureplane.compute.aggregation.online import iso_us
from featureplane.compute.aggregation.tiles import aggregates, input_columns
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.event_log import LoggedEvent, StreamEventLog
from featureplane.streams.store import StreamState, StreamStore
from featureplane.streams.tiles import Event, TileSpec
from featureplane.types import parse_type

EPOCH = datetime(1970, 1, 1)
MAX_REPORTED = 20  # refused records described per batch (the rest are only counted)


@dataclass(frozen=True)
class StreamRecord:
    """One record of a stream with its identity (``shard``, ``sequence``)."""

    shard: str
    sequence: int
    data: dict[str, Any]


@dataclass
class BatchResult:
    """What one batch did: records applied, skipped as already processed, dropped by the
    transformation, refused as late or invalid (with the first few reasons), and the watermark."""

    applied: int = 0
    duplicates: int = 0
    dropped: int = 0
    late: int = 0
    invalid: int = 0
    problems: list[str] = field(default_factory=list)
    watermark_us: int | None = None

    def describe(self) -> str:
        text = (
            f"{self.applied} applied, {self.duplicates} already processed, {self.dropped} dropped by the "
            f"transformation, {self.late} late, {self.invalid} invalid"
        )
        return text + "".join(f"\n  {p}" for p in self.problems)


def to_us(value: Any, what: str) -> int:
    """An event time (datetime, naive meaning UTC, or ISO-8601 text) in microseconds since the epoch."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what} {value!r} is not an ISO-8601 time") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a time, got {value!r}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return (value - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class StreamProcessor:
    """Applies batches of records to one stream feature view's online state in ``store``.

    ``transform`` is the view's row-level transformation (None: records are used as they are);
    ``source_timestamp`` the source's event-time field, given to the transformation as a datetime."""

    def __init__(
        self,
        view: FeatureViewSpec,
        table_id: str,
        store: StreamStore,
        transform: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
        source_timestamp: str | None = None,
        event_log: StreamEventLog | None = None,
    ) -> None:
        if not view.is_stream:
            raise ValueError(f"feature view {view.name!r} is a {view.kind} view, not a stream feature view")
        self.view = view
        self.table_id = table_id
        self.store = store
        self.transform = transform
        self.source_timestamp = source_timestamp or view.timestamp_field
        self.lateness_us = (view.allowed_lateness_seconds or 0) * 1_000_000
        self.aggregate = view.is_aggregate
        self.tiles = TileSpec(view) if self.aggregate else None
        self.step = (view.aggregation_interval_seconds or 1) * 1_000_000
        self.longest = max((f.window_seconds or 0 for f in aggregates(view)), default=0) * 1_000_000
        columns = (
            input_columns(view) if self.aggregate else {f.column or f.name: f.type for f in view.features}
        )
        self.columns = {c: t.name for c, t in columns.items()}
        self.keys = [(k.name, parse_type(k.dtype).name) for k in view.join_keys]
        self.event_log = event_log
        self._boundary: int | None = None  # the hand-over boundary, once known (event_log)
        self._in_sync = False  # whether the event log holds nothing after the online checkpoints

    def state(self) -> StreamState:
        return self.store.state(self.table_id)

    def process(self, records: Sequence[StreamRecord]) -> BatchResult:
        state = self.store.state(self.table_id)
        positions = dict(state.positions)
        watermark = state.watermark_us
        result = BatchResult()
        logged: list[LoggedEvent] = []
        logged_before = self._logged_after(state.positions)
        tiles: dict[tuple[tuple, int], list[Event]] = {}
        rows: dict[tuple, tuple[int, list[Any]]] = {}
        for record in records:
            done = positions.get(record.shard)
            if done is not None and record.sequence <= done:
                result.duplicates += 1
                continue
            positions[record.shard] = record.sequence
            try:
                row = self._row(record)
            except ValueError as exc:
                result.invalid += 1
                self._report(result, record, str(exc))
                continue
            if row is None:
                result.dropped += 1
                continue
            key, ts, values = row
            if (record.shard, record.sequence) in logged_before:
                pass  # applied by an attempt that died before its online commit: apply it again
            elif watermark is not None and ts < watermark - self.lateness_us:
                result.late += 1
                self._report(
                    result,
                    record,
                    f"late: event time {from_us(ts).isoformat()} is more than allowed_lateness "
                    f"{timedelta(microseconds=self.lateness_us)} before the latest event, "
                    f"{from_us(watermark).isoformat()}",
                )
                continue
            elif self.event_log is not None and ts < self._handover(ts):
                result.late += 1
                self._report(
                    result,
                    record,
                    f"before the hand-over: event time {from_us(ts).isoformat()} is before "
                    f"{from_us(self._handover(ts)).isoformat()}, which the batch backfill covers",
                )
                continue
            watermark = ts if watermark is None else max(watermark, ts)
            result.applied += 1
            logged.append(LoggedEvent(key, ts, values, record.shard, record.sequence))
            if self.aggregate:
                tiles.setdefault((key, ts // self.step), []).append(
                    Event(ts, values, record.shard, record.sequence)
                )
            elif key not in rows or ts >= rows[key][0]:
                rows[key] = (ts, [self._stored(f.column or f.name, values) for f in self.view.features])
        new_state = StreamState(
            watermark_us=watermark,
            late=state.late + result.late,
            invalid=state.invalid + result.invalid,
            positions=positions,
        )
        if self.event_log is not None:  # before the online commit: see offline_stores.event_log
            self.event_log.append(logged, to_us(datetime.now(UTC), "processing time"))
            self._in_sync = False
        if self.aggregate:
            self.store.commit_tiles(self.table_id, self.tiles, tiles, new_state, self.retain_from(watermark))  # type: ignore[arg-type]
        else:
            self.store.commit_rows(self.table_id, rows, new_state, self.view.ttl_seconds)
        self._in_sync = True
        result.watermark_us = watermark
        return result

    def _logged_after(self, positions: dict[str, int]) -> set[tuple[str, int]]:
        """The logged records after the online checkpoints: those an attempt appended offline and
        died before committing online. Redelivered, they are applied whatever the watermark says
        now (a redelivery may interleave shards otherwise), so both sides hold the same events."""
        if self.event_log is None or self._in_sync:
            return set()
        found = self.event_log.logged_after(positions)
        self._in_sync = not found
        return found

    def _handover(self, ts: int) -> int:
        """The hand-over boundary; the first event applied without one fixes it at its time minus
        ``allowed_lateness``, aligned down to the interval (every earlier event is late anyway)."""
        if self._boundary is None:
            assert self.event_log is not None
            known = self.event_log.handover().boundary_us
            proposed = (ts - self.lateness_us) // self.step * self.step
            self._boundary = known if known is not None else self.event_log.claim_boundary(proposed)
        return self._boundary

    def retain_from(self, watermark: int | None) -> int | None:
        """The first interval index still needed: earlier tiles can neither be updated (their events
        would be late) nor fall in a window ending at or after the watermark."""
        if watermark is None:
            return None
        return (watermark - self.lateness_us - self.longest) // self.step

    def _stored(self, column: str, values: dict[str, Any]) -> Any:
        """A plain view's value as the online store keeps it (times as ISO-8601 text)."""
        value = values.get(column)
        return iso_us(value) if value is not None and self.columns[column] == "timestamp" else value

    def _report(self, result: BatchResult, record: StreamRecord, message: str) -> None:
        if len(result.problems) < MAX_REPORTED:
            result.problems.append(f"record {record.shard}:{record.sequence}: {message}")

    def _row(self, record: StreamRecord) -> tuple[tuple, int, dict[str, Any]] | None:
        if not isinstance(record.data, dict):
            raise ValueError(f"is not a JSON object of the source's fields: {record.data!r:.80}")
        data = dict(record.data)
        if self.source_timestamp not in data or data[self.source_timestamp] is None:
            raise ValueError(f"has no event time {self.source_timestamp!r}")
        data[self.source_timestamp] = from_us(to_us(data[self.source_timestamp], self.source_timestamp))
        if self.transform is not None:
            try:
                out = self.transform(data)
            except Exception as exc:
                raise ValueError(f"the transformation failed: {exc!r}") from exc
            if out is None:
                return None
            if not isinstance(out, dict):
                raise ValueError(f"the transformation returned {type(out).__name__}, not a dict or None")
            data = out
        ts_field = self.view.timestamp_field
        if data.get(ts_field) is None:
            raise ValueError(f"the row has no event time {ts_field!r}")
        ts = to_us(data[ts_field], ts_field)
        key = []
        for name, dtype in self.keys:
            value = data.get(name)
            if value is None:
                raise ValueError(f"the row has no join key {name!r}")
            key.append(_checked(value, dtype, f"join key {name!r}"))
        values = {c: _checked(data.get(c), t, f"column {c!r}") for c, t in self.columns.items()}
        return tuple(key), ts, values


def _checked(value: Any, dtype: str, what: str) -> Any:
    """A value in the form tiles and rows store it (int64 ints, float64 floats, timestamps as µs for
    aggregates), or ValueError naming it."""
    if value is None:
        return None
    if dtype == "int64":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} must be an integer, got {value!r}")
        return value
    if dtype == "float64":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{what} must be a finite number, got {value!r}")
        return float(value)
    if dtype == "string":
        if not isinstance(value, str):
            raise ValueError(f"{what} must be a string, got {value!r}")
        return value
    if dtype == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{what} must be true or false, got {value!r}")
        return value
    if dtype == "timestamp":
        return to_us(value, what)
    return value
