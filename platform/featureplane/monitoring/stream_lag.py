"""Stream lag: how far a stream feature view's processor is behind its source, per shard.

It is measured from the checkpoints the processor committed (``StreamStore.state(table_id)``) and the
source itself, per shard (a Kinesis shard; an ingest log segment):

- *events behind*: the source's records after the shard's checkpoint, counted up to
  ``max_records`` per shard (and, in the ingest log, within ``MAX_BYTES`` of the checkpoint); past
  that the count is a lower bound (``exact`` is False). The ingest log also gives the exact number of
  bytes after the checkpoint.
- *oldest unprocessed*: the arrival time of the first record after the checkpoint. In the ingest log,
  when its request was appended (its line's ``received_us``; a line written before lines carried it
  counts from its segment's creation, which is earlier, so such an age errs long); in Kinesis, the
  record's ``ApproximateArrivalTimestamp``. Kinesis shards also report ``MillisBehindLatest``.
- *last processed*: the arrival time of the record at the checkpoint (the last one committed), while
  the source still holds it.

A view's lag is ``now - oldest unprocessed`` over its shards, zero when nothing waits: a processor
that stopped while nothing arrives does not lag, and one that stopped while records arrive lags by
the age of the first one waiting. It is *lagging* once that passes its bound
(``monitoring.stream_lag``). A view whose lag cannot be measured (its stream is gone, its store is
unreachable) fails too, with the reason.

The work per shard is bounded, so a measurement every minute is cheap: the ingest log skips sealed
segments the view has consumed and reads at most ``MAX_BYTES`` from a checkpoint; a Kinesis shard
costs one GetShardIterator and at most ``MAX_CALLS`` GetRecords calls of ``MAX_GET`` records (a shard
allows five reads and 2 MB a second, shared with the processor), so Kinesis counts stop at 3,000
records per shard whatever ``max_records`` says.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec, SourceSpec
from featureplane.ingest.log import IngestLog, consumed_marker, ingest_log_root, read_segment
from featureplane.monitoring.freshness import format_age
from featureplane.streams.ingest_source import LINE_RECORDS, IngestLogSource
from featureplane.streams.processor import from_us
from featureplane.streams.runner import stream_store

if TYPE_CHECKING:
    from featureplane.config import MonitoringSettings
    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime
    from featureplane.streams.kinesis import KinesisSource

STREAM_LAG = "stream_lag"
MAX_BYTES = 16 * 1024 * 1024  # of an ingest log segment read per measurement
MAX_CALLS = 3  # GetRecords calls per Kinesis shard and measurement
MAX_GET = 1_000  # records per GetRecords call: a shard's 2 MB/s of reads is shared with the processor


@dataclass
class ShardLag:
    """One shard's lag. ``position`` is the checkpoint (None: nothing processed yet)."""

    shard: str
    position: int | None = None
    behind: int = 0
    exact: bool = True
    oldest_unprocessed: datetime | None = None  # naive UTC
    last_processed: datetime | None = None
    bytes_behind: int | None = None  # ingest log
    millis_behind_latest: int | None = None  # Kinesis

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "position": None if self.position is None else str(self.position),  # may exceed 64 bits
            "events_behind": self.behind,
            "exact": self.exact,
            "oldest_unprocessed": _iso(self.oldest_unprocessed),
            "last_processed": _iso(self.last_processed),
            "bytes_behind": self.bytes_behind,
            "millis_behind_latest": self.millis_behind_latest,
        }


