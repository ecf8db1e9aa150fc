"""A stream feature view's offline event log: every event the stream processor applied, for training.

The log is the view's offline table (``table_id``). Each row is one applied event after the
transformation: the join keys, the event time, the columns the features read, and its identity
(``_shard``, ``_sequence`` as decimal text: Kinesis sequence numbers exceed 64 bits) with the time it
was processed. Records dropped by the transformation, invalid or late are not in it. Rows written by
the batch backfill (from the source's ``batch_config``) have ``_shard`` ``batch`` and no sequence.

Exactly once: the processor appends a batch's events *before* it commits the batch online. A crash
between the two leaves events in the log that the online store does not hold yet; the restarted
processor receives the same records again (its checkpoints did not move), applies them online and
appends them again. Readers therefore keep one row per identity (``deduped_events_sql``), and a
stream record's identity is unique, so the log read equals the applied events exactly once.

The hand-over boundary (an interval-aligned time, ``Handover``) splits the log between the two
writers: the backfill writes only events before it, the stream processor applies only events at or
after it, so no interval is counted twice or missed. Whichever writer comes first fixes it: the
backfill, at the end of the history it wrote (a later first stream event moves it there); otherwise
the processor, at its first applied event's time minus ``allowed_lateness``, aligned down to the
interval, so that it never refuses an event it would otherwise apply. Stream events before the
boundary are refused (counted as late, with their reason): the backfill holds them. When the stream
starts first, events of ``[boundary, first event)`` that its source never delivers (they happened
before it started) are in neither side: run the first backfill before the stream, or start the
stream's source early enough. Standard library only: the processor imports this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureSpec, FeatureViewSpec

if TYPE_CHECKING:
    import pyarrow as pa


SHARD = "_shard"
SEQUENCE = "_sequence"
PROCESSED_AT = "_processed_at"
BATCH_SHARD = "batch"


@dataclass(frozen=True)
class LoggedEvent:
    """One applied event: its entity key, event time (µs), input column values (timestamps as µs)
    and identity."""

    key: tuple
    ts: int
    values: dict[str, Any]
    shard: str
    sequence: int


@dataclass(frozen=True)
class Handover:
    """Where the stream takes over from the backfill: ``boundary_us`` (None until fixed) and how far
    the backfill has written history (``backfilled_through_us``)."""

    boundary_us: int | None = None
    backfilled_through_us: int | None = None


def logged_columns(view: FeatureViewSpec) -> dict[str, str]:
    """The columns an event row keeps beyond the join keys and event time, with their type names."""
    from featureplane.compute.aggregation.tiles import input_columns

    if view.is_aggregate:
        return {c: t.name for c, t in input_columns(view).items()}
    return {f.column or f.name: f.type.name for f in view.features}


def event_view(view: FeatureViewSpec) -> FeatureViewSpec:
    """The spec of the log's rows as a plain table (join keys, event time, logged columns)."""
    import dataclasses

    features = [FeatureSpec(name=c, dtype=t, column=c) for c, t in logged_columns(view).items()]
    return dataclasses.replace(view, kind="stream", features=features, ttl_seconds=None)


def log_table_view(view: FeatureViewSpec) -> FeatureViewSpec:
    """The log as a plain table spec, identity and processing time included (for stores that write
    any plain table, e.g. Snowflake)."""
    import dataclasses

    extra = [
        FeatureSpec(name=SHARD, dtype="string"),
        FeatureSpec(name=SEQUENCE, dtype="string"),
        FeatureSpec(name=PROCESSED_AT, dtype="timestamp"),
    ]
    logged = event_view(view)
    return dataclasses.replace(logged, features=[*logged.features, *extra])


def event_schema(view: FeatureViewSpec) -> pa.Schema:
    """The log table's Arrow schema: join keys, event time, logged columns, identity, processing time."""
    import pyarrow as pa

    from featureplane.types import Timestamp, parse_type, to_arrow

    fields = [pa.field(k.name, to_arrow(k.type)) for k in view.join_keys]
    fields.append(pa.field(view.timestamp_field, to_arrow(Timestamp)))
    fields += [pa.field(c, to_arrow(parse_type(t))) for c, t in logged_columns(view).items()]
    fields += [
        pa.field(SHARD, pa.string()),
        pa.field(SEQUENCE, pa.string()),
        pa.field(PROCESSED_AT, to_arrow(Timestamp)),
    ]
    return pa.schema(fields)


