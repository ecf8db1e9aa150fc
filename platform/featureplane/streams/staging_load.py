"""Loading the events the stream Lambda staged (``streams.staging``) into the views' offline event
logs: by the daily maintenance job, before it compacts the log, and by ``featureplane stream
load-staged``.

A staged object is loaded once its last event is at or before its shard's checkpoint in the online
store, so the offline log never holds an event the online tiles do not; an object staged by an attempt
that died before its online commit waits for the retry that commits it (and is counted as pending
meanwhile). The ready objects of a view are read in parallel and appended in commits of up to
``OBJECTS_PER_COMMIT`` objects, each group removed from the staging area after its commit: a load
interrupted between the two appends that group again, and the log's readers keep one row per record
identity, so every event counts once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.streams.staging import StagingArea, staging_area

if TYPE_CHECKING:
    from featureplane.registry.base import WorkspaceState
    from featureplane.runtime import Runtime

OBJECTS_PER_COMMIT = 2_000  # a day of one shard's invocations is tens of thousands of objects
READERS = 16  # objects read at once


@dataclass
class StagedLoad:
    """What a load did for one view: objects and events moved into its event log, and the objects
    left staged because their events are not committed online yet."""

    view: str
    table_id: str
    objects_loaded: int = 0
    events_loaded: int = 0
    objects_pending: int = 0

    def summary(self) -> str:
        text = (
            f"{self.view}: {self.events_loaded} staged event(s) loaded from {self.objects_loaded} object(s)"
        )
        if self.objects_pending:
            text += f"; {self.objects_pending} object(s) wait for their online commit"
        return text


def load_staged(
    runtime: Runtime, table_id: str, view: FeatureViewSpec, area: StagingArea | None = None
) -> StagedLoad:
    """Move the view table's staged events that are committed online into its offline event log."""
    from featureplane.streams.offline import offline_event_log
    from featureplane.streams.runner import stream_store

    report = StagedLoad(view.name, table_id)
    area = area or staging_area(runtime.config.streams)
    log = offline_event_log(runtime, table_id, view)
    if area is None or log is None:
        return report
    staged = area.list_events(table_id)
    if not staged:
        return report
    positions = stream_store(runtime).state(table_id).positions
    ready = [s for s in staged if s.shard in positions and s.last <= positions[s.shard]]
    report.objects_pending = len(staged) - len(ready)
    with ThreadPoolExecutor(READERS) as pool:
        for start in range(0, len(ready), OBJECTS_PER_COMMIT):
            group = ready[start : start + OBJECTS_PER_COMMIT]
            batches = list(pool.map(lambda s: area.read_events(table_id, s), group))
            log.append_batches(batches)
            area.delete([s.key for s in group])
            report.objects_loaded += len(group)
            report.events_loaded += sum(len(events) for events, _ in batches)
    return report


def load_workspace(runtime: Runtime, state: WorkspaceState, view_name: str | None = None) -> list[StagedLoad]:
    """``load_staged`` for each offline stream view of the workspace (or only ``view_name``), by name."""
    area = staging_area(runtime.config.streams)
    if area is None:
        return []
    views = state.definitions.feature_views
    names = sorted(n for n, v in views.items() if v.kind == "stream" and v.offline)
    if view_name is not None:
        if view_name not in names:
            raise ValueError(
                f"workspace {state.name!r} has no offline stream feature view {view_name!r} "
                f"(offline stream feature views: {', '.join(names) or 'none'})"
            )
        names = [view_name]
    return [load_staged(runtime, state.table_id(n), views[n], area) for n in names]
