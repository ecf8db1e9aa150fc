"""What the lookup service needs from the registry, resolved once per workspace version.

A background thread polls each loaded workspace's version and swaps in a rebuilt snapshot after an
apply, so requests never wait for the registry and the server never restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from featureplane.definitions.specs import FeatureViewSpec
from featureplane.ingest.records import IngestEndpoint, ingest_endpoints
from featureplane.registry.base import WorkspaceNotFound, WorkspaceState
from featureplane.serving.realtime import CONTEXT, REQUEST, VIEW, ComputePlan, InputRead, RealtimeRead
from featureplane.types import DataType

log = logging.getLogger("featureplane.serving")


@dataclass(frozen=True)
class ViewRead:
    """How to read one view's selected features for a service."""

    name: str
    kind: str
    table_id: str
    join_keys: tuple[str, ...]
    features: tuple[tuple[str, int, DataType], ...]  # (feature name, index in stored values, type)
    ttl_us: int | None
    spec: FeatureViewSpec


@dataclass(frozen=True)
class ServiceRead:
    """A resolved feature service. ``reads`` are the rows to fetch (its batch views and the views its
    realtime views read; ``views`` when not given); ``computed`` turns them into one row per view in
    ``views`` (None when every view's row is read as it is)."""

    name: str
    views: tuple[ViewRead, ...]
    join_keys: tuple[tuple[str, DataType], ...]
    request_context: tuple[tuple[str, DataType], ...] = ()
    online_serving_enabled: bool = True
    reads: tuple[ViewRead, ...] = None  # type: ignore[assignment]
    computed: ComputePlan | None = None

    def __post_init__(self) -> None:
        if self.reads is None:
            object.__setattr__(self, "reads", self.views)

    @property
    def feature_names(self) -> list[str]:
        return [f"{v.name}.{f[0]}" for v in self.views for f in v.features]

    @property
    def feature_types(self) -> list[DataType]:
        return [f[2] for v in self.views for f in v.features]


@dataclass
class WorkspaceSnapshot:
    name: str
    live: bool
    version: int
    services: dict[str, ServiceRead] = field(default_factory=dict)
    state: WorkspaceState | None = None
    ingest: dict[str, IngestEndpoint] = field(default_factory=dict)


def _view_read(state: WorkspaceState, view: FeatureViewSpec, features: list[str]) -> ViewRead:
    order = {name: i for i, name in enumerate(view.feature_names)}
    return ViewRead(
        name=view.name,
        kind=view.kind,
        table_id="" if view.is_realtime else state.table_id(view.name),
        join_keys=tuple(view.join_key_names),
        features=tuple((f, order[f], view.feature(f).type) for f in features),
        ttl_us=view.ttl_seconds * 1_000_000 if view.ttl_seconds else None,
        spec=view,
    )


def build_snapshot(state: WorkspaceState) -> WorkspaceSnapshot:
    snapshot = WorkspaceSnapshot(
        name=state.name,
        live=state.live,
        version=state.version,
        state=state,
        ingest=ingest_endpoints(state),
    )
    views = state.definitions.feature_views
    for service in state.definitions.feature_services.values():
        reads = []
        join_keys: dict[str, DataType] = {}
        for part in service.features:
            view = views[part.view]
            for key in view.join_keys:
                join_keys.setdefault(key.name, key.type)
            reads.append(_view_read(state, view, part.features))
        fetched, computed = _compute_plan(state, tuple(reads))
        snapshot.services[service.name] = ServiceRead(
            name=service.name,
            views=tuple(reads),
            join_keys=tuple(join_keys.items()),
            request_context=computed.request_context if computed else (),
            online_serving_enabled=service.online_serving_enabled,
            reads=fetched,
            computed=computed,
        )
    return snapshot


class WorkspaceSource(Protocol):
    """Where snapshots come from: the registry itself, or a serving snapshot document
    (``registry_snapshot.SnapshotDocumentSource``) where the registry is out of reach (AWS Lambda).
    A source may also have ``poll()``, called once per refresh before the versions are compared."""

    def version(self, name: str) -> int: ...

    def load(self, name: str) -> WorkspaceState: ...


def live_workspaces(source: WorkspaceSource) -> list[str]:
    """The live workspaces a source holds: a registry's, or a serving snapshot document's."""
    listing = getattr(source, "list_workspaces", None)
    if listing is not None:
        return sorted(w.name for w in listing() if w.live)
    return sorted(name for name in getattr(source, "workspaces", []) if source.load(name).live)