def deduped_events_sql(view: FeatureViewSpec, relation: str) -> str:
    """The log's events once each: one row per stream identity (the earliest processed), every
    backfilled row. Columns: join keys, event time, logged columns."""
    columns = [*view.join_key_names, view.timestamp_field, *logged_columns(view)]
    select = ", ".join(_q(c) for c in columns)
    return (
        f"SELECT {select} FROM {relation} WHERE {_q(SEQUENCE)} IS NULL UNION ALL "
        f"SELECT {select} FROM {relation} WHERE {_q(SEQUENCE)} IS NOT NULL "
        f"QUALIFY row_number() OVER (PARTITION BY {_q(SHARD)}, {_q(SEQUENCE)} ORDER BY {_q(PROCESSED_AT)}) = 1"
    )


def plain_rows_sql(view: FeatureViewSpec, events: str) -> str:
    """A plain stream view's rows from its events (``deduped_events_sql``): join keys, event time and
    each feature under its own name (read from the logged column it names). Of an entity's events at
    one time only the one with the greatest values is a row (as a batch view's latest row is chosen),
    so every store's point-in-time join and ranges pick the same."""
    keys = [_q(k) for k in view.join_key_names]
    columns = [*keys, _q(view.timestamp_field)]
    columns += [f"{_q(f.column or f.name)} AS {_q(f.name)}" for f in view.features]
    order = [f"{_q(f.column or f.name)} DESC NULLS LAST" for f in view.features if not f.type.is_array]
    pick = f"PARTITION BY {', '.join(keys)}, {_q(view.timestamp_field)} ORDER BY {', '.join(order) or '1'}"
    return f"SELECT {', '.join(columns)} FROM {events} QUALIFY row_number() OVER ({pick}) = 1"


def handover_path(table: Path) -> Path:
    """Where a file-based backend keeps the hand-over state: beside the table directory (not in it:
    Delta's vacuum removes files a table does not know)."""
    return table.parent / f"{table.name}.handover.json"


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class StreamEventLog(ABC):
    """One stream view's event log (bound to its ``table_id`` and spec)."""

    @abstractmethod
    def append(self, events: Sequence[LoggedEvent], processed_at_us: int) -> None:
        """Append a batch's applied events in one commit (an empty batch writes nothing)."""

    def append_batches(self, batches: Sequence[tuple[Sequence[LoggedEvent], int]]) -> None:
        """Append batches of events, each with its processing time (a staged log being loaded: see
        ``streams.staging``); one commit where the backend can, else one per batch."""
        for events, processed_at_us in batches:
            self.append(events, processed_at_us)

    @abstractmethod
    def logged_after(self, positions: dict[str, int]) -> set[tuple[str, int]]:
        """The identities of logged stream events whose sequence is after ``positions`` (per shard;
        every event of a shard not in it)."""

    @abstractmethod
    def handover(self) -> Handover:
        """The hand-over state as stored."""

    @abstractmethod
    def claim_boundary(self, proposed_us: int) -> int:
        """Fix the boundary at ``proposed_us`` (or at the end of the backfilled history, if later)
        unless it is fixed already; return the boundary in force. Atomic across processes."""

    @abstractmethod
    def reserve_backfill(self, start_us: int, end_us: int) -> int:
        """Before the backfill writes ``[start, end)``: the end it may write to (the boundary when
        fixed, else ``end_us``, which is then recorded as backfilled so the boundary cannot fall
        before it). Atomic across processes."""

    @abstractmethod
    def write_backfill(self, start_us: int, end_us: int, rows: pa.Table) -> int:
        """Replace the backfilled rows of ``[start, end)`` with ``rows`` (join keys, event time, logged
        columns) in one commit; return the table's version."""

    @abstractmethod
    def events(self) -> pa.Table:
        """Every logged event once (``deduped_events_sql``), sorted by keys and time."""


EPOCH = datetime(1970, 1, 1)


def event_time(us: int) -> datetime:
    """A time in microseconds since the epoch as the log stores it (a naive UTC datetime)."""
    return EPOCH + timedelta(microseconds=us)


def logged_rows(
    view: FeatureViewSpec, columns: dict[str, str], events: Sequence[LoggedEvent], processed_at_us: int
) -> list[dict[str, Any]]:
    """The event log's rows for ``events`` (both backends write these)."""
    names = [k.name for k in view.join_keys]
    times = {c for c, t in columns.items() if t == "timestamp"}
    processed = event_time(processed_at_us)
    rows = []
    for event in events:
        row: dict[str, Any] = dict(zip(names, event.key, strict=True))
        row[view.timestamp_field] = event_time(event.ts)
        for column in columns:
            value = event.values.get(column)
            row[column] = event_time(value) if column in times and value is not None else value
        row[SHARD] = event.shard
        row[SEQUENCE] = str(event.sequence)
        row[PROCESSED_AT] = processed
        rows.append(row)
    return rows
