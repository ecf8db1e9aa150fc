"""The batch backfill of a stream feature view: its history from the source's ``batch_config``.

For a window ``[start, end)`` the backfill reads the batch source's rows, applies the view's row-level
transformation and checks exactly as the stream processor does (``StreamProcessor.row``), and writes
the events before the hand-over boundary (``offline_stores.event_log``): to the event log, replacing
the window's backfilled rows in one commit, and to the online tiles (or latest rows) the lookups read.
Any invalid row fails the window before anything is written; rows the transformation drops are
counted.

A window is read and transformed one partition (``batch_schedule``) at a time, so a range of many
partitions holds one partition's rows in Python at once and its events as Arrow; the event log is
still written in one commit. Online, a backfilled event has the identity ``batch:<partition start>``
/ its position among the partition's rows sorted by key, time and values, so a rerun of a partition
with the same rows, alone or inside a range, changes nothing. Only the events inside the longest
window before the boundary are written online: older ones cannot change a value at or after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featureplane.definitions.transformation import load_python_function
from featureplane.errors import FeatureplaneError
from featureplane.offline_stores.event_log import StreamEventLog
from featureplane.streams.offline import event_log_for
from featureplane.streams.processor import StreamProcessor, StreamRecord, from_us, to_us
from featureplane.streams.runner import stream_store
from featureplane.streams.tiles import Event

if TYPE_CHECKING:
    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime


@dataclass
class BackfillResult:
    view: str
    start: datetime
    end: datetime
    written_until: datetime  # the end actually written: the hand-over boundary if it comes first
    rows: int = 0
    events: int = 0
    dropped: int = 0
    online_events: int = 0
    offline_version: int | None = None
    problems: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "window_start": self.start.isoformat(),
            "window_end": self.end.isoformat(),
            "written_until": self.written_until.isoformat(),
            "source_rows": self.rows,
            "events": self.events,
            "dropped": self.dropped,
            "online_events": self.online_events,
            "offline_version": -1 if self.offline_version is None else self.offline_version,
        }


def backfill_stream_view(
    runtime: Runtime,
    state: WorkspaceState,
    view_name: str,
    start: datetime,
    end: datetime,
    progress: Callable[[str], None] | None = None,
) -> BackfillResult:
    """Backfill ``view_name`` of live workspace ``state`` for ``[start, end)`` (naive UTC)."""
    view = state.feature_view(view_name)
    where = f"stream feature view {state.name}/{view_name}"
    if not view.is_stream:
        raise FeatureplaneError(f"feature view {view_name!r} is a {view.kind} view, not a stream view")
    if not state.live:
        raise FeatureplaneError(f"workspace {state.name!r} is a development workspace: nothing is backfilled")
    source = state.definitions.sources[view.sources[0]]
    history = state.definitions.sources.get(source.batch_source or "")
    if history is None:
        raise FeatureplaneError(f"{where}: its source {source.name!r} has no batch_config to backfill from")
    table_id = state.table_id(view_name)
    log = event_log_for(runtime, table_id, view)
    if log is None:
        raise FeatureplaneError(f"{where} has offline=False: the backfill writes its event log")
    transform = load_python_function(view.transformation) if view.transformation else None
    processor = StreamProcessor(view, table_id, stream_store(runtime), transform, source.timestamp_field)

    def read(first: datetime, until: datetime) -> list[dict[str, Any]]:
        return _plain_rows(runtime.engine.source_rows(history, first, until))

    return backfill_window(processor, log, read, start, end, f"{where}: {history.name!r}", progress)


def backfill_window(
    processor: StreamProcessor,
    log: StreamEventLog,
    read: Callable[[datetime, datetime], list[dict[str, Any]]],
    start: datetime,
    end: datetime,
    what: str,
    progress: Callable[[str], None] | None = None,
) -> BackfillResult:
    """The backfill of ``[start, end)`` from the batch rows ``read(first, until)`` returns for each
    partition in it (up to the end or the hand-over boundary) into ``log`` and ``processor``'s online
    store."""
    import pyarrow as pa

    view = processor.view
    start_us, end_us = to_us(start, "start"), to_us(end, "end")
    until = log.reserve_backfill(start_us, end_us)
    result = BackfillResult(view.name, start, end, from_us(max(until, start_us)))
    if until <= start_us:
        return result  # the stream owns this window
    step = (view.batch_schedule_seconds or 86400) * 1_000_000
    online_from = until - processor.longest
    tables: list[Any] = []
    online: list[tuple[str, int, tuple]] = []  # aggregate views: the events inside the longest window
    latest: dict[tuple, tuple[int, list[Any]]] = {}  # plain views: the latest row per key
    for first in range(start_us, until, step):
        last = min(first + step, until)
        shard = f"batch:{from_us(first).isoformat()}"
        events = _partition_events(processor, read(from_us(first), from_us(last)), first, last, result, what)
        tables.append(_table(processor, events))
        if view.online and processor.aggregate:
            online += [(shard, n, e) for n, e in enumerate(events) if e[1] >= online_from]
        elif view.online:
            for key, ts, values in events:
                if key not in latest or ts >= latest[key][0]:
                    latest[key] = (ts, [processor._stored(f.column or f.name, values) for f in view.features])
        if progress is not None:
            progress(f"{what}: [{from_us(first)}, {from_us(last)}): {len(events)} event(s)")
    result.offline_version = log.write_backfill(start_us, until, pa.concat_tables(tables))
    if view.online and processor.aggregate:
        result.online_events = _write_tiles(processor, online, until)
    elif view.online:
        processor.store.commit_rows(processor.table_id, latest, {}, view.ttl_seconds)
        result.online_events = len(latest)
    return result


def _partition_events(
    processor: StreamProcessor,
    rows: list[dict[str, Any]],
    first: int,
    last: int,
    result: BackfillResult,
    what: str,
) -> list[tuple[tuple, int, dict[str, Any]]]:
    """One partition's rows transformed and checked as the stream processor does, sorted by key,
    time and values (their positions are their online identities)."""
    result.rows += len(rows)
    shard = f"batch:{from_us(first).isoformat()}"
    events = []
    records = [StreamRecord(shard, n, data) for n, data in enumerate(rows)]
    for n, row in enumerate(processor._rows(records)):
        if isinstance(row, ValueError):
            raise FeatureplaneError(
                f"{what}: row {n} in [{from_us(first)}, {from_us(last)}) {row}; nothing was written"
            )
        if row is None:
            result.dropped += 1
        elif first <= row[1] < last:
            events.append(row)
        else:
            raise FeatureplaneError(
                f"{what}: row {n}: the transformation moved its event time to {from_us(row[1])}, "
                f"outside the window [{from_us(first)}, {from_us(last)}); nothing was written"
            )
    events.sort(key=lambda e: (e[0], e[1], repr(sorted(e[2].items()))))
    result.events += len(events)
    return events


def _plain_rows(frame: Any) -> list[dict[str, Any]]:
    """A pandas frame's rows as dicts of Python values, missing values (NaN, NaT) as None."""
    import pandas as pd

    def plain(value: Any) -> Any:
        if isinstance(value, list | tuple | dict):
            return value
        if hasattr(value, "tolist") and not isinstance(value, pd.Timestamp):
            value = value.tolist()
        return None if not isinstance(value, list) and pd.isna(value) else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _table(processor: StreamProcessor, events: list) -> Any:
    import pyarrow as pa

    from featureplane.offline_stores.event_log import event_schema

    view = processor.view
    schema = event_schema(view)
    names = [k.name for k in view.join_keys]
    times = {c for c, t in processor.columns.items() if t == "timestamp"}
    rows = []
    for key, ts, values in events:
        row = dict(zip(names, key, strict=True))
        row[view.timestamp_field] = from_us(ts)
        row.update({c: from_us(v) if c in times and v is not None else v for c, v in values.items()})
        rows.append(row)
    fields = [f for f in schema if not f.name.startswith("_")]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _write_tiles(processor: StreamProcessor, events: list[tuple[str, int, tuple]], until: int) -> int:
    """Apply the events (``(shard, position, event)``) inside the longest window before ``until`` to
    the online tiles, leaving the processing state as it is."""
    store, table_id = processor.store, processor.table_id
    tiles: dict[tuple[tuple, int], list[Event]] = {}
    for shard, n, (key, ts, values) in events:
        tiles.setdefault((key, ts // processor.step), []).append(Event(ts, values, shard, n))
    retain = (until - processor.longest) // processor.step
    kept = processor.retain_from(store.state(table_id))
    store.commit_tiles(table_id, processor.tiles, tiles, {}, retain if kept is None else max(retain, kept))  # type: ignore[arg-type]
    return sum(len(batch) for batch in tiles.values())