@dataclass
class StreamLag:
    """A stream view's lag at ``measured_at`` (naive UTC) against its bound."""

    workspace: str
    view: str
    source: str  # "push" (the ingest log) or "kinesis"
    bound: timedelta
    measured_at: datetime
    shards: list[ShardLag] = field(default_factory=list)
    watermark: datetime | None = None
    late: int = 0
    invalid: int = 0
    error: str | None = None
    committed: str = ""  # a digest of the committed state: it changes with every batch committed

    @property
    def behind(self) -> int:
        return sum(s.behind for s in self.shards)

    @property
    def exact(self) -> bool:
        return all(s.exact for s in self.shards)

    @property
    def oldest_unprocessed(self) -> datetime | None:
        return min((s.oldest_unprocessed for s in self.shards if s.oldest_unprocessed), default=None)

    @property
    def last_processed(self) -> datetime | None:
        return max((s.last_processed for s in self.shards if s.last_processed), default=None)

    @property
    def age(self) -> timedelta:
        """How long the oldest unprocessed record has waited (zero when none waits)."""
        oldest = self.oldest_unprocessed
        return max(self.measured_at - oldest, timedelta(0)) if oldest else timedelta(0)

    @property
    def passed(self) -> bool:
        return self.error is None and self.age <= self.bound

    @property
    def verdict(self) -> str:
        return "ERROR" if self.error else ("OK" if self.passed else "LAGGING")

    def behind_text(self) -> str:
        return f"{self.behind:,}" + ("" if self.exact else "+")

    def message(self) -> str:
        name = f"{self.workspace}/{self.view}"
        if self.error:
            return f"{name}: the stream lag could not be measured: {self.error}"
        if not self.behind:
            return f"{name} is caught up: no event waits in its {len(self.shards)} shard(s)"
        state = "within" if self.passed else "LAGGING, over"
        return (
            f"{name} is {state} its bound: {self.behind_text()} event(s) wait, the oldest arrived "
            f"{format_lag(self.age)} ago (bound {format_lag(self.bound)})"
        )

    def metadata(self) -> dict[str, Any]:
        """Plain, JSON-safe values for an observation or a check result."""
        return {
            "events_behind": self.behind,
            "events_behind_exact": self.exact,
            "oldest_unprocessed_age_seconds": round(self.age.total_seconds(), 3),
            "max_lag_seconds": self.bound.total_seconds(),
            "oldest_unprocessed": _iso(self.oldest_unprocessed) or "none",
            "last_processed": _iso(self.last_processed) or "unknown",
            "watermark": _iso(self.watermark) or "none",
            "late": self.late,
            "invalid": self.invalid,
            "shards": len(self.shards),
            "shards_behind": sum(1 for s in self.shards if s.behind),
            "source": self.source,
            "measured_at": _iso(self.measured_at),
            **({"error": self.error} if self.error else {}),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "view": self.view,
            "status": self.verdict,
            "message": self.message(),
            **self.metadata(),
            "per_shard": [s.to_json() for s in self.shards],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def format_lag(value: timedelta) -> str:
    """``42 seconds`` below two minutes, else as ``format_age`` does."""
    seconds = value.total_seconds()
    return f"{seconds:.0f} seconds" if seconds < 120 else format_age(value)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# -- the ingest log -----------------------------------------------------------------------------------


def _segment_created(segment: Path) -> datetime:
    """A segment's creation time, from its name (``<time_ns>-<pid>-<random>.log``)."""
    try:
        return from_us(int(segment.name.split("-", 1)[0]) // 1000)
    except ValueError:
        return datetime.fromtimestamp(segment.stat().st_mtime, UTC).replace(tzinfo=None)


def ingest_log_lag(
    source: IngestLogSource, positions: Mapping[str, int], consumer: str, max_records: int
) -> list[ShardLag]:
    """Per segment not yet consumed by ``consumer`` (the view's table id): what waits after its
    checkpoint. A consumed marker is only ever written on a sealed segment, so those are skipped."""
    return [
        _segment_lag(source.table_id, segment, positions.get(segment.name), max_records)
        for segment in source.log.segments(source.workspace)
        if not consumed_marker(segment, consumer).exists()
    ]


def _segment_lag(table_id: str, segment: Path, done: int | None, max_records: int) -> ShardLag:
    shard = ShardLag(segment.name, position=done)
    start = 0 if done is None else done // LINE_RECORDS
    try:
        size = os.stat(segment).st_size
    except FileNotFoundError:
        return shard  # removed meanwhile: it was consumed
    created = _segment_created(segment)
    first_waiting = None  # the offset of the line holding the oldest unprocessed record
    line_start = start
    for end, entry in read_segment(segment, start, MAX_BYTES):
        rows = entry["tables"].get(table_id, ())
        received = entry.get("received_us")
        arrived = from_us(received) if isinstance(received, int) else created
        for index in range(len(rows)):
            sequence = line_start * LINE_RECORDS + index
            if done is not None and sequence <= done:
                if sequence == done:
                    shard.last_processed = arrived
                continue
            if first_waiting is None:
                first_waiting, shard.oldest_unprocessed = line_start, arrived
            shard.behind += 1
        line_start = end
        if shard.behind >= max_records:
            break
    # Stopped early for the budget, not at the end (a crashed writer's torn tail also stops a read,
    # but holds no acknowledged record: the count stays exact).
    cut = shard.behind >= max_records or size - start > MAX_BYTES
    shard.exact = line_start >= size or not cut
    shard.bytes_behind = size - (first_waiting if first_waiting is not None else line_start)
    return shard


# -- Kinesis --------------------------------------------------------------------------------------------


def kinesis_lag(source: KinesisSource, positions: Mapping[str, int], max_records: int) -> list[ShardLag]:
    """Per shard: the records after its checkpoint, read from the record at the checkpoint on."""
    return [_kinesis_shard_lag(source, shard, positions.get(shard), max_records) for shard in source.shards()]


def _kinesis_shard_lag(source: KinesisSource, shard_id: str, done: int | None, max_records: int) -> ShardLag:
    shard = ShardLag(shard_id, position=done)
    if done is None and source.initial_position == "LATEST":
        return shard  # nothing processed yet and the processor starts at the then newest record
    kwargs: dict[str, Any] = {"StreamName": source.stream_name, "ShardId": shard_id}
    if done is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=str(done))
    client = source.client
    try:
        iterator = client.get_shard_iterator(**kwargs)["ShardIterator"]
    except client.exceptions.InvalidArgumentException:
        # the checkpoint's record is past the retention period: everything still held waits
        kwargs = {"StreamName": source.stream_name, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"}
        iterator = client.get_shard_iterator(**kwargs)["ShardIterator"]
    shard.exact = False
    for _ in range(MAX_CALLS):
        if iterator is None:
            shard.exact = True  # a closed shard, read to its end
            break
        limit = min(MAX_GET, max_records - shard.behind + 1)
        response = client.get_records(ShardIterator=iterator, Limit=limit)
        iterator = response.get("NextShardIterator")
        shard.millis_behind_latest = response.get("MillisBehindLatest")
        records = response["Records"]
        for record in records:
            arrived = _naive_utc(record["ApproximateArrivalTimestamp"])
            sequence = int(record["SequenceNumber"])
            if done is not None and sequence <= done:
                shard.last_processed = arrived
                continue
            if shard.oldest_unprocessed is None:
                shard.oldest_unprocessed = arrived
            shard.behind += 1
        if shard.behind >= max_records:
            break
        # At the tip: fewer records than asked for and nothing newer (records of the same
        # millisecond show 0 behind too, so a full answer is no proof).
        if len(records) < limit and shard.millis_behind_latest == 0:
            shard.exact = True
            break
    else:
        shard.exact = iterator is None
    return shard


# -- a view, a workspace ----------------------------------------------------------------------------------


def _kinesis(source: SourceSpec) -> KinesisSource:
    """The view's Kinesis source with short timeouts and few retries: a measurement must not hang."""
    from botocore.config import Config

    from featureplane.streams.kinesis import KinesisSource
    from featureplane.util.aws import client

    config = source.stream
    settings = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
    kinesis = client(
        "kinesis", region_name=config["region"], endpoint_url=config.get("endpoint_url"), config=settings
    )
    return KinesisSource(source, client=kinesis)


def measure_stream_lag(
    runtime: Runtime,
    state: WorkspaceState,
    view: FeatureViewSpec,
    bound: timedelta,
    *,
    max_records: int = 10_000,
    now: datetime | None = None,
) -> StreamLag:
    """The lag of stream view ``view`` of live workspace ``state`` (measured at ``now``, naive UTC)."""
    source_spec = state.definitions.sources[view.sources[0]]
    kind = "kinesis" if source_spec.stream.get("type") == "kinesis" else "push"
    lag = StreamLag(state.name, view.name, kind, bound, now or _utcnow())
    table_id = state.table_id(view.name)
    try:
        committed = stream_store(runtime).state(table_id)
        summary = (
            sorted(committed.positions.items()),
            committed.watermark_us,
            committed.late,
            committed.invalid,
        )
        lag.committed = hashlib.sha256(repr(summary).encode()).hexdigest()[:16]
        lag.late, lag.invalid = committed.late, committed.invalid
        lag.watermark = from_us(committed.watermark_us) if committed.watermark_us is not None else None
        if kind == "push":
            log = IngestLog(ingest_log_root(runtime.config))
            source = IngestLogSource(log, state.name, source_spec)
            lag.shards = ingest_log_lag(source, committed.positions, table_id, max_records)
        else:
            lag.shards = kinesis_lag(_kinesis(source_spec), committed.positions, max_records)
    except Exception as exc:  # reported as the check's failure, not raised: other views still get measured
        lag.error = f"{type(exc).__name__}: {exc}"
    if now is None:
        lag.measured_at = _utcnow()  # after reading: a record that arrived meanwhile is not in the future
    return lag


def stream_views(state: WorkspaceState) -> list[FeatureViewSpec]:
    """The stream feature views of a live workspace, by name (a development workspace has none to watch)."""
    if not state.live:
        return []
    return sorted((v for v in state.definitions.feature_views.values() if v.is_stream), key=lambda v: v.name)


def measure_workspace(
    runtime: Runtime, state: WorkspaceState, settings: MonitoringSettings, now: datetime | None = None
) -> list[StreamLag]:
    """The lag of every stream view of ``state``, against the bounds of ``monitoring.stream_lag``."""
    return [
        measure_stream_lag(
            runtime,
            state,
            view,
            timedelta(seconds=settings.stream_lag_bound(state.name, view.name)),
            max_records=settings.stream_lag_max_records,
            now=now,
        )
        for view in stream_views(state)
    ]


def unknown_bounds(settings: MonitoringSettings, states: list[WorkspaceState]) -> list[str]:
    """The names in ``monitoring.stream_lag.views`` that match no stream view of these workspaces."""
    known = set()
    for state in states:
        for view in stream_views(state):
            known |= {view.name, f"{state.name}/{view.name}"}
    return [
        f"monitoring.stream_lag.views.{name} names no stream feature view of a live workspace"
        for name in sorted(settings.stream_lag_views)
        if name not in known
    ]
