"""The ingest API as a push stream: records pushed to a StreamSource are read back from the ingest log.

Each segment of the workspace's log is a shard. A record's sequence number is the byte offset of its
request's line in the segment times ``LINE_RECORDS`` plus its index in the line, so it grows within
a segment and a checkpoint says where to resume: at the start of the line holding the last processed
record (its earlier records are then skipped as already processed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from featureplane.definitions.specs import SourceSpec
from featureplane.ingest.log import IngestLog, is_sealed, mark_consumed, read_segment
from featureplane.ingest.records import stream_table_id
from featureplane.streams.processor import StreamRecord

LINE_RECORDS = 1 << 20  # more records than one ingest request may hold
READ_BYTES = 1 << 20  # how much of a segment is read at a time


class IngestLogSource:
    """The records pushed to ``source`` in ``workspace``'s ingest log, by segment."""

    def __init__(self, ingest_log: IngestLog, workspace: str, source: SourceSpec) -> None:
        self.log = ingest_log
        self.workspace = workspace
        self.source = source
        self.table_id = stream_table_id(workspace, source.name)
        self.fields = [f.name for f in source.schema]
        self.timestamp = source.timestamp_field or ""

    def read(self, positions: Mapping[str, int], limit: int) -> list[StreamRecord]:
        """Up to about ``limit`` records after the checkpoints ``positions`` (shard -> sequence), oldest
        segment first; whole lines, so a batch may hold a little more."""
        out: list[StreamRecord] = []
        fields, width = self.fields, len(self.fields) + 1
        for segment in self.log.segments(self.workspace):
            name = segment.name
            done = positions.get(name)
            line_start = 0 if done is None else done // LINE_RECORDS
            for end, entry in _entries(segment, line_start):
                rows = entry["tables"].get(self.table_id)
                if rows:
                    base = line_start * LINE_RECORDS
                    first = done - base + 1 if done is not None and done >= base else 0
                    for index in range(first, len(rows)):
                        row = rows[index]  # [event_us, value, ...] in the source's schema order
                        if len(row) != width:
                            raise ValueError(
                                f"ingest log segment {segment}: a record of {self.table_id} at byte "
                                f"{line_start} has {len(row) - 1} values, the source has {width - 1} fields"
                            )
                        out.append(StreamRecord(name, base + index, dict(zip(fields, row[1:], strict=True))))
                line_start = end
                if len(out) >= limit:
                    return out
        return out

    def mark_consumed(self, positions: Mapping[str, int], consumer: str) -> list[Path]:
        """Mark the sealed segments that ``consumer`` has processed to their end; return them."""
        marked = []
        for segment in self.log.segments(self.workspace):
            if not is_sealed(segment):
                continue
            if self._pending(segment, positions.get(segment.name)):
                continue
            mark_consumed(segment, consumer)
            marked.append(segment)
        return marked

    def _pending(self, segment: Path, done: int | None) -> bool:
        """Whether the segment holds records of this source after the checkpoint ``done``."""
        line_start = 0 if done is None else done // LINE_RECORDS
        for end, entry in read_segment(segment, line_start):
            rows = entry["tables"].get(self.table_id, ())
            if rows and (done is None or line_start * LINE_RECORDS + len(rows) - 1 > done):
                return True
            line_start = end
        return False


def _entries(segment: Path, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``read_segment(segment, start)``'s lines, read ``READ_BYTES`` at a time: a batch needs the
    lines after its checkpoint, not the whole rest of the segment. A window without a complete line
    (the end of the segment, a torn or damaged line, or a line longer than the window) hands over to
    one read of the rest, which stops exactly where ``read_segment`` stops."""
    position = start
    while True:
        found = False
        for end, entry in read_segment(segment, position, READ_BYTES):
            found = True
            yield end, entry
            position = end
        if not found:
            yield from read_segment(segment, position)
            return
