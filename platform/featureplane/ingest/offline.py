"""Folding the ingest log into the offline store.

Each FeatureTable's fold reads, from every segment of its workspace's log, the complete lines past the
table's watermark for that segment, and appends their rows in ONE offline commit that also records the
new watermarks. A fold killed before the commit leaves nothing; one killed after it is not repeated.
Readers fold before they read (``Workspace`` does, for training sets and ranges), so every
acknowledged record is visible offline. A sealed segment is deleted once every current table that has
rows in it has folded all of it and, if any of them is online, once its rows are in the online store
(``featureplane.ingest.replay``), and once every current stream feature view reading a push stream
source with records in it has consumed it (``featureplane.streams``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.ingest.log import (
    CONSUMED_SUFFIX,
    ONLINE_SUFFIX,
    SEGMENT_SUFFIX,
    IngestLog,
    consumed_marker,
    ingest_log_root,
    is_online,
    is_sealed,
    online_marker,
    read_segment,
)
from featureplane.ingest.records import stream_table_id
from featureplane.util.locks import file_lock

if TYPE_CHECKING:
    import pyarrow as pa

    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime

log = logging.getLogger("featureplane.ingest")


def ingest_lock(runtime: Runtime, name: str) -> Path:
    """The file whose lock serialises folds of the ingest log into ``name``'s offline table."""
    return runtime.config.data_dir / "locks" / (name.replace("/", "__") + ".ingest.lock")


def flush_ingest_log(
    runtime: Runtime, state: WorkspaceState, views: list[str] | None = None
) -> dict[str, int]:
    """Fold pending ingested records into the offline tables of the workspace's feature tables (all, or
    those named); return the rows folded per table."""
    ingest_log = IngestLog(ingest_log_root(runtime.config))
    if not ingest_log.segments(state.name):
        return {}
    folded = {}
    for view in state.definitions.feature_views.values():
        if view.kind == "table" and view.offline and (views is None or view.name in views):
            folded[view.name] = _fold(runtime, state, view, ingest_log)
    _remove_folded_segments(runtime, state.name, ingest_log)
    return folded


def _fold(runtime: Runtime, state: WorkspaceState, view: FeatureViewSpec, ingest_log: IngestLog) -> int:
    table_id = state.table_id(view.name)
    store = runtime.offline_store
    with file_lock(ingest_lock(runtime, table_id)):
        segments = ingest_log.segments(state.name)
        marks = store.ingest_watermarks(table_id, [s.name for s in segments])
        rows: list[list[Any]] = []
        advanced: dict[str, int] = {}
        for segment in segments:
            start = end = marks[segment.name]
            for offset, entry in read_segment(segment, start):
                end = offset
                rows.extend(entry["tables"].get(table_id, ()))
            if end > start:
                advanced[segment.name] = end
        if not rows:
            return 0
        store.append_ingested(table_id, view, rows_to_arrow(view, rows), advanced)
    log.info("folded %d ingested row(s) into %s", len(rows), table_id)
    return len(rows)


def _remove_folded_segments(runtime: Runtime, workspace: str, ingest_log: IngestLog) -> None:
    """Delete the sealed segments that every current feature table has folded and whose rows are in
    the online store too (marked so, or with no current online table); then the markers left over."""
    state = runtime.registry.load(workspace)  # the latest tables, not the caller's possibly older view
    tables_now = [v for v in state.definitions.feature_views.values() if v.kind == "table"]
    offline = {state.table_id(v.name) for v in tables_now if v.offline}
    online = {state.table_id(v.name) for v in tables_now if v.online}
    consumers: dict[str, list[str]] = {}  # a push stream's log name -> the stream views reading it
    for view in state.definitions.feature_views.values():
        if view.kind == "stream":
            for source in view.sources:
                consumers.setdefault(stream_table_id(workspace, source), []).append(state.table_id(view.name))
    with file_lock(ingest_lock(runtime, f"{workspace}/segments")):
        for segment in ingest_log.segments(workspace):
            if not is_sealed(segment):
                continue
            end, tables = 0, set()
            for offset, entry in read_segment(segment):
                end = offset
                tables.update(entry["tables"])
            if tables & online and not is_online(segment):
                continue  # a lookup service replays it into the online store first
            readers = [c for t in tables for c in consumers.get(t, ())]
            if any(not consumed_marker(segment, c).exists() for c in readers):
                continue  # a stream processor has not consumed all of it yet
            pending = [
                t
                for t in tables & offline
                if runtime.offline_store.ingest_watermarks(t, [segment.name])[segment.name] < end
            ]
            if not pending:
                segment.unlink(missing_ok=True)
                online_marker(segment).unlink(missing_ok=True)
                for reader in readers:
                    consumed_marker(segment, reader).unlink(missing_ok=True)
        directory = ingest_log.directory(workspace)
        for marker in directory.glob(f"*{SEGMENT_SUFFIX}{ONLINE_SUFFIX}"):
            if not marker.with_name(marker.name[: -len(ONLINE_SUFFIX)]).exists():
                marker.unlink(missing_ok=True)
        for marker in directory.glob(f"*{SEGMENT_SUFFIX}.*{CONSUMED_SUFFIX}"):
            segment_name = marker.name[: marker.name.index(SEGMENT_SUFFIX) + len(SEGMENT_SUFFIX)]
            if not marker.with_name(segment_name).exists():
                marker.unlink(missing_ok=True)


def rows_to_arrow(view: FeatureViewSpec, rows: list[list[Any]]) -> pa.Table:
    """Log rows ``[key..., event_us, value...]`` as an Arrow table in the view's offline schema."""
    import pyarrow as pa

    from featureplane.types import to_arrow

    columns = list(zip(*rows, strict=True))
    keys = len(view.join_keys)
    arrays, names = [], []
    for i, key in enumerate(view.join_keys):
        arrays.append(pa.array(columns[i], to_arrow(key.type)))
        names.append(key.name)
    arrays.append(pa.array(columns[keys], pa.int64()).cast(pa.timestamp("us")))
    names.append(view.timestamp_field)
    for i, feature in enumerate(view.features):
        values: Any = columns[keys + 1 + i]
        if feature.type.name == "timestamp":
            values = [_time(v) for v in values]
        elif feature.type.is_array and feature.type.element.name == "timestamp":  # type: ignore[union-attr]
            values = [None if v is None else [_time(x) for x in v] for v in values]
        arrays.append(pa.array(values, to_arrow(feature.type)))
        names.append(feature.name)
    return pa.Table.from_arrays(arrays, names=names)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value[:-1])
