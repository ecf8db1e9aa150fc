"""The stream processing core: a batch of records in, the view's online state updated, a report out.

Every source adapter (the ingest log, Kinesis shards, a Lambda's event batch) hands ``process`` a
batch of ``StreamRecord`` s, each with its identity: a ``shard`` (a Kinesis shard, an ingest log
segment) and a ``sequence`` number that increases within the shard. Records of a shard arrive in
sequence order; a redelivery repeats records from some earlier position on. For each record the
processor

1. skips it if its shard's checkpoint is already past it (a record seen twice counts once);
2. applies the view's transformation (None drops the record; ``mode="pandas"``: to the batch's
   records as one DataFrame, ``streams.pandas_mode``);
3. checks the join keys and the event time, and refuses (counts and reports) records without them;
4. refuses, counts and reports events older than their shard's watermark (the latest event time
   applied from that shard so far) minus ``allowed_lateness``: they are *late*. A shard's first
   events, which have no watermark yet, are late only if their interval's tiles are already past
   retention (see ``retain_from``);
5. adds the event to its entity's tile of its interval (aggregate views) or keeps it as the entity's
   row if it is the latest (plain views).

The store then writes the touched tiles, the entities' online rows and the states (checkpoint,
watermark, refused counts) of the batch's shards only (``streams.store``): on SQLite in one
transaction, so a batch is applied entirely or not at all. Each tile also remembers the highest
sequence number per shard it holds, so a store that cannot commit a batch at once (DynamoDB: one
conditional UpdateItem per entity, then the shard states) stays exact as well. Whether a record is
late depends only on its own shard's committed state and records, not on how far other shards have
been read, so a batch applied again after a crash makes the same decisions as the first time, and
processors of different shards can run concurrently (one Lambda per Kinesis shard).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from featureplane.compute.aggregation.online import iso_us
from featureplane.compute.aggregation.tiles import aggregates, input_columns
from featureplane.definitions.specs import FeatureViewSpec
from featureplane.offline_stores.event_log import LoggedEvent, StreamEventLog
from featureplane.streams.store import ShardState, StreamState, StreamStore, merged
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

    ``transform`` is the view's transformation (None: records are used as they are): a function of one
    record's dict (``mode="python"``) or of the batch's DataFrame (``mode="pandas"``);
    ``source_timestamp`` the source's event-time field, given to the transformation as a datetime."""

    def __init__(
        self,
        view: FeatureViewSpec,
        table_id: str,
        store: StreamStore,
        transform: Callable[[Any], Any] | None = None,
        source_timestamp: str | None = None,
        event_log: StreamEventLog | None = None,
    ) -> None:
        if not view.is_stream:
            raise ValueError(f"feature view {view.name!r} is a {view.kind} view, not a stream feature view")
        self.view = view
        self.table_id = table_id
        self.store = store
        self.transform = transform
        # mode="pandas": the transformation takes the batch's records as a DataFrame (streams.pandas_mode)
        self.pandas = view.transformation is not None and view.transformation.mode == "pandas"
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
        shards = dict(state.shards)
        floor = self.retain_from(state)  # tiles before it may be dropped already
        result = BatchResult()
        logged: list[LoggedEvent] = []
        logged_before = self._logged_after(state.positions)
        tiles: dict[tuple[tuple, int], list[Event]] = {}
        rows: dict[tuple, tuple[int, list[Any]]] = {}
        touched: set[str] = set()
        fresh = []
        done = {name: shard.position for name, shard in shards.items()}
        for record in records:
            if record.shard in done and record.sequence <= done[record.shard]:
                result.duplicates += 1
                continue
            done[record.shard] = record.sequence
            fresh.append(record)
        for record, row in zip(fresh, self._rows(fresh), strict=True):
            shard = shards.get(record.shard)
            watermark = shard.watermark_us if shard is not None else None
            late = shard.late if shard is not None else 0
            invalid = shard.invalid if shard is not None else 0
            touched.add(record.shard)
            if isinstance(row, ValueError):
                result.invalid += 1
                shards[record.shard] = ShardState(record.sequence, watermark, late, invalid + 1)
                self._report(result, record, str(row))
                continue
            if row is None:
                result.dropped += 1
                shards[record.shard] = ShardState(record.sequence, watermark, late, invalid)
                continue
            key, ts, values = row
            if (record.shard, record.sequence) in logged_before:
                reason = None  # applied by an attempt that died before its online commit: apply it again
            else:
                reason = self._lateness(ts, watermark, floor)
            if reason is None and self.event_log is not None and ts < self._handover(ts):
                reason = (
                    f"before the hand-over: event time {from_us(ts).isoformat()} is before "
                    f"{from_us(self._handover(ts)).isoformat()}, which the batch backfill covers"
                )
            if reason is not None:
                result.late += 1
                shards[record.shard] = ShardState(record.sequence, watermark, late + 1, invalid)
                self._report(result, record, reason)
                continue
            watermark = ts if watermark is None else max(watermark, ts)
            shards[record.shard] = ShardState(record.sequence, watermark, late, invalid)
            result.applied += 1
            logged.append(LoggedEvent(key, ts, values, record.shard, record.sequence))
            if self.aggregate:
                tiles.setdefault((key, ts // self.step), []).append(
                    Event(ts, values, record.shard, record.sequence)
                )
            elif key not in rows or ts >= rows[key][0]:
                rows[key] = (ts, [self._stored(f.column or f.name, values) for f in self.view.features])
        mine = {name: shards[name] for name in sorted(touched)}
        after = merged(shards)
        if self.event_log is not None and logged:  # before the online commit: see offline_stores.event_log
            self.event_log.append(logged, to_us(datetime.now(UTC), "processing time"))
            self._in_sync = False
        if mine:
            if self.aggregate:
                self.store.commit_tiles(self.table_id, self.tiles, tiles, mine, self.retain_from(after))  # type: ignore[arg-type]
            else:
                self.store.commit_rows(self.table_id, rows, mine, self.view.ttl_seconds)
        # In sync once no logged record is left after the new checkpoints: a dead attempt may have
        # logged a longer batch than this one, and its tail must be applied again too.
        self._in_sync = not any(seq > done.get(shard, -1) for shard, seq in logged_before)
        result.watermark_us = after.watermark_us
        return result

    def finish_shards(self, names: Sequence[str]) -> list[str]:
        """Mark the shards ``names``, read to their end by the caller, as finished, so that their
        watermarks stop holding tile retention back; returns those it marked (shards it has no state
        for, or already finished, are left alone). Call it only for shards that will never deliver
        another record, after their last records were processed."""
        state = self.store.state(self.table_id)
        mine = {
            name: replace(state.shards[name], finished=True)
            for name in sorted(set(names))
            if name in state.shards and not state.shards[name].finished
        }
        if not mine:
            return []
        after = merged({**state.shards, **mine})
        if self.aggregate:
            self.store.commit_tiles(self.table_id, self.tiles, {}, mine, self.retain_from(after))  # type: ignore[arg-type]
        else:
            self.store.commit_rows(self.table_id, {}, mine, self.view.ttl_seconds)
        return list(mine)

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

    def _lateness(self, ts: int, watermark: int | None, floor: int | None) -> str | None:
        """Why an event at ``ts`` is late for its shard (None if it is not)."""
        if watermark is not None and ts < watermark - self.lateness_us:
            return (
                f"late: event time {from_us(ts).isoformat()} is more than allowed_lateness "
                f"{timedelta(microseconds=self.lateness_us)} before the latest event of its shard, "
                f"{from_us(watermark).isoformat()}"
            )
        if floor is not None and ts // self.step < floor:
            return (
                f"late: event time {from_us(ts).isoformat()} is in an interval whose tiles are past "
                f"retention (before {from_us(floor * self.step).isoformat()}, set by the slowest shard)"
            )
        return None

    def retain_from(self, state: StreamState) -> int | None:
        """The first interval index still needed (aggregate views). Every shard's records are late
        before its own watermark minus ``allowed_lateness``, and lookups read windows ending at or
        after that, so tiles before the *slowest* shard's watermark minus the lateness and the longest
        window can neither be updated by any shard seen so far nor be read. A lagging shard keeps the
        tiles it can still update."""
        if not self.aggregate:
            return None
        slowest = state.slowest_watermark_us
        if slowest is None:
            return None
        return (slowest - self.lateness_us - self.longest) // self.step

    def _stored(self, column: str, values: dict[str, Any]) -> Any:
        """A plain view's value as the online store keeps it (times as ISO-8601 text)."""
        value = values.get(column)
        return iso_us(value) if value is not None and self.columns[column] == "timestamp" else value

    def _report(self, result: BatchResult, record: StreamRecord, message: str) -> None:
        if len(result.problems) < MAX_REPORTED:
            result.problems.append(f"record {record.shard}:{record.sequence}: {message}")

    def _rows(
        self, records: Sequence[StreamRecord]
    ) -> list[tuple[tuple, int, dict[str, Any]] | ValueError | None]:
        """Each record's row (entity key, event time, input column values), None if the
        transformation dropped it, or the ValueError that refuses it."""
        out: list[Any] = [None] * len(records)
        inputs = []
        for i, record in enumerate(records):
            try:
                inputs.append((i, self._input(record)))
            except ValueError as exc:
                out[i] = exc
        if self.transform is None:
            transformed: dict[int, Any] = dict(inputs)
        elif self.pandas:
            from featureplane.streams.pandas_mode import transform_batch

            # Rows are labelled by their record's identity, so rows renumbered by the function are
            # recognised as not being its input's.
            labels = {f"{records[i].shard}:{records[i].sequence}": i for i, _ in inputs}
            frame_rows = transform_batch(
                self.transform, [(label, data) for label, (_, data) in zip(labels, inputs, strict=True)]
            )
            transformed = {labels[label]: row for label, row in frame_rows.items()}
        else:
            transformed = {i: self._transformed(data) for i, data in inputs}
        for i, data in transformed.items():
            if data is None or isinstance(data, ValueError):
                out[i] = data
                continue
            try:
                out[i] = self._output(data)
            except ValueError as exc:
                out[i] = exc
        return out

    def _input(self, record: StreamRecord) -> dict[str, Any]:
        """The record as the transformation takes it (its event time as a naive UTC datetime)."""
        if not isinstance(record.data, dict):
            raise ValueError(f"is not a JSON object of the source's fields: {record.data!r:.80}")
        data = dict(record.data)
        if self.source_timestamp not in data or data[self.source_timestamp] is None:
            raise ValueError(f"has no event time {self.source_timestamp!r}")
        data[self.source_timestamp] = from_us(to_us(data[self.source_timestamp], self.source_timestamp))
        return data

    def _transformed(self, data: dict[str, Any]) -> dict[str, Any] | ValueError | None:
        try:
            out = self.transform(data)  # type: ignore[misc]
        except Exception as exc:
            return ValueError(f"the transformation failed: {exc!r}")
        if out is not None and not isinstance(out, dict):
            return ValueError(f"the transformation returned {type(out).__name__}, not a dict or None")
        return out

    def _output(self, data: dict[str, Any]) -> tuple[tuple, int, dict[str, Any]]:
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
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{what} is out of the int64 range: {value}")
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
