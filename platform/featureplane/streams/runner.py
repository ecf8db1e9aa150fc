"""``featureplane stream run``: a stream feature view's processor over its source, until stopped.

Each round reads a batch of records after the checkpoints (from the ingest log for a push stream
source, from the shards of a Kinesis stream), applies it (one transaction with the
checkpoints, ``streams.processor``), marks the sealed ingest log segments it has consumed so they
can be removed, and records the shards read to their end (consumed segments, closed Kinesis shards)
as finished, so that they stop holding tile retention back. Killed at any point, a restart resumes from the last committed checkpoints: nothing
is lost and nothing is counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from featureplane.definitions.transformation import load_python_function
from featureplane.errors import FeatureplaneError
from featureplane.ingest.log import IngestLog, ingest_log_root
from featureplane.runtime import Runtime
from featureplane.streams.backend import stream_store_for
from featureplane.streams.ingest_source import IngestLogSource
from featureplane.streams.kinesis import KinesisSource
from featureplane.streams.offline import event_log_for
from featureplane.streams.processor import BatchResult, StreamProcessor
from featureplane.streams.store import StreamStore

MARK_EVERY = 100  # batches between looking for consumed segments while records keep coming


@dataclass
class RunTotals:
    batches: int = 0
    applied: int = 0
    duplicates: int = 0
    dropped: int = 0
    late: int = 0
    invalid: int = 0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.applied += result.applied
        self.duplicates += result.duplicates
        self.dropped += result.dropped
        self.late += result.late
        self.invalid += result.invalid


def stream_store(runtime: Runtime) -> StreamStore:
    try:
        return stream_store_for(runtime.online_store)
    except ValueError as exc:
        raise FeatureplaneError(str(exc)) from None


def open_stream(
    runtime: Runtime, workspace: str, view_name: str
) -> tuple[StreamProcessor, IngestLogSource | KinesisSource]:
    """The processor of ``view_name`` in live workspace ``workspace`` and the source it reads."""
    state = runtime.registry.load(workspace)
    views = state.definitions.feature_views
    view = views.get(view_name)
    if view is None or view.kind != "stream":
        known = ", ".join(sorted(n for n, v in views.items() if v.kind == "stream")) or "none"
        raise FeatureplaneError(
            f"workspace {workspace!r} has no stream feature view {view_name!r} (stream feature views: {known})"
        )
    if not state.live:
        raise FeatureplaneError(
            f"workspace {workspace!r} is a development workspace: its views are not processed"
        )
    source = state.definitions.sources[view.sources[0]]
    transform = load_python_function(view.transformation) if view.transformation else None
    table_id = state.table_id(view.name)
    try:
        event_log = event_log_for(runtime, table_id, view)
    except ValueError as exc:
        raise FeatureplaneError(str(exc)) from None
    processor = StreamProcessor(
        view, table_id, stream_store(runtime), transform, source.timestamp_field, event_log
    )
    if source.stream.get("type") == "kinesis":
        from featureplane.streams.kinesis import KinesisSource

        return processor, KinesisSource(source)
    return processor, IngestLogSource(IngestLog(ingest_log_root(runtime.config)), workspace, source)


def run_stream(
    runtime: Runtime,
    workspace: str,
    view_name: str,
    *,
    once: bool = False,
    batch_size: int = 1000,
    poll_seconds: float = 0.05,
    report: Callable[[BatchResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunTotals:
    """Process ``view_name``'s records until stopped (``should_stop``), or, with ``once``, until none
    is waiting."""
    processor, source = open_stream(runtime, workspace, view_name)
    totals = RunTotals()
    finished = {name for name, shard in processor.state().shards.items() if shard.finished}
    while should_stop is None or not should_stop():
        positions = processor.state().positions
        records = source.read(positions, batch_size)
        if records:
            result = processor.process(records)
            totals.add(result)
            if report is not None:
                report(result)
            positions = processor.state().positions
        ended: set[str] = set()
        if isinstance(source, IngestLogSource):
            if not records or totals.batches % MARK_EVERY == 0:
                consumed = source.mark_consumed(positions, processor.table_id)
                ended = {segment.name for segment in consumed}
        else:
            ended = set(source.finished)
        if ended - finished:
            processor.finish_shards(sorted(ended - finished))
            finished |= ended
        if not records:
            if once and (isinstance(source, IngestLogSource) or source.caught_up):
                break
            time.sleep(poll_seconds)
    return totals
