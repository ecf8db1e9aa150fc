"""The ingest log: where acknowledged records wait, durably, to be folded into the offline store.

Why a log and not a Delta commit per request: the ingest endpoint runs in the lookup service, which
must start fast and stay free of pyarrow and deltalake (the Lambda cold-start budget), and a Delta
commit per request would also leave one small file per request. An append of one line plus an
``fsync`` is durable against a crash or power loss, costs about a millisecond, and needs only the
standard library. Readers of the offline store fold the log into the Delta tables first (see
``featureplane.ingest.offline``), so training sets always include every acknowledged record.

Layout: one directory per workspace, holding segments ``<time>-<pid>-<random>.log``. Each writer
(a server process) appends to a segment of its own while holding an exclusive ``flock`` on it, so a
torn line left by a crash is confined to the tail of a segment that nobody appends to again, and a
folder can tell a segment still being written (locked) from a sealed one. Each line is one request:
``<crc32 hex> <json>\\n`` with the json ``{"tables": {table_id: [[key..., event_us, value...], ...]},
"received_us": ...}`` (every table the request writes, online-only ones too, so that a replay applies
all of it; ``received_us`` is when the line was appended, which stream lag is measured from), so a
request's records are all in the log or none are. Readers use only complete lines whose checksum
matches, and track how far each table has folded a segment by byte offset.

The online store gets each request's records after its line is on disk, so a writer that dies (or
whose online write fails) in between leaves lines that are in the log, and so offline, but not
online. A segment whose every line reached the online store gets a marker, ``<segment>.online``,
written before the segment is sealed; a sealed segment without one is replayed into the online store
(``featureplane.ingest.replay``, when a lookup service starts and periodically), and is not removed
until it has been.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from featureplane.config import Config

SEGMENT_SUFFIX = ".log"
ONLINE_SUFFIX = ".online"
MAX_SEGMENT_BYTES = 64 * 1024 * 1024


def ingest_log_root(config: Config) -> Path:
    """Where the ingest log lives: ``offline_store.ingest_log`` in featureplane.yaml, by default
    ``<data_dir>/ingest_log``. Every server that ingests and every reader must see the same directory."""
    return config.resolve(config.offline_store.get("ingest_log", config.data_dir / "ingest_log"))


class Segment:
    """This process's segment of one workspace's log. ``pending`` counts appended requests whose
    online write has not finished; ``failed`` says one of them failed (the segment then needs a
    replay into the online store)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SEGMENT_SUFFIX}"
        self.path = directory / name
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.size = 0
        self.pending = 0
        self.failed = False
        self.closed = False
        _fsync_directory(directory)

    def append(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        os.fsync(self.fd)
        self.size += len(line)

    def close(self) -> None:
        """Seal the segment: marked as online first when every request in it reached the online store."""
        if self.closed:
            return
        self.closed = True
        if self.pending == 0 and not self.failed:
            mark_online(self.path)
        os.close(self.fd)


def online_marker(segment: Path) -> Path:
    return segment.with_name(segment.name + ONLINE_SUFFIX)


def mark_online(segment: Path) -> None:
    """Record that every line of ``segment`` is in the online store (an empty file, made durable)."""
    marker = online_marker(segment)
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_directory(segment.parent)


def is_online(segment: Path) -> bool:
    return online_marker(segment).exists()


CONSUMED_SUFFIX = ".consumed"


def consumed_marker(segment: Path, consumer: str) -> Path:
    """The file saying that ``consumer`` (a stream view's table id) has processed all of a sealed
    segment's records; the segment is kept until every current consumer has one."""
    return segment.with_name(f"{segment.name}.{consumer.replace('/', '__')}{CONSUMED_SUFFIX}")


def mark_consumed(segment: Path, consumer: str) -> None:
    marker = consumed_marker(segment, consumer)
    if not marker.exists():
        marker.touch()
        _fsync_directory(segment.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_entry(tables: dict[str, list[list[Any]]], received_us: int | None = None) -> bytes:
    entry: dict[str, Any] = {"tables": tables}
    if received_us is not None:
        entry["received_us"] = received_us
    body = orjson.dumps(entry)
    return b"%08x %s\n" % (zlib.crc32(body), body)


class IngestLog:
    """Appends requests to this process's segment of each workspace; reads segments back."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._segments: dict[str, Segment] = {}
        self._lock = threading.Lock()

    def directory(self, workspace: str) -> Path:
        return self.root / workspace

    def append(self, workspace: str, tables: dict[str, list[list[Any]]]) -> Segment:
        """Durably append one request's rows (``{table_id: [row, ...]}``); returns once on disk, with
        the segment it went to. Call ``finished`` with it once the request's online write is done."""
        line = encode_entry(tables, time.time_ns() // 1000)
        with self._lock:
            segment = self._segments.get(workspace)
            if segment is None or segment.size >= MAX_SEGMENT_BYTES:
                if segment is not None:
                    segment.close()
                segment = self._segments[workspace] = Segment(self.directory(workspace))
            segment.append(line)
            segment.pending += 1
        return segment

    def finished(self, segment: Segment, online: bool) -> None:
        """A request appended to ``segment`` is done: its records are ``online``, or they are not
        (its online write failed). A failure seals the segment, unmarked, so that a replay brings its
        records online without waiting for this process to end."""
        with self._lock:
            segment.pending -= 1
            if not online:
                segment.failed = True
                if self._segments.get(segment.path.parent.name) is segment:
                    del self._segments[segment.path.parent.name]
                segment.close()
            elif segment.closed and segment.pending == 0 and not segment.failed:
                mark_online(segment.path)  # sealed while this request was still writing

    def close(self) -> None:
        """Seal this process's segments (they become foldable and, once folded, removable)."""
        with self._lock:
            for segment in self._segments.values():
                segment.close()
            self._segments.clear()

    def workspaces(self) -> list[str]:
        """The workspaces that have a log directory."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def segments(self, workspace: str) -> list[Path]:
        directory = self.directory(workspace)
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if p.name.endswith(SEGMENT_SUFFIX))


def read_segment(
    path: Path, start: int = 0, max_bytes: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(end offset, entry)`` for each complete, intact line from byte ``start`` (within ``max_bytes``
    of it, when given); stops at a torn or damaged line (only the unacknowledged tail of a crashed
    writer's segment can be one)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read() if max_bytes is None else handle.read(max_bytes)
    except FileNotFoundError:
        return
    offset = start
    position = 0
    while True:
        newline = data.find(b"\n", position)
        if newline < 0:
            return
        line = data[position:newline]
        checksum, _, body = line.partition(b" ")
        try:
            if int(checksum, 16) != zlib.crc32(body):
                return
            entry = orjson.loads(body)
        except ValueError:
            return
        offset += newline + 1 - position
        position = newline + 1
        yield offset, entry


def is_sealed(path: Path) -> bool:
    """Whether no live writer holds the segment (its process closed it or died)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)