def _compute_plan(
    state: WorkspaceState, views: tuple[ViewRead, ...]
) -> tuple[tuple[ViewRead, ...], ComputePlan | None]:
    """The rows to fetch for a service's views, and how to compute what is not fetched."""
    from featureplane.compute.aggregation.online import OnlineRollup
    from featureplane.definitions.transformation import (
        CONTEXT_PARAMETER,
        REQUEST_PARAMETER,
        load_python_function,
    )

    reads = [v for v in views if v.kind != "realtime"]
    if len(reads) == len(views) and not any(v.spec.is_aggregate for v in reads):
        return views, None
    index = {v.name: i for i, v in enumerate(reads)}
    realtime = []
    request_context: dict[str, DataType] = {}
    for view in views:
        spec = view.spec
        if view.kind != "realtime" or spec.transformation is None:
            continue
        inputs = []
        for parameter in spec.transformation.parameters:
            if parameter == CONTEXT_PARAMETER:
                inputs.append(InputRead(CONTEXT))
            elif parameter == REQUEST_PARAMETER:
                inputs.append(InputRead(REQUEST, fields=tuple(f.name for f in spec.request_schema)))
            else:
                source = state.definitions.feature_views[parameter]
                if parameter not in index:
                    index[parameter] = len(reads)
                    reads.append(_view_read(state, source, source.feature_names))
                features = tuple((f.name, i, f.type) for i, f in enumerate(source.features))
                inputs.append(InputRead(VIEW, index[parameter], features, reads[index[parameter]].ttl_us))
        for field_ in spec.request_schema:
            request_context.setdefault(field_.name, field_.type)
        outputs = tuple((f.name, f.type) for f in spec.features)
        function = load_python_function(spec.transformation)
        realtime.append(RealtimeRead(spec.name, function, tuple(inputs), outputs))
    positions, seen = [], 0
    for view in views:
        if view.kind == "realtime":
            positions.append(-1 - seen)
            seen += 1
        else:
            positions.append(index[view.name])
    rollups = tuple(OnlineRollup(r.spec) if r.spec.is_aggregate else None for r in reads)
    plan = ComputePlan(tuple(positions), rollups, tuple(realtime), tuple(request_context.items()))
    return tuple(reads), plan


class SnapshotCache:
    """Workspace snapshots kept in memory and refreshed every ``refresh_seconds`` in the background."""

    def __init__(self, registry: WorkspaceSource, refresh_seconds: float = 5.0) -> None:
        self.registry = registry
        self.refresh_seconds = refresh_seconds
        self._snapshots: dict[str, WorkspaceSnapshot] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._readiness_checked = -1.0
        self._readiness: tuple[bool, str, list[str]] = (False, "not checked yet", [])

    def get(self, workspace: str) -> WorkspaceSnapshot:
        snapshot = self._snapshots.get(workspace)
        if snapshot is not None:
            return snapshot
        with self._lock:
            snapshot = self._snapshots.get(workspace)
            if snapshot is None:
                snapshot = build_snapshot(self.registry.load(workspace))
                self._snapshots[workspace] = snapshot
        self._ensure_refresher()
        return snapshot

    def cached(self, workspace: str) -> WorkspaceSnapshot | None:
        """The snapshot being served for ``workspace``, if one is loaded (never loads one)."""
        return self._snapshots.get(workspace)

    def preload(self, workspaces: Iterable[str]) -> None:
        """Build snapshots now (at a Lambda's init) so no request pays for it."""
        for name in workspaces:
            self.get(name)

    def readiness(self) -> tuple[bool, str, list[str]]:
        """Whether this service can serve: (ready, why not, the live workspaces loaded). Until a live
        workspace's snapshot is loaded it looks again, at most once a second, and loads them all."""
        loaded = sorted(name for name, s in self._snapshots.items() if s.live)
        if loaded:
            return True, "", loaded
        now = time.monotonic()
        if now - self._readiness_checked < 1.0:
            return self._readiness
        self._readiness_checked = now
        try:
            names = live_workspaces(self.registry)
            if names:
                self.preload(names)
                self._readiness = (True, "", names)
            else:
                self._readiness = (False, "the registry has no live workspace yet: apply to one", [])
        except Exception as exc:
            self._readiness = (False, f"cannot read the registry: {exc}"[:500], [])
        return self._readiness

    def refresh(self) -> None:
        """Reload every cached workspace whose version changed (or that was deleted)."""
        poll = getattr(self.registry, "poll", None)
        if poll is not None:
            try:
                poll()
            except Exception as exc:  # the source is unreachable: keep serving what we have
                log.warning("checking the serving snapshot failed, still serving what is loaded: %s", exc)
                return
        for name, snapshot in list(self._snapshots.items()):
            try:
                version = self.registry.version(name)
            except Exception as exc:  # deleted workspace or registry hiccup: keep serving what we have
                if isinstance(exc, WorkspaceNotFound):
                    self._snapshots.pop(name, None)
                else:
                    log.warning("registry refresh of %s failed: %s", name, exc)
                continue
            if version != snapshot.version:
                try:
                    self._snapshots[name] = build_snapshot(self.registry.load(name))
                    log.info("workspace %s: serving version %s", name, version)
                except Exception as exc:
                    log.warning(
                        "reloading workspace %s failed, still serving version %s: %s",
                        name,
                        snapshot.version,
                        exc,
                    )

    def _ensure_refresher(self) -> None:
        if self._thread is not None or self.refresh_seconds <= 0:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="featureplane-registry-refresh", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def close(self) -> None:
        self._stop.set()


def now_us() -> int:
    return time.time_ns() // 1000
