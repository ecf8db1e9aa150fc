"""Replaying the ingest log into the online store, so that no request is applied to one store only.

A request's records reach the log (the offline side) before the online store. If the server dies in
between, or the online write fails and the client never retries, the records are offline but not
online. Their segment is then sealed without an online marker (``featureplane.ingest.log``): this
module writes such segments' rows to the online store, in log order and with ``only_if_newer`` (an
older event never replaces a newer one, so replaying twice, or replaying what did arrive, changes
nothing), then marks them. A lookup service replays when it starts and then periodically, which also
covers the segments of other servers that died. Standard library only: the lookup service runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from featureplane.ingest.log import IngestLog, is_online, is_sealed, mark_online, read_segment
from featureplane.ingest.records import IngestTarget
from featureplane.online_stores.base import OnlineRow, OnlineStore

log = logging.getLogger("featureplane.ingest")

# A workspace's feature tables by table id; None when the workspace cannot be read (or is not live).
TargetsOf = Callable[[str], Mapping[str, IngestTarget] | None]


def replay_ingest_log(ingest_log: IngestLog, online_store: OnlineStore, targets_of: TargetsOf) -> int:
    """Write the rows of every sealed, unmarked segment to the online store and mark the segment;
    return the rows written. A segment whose workspace cannot be read or whose write fails is left
    for the next replay."""
    written = 0
    for workspace in ingest_log.workspaces():
        waiting = [s for s in ingest_log.segments(workspace) if not is_online(s) and is_sealed(s)]
        if not waiting:
            continue
        targets = targets_of(workspace)
        if targets is None:
            log.warning(
                "cannot replay the ingest log of workspace %s yet: its registry state is unavailable",
                workspace,
            )
            continue
        for segment in waiting:
            try:
                count = _replay_segment(segment, online_store, targets)
            except Exception:
                log.exception("replaying ingest log segment %s into the online store failed", segment)
                continue
            mark_online(segment)
            written += count
            if count:
                log.info("replayed %d ingested row(s) of %s into the online store", count, segment.name)
    return written


def _replay_segment(segment: Path, online_store: OnlineStore, targets: Mapping[str, IngestTarget]) -> int:
    latest: dict[str, dict[tuple, OnlineRow]] = {}
    for _, entry in read_segment(segment):
        for table_id, rows in entry["tables"].items():
            target = targets.get(table_id)
            if target is None or not target.online:  # a table since deleted or recreated: nothing to do
                continue
            keys = len(target.join_keys)
            held = latest.setdefault(table_id, {})
            for row in rows:
                key = tuple(row[:keys])
                event_ts = row[keys]
                previous = held.get(key)
                if previous is None or event_ts >= previous.event_ts:  # on a tie, the later one
                    held[key] = OnlineRow(key, event_ts, row[keys + 1 :])
    count = 0
    for table_id, rows in latest.items():
        online_store.write(
            table_id, list(rows.values()), only_if_newer=True, ttl_seconds=targets[table_id].ttl_seconds
        )
        count += len(rows)
    return count
